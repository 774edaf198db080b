"""What every creator command shares: its :class:`Context`, its errors, its output and how
it is added to ``opus`` (:func:`command`)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from client import DEFAULT_RPC, CallFailed, ClientError, OpusClient, Receipt, load_key_file
from client.commands.arguments import TOKEN_DECIMALS, TOKEN_SYMBOL, amount, id_number, page_limit
from client.display import safe_message, safe_text
from client.keys import PasswordRequired
from runtime.codec import Struct, hex0x
from runtime.crypto import DEV_ACCOUNT_NAMES, Keypair, dev_keypair

if TYPE_CHECKING:
    # What ``ArgumentParser.add_subparsers()`` returns (not subscriptable at run time).
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Command: TypeAlias = "Callable[[Context], int]"


class CreatorError(Exception):
    """A user error: printed as one ``Error: …`` line, exit 1."""


class UsageError(Exception):
    """A wrong command line found after parsing: printed like argparse's errors, exit 2."""


# ---------------------------------------------------------------------------
# Output


def format_amount(units: int | str, decimals: int = TOKEN_DECIMALS,
                  symbol: str = TOKEN_SYMBOL) -> str:
    """``1500000000000`` -> ``1.5 OPUS``."""
    value = int(units)
    whole, frac = divmod(value, 10**decimals)
    text = f"{whole:,}"
    if frac:
        text += "." + str(frac).rjust(decimals, "0").rstrip("0")
    return f"{text} {symbol}"


def when(ms: int) -> str:
    """A chain timestamp (milliseconds since 1970) as a UTC date and time."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(value: str) -> str:
    """A long hash shortened for a sentence: ``0x2f8befb0…24dcf9``."""
    return value if len(value) <= 20 else f"{value[:10]}…{value[-6:]}"


def receipt_lines(receipt: Receipt) -> list[str]:
    """Where a transaction landed and what it cost, for people."""
    state = "finalized" if receipt.status == "finalized" else "in block"
    return [f"  block         #{receipt.block_number} {hex0x(receipt.block_hash)} ({state})",
            f"  transaction   {hex0x(receipt.tx_hash)} (fee {format_amount(receipt.fee)})"]


def credit_lines(credits: list[dict[str, Any]]) -> list[str]:
    """The royalty credits (``royalties.Credited`` events) a payment made, for people."""
    return [f"  credited      {c['account']} {format_amount(c['amount'])} "
            f"(share of work #{c['viaWork']})" for c in credits]


def more_lines(page: dict[str, Any]) -> list[str]:
    """How to ask for the next page of a listing, if there is one."""
    return [] if page["next"] is None else [f"  more: --start {page['next']}"]


def require(value: Any, message: str) -> Any:
    """``value``, unless the node answered None (nothing found): then ``message``."""
    if value is None:
        raise CreatorError(message)
    return value


def read_file(path: str) -> bytes:
    """A file's bytes, or a one-line error naming the file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CreatorError(f"file {path!r} does not exist") from None
    except IsADirectoryError:
        raise CreatorError(f"{path!r} is a directory, not a file") from None
    except OSError as e:
        raise CreatorError(f"cannot read {path!r}: {e.strerror}") from None


# ---------------------------------------------------------------------------
# Passphrases of key files


def add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    """``--password-filename FILE`` and ``--password TEXT``: a key file's passphrase."""
    options = parser.add_argument_group(
        "key file passphrase (default: asked on the terminal)").add_mutually_exclusive_group()
    options.add_argument("--password-filename", metavar="FILE",
                         help="read the passphrase from FILE (its text without the final "
                              "line break)")
    options.add_argument("--password", metavar="TEXT",
                         help="the passphrase itself (other users can see it in the process "
                              'list: prefer --password-filename); --password "" writes or '
                              "reads an unencrypted key file (dev keys only)")


def given_passphrase(args: argparse.Namespace) -> str | None:
    """The passphrase given on the command line, or None if there is none."""
    text: str | None = getattr(args, "password", None)
    if text is not None:
        return text
    path: str | None = getattr(args, "password_filename", None)
    if path is None:
        return None
    try:
        content = read_file(path).decode()
    except UnicodeDecodeError:
        raise CreatorError(f"the passphrase file {path!r} is not UTF-8 text") from None
    # ``echo secret > FILE`` ends the file with a line break that is not part of it.
    return content.removesuffix("\n").removesuffix("\r")


