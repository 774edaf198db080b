"""The executive, driven through signed extrinsics: validity, fees, dispatch, failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.chain.blocks import EventRecords
from runtime import codec, executive, support
from runtime.crypto import Keypair, blake2_256, dev_keypair
from runtime.executive import (
    BirthBlockUnknown,
    CannotPayFee,
    ExhaustsResources,
    FutureNonce,
    InvalidSignature,
    StaleNonce,
    TransactionExpired,
)
from runtime.extrinsic import MAX_EXTRINSIC_SIZE, Era, Extrinsic, decode_extrinsic
from runtime.modules import balances, system
from runtime.modules.balances import TransferArgs
from runtime.modules.system import Remark
from runtime.support import BlockInfo, Env, make_call

ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")
CHARLIE = dev_keypair("charlie")
DAVE = dev_keypair("dave")
FERDIE = dev_keypair("ferdie")  # the block author in these tests
UNIT = 10**12
START = 1_000 * UNIT

MakeChain = Callable[..., Any]


@pytest.fixture
def chain(new_chain: MakeChain) -> Any:
    return new_chain({ALICE.public: START, BOB.public: START, CHARLIE.public: START})


def fee_of(ext: Extrinsic) -> int:
    return executive.compute_fee(len(codec.encode(ext)), executive.call_weight(ext))


def events_of(events: list[support.EventRecord]) -> list[tuple[int | None, Any]]:
    return [(r.extrinsic_index, r.event) for r in events]


def assert_nothing_changed(env: Env, before: dict[bytes, bytes | None], n_events: int) -> None:
    assert env.state.changes == before
    assert len(env.events) == n_events


# ---------------------------------------------------------------------------
# Successful transfer


def test_transfer_moves_amount_pays_author_and_bumps_nonce(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 5 * UNIT), tip=123)
    fee = fee_of(ext)
    weight = executive.call_weight(ext)
    assert weight == executive.EXTRINSIC_BASE_WEIGHT + 20_000
    assert fee == executive.BASE_FEE + executive.LENGTH_FEE * len(ext.encode()) + 1_000 * weight
    (outcome,), events = chain.build_block([ext])
    assert outcome == executive.ApplyOutcome(weight, fee + 123, None)
    assert chain.free(ALICE.public) == START - 5 * UNIT - fee - 123
    assert chain.free(BOB.public) == START + 5 * UNIT
    assert chain.free(FERDIE.public) == fee + 123
    assert chain.nonce(ALICE.public) == 1
    assert chain.nonce(BOB.public) == 0
    assert events_of(events) == [
        (0, balances.Transfer(ALICE.public, BOB.public, 5 * UNIT)),
        (0, balances.FeePaid(ALICE.public, fee, 123, FERDIE.public)),
        (0, system.ExtrinsicSuccess(weight, fee + 123)),
    ]
    assert balances.total_issuance.get(chain.state) == 3 * START == chain.balances_sum()
    assert system.number.get(chain.state) == 1
    assert system.timestamp.get(chain.state) == 6_000
    assert system.block_hash.get(chain.state, 0) == chain.genesis_hash


def test_several_extrinsics_in_one_block_get_their_indexes(chain: Any) -> None:
    exts = [
        chain.sign(ALICE, TransferArgs(DAVE.public, 1), nonce=0),
        chain.sign(ALICE, TransferArgs(DAVE.public, 2), nonce=1),
        chain.sign(BOB, Remark(b"hi"), nonce=0),
    ]
    outcomes, events = chain.build_block(exts)
    assert [o.error for o in outcomes] == [None, None, None]
    assert chain.nonce(ALICE.public) == 2
    assert chain.free(DAVE.public) == 3
    assert sorted({r.extrinsic_index for r in events}) == [0, 1, 2]
    assert [type(r.event).__name__ for r in events if r.extrinsic_index == 2] == [
        "FeePaid", "ExtrinsicSuccess"]


def test_author_paying_itself_keeps_the_fee(new_chain: MakeChain) -> None:
    chain = new_chain({FERDIE.public: START, BOB.public: START})
    (outcome,), _ = chain.build_block([chain.sign(FERDIE, TransferArgs(BOB.public, UNIT))])
    assert outcome.error is None
    assert chain.free(FERDIE.public) == START - UNIT
    assert chain.nonce(FERDIE.public) == 1


def test_transaction_hash_and_decoding(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1))
    data = ext.encode()
    assert decode_extrinsic(data) == ext
    assert ext.hash == blake2_256(data)
    assert ext.signature_valid(chain.genesis_hash, executive.SPEC_VERSION, chain.genesis_hash)


# ---------------------------------------------------------------------------
# Invalid transactions


def test_the_size_limit_is_the_decoders(new_chain: MakeChain) -> None:
    """No validity rule checks an extrinsic's size: decoding refuses more than 65,536 bytes
    (``Oversize``) before anything else runs, wherever an extrinsic enters (spec 3.5)."""
    assert not any(cls.__name__ == "ExtrinsicTooLarge"
                   for cls in executive.InvalidTransaction.__subclasses__())
    rich = new_chain({ALICE.public: 10**20})
    ext = rich.sign(ALICE, Remark(b"x"))
    with pytest.raises(codec.Oversize):
        decode_extrinsic(ext.encode() + bytes(MAX_EXTRINSIC_SIZE))
    # Exactly the limit is valid (and charged for its length).
    env = rich.open_block()
    valid = executive.check_transaction(env.state, env.block, ext, MAX_EXTRINSIC_SIZE,
                                        rich.genesis_hash)
    assert valid.fee == executive.compute_fee(MAX_EXTRINSIC_SIZE, executive.call_weight(ext))


def test_exhausts_resources(new_chain: MakeChain, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real call weighs a whole block: give remark a huge weight for this test."""
    chain = new_chain({ALICE.public: 10**20})
    spec = support.CALLS[("system", "remark")]
    limit = executive.MAX_BLOCK_WEIGHT - executive.EXTRINSIC_BASE_WEIGHT
    ext = chain.sign(ALICE, Remark(b"x"))
    length = len(ext.encode())

    monkeypatch.setitem(support.CALLS, ("system", "remark"),
                        dataclasses.replace(spec, weight=lambda a: limit + 1))
    env = chain.open_block()
    before = dict(env.state.changes)
    with pytest.raises(ExhaustsResources):
        executive.apply_extrinsic(env, ext, length, 0, chain.genesis_hash)
    assert_nothing_changed(env, before, 0)

    monkeypatch.setitem(support.CALLS, ("system", "remark"),
                        dataclasses.replace(spec, weight=lambda a: limit))
    outcome = executive.apply_extrinsic(env, ext, length, 0, chain.genesis_hash)
    assert outcome.weight == executive.MAX_BLOCK_WEIGHT


