"""What the ``opus`` command does: run a node, or one of Substrate's subcommands.

Every function takes the parsed :class:`argparse.Namespace` and returns the
exit code. User errors raise :class:`UserError` (or a known error of the
chain spec, key or storage modules); :func:`dispatch` prints them as one
``Error: …`` line and returns 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genesis import ChainSpecError, Genesis, build_genesis, load_spec
from genesis.builder import genesis_state
from genesis.spec import spec_to_json
from node.display import safe_message
from node.logs import LogSpecError, setup_logging, short_hash
from node.nodekey import NodeKeyError
from runtime.codec import hex0x
from runtime.crypto import (
    DEV_ACCOUNT_NAMES,
    InvalidAddress,
    InvalidKey,
    Keypair,
    decode_address,
    dev_keypair,
    encode_address,
)

log = logging.getLogger("opus")


class UserError(Exception):
    """Something the user can fix; printed as ``Error: <message>``, exit 1."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, ChainSpecError, InvalidAddress, InvalidKey, NodeKeyError, LogSpecError,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    errors = USER_ERRORS
    try:
        from node.storage import StorageError

        errors += (StorageError,)
    except ImportError:
        pass
    try:
        from node.blockfile import BlockFileError

        errors += (BlockFileError,)
    except ImportError:
        pass
    return errors


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def dispatch(args: argparse.Namespace) -> int:
    commands: dict[str | None, Callable[[argparse.Namespace], int]] = {
        None: run_node,
        "build-spec": build_spec,
        "key": key_command,
        "purge-chain": purge_chain,
        "export-blocks": export_blocks,
        "import-blocks": import_blocks,
        "check-block": check_block,
        "testnet": testnet,
    }
    handler = commands.get(args.command)
    if handler is None:  # a creator command: it sets its own handler
        handler = getattr(args, "handler", None) or getattr(args, "func", None)
        if handler is None:
            raise SystemExit(f"opus: unknown command {args.command!r}")
    user_errors = _user_errors()
    try:
        return handler(args)
    except BaseException as e:  # noqa: BLE001 - sorted below
        leaves = list(_leaves(e))
        if leaves and all(isinstance(x, user_errors) or _is_listen_error(x) for x in leaves):
            # A message may quote a chain spec, a block file or a node's log: made safe
            # for the terminal, keeping its line breaks (the testnet quotes a log's tail).
            for message in dict.fromkeys(_message(x) for x in leaves):
                print(f"Error: {safe_message(message, multiline=True)}", file=sys.stderr)
            return 1
        if all(isinstance(x, KeyboardInterrupt) for x in leaves):
            return 0 if args.command is None else 130  # a node stops; a command is cut short
        raise


def _is_listen_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (98, 48, 99, 13, 10048)


def _message(exc: BaseException) -> str:
    if _is_listen_error(exc):
        return f"cannot listen: {exc}"
    return str(exc)


# ---------------------------------------------------------------------------
# shared parameters


def chain_name(args: argparse.Namespace) -> str:
    chain = getattr(args, "chain", None)
    if chain:
        return str(chain)
    return "dev" if getattr(args, "dev", False) else "local"


def load_genesis(args: argparse.Namespace) -> Genesis:
    return build_genesis(load_spec(chain_name(args)))


def data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return root / "opus"


def default_base_path(chain_id: str) -> Path:
    """``<data dir>/chains/<chain id>``: always a directory right inside ``chains``.

    A chain spec's id is checked when the spec is read (``[A-Za-z0-9_-]``, see
    :func:`genesis.spec.check_chain_id`); this refuses again, by the path itself, an id
    that would lead anywhere else (``/srv/x``, ``../x``, ``a/b``, ``..``), since a node
    writes its database there and ``purge-chain`` deletes one from there.
    """
    chains = data_dir() / "chains"
    path = chains / chain_id
    if path.parent != chains or path.name in ("", ".", ".."):
        raise UserError(f"the chain id {chain_id!r} cannot name a directory in {chains}; "
                        "give --base-path DIR or fix the chain spec's id")
    return path


def base_path(args: argparse.Namespace, genesis: Genesis) -> Path:
    given = getattr(args, "base_path", None)
    return Path(given).expanduser() if given else default_base_path(genesis.spec.id)


@contextmanager
def open_store(args: argparse.Namespace, genesis: Genesis, *, create: bool) -> Iterator[Any]:
    from node.storage import ChainStore, db_path

    base = base_path(args, genesis)
    if not create and not db_path(base).exists():
        raise UserError(f"no chain database at {db_path(base)} (wrong --base-path or --chain?)")
    with ChainStore.open(base, genesis) as store:
        yield store


