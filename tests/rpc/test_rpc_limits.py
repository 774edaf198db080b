"""The JSON-RPC server's limits (docs/rpc.md, "Limits") and its strict JSON.

Where a finding is about the real server's resources (descriptors, memory, a
client still writing) the test runs a real ``opus`` process, ends it by its
PID and reads its descriptors and memory from ``/proc``; the protocol rules
run against an in-process node serving on a real socket (``tests/test_rpc.py``).
Every wait is on a condition, bounded.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from processes import HOST, ROOT, RPC_NOT_READY, free_port, rpc_call
from test_rpc import WS, request, running_node, websocket, ws_url
from trio_websocket import ConnectionRejected, open_websocket_url

from genesis import build_genesis, dev_spec
from node.cli import build_parser, check_node_args
from node.cli.run import node_config
from node.rpc import MIB
from node.rpc.methods import METHODS
from node.rpc.protocol import RateLimiter, RpcService, Session, handle_payload
from runtime import codec, executive
from runtime.codec import from_hex0x, hex0x
from runtime.crypto import dev_keypair
from runtime.extrinsic import Era, sign_extrinsic
from runtime.modules import balances
from runtime.support import make_call

STARTUP_TIMEOUT_S = 30.0
WAIT_S = 30.0
SENDERS = tuple(dev_keypair(n) for n in ("alice", "bob", "charlie", "dave"))
EVE = dev_keypair("eve")
ONE = 10**12


# ---------------------------------------------------------------------------
# Helpers


def strict_json(raw: bytes) -> Any:
    """``raw`` as a strict parser reads it: UTF-8, no NaN/Infinity/1e999, no lone surrogate."""
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {token}")
        return value

    value = json.loads(raw.decode("utf-8"), parse_constant=refuse, parse_float=finite)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
    return value


def call(method: str, request_id: Any = 1, params: Any = None) -> dict[str, Any]:
    return request(method, [] if params is None else params, request_id)


def http_post(port: int, body: bytes,
              connection: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """POST ``body`` (on ``connection`` if given: HTTP keep-alive); (status, raw answer)."""
    conn = connection or http.client.HTTPConnection(HOST, port, timeout=WAIT_S)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if connection is None:
            conn.close()


async def apost(port: int, body: bytes,
                connection: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    status, raw = await trio.to_thread.run_sync(http_post, port, body, connection)
    return status, strict_json(raw) if raw else None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class OpusProcess:
    """A real ``opus`` process with JSON-RPC on a free port of 127.0.0.1, ended by its PID."""

    def __init__(self, tmp_path: Path, argv: list[str], open_files: int | None = None) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"opus-{self.port}.log"
        self._log = self.log_path.open("wb")

        def limit_open_files() -> None:
            if open_files is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *argv, "--tmp", "--rpc-port", str(self.port),
             "--no-prometheus", "--port", str(free_port())],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=limit_open_files,
        )
        wait_until(self._ready, "the node's RPC", STARTUP_TIMEOUT_S)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"opus exited with {self.proc.returncode}:\n{self.log}")
        try:
            rpc_call(self.port, "system_health", timeout=2)
        except RPC_NOT_READY:
            return False
        return True

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc_call(self.port, method, params, timeout=WAIT_S)

    def open_descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def peak_memory_kib(self) -> int:
        """The process's peak resident memory (VmHWM), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()


@pytest.fixture
def opus(tmp_path: Path) -> Iterator[Callable[..., OpusProcess]]:
    started: list[OpusProcess] = []

    def start(*argv: str, open_files: int | None = None) -> OpusProcess:
        process = OpusProcess(tmp_path, list(argv), open_files)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        assert "Traceback" not in process.log, process.log


def read_http_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a content-length read from ``sock``: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of an answer")
        body += chunk
    return int(lines[0].split()[1]), body


def post_head(length: int) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def signed_transfers(genesis_hash: bytes, per_sender: int) -> list[str]:
    """``per_sender`` immortal transfers to Eve from each of four dev accounts, as hex."""
    return [hex0x(codec.encode(sign_extrinsic(
                key, make_call(balances.TransferArgs(EVE.public, ONE)), nonce, genesis_hash,
                executive.SPEC_VERSION, tip=0, era=Era(0, 0))))
            for key in SENDERS for nonce in range(per_sender)]


# ---------------------------------------------------------------------------
# Flags


