"""The state commitment: a secure, hexary Merkle Patricia trie with read proofs.

Every block header carries the root of this trie over the whole state (all
key/value pairs). This docstring is the specification; it is meant to be enough
to write an independent verifier in another language.

Paths
    A state key is arbitrary bytes; its value is arbitrary *non-empty* bytes.
    The trie is "secure": the path of ``key`` is the 64 nibbles (4-bit digits,
    most significant nibble of each byte first) of ``blake2_256(key)``, where
    ``blake2_256(d) = BLAKE2b(d, digest_size=32)`` (no key, no salt, no
    personalisation). Paths are therefore all 64 nibbles long and the trie is
    balanced, about ``log16(N)`` deep.

Nodes
    There are two node kinds and no extension nodes:

    * a **leaf** holds the rest of its key's path below its position (its
      *partial path*), the key itself and the value;
    * a **branch** holds a partial path (the nibbles shared by everything
      below it, after the nibble that selected it in its parent) and 16 child
      slots, slot ``i`` being the hash of the child whose next nibble is ``i``,
      or empty.

    A branch exists only where at least two keys diverge, so every branch has
    at least two non-empty slots. The shape is thus a pure function of the
    key/value set and the root does not depend on the order of updates.
    The root node sits at depth 0; a child of a branch at depth ``d`` with a
    partial path of length ``p`` sits at depth ``d + p + 1``. A leaf at depth
    ``d`` has a partial path of exactly ``64 - d`` nibbles.

Encoding
    A node is encoded as a msgpack array, in the canonical form produced by
    msgpack-python's ``packb(obj, use_bin_type=True)`` (the shortest form of
    every integer, array and bin header)::

        leaf   = [0, partial, key, value]
        branch = [1, partial, [c0, c1, ..., c15]]

    ``0`` and ``1`` are positive fixints. ``partial``, ``key`` and ``value``
    are msgpack **bin** (never str). A partial path is encoded *one nibble per
    byte*: each byte is a value 0..15, and the bin's length is the number of
    nibbles (0..64). The children array has exactly 16 items, each a 32-byte
    bin (the child's node hash) or nil.

    ``node_hash = blake2_256(encoding)``. The root of a non-empty trie is the
    hash of its root node; the root of the empty trie is
    ``EMPTY_ROOT = blake2_256(b"")`` =
    ``0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8``.

    A decoder accepts an encoding only if re-encoding what it decoded gives the
    same bytes, the kinds and types are exactly as above, every partial byte is
    below 16 and a leaf's value is non-empty; a branch needs at least two
    children.

Test vector
    The trie over ``{b"alice": b"1", b"bob": b"2", b"charlie": b"3",
    b"dave": b"4", b"eve": b"5", b"ferdie": b"6"}`` has root
    ``34f714f032d9070e55326926ba467151b5e402bd52e2520a87c2da815a5c0e57``.

Read proofs
    A proof for a set of keys is the list of encodings of the nodes visited when
    looking each key up from the root (deduplicated; ordered by first visit with
    the keys taken in path order, so depth-first pre-order). A verifier indexes
    the nodes by hash and looks each key up from the root: at a branch it checks
    the partial path against the key's path (a mismatch proves absence), then
    follows the slot of the next nibble (an empty slot proves absence); at a
    leaf it checks that ``blake2_256(leaf.key)`` is the path that leads there
    and returns the value if ``leaf.key`` is the key, else proves absence. A
    node that is not in the proof, that does not decode strictly, that sits
    where its shape is impossible (a branch whose next nibble would be past
    nibble 63), or a proof node that is given twice or that no lookup visits,
    makes the whole proof invalid.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgpack

from runtime.codec import frozen_dataclass
from runtime.crypto import blake2_256

__all__ = [
    "EMPTY_ROOT",
    "PATH_NIBBLES",
    "Branch",
    "EmptyValue",
    "InvalidProof",
    "Leaf",
    "MemoryNodeStore",
    "MissingNode",
    "Node",
    "NodeStore",
    "TrieUpdate",
    "blake2_256",
    "compute_root",
    "decode_node",
    "encode_node",
    "key_path",
    "prove",
    "trie_get",
    "trie_items",
    "trie_update",
    "verify_proof",
]

EMPTY_ROOT = blake2_256(b"")
PATH_NIBBLES = 64
HASH_LENGTH = 32
_LEAF = 0
_BRANCH = 1

# Maps the ASCII hex digits of ``bytes.hex()`` to nibble values, so a key's
# path is built by two C-level calls instead of a loop over nibbles.
_HEX_TO_NIBBLES = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
# ``partial.translate(None, _NIBBLE_VALUES)`` deletes every valid nibble: it is
# empty exactly when every byte is below 16.
_NIBBLE_VALUES = bytes(range(16))
# One-nibble paths, to prepend a slot index without building a new bytes.
_NIBBLE = tuple(bytes((i,)) for i in range(16))
# blake2_256 inlined on hot paths (one call fewer per node; same function).
_blake2b = hashlib.blake2b
_hexlify = binascii.hexlify
_unpackb = msgpack.unpackb


# ---------------------------------------------------------------------------
# Errors


class MissingNode(Exception):
    """The node store lacks a node that the trie references (database corruption)."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(f"trie node {node_hash.hex()} is missing from the node store")
        self.node_hash = node_hash


