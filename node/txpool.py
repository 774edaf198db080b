"""The transaction pool: validated extrinsics waiting for a block (Substrate's semantics).

A plain synchronous data structure: the node's trio tasks call it, it does no
I/O and never blocks. Every operation on one submission costs O(log n) in the
pool's size (plus the work of the transactions it promotes or evicts, each of
which is handled once); nothing rebuilds or sorts a whole queue per call.

Queues
  Each signer has a queue of its pooled transactions by nonce. Those from the
  signer's account nonce up to the first gap are **ready** (they can go into
  the next block in order); the ones after a gap are **future**. A future
  transaction is promoted as soon as the gap is filled, by a submission or by
  a block that moves the account nonce.

Ordering
  :meth:`TransactionPool.ready` yields transactions highest priority (tip)
  first across signers, but each signer's strictly by nonce. Ties go to the
  earlier arrival (a counter, not a clock). This is the order block building
  takes.

Replacement
  A transaction with the same (signer, nonce) as a pooled one replaces it only
  with a strictly higher tip; the old one is reported ``usurped``.

Limits (:class:`PoolLimits`)
  * Ready: ``ready_count`` transactions and ``ready_bytes`` encoded bytes.
    When a submission would exceed them, the worst signer's *last* ready
    transaction is evicted (lowest tip, then the newest): evicting the last of
    a run never strands another transaction. If the newcomer would itself be
    the one to go it is refused with :class:`PoolFull`.
  * Future: a separate, smaller limit (``future_count``, ``future_bytes``;
    a tenth of the ready limits, as Substrate's), ``future_per_sender``
    future transactions per signer (:class:`TooManyFuture`), and a nonce at
    most ``max_nonce_ahead`` past the signer's next nonce
    (:class:`NonceTooFarAhead`). A future transaction that waits
    ``future_longevity`` blocks is dropped, mortal or not. Future transactions
    never pay a fee (they are never included), so these limits are what keep
    one account from filling the pool for free.
  * Funds: a signer's pooled transactions must be payable together: its free
    balance must cover the fees and tips of all of them
    (:class:`CannotPayPooledFees`).

  These pool-policy checks need one state read and no signature check, and run
  first: a refused submission costs about a tenth of an accepted one.

Bans
  Hashes that were rejected as invalid, evicted for a better transaction,
  found invalid or included in a block are banned for ``ban_blocks`` blocks
  (block numbers, not wall clock), so re-gossip costs one dict lookup.

Events
  Status changes are recorded as :class:`PoolEvent` ``(tx_hash, status,
  detail)`` and handed to the node by :meth:`TransactionPool.drain_events`;
  the node forwards them to RPC subscriptions (and reports ``finalized``
  itself). Details: ``inBlock`` the block hash; ``usurped`` the replacing
  transaction's hash; ``invalid``/``dropped`` the reason as text; ``ready``/``future`` None.

A refused submission leaves the queues unchanged (it may only add a ban).
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable
from dataclasses import dataclass
from itertools import takewhile
from typing import Literal, NamedTuple

from runtime import codec, executive
from runtime.crypto import blake2_256
from runtime.executive import InvalidTransaction, StaleNonce
from runtime.extrinsic import Extrinsic, decode_extrinsic
from runtime.modules import system
from runtime.state import StateReader
from runtime.support import BlockInfo

MALFORMED = "Malformed"

TxStatus = Literal["ready", "future", "inBlock", "finalized", "dropped", "invalid", "usurped"]
EventDetail = bytes | str | None
RankKey = tuple[int, int, bytes]  # (priority, -arrival, hash): the lowest is the worst


@dataclass(frozen=True)
class PoolLimits:
    """The pool's limits; see the module docstring. Defaults are Substrate's where it has one."""

    ready_count: int = 8192  # --pool-limit
    ready_bytes: int = 20 * 1024 * 1024  # --pool-kbytes 20480
    future_count: int = 819  # a tenth of the ready limits
    future_bytes: int = 2 * 1024 * 1024
    future_per_sender: int = 16
    max_nonce_ahead: int = 64  # a nonce at most this far past the signer's next nonce
    future_longevity: int = 64  # blocks a transaction may wait in future
    ban_blocks: int = 30

    @classmethod
    def for_ready(cls, count: int, kbytes: int) -> PoolLimits:
        """Limits for a ready queue of ``count`` transactions and ``kbytes`` KiB; the future
        queue gets a tenth of each (at least one transaction), as in Substrate."""
        return cls(ready_count=count, ready_bytes=kbytes * 1024,
                   future_count=max(1, count // 10), future_bytes=max(1, kbytes * 1024 // 10))


# ---------------------------------------------------------------------------
# Errors: one per way a submission is refused.


class PoolError(Exception):
    """Base of the reasons a transaction was not accepted into the pool."""

    @property
    def reason(self) -> str:
        """The refusal's name, as RPC answers and the network's peer scoring see it."""
        return type(self).__name__


class PoolRejected(PoolError):
    """The transaction is invalid; ``reason`` names why (``Malformed`` or an InvalidTransaction)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self._reason = reason
        self.message = message

    @property
    def reason(self) -> str:
        return self._reason


