"""The transaction pool on the real runtime, with real signed extrinsics."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

import genesis
from node.txpool import (
    AlreadyImported,
    PoolFull,
    PoolRejected,
    PoolStatus,
    Removal,
    TemporarilyBanned,
    TooLowPriority,
    TransactionPool,
)
from runtime import codec, executive
from runtime.block import Header
from runtime.crypto import Keypair, blake2_256, dev_keypair
from runtime.execution import build_block
from runtime.extrinsic import sign_extrinsic
from runtime.modules import balances, system
from runtime.state import MemoryState
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
        self.nodes.put_nodes(built.executed.trie.new_nodes)
        self.state = MemoryState(self.state.items)
        self.state.apply(built.executed.changes)
        self.head = built.block.header
        self.states[self.head.hash] = self.state
        return built.included

    def rewind(self, header: Header) -> None:
        self.head = header
        self.state = self.states[header.hash]

    def nonce(self, key: Keypair) -> int:
        return system.account_info(self.state, key.public).nonce

    def import_into(self, pool: TransactionPool, raws: Sequence[bytes]) -> list[Removal]:
        included = self.import_block(raws)
        return pool.on_block_imported([blake2_256(r) for r in included], self.state,
                                           self.next_block, self.genesis_hash)


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
# limits


def test_count_limit_evicts_lowest_priority_and_bans_it(chain: Chain) -> None:
    pool = TransactionPool(max_count=3)
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


def test_future_is_evicted_before_ready(chain: Chain) -> None:
    pool = TransactionPool(max_count=2)
    future = chain.tx(ALICE, 5, tip=100)
    ready = chain.tx(BOB, 0, tip=1)
    chain.submit(pool, future)
    chain.submit(pool, ready)
    newcomer = chain.tx(CHARLIE, 0, tip=0)
    assert chain.submit(pool, newcomer) is True
    assert not pool.contains(h(future))
    assert pool.ready() == [ready, newcomer]
    # A future newcomer ranks below every ready transaction: refused.
    assert_rejected_unchanged(pool, lambda: chain.submit(pool, chain.tx(DAVE, 1, tip=10**6)),
                              PoolFull)


def test_evicting_a_tx_evicts_its_dependents(chain: Chain) -> None:
    pool = TransactionPool(max_count=3)
    a0, a1 = chain.tx(ALICE, 0, tip=0), chain.tx(ALICE, 1, tip=50)
    b0 = chain.tx(BOB, 0, tip=10)
    for raw in (a0, a1, b0):
        chain.submit(pool, raw)
    c0 = chain.tx(CHARLIE, 0, tip=5)
    chain.submit(pool, c0)
    # a0 was the worst; a1 cannot be included without it, so it goes too.
    assert pool.ready() == [b0, c0]
    assert pool.is_banned(h(a0)) and pool.is_banned(h(a1))


def test_byte_limit(chain: Chain) -> None:
    a0 = chain.tx(ALICE, 0, tip=1)
    pool = TransactionPool(max_bytes=2 * len(a0) + 1)
    b0, c0 = chain.tx(BOB, 0, tip=2), chain.tx(CHARLIE, 0, tip=3)
    chain.submit(pool, a0)
    chain.submit(pool, b0)
    chain.submit(pool, c0)
    assert pool.ready() == [c0, b0]
    assert pool.status().bytes == len(b0) + len(c0)
    assert pool.is_banned(h(a0))


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
    pool = TransactionPool(ban_blocks=3)
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
    pool = TransactionPool(ban_blocks=3)

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
    """Random nonces, tips and replacements under tight limits (seeded, so repeatable)."""
    rng = random.Random(7)
    keys = [dev_keypair(n) for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie")]
    size = len(chain.tx(ALICE, 0))
    pool = TransactionPool(max_count=10, max_bytes=8 * size + size // 2)
    outcomes: dict[str, int] = {}
    for _ in range(300):
        key = rng.choice(keys)
        raw = chain.tx(key, rng.randrange(6), tip=rng.randrange(20), amount=rng.randrange(1, 4))
        before = (pool.status(), pool.pending())
        try:
            chain.submit(pool, raw)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except (PoolFull, TooLowPriority, AlreadyImported, TemporarilyBanned) as e:
            outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
            assert (pool.status(), pool.pending()) == before
        ready, future, nbytes = pool.status()
        assert ready + future == len(pool.pending()) <= 10
        assert nbytes == sum(len(r) for r in pool.pending()) <= pool.max_bytes
        # Per sender, ready() yields nonces 0, 1, 2 … in order; future ones follow a gap.
        seen: dict[bytes, int] = {}
        for raw_ready in pool.ready():
            tx = pool.get(h(raw_ready))
            assert tx is not None and tx.nonce == seen.get(tx.sender, 0)
            seen[tx.sender] = tx.nonce + 1
        for raw_future in pool.pending()[ready:]:
            tx = pool.get(h(raw_future))
            assert tx is not None and tx.nonce > seen.get(tx.sender, 0)
        # Across senders, the first ready tx of each comes out best tip first.
        firsts = [pool.get(h(r)) for r in pool.ready()]
        heads = [t.priority for t in firsts if t is not None and t.nonce == 0]
        assert heads == sorted(heads, reverse=True)
    assert outcomes["ok"] > 30 and outcomes.get("PoolFull", 0) > 0
