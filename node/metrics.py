"""Prometheus metrics, in the shape Substrate's exporter has, served on ``--prometheus-port``.

Each node has its own :class:`prometheus_client.CollectorRegistry` (several
nodes can run in one process, e.g. in tests). Gauges that mirror the node's
state (heights, pool, peers) are read from the node when scraped; counters and
histograms are fed by the node through :meth:`Metrics.block_imported` and
:meth:`Metrics.block_authored`.

The exporter is a minimal HTTP/1.0-style responder on a trio TCP listener
(``GET /metrics``): no threads, and it stops with the node's nursery.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from node.version import VERSION

log = logging.getLogger("opus")

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
# No ``*_created`` series: Substrate's exporter has none.
disable_created_metrics()  # type: ignore[no-untyped-call]

IMPORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The node's metrics in their own registry."""

    def __init__(self, *, version: str, chain: str, name: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.block_height = Gauge("opus_block_height", "Block height info of the chain",
                                  ["status"], registry=r)
        self.ready_transactions = Gauge("opus_ready_transactions_number",
                                        "Number of transactions in the ready queue", registry=r)
        self.peers = Gauge("opus_peers", "Number of connected peers", registry=r)
        # prometheus_client appends ``_total`` to counters.
        self.imported_extrinsics = Counter("opus_imported_extrinsics",
                                           "Number of extrinsics in imported blocks", registry=r)
        self.block_import = Histogram("opus_block_import_seconds",
                                      "Time taken to verify, execute and commit a block",
                                      buckets=IMPORT_BUCKETS, registry=r)
        self.block_authoring = Histogram("opus_block_authoring_seconds",
                                         "Time taken to build and seal a block",
                                         buckets=IMPORT_BUCKETS, registry=r)
        self.build_info = Gauge("opus_build_info", "A metric with a constant '1' value labeled "
                                "by version, chain and node name",
                                ["version", "chain", "name"], registry=r)
        self.build_info.labels(version=version, chain=chain, name=name).set(1)

    @classmethod
    def for_node(cls, node: Any) -> Metrics:
        return cls(version=VERSION, chain=node.genesis.spec.id, name=node.config.name)

    # ---------------------------------------------------------------- fed by the node

    def block_imported(self, n_extrinsics: int, seconds: float) -> None:
        self.imported_extrinsics.inc(n_extrinsics)
        self.block_import.observe(seconds)

    def block_authored(self, seconds: float) -> None:
        self.block_authoring.observe(seconds)

    # ---------------------------------------------------------------- read at scrape time

    def refresh(self, node: Any) -> None:
        self.block_height.labels(status="best").set(node.best.number)
        self.block_height.labels(status="finalized").set(node.finalized.number)
        self.ready_transactions.set(node.pool.status().ready)
        self.peers.set(node.peer_count())

    def render(self, node: Any | None = None) -> bytes:
        if node is not None:
            self.refresh(node)
        return generate_latest(self.registry)


def _response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    headers = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return headers.encode() + (b"" if head else body)


async def _read_request_head(stream: trio.abc.Stream) -> bytes | None:
    data = b""
    with trio.move_on_after(REQUEST_TIMEOUT_S):
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST_BYTES:
                return None
        return data
    return None


async def handle_connection(stream: trio.abc.Stream, node: Any, metrics: Metrics) -> None:
    """Answer one HTTP request on ``stream``; never raises (a bad client cannot stop the node)."""
    try:
        async with stream:
            head = await _read_request_head(stream)
            if head is None:
                await stream.send_all(_response("400 Bad Request", b"bad request\n",
                                                "text/plain"))
                return
            parts = head.split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            target = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                reply = _response("405 Method Not Allowed", b"method not allowed\n", "text/plain")
            elif target != b"/metrics":
                reply = _response("404 Not Found", b"not found; try /metrics\n", "text/plain")
            else:
                reply = _response("200 OK", metrics.render(node), CONTENT_TYPE_LATEST,
                                  head=method == b"HEAD")
            await stream.send_all(reply)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except Exception:  # noqa: BLE001 - the exporter must outlive any request
        log.debug("metrics request failed", exc_info=True)


async def serve_metrics(node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics`` on the node's Prometheus address until cancelled.

    Sets ``node.metrics`` if the node has none yet; ``task_status.started`` gets the bound port.
    """
    metrics: Metrics = node.metrics
    if metrics is None:
        metrics = node.metrics = Metrics.for_node(node)
    host = node.config.prometheus_host
    listeners = await trio.open_tcp_listeners(node.config.prometheus_port, host=host)
    port = listeners[0].socket.getsockname()[1]
    log.info("〽️ Prometheus exporter started at %s:%d/metrics", host, port)

    async def handler(stream: trio.SocketStream) -> None:
        await handle_connection(stream, node, metrics)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(port)
