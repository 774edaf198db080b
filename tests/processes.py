"""What the multi-process tests share: free ports, JSON-RPC calls and ``opus --dev`` nodes
on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent  # the project: what `python -m node.cli` runs in
STARTUP_TIMEOUT_S = 30  # a node's RPC answers within this (a busy machine included)
BLOCK_TIMEOUT_S = 40
EXIT_TIMEOUT_S = 20
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


@contextlib.contextmanager
def opus_dev(log_path: Path, *, startup_timeout: float = 30.0, stop_timeout: float = 20.0,
             p2p_port: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A real ``opus --dev`` process on free ports (or p2p on ``p2p_port``), its log in
    ``log_path``: (process, RPC port) once its JSON-RPC answers. Stopped with SIGINT on the
    way out (killed if it takes longer than ``stop_timeout``); check its ``returncode``
    afterwards."""
    root = ROOT
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "--dev", "--rpc-port", str(port),
             "--no-prometheus", "--port", str(p2p_port or free_port())],
            cwd=root, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(root)})
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                assert proc.poll() is None, f"opus --dev exited: {log_path.read_text()}"
                try:
                    rpc_call(port, "system_health", timeout=1.0)
                    break
                except RPC_NOT_READY:
                    assert time.monotonic() < deadline, "the node's RPC never came up"
                    time.sleep(0.2)
            yield proc, port
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               failure: Callable[[], str | None] = lambda: None, interval: float = 0.3,
               describe: Callable[[], str] = lambda: "") -> None:
    """Poll ``condition`` until it holds (an RPC not answering yet counts as not yet); fail
    the test when ``failure`` names one (a process that exited, …) or after ``timeout``,
    with what ``describe`` tells (log tails)."""
    deadline = time.monotonic() + timeout
    while True:
        failed = failure()
        if failed:
            pytest.fail(failed)
        try:
            if condition():
                return
        except RPC_NOT_READY:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{describe()}")
        time.sleep(interval)


class NodeProcess:
    """A real ``opus`` process started with ``argv`` on free ports, its log in ``log_path``."""

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
