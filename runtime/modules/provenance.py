"""Provenance: works registered by content hash, with their creators and parent works.

A work is the SHA-256 of a file's bytes plus its kind, title, metadata, the
co-creators' revenue splits and the parent works it derives from. The first
registration of a content hash wins; the block number and timestamp of that
registration are the proof of provenance.

Derivation. A parent link names a parent work and a license the signer holds on
it (see :mod:`runtime.modules.licensing`). The license must be live at this
block, its terms must allow derivatives, and if the terms require approval the
work's owner must have approved this license for derivatives. The new work's
royalty stack (every ancestor's absolute share of all its revenue, see
:mod:`runtime.modules.royalties`) is computed once, here, and never changes.
The derivative graph is acyclic by construction: a parent must already exist,
so its id is smaller than the new work's, and works are never re-parented.
The ancestor set is bounded (``MAX_ANCESTORS`` distinct ancestors, stack total
≤ 10,000 bps), which bounds every later royalty distribution.

Ownership and revenue. The owner (the registering account) controls the work:
it offers and retires license terms, approves derivatives and updates the
metadata. ``transfer_work`` moves that control only. Revenue shares stay with
the creators listed at registration, forever, like royalty tokens: selling
control of a work does not sell its creators' income.

Choices where the design is silent: a title of only whitespace counts as empty;
a parent may appear only once even through different licenses
(``DuplicateParent``); oversize creator/parent lists are already refused by the
codec (the argument tuples are bounded), so ``InvalidSplits``/``TooManyParents``
for over-long lists only guard direct (non-extrinsic) callers; a transfer to the
current owner is accepted as a no-op transfer; a license is a grant to its
holder and is not consumed by registering a derivative (the same license may
found several derivatives, each of which pays the parent through its stack).

Soft binding. A work may carry a perceptual fingerprint of its content (C2PA's
"soft binding": it survives re-encoding, where the content hash does not): an
algorithm name and its value, plus the fingerprint's quality score if the
algorithm has one. The runtime checks only its form (a known algorithm, the
value's exact length, a quality of 0..100, a kind the algorithm fingerprints),
never the content: the client computes it from the decoded file, and nodes index
it to find near-duplicates (``opus_findSimilarWorks``). ``SOFT_BINDING_ALGORITHMS``
lists the algorithms: ``pdq`` (Meta's PDQ, 256 bits = 32 bytes, image works).
The binding is the last field of ``RegisterWork``, ``Work`` and ``WorkRegistered``
and is optional on the wire (``OPTIONAL_TAIL``): records written before it existed
decode unchanged, with no binding.

Storage
  ``works``            work id -> Work
  ``work_by_content``  content hash -> work id
  ``next_work_id``     the id the next work gets (ids start at 1)
  (Listing works by owner is a node-side index built from the events, not state.)
Events
  ``WorkRegistered(work_id, content_hash, owner, kind, parents, soft_binding?)``,
  ``WorkTransferred(work_id, old_owner, new_owner)``,
  ``MetadataUpdated(work_id, metadata_uri, metadata_hash)``
Errors
  ``AlreadyRegistered``, ``InvalidSplits``, ``EmptyTitle``, ``WorkNotFound``, ``NotOwner``,
  ``ParentNotFound``, ``LicenseNotHeld``, ``DerivativesNotAllowed``,
  ``DerivativeNotApproved``, ``DuplicateParent``, ``TooManyParents``,
  ``TooManyAncestors``, ``RoyaltyStackTooHigh``, ``UnknownBindingAlgorithm``,
  ``BadBindingLength``, ``BadBindingQuality``, ``BindingKindMismatch``; raised from licensing:
  ``licensing.LicenseExpired``.
Calls
  ``register_work(...)``: any signed account; weight 150,000 + 5,000 per creator
  + 220,000 per parent.
  ``transfer_work(work_id, new_owner)``: owner; weight 300,000.
  ``update_metadata(work_id, metadata_uri, metadata_hash)``: owner; weight 300,000.

Weights are calibrated against a balance transfer (20,000): decoding a work
record of the maximal size (16 creators, 16 parents, 32 ancestors, ~2.2 kB)
costs about nine transfers, so every call that reads a work is charged
``WORK_READ_WEIGHT`` per work (the size is not known before dispatch).
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Annotated

from runtime.codec import U8, U16, U64, Blob, Bytes32, Struct, Text, Tuple, frozen_dataclass
from runtime.modules import licensing, royalties
from runtime.state import Overlay, StateReader
from runtime.support import (
    AccountId,
    BlockInfo,
    DispatchError,
    Env,
    Event,
    EventLog,
    Module,
    StorageMap,
    StorageValue,
)

NAME = "provenance"
# Config
BPS = 10_000  # basis points in 100%
MAX_CREATORS = 16
MAX_PARENTS = 16
MAX_ANCESTORS = 32
MAX_TITLE = 256
MAX_URI = 512
MAX_BINDING_ALGORITHM = 16  # bytes of a soft binding's algorithm name
MAX_BINDING_VALUE = 64  # bytes of a soft binding's value (any algorithm)
MAX_BINDING_QUALITY = 100
# Weights (reference ns) of reading / writing a work record of the maximal size.
WORK_READ_WEIGHT = 180_000
WORK_WRITE_WEIGHT = 90_000

Title = Annotated[str, Text(MAX_TITLE)]
Uri = Annotated[str, Text(MAX_URI)]


class WorkKind(StrEnum):
    IMAGE = "image"
    TEXT = "text"
    AUDIO = "audio"
    VIDEO = "video"
    CODE = "code"
    DATASET = "dataset"
    MODEL = "model"
    OTHER = "other"


@frozen_dataclass
class Split(Struct):
    """A co-creator's share of the work's own revenue, in basis points."""

    account: AccountId
    bps: U16


@frozen_dataclass
class ParentLink(Struct):
    """A parent work and the license (held by the registrant) it was derived under."""

    work_id: U64
    license_id: U64


@frozen_dataclass
class AncestorShare(Struct):
    """An ancestor's absolute share of every payment into a work, in basis points."""

    work_id: U64
    bps: U16


