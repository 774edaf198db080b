"""A node's settings: what the ``opus`` command's flags become (``node.cli.run``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node import rpc as rpc_limits
from node.txpool import PoolLimits
from runtime.crypto import Keypair


@dataclass
class NodeConfig:
    base_path: Path
    name: str = "opus-node"
    authority: Keypair | None = None  # set on a validator
    rpc_host: str = "127.0.0.1"
    rpc_port: int | None = 9944  # None: no RPC server
    rpc_methods: str = "safe"  # "safe" or "unsafe"
    rpc_cors: tuple[str, ...] | None = None  # None: localhost only; ("*",): all
    # The JSON-RPC limits (docs/rpc.md, "Limits"); sizes in bytes.
    rpc_max_request_size: int = rpc_limits.DEFAULT_MAX_REQUEST_MB * rpc_limits.MIB
    rpc_max_response_size: int = rpc_limits.DEFAULT_MAX_RESPONSE_MB * rpc_limits.MIB
    rpc_max_batch_len: int = rpc_limits.DEFAULT_MAX_BATCH_LEN
    rpc_max_connections: int = rpc_limits.DEFAULT_MAX_CONNECTIONS  # HTTP and WebSocket
    rpc_max_subscriptions: int = rpc_limits.DEFAULT_MAX_SUBSCRIPTIONS  # per connection
    rpc_rate_limit: int | None = None  # calls per minute per connection; None: no limit
    # Seconds for a request's headers, and again for its body, to arrive; also how long an
    # idle HTTP keep-alive connection is kept.
    rpc_request_timeout: float = rpc_limits.DEFAULT_REQUEST_TIMEOUT_S
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int | None = 9615
    p2p_port: int = 30333
    listen_addrs: tuple[str, ...] = ()
    bootnodes: tuple[str, ...] = ()
    node_key_file: Path | None = None
    pool_limits: PoolLimits = field(default_factory=PoolLimits)  # --pool-limit, --pool-kbytes
    network: bool = False  # the `opus` command turns it on; in-process tests mostly don't
    role: str = field(init=False, default="full")

    def __post_init__(self) -> None:
        self.role = "authority" if self.authority is not None else "full"
