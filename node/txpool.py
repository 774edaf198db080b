"""The transaction pool: validated extrinsics waiting for a block (Substrate's semantics).

A plain synchronous data structure: the node's trio tasks call it, it does no
I/O and never blocks.

Queues
  Every pooled transaction is either **ready** (its nonce is the signer's
  account nonce, or follows a contiguous run of the signer's pooled
  transactions starting there) or **future** (there is a nonce gap before it).
  A future transaction is promoted to ready as soon as the gap is filled, by a
  submission or by a block that moves the account nonce.

Ordering
  :meth:`TransactionPool.ready` yields transactions highest priority (tip)
  first across signers, but each signer's strictly by nonce: a transaction is
  only yielded after its predecessor. Ties go to the earlier arrival (a
  counter, not a clock). This is the candidate order block building takes.

Replacement
  A transaction with the same (signer, nonce) as a pooled one replaces it only
  with a strictly higher tip; the old one is reported ``usurped``.

Limits
  ``max_count`` transactions and ``max_bytes`` encoded bytes across both
  queues. When a submission would exceed them, the worst transactions are
  evicted: future before ready, then the lowest tip, then the newest. Evicting a
  transaction also evicts the signer's later-nonce transactions, which could
  not be included without it. If the newcomer itself would be evicted it is
  refused with :class:`PoolFull` instead.

Bans
  Hashes that were rejected as invalid, evicted, found invalid or included in
  a block are banned for ``ban_blocks`` blocks (block numbers, not wall clock),
  so re-gossip costs one dict lookup instead of a signature check.

Events
  Status changes are recorded as :class:`PoolEvent` ``(tx_hash, status,
  detail)`` and handed to the node by :meth:`TransactionPool.drain_events`;
  the node forwards them to RPC subscriptions (and reports ``finalized``
  itself). Details: ``inBlock`` the block hash; ``usurped`` the replacing
  transaction's hash; ``invalid``/``dropped`` the reason as text; ``ready``/``future`` None.

A rejected submission leaves the queues unchanged (it may only add a ban).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import takewhile
from typing import Literal, NamedTuple

from runtime import codec, executive
from runtime.crypto import blake2_256
from runtime.executive import InvalidTransaction, StaleNonce
from runtime.extrinsic import Extrinsic, decode_extrinsic
from runtime.state import StateReader
from runtime.support import BlockInfo

DEFAULT_MAX_COUNT = 8192
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_BAN_BLOCKS = 30

MALFORMED = "Malformed"

TxStatus = Literal["ready", "future", "inBlock", "finalized", "dropped", "invalid", "usurped"]
EventDetail = bytes | str | None
EvictionKey = tuple[bool, int, int, bytes]  # (ready, priority, -arrival, hash): lowest goes first


# ---------------------------------------------------------------------------
# Errors: one per way a submission is refused.


class PoolError(Exception):
    """Base of the reasons a transaction was not accepted into the pool."""


class PoolRejected(PoolError):
    """The transaction is invalid; ``reason`` names why (``Malformed`` or an InvalidTransaction)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class AlreadyImported(PoolError):
    """A transaction with the same hash is already in the pool."""


class TooLowPriority(PoolError):
    """The signer's nonce is taken in the pool and the new tip is not strictly higher."""


class PoolFull(PoolError):
    """The pool is at its limits and the transaction ranks no better than the worst one."""


class TemporarilyBanned(PoolError):
    """The hash was recently rejected, evicted or included; it is refused for a while."""


# ---------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class PooledTransaction:
    """A validated extrinsic held by the pool."""

    tx_hash: bytes
    raw: bytes
    ext: Extrinsic
    priority: int
    arrival: int  # submission counter: lower arrived earlier
    bound_hash: bytes  # the birth hash the signature was verified against

    @property
    def sender(self) -> bytes:
        return self.ext.signer

    @property
    def nonce(self) -> int:
        return self.ext.nonce

    @property
    def length(self) -> int:
        return len(self.raw)


@dataclass(frozen=True)
class SubmitResult:
    tx_hash: bytes
    ready: bool  # False: waiting in future for a nonce gap to fill
    replaced: bytes | None = None  # the hash it usurped, if any

    @property
    def status(self) -> Literal["ready", "future"]:
        return "ready" if self.ready else "future"


@dataclass(frozen=True)
class Removal:
    """A transaction that left the pool without being included, and why."""

    tx_hash: bytes
    status: TxStatus  # "invalid", "dropped" or "usurped"
    reason: str


