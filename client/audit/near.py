"""Near-duplicates in an audit of a folder of images: copies that no content hash finds.

A re-encoded, resized, lightly cropped or brightened copy of a registered image has a
SHA-256 of its own, so the lookup by content hash reports it ``not_registered``. For each
such item that is an image (by its name's suffix, then by Pillow decoding it),
:class:`NearDuplicates` computes its PDQ query fingerprints (:func:`client.fingerprint.
query_fingerprints`), asks the node for works within ``max_distance`` bits
(``opus_findSimilarWorks``, at the audit's block) and, if there are any, reports the item as
a copy of the nearest one: that work's status, terms and fee
(``opus_getWorksByContentHashes`` of its content hash), with ``match`` = ``pdq`` and its
``distance`` (:func:`client.audit.classify.near_duplicate`).

A file named like an image that does not decode, or too flat to fingerprint (PDQ quality
below :data:`client.fingerprint.MIN_QUALITY`), stays ``not_registered``: the content hash
lookup has already said all that can be said of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from client.audit.classify import AuditRow, Registered, Status, near_duplicate
from client.fingerprint import Fingerprint, NotAnImage, looks_like_image, query_fingerprints

__all__ = ["NearDuplicates", "NearLookup"]


class NearLookup(Protocol):
    """What the near-duplicate lookups need: the works near an image's fingerprints
    (``opus_findSimilarWorks``' answer, merged: :meth:`client.audit.lookup.RpcLookup.
    near_duplicates`, or a registry file's, :meth:`client.audit.registry.Registry.
    near_duplicates`) and the lookup by content hash."""

    def __call__(self, hashes: Sequence[str]) -> Sequence[Registered | None]: ...

    def near_duplicates(self, fingerprints: list[Fingerprint], max_distance: int
                        ) -> list[dict[str, Any]]: ...


class NearDuplicates:
    """Rows of a folder of media files -> the same rows, near-duplicates found (see the
    module doc). Called on the audit's worker threads (:func:`client.audit.lookup.
    audit_chunks`' ``then``)."""

    def __init__(self, root: Path, lookup: NearLookup, max_distance: int) -> None:
        self.root = root
        self.lookup = lookup
        self.max_distance = max_distance

    def __call__(self, rows: list[AuditRow]) -> list[AuditRow]:
        nearest: list[tuple[int, int, str]] = []  # (row index, distance, 64-hex content hash)
        for i, row in enumerate(rows):
            if row.status is not Status.NOT_REGISTERED or not looks_like_image(row.item):
                continue
            try:
                queries = query_fingerprints(self.root / row.item)
            except NotAnImage:
                continue
            if not queries[0].usable:
                continue
            found = self.lookup.near_duplicates(queries, self.max_distance)
            if found:
                nearest.append((i, int(found[0]["distance"]), str(found[0]["contentHash"])[2:]))
        if not nearest:
            return rows
        out = list(rows)
        entries = self.lookup([content_hash for _, _, content_hash in nearest])
        for (i, distance, _), entry in zip(nearest, entries, strict=True):
            if entry is not None:  # (registered at the audit's block: the lookup says so)
                out[i] = near_duplicate(rows[i], entry, distance)
        return out