def test_transaction_expired(chain: Any) -> None:
    chain.build_block([])  # block 1
    chain.build_block([])  # block 2
    era = Era(birth=2, period=3)  # valid in blocks 3, 4, 5
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), era=era)
    chain.build_block([])  # 3
    chain.build_block([])  # 4
    env = chain.open_block()  # 5: last valid block
    assert chain.apply(env, ext).error is None  # (not committed)
    chain.build_block([])  # 5
    results, _ = chain.build_block([ext])  # 6
    assert isinstance(results[0], TransactionExpired)
    assert chain.nonce(ALICE.public) == 0


def test_mortal_transaction_applies_at_the_first_block_after_birth(chain: Any) -> None:
    chain.build_block([])  # 1
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), era=Era(1, 64))
    (outcome,), _ = chain.build_block([ext])  # 2: birth is the parent
    assert outcome.error is None
    assert chain.nonce(ALICE.public) == 1


def test_birth_older_than_kept_hashes_is_expired(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), era=Era(10, 10**6),
                     birth_hash=bytes(32))
    far = BlockInfo(10 + system.BLOCK_HASH_COUNT + 5, 0, FERDIE.public, bytes(32))
    with pytest.raises(TransactionExpired):
        executive.check_transaction(chain.state, far, ext, len(ext.encode()), chain.genesis_hash)