class InvalidProof(ValueError):
    """A read proof that does not establish the requested keys against the root."""


class EmptyValue(ValueError):
    """A state value of zero bytes; the trie stores only non-empty values."""


# ---------------------------------------------------------------------------
# Nodes


class Leaf(NamedTuple):
    """A key/value pair; ``partial`` is the rest of the key's path, one nibble per byte."""

    # An immutable NamedTuple (not a dataclass) so that it unpacks and compares
    # like the wire array; the update hot path skips even these (see _Wire).
    partial: bytes
    key: bytes
    value: bytes


class Branch(NamedTuple):
    """A fork; ``children[i]`` is the hash of the subtree whose next nibble is ``i``."""

    partial: bytes
    children: tuple[bytes | None, ...]


Node = Leaf | Branch


def key_path(key: bytes) -> bytes:
    """The 64-nibble path of ``key``, one nibble (0..15) per byte."""
    return _hexlify(_blake2b(key, digest_size=HASH_LENGTH).digest()).translate(_HEX_TO_NIBBLES)


def encode_node(node: Node) -> bytes:
    """The canonical encoding of a node (see the module docstring)."""
    if isinstance(node, Leaf):
        wire: Any = (_LEAF, node.partial, node.key, node.value)
    else:
        wire = (_BRANCH, node.partial, node.children)
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


def decode_node(data: bytes) -> Node:
    """Strictly decode a node encoding; anything but a canonical node raises InvalidProof."""
    if type(data) is not bytes:
        raise InvalidProof(f"a node encoding must be bytes, got {type(data).__name__}")
    try:
        wire = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types (ExtraData, TypeError, ...)
        raise InvalidProof(f"node is not valid msgpack: {exc}") from exc
    if type(wire) is not tuple or not wire:
        raise InvalidProof("node is not a non-empty array")
    kind = wire[0]
    if type(kind) is not int:
        raise InvalidProof("node kind is not an integer")
    node: Node
    if kind == _LEAF:
        if len(wire) != 4:
            raise InvalidProof("a leaf has exactly 4 fields")
        _, partial, key, value = wire
        _check_partial(partial)
        if type(key) is not bytes or type(value) is not bytes:
            raise InvalidProof("leaf key and value must be bin")
        if not value:
            raise InvalidProof("leaf value is empty")
        node = Leaf(partial, key, value)
    elif kind == _BRANCH:
        if len(wire) != 3:
            raise InvalidProof("a branch has exactly 3 fields")
        _, partial, children = wire
        _check_partial(partial)
        if type(children) is not tuple or len(children) != 16:
            raise InvalidProof("a branch has exactly 16 child slots")
        filled = 0
        for child in children:
            if child is None:
                continue
            if type(child) is not bytes or len(child) != HASH_LENGTH:
                raise InvalidProof("a branch child is not a 32-byte hash or nil")
            filled += 1
        if filled < 2:
            raise InvalidProof("a branch has fewer than two children")
        node = Branch(partial, children)
    else:
        raise InvalidProof(f"unknown node kind {kind}")
    # Rejects every non-shortest form, so each node has exactly one encoding.
    if encode_node(node) != data:
        raise InvalidProof("node encoding is not canonical")
    return node