class PoolEvent(NamedTuple):
    tx_hash: bytes
    status: TxStatus
    detail: EventDetail


class PoolStatus(NamedTuple):
    ready: int
    future: int
    bytes: int


# ---------------------------------------------------------------------------
# The pool


class TransactionPool:
    """Ready and future queues of validated extrinsics, with limits, bans and events."""

    def __init__(
        self,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ban_blocks: int = DEFAULT_BAN_BLOCKS,
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.ban_blocks = ban_blocks
        self._txs: dict[bytes, PooledTransaction] = {}  # by hash, in arrival order
        self._by_sender: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> hash
        self._account_nonce: dict[bytes, int] = {}  # sender -> on-chain nonce last seen
        self._ready: set[bytes] = set()  # membership only; order comes from _txs
        self._bytes = 0
        self._banned: dict[bytes, int] = {}  # hash -> first block number it is allowed again
        self._block_number = 0  # number of the next block, as last told
        self._arrivals = 0
        self._events: list[PoolEvent] = []
        # Eviction ranks, worst first: future before ready, low tip, then newest.
        self._eviction: list[EvictionKey] = []

    # ------------------------------------------------------------------ queries

    def status(self) -> PoolStatus:
        ready = len(self._ready)
        return PoolStatus(ready, len(self._txs) - ready, self._bytes)

    def __len__(self) -> int:
        return len(self._txs)

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> PooledTransaction | None:
        return self._txs.get(tx_hash)

    def is_ready(self, tx_hash: bytes) -> bool:
        return tx_hash in self._ready

    def is_banned(self, tx_hash: bytes, block_number: int | None = None) -> bool:
        """Whether ``tx_hash`` is banned at ``block_number`` (default: the next block)."""
        until = self._banned.get(tx_hash)
        number = self._block_number if block_number is None else block_number
        return until is not None and number < until

    def ready(self, limit: int | None = None) -> list[bytes]:
        """Ready extrinsics (encoded) in an order valid for inclusion, best first."""
        return [tx.raw for tx in self._ready_order(limit)]

    def pending(self) -> list[bytes]:
        """Every pooled extrinsic: the ready ones in inclusion order, then the future ones."""
        future = [tx.raw for h, tx in self._txs.items() if h not in self._ready]
        return self.ready() + future

    def drain_events(self) -> list[PoolEvent]:
        """The status changes recorded since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ submission

    def submit(
        self,
        raw: bytes,
        state: StateReader,
        block: BlockInfo,
        genesis_hash: bytes,
        *,
        ignore_ban: bool = False,
    ) -> SubmitResult:
        """Validate ``raw`` against ``state`` for ``block`` (the next block) and pool it.

        Raises a :class:`PoolError` subclass if it is not accepted; the queues
        are then unchanged.
        """
        tx_hash = blake2_256(raw)
        self._block_number = max(self._block_number, block.number)
        if not ignore_ban and self.is_banned(tx_hash, block.number):
            raise TemporarilyBanned(f"{codec.hex0x(tx_hash)} is banned for now")
        if tx_hash in self._txs:
            raise AlreadyImported(f"{codec.hex0x(tx_hash)} is already in the pool")
        try:
            ext = decode_extrinsic(raw)
        except codec.DecodeError as e:
            self._ban(tx_hash)
            raise PoolRejected(MALFORMED, f"{type(e).__name__}: {e}") from None
        try:
            valid, bound_hash = _validate(state, block, ext, len(raw), genesis_hash, None)
        except InvalidTransaction as e:
            self._ban(tx_hash)
            raise PoolRejected(e.error_name(), str(e)) from None

        sender, nonce = ext.signer, ext.nonce
        replaced = self._by_sender.get(sender, {}).get(nonce)
        if replaced is not None and valid.priority <= self._txs[replaced].priority:
            raise TooLowPriority(
                f"nonce {nonce} is taken by a transaction with tip {self._txs[replaced].priority}"
                f"; tip {valid.priority} is not higher"
            )
        self._arrivals += 1
        tx = PooledTransaction(tx_hash, raw, ext, valid.priority, self._arrivals, bound_hash)
        victims = self._select_victims(tx, valid.account_nonce)
        if tx_hash in victims:
            raise PoolFull(f"the pool is full and tip {tx.priority} ranks no better than the "
                           "worst pooled transaction")

        # Accepted: from here on the pool changes.
        touched = {sender: None}
        if replaced is not None:
            self._remove(replaced)
            self._emit(replaced, "usurped", tx_hash)
        for stale in self._stale_of(sender, valid.account_nonce):
            self._remove(stale)
            self._ban(stale)
            self._emit(stale, "invalid", f"{StaleNonce.error_name()}: nonce was used")
        self._insert(tx, valid.account_nonce)
        for victim in victims:
            touched[self._txs[victim].sender] = None
            self._remove(victim)
            self._ban(victim)
            self._emit(victim, "dropped", "PoolFull: evicted for a better transaction")
        for who in touched:
            self._classify(who, new=tx_hash)
        return SubmitResult(tx_hash, tx_hash in self._ready, replaced)

    # ------------------------------------------------------------------ maintenance

    def on_block_imported(
        self,
        included_hashes: Iterable[bytes],
        state: StateReader,
        next_block: BlockInfo,
        genesis_hash: bytes,
    ) -> list[Removal]:
        """A new best block: drop its transactions, revalidate the rest on its ``state``.

        ``next_block`` is the info of the block after it (so its ``parent_hash``
        is the imported block's hash). Returns the transactions removed as
        invalid (stale nonce, expired, cannot pay …).
        """
        self._new_block(next_block.number)
        self._drop_included(included_hashes, next_block.parent_hash)
        return self._revalidate(state, next_block, genesis_hash)

    def on_reorg(
        self,
        retracted_raws: Iterable[bytes],
        state: StateReader,
        next_block: BlockInfo,
        genesis_hash: bytes,
        *,
        enacted_hashes: Iterable[bytes] = (),
    ) -> list[Removal]:
        """The best chain switched forks: the retracted blocks' transactions come back.

        ``retracted_raws`` are the encoded extrinsics of the retracted blocks
        (oldest block first), ``enacted_hashes`` the transaction hashes of every
        newly enacted block; ``state`` is the new best state. Retracted
        transactions are resubmitted regardless of bans (except those enacted
        again), then the whole pool is revalidated. Returns what was removed or
        could not come back, with reasons.
        """
        self._new_block(next_block.number)
        enacted = list(enacted_hashes)
        self._drop_included(enacted, next_block.parent_hash)
        removals = self._revalidate(state, next_block, genesis_hash)
        skip = set(enacted)
        for raw in retracted_raws:
            tx_hash = blake2_256(raw)
            if tx_hash in skip or tx_hash in self._txs:
                continue
            self._banned.pop(tx_hash, None)
            try:
                self.submit(raw, state, next_block, genesis_hash, ignore_ban=True)
            except PoolRejected as e:
                removals.append(self._removed(tx_hash, "invalid", f"{e.reason}: {e.message}"))
            except TooLowPriority as e:
                removals.append(self._removed(tx_hash, "usurped", str(e)))
            except PoolFull as e:
                removals.append(self._removed(tx_hash, "dropped", f"PoolFull: {e}"))
            except (AlreadyImported, TemporarilyBanned):
                continue
        return removals

    def remove_invalid(self, hashes_with_reasons: Iterable[tuple[bytes, str]]) -> list[Removal]:
        """Remove transactions block building found invalid (``reason``: the error name)."""
        removals: list[Removal] = []
        touched: dict[bytes, None] = {}
        for tx_hash, reason in hashes_with_reasons:
            self._ban(tx_hash)
            tx = self._txs.get(tx_hash)
            if tx is None:
                continue
            touched[tx.sender] = None
            self._remove(tx_hash)
            removals.append(self._removed(tx_hash, "invalid", reason))
        for who in touched:
            self._classify(who)
        return removals

    # ------------------------------------------------------------------ internals

    def _emit(self, tx_hash: bytes, status: TxStatus, detail: EventDetail = None) -> None:
        self._events.append(PoolEvent(tx_hash, status, detail))

    def _removed(self, tx_hash: bytes, status: TxStatus, reason: str) -> Removal:
        """Record a removal event and return the removal."""
        self._emit(tx_hash, status, reason)
        return Removal(tx_hash, status, reason)

    def _ban(self, tx_hash: bytes) -> None:
        banned = self._banned
        banned.pop(tx_hash, None)  # (re-inserted last: the bans stay in expiry order)
        banned[tx_hash] = self._block_number + self.ban_blocks

    def _new_block(self, number: int) -> None:
        """Move the pool's clock to ``number`` (the next block) and forget expired bans.

        Bans are kept in the order they expire (each lasts ``ban_blocks`` from the
        block it was made at), so the expired ones are the first few: every
        included transaction is banned, and a busy pool holds tens of thousands.
        (After a reorg to a lower block a later ban may expire first; it is
        forgotten when the ones before it are, and ``is_banned`` checks the
        expiry meanwhile.)
        """
        self._block_number = number
        banned = self._banned
        expired = list(takewhile(lambda ban: ban[1] <= number, banned.items()))
        for tx_hash, _ in expired:
            del banned[tx_hash]

    def _insert(self, tx: PooledTransaction, account_nonce: int) -> None:
        self._txs[tx.tx_hash] = tx
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx.tx_hash
        self._account_nonce[tx.sender] = account_nonce
        self._bytes += tx.length

    def _remove(self, tx_hash: bytes) -> PooledTransaction:
        """Take a transaction out of every index (the caller reclassifies its sender)."""
        tx = self._txs.pop(tx_hash)
        self._ready.discard(tx_hash)
        self._bytes -= tx.length
        by_nonce = self._by_sender[tx.sender]
        del by_nonce[tx.nonce]
        if not by_nonce:
            del self._by_sender[tx.sender]
            del self._account_nonce[tx.sender]
        return tx

    def _stale_of(self, sender: bytes, account_nonce: int) -> list[bytes]:
        """The sender's pooled transactions whose nonce is below ``account_nonce``."""
        by_nonce = self._by_sender.get(sender, {})
        return [by_nonce[n] for n in sorted(by_nonce) if n < account_nonce]

    def _classify(self, sender: bytes, new: bytes | None = None) -> None:
        """Recompute which of the sender's transactions are ready; record the changes.

        ``new`` (a just-inserted hash) always gets an event for where it went.
        """
        by_nonce = self._by_sender.get(sender)
        if by_nonce is None:
            return
        ready_nonces = _contiguous(by_nonce, self._account_nonce[sender])
        for nonce in sorted(by_nonce):
            tx_hash = by_nonce[nonce]
            was_ready = tx_hash in self._ready
            is_ready = nonce in ready_nonces
            if is_ready:
                self._ready.add(tx_hash)
            else:
                self._ready.discard(tx_hash)
            if tx_hash == new or was_ready != is_ready:
                self._emit(tx_hash, "ready" if is_ready else "future")
                self._push_eviction_key(self._txs[tx_hash], is_ready)

    def _push_eviction_key(self, tx: PooledTransaction, ready: bool) -> None:
        """Record ``tx``'s rank for eviction (lazily: outdated keys are skipped when met)."""
        heapq.heappush(self._eviction, (ready, tx.priority, -tx.arrival, tx.tx_hash))
        if len(self._eviction) > 2 * len(self._txs) + 64:
            self._eviction = [(h in self._ready, t.priority, -t.arrival, h)
                              for h, t in self._txs.items()]
            heapq.heapify(self._eviction)

    def _key_current(self, key: EvictionKey) -> bool:
        """Whether an eviction key still describes a pooled transaction as it is now."""
        ready, _, neg_arrival, tx_hash = key
        tx = self._txs.get(tx_hash)
        return tx is not None and tx.arrival == -neg_arrival and (tx_hash in self._ready) == ready

    def _select_victims(self, tx: PooledTransaction, account_nonce: int) -> list[bytes]:
        """What must be evicted (maybe ``tx`` itself) for ``tx`` to fit the limits.

        Computed on the pool as it would be after inserting ``tx``: its
        replacement and the sender's stale transactions gone, the sender's
        queue reclassified. Other senders' ranks come from the eviction heap
        (worst first); the sender's own are ranked here. Changes nothing.
        """
        sender = tx.sender
        current = self._by_sender.get(sender, {})
        view = {n: h for n, h in current.items() if n >= account_nonce}
        view[tx.nonce] = tx.tx_hash
        leaving = [h for n, h in current.items() if view.get(n) != h]  # stale or replaced
        count = len(self._txs) - len(leaving) + 1
        size = self._bytes - sum(self._txs[h].length for h in leaving) + tx.length
        if count <= self.max_count and size <= self.max_bytes:
            return []

        def pooled(tx_hash: bytes) -> PooledTransaction:
            return tx if tx_hash == tx.tx_hash else self._txs[tx_hash]

        ready_nonces = _contiguous(view, account_nonce)
        own: list[EvictionKey] = sorted(
            (n in ready_nonces, pooled(h).priority, -pooled(h).arrival, h) for n, h in view.items()
        )
        heap = self._eviction
        put_back: list[EvictionKey] = []
        evicted: dict[bytes, None] = {}
        while count > self.max_count or size > self.max_bytes:
            while heap and (not self._key_current(heap[0])
                            or self._txs[heap[0][3]].sender == sender):
                key = heapq.heappop(heap)
                if self._key_current(key):
                    put_back.append(key)  # the sender's: ranked in ``own`` instead
            if own and (not heap or own[0] < heap[0]):
                worst = own.pop(0)
            elif heap:
                worst = heapq.heappop(heap)
                put_back.append(worst)
            else:
                break
            victim = pooled(worst[3])
            if victim.tx_hash in evicted:
                continue
            nonces = view if victim.sender == sender else self._by_sender[victim.sender]
            for nonce in sorted(n for n in nonces if n >= victim.nonce):
                dependent = nonces[nonce]
                if dependent not in evicted:
                    evicted[dependent] = None
                    count -= 1
                    size -= pooled(dependent).length
        for key in put_back:
            heapq.heappush(heap, key)
        return list(evicted)

    def _drop_included(self, included_hashes: Iterable[bytes], block_hash: bytes) -> None:
        """Included transactions leave the pool (``inBlock``) and are banned."""
        touched: dict[bytes, None] = {}
        for tx_hash in included_hashes:
            self._ban(tx_hash)
            tx = self._txs.get(tx_hash)
            if tx is None:
                continue
            touched[tx.sender] = None
            self._remove(tx_hash)
            self._emit(tx_hash, "inBlock", block_hash)
        for who in touched:
            self._classify(who)

    def _revalidate(
        self, state: StateReader, block: BlockInfo, genesis_hash: bytes
    ) -> list[Removal]:
        """Check every pooled transaction again; remove the invalid, reclassify the rest."""
        removals: list[Removal] = []
        nonces: dict[bytes, int] = {}
        for tx_hash, tx in list(self._txs.items()):
            try:
                valid, _ = _validate(state, block, tx.ext, tx.length, genesis_hash, tx.bound_hash)
            except InvalidTransaction as e:
                self._remove(tx_hash)
                self._ban(tx_hash)
                removals.append(self._removed(tx_hash, "invalid", f"{e.error_name()}: {e}"))
            else:
                nonces[tx.sender] = valid.account_nonce
        for sender in list(self._by_sender):
            self._account_nonce[sender] = nonces[sender]
            self._classify(sender)
        return removals

    def _ready_order(self, limit: int | None) -> list[PooledTransaction]:
        """Best tip first across senders, by nonce within a sender, ties by arrival."""
        heap: list[tuple[int, int, bytes]] = []
        for sender, by_nonce in self._by_sender.items():
            first = by_nonce.get(self._account_nonce[sender])
            if first is not None and first in self._ready:
                tx = self._txs[first]
                heap.append((-tx.priority, tx.arrival, first))
        heapq.heapify(heap)
        out: list[PooledTransaction] = []
        while heap and (limit is None or len(out) < limit):
            _, _, tx_hash = heapq.heappop(heap)
            tx = self._txs[tx_hash]
            out.append(tx)
            following = self._by_sender[tx.sender].get(tx.nonce + 1)
            if following is not None and following in self._ready:
                nxt = self._txs[following]
                heapq.heappush(heap, (-nxt.priority, nxt.arrival, following))
        return out


def _contiguous(by_nonce: dict[int, bytes], start: int) -> set[int]:
    """The nonces ``start, start + 1, …`` present in ``by_nonce`` without a gap."""
    ready: set[int] = set()
    nonce = start
    while nonce in by_nonce:
        ready.add(nonce)
        nonce += 1
    return ready


def _validate(
    state: StateReader,
    block: BlockInfo,
    ext: Extrinsic,
    length: int,
    genesis_hash: bytes,
    verified_bound_hash: bytes | None,
) -> tuple[executive.ValidTransaction, bytes]:
    """check_transaction, skipping the signature if it was verified for the same birth hash.

    Returns the validity and the birth hash the signature is bound to.
    """
    try:
        bound_hash: bytes | None = executive.birth_hash(state, block, ext, genesis_hash)
    except InvalidTransaction:
        bound_hash = None  # check_transaction raises the right error below
    checked = verified_bound_hash is not None and bound_hash == verified_bound_hash
    valid = executive.check_transaction(state, block, ext, length, genesis_hash,
                                        signature_checked=checked)
    assert bound_hash is not None  # check_transaction computed it successfully too
    return valid, bound_hash
