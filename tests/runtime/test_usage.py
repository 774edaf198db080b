"""Usage: records of how licensed works were used, only under licenses that allow it."""

from __future__ import annotations

from typing import Any

import pytest

from node.chain import indexes
from runtime import codec
from runtime.modules import licensing, usage
from runtime.modules.licensing import AiUse
from runtime.modules.usage import Purpose, RecordUsage, RecordUsageBatch, UsageRecorded
from tests.runtime_helpers import (
    ALICE,
    BOB,
    DAVE,
    MiniChain,
    acquire,
    expect_failure,
    expect_ok,
    offer,
    register,
    work_args,
)

RESTRICTIVE: dict[str, Any] = dict(
    commercial_use=False, commercial_attribution=False, commercial_rev_share=0,
    derivatives_allowed=False, derivatives_attribution=False,
    ai_training=AiUse.NOT_ALLOWED, ai_inference=AiUse.NOT_ALLOWED,
)


@pytest.fixture
def chain() -> MiniChain:
    return MiniChain()


def licensed(chain: MiniChain, **terms: Any) -> int:
    """A license held by DAVE on a fresh work of ALICE's, under terms with ``terms``."""
    work = register(chain, ALICE, work_args(f"work {chain.number}"))
    return acquire(chain, DAVE, offer(chain, ALICE, work, **terms))


def use(license_id: int, purpose: Purpose = Purpose.AI_TRAINING, units: int = 1) -> RecordUsage:
    return RecordUsage(license_id, purpose, "opus-diffusion-v1", units, "epoch 3")


def test_record_usage_stores_the_record(chain: MiniChain) -> None:
    license_id = licensed(chain)
    lic = licensing.licenses.get(chain.state, license_id)
    assert lic is not None
    applied = expect_ok(chain, DAVE, use(license_id, units=1_200))
    assert applied.one(UsageRecorded) == UsageRecorded(
        1, license_id, lic.work_id, DAVE.public, Purpose.AI_TRAINING, 1_200)
    assert usage.usage.get(chain.state, 1) == usage.UsageRecord(
        1, license_id, lic.work_id, DAVE.public, Purpose.AI_TRAINING, "opus-diffusion-v1",
        1_200, "epoch 3", applied.block)
    assert indexes.usage_by_work.get(chain.index, (lic.work_id, 1)) is True
    assert indexes.usage_by_license.get(chain.index, (license_id, 1)) is True
    assert usage.next_usage_id.get(chain.state) == 2


@pytest.mark.parametrize(
    ("terms", "purpose"),
    [
        (dict(ai_training=AiUse.ALLOWED), Purpose.AI_TRAINING),
        (dict(ai_training=AiUse.CONSTRAINED), Purpose.AI_TRAINING),
        (dict(ai_inference=AiUse.ALLOWED), Purpose.AI_INFERENCE),
        (dict(ai_inference=AiUse.CONSTRAINED), Purpose.AI_INFERENCE),
        (dict(derivatives_allowed=True), Purpose.DERIVATIVE),
        ({}, Purpose.PUBLICATION),
        ({}, Purpose.OTHER),
    ],
)
def test_allowed_purposes(chain: MiniChain, terms: dict[str, Any], purpose: Purpose) -> None:
    license_id = licensed(chain, **{**RESTRICTIVE, **terms})
    expect_ok(chain, DAVE, use(license_id, purpose))


@pytest.mark.parametrize(
    "purpose", [Purpose.AI_TRAINING, Purpose.AI_INFERENCE, Purpose.DERIVATIVE])
def test_purpose_not_allowed(chain: MiniChain, purpose: Purpose) -> None:
    license_id = licensed(chain, **RESTRICTIVE)
    applied = expect_failure(chain, DAVE, use(license_id, purpose), "usage.PurposeNotAllowed")
    assert purpose.value in applied.detail


def test_derivative_use_needs_approval_when_required(chain: MiniChain) -> None:
    license_id = licensed(chain, derivatives_approval=True)
    expect_failure(chain, DAVE, use(license_id, Purpose.DERIVATIVE),
                   "provenance.DerivativeNotApproved")
    expect_ok(chain, ALICE, licensing.ApproveDerivative(license_id, True))
    expect_ok(chain, DAVE, use(license_id, Purpose.DERIVATIVE))


def test_record_usage_errors(chain: MiniChain) -> None:
    expect_failure(chain, DAVE, use(9), "licensing.LicenseNotFound")
    license_id = licensed(chain, expiry_blocks=5)
    expect_failure(chain, BOB, use(license_id), "licensing.NotLicensee")
    chain.advance(5)
    expect_failure(chain, DAVE, use(license_id), "licensing.LicenseExpired")


def test_retired_terms_do_not_stop_existing_licenses(chain: MiniChain) -> None:
    license_id = licensed(chain)
    terms_id = licensing.licenses.get(chain.state, license_id).terms_id  # type: ignore[union-attr]
    expect_ok(chain, ALICE, licensing.RetireTerms(terms_id))
    expect_ok(chain, DAVE, use(license_id))


# ---------------------------------------------------------------------------
# record_usage_batch


def test_batch_records_every_entry(chain: MiniChain) -> None:
    licenses = [licensed(chain) for _ in range(3)]
    entries = tuple(use(lic, Purpose.AI_TRAINING, units=i) for i, lic in enumerate(licenses))
    applied = expect_ok(chain, DAVE, RecordUsageBatch(entries))
    recorded = applied.of(UsageRecorded)
    assert [(e.usage_id, e.license_id, e.units) for e in recorded] == [
        (1, licenses[0], 0), (2, licenses[1], 1), (3, licenses[2], 2)]
    assert usage.next_usage_id.get(chain.state) == 4


def test_batch_is_all_or_nothing(chain: MiniChain) -> None:
    good = licensed(chain)
    no_ai = licensed(chain, **RESTRICTIVE)
    batch = RecordUsageBatch((use(good), use(good), use(no_ai)))
    applied = expect_failure(chain, DAVE, batch, "usage.PurposeNotAllowed")
    assert applied.detail.startswith("entry 2:")
    applied = expect_failure(chain, DAVE, RecordUsageBatch((use(good), use(77))),
                             "licensing.LicenseNotFound")
    assert applied.detail.startswith("entry 1:")
    assert usage.usage.get(chain.state, 1) is None


def test_batch_bounds(chain: MiniChain) -> None:
    license_id = licensed(chain)
    expect_failure(chain, DAVE, RecordUsageBatch(()), "usage.EmptyBatch")
    full = RecordUsageBatch(tuple(use(license_id, units=i) for i in range(usage.MAX_BATCH)))
    assert len(expect_ok(chain, DAVE, full).of(UsageRecorded)) == usage.MAX_BATCH
    over = RecordUsageBatch(full.entries + (use(license_id),))
    with pytest.raises(codec.EncodeError):
        codec.encode(over)
    assert isinstance(chain.call_directly(DAVE.public, over), usage.TooManyEntries)


def test_batch_weight_is_proportional() -> None:
    weight = usage.module.calls["record_usage_batch"].weight
    one, many = RecordUsageBatch((use(1),)), RecordUsageBatch(tuple(use(1) for _ in range(64)))
    assert weight(many) - weight(one) == 63 * usage.RECORD_WEIGHT
    assert usage.module.calls["record_usage"].weight(use(1)) == (
        usage.BASE_WEIGHT + usage.RECORD_WEIGHT)
