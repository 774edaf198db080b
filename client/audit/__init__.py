"""Dataset audits for AI builders: what in a training set is registered, and on what terms.

* :mod:`client.audit.inputs`: the items of a dataset and their SHA-256 (parquet shards,
  CSV, JSON Lines, a folder of media files), read in batches;
* :mod:`client.audit.classify`: each item's status (:func:`~client.audit.classify.audit_rows`,
  the audit of one piece of a dataset against any lookup) and the summary;
* :mod:`client.audit.lookup`: the lookups over the node's ``opus_getWorksByContentHashes``,
  pipelined;
* :mod:`client.audit.registry`: the registry as of a block as a parquet file (``opus
  registry export``), a lookup that joins against it with no node, and the audit of one
  shard (:func:`~client.audit.registry.audit_shard`) for a distributed engine (Dask);
* :mod:`client.audit.report` and :mod:`client.audit.html`: the report files;
* :mod:`client.audit.items`: a report read back row by row for the bulk commands
  (``license acquire --from``, ``usage record --from``, ``dataset certify``), and what the
  chain says of its works now.

``opus audit`` (:mod:`client.commands.audit`) puts them together. These modules load
pyarrow; the command imports them only when an audit runs.
"""