@frozen_dataclass
class SoftBinding(Struct):
    """A perceptual fingerprint of the work's content (see the module docstring)."""

    algorithm: Annotated[str, Text(MAX_BINDING_ALGORITHM)]  # e.g. "pdq"
    value: Annotated[bytes, Blob(MAX_BINDING_VALUE)]
    quality: U8 | None  # the algorithm's quality score (0..100), if it has one


# The soft binding algorithms the runtime knows: name -> (value length in bytes, the work
# kinds it fingerprints). PDQ: Meta's perceptual hash of an image, 256 bits.
PDQ = "pdq"
SOFT_BINDING_ALGORITHMS: dict[str, tuple[int, frozenset[str]]] = {
    PDQ: (32, frozenset({"image"})),
}

Creators = Annotated[tuple[Split, ...], Tuple(MAX_CREATORS)]
Parents = Annotated[tuple[ParentLink, ...], Tuple(MAX_PARENTS)]
RoyaltyStack = Annotated[tuple[AncestorShare, ...], Tuple(MAX_ANCESTORS)]


@frozen_dataclass
class Work(Struct):
    OPTIONAL_TAIL = 1  # soft_binding (spec version 2)

    id: U64
    content_hash: Bytes32
    kind: WorkKind
    title: Title
    metadata_uri: Uri
    metadata_hash: Bytes32 | None
    owner: AccountId
    creators: Creators
    parents: Parents
    royalty_stack: RoyaltyStack
    registered_at: U64  # block number
    registered_at_ms: U64  # block timestamp (ms since the Unix epoch)
    soft_binding: SoftBinding | None = None


