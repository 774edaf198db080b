"""The ``opus`` command: run a node (Substrate-style flags) or one of its subcommands.

    opus --dev                                   # a single-validator dev chain, temporary
    opus --chain local --alice --base-path D     # a validator of the local testnet
    opus build-spec --chain dev --raw > spec.json
    opus build-spec --chain local --authority ADDR … --endow ADDR=1000OPUS --sudo ADDR
    opus key generate | inspect | insert | generate-node-key | inspect-node-key
    opus --chain spec.json --validator --base-path D   # authors with its keystore's keys
    opus purge-chain | export-blocks | import-blocks | check-block
    opus testnet --validators 4 [--base-dir D]   # a local testnet; `opus testnet status`

Wrong arguments print the usage and exit 2; a user error (a bad chain spec, a
database in use, a bad address …) prints one ``Error: …`` line and exits 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence

from client.commands import add_creator_commands
from client.commands.arguments import number_in_range
from client.display import safe_message
from node.cli import database, keys, run, spec, testnet
from node.cli.common import is_listen_error, leaves, user_errors
from node.version import VERSION
from runtime.crypto import DEV_ACCOUNT_NAMES

MAX_NODE_NAME = 64


# ---------------------------------------------------------------------------
# argument types (argparse prints their errors with the usage, exit 2)

_port = number_in_range("a port number", 0, 65535)
_block_number = number_in_range("a block number", 0)
_seconds = number_in_range("a number of seconds", 0.0, above=True)


def _positive(what: str) -> Callable[[str], int]:
    return number_in_range(what, 1)


def _node_name(text: str) -> str:
    if not text or len(text) > MAX_NODE_NAME:
        raise argparse.ArgumentTypeError(f"a node name has 1 to {MAX_NODE_NAME} characters")
    if "." in text:
        raise argparse.ArgumentTypeError("a node name must not contain '.'")
    return text


# ---------------------------------------------------------------------------
# parser


def _add_shared(parser: argparse.ArgumentParser, *, base_path: bool = True,
                top: bool = False) -> None:
    """``--chain``, ``--dev`` and ``--base-path``, as every Substrate command has them.

    On subcommands they default to SUPPRESS so a value given before the
    subcommand (``opus --chain local purge-chain``) is kept.
    """
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--chain", metavar="SPEC", default=default,
                        help="chain spec: dev, local or the path of a chain spec JSON file "
                             "(default: local)")
    parser.add_argument("--dev", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="the development chain (--chain dev)"
                             + ("; with --alice --validator --tmp unless a base path is given"
                                if top else ""))
    if base_path:
        parser.add_argument("-d", "--base-path", metavar="DIR", default=default,
                            help="where the node keeps its data "
                                 "(default: ~/.local/share/opus/chains/<chain id>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opus",
        allow_abbrev=False,  # else "--rpc" after a creator command is "ambiguous" here
        description="Opus Chain node: provenance, licenses and royalties for creative works.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"opus {VERSION}")
    _add_shared(parser, top=True)
    node = parser.add_argument_group("node")
    node.add_argument("--tmp", action="store_true",
                      help="run in a temporary base path, removed on exit")
    node.add_argument("--validator", action="store_true",
                      help="author and finalize blocks with the keystore's keys of the "
                           "authority set (opus key insert, author_insertKey)")
    dev_keys = node.add_mutually_exclusive_group()
    for name in DEV_ACCOUNT_NAMES:
        dev_keys.add_argument(f"--{name}", dest="dev_key", action="store_const", const=name,
                              help=f"hold the {name} dev key in the keystore, in memory only, "
                                   "as aura and gran key (implies --validator)")
    keys.add_keystore_arguments(node)
    node.add_argument("--name", type=_node_name, help="the node's human-readable name")
    network = parser.add_argument_group("network")
    network.add_argument("--port", type=_port, default=30333, help="p2p TCP port (default 30333)")
    network.add_argument("--listen-addr", metavar="MULTIADDR", action="append", default=[],
                         help="p2p listen address (repeatable)")
    network.add_argument("--bootnodes", metavar="MULTIADDR", action="extend", nargs="+",
                         default=[], help="peers to connect to first (added to the spec's)")
    network.add_argument("--node-key-file", metavar="FILE",
                         help="the node's ed25519 libp2p key (default: "
                              "<base>/network/secret_ed25519, created on first start)")
    rpc = parser.add_argument_group("JSON-RPC")
    rpc.add_argument("--rpc-port", type=_port, default=9944,
                     help="JSON-RPC port, HTTP and WebSocket (default 9944)")
    rpc.add_argument("--rpc-external", action="store_true",
                     help="listen on all interfaces, serving only safe methods (unsafe ones "
                          "need --unsafe-rpc-external)")
    rpc.add_argument("--unsafe-rpc-external", action="store_true",
                     help="listen on all interfaces with unsafe methods too (key insertion …): "
                          "only behind a proxy that filters methods")
    rpc.add_argument("--rpc-methods", choices=("safe", "unsafe"),
                     help="which RPC methods to expose (default: safe; unsafe with "
                          "--unsafe-rpc-external)")
    rpc.add_argument("--rpc-cors", metavar="all|ORIGIN,…",
                     help="browser origins allowed to call the RPC (default: localhost; "
                          "'all' with --dev)")
    _add_rpc_limits(rpc)
    pool = parser.add_argument_group("transaction pool")
    pool.add_argument("--pool-limit", type=_positive("a transaction count"), default=8192,
                      metavar="COUNT",
                      help="ready transactions the pool holds (default 8192); a tenth of it "
                           "for transactions waiting for an earlier nonce")
    pool.add_argument("--pool-kbytes", type=_positive("a size in KiB"), default=20480,
                      metavar="KIB",
                      help="KiB of ready transactions the pool holds (default 20480); a tenth "
                           "of it for waiting ones")
    metrics = parser.add_argument_group("Prometheus")
    metrics.add_argument("--prometheus-port", type=_port, default=9615,
                         help="metrics port (default 9615)")
    metrics.add_argument("--prometheus-external", action="store_true",
                         help="serve metrics on all interfaces (default: 127.0.0.1 only)")
    metrics.add_argument("--no-prometheus", action="store_true",
                         help="do not serve Prometheus metrics")
    parser.add_argument("-l", "--log", metavar="SPEC", action="append",
                        help="log levels, e.g. info,import=debug (repeatable)")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("build-spec", help="print a chain spec as JSON (or one of your own)")
    _add_shared(p, base_path=False)
    spec.add_arguments(p)

    keys.add_parser(sub, _add_shared)

    p = sub.add_parser("purge-chain", help="remove the chain database of a base path")
    _add_shared(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = sub.add_parser("export-blocks", help="write blocks of the best chain to a file")
    _add_shared(p)
    p.add_argument("--from", dest="start", type=_block_number, default=1, metavar="N",
                   help="first block (default 1)")
    p.add_argument("--to", dest="end", type=_block_number, metavar="N",
                   help="last block (default: the best block)")
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("import-blocks",
                       help="import blocks from a file, re-executing and verifying each")
    _add_shared(p)
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("check-block", help="re-execute a stored block against its parent")
    _add_shared(p)
    p.add_argument("block", metavar="HASH|NUMBER")

    testnet.add_parser(sub)
    add_creator_commands(sub)  # the creator commands live in the client package
    return parser


def _add_rpc_limits(rpc: argparse._ArgumentGroup) -> None:
    """The JSON-RPC server's limits, as Substrate's flags (docs/rpc.md, "Limits")."""
    from node import rpc as limits

    size = _positive("a size in MiB")
    count = _positive("a whole number")
    rpc.add_argument("--rpc-max-request-size", metavar="MB", type=size,
                     default=limits.DEFAULT_MAX_REQUEST_MB,
                     help="largest HTTP body or WebSocket message, in MiB "
                          f"(default {limits.DEFAULT_MAX_REQUEST_MB})")
    rpc.add_argument("--rpc-max-response-size", metavar="MB", type=size,
                     default=limits.DEFAULT_MAX_RESPONSE_MB,
                     help="largest answer (a batch's answers together), in MiB "
                          f"(default {limits.DEFAULT_MAX_RESPONSE_MB})")
    rpc.add_argument("--rpc-max-batch-request-len", metavar="N", type=count,
                     default=limits.DEFAULT_MAX_BATCH_LEN,
                     help=f"most requests in a batch (default {limits.DEFAULT_MAX_BATCH_LEN})")
    rpc.add_argument("--rpc-max-connections", metavar="N", type=count,
                     default=limits.DEFAULT_MAX_CONNECTIONS,
                     help="most HTTP and WebSocket connections at once "
                          f"(default {limits.DEFAULT_MAX_CONNECTIONS})")
    rpc.add_argument("--rpc-max-subscriptions-per-connection", metavar="N", type=count,
                     default=limits.DEFAULT_MAX_SUBSCRIPTIONS,
                     help="most subscriptions on one WebSocket "
                          f"(default {limits.DEFAULT_MAX_SUBSCRIPTIONS})")
    rpc.add_argument("--rpc-rate-limit", metavar="N", type=count,
                     help="most calls per minute on one connection, a batch counting each "
                          "of its calls (default: no limit)")
    rpc.add_argument("--rpc-request-timeout", metavar="SECONDS", type=_seconds,
                     default=limits.DEFAULT_REQUEST_TIMEOUT_S,
                     help="time for a request's headers, and again for its body, to arrive; "
                          "also how long an idle HTTP connection is kept "
                          f"(default {limits.DEFAULT_REQUEST_TIMEOUT_S:g})")


def check_node_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flag combinations that cannot work: argparse-style error, exit 2."""
    if args.command is not None:
        return
    if args.tmp and args.base_path:
        parser.error("--tmp and --base-path exclude each other")
    if args.rpc_external and not args.unsafe_rpc_external and args.rpc_methods == "unsafe":
        parser.error("unsafe RPC methods on all interfaces need --unsafe-rpc-external "
                     "(--rpc-external serves only safe methods)")


