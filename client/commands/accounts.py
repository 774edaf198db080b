"""``opus account new | import | show`` and ``opus transfer``: key files, balances and
payments.

``account new`` makes a key from a new secret phrase (BIP-39, :mod:`client.keys`) and
prints the phrase once; ``account import`` makes a key file from a phrase, a secret URI
or a seed. Both encrypt the key file with a passphrase (:func:`common.new_passphrase`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from client import write_key_file
from client.commands import arguments
from client.commands.common import (
    Context,
    CreatorError,
    UsageError,
    add_passphrase_options,
    ask_passphrase,
    command,
    format_amount,
    group,
    interactive,
    new_passphrase,
    receipt_lines,
)
from client.keys import PHRASE_WORDS, generate_phrase, keypair_from_phrase, keypair_from_suri
from runtime.crypto import Keypair
from runtime.crypto import encode_address as address_of
from runtime.modules import balances

if TYPE_CHECKING:
    from client.commands.common import Subcommands

READ_STDIN = "-"  # ``--phrase -``: read the secret from standard input, not the command line
PHRASE_WARNING = [
    "",
    "Write the secret phrase down and keep it offline, never in a file or a photo: it is the",
    "only way to restore this account if the key file or its passphrase is lost",
    '(opus account import --phrase "<phrase>" --out FILE), and whoever knows it controls the',
    "account. It is shown only this once.",
]


def account_new(ctx: Context) -> int:
    out = _key_file_target(ctx)
    password = new_passphrase(ctx.args, out)
    phrase = generate_phrase(ctx.args.words)
    key = keypair_from_phrase(phrase)
    write_key_file(out, key, password=password, overwrite=ctx.args.force)
    ctx.emit({"address": key.address, "keyFile": str(out), "encrypted": bool(password),
              "secretPhrase": phrase},
             [f"New account {key.address}", _key_file_line(out, password),
              f"  secret phrase {phrase}", *PHRASE_WARNING])
    return 0


def account_import(ctx: Context) -> int:
    key = _imported_key(ctx)
    out = _key_file_target(ctx)
    password = new_passphrase(ctx.args, out)
    write_key_file(out, key, password=password, overwrite=ctx.args.force)
    ctx.emit({"address": key.address, "keyFile": str(out), "encrypted": bool(password)},
             [f"Imported account {key.address}", _key_file_line(out, password)])
    return 0


def _key_file_target(ctx: Context) -> Path:
    """``--out``, refused before any passphrase is asked for if it exists (no ``--force``)."""
    out = Path(ctx.args.out)
    if out.exists() and not ctx.args.force:
        raise CreatorError(f"{str(out)!r} already exists (refusing to overwrite a key; "
                           "--force replaces it)")
    return out


def _key_file_line(out: Path, password: str) -> str:
    how = "encrypted with your passphrase" if password else 'NOT encrypted (--password "")'
    return f"  key file      {out} ({how}, readable by you only)"


def _imported_key(ctx: Context) -> Keypair:
    """The key ``--phrase``, ``--suri`` or ``--seed`` names."""
    a = ctx.args
    if a.phrase is not None:
        return keypair_from_phrase(_secret(a.phrase, "Secret phrase: "))
    if a.suri is not None:
        return keypair_from_suri(_secret(a.suri, "Secret URI: "))
    seed = _secret(a.seed, "Seed (0x…): ").strip()
    if not seed.startswith("0x"):
        raise CreatorError("a seed is 0x followed by 64 hex digits (32 bytes)")
    return keypair_from_suri(seed)


def _secret(value: str, prompt: str) -> str:
    """A secret given on the command line, or with ``-`` read from standard input (asked
    for without echo on a terminal), so it stays out of the shell's history."""
    if value != READ_STDIN:
        return value
    if interactive():
        return ask_passphrase(prompt)
    line = sys.stdin.readline()
    if not line.strip():
        raise CreatorError("nothing on standard input (expected the secret)")
    return line.strip()


def account_show(ctx: Context) -> int:
    info = ctx.client.account_info(ctx.address(ctx.args.address))
    ctx.emit(info, [f"Account {info['address']}",
                    f"  balance       {format_amount(info['free'])} ({info['free']} units)",
                    f"  nonce         {info['nonce']}"])
    return 0


def transfer(ctx: Context) -> int:
    dest, amount = ctx.args.dest, ctx.args.amount
    if amount == 0:
        raise UsageError("the amount must be positive")
    receipt = ctx.execute(balances.TransferArgs(dest, amount))
    ctx.emit({"dest": address_of(dest), "amount": str(amount), **receipt.to_json()},
             [f"Transferred {format_amount(amount)} to {address_of(dest)}",
              *receipt_lines(receipt)])
    return 0


def _key_file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where to write the key file (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_passphrase_options(p)
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")


def add_parsers(sub: Subcommands) -> None:
    accounts = group(sub, "account", "create or import a key file, show an account")
    p = command(accounts, "new", account_new,
                "create a new account: a secret phrase and an encrypted key file", node=False)
    p.add_argument("--words", type=int, choices=PHRASE_WORDS, default=12,
                   help="words in the secret phrase (default 12)")
    _key_file_options(p)
    p = command(accounts, "import", account_import,
                "write an encrypted key file for an existing account", node=False)
    secret = p.add_argument_group("the account's secret (one of; - reads it from standard "
                                  "input)").add_mutually_exclusive_group(required=True)
    secret.add_argument("--phrase", metavar='"WORDS"', help="its BIP-39 secret phrase")
    secret.add_argument("--suri", metavar="SURI",
                        help='a secret URI: "<phrase>", "<phrase>///password", 0x<seed> or '
                             "//Alice … //Ferdie")
    secret.add_argument("--seed", metavar="0xSEED", help="its 32-byte ed25519 seed in hex")
    _key_file_options(p)
    p = command(accounts, "show", account_show, "show an account's balance and nonce")
    p.add_argument("address", nargs="?", type=arguments.address_text, metavar="ADDRESS",
                   help="an opus1… address or a dev account name (default: the signer's)")

    p = command(sub, "transfer", transfer, "send tokens to an account", signing=True)
    p.add_argument("dest", type=arguments.account, metavar="DEST", help="an opus1… address")
    p.add_argument("amount", type=arguments.amount, metavar="AMOUNT",
                   help="units, or tokens: 2.5OPUS")
