"""The JSON-RPC transport: HTTP POST and WebSocket on one port (Starlette on Hypercorn/trio).

Transport only: bodies and messages go to :func:`node.rpc.protocol.handle_payload`
and its answers (UTF-8 JSON, already within the response limit) go back. What
this module enforces (docs/rpc.md, "Limits"):

* CORS: ``node.config.rpc_cors`` None allows only ``http(s)://localhost[:port]``
  and ``http(s)://127.0.0.1[:port]`` origins; ``("*",)`` allows every origin;
  otherwise exactly the listed origins. A request (HTTP or WebSocket upgrade)
  carrying another ``Origin`` is refused with 403. Requests without an
  ``Origin`` header (curl, the CLI) are always served.
* ``rpc_max_connections``: connections (HTTP and WebSocket) served at once.
  The server accepts connections itself (:class:`ConnectionServer`) and hands
  each to Hypercorn's per-connection handler; one over the limit is answered
  at once with HTTP 429 and JSON-RPC error -32009 and closed. A slot is free
  again as soon as a connection ends (:class:`_ConnectionHandler`). The limit
  is lowered if the open-files limit would not leave room for the database and
  the p2p host.
* ``rpc_request_timeout``: a request's headers must arrive within it (and an
  idle keep-alive connection is closed after it), then its body within it
  again; a late body is answered with HTTP 408 and the connection closed.
* ``rpc_max_request_size``: a larger HTTP body (read and thrown away, up to
  :data:`DISCARD_LIMIT`, so that the client sees the answer) or WebSocket
  message is answered with -32007 "Request is too big" (HTTP 413); the
  connection and the server carry on.
* ``rpc_rate_limit`` per connection, ``rpc_max_subscriptions`` per WebSocket,
  the batch length and the response size: by the protocol (:mod:`node.rpc.protocol`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import resource
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from client.api import INVALID_REQUEST, RpcError
from node.chain.store import MAX_OPEN_FILES
from node.rpc import request_too_big, server_busy
from node.rpc.methods import METHODS
from node.rpc.protocol import RateLimiter, RpcService, Session, encode_json, handle_payload

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.core import NodeCore as Node

log = logging.getLogger("opus.rpc")

LOCALHOST_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
WS_SEND_BUFFER = 256  # notifications queued for one WebSocket
# An oversize HTTP body is read and thrown away up to this many bytes, so that a client
# still writing it then reads the 413; past it the connection is closed after the answer.
DISCARD_LIMIT = 16 * 1024 * 1024
# Connections over the limit being answered (429) at once; more are closed unanswered.
MAX_REFUSING = 32
REFUSAL_LINGER_S = 1.0  # how long a refused connection is read from, so the 429 arrives
REFUSAL_DRAIN_BYTES = 64 * 1024
# Descriptors the node needs besides the database's (node.chain.store.MAX_OPEN_FILES) and the
# p2p host's: standard streams, log files, LevelDB's own files, the event loop's, the
# listening sockets, Prometheus, signature workers' pipes.
DESCRIPTOR_SLACK = 128
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S = 0.1
REFUSAL_LOG_INTERVAL_S = 60.0
CONNECTION_SCOPE_KEY = "opus.connection"


def _error_body(error: RpcError) -> bytes:
    return encode_json({"jsonrpc": "2.0", "error": error.to_json(), "id": None})


def _error_response(error: RpcError, status: int, *, close: bool = False) -> Response:
    headers = {"connection": "close"} if close else None
    return Response(_error_body(error), status_code=status, headers=headers,
                    media_type="application/json")


def _timed_out(timeout: float) -> RpcError:
    return RpcError(INVALID_REQUEST, "Invalid request",
                    f"the request did not arrive within {timeout:g} s")


class OriginPolicy:
    def __init__(self, cors: tuple[str, ...] | None) -> None:
        self.any = cors is not None and "*" in cors
        self.listed = frozenset(cors or ())
        self.localhost = cors is None

    def allows(self, origin: str | None) -> bool:
        if origin is None or self.any:
            return True
        if self.localhost:
            return re.fullmatch(LOCALHOST_ORIGIN, origin) is not None
        return origin in self.listed


@dataclass
class RpcConnection:
    """What the server keeps for one client connection: its rate limit."""

    rate_limit: RateLimiter | None

    @classmethod
    def for_config(cls, config: NodeConfig) -> RpcConnection:
        limit = config.rpc_rate_limit
        return cls(RateLimiter(limit) if limit is not None else None)


def _connection_of(scope: MutableMapping[str, Any], config: NodeConfig) -> RpcConnection:
    connection = scope.get(CONNECTION_SCOPE_KEY)
    if isinstance(connection, RpcConnection):
        return connection
    return RpcConnection.for_config(config)  # served by another ASGI server


class BodyRefused(Exception):
    """An HTTP body refused before it is parsed; ``response`` is the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's body, of at most ``limit`` bytes, arrived within ``timeout`` seconds.

    BodyRefused with the answer otherwise: 413 with -32007 for a larger body
    (read through up to :data:`DISCARD_LIMIT` first), 408 for a late one.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DISCARD_LIMIT:
        raise BodyRefused(_error_response(request_too_big(limit), 413, close=True))
    body = bytearray()
    received = 0
    with trio.move_on_after(timeout) as deadline:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received <= limit:
                    body += chunk
                elif received > DISCARD_LIMIT:
                    break
        except ClientDisconnect:
            raise BodyRefused(Response(status_code=400)) from None
    if deadline.cancelled_caught:
        raise BodyRefused(_error_response(_timed_out(timeout), 408, close=True))
    if received > limit:
        raise BodyRefused(_error_response(request_too_big(limit), 413,
                                          close=received > DISCARD_LIMIT))
    return bytes(body)