def test_limit_flags_reach_the_node_config(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args([
        "--dev", "--rpc-max-request-size", "3", "--rpc-max-response-size", "7",
        "--rpc-max-batch-request-len", "50", "--rpc-max-connections", "9",
        "--rpc-max-subscriptions-per-connection", "5", "--rpc-rate-limit", "120",
        "--rpc-request-timeout", "2.5"])
    check_node_args(parser, args)
    genesis = build_genesis(dev_spec())
    config = node_config(args, genesis, tmp_path)
    assert (config.rpc_max_request_size, config.rpc_max_response_size) == (3 * MIB, 7 * MIB)
    assert (config.rpc_max_batch_len, config.rpc_max_connections) == (50, 9)
    assert (config.rpc_max_subscriptions, config.rpc_rate_limit) == (5, 120)
    assert config.rpc_request_timeout == 2.5

    defaults = node_config(parser.parse_args(["--dev"]), genesis, tmp_path)
    assert (defaults.rpc_max_request_size, defaults.rpc_max_response_size) == (MIB, 10 * MIB)
    assert (defaults.rpc_max_batch_len, defaults.rpc_max_connections) == (1024, 100)
    assert (defaults.rpc_max_subscriptions, defaults.rpc_rate_limit) == (1024, None)
    assert defaults.rpc_request_timeout == 30.0


@pytest.mark.parametrize("argv", [
    ["--rpc-max-request-size", "0"], ["--rpc-max-response-size", "-1"],
    ["--rpc-max-batch-request-len", "x"], ["--rpc-max-connections", "0"],
    ["--rpc-max-subscriptions-per-connection", "1.5"], ["--rpc-rate-limit", "0"],
    ["--rpc-request-timeout", "0"], ["--rpc-request-timeout", "nan"],
    ["--rpc-request-timeout", "inf"],
])
def test_bad_limit_flags_are_usage_errors(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--dev", *argv])
    assert exited.value.code == 2
    assert f"opus: error: argument {argv[0]}: " in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Request size (finding: the 413 came before the body was read: "broken pipe")


@pytest.mark.slow
async def test_oversize_request_is_answered_to_a_client_still_writing(
        opus: Callable[..., OpusProcess]) -> None:
    node = opus("--dev")  # the default limit: 1 MiB
    body = json.dumps(call("system_name", 1, ["x" * (12 * MIB)])).encode()

    def send_all_then_read() -> tuple[int, bytes, tuple[int, bytes]]:
        with socket.create_connection((HOST, node.port), timeout=WAIT_S) as sock:
            sock.sendall(post_head(len(body)) + body)  # no BrokenPipeError: all of it is read
            status, answer = read_http_answer(sock)
            again = json.dumps(call("system_name", 2)).encode()
            sock.sendall(post_head(len(again)) + again)  # the connection carries on
            return status, answer, read_http_answer(sock)

    status, answer, (status2, answer2) = await trio.to_thread.run_sync(send_all_then_read)
    assert status == 413
    assert strict_json(answer) == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32007, "message": "Request is too big", "data": "Exceeded max limit of 1048576"}}
    assert status2 == 200 and strict_json(answer2)["result"] == "Opus Node"

    async with open_websocket_url(f"ws://{HOST}:{node.port}/") as conn:
        ws = WS(conn)
        answer = await ws.send_raw(json.dumps(call("system_name", 3, ["x" * (2 * MIB)])))
        assert answer["error"]["code"] == -32007
        assert (await ws.call("system_name"))["result"] == "Opus Node"


# ---------------------------------------------------------------------------
# Response size (finding: 100 author_pendingExtrinsics in one batch: 271 MB, +850 MB RSS)