def test_birth_block_unknown(chain: Any) -> None:
    chain.build_block([])  # 1
    chain.build_block([])  # 2
    for birth in (3, 4, 100):  # the next block is 3: a birth at or after it is in the future
        ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), era=Era(birth, 64),
                         birth_hash=bytes(32))
        env = chain.open_block()
        before = dict(env.state.changes)
        with pytest.raises(BirthBlockUnknown):
            chain.apply(env, ext)
        assert_nothing_changed(env, before, 0)
    results, _ = chain.build_block([ext])
    assert isinstance(results[0], BirthBlockUnknown)
    assert chain.nonce(ALICE.public) == 0


def test_wrong_birth_hash_is_a_bad_signature(chain: Any) -> None:
    chain.build_block([])  # 1
    chain.build_block([])  # 2
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), era=Era(1, 64),
                     birth_hash=blake2_256(b"another fork"))
    env = chain.open_block()
    with pytest.raises(InvalidSignature):
        chain.apply(env, ext)


def test_stale_nonce_replay(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, UNIT))
    results, _ = chain.build_block([ext, ext])  # replay in the same block
    assert results[0].error is None
    assert isinstance(results[1], StaleNonce)
    results, _ = chain.build_block([ext])  # and in a later one
    assert isinstance(results[0], StaleNonce)
    assert chain.free(BOB.public) == START + UNIT
    assert chain.nonce(ALICE.public) == 1


def test_future_nonce_valid_for_pool_but_not_applicable(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, 1), nonce=1)
    env = chain.open_block()
    valid = executive.check_transaction(env.state, env.block, ext, len(ext.encode()),
                                        chain.genesis_hash)
    assert valid.account_nonce == 0
    assert valid.priority == 0
    before = dict(env.state.changes)
    with pytest.raises(FutureNonce):
        chain.apply(env, ext)
    assert_nothing_changed(env, before, 0)
    # Once nonce 0 is used, the same transaction applies.
    chain.apply(env, chain.sign(ALICE, TransferArgs(BOB.public, 1), nonce=0), 0)
    assert chain.apply(env, ext, 1).error is None


def test_invalid_signatures(chain: Any) -> None:
    good = chain.sign(ALICE, TransferArgs(BOB.public, UNIT))
    tampered_call = dataclasses.replace(good, call=make_call(TransferArgs(BOB.public, 2 * UNIT)))
    tampered_dest = dataclasses.replace(good, call=make_call(TransferArgs(DAVE.public, UNIT)))
    tampered_tip = dataclasses.replace(good, tip=1)
    tampered_era = dataclasses.replace(good, era=Era(5, 0))  # still immortal, other bytes
    other_signer = dataclasses.replace(good, signer=BOB.public)
    bad_bytes = dataclasses.replace(good, signature=bytes(64))
    other_chain = chain.sign(ALICE, TransferArgs(BOB.public, UNIT),
                             genesis_hash=blake2_256(b"another chain"))
    other_spec = chain.sign(ALICE, TransferArgs(BOB.public, UNIT),
                            spec_version=executive.SPEC_VERSION + 1)
    env = chain.open_block()
    before = dict(env.state.changes)
    for ext in (tampered_call, tampered_dest, tampered_tip, tampered_era, other_signer,
                bad_bytes, other_chain, other_spec):
        with pytest.raises(InvalidSignature):
            chain.apply(env, ext)
    assert_nothing_changed(env, before, 0)
    assert chain.apply(env, good).error is None


def test_cannot_pay_fee(chain: Any) -> None:
    pauper = Keypair.from_seed(blake2_256(b"pauper"))
    env = chain.open_block()
    with pytest.raises(CannotPayFee):
        chain.apply(env, chain.sign(pauper, Remark(b"")))


