"""``author_*``: submitting and watching transactions, and the node's keystore.

Substrate's methods, error codes (1010–1016) and transaction statuses
(docs/rpc.md, "author_*"). The keystore methods work on the running node's keystore
(:class:`node.keystore.Keystore`), so a key inserted is used at once; they are unsafe:
served only with ``--rpc-methods unsafe`` or ``--unsafe-rpc-external``. No answer holds
more of a key than its public part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from client.api import (
    INTERNAL_ERROR,
    POOL_ALREADY_IMPORTED,
    POOL_IMMEDIATELY_DROPPED,
    POOL_INVALID_TX,
    POOL_TEMPORARILY_BANNED,
    POOL_TOO_LOW_PRIORITY,
    RpcError,
)
from client.keys import InvalidPhrase, InvalidSecretUri, keypair_from_suri
from node.keystore import KEY_TYPES, SESSION_KEY_TYPES, Keystore, KeystoreError
from node.rpc import invalid_params, response_too_big
from node.rpc.protocol import MethodTable, Notify, Session, p_account, p_bytes, p_extrinsic
from node.txpool import (
    LIMIT_REFUSALS,
    AlreadyImported,
    PoolError,
    PoolRejected,
    TemporarilyBanned,
    TooLowPriority,
)
from runtime.codec import hex0x
from runtime.crypto import Keypair, blake2_256

if TYPE_CHECKING:
    from node.core import NodeCore

METHODS = MethodTable()

# A watched transaction's last status: its subscription ends after sending it.
TERMINAL_TX_STATUSES = frozenset({"finalized", "dropped", "invalid", "usurped"})


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


def _keystore(s: Session) -> Keystore:
    return s.node.config.keystore


def _key_from_suri(suri: Any) -> Keypair:
    """The key a secret URI names (:func:`client.keys.keypair_from_suri`); the error never
    quotes the suri (a wrong word of a phrase is part of a secret)."""
    if not isinstance(suri, str):
        raise invalid_params("suri must be a string: a secret phrase (optionally "
                             "\"<phrase>///password\"), 0x + a 32-byte seed, or //Alice … //Ferdie")
    try:
        return keypair_from_suri(suri)
    except InvalidPhrase:
        raise invalid_params("suri is not a valid secret phrase: a word, the number of words "
                             "or the checksum is wrong") from None
    except InvalidSecretUri:
        raise invalid_params("suri is not a secret URI: a secret phrase, 0x + a 32-byte seed, "
                             "or //Alice … //Ferdie") from None


def keystore_error(e: KeystoreError) -> RpcError:
    """A keystore that could not do what was asked (its message names no secret)."""
    return RpcError(INTERNAL_ERROR, "Keystore error", f"{type(e).__name__}: {e}")


@METHODS.rpc(safe=False)
async def author_insertKey(s: Session, keyType: Any, suri: Any, publicKey: Any) -> None:  # noqa: N803
    """Put the key of ``suri`` into the node's keystore as a ``keyType`` key; a validator
    signs with it from its next slot or finality step. Unsafe."""
    key_type = p_key_type(keyType)
    key = _key_from_suri(suri)
    if p_account(publicKey, "publicKey") != key.public:
        raise invalid_params("publicKey does not belong to the suri's key")
    try:  # a sealed key file costs argon2id's ~0.2 s: off the event loop
        await trio.to_thread.run_sync(_keystore(s).insert, key_type, key)
    except KeystoreError as e:
        raise keystore_error(e) from None
    return None


@METHODS.rpc(safe=False)
async def author_rotateKeys(s: Session) -> str:
    """Generate a new key in the keystore, as both its aura and its gran key; returns its
    public key (Substrate returns the concatenated session keys: ours is the one key). Unsafe."""
    try:
        key = await trio.to_thread.run_sync(_keystore(s).generate, *SESSION_KEY_TYPES)
    except KeystoreError as e:
        raise keystore_error(e) from None
    return hex0x(key.public)


@METHODS.rpc(safe=False)
async def author_hasKey(s: Session, publicKey: Any, keyType: Any) -> bool:  # noqa: N803
    """Whether the node's keystore holds the ``keyType`` key of ``publicKey``. Unsafe."""
    public = p_account(publicKey, "publicKey")
    return _keystore(s).has(p_key_type(keyType), public)


@METHODS.rpc(safe=False)
async def author_hasSessionKeys(s: Session, sessionKeys: Any) -> bool:  # noqa: N803
    """Whether the keystore holds every key of ``sessionKeys`` (what ``author_rotateKeys``
    returned: one public key, needed as both the aura and the gran key). Unsafe."""
    public = p_bytes(sessionKeys, "sessionKeys", 32)
    keystore = _keystore(s)
    return all(keystore.has(key_type, public) for key_type in SESSION_KEY_TYPES)
