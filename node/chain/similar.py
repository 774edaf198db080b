"""The node-side index of works by PDQ fingerprint: works within a Hamming distance.

A work registered with a ``pdq`` soft binding (runtime ``provenance.SoftBinding``) has a
256-bit fingerprint; two images that look alike (a re-encode, a resize) have fingerprints a
few bits apart, different images about 128. "Works within distance ``d`` of ``q``" is
answered by multi-index hashing (Norouzi, Punjani & Fleet, 2012), not by a scan:

* The fingerprint is cut into :data:`CHUNKS` = 16 chunks of 16 bits. Each work has one
  entry per chunk, keyed by the chunk's position and value:
  ``provenance:pdq_chunks: ++ u8(i) ++ be16(chunk i) ++ be64(work_id)`` -> the whole
  fingerprint (a msgpack bin of 32 bytes), so a candidate is checked without another read.
* Pigeonhole: if two fingerprints differ in at most ``d`` bits, some chunk of theirs
  differs in at most ``r = d // 16`` bits. So a lookup reads, for each chunk, the entries
  whose chunk value is within ``r`` bits of the query's: 1 value a chunk for ``d`` ≤ 15,
  17 for ``d`` ≤ 31, 137 for ``d`` ≤ 47 (:data:`MAX_DISTANCE`, which bounds a lookup at
  2,192 seeks). Every work it meets is a candidate; its exact distance decides.
* With fingerprints spread evenly, a 16-bit bucket holds ``n / 65,536`` works, so a lookup
  at ``d`` ≤ 31 checks about ``272 × n / 65,536`` candidates (~420 for 100,000 works).
  Fingerprints are chosen by whoever registers (the runtime checks their form only): many
  works registered with one fingerprint make its buckets large, so a lookup stops after
  :data:`MAX_CANDIDATES` candidates and says it is incomplete.

The entries are written by the indexer thread from ``WorkRegistered`` events (with the
other listing indexes, :func:`node.chain.indexes.index_changes`) and undone with them on a
reorg. A work's fingerprint never changes, so an entry is never moved or deleted but by
a reorg.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Protocol

import msgpack

from runtime import codec
from runtime.modules import provenance
from runtime.support import StorageMap

__all__ = ["CHUNKS", "MAX_DISTANCE", "Match", "chunk_entries", "entries", "pdq_chunks",
           "search"]

CHUNKS = 16
CHUNK_BITS = 16
FINGERPRINT_BYTES = CHUNKS * CHUNK_BITS // 8  # 32: PDQ's 256 bits
MAX_DISTANCE = 47  # the largest distance a lookup may ask for (a chunk radius of 2)
MAX_CANDIDATES = 50_000  # a lookup checks at most this many works (0.1-0.2 s of CPU)

pdq_chunks: StorageMap[bytes] = StorageMap("provenance", "pdq_chunks",
                                           codec.Bytes32)  # see the module doc

# A match: (distance, work id, the work's fingerprint).
Match = tuple[int, int, bytes]


class Cursor(Protocol):
    """What a lookup needs of the index: its entries under a key prefix, in key order
    (:class:`node.chain.store.IndexCursor`)."""

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]: ...


def chunk_keys(fingerprint: bytes) -> list[bytes]:
    """The key prefixes ``pdq_chunks ++ u8(i) ++ be16(chunk i)`` of a fingerprint."""
    prefix = pdq_chunks.prefix
    return [prefix + bytes((i,)) + fingerprint[2 * i:2 * i + 2] for i in range(CHUNKS)]


def entries(work_id: int, fingerprint: bytes) -> dict[bytes, bytes]:
    """The index entries of a work with this fingerprint (32 bytes)."""
    if len(fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"a PDQ fingerprint is {FINGERPRINT_BYTES} bytes, not {len(fingerprint)}")
    value = codec.pack(fingerprint)
    suffix = work_id.to_bytes(8, "big")
    return {key + suffix: value for key in chunk_keys(fingerprint)}


def chunk_entries(work_id: int, binding: provenance.SoftBinding | None) -> dict[bytes, bytes]:
    """The index entries of a work's soft binding: none unless it is a PDQ fingerprint."""
    if binding is None or binding.algorithm != provenance.PDQ \
            or len(binding.value) != FINGERPRINT_BYTES:
        return {}
    return entries(work_id, binding.value)


def _neighbours(value: int, radius: int) -> Iterator[int]:
    """Every 16-bit value within ``radius`` bits of ``value`` (itself first)."""
    for r in range(radius + 1):
        for bits in combinations(range(CHUNK_BITS), r):
            flipped = value
            for bit in bits:
                flipped ^= 1 << bit
            yield flipped


def search(index: Cursor, fingerprint: bytes, max_distance: int
           ) -> tuple[list[Match], int, bool]:
    """The works within ``max_distance`` bits of ``fingerprint`` (nearest first, then by
    id), how many candidates were checked, and whether the lookup is complete (False once
    it met :data:`MAX_CANDIDATES`: the works found are then some of those within the
    distance). ``max_distance``: 0..MAX_DISTANCE."""
    if len(fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"a PDQ fingerprint is {FINGERPRINT_BYTES} bytes, not {len(fingerprint)}")
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max distance {max_distance} is not 0..{MAX_DISTANCE}")
    radius = max_distance // CHUNKS
    query = int.from_bytes(fingerprint, "big")
    prefix = pdq_chunks.prefix
    seen: set[int] = set()
    found: list[Match] = []
    for i in range(CHUNKS):
        chunk = int.from_bytes(fingerprint[2 * i:2 * i + 2], "big")
        for value in _neighbours(chunk, radius):
            bucket = prefix + bytes((i,)) + value.to_bytes(2, "big")
            for key, raw in index.items(bucket):
                work_id = int.from_bytes(key[len(bucket):], "big")
                if work_id in seen:
                    continue
                if len(seen) >= MAX_CANDIDATES:
                    found.sort()
                    return found, len(seen), False
                seen.add(work_id)
                other: bytes = msgpack.unpackb(raw)
                distance = (query ^ int.from_bytes(other, "big")).bit_count()
                if distance <= max_distance:
                    found.append((distance, work_id, other))
    found.sort()
    return found, len(seen), True