def _check_partial(partial: object) -> None:
    if type(partial) is not bytes:
        raise InvalidProof("partial path must be bin")
    if len(partial) > PATH_NIBBLES or partial.translate(None, _NIBBLE_VALUES):
        raise InvalidProof("partial path is not at most 64 nibbles of 0..15")


# ---------------------------------------------------------------------------
# Node stores


class NodeStore(Protocol):
    """Where trie nodes live, by hash. The store keeps every version of every node.

    A store may also offer ``cached_node(node_hash)``: the node if it is at hand
    without a read from disk, else None. ``trie_update`` then tries to recognise a
    leaf it would otherwise read from disk by hashing what it must hold (see
    ``trie_update``'s ``old_values``).
    """

    def get_node(self, node_hash: bytes) -> bytes | None: ...


class StateReaderLike(Protocol):
    """Reads a state value by key (runtime.state.StateReader, without importing it)."""

    def get(self, key: bytes) -> bytes | None: ...


@dataclass
class MemoryNodeStore:
    """A dict-backed node store, for tests and tools."""

    nodes: dict[bytes, bytes] = field(default_factory=dict)

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        self.nodes.update(nodes)


def _load(store: NodeStore, node_hash: bytes) -> Node:
    """Fetch and decode a node from a trusted store (no canonicality re-check: hot path)."""
    data = store.get_node(node_hash)
    if data is None:
        raise MissingNode(node_hash)
    wire = msgpack.unpackb(data, use_list=False)
    if wire[0] == _LEAF:
        return Leaf(wire[1], wire[2], wire[3])
    return Branch(wire[1], wire[2])


# ---------------------------------------------------------------------------
# Batch update


@frozen_dataclass
class TrieUpdate:
    """The result of one batch update: the new root and the nodes it added."""

    root: bytes
    new_nodes: dict[bytes, bytes]
    # The branches among ``new_nodes``: a node store caches them, as the next
    # updates walk down through them.
    new_branches: dict[bytes, bytes]


# Inside an update a node is handled in its wire form, the very tuple that is
# msgpack-encoded: ``(0, partial, key, value)`` or ``(1, partial, children)``.
# Nodes are loaded straight into it and packed straight from it, with no
# per-node objects in between (the hot path: a few nodes per changed key).
_Wire = tuple[Any, ...]
# The result of rebuilding a subtree: empty, an untouched subtree (its hash),
# or a new node not yet hashed. Hashing waits for the parent, because a branch
# left with one child merges into it, which changes the child's partial path.
_Sub = None | bytes | _Wire


