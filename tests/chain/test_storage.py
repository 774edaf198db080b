"""The chain database (node.chain.store) and block files (node.chain.blockfile), on real LevelDB."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import plyvel
import pytest
from processes import ROOT
from storage_crash_worker import (
    SLOT_MS,
    build_chain,
    dev_genesis,
    make_block,
    recipient,
    transfer_extrinsics,
)

from genesis import Genesis, build_genesis, local_spec
from node.chain.blockfile import MAGIC, BlockFileError, export_blocks, import_blocks
from node.chain.store import (
    BasePathInUse,
    ChainStore,
    DatabaseError,
    FinalityViolation,
    GenesisMismatch,
    UnknownBlock,
    UnknownParent,
)
from runtime import codec
from runtime.block import Block, Justification, Precommit, seal_header
from runtime.crypto import blake2_256, dev_keypair
from runtime.execution import (
    BadExtrinsicsRoot,
    BadSeal,
    BadSlot,
    BadStateRoot,
    BlockError,
    ExecutedBlock,
    ParentMismatch,
    TimestampNotIncreasing,
    WrongAuthor,
    execute_block,
)
from runtime.modules import balances, system
from runtime.trie import InvalidProof, trie_items, verify_proof


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return dev_genesis()


@pytest.fixture
def store(tmp_path: Path, genesis: Genesis) -> Iterator[ChainStore]:
    with ChainStore.open(tmp_path / "node", genesis) as opened:
        yield opened


def trie_state(store: ChainStore, block_hash: bytes | None = None) -> dict[bytes, bytes]:
    header = store.header(block_hash or store.best_hash)
    assert header is not None
    return dict(trie_items(store.node_store, header.state_root))


def flat_state(store: ChainStore) -> dict[bytes, bytes]:
    return dict(store.iter_state_prefix(b""))


def import_executed(store: ChainStore, block: Block) -> ExecutedBlock:
    """Verify and execute ``block`` on its stored parent, as a syncing node does."""
    parent = store.header(block.header.parent_hash)
    assert parent is not None
    return execute_block(store.state_at(parent.hash), store.node_store, parent, block,
                         store.genesis_hash)


def free(store: ChainStore, who: bytes, block_hash: bytes | None = None) -> int:
    state = store.state_at(block_hash or store.best_hash)
    return system.account_info(state, who).free


def assert_consistent(store: ChainStore) -> None:
    """Flat state = trie state of best; canonical index links up to best."""
    assert flat_state(store) == trie_state(store)
    best = store.best_header
    child = store.best_hash
    for number in range(best.number, -1, -1):
        header = store.header_at(number)
        assert header is not None and header.hash == child
        child = header.parent_hash
    assert store.hash_at(best.number + 1) is None


# ---------------------------------------------------------------------------
# Opening


def test_new_database_holds_genesis(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path, genesis) as store:
        assert (tmp_path / "db").is_dir()
        assert store.best_hash == store.finalized_hash == genesis.hash == store.genesis_hash
        assert store.best_header == store.finalized_header == genesis.header
        assert store.hash_at(0) == genesis.hash and store.hash_at(1) is None
        block = store.block(genesis.hash)
        assert block is not None and block.extrinsics == () and block.header == genesis.header
        assert store.events(genesis.hash) == ()
        assert flat_state(store) == genesis.state == trie_state(store)
    with ChainStore.open(tmp_path, genesis) as store:  # reopens, nothing rewritten
        assert store.best_hash == genesis.hash
        assert flat_state(store) == genesis.state


def test_genesis_mismatch_names_the_path(tmp_path: Path, genesis: Genesis) -> None:
    ChainStore.open(tmp_path, genesis).close()
    with pytest.raises(GenesisMismatch) as info:
        ChainStore.open(tmp_path, build_genesis(local_spec()))
    assert str(tmp_path) in str(info.value)
    ChainStore.open(tmp_path, genesis).close()  # the failed open released the lock


def test_base_path_in_use_in_this_process(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path, genesis):
        with pytest.raises(BasePathInUse) as info:
            ChainStore.open(tmp_path, genesis)
        assert str(tmp_path) in str(info.value)
    ChainStore.open(tmp_path, genesis).close()


def test_base_path_in_use_by_another_process(tmp_path: Path, genesis: Genesis) -> None:
    code = (
        "import sys, time\n"
        "from node.chain.store import ChainStore\n"
        "from genesis import build_genesis, dev_spec\n"
        "store = ChainStore.open(sys.argv[1], build_genesis(dev_spec()))\n"
        "print('holding', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(BasePathInUse) as info:
            ChainStore.open(tmp_path, genesis)
        assert str(tmp_path) in str(info.value)
        assert "Traceback" not in str(info.value)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    ChainStore.open(tmp_path, genesis).close()  # free again once the holder is gone


def test_unusable_base_path_is_a_database_error(tmp_path: Path, genesis: Genesis) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseError, match="cannot create"):
        ChainStore.open(blocker, genesis)
    (tmp_path / "other").mkdir()
    foreign = plyvel.DB(str(tmp_path / "other" / "db"), create_if_missing=True)
    foreign.put(b"k", b"v")
    foreign.close()
    with pytest.raises(DatabaseError, match="not an Opus Chain database"):
        ChainStore.open(tmp_path / "other", genesis)


# ---------------------------------------------------------------------------
# Import, determinism, proofs


def test_two_databases_agree_byte_for_byte(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path / "a", genesis) as a, \
            ChainStore.open(tmp_path / "b", genesis) as b:
        hashes = build_chain(a, 6, 8)
        for block_hash in hashes:
            block = a.block(block_hash)
            assert block is not None
            executed = import_executed(b, block)
            assert executed.trie.root == block.header.state_root
            result = b.import_block(executed)
            assert result.new_best and result.enacted == (block_hash,) and not result.retracted
        assert a.best_hash == b.best_hash == hashes[-1]
        assert a.best_header.state_root == b.best_header.state_root
        keys = [system.account.key(dev_keypair("alice").public), system.account.key(recipient(3)),
                b"no such key", balances.total_issuance.key]
        for block_hash in (hashes[0], hashes[-1]):
            assert a.prove(keys, block_hash) == b.prove(keys, block_hash)
        assert flat_state(a) == trie_state(a) == flat_state(b) == trie_state(b)
        assert list(a.iter_raw()) == list(b.iter_raw())


def test_write_behind_import_matches_durable_import(tmp_path: Path, genesis: Genesis) -> None:
    """``durable=False`` returns before the batch is written; everything reads the same."""
    with ChainStore.open(tmp_path / "a", genesis) as a, \
            ChainStore.open(tmp_path / "b", genesis) as b:
        hashes = build_chain(a, 6, 8)
        alice = dev_keypair("alice").public
        for block_hash in hashes:
            block = a.block(block_hash)
            assert block is not None
            # Executed on the state and trie nodes of a parent whose batch may still be
            # in flight: they come from memory until it lands.
            executed = import_executed(b, block)
            result = b.import_block(executed, durable=False)
            assert result.new_best and b.best_hash == block_hash
            assert free(b, alice) == free(a, alice, block_hash)
            assert b.best_state().get(system.account.key(recipient(3))) == \
                a.state_at(block_hash).get(system.account.key(recipient(3)))
        # Every other read waits for the last batch, so it sees the whole block.
        assert b.events(hashes[-1]) == a.events(hashes[-1])
        assert b.prove([system.account.key(alice)], hashes[-1]) == \
            a.prove([system.account.key(alice)], hashes[-1])
        assert_consistent(b)
        b.flush()
        assert list(a.iter_raw()) == list(b.iter_raw())
    with ChainStore.open(tmp_path / "b", genesis) as reopened:
        assert reopened.best_hash == hashes[-1]


def test_compaction_runs_below_the_importing_threads_priority(store: ChainStore) -> None:
    build_chain(store, 1, 1)
    store._raw_db.compact_range()  # makes LevelDB start its background thread
    build_chain(store, 1, 1)
    python_threads = {t.native_id for t in threading.enumerate()}
    niceness = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        with open(f"/proc/self/task/{tid}/stat") as stat:
            niceness[tid] = int(stat.read().rsplit(")", 1)[1].split()[16])
    background = [tid for tid in niceness if tid not in python_threads]
    assert background, "LevelDB's compaction thread is running"
    assert all(niceness[tid] == 10 for tid in background)
    assert niceness[threading.get_native_id()] == 0


def test_proofs_verify_against_their_block_only(store: ChainStore) -> None:
    hashes = build_chain(store, 3, 4)
    alice = dev_keypair("alice").public
    keys = [system.account.key(alice), system.account.key(recipient(1)), b"absent"]
    for block_hash in hashes:
        header = store.header(block_hash)
        assert header is not None
        proof = store.prove(keys, block_hash)
        proven = verify_proof(header.state_root, proof, keys)
        state = store.state_at(block_hash)
        assert proven == {key: state.get(key) for key in keys}
        assert proven[b"absent"] is None and proven[keys[0]] is not None
    other = store.header(hashes[0])
    assert other is not None
    with pytest.raises(InvalidProof):
        verify_proof(other.state_root, store.prove(keys, hashes[-1]), keys)
    with pytest.raises(UnknownBlock):
        store.prove(keys, b"\x01" * 32)


def test_stored_block_events_and_tx_index(store: ChainStore) -> None:
    built = make_block(store, store.best_hash, [("alice", recipient(7), 5 * 10**12),
                                                ("bob", recipient(8), 10**12)])
    block = built.block
    result = store.import_block(built.executed)
    assert result.new_best and store.best_header == block.header
    assert store.block(block.hash) == block
    assert store.encoded_block(block.hash) == codec.encode(block)
    assert store.events(block.hash) == built.executed.events
    assert store.header_at(1) == block.header
    for index, raw in enumerate(block.extrinsics):
        location = store.tx_location(blake2_256(raw))
        assert location is not None
        assert (location.block_hash, location.index) == (block.hash, index)
    assert store.tx_location(b"\x00" * 32) is None
    assert free(store, recipient(7)) == 5 * 10**12
    # The state of an older block stays readable through its trie.
    assert free(store, recipient(7), store.genesis_hash) == 0


def test_state_readers(store: ChainStore) -> None:
    frozen = store.best_state()
    genesis_hash = store.best_hash
    key = system.account.key(recipient(11))
    built = make_block(store, store.best_hash, [("alice", recipient(11), 10**12)])
    store.import_block(built.executed)
    assert frozen.get(key) is None, "a best_state() reader stays at its block"
    assert store.best_state().get(key) is not None
    assert store.state_at(built.block.hash).get(key) == store.best_state().get(key)
    assert store.state_at(genesis_hash).get(key) is None
    with pytest.raises(UnknownBlock):
        store.state_at(b"\x04" * 32)
    with pytest.raises(UnknownBlock):
        store.set_best(b"\x04" * 32)


def test_already_known_and_unknown_parent(store: ChainStore) -> None:
    built = make_block(store, store.best_hash, [("alice", recipient(1), 10**12)])
    assert store.import_block(built.executed).new_best
    before = list(store.iter_raw())
    again = store.import_block(built.executed)
    assert again.already_known and not again.new_best and again.hash == built.block.hash
    assert list(store.iter_raw()) == before
    orphan_header = dataclasses.replace(built.block.header, parent_hash=b"\x07" * 32)
    orphan = dataclasses.replace(built.executed,
                                 block=dataclasses.replace(built.block, header=orphan_header))
    with pytest.raises(UnknownParent):
        store.import_block(orphan)
    assert list(store.iter_raw()) == before


def test_reopen_keeps_everything(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path, genesis) as store:
        hashes = build_chain(store, 4, 3)
        store.set_finalized(hashes[1])
        before = list(store.iter_raw())
    with ChainStore.open(tmp_path, genesis) as store:
        assert store.best_hash == hashes[-1] and store.finalized_hash == hashes[1]
        assert list(store.iter_raw()) == before
        build_chain(store, 1, 2)
        assert_consistent(store)


def test_state_prefix_iteration_and_paging(store: ChainStore) -> None:
    build_chain(store, 2, 10)
    prefix = system.account.prefix
    items = list(store.iter_state_prefix(prefix))
    assert items == sorted(items) and len(items) > 10
    assert all(key.startswith(prefix) for key, _ in items)
    assert items == sorted((k, v) for k, v in flat_state(store).items() if k.startswith(prefix))
    page, rest = items[:4], items[4:]
    assert list(store.iter_state_prefix(prefix, start_after=page[-1][0])) == rest
    assert list(store.iter_state_prefix(prefix, start_after=b"")) == items
    assert list(store.iter_state_prefix(b"\xff\xff")) == []


# ---------------------------------------------------------------------------
# Tampered blocks


def _reseal(block: Block, **fields: object) -> Block:
    header = dataclasses.replace(block.header, **fields)  # type: ignore[arg-type]
    return dataclasses.replace(block, header=header,
                               seal=seal_header(dev_keypair("alice"), header))


def _tamper_extrinsic(block: Block, store: ChainStore) -> Block:
    other = transfer_extrinsics(store, block.header.parent_hash,
                                [("alice", recipient(40), 999)])[0]
    return dataclasses.replace(block, extrinsics=(other,) + block.extrinsics[1:])


Tampering = tuple[Callable[[Block, ChainStore], Block], type[BlockError]]
TAMPERINGS: dict[str, Tampering] = {
    "state_root": (lambda b, s: _reseal(b, state_root=b"\x05" * 32), BadStateRoot),
    "extrinsic": (_tamper_extrinsic, BadExtrinsicsRoot),
    "seal": (lambda b, s: dataclasses.replace(b, seal=bytes(64)), BadSeal),
    "unsealed_change": (lambda b, s: dataclasses.replace(
        b, header=dataclasses.replace(b.header, state_root=b"\x05" * 32)), BadSeal),
    "timestamp_same_slot": (lambda b, s: _reseal(b, timestamp=b.header.timestamp + 1),
                            BadStateRoot),
    "timestamp_not_increasing": (lambda b, s: _reseal(b, timestamp=SLOT_MS),
                                 TimestampNotIncreasing),
    "timestamp_other_slot": (lambda b, s: _reseal(b, timestamp=b.header.timestamp + SLOT_MS),
                             BadSlot),
    "number": (lambda b, s: _reseal(b, number=b.header.number + 1), ParentMismatch),
    "parent": (lambda b, s: _reseal(b, parent_hash=s.genesis_hash), ParentMismatch),
    "author": (lambda b, s: dataclasses.replace(
        b, header=dataclasses.replace(b.header, author=dev_keypair("bob").public),
        seal=seal_header(dev_keypair("bob"),
                         dataclasses.replace(b.header, author=dev_keypair("bob").public))),
               WrongAuthor),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_tampered_block_is_rejected_and_nothing_written(store: ChainStore, field: str) -> None:
    build_chain(store, 2, 2)
    good = make_block(store, store.best_hash, [("alice", recipient(2), 10**12),
                                                ("bob", recipient(3), 10**12)]).block
    tamper, error = TAMPERINGS[field]
    bad = tamper(good, store)
    assert bad != good
    before = list(store.iter_raw())
    with pytest.raises(BlockError) as info:
        import_executed(store, bad)
    assert type(info.value) is error
    assert list(store.iter_raw()) == before
    # The untampered block still imports.
    assert store.import_block(import_executed(store, good)).new_best


# ---------------------------------------------------------------------------
# Fork choice, reorgs and finality


def test_reorg_follows_longest_chain_and_set_best(store: ChainStore) -> None:
    common = build_chain(store, 2, 2)[-1]
    shared = transfer_extrinsics(store, common, [("charlie", recipient(9), 7 * 10**12)])
    # Branch A: two blocks paying bob's recipients; branch B: three blocks, one slot later.
    a1 = make_block(store, common, extrinsics=shared
                    + transfer_extrinsics(store, common, [("alice", recipient(20), 10**12)]))
    ra1 = store.import_block(a1.executed)
    a2 = make_block(store, a1.block.hash, [("alice", recipient(21), 10**12)])
    ra2 = store.import_block(a2.executed)
    assert ra1.new_best and ra2.new_best and store.best_hash == a2.block.hash
    a_state = flat_state(store)

    b1 = make_block(store, common, slot=store.header(common).slot + 2,  # type: ignore[union-attr]
                    extrinsics=shared
                    + transfer_extrinsics(store, common, [("bob", recipient(30), 3 * 10**12)]))
    rb1 = store.import_block(b1.executed)
    assert not rb1.new_best and store.best_hash == a2.block.hash
    b2 = make_block(store, b1.block.hash, [("bob", recipient(31), 10**12)])
    rb2 = store.import_block(b2.executed)
    assert not rb2.new_best, "a tie keeps the current best"
    assert flat_state(store) == a_state
    b3 = make_block(store, b2.block.hash, [("bob", recipient(32), 10**12)])
    rb3 = store.import_block(b3.executed)
    assert rb3.new_best and rb3.is_reorg
    assert rb3.retracted == (a2.block.hash, a1.block.hash)
    assert rb3.enacted == (b1.block.hash, b2.block.hash, b3.block.hash)
    assert store.best_hash == b3.block.hash
    assert_consistent(store)
    assert free(store, recipient(30)) == 3 * 10**12 and free(store, recipient(20)) == 0

    def located(raw: bytes) -> tuple[bytes, int] | None:
        loc = store.tx_location(blake2_256(raw))
        return None if loc is None else (loc.block_hash, loc.index)

    assert located(shared[0]) == (b1.block.hash, 0)
    assert located(a1.block.extrinsics[1]) is None and located(a2.block.extrinsics[0]) is None
    assert located(b3.block.extrinsics[0]) == (b3.block.hash, 0)

    # Back to the (shorter) branch A explicitly.
    reorg = store.set_best(a2.block.hash)
    assert reorg.retracted == (b3.block.hash, b2.block.hash, b1.block.hash)
    assert reorg.enacted == (a1.block.hash, a2.block.hash)
    assert store.best_hash == a2.block.hash and store.hash_at(5) is None
    assert_consistent(store)
    assert flat_state(store) == a_state
    assert located(shared[0]) == (a1.block.hash, 0)
    assert located(b3.block.extrinsics[0]) is None
    assert located(a2.block.extrinsics[0]) == (a2.block.hash, 0)

    # And to B's middle block: a pure move sideways, then forward again.
    store.set_best(b2.block.hash)
    assert_consistent(store)
    assert store.set_best(b3.block.hash) == type(reorg)((), (b3.block.hash,))
    assert_consistent(store)
    assert store.set_best(b3.block.hash).enacted == ()
    # Retract only: back to the common block.
    store.set_best(common)
    assert_consistent(store)
    assert store.tx_location(blake2_256(shared[0])) is None


def test_never_reorg_past_finalized(store: ChainStore) -> None:
    common = build_chain(store, 1, 1)[-1]
    a1 = make_block(store, common, [("alice", recipient(1), 10**12)])
    store.import_block(a1.executed)
    b1 = make_block(store, common, [("bob", recipient(2), 10**12)], slot=5)
    store.import_block(b1.executed)
    b2 = make_block(store, b1.block.hash, [("bob", recipient(3), 10**12)])
    store.set_finalized(a1.block.hash)
    assert store.finalized_hash == a1.block.hash and store.finalized_header == a1.block.header
    before_best = store.best_hash
    result = store.import_block(b2.executed)
    assert not result.new_best and store.best_hash == before_best
    assert store.has_block(b2.block.hash)
    with pytest.raises(FinalityViolation):
        store.set_best(b2.block.hash)
    with pytest.raises(FinalityViolation):
        store.set_best(common)  # below the finalized block
    with pytest.raises(FinalityViolation):
        store.set_finalized(b1.block.hash)  # not on the best chain
    with pytest.raises(FinalityViolation):
        store.set_finalized(common)  # finality never goes back
    with pytest.raises(UnknownBlock):
        store.set_finalized(b"\x09" * 32)
    assert_consistent(store)
    # A longer chain through the finalized block still wins.
    a2 = make_block(store, a1.block.hash, [("alice", recipient(4), 10**12)])
    assert store.import_block(a2.executed).new_best
    a3 = make_block(store, a2.block.hash, [("alice", recipient(5), 10**12)])
    assert store.import_block(a3.executed).new_best
    assert store.is_ancestor(a1.block.hash, a3.block.hash)
    assert not store.is_ancestor(b1.block.hash, a3.block.hash)
    assert store.is_ancestor(common, b2.block.hash)
    assert not store.is_ancestor(a3.block.hash, a1.block.hash)
    assert_consistent(store)


def test_justification_is_stored_apart_and_attached(store: ChainStore) -> None:
    block_hash = build_chain(store, 1, 1)[0]
    header = store.header(block_hash)
    assert header is not None
    plain = store.block(block_hash)
    assert plain is not None
    justification = Justification(0, 0, block_hash, header.number,
                                  (Precommit(dev_keypair("alice").public, bytes(64)),))
    store.set_justification(block_hash, justification)
    assert store.justification(block_hash) == justification
    full = store.block(block_hash)
    assert full == dataclasses.replace(plain, justification=justification)
    assert store.encoded_block(block_hash) == codec.encode(full)
    with pytest.raises(UnknownBlock):
        store.set_justification(b"\x03" * 32, justification)


def test_a_justified_block_is_finalized_in_its_import_batch(tmp_path: Path,
                                                            genesis: Genesis) -> None:
    with ChainStore.open(tmp_path / "node", genesis) as store:
        common = build_chain(store, 1, 1)[-1]
        a1 = make_block(store, common, [("alice", recipient(1), 10**12)])
        store.import_block(a1.executed)
        a2 = make_block(store, a1.block.hash, [("alice", recipient(2), 10**12)])
        store.import_block(a2.executed)
        b1 = make_block(store, common, [("bob", recipient(3), 10**12)], slot=9)
        # not the best block (a shorter fork): stored, but finality does not move
        assert not store.import_block(b1.executed, finalize=True).new_best
        assert store.finalized_hash == genesis.hash
        a3 = make_block(store, a2.block.hash, [("alice", recipient(4), 10**12)])
        assert store.import_block(a3.executed, finalize=True).new_best
        assert store.finalized_hash == a3.block.hash and store.finalized_header.number == 4
        assert_consistent(store)
    with ChainStore.open(tmp_path / "node", genesis) as reopened:  # it was in the synced batch
        assert reopened.finalized_hash == a3.block.hash


# ---------------------------------------------------------------------------
# Block files


def test_export_import_round_trip(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "blocks.bin"
    with ChainStore.open(tmp_path / "a", genesis) as a:
        hashes = build_chain(a, 5, 3)
        header = a.header(hashes[1])
        assert header is not None
        a.set_justification(hashes[1], Justification(0, 0, hashes[1], header.number, ()))
        assert export_blocks(a, path, 1, 5) == 5
        exported = [a.block(h) for h in hashes]
        with pytest.raises(UnknownBlock):
            export_blocks(a, tmp_path / "too-far.bin", 4, 9)
        assert not (tmp_path / "too-far.bin").exists()
    blocks = list(import_blocks(path))
    assert blocks == exported
    assert blocks[1].justification is not None
    with ChainStore.open(tmp_path / "b", genesis) as b:
        for block in blocks:
            assert b.import_block(import_executed(b, block)).new_best
        assert b.best_hash == hashes[-1]
        assert_consistent(b)


def test_malformed_block_files(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "blocks.bin"
    with ChainStore.open(tmp_path / "a", genesis) as a:
        build_chain(a, 2, 2)
        export_blocks(a, path, 0, 2)
    data = path.read_bytes()
    assert data.startswith(MAGIC)

    def read(content: bytes) -> list[Block]:
        broken = tmp_path / "broken.bin"
        broken.write_bytes(content)
        return list(import_blocks(broken))

    assert len(read(data)) == 3
    assert read(MAGIC) == []
    for content, message in [
        (data[:-1], "truncated"),
        (data[:-40], "truncated"),
        (data + b"\x00\x00", "truncated"),
        (b"", "bad magic"),
        (b"OPUSBLK2" + data[8:], "bad magic"),
        (data + (10**9).to_bytes(4, "big"), "claims"),
        (data + (3).to_bytes(4, "big") + b"abc", "not a block"),
    ]:
        with pytest.raises(BlockFileError, match=message):
            read(content)
    with pytest.raises(BlockFileError, match="cannot read"):
        list(import_blocks(tmp_path / "missing.bin"))


def test_node_cache_is_bounded(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path, genesis, node_cache_bytes=4096) as store:
        build_chain(store, 3, 20)
        assert_consistent(store)
        assert 0 < store.node_store.cached_bytes <= 4096
