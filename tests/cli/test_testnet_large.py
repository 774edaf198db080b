"""``opus testnet --validators 10``: ten validator processes with generated keys, at the
launcher's default slot for ten, finalize together, and every one of the ten votes: the
precommits in the chain's justifications (``chain_getBlock``) come from all ten authorities
of the spec. Every process is ended by its PID (the launcher's SIGINT stops its nodes);
every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import processes
import pytest
from processes import ROOT, rpc_call

from node.cli.testnet import default_slot_ms, startup_timeout
from runtime import codec
from runtime.block import Justification
from runtime.codec import from_hex0x
from runtime.crypto import encode_address

pytestmark = pytest.mark.slow

VALIDATORS = 10
SLOT_S = default_slot_ms(VALIDATORS) / 1000
VOTING_TIMEOUT_S = 120 * SLOT_S  # every one of the ten in some justification
STOP_TIMEOUT_S = 60


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    out = tmp_path / "launcher.out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(tmp_path / "data"))
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "testnet", "--validators", str(VALIDATORS),
             "--base-dir", str(tmp_path / "net")],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        # Any node the launcher could not stop (it SIGKILLs after its own timeout).
        manifest = tmp_path / "net" / "testnet.json"
        if manifest.exists():
            for node in json.loads(manifest.read_text())["nodes"]:
                try:
                    os.kill(node["pid"], signal.SIGKILL)
                except (ProcessLookupError, TypeError):
                    pass


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[bytes], out: Path) -> None:
    """:func:`processes.wait_until`, failing with the launcher's output if it exited."""
    def exited() -> str | None:
        return None if proc.poll() is None else f"the launcher exited:\n{out.read_text()}"

    processes.wait_until(condition, timeout, what, exited, interval=1.0,
                         describe=lambda: out.read_text()[-3000:])


def finalized(port: int) -> int:
    head = rpc_call(port, "chain_getFinalizedHead")
    return int(rpc_call(port, "chain_getHeader", [head])["number"], 16)


def signers_in(port: int, numbers: range, seen: set[int]) -> set[bytes]:
    """The authorities whose precommits the justifications of these blocks hold."""
    found: set[bytes] = set()
    for number in numbers:
        if number in seen:
            continue
        seen.add(number)
        block: dict[str, Any] = rpc_call(
            port, "chain_getBlock", [rpc_call(port, "chain_getBlockHash", [number])])
        for engine, encoded in block["justifications"] or []:
            justification = codec.decode(from_hex0x(encoded), Justification)
            assert engine == "FRNK" and justification.block_number == number
            found.update(p.authority for p in justification.precommits)
    return found


def test_ten_validators_with_generated_keys_finalize_all_voting(
        launcher: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, out = launcher
    wait_until(lambda: "nodes are up" in out.read_text(),
               startup_timeout(VALIDATORS) + 30, "the ten nodes to answer", proc, out)
    base = tmp_path / "net"
    manifest = json.loads((base / "testnet.json").read_text())
    authorities = json.loads((base / "spec.json").read_text())["genesis"]["authorities"]
    assert len(authorities) == VALIDATORS and manifest["slotMs"] == SLOT_S * 1000
    ports = [node["rpc_port"] for node in manifest["nodes"]]

    # Every node finalizes, and they agree.
    wait_until(lambda: all(finalized(p) >= 3 for p in ports), VOTING_TIMEOUT_S,
               "#3 finalized on all ten nodes", proc, out)
    height = min(finalized(p) for p in ports)
    assert len({rpc_call(p, "chain_getBlockHash", [height]) for p in ports}) == 1

    # All ten vote: between them, the justifications hold precommits of every authority.
    voters: set[bytes] = set()
    checked: set[int] = set()

    def all_voted() -> bool:
        voters.update(signers_in(ports[0], range(1, finalized(ports[0]) + 1), checked))
        return len(voters) == VALIDATORS

    wait_until(all_voted, VOTING_TIMEOUT_S, "a precommit of each of the ten", proc, out)
    assert {encode_address(v) for v in voters} == set(authorities)
