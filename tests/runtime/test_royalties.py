"""Royalties: exact, immediate splits of every payment up the derivative graph."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.chain import indexes
from runtime.modules import balances, licensing, provenance, royalties
from runtime.modules.provenance import Split
from runtime.modules.royalties import Credited, PayRevenue, Reason, RoyaltyPaid
from tests.runtime_helpers import (
    ALICE,
    BOB,
    CHARLIE,
    DAVE,
    DEV,
    EVE,
    GENESIS_BALANCE,
    Applied,
    MiniChain,
    account,
    acquire,
    derive,
    expect_failure,
    expect_ok,
    offer,
    register,
    work_args,
)


def credits_by_account(applied: Applied) -> dict[bytes, int]:
    totals: dict[bytes, int] = defaultdict(int)
    for event in applied.of(Credited):
        totals[event.account] += event.amount
    return dict(totals)


@pytest.fixture
def example() -> tuple[MiniChain, int, int]:
    """The worked example: A by alice 70% / bob 30%, 10% rev share; B derived by charlie."""
    chain = MiniChain()
    a = register(chain, ALICE, work_args("A", ((ALICE.public, 7_000), (BOB.public, 3_000))))
    license_id = acquire(chain, CHARLIE, offer(chain, ALICE, a, commercial_rev_share=1_000))
    b = register(chain, CHARLIE, work_args("B", parents=((a, license_id),), owner=CHARLIE))
    return chain, a, b


@pytest.mark.parametrize(
    ("amount", "alice", "bob", "charlie"),
    [
        (1_000, 70, 30, 900),
        (999, 70, 29, 900),  # A's 99 splits 69.3 / 29.7: the dust (1) goes to alice, listed first
        (1_001, 70, 30, 901),  # A's share rounds down to 100; the rest stays with B
        (7, 0, 0, 7),  # A's share rounds to zero: no credit to A at all
    ],
)
def test_worked_example(
    example: tuple[MiniChain, int, int], amount: int, alice: int, bob: int, charlie: int
) -> None:
    chain, a, b = example
    before = {k.public: chain.free(k.public) for k in (ALICE, BOB, CHARLIE, DAVE)}
    applied = expect_ok(chain, DAVE, PayRevenue(b, amount, "sales, March"))
    assert applied.one(RoyaltyPaid) == RoyaltyPaid(b, DAVE.public, amount, Reason.REVENUE,
                                                   "sales, March")
    expected = {ALICE.public: alice, BOB.public: bob, CHARLIE.public: charlie}
    assert credits_by_account(applied) == {k: v for k, v in expected.items() if v}
    for who, gain in expected.items():
        assert chain.free(who) == before[who] + gain
        assert indexes.earned.get(chain.index, who) == (gain or None)
    assert chain.free(DAVE.public) == before[DAVE.public] - amount - applied.outcome.fee
    assert indexes.work_revenue.get(chain.index, b) == amount
    assert indexes.work_revenue.get(chain.index, a) is None
    for who, gain in expected.items():
        assert indexes.work_paid_out.get(chain.index, (b, who)) == (gain or None)
    via = {e.account: e.via_work for e in applied.of(Credited)}
    assert via == {k: (b if k == CHARLIE.public else a) for k, v in expected.items() if v}


def test_credit_history(example: tuple[MiniChain, int, int]) -> None:
    chain, a, b = example
    first = expect_ok(chain, DAVE, PayRevenue(b, 1_000, ""))
    second = expect_ok(chain, EVE, PayRevenue(a, 500, ""))
    assert indexes.credit_count.get(chain.index, ALICE.public) == 2
    assert indexes.credits.get(chain.index, (ALICE.public, 0)) == indexes.Credit(
        first.block, 0, b, a, 70, Reason.REVENUE)
    assert indexes.credits.get(chain.index, (ALICE.public, 1)) == indexes.Credit(
        second.block, 0, a, a, 350, Reason.REVENUE)
    assert indexes.credits.get(chain.index, (CHARLIE.public, 0)) == indexes.Credit(
        first.block, 0, b, b, 900, Reason.REVENUE)
    assert indexes.credits.get(chain.index, (CHARLIE.public, 1)) is None
    assert indexes.earned.get(chain.index, ALICE.public) == 420
    assert indexes.work_paid_out.get(chain.index, (a, ALICE.public)) == 350
    assert indexes.work_paid_out.get(chain.index, (b, ALICE.public)) == 70


def test_absolute_percentages_up_a_line() -> None:
    chain = MiniChain()
    a = register(chain, ALICE, work_args("a"))
    b = derive(chain, BOB, "b", (a,), rev_share=1_000)
    c = derive(chain, CHARLIE, "c", (b,), rev_share=500)
    applied = expect_ok(chain, DAVE, PayRevenue(c, 10_000, ""))
    # LAP: A takes 10% of C's revenue directly, B 5%, C keeps 85%.
    assert credits_by_account(applied) == {ALICE.public: 1_000, BOB.public: 500,
                                           CHARLIE.public: 8_500}


def test_payer_who_is_a_creator_is_credited_too(example: tuple[MiniChain, int, int]) -> None:
    chain, a, b = example
    before = chain.free(CHARLIE.public)
    applied = expect_ok(chain, CHARLIE, PayRevenue(b, 1_000, ""))
    assert credits_by_account(applied)[CHARLIE.public] == 900
    assert chain.free(CHARLIE.public) == before - 100 - applied.outcome.fee
    assert indexes.earned.get(chain.index, CHARLIE.public) == 900


def test_pay_revenue_errors(example: tuple[MiniChain, int, int]) -> None:
    chain, a, b = example
    expect_failure(chain, DAVE, PayRevenue(b, 0, ""), "balances.ZeroAmount")
    expect_failure(chain, DAVE, PayRevenue(99, 10, ""), "provenance.WorkNotFound")
    expect_failure(chain, DAVE, PayRevenue(b, GENESIS_BALANCE, ""),
                   "balances.InsufficientBalance")


def test_split_among_gives_dust_to_the_first_creator() -> None:
    creators = (Split(ALICE.public, 3_333), Split(BOB.public, 3_333), Split(CHARLIE.public, 3_334))
    assert royalties.split_among(10, creators) == [
        (ALICE.public, 4), (BOB.public, 3), (CHARLIE.public, 3)]
    assert royalties.split_among(0, creators) == [
        (ALICE.public, 0), (BOB.public, 0), (CHARLIE.public, 0)]


@given(
    amount=st.integers(0, (1 << 128) - 1),
    cuts=st.lists(st.integers(1, 9_999), max_size=15, unique=True),
)
def test_split_among_is_exact(amount: int, cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), 10_000]
    creators = tuple(Split(account(i), hi - lo) for i, (lo, hi) in
                     enumerate(zip(bounds, bounds[1:], strict=False)))
    shares = royalties.split_among(amount, creators)
    assert sum(s for _, s in shares) == amount
    for (who, share), c in zip(shares[1:], creators[1:], strict=True):
        assert (who, share) == (c.account, amount * c.bps // 10_000)
    assert 0 <= shares[0][1] - amount * creators[0].bps // 10_000 < len(creators)


def test_worst_case_distribution_is_bounded() -> None:
    """32 ancestors × 16 creators each, plus 16 own creators: 528 credits in one call."""
    chain = MiniChain()
    sixteen = [tuple((account(w * 16 + i), 625) for i in range(16)) for w in range(34)]
    last = register(chain, ALICE, work_args("w0", sixteen[0]))
    for w in range(1, provenance.MAX_ANCESTORS + 1):
        license_id = acquire(chain, ALICE, offer(chain, ALICE, last, commercial_rev_share=300))
        last = register(chain, ALICE, work_args(f"w{w}", sixteen[w], ((last, license_id),)))
    work = provenance.works.get(chain.state, last)
    assert work is not None
    assert len(work.royalty_stack) == 32 and sum(s.bps for s in work.royalty_stack) == 9_600
    applied = expect_ok(chain, DAVE, PayRevenue(last, 10**15, ""))
    assert len(applied.of(Credited)) == royalties.max_credits() == 528
    assert sum(e.amount for e in applied.of(Credited)) == 10**15
    weight = royalties.module.calls["pay_revenue"].weight(PayRevenue(last, 1, ""))
    assert weight == royalties.PAY_REVENUE_BASE_WEIGHT + royalties.distribute_max_weight()
    assert applied.outcome.weight < 100_000_000  # a tenth of a block


# ---------------------------------------------------------------------------
# Property: random derivative graphs and splits; every payment is exact.

SIGNERS = [DEV[n] for n in ("alice", "bob", "charlie", "dave", "eve")]
POOL = [k.public for k in SIGNERS] + [account(i) for i in range(6)]


@st.composite
def splits(draw: st.DrawFn) -> tuple[tuple[bytes, int], ...]:
    accounts = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    cuts = draw(st.lists(st.integers(1, 9_999), min_size=len(accounts) - 1,
                         max_size=len(accounts) - 1, unique=True))
    bounds = [0, *sorted(cuts), 10_000]
    return tuple((a, hi - lo) for a, lo, hi in zip(accounts, bounds, bounds[1:], strict=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_payments_are_exact_over_random_graphs(data: st.DataObject) -> None:
    chain = MiniChain()
    issuance = balances.total_issuance.get(chain.state)
    assert chain.balances_sum() == issuance
    works: list[int] = []
    for n in range(data.draw(st.integers(1, 7), label="works")):
        signer = data.draw(st.sampled_from(SIGNERS), label="owner")
        parents = data.draw(st.lists(st.sampled_from(works), max_size=3, unique=True)
                            if works else st.just([]), label="parents")
        links = []
        for parent in parents:
            owner = next(k for k in SIGNERS if k.public == provenance.works.get(
                chain.state, parent).owner)  # type: ignore[union-attr]
            rev_share = data.draw(st.integers(0, 3_000), label="rev share")
            links.append((parent, acquire(chain, signer, offer(
                chain, owner, parent, commercial_rev_share=rev_share))))
        applied = chain.submit(signer, work_args(f"work {n}", data.draw(splits()), tuple(links),
                                                 owner=signer))
        assert applied.error in (None, "provenance.RoyaltyStackTooHigh")
        if applied.ok:
            works.append(applied.one(provenance.WorkRegistered).work_id)
        assert chain.balances_sum() == issuance

    for _ in range(data.draw(st.integers(1, 4), label="payments")):
        work_id = data.draw(st.sampled_from(works), label="paid work")
        payer = data.draw(st.sampled_from(SIGNERS), label="payer")
        amount = data.draw(st.one_of(st.integers(1, 100), st.integers(1, 10**15)), label="amount")
        if data.draw(st.booleans(), label="as license fee"):
            owner = next(k for k in SIGNERS if k.public == provenance.works.get(
                chain.state, work_id).owner)  # type: ignore[union-attr]
            terms_id = offer(chain, owner, work_id, minting_fee=amount)
            args: licensing.AcquireLicense | PayRevenue = licensing.AcquireLicense(terms_id)
        else:
            args = PayRevenue(work_id, amount, "")
        before = {who: chain.free(who) for who in [*POOL, chain.author]}
        revenue_before = indexes.work_revenue.get(chain.index, work_id) or 0
        applied = expect_ok(chain, payer, args)
        credited = applied.of(Credited)
        # The credits sum exactly to the amount and follow the royalty stack.
        assert sum(e.amount for e in credited) == amount
        work = provenance.works.get(chain.state, work_id)
        assert work is not None
        via: dict[int, int] = defaultdict(int)
        for e in credited:
            assert e.work_id == work_id and e.amount > 0
            via[e.via_work] += e.amount
        to_ancestors = 0
        for share in work.royalty_stack:
            assert via.get(share.work_id, 0) == amount * share.bps // 10_000
            to_ancestors += amount * share.bps // 10_000
        assert via.get(work_id, 0) == amount - to_ancestors
        # Every balance moved by exactly its credits, the payment and the fee.
        gains = credits_by_account(applied)
        for who, free in before.items():
            expected = free + gains.get(who, 0)
            if who == payer.public:
                expected -= amount + applied.outcome.fee
            if who == chain.author:
                expected += applied.outcome.fee
            assert chain.free(who) == expected
        assert chain.balances_sum() == issuance
        assert indexes.work_revenue.get(chain.index, work_id) == revenue_before + amount

    # Per-work paid-out totals add up to the work's revenue.
    for work_id in works:
        paid_out = sum(indexes.work_paid_out.get(chain.index, (work_id, who)) or 0
                       for who in POOL)
        assert paid_out == (indexes.work_revenue.get(chain.index, work_id) or 0)
    # Each account's earnings equal its credit history.
    for who in POOL:
        count = indexes.credit_count.get(chain.index, who) or 0
        history = [indexes.credits.get(chain.index, (who, i)) for i in range(count)]
        assert sum(c.amount for c in history if c is not None) == (
            indexes.earned.get(chain.index, who) or 0)


def test_unused_worst_case_weight_is_refunded(example: tuple[MiniChain, int, int]) -> None:
    """pay_revenue is charged for 528 credits up front; a 3-credit payment pays for 3."""
    from runtime import codec, executive
    from runtime.extrinsic import sign_extrinsic
    from runtime.support import make_call
    from tests.runtime_helpers import GENESIS_HASH

    chain, _, b = example
    args = PayRevenue(b, 1_000, "")
    ext = sign_extrinsic(DAVE, make_call(args), chain.nonce(DAVE.public), GENESIS_HASH,
                         executive.SPEC_VERSION)
    worst = executive.call_weight(ext)
    before = chain.free(DAVE.public)
    applied = expect_ok(chain, DAVE, args)
    used = (executive.EXTRINSIC_BASE_WEIGHT + royalties.PAY_REVENUE_BASE_WEIGHT
            + royalties.DISTRIBUTE_BASE_WEIGHT + provenance.WORK_READ_WEIGHT * 2
            + royalties.CREDIT_WEIGHT * 3)
    assert applied.outcome.weight == used < worst
    assert applied.outcome.fee == executive.compute_fee(len(codec.encode(ext)), used)
    assert chain.free(DAVE.public) == before - 1_000 - applied.outcome.fee
