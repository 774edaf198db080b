"""A real local testnet: ``opus testnet --validators 4`` (one launcher, four ``opus`` processes on
127.0.0.1) finalizes together across processes, carries a transaction to every node, survives a
killed validator, lets a late full node sync, and stalls then resumes finality when two of four
validators stop.

The tests share one testnet (module fixture) and run in file order; each starts by waiting for
all four validators to be up and finalizing, and leaves them so. Every process is ended by its
PID, every wait is bounded, only 127.0.0.1 is used. Measured figures are printed (``pytest -s``)
as ``[measure] …`` lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from processes import ROOT, RPC_NOT_READY, free_port, rpc_call

from node.informant import FINALITY_LAG_WARNING_BLOCKS, INFORMANT_INTERVAL_S
from runtime import codec, executive
from runtime.codec import hex0x
from runtime.crypto import DEV_ACCOUNT_NAMES, Keypair, dev_keypair, encode_address
from runtime.extrinsic import sign_extrinsic
from runtime.finality_types import VoterRecord
from runtime.modules import balances
from runtime.support import make_call

pytestmark = pytest.mark.slow

VALIDATORS = 4
SLOT_MS = 1000
SLOT_S = SLOT_MS / 1000
STARTUP_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 25
ONE = 10**12


def measure(text: str) -> None:
    print(f"[measure] {text}", flush=True)


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (a launcher's child stays a zombie until the launcher reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@dataclass
class NodeHandle:
    """One node of the testnet: started by the launcher, or (re)started by a test."""

    name: str
    rpc_port: int
    base_path: Path
    log_path: Path
    command: list[str]
    pid: int
    multiaddr: str = ""
    proc: subprocess.Popen[bytes] | None = None  # set when this test process started it
    log_offset: int = 0  # where the current run's log starts
    finished: list[int] = field(default_factory=list)

    def rpc(self, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
        return rpc_call(self.rpc_port, method, params, timeout)

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return pid_running(self.pid)

    def log(self, *, current_run: bool = False) -> str:
        data = self.log_path.read_bytes()
        return data[self.log_offset if current_run else 0:].decode(errors="replace")

    def best(self) -> tuple[int, str]:
        block_hash = self.rpc("chain_getBlockHash")
        return int(self.rpc("chain_getHeader", [block_hash])["number"], 16), block_hash

    def finalized(self) -> tuple[int, str]:
        block_hash = self.rpc("chain_getFinalizedHead")
        return int(self.rpc("chain_getHeader", [block_hash])["number"], 16), block_hash

    def hash_at(self, number: int) -> str | None:
        result: str | None = self.rpc("chain_getBlockHash", [number])
        return result

    def hashes(self, start: int, end: int) -> list[str | None]:
        out: list[str | None] = []
        for low in range(start, end + 1, 1000):
            out += self.rpc("chain_getBlockHash", [list(range(low, min(end, low + 999) + 1))])
        return out

    def answers(self) -> bool:
        try:
            self.rpc("system_health", timeout=2)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True

    def vote_round(self) -> int:
        """The last round this validator recorded a vote in (its durable vote record)."""
        path = self.base_path / "finality" / "votes"
        if not path.exists():
            return 0
        record: VoterRecord = codec.decode(path.read_bytes(), VoterRecord)
        return int(record.round)

    def start(self) -> None:
        """(Re)start it with the exact command line the launcher used, appending to its log."""
        assert not self.running, f"{self.name} is still running"
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def stop(self, signum: int = signal.SIGINT) -> int | None:
        """Signal it by PID and wait until it is gone; its exit code when we started it."""
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.pid, signum)
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=EXIT_TIMEOUT_S)
                pytest.fail(f"{self.name} (PID {self.pid}) did not stop on signal {signum}")
            self.finished.append(code)
            return code
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while pid_running(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                pytest.fail(f"{self.name} (PID {self.pid}) did not stop on signal {signum}")
            time.sleep(0.1)
        return None

    def kill(self) -> None:
        """Last resort (teardown): SIGKILL by PID if still running."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait(timeout=EXIT_TIMEOUT_S)


