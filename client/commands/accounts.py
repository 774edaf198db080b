"""``opus account new | show`` and ``opus transfer``: key files, balances and payments."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from client import write_key_file
from client.commands import arguments
from client.commands.common import (
    Context,
    UsageError,
    command,
    format_amount,
    group,
    receipt_lines,
)
from runtime.crypto import Keypair
from runtime.crypto import encode_address as address_of
from runtime.modules import balances

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def account_new(ctx: Context) -> int:
    key = Keypair.from_seed(secrets.token_bytes(32))
    out = Path(ctx.args.out)
    write_key_file(out, key, overwrite=ctx.args.force)
    ctx.emit({"address": key.address, "keyFile": str(out)},
             [f"New account {key.address}", f"  key file      {out} (keep it secret: it holds "
              "the signing seed)"])
    return 0


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


def add_parsers(sub: Subcommands) -> None:
    accounts = group(sub, "account", "create a key file, show an account")
    p = command(accounts, "new", account_new, "create a new account key file", node=False)
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the key (0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    p = command(accounts, "show", account_show, "show an account's balance and nonce")
    p.add_argument("address", nargs="?", type=arguments.address_text, metavar="ADDRESS",
                   help="an opus1… address or a dev account name (default: the signer's)")

    p = command(sub, "transfer", transfer, "send tokens to an account", signing=True)
    p.add_argument("dest", type=arguments.account, metavar="DEST", help="an opus1… address")
    p.add_argument("amount", type=arguments.amount, metavar="AMOUNT",
                   help="units, or tokens: 2.5OPUS")
