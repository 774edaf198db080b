"""The chain database: one LevelDB (plyvel) at ``<base path>/db``.

Everything a node keeps about the chain lives here: headers, bodies,
justifications, events, the canonical index, the transaction index, every
version of the state trie, a flat copy of the best block's state and the
metadata that ties them together.

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
                                :mod:`node.indexes`), derived from the best
                                chain's events by the indexer
                                (:mod:`node.indexer`)
    ``v`` + block hash          the index undo log: the value every index key the
                                block's events wrote had at the parent
    ``m`` + ``indexed``         the hash of the block the index is at
    ==========================  ==================================================

    A diff and an undo log are msgpack maps of key to value, where a nil value
    means "absent" (databases from before hold arrays of ``[key, value]`` pairs,
    read as well). All of them are node-local formats, not consensus.

    A reorg undoes a retracted block's diff with the values its keys have in
    the common ancestor's state, read from the trie: an import reads no old
    values and writes no state undo log. (Databases from before kept one under
    ``u``; it is ignored.)

Atomicity
    Importing a block is one synced LevelDB write batch holding the block and,
    if it becomes the best block, the whole move of the flat state (undo the
    retracted blocks, apply the enacted ones), the canonical and transaction
    indexes and the ``best`` pointer. LevelDB applies a batch entirely or not at
    all, so after a crash the database holds the old head or the new one, never
    half a block. Finality and justifications are their own synced batches.

    A bulk import (sync, ``opus import-blocks``) lets a thread write each
    block's batch while it executes the next block (``import_block(...,
    durable=False)``): the batch stays whole, the head only lags by at most
    that one block until the next use of the store waits for it.

    The node-side index is not in the import batch: once a new best block's
    batch is written, the indexer applies its events in batches of its own, on
    a thread of its own, with its ``indexed`` pointer (see :mod:`node.indexer`).
    Readers of the index wait for it to catch up with the best block; after a
    crash it resumes from its pointer.

Fork choice
    The longest chain wins; a tie keeps the current best. A chain that does
    not contain the finalized block is never made best.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import msgpack
import plyvel

from genesis.builder import Genesis
from node.dbformat import pack_pairs, unpack_pairs
from node.forks import NoCommonAncestor, Route, tree_route
from node.indexer import INDEX, META_INDEXED, Indexer
from node.indexes import genesis_index
from runtime import codec
from runtime.block import Block, Header, Justification
from runtime.crypto import blake2_256
from runtime.execution import ExecutedBlock
from runtime.state import StateReader
from runtime.support import EventRecord
from runtime.trie import EMPTY_ROOT, MissingNode, NodeStore, trie_get, trie_update
from runtime.trie import prove as trie_prove

__all__ = [
    "BasePathInUse",
    "ChainStore",
    "DatabaseError",
    "FinalityViolation",
    "FlatState",
    "GenesisMismatch",
    "ImportResult",
    "Reorg",
    "StateRootMismatch",
    "StorageError",
    "TrieState",
    "TxLocation",
    "UnknownBlock",
    "UnknownParent",
    "db_path",
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
# ``u`` is no longer written (see above). ``i`` (INDEX), ``v`` (INDEX_UNDO) and
# ``m`` + ``indexed`` belong to the indexer: see node.indexer.

META_BEST = META + b"best"
META_FINALIZED = META + b"finalized"
META_GENESIS = META + b"genesis"
META_VERSION = META + b"version"

GENESIS_SEAL = bytes(64)
EventRecords = Annotated[tuple[EventRecord, ...], codec.Tuple(codec.MAX_CONTAINER_LEN)]
MAX_EVENTS_SIZE = 256 * 1024 * 1024

# LevelDB tuning: bounded memory (two memtables + block cache + the node cache).
WRITE_BUFFER_SIZE = 16 * 1024 * 1024
BLOCK_CACHE_SIZE = 64 * 1024 * 1024
NODE_CACHE_BYTES = 64 * 1024 * 1024
FLAT_CACHE_ENTRIES = 50_000  # best-state values kept in memory (hot accounts, counters, works)
INDEX_CACHE_ENTRIES = 50_000  # node-side index values kept in memory (earnings totals)
INDEX_WAIT_SECONDS = 30.0  # how long a reader of the index waits for it to catch up
WARM_LEVELS = 5  # trie levels loaded into the node cache at open (up to 16^4 = 65,536 branches)
BLOOM_FILTER_BITS = 10
# Each open table keeps its index and filter blocks in memory, and LevelDB maps open
# tables into the process: their touched pages count in its RSS (about 2 MiB a table).
# 64 instead of 256: peak RSS 440 instead of 644 MB importing 200,000 registrations,
# at the same speed (trie-node keys are random: the table cache misses either way).
MAX_OPEN_FILES = 64
# LevelDB compacts in a background thread of its own, on the same cores as the
# importing thread; at this niceness it yields to block import (Linux only).
COMPACTION_NICENESS = 10


# ---------------------------------------------------------------------------
# Errors


class StorageError(Exception):
    """Base of every chain database error."""


class DatabaseError(StorageError):
    """The database cannot be opened, read or written (the message says why)."""


class BasePathInUse(StorageError):
    """Another process (or another ChainStore here) holds the database at this base path."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"base path {path} is in use by another node (the database {db_path(path)} is locked); "
            f"stop that node or choose another --base-path"
        )
        self.path = path


