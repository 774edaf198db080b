"""``author_*``: submitting and watching transactions, and the node's keystore.

Substrate's methods, error codes (1010–1016) and transaction statuses
(docs/rpc.md, "author_*"). The keystore methods are unsafe: served only with
``--rpc-methods unsafe``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from client.api import (
    POOL_ALREADY_IMPORTED,
    POOL_IMMEDIATELY_DROPPED,
    POOL_INVALID_TX,
    POOL_TEMPORARILY_BANNED,
    POOL_TOO_LOW_PRIORITY,
    RpcError,
)
from node.rpc import invalid_params, response_too_big
from node.rpc.protocol import MethodTable, Notify, Session, p_account, p_extrinsic
from node.txpool import (
    LIMIT_REFUSALS,
    AlreadyImported,
    PoolError,
    PoolRejected,
    TemporarilyBanned,
    TooLowPriority,
)
from runtime.codec import from_hex0x, hex0x
from runtime.crypto import Keypair, blake2_256, dev_keypair

if TYPE_CHECKING:
    from node.core import NodeCore

METHODS = MethodTable()

# A watched transaction's last status: its subscription ends after sending it.
TERMINAL_TX_STATUSES = frozenset({"finalized", "dropped", "invalid", "usurped"})
KEY_TYPES = ("aura", "gran")


def pool_error(e: PoolError) -> RpcError:
    """Substrate's author error for a pool refusal; ``data`` starts with the refusal's name."""
    if isinstance(e, PoolRejected):
        return RpcError(POOL_INVALID_TX, "Invalid Transaction", f"{e.reason}: {e.message}")
    if isinstance(e, TemporarilyBanned):
        return RpcError(POOL_TEMPORARILY_BANNED, "Transaction is temporarily banned",
                        f"{e.reason}: {e}")
    if isinstance(e, AlreadyImported):
        return RpcError(POOL_ALREADY_IMPORTED, "Transaction Already Imported",
                        f"{e.reason}: {e}")
    if isinstance(e, TooLowPriority):
        return RpcError(POOL_TOO_LOW_PRIORITY, "Priority is too low", f"{e.reason}: {e}")
    if e.reason in LIMIT_REFUSALS:  # PoolFull, TooManyFuture, NonceTooFarAhead
        return RpcError(POOL_IMMEDIATELY_DROPPED, "Immediately Dropped", f"{e.reason}: {e}")
    return RpcError(POOL_INVALID_TX, "Invalid Transaction", f"{e.reason}: {e}")


def tx_status_json(status: str, detail: Any) -> Any:
    """Substrate's TransactionStatus: a string, or ``{status: hash}``."""
    if isinstance(detail, bytes) and status in ("inBlock", "finalized", "usurped", "retracted"):
        return {status: hex0x(detail)}
    return status


def p_key_type(value: Any) -> str:
    """A keystore key type: one of :data:`KEY_TYPES`."""
    if value not in KEY_TYPES:
        raise invalid_params(f"keyType must be one of {', '.join(KEY_TYPES)}")
    return str(value)


# ---------------------------------------------------------------------------
# Transactions


@METHODS.rpc()
async def author_submitExtrinsic(s: Session, extrinsic: Any) -> str:
    """Put a signed extrinsic into the pool (and gossip it); its hash, or a pool error."""
    raw = p_extrinsic(extrinsic)
    try:
        tx_hash = await s.node.submit_extrinsic(raw)
    except PoolError as e:
        raise pool_error(e) from None
    return hex0x(tx_hash)


def _unwatch(node: NodeCore, tx_hash: bytes, send: trio.MemorySendChannel[Any]) -> None:
    """Stop reporting ``tx_hash``'s statuses to ``send``, and close it."""
    watchers = node.tx_watchers.get(tx_hash)
    if watchers is not None:
        if send in watchers:
            watchers.remove(send)
        if not watchers:
            node.tx_watchers.pop(tx_hash, None)
    send.close()


