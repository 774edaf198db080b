"""Crash safety of block import: SIGKILL a real importing process, again and again.

A worker process (tests/storage_crash_worker.py) imports pre-built blocks from a
block file into a chain database; the test kills it with SIGKILL at random
moments (fixed seed), sometimes before it has even opened the database; about
half the runs write each block's batch while executing the next one, as a
syncing node does (``import_block(durable=False)``). After
every kill the database must open, its best block must be one the worker fully
imported (body stored, state root recomputed from the stored trie equal to the
header's, flat state equal to the trie state), and the next run must carry on
from there.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import ROOT
from storage_crash_worker import (
    dev_genesis,
    make_block,
    recipient,
    registration_extrinsic,
    replayed_index,
)

from genesis import Genesis
from node.chain.blockfile import export_blocks
from node.chain.store import ChainStore
from runtime.crypto import blake2_256
from runtime.trie import compute_root, trie_items

WORKER = Path(__file__).resolve().with_name("storage_crash_worker.py")
BLOCKS = 300
MIN_KILLS = 20
TIME_BUDGET_S = 50.0
SENDERS = ("alice", "bob", "charlie", "dave", "eve", "ferdie")


def build_block_file(tmp_path: Path, genesis: Genesis) -> tuple[Path, list[bytes]]:
    """A chain of BLOCKS blocks of 1 to 48 transfers, exported to a block file."""
    rng = random.Random(7)
    path = tmp_path / "chain.blocks"
    with ChainStore.open(tmp_path / "builder", genesis) as builder:
        for n in range(BLOCKS):
            if n % 5 == 0:  # a work registration, which the node-side index lists
                registration = registration_extrinsic(builder, builder.best_hash,
                                                      SENDERS[n % len(SENDERS)], f"work {n}")
                built = make_block(builder, builder.best_hash, extrinsics=[registration])
                assert builder.import_block(built.executed).new_best
                continue
            count = rng.choice((1, 4, 16, 48))
            transfers = [(SENDERS[(n + i) % len(SENDERS)], recipient(rng.randrange(1000)),
                          10**9 + rng.randrange(10**9)) for i in range(count)]
            built = make_block(builder, builder.best_hash, transfers)
            assert builder.import_block(built.executed).new_best
        export_blocks(builder, path, 1, BLOCKS)
        hashes = [builder.hash_at(n) or b"" for n in range(BLOCKS + 1)]
    return path, hashes


def check_database(base: Path, genesis: Genesis, hashes: list[bytes]) -> int:
    """Open the database a killed worker left and check it holds whole blocks only."""
    with ChainStore.open(base, genesis) as store:
        best = store.best_header
        number = best.number
        assert store.best_hash == hashes[number]
        for n in range(number + 1):
            assert store.hash_at(n) == hashes[n]
        assert store.hash_at(number + 1) is None
        block = store.block(store.best_hash)
        assert block is not None and block.header == best
        assert store.events(store.best_hash) is not None
        for index, raw in enumerate(block.extrinsics):
            location = store.tx_location(blake2_256(raw))
            assert location is not None and location.block_hash == store.best_hash
            assert location.index == index
        trie = dict(trie_items(store.node_store, best.state_root))
        assert compute_root(trie) == best.state_root
        assert dict(store.iter_state_prefix(b"")) == trie
        # The node-side index, whatever it had reached, catches up with the best block.
        assert dict(store.iter_index_prefix(b"")) == replayed_index(store, genesis)
        return number


class Lines:
    """The worker's stdout, line by line, each read bounded by a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def next(self, timeout: float) -> str:
        """The next line, or "" if none comes in time (or the worker ended)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return ""
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return ""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


def end(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the worker by its PID (if still running) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=10)


@pytest.mark.slow
def test_sigkill_during_import_never_leaves_half_a_block(tmp_path: Path) -> None:
    started = time.monotonic()
    genesis = dev_genesis()
    block_file, hashes = build_block_file(tmp_path, genesis)
    base = tmp_path / "node"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(20240601)
    kills = 0
    best = 0
    finished = False
    while not finished:
        assert time.monotonic() - started < TIME_BUDGET_S, f"only {kills} kills in time"
        mode = ["--write-behind"] if rng.random() < 0.5 else []
        proc = subprocess.Popen([sys.executable, str(WORKER), str(base), str(block_file), *mode],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE)
        lines = Lines(proc)
        try:
            if kills >= MIN_KILLS or best == BLOCKS:
                # Enough kills: let this run import the rest of the file.
                line = lines.next(20)
                assert line.startswith("ready"), line
                while line.startswith(("ready", "imported")):
                    line = lines.next(30)
                assert line == f"done {BLOCKS}"
                assert proc.wait(timeout=10) == 0
                finished = True
            elif rng.random() < 0.15:
                # Kill while it starts up and opens (or first creates) the database.
                time.sleep(rng.uniform(0.0, 0.15))
                code = end(proc)
                kills += code == -signal.SIGKILL
            else:
                line = lines.next(20)
                assert line.startswith("ready"), line
                assert int(line.split()[1]) == best
                # Let it import a few blocks (however fast this machine is), then kill it
                # at a random moment while it goes on.
                target = best + rng.randint(1, 12)
                while line.startswith(("ready", "imported")) and int(line.split()[1]) < target:
                    line = lines.next(20)
                time.sleep(rng.uniform(0.0, 0.01))
                code = end(proc)
                assert code in (0, -signal.SIGKILL), code
                kills += code == -signal.SIGKILL
        finally:
            end(proc)
        number = check_database(base, genesis, hashes)
        assert number >= best, "a synced import was lost"
        best = number
    assert kills >= MIN_KILLS
    assert best == BLOCKS
