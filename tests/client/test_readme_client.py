"""The README's ``python -c`` one-liners for the client library run as written, against a real
``opus --dev`` node, and never import the node's packages (``node``, ``p2p``, ``genesis``).

Each one-liner runs in a process of its own under ``python -X importtime``, which writes a
line to stderr for every module imported: the test reads the module names from there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from processes import ROOT, opus_dev

SECTION = "## Using the client library"
README_RPC = "http://127.0.0.1:9944"  # the node the README's one-liners talk to
FORBIDDEN = ("node", "p2p", "genesis")  # what a client must run without
RUN_TIMEOUT_S = 120


def readme_one_liners() -> list[str]:
    """The code of each ``python -c "…"`` line in the README's client section."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"the README has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    codes = []
    for line in section.splitlines():
        if line.startswith("python -c "):
            argv = shlex.split(line)
            assert argv[:2] == ["python", "-c"] and len(argv) == 3, line
            codes.append(argv[2])
    return codes


def run_python(code: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -c code``; the finished process and every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return done, modules


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_the_readme_has_client_one_liners() -> None:
    codes = readme_one_liners()
    assert len(codes) >= 2
    assert all("client" in code for code in codes)


def test_the_import_check_sees_the_node_packages(tmp_path: Path) -> None:
    # What the README test relies on: an import of the node shows up, one of client alone not.
    done, modules = run_python("import node.version", tmp_path)
    assert done.returncode == 0, done.stderr
    assert forbidden(modules) == ["node", "node.version"]
    done, modules = run_python("import client", tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"client", "client.rpc", "runtime"} <= modules and forbidden(modules) == []


@pytest.mark.slow
def test_readme_one_liners_work_without_importing_the_node(tmp_path: Path) -> None:
    log_path = tmp_path / "node.log"
    outputs = []
    with opus_dev(log_path) as (node, port):
        for code in readme_one_liners():
            done, modules = run_python(code.replace(README_RPC, f"http://127.0.0.1:{port}"),
                                       tmp_path)
            assert done.returncode == 0, (code, done.stderr[-2000:])
            assert "client" in modules, code
            assert forbidden(modules) == [], (code, forbidden(modules))
            outputs.append(done.stdout.strip())
    # What the README says they print: the chain and its best block; the new work's id;
    # the work's id, title and the block its proof is from, checked offline.
    chain, registered, verified = outputs
    assert re.fullmatch(r"Opus Development \d+", chain), chain
    assert registered.isdigit() and (tmp_path / "poem.proof.json").is_file(), registered
    assert re.fullmatch(rf"{registered} My first poem \d+", verified), verified
    assert node.returncode == 0, log_path.read_text()
