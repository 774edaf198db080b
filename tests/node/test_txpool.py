"""The transaction pool on the real runtime, with real signed extrinsics."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import genesis
from node import txpool
from node.txpool import (
    AlreadyImported,
    CannotPayPooledFees,
    NonceTooFarAhead,
    PoolError,
    PoolFull,
    PoolLimits,
    PoolRejected,
    PoolStatus,
    Removal,
    TemporarilyBanned,
    TooLowPriority,
    TooManyFuture,
    TransactionPool,
)
from runtime import codec, executive
from runtime.block import Header
from runtime.crypto import Keypair, blake2_256, dev_keypair
from runtime.execution import build_block
from runtime.extrinsic import decode_extrinsic, sign_extrinsic
from runtime.modules import balances, system
from runtime.state import MemoryState, Overlay
from runtime.support import BlockInfo, make_call
from runtime.trie import EMPTY_ROOT, MemoryNodeStore, trie_update

ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")
CHARLIE = dev_keypair("charlie")
DAVE = dev_keypair("dave")


class Chain:
    """A dev chain whose blocks are built by runtime.execution.build_block."""

    def __init__(self) -> None:
        g = genesis.build_genesis(genesis.dev_spec())
        self.genesis_hash = g.hash
        self.state = MemoryState(g.state)
        self.nodes = MemoryNodeStore()
        self.nodes.put_nodes(trie_update(self.nodes, EMPTY_ROOT, g.state).new_nodes)
        self.head: Header = g.header
        self.states = {g.hash: MemoryState(g.state)}
        self.last_changes: dict[bytes, bytes | None] = {}

    @property
    def next_block(self) -> BlockInfo:
        return BlockInfo(self.head.number + 1, 0, bytes(32), self.head.hash)

    def tx(self, key: Keypair, nonce: int, *, tip: int = 0, amount: int = 1,
           genesis_hash: bytes | None = None) -> bytes:
        call = make_call(balances.TransferArgs(DAVE.public, amount))
        ext = sign_extrinsic(key, call, nonce, genesis_hash or self.genesis_hash,
                             executive.SPEC_VERSION, tip=tip)
        return codec.encode(ext)

    def submit(self, pool: TransactionPool, raw: bytes) -> bool:
        return pool.submit(raw, self.state, self.next_block, self.genesis_hash).ready

    def import_block(self, raws: Sequence[bytes]) -> tuple[bytes, ...]:
        """Author the next block from ``raws`` and make it the head; returns what went in."""
        built = build_block(self.state, self.nodes, self.head, raws,
                            timestamp=(self.head.number + 1) * 2000, author=ALICE,
                            genesis_hash=self.genesis_hash)
        self.last_changes = built.executed.changes
        self.nodes.put_nodes(built.executed.trie.new_nodes)
        self.state = MemoryState(self.state.items)
        self.state.apply(built.executed.changes)
        self.head = built.block.header
        self.states[self.head.hash] = self.state
        return built.included

    def rewind(self, header: Header) -> None:
        self.head = header
        self.state = self.states[header.hash]

    def endow(self, key: Keypair, amount: int) -> None:
        """Give ``key`` a balance (a genesis-like change to the head state)."""
        overlay = Overlay(self.state)
        system.put_account(overlay, key.public, system.AccountInfo(0, amount))
        self.state.apply(overlay.changes)

    def nonce(self, key: Keypair) -> int:
        return self.nonce_of(key.public)

    def nonce_of(self, account: bytes) -> int:
        return system.account_info(self.state, account).nonce

    def import_into(self, pool: TransactionPool, raws: Sequence[bytes], *,
                    with_changes: bool = True) -> list[Removal]:
        """Import a block and tell the pool, with the block's write set (as the node does)
        or without (the pool then reads every signer's account)."""
        included = self.import_block(raws)
        return pool.on_block_imported([blake2_256(r) for r in included], self.state,
                                      self.next_block, self.genesis_hash,
                                      changed_keys=self.last_changes if with_changes else None)


@pytest.fixture
def chain() -> Chain:
    return Chain()


def h(raw: bytes) -> bytes:
    return blake2_256(raw)


def statuses(pool: TransactionPool) -> list[tuple[bytes, str]]:
    return [(e.tx_hash, e.status) for e in pool.drain_events()]


def assert_rejected_unchanged(pool: TransactionPool, fn: object, exc: type[Exception]) -> None:
    before = (pool.status(), pool.pending())
    with pytest.raises(exc):
        fn()  # type: ignore[operator]
    assert (pool.status(), pool.pending()) == before


# ---------------------------------------------------------------------------
# ready / future


def test_nonce_gap_waits_in_future_and_is_promoted(chain: Chain) -> None:
    pool = TransactionPool()
    a0, a1, a2 = (chain.tx(ALICE, n) for n in range(3))
    assert chain.submit(pool, a2) is False
    assert chain.submit(pool, a0) is True
    assert pool.status() == PoolStatus(1, 1, len(a0) + len(a2))
    assert pool.ready() == [a0]
    assert statuses(pool) == [(h(a2), "future"), (h(a0), "ready")]

    assert chain.submit(pool, a1) is True
    assert pool.status() == PoolStatus(3, 0, len(a0) + len(a1) + len(a2))
    assert pool.ready() == [a0, a1, a2]
    assert statuses(pool) == [(h(a1), "ready"), (h(a2), "ready")]


def test_ready_order_by_tip_across_senders_and_nonce_within(chain: Chain) -> None:
    pool = TransactionPool()
    a0 = chain.tx(ALICE, 0, tip=1)
    a1 = chain.tx(ALICE, 1, tip=100)  # high tip but must follow a0
    b0 = chain.tx(BOB, 0, tip=50)
    c0 = chain.tx(CHARLIE, 0, tip=50)  # same tip as b0, arrives later
    for raw in (a1, a0, b0, c0):
        chain.submit(pool, raw)
    assert pool.ready() == [b0, c0, a0, a1]
    assert pool.ready(limit=2) == [b0, c0]
    assert pool.pending() == [b0, c0, a0, a1]


def test_pending_lists_ready_then_future(chain: Chain) -> None:
    pool = TransactionPool()
    a5, b0 = chain.tx(ALICE, 5), chain.tx(BOB, 0)
    chain.submit(pool, a5)
    chain.submit(pool, b0)
    assert pool.ready() == [b0]
    assert pool.pending() == [b0, a5]
    assert pool.contains(h(a5)) and not pool.is_ready(h(a5))
    pooled = pool.get(h(a5))
    assert pooled is not None and pooled.raw == a5 and pooled.nonce == 5
    assert pool.get(bytes(32)) is None


# ---------------------------------------------------------------------------
# replacement


def test_replacement_needs_strictly_higher_tip(chain: Chain) -> None:
    pool = TransactionPool()
    old = chain.tx(ALICE, 0, tip=10)
    chain.submit(pool, old)
    pool.drain_events()
    same_tip = chain.tx(ALICE, 0, tip=10, amount=2)
    lower = chain.tx(ALICE, 0, tip=9)
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, same_tip), TooLowPriority)
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, lower), TooLowPriority)
    assert pool.drain_events() == []

    new = chain.tx(ALICE, 0, tip=11)
    result = pool.submit(new, chain.state, chain.next_block, chain.genesis_hash)
    assert result.replaced == h(old) and result.ready
    assert pool.ready() == [new]
    assert not pool.contains(h(old))
    assert pool.drain_events() == [(h(old), "usurped", h(new)), (h(new), "ready", None)]


