"""The state trie: canonical roots, reads against a dict model, and read proofs."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime.trie as trie_module
from runtime.state import MemoryState
from runtime.trie import (
    EMPTY_ROOT,
    Branch,
    EmptyValue,
    InvalidProof,
    Leaf,
    MemoryNodeStore,
    MissingNode,
    compute_root,
    decode_node,
    encode_node,
    key_path,
    prove,
    trie_get,
    trie_items,
    trie_update,
    verify_proof,
)

VECTOR = {
    b"alice": b"1",
    b"bob": b"2",
    b"charlie": b"3",
    b"dave": b"4",
    b"eve": b"5",
    b"ferdie": b"6",
}
VECTOR_ROOT = "34f714f032d9070e55326926ba467151b5e402bd52e2520a87c2da815a5c0e57"
EMPTY_ROOT_HEX = "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"

# Small key alphabets make overwrites, deletes of present keys and shared path
# prefixes (forks deep in the trie) likely.
keys_st = st.binary(min_size=0, max_size=3)
values_st = st.binary(min_size=1, max_size=6)
changes_st = st.dictionaries(keys_st, st.none() | values_st, max_size=40)


# ---------------------------------------------------------------------------
# An independent reference: the spec in the module docstring, written naively.


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _nibbles(key: bytes) -> bytes:
    return bytes(n for b in _h(key) for n in (b >> 4, b & 15))


def _ref_encoding(entries: list[tuple[bytes, bytes, bytes]], depth: int) -> bytes:
    if len(entries) == 1:
        path, key, value = entries[0]
        leaf: bytes = msgpack.packb([0, path[depth:], key, value], use_bin_type=True)
        return leaf
    at = depth
    while len({path[at] for path, _, _ in entries}) == 1:
        at += 1
    children: list[bytes | None] = []
    for nibble in range(16):
        group = [e for e in entries if e[0][at] == nibble]
        children.append(_h(_ref_encoding(group, at + 1)) if group else None)
    branch: bytes = msgpack.packb([1, entries[0][0][depth:at], children], use_bin_type=True)
    return branch


def reference_root(items: dict[bytes, bytes]) -> bytes:
    if not items:
        return _h(b"")
    entries = sorted((_nibbles(k), k, v) for k, v in items.items())
    return _h(_ref_encoding(entries, 0))


# ---------------------------------------------------------------------------
# Helpers


def apply(store: MemoryNodeStore, root: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
    update = trie_update(store, root, changes)
    store.put_nodes(update.new_nodes)
    return update.root


def apply_model(model: dict[bytes, bytes], changes: Mapping[bytes, bytes | None]) -> None:
    for key, value in changes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value


def path_ordered(model: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return sorted(model.items(), key=lambda kv: key_path(kv[0]))


def build(items: dict[bytes, bytes]) -> tuple[MemoryNodeStore, bytes]:
    store = MemoryNodeStore()
    return store, apply(store, EMPTY_ROOT, dict(items))


# ---------------------------------------------------------------------------
# Roots


def test_empty_root() -> None:
    assert EMPTY_ROOT == _h(b"")
    assert EMPTY_ROOT.hex() == EMPTY_ROOT_HEX
    assert compute_root({}) == EMPTY_ROOT
    assert trie_update(MemoryNodeStore(), EMPTY_ROOT, {b"a": None}).root == EMPTY_ROOT
    assert EMPTY_ROOT_HEX in (trie_module.__doc__ or "")


def test_fixed_vector() -> None:
    assert compute_root(VECTOR).hex() == VECTOR_ROOT
    assert reference_root(VECTOR).hex() == VECTOR_ROOT
    # Published in the module docstring so a reimplementation can check itself.
    assert VECTOR_ROOT in (trie_module.__doc__ or "")


def test_key_path() -> None:
    assert key_path(b"alice") == _nibbles(b"alice")
    assert len(key_path(b"")) == 64


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys_st, values_st, max_size=60))
def test_compute_root_matches_reference(items: dict[bytes, bytes]) -> None:
    assert compute_root(items) == reference_root(items)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys_st, values_st, max_size=60), st.randoms(use_true_random=False))
def test_root_independent_of_order_and_batching(
    items: dict[bytes, bytes], rnd: random.Random
) -> None:
    expected = compute_root(items)
    store, one_batch = build(items)
    assert one_batch == expected

    # The same items, shuffled and split into random batches, with noise that
    # is written and then overwritten or deleted again.
    pairs = list(items.items())
    rnd.shuffle(pairs)
    store2 = MemoryNodeStore()
    root = EMPTY_ROOT
    noise = {b"noise" + bytes([i]): b"n" for i in range(rnd.randrange(0, 8))}
    root = apply(store2, root, {k: b"stale" for k in list(items)[:3]} | noise)
    while pairs:
        cut = rnd.randrange(1, len(pairs) + 1)
        batch: dict[bytes, bytes | None] = dict(pairs[:cut])
        pairs = pairs[cut:]
        root = apply(store2, root, batch)
    root = apply(store2, root, {k: None for k in noise if k not in items})
    assert root == expected

    # Deleting everything (in random batches) returns to the empty root.
    keys = list(items)
    rnd.shuffle(keys)
    while keys:
        cut = rnd.randrange(1, len(keys) + 1)
        root = apply(store2, root, {k: None for k in keys[:cut]})
        keys = keys[cut:]
    assert root == EMPTY_ROOT


@settings(max_examples=150, deadline=None)
@given(st.lists(changes_st, min_size=1, max_size=8))
def test_reads_agree_with_dict_model(batches: list[dict[bytes, bytes | None]]) -> None:
    store = MemoryNodeStore()
    root = EMPTY_ROOT
    model: dict[bytes, bytes] = {}
    history: list[tuple[bytes, dict[bytes, bytes]]] = []
    for changes in batches:
        root = apply(store, root, changes)
        apply_model(model, changes)
        history.append((root, dict(model)))
        assert root == reference_root(model)
        assert list(trie_items(store, root)) == path_ordered(model)
        for key in list(changes) + [b"absent-key"]:
            assert trie_get(store, root, key) == model.get(key)
    # Old roots stay readable after later updates: nodes are never removed.
    for old_root, old_model in history:
        assert list(trie_items(store, old_root)) == path_ordered(old_model)
        for key in old_model:
            assert trie_get(store, old_root, key) == old_model[key]


def test_larger_trie_random_batches() -> None:
    rnd = random.Random(7)
    store = MemoryNodeStore()
    root = EMPTY_ROOT
    model: dict[bytes, bytes] = {}
    universe = [b"k%d" % i for i in range(3000)]
    for _ in range(12):
        changes: dict[bytes, bytes | None] = {}
        for key in rnd.sample(universe, 600):
            changes[key] = None if rnd.random() < 0.3 else rnd.randbytes(rnd.randrange(1, 40))
        old_nodes = dict(store.nodes)
        update = trie_update(store, root, changes)
        # new_nodes are new (a few re-created ones are allowed, not many).
        assert sum(h in old_nodes for h in update.new_nodes) <= len(update.new_nodes) // 10
        # new_branches is exactly the branches among them (a node store caches those).
        assert update.new_branches == {h: encoding for h, encoding in update.new_nodes.items()
                                       if isinstance(decode_node(encoding), Branch)}
        assert update.new_branches
        store.put_nodes(update.new_nodes)
        root = update.root
        apply_model(model, changes)
        assert root == compute_root(model)
        assert list(trie_items(store, root)) == path_ordered(model)


def test_long_shared_prefixes() -> None:
    # Keys whose paths share 4+ nibbles give branches with long partial paths,
    # forks inside them, and merges back up when keys are deleted.
    buckets: dict[bytes, list[bytes]] = {}
    for i in range(20_000):
        key = b"p%d" % i
        buckets.setdefault(key_path(key)[:4], []).append(key)
    deep = [keys for keys in buckets.values() if len(keys) >= 3][:4]
    assert deep
    keys = [k for group in deep for k in group] + [b"q%d" % i for i in range(5)]
    rnd = random.Random(3)
    for _ in range(30):
        rnd.shuffle(keys)
        store = MemoryNodeStore()
        root = EMPTY_ROOT
        model: dict[bytes, bytes] = {}
        for key in keys:
            change: dict[bytes, bytes | None] = {key: b"v" + key}
            if rnd.random() < 0.3 and model:
                change[rnd.choice(sorted(model))] = None
            root = apply(store, root, change)
            apply_model(model, change)
            assert root == reference_root(model)
        for key in sorted(model):
            root = apply(store, root, {key: None})
            del model[key]
            assert root == reference_root(model)
        assert root == EMPTY_ROOT


def test_no_op_changes_keep_root_and_add_nothing() -> None:
    store, root = build(VECTOR)
    update = trie_update(store, root, {b"alice": b"1", b"nobody": None, b"zed": None})
    assert update.root == root
    assert update.new_nodes == {}
    assert trie_update(store, root, {}).root == root


def test_empty_value_rejected() -> None:
    with pytest.raises(EmptyValue):
        trie_update(MemoryNodeStore(), EMPTY_ROOT, {b"a": b""})


def test_missing_node() -> None:
    store, root = build(VECTOR)
    del store.nodes[root]
    with pytest.raises(MissingNode, match=root.hex()):
        trie_get(store, root, b"alice")
    with pytest.raises(MissingNode, match=root.hex()):
        trie_update(store, root, {b"alice": b"9"})
    with pytest.raises(MissingNode):
        list(trie_items(store, root))
    with pytest.raises(MissingNode):
        prove(store, root, [b"alice"])


# ---------------------------------------------------------------------------
# Node encoding


def test_encoding_round_trip() -> None:
    leaf = Leaf(bytes([1, 2, 15]), b"key", b"value")
    assert encode_node(leaf) == msgpack.packb([0, b"\x01\x02\x0f", b"key", b"value"])
    assert decode_node(encode_node(leaf)) == leaf
    children = tuple(bytes([i]) * 32 if i in (0, 9) else None for i in range(16))
    branch = Branch(b"", children)
    assert encode_node(branch) == msgpack.packb([1, b"", list(children)], use_bin_type=True)
    assert decode_node(encode_node(branch)) == branch


HASH = b"\x11" * 32
TWO_CHILDREN = [HASH, HASH] + [None] * 14

MALFORMED = [
    b"",
    b"\xc1",  # never used in msgpack
    msgpack.packb([0, b"", b"k", b"v"]) + b"\x00",  # trailing bytes
    msgpack.packb([]),
    msgpack.packb({"a": 1}),
    msgpack.packb([2, b"", b"k", b"v"]),  # unknown kind
    msgpack.packb([True, b"", b"k", b"v"]),  # bool kind
    msgpack.packb([-1, b"", b"k", b"v"]),
    b"\x94\xcc\x00\xc4\x00\xc4\x01k\xc4\x01v",  # kind 0 in a wider int form
    msgpack.packb([0, b"", b"k"]),  # missing field
    msgpack.packb([0, b"", b"k", b"v", b"x"]),  # extra field
    msgpack.packb([0, "ab", b"k", b"v"], use_bin_type=True),  # str partial
    msgpack.packb([0, b"", "k", b"v"], use_bin_type=True),  # str key
    msgpack.packb([0, b"\x10", b"k", b"v"]),  # nibble 16
    msgpack.packb([0, bytes(65), b"k", b"v"]),  # too long a path
    msgpack.packb([0, b"", b"k", b""]),  # empty value
    msgpack.packb([0, b"", b"k", None]),
    msgpack.packb([1, b"", [HASH] * 15]),  # 15 slots
    msgpack.packb([1, b"", [HASH] * 17]),
    msgpack.packb([1, b"", [HASH] + [None] * 15]),  # a single child
    msgpack.packb([1, b"", [HASH[:31], HASH] + [None] * 14]),  # short hash
    msgpack.packb([1, b"", [HASH, 5] + [None] * 14]),
    msgpack.packb([1, b"", {"x": 1}]),
    msgpack.packb([1, b"", TWO_CHILDREN, None]),
    msgpack.packb(msgpack.ExtType(1, b"x")),
    b"\xd4\x01\x00",  # an ext type
    b"\x91" * 5000 + b"\xc0",  # deep nesting
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_nodes_rejected(data: bytes) -> None:
    with pytest.raises(InvalidProof):
        decode_node(data)
    # As the root of a proof, too.
    with pytest.raises(InvalidProof):
        verify_proof(_h(data), [data], [b"alice"])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes_only_invalid_proof(data: bytes) -> None:
    try:
        node = decode_node(data)
    except InvalidProof:
        return
    assert encode_node(node) == data


# ---------------------------------------------------------------------------
# Proofs


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(keys_st, values_st, max_size=50),
    st.lists(keys_st, max_size=8),
)
def test_proofs_verify(items: dict[bytes, bytes], queried: list[bytes]) -> None:
    store, root = build(items)
    keys = queried + list(items)[:3]
    proof = prove(store, root, keys)
    assert verify_proof(root, proof, keys) == {k: items.get(k) for k in keys}
    # Deterministic and independent of the order the keys are asked in.
    assert prove(store, root, list(reversed(keys))) == proof
    if proof:
        assert _h(proof[0]) == root
    assert len(set(proof)) == len(proof)


def test_proof_of_empty_trie() -> None:
    store = MemoryNodeStore()
    assert prove(store, EMPTY_ROOT, [b"a"]) == []
    assert verify_proof(EMPTY_ROOT, [], [b"a"]) == {b"a": None}
    with pytest.raises(InvalidProof):
        verify_proof(EMPTY_ROOT, [encode_node(Leaf(bytes(64), b"a", b"1"))], [b"a"])


def _vector_proof() -> tuple[MemoryNodeStore, bytes, list[bytes], list[bytes]]:
    store, root = build(VECTOR | {b"k%d" % i: b"v%d" % i for i in range(200)})
    keys = [b"alice", b"k7", b"nobody", b"k150"]
    return store, root, keys, prove(store, root, keys)


def test_absence_proof() -> None:
    store, root, _, _ = _vector_proof()
    proof = prove(store, root, [b"nobody"])
    assert verify_proof(root, proof, [b"nobody"]) == {b"nobody": None}


def test_absence_inside_a_branch_partial_path() -> None:
    # Two keys sharing their first nibble make a root branch with a one-nibble
    # partial path; a key with another first nibble leaves the trie right there.
    first: dict[int, list[bytes]] = {}
    for i in range(100):
        first.setdefault(key_path(b"k%d" % i)[0], []).append(b"k%d" % i)
    a, b = next(keys for keys in first.values() if len(keys) >= 2)[:2]
    outsider = next(keys[0] for nibble, keys in first.items() if nibble != key_path(a)[0])
    store, root = build({a: b"1", b: b"2"})
    root_node = decode_node(store.nodes[root])
    assert isinstance(root_node, Branch) and len(root_node.partial) >= 1
    proof = prove(store, root, [outsider])
    assert proof == [store.nodes[root]]
    assert verify_proof(root, proof, [outsider]) == {outsider: None}
    # Inserting the outsider forks above the old root branch; deleting it merges back.
    root2 = apply(store, root, {outsider: b"3"})
    assert root2 == reference_root({a: b"1", b: b"2", outsider: b"3"})
    assert apply(store, root2, {outsider: None}) == root


def test_proof_against_another_root() -> None:
    store, root, keys, proof = _vector_proof()
    other = apply(store, root, {b"alice": b"changed"})
    with pytest.raises(InvalidProof):
        verify_proof(other, proof, keys)
    with pytest.raises(InvalidProof):
        verify_proof(b"\x00" * 32, proof, keys)
    with pytest.raises(InvalidProof):
        verify_proof(b"short", proof, keys)


def test_tampered_removed_and_extra_nodes() -> None:
    _, root, keys, proof = _vector_proof()
    assert verify_proof(root, proof, keys)[b"alice"] == b"1"
    for i in range(len(proof)):
        removed = proof[:i] + proof[i + 1 :]
        with pytest.raises(InvalidProof):
            verify_proof(root, removed, keys)
        for pos in (0, len(proof[i]) // 2, len(proof[i]) - 1):
            node = bytearray(proof[i])
            node[pos] ^= 0x01
            with pytest.raises(InvalidProof):
                verify_proof(root, proof[:i] + [bytes(node)] + proof[i + 1 :], keys)
    garbage = encode_node(Leaf(bytes(64), b"x", b"y"))
    for extra in (garbage, b"garbage", proof[0]):
        with pytest.raises(InvalidProof):
            verify_proof(root, proof + [extra], keys)
    # A proof for more keys than asked carries unused nodes.
    with pytest.raises(InvalidProof):
        verify_proof(root, proof, keys[:1])


def test_wrong_claimed_value() -> None:
    store, root, keys, proof = _vector_proof()
    leaf_encoding = next(p for p in proof if decode_node(p) == _leaf_of(store, root, b"alice"))
    leaf = decode_node(leaf_encoding)
    assert isinstance(leaf, Leaf)
    forged = encode_node(Leaf(leaf.partial, leaf.key, b"999"))
    forged_proof = [forged if p == leaf_encoding else p for p in proof]
    with pytest.raises(InvalidProof):
        verify_proof(root, forged_proof, keys)
    assert verify_proof(root, proof, keys)[b"alice"] != b"999"


def _leaf_of(store: MemoryNodeStore, root: bytes, key: bytes) -> Leaf:
    for encoding in prove(store, root, [key]):
        node = decode_node(encoding)
        if isinstance(node, Leaf) and node.key == key:
            return node
    raise AssertionError("no leaf")


def test_out_of_place_nodes_rejected() -> None:
    path = key_path(b"alice")
    # A leaf at the root whose key does not hash to its partial path.
    bad_leaf = encode_node(Leaf(key_path(b"bob"), b"alice", b"1"))
    with pytest.raises(InvalidProof):
        verify_proof(_h(bad_leaf), [bad_leaf], [b"alice"])
    # A leaf whose partial path is too short for its depth.
    short_leaf = encode_node(Leaf(path[1:], b"alice", b"1"))
    with pytest.raises(InvalidProof):
        verify_proof(_h(short_leaf), [short_leaf], [b"alice"])
    # A branch whose partial path runs to nibble 64.
    long_branch = encode_node(Branch(path, tuple(TWO_CHILDREN)))
    with pytest.raises(InvalidProof):
        verify_proof(_h(long_branch), [long_branch], [b"alice"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.integers(0, 6), keys_st)
def test_random_proof_nodes_only_invalid_proof(nodes: list[bytes], pick: int, key: bytes) -> None:
    roots = [b"\x00" * 32, EMPTY_ROOT] + [_h(n) for n in nodes]
    root = roots[pick % len(roots)]
    try:
        verify_proof(root, nodes, [key])
    except InvalidProof:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_proofs_only_invalid_proof(data: st.DataObject) -> None:
    _, root, keys, proof = _VECTOR_PROOF
    i = data.draw(st.integers(0, len(proof) - 1))
    node = bytearray(proof[i])
    pos = data.draw(st.integers(0, len(node)))
    action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if action == "flip" and pos < len(node):
        node[pos] ^= data.draw(st.integers(1, 255))
    elif action == "insert":
        node[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    elif action == "delete" and pos < len(node):
        del node[pos]
    else:
        del node[pos:]
    if bytes(node) == proof[i]:
        return
    with pytest.raises(InvalidProof):
        verify_proof(root, proof[:i] + [bytes(node)] + proof[i + 1 :], keys)


_VECTOR_PROOF = _vector_proof()


class _CountingStore(MemoryNodeStore):
    """A store with nothing "at hand": every node not recognised is a counted read."""

    reads: int = 0

    def get_node(self, node_hash: bytes) -> bytes | None:
        self.reads += 1
        return super().get_node(node_hash)

    def cached_node(self, node_hash: bytes) -> bytes | None:
        return None


def test_old_value_hints_save_leaf_reads_and_never_change_the_root() -> None:
    rng = random.Random(11)
    items = {b"k%d" % i: b"v%d" % i for i in range(3_000)}
    store = _CountingStore()
    root = trie_update(store, EMPTY_ROOT, items)
    store.put_nodes(root.new_nodes)
    keys = list(items)
    changes: dict[bytes, bytes | None] = {}
    for key in rng.sample(keys, 200):
        changes[key] = None if rng.random() < 0.2 else key + b"!"
    for i in range(50):
        changes[b"new%d" % i] = b"n"
    changes[keys[0]] = items[keys[0]]  # an unchanged value
    expected = trie_update(MemoryNodeStore(dict(store.nodes)), root.root, changes)
    store.reads = 0
    plain = trie_update(store, root.root, changes)
    plain_reads, store.reads = store.reads, 0
    hinted = trie_update(store, root.root, changes, MemoryState(items))
    hinted_reads, store.reads = store.reads, 0
    wrong = {k: v + b"?" for k, v in items.items()}  # every hint wrong: reads, same root
    misled = trie_update(store, root.root, changes, MemoryState(wrong))
    assert plain.root == hinted.root == misled.root == expected.root
    assert plain.new_nodes == hinted.new_nodes == misled.new_nodes == expected.new_nodes
    assert hinted_reads < plain_reads - 150
    assert store.reads == plain_reads