def build_app(node: Node, service: RpcService | None = None) -> Starlette:
    """The ASGI app serving ``node``'s JSON-RPC on ``/`` (HTTP POST and WebSocket)."""
    service = service or RpcService(node, METHODS)
    config = node.config
    policy = OriginPolicy(config.rpc_cors)

    async def http_endpoint(request: Request) -> Response:
        if not policy.allows(request.headers.get("origin")):
            return PlainTextResponse("Origin not allowed", status_code=403)
        connection = _connection_of(request.scope, config)
        try:
            body = await read_body(request, config.rpc_max_request_size,
                                   config.rpc_request_timeout)
        except BodyRefused as refused:
            return refused.response
        answer = await handle_payload(Session(service, rate_limit=connection.rate_limit), body)
        if answer is None:
            return Response(status_code=200)
        return Response(answer, media_type="application/json")

    async def ws_endpoint(websocket: WebSocket) -> None:
        if not policy.allows(websocket.headers.get("origin")):
            await websocket.close(code=1008)  # before accept: refused with HTTP 403
            return
        connection = _connection_of(websocket.scope, config)
        await websocket.accept()
        outgoing, queued = trio.open_memory_channel[Any](WS_SEND_BUFFER)

        async def writer(scope: trio.CancelScope) -> None:
            try:
                async with queued:
                    async for message in queued:
                        await websocket.send_text(encode_json(message).decode())
            except Exception:  # noqa: BLE001 - the client went away: end the connection
                scope.cancel()

        async def notify(message: Any) -> None:
            await outgoing.send(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, nursery.cancel_scope)
            session = Session(service, send=notify, nursery=nursery,
                              rate_limit=connection.rate_limit)
            try:
                await _read_loop(websocket, session, config.rpc_max_request_size)
            except (WebSocketDisconnect, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
                log.exception("WebSocket connection failed")
            finally:
                session.close()
                nursery.cancel_scope.cancel()

    async def not_allowed(request: Request) -> Response:
        return PlainTextResponse("Use POST / for JSON-RPC, or a WebSocket on /",
                                 status_code=405)

    if policy.any:
        cors = Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"],
                          allow_headers=["content-type"])
    elif policy.localhost:
        cors = Middleware(CORSMiddleware, allow_origin_regex=LOCALHOST_ORIGIN,
                          allow_methods=["POST"], allow_headers=["content-type"])
    else:
        cors = Middleware(CORSMiddleware, allow_origins=sorted(policy.listed),
                          allow_methods=["POST"], allow_headers=["content-type"])
    routes = [
        Route("/", http_endpoint, methods=["POST"]),
        Route("/", not_allowed, methods=["GET", "PUT", "DELETE", "PATCH"]),
        WebSocketRoute("/", ws_endpoint),
    ]
    return Starlette(routes=routes, middleware=[cors])


