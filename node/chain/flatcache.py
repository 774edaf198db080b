"""The in-memory cache of a block's values: hot keys served without a LevelDB get.

Two instances run in a node: the store's, of the best block's flat state (read
by :class:`node.chain.state.FlatState`), and the indexer's, of the indexed
block's node-side index (:mod:`node.chain.indexer`). It lives in a module of its
own because both the store and the indexer use it, and the store owns the
indexer: neither may import the other's module for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

__all__ = ["MISSING", "FlatCache"]

#: What ``FlatCache.values.get(key, MISSING)`` answers for a key not in the cache
#: (a cached None means "absent from the database").
MISSING = object()


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