class AlreadyImported(PoolError):
    """A transaction with the same hash is already in the pool."""


class TooLowPriority(PoolError):
    """The signer's nonce is taken in the pool and the new tip is not strictly higher."""


class PoolFull(PoolError):
    """The ready or the future queue is at its limits and the transaction ranks no better
    than the worst one there."""


class TooManyFuture(PoolError):
    """The signer already has ``future_per_sender`` transactions waiting for a nonce gap."""


class NonceTooFarAhead(PoolError):
    """The nonce is more than ``max_nonce_ahead`` past the signer's next nonce."""


class CannotPayPooledFees(PoolError):
    """The signer's balance does not cover the fees of its pooled transactions and this one."""


class TemporarilyBanned(PoolError):
    """The hash was recently rejected, evicted or included; it is refused for a while."""


# Refusals that say the sender is asking the pool for more than it gives anyone: a gossip
# peer that keeps relaying such transactions loses reputation (p2p/network.py).
LIMIT_REFUSALS = frozenset({"PoolFull", "TooManyFuture", "NonceTooFarAhead"})


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
    cost: int  # fee + tip: what the signer must be able to pay for it

    @property
    def sender(self) -> bytes:
        return self.ext.signer

    @property
    def nonce(self) -> int:
        return self.ext.nonce

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def rank(self) -> RankKey:
        return (self.priority, -self.arrival, self.tx_hash)


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


class _Sender:
    """One signer's pooled transactions: ready are nonces ``account_nonce .. ready_end - 1``."""

    __slots__ = ("account", "account_nonce", "free", "txs", "ready_end", "cost")

    def __init__(self, account: bytes, account_nonce: int, free: int) -> None:
        self.account = account
        self.account_nonce = account_nonce
        self.free = free  # the free balance last seen
        self.txs: dict[int, PooledTransaction] = {}
        self.ready_end = account_nonce  # the first nonce after the ready run (never pooled)
        self.cost = 0  # fee + tip of every pooled transaction

    @property
    def ready_count(self) -> int:
        return self.ready_end - self.account_nonce

    @property
    def future_count(self) -> int:
        return len(self.txs) - self.ready_count

    def tail(self) -> PooledTransaction | None:
        """The last ready transaction (the one that can leave without stranding another)."""
        return self.txs.get(self.ready_end - 1) if self.ready_end > self.account_nonce else None

    def is_ready(self, nonce: int) -> bool:
        return self.account_nonce <= nonce < self.ready_end


# ---------------------------------------------------------------------------
# The pool


