"""Balances: the native token. Value is only ever moved, never created or destroyed.

Genesis creates the total issuance; after that every call moves value between
accounts, and transaction fees (base + length + weight + tip) go whole to the
block's author, so ``total_issuance`` never changes after genesis.

Storage
  ``total_issuance``  the sum of all free balances (constant after genesis)
  (balances themselves live in ``system.account``)
Events
  ``Transfer(source, dest, amount)``, ``FeePaid(who, fee, tip, author)``
Errors
  ``InsufficientBalance``, ``ZeroAmount``
Calls
  ``transfer(dest, amount)``: any signed account; weight 20,000.
"""

from __future__ import annotations

from runtime.codec import U128, Struct, frozen_dataclass
from runtime.modules import system
from runtime.state import Overlay, StateReader
from runtime.support import AccountId, DispatchError, Env, Event, Module, StorageValue

NAME = "balances"
MAX_BALANCE = (1 << 128) - 1

total_issuance: StorageValue[int] = StorageValue(NAME, "total_issuance", U128, 0)


@frozen_dataclass
class Transfer(Event):
    module = NAME
    source: AccountId
    dest: AccountId
    amount: U128


@frozen_dataclass
class FeePaid(Event):
    module = NAME
    who: AccountId
    fee: U128
    tip: U128
    author: AccountId


class Error(DispatchError):
    module = NAME


class InsufficientBalance(Error):
    """The account's free balance is lower than the amount to move."""


class ZeroAmount(Error):
    """Moving zero is refused: it would only cost fees and clutter the history."""


def free_balance(state: StateReader, who: bytes) -> int:
    return system.account_info(state, who).free


def move(state: Overlay, source: bytes, dest: bytes, amount: int) -> None:
    """Move ``amount`` from ``source`` to ``dest``; the only way balances change after genesis."""
    src = system.account_info(state, source)
    if src.free < amount:
        raise InsufficientBalance(f"balance {src.free} is below {amount}")
    if source == dest or amount == 0:
        return
    system.put_account(state, source, system.AccountInfo(src.nonce, src.free - amount))
    dst = system.account_info(state, dest)
    # Cannot overflow: every balance is part of total_issuance < 2**128.
    system.put_account(state, dest, system.AccountInfo(dst.nonce, dst.free + amount))


module = Module(NAME)


@frozen_dataclass
class TransferArgs(Struct):
    dest: AccountId
    amount: U128


@module.call(TransferArgs, weight=lambda a: 20_000)
def transfer(env: Env, who: AccountId, args: TransferArgs) -> None:
    """Send ``amount`` to ``dest``.

    Origin: any signed account. Weight: 20,000.
    Errors: ``ZeroAmount``, ``InsufficientBalance`` (after the fee was taken).
    """
    if args.amount == 0:
        raise ZeroAmount("amount must be positive")
    move(env.state, who, args.dest, args.amount)
    env.emit(Transfer(who, args.dest, args.amount))