# ---------------------------------------------------------------------------
# build-spec


def build_spec(args: argparse.Namespace) -> int:
    spec = load_spec(chain_name(args))
    if args.raw or spec.raw is not None:
        document = spec_to_json(spec, genesis_state(spec))
    else:
        build_genesis(spec)  # refuse a spec whose genesis cannot be built
        document = spec_to_json(spec)
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------
# key


def key_command(args: argparse.Namespace) -> int:
    handlers = {
        "generate": key_generate,
        "inspect": key_inspect,
        "generate-node-key": key_generate_node_key,
        "inspect-node-key": key_inspect_node_key,
    }
    return handlers[args.key_command](args)


def _print_key(*, public: bytes, seed: bytes | None, output: str) -> None:
    fields: dict[str, str] = {}
    if seed is not None:
        fields["secretSeed"] = hex0x(seed)
    fields["publicKey"] = hex0x(public)
    fields["accountId"] = hex0x(public)
    fields["address"] = encode_address(public)
    if output == "json":
        print(json.dumps(fields, indent=2))
        return
    labels = {"secretSeed": "Secret seed", "publicKey": "Public key (hex)",
              "accountId": "Account ID", "address": "Address"}
    for name, value in fields.items():
        print(f"{labels[name] + ':':<19}{value}")


def key_generate(args: argparse.Namespace) -> int:
    pair = Keypair.from_seed(os.urandom(32))
    _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    return 0


def _parse_hex(text: str, what: str, length: int) -> bytes:
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UserError(f"{what} is not hex: {text!r}") from None
    if len(data) != length:
        raise UserError(f"{what} must be {length} bytes, got {len(data)}")
    return data


def key_inspect(args: argparse.Namespace) -> int:
    if args.dev_account is not None:
        pair = dev_keypair(args.dev_account)
        _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    elif args.seed is not None:
        pair = Keypair.from_seed(_parse_hex(args.seed, "the seed", 32))
        _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    else:
        text: str = args.address
        if text.startswith("//") and text[2:].lower() in DEV_ACCOUNT_NAMES:
            pair = dev_keypair(text[2:])
            _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
        elif text.startswith("0x"):
            _print_key(public=_parse_hex(text, "the public key", 32), seed=None,
                       output=args.output_type)
        else:
            _print_key(public=decode_address(text), seed=None, output=args.output_type)
    return 0


def key_generate_node_key(args: argparse.Namespace) -> int:
    from node import nodekey

    key = nodekey.generate()
    if args.file is not None:
        path = Path(args.file)
        if path.exists():
            raise UserError(f"{path} already exists; not overwriting a node key")
        try:
            nodekey.write_key_file(path, key, binary=args.bin)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    else:
        secret = key.private_key.to_bytes()
        if args.bin:
            sys.stdout.buffer.write(secret)
            sys.stdout.flush()
        else:
            print(secret.hex())
    print(nodekey.peer_id(key), file=sys.stderr)  # Substrate prints the peer id to stderr
    return 0


def key_inspect_node_key(args: argparse.Namespace) -> int:
    from node import nodekey

    print(nodekey.peer_id(nodekey.read_key_file(Path(args.file))))
    return 0


# ---------------------------------------------------------------------------
# purge-chain


def purge_chain(args: argparse.Namespace) -> int:
    from node.storage import db_path

    genesis = load_genesis(args)
    path = db_path(base_path(args, genesis))
    if not path.exists():
        print(f'"{path}" did not exist.')
        return 0
    if not args.yes:
        try:
            answer = input(f'Are you sure to remove "{path}"? [y/N]: ')
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("Aborted")
            return 0
    _refuse_if_locked(path)
    shutil.rmtree(path)
    print(f'"{path}" removed.')
    return 0


def _refuse_if_locked(path: Path) -> None:
    """Never delete the database of a running node: LevelDB's lock tells."""
    import plyvel

    try:
        plyvel.DB(str(path), create_if_missing=False).close()
    except plyvel.Error as e:
        if "lock" in str(e).lower():
            raise UserError(f"the database {path} is in use by a running node; stop it first") \
                from None


# ---------------------------------------------------------------------------
# export-blocks, import-blocks, check-block