def test_replacing_a_future_tx_keeps_it_future(chain: Chain) -> None:
    pool = TransactionPool()
    chain.submit(pool, chain.tx(ALICE, 3, tip=1))
    assert chain.submit(pool, chain.tx(ALICE, 3, tip=2)) is False
    assert pool.status().future == 1 and len(pool) == 1


# ---------------------------------------------------------------------------
# limits: ready


def ready_limits(count: int, size: int = 1 << 30) -> PoolLimits:
    return PoolLimits(ready_count=count, ready_bytes=size)


def test_count_limit_evicts_lowest_priority_and_bans_it(chain: Chain) -> None:
    pool = TransactionPool(ready_limits(3))
    low = chain.tx(ALICE, 0, tip=1)
    mid = chain.tx(BOB, 0, tip=5)
    high = chain.tx(CHARLIE, 0, tip=9)
    for raw in (low, mid, high):
        chain.submit(pool, raw)
    pool.drain_events()

    better = chain.tx(DAVE, 0, tip=3)
    assert chain.submit(pool, better) is True
    assert pool.ready() == [high, mid, better]
    assert (h(low), "dropped") in statuses(pool)
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, low), TemporarilyBanned)

    # Equal to the worst (tip 3) is not enough: the newcomer ranks below on arrival.
    equal = chain.tx(ALICE, 0, tip=3, amount=7)
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, equal), PoolFull)
    assert pool.drain_events() == []


