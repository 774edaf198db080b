"""The node's side of the p2p network: the chain adapter and the wiring.

``p2p/`` knows nothing of ``node/``: it talks to the chain through the small
``ChainAccess`` protocol. :class:`NodeChain` implements it over a
:class:`~node.core.NodeCore`, and :func:`run_network` starts the network and
connects its hooks: authored blocks and submitted extrinsics are published,
gossiped ones are imported and pooled, and the node's peer count, sync state
and peer list come from the network.

(libp2p is slow to import: the service imports this module only when a network runs.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from node import nodekey
from node.txpool import LIMIT_REFUSALS, AlreadyImported, PoolError, TemporarilyBanned
from p2p.network import TxImport
from runtime.block import Block, Header, Justification

if TYPE_CHECKING:
    from node.consensus.finality import FinalityGadget
    from node.core import NodeCore


class NodeChain:
    """``p2p.network.ChainAccess`` over a Node and its store."""

    def __init__(self, node: NodeCore) -> None:
        self.node = node
        self.store = node.store

    @property
    def genesis_hash(self) -> bytes:
        return self.node.genesis.hash

    @property
    def best_header(self) -> Header:
        return self.store.best_header

    @property
    def finalized_header(self) -> Header:
        return self.store.finalized_header

    def header(self, block_hash: bytes) -> Header | None:
        return self.store.header(block_hash)

    def block(self, block_hash: bytes) -> Block | None:
        return self.store.block(block_hash)

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        return self.store.encoded_block(block_hash)

    def hash_at(self, number: int) -> bytes | None:
        return self.store.hash_at(number)

    def justification(self, block_hash: bytes) -> Justification | None:
        return self.store.justification(block_hash)

    async def import_block(self, block: Block) -> Any:
        return await self.node.import_block(block)

    async def submit_extrinsic(self, raw: bytes) -> TxImport:
        try:
            await self.node.submit_extrinsic(raw, from_network=True)
        except (AlreadyImported, TemporarilyBanned):
            return TxImport.KNOWN
        except PoolError as e:
            return TxImport.UNWANTED if e.reason in LIMIT_REFUSALS else TxImport.REFUSED
        return TxImport.NEW


async def run_network(node: NodeCore, finality: FinalityGadget | None, *,
                      task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the node's libp2p network until cancelled; ``finality`` gets the gossiped votes."""
    from node.logs import adopt_library_logger
    from p2p.network import Network

    adopt_library_logger("libp2p")

    config = node.config
    key = nodekey.load_or_create(config.base_path, config.node_key_file)
    listen = config.listen_addrs or (f"/ip4/0.0.0.0/tcp/{config.p2p_port}",)
    network = Network(NodeChain(node), key, listen, config.bootnodes, node.genesis.hash,
                      role=config.role)
    node.network = network
    node.on_block_authored.append(network.publish_block)
    node.on_extrinsic_submitted.append(network.publish_extrinsic)
    node.peer_count = network.peer_count
    node.is_syncing = network.is_syncing
    node.peer_info = lambda: [peer.to_json() for peer in network.peers()]
    node.local_peer_id = network.peer_id
    if finality is not None:
        finality.publish = network.publish_vote
        network.vote_handler = finality.on_vote
        network.vote_validator = finality.check_vote
    await network.run(task_status=task_status)
