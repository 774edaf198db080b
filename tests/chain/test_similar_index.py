"""The index of works by PDQ fingerprint (node.chain.similar): multi-index hashing that finds
exactly what a scan would, written from the events by the indexer and moved with the best
chain on a reorg."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest
from storage_crash_worker import replayed_index
from test_indexes import block_of, index_of

from genesis import Genesis, build_genesis, dev_spec
from node.chain import indexes, similar
from node.chain.dbformat import INDEX
from node.chain.store import ChainStore, IndexCursor
from runtime import codec
from runtime.crypto import dev_keypair, sha256
from runtime.modules import provenance
from runtime.state import MemoryState

ALICE, BOB, CHARLIE = (dev_keypair(n) for n in ("alice", "bob", "charlie"))


def flipped(fingerprint: bytes, bits: list[int]) -> bytes:
    number = int.from_bytes(fingerprint, "big")
    for bit in bits:
        number ^= 1 << bit
    return number.to_bytes(32, "big")


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@pytest.fixture
def cursor(tmp_path: Path) -> Iterator[tuple[IndexCursor, dict[int, bytes], list[bytes]]]:
    """A LevelDB holding 3,000 random fingerprints and, around 6 queries, neighbours at every
    distance from 0 to 48 (several each, some in one chunk, some spread)."""
    rng = random.Random(7)
    stored = {i: rng.randbytes(32) for i in range(1, 3_001)}
    queries = [rng.randbytes(32) for _ in range(6)]
    next_id = len(stored) + 1
    for query in queries:
        for d in range(49):
            spread = rng.sample(range(256), d)
            packed = [16 * (k % 16) + k // 16 for k in range(d)]  # ≥ one flip in most chunks
            clustered = list(range(d))  # all in the first chunks
            for bits in (spread, packed, clustered):
                stored[next_id] = flipped(query, bits)
                next_id += 1
    db = plyvel.DB(str(tmp_path / "index"), create_if_missing=True)
    with db.write_batch() as batch:
        for work_id, fingerprint in stored.items():
            for key, value in similar.entries(work_id, fingerprint).items():
                batch.put(INDEX + key, value)
    with IndexCursor(db.raw_iterator()) as opened:
        yield opened, stored, queries
    db.close()


@pytest.mark.parametrize("max_distance", [0, 1, 7, 15, 16, 17, 31, 32, 40, 47])
def test_a_lookup_finds_exactly_what_a_scan_finds(
    cursor: tuple[IndexCursor, dict[int, bytes], list[bytes]], max_distance: int
) -> None:
    index, stored, queries = cursor
    for query in queries:
        scanned = sorted((distance(query, fp), work_id, fp) for work_id, fp in stored.items()
                         if distance(query, fp) <= max_distance)
        found, candidates, complete = similar.search(index, query, max_distance)
        assert found == scanned and complete
        assert len(scanned) >= max_distance  # the planted neighbours are there to be found
        # Not a scan: the candidates are a small part of the 3,000+ works.
        assert candidates < len(stored) // 4


def test_a_lookup_refuses_what_it_cannot_answer(
    cursor: tuple[IndexCursor, dict[int, bytes], list[bytes]]
) -> None:
    index, _, queries = cursor
    with pytest.raises(ValueError, match="0..47"):
        similar.search(index, queries[0], similar.MAX_DISTANCE + 1)
    with pytest.raises(ValueError, match="32 bytes"):
        similar.search(index, queries[0][:31], 10)


def test_a_lookup_stops_at_max_candidates(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprints are chosen by whoever registers: many works with one fingerprint make
    a bucket large, and a lookup stops (and says so) rather than read all of them."""
    monkeypatch.setattr(similar, "MAX_CANDIDATES", 100)
    same = sha256(b"one fingerprint, registered again and again")
    db = plyvel.DB(str(tmp_path / "index"), create_if_missing=True)
    try:
        with db.write_batch() as batch:
            for work_id in range(1, 151):
                for key, value in similar.entries(work_id, same).items():
                    batch.put(INDEX + key, value)
        with IndexCursor(db.raw_iterator()) as index:
            found, candidates, complete = similar.search(index, same, 0)
            assert not complete and candidates == 100
            assert [work_id for _, work_id, _ in found] == list(range(1, 101))
            monkeypatch.setattr(similar, "MAX_CANDIDATES", 150)
            assert len(similar.search(index, same, 0)[0]) == 150
            # Two bits off in every chunk: no bucket within reach at 31, so no candidate.
            apart = flipped(same, [16 * k + b for k in range(16) for b in (0, 1)])
            assert similar.search(index, apart, 31) == ([], 0, True)
    finally:
        db.close()


