"""The indexer: keeps the node-side listing indexes following the best chain.

The listing indexes and earnings totals (:mod:`node.chain.indexes`) are derived from
the events of the best chain for the RPC. Block import does not derive them: a
validator imports, authors and votes without waiting for RPC listings (as
Ethereum's clients index transactions in the background, and Substrate leaves
indexing to off-chain tools). Once a block's import batch is written, the
store hands the block to the indexer, which follows on a thread of its own:

* For each block that joins the best chain it writes, in one LevelDB batch,
  the block's index writes, their undo log (the old value of every key
  written) and the ``indexed`` pointer. After a crash the pointer and the
  entries agree, and the indexer resumes from the pointer, reading the events
  it missed from the database.
* For a reorg it first undoes the retracted blocks with their undo logs, in
  one batch.
* A reader of the index waits until the indexer has caught up with every block
  handed to it, so the listings answer as of the best block, as before.

Index batches are not synced: LevelDB applies writes in order, so a lost
index batch is one that the indexer redoes after a restart.

Its keys (``i`` + index key, ``v`` + block hash, ``m`` + ``indexed``) are in the
database's key layout, :mod:`node.chain.dbformat`; the cache of index values it
reads is a :class:`~node.chain.flatcache.FlatCache`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from node.chain.dbformat import INDEX, INDEX_UNDO, META_INDEXED, pack_pairs, unpack_pairs
from node.chain.flatcache import MISSING, FlatCache
from node.chain.forks import tree_route
from node.chain.indexes import index_changes
from runtime.block import Header
from runtime.support import EventRecord

__all__ = ["Indexer"]

# Blocks whose events the store hands over in memory (a full block's are a few MB);
# beyond this many the indexer, far behind, reads the events from the database instead.
RECENT_BLOCKS = 8

Events = tuple[EventRecord, ...]


class Indexer:
    """The index's follower thread over one open LevelDB. Owned by the store."""

    def __init__(self, db: Any, tip: bytes, read_header: Callable[[bytes], Header],
                 read_events: Callable[[bytes], Events], cache: FlatCache) -> None:
        """``tip``: the block the stored index is at; ``read_header`` and
        ``read_events`` read stored blocks (without waiting for any write)."""
        self._db = db
        self._tip = tip
        self._read_header = read_header
        self._read_events = read_events
        self._cache = cache
        self._cache.follow(tip, None)
        self._recent: dict[bytes, tuple[Header, Events]] = {}
        self._target = tip
        self._handed = self._done = 0  # blocks handed over / caught up with (a sequence)
        self._closing = False
        self._cond = threading.Condition()
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0  # the thread's CPU time (for the benchmark)
        self._thread = threading.Thread(target=self._run, name="opus-indexer", daemon=True)
        self._thread.start()

    def follow(self, block_hash: bytes, header: Header | None = None,
               events: Events | None = None) -> None:
        """The best block is now ``block_hash``, whose batch is written: index up to it.

        ``header`` and ``events``, if given, spare reading them back.
        """
        with self._cond:
            if header is not None and events is not None and len(self._recent) < RECENT_BLOCKS:
                self._recent[block_hash] = (header, events)
            self._target = block_hash
            self._handed += 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Wait until the index has caught up with every block handed over so far.

        Raises the indexer's error if it stopped, TimeoutError after ``timeout``.
        """
        with self._cond:
            handed = self._handed
            if not self._cond.wait_for(
                lambda: self._done >= handed or self.error is not None or self._closing, timeout
            ):
                raise TimeoutError(f"the index did not catch up within {timeout} s")
            if self.error is not None:
                raise self.error
            if self._done < handed:
                raise RuntimeError("the indexer was stopped")

    def close(self) -> None:
        """Stop the thread (after the block it is writing, if any). Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._done < self._handed or self._closing)
                    if self._closing:
                        return
                    target, handed = self._target, self._handed
                started = time.thread_time()
                reached = self._advance(target)
                self.cpu_seconds += time.thread_time() - started
                if not reached:  # stopped part way
                    return
                with self._cond:
                    self._done = handed
                    self._cond.notify_all()
        except BaseException as e:  # reported to the index's readers by wait()
            with self._cond:
                self.error = e
                self._cond.notify_all()

    def _header(self, block_hash: bytes) -> Header:
        recent = self._recent.get(block_hash)
        return recent[0] if recent is not None else self._read_header(block_hash)

    def _advance(self, target: bytes) -> bool:
        """Move the index from its tip to ``target``: undo, then apply block by block.
        False if the indexer was stopped before it got there."""
        if target == self._tip:
            return True
        target_header = self._header(target)
        route = tree_route(self._header, self._tip, self._header(self._tip),
                           target, target_header)
        if route.retracted:
            self._retract([block_hash for block_hash, _ in route.retracted], route.ancestor_hash)
        for block_hash, header in route.enacted:
            if self._closing:
                return False
            with self._cond:
                recent = self._recent.pop(block_hash, None)
            events = recent[1] if recent is not None else self._read_events(block_hash)
            self._apply(block_hash, header, events)
        with self._cond:  # forget blocks handed over that a reorg dropped before indexing
            for block_hash in [h for h, (header, _) in self._recent.items()
                               if header.number <= target_header.number]:
                del self._recent[block_hash]
        return True

    def _get(self, key: bytes) -> bytes | None:
        """An index value at the tip: from the cache, else the database."""
        value = self._cache.values.get(key, MISSING)
        if value is MISSING:
            value = self._db.get(INDEX + key)
            self._cache.remember(self._tip, key, value)
        return value  # type: ignore[return-value]

    def _apply(self, block_hash: bytes, header: Header, events: Events) -> None:
        before: dict[bytes, bytes | None] = {}
        writes = index_changes(self._get, header.number, events, before)
        batch = self._db.write_batch()
        batch.put(INDEX_UNDO + block_hash, pack_pairs(before))
        _put_all(batch, writes)
        batch.put(META_INDEXED, block_hash)
        batch.write()
        self._tip = block_hash
        self._cache.follow(block_hash, writes)

    def _retract(self, retracted: list[bytes], ancestor_hash: bytes) -> None:
        """Undo ``retracted`` (newest first) back to their common ancestor with the target."""
        undo: dict[bytes, bytes | None] = {}
        for block_hash in retracted:  # an older block's old value wins
            data = self._db.get(INDEX_UNDO + block_hash)
            if data is None:
                raise LookupError(f"the index undo log of 0x{block_hash.hex()} is missing")
            undo.update(unpack_pairs(data))
        batch = self._db.write_batch()
        _put_all(batch, undo)
        batch.put(META_INDEXED, ancestor_hash)
        batch.write()
        self._tip = ancestor_hash
        self._cache.follow(ancestor_hash, None)


def _put_all(batch: Any, values: dict[bytes, bytes | None]) -> None:
    put, delete = batch.put, batch.delete
    for key, value in values.items():
        if value is None:
            delete(INDEX + key)
        else:
            put(INDEX + key, value)