def test_eviction_takes_a_signers_last_ready_transaction(chain: Chain) -> None:
    """Evicting the last of a signer's run never strands a later transaction: a signer's
    run is ranked by its last transaction."""
    pool = TransactionPool(ready_limits(3))
    a0, a1 = chain.tx(ALICE, 0, tip=0), chain.tx(ALICE, 1, tip=50)
    b0 = chain.tx(BOB, 0, tip=10)
    for raw in (a0, a1, b0):
        chain.submit(pool, raw)
    # Alice's run ends with tip 50, Bob's with 10: a newcomer must beat 10.
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, chain.tx(CHARLIE, 0, tip=5)),
                              PoolFull)
    c0 = chain.tx(CHARLIE, 0, tip=11)
    assert chain.submit(pool, c0) is True
    assert pool.ready() == [c0, a0, a1] and pool.is_banned(h(b0))
    # Now Charlie (11) is the worst run's end; a third Alice transaction (tip 60) beats it.
    a2 = chain.tx(ALICE, 2, tip=60)
    assert chain.submit(pool, a2) is True
    assert pool.ready() == [a0, a1, a2] and pool.is_banned(h(c0))


def test_byte_limit(chain: Chain) -> None:
    a0 = chain.tx(ALICE, 0, tip=1)
    pool = TransactionPool(PoolLimits(ready_bytes=2 * len(a0) + 1))
    b0, c0 = chain.tx(BOB, 0, tip=2), chain.tx(CHARLIE, 0, tip=3)
    chain.submit(pool, a0)
    chain.submit(pool, b0)
    chain.submit(pool, c0)
    assert pool.ready() == [c0, b0]
    assert pool.status().bytes == len(b0) + len(c0)
    assert pool.is_banned(h(a0))


def test_a_gap_filler_promoting_past_the_limit_evicts_the_worst_runs(chain: Chain) -> None:
    pool = TransactionPool(ready_limits(3))
    b0, c0 = chain.tx(BOB, 0, tip=1), chain.tx(CHARLIE, 0, tip=2)
    a1, a2 = chain.tx(ALICE, 1, tip=9), chain.tx(ALICE, 2, tip=9)
    for raw in (b0, c0, a1, a2):
        chain.submit(pool, raw)
    assert pool.status() == PoolStatus(2, 2, sum(map(len, (b0, c0, a1, a2))))
    a0 = chain.tx(ALICE, 0, tip=9)
    assert chain.submit(pool, a0) is True  # 5 ready would be over 3: b0 and c0 go
    assert pool.ready() == [a0, a1, a2]
    assert pool.is_banned(h(b0)) and pool.is_banned(h(c0))


# ---------------------------------------------------------------------------
# limits: future


def test_future_has_its_own_smaller_limits(chain: Chain) -> None:
    assert PoolLimits.for_ready(8192, 20480) == PoolLimits()
    pool = TransactionPool(PoolLimits(ready_count=2, future_count=2))
    b0, c0 = chain.tx(BOB, 0, tip=1), chain.tx(CHARLIE, 0, tip=1)
    a5, d5 = chain.tx(ALICE, 5, tip=1), chain.tx(DAVE, 5, tip=1)
    for raw in (b0, c0, a5, d5):
        chain.submit(pool, raw)
    assert pool.status().ready == 2 and pool.status().future == 2
    # A better-paying future transaction evicts the worst future one, never a ready one.
    e5 = chain.tx(dev_keypair("eve"), 5, tip=2)
    assert chain.submit(pool, e5) is False
    assert not pool.contains(h(d5)) and pool.contains(h(b0)) and pool.contains(h(c0))
    # An equal one ranks below on arrival: refused, nothing changes.
    assert_rejected_unchanged(
        pool, lambda: chain.submit(pool, chain.tx(dev_keypair("ferdie"), 5, tip=1)), PoolFull)


