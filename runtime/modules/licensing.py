"""Licensing: terms offered on works and the licenses acquired under them.

The vocabulary is Story Protocol's Programmable IP License (PIL) plus the AI
fields of CAWG training-and-data-mining assertions / ERC-7517:

* commercial: ``commercial_use``, ``commercial_attribution``, and
  ``commercial_rev_share`` — the parent's absolute cut (bps) of ALL revenue of
  every descendant derived under these terms (Story's LAP royalty policy, see
  :mod:`runtime.modules.royalties`);
* derivatives: ``derivatives_allowed``, ``derivatives_attribution``,
  ``derivatives_approval`` (the owner must approve each license for
  derivatives) and ``derivatives_reciprocal`` (a derivative may only offer
  exactly these terms again);
* AI: ``ai_training`` and ``ai_inference``, each allowed / not_allowed /
  constrained (constrained: the constraints are in the legal text, so a
  ``legal_uri`` is required);
* economics and lifetime: ``minting_fee`` (paid into the work through
  ``royalties.distribute``, so ancestors and co-creators are paid at once),
  ``expiry_blocks`` (0 = never; a license expires at acquisition block +
  expiry_blocks, i.e. it is live while ``block < expires_at``), ``max_supply``
  (0 = unlimited), ``transferable``, and the legal text ``legal_uri`` /
  ``legal_hash``.

Terms are immutable once offered; the owner may retire them (no new licenses;
existing licenses stay valid until they expire).

Choices where the design is silent (what a serious licensing chain does):

* No sublicensing beyond what is held: terms offered on a derivative may not
  grant commercial use, or AI training/inference more permissive
  (not_allowed < constrained < allowed), than the terms of any license the
  derivative was registered under (``ExceedsParentRights``). Reciprocal parent
  terms are stricter still (``ReciprocityViolated``: identical terms).
* A derivative approval belongs to the licensee it was given to: transferring a
  license clears ``derivative_approved``. Expired licenses cannot be transferred.
* The supply counter saturates: terms with unlimited supply sell out after
  2**32 - 1 licenses (the counter's range), and ``expires_at`` saturates at
  2**64 - 1 (effectively never).
* The same account may hold several licenses under the same terms.

Storage
  ``terms``              terms id -> Terms
  ``licenses``           license id -> License
  ``next_terms_id``, ``next_license_id``  (ids start at 1)
  (Listing terms by work and licenses by holder or work is a node-side index
  built from the events, not state.)
Events
  ``TermsOffered(terms_id, work_id, offered_by)``, ``TermsWithdrawn(terms_id, work_id)``
  (from ``retire_terms``), ``LicenseAcquired(license_id, terms_id, work_id, licensee, fee,
  expires_at)``, ``LicenseTransferred(license_id, old_holder, new_holder)``,
  ``DerivativeApprovalSet(license_id, work_id, approved)``
Errors
  ``ContradictoryTerms``, ``ReciprocityViolated``, ``ExceedsParentRights``,
  ``TermsNotFound``, ``TermsRetired``, ``SupplySoldOut``, ``LicenseNotFound``,
  ``LicenseExpired``, ``NotLicensee``, ``NotTransferable``; raised from other modules:
  ``provenance.WorkNotFound``, ``provenance.NotOwner``, ``balances.InsufficientBalance``.
Calls
  ``offer_terms(work_id, ...)``: work owner; weight 230,000 + 30,000 per possible parent
  (710,000).
  ``retire_terms(terms_id)``: work owner; weight 220,000.
  ``acquire_license(terms_id)``: any signed account; weight 50,000 + a worst-case royalty
  distribution.
  ``transfer_license(license_id, to)``: licensee; weight 60,000.
  ``approve_derivative(license_id, approved)``: work owner; weight 220,000.
  (A work read is charged ``provenance.WORK_READ_WEIGHT`` = 180,000, its worst case.)
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Annotated, Any

from runtime.codec import U16, U32, U64, U128, Bytes32, Struct, Text, frozen_dataclass
from runtime.modules import provenance, royalties
from runtime.state import StateReader
from runtime.support import (
    AccountId,
    DispatchError,
    Env,
    Event,
    Module,
    StorageMap,
    StorageValue,
)

NAME = "licensing"
# Config
BPS = 10_000
MAX_LEGAL_URI = 512
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

LegalUri = Annotated[str, Text(MAX_LEGAL_URI)]


class AiUse(StrEnum):
    ALLOWED = "allowed"
    NOT_ALLOWED = "not_allowed"
    CONSTRAINED = "constrained"


# How permissive an AiUse is (for the no-sublicensing-beyond-what-is-held rule).
AI_RANK = {AiUse.NOT_ALLOWED: 0, AiUse.CONSTRAINED: 1, AiUse.ALLOWED: 2}


@frozen_dataclass
class Terms(Struct):
    id: U64
    work_id: U64
    offered_by: AccountId
    transferable: bool
    commercial_use: bool
    commercial_attribution: bool
    commercial_rev_share: U16  # bps of all revenue of every descendant
    derivatives_allowed: bool
    derivatives_attribution: bool
    derivatives_approval: bool
    derivatives_reciprocal: bool
    ai_training: AiUse
    ai_inference: AiUse
    minting_fee: U128
    expiry_blocks: U64  # 0 = never
    max_supply: U32  # 0 = unlimited
    legal_uri: LegalUri
    legal_hash: Bytes32 | None
    retired: bool
    minted: U32


# The fields that define what a license grants (not ids, offerer or counters):
# reciprocal terms must be repeated exactly in these.
LICENSING_FIELDS = (
    "transferable",
    "commercial_use",
    "commercial_attribution",
    "commercial_rev_share",
    "derivatives_allowed",
    "derivatives_attribution",
    "derivatives_approval",
    "derivatives_reciprocal",
    "ai_training",
    "ai_inference",
    "minting_fee",
    "expiry_blocks",
    "max_supply",
    "legal_uri",
    "legal_hash",
)


@frozen_dataclass
class License(Struct):
    id: U64
    terms_id: U64
    work_id: U64
    licensee: AccountId
    acquired_at: U64  # block number
    expires_at: U64  # 0 = never; live while block < expires_at
    derivative_approved: bool


# Storage
# Terms and licenses are read by every acquisition, usage record and derivative: keep
# decoded ones (see StorageMap).
terms: StorageMap[Terms] = StorageMap(NAME, "terms", Terms, decoded_cache=4096)
licenses: StorageMap[License] = StorageMap(NAME, "licenses", License, decoded_cache=4096)
next_terms_id: StorageValue[int] = StorageValue(NAME, "next_terms_id", U64, 1)
next_license_id: StorageValue[int] = StorageValue(NAME, "next_license_id", U64, 1)


# Events
@frozen_dataclass
class TermsOffered(Event):
    module = NAME
    terms_id: U64
    work_id: U64
    offered_by: AccountId


@frozen_dataclass
class TermsWithdrawn(Event):
    """Emitted by ``retire_terms``."""

    module = NAME
    terms_id: U64
    work_id: U64


@frozen_dataclass
class LicenseAcquired(Event):
    module = NAME
    license_id: U64
    terms_id: U64
    work_id: U64
    licensee: AccountId
    fee: U128
    expires_at: U64


@frozen_dataclass
class LicenseTransferred(Event):
    module = NAME
    license_id: U64
    old_holder: AccountId
    new_holder: AccountId


@frozen_dataclass
class DerivativeApprovalSet(Event):
    module = NAME
    license_id: U64
    work_id: U64
    approved: bool


# Errors
class Error(DispatchError):
    module = NAME


class ContradictoryTerms(Error):
    """The terms contradict themselves (the message says how)."""


class ReciprocityViolated(Error):
    """The work derives under reciprocal terms, so it may only offer those same terms."""


class ExceedsParentRights(Error):
    """A derivative may not grant commercial or AI rights beyond its parent licenses."""


class TermsNotFound(Error):
    """No terms have this id."""


class TermsRetired(Error):
    """The terms are retired: no new licenses are issued under them."""


class SupplySoldOut(Error):
    """Every license this terms' max_supply allows has been issued."""