def interactive() -> bool:
    """Whether a passphrase can be asked for: standard input is a terminal."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed, or replaced by something that is no file
        return False


def ask_passphrase(prompt: str) -> str:
    """Read a passphrase from the terminal without echoing it."""
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise CreatorError("no passphrase given (end of input)") from None


def new_passphrase(args: argparse.Namespace, out: Path) -> str:
    """The passphrase to encrypt a new key file ``out`` with; ``""`` only if given so.

    From ``--password`` or ``--password-filename``, else asked twice on a terminal. An
    empty one (which writes the seed unencrypted) must be given on purpose: ``--password ""``.
    """
    given = given_passphrase(args)
    if given == "" and getattr(args, "password", None) is None:
        raise CreatorError(f"the passphrase file {args.password_filename!r} is empty; for an "
                           'unencrypted key file give --password "" instead')
    if given is not None:
        return given
    if not interactive():
        raise CreatorError(f"give the passphrase to encrypt {str(out)!r} with: "
                           '--password-filename FILE (or --password "" for an unencrypted '
                           "dev key)")
    first = ask_passphrase(f"Passphrase for {out}: ")
    if not first:
        raise CreatorError("an empty passphrase leaves the key unencrypted; to mean it, give "
                           '--password ""')
    if ask_passphrase("Repeat the passphrase: ") != first:
        raise CreatorError("the two passphrases differ; nothing was written")
    return first


def open_key_file(args: argparse.Namespace, path: str) -> Keypair:
    """The key in the key file ``path``, with the passphrase given or asked for.

    A plain key file needs none; an encrypted one needs ``--password-filename``,
    ``--password`` or a terminal to ask on (:class:`client.keys.PasswordRequired`).
    """
    given = given_passphrase(args)
    try:
        return load_key_file(path, given)
    except PasswordRequired:
        # Asked only now: the file exists, is private and is encrypted.
        if not interactive():
            raise
    return load_key_file(path, ask_passphrase(f"Passphrase for key file {path}: "))


class Context:
    """One command's parsed arguments, its (lazily made) client and its output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._client: OpusClient | None = None
        self._key: Keypair | None = None  # the key file's key, opened once

    @property
    def json(self) -> bool:
        return bool(self.args.json_output)

    @property
    def client(self) -> OpusClient:
        if self._client is None:
            self._client = OpusClient(self.args.rpc)
        return self._client

    @property
    def until(self) -> str:
        return str(getattr(self.args, "wait", "inBlock"))

    def signer(self, required: bool = True) -> Keypair | None:
        key_file = getattr(self.args, "key_file", None)
        dev = getattr(self.args, "dev_account", None)
        if key_file:
            if self._key is None:
                self._key = open_key_file(self.args, key_file)
            return self._key
        if dev:
            return dev_keypair(dev)
        if required:
            raise UsageError("this command signs a transaction: give --key FILE or "
                             "--dev-account NAME")
        return None

    def key(self) -> Keypair:
        key = self.signer()
        assert key is not None
        return key

    def address(self, given: str | None) -> str:
        """The account a command is about: the one given, else the signer's."""
        if given:
            return given
        key = self.signer(required=False)
        if key is None:
            raise UsageError("give an ADDRESS, --key FILE or --dev-account NAME")
        return key.address

    def emit(self, data: Any, lines: list[str]) -> None:
        """Print ``data`` as JSON (``--json``) or ``lines`` for people.

        The lines hold text from the chain, the node or a proof file, so each is made
        safe for a terminal (:func:`client.display.safe_text`). The JSON keeps the exact
        text; ``ensure_ascii`` writes its control and non-ASCII characters as ``\\uXXXX``.
        """
        if self.json:
            print(json.dumps(data, indent=2, ensure_ascii=True))
        else:
            for line in lines:
                print(safe_text(line))

    def execute(self, args: Struct) -> Receipt:
        """Sign the call taking ``args`` with the signer, submit it and wait (``--wait``)."""
        tip = getattr(self.args, "tip", 0)
        return self.client.execute(self.key(), args, until=self.until, tip=tip)


