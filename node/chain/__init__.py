"""The chain database and everything that writes it.

* :mod:`node.chain.store`: :class:`~node.chain.store.ChainStore`, the facade: open,
  import a block, move the best chain, finalize (start here);
* :mod:`node.chain.dbformat`: where the database lives and its key layout;
* :mod:`node.chain.database`: opening LevelDB, its tuning, the genesis block;
* :mod:`node.chain.blocks`: headers, bodies, justifications, events, the
  canonical and transaction indexes (reads);
* :mod:`node.chain.state`: state readers and trie nodes;
* :mod:`node.chain.flatcache`: the cache of hot values;
* :mod:`node.chain.errors`: the store's errors;
* :mod:`node.chain.forks`: routes between blocks, for reorgs;
* :mod:`node.chain.importer`: block verification on two cores;
* :mod:`node.chain.blockfile`: block files (export and import);
* :mod:`node.chain.indexer` and :mod:`node.chain.indexes`: the node-side listing
  indexes, following the best chain.
"""