class LicenseNotFound(Error):
    """No license has this id."""


class LicenseExpired(Error):
    """The license's expiry block has passed."""


class NotLicensee(Error):
    """Only the license's holder may do this."""


class NotTransferable(Error):
    """The license's terms do not allow transferring it."""


# Helpers other modules use


def get_terms(state: StateReader, terms_id: int) -> Terms:
    found = terms.get(state, terms_id)
    if found is None:
        raise TermsNotFound(f"no terms #{terms_id}")
    return found


def get_license(state: StateReader, license_id: int) -> License:
    found = licenses.get(state, license_id)
    if found is None:
        raise LicenseNotFound(f"no license #{license_id}")
    return found


def is_live(lic: License, block_number: int) -> bool:
    return lic.expires_at == 0 or block_number < lic.expires_at


def live_license(state: StateReader, license_id: int, block_number: int) -> tuple[License, Terms]:
    """The license and its terms if it exists and is live at ``block_number``.

    Raises ``LicenseNotFound`` or ``LicenseExpired``. Retired terms do not
    matter: licenses issued before the retirement stay valid.
    """
    lic = get_license(state, license_id)
    if not is_live(lic, block_number):
        raise LicenseExpired(f"license #{license_id} expired at block #{lic.expires_at}")
    return lic, get_terms(state, lic.terms_id)