@METHODS.rpc()
async def author_submitAndWatchExtrinsic(s: Session, extrinsic: Any) -> str:
    """WebSocket only: submit, then each status of the transaction (``author_extrinsicUpdate``)
    until a final one (finalized, dropped, invalid, usurped)."""
    raw = p_extrinsic(extrinsic)
    s.require_subscriptions()
    node = s.node
    tx_hash = blake2_256(raw)
    send, receive = trio.open_memory_channel[tuple[str, Any]](64)
    node.tx_watchers.setdefault(tx_hash, []).append(send)
    try:
        await node.submit_extrinsic(raw)
    except PoolError as e:
        _unwatch(node, tx_hash, send)
        receive.close()
        raise pool_error(e) from None

    async def produce(notify: Notify) -> None:
        last: Any = None
        try:
            with receive:
                async for status, detail in receive:
                    update = tx_status_json(status, detail)
                    if update == last:  # the node and the pool may both report inBlock
                        continue
                    last = update
                    await notify(update)
                    if status in TERMINAL_TX_STATUSES:
                        return
        finally:
            _unwatch(node, tx_hash, send)

    def cleanup() -> None:
        _unwatch(node, tx_hash, send)
        receive.close()

    try:
        return s.subscribe("extrinsic", "author_extrinsicUpdate", produce, cleanup)
    except RpcError:
        cleanup()
        raise


@METHODS.rpc()
async def author_unwatchExtrinsic(s: Session, subscription: Any) -> bool:
    """End an ``author_submitAndWatchExtrinsic``; false if no such subscription."""
    return s.unsubscribe("extrinsic", subscription)


@METHODS.rpc()
async def author_pendingExtrinsics(s: Session) -> list[str]:
    """Every pooled transaction: the ready ones in inclusion order, then the future ones
    (-32008 if they do not fit one answer)."""
    # The pool may hold 20 MiB (40 MiB of hex): stop as soon as the answer is too big.
    limit = s.max_response_size
    size = 0
    pending = []
    for raw in s.node.pool.pending():
        size += 2 * len(raw) + 5  # "0x…", in JSON
        if size > limit:
            raise response_too_big(limit)
        pending.append(hex0x(raw))
    return pending


# ---------------------------------------------------------------------------
# The keystore (unsafe)


def _key_file(node: NodeCore, key_type: str, public: bytes) -> Path:
    """Substrate's keystore file name: the key type's and the public key's hex."""
    return Path(node.config.base_path) / "keystore" / (key_type.encode().hex() + public.hex())


def _key_from_suri(suri: Any) -> Keypair:
    """The key of a secret URI: ``0x`` + a 32-byte seed, or a dev account's ``//Alice``."""
    if not isinstance(suri, str):
        raise invalid_params("suri must be a string: 0x + a 32-byte seed, or //Alice … //Ferdie")
    try:
        if suri.startswith("//"):
            return dev_keypair(suri[2:])
        return Keypair.from_seed(from_hex0x(suri, 32))
    except ValueError as e:
        raise invalid_params(f"suri: {e}") from None


def _store_key(node: NodeCore, key_type: str, key: Keypair, suri: str) -> None:
    """Write ``suri`` to the keystore file of ``key`` (readable by the node's user only)."""
    path = _key_file(node, key_type, key.public)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(suri, f)


@METHODS.rpc(safe=False)
async def author_insertKey(s: Session, keyType: Any, suri: Any, publicKey: Any) -> None:  # noqa: N803
    """Put a key into the node's keystore (``<base path>/keystore``). Unsafe."""
    key_type = p_key_type(keyType)
    key = _key_from_suri(suri)
    if p_account(publicKey, "publicKey") != key.public:
        raise invalid_params("publicKey does not belong to the suri's key")
    _store_key(s.node, key_type, key, suri)
    return None


@METHODS.rpc(safe=False)
async def author_rotateKeys(s: Session) -> str:
    """Generate a new authoring key in the keystore; returns its public key. Unsafe."""
    key = Keypair.from_seed(secrets.token_bytes(32))
    _store_key(s.node, "aura", key, hex0x(key.seed))
    return hex0x(key.public)


@METHODS.rpc(safe=False)
async def author_hasKey(s: Session, publicKey: Any, keyType: Any) -> bool:  # noqa: N803
    """Whether the node holds the secret of this key (its authority key or the keystore). Unsafe."""
    public = p_account(publicKey, "publicKey")
    key_type = p_key_type(keyType)
    authority = s.node.config.authority
    if authority is not None and authority.public == public:
        return True
    return _key_file(s.node, key_type, public).exists()