async def _read_loop(websocket: WebSocket, session: Session, max_request: int) -> None:
    """Answer each message in turn: the answer is written before the next is read."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        size = len(data.encode() if isinstance(data, str) else data)
        if size > max_request:
            answer: bytes | None = _error_body(request_too_big(max_request))
        else:
            answer = await handle_payload(session, data)
        if answer is not None:
            await websocket.send_text(answer.decode())
        session.start_pending()


# ---------------------------------------------------------------------------
# Connections


def connection_limit(config: NodeConfig) -> int:
    """``rpc_max_connections``, or fewer if the open-files limit leaves no room for them.

    Like Substrate, the soft limit (``ulimit -n``) is raised first, up to the
    hard one, so that the node keeps the descriptors its database and p2p host
    need whatever RPC clients do.
    """
    reserve = MAX_OPEN_FILES + DESCRIPTOR_SLACK + MAX_REFUSING
    if config.network:
        from p2p.host import MAX_CONNECTIONS  # loaded anyway when the network runs

        reserve += MAX_CONNECTIONS
    wanted = config.rpc_max_connections + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return config.rpc_max_connections
    allowed = max(soft - reserve, 1)
    log.warning("JSON-RPC: at most %d connections instead of %d (--rpc-max-connections): "
                "the open-files limit %d (ulimit -n) must keep %d for the database, the "
                "network and the node", allowed, config.rpc_max_connections, soft, reserve)
    return allowed


def _busy_response(limit: int) -> bytes:
    """HTTP 429 with JSON-RPC error -32009 (jsonrpsee answers 429 too), then close."""
    body = _error_body(server_busy(f"Too many connections (at most {limit}); try again later"))
    head = ("HTTP/1.1 429 Too Many Requests\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "retry-after: 1\r\n"
            "connection: close\r\n\r\n")
    return head.encode("ascii") + body


class _ConnectionApp:
    """The app as Hypercorn calls it for one connection; its scope carries the connection."""

    def __init__(self, app: Starlette, connection: RpcConnection) -> None:
        self.app = app
        self.connection = connection

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any,
                       call_soon: Any) -> None:
        scope[CONNECTION_SCOPE_KEY] = self.connection
        await self.app(scope, receive, send)


class _ConnectionHandler(TCPServer):
    """Hypercorn's handler of one connection, ending as soon as the client has closed it.

    Hypercorn keeps a keep-alive connection's idle timer running after the
    client closed the connection, which holds its descriptor (and here its
    slot) until the timer ends (``--rpc-request-timeout``).
    """

    _reading_done = False

    async def _read_data(self) -> None:
        await super()._read_data()
        self._reading_done = True
        await self.idle_task.stop()

    async def _idle_timeout(self) -> None:
        if not self._reading_done:
            await super()._idle_timeout()


class ConnectionServer:
    """Accepts connections and serves at most ``limit`` at once with Hypercorn's handler.

    Hypercorn alone neither caps connections nor refuses them (a full server
    runs out of descriptors and stops accepting). Here a connection over the
    limit gets an HTTP 429 answer with JSON-RPC error -32009 and is closed, and
    a slot is free again as soon as a served connection ends.
    """

    def __init__(self, app: Starlette, config: Config, node_config: NodeConfig,
                 limit: int) -> None:
        self.app = app
        self.config = config
        self.node_config = node_config
        self.limit = limit
        self.active = 0
        self.refusing = 0
        self.refused = 0  # since the last warning
        self._warned_at = -math.inf
        self._busy = _busy_response(limit)
        self._context = WorkerContext(None)
        self._state = ConnectionState({})

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    if e.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    self._warn(f"accept failed: {os.strerror(e.errno)}")
                    await trio.sleep(ACCEPT_RETRY_S)
                    continue
                if self.active < self.limit:
                    self.active += 1
                    nursery.start_soon(self._serve_connection, stream)
                elif self.refusing < MAX_REFUSING:
                    self.refusing += 1
                    nursery.start_soon(self._refuse, stream)
                else:  # too many at once even to answer: close unanswered
                    self._count_refusal()
                    await stream.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        try:
            app = _ConnectionApp(self.app, RpcConnection.for_config(self.node_config))
            # Hypercorn types the stream as an SSLStream; a plain SocketStream is what its
            # own listener loop passes for http:// too.
            await _ConnectionHandler(app, self.config, self._context, self._state,
                                     stream)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
            log.exception("JSON-RPC connection failed")
        finally:
            self.active -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Answer 429, then read what the client sends a little longer, so it gets the answer."""
        self._count_refusal()
        try:
            with trio.move_on_after(REFUSAL_LINGER_S):
                await stream.send_all(self._busy)
                await stream.send_eof()
                drained = 0
                while drained < REFUSAL_DRAIN_BYTES:
                    data = await stream.receive_some(REFUSAL_DRAIN_BYTES)
                    if not data:
                        break
                    drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away first
        finally:
            self.refusing -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _count_refusal(self) -> None:
        self.refused += 1
        if self._warn(f"{self.refused} connection(s) refused: at most {self.limit} at once "
                      "(--rpc-max-connections)"):
            self.refused = 0

    def _warn(self, message: str) -> bool:
        """Log ``message`` at most once a minute (a flood of clients must not flood the log)."""
        now = trio.current_time()
        if now - self._warned_at < REFUSAL_LOG_INTERVAL_S:
            return False
        self._warned_at = now
        log.warning("JSON-RPC: %s", message)
        return True