class Testnet:
    __test__ = False  # not a test class

    def __init__(self, base: Path) -> None:
        self.base = base
        self.out_path = base / "launcher.out"
        self.launcher_out = open(self.out_path, "wb")
        # The user's data dir, where the launcher records the last testnet: the test's own.
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(base / "data"))
        env = self.env
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "testnet", "--validators", str(VALIDATORS),
             "--base-dir", str(base), "--slot-ms", str(SLOT_MS)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.launcher_out,
            stderr=subprocess.STDOUT, env=env)
        self.nodes: dict[str, NodeHandle] = {}
        self.extra: list[NodeHandle] = []
        self.manifest: dict[str, Any] = {}

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "nodes are up" not in self.output:
            if self.launcher.poll() is not None:
                pytest.fail(f"the launcher exited ({self.launcher.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"the testnet did not come up:\n{self.output}")
            time.sleep(0.2)
        self.manifest = json.loads((self.base / "testnet.json").read_text())
        for entry in self.manifest["nodes"]:
            self.nodes[entry["name"]] = NodeHandle(
                entry["name"], entry["rpc_port"], Path(entry["base_path"]), Path(entry["log"]),
                entry["command"], entry["pid"],
                f"/ip4/127.0.0.1/tcp/{entry['p2p_port']}/p2p/{entry['peer_id']}")

    def all(self) -> list[NodeHandle]:
        return [*self.nodes.values(), *self.extra]

    def report(self) -> str:
        lines = []
        for node in self.all():
            try:
                state = f"best {node.best()[0]}, finalized {node.finalized()[0]}"
            except (OSError, urllib.error.URLError, ValueError, AssertionError) as e:
                state = f"unreachable ({e})"
            tail = "\n      ".join(node.log().splitlines()[-12:])
            lines.append(f"  {node.name} (PID {node.pid}, running={node.running}): {state}\n"
                         f"      {tail}")
        return "\n".join(lines)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll until ``condition()``; returns the seconds it took (fails with every node's
        state and log tail after ``timeout``). RPC errors count as "not yet"."""
        started = time.monotonic()
        while True:
            try:
                if condition():
                    return time.monotonic() - started
            except RPC_NOT_READY:
                pass
            if time.monotonic() - started > timeout:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                            f"{self.report()}")
            time.sleep(0.1)

    def validators(self, *names: str) -> list[NodeHandle]:
        return [self.nodes[n] for n in names] if names else list(self.nodes.values())

    def min_finalized(self, nodes: list[NodeHandle]) -> int:
        return min(node.finalized()[0] for node in nodes)

    def agree_at(self, nodes: list[NodeHandle], height: int) -> bool:
        """Every node has finalized ``height`` and has the same block there."""
        if any(node.finalized()[0] < height for node in nodes):
            return False
        return len({node.hash_at(height) for node in nodes}) == 1

    def wait_healthy(self, timeout: float = 45) -> None:
        """All four validators running, answering and finalizing together."""
        nodes = self.validators()
        assert all(node.running for node in nodes), self.report()
        target = 0

        def finalizing() -> bool:
            nonlocal target
            if not target:
                target = max(n.best()[0] for n in nodes) + 1
            return self.agree_at(nodes, target)

        self.wait_for(finalizing, timeout, "all validators finalizing together")

    def assert_no_conflicting_finality(self, nodes: list[NodeHandle]) -> int:
        """No two nodes report different blocks at a height both have finalized."""
        finalized = {node.name: node.finalized() for node in nodes}
        chains = {node.name: node.hashes(0, finalized[node.name][0]) for node in nodes}
        for node in nodes:
            number, block_hash = finalized[node.name]
            assert chains[node.name][number] == block_hash
        for a in nodes:
            for b in nodes:
                common = min(finalized[a.name][0], finalized[b.name][0])
                assert chains[a.name][:common + 1] == chains[b.name][:common + 1], \
                    f"{a.name} and {b.name} finalized different blocks below #{common}"
        return min(number for number, _ in finalized.values())

    def status_output(self, *, base_dir: bool = True) -> str:
        """``opus testnet status`` (without ``--base-dir``: the last testnet launched)."""
        argv = ["--base-dir", str(self.base)] if base_dir else []
        result = subprocess.run(
            [sys.executable, "-m", "node.cli", "testnet", "status", *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def close(self) -> None:
        """Teardown: end whatever is still running, each by its PID."""
        for node in self.all():
            if node.proc is not None and node.running:
                node.stop(signal.SIGINT)
        if self.launcher.poll() is None:
            os.kill(self.launcher.pid, signal.SIGINT)
            try:
                self.launcher.wait(timeout=EXIT_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                os.kill(self.launcher.pid, signal.SIGKILL)
                self.launcher.wait(timeout=EXIT_TIMEOUT_S)
        for node in self.all():
            node.kill()
        self.launcher_out.close()


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    net = Testnet(tmp_path_factory.mktemp("testnet"))
    try:
        net.wait_up()
        yield net
    finally:
        net.close()


# ---------------------------------------------------------------------------
# (a) four validators finalize together; a transaction reaches every node


def transfer(node: NodeHandle, key: Keypair, dest: bytes, amount: int) -> tuple[str, str]:
    """Sign a balances transfer with ``key`` for ``node``'s chain; (extrinsic hex, tx hash)."""
    genesis_hash = bytes.fromhex(node.rpc("chain_getBlockHash", [0])[2:])
    nonce = node.rpc("system_accountNextIndex", [encode_address(key.public)])
    ext = sign_extrinsic(key, make_call(balances.TransferArgs(dest, amount)), nonce,
                         genesis_hash, executive.SPEC_VERSION)
    raw = hex0x(codec.encode(ext))
    return raw, node.rpc("author_submitExtrinsic", [raw])


def test_four_validators_finalize_together_and_carry_a_transaction(testnet: Testnet) -> None:
    nodes = testnet.validators()
    # The launcher printed every node's name, RPC URL and dialable address; the spec it
    # wrote carries them all as boot nodes (the nodes get no --bootnodes), and its
    # authorities are the generated keys of the manifest, not dev keys.
    spec = json.loads(Path(testnet.manifest["spec"]).read_text())
    assert spec["bootNodes"] == [node.multiaddr for node in nodes]
    assert spec["genesis"]["authorities"] == [e["key"] for e in testnet.manifest["nodes"]]
    assert not {dev_keypair(n).address for n in DEV_ACCOUNT_NAMES} & \
        set(spec["genesis"]["authorities"])
    for node in nodes:
        assert node.name in testnet.output and f"http://127.0.0.1:{node.rpc_port}" in \
            testnet.output and node.multiaddr in testnet.output
        assert "--bootnodes" not in node.command and "--validator" in node.command

    # Finality across processes: every node finalizes the same block at a height >= 3.
    testnet.wait_for(lambda: testnet.min_finalized(nodes) >= 3, STARTUP_TIMEOUT_S,
                     "finalized #3 on every node")
    height = testnet.min_finalized(nodes)
    assert testnet.agree_at(nodes, height)
    status = testnet.status_output(base_dir=False)  # found through the last-testnet record
    assert f"Testnet in {testnet.base}" in status
    for node in nodes:
        line = next(ln for ln in status.splitlines() if ln.startswith(node.name + " "))
        assert "UNREACHABLE" not in line and re.search(r"#\d+ \(0x", line), status
        assert "stalled" not in line and line.endswith(node.multiaddr), status

    # Finality latency, in slots from authoring (the block's slot start) to finalized on node1.
    node1 = testnet.nodes["node1"]
    seen: dict[int, float] = {}
    last, _ = node1.finalized()
    deadline = time.monotonic() + 8 * SLOT_S
    while time.monotonic() < deadline:
        number, _ = node1.finalized()
        now = time.time()
        for n in range(last + 1, number + 1):
            seen[n] = now
        last = max(last, number)
        time.sleep(0.05)
    assert seen, "nothing was finalized in 8 slots"
    latencies = []
    for n, when in seen.items():
        header = node1.rpc("chain_getHeader", [node1.hash_at(n)])
        latencies.append((when - header["timestamp"] / 1000) / SLOT_S)
    measure(f"finality latency (4 validators, {SLOT_MS} ms slots): median "
            f"{statistics.median(latencies):.2f} slots, max {max(latencies):.2f} slots "
            f"over {len(latencies)} blocks")
    assert statistics.median(latencies) <= 2, latencies  # the goal: within 2 slots

    # A transfer submitted to node1 is included in a block that every node has.
    dest = Keypair.from_seed(os.urandom(32)).public
    raw, tx_hash = transfer(node1, dev_keypair("alice"), dest, 5 * ONE)
    found: dict[str, Any] = {}

    def in_block_on_node1() -> bool:
        info = node1.rpc("opus_getTransaction", [tx_hash])
        if info and info.get("blockHash"):
            found.update(info)
        return bool(found)

    included = testnet.wait_for(in_block_on_node1, 20 * SLOT_S, "the transfer in a block")
    assert found["success"] is True, found
    block_hash = found["blockHash"]

    def on_every_node() -> bool:
        for node in nodes:
            block = node.rpc("chain_getBlock", [block_hash])
            if block is None:
                return False
            assert raw in block["block"]["extrinsics"]
        return True

    everywhere = testnet.wait_for(on_every_node, 10 * SLOT_S, "the transfer's block on all")
    everywhere += included
    final = testnet.wait_for(
        lambda: all(n.rpc("opus_getTransaction", [tx_hash])["status"] == "finalized"
                    for n in nodes), 15 * SLOT_S, "the transfer finalized on all")
    final += everywhere
    for node in nodes:
        info = node.rpc("opus_getTransaction", [tx_hash])
        assert info["blockHash"] == block_hash and info["success"] is True, (node.name, info)
        assert node.rpc("opus_accountInfo", [encode_address(dest)])["free"] == str(5 * ONE)
    measure(f"tx inclusion: in a block on node1 after {included:.2f} s "
            f"({included / SLOT_S:.1f} slots), in that block on all 4 nodes after "
            f"{everywhere:.2f} s, finalized on all after {final:.2f} s")


# ---------------------------------------------------------------------------
# (b) kill one validator: finality goes on with three; it restarts, catches up, votes again


def test_killed_validator_rejoins_without_equivocating(testnet: Testnet) -> None:
    testnet.wait_healthy()
    victim = testnet.nodes["node3"]
    others = testnet.validators("node1", "node2", "node4")
    round_before = victim.vote_round()
    assert round_before > 0, "node3 has not voted yet"

    victim.stop(signal.SIGKILL)
    status = testnet.status_output()
    line = next(ln for ln in status.splitlines() if ln.startswith("node3 "))
    assert "UNREACHABLE" in line, status

    # Three of four (the threshold is 4 - floor(3/3) = 3) keep finalizing.
    start = testnet.min_finalized(others)
    took = testnet.wait_for(lambda: testnet.agree_at(others, start + 3), 15 * SLOT_S,
                            "finality to advance by 3 without node3")
    measure(f"with 3 of 4 validators: 3 more blocks finalized in {took:.2f} s")

    # Restart it on the same base path: it catches up with the finalized chain...
    victim.start()
    restarted = time.monotonic()
    testnet.wait_for(victim.answers, STARTUP_TIMEOUT_S, "node3 to answer after its restart")
    target = testnet.min_finalized(others)
    took = testnet.wait_for(lambda: testnet.agree_at([*others, victim], target),
                            STARTUP_TIMEOUT_S, "node3 to catch up with the finalized chain")
    measure(f"restarted validator caught up with finalized #{target} {took:.2f} s after "
            f"answering RPC ({time.monotonic() - restarted:.2f} s after its start)")
    # ... and votes again: its durable vote record moves on to new rounds.
    round_after_restart = victim.vote_round()
    assert round_after_restart >= round_before
    testnet.wait_for(lambda: victim.vote_round() >= round_after_restart + 2, 20 * SLOT_S,
                     "node3 to vote in new rounds")
    later = testnet.min_finalized(others) + 2
    testnet.wait_for(lambda: testnet.agree_at([*others, victim], later), 20 * SLOT_S,
                     "all four to finalize together again")

    # Nobody saw an equivocation (neither two blocks in a slot nor two votes in a round).
    for node in testnet.validators():
        assert node.rpc("opus_getEquivocations") == [], node.name
        assert "Equivocation" not in node.log(), node.name
    testnet.assert_no_conflicting_finality(testnet.validators())


# ---------------------------------------------------------------------------
# (c) a late full node syncs, checks the justifications and follows finality


def test_late_full_node_syncs_and_follows_finality(testnet: Testnet) -> None:
    testnet.wait_healthy()
    node1 = testnet.nodes["node1"]
    base = testnet.base / "node5"
    p2p, rpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "node.cli", "--chain", testnet.manifest["spec"],
        "--base-path", str(base), "--name", "node5", "--port", str(p2p),
        "--listen-addr", f"/ip4/127.0.0.1/tcp/{p2p}", "--rpc-port", str(rpc_port),
        "--prometheus-port", str(free_port()),
        "--bootnodes", *[n.multiaddr for n in testnet.validators()],
    ]
    late = NodeHandle("node5", rpc_port, base, testnet.base / "node5.log", command, 0)
    testnet.extra.append(late)
    target, _ = node1.best()
    late.start()
    started = time.monotonic()
    testnet.wait_for(late.answers, STARTUP_TIMEOUT_S, "node5 to answer")
    answering = time.monotonic() - started
    took = testnet.wait_for(lambda: late.best()[0] >= target, STARTUP_TIMEOUT_S,
                            f"node5 to sync to #{target}")
    synced = re.search(r"Synced (\d+) blocks from \S+ in ([\d.]+) s \(([\d.]+) bps\)",
                       late.log())
    measure(f"late full node: at #{target} {took:.2f} s after its RPC came up (which took "
            f"{answering:.2f} s from its start); sync log: "
            f"{synced.group(0) if synced else 'no sync summary'}")

    # Its finalized head matches the others', and it keeps following finality after the sync.
    validators = testnet.validators()
    later = testnet.min_finalized(validators) + 3
    testnet.wait_for(lambda: testnet.agree_at([*validators, late], later), 20 * SLOT_S,
                     f"node5 to finalize #{later} with the validators")
    number, block_hash = late.finalized()
    assert block_hash == node1.hash_at(number)

    # The synced blocks came with justifications that it checked and stored: every finalized
    # block it took from a peer's sync response carries one.
    with_justification = 0
    for n in range(1, min(target, number) + 1):
        block = late.rpc("chain_getBlock", [late.hash_at(n)])
        with_justification += block["justifications"] is not None
    assert with_justification > 0
    assert "Ignoring justification" not in late.log()
    assert late.rpc("opus_getEquivocations") == []
    testnet.assert_no_conflicting_finality([*validators, late])
    assert late.stop(signal.SIGINT) == 0
    assert "Traceback" not in late.log()