class GenesisMismatch(StorageError):
    """The database at this base path belongs to another chain."""

    def __init__(self, path: Path, stored: bytes, expected: bytes) -> None:
        super().__init__(
            f"the database at {path} holds the chain with genesis 0x{stored.hex()}, "
            f"not 0x{expected.hex()}; use another base path or purge this one"
        )
        self.path = path
        self.stored = stored
        self.expected = expected


class UnknownParent(StorageError):
    """A block whose parent is not stored."""


class UnknownBlock(StorageError):
    """A block hash (or canonical number) the database does not hold."""


class FinalityViolation(StorageError):
    """A best-chain or finality change that would leave or go back past the finalized block."""


class StateRootMismatch(StorageError):
    """An ExecutedBlock whose trie update does not give its header's state root."""


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Reorg:
    """How the best chain moved: blocks taken off (newest first) and put on (oldest first)."""

    retracted: tuple[bytes, ...]
    enacted: tuple[bytes, ...]


@dataclass(frozen=True)
class ImportResult:
    """The outcome of :meth:`ChainStore.import_block`.

    When ``new_best``, ``enacted`` lists every block that joined the best chain
    (the imported block last) and ``retracted`` every block that left it
    (newest first; empty unless it was a reorg).
    """

    hash: bytes
    new_best: bool
    already_known: bool = False
    retracted: tuple[bytes, ...] = ()
    enacted: tuple[bytes, ...] = ()

    @classmethod
    def known(cls, block_hash: bytes) -> ImportResult:
        """The result for a block that was already stored (nothing written)."""
        return cls(block_hash, new_best=False, already_known=True)

    @property
    def is_reorg(self) -> bool:
        return bool(self.retracted)


@dataclass(frozen=True)
class TxLocation:
    """Where a canonical block holds an extrinsic."""

    block_hash: bytes
    index: int


# ---------------------------------------------------------------------------
# State readers and the node store


_MISSING = object()


class FlatCache:
    """Values of a block recently read or written (None: absent): of the best block's
    flat state, or (a second instance) of the indexed block's node-side index.

    Runtime reads are one LevelDB get each; hot keys (accounts, counters) are
    read by almost every block, so they are served from here. The cache follows
    its block: a block that extends it updates the changed keys (``cache_writes``:
    adds all of them, as a block's new state values are often read by the
    next), a reorg empties it. Readers made for an older block never use it.
    """

    def __init__(self, max_entries: int, *, cache_writes: bool) -> None:
        self.block_hash = b""
        self.values: OrderedDict[bytes, bytes | None] = OrderedDict()
        self.max_entries = max_entries
        self.cache_writes = cache_writes
        self.lock = threading.Lock()

    def remember(self, block_hash: bytes, key: bytes, value: bytes | None) -> None:
        with self.lock:
            if block_hash != self.block_hash:
                return
            values = self.values
            values[key] = value
            if len(values) > self.max_entries:
                values.popitem(last=False)

    def follow(self, block_hash: bytes, changes: Mapping[bytes, bytes | None] | None) -> None:
        """The best block is now ``block_hash``, reached by ``changes`` (None: a reorg)."""
        with self.lock:
            if changes is None:
                self.values.clear()
            elif self.cache_writes:
                # (One update in C, evicting the oldest entries.)
                values = self.values
                values.update(changes)
                for _ in range(len(values) - self.max_entries):
                    values.popitem(last=False)
            else:
                values = self.values
                # (A set intersection finds the cached keys among the changes in C;
                # the order of these assignments does not matter.)
                for key in values.keys() & changes.keys():
                    values[key] = changes[key]
            self.block_hash = block_hash