@pytest.mark.slow
async def test_oversize_response_is_an_error_and_memory_stays_flat(
        opus: Callable[..., OpusProcess]) -> None:
    # A full node (no authoring) keeps what is submitted: 4,000 transfers, 1.3 MB as hex.
    node = opus("--chain", "dev", "--rpc-max-response-size", "1")
    genesis_hash = from_hex0x(node.rpc("chain_getBlockHash", [0]), 32)
    transfers = signed_transfers(genesis_hash, 1000)
    for start in range(0, len(transfers), 500):
        batch = [call("author_submitExtrinsic", i, [x])
                 for i, x in enumerate(transfers[start:start + 500])]
        status, answers = await apost(node.port, json.dumps(batch).encode())
        assert status == 200 and all("result" in a for a in answers), answers[:3]
    assert sum(len(x) + 3 for x in transfers) > MIB

    status, answer = await apost(node.port, json.dumps(call("author_pendingExtrinsics", 7))
                                 .encode())
    assert status == 200 and answer == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32008, "message": "Response is too big", "data": f"Exceeded max limit of {MIB}"}}

    peak_before = node.peak_memory_kib()
    batch = [call("author_pendingExtrinsics", i) for i in range(100)]
    status, answers = await apost(node.port, json.dumps(batch).encode())
    assert status == 200 and [a["id"] for a in answers] == list(range(100))
    assert all(a["error"]["code"] == -32008 for a in answers)
    assert node.peak_memory_kib() - peak_before < 64 * 1024  # the old code: +419 MiB here
    assert node.rpc("system_name") == "Opus Node"


async def test_batch_and_answer_size_limits(tmp_path: Path) -> None:
    async with running_node(tmp_path / "n", rpc_max_batch_len=5,
                            rpc_max_response_size=1000) as node:
        port = node.config.rpc_port
        assert port is not None
        six = json.dumps([call("system_name", i) for i in range(6)]).encode()
        status, answer = await apost(port, six)
        assert status == 200 and answer == {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32010, "message": "The batch request was too large",
            "data": "Exceeded max limit of 5"}}
        status, answer = await apost(port, json.dumps([call("system_name", i)
                                                       for i in range(5)]).encode())
        assert [a["result"] for a in answer] == ["Opus Node"] * 5

        # One answer over the limit (rpc_methods lists ~50 names) is replaced by -32008.
        status, answer = await apost(port, json.dumps(call("rpc_methods", "m")).encode())
        assert status == 200 and answer == {"jsonrpc": "2.0", "id": "m", "error": {
            "code": -32008, "message": "Response is too big",
            "data": "Exceeded max limit of 1000"}}
        batch = [call("system_chain", i) for i in range(4)] + [call("rpc_methods", 4)]
        status, answer = await apost(port, json.dumps(batch).encode())
        assert [a.get("result") for a in answer[:4]] == ["Opus Development"] * 4
        assert answer[4]["id"] == 4 and answer[4]["error"]["code"] == -32008
        async with websocket(node) as ws:
            assert (await ws.call("rpc_methods"))["error"]["code"] == -32008
            assert (await ws.send_raw(six.decode()))["error"]["code"] == -32010
            assert (await ws.call("system_name"))["result"] == "Opus Node"

    # Answers that add up to more than the limit: one -32011 for the batch.
    async with running_node(tmp_path / "m", rpc_max_response_size=200) as node:
        port = node.config.rpc_port
        assert port is not None
        status, answer = await apost(port, json.dumps([call("system_name", i)
                                                       for i in range(5)]).encode())
        assert status == 200 and answer == {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32011, "message": "The batch response was too large",
            "data": "Exceeded max limit of 200"}}


async def test_a_batch_lets_the_node_run_between_its_calls(tmp_path: Path) -> None:
    """Each call of a batch is a checkpoint: authoring and import run during a long batch."""
    async with running_node(tmp_path / "n") as node:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.sleep(0)

        session = Session(RpcService(node, METHODS))
        payload = json.dumps([call("system_name", i) for i in range(1024)]).encode()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.sleep(0)
            before = ticks
            answer = await handle_payload(session, payload)
            during = ticks - before
            nursery.cancel_scope.cancel()
        # The other task ran between the calls (at each of the 1023 checkpoints, give or take
        # trio's scheduling order); it never ran before, the batch holding the loop throughout.
        assert during >= 1000
        assert answer is not None and len(strict_json(answer)) == 1024


# ---------------------------------------------------------------------------
# Connections (finding: no cap; 1,100 trickling connections exhausted the descriptors)


