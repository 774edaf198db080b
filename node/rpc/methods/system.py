"""``system_*`` and ``rpc_methods``: what the node is, where it listens, how it syncs.

Substrate's methods, with the same names and answers (docs/rpc.md, "system_*").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node import nodekey
from node.rpc.protocol import MethodTable, Session, p_account
from node.version import VERSION
from runtime.modules import system

METHODS = MethodTable()


@METHODS.rpc()
async def rpc_methods(s: Session) -> dict[str, Any]:
    """The methods this node lets clients call (unsafe ones only with ``--rpc-methods unsafe``)."""
    return {"methods": s.service.available()}


@METHODS.rpc()
async def system_health(s: Session) -> dict[str, Any]:
    """Peers, whether the node is syncing, and whether it should have peers (not on a dev chain)."""
    node = s.node
    return {"peers": node.peer_count(), "isSyncing": node.is_syncing(),
            "shouldHavePeers": node.genesis.spec.chain_type != "Development"}


@METHODS.rpc()
async def system_name(s: Session) -> str:
    """The node implementation's name."""
    return "Opus Node"


@METHODS.rpc()
async def system_version(s: Session) -> str:
    """The node's version."""
    return VERSION


@METHODS.rpc()
async def system_chain(s: Session) -> str:
    """The chain spec's name."""
    return s.node.genesis.spec.name


@METHODS.rpc()
async def system_chainType(s: Session) -> str:
    """``Development``, ``Local`` or ``Live``."""
    return s.node.genesis.spec.chain_type


@METHODS.rpc()
async def system_properties(s: Session) -> dict[str, Any]:
    """The chain spec's properties (token symbol and decimals)."""
    return dict(s.node.genesis.spec.properties)


@METHODS.rpc()
async def system_nodeRoles(s: Session) -> list[str]:
    """``["Authority"]`` on a validator (``--validator``, ``--alice`` …), else ``["Full"]``."""
    return ["Authority" if s.node.config.validator else "Full"]


@METHODS.rpc()
async def system_peers(s: Session) -> list[Any]:
    """The connected peers, as the network layer describes them (``[]`` without a network)."""
    return list(s.node.peer_info())


@METHODS.rpc()
async def system_localPeerId(s: Session) -> str | None:
    """The node's libp2p peer id: the network's, else the node key file's; null without one."""
    node = s.node
    if node.local_peer_id:
        return node.local_peer_id
    path = node.config.node_key_file or node.config.base_path / nodekey.NODE_KEY_FILE
    try:
        return nodekey.peer_id(nodekey.read_key_file(Path(path)))
    except nodekey.NodeKeyError:
        return None


@METHODS.rpc()
async def system_localListenAddresses(s: Session) -> list[str]:
    """The addresses other nodes can dial this one at, each ending in ``/p2p/<peer id>``
    (what their ``--bootnodes`` take); ``[]`` when the node runs no network."""
    network = s.node.network
    return [] if network is None else list(network.listen_addresses())


@METHODS.rpc()
async def system_syncState(s: Session) -> dict[str, int]:
    """The block the node started at, its best block, and the highest block it knows of:
    the best of its own and of its connected peers' announced best blocks."""
    node = s.node
    best = node.best.number
    highest = max([best, *(int(p["bestNumber"]) for p in node.peer_info())])
    return {"startingBlock": s.service.starting_block, "currentBlock": best,
            "highestBlock": highest}


@METHODS.rpc()
async def system_accountNextIndex(s: Session, address: Any) -> int:
    """The nonce the account's next transaction must carry: after its ready ones in the pool."""
    who = p_account(address)
    info = system.account_info(s.node.store.best_state(), who)
    return s.node.pool.next_nonce(who, info.nonce)