def test_a_signer_may_hold_only_a_few_future_transactions(chain: Chain) -> None:
    pool = TransactionPool(PoolLimits(future_per_sender=3))
    for nonce in (2, 3, 4):
        assert chain.submit(pool, chain.tx(ALICE, nonce)) is False
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, chain.tx(ALICE, 5)),
                              TooManyFuture)
    # Others are unaffected, and the gap filler is taken: it promotes the waiting ones.
    assert chain.submit(pool, chain.tx(BOB, 1)) is False
    assert chain.submit(pool, chain.tx(ALICE, 0)) is True
    assert chain.submit(pool, chain.tx(ALICE, 1)) is True
    assert [pool.get(h(r)).nonce for r in pool.ready()] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    assert chain.submit(pool, chain.tx(ALICE, 5)) is True  # ready now, not future


def test_a_nonce_far_ahead_is_refused_before_its_signature_is_checked(chain: Chain) -> None:
    pool = TransactionPool(PoolLimits(max_nonce_ahead=10))
    chain.submit(pool, chain.tx(ALICE, 0))
    assert chain.submit(pool, chain.tx(ALICE, 11)) is False  # next nonce 1, 10 ahead: ok
    forged = bytearray(chain.tx(ALICE, 12))
    forged[40] ^= 1  # inside the signature: the pool's policy refuses it first, cheaply
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, bytes(forged)),
                              NonceTooFarAhead)
    assert not pool.is_banned(h(bytes(forged)))  # not judged invalid: just not wanted now


def test_future_transactions_expire_even_when_immortal(chain: Chain) -> None:
    pool = TransactionPool(PoolLimits(future_longevity=3))
    a2, b0 = chain.tx(ALICE, 2), chain.tx(BOB, 0)
    chain.submit(pool, a2)  # at block 1
    chain.submit(pool, b0)
    pool.drain_events()
    for _ in range(2):
        assert chain.import_into(pool, []) == []
    assert pool.contains(h(a2))
    removed = chain.import_into(pool, [])  # block 4: waited 3 blocks
    assert [(r.tx_hash, r.status) for r in removed] == [(h(a2), "dropped")]
    assert removed[0].reason.startswith("FutureExpired")
    assert pool.ready() == [b0] and pool.status().future == 0
    assert not pool.is_banned(h(a2))  # may come back once its gap is filled


def test_a_signers_pooled_transactions_must_be_payable_together(chain: Chain) -> None:
    one = chain.tx(ALICE, 0)
    fee = executive.compute_fee(len(one), executive.call_weight(decode_extrinsic(one)))
    poor = Keypair.from_seed(blake2_256(b"poor"))
    chain.endow(poor, 2 * fee + fee // 2)
    pool = TransactionPool()
    assert chain.submit(pool, chain.tx(poor, 0)) is True
    assert chain.submit(pool, chain.tx(poor, 5)) is False  # future: it must be payable too
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, chain.tx(poor, 1)),
                              CannotPayPooledFees)
    # A replacement pays for itself only: a higher tip that fits is fine.
    assert chain.submit(pool, chain.tx(poor, 5, tip=fee // 4)) is False


# ---------------------------------------------------------------------------
# rejections and bans


def test_malformed_and_foreign_chain_are_rejected_by_name(chain: Chain) -> None:
    pool = TransactionPool()
    chain.submit(pool, chain.tx(BOB, 0))
    for junk in (b"", b"\xc1", codec.pack([1, 2, 3]), chain.tx(ALICE, 0) + b"\x00"):
        before = (pool.status(), pool.pending())
        with pytest.raises(PoolRejected) as info:
            chain.submit(pool, junk)
        assert info.value.reason == "Malformed"
        assert (pool.status(), pool.pending()) == before

    foreign = chain.tx(ALICE, 0, genesis_hash=blake2_256(b"another chain"))
    with pytest.raises(PoolRejected) as info:
        chain.submit(pool, foreign)
    assert info.value.reason == "InvalidSignature"
    assert pool.status() == PoolStatus(1, 0, len(chain.tx(BOB, 0)))


def test_cannot_pay_fee_is_rejected(chain: Chain) -> None:
    pool = TransactionPool()
    broke = Keypair.from_seed(blake2_256(b"nobody"))
    with pytest.raises(PoolRejected) as info:
        chain.submit(pool, chain.tx(broke, 0))
    assert info.value.reason == "CannotPayFee"
    assert len(pool) == 0


def test_duplicate_is_already_imported(chain: Chain) -> None:
    pool = TransactionPool()
    raw = chain.tx(ALICE, 0)
    chain.submit(pool, raw)
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, raw), AlreadyImported)