def export_blocks(args: argparse.Namespace) -> int:
    from node.blockfile import export_blocks as export

    genesis = load_genesis(args)
    with open_store(args, genesis, create=False) as store:
        best = store.best_header.number
        end = best if args.end is None else args.end
        if end > best:
            raise UserError(f"--to {end} is above the best block #{best}")
        if args.start > end:
            raise UserError(f"nothing to export: --from {args.start} is above #{end}")
        try:
            count = export(store, args.file, args.start, end)
        except OSError as e:
            raise UserError(f"cannot write {args.file}: {e.strerror or e}") from None
    print(f"Exported {count} blocks (#{args.start}..#{end}) to {args.file}", file=sys.stderr)
    return 0


def _verify_justification(store: Any, block: Any) -> None:
    from runtime.block import InvalidJustification, verify_justification
    from runtime.modules import validators

    justification = block.justification
    if justification is None:
        return
    parent_state = store.state_at(block.header.parent_hash)
    try:
        verify_justification(justification, block.header, validators.authorities.get(parent_state))
    except InvalidJustification as e:
        raise UserError(f"block #{block.number} ({hex0x(block.hash)}) has an invalid "
                        f"justification: {e}") from None


def import_blocks(args: argparse.Namespace) -> int:
    from node.blockfile import import_blocks as read_blocks
    from runtime.execution import BlockError, execute_block

    genesis = load_genesis(args)
    imported = known = 0
    started = last_report = time.monotonic()
    with open_store(args, genesis, create=True) as store:
        for block in read_blocks(args.file):
            where = f"block #{block.number} ({hex0x(block.hash)})"
            if store.has_block(block.hash):
                known += 1
                continue
            parent = store.header(block.header.parent_hash)
            if parent is None:
                raise UserError(f"{where}: its parent {hex0x(block.header.parent_hash)} is not "
                                f"known")
            try:
                executed = execute_block(store.state_at(parent.hash), store.node_store, parent,
                                         block, genesis.hash)
            except BlockError as e:
                raise UserError(f"{where} is invalid: {type(e).__name__}: {e}") from None
            _verify_justification(store, block)
            store.import_block(executed, finalize=block.justification is not None,
                               durable=False)  # written while the next block executes
            imported += 1
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                print(f"Importing: #{block.number} ({imported} blocks)", file=sys.stderr)
        store.flush()
        best = store.best_header
        finalized = store.finalized_header
        seconds = time.monotonic() - started
    print(f"Imported {imported} blocks ({known} already known) in {seconds:.1f} s; "
          f"best: #{best.number} ({hex0x(best.hash)}), finalized #{finalized.number}",
          file=sys.stderr)
    return 0


def _resolve_block(store: Any, text: str) -> bytes:
    if text.isdigit():
        block_hash = store.hash_at(int(text))
        if block_hash is None:
            raise UserError(f"the best chain has no block #{text} "
                            f"(best is #{store.best_header.number})")
        return bytes(block_hash)
    block_hash = _parse_hex(text, "the block hash", 32)
    if not store.has_block(block_hash):
        raise UserError(f"no stored block {hex0x(block_hash)}")
    return block_hash


def check_block(args: argparse.Namespace) -> int:
    from runtime.execution import BlockError, execute_block

    genesis = load_genesis(args)
    with open_store(args, genesis, create=False) as store:
        block_hash = _resolve_block(store, args.block)
        block = store.block(block_hash)
        if block is None:
            raise UserError(f"no stored block {hex0x(block_hash)}")
        where = f"block #{block.number} ({hex0x(block_hash)})"
        if block.number == 0:
            if block_hash != genesis.hash:
                raise UserError(f"{where} is not this chain's genesis")
            print(f"{where} is the genesis block: OK")
            return 0
        parent = store.header(block.header.parent_hash)
        if parent is None:
            raise UserError(f"{where}: its parent is not stored")
        started = time.perf_counter()
        try:
            executed = execute_block(store.state_at(parent.hash), store.node_store, parent,
                                     block, genesis.hash)
        except BlockError as e:
            raise UserError(f"{where} failed: {type(e).__name__}: {e}") from None
        _verify_justification(store, block)
        ms = (time.perf_counter() - started) * 1000
    print(f"{where} is OK: {len(block.extrinsics)} extrinsics, {len(executed.events)} events, "
          f"state root {hex0x(block.header.state_root)} ({ms:.0f} ms)")
    return 0


# ---------------------------------------------------------------------------
# testnet


def testnet(args: argparse.Namespace) -> int:
    from node import testnet as local_testnet

    try:
        return local_testnet.run(args)
    except local_testnet.TestnetError as e:
        raise UserError(str(e)) from None


# ---------------------------------------------------------------------------
# running a node

_ADJECTIVES = ("quiet", "bright", "gentle", "vivid", "brave", "lucid", "mellow", "nimble",
               "proud", "serene", "swift", "witty", "bold", "calm", "eager", "fancy")