async def open_ws(url: str, stack: AsyncExitStack) -> WS:
    """A WebSocket, retried while the slot of a just-closed connection is not free yet."""
    deadline = trio.current_time() + WAIT_S  # (no cancel scope: the connection outlives it)
    while True:
        try:
            return WS(await stack.enter_async_context(open_websocket_url(url)))
        except ConnectionRejected:
            if trio.current_time() > deadline:
                raise
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_connections_over_the_cap_are_refused_and_served_once_one_closes(
        opus: Callable[..., OpusProcess]) -> None:
    # A long request timeout: a closed connection must free its slot at once, not when an
    # idle keep-alive connection would time out.
    node = opus("--dev", "--rpc-max-connections", "3", "--rpc-request-timeout", "600")
    url = f"ws://{HOST}:{node.port}/"
    body = json.dumps(call("system_name")).encode()

    def served() -> bool:
        try:
            return http_post(node.port, body)[0] == 200
        except OSError:  # reset: too many refusals at once
            return False

    async with AsyncExitStack() as stack:
        held = [await open_ws(url, stack) for _ in range(2)]
        keep_alive = http.client.HTTPConnection(HOST, node.port, timeout=WAIT_S)
        try:
            status, answer = await apost(node.port, body, keep_alive)  # the third slot
            assert status == 200 and answer["result"] == "Opus Node"
            subscription = (await held[0].call("chain_subscribeNewHeads"))["result"]
            await held[0].notification(subscription)

            # HTTP over the cap: 429 with JSON-RPC error -32009, and the connection is closed.
            status, raw = await trio.to_thread.run_sync(http_post, node.port, body)
            assert status == 429
            answer = strict_json(raw)
            assert answer["id"] is None and answer["error"]["code"] == -32009
            assert answer["error"]["message"] == "Server is busy, try again later"
            # A WebSocket upgrade over the cap gets the same answer.
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(url):
                    pass
            assert rejected.value.status_code == 429
            assert strict_json(rejected.value.body or b"")["error"]["code"] == -32009

            # A flood of refused connections: each gets its answer, and its descriptor is freed.
            base = node.open_descriptors()

            def flood() -> list[int]:
                statuses = []
                for _ in range(100):
                    with socket.create_connection((HOST, node.port), timeout=WAIT_S) as sock:
                        sock.sendall(post_head(len(body)) + body)
                        statuses.append(read_http_answer(sock)[0])
                        assert sock.recv(1) == b""  # then closed by the server
                return statuses

            assert await trio.to_thread.run_sync(flood) == [429] * 100
            await trio.to_thread.run_sync(
                wait_until, lambda: node.open_descriptors() <= base, "refusals to close")

            # The connections being served carry on.
            status, answer = await apost(node.port, body, keep_alive)
            assert status == 200 and answer["result"] == "Opus Node"
            for ws in held:
                assert (await ws.call("system_name"))["result"] == "Opus Node"
            await held[0].notification(subscription)
        finally:
            keep_alive.close()

        # The keep-alive client closed: a new client is served.
        await trio.to_thread.run_sync(wait_until, served, "the HTTP connection's slot")
        assert (await held[1].call("system_chain"))["result"] == "Opus Development"

    # The WebSockets closed too: their slots are free again.
    async with AsyncExitStack() as stack:
        again = [await open_ws(url, stack) for _ in range(3)]
        assert (await again[2].call("system_name"))["result"] == "Opus Node"


@pytest.mark.slow
def test_the_node_keeps_descriptors_for_its_database_and_network(
        opus: Callable[..., OpusProcess]) -> None:
    """With ``ulimit -n`` 512 the cap is lowered: clients are refused, never EMFILE."""
    node = opus("--dev", "--rpc-max-connections", "1000", open_files=512)
    line = next(x for x in node.log.splitlines() if "instead of 1000" in x)
    cap = int(line.split("at most ")[1].split()[0])
    assert 1 <= cap <= 512 - 200 - 64  # room for the p2p host's connections and LevelDB's files
    base_height = int(node.rpc("chain_getHeader")["number"], 16)
    body = json.dumps(call("system_name")).encode()
    held: list[socket.socket] = []
    statuses = []
    try:
        for _ in range(cap + 60):
            sock = socket.create_connection((HOST, node.port), timeout=WAIT_S)
            held.append(sock)  # served ones stay open, holding their slot (keep-alive)
            sock.sendall(post_head(len(body)) + body)
            statuses.append(read_http_answer(sock)[0])
            if statuses[-1] == 429:
                assert sock.recv(1) == b""  # closed by the server
                held.pop().close()
    finally:
        for sock in held:
            sock.close()
    served = statuses.count(200)
    assert statuses == [200] * served + [429] * (len(statuses) - served)
    # Every slot but those of the readiness probes, if they are not closed yet.
    assert cap - 2 <= served <= cap
    def authored() -> bool:
        try:  # 429 ("not yet") until the server has seen the held connections close
            return int(node.rpc("chain_getHeader")["number"], 16) > base_height + 1
        except RPC_NOT_READY:
            return False

    wait_until(authored, "blocks authored after the flood")
    for sign in ("accept failed", "EMFILE", "Too many open files"):
        assert sign not in node.log


