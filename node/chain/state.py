"""The state of stored blocks: the flat copy of the best block's, the trie of any block's,
and the trie nodes behind a cache.

Readers
    :class:`FlatState` reads the best block's state from its flat copy (keys
    ``s`` + state key, see :mod:`node.chain.dbformat`): one LevelDB get per
    runtime read, and none for the hot keys that the store's
    :class:`~node.chain.flatcache.FlatCache` holds. :class:`TrieState` reads any
    stored block's state through its state trie (about log16(N) gets a key):
    trie nodes are never deleted, so every stored block's state stays readable.

Trie nodes
    :class:`CachedNodeStore` serves the trie nodes (keys ``t`` + node hash) to
    block execution, block building, proofs and reorgs, behind a cache of
    branches bounded in bytes.

These are on the import's hot path (every state read of every extrinsic, every
trie node of the state root's update): they read the database directly, with
no layer between the reader and the LevelDB get.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from node.chain.dbformat import STATE, TRIE
from node.chain.flatcache import MISSING, FlatCache
from runtime.trie import NodeStore, trie_get

__all__ = ["NODE_CACHE_BYTES", "CachedNodeStore", "FlatState", "TrieState"]

NODE_CACHE_BYTES = 64 * 1024 * 1024  # the trie-node cache's default bound


class FlatState:
    """The best block's state, read from the flat copy: one LevelDB get per key.

    Reads go through a LevelDB snapshot taken when the reader was made, so the
    reader keeps answering for that block even after the best block moves on;
    while that block is still the best, hot keys come from the FlatCache.
    ``pending`` holds the flat writes of the block whose batch was still being
    written when the reader was made (see ``ChainStore.import_block``'s
    ``durable``): the snapshot may predate them.
    """

    __slots__ = ("_get", "_cache", "_block_hash", "_pending", "_cache_reads")

    def __init__(self, snapshot: Any, cache: FlatCache, block_hash: bytes,
                 pending: dict[bytes, bytes | None] | None = None, *,
                 cache_reads: bool = True) -> None:
        """``cache_reads`` False: values read from the database are not remembered in
        ``cache`` (a bulk reader's keys would push the hot ones out)."""
        self._get = snapshot.get
        self._cache = cache
        self._block_hash = block_hash
        self._pending = pending
        self._cache_reads = cache_reads

    def get(self, key: bytes) -> bytes | None:
        pending = self._pending
        if pending is not None and key in pending:
            return pending[key]
        cache = self._cache
        if cache.block_hash == self._block_hash:
            value = cache.values.get(key, MISSING)
            if value is not MISSING:
                return value  # type: ignore[return-value]
            value = self._get(STATE + key)
            if self._cache_reads:
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

