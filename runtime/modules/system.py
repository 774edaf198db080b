"""System: accounts (nonce and balance), the block context and recent block hashes.

Storage
  ``account``      AccountId -> AccountInfo (nonce, free balance); absent = zero
  ``number``       the current block number
  ``timestamp``    the current block's timestamp (ms)
  ``block_hash``   block number -> hash, for the last BLOCK_HASH_COUNT blocks
                   (mortal transactions are bound to one of these)
Events
  ``ExtrinsicSuccess(weight, fee)`` and ``ExtrinsicFailed(weight, fee, error, detail)``,
  one per extrinsic, last among the extrinsic's events.
Calls
  ``remark(data)``: any signed account; stores nothing; weight 1,000 + 1 per byte.
"""

from __future__ import annotations

from typing import Annotated

from runtime.codec import U64, U128, Blob, Struct, Text, frozen_dataclass
from runtime.state import Overlay, StateReader
from runtime.support import AccountId, Env, Event, Hash, Module, StorageMap, StorageValue

NAME = "system"
# Config
BLOCK_HASH_COUNT = 2400  # how many recent block hashes are kept (bounds mortality)
MAX_REMARK = 4096


@frozen_dataclass
class AccountInfo(Struct):
    nonce: U64
    free: U128


EMPTY_ACCOUNT = AccountInfo(0, 0)

# Storage
# Accounts are read and written by every extrinsic: keep decoded ones (see StorageMap).
account: StorageMap[AccountInfo] = StorageMap(NAME, "account", AccountInfo, decoded_cache=8192)
number: StorageValue[int] = StorageValue(NAME, "number", U64, 0)
timestamp: StorageValue[int] = StorageValue(NAME, "timestamp", U64, 0)
block_hash: StorageMap[bytes] = StorageMap(NAME, "block_hash", Hash)


# Events
@frozen_dataclass
class ExtrinsicSuccess(Event):
    module = NAME
    weight: U64
    fee: U128


@frozen_dataclass
class ExtrinsicFailed(Event):
    module = NAME
    weight: U64
    fee: U128
    error: Annotated[str, Text(128)]
    detail: Annotated[str, Text(512)]


def account_info(state: StateReader, who: bytes) -> AccountInfo:
    info = account.get(state, who)
    return EMPTY_ACCOUNT if info is None else info


def put_account(state: Overlay, who: bytes, info: AccountInfo) -> None:
    """Store an account; an account with no nonce and no balance is removed."""
    if info.nonce == 0 and info.free == 0:
        account.remove(state, who)
    else:
        account.put(state, who, info)


def initialize(env: Env) -> None:
    """Start a block: record its number and timestamp and the parent's hash."""
    state, block = env.state, env.block
    number.put(state, block.number)
    timestamp.put(state, block.timestamp)
    block_hash.put(state, block.number - 1, block.parent_hash)
    if block.number > BLOCK_HASH_COUNT:
        block_hash.remove(state, block.number - 1 - BLOCK_HASH_COUNT)


module = Module(NAME)


@frozen_dataclass
class Remark(Struct):
    data: Annotated[bytes, Blob(MAX_REMARK)]


@module.call(Remark, weight=lambda a: 1_000 + len(a.data))
def remark(env: Env, who: AccountId, args: Remark) -> None:
    """Put arbitrary bytes on chain (kept in the block, not in state).

    Origin: any signed account. Errors: none.
    """
