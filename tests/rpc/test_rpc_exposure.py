"""Who may call what, on real nodes: ``--rpc-external`` serves safe methods only on all
interfaces; unsafe ones need ``--unsafe-rpc-external``; both warn in the log, as does
``--prometheus-external`` (docs/rpc.md, "Who may call what").

The nodes listen on 0.0.0.0; the test talks to them on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from processes import NodeProcess

from runtime.crypto import dev_keypair

pytestmark = pytest.mark.slow

ALICE = dev_keypair("alice")


def answer(node: NodeProcess, method: str, params: list[Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{node.rpc_port}/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def started(node: NodeProcess) -> NodeProcess:
    node.wait_for(lambda: "Running JSON-RPC server" in node.log, 60, "the RPC server")
    return node


def test_external_rpc_serves_unsafe_methods_only_with_its_own_flag(tmp_path: Path) -> None:
    has_key = ["0x" + ALICE.public.hex(), "aura"]
    nodes = []
    try:
        safe = started(NodeProcess(["--dev", "--rpc-external", "--prometheus-external",
                                    "--base-path", str(tmp_path / "a")], tmp_path / "a.log"))
        nodes.append(safe)
        refused = answer(safe, "author_hasKey", has_key)
        assert refused["error"]["code"] == -32601 and "--unsafe-rpc-external" in refused[
            "error"]["data"]
        assert "result" in answer(safe, "system_health", [])
        assert "author_hasKey" not in answer(safe, "rpc_methods", [])["result"]["methods"]
        assert "JSON-RPC listens on all interfaces (--rpc-external)" in safe.log
        assert "Prometheus metrics on all interfaces (--prometheus-external)" in safe.log
        with urllib.request.urlopen(f"http://127.0.0.1:{safe.prometheus_port}/metrics",
                                    timeout=10) as response:
            assert b"opus_block_height" in response.read()
        assert "addr=0.0.0.0:" in safe.log

        unsafe = started(NodeProcess(["--dev", "--unsafe-rpc-external",
                                      "--base-path", str(tmp_path / "b")], tmp_path / "b.log"))
        nodes.append(unsafe)
        assert answer(unsafe, "author_hasKey", has_key)["result"] in (True, False)
        assert "with unsafe methods (--unsafe-rpc-external)" in unsafe.log
        for node in nodes:
            assert node.stop() == 0
            assert "Traceback" not in node.log
    finally:
        for node in nodes:
            node.kill()