# ---------------------------------------------------------------------------
# running a command

# The node's subcommands; a creator command sets its own ``handler`` (client.commands).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build-spec": spec.build_spec,
    "key": keys.key_command,
    "purge-chain": database.purge_chain,
    "export-blocks": database.export_blocks,
    "import-blocks": database.import_blocks,
    "check-block": database.check_block,
    "testnet": testnet.run,
}


def dispatch(args: argparse.Namespace) -> int:
    """Run the node (no command) or the command ``args`` names; its exit code.

    User errors (:func:`node.cli.common.user_errors`, and a port that cannot be bound)
    are printed as one ``Error: …`` line each (exit 1), made safe for the terminal but
    keeping their line breaks: a message may quote a chain spec, a block file or, from the
    testnet, a node's log.
    """
    handler: Callable[[argparse.Namespace], int] | None = (
        run.run_node if args.command is None
        else COMMANDS.get(args.command) or getattr(args, "handler", None))
    if handler is None:
        raise SystemExit(f"opus: unknown command {args.command!r}")
    try:
        return handler(args)
    except BaseException as e:  # noqa: BLE001 - sorted below
        found = list(leaves(e))
        if all(isinstance(x, KeyboardInterrupt) for x in found):
            return 0 if args.command is None else 130  # a node stops; a command is cut short
        expected = user_errors()
        if not all(isinstance(x, expected) or is_listen_error(x) for x in found):
            raise
        for message in dict.fromkeys(_message(x) for x in found):
            print(f"Error: {safe_message(message, multiline=True)}", file=sys.stderr)
        return 1


def _message(exc: BaseException) -> str:
    if is_listen_error(exc):
        return f"cannot listen: {exc}"
    return str(exc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM stops like Ctrl-C (trio takes both over once the node runs): the database is
    # closed and a temporary base path removed on the way out, and nothing is printed.
    signal.signal(signal.SIGTERM, _interrupt)
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        check_node_args(parser, args)
        return dispatch(args)
    except KeyboardInterrupt:
        # A node stops cleanly (0); a subcommand was cut short (130, as shells report it).
        return 0 if args is None or args.command is None else 130
    except BrokenPipeError:
        return 0


