"""The chain side of a node: its database, transaction pool, block import and finalization.

:class:`NodeCore` is what every other part of the node works with: the RPC methods, the
network adapter, the metrics and consensus (Aura authoring, the finality gadget) all
receive it. It imports none of them; consensus attaches through ``on_imported`` and
``on_finalized``, the network through ``on_block_authored`` and
``on_extrinsic_submitted``, and :mod:`node.service` does that wiring.

Everything that changes the chain goes through :meth:`NodeCore.import_block` (blocks from
anywhere) or :meth:`NodeCore.commit_authored` (our own), serialized by ``import_lock``,
so the pool, subscribers and metrics see one consistent sequence of heads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import trio

from genesis import Genesis
from node.chain.importer import SignatureWorkers, verify_and_execute
from node.chain.store import ChainStore, FinalityViolation, ImportResult
from node.config import NodeConfig
from node.logs import short_hash
from node.txpool import TransactionPool
from runtime.block import Block, Header, InvalidJustification, Justification, verify_justification
from runtime.crypto import blake2_256
from runtime.execution import BlockError, BuiltBlock
from runtime.modules import validators
from runtime.support import BlockInfo

log = logging.getLogger("opus")
import_log = logging.getLogger("opus.import")

SUBSCRIBER_BUFFER = 256


class ImportFailed(Exception):
    """A block that could not be imported; ``reason`` names why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Broadcast:
    """Fan-out of values to subscribers; a subscriber that falls behind is dropped."""

    def __init__(self) -> None:
        self._subscribers: list[trio.MemorySendChannel[Any]] = []

    def subscribe(self) -> trio.MemoryReceiveChannel[Any]:
        send, receive = trio.open_memory_channel[Any](SUBSCRIBER_BUFFER)
        self._subscribers.append(send)
        return receive

    def publish(self, value: Any) -> None:
        alive = []
        for send in self._subscribers:
            try:
                send.send_nowait(value)
                alive.append(send)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                send.close()
        self._subscribers = alive


