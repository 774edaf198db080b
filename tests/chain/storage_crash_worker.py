"""Chain-building helpers for the storage tests, and the crash-safety worker process.

As a script::

    python tests/storage_crash_worker.py BASE_PATH BLOCK_FILE [--write-behind]

opens the chain database at ``BASE_PATH`` (dev genesis), prints ``ready <best
number>`` and then imports the blocks of ``BLOCK_FILE`` that come after its
best block, one synced batch each, executing each with ``execute_block``
(with ``--write-behind``, each batch is written while the next block executes,
as a syncing node does). It prints ``imported <number>`` after each block and
``done <best number>`` when the file is exhausted. The crash test kills it with
SIGKILL at random moments.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from genesis import Genesis, build_genesis, dev_spec
from node.chain import indexes
from node.chain.blockfile import import_blocks
from node.chain.store import ChainStore
from runtime import codec
from runtime.crypto import dev_keypair, sha256
from runtime.execution import BuiltBlock, build_block, execute_block
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules import balances, provenance, system
from runtime.state import MemoryState
from runtime.support import make_call

SLOT_MS = 2000
Transfer = tuple[str, bytes, int]  # (sender dev name, destination account, amount)


def dev_genesis() -> Genesis:
    return build_genesis(dev_spec())


def transfer_extrinsics(store: ChainStore, parent_hash: bytes,
                        transfers: Sequence[Transfer]) -> list[bytes]:
    """Signed, encoded transfers with consecutive nonces from the parent's state."""
    state = store.state_at(parent_hash)
    nonces: dict[str, int] = {}
    out = []
    for sender, dest, amount in transfers:
        key = dev_keypair(sender)
        if sender not in nonces:
            nonces[sender] = system.account_info(state, key.public).nonce
        ext = sign_extrinsic(key, make_call(balances.TransferArgs(dest, amount)),
                             nonces[sender], store.genesis_hash, SPEC_VERSION)
        nonces[sender] += 1
        out.append(codec.encode(ext))
    return out


def registration_extrinsic(store: ChainStore, parent_hash: bytes, sender: str,
                           title: str) -> bytes:
    """A signed registration of a new text work by ``sender`` (which the index lists)."""
    key = dev_keypair(sender)
    nonce = system.account_info(store.state_at(parent_hash), key.public).nonce
    args = provenance.RegisterWork(sha256(title.encode()), provenance.WorkKind.TEXT, title, "",
                                   None, (provenance.Split(key.public, 10_000),), ())
    return codec.encode(sign_extrinsic(key, make_call(args), nonce, store.genesis_hash,
                                       SPEC_VERSION))


def replayed_index(store: ChainStore, genesis: Genesis) -> dict[bytes, bytes]:
    """The node-side index folded from scratch over the best chain's stored events."""
    index = MemoryState(indexes.genesis_index(genesis.state))
    for number in range(1, store.best_header.number + 1):
        block_hash = store.hash_at(number)
        assert block_hash is not None
        events = store.events(block_hash)
        assert events is not None
        before: dict[bytes, bytes | None] = {}
        writes = indexes.index_changes(index.get, number, events, before)
        # The undo log holds the old value of exactly the keys written.
        assert before == {key: index.get(key) for key in writes}
        index.apply(writes)
    return index.items


def make_block(store: ChainStore, parent_hash: bytes, transfers: Sequence[Transfer] = (), *,
               slot: int | None = None, extrinsics: Sequence[bytes] | None = None) -> BuiltBlock:
    """Author (alice, the dev chain's only authority) a block on a stored parent."""
    parent = store.header(parent_hash)
    assert parent is not None
    if extrinsics is None:
        extrinsics = transfer_extrinsics(store, parent_hash, transfers)
    if slot is None:
        slot = parent.slot + 1
    built = build_block(store.state_at(parent_hash), store.node_store, parent, extrinsics,
                        timestamp=slot * SLOT_MS, author=dev_keypair("alice"),
                        genesis_hash=store.genesis_hash)
    assert not built.invalid and not built.deferred, (built.invalid, built.deferred)
    return built


def recipient(i: int) -> bytes:
    """A fresh account per index, so blocks also insert new state keys."""
    return (i % 50).to_bytes(4, "big") + bytes(28)


def build_chain(store: ChainStore, count: int, txs_per_block: int) -> list[bytes]:
    """Extend the best chain by ``count`` blocks of transfers; returns their hashes."""
    senders = ("alice", "bob", "charlie", "dave", "eve", "ferdie")
    hashes = []
    for n in range(count):
        transfers = [(senders[(n + i) % len(senders)], recipient(n * txs_per_block + i),
                      10**12 + i) for i in range(txs_per_block)]
        built = make_block(store, store.best_hash, transfers)
        result = store.import_block(built.executed)
        assert result.new_best
        hashes.append(result.hash)
    return hashes


def main(argv: Sequence[str]) -> int:
    base, block_file = argv[1], argv[2]
    durable = "--write-behind" not in argv[3:]
    genesis = dev_genesis()
    with ChainStore.open(base, genesis) as store:
        print("ready", store.best_header.number, flush=True)
        for block in import_blocks(block_file):
            if block.number <= store.best_header.number:
                continue
            parent = store.best_header
            executed = execute_block(store.best_state(), store.node_store, parent, block,
                                     genesis.hash)
            result = store.import_block(executed, durable=durable)
            assert result.new_best
            print("imported", block.number, flush=True)
        store.flush()
        print("done", store.best_header.number, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