# Storage
# Works are read by every payment into them and into their derivatives: keep decoded ones.
works: StorageMap[Work] = StorageMap(NAME, "works", Work, decoded_cache=4096)
work_by_content: StorageMap[int] = StorageMap(NAME, "work_by_content", U64)
next_work_id: StorageValue[int] = StorageValue(NAME, "next_work_id", U64, 1)


# Events
@frozen_dataclass
class WorkRegistered(Event):
    module = NAME
    OPTIONAL_TAIL = 1  # soft_binding (spec version 2)

    work_id: U64
    content_hash: Bytes32
    owner: AccountId
    kind: WorkKind
    parents: Parents
    soft_binding: SoftBinding | None = None


@frozen_dataclass
class WorkTransferred(Event):
    module = NAME
    work_id: U64
    old_owner: AccountId
    new_owner: AccountId


@frozen_dataclass
class MetadataUpdated(Event):
    module = NAME
    work_id: U64
    metadata_uri: Uri
    metadata_hash: Bytes32 | None


# Errors
class Error(DispatchError):
    module = NAME


class AlreadyRegistered(Error):
    """This content hash is already registered (the first registration wins)."""


class InvalidSplits(Error):
    """Creator splits must be 1..16 distinct accounts, each > 0 bps, summing to 10,000."""


class EmptyTitle(Error):
    """A work needs a title."""


class WorkNotFound(Error):
    """No work has this id."""


class NotOwner(Error):
    """Only the work's owner may do this."""


class ParentNotFound(Error):
    """A parent link names a work that does not exist."""


class LicenseNotHeld(Error):
    """A parent link's license does not exist, is not the signer's, or is for another work."""


class DerivativesNotAllowed(Error):
    """The parent license's terms do not allow derivative works."""


class DerivativeNotApproved(Error):
    """The parent license's terms require the owner's approval, which was not given."""


class DuplicateParent(Error):
    """The same parent work appears twice."""


class TooManyParents(Error):
    """More than MAX_PARENTS parent links."""


class TooManyAncestors(Error):
    """The work would have more than MAX_ANCESTORS distinct ancestors."""


class RoyaltyStackTooHigh(Error):
    """The ancestors' shares would add up to more than 10,000 bps."""


class UnknownBindingAlgorithm(Error):
    """A soft binding names an algorithm the runtime does not know (see SOFT_BINDING_ALGORITHMS)."""


class BadBindingLength(Error):
    """A soft binding's value is not its algorithm's exact length (32 bytes for pdq)."""


class BadBindingQuality(Error):
    """A soft binding's quality score is above 100."""


class BindingKindMismatch(Error):
    """The soft binding's algorithm does not fingerprint works of this kind (pdq: images)."""


# Helpers other modules use


def get_work(state: StateReader, work_id: int) -> Work:
    """The work with this id, or ``WorkNotFound``."""
    work = works.get(state, work_id)
    if work is None:
        raise WorkNotFound(f"no work #{work_id}")
    return work


def ensure_owner(state: StateReader, work_id: int, who: bytes) -> Work:
    """The work, if ``who`` owns it; else ``WorkNotFound`` / ``NotOwner``."""
    work = get_work(state, work_id)
    if work.owner != who:
        raise NotOwner(f"the signer does not own work #{work_id}")
    return work


def validate_splits(creators: tuple[Split, ...]) -> None:
    if not creators:
        raise InvalidSplits("at least one creator is required")
    if len(creators) > MAX_CREATORS:
        raise InvalidSplits(f"{len(creators)} creators exceeds {MAX_CREATORS}")
    if len(dict.fromkeys(s.account for s in creators)) != len(creators):
        raise InvalidSplits("an account appears twice among the creators")
    if any(s.bps == 0 for s in creators):
        raise InvalidSplits("every creator's share must be above zero")
    total = sum(s.bps for s in creators)
    if total != BPS:
        raise InvalidSplits(f"creator shares sum to {total} bps, not {BPS}")


