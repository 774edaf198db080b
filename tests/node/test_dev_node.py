"""A real ``opus --dev`` process: authoring, banner, clean shutdown, restart, a held base path,
export/import and check-block. Every process is ended by its PID; every wait is bounded."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from processes import (
    ROOT,
    NodeProcess,
    free_port,
    opus_dev,
    rpc_call,
)

from genesis import build_genesis, dev_spec
from node.chain.store import ChainStore

pytestmark = pytest.mark.slow



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


@pytest.mark.slow
def test_a_second_node_on_a_busy_p2p_port_is_refused(tmp_path: Path) -> None:
    """py-libp2p's TCP listener sets SO_REUSEPORT, so a second node on the same p2p port
    started without error and the kernel split incoming connections between the two. The
    second node is refused, with the same kind of message as a busy RPC port, and the first
    carries on."""
    p2p_port = free_port()
    with opus_dev(tmp_path / "first.log", p2p_port=p2p_port) as (first, rpc_port):
        second = subprocess.run(
            [sys.executable, "-m", "node.cli", "--dev", "--port", str(p2p_port),
             "--rpc-port", str(free_port()), "--no-prometheus", "--base-path",
             str(tmp_path / "second")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
        assert errors == [f"Error: p2p port {p2p_port} in use on 0.0.0.0 (another node? "
                          "choose another --port)"], second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        assert first.poll() is None and rpc_call(rpc_port, "system_health")["peers"] == 0