def test_only_pdq_bindings_of_32_bytes_are_indexed() -> None:
    fingerprint = sha256(b"f")
    assert len(similar.chunk_entries(5, provenance.SoftBinding("pdq", fingerprint, 90))) == 16
    assert similar.chunk_entries(5, None) == {}
    assert similar.chunk_entries(5, provenance.SoftBinding("other", fingerprint, None)) == {}


def test_genesis_works_with_a_fingerprint_are_indexed() -> None:
    fingerprint = sha256(b"genesis pdq")
    work = provenance.Work(1, sha256(b"w"), provenance.WorkKind.IMAGE, "t", "", None,
                           ALICE.public, (provenance.Split(ALICE.public, 10_000),), (), (), 0, 0,
                           provenance.SoftBinding("pdq", fingerprint, 100))
    index = indexes.genesis_index({provenance.works.key(1): codec.encode(work)})
    assert {k: v for k, v in index.items() if k.startswith(similar.pdq_chunks.prefix)} \
        == similar.entries(1, fingerprint)


# ---------------------------------------------------------------------------
# Written by the indexer from the chain, moved by reorgs


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return build_genesis(dataclasses.replace(dev_spec(), works=()))


@pytest.fixture
def store(tmp_path: Path, genesis: Genesis) -> Iterator[ChainStore]:
    with ChainStore.open(tmp_path / "node", genesis) as opened:
        yield opened


ORIGINAL = sha256(b"an original photo's fingerprint")
COPY = flipped(ORIGINAL, [3, 77, 140, 200, 201, 255])  # a re-encoded copy: 6 bits off


def image(name: bytes, owner: object, fingerprint: bytes) -> provenance.RegisterWork:
    return provenance.RegisterWork(
        sha256(name), provenance.WorkKind.IMAGE, name.decode(), "", None,
        (provenance.Split(owner.public, 10_000),), (),  # type: ignore[attr-defined]
        provenance.SoftBinding("pdq", fingerprint, 100))


def near(store: ChainStore, fingerprint: bytes, max_distance: int = 31) -> list[tuple[int, int]]:
    with store.index_cursor() as index:
        found, _, complete = similar.search(index, fingerprint, max_distance)
        assert complete
    return [(d, work_id) for d, work_id, _ in found]


def test_the_index_follows_the_best_chain_through_a_reorg(store: ChainStore,
                                                          genesis: Genesis) -> None:
    b1 = block_of(store, store.best_hash, [(ALICE, image(b"original.png", ALICE, ORIGINAL))])
    assert store.import_block(b1.executed).new_best
    assert near(store, COPY) == [(6, 1)]
    after_b1 = index_of(store)
    # Branch A: Bob registers the copy as his own.
    a2 = block_of(store, b1.block.hash, [(BOB, image(b"copy.jpg", BOB, COPY))])
    assert store.import_block(a2.executed).new_best
    assert near(store, COPY) == [(0, 2), (6, 1)]
    assert near(store, ORIGINAL, 5) == [(0, 1)]
    after_a2 = index_of(store)
    assert after_a2 == replayed_index(store, genesis)
    # Branch B, longer, without the copy: after the reorg only the original is found.
    b2 = block_of(store, b1.block.hash, [(CHARLIE, image(b"other.png", CHARLIE,
                                                         sha256(b"another photo")))],
                  slot_gap=2)
    assert not store.import_block(b2.executed).new_best
    b3 = block_of(store, b2.block.hash, [])
    result = store.import_block(b3.executed)
    assert result.is_reorg and result.retracted == (a2.block.hash,)
    assert near(store, COPY) == [(6, 1)]
    assert near(store, sha256(b"another photo"), 0) == [(0, 2)]  # work 2 on this branch
    assert index_of(store) == replayed_index(store, genesis)
    # Back and forth, and down to block 1.
    store.set_best(a2.block.hash)
    assert index_of(store) == after_a2 and near(store, COPY) == [(0, 2), (6, 1)]
    store.set_best(b1.block.hash)
    assert index_of(store) == after_b1 and near(store, COPY) == [(6, 1)]


def test_a_work_without_a_fingerprint_adds_no_entries(store: ChainStore) -> None:
    plain = dataclasses.replace(image(b"plain.png", ALICE, ORIGINAL), soft_binding=None)
    store.import_block(block_of(store, store.best_hash, [(ALICE, plain)]).executed)
    assert not [k for k in index_of(store) if k.startswith(similar.pdq_chunks.prefix)]
    assert indexes.works_by_owner.get(MemoryState(index_of(store)), (ALICE.public, 1)) is True