def check_soft_binding(binding: SoftBinding, kind: WorkKind) -> None:
    """Refuse a soft binding of the wrong form (its content is never checked)."""
    known = SOFT_BINDING_ALGORITHMS.get(binding.algorithm)
    if known is None:
        raise UnknownBindingAlgorithm(
            f"unknown soft binding algorithm {binding.algorithm!r} "
            f"(known: {', '.join(sorted(SOFT_BINDING_ALGORITHMS))})")
    length, kinds = known
    if len(binding.value) != length:
        raise BadBindingLength(f"a {binding.algorithm} value is {length} bytes, "
                               f"got {len(binding.value)}")
    if binding.quality is not None and binding.quality > MAX_BINDING_QUALITY:
        raise BadBindingQuality(f"quality {binding.quality} is above {MAX_BINDING_QUALITY}")
    if kind.value not in kinds:
        raise BindingKindMismatch(f"a {binding.algorithm} soft binding is for "
                                  f"{' or '.join(sorted(kinds))} works, not {kind.value}")


def check_parent(env: Env, who: bytes, link: ParentLink) -> None:
    """Refuse a parent link the signer may not derive under (see the module docstring)."""
    if not works.contains(env.state, link.work_id):
        raise ParentNotFound(f"parent work #{link.work_id} does not exist")
    held = licensing.licenses.get(env.state, link.license_id)
    if held is None or held.licensee != who or held.work_id != link.work_id:
        raise LicenseNotHeld(
            f"the signer holds no license #{link.license_id} on work #{link.work_id}"
        )
    _, terms = licensing.live_license(env.state, link.license_id, env.block.number)
    if not terms.derivatives_allowed:
        raise DerivativesNotAllowed(
            f"terms #{terms.id} of work #{link.work_id} do not allow derivatives"
        )
    if terms.derivatives_approval and not held.derivative_approved:
        raise DerivativeNotApproved(
            f"license #{held.id} is not approved for derivatives of work #{link.work_id}"
        )


module = Module(NAME)


@frozen_dataclass
class RegisterWork(Struct):
    OPTIONAL_TAIL = 1  # soft_binding (spec version 2)

    content_hash: Bytes32
    kind: WorkKind
    title: Title
    metadata_uri: Uri
    metadata_hash: Bytes32 | None
    creators: Creators
    parents: Parents
    soft_binding: SoftBinding | None = None


def _register_weight(a: RegisterWork) -> int:
    base = 60_000 + WORK_WRITE_WEIGHT
    # Each parent: its work record, license and terms, and merging its stack.
    return base + 5_000 * len(a.creators) + (WORK_READ_WEIGHT + 40_000) * len(a.parents)