def terms_contradiction(t: OfferTerms) -> str | None:
    """Why the offered terms contradict themselves, or None."""
    if t.commercial_rev_share > BPS:
        return f"commercial_rev_share {t.commercial_rev_share} bps exceeds {BPS}"
    if not t.commercial_use:
        if t.commercial_rev_share > 0:
            return "commercial_rev_share without commercial_use"
        if t.commercial_attribution:
            return "commercial_attribution without commercial_use"
    if not t.derivatives_allowed:
        for name in ("derivatives_attribution", "derivatives_approval", "derivatives_reciprocal"):
            if getattr(t, name):
                return f"{name} without derivatives_allowed"
    if not t.legal_uri:
        for name in ("ai_training", "ai_inference"):
            if getattr(t, name) == AiUse.CONSTRAINED:
                return f"{name} is constrained but there is no legal_uri stating the constraints"
    return None


def _fields(t: Any) -> tuple[Any, ...]:
    return tuple(getattr(t, name) for name in LICENSING_FIELDS)


def check_inheritance(state: StateReader, work: provenance.Work, offer: OfferTerms) -> None:
    """Refuse terms on a derivative that break its parents' reciprocity or exceed their rights."""
    for link in work.parents:
        parent_license = get_license(state, link.license_id)
        parent = get_terms(state, parent_license.terms_id)
        if parent.derivatives_reciprocal and _fields(parent) != _fields(offer):
            raise ReciprocityViolated(
                f"work #{work.id} derives from work #{link.work_id} under reciprocal terms "
                f"#{parent.id}; only identical terms may be offered"
            )
        if offer.commercial_use and not parent.commercial_use:
            raise ExceedsParentRights(
                f"commercial use is not granted by terms #{parent.id} of parent #{link.work_id}"
            )
        for name in ("ai_training", "ai_inference"):
            if AI_RANK[getattr(offer, name)] > AI_RANK[getattr(parent, name)]:
                raise ExceedsParentRights(
                    f"{name} {getattr(offer, name).value} exceeds "
                    f"{getattr(parent, name).value} granted by terms #{parent.id} "
                    f"of parent #{link.work_id}"
                )


module = Module(NAME)


@frozen_dataclass
class OfferTerms(Struct):
    work_id: U64
    transferable: bool
    commercial_use: bool
    commercial_attribution: bool
    commercial_rev_share: U16
    derivatives_allowed: bool
    derivatives_attribution: bool
    derivatives_approval: bool
    derivatives_reciprocal: bool
    ai_training: AiUse
    ai_inference: AiUse
    minting_fee: U128
    expiry_blocks: U64
    max_supply: U32
    legal_uri: LegalUri
    legal_hash: Bytes32 | None


@module.call(OfferTerms, weight=lambda a: 50_000 + provenance.WORK_READ_WEIGHT
             + 30_000 * provenance.MAX_PARENTS)
def offer_terms(env: Env, who: AccountId, args: OfferTerms) -> None:
    """Offer license terms on a work.

    Origin: the work's owner. Weight: 50,000 + a work read (180,000) + 30,000 ×
    MAX_PARENTS (the inheritance check reads each parent license and its terms).
    Errors: ``provenance.WorkNotFound``, ``provenance.NotOwner``,
    ``ContradictoryTerms``, ``ReciprocityViolated``, ``ExceedsParentRights``.
    """
    state = env.state
    work = provenance.ensure_owner(state, args.work_id, who)
    why = terms_contradiction(args)
    if why is not None:
        raise ContradictoryTerms(why)
    check_inheritance(state, work, args)
    terms_id = next_terms_id.get(state)
    next_terms_id.put(state, terms_id + 1)
    granted = {name: getattr(args, name) for name in LICENSING_FIELDS}
    offered = Terms(id=terms_id, work_id=work.id, offered_by=who, retired=False, minted=0,
                    **granted)
    terms.put(state, terms_id, offered)
    env.emit(TermsOffered(terms_id, work.id, who))


@frozen_dataclass
class RetireTerms(Struct):
    terms_id: U64