_NOUNS = ("canvas", "sonnet", "fresco", "ballad", "mosaic", "etching", "fugue", "haiku",
          "sketch", "mural", "novella", "overture", "palette", "quartet", "sculpture", "verse")


def random_node_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(10000):04d}"


def node_config(args: argparse.Namespace, genesis: Genesis, base: Path) -> Any:
    from node.rpc import MIB
    from node.service import NodeConfig
    from node.txpool import PoolLimits

    authority = dev_keypair(args.dev_key) if args.dev_key else None
    if args.rpc_cors is None:
        cors: tuple[str, ...] | None = ("*",) if args.dev else None
    elif args.rpc_cors.strip().lower() == "all":
        cors = ("*",)
    else:
        cors = tuple(o.strip() for o in args.rpc_cors.split(",") if o.strip())
    bootnodes = tuple(dict.fromkeys([*args.bootnodes, *genesis.spec.boot_nodes]))
    return NodeConfig(
        base_path=base,
        name=args.name or random_node_name(),
        authority=authority,
        rpc_host="0.0.0.0" if args.rpc_external else "127.0.0.1",
        rpc_port=args.rpc_port,
        rpc_methods=args.rpc_methods,
        rpc_cors=cors,
        rpc_max_request_size=args.rpc_max_request_size * MIB,
        rpc_max_response_size=args.rpc_max_response_size * MIB,
        rpc_max_batch_len=args.rpc_max_batch_request_len,
        rpc_max_connections=args.rpc_max_connections,
        rpc_max_subscriptions=args.rpc_max_subscriptions_per_connection,
        rpc_rate_limit=args.rpc_rate_limit,
        rpc_request_timeout=args.rpc_request_timeout,
        prometheus_port=None if args.no_prometheus else args.prometheus_port,
        p2p_port=args.port,
        listen_addrs=tuple(args.listen_addr),
        bootnodes=bootnodes,
        node_key_file=Path(args.node_key_file) if args.node_key_file else None,
        pool_limits=PoolLimits.for_ready(args.pool_limit, args.pool_kbytes),
        network=True,
    )


def run_node(args: argparse.Namespace) -> int:
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


def _run(config: Any, genesis: Genesis) -> int:
    import trio

    from node.cli import version
    from node.service import Node
    from node.storage import ChainStore, db_path

    spec = genesis.spec
    log.info("Opus Chain Node")
    log.info("✌️  version %s", version())
    log.info("📋 Chain specification: %s", spec.name)
    log.info("🏷  Node name: %s", config.name)
    log.info("👤 Role: %s", "AUTHORITY" if config.authority is not None else "FULL")
    log.info("💾 Database: LevelDB at %s", db_path(config.base_path))
    if config.node_key_file is not None:  # fail early on a bad key file
        from node import nodekey

        nodekey.read_key_file(config.node_key_file)
    with ChainStore.open(config.base_path, genesis) as store:
        log.info("🔨 Initializing Genesis block/state (state: %s, header-hash: %s)",
                 short_hash(genesis.header.state_root), short_hash(genesis.hash))
        best = store.best_header
        log.info("📦 Highest known block at #%d", best.number)
        if config.authority is not None:
            log.info("🔑 Authority key: %s", config.authority.address)
        if config.rpc_port is not None and not _rpc_available():
            log.warning("JSON-RPC server not available in this build; running without RPC")
            config.rpc_port = None
        node = Node(config, genesis, store)
        from node.importer import settle_for_import

        settle_for_import()  # after start-up: what is alive now lives as long as the node
        if config.prometheus_port is not None:
            from node.metrics import Metrics

            node.metrics = Metrics.for_node(node)
        try:
            trio.run(_serve, node)
        except BaseException as e:
            if any(_is_listen_error(x) for x in _leaves(e)):
                _explain_listen_error(config)
            raise
        log.info("Shutdown complete: best #%d (%s), finalized #%d", node.best.number,
                 short_hash(node.best.hash), node.finalized.number)
    return 0


def _explain_listen_error(config: Any) -> None:
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


def _rpc_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("node.rpc.server") is not None
    except ImportError:
        return False


async def _serve(node: Any) -> None:
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
            if config.rpc_port is not None:
                cors = "all" if config.rpc_cors == ("*",) else (
                    ", ".join(config.rpc_cors) if config.rpc_cors else "localhost")
                log.info("Running JSON-RPC server: addr=%s:%d, allowed origins=[%s]",
                         config.rpc_host, config.rpc_port, cors)