def test_rejected_tx_is_banned_for_ban_blocks(chain: Chain) -> None:
    pool = TransactionPool(PoolLimits(ban_blocks=3))
    good = chain.tx(ALICE, 0)
    bad_sig = bytearray(good)
    bad_sig[40] ^= 1  # inside the signature
    forged = bytes(bad_sig)
    with pytest.raises(PoolRejected) as info:
        chain.submit(pool, forged)
    assert info.value.reason == "InvalidSignature"

    for number in (1, 2, 3):  # banned at block 1 for blocks 1..3
        with pytest.raises(TemporarilyBanned):
            pool.submit(forged, chain.state, BlockInfo(number, 0, bytes(32), chain.head.hash),
                        chain.genesis_hash)
    with pytest.raises(PoolRejected):  # ban over: validated (and rejected) again
        pool.submit(forged, chain.state, BlockInfo(4, 0, bytes(32), chain.head.hash),
                    chain.genesis_hash)
    assert len(pool) == 0


def test_bans_expire_in_their_own_order(chain: Chain) -> None:
    pool = TransactionPool(PoolLimits(ban_blocks=3))

    def forged(nonce: int) -> bytes:
        raw = bytearray(chain.tx(ALICE, nonce))
        raw[40] ^= 1  # inside the signature
        return bytes(raw)

    def submit(raw: bytes, number: int) -> type[Exception]:
        block = BlockInfo(number, 0, bytes(32), chain.head.hash)
        pool.on_block_imported([], chain.state, block, chain.genesis_hash)  # forgets expired bans
        with pytest.raises((PoolRejected, TemporarilyBanned)) as info:
            pool.submit(raw, chain.state, block, chain.genesis_hash)
        return info.type

    first, second = forged(0), forged(1)
    assert submit(first, 1) is PoolRejected  # banned for blocks 1..3
    assert submit(second, 2) is PoolRejected  # banned for blocks 2..4
    assert submit(first, 4) is PoolRejected  # over: rejected again, banned for 4..6
    assert submit(second, 4) is TemporarilyBanned
    assert submit(second, 5) is PoolRejected  # over (and banned again for 5..7)
    assert submit(first, 6) is TemporarilyBanned  # the second ban still holds
    assert submit(first, 7) is PoolRejected


def test_stale_nonce_is_rejected_then_banned(chain: Chain) -> None:
    pool = TransactionPool()
    chain.import_into(pool, [chain.tx(ALICE, 0)])
    replay = chain.tx(ALICE, 0, tip=5)
    with pytest.raises(PoolRejected) as info:
        chain.submit(pool, replay)
    assert info.value.reason == "StaleNonce"
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, replay), TemporarilyBanned)


# ---------------------------------------------------------------------------
# block import