# ---------------------------------------------------------------------------
# Request timeout (finding: a body sent one byte every 2 s was kept forever)


@pytest.mark.slow
async def test_trickling_requests_time_out_and_free_their_descriptors(
        opus: Callable[..., OpusProcess]) -> None:
    node = opus("--dev", "--rpc-request-timeout", "1")
    base = node.open_descriptors()
    answers: dict[int, bytes] = {}

    async def trickle(index: int, headers_too: bool) -> None:
        """Send part of a request, then one byte every 0.2 s, until the server ends it."""
        stream = await trio.open_tcp_stream(HOST, node.port)
        head = post_head(1000)
        received = bytearray()
        async with stream:
            await stream.send_all(head[:20] if headers_too else head)

            async def drip() -> None:
                try:
                    while True:
                        await trio.sleep(0.2)
                        await stream.send_all(b" ")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # closed by the server

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drip)
                try:
                    while chunk := await stream.receive_some(65536):
                        received += chunk
                except trio.BrokenResourceError:
                    pass  # reset: the server closed with our last bytes unread
                nursery.cancel_scope.cancel()
        answers[index] = bytes(received)

    with trio.fail_after(2 * WAIT_S):
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(trickle, i, i >= 8)
    # The slow bodies got 408 and a JSON-RPC error; slow headers were cut off.
    for i in range(8):
        head, _, body = answers[i].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answers[i]
        assert strict_json(body)["error"]["code"] == -32600
    await trio.to_thread.run_sync(
        wait_until, lambda: node.open_descriptors() <= base, "the descriptors to be freed")
    assert node.rpc("system_name") == "Opus Node"


# ---------------------------------------------------------------------------
# Rate limit


def test_rate_limiter_bursts_then_paces_then_refuses() -> None:
    limiter = RateLimiter(60)  # one a second after a burst of 60
    assert [limiter.reserve(100.0) for _ in range(60)] == [0.0] * 60
    waits = [limiter.reserve(100.0) for _ in range(RateLimiter.MAX_WAITING)]
    assert waits == [pytest.approx(float(n)) for n in range(1, RateLimiter.MAX_WAITING + 1)]
    assert limiter.reserve(100.0) is None  # too many waiting: refused, nothing used up
    assert limiter.reserve(100.0) is None
    assert limiter.reserve(100.0 + RateLimiter.MAX_WAITING + 60.0) == 0.0  # time refills it


async def test_rate_limit_refuses_calls_and_keeps_the_connection(tmp_path: Path) -> None:
    async with running_node(tmp_path / "n", rpc_rate_limit=600) as node:
        port = node.config.rpc_port
        assert port is not None
        batch = json.dumps([call("system_name", i) for i in range(700)]).encode()

        def check(answers: list[dict[str, Any]]) -> None:
            assert [a["id"] for a in answers] == list(range(700))
            served = [a for a in answers if "result" in a]
            refused = [a for a in answers if "error" in a]
            assert len(served) >= 600 and refused
            assert all(a["error"] == {"code": -32999, "message": "RPC rate limit exceeded"}
                       for a in refused)

        # HTTP: the limit belongs to the keep-alive connection, which stays usable.
        conn = http.client.HTTPConnection(HOST, port, timeout=WAIT_S)
        try:
            status, answers = await apost(port, batch, conn)
            assert status == 200
            check(answers)
            status, fresh = await apost(port, json.dumps(call("system_chain")).encode())
            assert fresh["result"] == "Opus Development"  # another connection: its own limit

            async def served_again() -> bool:
                status, answer = await apost(port, json.dumps(call("system_name")).encode(),
                                             conn)
                return status == 200 and answer.get("result") == "Opus Node"

            with trio.fail_after(WAIT_S):
                while not await served_again():
                    await trio.sleep(0.1)
        finally:
            conn.close()

        # WebSocket: the same, and its subscriptions carry on.
        async with websocket(node) as ws:
            subscription = (await ws.call("chain_subscribeNewHeads"))["result"]
            answers = await ws.send_raw(batch.decode())
            check(answers)
            await ws.notification(subscription)
            with trio.fail_after(WAIT_S):
                while "result" not in await ws.call("system_name"):
                    await trio.sleep(0.1)


