"""Block import on two cores (node.chain.importer): the same verdicts as execute_block."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_crash_worker import build_chain, dev_genesis, make_block, recipient

from node.chain.importer import PARALLEL_MIN_EXTRINSICS, SignatureWorkers, verify_and_execute
from node.chain.store import ChainStore
from runtime import codec
from runtime.block import Block, seal_header
from runtime.crypto import dev_keypair
from runtime.execution import (
    BadExtrinsic,
    BadExtrinsicsRoot,
    BadStateRoot,
    InvalidExtrinsicInBlock,
    execute_block,
    extrinsics_root,
)
from runtime.extrinsic import decode_extrinsic

SENDERS = ("alice", "bob", "charlie", "dave", "eve", "ferdie")


@pytest.fixture(scope="module")
def workers() -> Iterator[SignatureWorkers]:
    pool = SignatureWorkers(1)
    yield pool
    pool.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    with ChainStore.open(tmp_path / "node", dev_genesis()) as opened:
        build_chain(opened, 1, 1)
        yield opened


def big_block(store: ChainStore) -> Block:
    count = PARALLEL_MIN_EXTRINSICS + 8
    transfers = [(SENDERS[i % len(SENDERS)], recipient(i), 10**12 + i) for i in range(count)]
    return make_block(store, store.best_hash, transfers).block


def reseal(block: Block, extrinsics: tuple[bytes, ...]) -> Block:
    header = dataclasses.replace(block.header, extrinsics_root=extrinsics_root(extrinsics))
    return Block(header, extrinsics, seal_header(dev_keypair("alice"), header))


def test_same_result_as_execute_block(store: ChainStore, workers: SignatureWorkers) -> None:
    block = big_block(store)
    parent = store.best_header
    expected = execute_block(store.best_state(), store.node_store, parent, block,
                             store.genesis_hash)
    got = verify_and_execute(store.best_state(), store.node_store, parent, block,
                             store.genesis_hash, workers)
    assert got.trie.root == expected.trie.root == block.header.state_root
    assert got.changes == expected.changes and got.events == expected.events
    assert store.import_block(got).new_best


def test_a_body_not_matching_its_root_is_named_first(store: ChainStore,
                                                     workers: SignatureWorkers) -> None:
    block = big_block(store)
    # Swapped extrinsics (the nonces then fail too), and a body that does not decode:
    # either way the verdict is the extrinsics root, as when it is checked first.
    swapped = (block.extrinsics[1], block.extrinsics[0]) + block.extrinsics[2:]
    garbage = (b"\xc1",) + block.extrinsics[1:]
    for body in (swapped, garbage):
        tampered = dataclasses.replace(block, extrinsics=body)
        for pool in (workers, None):
            with pytest.raises(BadExtrinsicsRoot):
                verify_and_execute(store.best_state(), store.node_store, store.best_header,
                                   tampered, store.genesis_hash, pool)
    # With a matching root, the real fault is named.
    with pytest.raises(BadExtrinsic):
        verify_and_execute(store.best_state(), store.node_store, store.best_header,
                           reseal(block, garbage), store.genesis_hash, workers)


def test_a_bad_signature_is_named(store: ChainStore, workers: SignatureWorkers) -> None:
    block = big_block(store)
    index = 5
    ext = decode_extrinsic(block.extrinsics[index])
    forged = dataclasses.replace(ext, signature=bytes(64))
    body = (block.extrinsics[:index] + (codec.encode(forged),) + block.extrinsics[index + 1:])
    with pytest.raises(InvalidExtrinsicInBlock, match=f"extrinsic {index}: InvalidSignature"):
        verify_and_execute(store.best_state(), store.node_store, store.best_header,
                           reseal(block, body), store.genesis_hash, workers)


def test_verdicts_keep_their_order(store: ChainStore, workers: SignatureWorkers) -> None:
    """The trie is updated while the worker finishes the signatures; the verdicts still
    come in execute_block's order: extrinsics root, signatures, state root."""
    block = big_block(store)
    ext = decode_extrinsic(block.extrinsics[3])
    body = (block.extrinsics[:3] + (codec.encode(dataclasses.replace(ext, signature=bytes(64))),)
            + block.extrinsics[4:])
    forged = reseal(block, body)
    wrong_root = dataclasses.replace(forged.header, state_root=b"\x05" * 32)
    both = Block(wrong_root, body, seal_header(dev_keypair("alice"), wrong_root))
    with pytest.raises(InvalidExtrinsicInBlock, match="extrinsic 3: InvalidSignature"):
        verify_and_execute(store.best_state(), store.node_store, store.best_header, both,
                           store.genesis_hash, workers)
    header = dataclasses.replace(block.header, state_root=b"\x05" * 32)
    only_root = Block(header, block.extrinsics, seal_header(dev_keypair("alice"), header))
    with pytest.raises(BadStateRoot):
        verify_and_execute(store.best_state(), store.node_store, store.best_header, only_root,
                           store.genesis_hash, workers)
