"""The JSON-RPC transport: HTTP POST and WebSocket on one port (Starlette on Hypercorn/trio).

Transport only: bodies and messages go to :func:`node.rpc.methods.handle_payload`
and its answers come back as JSON. What this module enforces:

* CORS: ``node.config.rpc_cors`` None allows only ``http(s)://localhost[:port]``
  and ``http(s)://127.0.0.1[:port]`` origins; ``("*",)`` allows every origin;
  otherwise exactly the listed origins. A request (HTTP or WebSocket upgrade)
  carrying another ``Origin`` is refused with 403. Requests without an
  ``Origin`` header (curl, the CLI) are always served.
* ``rpc_max_body``: a larger HTTP body or WebSocket message is answered with
  JSON-RPC error -32007 "Request is too big" (HTTP status 413); the
  connection and the server carry on.
* ``rpc_max_subscriptions`` per WebSocket connection (enforced by the session).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from node.rpc import OVERSIZED_REQUEST, RpcError
from node.rpc.methods import RpcService, Session, handle_payload

if TYPE_CHECKING:
    from node.service import Node

log = logging.getLogger("opus.rpc")

LOCALHOST_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
WS_SEND_BUFFER = 256


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _too_big(limit: int) -> dict[str, Any]:
    error = RpcError(OVERSIZED_REQUEST, "Request is too big", f"Exceeded max limit of {limit}")
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": None}


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


def build_app(node: Node, service: RpcService | None = None) -> Starlette:
    """The ASGI app serving ``node``'s JSON-RPC on ``/`` (HTTP POST and WebSocket)."""
    service = service or RpcService(node)
    policy = OriginPolicy(node.config.rpc_cors)
    max_body = node.config.rpc_max_body

    async def http_endpoint(request: Request) -> Response:
        if not policy.allows(request.headers.get("origin")):
            return PlainTextResponse("Origin not allowed", status_code=403)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return JSONResponse(_too_big(max_body), status_code=413)
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return JSONResponse(_too_big(max_body), status_code=413)
        except ClientDisconnect:
            return Response(status_code=400)
        answer = await handle_payload(Session(service), bytes(body))
        if answer is None:
            return Response(status_code=200)
        return Response(_dumps(answer), media_type="application/json")

    async def ws_endpoint(websocket: WebSocket) -> None:
        if not policy.allows(websocket.headers.get("origin")):
            await websocket.close(code=1008)  # before accept: refused with HTTP 403
            return
        await websocket.accept()
        outgoing, queued = trio.open_memory_channel[Any](WS_SEND_BUFFER)

        async def writer(scope: trio.CancelScope) -> None:
            try:
                async with queued:
                    async for message in queued:
                        await websocket.send_text(_dumps(message))
            except Exception:  # noqa: BLE001 - the client went away: end the connection
                scope.cancel()

        async def send(message: Any) -> None:
            await outgoing.send(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, nursery.cancel_scope)
            session = Session(service, send=send, nursery=nursery)
            try:
                await _read_loop(websocket, session, send, max_body)
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


async def _read_loop(websocket: WebSocket, session: Session,
                     send: Callable[[Any], Awaitable[None]], max_body: int) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        size = len(data.encode() if isinstance(data, str) else data)
        if size > max_body:
            await send(_too_big(max_body))
            continue
        answer = await handle_payload(session, data)
        if answer is not None:
            await send(answer)
        session.start_pending()


def hypercorn_config(node: Node) -> Config:
    config = Config()
    host = node.config.rpc_host
    bind_host = f"[{host}]" if ":" in host else host
    config.bind = [f"{bind_host}:{node.config.rpc_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Hypercorn closes a WebSocket on a message over its own limit; keep that well above
    # rpc_max_body so an oversize request gets a JSON-RPC error instead.
    config.websocket_max_message_size = max(4 * node.config.rpc_max_body, 1 << 20)
    config.graceful_timeout = 1.0
    return config


async def serve_rpc(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the node's JSON-RPC on ``rpc_host:rpc_port`` until cancelled.

    ``task_status.started`` is called once the socket listens, with the bound
    URLs (e.g. ``["http://127.0.0.1:9944"]``; useful with ``rpc_port=0``).
    """
    app = build_app(node)
    config = hypercorn_config(node)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_serve, app, config, stop)
        log.debug("JSON-RPC listening on %s", ", ".join(binds))
        task_status.started(binds)


async def _serve(app: Starlette, config: Config, stop: trio.Event, *,
                 task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await serve(app, config, shutdown_trigger=stop.wait,  # type: ignore[arg-type]
                task_status=task_status)