class _Updater:
    """One ``trie_update`` call: the sorted changes and the nodes it creates.

    Changes are held as three parallel lists sorted by path; a subtree's
    changes are the index range ``lo:hi``, which all share the subtree's path
    prefix, so each node is visited (loaded, rebuilt, hashed) at most once.
    """

    __slots__ = ("get_node", "paths", "keys", "values", "new_nodes", "new_branches", "pack",
                 "cached_node", "old_value")

    def __init__(self, store: NodeStore, changes: Mapping[bytes, bytes | None],
                 old_values: StateReaderLike | None = None) -> None:
        if b"" in changes.values():
            empty = next(key for key, value in changes.items() if value == b"")
            raise EmptyValue(f"empty value for key {empty.hex()}")
        entries = sorted(
            zip(map(key_path, changes), changes, changes.values(), strict=True), key=_by_path
        )
        self.get_node = store.get_node
        self.paths: list[bytes] = [e[0] for e in entries]
        self.keys: list[bytes] = [e[1] for e in entries]
        self.values: list[bytes | None] = [e[2] for e in entries]
        self.new_nodes: dict[bytes, bytes] = {}
        self.new_branches: dict[bytes, bytes] = {}
        # One packer per update: ``msgpack.packb`` builds a new Packer on every
        # call, which costs as much as the packing. Same bytes as encode_node.
        self.pack = msgpack.Packer(use_bin_type=True).pack
        cached_node = getattr(store, "cached_node", None)
        self.cached_node = cached_node if old_values is not None else None
        self.old_value = old_values.get if old_values is not None else None

    def load(self, ref: bytes) -> _Wire:
        data = self.get_node(ref)
        if data is None:
            raise MissingNode(ref)
        # The store is trusted (we wrote it); proofs use the strict decode_node.
        return _unpackb(data, use_list=False)  # type: ignore[no-any-return]

    def commit(self, sub: _Sub) -> bytes | None:
        """Hash a new node (recording it), pass through a hash or empty."""
        if sub is None or type(sub) is bytes:
            return sub
        encoding = self.pack(sub)
        h = _blake2b(encoding, digest_size=HASH_LENGTH).digest()
        self.new_nodes[h] = encoding
        if sub[0] == _BRANCH:
            self.new_branches[h] = encoding
        return h

    def inserts(self, lo: int, hi: int) -> list[tuple[bytes, bytes, bytes]]:
        paths, keys, values = self.paths, self.keys, self.values
        return [
            (paths[i], keys[i], value) for i in range(lo, hi) if (value := values[i]) is not None
        ]

    def update_ref(self, ref: bytes | None, depth: int, lo: int, hi: int) -> _Sub:
        """Apply changes ``lo:hi`` to the subtree ``ref`` (a hash or empty) at ``depth``."""
        if hi - lo == 1:
            return self.update_one(ref, depth, self.paths[lo], self.keys[lo], self.values[lo])
        if ref is None:
            return self.build(self.inserts(lo, hi), depth)
        return self.update_node(self.load(ref), ref, depth, lo, hi)

    def update_one(
        self, ref: bytes | None, depth: int, path: bytes, key: bytes, value: bytes | None
    ) -> _Sub:
        """Apply the single change ``path, key, value`` to the subtree ``ref`` at ``depth``.

        Most nodes a block touches lie below the point where its changes fan
        out, so this case gets its own straight path.
        """
        if ref is None:
            return None if value is None else (_LEAF, path[depth:], key, value)
        data = None
        cached_node = self.cached_node
        if cached_node is not None:
            data = cached_node(ref)
            if data is None:
                # Not at hand: if the key had a value, its leaf would sit here and hash
                # to ``ref``; recognising it by its hash saves reading it from disk.
                old = self.old_value(key)  # type: ignore[misc]
                if old is not None:
                    rest = path[depth:]
                    if _blake2b(self.pack((_LEAF, rest, key, old)),
                                digest_size=HASH_LENGTH).digest() == ref:
                        if value is None:
                            return None
                        if value == old:
                            return ref
                        return (_LEAF, rest, key, value)
        if data is None:
            data = self.get_node(ref)
        if data is None:
            raise MissingNode(ref)
        node = _unpackb(data, use_list=False)
        partial = node[1]
        if node[0] == _LEAF:
            if path.endswith(partial):  # a leaf's partial runs to nibble 64: same key
                if value is None:
                    return None
                if value == node[3]:
                    return ref
                return (_LEAF, partial, node[2], value)
            if value is None:
                return ref  # deleting an absent key
            here = (path[:depth] + partial, node[2], node[3])
            new = (path, key, value)
            return self.build([here, new] if here[0] < path else [new, here], depth)
        children = node[2]
        if not path.startswith(partial, depth):
            if value is None:
                return ref
            # The key leaves this branch's partial path: fork above the branch.
            fork = _common(partial, path, depth)
            at = depth + fork
            forked: list[bytes | None] = [None] * 16
            forked[partial[fork]] = self.commit((_BRANCH, partial[fork + 1 :], children))
            forked[path[at]] = self.commit((_LEAF, path[at + 1 :], key, value))
            return (_BRANCH, partial[:fork], tuple(forked))
        at = depth + len(partial)
        nibble = path[at]
        old = children[nibble]
        new_child = self.update_one(old, at + 1, path, key, value)
        if new_child is old:
            return ref
        slots: list[_Sub] = list(children)
        if new_child is None:  # this branch may be left with one child
            slots[nibble] = None
            return self.assemble(partial, slots, ())
        # Still two or more children: just hash the new child into its slot.
        slots[nibble] = self.commit(new_child)
        return (_BRANCH, partial, tuple(slots))

    def update_node(self, node: _Wire, ref: bytes | None, depth: int, lo: int, hi: int) -> _Sub:
        """Apply changes ``lo:hi`` to ``node`` at ``depth``; ``ref`` is its hash if stored."""
        if node[0] == _LEAF:
            return self.update_leaf(node, ref, depth, lo, hi)
        _, partial, children = node
        paths = self.paths
        plen = len(partial)
        if plen and not (
            paths[lo].startswith(partial, depth) and paths[hi - 1].startswith(partial, depth)
        ):
            new = self.split_branch(node, depth, lo, hi)
            # Changes that only delete absent keys rebuild the branch as it was.
            return ref if ref is not None and new == node else new
        # Every change goes below this branch: group them by their next nibble.
        at = depth + plen
        slots: list[_Sub] = list(children)
        changed: list[int] = []
        i = lo
        while i < hi:
            nibble = paths[i][at]
            j = i + 1
            while j < hi and paths[j][at] == nibble:
                j += 1
            old = children[nibble]
            new = self.update_ref(old, at + 1, i, j)
            if new is not old:  # an untouched subtree comes back as the same hash object
                slots[nibble] = new
                changed.append(nibble)
            i = j
        if not changed:
            return node if ref is None else ref
        return self.assemble(partial, slots, changed)

    def split_branch(self, node: _Wire, depth: int, lo: int, hi: int) -> _Sub:
        """Apply changes of which some leave ``node``'s partial path part way along it."""
        _, partial, children = node
        paths = self.paths
        # For sorted paths the shortest common prefix with ``partial`` is at an end.
        fork = min(_common(partial, paths[lo], depth), _common(partial, paths[hi - 1], depth))
        at = depth + fork
        # The old branch moves one level down, below a (possibly temporary) fork.
        # If the changes that forced the fork insert nothing, ``assemble``
        # merges the fork away again and the old branch is rebuilt as it was.
        own = partial[fork]
        moved = (_BRANCH, partial[fork + 1 :], children)
        slots: list[_Sub] = [None] * 16
        slots[own] = moved
        i = lo
        while i < hi:
            nibble = paths[i][at]
            j = i + 1
            while j < hi and paths[j][at] == nibble:
                j += 1
            if nibble == own:
                slots[nibble] = self.update_node(moved, None, at + 1, i, j)
            else:
                slots[nibble] = self.build(self.inserts(i, j), at + 1)
            i = j
        return self.assemble(partial[:fork], slots, range(16))

    def update_leaf(self, leaf: _Wire, ref: bytes | None, depth: int, lo: int, hi: int) -> _Sub:
        """Apply changes ``lo:hi`` (at least two) to the subtree holding just ``leaf``."""
        paths, keys, values = self.paths, self.keys, self.values
        _, partial, leaf_key, leaf_value = leaf
        path = paths[lo][:depth] + partial
        # The leaf joins the inserts at its place in path order unless a change overrides it.
        at = bisect.bisect_left(paths, path, lo, hi)
        items = self.inserts(lo, at)
        if at < hi and paths[at] == path:
            value = values[at]
            if value is not None:
                items.append((path, keys[at], value))
            at += 1
        else:
            items.append((path, leaf_key, leaf_value))
        items.extend(self.inserts(at, hi))
        new = self.build(items, depth)
        if ref is not None and new == leaf:
            return ref
        return new

    def build(self, items: list[tuple[bytes, bytes, bytes]], depth: int) -> _Sub:
        """A fresh subtree at ``depth`` over ``items`` (sorted, distinct paths)."""
        if not items:
            return None
        if len(items) == 1:
            path, key, value = items[0]
            return (_LEAF, path[depth:], key, value)
        return self.build_branch(items, 0, len(items), depth)

    def build_branch(
        self, items: list[tuple[bytes, bytes, bytes]], lo: int, hi: int, depth: int
    ) -> _Wire:
        """A fresh branch at ``depth`` over ``items[lo:hi]`` (at least two)."""
        first = items[lo][0]
        last = items[hi - 1][0]
        at = depth
        while first[at] == last[at]:  # distinct paths differ before nibble 64
            at += 1
        pack = self.pack
        new_nodes = self.new_nodes
        slots: list[bytes | None] = [None] * 16
        i = lo
        while i < hi:
            nibble = items[i][0][at]
            j = i + 1
            while j < hi and items[j][0][at] == nibble:
                j += 1
            if j - i == 1:
                path, key, value = items[i]
                encoding = pack((_LEAF, path[at + 1 :], key, value))
                h = _blake2b(encoding, digest_size=HASH_LENGTH).digest()
            else:
                encoding = pack(self.build_branch(items, i, j, at + 1))
                h = _blake2b(encoding, digest_size=HASH_LENGTH).digest()
                self.new_branches[h] = encoding
            new_nodes[h] = encoding
            slots[nibble] = h
            i = j
        return (_BRANCH, first[depth:at], tuple(slots))

    def assemble(self, partial: bytes, slots: list[_Sub], changed: Iterable[int]) -> _Sub:
        """A branch over ``slots``, or what remains if fewer than two are filled.

        Only the slots listed in ``changed`` may hold new (unhashed) nodes.
        """
        empty = slots.count(None)
        if empty == 16:
            return None
        if empty == 15:
            # A branch needs two children: merge the only one up into its place.
            index = next(i for i in range(16) if slots[i] is not None)
            only = slots[index]
            child = self.load(only) if type(only) is bytes else only
            assert type(child) is tuple
            prefix = partial + _NIBBLE[index]
            if child[0] == _LEAF:
                return (_LEAF, prefix + child[1], child[2], child[3])
            return (_BRANCH, prefix + child[1], child[2])
        pack = self.pack
        for index in changed:
            sub = slots[index]
            if type(sub) is tuple:
                encoding = pack(sub)
                h = _blake2b(encoding, digest_size=HASH_LENGTH).digest()
                self.new_nodes[h] = encoding
                if sub[0] == _BRANCH:
                    self.new_branches[h] = encoding
                slots[index] = h
        return (_BRANCH, partial, tuple(slots))


