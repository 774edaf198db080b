"""The node service: it builds a node's parts and runs their tasks, and owns nothing else.

A :class:`Node` is the chain core (:class:`node.core.NodeCore`: database, pool, import,
finalization) with consensus attached: on a validator, Aura authoring and sole-authority
finality (on a chain of one), signing with the keystore's keys of the current authority
set; on a chain of several authorities, the finality gadget, voting with a validator's
keystore key of the set or else following as an observer. :meth:`Node.run` runs every
task in one trio nursery: the JSON-RPC server, the Prometheus endpoint, the libp2p
network, the author, the finality gadget and the informant (structured concurrency:
nothing runs unowned; cancelling the nursery stops everything, and the caller's ``with``
closes the database).
"""

from __future__ import annotations

from typing import Any

import trio

from genesis import Genesis
from node.chain.importer import SignatureWorkers
from node.chain.store import ChainStore
from node.config import NodeConfig
from node.consensus.aura import AuraAuthor
from node.consensus.finality import FinalityGadget
from node.consensus.sole import SoleAuthorityFinality
from node.core import ImportFailed, NodeCore
from node.informant import informant
from runtime.block import Header
from runtime.modules import validators


class Node(NodeCore):
    """One Opus Chain node: the core, its consensus, and the tasks that serve it."""

    def __init__(self, config: NodeConfig, genesis: Genesis, store: ChainStore) -> None:
        super().__init__(config, genesis, store)
        keys = config.keystore if config.validator else None
        self.author = AuraAuthor(self, keys) if keys is not None else None
        if keys is not None:
            self.on_imported.append(SoleAuthorityFinality(self, keys).on_block_imported)
        # The GRANDPA-style gadget, on a chain of several authorities: a voter while the
        # keystore holds a key of the set, else an observer that counts the gossiped votes
        # and commits, so a full node keeps finalizing after its initial sync. The network
        # wires its votes.
        self.finality: FinalityGadget | None = None
        if len(validators.authorities.get(store.state_at(store.finalized_hash))) > 1:
            self.finality = FinalityGadget(self, keys)
        self.on_imported.append(self._finality_imported)
        self.on_finalized.append(self._finality_finalized)

    def _finality_imported(self, header: Header) -> None:
        if self.finality is not None:
            self.finality.on_block_imported(header)

    def _finality_finalized(self, header: Header) -> None:
        if self.finality is not None:
            self.finality.on_finalized(header)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run every task of the node until cancelled."""
        self.signature_workers = SignatureWorkers()
        try:
            await self._run_tasks(task_status)
        finally:
            workers, self.signature_workers = self.signature_workers, None
            workers.close()

    async def _run_tasks(self, task_status: Any) -> None:
        config = self.config
        async with trio.open_nursery() as nursery:
            if config.rpc_port is not None:
                from node.rpc.server import serve_rpc

                await nursery.start(serve_rpc, self)
            if config.prometheus_port is not None:
                from node.metrics import serve_metrics

                await nursery.start(serve_metrics, self)
            if config.network:
                from node.network import run_network  # libp2p is slow to import

                await nursery.start(run_network, self, self.finality)
            if self.author is not None:
                nursery.start_soon(self.author.run)
            if self.finality is not None:
                await nursery.start(self.finality.run)
            nursery.start_soon(informant, self)
            task_status.started()


__all__ = ["ImportFailed", "Node", "NodeConfig"]
