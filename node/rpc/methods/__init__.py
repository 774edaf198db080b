"""The node's JSON-RPC methods, one module per namespace, each a :class:`MethodTable`:

* :mod:`.system`: ``system_*`` and ``rpc_methods``;
* :mod:`.chain`: ``chain_*``;
* :mod:`.author`: ``author_*``;
* :mod:`.state`: ``state_*`` and ``payment_*``;
* :mod:`.opus`: ``opus_*``.

:data:`METHODS` is their union, what :class:`node.rpc.protocol.RpcService` serves.
"""

from __future__ import annotations

from node.rpc.methods import author, chain, opus, state, system
from node.rpc.protocol import MethodTable

METHODS = MethodTable(system.METHODS, chain.METHODS, author.METHODS, state.METHODS,
                      opus.METHODS)

__all__ = ["METHODS"]
