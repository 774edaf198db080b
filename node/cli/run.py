"""Running a node: ``opus [--dev] [--chain …] [--alice] …`` with no subcommand.

The flags become a :class:`node.config.NodeConfig` (:func:`node_config`); the node runs
until Ctrl-C or SIGTERM, then closes its database (and removes a ``--tmp`` base path).
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from genesis import Genesis
from node.cli.common import UserError, base_path, is_listen_error, leaves, load_genesis
from node.cli.keys import keystore_password, keystore_path
from node.keystore import KEY_TYPES, Keystore, KeystoreError
from node.logs import setup_logging, short_hash
from runtime.crypto import dev_keypair, encode_address
from runtime.modules import validators

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.service import Node

log = logging.getLogger("opus")

_ADJECTIVES = ("quiet", "bright", "gentle", "vivid", "brave", "lucid", "mellow", "nimble",
               "proud", "serene", "swift", "witty", "bold", "calm", "eager", "fancy")
_NOUNS = ("canvas", "sonnet", "fresco", "ballad", "mosaic", "etching", "fugue", "haiku",
          "sketch", "mural", "novella", "overture", "palette", "quartet", "sculpture", "verse")


def random_node_name() -> str:
    """A name for a node started without ``--name``: ``vivid-verse-8536``."""
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(10000):04d}"


LOCALHOST = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


class RpcExposure(NamedTuple):
    """Where the JSON-RPC server listens and which methods it serves."""

    host: str
    methods: str  # "safe" or "unsafe"


def rpc_exposure(args: argparse.Namespace) -> RpcExposure:
    """Substrate's rules (docs/rpc.md, "Who may call what"):

    * by default the server listens on 127.0.0.1 and serves safe methods (unsafe ones with
      ``--rpc-methods unsafe``);
    * ``--rpc-external`` listens on all interfaces and serves safe methods only;
    * ``--unsafe-rpc-external`` listens on all interfaces and serves unsafe methods too
      (unless ``--rpc-methods safe``): only behind a proxy that filters methods.
    """
    if args.unsafe_rpc_external:
        return RpcExposure(ALL_INTERFACES, args.rpc_methods or "unsafe")
    if args.rpc_external:
        return RpcExposure(ALL_INTERFACES, "safe")
    return RpcExposure(LOCALHOST, args.rpc_methods or "safe")


def exposure_warnings(config: NodeConfig) -> list[str]:
    """The warning lines a node logs at start about what it serves beyond this machine."""
    warnings = []
    if config.rpc_port is not None and config.rpc_host != LOCALHOST:
        if config.rpc_methods == "unsafe":
            warnings.append(f"JSON-RPC listens on all interfaces with unsafe methods "
                            f"(--unsafe-rpc-external): anyone who reaches port "
                            f"{config.rpc_port} can insert keys and change the node; serve it "
                            "only behind a proxy that filters methods")
        else:
            warnings.append(f"JSON-RPC listens on all interfaces (--rpc-external), port "
                            f"{config.rpc_port}: safe methods only; unsafe ones need "
                            "--unsafe-rpc-external")
    if config.prometheus_port is not None and config.prometheus_host != LOCALHOST:
        warnings.append(f"Prometheus metrics on all interfaces (--prometheus-external), port "
                        f"{config.prometheus_port}")
    return warnings


def node_config(args: argparse.Namespace, genesis: Genesis, base: Path) -> NodeConfig:
    """The node's settings from its flags (the boot nodes: the flag's, then the spec's)."""
    from node.config import NodeConfig
    from node.rpc import MIB
    from node.txpool import PoolLimits

    authority = dev_keypair(args.dev_key) if args.dev_key else None
    if args.rpc_cors is None:
        cors: tuple[str, ...] | None = ("*",) if args.dev else None
    elif args.rpc_cors.strip().lower() == "all":
        cors = ("*",)
    else:
        cors = tuple(o.strip() for o in args.rpc_cors.split(",") if o.strip())
    bootnodes = tuple(dict.fromkeys([*args.bootnodes, *genesis.spec.boot_nodes]))
    exposure = rpc_exposure(args)
    return NodeConfig(
        base_path=base,
        name=args.name or random_node_name(),
        validator=args.validator or authority is not None,
        keystore_path=keystore_path(args, base),
        keystore_password=keystore_password(args),
        authority=authority,
        rpc_host=exposure.host,
        rpc_port=args.rpc_port,
        rpc_methods=exposure.methods,
        rpc_cors=cors,
        rpc_max_request_size=args.rpc_max_request_size * MIB,
        rpc_max_response_size=args.rpc_max_response_size * MIB,
        rpc_max_batch_len=args.rpc_max_batch_request_len,
        rpc_max_connections=args.rpc_max_connections,
        rpc_max_subscriptions=args.rpc_max_subscriptions_per_connection,
        rpc_rate_limit=args.rpc_rate_limit,
        rpc_request_timeout=args.rpc_request_timeout,
        prometheus_host=ALL_INTERFACES if args.prometheus_external else LOCALHOST,
        prometheus_port=None if args.no_prometheus else args.prometheus_port,
        p2p_port=args.port,
        listen_addrs=tuple(args.listen_addr),
        bootnodes=bootnodes,
        node_key_file=Path(args.node_key_file) if args.node_key_file else None,
        pool_limits=PoolLimits.for_ready(args.pool_limit, args.pool_kbytes),
        network=True,
    )


