"""What the multi-process tests share: free ports and JSON-RPC calls on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

HOST = "127.0.0.1"
# What a poll of a node's RPC raises while the node is not ready yet (not listening,
# no answer, an answer without the field asked for): "not yet", not a failure.
RPC_NOT_READY = (OSError, urllib.error.URLError, ValueError, KeyError, TypeError)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the system's choice)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rpc_call(port: int, method: str, params: list[Any] | None = None,
             timeout: float = 5.0) -> Any:
    """Call a node's JSON-RPC over HTTP; the result (an error answer fails the test)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": params or []}).encode()
    request = urllib.request.Request(f"http://{HOST}:{port}/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, (method, answer)
    return answer["result"]
