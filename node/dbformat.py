"""Encodings of node-local database values shared by the store and the indexer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgpack

__all__ = ["pack_pairs", "unpack_pairs"]


def pack_pairs(pairs: Mapping[bytes, bytes | None]) -> bytes:
    """A diff or undo log: a msgpack map of key to value (nil: absent)."""
    return msgpack.packb(pairs, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_pairs(data: bytes) -> Iterable[tuple[bytes, bytes | None]]:
    """The key/value pairs of ``pack_pairs`` (databases from before: an array of pairs)."""
    pairs = msgpack.unpackb(data, use_list=False)
    return pairs.items() if isinstance(pairs, dict) else pairs