def test_block_import_removes_included_and_revalidates(chain: Chain) -> None:
    pool = TransactionPool()
    a0, a1, a3 = chain.tx(ALICE, 0), chain.tx(ALICE, 1), chain.tx(ALICE, 3)
    b0 = chain.tx(BOB, 0, tip=1)
    for raw in (a0, a1, a3, b0):
        chain.submit(pool, raw)
    pool.drain_events()

    # Another node's block includes a different bob tx with nonce 0 and alice's a0.
    b0_other = chain.tx(BOB, 0, amount=99)
    removed = chain.import_into(pool, [a0, b0_other])
    assert [(r.tx_hash, r.status) for r in removed] == [(h(b0), "invalid")]
    assert removed[0].reason.startswith("StaleNonce")
    events = statuses(pool)
    assert (h(a0), "inBlock") in events and (h(b0), "invalid") in events
    assert pool.ready() == [a1]
    assert pool.status() == PoolStatus(1, 1, len(a1) + len(a3))

    # a2 fills the gap; the next block includes a1 and a2, a3 becomes the next ready.
    a2 = chain.tx(ALICE, 2)
    chain.submit(pool, a2)
    assert pool.ready() == [a1, a2, a3]
    included = chain.import_block(pool.ready(limit=2))
    assert included == (a1, a2)
    pool.on_block_imported([h(r) for r in included], chain.state, chain.next_block,
                           chain.genesis_hash)
    assert pool.ready() == [a3] and chain.nonce(ALICE) == 3
    # Included transactions are banned: re-gossip does not re-add them.
    with pytest.raises(TemporarilyBanned):
        chain.submit(pool, a1)


def test_block_import_promotes_future(chain: Chain) -> None:
    pool = TransactionPool()
    a1 = chain.tx(ALICE, 1)
    chain.submit(pool, a1)
    assert pool.status() == PoolStatus(0, 1, len(a1))
    pool.drain_events()
    chain.import_into(pool, [chain.tx(ALICE, 0)])  # included elsewhere
    assert pool.ready() == [a1]
    assert pool.drain_events() == [(h(a1), "ready", None)]


def test_remove_invalid_reported_by_author(chain: Chain) -> None:
    pool = TransactionPool()
    a0, a1 = chain.tx(ALICE, 0), chain.tx(ALICE, 1)
    chain.submit(pool, a0)
    chain.submit(pool, a1)
    pool.drain_events()
    removed = pool.remove_invalid([(h(a0), "CannotPayFee")])
    assert [(r.tx_hash, r.status, r.reason) for r in removed] == [(h(a0), "invalid",
                                                                  "CannotPayFee")]
    assert pool.status() == PoolStatus(0, 1, len(a1))
    assert pool.drain_events() == [(h(a0), "invalid", "CannotPayFee"), (h(a1), "future", None)]
    with pytest.raises(TemporarilyBanned):
        chain.submit(pool, a0)


# ---------------------------------------------------------------------------
# reorg


def test_reorg_returns_retracted_transactions(chain: Chain) -> None:
    pool = TransactionPool()
    genesis_header = chain.head
    a0, b0 = chain.tx(ALICE, 0), chain.tx(BOB, 0)
    chain.submit(pool, a0)
    chain.submit(pool, b0)
    retracted = chain.import_block(pool.ready())
    assert set(retracted) == {a0, b0}
    pool.on_block_imported([h(r) for r in retracted], chain.state, chain.next_block,
                           chain.genesis_hash)
    assert len(pool) == 0

    # A fork from genesis, with one tx of its own (charlie's) and bob's b0 again, wins.
    chain.rewind(genesis_header)
    c0 = chain.tx(CHARLIE, 0)
    enacted = chain.import_block([c0, b0])
    removed = pool.on_reorg(list(retracted), chain.state, chain.next_block, chain.genesis_hash,
                            enacted_hashes=[h(r) for r in enacted])
    assert removed == []
    assert pool.ready() == [a0]  # a0 is back despite its ban; b0 is on the new chain
    assert not pool.is_banned(h(a0))
    assert pool.is_banned(h(b0)) and pool.is_banned(h(c0))


def test_reorg_reports_retracted_made_invalid(chain: Chain) -> None:
    pool = TransactionPool()
    genesis_header = chain.head
    a0 = chain.tx(ALICE, 0)
    retracted = chain.import_block([a0])
    chain.rewind(genesis_header)
    a0_other = chain.tx(ALICE, 0, amount=5)
    enacted = chain.import_block([a0_other])
    removed = pool.on_reorg(list(retracted), chain.state, chain.next_block, chain.genesis_hash,
                            enacted_hashes=[h(r) for r in enacted])
    assert [(r.tx_hash, r.status) for r in removed] == [(h(a0), "invalid")]
    assert len(pool) == 0


# ---------------------------------------------------------------------------
# invariants under random load