class FlatState:
    """The best block's state, read from the flat copy: one LevelDB get per key.

    Reads go through a LevelDB snapshot taken when the reader was made, so the
    reader keeps answering for that block even after the best block moves on;
    while that block is still the best, hot keys come from the FlatCache.
    ``pending`` holds the flat writes of the block whose batch was still being
    written when the reader was made (see ``ChainStore.import_block``'s
    ``durable``): the snapshot may predate them.
    """

    __slots__ = ("_get", "_cache", "_block_hash", "_pending")

    def __init__(self, snapshot: Any, cache: FlatCache, block_hash: bytes,
                 pending: dict[bytes, bytes | None] | None = None) -> None:
        self._get = snapshot.get
        self._cache = cache
        self._block_hash = block_hash
        self._pending = pending

    def get(self, key: bytes) -> bytes | None:
        pending = self._pending
        if pending is not None and key in pending:
            return pending[key]
        cache = self._cache
        if cache.block_hash == self._block_hash:
            value = cache.values.get(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[return-value]
            value = self._get(STATE + key)
            cache.remember(self._block_hash, key, value)
            return value  # type: ignore[no-any-return]
        return self._get(STATE + key)  # type: ignore[no-any-return]

    def in_memory(self) -> _CachedValues:
        """A reader of this state's values that are in memory, None for the rest (no disk).

        The trie update takes it as a hint of the old values (``trie_update``'s
        ``old_values``): the keys a block writes were mostly read by it, so their
        old values are cached, and a key that is not is most likely new.
        """
        return _CachedValues(self._cache, self._block_hash)


class _CachedValues:
    __slots__ = ("_cache", "_block_hash")

    def __init__(self, cache: FlatCache, block_hash: bytes) -> None:
        self._cache = cache
        self._block_hash = block_hash

    def get(self, key: bytes) -> bytes | None:
        cache = self._cache
        if cache.block_hash != self._block_hash:
            return None
        return cache.values.get(key)


class TrieState:
    """The state of any stored block, read through its state trie (about log16(N) gets a key)."""

    __slots__ = ("nodes", "root")

    def __init__(self, nodes: NodeStore, root: bytes) -> None:
        self.nodes = nodes
        self.root = root

    def get(self, key: bytes) -> bytes | None:
        return trie_get(self.nodes, self.root, key)


class CachedNodeStore:
    """The trie nodes in LevelDB, behind a cache of branches bounded in bytes.

    Nodes are content-addressed and never change, so the cache is never stale.
    Only branches are cached: every update walks down through them, while a
    leaf read from disk (the neighbour an inserted key splits from) is rarely
    needed again and would only push branches out of the cache.

    The cache has two generations of at most half the bytes each, an
    approximation of least-recently-used that costs one dict operation per
    block for the new branches, instead of one per node: new and looked-up
    branches go into the young generation; when it is full, the old generation
    is dropped and the young one becomes old; a hit in the old generation
    moves the node back to the young one. Safe to use from a worker thread
    while the main thread reads too.
    """

    def __init__(self, db: Any, max_bytes: int = NODE_CACHE_BYTES) -> None:
        self._db_get = db.get
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self._young_bytes = self._old_bytes = 0
        self._generation_bytes = max_bytes // 2
        self._lock = threading.Lock()
        # The new nodes of a block whose batch is still being written.
        self.pending: dict[bytes, bytes] | None = None

    @property
    def cached_bytes(self) -> int:
        """The size of the cached node encodings (at most ``max_bytes``)."""
        return self._young_bytes + self._old_bytes

    def warm(self, root: bytes, levels: int) -> None:
        """Load the top ``levels`` levels of branches below ``root`` into the cache.

        Every block walks through them, so a node starts at full import speed
        instead of paying a LevelDB read per branch for its first blocks.
        """
        frontier = [root]
        for _ in range(levels):
            below: list[bytes] = []
            for node_hash in frontier:
                if self._young_bytes >= self._generation_bytes:
                    return
                data = self.get_node(node_hash)
                if data is not None and data[1] == 1:  # a branch: [1, partial, children]
                    below.extend(c for c in msgpack.unpackb(data)[2] if c is not None)
            frontier = below

    def remember_branches(self, branches: dict[bytes, bytes]) -> None:
        """Cache newly written branch nodes: the next blocks walk through them."""
        self._remember(branches, sum(map(len, branches.values())))

    def _remember(self, nodes: dict[bytes, bytes], size: int) -> None:
        if size > self._generation_bytes:
            return
        with self._lock:
            if self._young_bytes + size > self._generation_bytes:
                self._old, self._old_bytes = self._young, self._young_bytes
                self._young, self._young_bytes = {}, 0
            self._young.update(nodes)
            self._young_bytes += size

    def cached_node(self, node_hash: bytes) -> bytes | None:
        """The node if it is in the cache (no disk read), else None."""
        data = self._young.get(node_hash)
        return self._old.get(node_hash) if data is None else data

    def get_node(self, node_hash: bytes) -> bytes | None:
        data = self._young.get(node_hash)
        if data is not None:
            return data
        data = self._old.get(node_hash)
        if data is None:
            pending = self.pending
            if pending is not None and (data := pending.get(node_hash)) is not None:
                return data
            data = self._db_get(TRIE + node_hash)
            # A branch's encoding starts with a 3-item array header and the kind 1.
            if data is None or data[1] != 1:
                return data  # type: ignore[no-any-return]
        self._remember({node_hash: data}, len(data))
        return data


# ---------------------------------------------------------------------------
# Encodings of node-local values


def _number_key(number: int) -> bytes:
    return CANONICAL + number.to_bytes(8, "big")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


def db_path(base_path: Path | str) -> Path:
    """Where the chain database of a node's base path lives."""
    return Path(base_path) / DB_DIRNAME


@dataclass(frozen=True)
class _Pending:
    """The block being imported: not in the database yet, but part of the batch."""

    hash: bytes
    header: Header
    changes: dict[bytes, bytes | None]
    extrinsics: tuple[bytes, ...]


@dataclass(frozen=True)
class _Move:
    """A move of the best chain added to a batch, and its flat-state writes
    (key: new value, None: deleted)."""

    reorg: Reorg
    flat: dict[bytes, bytes | None]


class _BatchWrite:
    """A block's synced batch, written by a thread of its own (``import_block(durable=False)``).

    LevelDB's write (and its fsync) runs without the GIL, so it overlaps the
    execution of the next block. ``flat`` is the batch's flat-state writes,
    which readers made meanwhile see from memory.
    """

    def __init__(self, batch: Any, flat: dict[bytes, bytes | None] | None,
                 written: Callable[[], None] | None) -> None:
        self.flat = flat
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, args=(batch, written),
                                       name="opus-db-write")
        self.thread.start()

    def _write(self, batch: Any, written: Callable[[], None] | None) -> None:
        try:
            batch.write()
        except BaseException as e:  # reported by ChainStore.flush, on the caller's thread
            self.error = e
            return
        if written is not None:
            written()