# ---------------------------------------------------------------------------
# Adding a command to ``opus``


def _common_options(*, signing: bool) -> argparse.ArgumentParser:
    """The options every command talking to a node has (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("node and output")
    group.add_argument("--rpc", "--rpc-url", dest="rpc", metavar="URL",
                       default=os.environ.get("OPUS_RPC", DEFAULT_RPC),
                       help=f"the node's JSON-RPC URL (default $OPUS_RPC or {DEFAULT_RPC})")
    group.add_argument("--json", dest="json_output", action="store_true",
                       help="print JSON for scripts")
    keys = parent.add_argument_group("signer").add_mutually_exclusive_group()
    keys.add_argument("--key", dest="key_file", metavar="FILE",
                      help="a key file (see: opus account new)")
    keys.add_argument("--dev-account", metavar="NAME", choices=DEV_ACCOUNT_NAMES,
                      help="a well-known dev key: " + ", ".join(DEV_ACCOUNT_NAMES))
    add_passphrase_options(parent)
    if signing:
        group.add_argument("--wait", choices=("inBlock", "finalized"), default="inBlock",
                           help="wait until the transaction is in a block (default) or final")
        group.add_argument("--tip", type=amount, default=0, metavar="AMOUNT",
                           help="a tip to the block author, for priority (default 0)")
    return parent


def _handler(fn: Command, parser: argparse.ArgumentParser
             ) -> Callable[[argparse.Namespace], int]:
    """``fn`` as ``opus`` calls it: every error becomes one line and an exit code."""
    def handler(args: argparse.Namespace) -> int:
        try:
            return fn(Context(args))
        except UsageError as e:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {safe_message(str(e))}", file=sys.stderr)
            return 2
        except CallFailed as e:
            # The error's detail and an RPC error's data come from the node: one safe line.
            r = e.receipt
            print(f"Error: the chain refused the call: {safe_message(str(e))} (included in "
                  f"block #{r.block_number}, fee {format_amount(r.fee)} paid)", file=sys.stderr)
            return 1
        except (CreatorError, ClientError) as e:
            print(f"Error: {safe_message(str(e))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
        except Exception as e:  # noqa: BLE001 - a user sees one line, never a traceback
            print(f"Error: unexpected {type(e).__name__}: {safe_message(str(e))}",
                  file=sys.stderr)
            return 1

    return handler


def command(sub: Subcommands, name: str, fn: Command, help_text: str, *,
            signing: bool = False, node: bool = True) -> argparse.ArgumentParser:
    """Add ``opus … name`` running ``fn``; with ``node`` it has the options to reach a node
    (``--rpc``, ``--json``, the signer), with ``signing`` also ``--wait`` and ``--tip``."""
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            parents=[_common_options(signing=signing)] if node else [])
    parser.set_defaults(handler=_handler(fn, parser))
    return parser


def paging(parser: argparse.ArgumentParser, first: str) -> None:
    """``--start`` (``first``: what the listing starts at) and ``--limit``, for a listing."""
    parser.add_argument("--start", type=id_number, default=0, help=first)
    parser.add_argument("--limit", type=page_limit, default=100,
                        help="how many at most (default 100)")


def group(sub: Subcommands, name: str, help_text: str) -> Subcommands:
    """Add ``opus name SUBCOMMAND`` (``account``, ``work``, …): its subcommands."""
    parser = sub.add_parser(name, help=help_text)
    return parser.add_subparsers(dest=f"{name}_command", metavar=f"{name.upper()}_COMMAND",
                                 required=True)


__all__ = ["Context", "CreatorError", "UsageError", "add_passphrase_options", "ask_passphrase",
           "command", "credit_lines", "format_amount", "given_passphrase", "group",
           "interactive", "more_lines", "new_passphrase", "open_key_file", "paging",
           "read_file", "receipt_lines", "require", "short", "when"]