class TransactionPool:
    """Ready and future queues of validated extrinsics, with limits, bans and events."""

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._txs: dict[bytes, PooledTransaction] = {}  # by hash, in arrival order
        self._senders: dict[bytes, _Sender] = {}
        self._ready_count = 0
        self._ready_bytes = 0
        self._future_bytes = 0
        # Future transactions -> the block number they started waiting at, oldest first.
        self._future_since: dict[bytes, int] = {}
        self._banned: dict[bytes, int] = {}  # hash -> first block number it is allowed again
        self._block_number = 0  # number of the next block, as last told (never decreases)
        self._arrivals = 0
        self._events: list[PoolEvent] = []
        # Eviction candidates, worst first, kept lazily (an entry that no longer describes
        # the pool is skipped when met): every signer's last ready transaction, and every
        # future transaction.
        self._tails: list[RankKey] = []
        self._futures: list[RankKey] = []

    # ------------------------------------------------------------------ queries

    def status(self) -> PoolStatus:
        return PoolStatus(self._ready_count, len(self._future_since),
                          self._ready_bytes + self._future_bytes)

    def __len__(self) -> int:
        return len(self._txs)

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> PooledTransaction | None:
        return self._txs.get(tx_hash)

    def is_ready(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs and tx_hash not in self._future_since

    def is_banned(self, tx_hash: bytes, block_number: int | None = None) -> bool:
        """Whether ``tx_hash`` is banned at ``block_number`` (default: the next block)."""
        until = self._banned.get(tx_hash)
        number = self._block_number if block_number is None else block_number
        return until is not None and number < until

    def next_nonce(self, sender: bytes, account_nonce: int) -> int:
        """The nonce ``sender``'s next transaction should carry: ``account_nonce`` (its nonce
        on the best block) followed by its ready transactions. O(1) while the pool is in step
        with the best block."""
        queue = self._senders.get(sender)
        if queue is None:
            return account_nonce
        if queue.account_nonce == account_nonce:
            return queue.ready_end
        nonce = account_nonce  # not yet told of the block that moved it
        while nonce in queue.txs:
            nonce += 1
        return nonce

    def ready(self, limit: int | None = None) -> list[bytes]:
        """Ready extrinsics (encoded) in an order valid for inclusion, best first."""
        return [tx.raw for tx in self._ready_order(limit)]

    def pending(self) -> list[bytes]:
        """Every pooled extrinsic: the ready ones in inclusion order, then the future ones
        (longest waiting first)."""
        return self.ready() + [self._txs[tx_hash].raw for tx_hash in self._future_since]

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

        Raises a :class:`PoolError` subclass if it is not accepted; the queues are
        then unchanged (if the signer's queue was behind ``state``, it first catches up,
        as the next block import would have done).
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

        # Pool policy first (one state read, no signature check): refusing is cheap.
        account = system.account_info(state, ext.signer)
        queue = self._senders.get(ext.signer)
        if queue is not None and queue.account_nonce != account.nonce:
            self._follow_account(queue, account, frozenset(), block.parent_hash)
            queue = self._senders.get(ext.signer)
        cost = executive.compute_fee(len(raw), executive.call_weight(ext)) + ext.tip
        replaced = self._check_policy(ext, queue, account, cost)
        try:
            valid, bound_hash = _validate(state, block, ext, len(raw), genesis_hash, None)
        except InvalidTransaction as e:
            self._ban(tx_hash)
            raise PoolRejected(e.error_name(), str(e)) from None
        self._arrivals += 1
        tx = PooledTransaction(tx_hash, raw, ext, valid.priority, self._arrivals, bound_hash,
                               cost)
        victims = self._victims_for(tx, queue, replaced, account.nonce)

        # Accepted: from here on the pool changes.
        for victim in victims:
            self._emit(victim.tx_hash, "dropped", "PoolFull: evicted for a better transaction")
            self._take_out(victim)
            self._ban(victim.tx_hash)
        queue = self._senders.get(ext.signer)
        if queue is None:
            queue = self._senders[ext.signer] = _Sender(ext.signer, account.nonce, account.free)
        if replaced is not None:
            self._emit(replaced.tx_hash, "usurped", tx_hash)
            self._swap(queue, replaced, tx)
        else:
            self._put(queue, tx)
        return SubmitResult(tx_hash, self.is_ready(tx_hash),
                            None if replaced is None else replaced.tx_hash)

    def _check_policy(self, ext: Extrinsic, queue: _Sender | None, account: system.AccountInfo,
                      cost: int) -> PooledTransaction | None:
        """Refuse what the pool's policy refuses; returns the transaction ``ext`` would replace.

        A nonce below the account's is left to the validity check (``StaleNonce``).
        """
        if ext.nonce < account.nonce:
            return None
        replaced = None if queue is None else queue.txs.get(ext.nonce)
        if replaced is not None:
            if ext.tip <= replaced.priority:
                raise TooLowPriority(f"nonce {ext.nonce} is taken by a transaction with tip "
                                     f"{replaced.priority}; tip {ext.tip} is not higher")
        else:
            next_nonce = account.nonce if queue is None else queue.ready_end
            limits = self.limits
            if ext.nonce - next_nonce > limits.max_nonce_ahead:
                raise NonceTooFarAhead(
                    f"nonce {ext.nonce} is more than {limits.max_nonce_ahead} past the signer's "
                    f"next nonce {next_nonce}")
            if (ext.nonce > next_nonce and queue is not None
                    and queue.future_count >= limits.future_per_sender):
                raise TooManyFuture(
                    f"the signer already has {queue.future_count} transactions waiting for "
                    f"nonce {next_nonce}")
        pooled = 0 if queue is None else queue.cost - (0 if replaced is None else replaced.cost)
        if pooled and account.free < pooled + cost:  # (alone: the validity check names it)
            count = 0 if queue is None else len(queue.txs) - (replaced is not None)
            raise CannotPayPooledFees(
                f"balance {account.free} does not cover {pooled} for the signer's {count} "
                f"pooled transactions plus {cost} for this one")
        return replaced

    # ------------------------------------------------------------------ maintenance

    def on_block_imported(
        self,
        included_hashes: Iterable[bytes],
        state: StateReader,
        next_block: BlockInfo,
        genesis_hash: bytes,
        *,
        changed_keys: Container[bytes] | None = None,
    ) -> list[Removal]:
        """A new best block: drop its transactions, revalidate the rest on its ``state``.

        ``next_block`` is the info of the block after it (so its ``parent_hash``
        is the imported block's hash). A signer whose account (nonce, balance) did
        not change keeps its transactions after a cheap mortality check; the others'
        are validated again. ``changed_keys``, the block's state write set if the
        caller has it, saves reading every signer's account to find out. Returns the
        transactions removed as invalid (stale nonce, expired, cannot pay …) or
        dropped (waited too long in future).
        """
        included = frozenset(included_hashes)
        for tx_hash in included:
            self._ban(tx_hash)
        self._new_block(next_block.number)
        removals = self._expire_future()
        removals += self._revalidate(state, next_block, genesis_hash, included, everyone=False,
                                     changed_keys=changed_keys)
        return removals

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
        newly enacted block; ``state`` is the new best state. The whole pool is
        revalidated, then retracted transactions are resubmitted regardless of
        bans (except those enacted again). Returns what was removed or could not
        come back, with reasons.
        """
        enacted = frozenset(enacted_hashes)
        for tx_hash in enacted:
            self._ban(tx_hash)
        self._new_block(next_block.number)
        removals = self._expire_future()
        removals += self._revalidate(state, next_block, genesis_hash, enacted, everyone=True)
        for raw in retracted_raws:
            tx_hash = blake2_256(raw)
            if tx_hash in enacted or tx_hash in self._txs:
                continue
            self._banned.pop(tx_hash, None)
            try:
                self.submit(raw, state, next_block, genesis_hash, ignore_ban=True)
            except PoolRejected as e:
                removals.append(self._removed(tx_hash, "invalid", f"{e.reason}: {e.message}"))
            except TooLowPriority as e:
                removals.append(self._removed(tx_hash, "usurped", str(e)))
            except (AlreadyImported, TemporarilyBanned):
                continue
            except PoolError as e:  # a limit
                removals.append(self._removed(tx_hash, "dropped", f"{e.reason}: {e}"))
        return removals

    def remove_invalid(self, hashes_with_reasons: Iterable[tuple[bytes, str]]) -> list[Removal]:
        """Remove transactions block building found invalid (``reason``: the error name).

        A signer's later transactions wait in future for the nonce to be filled again.
        """
        removals: list[Removal] = []
        for tx_hash, reason in hashes_with_reasons:
            self._ban(tx_hash)
            tx = self._txs.get(tx_hash)
            if tx is None:
                continue
            removals.append(self._removed(tx_hash, "invalid", reason))
            self._take_out(tx)
        removals += self._enforce_future_limits()
        return removals

    # ------------------------------------------------------------------ events and bans

    def _emit(self, tx_hash: bytes, status: TxStatus, detail: EventDetail = None) -> None:
        self._events.append(PoolEvent(tx_hash, status, detail))

    def _removed(self, tx_hash: bytes, status: TxStatus, reason: str) -> Removal:
        """Record a removal event and return the removal."""
        self._emit(tx_hash, status, reason)
        return Removal(tx_hash, status, reason)

    def _ban(self, tx_hash: bytes) -> None:
        banned = self._banned
        banned.pop(tx_hash, None)  # (re-inserted last: the bans stay in expiry order)
        banned[tx_hash] = self._block_number + self.limits.ban_blocks

    def _new_block(self, number: int) -> None:
        """Move the pool's clock to ``number`` (the next block) and forget expired bans.

        The clock never goes back (after a reorg to a shorter chain, bans and future
        waits simply last a little longer). Bans are kept in the order they expire,
        so the expired ones are the first few: every included transaction is banned,
        and a busy pool holds tens of thousands.
        """
        self._block_number = number = max(self._block_number, number)
        banned = self._banned
        expired = list(takewhile(lambda ban: ban[1] <= number, banned.items()))
        for tx_hash, _ in expired:
            del banned[tx_hash]

    # ------------------------------------------------------------------ queues

    def _put(self, queue: _Sender, tx: PooledTransaction) -> None:
        """Insert a transaction into a free nonce slot of its signer's queue."""
        self._txs[tx.tx_hash] = tx
        queue.txs[tx.nonce] = tx
        queue.cost += tx.cost
        if tx.nonce == queue.ready_end:
            self._promote(queue)
        else:
            self._make_future(tx)

    def _swap(self, queue: _Sender, old: PooledTransaction, new: PooledTransaction) -> None:
        """Replace ``old`` by ``new`` (same signer and nonce) where it stands."""
        del self._txs[old.tx_hash]
        self._txs[new.tx_hash] = new
        queue.txs[new.nonce] = new
        queue.cost += new.cost - old.cost
        if queue.is_ready(new.nonce):
            self._ready_bytes += new.length - old.length
            self._emit(new.tx_hash, "ready")
            if new.nonce == queue.ready_end - 1:
                heapq.heappush(self._tails, new.rank)
        else:
            del self._future_since[old.tx_hash]
            self._future_bytes -= old.length
            self._make_future(new)  # (its wait starts again)

    def _promote(self, queue: _Sender) -> None:
        """Extend the signer's ready run over the nonces present from ``ready_end`` on."""
        start = queue.ready_end
        while (tx := queue.txs.get(queue.ready_end)) is not None:
            if self._future_since.pop(tx.tx_hash, None) is not None:
                self._future_bytes -= tx.length
            self._ready_count += 1
            self._ready_bytes += tx.length
            self._emit(tx.tx_hash, "ready")
            queue.ready_end += 1
        if queue.ready_end != start:
            heapq.heappush(self._tails, queue.txs[queue.ready_end - 1].rank)
            self._compact_heaps()

    def _make_future(self, tx: PooledTransaction) -> None:
        self._future_since[tx.tx_hash] = self._block_number
        self._future_bytes += tx.length
        heapq.heappush(self._futures, tx.rank)
        self._emit(tx.tx_hash, "future")
        self._compact_heaps()

    def _demote(self, queue: _Sender, start: int) -> None:
        """Make the signer's ready transactions from nonce ``start`` on future."""
        for nonce in range(start, queue.ready_end):
            tx = queue.txs[nonce]
            self._ready_count -= 1
            self._ready_bytes -= tx.length
            self._make_future(tx)
        queue.ready_end = start
        tail = queue.tail()
        if tail is not None:
            heapq.heappush(self._tails, tail.rank)

    def _detach(self, queue: _Sender, tx: PooledTransaction) -> None:
        """Remove a transaction from every index, leaving its signer's ``ready_end`` alone."""
        del self._txs[tx.tx_hash]
        del queue.txs[tx.nonce]
        queue.cost -= tx.cost
        if self._future_since.pop(tx.tx_hash, None) is None:
            self._ready_count -= 1
            self._ready_bytes -= tx.length
        else:
            self._future_bytes -= tx.length

    def _take_out(self, tx: PooledTransaction) -> None:
        """Remove a transaction; the signer's later ready ones become future."""
        queue = self._senders[tx.sender]
        ready = queue.is_ready(tx.nonce)
        self._detach(queue, tx)
        if ready:
            self._demote(queue, tx.nonce + 1)  # the later ones wait for the nonce again
            queue.ready_end = tx.nonce
            tail = queue.tail()
            if tail is not None:
                heapq.heappush(self._tails, tail.rank)
        if not queue.txs:
            del self._senders[tx.sender]

    def _follow_account(self, queue: _Sender, account: system.AccountInfo,
                        included: frozenset[bytes], block_hash: bytes) -> list[Removal]:
        """The signer's account is now ``account``: its transactions below the new nonce leave
        (``inBlock`` if ``included``, else invalid as stale) and the ready run starts at the
        new nonce."""
        queue.free = account.free
        old_nonce, new_nonce = queue.account_nonce, account.nonce
        if new_nonce == old_nonce:
            return []
        removals: list[Removal] = []
        if new_nonce < old_nonce:  # a reorg to a chain where the account is behind
            self._demote(queue, old_nonce)
            queue.ready_end = new_nonce
            stale: list[int] = []
        elif new_nonce - old_nonce > len(queue.txs):
            stale = sorted(n for n in queue.txs if n < new_nonce)
        else:
            stale = [n for n in range(old_nonce, new_nonce) if n in queue.txs]
        for nonce in stale:
            tx = queue.txs[nonce]
            self._detach(queue, tx)
            if tx.tx_hash in included:
                self._emit(tx.tx_hash, "inBlock", block_hash)
            else:
                self._ban(tx.tx_hash)
                removals.append(self._removed(tx.tx_hash, "invalid",
                                              f"{StaleNonce.error_name()}: nonce was used"))
        queue.account_nonce = new_nonce
        if queue.ready_end < new_nonce:  # the run ended before the new nonce: start afresh
            queue.ready_end = new_nonce
        if not queue.txs:
            del self._senders[queue.account]
        else:
            self._promote(queue)
        return removals

    # ------------------------------------------------------------------ limits

    def _victims_for(self, tx: PooledTransaction, queue: _Sender | None,
                     replaced: PooledTransaction | None,
                     account_nonce: int) -> list[PooledTransaction]:
        """What must be evicted for ``tx`` to fit the limits (worst first); PoolFull if
        ``tx`` itself would be. Changes nothing."""
        limits = self.limits
        next_nonce = account_nonce if queue is None else queue.ready_end
        if replaced is not None and replaced.tx_hash in self._future_since or (
                replaced is None and tx.nonce > next_nonce):
            # Future: the newcomer competes with the other future transactions only.
            old = 0 if replaced is None else replaced.length
            return self._worst_futures(tx, replaced,
                                       len(self._future_since) + (replaced is None)
                                       - limits.future_count,
                                       self._future_bytes + tx.length - old - limits.future_bytes)
        # Ready: the newcomer may promote the signer's future transactions after it.
        promoted: list[PooledTransaction] = []
        if replaced is None and queue is not None:
            nonce = tx.nonce + 1
            while (following := queue.txs.get(nonce)) is not None:
                promoted.append(following)
                nonce += 1
        old = 0 if replaced is None else replaced.length
        over_count = (self._ready_count + (replaced is None) + len(promoted)
                      - limits.ready_count)
        over_bytes = (self._ready_bytes + tx.length - old + sum(p.length for p in promoted)
                      - limits.ready_bytes)
        if over_count <= 0 and over_bytes <= 0:
            return []
        return self._worst_tails(tx, promoted, over_count, over_bytes)

    def _worst_futures(self, tx: PooledTransaction, replaced: PooledTransaction | None,
                       over_count: int, over_bytes: int) -> list[PooledTransaction]:
        """The worst future transactions to evict until the excess is made up."""
        heap = self._futures
        victims: list[PooledTransaction] = []
        popped: list[RankKey] = []
        try:
            while over_count > 0 or over_bytes > 0:
                while heap and (not self._is_future(heap[0]) or (
                        replaced is not None and heap[0][2] == replaced.tx_hash)):
                    key = heapq.heappop(heap)
                    if self._is_future(key):
                        popped.append(key)  # the replaced one: it leaves anyway
                if not heap or tx.rank < heap[0]:
                    raise PoolFull(f"the future queue is full and tip {tx.priority} ranks no "
                                   "better than the worst transaction waiting there")
                key = heapq.heappop(heap)
                popped.append(key)
                victim = self._txs[key[2]]
                victims.append(victim)
                over_count -= 1
                over_bytes -= victim.length
        finally:
            for key in popped:
                heapq.heappush(heap, key)
        return victims

    def _worst_tails(self, tx: PooledTransaction, promoted: list[PooledTransaction],
                     over_count: int, over_bytes: int) -> list[PooledTransaction]:
        """Ready transactions to evict, each the last of its signer's run at that point.

        The newcomer's own signer offers the newcomer's run (the transactions it promotes,
        last first, then the newcomer: evicting the newcomer refuses it); every other
        signer its last ready transaction, from the heap, and once that is taken its next
        one, from a small local heap.
        """
        heap = self._tails
        own = [*promoted[::-1], tx]
        own_index = 0
        taken: set[bytes] = set()
        nexts: list[RankKey] = []  # other signers' next tails once their tail is taken
        popped: list[RankKey] = []
        victims: list[PooledTransaction] = []
        try:
            while over_count > 0 or over_bytes > 0:
                while heap and (heap[0][2] in taken or not self._is_tail(heap[0])
                                or self._txs[heap[0][2]].sender == tx.sender):
                    key = heapq.heappop(heap)
                    if key[2] not in taken and self._is_tail(key):
                        popped.append(key)  # the newcomer's signer: ranked from ``own``
                best = min(own[own_index].rank, heap[0] if heap else own[own_index].rank,
                           nexts[0] if nexts else own[own_index].rank)
                if best == own[own_index].rank:
                    victim = own[own_index]
                    own_index += 1
                    if victim is tx:
                        raise PoolFull(f"the pool is full and tip {tx.priority} ranks no better "
                                       "than the worst ready transaction")
                else:
                    if nexts and best == nexts[0]:
                        heapq.heappop(nexts)
                    else:
                        popped.append(heapq.heappop(heap))
                    victim = self._txs[best[2]]
                    taken.add(victim.tx_hash)
                    signer = self._senders[victim.sender]
                    if signer.is_ready(victim.nonce - 1):
                        heapq.heappush(nexts, signer.txs[victim.nonce - 1].rank)
                victims.append(victim)
                over_count -= 1
                over_bytes -= victim.length
        finally:
            for key in popped:
                heapq.heappush(heap, key)
        return victims

    def _enforce_future_limits(self) -> list[Removal]:
        """After removals made transactions future: trim each signer's future transactions
        (the highest nonces go) and the future queue (the worst go) back to the limits."""
        limits = self.limits
        removals: list[Removal] = []
        for queue in [q for q in self._senders.values()
                      if q.future_count > limits.future_per_sender]:
            waiting = sorted(n for n in queue.txs if n >= queue.ready_end)
            for nonce in waiting[limits.future_per_sender:]:
                tx = queue.txs[nonce]
                removals.append(self._removed(tx.tx_hash, "dropped",
                                              "TooManyFuture: too many transactions wait for "
                                              "an earlier nonce"))
                self._take_out(tx)
        heap = self._futures
        while heap and (len(self._future_since) > limits.future_count
                        or self._future_bytes > limits.future_bytes):
            key = heapq.heappop(heap)
            if self._is_future(key):
                removals.append(self._removed(key[2], "dropped",
                                              "PoolFull: the future queue is full"))
                self._take_out(self._txs[key[2]])
        return removals

    def _expire_future(self) -> list[Removal]:
        """Drop the future transactions that waited ``future_longevity`` blocks."""
        deadline = self._block_number - self.limits.future_longevity
        expired = list(takewhile(lambda entry: entry[1] <= deadline,
                                 self._future_since.items()))
        removals: list[Removal] = []
        for tx_hash, since in expired:
            removals.append(self._removed(
                tx_hash, "dropped", f"FutureExpired: waited for an earlier nonce since block "
                f"#{since}"))
            self._take_out(self._txs[tx_hash])
        return removals

    def _is_future(self, key: RankKey) -> bool:
        """Whether an entry of the future heap still describes a future transaction."""
        tx = self._txs.get(key[2])
        return tx is not None and tx.arrival == -key[1] and key[2] in self._future_since

    def _is_tail(self, key: RankKey) -> bool:
        """Whether an entry of the tails heap is still its signer's last ready transaction."""
        tx = self._txs.get(key[2])
        return (tx is not None and tx.arrival == -key[1] and key[2] not in self._future_since
                and self._senders[tx.sender].ready_end == tx.nonce + 1)

    def _compact_heaps(self) -> None:
        """Rebuild a lazy heap once it holds more outdated entries than current ones."""
        if len(self._tails) > 2 * len(self._senders) + 64:
            self._tails = list({k for k in self._tails if self._is_tail(k)})
            heapq.heapify(self._tails)
        if len(self._futures) > 2 * len(self._future_since) + 64:
            self._futures = list({k for k in self._futures if self._is_future(k)})
            heapq.heapify(self._futures)

    # ------------------------------------------------------------------ revalidation

    def _revalidate(self, state: StateReader, block: BlockInfo, genesis_hash: bytes,
                    included: frozenset[bytes], *, everyone: bool,
                    changed_keys: Container[bytes] | None = None) -> list[Removal]:
        """Bring every signer's queue in step with ``state``.

        A signer whose account (nonce and balance) is unchanged still has valid
        transactions, except mortal ones whose window ended; the others' (or everyone's,
        after a reorg) are checked again, without the signature when the birth hash is
        the one it was verified against.
        """
        removals: list[Removal] = []
        account_key = system.account.key
        for sender, queue in list(self._senders.items()):
            if everyone or changed_keys is None or account_key(sender) in changed_keys:
                account = system.account_info(state, sender)
                changed = everyone or (account.nonce, account.free) != (queue.account_nonce,
                                                                        queue.free)
                removals += self._follow_account(queue, account, included, block.parent_hash)
            else:
                changed = False
            for tx in list(queue.txs.values()):
                if tx.tx_hash not in self._txs:
                    continue  # taken out with an earlier one of this signer
                if not changed and tx.ext.era.valid_at(block.number):
                    continue
                try:
                    _validate(state, block, tx.ext, tx.length, genesis_hash, tx.bound_hash)
                except InvalidTransaction as e:
                    removals.append(self._removed(tx.tx_hash, "invalid",
                                                  f"{e.error_name()}: {e}"))
                    self._take_out(tx)
                    self._ban(tx.tx_hash)
        removals += self._enforce_future_limits()
        return removals

    # ------------------------------------------------------------------ block building

    def _ready_order(self, limit: int | None) -> list[PooledTransaction]:
        """Best tip first across senders, by nonce within a sender, ties by arrival."""
        heap: list[tuple[int, int, bytes]] = []
        for queue in self._senders.values():
            if queue.ready_count:
                first = queue.txs[queue.account_nonce]
                heap.append((-first.priority, first.arrival, first.tx_hash))
        heapq.heapify(heap)
        out: list[PooledTransaction] = []
        while heap and (limit is None or len(out) < limit):
            _, _, tx_hash = heapq.heappop(heap)
            tx = self._txs[tx_hash]
            out.append(tx)
            queue = self._senders[tx.sender]
            if queue.is_ready(tx.nonce + 1):
                nxt = queue.txs[tx.nonce + 1]
                heapq.heappush(heap, (-nxt.priority, nxt.arrival, nxt.tx_hash))
        return out


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
