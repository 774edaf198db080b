"""What the node's subcommands share: user errors, the chain a command is about and where
its database lives.

A subcommand takes the parsed :class:`argparse.Namespace` and returns the exit code. A
user error raises :class:`UserError` (or one of :func:`user_errors`); ``opus`` prints it
as one ``Error: …`` line and exits 1 (:func:`node.cli.dispatch`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genesis import ChainSpecError, Genesis, build_genesis, load_spec
from node.logs import LogSpecError
from node.nodekey import NodeKeyError
from runtime.crypto import InvalidAddress, InvalidKey

# errno values of "cannot listen" (address in use or not available, no permission), on
# Linux, macOS and Windows.
LISTEN_ERRNOS = (98, 48, 99, 13, 10048)


class UserError(Exception):
    """Something the user can fix; printed as ``Error: <message>``, exit 1."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors printed as one line: the user's to fix, with messages written for them."""
    # Imported here: the creator commands and build-spec never load the database.
    from node.chain.blockfile import BlockFileError
    from node.chain.store import StorageError

    errors: tuple[type[BaseException], ...] = (
        UserError, ChainSpecError, InvalidAddress, InvalidKey, NodeKeyError, LogSpecError,
        StorageError, BlockFileError)
    # A busy p2p port can only come from a running network, which loaded p2p.host (and
    # libp2p, slow to import: not loaded here otherwise).
    host = sys.modules.get("p2p.host")
    if host is not None:
        errors += (host.PortInUse, host.InvalidMultiaddr)
    return errors


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc``: itself, or those of an exception group, flattened."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def is_listen_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a server could not listen on its address."""
    return isinstance(exc, OSError) and exc.errno in LISTEN_ERRNOS


# ---------------------------------------------------------------------------
# the chain and its base path


def chain_name(args: argparse.Namespace) -> str:
    """``--chain``, else ``dev`` with ``--dev``, else ``local``."""
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
    """The chain database of the command's base path (with ``create``, made if missing)."""
    from node.chain.store import ChainStore, db_path

    base = base_path(args, genesis)
    if not create and not db_path(base).exists():
        raise UserError(f"no chain database at {db_path(base)} (wrong --base-path or --chain?)")
    with ChainStore.open(base, genesis) as store:
        yield store


def parse_hex(text: str, what: str, length: int) -> bytes:
    """``length`` bytes from hex (``0x`` optional), or a UserError naming ``what``."""
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UserError(f"{what} is not hex: {text!r}") from None
    if len(data) != length:
        raise UserError(f"{what} must be {length} bytes, got {len(data)}")
    return data