@module.call(RegisterWork, weight=_register_weight)
def register_work(env: Env, who: AccountId, args: RegisterWork) -> None:
    """Register a work; the signer becomes its owner.

    Origin: any signed account. Weight: 150,000 + 5,000 per creator + 220,000 per
    parent (each parent: its work, license and terms, and merging its stack).
    Errors: ``EmptyTitle``, ``InvalidSplits``, ``AlreadyRegistered`` (the message
    names the existing work id), ``TooManyParents``, ``DuplicateParent``,
    ``ParentNotFound``, ``LicenseNotHeld``, ``licensing.LicenseExpired``,
    ``DerivativesNotAllowed``, ``DerivativeNotApproved``, ``TooManyAncestors``,
    ``RoyaltyStackTooHigh``; for a soft binding: ``UnknownBindingAlgorithm``,
    ``BadBindingLength``, ``BadBindingQuality``, ``BindingKindMismatch``.
    """
    state = env.state
    if not args.title.strip():
        raise EmptyTitle("the title is empty")
    validate_splits(args.creators)
    if args.soft_binding is not None:
        check_soft_binding(args.soft_binding, args.kind)
    existing = work_by_content.get(state, args.content_hash)
    if existing is not None:
        raise AlreadyRegistered(f"content hash already registered as work #{existing}")
    if len(args.parents) > MAX_PARENTS:
        raise TooManyParents(f"{len(args.parents)} parents exceeds {MAX_PARENTS}")
    if len(dict.fromkeys(p.work_id for p in args.parents)) != len(args.parents):
        raise DuplicateParent("a parent work appears twice")
    for link in args.parents:
        check_parent(env, who, link)
    stack = royalties.compute_royalty_stack(state, args.parents)
    if len(stack) > MAX_ANCESTORS:
        raise TooManyAncestors(f"{len(stack)} distinct ancestors exceeds {MAX_ANCESTORS}")
    total = sum(s.bps for s in stack)
    if total > BPS:
        raise RoyaltyStackTooHigh(f"ancestors' shares total {total} bps, above {BPS}")

    work_id = next_work_id.get(state)
    next_work_id.put(state, work_id + 1)
    work = Work(
        id=work_id,
        content_hash=args.content_hash,
        kind=args.kind,
        title=args.title,
        metadata_uri=args.metadata_uri,
        metadata_hash=args.metadata_hash,
        owner=who,
        creators=args.creators,
        parents=args.parents,
        royalty_stack=stack,
        registered_at=env.block.number,
        registered_at_ms=env.block.timestamp,
        soft_binding=args.soft_binding,
    )
    works.put(state, work_id, work)
    work_by_content.put(state, args.content_hash, work_id)
    env.emit(WorkRegistered(work_id, args.content_hash, who, args.kind, args.parents,
                            args.soft_binding))


@frozen_dataclass
class TransferWork(Struct):
    work_id: U64
    new_owner: AccountId


@module.call(TransferWork, weight=lambda a: 30_000 + WORK_READ_WEIGHT + WORK_WRITE_WEIGHT)
def transfer_work(env: Env, who: AccountId, args: TransferWork) -> None:
    """Hand control of a work (terms, approvals, metadata) to ``new_owner``.

    Revenue shares stay with the creators listed at registration.

    Origin: the work's owner. Weight: 300,000. Errors: ``WorkNotFound``, ``NotOwner``.
    """
    state = env.state
    work = ensure_owner(state, args.work_id, who)
    works.put(state, work.id, dataclasses.replace(work, owner=args.new_owner))
    env.emit(WorkTransferred(work.id, who, args.new_owner))


@frozen_dataclass
class UpdateMetadata(Struct):
    work_id: U64
    metadata_uri: Uri
    metadata_hash: Bytes32 | None


@module.call(UpdateMetadata, weight=lambda a: 30_000 + WORK_READ_WEIGHT + WORK_WRITE_WEIGHT)
def update_metadata(env: Env, who: AccountId, args: UpdateMetadata) -> None:
    """Replace a work's metadata URI and hash (the content hash never changes).

    Origin: the work's owner. Weight: 300,000. Errors: ``WorkNotFound``, ``NotOwner``.
    """
    state = env.state
    work = ensure_owner(state, args.work_id, who)
    updated = dataclasses.replace(
        work, metadata_uri=args.metadata_uri, metadata_hash=args.metadata_hash
    )
    works.put(state, work.id, updated)
    env.emit(MetadataUpdated(work.id, args.metadata_uri, args.metadata_hash))


def insert_genesis_work(
    state: Overlay,
    owner: bytes,
    content_hash: bytes,
    kind: str,
    title: str,
    metadata_uri: str,
    creators: tuple[tuple[bytes, int], ...],
) -> int:
    """Register a work in the genesis state (block 0, no parents); returns its id.

    Raises ValueError for an unknown kind and the call's named errors otherwise.
    """
    args = RegisterWork(
        content_hash=content_hash,
        kind=WorkKind(kind),
        title=title,
        metadata_uri=metadata_uri,
        metadata_hash=None,
        creators=tuple(Split(account, bps) for account, bps in creators),
        parents=(),
    )
    work_id = next_work_id.get(state)
    register_work(Env(state, BlockInfo(0, 0, bytes(32), bytes(32)), EventLog()), owner, args)
    return work_id