# ---------------------------------------------------------------------------
# Strict JSON (findings: NaN/Infinity/1e999 ids echoed; a lone surrogate: HTTP 500 or WS 1011)

BAD_IDS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b'"\\ud800"', b'"\xed\xa0\x80"',
           b'"\xff"']


def bad_batch() -> bytes:
    """A batch: a good call, one per bad id, a bad string in params, a good call."""
    good = b'{"jsonrpc":"2.0","method":"system_name","id":%s}'
    items = [good % b"1"]
    items += [good % bad for bad in BAD_IDS]
    items.append(b'{"jsonrpc":"2.0","method":"chain_getHeader","params":["\\udc00"],"id":2}')
    items.append(b'{"jsonrpc":"2.0","method":"chain_getHeader","params":[NaN],"id":3}')
    items.append(good % b'"last"')
    return b"[" + b",".join(items) + b"]"


def check_bad_batch(answers: list[dict[str, Any]]) -> None:
    assert len(answers) == len(BAD_IDS) + 4
    assert answers[0] == {"jsonrpc": "2.0", "id": 1, "result": "Opus Node"}
    for answer in answers[1:1 + len(BAD_IDS)]:
        assert answer["id"] is None and answer["error"]["code"] == -32600, answer
    assert answers[-3]["id"] == 2 and answers[-3]["error"]["code"] == -32600
    assert answers[-2]["id"] == 3 and answers[-2]["error"]["code"] == -32600
    assert answers[-1] == {"jsonrpc": "2.0", "id": "last", "result": "Opus Node"}


async def test_unrepresentable_ids_and_strings_are_refused_with_valid_json(
        tmp_path: Path) -> None:
    async with running_node(tmp_path / "n") as node:
        port = node.config.rpc_port
        assert port is not None
        # HTTP: every answer parses strictly; the batch's other answers are kept.
        for bad in BAD_IDS:
            status, answer = await apost(
                port, b'{"jsonrpc":"2.0","method":"system_name","id":%s}' % bad)
            assert status == 200 and answer["id"] is None
            assert answer["error"]["code"] == -32600, answer
        status, answers = await apost(port, bad_batch())
        assert status == 200
        check_bad_batch(answers)
        status, answer = await apost(port, b'{"jsonrpc":"2.0",\xed\xa0\x80"id":1}')
        assert status == 200 and answer["error"]["code"] == -32700  # not JSON at all
        status, answer = await apost(port, b'{"jsonrpc":"2.0","method":"system_name",'
                                           b'"id":"\\ud83d\\ude00"}')
        assert answer == {"jsonrpc": "2.0", "id": "\U0001f600", "result": "Opus Node"}

        # WebSocket: escapes in text frames, raw bytes in binary frames; the connection and
        # its subscription live on.
        async with open_websocket_url(ws_url(node)) as conn:
            ws = WS(conn)
            subscription = (await ws.call("chain_subscribeNewHeads"))["result"]
            for bad in BAD_IDS:
                message = b'{"jsonrpc":"2.0","method":"system_name","id":%s}' % bad
                try:
                    await conn.send_message(message.decode())
                except UnicodeDecodeError:  # raw bytes: not text, sent as a binary frame
                    await conn.send_message(message)
                answer = strict_json(await answer_message(ws))
                assert answer["id"] is None and answer["error"]["code"] == -32600, answer
            await conn.send_message(bad_batch())
            check_bad_batch(strict_json(await answer_message(ws)))
            await ws.notification(subscription)
            assert (await ws.call("system_name"))["result"] == "Opus Node"


async def answer_message(ws: WS) -> bytes:
    """The next message that is not a notification, as UTF-8 (strictly encoded)."""
    with trio.fail_after(WAIT_S):
        while True:
            text = await ws.conn.get_message()
            assert isinstance(text, str)  # the server answers in text frames
            message = json.loads(text)
            if isinstance(message, dict) and "method" in message and "id" not in message:
                ws.notifications.append(message)
                continue
            return text.encode("utf-8")
