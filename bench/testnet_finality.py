"""Benchmark: finality latency of ``opus testnet --validators N`` on this machine.

Starts the real launcher (N validator processes with generated keys, 127.0.0.1), waits
until every node answers and has finalized ``--warmup`` blocks, then for ``--seconds``
polls node1's finalized head every ``POLL_S`` and records, for each block finalized,
the time from the start of the block's slot (its timestamp) until node1 reports it
finalized. Also measured over the same window: blocks authored per slot (1.0: no slot
missed), the CPU the N node processes used (in cores, from /proc), and which
authorities' precommits the justifications on the chain hold (all N: every validator
votes). Ends the launcher (and so every node) by its PID. Prints one JSON line.

    .venv/bin/python -m bench.testnet_finality --validators 4
    .venv/bin/python -m bench.testnet_finality --validators 10 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from runtime import codec
from runtime.block import Justification
from runtime.codec import from_hex0x

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.1
RPC_NOT_READY = (OSError, urllib.error.URLError, ValueError, KeyError, TypeError)


def rpc(port: int, method: str, params: list[Any] | None = None) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": params or []}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise ValueError(f"{method}: {answer['error']}")
    return answer["result"]


def finalized(port: int) -> int:
    return int(rpc(port, "chain_getHeader", [rpc(port, "chain_getFinalizedHead")])["number"], 16)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def precommit_signers(port: int, numbers: range) -> set[str]:
    """The authorities (hex) whose precommits any justification of these blocks holds."""
    signers: set[str] = set()
    for number in numbers:
        block = rpc(port, "chain_getBlock", [rpc(port, "chain_getBlockHash", [number])])
        for engine, encoded in block["justifications"] or []:
            if engine == "FRNK":
                justification = codec.decode(from_hex0x(encoded), Justification)
                signers.update(p.authority.hex() for p in justification.precommits)
    return signers


def wait(condition: Any, timeout: float, what: str, launcher: subprocess.Popen[bytes],
         out: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if launcher.poll() is not None:
            raise SystemExit(f"the launcher exited ({launcher.returncode}):\n{out.read_text()}")
        try:
            if condition():
                return
        except RPC_NOT_READY:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def run(validators: int, slot_ms: int | None, seconds: float, warmup: int,
        workdir: Path) -> dict[str, Any]:
    out = workdir / "launcher.out"
    argv = [sys.executable, "-m", "node.cli", "testnet", "--validators", str(validators),
            "--base-dir", str(workdir / "net")]
    if slot_ms is not None:
        argv += ["--slot-ms", str(slot_ms)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(workdir / "data"))
    with out.open("wb") as log:
        launcher = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
    try:
        wait(lambda: "nodes are up" in out.read_text(), 60 + 10 * validators, "the nodes",
             launcher, out)
        manifest = json.loads((workdir / "net" / "testnet.json").read_text())
        ports = [n["rpc_port"] for n in manifest["nodes"]]
        pids = [n["pid"] for n in manifest["nodes"]]
        slot_s = manifest["slotMs"] / 1000
        node1 = ports[0]
        wait(lambda: all(finalized(p) >= warmup for p in ports), 60 + 30 * slot_s * warmup,
             f"#{warmup} finalized on every node", launcher, out)
        seen: dict[int, float] = {}
        last = finalized(node1)
        start_best = int(rpc(node1, "chain_getHeader")["number"], 16)
        cpu_start, started = cpu_seconds(pids), time.monotonic()
        while time.monotonic() - started < seconds:
            number = finalized(node1)
            now = time.time()
            for n in range(last + 1, number + 1):
                seen[n] = now
            last = max(last, number)
            time.sleep(POLL_S)
        elapsed = time.monotonic() - started
        cores = (cpu_seconds(pids) - cpu_start) / elapsed
        end_best = int(rpc(node1, "chain_getHeader")["number"], 16)
        latencies = []
        for n, when in seen.items():
            header = rpc(node1, "chain_getHeader", [rpc(node1, "chain_getBlockHash", [n])])
            latencies.append(when - header["timestamp"] / 1000)
        signers = precommit_signers(node1, range(1, last + 1))
        authorities = len(json.loads((workdir / "net" / "spec.json").read_text())
                          ["genesis"]["authorities"])
        return {
            "bench": "testnet_finality", "validators": validators, "slotMs": manifest["slotMs"],
            "seconds": round(elapsed, 1), "finalizedBlocks": len(seen),
            "latencyMedianS": round(statistics.median(latencies), 2) if latencies else None,
            "latencyMaxS": round(max(latencies), 2) if latencies else None,
            "latencyMedianSlots": (round(statistics.median(latencies) / slot_s, 2)
                                   if latencies else None),
            "blocksPerSlot": round((end_best - start_best) / (elapsed / slot_s), 2),
            "nodeCpuCores": round(cores, 2),
            "precommitSigners": len(signers), "authorities": authorities,
        }
    finally:
        if launcher.poll() is None:
            os.kill(launcher.pid, signal.SIGINT)
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(launcher.pid, signal.SIGKILL)
                launcher.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--slot-ms", type=int, help="default: the launcher's for N")
    parser.add_argument("--seconds", type=float, default=90.0, help="measuring window")
    parser.add_argument("--warmup", type=int, default=3,
                        help="blocks finalized on every node before measuring")
    parser.add_argument("--workdir", help="default: a new temporary directory")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="opus-bench-testnet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.validators, args.slot_ms, args.seconds, args.warmup, workdir)))


if __name__ == "__main__":
    main()