# ---------------------------------------------------------------------------
# (d) two of four stop: finality stalls; they come back: it resumes; nothing conflicts


def test_finality_stalls_without_two_thirds_and_resumes(testnet: Testnet) -> None:
    testnet.wait_healthy()
    up = testnet.validators("node1", "node2")
    down = testnet.validators("node3", "node4")
    node1 = testnet.nodes["node1"]
    log_mark = len(node1.log())
    for node in down:
        node.stop(signal.SIGINT)
    time.sleep(2 * SLOT_S)  # let a round that was under way finish
    frozen = {node.name: node.finalized() for node in up}
    best_before = max(node.best()[0] for node in up)
    time.sleep(6 * SLOT_S)
    for node in up:
        assert node.finalized() == frozen[node.name], \
            f"{node.name} finalized with 2 of 4 validators:\n{testnet.report()}"
    best_after = max(node.best()[0] for node in up)
    measure(f"with 2 of 4 validators for 6 slots: finalized stayed at "
            f"#{max(n for n, _ in frozen.values())}, best went #{best_before} -> #{best_after}")
    # Once the lag passes the threshold, status flags it and so does the validators' log.
    # (Two of four authors: a block every other slot.)
    testnet.wait_for(lambda: "⚠️ finality lag" in node1.log()[log_mark:],
                     4 * (FINALITY_LAG_WARNING_BLOCKS + 2) * SLOT_S + 2 * INFORMANT_INTERVAL_S,
                     "node1's informant line to flag the finality lag")
    status = testnet.status_output()
    line = next(ln for ln in status.splitlines() if ln.startswith("node1 "))
    assert "⚠️ stalled" in line and "finality has stalled" in status, status

    for node in down:
        node.start()
    testnet.wait_for(lambda: all(node.answers() for node in down), STARTUP_TIMEOUT_S,
                     "node3 and node4 to answer after their restart")
    stalled_at = max(n for n, _ in frozen.values())
    resumed = testnet.wait_for(lambda: all(node.finalized()[0] > stalled_at for node in up),
                               30 * SLOT_S, "finality to resume")
    measure(f"finality resumed past #{stalled_at} {resumed:.2f} s ({resumed / SLOT_S:.1f} slots) "
            f"after the two restarted validators answered RPC")
    nodes = testnet.validators()
    testnet.wait_for(lambda: testnet.agree_at(nodes, max(stalled_at + 1, best_after)),
                     20 * SLOT_S, "all four to finalize together again")
    for node in nodes:
        assert node.rpc("opus_getEquivocations") == [], node.name
    finalized = testnet.assert_no_conflicting_finality(nodes)
    assert finalized > stalled_at