@module.call(RetireTerms, weight=lambda a: 40_000 + provenance.WORK_READ_WEIGHT)
def retire_terms(env: Env, who: AccountId, args: RetireTerms) -> None:
    """Stop issuing licenses under these terms; licenses already issued stay valid.

    Origin: the owner of the terms' work. Weight: 220,000.
    Errors: ``TermsNotFound``, ``provenance.NotOwner``, ``TermsRetired`` (already retired).
    """
    state = env.state
    found = get_terms(state, args.terms_id)
    provenance.ensure_owner(state, found.work_id, who)
    if found.retired:
        raise TermsRetired(f"terms #{found.id} are already retired")
    terms.put(state, found.id, dataclasses.replace(found, retired=True))
    env.emit(TermsWithdrawn(found.id, found.work_id))


@frozen_dataclass
class AcquireLicense(Struct):
    terms_id: U64


@module.call(AcquireLicense, weight=lambda a: 50_000 + royalties.distribute_max_weight())
def acquire_license(env: Env, who: AccountId, args: AcquireLicense) -> int:
    """Buy a license under live terms; the minting fee is paid into the work at once.

    Origin: any signed account (it becomes the licensee). Weight: 50,000 plus a
    worst-case royalty distribution (``royalties.distribute_max_weight()``) before
    dispatch; the unused part is refunded.
    Errors: ``TermsNotFound``, ``TermsRetired``, ``SupplySoldOut``,
    ``balances.InsufficientBalance`` (the fee).
    """
    state = env.state
    found = get_terms(state, args.terms_id)
    if found.retired:
        raise TermsRetired(f"terms #{found.id} are retired")
    if (found.max_supply and found.minted >= found.max_supply) or found.minted >= U32_MAX:
        raise SupplySoldOut(f"all {found.minted} licenses under terms #{found.id} are issued")
    weight = 50_000
    if found.minting_fee:
        weight += royalties.distribute(
            env, who, found.work_id, found.minting_fee, royalties.Reason.LICENSE_FEE
        )
    number = env.block.number
    expires_at = 0 if found.expiry_blocks == 0 else min(number + found.expiry_blocks, U64_MAX)
    license_id = next_license_id.get(state)
    next_license_id.put(state, license_id + 1)
    licenses.put(
        state, license_id,
        License(license_id, found.id, found.work_id, who, number, expires_at, False),
    )
    terms.put(state, found.id, dataclasses.replace(found, minted=found.minted + 1))
    env.emit(LicenseAcquired(license_id, found.id, found.work_id, who, found.minting_fee,
                             expires_at))
    return weight


@frozen_dataclass
class TransferLicense(Struct):
    license_id: U64
    to: AccountId


@module.call(TransferLicense, weight=lambda a: 60_000)
def transfer_license(env: Env, who: AccountId, args: TransferLicense) -> None:
    """Give a live license to another account (clears its derivative approval).

    Origin: the licensee. Weight: 60,000.
    Errors: ``LicenseNotFound``, ``LicenseExpired``, ``NotLicensee``, ``NotTransferable``.
    """
    state = env.state
    lic, lic_terms = live_license(state, args.license_id, env.block.number)
    if lic.licensee != who:
        raise NotLicensee(f"the signer does not hold license #{lic.id}")
    if not lic_terms.transferable:
        raise NotTransferable(f"terms #{lic_terms.id} do not allow transfers")
    approved = lic.derivative_approved and args.to == who
    licenses.put(state, lic.id,
                 dataclasses.replace(lic, licensee=args.to, derivative_approved=approved))
    env.emit(LicenseTransferred(lic.id, who, args.to))


@frozen_dataclass
class ApproveDerivative(Struct):
    license_id: U64
    approved: bool


@module.call(ApproveDerivative, weight=lambda a: 40_000 + provenance.WORK_READ_WEIGHT)
def approve_derivative(env: Env, who: AccountId, args: ApproveDerivative) -> None:
    """Approve (or revoke approval of) a license for registering derivatives.

    Revoking does not affect derivatives already registered.

    Origin: the owner of the license's work. Weight: 220,000.
    Errors: ``LicenseNotFound``, ``provenance.NotOwner``.
    """
    state = env.state
    lic = get_license(state, args.license_id)
    provenance.ensure_owner(state, lic.work_id, who)
    licenses.put(state, lic.id, dataclasses.replace(lic, derivative_approved=args.approved))
    env.emit(DerivativeApprovalSet(lic.id, lic.work_id, args.approved))