_by_path = operator.itemgetter(0)


def _common(partial: bytes, path: bytes, offset: int) -> int:
    """The number of leading nibbles ``partial`` shares with ``path[offset:]``."""
    n = 0
    limit = len(partial)
    while n < limit and partial[n] == path[offset + n]:
        n += 1
    return n


def trie_update(store: NodeStore, root: bytes, changes: Mapping[bytes, bytes | None],
                old_values: StateReaderLike | None = None) -> TrieUpdate:
    """Apply a block's changes (``None`` deletes) to the trie at ``root`` in one pass.

    Nodes are never removed from ``store``: the caller adds ``new_nodes`` and the
    old root stays readable. ``new_nodes`` holds every node created by this
    update (it may include a few that the store already has).

    ``old_values``, if given, reads the state at ``root`` (any reader: it is only
    a hint). With a store that has ``cached_node``, a changed key's leaf that is
    not in the cache is then recognised by hashing the leaf its old value makes,
    instead of being read; a wrong hint only costs the read. The result never
    depends on it.
    """
    if not changes:
        return TrieUpdate(root=root, new_nodes={}, new_branches={})
    updater = _Updater(store, changes, old_values)
    start = None if root == EMPTY_ROOT else root
    result = updater.update_ref(start, 0, 0, len(updater.paths))
    if result is None:
        return TrieUpdate(EMPTY_ROOT, updater.new_nodes, updater.new_branches)
    new_root = updater.commit(result)
    assert new_root is not None
    return TrieUpdate(new_root, updater.new_nodes, updater.new_branches)