def test_random_submissions_keep_invariants(chain: Chain) -> None:
    """Random nonces, tips, replacements and blocks under tight limits (seeded, repeatable)."""
    rng = random.Random(7)
    keys = [dev_keypair(n) for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie")]
    size = len(chain.tx(ALICE, 0))
    limits = PoolLimits(ready_count=10, ready_bytes=8 * size + size // 2, future_count=4,
                        future_bytes=1 << 20, future_per_sender=2, max_nonce_ahead=4,
                        future_longevity=5)
    pool = TransactionPool(limits)
    outcomes: dict[str, int] = {}
    for step in range(600):
        if step % 50 == 49:
            chain.import_into(pool, pool.ready(limit=rng.randrange(1, 6)),
                              with_changes=rng.random() < 0.5)
            continue
        key = rng.choice(keys)
        nonce = chain.nonce(key) + rng.randrange(8)
        raw = chain.tx(key, nonce, tip=rng.randrange(20), amount=rng.randrange(1, 4))
        before = (pool.status(), pool.pending())
        try:
            chain.submit(pool, raw)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except PoolError as e:
            outcomes[e.reason] = outcomes.get(e.reason, 0) + 1
            assert (pool.status(), pool.pending()) == before
        assert_invariants(pool, chain, limits)
    assert outcomes["ok"] > 50
    for refusal in ("PoolFull", "TooManyFuture", "NonceTooFarAhead", "TooLowPriority"):
        assert outcomes.get(refusal, 0) > 0, outcomes


def assert_invariants(pool: TransactionPool, chain: Chain, limits: PoolLimits) -> None:
    ready, future, nbytes = pool.status()
    pending = pool.pending()
    assert ready + future == len(pending) == len(pool) and ready == len(pool.ready())
    assert nbytes == sum(len(r) for r in pending)
    assert ready <= limits.ready_count and future <= limits.future_count
    ready_bytes = sum(len(r) for r in pool.ready())
    assert ready_bytes <= limits.ready_bytes and nbytes - ready_bytes <= limits.future_bytes
    # Per sender, ready() yields nonces from the account's on, in order; future ones follow
    # a gap, few per sender, not too far ahead.
    seen: dict[bytes, int] = {}
    for raw_ready in pool.ready():
        tx = pool.get(h(raw_ready))
        assert tx is not None and pool.is_ready(tx.tx_hash)
        expected = seen.get(tx.sender, system.account_info(chain.state, tx.sender).nonce)
        assert tx.nonce == expected
        seen[tx.sender] = tx.nonce + 1
    waiting: dict[bytes, int] = {}
    for raw_future in pending[ready:]:
        tx = pool.get(h(raw_future))
        assert tx is not None and not pool.is_ready(tx.tx_hash)
        next_nonce = seen.get(tx.sender, system.account_info(chain.state, tx.sender).nonce)
        assert next_nonce < tx.nonce
        assert pool.next_nonce(tx.sender, chain.nonce_of(tx.sender)) == next_nonce
        waiting[tx.sender] = waiting.get(tx.sender, 0) + 1
    assert all(count <= limits.future_per_sender for count in waiting.values())
    # Across senders, the first ready transaction of each comes out best tip first.
    firsts = [pool.get(h(r)) for r in pool.ready()]
    heads = [t.priority for t in firsts
             if t is not None and t.nonce == chain.nonce_of(t.sender)]
    assert heads == sorted(heads, reverse=True)


# ---------------------------------------------------------------------------
# cost of an attack, counted in operations (not by the clock)


class OperationCounter:
    """Counts the pool's heap operations and full validity checks (signature included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.heap = 0
        self.validations = 0
        counter = self

        class CountingHeapq:
            @staticmethod
            def heappush(heap: list[Any], item: Any) -> None:
                counter.heap += 1
                heapq.heappush(heap, item)

            @staticmethod
            def heappop(heap: list[Any]) -> Any:
                counter.heap += 1
                return heapq.heappop(heap)

            @staticmethod
            def heapify(heap: list[Any]) -> None:
                counter.heap += len(heap)
                heapq.heapify(heap)

        real_validate = txpool._validate

        def validate(*args: Any) -> Any:
            counter.validations += 1
            return real_validate(*args)

        monkeypatch.setattr(txpool, "heapq", CountingHeapq)
        monkeypatch.setattr(txpool, "_validate", validate)

    def measure(self, fn: Callable[..., object], *args: Any) -> tuple[int, int]:
        """(heap operations, validity checks) of ``fn(*args)``."""
        heap, validations = self.heap, self.validations
        fn(*args)
        return self.heap - heap, self.validations - validations


def test_a_future_spammer_costs_the_pool_less_than_an_honest_sender(
        chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finding: one account that holds about one fee filled the pool with nonce-gap
    transactions, and each further submission cost 100-300x an honest one (the eviction
    heap walked for every one of the sender's transactions, its queue sorted per
    submission). Now a refused spam submission costs no heap operation and no signature
    check, and an honest submission's heap operations do not grow with the pool."""
    pool = TransactionPool()
    counter = OperationCounter(monkeypatch)
    spammer = ALICE
    honest = [Keypair.from_seed(blake2_256(b"honest %d" % i)) for i in range(3000)]
    for key in honest:
        chain.endow(key, 10**15)

    def honest_costs(keys: Sequence[Keypair]) -> list[tuple[int, int]]:
        costs = []
        for key in keys:
            raw = chain.tx(key, 0)
            costs.append(counter.measure(chain.submit, pool, raw))
        return costs

    early = honest_costs(honest[:100])
    # The spammer fills every slot it may have, then keeps trying.
    accepted, refusals = 0, []
    for nonce in range(1, 2000):
        raw = chain.tx(spammer, nonce)
        try:
            counter.measure(chain.submit, pool, raw)
            accepted += 1
        except (TooManyFuture, NonceTooFarAhead) as e:
            refusals.append((e.reason, counter.heap, counter.validations))
    assert accepted == pool.limits.future_per_sender
    assert pool.status().future == accepted
    # Refused: not one heap operation, not one signature check between the refusals.
    heap_ops = {h for _, h, _ in refusals}
    checks = {v for _, _, v in refusals}
    assert len(refusals) == 1999 - accepted and len(heap_ops) == 1 and len(checks) == 1
    assert {reason for reason, _, _ in refusals} == {"TooManyFuture", "NonceTooFarAhead"}

    late = honest_costs(honest[100:])  # the pool grows to 3,000 ready transactions
    assert pool.status().ready == 3000
    for costs in (early, late):
        assert {validations for _, validations in costs} == {1}
    # A ready newcomer pushes one tail entry (and at most a rebuild's worth now and then):
    # the same small number whether the pool holds 100 or 3,000 transactions.
    assert max(ops for ops, _ in late) <= max(ops for ops, _ in early) + 1
    assert sum(ops for ops, _ in late) <= 3 * len(late)

    # The spammer's own gap filler is still taken, and promotes what waited.
    assert chain.submit(pool, chain.tx(spammer, 0)) is True
    assert pool.status().future == 0 and pool.next_nonce(spammer.public, 0) == accepted + 1


def test_evicting_from_a_full_pool_costs_a_few_heap_operations(
        chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full pool: every better-paying newcomer evicts one transaction, in O(log n), and a
    long run loses its transactions from its end, one per newcomer."""
    limit = 500
    pool = TransactionPool(ready_limits(limit))
    counter = OperationCounter(monkeypatch)
    runner = ALICE  # a catalogue upload: one signer, a long run, the lowest tip
    for nonce in range(limit // 2):
        chain.submit(pool, chain.tx(runner, nonce, tip=1))
    keys = [Keypair.from_seed(blake2_256(b"k %d" % i)) for i in range(limit // 2 + 100)]
    for key in keys:
        chain.endow(key, 10**15)
    for key in keys[:limit // 2]:
        chain.submit(pool, chain.tx(key, 0, tip=5))
    assert pool.status().ready == limit
    costs = []
    for key in keys[limit // 2:]:
        raw = chain.tx(key, 0, tip=10)
        costs.append(counter.measure(chain.submit, pool, raw)[0])
    assert pool.status().ready == limit
    assert pool.next_nonce(runner.public, 0) == limit // 2 - 100  # its last 100 went
    # Each: the victim popped and its signer's new tail pushed, the newcomer's tail pushed,
    # plus outdated entries skipped (each skipped once, ever).
    assert sum(costs) <= 8 * len(costs)
