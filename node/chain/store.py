"""The chain store: the facade of the chain database, and everything that writes it.

:class:`ChainStore` is the one LevelDB (plyvel) at ``<base path>/db``.
Everything a node keeps about the chain lives there: headers, bodies,
justifications, events, the canonical index, the transaction index, every
version of the state trie, a flat copy of the best block's state and the
metadata that ties them together. Its parts, by concern:

* :mod:`node.chain.dbformat`: where the database lives, its key layout (every
  prefix, with the table of what each key holds) and node-local value formats;
* :mod:`node.chain.database`: opening LevelDB (its tuning, the lock, the schema
  and genesis checks, the genesis block of a new database);
* :mod:`node.chain.blocks`: the reads of stored blocks (headers, bodies,
  justifications, events) and of the canonical and transaction indexes, which
  the store inherits;
* :mod:`node.chain.state`: the state readers (the flat best state, the trie of
  any block) and the trie nodes behind their cache;
* :mod:`node.chain.flatcache`: the cache of hot best-state (and index) values;
* :mod:`node.chain.errors`: the named errors, all under :class:`StorageError`;
* :mod:`node.chain.forks`: the route between two blocks of the tree;
* :mod:`node.chain.indexer`: the node-side index, following the best chain.

This module holds the store's life (open, flush, close), its writes
(``import_block``, ``set_best``, ``set_finalized``, ``set_justification``) and
the move of the best chain they share. It re-exports the names its callers use
with it (the errors, the state readers, :class:`TxLocation`, :func:`db_path`,
``MAX_OPEN_FILES``), so ``from node.chain.store import ChainStore, UnknownBlock``
keeps working.

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
    a thread of its own, with its ``indexed`` pointer (see :mod:`node.chain.indexer`).
    Readers of the index wait for it to catch up with the best block; after a
    crash it resumes from its pointer.

Fork choice
    The longest chain wins; a tie keeps the current best. A chain that does
    not contain the finalized block is never made best.

    A reorg undoes a retracted block's diff with the values its keys have in
    the common ancestor's state, read from the trie: an import reads no old
    values and writes no state undo log. (Databases from before kept one under
    ``u``; it is ignored.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import plyvel

from genesis.builder import Genesis
from node.chain.blocks import StoredBlocks, TxLocation
from node.chain.database import (
    MAX_OPEN_FILES,
    initialize,
    lower_compaction_priority,
    open_leveldb,
    plyvel_message,
)
from node.chain.dbformat import (
    BODY,
    DIFF,
    EVENTS,
    HEADER,
    INDEX,
    JUSTIFICATION,
    META,
    META_BEST,
    META_FINALIZED,
    META_INDEXED,
    STATE,
    TRIE,
    TX,
    db_path,
    number_key,
    pack_pairs,
    prefix_end,
    unpack_pairs,
)
from node.chain.errors import (
    BasePathInUse,
    DatabaseError,
    FinalityViolation,
    GenesisMismatch,
    StateRootMismatch,
    StorageError,
    UnknownBlock,
    UnknownParent,
)
from node.chain.flatcache import FlatCache
from node.chain.forks import NoCommonAncestor, Route, tree_route
from node.chain.indexer import Indexer
from node.chain.state import NODE_CACHE_BYTES, CachedNodeStore, FlatState, TrieState
from runtime import codec
from runtime.block import Header, Justification
from runtime.crypto import blake2_256
from runtime.execution import ExecutedBlock
from runtime.state import StateReader
from runtime.trie import EMPTY_ROOT, trie_get
from runtime.trie import prove as trie_prove

__all__ = [
    "BasePathInUse",
    "ChainStore",
    "DatabaseError",
    "FinalityViolation",
    "FlatState",
    "GenesisMismatch",
    "ImportResult",
    "MAX_OPEN_FILES",
    "Reorg",
    "StateRootMismatch",
    "StorageError",
    "TrieState",
    "TxLocation",
    "UnknownBlock",
    "UnknownParent",
    "db_path",
]

FLAT_CACHE_ENTRIES = 50_000  # best-state values kept in memory (hot accounts, counters, works)
INDEX_CACHE_ENTRIES = 50_000  # node-side index values kept in memory (earnings totals)
INDEX_WAIT_SECONDS = 30.0  # how long a reader of the index waits for it to catch up
WARM_LEVELS = 5  # trie levels loaded into the node cache at open (up to 16^4 = 65,536 branches)


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


# ---------------------------------------------------------------------------
# An import in progress


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


class IndexCursor:
    """Seeks in the node-side index through one LevelDB iterator, for a bulk reader (a
    dataset audit's lookups): making an iterator costs several seeks. It reads the index as
    it was when it was made. Close it when done: an open iterator holds LevelDB's files."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def first_key(self, prefix: bytes, start: bytes = b"") -> bytes | None:
        """The first index key that starts with ``prefix`` and is at or after
        ``prefix + start``; None if there is none."""
        raw = self._raw
        raw.seek(INDEX + prefix + start)
        if not raw.valid():
            return None
        key: bytes = raw.key()
        return key[len(INDEX):] if key.startswith(INDEX + prefix) else None

    def keys(self, prefix: bytes) -> list[bytes]:
        """Every index key that starts with ``prefix``, in order."""
        return [key for key, _ in self.items(prefix)]

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every index entry (key, value) whose key starts with ``prefix``, in order."""
        raw = self._raw
        whole = INDEX + prefix
        raw.seek(whole)
        found = []
        while raw.valid():
            key: bytes = raw.key()
            if not key.startswith(whole):
                break
            found.append((key[len(INDEX):], raw.value()))
            raw.next()
        return found

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> IndexCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# The store


class ChainStore(StoredBlocks):
    """The chain database of one node. Open it with :meth:`ChainStore.open`.

    The reads of stored blocks and of the canonical and transaction indexes
    (``header``, ``block``, ``hash_at``, ``tx_location`` …) are inherited from
    :class:`~node.chain.blocks.StoredBlocks`.
    """

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
        db = open_leveldb(base)
        try:
            initialize(db, base, genesis)
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

    # ------------------------------------------------------------------ state

    @property
    def node_store(self) -> CachedNodeStore:
        """Every stored trie node, for execute_block, build_block and proofs."""
        return self._nodes

    def best_state(self, *, cache_reads: bool = True) -> FlatState:
        """The best block's state (flat: one get per key), frozen at this call.

        ``cache_reads`` False: the values it reads from the database are not added to the
        cache of hot keys (for a bulk reader, such as a dataset audit's lookups, whose
        keys would push out those that block execution reads again and again).
        """
        writing = self._writing
        return FlatState(self._raw_db.snapshot(), self._flat_cache, self._best_hash,
                         None if writing is None else writing.flat, cache_reads=cache_reads)

    def state_at(self, block_hash: bytes, *, cache_reads: bool = True) -> StateReader:
        """The state after ``block_hash``: the flat state for the best block, else the trie
        (``cache_reads``: as :meth:`best_state`'s)."""
        if block_hash == self._best_hash:
            return self.best_state(cache_reads=cache_reads)
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
        end = prefix_end(kind + prefix)
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
        """A node-side index entry at the best block (see :mod:`node.chain.indexes`)."""
        self.wait_indexed()
        return self._raw_db.get(INDEX + key)  # type: ignore[no-any-return]

    def iter_index_prefix(self, prefix: bytes, start_after: bytes | None = None,
                          ) -> Iterator[tuple[bytes, bytes]]:
        """The best block's index entries whose key starts with ``prefix``, in key order.

        With ``start_after`` (for paging), only keys strictly after it.
        """
        self.wait_indexed()
        return self._iter_prefix(INDEX, prefix, start_after)

    def index_cursor(self) -> IndexCursor:
        """A cursor for many seeks in the best block's index entries (close it when done)."""
        self.wait_indexed()
        return IndexCursor(self._db.raw_iterator())

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
            self._compaction_niced = lower_compaction_priority()
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

    def _load_head(self, key: bytes) -> tuple[bytes, Header]:
        block_hash = self._db.get(key)
        header = None if block_hash is None else self.header(block_hash)
        if block_hash is None or header is None:
            raise DatabaseError(f"the database {db_path(self.path)} lacks its "
                                f"{key[len(META):].decode()} block (corrupt?)")
        return block_hash, header

    def _tree_route(self, new_hash: bytes, new_header: Header, pending: _Pending | None
                    ) -> Route:
        """The route from the best block to ``new_hash`` (:func:`node.chain.forks.tree_route`)."""

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
        :mod:`node.chain.indexer`.)"""
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
            batch.delete(number_key(number))
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
            put(number_key(header.number), block_hash)
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

    def _write(self, batch: Any) -> None:
        try:
            batch.write()
        except plyvel.Error as e:
            raise self._write_failed(e) from None

    def _write_failed(self, error: BaseException) -> DatabaseError:
        return DatabaseError(f"cannot write to the database {db_path(self.path)}: "
                             f"{plyvel_message(error)}")