def compute_root(items: Mapping[bytes, bytes]) -> bytes:
    """The root of a trie holding exactly ``items`` (e.g. a genesis state)."""
    return trie_update(MemoryNodeStore(), EMPTY_ROOT, items).root


# ---------------------------------------------------------------------------
# Reads


def trie_get(store: NodeStore, root: bytes, key: bytes) -> bytes | None:
    """The value of ``key`` in the trie at ``root``, or None."""
    if root == EMPTY_ROOT:
        return None
    path = key_path(key)
    ref: bytes | None = root
    depth = 0
    while ref is not None:
        node = _load(store, ref)
        if isinstance(node, Leaf):
            return node.value if node.key == key else None
        partial, children = node
        if not path.startswith(partial, depth):
            return None
        depth += len(partial)
        ref = children[path[depth]]
        depth += 1
    return None


def trie_items(store: NodeStore, root: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every key/value pair in the trie at ``root``, in path order."""
    if root == EMPTY_ROOT:
        return
    stack = [root]
    while stack:
        node = _load(store, stack.pop())
        if isinstance(node, Leaf):
            yield node.key, node.value
        else:
            # Pushed in reverse so that slot 0 is visited first.
            stack.extend(child for child in reversed(node.children) if child is not None)


# ---------------------------------------------------------------------------
# Proofs


def prove(store: NodeStore, root: bytes, keys: Sequence[bytes]) -> list[bytes]:
    """The node encodings a verifier needs to learn each key's value or absence.

    Ordered by first visit, walking the keys in path order from the root.
    """
    if root == EMPTY_ROOT:
        return []
    proof: dict[bytes, bytes] = {}  # insertion-ordered: the proof order
    for path in sorted(key_path(key) for key in keys):
        ref: bytes | None = root
        depth = 0
        while ref is not None:
            encoding = proof.get(ref)
            if encoding is None:
                encoding = store.get_node(ref)
                if encoding is None:
                    raise MissingNode(ref)
                proof[ref] = encoding
            node = decode_node(encoding)
            if isinstance(node, Leaf):
                break
            partial, children = node
            if not path.startswith(partial, depth):
                break
            depth += len(partial)
            ref = children[path[depth]]
            depth += 1
    return list(proof.values())


def verify_proof(
    root: bytes, proof: Sequence[bytes], keys: Sequence[bytes]
) -> dict[bytes, bytes | None]:
    """Check ``proof`` against ``root``; each key's proven value (None = proven absent).

    Raises InvalidProof if a needed node is missing, a node is malformed or out
    of place, a proof node is duplicated or unused, or nothing hashes to ``root``.
    """
    if type(root) is not bytes or len(root) != HASH_LENGTH:
        raise InvalidProof("a root is a 32-byte hash")
    by_hash: dict[bytes, bytes] = {}
    for encoding in proof:
        if type(encoding) is not bytes:
            raise InvalidProof("a proof node must be bytes")
        h = blake2_256(encoding)
        if h in by_hash:
            raise InvalidProof(f"proof node {h.hex()} appears twice")
        by_hash[h] = encoding
    decoded: dict[bytes, Node] = {}
    result: dict[bytes, bytes | None] = {}
    for key in keys:
        if type(key) is not bytes:
            raise InvalidProof("a key must be bytes")
        result[key] = _verify_key(root, key, by_hash, decoded)
    unused = [h for h in by_hash if h not in decoded]
    if unused:
        raise InvalidProof(f"proof node {unused[0].hex()} is not on any key's path")
    return result


def _verify_key(
    root: bytes, key: bytes, by_hash: dict[bytes, bytes], decoded: dict[bytes, Node]
) -> bytes | None:
    """Look ``key`` up through proof nodes only."""
    if root == EMPTY_ROOT:
        return None
    path = key_path(key)
    ref: bytes | None = root
    depth = 0
    while ref is not None:
        node = decoded.get(ref)
        if node is None:
            encoding = by_hash.get(ref)
            if encoding is None:
                raise InvalidProof(f"proof lacks node {ref.hex()}")
            node = decode_node(encoding)
            decoded[ref] = node
        if isinstance(node, Leaf):
            if len(node.partial) != PATH_NIBBLES - depth:
                raise InvalidProof("leaf partial path does not reach nibble 64")
            # The leaf must really live where the lookup found it.
            if key_path(node.key) != path[:depth] + node.partial:
                raise InvalidProof("leaf key does not hash to its position")
            return node.value if node.key == key else None
        partial, children = node
        if depth + len(partial) >= PATH_NIBBLES:
            raise InvalidProof("branch partial path runs past nibble 63")
        if not path.startswith(partial, depth):
            return None
        depth += len(partial)
        ref = children[path[depth]]
        depth += 1
    return None
