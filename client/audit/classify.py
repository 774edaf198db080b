"""What an audit says of each item, and of the whole dataset.

:func:`audit_rows` is the audit of one piece of a dataset: its rows (item name, SHA-256)
and a ``lookup`` that tells, for many content hashes at once, what the registry knows of
each (:class:`Registered`, or None). It is a plain function of its arguments, so the same
audit runs over the RPC (:mod:`client.audit.lookup`), or, mapped over shards by a
distributed engine, against any other source of the same answers.

Each item gets one :class:`Status`:

==================  ===========================================================
``not_registered``  no work has this content hash
``no_terms``        a registered work with no live terms (none offered, or all
                    retired or sold out)
``not_allowed``     live terms are offered, none of which allows AI training
``allowed``         the cheapest live terms that allow AI training allow it
``constrained``     … allow it under constraints (stated in the terms' legal text)
``licensed``        the licensee (``--licensee``) holds a live license on the
                    work whose terms allow AI training
==================  ===========================================================

"Cheapest" is the node's order (docs/rpc.md, ``opus_getWorksByContentHashes``): the lowest
fee, then allowed before constrained, then the lowest royalty share, then the oldest terms.

An item is matched by its exact content hash (``match`` = ``sha256``). An image that no
work has the hash of may still be a near-duplicate of one (a re-encoded, resized, lightly
cropped or brightened copy): an audit of a folder of images looks those up by their PDQ
fingerprint (:mod:`client.audit.near`, ``opus_findSimilarWorks``) and reports the nearest
work's status and terms, as for a copy, with ``match`` = ``pdq`` and ``distance`` = the
Hamming distance (bits of 256) between the two fingerprints (:func:`near_duplicate`).

The :class:`Summary` adds the rows up: counts per status, the fees owed (each work once:
one license covers every item that is a copy of it) and the rights holders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = ["AuditRow", "Holder", "Lookup", "Offer", "Registered", "Status",
           "Summary", "audit_rows", "classify", "near_duplicate"]


class Status(StrEnum):
    NOT_REGISTERED = "not_registered"
    NO_TERMS = "no_terms"
    NOT_ALLOWED = "not_allowed"
    ALLOWED = "allowed"
    CONSTRAINED = "constrained"
    LICENSED = "licensed"

    @property
    def text(self) -> str:
        """The status for people."""
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    Status.NOT_REGISTERED: "not registered",
    Status.NO_TERMS: "registered, no terms",
    Status.NOT_ALLOWED: "AI training not allowed",
    Status.ALLOWED: "AI training allowed",
    Status.CONSTRAINED: "AI training constrained",
    Status.LICENSED: "already licensed",
}
# The statuses whose items need a license bought before training (their fees are owed).
TO_LICENSE = frozenset({Status.ALLOWED, Status.CONSTRAINED})
EXACT_MATCH = "sha256"
NEAR_MATCH = "pdq"  # a near-duplicate by PDQ fingerprint


class Offer(NamedTuple):
    """License terms that allow AI training: what a license under them costs and gives."""

    terms_id: int
    ai_training: str  # "allowed" or "constrained"
    fee: int  # smallest units
    royalty_bps: int  # the terms' commercial revenue share
    expiry_blocks: int  # a license's lifetime in blocks (0: it never expires)
    supply_left: int | None  # licenses still to be had under the terms (None: unlimited)
    legal_uri: str

    @classmethod
    def from_json(cls, terms: dict[str, Any]) -> Offer:
        """From the node's JSON of license terms (``opus_getTerms``' shape)."""
        max_supply = int(terms["maxSupply"])
        return cls(int(terms["id"]), str(terms["aiTraining"]), int(terms["mintingFee"]),
                   int(terms["commercialRevShare"]), int(terms["expiryBlocks"]),
                   max_supply - int(terms["minted"]) if max_supply else None,
                   str(terms["legalUri"]))


class Registered(NamedTuple):
    """What the registry knows of a content hash that is registered."""

    work_id: int
    owner: str
    live_terms: int  # how many terms a license can be acquired under
    offer: Offer | None  # the cheapest live terms that allow AI training
    license_id: int | None  # the licensee's live license for training, if asked and held

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Registered:
        """From an entry of ``opus_getWorksByContentHashes``' ``works``."""
        terms = entry.get("trainingTerms")
        license_id = entry.get("trainingLicense")
        return cls(int(entry["workId"]), str(entry["owner"]), int(entry["liveTerms"]),
                   None if terms is None else Offer.from_json(terms),
                   None if license_id is None else int(license_id))


# What the registry knows of each of many content hashes (64 hex digits each), in order.
Lookup = Callable[[Sequence[str]], Sequence[Registered | None]]


