"""A real ``opus --dev`` process: authoring, banner, clean shutdown, restart, a held base path,
export/import and check-block. Every process is ended by its PID; every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import RPC_NOT_READY, free_port

from genesis import build_genesis, dev_spec
from node.storage import ChainStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 30
BLOCK_TIMEOUT_S = 40
EXIT_TIMEOUT_S = 20


class NodeProcess:
    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self.rpc_port = free_port()
        self.prometheus_port = free_port()
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *argv, "--rpc-port", str(self.rpc_port),
             "--prometheus-port", str(self.prometheus_port), "--port", str(free_port())],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": params or []}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.rpc_port}/", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert "error" not in answer, answer
        return answer["result"]

    def best_number(self) -> int | None:
        """The best block number over RPC; from the log if RPC does not answer (yet)."""
        try:
            return int(self.rpc("chain_getHeader")["number"], 16)
        except RPC_NOT_READY:
            numbers = [int(n) for n in re.findall(r"Imported #(\d+)", self.log)]
            return max(numbers) if numbers else None

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"node exited ({self.proc.returncode}) waiting for {what}:\n"
                            f"{self.log}")
            if condition():
                return
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {what}:\n{self.log}")

    def wait_for_height(self, height: int) -> int:
        self.wait_for(lambda: (self.best_number() or 0) >= height, BLOCK_TIMEOUT_S,
                      f"block #{height}")
        number = self.best_number()
        assert number is not None
        return number

    def stop(self, signum: int = signal.SIGINT) -> int:
        os.kill(self.proc.pid, signum)
        return self.wait()

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=EXIT_TIMEOUT_S)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(*argv: str) -> NodeProcess:
        node = NodeProcess(list(argv), tmp_path / f"node-{len(started)}.log")
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def opus(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def best_hash(base: Path) -> tuple[int, bytes]:
    with ChainStore.open(base, build_genesis(dev_spec())) as store:
        return store.best_header.number, bytes(store.best_hash)


def scrape_best_height(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r'^opus_block_height\{status="best"\} (\S+)$', text, re.M)
    assert match, text
    assert "opus_build_info{" in text and "opus_imported_extrinsics_total" in text
    return float(match.group(1))


def test_dev_node_lifecycle(tmp_path: Path, spawn: Callable[..., NodeProcess]) -> None:
    base = tmp_path / "base"

    # A dev node authors blocks and prints the banner.
    first = spawn("--dev", "--base-path", str(base), "--name", "test-node")
    first.wait_for_height(3)
    log = first.log
    for line in ("Opus Chain Node", "📋 Chain specification: Opus Development",
                 "🏷  Node name: test-node", "👤 Role: AUTHORITY",
                 f"💾 Database: LevelDB at {base / 'db'}", "🔨 Initializing Genesis block/state",
                 f"Running JSON-RPC server: addr=127.0.0.1:{first.rpc_port}",
                 "Imported #3"):
        assert line in log, line
    assert re.search(r"state: 0x[0-9a-f]{4}…[0-9a-f]{4}, header-hash: 0x[0-9a-f]{4}…", log)
    assert scrape_best_height(first.prometheus_port) >= 3

    # A second node on the same base path is refused with one clear message.
    second = spawn("--dev", "--base-path", str(base))
    assert second.wait() == 1
    assert "Error:" in second.log and str(base) in second.log and "in use" in second.log
    assert "Traceback" not in second.log

    # Ctrl-C: a clean shutdown.
    assert first.stop(signal.SIGINT) == 0
    assert "Traceback" not in first.log
    height, _ = best_hash(base)  # the database was closed: it opens again
    assert height >= 3

    # A restart resumes the chain; SIGTERM stops it cleanly too.
    again = spawn("--dev", "--base-path", str(base))
    again.wait_for_height(height + 1)
    assert f"Highest known block at #{height}" in again.log
    assert again.stop(signal.SIGTERM) == 0
    assert "Traceback" not in again.log

    # export-blocks then import-blocks into a fresh base path: the same best block.
    number, best = best_hash(base)
    blocks = tmp_path / "blocks.bin"
    result = opus("export-blocks", "--chain", "dev", "--base-path", str(base), str(blocks))
    assert result.returncode == 0, result.stderr
    fresh = tmp_path / "fresh"
    result = opus("import-blocks", "--chain", "dev", "--base-path", str(fresh), str(blocks))
    assert result.returncode == 0, result.stderr
    assert best_hash(fresh) == (number, best)
    with ChainStore.open(fresh, build_genesis(dev_spec())) as store:
        assert store.finalized_header.number == number  # the justifications came along

    result = opus("check-block", "--chain", "dev", "--base-path", str(fresh), str(number))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    result = opus("check-block", "--chain", "dev", "--base-path", str(base), "0x" + best.hex())
    assert result.returncode == 0 and "OK" in result.stdout


def test_tmp_dev_node_cleans_up(tmp_path: Path, spawn: Callable[..., NodeProcess]) -> None:
    node = spawn("--dev", "--no-prometheus")
    node.wait_for_height(1)
    match = re.search(r"Database: LevelDB at (\S+)", node.log)
    assert match
    tmp_base = Path(match.group(1)).parent
    assert tmp_base.exists()
    assert node.stop() == 0
    assert not tmp_base.exists()
    assert "Prometheus exporter" not in node.log