# ---------------------------------------------------------------------------
# The store


class ChainStore:
    """The chain database of one node. Open it with :meth:`ChainStore.open`."""

    def __init__(self, path: Path, db: Any, genesis_hash: bytes,
                 node_cache_bytes: int = NODE_CACHE_BYTES) -> None:
        """Use :meth:`open`; this wraps an already opened and initialized database."""
        self.path = path
        self._raw_db = db
        self._writing: _BatchWrite | None = None  # the last block's batch, being written
        self._compaction_niced = False
        self._failed: DatabaseError | None = None
        self.genesis_hash = genesis_hash
        self._nodes = CachedNodeStore(db, node_cache_bytes)
        self._flat_cache = FlatCache(FLAT_CACHE_ENTRIES, cache_writes=True)
        self._best_hash = b""
        self._best_hash, self._best = self._load_head(META_BEST)
        self._flat_cache.follow(self._best_hash, None)
        self._finalized_hash, self._finalized = self._load_head(META_FINALIZED)
        # The node-side index follows the best chain on a thread of its own. A database
        # from before kept it in the import batches: it is at the best block.
        indexed = db.get(META_INDEXED) or self._best_hash
        # (Its cache holds index values the indexer reads: credit counts, earnings totals;
        # most index writes are new entries that no block reads again.)
        self._indexer = Indexer(db, indexed, self._stored_header, self._stored_events,
                                FlatCache(INDEX_CACHE_ENTRIES, cache_writes=False))
        self._indexer.follow(self._best_hash)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: Path | str, genesis: Genesis, *,
             node_cache_bytes: int = NODE_CACHE_BYTES) -> ChainStore:
        """Open (creating if needed) the chain database under base path ``path``.

        A new database gets the genesis block; an existing one must hold the
        same genesis (else :class:`GenesisMismatch`). Raises
        :class:`BasePathInUse` if another node holds the database and
        :class:`DatabaseError` for any other failure to open it.
        """
        base = Path(path)
        location = db_path(base)
        try:
            location.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create the database directory {location}: "
                                f"{e.strerror or e}") from None
        try:
            db = plyvel.DB(
                str(location),
                create_if_missing=True,
                write_buffer_size=WRITE_BUFFER_SIZE,
                lru_cache_size=BLOCK_CACHE_SIZE,
                bloom_filter_bits=BLOOM_FILTER_BITS,
                # Keys and trie nodes are hashes: compression only costs CPU.
                compression=None,
                max_open_files=MAX_OPEN_FILES,
            )
        except plyvel.Error as e:
            message = _plyvel_message(e)
            if "lock" in message.lower():
                raise BasePathInUse(base) from None
            raise DatabaseError(f"cannot open the database {location}: {message}") from None
        except OSError as e:
            raise DatabaseError(f"cannot open the database {location}: {e}") from None
        try:
            _initialize(db, base, genesis)
            store = cls(base, db, genesis.hash, node_cache_bytes)
        except BaseException:
            db.close()
            raise
        try:
            store._nodes.warm(store._best.state_root, WARM_LEVELS)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the database (idempotent) once the last block's batch is written; the store
        is unusable afterwards. Raises DatabaseError if that batch could not be written.
        The index may be left behind the best block: it catches up at the next open."""
        try:
            self.flush()
        finally:
            self._indexer.close()
            if not self._raw_db.closed:
                self._raw_db.close()

    @property
    def closed(self) -> bool:
        return bool(self._raw_db.closed)

    def flush(self) -> None:
        """Wait until the last imported block is durable (see ``import_block``'s ``durable``).

        Raises :class:`DatabaseError` if its batch could not be written; the
        store then refuses every further use (the node must restart, and finds
        the previous head).
        """
        writing = self._writing
        if writing is not None:
            writing.thread.join()
            if writing.error is not None and self._failed is None:
                self._failed = self._write_failed(writing.error)
            self._writing = None
            self._nodes.pending = None
        if self._failed is not None:
            raise self._failed

    @property
    def _db(self) -> Any:
        """The database, once the last block's batch is written: every access but the
        best state's reads and the trie nodes' (which see the batch in memory) waits."""
        if self._writing is not None or self._failed is not None:
            self.flush()
        return self._raw_db

    def __enter__(self) -> ChainStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ heads

    @property
    def best_hash(self) -> bytes:
        return self._best_hash

    @property
    def best_header(self) -> Header:
        return self._best

    @property
    def finalized_hash(self) -> bytes:
        return self._finalized_hash

    @property
    def finalized_header(self) -> Header:
        return self._finalized

    # ------------------------------------------------------------------ blocks

    def has_block(self, block_hash: bytes) -> bool:
        return self._db.get(HEADER + block_hash) is not None

    def header(self, block_hash: bytes) -> Header | None:
        if block_hash == self._best_hash:
            return self._best
        data = self._db.get(HEADER + block_hash)
        return None if data is None else _decode_header(data)

    def block(self, block_hash: bytes) -> Block | None:
        """The stored block, with its justification attached if one is known."""
        data = self._db.get(BODY + block_hash)
        if data is None:
            return None
        block: Block = codec.decode(data, Block)
        justification = self.justification(block_hash)
        if justification is not None:
            block = replace(block, justification=justification)
        return block

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        """The block's canonical encoding (with justification if known), ready to send."""
        data: bytes | None = self._db.get(BODY + block_hash)
        if data is None or self._db.get(JUSTIFICATION + block_hash) is None:
            return data
        block = self.block(block_hash)
        assert block is not None
        return codec.encode(block)

    def justification(self, block_hash: bytes) -> Justification | None:
        data = self._db.get(JUSTIFICATION + block_hash)
        return None if data is None else codec.decode(data, Justification)

    def events(self, block_hash: bytes) -> tuple[EventRecord, ...] | None:
        return _decode_events(self._db.get(EVENTS + block_hash))

    def hash_at(self, number: int) -> bytes | None:
        """The hash of the best chain's block at ``number``."""
        if number < 0 or number > self._best.number:
            return None
        return self._db.get(_number_key(number))  # type: ignore[no-any-return]

    def header_at(self, number: int) -> Header | None:
        block_hash = self.hash_at(number)
        return None if block_hash is None else self.header(block_hash)

    def is_canonical(self, block_hash: bytes) -> bool:
        """Whether the block is on the best chain."""
        header = self.header(block_hash)
        return header is not None and self.hash_at(header.number) == block_hash

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        """Whether ``ancestor`` is ``descendant`` or one of its ancestors (both stored)."""
        target = self.header(ancestor)
        header = self.header(descendant)
        if target is None or header is None:
            return False
        if target.number > header.number:
            return False
        block_hash = descendant
        if self.is_canonical(descendant):
            return self.hash_at(target.number) == ancestor
        while header.number > target.number:
            block_hash = header.parent_hash
            header = self._require_header(block_hash)
        return block_hash == ancestor

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        """Where the best chain holds the extrinsic with this hash."""
        data = self._db.get(TX + tx_hash)
        if data is None:
            return None
        return TxLocation(data[:32], int.from_bytes(data[32:], "big"))

    # ------------------------------------------------------------------ state

    @property
    def node_store(self) -> CachedNodeStore:
        """Every stored trie node, for execute_block, build_block and proofs."""
        return self._nodes

    def best_state(self) -> FlatState:
        """The best block's state (flat: one get per key), frozen at this call."""
        writing = self._writing
        return FlatState(self._raw_db.snapshot(), self._flat_cache, self._best_hash,
                         None if writing is None else writing.flat)

    def state_at(self, block_hash: bytes) -> StateReader:
        """The state after ``block_hash``: the flat state for the best block, else the trie."""
        if block_hash == self._best_hash:
            return self.best_state()
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"no stored block 0x{block_hash.hex()}")
        return TrieState(self._nodes, header.state_root)

    def iter_state_prefix(self, prefix: bytes = b"", start_after: bytes | None = None,
                          ) -> Iterator[tuple[bytes, bytes]]:
        """The best state's items whose key starts with ``prefix``, in key order.

        With ``start_after`` (for paging), only keys strictly after it.
        """
        return self._iter_prefix(STATE, prefix, start_after)

    def _iter_prefix(self, kind: bytes, prefix: bytes, start_after: bytes | None,
                     ) -> Iterator[tuple[bytes, bytes]]:
        end = _prefix_end(kind + prefix)
        start = kind + prefix
        include_start = True
        if start_after is not None and kind + start_after >= start:
            start = kind + start_after
            include_start = False
        offset = len(kind)
        for key, value in self._db.iterator(start=start, stop=end, include_start=include_start):
            yield key[offset:], value

    def wait_indexed(self, timeout: float = INDEX_WAIT_SECONDS) -> None:
        """Wait until the node-side index has caught up with the best block.

        Raises :class:`DatabaseError` if it has not within ``timeout`` seconds, or if
        the indexer stopped (a failed write, a corrupt database).
        """
        self.flush()  # a block goes to the indexer once its batch is written
        try:
            self._indexer.wait(timeout)
        except TimeoutError:
            raise DatabaseError(f"the node-side index of {db_path(self.path)} is still "
                                f"catching up with the best block") from None
        except Exception as e:
            raise DatabaseError(f"the node-side index of {db_path(self.path)} stopped "
                                f"following the chain: {type(e).__name__}: {e}") from None

    @property
    def indexer_cpu_seconds(self) -> float:
        """CPU time the indexer thread has spent so far (for the benchmark)."""
        return self._indexer.cpu_seconds

    def index_get(self, key: bytes) -> bytes | None:
        """The value of a node-side index entry at the best block (see :mod:`node.indexes`)."""
        self.wait_indexed()
        return self._raw_db.get(INDEX + key)  # type: ignore[no-any-return]

    def iter_index_prefix(self, prefix: bytes, start_after: bytes | None = None,
                          ) -> Iterator[tuple[bytes, bytes]]:
        """The best block's index entries whose key starts with ``prefix``, in key order.

        With ``start_after`` (for paging), only keys strictly after it.
        """
        self.wait_indexed()
        return self._iter_prefix(INDEX, prefix, start_after)

    def prove(self, keys: Iterable[bytes], block_hash: bytes) -> list[bytes]:
        """A read proof of ``keys`` (values or absence) against the block's state root."""
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"no stored block 0x{block_hash.hex()}")
        return trie_prove(self._nodes, header.state_root, list(keys))

    # ------------------------------------------------------------------ import

    def import_block(self, executed: ExecutedBlock, *, finalize: bool = False,
                     durable: bool = True) -> ImportResult:
        """Store an executed block in one synced batch, moving the best chain if it wins.

        The block's parent must be stored (else :class:`UnknownParent`); an
        already stored block writes nothing. If the block extends the best
        chain, or its chain is now the longest and contains the finalized
        block, the flat state, canonical index, transaction index and best
        pointer move to it in the same batch. ``finalize``: the block carries a
        justification the caller checked; if it becomes the best block it is
        also recorded as finalized, in the same batch (one fsync per synced block).

        ``durable=False`` (bulk import: sync, ``opus import-blocks``): return as
        soon as the batch is built and let a thread write it while the caller
        executes the next block. The block is the best block at once; reads of
        the best state and of trie nodes see it from memory, and every other
        use of the store (the next import included) first waits for the write.
        A crash then loses at most this block, never half of it. Blocks a node
        authors or announces as its own must be durable.
        """
        block = executed.block
        header = block.header
        header_bytes = codec.encode(header)
        block_hash = blake2_256(header_bytes)
        db = self._db
        if db.get(HEADER + block_hash) is not None:
            return ImportResult.known(block_hash)
        if header.parent_hash != self._best_hash and db.get(HEADER + header.parent_hash) is None:
            raise UnknownParent(f"the parent 0x{header.parent_hash.hex()} of #{header.number} "
                                f"0x{block_hash.hex()} is not stored")
        if executed.trie.root != header.state_root:
            raise StateRootMismatch(f"#{header.number}: the trie update gives another state "
                                    f"root than the header's")
        body = block if block.justification is None else replace(block, justification=None)
        batch = db.write_batch(sync=True)
        batch.put(HEADER + block_hash, header_bytes)
        batch.put(BODY + block_hash, codec.encode(body))
        if block.justification is not None:
            batch.put(JUSTIFICATION + block_hash, codec.encode(block.justification))
        batch.put(EVENTS + block_hash, executed.events_encoded)
        put = batch.put
        for node_hash, encoding in executed.trie.new_nodes.items():
            put(TRIE + node_hash, encoding)
        batch.put(DIFF + block_hash, pack_pairs(executed.changes))

        pending = _Pending(block_hash, header, executed.changes, block.extrinsics)
        move: _Move | None = None
        best = self._best
        if header.parent_hash == self._best_hash:
            move = self._move_best(batch, [], [(block_hash, header)], pending)
        elif header.number > best.number:
            route = self._tree_route(block_hash, header, pending)
            if route.ancestor.number >= self._finalized.number:
                move = self._move_best(batch, route.retracted, route.enacted, pending)
        if finalize and move is not None:
            batch.put(META_FINALIZED, block_hash)
        # Once the batch is written, a new best block goes to the indexer.
        written = None if move is None else partial(self._indexer.follow, block_hash, header,
                                                    executed.events)
        if durable:
            self._write(batch)
            if written is not None:
                written()
        else:
            self._writing = _BatchWrite(batch, None if move is None else move.flat, written)
            self._nodes.pending = executed.trie.new_nodes
        if not self._compaction_niced:
            self._compaction_niced = _lower_compaction_priority()
        self._nodes.remember_branches(executed.trie.new_branches)
        if move is None:
            return ImportResult(block_hash, new_best=False)
        reorg = move.reorg
        self._best_hash, self._best = block_hash, header
        if finalize:
            self._finalized_hash, self._finalized = block_hash, header
        extends = not reorg.retracted and len(reorg.enacted) == 1
        self._flat_cache.follow(block_hash, executed.changes if extends else None)
        return ImportResult(block_hash, new_best=True, retracted=reorg.retracted,
                            enacted=reorg.enacted)

    def set_best(self, block_hash: bytes) -> Reorg:
        """Make a stored block the best (an explicit reorg, even to a shorter chain).

        Raises :class:`FinalityViolation` if its chain does not contain the
        finalized block.
        """
        header = self._require_header(block_hash)
        if block_hash == self._best_hash:
            return Reorg((), ())
        route = self._tree_route(block_hash, header, None)
        if route.ancestor.number < self._finalized.number:
            raise FinalityViolation(
                f"#{header.number} 0x{block_hash.hex()} is not on the chain of the finalized "
                f"block #{self._finalized.number}"
            )
        batch = self._db.write_batch(sync=True)
        reorg = self._move_best(batch, route.retracted, route.enacted, None).reorg
        self._write(batch)
        self._best_hash, self._best = block_hash, header
        self._flat_cache.follow(block_hash, None)
        self._indexer.follow(block_hash)
        return reorg

    def set_finalized(self, block_hash: bytes) -> None:
        """Record that a block of the best chain is final (finality never goes back)."""
        header = self._require_header(block_hash)
        if self.hash_at(header.number) != block_hash:
            raise FinalityViolation(f"#{header.number} 0x{block_hash.hex()} is not on the best "
                                    f"chain")
        if header.number < self._finalized.number:
            raise FinalityViolation(f"#{header.number} is below the finalized "
                                    f"#{self._finalized.number}")
        batch = self._db.write_batch(sync=True)
        batch.put(META_FINALIZED, block_hash)
        self._write(batch)
        self._finalized_hash, self._finalized = block_hash, header

    def set_justification(self, block_hash: bytes, justification: Justification) -> None:
        """Attach a block's justification (stored apart from its body)."""
        if not self.has_block(block_hash):
            raise UnknownBlock(f"no stored block 0x{block_hash.hex()}")
        if justification.block_hash != block_hash:
            raise UnknownBlock(f"the justification is for 0x{justification.block_hash.hex()}, "
                               f"not 0x{block_hash.hex()}")
        batch = self._db.write_batch(sync=True)
        batch.put(JUSTIFICATION + block_hash, codec.encode(justification))
        self._write(batch)

    def iter_raw(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key/value in the database, in key order, once the node-side index has
        caught up (for tests and tools)."""
        self.wait_indexed()
        yield from self._raw_db.iterator()

    # ------------------------------------------------------------------ internals

    def _require_header(self, block_hash: bytes) -> Header:
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"no stored block 0x{block_hash.hex()}")
        return header

    # The indexer's readers: written blocks only, without waiting for a batch being written.

    def _stored_header(self, block_hash: bytes) -> Header:
        data = self._raw_db.get(HEADER + block_hash)
        if data is None:
            raise DatabaseError(f"the header of 0x{block_hash.hex()} is missing (corrupt?)")
        return _decode_header(data)

    def _stored_events(self, block_hash: bytes) -> tuple[EventRecord, ...]:
        events = _decode_events(self._raw_db.get(EVENTS + block_hash))
        if events is None:
            raise DatabaseError(f"the events of 0x{block_hash.hex()} are missing (corrupt?)")
        return events

    def _load_head(self, key: bytes) -> tuple[bytes, Header]:
        block_hash = self._db.get(key)
        header = None if block_hash is None else self.header(block_hash)
        if block_hash is None or header is None:
            raise DatabaseError(f"the database {db_path(self.path)} lacks its "
                                f"{key[len(META):].decode()} block (corrupt?)")
        return block_hash, header

    def _tree_route(self, new_hash: bytes, new_header: Header, pending: _Pending | None
                    ) -> Route:
        """The route from the best block to ``new_hash`` (see :func:`node.forks.tree_route`)."""

        def lookup(block_hash: bytes) -> Header:
            if pending is not None and block_hash == pending.hash:
                return pending.header
            return self._require_header(block_hash)

        try:
            return tree_route(lookup, self._best_hash, self._best, new_hash, new_header)
        except NoCommonAncestor as e:
            raise DatabaseError(str(e)) from None

    def _move_best(
        self,
        batch: Any,
        retracted: list[tuple[bytes, Header]],
        enacted: list[tuple[bytes, Header]],
        pending: _Pending | None,
    ) -> _Move:
        """Add to ``batch`` the move of the best chain: flat state, canonical and
        transaction indexes, best pointer. (The node-side index follows later: see
        :mod:`node.indexer`.)"""
        get = self._db.get
        flat: dict[bytes, bytes | None] = {}
        # A retracted block's state changes are undone with the values its keys have
        # in the common ancestor's state, read from the trie (which keeps every
        # state), so that an import writes no undo log of old values.
        ancestor_root = (self._require_header(retracted[-1][1].parent_hash).state_root
                         if retracted else EMPTY_ROOT)
        for block_hash, _ in retracted:
            diff = get(DIFF + block_hash)
            if diff is None:
                raise DatabaseError(f"the diff of 0x{block_hash.hex()} is missing (corrupt?)")
            for key, _ in unpack_pairs(diff):
                if key not in flat:
                    flat[key] = trie_get(self._nodes, ancestor_root, key)
            for raw in self._extrinsics(block_hash):
                batch.delete(TX + blake2_256(raw))
        old_number = self._best.number
        new_number = enacted[-1][1].number if enacted else self._best.number - len(retracted)
        for number in range(new_number + 1, old_number + 1):
            batch.delete(_number_key(number))
        put = batch.put
        for block_hash, header in enacted:
            if pending is not None and block_hash == pending.hash:
                changes: Iterable[tuple[bytes, bytes | None]] = pending.changes.items()
                extrinsics = pending.extrinsics
            else:
                diff = get(DIFF + block_hash)
                if diff is None:
                    raise DatabaseError(f"the diff of 0x{block_hash.hex()} is missing (corrupt?)")
                changes = unpack_pairs(diff)
                extrinsics = self._extrinsics(block_hash)
            flat.update(changes)
            put(_number_key(header.number), block_hash)
            for index, raw in enumerate(extrinsics):
                put(TX + blake2_256(raw), block_hash + index.to_bytes(4, "big"))
        delete = batch.delete
        for key, value in flat.items():
            if value is None:
                delete(STATE + key)
            else:
                put(STATE + key, value)
        new_best = enacted[-1][0] if enacted else retracted[-1][1].parent_hash
        put(META_BEST, new_best)
        return _Move(Reorg(tuple(h for h, _ in retracted), tuple(h for h, _ in enacted)), flat)

    def _extrinsics(self, block_hash: bytes) -> tuple[bytes, ...]:
        data = self._db.get(BODY + block_hash)
        if data is None:
            raise DatabaseError(f"the body of 0x{block_hash.hex()} is missing (corrupt?)")
        # Trusted bytes we wrote: [header, extrinsics, seal, justification].
        return msgpack.unpackb(data, use_list=False)[1]  # type: ignore[no-any-return]

    def _write(self, batch: Any) -> None:
        try:
            batch.write()
        except plyvel.Error as e:
            raise self._write_failed(e) from None

    def _write_failed(self, error: BaseException) -> DatabaseError:
        return DatabaseError(f"cannot write to the database {db_path(self.path)}: "
                             f"{_plyvel_message(error)}")


def _lower_compaction_priority() -> bool:
    """Give LevelDB's compaction thread a lower CPU priority; True once it is done.

    Compaction is background work: importing a large block writes a few MB,
    and merging it into the lower levels costs about as much CPU again as the
    import itself. Run at the same priority, it takes the importing thread's
    core away for whole time slices. LevelDB starts its one background thread
    at its first compaction; it is the only thread of the process that Python
    did not start. (RocksDB offers the same as ``LowerThreadPoolCPUPriority``.)
    """
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return True  # not Linux: nothing to do
    ours = {t.native_id for t in threading.enumerate()}
    native = [int(tid) for tid in threads if int(tid) not in ours]
    for tid in native:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, COMPACTION_NICENESS)
        except ProcessLookupError:
            continue
        except OSError:
            return True  # not allowed here: leave it
    return bool(native)


# ---------------------------------------------------------------------------
# Opening


def _plyvel_message(error: BaseException) -> str:
    arg = error.args[0] if error.args else error
    if isinstance(arg, bytes):
        return arg.decode(errors="replace")
    return str(arg)


def _decode_header(data: bytes) -> Header:
    return codec.decode(data, Header)  # type: ignore[no-any-return]


def _decode_events(data: bytes | None) -> tuple[EventRecord, ...] | None:
    if data is None:
        return None
    return codec.decode(data, EventRecords, max_size=MAX_EVENTS_SIZE)  # type: ignore[no-any-return]


def _initialize(db: Any, base: Path, genesis: Genesis) -> None:
    """Write the genesis block into an empty database, or check an existing one."""
    stored = db.get(META_GENESIS)
    if stored is not None:
        if stored != genesis.hash:
            raise GenesisMismatch(base, stored, genesis.hash)
        version = db.get(META_VERSION)
        if version is None or int.from_bytes(version, "big") != SCHEMA_VERSION:
            raise DatabaseError(f"the database {db_path(base)} has an unsupported schema version")
        return
    with db.iterator(include_value=False) as it:
        if next(it, None) is not None:
            raise DatabaseError(f"{db_path(base)} is not an Opus Chain database")
    header = genesis.header
    header_bytes = codec.encode(header)
    genesis_hash = blake2_256(header_bytes)
    update = trie_update(_NoNodes(), EMPTY_ROOT, dict(genesis.state))
    if update.root != header.state_root:
        raise DatabaseError("the genesis state does not match the genesis header's state root")
    batch = db.write_batch(sync=True)
    batch.put(HEADER + genesis_hash, header_bytes)
    batch.put(BODY + genesis_hash, codec.encode(Block(header, (), GENESIS_SEAL)))
    batch.put(EVENTS + genesis_hash, codec.encode((), EventRecords))
    for node_hash, encoding in update.new_nodes.items():
        batch.put(TRIE + node_hash, encoding)
    for key, value in genesis.state.items():
        batch.put(STATE + key, value)
    for key, value in genesis_index(genesis.state).items():
        batch.put(INDEX + key, value)
    batch.put(META_INDEXED, genesis_hash)
    batch.put(_number_key(0), genesis_hash)
    batch.put(META_BEST, genesis_hash)
    batch.put(META_FINALIZED, genesis_hash)
    batch.put(META_VERSION, SCHEMA_VERSION.to_bytes(4, "big"))
    batch.put(META_GENESIS, genesis_hash)
    batch.write()


class _NoNodes:
    """The node store of an empty trie."""

    def get_node(self, node_hash: bytes) -> bytes | None:
        raise MissingNode(node_hash)