def hypercorn_config(node: Node) -> Config:
    config = Config()
    host = node.config.rpc_host
    bind_host = f"[{host}]" if ":" in host else host
    config.bind = [f"{bind_host}:{node.config.rpc_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Hypercorn closes a WebSocket on a message over its own limit; keep that well above
    # rpc_max_request_size so an oversize request gets a JSON-RPC error instead.
    config.websocket_max_message_size = max(4 * node.config.rpc_max_request_size, 1 << 20)
    # Until a request's headers have arrived the connection is "idle" to Hypercorn: this
    # bounds slow headers as well as idle keep-alive connections.
    config.keep_alive_timeout = node.config.rpc_request_timeout
    # One request at a time on an HTTP/2 (h2c) connection too, as on HTTP/1.1: the
    # connection limit then bounds the requests in progress.
    config.h2_max_concurrent_streams = 1
    return config


async def serve_rpc(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the node's JSON-RPC on ``rpc_host:rpc_port`` until cancelled.

    ``task_status.started`` is called once the socket listens, with the bound
    URLs (e.g. ``["http://127.0.0.1:9944"]``; useful with ``rpc_port=0``).
    """
    config = hypercorn_config(node)
    server = ConnectionServer(build_app(node), config, node.config,
                              connection_limit(node.config))
    listeners = []
    binds = []
    for sock in config.create_sockets().insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    log.debug("JSON-RPC listening on %s (at most %d connections)", ", ".join(binds),
              server.limit)
    task_status.started(binds)
    await server.serve(listeners)


__all__ = [
    "BodyRefused",
    "ConnectionServer",
    "OriginPolicy",
    "RpcConnection",
    "build_app",
    "connection_limit",
    "hypercorn_config",
    "read_body",
    "serve_rpc",
]
