"""Benchmark: how fast a node that starts late syncs a chain from a peer.

Two real ``opus`` processes on 127.0.0.1: a full node that holds the chain (it
imports a block file first) and a fresh full node whose only boot node is the
first. The fresh node syncs over libp2p (Noise, Yamux, the ``/sync/1``
request/response protocol) and imports every block with full verification.
Measured on two chains:

1. ``--empty-blocks`` empty blocks of a 4-authority chain, each carrying a
   justification signed by 3 of the 4 authorities (the syncing node checks
   every one): the sync rate in blocks per second (goal: at least 200).
2. The import benchmark's mixed workload (``bench.import_blocks``, same
   options): the sync rate in transactions per second, and in the same run the
   import benchmark's rate on the same block file, just before and just after
   the sync, and the ratio of the sync rate to their mean (goal: at least 0.8).

The rate is taken from the syncing node's first imported block to its last
(RPC polled every 20 ms), so it excludes process start-up and connection set-up,
which are reported apart (and the rate from the moment the node's RPC answered,
which includes them and the first fetch). Prints one JSON line.

    .venv/bin/python -m bench.sync
    .venv/bin/python -m bench.sync --empty-blocks 3000 --blocks 0     # empty chain only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import import_blocks as import_bench
from genesis.builder import build_genesis
from genesis.spec import ChainSpec, local_spec, spec_to_json
from node import nodekey
from node.chain.blockfile import export_blocks
from node.chain.store import ChainStore
from runtime.block import Justification, sign_precommit
from runtime.crypto import dev_keypair
from runtime.execution import build_block

HOST = "127.0.0.1"
AUTHORITIES = ("alice", "bob", "charlie", "dave")
EMPTY_SLOT_MS = 2000
POLL_S = 0.02
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# The chains


def build_empty_chain(blocks: int, workdir: Path, block_file: Path) -> ChainSpec:
    """``blocks`` empty blocks by the 4 authorities in turn, each with a justification."""
    spec = local_spec(len(AUTHORITIES), EMPTY_SLOT_MS)
    genesis = build_genesis(spec)
    keys = [dev_keypair(name) for name in AUTHORITIES]
    with ChainStore.open(workdir / "empty-builder", genesis) as store:
        for number in range(1, blocks + 1):
            slot = number
            author = keys[slot % len(keys)]
            built = build_block(store.best_state(), store.node_store, store.best_header, [],
                                timestamp=slot * EMPTY_SLOT_MS, author=author,
                                genesis_hash=genesis.hash)
            store.import_block(built.executed)
            header = built.executed.block.header
            precommits = tuple(sign_precommit(key, number, 0, header) for key in keys[:3])
            store.set_justification(header.hash,
                                    Justification(number, 0, header.hash, number, precommits))
            store.set_finalized(header.hash)
        export_blocks(store, block_file, 1, blocks)
    return spec


def write_spec(spec: ChainSpec, path: Path) -> Path:
    path.write_text(json.dumps(spec_to_json(spec)))
    return path


# ---------------------------------------------------------------------------
# The nodes


def opus(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.cli", *args]


def rpc(port: int, method: str, params: list[Any] | None = None) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": params or []}).encode()
    request = urllib.request.Request(f"http://{HOST}:{port}", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def best_number(port: int) -> int | None:
    try:
        return int(rpc(port, "chain_getHeader")["number"], 16)
    except OSError:
        return None


class NodeProcess:
    def __init__(self, name: str, spec: Path, base: Path, log: Path, *extra: str) -> None:
        self.name = name
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.key_file = base.with_name(base.name + ".key")
        nodekey.write_key_file(self.key_file, nodekey.generate())
        self.peer_id = nodekey.peer_id(nodekey.read_key_file(self.key_file))
        self.log = log
        command = opus("--chain", str(spec), "--base-path", str(base), "--port",
                       str(self.p2p_port), "--rpc-port", str(self.rpc_port), "--no-prometheus",
                       "--node-key-file", str(self.key_file), "--name", name, *extra)
        self.started = time.monotonic()
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{HOST}/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    def wait_answering(self) -> float:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while best_number(self.rpc_port) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def sync_run(label: str, spec_file: Path, block_file: Path, target: int,
             workdir: Path) -> dict[str, Any]:
    """Import ``block_file`` into a serving node, start a fresh node, time its sync."""
    serving_base = workdir / f"{label}-serving"
    started = time.monotonic()
    subprocess.run(opus("import-blocks", "--chain", str(spec_file), "--base-path",
                        str(serving_base), str(block_file)), check=True, capture_output=True)
    prepare_seconds = time.monotonic() - started
    serving = NodeProcess(f"{label}-serving", spec_file, serving_base,
                          workdir / f"{label}-serving.log")
    syncing: NodeProcess | None = None
    try:
        serving.wait_answering()
        syncing = NodeProcess(f"{label}-syncing", spec_file, workdir / f"{label}-syncing",
                              workdir / f"{label}-syncing.log", "--bootnodes", serving.multiaddr)
        rpc_up = syncing.wait_answering()
        rpc_up_at = time.monotonic()
        first_number = first_at = None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S + target  # at least 1 block/s
        while True:
            number = best_number(syncing.rpc_port) or 0
            now = time.monotonic()
            if number > 0 and first_at is None:
                first_number, first_at = number, now
            if number >= target:
                break
            if now > deadline or syncing.process.poll() is not None:
                raise RuntimeError(f"{label}: sync stalled at #{number} of #{target}:\n"
                                   f"{syncing.log.read_text()[-3000:]}")
            time.sleep(POLL_S)
        assert first_at is not None and first_number is not None
        seconds = now - first_at
        log_text = syncing.log.read_text()
    finally:
        for node in (syncing, serving):
            if node is not None:
                node.stop()
    reported = [float(rate) for rate in re.findall(r"Synced \d+ blocks .*?\(([\d.]+) bps\)",
                                                   log_text)]
    return {
        "blocks": target,
        "serving_node_import_seconds": round(prepare_seconds, 1),
        "syncing_node_rpc_up_seconds": round(rpc_up, 2),
        "first_block_after_start_seconds": round(first_at - syncing.started, 2),
        "sync_seconds": round(seconds, 3),
        "blocks_timed": target - first_number,  # the first one landed as the clock started
        "blocks_per_second": round((target - first_number) / seconds, 1) if seconds else None,
        # from the moment its RPC answered: connection, handshake and first fetch included
        "blocks_per_second_from_rpc_up": round(target / (now - rpc_up_at), 1),
        "logged_bps": reported,
    }


def import_rate(args: argparse.Namespace, block_file: Path, workdir: Path) -> int:
    """The import benchmark's transactions per second on ``block_file`` (its own process)."""
    workdir.mkdir(exist_ok=True)
    return int(import_bench.import_in_subprocess(args, block_file, workdir)["txs_per_second"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--empty-blocks", type=int, default=3000)
    parser.add_argument("--preload-works", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=40,
                        help="mixed-workload blocks (0: none); 40 blocks need two sync responses")
    parser.add_argument("--txs-per-block", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, help="keep databases and logs here")
    args = parser.parse_args(argv)
    args.workload = "mixed"

    result: dict[str, Any] = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="opus-sync-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.empty_blocks:
            block_file = workdir / "empty.opus"
            spec = build_empty_chain(args.empty_blocks, workdir, block_file)
            result["empty"] = sync_run("empty", write_spec(spec, workdir / "empty-spec.json"),
                                       block_file, args.empty_blocks, workdir)
        if args.blocks:
            block_file = workdir / "mixed.opus"
            import_bench.build_blocks(args, workdir, block_file)
            spec = import_bench.bench_spec(args.preload_works, args.accounts)
            # The import benchmark on the same file just before and just after the sync:
            # the machine's load moves, and the ratio is to their mean.
            before = import_rate(args, block_file, workdir / "import-before")
            mixed = sync_run("mixed", write_spec(spec, workdir / "mixed-spec.json"), block_file,
                             args.blocks, workdir)
            after = import_rate(args, block_file, workdir / "import-after")
            mixed["extrinsics"] = args.blocks * args.txs_per_block
            mixed["txs_per_second"] = round(
                mixed["blocks_timed"] * args.txs_per_block / mixed["sync_seconds"])
            mixed["import_benchmark_txs_per_second"] = [before, after]
            mixed["sync_to_import_ratio"] = round(
                mixed["txs_per_second"] / ((before + after) / 2), 3)
            result["mixed"] = mixed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