class AuditRow(NamedTuple):
    """One item of the report (a tuple, in the order of the report's columns)."""

    item: str
    sha256: str
    status: Status
    match: str = ""  # how the item was found: "sha256" (its exact content hash), "" if not
    work_id: int | None = None
    owner: str | None = None
    terms_id: int | None = None  # the cheapest live terms allowing AI training (not licensed)
    ai_training: str | None = None
    fee: int | None = None  # their fee, in the smallest unit
    royalty_bps: int | None = None
    expiry_blocks: int | None = None
    supply_left: int | None = None  # None with terms: unlimited
    legal_uri: str | None = None
    license_id: int | None = None  # the licensee's license (status licensed)
    distance: int | None = None  # a near-duplicate's PDQ distance (match "pdq"), in bits


def near_duplicate(row: AuditRow, found: Registered, distance: int) -> AuditRow:
    """An unregistered item's row once it is known to be a near-duplicate (PDQ fingerprint
    within ``distance`` bits) of the registered work ``found``: classified as a copy of it."""
    return classify(row.item, row.sha256, found)._replace(match=NEAR_MATCH, distance=distance)


def classify(item: str, sha256: str, found: Registered | None) -> AuditRow:
    """One item's row, from what the registry knows of its hash."""
    if found is None:
        return AuditRow(item, sha256, Status.NOT_REGISTERED)
    offer = found.offer
    if found.license_id is not None:
        status = Status.LICENSED
    elif offer is not None:
        status = Status.CONSTRAINED if offer.ai_training == "constrained" else Status.ALLOWED
    else:
        status = Status.NOT_ALLOWED if found.live_terms else Status.NO_TERMS
    if offer is None or status is Status.LICENSED:  # a licensed item owes no fee
        return AuditRow(item, sha256, status, EXACT_MATCH, found.work_id, found.owner,
                        license_id=found.license_id)
    return AuditRow(item, sha256, status, EXACT_MATCH, found.work_id, found.owner,
                    offer.terms_id, offer.ai_training, offer.fee, offer.royalty_bps,
                    offer.expiry_blocks, offer.supply_left, offer.legal_uri)


def audit_rows(rows: Sequence[tuple[str, str]], lookup: Lookup) -> list[AuditRow]:
    """The report rows of ``rows`` (item name, SHA-256 as 64 hex digits), in order."""
    found = lookup([sha256 for _, sha256 in rows])
    if len(found) != len(rows):
        raise ValueError(f"the lookup answered {len(found)} entries for {len(rows)} hashes")
    unregistered = Status.NOT_REGISTERED
    return [AuditRow(item, sha256, unregistered) if entry is None
            else classify(item, sha256, entry)
            for (item, sha256), entry in zip(rows, found, strict=True)]


# ---------------------------------------------------------------------------
# The summary


@dataclass
class Holder:
    """A rights holder's share of the dataset."""

    items: int = 0  # registered items of theirs
    works: int = 0  # distinct works of theirs to license
    fees: int = 0  # what licensing those works costs


@dataclass
class Summary:
    """The rows added up. Fees are owed once per work: one license covers every copy."""

    rows: int = 0
    counts: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    near_duplicates: int = 0  # rows matched by PDQ fingerprint, not by content hash
    fees_owed: int = 0
    holders: dict[str, Holder] = field(default_factory=dict)
    _to_license: set[int] = field(default_factory=set)

    def add(self, rows: Iterable[AuditRow]) -> None:
        counts = self.counts
        for row in rows:
            self.rows += 1
            counts[row.status] += 1
            if row.match == NEAR_MATCH:
                self.near_duplicates += 1
            if row.owner is None:
                continue
            holder = self.holders.get(row.owner)
            if holder is None:
                holder = self.holders[row.owner] = Holder()
            holder.items += 1
            if row.status in TO_LICENSE and row.work_id not in self._to_license:
                assert row.work_id is not None and row.fee is not None
                self._to_license.add(row.work_id)
                holder.works += 1
                holder.fees += row.fee
                self.fees_owed += row.fee

    @property
    def works_to_license(self) -> int:
        return len(self._to_license)

    def share(self, status: Status) -> float:
        """The share of the rows with ``status`` (0 for no rows)."""
        return self.counts[status] / self.rows if self.rows else 0.0

    def top_holders(self, n: int) -> list[tuple[str, Holder]]:
        """The ``n`` rights holders owed the most, then with the most items."""
        return sorted(self.holders.items(),
                      key=lambda kv: (-kv[1].fees, -kv[1].items, kv[0]))[:n]

    def to_json(self, top: int) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "counts": {s.value: self.counts[s] for s in Status},
            "shares": {s.value: round(self.share(s), 6) for s in Status},
            "nearDuplicates": self.near_duplicates,
            "feesOwed": str(self.fees_owed),
            "worksToLicense": self.works_to_license,
            "rightsHolders": len(self.holders),
            "topRightsHolders": [{"owner": owner, "items": h.items, "works": h.works,
                                  "fees": str(h.fees)} for owner, h in self.top_holders(top)],
        }