# ---------------------------------------------------------------------------
# the launcher stops everything cleanly


def test_launcher_stops_every_node_on_sigint(testnet: Testnet) -> None:
    for node in testnet.validators():
        if node.proc is not None:  # (re)started by a test, not by the launcher
            assert node.stop(signal.SIGINT) == 0, node.name
    launched = [n for n in testnet.validators() if n.proc is None and n.running]
    os.kill(testnet.launcher.pid, signal.SIGINT)
    assert testnet.launcher.wait(timeout=EXIT_TIMEOUT_S + 10) == 0, testnet.output
    assert "Testnet stopped." in testnet.output
    for node in launched:
        assert not node.running, node.name
        assert "Shutdown complete" in node.log(current_run=True), node.name
    for node in testnet.all():
        assert "Traceback" not in node.log(), node.name
    status = testnet.status_output()
    assert status.count("UNREACHABLE") == VALIDATORS, status


# ---------------------------------------------------------------------------
# scripts/testnet.sh: the same with plain `opus` processes


def test_testnet_script_starts_and_stops_its_nodes(tmp_path: Path) -> None:
    base = tmp_path / "script"
    out = open(tmp_path / "script.out", "wb")
    script = subprocess.Popen(["bash", str(ROOT / "scripts" / "testnet.sh"), "-n", "2", "-d",
                               str(base), "-s", str(SLOT_MS)], cwd=ROOT, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT)
    nodes: list[NodeHandle] = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (base / "testnet.json").exists():
            assert script.poll() is None, (tmp_path / "script.out").read_text()
            assert time.monotonic() < deadline, (tmp_path / "script.out").read_text()
            time.sleep(0.2)
        manifest = json.loads((base / "testnet.json").read_text())
        assert manifest["pid"] == script.pid
        nodes = [NodeHandle(e["name"], e["rpc_port"], Path(e["base_path"]), Path(e["log"]),
                            e["command"], e["pid"]) for e in manifest["nodes"]]
        assert [n.name for n in nodes] == ["node1", "node2"]

        def finalized_together() -> bool:
            return all(n.finalized()[0] >= 2 for n in nodes) and \
                nodes[0].hash_at(2) == nodes[1].hash_at(2)

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                if finalized_together():
                    break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            assert time.monotonic() < deadline, [n.log()[-2000:] for n in nodes]
            time.sleep(0.2)
        os.kill(script.pid, signal.SIGTERM)
        assert script.wait(timeout=EXIT_TIMEOUT_S + 10) == 0
        text = (tmp_path / "script.out").read_text()
        assert "Testnet stopped." in text and "peer id 12D3KooW" in text
        for node in nodes:
            assert not node.running, node.name
            assert "Shutdown complete" in node.log() and "Traceback" not in node.log()
    finally:
        if script.poll() is None:  # SIGTERM first: the script's trap stops its nodes
            os.kill(script.pid, signal.SIGTERM)
            try:
                script.wait(timeout=EXIT_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                os.kill(script.pid, signal.SIGKILL)
                script.wait(timeout=EXIT_TIMEOUT_S)
        for node in nodes:
            node.kill()
        out.close()