def run_node(args: argparse.Namespace) -> int:
    """Run a node until it is stopped (``--dev`` implies ``--chain dev --alice --tmp``)."""
    setup_logging(",".join(args.log or ["info"]))
    if args.dev:
        if not args.chain:
            args.chain = "dev"
        if args.dev_key is None:
            args.dev_key = "alice"
        args.validator = True
        if not args.base_path:
            args.tmp = True
    if args.dev_key is not None:
        args.validator = True
    genesis = load_genesis(args)
    tmp_dir = Path(tempfile.mkdtemp(prefix="opus-")) if args.tmp else None
    try:
        base = tmp_dir if tmp_dir is not None else base_path(args, genesis)
        config = node_config(args, genesis, base)
        return _run(config, genesis)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _run(config: NodeConfig, genesis: Genesis) -> int:
    import trio

    from node.chain.store import ChainStore, db_path
    from node.service import Node
    from node.version import VERSION

    spec = genesis.spec
    log.info("Opus Chain Node")
    log.info("✌️  version %s", VERSION)
    log.info("📋 Chain specification: %s", spec.name)
    log.info("🏷  Node name: %s", config.name)
    log.info("👤 Role: %s", "AUTHORITY" if config.validator else "FULL")
    log.info("💾 Database: LevelDB at %s", db_path(config.base_path))
    if config.node_key_file is not None:  # fail early on a bad key file
        from node import nodekey

        nodekey.read_key_file(config.node_key_file)
    try:  # a wrong password or an unusable keystore directory: one clear error, exit 1
        config.keystore.check()
    except KeystoreError as e:
        raise UserError(str(e)) from None
    with ChainStore.open(config.base_path, genesis) as store:
        log.info("🔨 Initializing Genesis block/state (state: %s, header-hash: %s)",
                 short_hash(genesis.header.state_root), short_hash(genesis.hash))
        best = store.best_header
        log.info("📦 Highest known block at #%d", best.number)
        if config.validator:
            _log_keys(config.keystore, validators.authorities.get(store.best_state()))
        node = Node(config, genesis, store)
        from node.chain.importer import settle_for_import

        settle_for_import()  # after start-up: what is alive now lives as long as the node
        if config.prometheus_port is not None:
            from node.metrics import Metrics

            node.metrics = Metrics.for_node(node)
        try:
            trio.run(_serve, node)
        except BaseException as e:
            if any(is_listen_error(x) for x in leaves(e)):
                _explain_listen_error(config)
            raise
        log.info("Shutdown complete: best #%d (%s), finalized #%d", node.best.number,
                 short_hash(node.best.hash), node.finalized.number)
    return 0


def _log_keys(keystore: Keystore, authorities: Sequence[bytes]) -> None:
    """A validator's keys, by their public part only, and which of them the current
    authority set has; or how to give it one."""
    roles: dict[bytes, list[str]] = {}
    for key_type in KEY_TYPES:
        for public in keystore.publics(key_type):
            roles.setdefault(public, []).append(key_type)
    for public, types in roles.items():
        log.info("🔑 Keystore key %s (%s)%s", encode_address(public), ", ".join(types),
                 ": in the authority set" if public in authorities else "")
    if not any(p in authorities for p in roles):
        log.warning("🔑 The keystore (%s) holds no key of the authority set: this validator "
                    "authors and votes once one is inserted (opus key insert, "
                    "author_insertKey)", keystore.path)


def _explain_listen_error(config: NodeConfig) -> None:
    """Name the port that could not be bound (the OSError itself does not)."""
    import socket

    wanted = [("JSON-RPC", "--rpc-port", config.rpc_host, config.rpc_port),
              ("Prometheus", "--prometheus-port", config.prometheus_host,
               config.prometheus_port)]
    for what, flag, host, port in wanted:
        if port is None:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as trio binds
            try:
                probe.bind((host, port))
            except OSError as e:
                raise UserError(f"cannot listen on {host}:{port} for {what}: "
                                f"{e.strerror or e} (another node? choose another {flag})") \
                    from None


async def _serve(node: Node) -> None:
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("Received %s, shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            await nursery.start(node.run)
            config = node.config
            for warning in exposure_warnings(config):
                log.warning("⚠️  %s", warning)
            if config.rpc_port is not None:
                cors = "all" if config.rpc_cors == ("*",) else (
                    ", ".join(config.rpc_cors) if config.rpc_cors else "localhost")
                log.info("Running JSON-RPC server: addr=%s:%d, allowed origins=[%s]",
                         config.rpc_host, config.rpc_port, cors)
