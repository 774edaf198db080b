"""The node service: chain database, transaction pool, import, authoring and finality.

:class:`Node` owns the pieces and :meth:`Node.run` runs its tasks in one trio
nursery (structured concurrency: nothing runs unowned; cancelling the nursery
stops everything and the database is closed by the caller's ``with``).

Everything that changes the chain goes through :meth:`Node.import_block`
(blocks from anywhere, including our own), serialized by one lock, so the
pool, subscribers and metrics see one consistent sequence of heads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from genesis import Genesis
from node import rpc as rpc_limits
from node.finality import FinalityGadget
from node.importer import SignatureWorkers, verify_and_execute
from node.logs import short_hash
from node.storage import ChainStore, FinalityViolation, ImportResult
from node.txpool import PoolLimits, TransactionPool
from runtime.block import (
    Block,
    Header,
    InvalidJustification,
    Justification,
    sign_precommit,
    verify_justification,
)
from runtime.crypto import Keypair, blake2_256
from runtime.execution import BlockError, build_block, slot_owner
from runtime.modules import validators
from runtime.support import BlockInfo

log = logging.getLogger("opus")
import_log = logging.getLogger("opus.import")
author_log = logging.getLogger("opus.author")

INFORMANT_INTERVAL_S = 5.0
BUILD_SHARE_OF_SLOT = 0.4  # stop adding extrinsics after this share of the slot
SUBSCRIBER_BUFFER = 256


class ImportFailed(Exception):
    """A block that could not be imported; ``reason`` names why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass
class NodeConfig:
    base_path: Path
    name: str = "opus-node"
    authority: Keypair | None = None  # set on a validator
    rpc_host: str = "127.0.0.1"
    rpc_port: int | None = 9944  # None: no RPC server
    rpc_methods: str = "safe"  # "safe" or "unsafe"
    rpc_cors: tuple[str, ...] | None = None  # None: localhost only; ("*",): all
    # The JSON-RPC limits (docs/rpc.md, "Limits"); sizes in bytes.
    rpc_max_request_size: int = rpc_limits.DEFAULT_MAX_REQUEST_MB * rpc_limits.MIB
    rpc_max_response_size: int = rpc_limits.DEFAULT_MAX_RESPONSE_MB * rpc_limits.MIB
    rpc_max_batch_len: int = rpc_limits.DEFAULT_MAX_BATCH_LEN
    rpc_max_connections: int = rpc_limits.DEFAULT_MAX_CONNECTIONS  # HTTP and WebSocket
    rpc_max_subscriptions: int = rpc_limits.DEFAULT_MAX_SUBSCRIPTIONS  # per connection
    rpc_rate_limit: int | None = None  # calls per minute per connection; None: no limit
    # Seconds for a request's headers, and again for its body, to arrive; also how long an
    # idle HTTP keep-alive connection is kept.
    rpc_request_timeout: float = rpc_limits.DEFAULT_REQUEST_TIMEOUT_S
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int | None = 9615
    p2p_port: int = 30333
    listen_addrs: tuple[str, ...] = ()
    bootnodes: tuple[str, ...] = ()
    node_key_file: Path | None = None
    pool_limits: PoolLimits = field(default_factory=PoolLimits)  # --pool-limit, --pool-kbytes
    network: bool = False  # the `opus` command turns it on; in-process tests mostly don't
    role: str = field(init=False, default="full")

    def __post_init__(self) -> None:
        self.role = "authority" if self.authority is not None else "full"


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


