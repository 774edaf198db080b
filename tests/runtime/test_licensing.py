"""Licensing: offering and retiring terms, acquiring, transferring and approving licenses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from node.chain import indexes
from runtime.crypto import sha256
from runtime.modules import licensing, provenance, royalties
from runtime.modules.licensing import AiUse
from runtime.state import Overlay
from tests.runtime_helpers import (
    ALICE,
    BOB,
    CHARLIE,
    DAVE,
    DEFAULT_TERMS,
    EVE,
    MiniChain,
    acquire,
    derive,
    expect_failure,
    expect_ok,
    offer,
    register,
    terms_args,
    work_args,
)


@pytest.fixture
def chain() -> MiniChain:
    return MiniChain()


@pytest.fixture
def work(chain: MiniChain) -> int:
    """A work owned by ALICE, created by ALICE (70%) and BOB (30%)."""
    return register(chain, ALICE, work_args("work", ((ALICE.public, 7_000), (BOB.public, 3_000))))


def get_license(chain: MiniChain, license_id: int) -> licensing.License:
    found = licensing.licenses.get(chain.state, license_id)
    assert found is not None
    return found


def get_terms(chain: MiniChain, terms_id: int) -> licensing.Terms:
    found = licensing.terms.get(chain.state, terms_id)
    assert found is not None
    return found


# ---------------------------------------------------------------------------
# offer_terms


def test_offer_terms_stores_them(chain: MiniChain, work: int) -> None:
    legal_hash = sha256(b"the license text")
    args = terms_args(work, minting_fee=5_000, expiry_blocks=100, max_supply=3,
                      ai_training=AiUse.CONSTRAINED, legal_hash=legal_hash)
    applied = expect_ok(chain, ALICE, args)
    assert applied.one(licensing.TermsOffered) == licensing.TermsOffered(1, work, ALICE.public)
    stored = get_terms(chain, 1)
    assert stored == licensing.Terms(
        id=1, work_id=work, offered_by=ALICE.public, retired=False, minted=0,
        **{**DEFAULT_TERMS, "minting_fee": 5_000, "expiry_blocks": 100, "max_supply": 3,
           "ai_training": AiUse.CONSTRAINED, "legal_hash": legal_hash},
    )
    assert indexes.terms_by_work.get(chain.index, (work, 1)) is True
    assert offer(chain, ALICE, work) == 2


def test_offer_terms_owner_only(chain: MiniChain, work: int) -> None:
    expect_failure(chain, BOB, terms_args(work), "provenance.NotOwner")
    expect_failure(chain, ALICE, terms_args(42), "provenance.WorkNotFound")


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (dict(commercial_use=False, commercial_attribution=False), "commercial_rev_share"),
        (dict(commercial_use=False, commercial_rev_share=0), "commercial_attribution"),
        (dict(commercial_rev_share=10_001), "exceeds 10000"),
        (dict(derivatives_allowed=False, derivatives_attribution=True), "derivatives_attribution"),
        (dict(derivatives_allowed=False, derivatives_attribution=False,
              derivatives_approval=True), "derivatives_approval"),
        (dict(derivatives_allowed=False, derivatives_attribution=False,
              derivatives_reciprocal=True), "derivatives_reciprocal"),
        (dict(ai_training=AiUse.CONSTRAINED, legal_uri=""), "ai_training"),
        (dict(ai_inference=AiUse.CONSTRAINED, legal_uri=""), "ai_inference"),
    ],
)
def test_contradictory_terms(
    chain: MiniChain, work: int, overrides: dict[str, Any], why: str
) -> None:
    applied = expect_failure(chain, ALICE, terms_args(work, **overrides),
                             "licensing.ContradictoryTerms")
    assert why in applied.detail


def test_consistent_edge_terms_are_accepted(chain: MiniChain, work: int) -> None:
    # Non-commercial, no derivatives, no AI, no legal text: all consistent.
    offer(chain, ALICE, work, commercial_use=False, commercial_attribution=False,
          commercial_rev_share=0, derivatives_allowed=False, derivatives_attribution=False,
          ai_training=AiUse.NOT_ALLOWED, ai_inference=AiUse.NOT_ALLOWED, legal_uri="")
    offer(chain, ALICE, work, commercial_rev_share=10_000)


def test_reciprocal_terms_must_be_repeated_exactly(chain: MiniChain, work: int) -> None:
    reciprocal = dict(DEFAULT_TERMS, derivatives_reciprocal=True, commercial_rev_share=500)
    license_id = acquire(chain, BOB, offer(chain, ALICE, work, **reciprocal))
    child = register(chain, BOB, work_args("child", parents=((work, license_id),), owner=BOB))
    applied = expect_failure(chain, BOB, terms_args(child, **dict(reciprocal, minting_fee=1)),
                             "licensing.ReciprocityViolated")
    assert "reciprocal" in applied.detail
    expect_failure(chain, BOB, terms_args(child, **dict(reciprocal, derivatives_reciprocal=False)),
                   "licensing.ReciprocityViolated")
    terms_id = offer(chain, BOB, child, **reciprocal)
    assert get_terms(chain, terms_id).offered_by == BOB.public


def test_derivative_cannot_grant_more_than_it_holds(chain: MiniChain, work: int) -> None:
    parent_terms = offer(chain, ALICE, work, commercial_use=False, commercial_attribution=False,
                         commercial_rev_share=0, ai_training=AiUse.NOT_ALLOWED,
                         ai_inference=AiUse.CONSTRAINED)
    license_id = acquire(chain, BOB, parent_terms)
    child = register(chain, BOB, work_args("child", parents=((work, license_id),), owner=BOB))
    non_commercial = dict(commercial_use=False, commercial_attribution=False,
                          commercial_rev_share=0)
    applied = expect_failure(chain, BOB, terms_args(child, ai_training=AiUse.NOT_ALLOWED,
                                                    ai_inference=AiUse.CONSTRAINED),
                             "licensing.ExceedsParentRights")
    assert "commercial" in applied.detail
    applied = expect_failure(chain, BOB, terms_args(child, **non_commercial,
                                                    ai_inference=AiUse.CONSTRAINED),
                             "licensing.ExceedsParentRights")
    assert "ai_training allowed" in applied.detail
    applied = expect_failure(chain, BOB, terms_args(child, **non_commercial,
                                                    ai_training=AiUse.NOT_ALLOWED),
                             "licensing.ExceedsParentRights")
    assert "ai_inference allowed" in applied.detail
    offer(chain, BOB, child, **non_commercial, ai_training=AiUse.NOT_ALLOWED,
          ai_inference=AiUse.CONSTRAINED)
    offer(chain, BOB, child, **non_commercial, ai_training=AiUse.NOT_ALLOWED,
          ai_inference=AiUse.NOT_ALLOWED)


# ---------------------------------------------------------------------------
# retire_terms


def test_retire_terms(chain: MiniChain, work: int) -> None:
    terms_id = offer(chain, ALICE, work)
    license_id = acquire(chain, CHARLIE, terms_id)
    applied = expect_ok(chain, ALICE, licensing.RetireTerms(terms_id))
    assert applied.one(licensing.TermsWithdrawn) == licensing.TermsWithdrawn(terms_id, work)
    assert get_terms(chain, terms_id).retired
    expect_failure(chain, DAVE, licensing.AcquireLicense(terms_id), "licensing.TermsRetired")
    expect_failure(chain, ALICE, licensing.RetireTerms(terms_id), "licensing.TermsRetired")
    # Licenses already issued stay valid.
    lic, _ = licensing.live_license(chain.state, license_id, chain.number + 1)
    assert lic.licensee == CHARLIE.public


def test_retire_terms_errors(chain: MiniChain, work: int) -> None:
    terms_id = offer(chain, ALICE, work)
    expect_failure(chain, BOB, licensing.RetireTerms(terms_id), "provenance.NotOwner")
    expect_failure(chain, ALICE, licensing.RetireTerms(77), "licensing.TermsNotFound")


# ---------------------------------------------------------------------------
# acquire_license


def test_acquire_license_pays_the_fee_into_the_work(chain: MiniChain, work: int) -> None:
    terms_id = offer(chain, ALICE, work, minting_fee=1_001, expiry_blocks=50)
    alice, bob, dave = (chain.free(k.public) for k in (ALICE, BOB, DAVE))
    applied = expect_ok(chain, DAVE, licensing.AcquireLicense(terms_id))
    event = applied.one(licensing.LicenseAcquired)
    assert event == licensing.LicenseAcquired(1, terms_id, work, DAVE.public, 1_001,
                                              applied.block + 50)
    assert get_license(chain, 1) == licensing.License(
        1, terms_id, work, DAVE.public, applied.block, applied.block + 50, False)
    assert indexes.licenses_by_holder.get(chain.index, (DAVE.public, 1)) is True
    assert indexes.licenses_by_work.get(chain.index, (work, 1)) is True
    assert get_terms(chain, terms_id).minted == 1
    # 70/30 with the dust to the first listed creator: 700.7 -> 701, 300.3 -> 300.
    assert chain.free(ALICE.public) == alice + 701
    assert chain.free(BOB.public) == bob + 300
    assert chain.free(DAVE.public) == dave - 1_001 - applied.outcome.fee
    paid = applied.one(royalties.RoyaltyPaid)
    assert (paid.amount, paid.reason) == (1_001, royalties.Reason.LICENSE_FEE)


def test_free_license_never_expires(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work))
    assert get_license(chain, license_id).expires_at == 0
    chain.advance(1_000_000)
    licensing.live_license(chain.state, license_id, chain.number + 1)


def test_license_fee_reaches_ancestors(chain: MiniChain, work: int) -> None:
    child = derive(chain, CHARLIE, "child", (work,), rev_share=2_000)
    terms_id = offer(chain, CHARLIE, child, minting_fee=10_000, commercial_rev_share=0)
    alice, bob, charlie = (chain.free(k.public) for k in (ALICE, BOB, CHARLIE))
    expect_ok(chain, DAVE, licensing.AcquireLicense(terms_id))
    assert chain.free(ALICE.public) == alice + 1_400
    assert chain.free(BOB.public) == bob + 600
    assert chain.free(CHARLIE.public) == charlie + 8_000


def test_acquire_license_errors(chain: MiniChain, work: int) -> None:
    expect_failure(chain, DAVE, licensing.AcquireLicense(9), "licensing.TermsNotFound")
    limited = offer(chain, ALICE, work, max_supply=2)
    acquire(chain, DAVE, limited)
    acquire(chain, EVE, limited)
    expect_failure(chain, CHARLIE, licensing.AcquireLicense(limited), "licensing.SupplySoldOut")
    pricey = offer(chain, ALICE, work, minting_fee=10**30)
    expect_failure(chain, DAVE, licensing.AcquireLicense(pricey), "balances.InsufficientBalance")


def test_unlimited_supply_saturates_at_the_counter_range(chain: MiniChain, work: int) -> None:
    terms_id = offer(chain, ALICE, work)
    # Fast-forward the counter (2**32 - 1 real acquisitions would take a while).
    overlay = Overlay(chain.state)
    licensing.terms.put(overlay, terms_id,
                        dataclasses.replace(get_terms(chain, terms_id), minted=licensing.U32_MAX))
    chain.state.apply(overlay.changes)
    expect_failure(chain, DAVE, licensing.AcquireLicense(terms_id), "licensing.SupplySoldOut")


# ---------------------------------------------------------------------------
# transfer_license


def test_transfer_license(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work, derivatives_approval=True))
    expect_ok(chain, ALICE, licensing.ApproveDerivative(license_id, True))
    applied = expect_ok(chain, DAVE, licensing.TransferLicense(license_id, EVE.public))
    assert applied.one(licensing.LicenseTransferred) == licensing.LicenseTransferred(
        license_id, DAVE.public, EVE.public)
    lic = get_license(chain, license_id)
    assert lic.licensee == EVE.public
    assert not lic.derivative_approved  # an approval belongs to the licensee it was given to
    assert not indexes.licenses_by_holder.contains(chain.index, (DAVE.public, license_id))
    assert indexes.licenses_by_holder.get(chain.index, (EVE.public, license_id)) is True
    expect_failure(chain, DAVE, licensing.TransferLicense(license_id, DAVE.public),
                   "licensing.NotLicensee")


def test_transfer_license_errors(chain: MiniChain, work: int) -> None:
    expect_failure(chain, DAVE, licensing.TransferLicense(5, EVE.public),
                   "licensing.LicenseNotFound")
    bound = acquire(chain, DAVE, offer(chain, ALICE, work, transferable=False))
    expect_failure(chain, DAVE, licensing.TransferLicense(bound, EVE.public),
                   "licensing.NotTransferable")
    short = acquire(chain, DAVE, offer(chain, ALICE, work, expiry_blocks=3))
    chain.advance(3)
    expect_failure(chain, DAVE, licensing.TransferLicense(short, EVE.public),
                   "licensing.LicenseExpired")


# ---------------------------------------------------------------------------
# approve_derivative


def test_approve_derivative(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work, derivatives_approval=True))
    applied = expect_ok(chain, ALICE, licensing.ApproveDerivative(license_id, True))
    assert applied.one(licensing.DerivativeApprovalSet) == licensing.DerivativeApprovalSet(
        license_id, work, True)
    assert get_license(chain, license_id).derivative_approved
    expect_ok(chain, ALICE, licensing.ApproveDerivative(license_id, False))
    assert not get_license(chain, license_id).derivative_approved


def test_approve_derivative_errors(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work, derivatives_approval=True))
    expect_failure(chain, DAVE, licensing.ApproveDerivative(license_id, True),
                   "provenance.NotOwner")
    expect_failure(chain, ALICE, licensing.ApproveDerivative(99, True),
                   "licensing.LicenseNotFound")


def test_new_owner_takes_over_licensing(chain: MiniChain, work: int) -> None:
    terms_id = offer(chain, ALICE, work)
    expect_ok(chain, ALICE, provenance.TransferWork(work, CHARLIE.public))
    expect_failure(chain, ALICE, licensing.RetireTerms(terms_id), "provenance.NotOwner")
    expect_ok(chain, CHARLIE, licensing.RetireTerms(terms_id))
    offer(chain, CHARLIE, work)


# ---------------------------------------------------------------------------
# live_license


def test_live_license_boundaries(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work, expiry_blocks=10))
    lic = get_license(chain, license_id)
    assert lic.expires_at == lic.acquired_at + 10
    found, found_terms = licensing.live_license(chain.state, license_id, lic.expires_at - 1)
    assert (found, found_terms.id) == (lic, lic.terms_id)
    with pytest.raises(licensing.LicenseExpired):
        licensing.live_license(chain.state, license_id, lic.expires_at)
    with pytest.raises(licensing.LicenseNotFound):
        licensing.live_license(chain.state, license_id + 1, lic.acquired_at)


def test_expiry_saturates(chain: MiniChain, work: int) -> None:
    license_id = acquire(chain, DAVE, offer(chain, ALICE, work, expiry_blocks=licensing.U64_MAX))
    assert get_license(chain, license_id).expires_at == licensing.U64_MAX


def test_weights_are_fixed_and_cover_a_distribution() -> None:
    calls = licensing.module.calls
    assert calls["acquire_license"].weight(licensing.AcquireLicense(1)) == (
        50_000 + royalties.distribute_max_weight())
    assert calls["offer_terms"].weight(terms_args(1)) == 50_000 + 180_000 + 30_000 * 16
