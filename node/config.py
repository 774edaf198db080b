"""A node's settings: what the ``opus`` command's flags become (``node.cli.run``)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from pathlib import Path

from node import rpc as rpc_limits
from node.keystore import KEYSTORE_DIR, SESSION_KEY_TYPES, Keystore
from node.txpool import PoolLimits
from runtime.crypto import Keypair


@dataclass
class NodeConfig:
    """The settings; ``keystore`` is made from ``keystore_path`` and ``keystore_password``.

    ``authority`` is the in-process form of ``--alice``: a validator whose keystore also
    holds that key, in memory only, as its aura and gran key.
    """

    base_path: Path
    name: str = "opus-node"
    validator: bool = False  # author and vote with the keystore's keys (--validator)
    keystore_path: Path | None = None  # None: <base path>/keystore
    keystore_password: str | None = field(default=None, repr=False)  # None: plain key files
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
    authority: InitVar[Keypair | None] = None
    role: str = field(init=False, default="full")
    keystore: Keystore = field(init=False, repr=False)

    def __post_init__(self, authority: Keypair | None) -> None:
        path = self.keystore_path or Path(self.base_path) / KEYSTORE_DIR
        self.keystore = Keystore(path, self.keystore_password)
        if authority is not None:
            for key_type in SESSION_KEY_TYPES:
                self.keystore.insert_ephemeral(key_type, authority)
            self.validator = True
        self.role = "authority" if self.validator else "full"