def test_fee_boundary(new_chain: MakeChain) -> None:
    tip = 77
    probe = new_chain({}).sign(ALICE, TransferArgs(BOB.public, 1), tip=tip)
    needed = fee_of(probe) + tip
    short = new_chain({ALICE.public: needed - 1})
    with pytest.raises(CannotPayFee):
        short.apply(short.open_block(), short.sign(ALICE, TransferArgs(BOB.public, 1), tip=tip))
    exact = new_chain({ALICE.public: needed})
    (outcome,), _ = exact.build_block([exact.sign(ALICE, TransferArgs(BOB.public, 1), tip=tip)])
    # The fee is paid; nothing is left for the transfer itself.
    assert outcome.error == "balances.InsufficientBalance"
    assert exact.free(ALICE.public) == 0
    assert exact.nonce(ALICE.public) == 1  # an emptied account keeps its nonce
    assert exact.free(FERDIE.public) == needed


# ---------------------------------------------------------------------------
# Failing calls are included


def test_failed_transfer_is_included_and_reverted(chain: Any) -> None:
    ext = chain.sign(ALICE, TransferArgs(BOB.public, START), tip=5)  # START minus fee < START
    paid = fee_of(ext) + 5
    weight = executive.call_weight(ext)
    (outcome,), events = chain.build_block([ext])
    assert outcome.error == "balances.InsufficientBalance"
    assert outcome.fee == paid
    assert chain.free(ALICE.public) == START - paid
    assert chain.free(BOB.public) == START
    assert chain.free(FERDIE.public) == paid
    assert chain.nonce(ALICE.public) == 1
    assert len(events) == 2
    assert events[0].event == balances.FeePaid(ALICE.public, paid - 5, 5, FERDIE.public)
    failed = events[1].event
    assert isinstance(failed, system.ExtrinsicFailed)
    assert (events[1].extrinsic_index, failed.weight, failed.fee, failed.error) == (
        0, weight, paid, "balances.InsufficientBalance")
    assert failed.detail
    # The failure event survives the codec.
    assert codec.decode(events[1].encode(), support.EventRecord) == events[1]


def test_zero_amount_is_a_failed_call(chain: Any) -> None:
    (outcome,), events = chain.build_block([chain.sign(ALICE, TransferArgs(BOB.public, 0))])
    assert outcome.error == "balances.ZeroAmount"
    assert [type(r.event).__name__ for r in events] == ["FeePaid", "ExtrinsicFailed"]
    assert chain.nonce(ALICE.public) == 1


