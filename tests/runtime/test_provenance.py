"""Provenance: registering works, derivation through licenses, transfers, metadata."""

from __future__ import annotations

import dataclasses

import pytest

from node.chain import indexes
from runtime import codec
from runtime.crypto import sha256
from runtime.modules import licensing, provenance, royalties
from runtime.modules.provenance import AncestorShare, ParentLink, Split
from tests.runtime_helpers import (
    ALICE,
    BOB,
    CHARLIE,
    DAVE,
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


@pytest.fixture
def chain() -> MiniChain:
    return MiniChain()


# ---------------------------------------------------------------------------
# register_work


def test_register_work_stores_the_work_and_its_indexes(chain: MiniChain) -> None:
    args = work_args("song.flac", ((ALICE.public, 7_000), (BOB.public, 3_000)),
                     kind=provenance.WorkKind.AUDIO, title="Song")
    applied = expect_ok(chain, CHARLIE, args)
    event = applied.one(provenance.WorkRegistered)
    assert event == provenance.WorkRegistered(1, sha256(b"song.flac"), CHARLIE.public,
                                              provenance.WorkKind.AUDIO, ())
    work = provenance.works.get(chain.state, 1)
    assert work == provenance.Work(
        id=1, content_hash=sha256(b"song.flac"), kind=provenance.WorkKind.AUDIO, title="Song",
        metadata_uri="ipfs://meta/song.flac", metadata_hash=None, owner=CHARLIE.public,
        creators=(Split(ALICE.public, 7_000), Split(BOB.public, 3_000)), parents=(),
        royalty_stack=(), registered_at=applied.block, registered_at_ms=applied.block * 6_000,
    )
    assert provenance.work_by_content.get(chain.state, sha256(b"song.flac")) == 1
    assert indexes.works_by_owner.get(chain.index, (CHARLIE.public, 1)) is True
    assert provenance.next_work_id.get(chain.state) == 2


def test_work_ids_are_sequential(chain: MiniChain) -> None:
    ids = [register(chain, ALICE, work_args(f"file-{i}")) for i in range(3)]
    assert ids == [1, 2, 3]


def test_first_registration_wins(chain: MiniChain) -> None:
    register(chain, ALICE, work_args("a"))
    register(chain, ALICE, work_args("b"))
    applied = expect_failure(chain, BOB, work_args("b", owner=BOB),
                             "provenance.AlreadyRegistered")
    assert "#2" in applied.detail
    assert provenance.works.get(chain.state, 2).owner == ALICE.public  # type: ignore[union-attr]


@pytest.mark.parametrize("title", ["", "   "])
def test_empty_title_is_refused(chain: MiniChain, title: str) -> None:
    expect_failure(chain, ALICE, work_args("x", title=title), "provenance.EmptyTitle")


@pytest.mark.parametrize(
    ("splits", "why"),
    [
        ((), "at least one"),
        (((ALICE.public, 5_000), (ALICE.public, 5_000)), "twice"),
        (((ALICE.public, 10_000), (BOB.public, 0)), "above zero"),
        (((ALICE.public, 9_999),), "9999"),
        (((ALICE.public, 6_000), (BOB.public, 4_001)), "10001"),
    ],
)
def test_invalid_splits(chain: MiniChain, splits: tuple[tuple[bytes, int], ...], why: str) -> None:
    applied = expect_failure(chain, ALICE, work_args("x", splits), "provenance.InvalidSplits")
    assert why in applied.detail


def test_sixteen_creators_is_the_limit(chain: MiniChain) -> None:
    splits = tuple((account(i), 625) for i in range(16))
    work_id = register(chain, ALICE, work_args("x", splits))
    assert len(provenance.works.get(chain.state, work_id).creators) == 16  # type: ignore[union-attr]
    # Seventeen cannot even be encoded into an extrinsic; the call refuses it too.
    too_many = work_args("y", tuple((account(i), 500) for i in range(17)) + ((BOB.public, 1500),))
    with pytest.raises(codec.EncodeError):
        codec.encode(too_many)
    error = chain.call_directly(ALICE.public, too_many)
    assert isinstance(error, provenance.InvalidSplits)


# ---------------------------------------------------------------------------
# transfer_work / update_metadata


def test_transfer_work_moves_control_but_not_revenue(chain: MiniChain) -> None:
    work_id = register(chain, ALICE, work_args("x", ((ALICE.public, 6_000), (BOB.public, 4_000))))
    applied = expect_ok(chain, ALICE, provenance.TransferWork(work_id, DAVE.public))
    assert applied.one(provenance.WorkTransferred) == provenance.WorkTransferred(
        work_id, ALICE.public, DAVE.public)
    assert provenance.works.get(chain.state, work_id).owner == DAVE.public  # type: ignore[union-attr]
    assert not indexes.works_by_owner.contains(chain.index, (ALICE.public, work_id))
    assert indexes.works_by_owner.get(chain.index, (DAVE.public, work_id)) is True
    # The new owner controls terms and metadata; the old one no longer does.
    offer(chain, DAVE, work_id)
    expect_failure(chain, ALICE, provenance.UpdateMetadata(work_id, "ipfs://new", None),
                   "provenance.NotOwner")
    # Revenue still goes to the creators listed at registration.
    before = chain.free(ALICE.public), chain.free(BOB.public), chain.free(DAVE.public)
    paid = expect_ok(chain, CHARLIE, royalties.PayRevenue(work_id, 1_000, ""))
    assert chain.free(ALICE.public) == before[0] + 600
    assert chain.free(BOB.public) == before[1] + 400
    assert chain.free(DAVE.public) == before[2]
    assert {e.account for e in paid.of(royalties.Credited)} == {ALICE.public, BOB.public}


def test_transfer_work_errors(chain: MiniChain) -> None:
    work_id = register(chain, ALICE, work_args("x"))
    expect_failure(chain, BOB, provenance.TransferWork(work_id, BOB.public), "provenance.NotOwner")
    expect_failure(chain, ALICE, provenance.TransferWork(99, BOB.public),
                   "provenance.WorkNotFound")


def test_update_metadata(chain: MiniChain) -> None:
    work_id = register(chain, ALICE, work_args("x"))
    new_hash = sha256(b"metadata v2")
    applied = expect_ok(chain, ALICE, provenance.UpdateMetadata(work_id, "ipfs://v2", new_hash))
    assert applied.one(provenance.MetadataUpdated) == provenance.MetadataUpdated(
        work_id, "ipfs://v2", new_hash)
    work = provenance.works.get(chain.state, work_id)
    assert work is not None
    assert (work.metadata_uri, work.metadata_hash) == ("ipfs://v2", new_hash)
    assert work.content_hash == sha256(b"x")
    expect_failure(chain, BOB, provenance.UpdateMetadata(work_id, "ipfs://evil", None),
                   "provenance.NotOwner")
    expect_failure(chain, ALICE, provenance.UpdateMetadata(7, "ipfs://v3", None),
                   "provenance.WorkNotFound")


# ---------------------------------------------------------------------------
# Derivatives


def test_derivative_gets_its_royalty_stack(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    terms_id = offer(chain, ALICE, a, commercial_rev_share=1_000)
    license_id = acquire(chain, BOB, terms_id)
    applied = expect_ok(chain, BOB, work_args("b", parents=((a, license_id),), owner=BOB))
    b = applied.one(provenance.WorkRegistered).work_id
    assert applied.one(provenance.WorkRegistered).parents == (ParentLink(a, license_id),)
    work_b = provenance.works.get(chain.state, b)
    assert work_b is not None
    assert work_b.royalty_stack == (AncestorShare(a, 1_000),)
    # Grandchild: LAP stacks carry every ancestor's absolute share.
    c = derive(chain, CHARLIE, "c", (b,), rev_share=500)
    assert provenance.works.get(chain.state, c).royalty_stack == (  # type: ignore[union-attr]
        AncestorShare(a, 1_000), AncestorShare(b, 500))


def test_diamond_ancestry_merges_per_ancestor(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    b = derive(chain, BOB, "b", (a,), rev_share=1_000)
    c = derive(chain, CHARLIE, "c", (a,), rev_share=500)
    # DAVE derives from both B (2%) and C (3%): A appears through both.
    d = derive(chain, DAVE, "d", (c, b), rev_share=200)
    work_d = provenance.works.get(chain.state, d)
    assert work_d is not None
    assert work_d.royalty_stack == (
        AncestorShare(a, 1_500), AncestorShare(b, 200), AncestorShare(c, 200))


def test_parent_not_found(chain: MiniChain) -> None:
    expect_failure(chain, BOB, work_args("b", parents=((5, 1),), owner=BOB),
                   "provenance.ParentNotFound")


def test_license_not_held(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    other = register(chain, ALICE, work_args("other"))
    license_a = acquire(chain, CHARLIE, offer(chain, ALICE, a))
    license_other = acquire(chain, BOB, offer(chain, ALICE, other))
    # No such license, someone else's license, a license for another work.
    for link in ((a, 99), (a, license_a), (a, license_other)):
        expect_failure(chain, BOB, work_args("b", parents=(link,), owner=BOB),
                       "provenance.LicenseNotHeld")


def test_expired_license_cannot_found_a_derivative(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    license_id = acquire(chain, BOB, offer(chain, ALICE, a, expiry_blocks=10))
    expires_at = licensing.licenses.get(chain.state, license_id).expires_at  # type: ignore[union-attr]
    chain.number = expires_at - 2  # the next block is the last one the license is live in
    expect_ok(chain, BOB, work_args("b", parents=((a, license_id),), owner=BOB))
    assert chain.number + 1 == expires_at
    expect_failure(chain, BOB, work_args("c", parents=((a, license_id),), owner=BOB),
                   "licensing.LicenseExpired")


def test_derivatives_not_allowed(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    terms_id = offer(chain, ALICE, a, derivatives_allowed=False, derivatives_attribution=False)
    license_id = acquire(chain, BOB, terms_id)
    expect_failure(chain, BOB, work_args("b", parents=((a, license_id),), owner=BOB),
                   "provenance.DerivativesNotAllowed")


def test_derivative_needs_approval_when_terms_require_it(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    license_id = acquire(chain, BOB, offer(chain, ALICE, a, derivatives_approval=True))
    derivative = work_args("b", parents=((a, license_id),), owner=BOB)
    expect_failure(chain, BOB, derivative, "provenance.DerivativeNotApproved")
    expect_ok(chain, ALICE, licensing.ApproveDerivative(license_id, True))
    expect_ok(chain, BOB, derivative)


def test_duplicate_parent(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    terms_id = offer(chain, ALICE, a)
    first, second = acquire(chain, BOB, terms_id), acquire(chain, BOB, terms_id)
    expect_failure(chain, BOB, work_args("b", parents=((a, first), (a, second)), owner=BOB),
                   "provenance.DuplicateParent")


def test_too_many_parents_cannot_reach_the_chain(chain: MiniChain) -> None:
    links = tuple((i, i) for i in range(1, 18))
    args = work_args("b", parents=links, owner=BOB)
    with pytest.raises(codec.EncodeError):
        codec.encode(args)
    assert isinstance(chain.call_directly(BOB.public, args), provenance.TooManyParents)


def test_sixteen_parents(chain: MiniChain) -> None:
    parents = tuple(register(chain, ALICE, work_args(f"p{i}")) for i in range(16))
    child = derive(chain, BOB, "child", parents, rev_share=100)
    work = provenance.works.get(chain.state, child)
    assert work is not None
    assert [s.work_id for s in work.royalty_stack] == list(parents)
    assert sum(s.bps for s in work.royalty_stack) == 1_600


def test_too_many_ancestors(chain: MiniChain) -> None:
    # A line of works, each derived from the previous (no rev share): work k has k-1 ancestors.
    last = register(chain, ALICE, work_args("w1"))
    for i in range(2, provenance.MAX_ANCESTORS + 2):
        terms_id = offer(chain, ALICE, last, commercial_rev_share=0)
        license_id = acquire(chain, ALICE, terms_id)
        last = register(chain, ALICE, work_args(f"w{i}", parents=((last, license_id),)))
    work = provenance.works.get(chain.state, last)
    assert work is not None and len(work.royalty_stack) == provenance.MAX_ANCESTORS
    license_id = acquire(chain, ALICE, offer(chain, ALICE, last, commercial_rev_share=0))
    applied = expect_failure(chain, ALICE, work_args("one too many", parents=((last, license_id),)),
                             "provenance.TooManyAncestors")
    assert "33" in applied.detail


def test_royalty_stack_too_high(chain: MiniChain) -> None:
    a = register(chain, ALICE, work_args("a"))
    b = derive(chain, BOB, "b", (a,), rev_share=6_000)
    license_id = acquire(chain, CHARLIE, offer(chain, BOB, b, commercial_rev_share=4_001))
    applied = expect_failure(chain, CHARLIE,
                             work_args("c", parents=((b, license_id),), owner=CHARLIE),
                             "provenance.RoyaltyStackTooHigh")
    assert "10001" in applied.detail
    # Exactly 100% to ancestors is allowed (the derivative's own creators get nothing).
    license_id = acquire(chain, CHARLIE, offer(chain, BOB, b, commercial_rev_share=4_000))
    expect_ok(chain, CHARLIE, work_args("c", parents=((b, license_id),), owner=CHARLIE))


def test_register_weight_grows_with_creators_and_parents() -> None:
    spec = provenance.module.calls["register_work"]
    small = work_args("a")
    big = dataclasses.replace(small, creators=tuple(Split(account(i), 625) for i in range(16)),
                parents=tuple(ParentLink(i, i) for i in range(1, 17)))
    assert spec.weight(big) > spec.weight(small) > 0
    assert spec.weight(big) == 150_000 + 5_000 * 16 + 220_000 * 16