class Node:
    """One Opus Chain node."""

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
        self.signature_workers: SignatureWorkers | None = None  # started by run()
        # The GRANDPA-style finality voter; a sole authority finalizes its own blocks instead.
        # A node without an authority key runs it as an observer: it counts the gossiped votes
        # and commits, so it keeps finalizing after its initial sync (gossiped blocks carry no
        # justification). The network sets `finality.publish` and hands it gossiped votes.
        self.finality: FinalityGadget | None = None
        finalized_state = store.state_at(store.finalized_hash)
        if len(validators.authorities.get(finalized_state)) > 1:
            self.finality = FinalityGadget(self, config.authority)

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
        self._finalize_if_sole_authority(header)
        if self.finality is not None:
            self.finality.on_block_imported(header)

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

    def _finalize_if_sole_authority(self, header: Header) -> None:
        """With one authority, its own precommit is a full justification."""
        key = self.config.authority
        # Cheap checks first: this runs after every import, and reading the state of a
        # block that is not the best one goes through the trie.
        if key is None or header.hash != self.best.hash:
            return
        if validators.authorities.get(self.store.best_state()) != (key.public,):
            return
        vote = sign_precommit(key, header.number, 0, header)
        self.apply_justification(Justification(header.number, 0, header.hash, header.number,
                                               (vote,)))

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
        """Tell the subscribers, the finality gadget and the transaction watchers."""
        self.finalized_heads.publish(header)
        if self.finality is not None:
            self.finality.on_finalized(header)
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

    # ------------------------------------------------------------------ authoring

    async def author_loop(self) -> None:
        key = self.config.authority
        assert key is not None
        while True:
            duration = self.slot_duration
            now = self.now_ms()
            await trio.sleep(((now // duration + 1) * duration - now) / 1000)
            await self.author_in_slot(self.now_ms() // duration, key)

    async def author_in_slot(self, slot: int, key: Keypair) -> Block | None:
        """Author a block for ``slot`` if ``key`` owns it; returns the block if one was made."""
        async with self.import_lock:
            best = self.best
            state = self.store.best_state()
            duration = validators.slot_duration.get(state)
            if slot <= best.slot or slot_owner(state, slot) != key.public:
                return None
            deadline = time.monotonic() + duration * BUILD_SHARE_OF_SLOT / 1000
            started = time.perf_counter()
            candidates = self.pool.ready()  # read the pool here, not on the worker thread
            built = await trio.to_thread.run_sync(
                lambda: build_block(
                    state, self.store.node_store, best, candidates,
                    timestamp=slot * duration, author=key, genesis_hash=self.genesis.hash,
                    should_stop=lambda: time.monotonic() > deadline,
                )
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            if built.invalid:
                self.pool.remove_invalid([(blake2_256(raw), type(e).__name__)
                                          for raw, e in built.invalid])
                self._forward_pool_events()
            block = built.block
            author_log.info(
                "🎁 Prepared block for proposing at %d (%d ms) [hash: %s; parent_hash: %s; "
                "extrinsics (%d)]", block.number, elapsed_ms, short_hash(block.hash),
                short_hash(best.hash), len(block.extrinsics),
            )
            if self.metrics is not None:
                self.metrics.block_authored(elapsed_ms / 1000)
            result = self.store.import_block(built.executed)
            self._after_import(block, result, elapsed_ms / 1000, own=True,
                               changes=built.executed.changes)
        for hook in self.on_block_authored:
            await hook(self.store.block(block.hash) or block)
        return block

    # ------------------------------------------------------------------ informant

    async def informant_loop(self) -> None:
        while True:
            await trio.sleep(INFORMANT_INTERVAL_S)
            best, finalized = self.best, self.finalized
            state = "⚙️ Syncing" if self.is_syncing() else "💤 Idle"
            log.info("%s (%d peers), best: #%d (%s), finalized #%d (%s)", state,
                     self.peer_count(), best.number, short_hash(best.hash), finalized.number,
                     short_hash(finalized.hash))

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run every task of the node until cancelled."""
        self.signature_workers = SignatureWorkers()
        try:
            await self._run_tasks(task_status)
        finally:
            workers, self.signature_workers = self.signature_workers, None
            workers.close()

    async def _run_tasks(self, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            if self.config.rpc_port is not None:
                from node.rpc.server import serve_rpc

                await nursery.start(serve_rpc, self)
            if self.config.prometheus_port is not None:
                from node.metrics import serve_metrics

                await nursery.start(serve_metrics, self)
            if self.config.network:
                from node.network import run_network

                await nursery.start(run_network, self)
            if self.config.authority is not None:
                nursery.start_soon(self.author_loop)
            if self.finality is not None:
                await nursery.start(self.finality.run)
            nursery.start_soon(self.informant_loop)
            task_status.started()