def test_failed_call_drops_its_own_events_and_changes(
    chain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that moves value and emits, then fails: neither survives, the fee does."""

    def move_then_fail(env: Env, who: bytes, args: Remark) -> None:
        balances.move(env.state, who, DAVE.public, UNIT)
        env.emit(balances.Transfer(who, DAVE.public, UNIT))
        system.put_account(env.state, CHARLIE.public, system.AccountInfo(99, 1))
        raise balances.ZeroAmount("boom")

    spec = support.CALLS[("system", "remark")]
    monkeypatch.setitem(support.CALLS, ("system", "remark"),
                        dataclasses.replace(spec, handler=move_then_fail))
    ext = chain.sign(ALICE, Remark(b""))
    (outcome,), events = chain.build_block([ext])
    assert outcome.error == "balances.ZeroAmount"
    assert [type(r.event).__name__ for r in events] == ["FeePaid", "ExtrinsicFailed"]
    assert events[1].event.detail == "boom"
    assert codec.decode(events.encoded(), EventRecords) == tuple(events)  # dropped there too
    assert chain.free(DAVE.public) == 0
    assert chain.account(CHARLIE.public) == system.AccountInfo(0, START)
    assert chain.free(ALICE.public) == START - outcome.fee
    assert chain.nonce(ALICE.public) == 1


# ---------------------------------------------------------------------------
# Properties

KEYS = [ALICE, BOB, CHARLIE, DAVE]
ENDOWMENT = {ALICE.public: 10 * UNIT, BOB.public: UNIT, CHARLIE.public: executive.BASE_FEE * 2}

transfers = st.lists(
    st.tuples(
        st.integers(0, len(KEYS) - 1),  # sender
        st.integers(0, len(KEYS) - 1),  # receiver
        st.one_of(st.integers(0, 2 * UNIT), st.sampled_from([0, 1, 10 * UNIT, 2**128 - 1])),
        st.integers(0, 10**9),  # tip
        st.integers(-1, 1),  # nonce offset: stale, right, future
        st.booleans(),  # close the block after this one
    ),
    max_size=25,
)


def run_transfers(chain: Any, plan: list[tuple[int, int, int, int, int, bool]]) -> list[Any]:
    results: list[Any] = []
    env = chain.open_block()
    index = 0
    for sender, receiver, amount, tip, offset, close in plan:
        key = KEYS[sender]
        nonce = system.account_info(env.state, key.public).nonce + offset
        if nonce < 0:
            nonce = 0
        ext = chain.sign(key, TransferArgs(KEYS[receiver].public, amount), nonce=nonce, tip=tip)
        try:
            results.append(chain.apply(env, ext, index))
            index += 1
        except executive.InvalidTransaction as e:
            results.append(type(e))
        if close:
            chain.close_block(env)
            env = chain.open_block()
            index = 0
    chain.close_block(env)
    return results


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfers)
def test_property_deterministic(new_chain: MakeChain, plan: Any) -> None:
    a, b = new_chain(ENDOWMENT), new_chain(ENDOWMENT)
    assert run_transfers(a, plan) == run_transfers(b, plan)
    assert a.state.items == b.state.items
    assert a.number == b.number


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfers)
def test_property_issuance_conserved(new_chain: MakeChain, plan: Any) -> None:
    chain = new_chain(ENDOWMENT)
    total = sum(ENDOWMENT.values())
    results = run_transfers(chain, plan)
    assert chain.balances_sum() == total == balances.total_issuance.get(chain.state)
    for _, raw in chain.state.iter_prefix(system.account.prefix):
        info = codec.decode(raw, system.AccountInfo)
        assert info.free >= 0
        assert info.nonce >= 0
    # Every included extrinsic bumped exactly its signer's nonce.
    included = sum(1 for r in results if isinstance(r, executive.ApplyOutcome))
    assert sum(chain.nonce(k.public) for k in KEYS) == included


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender=st.sampled_from([ALICE, BOB]),
    amount=st.integers(1, UNIT // 2),
    tip=st.integers(0, 1000),
    period=st.integers(1, 4),
    gap=st.integers(1, 6),
)
def test_property_replays_refused(
    new_chain: MakeChain, sender: Keypair, amount: int, tip: int, period: int, gap: int
) -> None:
    chain = new_chain(ENDOWMENT)
    chain.build_block([])  # block 1
    ext = chain.sign(sender, TransferArgs(DAVE.public, amount), tip=tip)
    (first,), _ = chain.build_block([ext])
    assert isinstance(first, executive.ApplyOutcome)
    assert first.error is None
    snapshot = dict(chain.state.items)

    # The same bytes again, now and in later blocks.
    for _ in range(gap):
        (again,), _ = chain.build_block([ext])
        assert isinstance(again, StaleNonce)
    # The same transaction signed for another chain.
    foreign = chain.sign(sender, TransferArgs(DAVE.public, amount), tip=tip,
                         genesis_hash=blake2_256(b"other" + bytes([period])))
    # A mortal one that has run out of time.
    birth = chain.number
    mortal = chain.sign(sender, TransferArgs(DAVE.public, amount), tip=tip,
                        era=Era(birth, period))
    for _ in range(period):
        chain.build_block([])
    env = chain.open_block()
    with pytest.raises(InvalidSignature):
        chain.apply(env, foreign)
    with pytest.raises(TransactionExpired):
        chain.apply(env, mortal)
    assert chain.free(DAVE.public) == amount
    assert {k: v for k, v in chain.state.items.items() if k.startswith(b"system:account")} == {
        k: v for k, v in snapshot.items() if k.startswith(b"system:account")}