class NodeCore:
    """The chain side of one node (see the module docstring)."""

    def __init__(self, config: NodeConfig, genesis: Genesis, store: ChainStore) -> None:
        self.config = config
        self.genesis = genesis
        self.store = store
        self.pool = TransactionPool(config.pool_limits)
        self.new_heads = Broadcast()
        self.finalized_heads = Broadcast()
        self.tx_watchers: dict[bytes, list[trio.MemorySendChannel[tuple[str, Any]]]] = {}
        self.started_at = time.monotonic()
        self.import_lock = trio.Lock()
        self.imported_extrinsics = 0
        self.equivocations: list[dict[str, Any]] = []
        self._authored_in_slot: dict[tuple[bytes, int], bytes] = {}  # recent (author, slot) -> hash
        # Hooks the network layer sets to publish what this node produces.
        self.on_block_authored: list[Callable[[Block], Awaitable[None]]] = []
        self.on_extrinsic_submitted: list[Callable[[bytes], Awaitable[None]]] = []
        self.peer_count: Callable[[], int] = lambda: 0
        self.is_syncing: Callable[[], bool] = lambda: False
        self.peer_info: Callable[[], list[dict[str, Any]]] = list
        self.local_peer_id: str | None = None
        self.network: Any = None  # p2p.network.Network once node.network.run_network runs
        self.metrics: Any = None  # node.metrics.Metrics when enabled
        self.signature_workers: SignatureWorkers | None = None  # while the service runs
        # What consensus attaches (node.service wires them): called with each imported
        # block's header, and with each newly finalized header.
        self.on_imported: list[Callable[[Header], None]] = []
        self.on_finalized: list[Callable[[Header], None]] = []

    # ------------------------------------------------------------------ clock

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    @property
    def slot_duration(self) -> int:
        return validators.slot_duration.get(self.store.best_state())

    # ------------------------------------------------------------------ queries

    @property
    def best(self) -> Header:
        return self.store.best_header

    @property
    def finalized(self) -> Header:
        return self.store.finalized_header

    def next_block_info(self) -> BlockInfo:
        best = self.best
        return BlockInfo(best.number + 1, best.timestamp, bytes(32), best.hash)

    # ------------------------------------------------------------------ transactions

    async def submit_extrinsic(self, raw: bytes, *, from_network: bool = False) -> bytes:
        """Validate ``raw`` into the pool; returns its hash. Raises PoolError subclasses."""
        tx_hash = self.pool.submit(raw, self.store.best_state(), self.next_block_info(),
                                   self.genesis.hash).tx_hash
        self._forward_pool_events()
        if not from_network:
            for hook in self.on_extrinsic_submitted:
                await hook(raw)
        return tx_hash

    def watch_extrinsic(self, tx_hash: bytes) -> trio.MemoryReceiveChannel[tuple[str, Any]]:
        send, receive = trio.open_memory_channel[tuple[str, Any]](64)
        self.tx_watchers.setdefault(tx_hash, []).append(send)
        return receive

    def _notify_tx(self, tx_hash: bytes, status: str, detail: Any = None) -> None:
        watchers = self.tx_watchers.get(tx_hash)
        if not watchers:
            return
        for send in watchers:
            try:
                send.send_nowait((status, detail))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if status in ("finalized", "dropped", "invalid", "usurped"):
            for send in self.tx_watchers.pop(tx_hash, []):
                send.close()

    def _forward_pool_events(self) -> None:
        for tx_hash, status, detail in self.pool.drain_events():
            if status != "inBlock":  # reported by _after_import for every included tx
                self._notify_tx(tx_hash, status, detail)

    # ------------------------------------------------------------------ import

    async def import_block(self, block: Block, *, own: bool = False) -> ImportResult:
        """Verify, execute and commit ``block``; raise ImportFailed with a named reason."""
        async with self.import_lock:
            return await self._import_locked(block, own=own)

    async def _import_locked(self, block: Block, *, own: bool) -> ImportResult:
        store = self.store
        header = block.header
        if store.has_block(block.hash):
            return ImportResult.known(block.hash)
        parent = store.header(header.parent_hash)
        if parent is None:
            raise ImportFailed("UnknownParent", f"parent of #{header.number} is not known")
        drift = self.slot_duration
        if header.timestamp > self.now_ms() + drift:
            raise ImportFailed("FutureBlock", f"#{header.number} is for a future slot")
        if header.number <= self.finalized.number:
            raise ImportFailed("BelowFinalized", f"#{header.number} conflicts with finality")
        justification = block.justification
        if justification is not None and not self._justification_valid(justification, header):
            block, justification = replace(block, justification=None), None
        started = time.perf_counter()
        try:
            executed = await trio.to_thread.run_sync(
                verify_and_execute, store.state_at(parent.hash), store.node_store, parent, block,
                self.genesis.hash, self.signature_workers,
            )
        except BlockError as e:
            raise ImportFailed(type(e).__name__, str(e)) from None
        # A synced block's justification is stored, and finalizes it, in its import batch.
        # A block from the network is written while the next one executes; a crash loses
        # at most that block, which the node syncs again. Authored blocks are durable.
        result = store.import_block(executed, finalize=justification is not None,
                                    durable=own)
        self._after_import(block, result, time.perf_counter() - started, own=own,
                           changes=executed.changes)
        if justification is not None:
            if result.new_best:
                self._on_finalized(header)
            else:  # a longer fork is best: the justified block's chain wins
                self.apply_justification(justification)
        return result

    def commit_authored(self, built: BuiltBlock, seconds: float) -> ImportResult:
        """Commit a block this node built (the caller holds ``import_lock``): durably, then
        as every import (pool, subscribers, consensus hooks)."""
        result = self.store.import_block(built.executed)
        self._after_import(built.block, result, seconds, own=True,
                           changes=built.executed.changes)
        return result

    def forget_invalid(self, invalid: Sequence[tuple[bytes, Exception]]) -> None:
        """Drop transactions that block building found invalid from the pool."""
        self.pool.remove_invalid([(blake2_256(raw), type(e).__name__) for raw, e in invalid])
        self._forward_pool_events()

    def _after_import(self, block: Block, result: ImportResult, seconds: float, *,
                      own: bool, changes: Mapping[bytes, bytes | None]) -> None:
        header = block.header
        self.imported_extrinsics += len(block.extrinsics)
        if self.metrics is not None:
            self.metrics.block_imported(len(block.extrinsics), seconds)
        # While major-syncing the sync's progress line says it (Substrate's informant too).
        import_log.log(logging.DEBUG if self.is_syncing() else logging.INFO, "%s Imported #%d (%s)",
                       "✨" if own else "🏆", header.number, short_hash(block.hash))
        tx_hashes = [blake2_256(raw) for raw in block.extrinsics]
        if result.new_best:
            retracted = [raw for h in result.retracted for raw in self._body(h)]
            state = self.store.best_state()
            if retracted:
                enacted = [blake2_256(raw) for h in result.enacted for raw in self._body(h)]
                self.pool.on_reorg(retracted, state, self.next_block_info(), self.genesis.hash,
                                   enacted_hashes=enacted)
            # After a reorg the pool has just revalidated everything against ``state``.
            self.pool.on_block_imported(tx_hashes, state, self.next_block_info(),
                                        self.genesis.hash,
                                        changed_keys=None if retracted else changes)
            self._forward_pool_events()
            self.new_heads.publish(header)
        for tx_hash in tx_hashes:
            self._notify_tx(tx_hash, "inBlock", block.hash)
        self._check_equivocation(header)
        for hook in self.on_imported:
            hook(header)

    def _body(self, block_hash: bytes) -> tuple[bytes, ...]:
        block = self.store.block(block_hash)
        return () if block is None else block.extrinsics

    def _check_equivocation(self, header: Header) -> None:
        """Two different blocks by one author in one slot: record and report it."""
        seen = self._authored_in_slot
        other = seen.setdefault((header.author, header.slot), header.hash)
        if len(seen) > 4096:  # keep only recent slots
            for key in list(seen)[:2048]:
                del seen[key]
        if other != header.hash:
            record = {"slot": header.slot, "author": header.author.hex(),
                      "blocks": [other.hex(), header.hash.hex()]}
            self.equivocations.append(record)
            log.warning("⚠️ Equivocation: author %s sealed two blocks in slot %d",
                        short_hash(header.author), header.slot)

    # ------------------------------------------------------------------ finality

    def apply_justification(self, justification: Justification) -> bool:
        """Finalize the justified block if the justification checks out; True if it did."""
        header = self.store.header(justification.block_hash)
        if header is None or header.number <= self.finalized.number:
            return False
        if not self._justification_valid(justification, header):
            return False
        if not self.store.is_ancestor(header.hash, self.best.hash) and not self._reorg_to(header):
            return False
        self.store.set_justification(header.hash, justification)
        self.store.set_finalized(header.hash)
        self._on_finalized(header)
        return True

    def _justification_valid(self, justification: Justification, header: Header) -> bool:
        """Whether ``justification`` finalizes ``header`` (logged when it does not)."""
        parent_state = self.store.state_at(header.parent_hash)
        try:
            verify_justification(justification, header, validators.authorities.get(parent_state))
        except InvalidJustification as e:
            log.warning("Ignoring justification for #%d: %s", header.number, e)
            return False
        return True

    def _on_finalized(self, header: Header) -> None:
        """Tell the subscribers, consensus and the transaction watchers."""
        self.finalized_heads.publish(header)
        for hook in self.on_finalized:
            hook(header)
        if self.tx_watchers:  # reading the body back costs: only when someone watches
            for raw in self._body(header.hash):
                self._notify_tx(blake2_256(raw), "finalized", header.hash)

    def _reorg_to(self, header: Header) -> bool:
        """Make a justified block's chain the best chain: a longer fork without it can never
        be final. Moves the pool as an import reorg does; False if it conflicts with finality."""
        try:
            reorg = self.store.set_best(header.hash)
        except FinalityViolation:
            return False
        log.info("♻️ Reorg to the justified #%d (%s), %d blocks retracted", header.number,
                 short_hash(header.hash), len(reorg.retracted))
        retracted = [raw for h in reversed(reorg.retracted) for raw in self._body(h)]
        enacted = [blake2_256(raw) for h in reorg.enacted for raw in self._body(h)]
        self.pool.on_reorg(retracted, self.store.best_state(), self.next_block_info(),
                           self.genesis.hash, enacted_hashes=enacted)
        self._forward_pool_events()
        self.new_heads.publish(header)
        return True
