"""The node-side listing indexes (node.chain.indexes): built from events, moved with the best chain.

They replace listing maps that used to be consensus state (works by owner, terms by
work, licenses by holder and by work, usage by work and by license, credit
histories): the same keys and values, now outside the state trie.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import plyvel
import pytest
from storage_crash_worker import SLOT_MS, replayed_index

from genesis import Genesis, build_genesis, dev_spec
from genesis.spec import GenesisWork
from node.chain import indexes
from node.chain.blocks import EventRecords
from node.chain.dbformat import META_INDEXED
from node.chain.store import ChainStore, DatabaseError, db_path
from runtime import codec
from runtime.codec import Struct
from runtime.crypto import dev_keypair, sha256
from runtime.execution import BuiltBlock, build_block
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules import licensing, provenance, royalties, system, usage
from runtime.modules.royalties import Reason
from runtime.state import MemoryState
from runtime.support import EventLog, EventRecord, make_call

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (
    dev_keypair(n) for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))
FEE = 5 * 10**12


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    work = GenesisWork(ALICE.public, sha256(b"genesis work"), "image", "Genesis work", "",
                       ((ALICE.public, 10_000),))
    return build_genesis(dataclasses.replace(dev_spec(), works=(work,)))


@pytest.fixture
def store(tmp_path: Path, genesis: Genesis) -> Iterator[ChainStore]:
    with ChainStore.open(tmp_path / "node", genesis) as opened:
        yield opened


def block_of(store: ChainStore, parent_hash: bytes, calls: Sequence[tuple[object, Struct]],
             slot_gap: int = 1) -> BuiltBlock:
    """Author a block on ``parent_hash`` applying ``calls`` ((keypair, args)) in order."""
    parent = store.header(parent_hash)
    assert parent is not None
    state = store.state_at(parent_hash)
    nonces: dict[bytes, int] = {}
    raws = []
    for key, args in calls:
        who = key.public  # type: ignore[attr-defined]
        if who not in nonces:
            nonces[who] = system.account_info(state, who).nonce
        ext = sign_extrinsic(key, make_call(args), nonces[who],  # type: ignore[arg-type]
                             store.genesis_hash, SPEC_VERSION)
        nonces[who] += 1
        raws.append(codec.encode(ext))
    built = build_block(state, store.node_store, parent, raws,
                        timestamp=(parent.slot + slot_gap) * SLOT_MS, author=ALICE,
                        genesis_hash=store.genesis_hash)
    assert not built.invalid and not built.deferred
    failed = [r.event for r in built.executed.events
              if isinstance(r.event, system.ExtrinsicFailed)]
    assert not failed, failed
    return built


def terms_args(work_id: int) -> licensing.OfferTerms:
    return licensing.OfferTerms(
        work_id=work_id, transferable=True, commercial_use=True, commercial_attribution=False,
        commercial_rev_share=1_000, derivatives_allowed=True, derivatives_attribution=False,
        derivatives_approval=False, derivatives_reciprocal=False,
        ai_training=licensing.AiUse.ALLOWED, ai_inference=licensing.AiUse.ALLOWED,
        minting_fee=FEE, expiry_blocks=0, max_supply=0, legal_uri="", legal_hash=None)


def register_args(name: bytes, owner: object) -> provenance.RegisterWork:
    return provenance.RegisterWork(
        sha256(name), provenance.WorkKind.TEXT, name.decode(), "", None,
        (provenance.Split(owner.public, 10_000),), ())  # type: ignore[attr-defined]


def index_of(store: ChainStore) -> dict[bytes, bytes]:
    return dict(store.iter_index_prefix(b""))


def assert_no_index_in_state(store: ChainStore) -> None:
    prefixes = tuple(i.prefix for i in indexes.INDEXES)
    assert not [k for k, _ in store.iter_state_prefix(b"") if k.startswith(prefixes)]


def test_genesis_works_are_indexed(store: ChainStore) -> None:
    assert index_of(store) == {indexes.works_by_owner.key((ALICE.public, 1)): indexes.TRUE}
    assert_no_index_in_state(store)


def test_index_answers_as_the_state_maps_did(store: ChainStore, genesis: Genesis) -> None:
    built = block_of(store, store.best_hash, [
        (ALICE, register_args(b"song", ALICE)),                            # work 2
        (ALICE, terms_args(2)),                                            # terms 1
        (BOB, licensing.AcquireLicense(1)),                                # license 1, a credit
        (BOB, usage.RecordUsage(1, usage.Purpose.AI_TRAINING, "m", 1, "")),  # usage 1
        (CHARLIE, royalties.PayRevenue(2, 10**12, "sales")),               # a credit
        (ALICE, provenance.TransferWork(2, DAVE.public)),
        (BOB, licensing.TransferLicense(1, EVE.public)),
    ])
    assert store.import_block(built.executed).new_best
    assert_no_index_in_state(store)
    got = index_of(store)
    expected = {
        indexes.works_by_owner.key((ALICE.public, 1)): indexes.TRUE,
        indexes.works_by_owner.key((DAVE.public, 2)): indexes.TRUE,
        indexes.terms_by_work.key((2, 1)): indexes.TRUE,
        indexes.licenses_by_holder.key((EVE.public, 1)): indexes.TRUE,
        indexes.licenses_by_work.key((2, 1)): indexes.TRUE,
        indexes.usage_by_work.key((2, 1)): indexes.TRUE,
        indexes.usage_by_license.key((1, 1)): indexes.TRUE,
        indexes.credits.key((ALICE.public, 0)): codec.encode(
            indexes.Credit(1, 2, 2, 2, FEE, Reason.LICENSE_FEE)),
        indexes.credits.key((ALICE.public, 1)): codec.encode(
            indexes.Credit(1, 4, 2, 2, 10**12, Reason.REVENUE)),
        indexes.credit_count.key(ALICE.public): codec.encode(2, codec.U64),
        indexes.earned.key(ALICE.public): codec.encode(FEE + 10**12, codec.U128),
        indexes.work_revenue.key(2): codec.encode(FEE + 10**12, codec.U128),
        indexes.work_paid_out.key((2, ALICE.public)): codec.encode(FEE + 10**12, codec.U128),
    }
    assert got == expected
    assert indexes.credit_count.get(MemoryState(got), ALICE.public) == 2
    assert got == replayed_index(store, genesis)


def test_stored_events_are_their_canonical_encoding(store: ChainStore) -> None:
    built = block_of(store, store.best_hash, [
        (ALICE, register_args(b"big", ALICE)), (ALICE, terms_args(2)),
        (BOB, licensing.AcquireLicense(1)),
        (CHARLIE, royalties.PayRevenue(2, 10**12, "sales")),
        (BOB, usage.RecordUsage(1, usage.Purpose.AI_TRAINING, "m", 1, "")),
        (ALICE, provenance.UpdateMetadata(2, "ipfs://new", sha256(b"meta")))])
    events = built.executed.events
    assert len({type(r.event) for r in events}) >= 9
    assert built.executed.events_encoded == codec.encode(events, EventRecords)
    store.import_block(built.executed)
    assert store.events(built.block.hash) == events


def test_event_log_encoding_is_the_canonical_one() -> None:
    large = (EventRecord(7, royalties.Credited(BOB.public, 2, 1, 2**70 + 3)),
             EventRecord(None, royalties.RoyaltyPaid(2, BOB.public, 2**64, Reason.REVENUE, "")))
    assert EventLog(large).encoded() == codec.encode(large, EventRecords)
    for count in (0, 15, 16, 65535, 65536):  # each size of msgpack array header
        many = tuple(EventRecord(i, royalties.RoyaltyPaid(i, BOB.public, i, Reason.REVENUE, ""))
                     for i in range(count))
        assert EventLog(many).encoded() == codec.encode(many, EventRecords)
    log = EventLog(large)
    mark = log.mark()
    log.append(EventRecord(8, royalties.RoyaltyPaid(3, BOB.public, 1, Reason.REVENUE, "")))
    log.truncate(mark)  # as a failed call's events are dropped
    assert list(log) == list(large)
    assert log.encoded() == codec.encode(large, EventRecords)


def test_earnings_totals_add_up_and_saturate() -> None:
    near = royalties.U128_MAX - 5
    index = MemoryState({indexes.earned.key(BOB.public): codec.encode(near, codec.U128),
                         indexes.work_revenue.key(3): codec.encode(2**64, codec.U128)})
    events = [
        EventRecord(0, royalties.RoyaltyPaid(3, ALICE.public, 10, Reason.REVENUE, "")),
        EventRecord(0, royalties.Credited(BOB.public, 3, 3, 4)),
        EventRecord(0, royalties.Credited(CHARLIE.public, 3, 1, 6)),
        EventRecord(1, royalties.RoyaltyPaid(3, ALICE.public, 2**70, Reason.LICENSE_FEE, "")),
        EventRecord(1, royalties.Credited(BOB.public, 3, 3, 2**70)),
    ]
    index.apply(indexes.index_changes(index.get, 9, events))
    assert indexes.earned.get(index, BOB.public) == royalties.U128_MAX
    assert indexes.earned.get(index, CHARLIE.public) == 6
    assert indexes.work_revenue.get(index, 3) == 2**64 + 10 + 2**70
    assert indexes.work_paid_out.get(index, (3, BOB.public)) == 4 + 2**70
    assert indexes.credits.get(index, (BOB.public, 1)) == indexes.Credit(
        9, 1, 3, 3, 2**70, Reason.LICENSE_FEE)
    assert indexes.credit_count.get(index, BOB.public) == 2


def test_failed_calls_index_nothing(store: ChainStore) -> None:
    before = index_of(store)
    # A call that fails (bob does not own work 1) emits no index event.
    parent = store.best_hash
    state = store.state_at(parent)
    ext = sign_extrinsic(BOB, make_call(provenance.TransferWork(1, BOB.public)),
                         system.account_info(state, BOB.public).nonce, store.genesis_hash,
                         SPEC_VERSION)
    header = store.header(parent)
    assert header is not None
    failing = build_block(state, store.node_store, header, [codec.encode(ext)],
                          timestamp=(header.slot + 1) * SLOT_MS, author=ALICE,
                          genesis_hash=store.genesis_hash)
    assert any(isinstance(r.event, system.ExtrinsicFailed) for r in failing.executed.events)
    store.import_block(failing.executed)
    assert index_of(store) == before


def test_reorgs_move_the_index_with_the_best_chain(store: ChainStore, genesis: Genesis) -> None:
    b1 = block_of(store, store.best_hash, [
        (ALICE, register_args(b"a", ALICE)), (ALICE, terms_args(2)),
        (BOB, licensing.AcquireLicense(1))])
    store.import_block(b1.executed)
    after_b1 = index_of(store)
    # Branch A: the work and the license change hands, more credits.
    a2 = block_of(store, b1.block.hash, [
        (ALICE, provenance.TransferWork(2, CHARLIE.public)),
        (BOB, licensing.TransferLicense(1, DAVE.public)),
        (EVE, royalties.PayRevenue(2, 10**12, ""))])
    assert store.import_block(a2.executed).new_best
    after_a2 = index_of(store)
    assert after_a2 == replayed_index(store, genesis)
    assert indexes.works_by_owner.key((CHARLIE.public, 2)) in after_a2
    assert indexes.works_by_owner.key((ALICE.public, 2)) not in after_a2
    # Branch B, longer: other registrations and credits for alice (seq 1 and 2 again).
    bb2 = block_of(store, b1.block.hash, [
        (FERDIE, register_args(b"b", FERDIE)), (DAVE, royalties.PayRevenue(2, 7, ""))],
        slot_gap=2)
    assert not store.import_block(bb2.executed).new_best
    assert index_of(store) == after_a2
    bb3 = block_of(store, bb2.block.hash, [(CHARLIE, royalties.PayRevenue(2, 9, ""))])
    result = store.import_block(bb3.executed)
    assert result.is_reorg and result.retracted == (a2.block.hash,)
    after_b3 = index_of(store)
    assert after_b3 == replayed_index(store, genesis)
    assert indexes.works_by_owner.key((ALICE.public, 2)) in after_b3
    assert indexes.works_by_owner.key((FERDIE.public, 3)) in after_b3
    assert indexes.licenses_by_holder.key((BOB.public, 1)) in after_b3
    assert indexes.credit_count.get(MemoryState(after_b3), ALICE.public) == 3
    # Explicit moves back and forth, and down to block 1.
    store.set_best(a2.block.hash)
    assert index_of(store) == after_a2
    store.set_best(bb3.block.hash)
    assert index_of(store) == after_b3
    store.set_best(b1.block.hash)
    assert index_of(store) == after_b1 == replayed_index(store, genesis)


def test_index_survives_reopen(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path, genesis) as store:
        store.import_block(block_of(store, store.best_hash,
                                    [(BOB, register_args(b"x", BOB))]).executed)
        saved = index_of(store)
    with ChainStore.open(tmp_path, genesis) as store:
        assert index_of(store) == saved
        assert indexes.works_by_owner.key((BOB.public, 2)) in saved


def test_index_catches_up_after_a_stop_and_says_when_it_cannot(
        tmp_path: Path, genesis: Genesis) -> None:
    """The index follows the chain on its own thread; if the node stops before it caught
    up (a crash, in effect), the next open catches up from the stored events."""
    with ChainStore.open(tmp_path, genesis) as store:
        store.import_block(block_of(store, store.best_hash,
                                    [(BOB, register_args(b"x", BOB))]).executed)
        assert indexes.works_by_owner.key((BOB.public, 2)) in index_of(store)
        store._indexer.close()  # the node dies with its indexer behind
        for name in (b"y", b"z"):
            store.import_block(block_of(store, store.best_hash,
                                        [(CHARLIE, register_args(name, CHARLIE))]).executed)
        with pytest.raises(DatabaseError, match="stopped following the chain"):
            index_of(store)  # a clear error, not a stale answer or a hang
    with ChainStore.open(tmp_path, genesis) as store:
        caught_up = index_of(store)
        assert caught_up == replayed_index(store, genesis)
        assert indexes.works_by_owner.key((CHARLIE.public, 4)) in caught_up


def test_a_database_without_the_index_pointer_is_indexed_at_its_best_block(
        tmp_path: Path, genesis: Genesis) -> None:
    """Databases from before the indexer kept the index in the import batches."""
    with ChainStore.open(tmp_path, genesis) as store:
        store.import_block(block_of(store, store.best_hash,
                                    [(BOB, register_args(b"x", BOB))]).executed)
        saved = index_of(store)
    db = plyvel.DB(str(db_path(tmp_path)))
    db.delete(META_INDEXED)
    db.close()
    with ChainStore.open(tmp_path, genesis) as store:
        assert index_of(store) == saved
        store.import_block(block_of(store, store.best_hash,
                                    [(DAVE, register_args(b"w", DAVE))]).executed)
        assert index_of(store) == replayed_index(store, genesis)
