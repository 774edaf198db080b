"""The chain database's format: where it lives, its key layout and its node-local values.

One LevelDB (plyvel) at ``<base path>/db`` holds everything a node keeps about
the chain. This module names every key prefix, so that the store
(:mod:`node.chain.store`, :mod:`node.chain.blocks`, :mod:`node.chain.state`)
and the indexer (:mod:`node.chain.indexer`) share one layout.

Keys
    Every key starts with a one-byte prefix naming what it holds. Hashes are
    32 bytes; numbers are u64 big-endian (so the canonical index sorts by
    number); "encoding" is the runtime's canonical msgpack (:mod:`runtime.codec`).

    ==========================  ==================================================
    key                         value
    ==========================  ==================================================
    ``m`` + name                metadata: ``best``, ``finalized``, ``genesis`` (a
                                block hash each) and ``version`` (the schema
                                version, u32 big-endian)
    ``h`` + block hash          the header's encoding (what the hash is taken of)
    ``b`` + block hash          the block's encoding *without* justification
                                (header, extrinsics, seal, nil)
    ``j`` + block hash          the justification's encoding, if one is known
    ``e`` + block hash          the events' encoding (a tuple of EventRecord)
    ``n`` + number              the hash of the canonical (best chain) block
    ``x`` + extrinsic hash      where a canonical block holds the extrinsic:
                                block hash (32 bytes) + index (u32 big-endian);
                                the extrinsic hash is ``blake2_256`` of its encoding
    ``t`` + node hash           a trie node's encoding (see :mod:`runtime.trie`);
                                nodes are never deleted: every stored block's
                                state stays readable
    ``s`` + state key           the value of the state key at the best block
                                (the "flat state"; one get per runtime read)
    ``d`` + block hash          the block's forward diff: its whole write set
    ``i`` + index key           a node-side index entry at the indexed block
                                (works by owner, licenses by holder, credit
                                history, earnings totals …, see
                                :mod:`node.chain.indexes`), derived from the best
                                chain's events by the indexer
                                (:mod:`node.chain.indexer`)
    ``v`` + block hash          the index undo log: the value every index key the
                                block's events wrote had at the parent
    ``m`` + ``indexed``         the hash of the block the index is at
    ==========================  ==================================================

    A diff and an undo log are msgpack maps of key to value, where a nil value
    means "absent" (databases from before hold arrays of ``[key, value]`` pairs,
    read as well: :func:`unpack_pairs`). All of them are node-local formats, not
    consensus.

    An import reads no old values and writes no state undo log (a reorg reads
    them from the trie: see :mod:`node.chain.store`). Databases from before kept
    one under ``u``; it is no longer written, and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import msgpack

__all__ = [
    "BODY",
    "CANONICAL",
    "DB_DIRNAME",
    "DIFF",
    "EVENTS",
    "HEADER",
    "INDEX",
    "INDEX_UNDO",
    "JUSTIFICATION",
    "META",
    "META_BEST",
    "META_FINALIZED",
    "META_GENESIS",
    "META_INDEXED",
    "META_VERSION",
    "SCHEMA_VERSION",
    "STATE",
    "TRIE",
    "TX",
    "db_path",
    "number_key",
    "pack_pairs",
    "prefix_end",
    "unpack_pairs",
]

SCHEMA_VERSION = 2  # 2: listing indexes and earnings totals moved out of state into ``i``
DB_DIRNAME = "db"

META = b"m"
HEADER = b"h"
BODY = b"b"
JUSTIFICATION = b"j"
EVENTS = b"e"
CANONICAL = b"n"
TX = b"x"
TRIE = b"t"
STATE = b"s"
DIFF = b"d"
# Written by the indexer only (node.chain.indexer), in batches of its own.
INDEX = b"i"  # + index key: an index entry at the indexed block
INDEX_UNDO = b"v"  # + block hash: the index undo log of the block

META_BEST = META + b"best"
META_FINALIZED = META + b"finalized"
META_GENESIS = META + b"genesis"
META_VERSION = META + b"version"
META_INDEXED = META + b"indexed"  # the hash of the block the index is at


def db_path(base_path: Path | str) -> Path:
    """Where the chain database of a node's base path lives."""
    return Path(base_path) / DB_DIRNAME


def number_key(number: int) -> bytes:
    """The canonical index's key of a block number."""
    return CANONICAL + number.to_bytes(8, "big")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


def pack_pairs(pairs: Mapping[bytes, bytes | None]) -> bytes:
    """A diff or undo log: a msgpack map of key to value (nil: absent)."""
    return msgpack.packb(pairs, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_pairs(data: bytes) -> Iterable[tuple[bytes, bytes | None]]:
    """The key/value pairs of ``pack_pairs`` (databases from before: an array of pairs)."""
    pairs = msgpack.unpackb(data, use_list=False)
    return pairs.items() if isinstance(pairs, dict) else pairs
