"""The JSON-RPC method table and the JSON-RPC 2.0 protocol, independent of the transport.

:data:`METHODS` maps each method name to ``(function, safe)``. A function takes
the :class:`Session` (the node, the connection's subscriptions) and the call's
params, positionally (``"params": [...]``) or by name (``"params": {...}``);
methods marked ``object_param`` take one options object, which may also be
given as the whole ``params`` object. Unsafe methods answer -32601 "Method not
allowed" unless the node runs with ``--rpc-methods unsafe``.

:func:`handle_payload` is everything the server calls: raw request bytes in,
the answer as UTF-8 JSON bytes (or None for notifications) out. It never
raises for bad input and enforces the protocol's limits (batch length, answer
size, the connection's rate limit). See ``docs/rpc.md`` for every method's
params, result and an example, and its "Limits" section.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import secrets
import string
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from node import indexes
from node.rpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    POOL_ALREADY_IMPORTED,
    POOL_IMMEDIATELY_DROPPED,
    POOL_INVALID_TX,
    POOL_TEMPORARILY_BANNED,
    POOL_TOO_LOW_PRIORITY,
    TOO_MANY_SUBSCRIPTIONS,
    RpcError,
    batch_response_too_big,
    batch_too_long,
    header_to_json,
    invalid_params,
    rate_limited,
    response_too_big,
    to_json,
)
from node.txpool import (
    LIMIT_REFUSALS,
    AlreadyImported,
    PoolError,
    PoolRejected,
    TemporarilyBanned,
    TooLowPriority,
)
from runtime import codec, executive
from runtime.block import Block, Header
from runtime.codec import from_hex0x, hex0x
from runtime.crypto import (
    InvalidAddress,
    Keypair,
    blake2_256,
    decode_address,
    dev_keypair,
    encode_address,
)
from runtime.extrinsic import decode_extrinsic
from runtime.modules import licensing, provenance, system, usage
from runtime.support import EventRecord, StorageMap

if TYPE_CHECKING:
    from node.service import Node

log = logging.getLogger("opus.rpc")

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_READ_PROOF_KEYS = 1024
EARNINGS_SCAN_LIMIT = 10_000
U64_MAX = (1 << 64) - 1
TERMINAL_TX_STATUSES = frozenset({"finalized", "dropped", "invalid", "usurped"})
KEY_TYPES = ("aura", "gran")
SUBSCRIPTION_ID_ALPHABET = string.ascii_letters + string.digits


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("opuschain")
    except Exception:  # noqa: BLE001 - not installed: read pyproject.toml
        pass
    try:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.1.0"


VERSION = _version()


# ---------------------------------------------------------------------------
# Service and sessions


class RpcService:
    """What the RPC serves: the node, plus what the server remembers about it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.starting_block = node.best.number

    @property
    def unsafe_allowed(self) -> bool:
        return self.node.config.rpc_methods == "unsafe"

    def available(self) -> list[str]:
        return sorted(name for name, (_, safe) in METHODS.items()
                      if safe or self.unsafe_allowed)


class RateLimiter:
    """``--rpc-rate-limit``: at most ``per_minute`` calls a minute on one connection.

    Substrate's rule (governor's GCRA, ``Quota::per_minute``): a burst of
    ``per_minute`` calls at once, then one call every ``60 / per_minute`` seconds.
    A call over the rate waits for its turn, as Substrate's middleware waits
    and retries, if at most :attr:`MAX_WAITING` calls are ahead of it; later
    calls are refused at once with -32999 "RPC rate limit exceeded" (where
    Substrate gives up after ten retries) and do not use up the allowance.
    The calls of one batch arrive together, so past the allowance ten of them
    wait and the rest are refused; a client sending one call at a time is
    slowed down to the rate, never refused.
    """

    MAX_WAITING = 10  # Substrate's MAX_RETRIES

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("a rate limit allows at least one call per minute")
        self.interval = 60.0 / per_minute
        self._tolerance = (per_minute - 1) * self.interval  # the burst
        self._next: float | None = None  # the theoretical arrival time of the next call

    def reserve(self, now: float) -> float | None:
        """Seconds the call arriving at ``now`` must wait; None if it is refused."""
        theoretical = now if self._next is None else max(self._next, now)
        wait = theoretical - self._tolerance - now
        if wait > self.MAX_WAITING * self.interval:
            return None
        self._next = theoretical + self.interval
        return max(wait, 0.0)

    async def admit(self, arrived: float) -> None:
        """Wait for the turn of a call that arrived at ``arrived`` (trio's clock).

        RpcError -32999 if too many calls are waiting already.
        """
        wait = self.reserve(arrived)
        if wait is None:
            raise rate_limited()
        await trio.sleep_until(arrived + wait)


Notify = Callable[[Any], Awaitable[None]]
Producer = Callable[[Notify], Awaitable[None]]


@dataclass
class _Subscription:
    kind: str
    notification: str
    producer: Producer
    cleanup: Callable[[], None] | None = None  # frees its resources if it never starts
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    started: bool = False

    def stop(self) -> None:
        self.scope.cancel()
        if not self.started and self.cleanup is not None:
            self.cleanup()


class Session:
    """One client connection: an HTTP request, or a WebSocket with its subscriptions.

    A WebSocket transport gives ``send`` (queue one JSON message to the client)
    and a ``nursery`` that lives as long as the connection; subscription tasks
    run there. A subscription's tasks start only when :meth:`start_pending` is
    called, after the answer carrying its id was sent, so the id always
    reaches the client before the first notification. ``rate_limit`` is the
    connection's (shared by the HTTP requests of one keep-alive connection).
    """

    def __init__(self, service: RpcService, *, send: Callable[[Any], Awaitable[None]] | None = None,
                 nursery: trio.Nursery | None = None,
                 rate_limit: RateLimiter | None = None) -> None:
        self.service = service
        self.node = service.node
        self._send = send
        self._nursery = nursery
        self.rate_limit = rate_limit
        self.subscriptions: dict[str, _Subscription] = {}

    @property
    def max_subscriptions(self) -> int:
        return self.node.config.rpc_max_subscriptions

    @property
    def max_response_size(self) -> int:
        """Bytes one answer may take; methods with long answers stop building past it."""
        return self.node.config.rpc_max_response_size

    def require_subscriptions(self) -> None:
        """Refuse a new subscription on HTTP or past the per-connection limit."""
        if self._send is None or self._nursery is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found",
                           "subscriptions are only available over WebSocket")
        if len(self.subscriptions) >= self.max_subscriptions:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS, "Too many subscriptions on the connection",
                           f"Exceeded max limit of {self.max_subscriptions}")

    def subscribe(self, kind: str, notification: str, producer: Producer,
                  cleanup: Callable[[], None] | None = None) -> str:
        """Register a subscription; ``producer(notify)`` runs from :meth:`start_pending` on.

        ``cleanup`` is called if the subscription ends before it started.
        """
        self.require_subscriptions()
        sub_id = "".join(secrets.choice(SUBSCRIPTION_ID_ALPHABET) for _ in range(16))
        self.subscriptions[sub_id] = _Subscription(kind, notification, producer, cleanup)
        return sub_id

    def unsubscribe(self, kind: str, sub_id: Any) -> bool:
        sub = self.subscriptions.get(sub_id) if isinstance(sub_id, str) else None
        if sub is None or sub.kind != kind:
            return False
        del self.subscriptions[sub_id]
        sub.stop()
        return True

    def close(self) -> None:
        """The connection is gone: end every subscription."""
        subscriptions, self.subscriptions = self.subscriptions, {}
        for sub in subscriptions.values():
            sub.stop()

    def start_pending(self) -> None:
        if self._nursery is None:
            return
        for sub_id, sub in list(self.subscriptions.items()):
            if not sub.started:
                sub.started = True
                self._nursery.start_soon(self._run, sub_id, sub)

    async def _run(self, sub_id: str, sub: _Subscription) -> None:
        assert self._send is not None
        send = self._send

        async def notify(result: Any) -> None:
            await send({"jsonrpc": "2.0", "method": sub.notification,
                        "params": {"subscription": sub_id, "result": result}})

        try:
            with sub.scope:
                await sub.producer(notify)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the connection went away
        except Exception:  # noqa: BLE001 - a subscription must not take the connection down
            log.exception("subscription %s (%s) failed", sub_id, sub.kind)
        finally:
            if self.subscriptions.get(sub_id) is sub:
                del self.subscriptions[sub_id]


# ---------------------------------------------------------------------------
# Registration

MethodFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    fn: MethodFn
    safe: bool
    object_param: bool
    signature: inspect.Signature


METHOD_SPECS: dict[str, MethodSpec] = {}
# The method table: name -> (function, safe).
METHODS: dict[str, tuple[MethodFn, bool]] = {}


def rpc(name: str | None = None, *, safe: bool = True,
        object_param: bool = False) -> Callable[[MethodFn], MethodFn]:
    def register(fn: MethodFn) -> MethodFn:
        method = name or fn.__name__
        signature = inspect.signature(fn)
        METHOD_SPECS[method] = MethodSpec(fn, safe, object_param, signature)
        METHODS[method] = (fn, safe)
        return fn

    return register


def alias(name: str, target: str) -> None:
    spec = METHOD_SPECS[target]
    METHOD_SPECS[name] = spec
    METHODS[name] = (spec.fn, spec.safe)


def _usage(signature: inspect.Signature) -> str:
    names = []
    for p in list(signature.parameters.values())[1:]:
        names.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}?")
    return "[" + ", ".join(names) + "]"


# ---------------------------------------------------------------------------
# The protocol


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


def _encodable(text: str) -> bool:
    """False for a string holding a lone surrogate, which UTF-8 cannot carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NOT_UNICODE = "strings must be valid Unicode: no lone surrogate, no invalid UTF-8"
_NOT_FINITE = "numbers must be finite: no NaN, Infinity or 1e999"


def _id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an id (it goes back into the answer), or None if it can."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    if isinstance(value, str):
        return None if _encodable(value) else f"id: {_NOT_UNICODE}"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"id: {_NOT_FINITE}"
    return "id must be a string, a finite number or null"


# Text that may decode to a lone surrogate: its escape (\ud800) or an undecodable byte
# (which "surrogateescape" turns into U+DC80-U+DCFF). Only then are strings checked.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _parse(payload: bytes | str) -> tuple[Any, bool]:
    """The JSON value of ``payload``, and whether it may hold what JSON cannot carry back.

    Bytes must be UTF-8 (RFC 8259); bytes that are not are kept as lone surrogates
    so that only the requests holding them are refused. ``NaN``, ``Infinity``,
    ``-Infinity`` and numbers beyond a double (``1e999``) parse to non-finite
    floats, refused the same way. ValueError (or RecursionError) if not JSON.
    """
    text = payload.decode("utf-8", "surrogateescape") if isinstance(payload, bytes) else payload
    non_finite = False

    def constant(token: str) -> float:
        nonlocal non_finite
        non_finite = True
        return float(token)

    def number(token: str) -> float:
        nonlocal non_finite
        value = float(token)
        non_finite = non_finite or not math.isfinite(value)
        return value

    message = json.loads(text, parse_constant=constant, parse_float=number)
    return message, non_finite or _MAYBE_SURROGATE.search(text) is not None


def _unrepresentable(value: Any) -> str | None:
    """What in a parsed request cannot be JSON text again, or None if nothing."""
    stack = [value]
    while stack:  # no recursion: the parser allows deeper nesting than the stack
        item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return _NOT_UNICODE
        elif isinstance(item, float):
            if not math.isfinite(item):
                return _NOT_FINITE
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return None


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; ValueError for what JSON cannot carry, TypeError for a non-JSON type."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _encode_answer(answer: dict[str, Any], limit: int) -> bytes:
    """One answer as JSON; over ``limit`` bytes it is replaced by -32008 "Response is too big"."""
    try:
        data = encode_json(answer)
    except (ValueError, TypeError):  # a method's bug: every input was checked
        log.exception("RPC answer is not representable as JSON")
        data = encode_json(_error(answer["id"], RpcError(INTERNAL_ERROR, "Internal error",
                                                    "the answer is not representable as JSON")))
    if len(data) > limit:
        data = encode_json(_error(answer["id"], response_too_big(limit)))
    return data


async def handle_payload(session: Session, payload: bytes | str) -> bytes | None:
    """Answer one JSON-RPC message (a request or a batch) as UTF-8 JSON.

    None when nothing is to be sent (notifications only). It never raises for
    bad input, and the answer is always valid JSON of at most
    ``rpc_max_response_size`` bytes.
    """
    arrived = trio.current_time()
    try:
        message, suspicious = _parse(payload)
    except (ValueError, RecursionError):
        return encode_json(_error(None, RpcError(PARSE_ERROR, "Parse error")))
    if isinstance(message, list):
        return await _handle_batch(session, message, suspicious, arrived)
    answer = await handle_request(session, message, check_text=suspicious, arrived=arrived)
    return None if answer is None else _encode_answer(answer, session.max_response_size)


async def _handle_batch(session: Session, batch: list[Any], suspicious: bool,
                        arrived: float) -> bytes | None:
    """Answer a batch in order; its answers are written as they come and stop at the limit."""
    if not batch:
        return encode_json(_error(None, RpcError(INVALID_REQUEST, "Invalid request",
                                                 "empty batch")))
    max_len = session.node.config.rpc_max_batch_len
    if len(batch) > max_len:
        return encode_json(_error(None, batch_too_long(max_len)))
    limit = session.max_response_size
    answers: list[bytes] = []
    size = 1  # "[", then each answer with its "," or the closing "]"
    for i, item in enumerate(batch):
        if i:
            await trio.lowlevel.checkpoint()  # let the node author and import between calls
        answer = await handle_request(session, item, check_text=suspicious, arrived=arrived)
        if answer is None:
            continue
        data = _encode_answer(answer, limit)
        size += len(data) + 1
        if size > limit:  # the rest would be thrown away: stop here
            return encode_json(_error(None, batch_response_too_big(limit)))
        answers.append(data)
    return b"[" + b",".join(answers) + b"]" if answers else None


async def handle_request(session: Session, request: Any, *, check_text: bool = True,
                         arrived: float | None = None) -> dict[str, Any] | None:
    """Answer one request object; None for a (valid) notification.

    ``check_text`` False skips the walk for lone surrogates and non-finite
    numbers (when the parser saw none); ``arrived`` is when the message
    holding the request arrived (for the rate limit; default: now).
    """
    if not isinstance(request, dict):
        return _error(None, RpcError(INVALID_REQUEST, "Invalid request",
                                     "a request is a JSON object"))
    request_id = request.get("id")
    id_problem = _id_problem(request_id)
    if id_problem is not None:
        return _error(None, RpcError(INVALID_REQUEST, "Invalid request", id_problem))
    problem = _unrepresentable(request) if check_text else None
    if problem is not None:
        return _error(request_id, RpcError(INVALID_REQUEST, "Invalid request", problem))
    method = request.get("method")
    params = request.get("params", [])
    if request.get("jsonrpc") != "2.0":
        return _error(request_id, RpcError(INVALID_REQUEST, "Invalid request",
                                           'jsonrpc must be "2.0"'))
    if not isinstance(method, str):
        return _error(request_id, RpcError(INVALID_REQUEST, "Invalid request",
                                           "method must be a string"))
    unknown = set(request) - {"jsonrpc", "method", "params", "id"}
    if unknown:
        return _error(request_id, RpcError(INVALID_REQUEST, "Invalid request",
                                           f"unknown member {sorted(unknown)[0]!r}"))
    if params is None:
        params = []
    if not isinstance(params, list | dict):
        return _error(request_id, RpcError(INVALID_REQUEST, "Invalid request",
                                           "params must be an array or an object"))
    try:
        if session.rate_limit is not None:
            await session.rate_limit.admit(trio.current_time() if arrived is None else arrived)
        result = await call_method(session, method, params)
    except RpcError as e:
        answer: dict[str, Any] = _error(request_id, e)
    else:
        answer = {"jsonrpc": "2.0", "result": result, "id": request_id}
    return None if "id" not in request else answer


async def call_method(session: Session, method: str, params: list[Any] | dict[str, Any]) -> Any:
    spec = METHOD_SPECS.get(method)
    if spec is None:
        raise RpcError(METHOD_NOT_FOUND, "Method not found", f"no method {method!r}")
    if not spec.safe and not session.service.unsafe_allowed:
        raise RpcError(METHOD_NOT_FOUND, "Method not allowed",
                       f"{method} is unsafe; start the node with --rpc-methods unsafe to allow it")
    names = list(spec.signature.parameters)[1:]
    if spec.object_param and isinstance(params, dict) and set(params) != {names[0]}:
        params = [params]
    try:
        if isinstance(params, list):
            bound = spec.signature.bind(session, *params)
        else:
            bound = spec.signature.bind(session, **params)
    except TypeError:
        raise invalid_params(f"{method} takes {_usage(spec.signature)}") from None
    try:
        return await spec.fn(*bound.args, **bound.kwargs)
    except RpcError:
        raise
    except Exception as e:  # noqa: BLE001 - a method's bug must not stop the server
        log.exception("RPC method %s failed", method)
        raise RpcError(INTERNAL_ERROR, "Internal error", f"{type(e).__name__}: {e}") from None


# ---------------------------------------------------------------------------
# Parameter parsing


def p_bytes(value: Any, name: str, length: int | None = None) -> bytes:
    try:
        return from_hex0x(value, length)
    except ValueError as e:
        raise invalid_params(f"{name}: {e}") from None


def p_hash(value: Any, name: str = "hash") -> bytes:
    return p_bytes(value, name, 32)


def p_account(value: Any, name: str = "address") -> bytes:
    if isinstance(value, str) and value.startswith("0x"):
        return p_bytes(value, name, 32)
    try:
        return decode_address(value)
    except InvalidAddress as e:
        raise invalid_params(f"{name}: {e}") from None


def p_uint(value: Any, name: str, maximum: int = U64_MAX) -> int:
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value, 16) if value.startswith("0x") else int(value, 10)
        except ValueError:
            raise invalid_params(f"{name}: not an integer: {value!r}") from None
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= maximum:
        raise invalid_params(f"{name}: expected an integer from 0 to {maximum}, got {value!r}")
    return number


def p_options(value: Any, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_params(f"{name} must be an object with {', '.join(allowed)}")
    unknown = set(value) - set(allowed)
    if unknown:
        raise invalid_params(f"{name}: unknown field {sorted(unknown)[0]!r} "
                             f"(allowed: {', '.join(allowed)})")
    return value


def p_page(options: dict[str, Any]) -> tuple[int, int]:
    start = p_uint(options.get("start", 0) or 0, "start")
    limit = p_uint(options.get("limit", DEFAULT_PAGE), "limit", MAX_PAGE)
    return start, limit or DEFAULT_PAGE


def p_block(session: Session, value: Any, name: str = "block") -> bytes:
    """A block hash param: None means the best block; an unknown hash is refused."""
    if value is None:
        return session.node.store.best_hash
    block_hash = p_hash(value, name)
    if not session.node.store.has_block(block_hash):
        raise invalid_params(f"{name}: unknown block {value}")
    return block_hash


def p_extrinsic(value: Any, name: str = "extrinsic") -> bytes:
    raw = p_bytes(value, name)
    if not raw:
        raise invalid_params(f"{name} is empty")
    return raw


def p_key_type(value: Any) -> str:
    if value not in KEY_TYPES:
        raise invalid_params(f"keyType must be one of {', '.join(KEY_TYPES)}")
    return str(value)


# ---------------------------------------------------------------------------
# JSON shapes


def block_to_json(block: Block) -> dict[str, Any]:
    justifications = None
    if block.justification is not None:
        justifications = [["FRNK", hex0x(codec.encode(block.justification))]]
    return {
        "block": {
            "header": header_to_json(block.header),
            "extrinsics": [hex0x(raw) for raw in block.extrinsics],
            "seal": hex0x(block.seal),
        },
        "justifications": justifications,
    }


def event_to_json(record: EventRecord) -> dict[str, Any]:
    event = record.event
    return {"extrinsicIndex": record.extrinsic_index, "module": event.module,
            "name": type(event).__name__, "data": to_json(event)}


def tx_status_json(status: str, detail: Any) -> Any:
    """Substrate's TransactionStatus: a string, or ``{status: hash}``."""
    if isinstance(detail, bytes) and status in ("inBlock", "finalized", "usurped", "retracted"):
        return {status: hex0x(detail)}
    return status


def license_json(lic: licensing.License, next_block: int) -> dict[str, Any]:
    out: dict[str, Any] = to_json(lic)
    out["live"] = licensing.is_live(lic, next_block)
    return out


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


def _ids_in(store: Any, prefix: bytes, start: int, limit: int) -> tuple[list[int], int | None]:
    """Ids (trailing u64 of index keys under ``prefix``) from ``start``, one page and the next.

    The listing indexes are node-side (:mod:`node.indexes`), built from the events.
    """
    start_after = prefix + (start - 1).to_bytes(8, "big") if start > 0 else None
    ids: list[int] = []
    for key, _ in store.iter_index_prefix(prefix, start_after):
        ids.append(int.from_bytes(key[len(prefix):len(prefix) + 8], "big"))
        if len(ids) > limit:
            break
    return ids[:limit], (ids[limit] if len(ids) > limit else None)


def _page_of(session: Session, index: StorageMap[bool], owner_key: bytes, start: int,
             limit: int, load: Callable[[Any, int], Any]) -> dict[str, Any]:
    store = session.node.store
    ids, next_id = _ids_in(store, index.prefix + owner_key, start, limit)
    state = store.best_state()
    items = [item for item in (load(state, i) for i in ids) if item is not None]
    return {"items": items, "next": next_id}


def _next_nonce(node: Node, who: bytes, chain_nonce: int) -> int:
    """The account nonce after its ready transactions in the pool (the pool's own index)."""
    return node.pool.next_nonce(who, chain_nonce)


# ---------------------------------------------------------------------------
# rpc_*, system_*


@rpc()
async def rpc_methods(s: Session) -> dict[str, Any]:
    return {"methods": s.service.available()}


@rpc()
async def system_health(s: Session) -> dict[str, Any]:
    node = s.node
    return {"peers": node.peer_count(), "isSyncing": node.is_syncing(),
            "shouldHavePeers": node.genesis.spec.chain_type != "Development"}


@rpc()
async def system_name(s: Session) -> str:
    return "Opus Node"


@rpc()
async def system_version(s: Session) -> str:
    return VERSION


@rpc()
async def system_chain(s: Session) -> str:
    return s.node.genesis.spec.name


@rpc()
async def system_chainType(s: Session) -> str:
    return s.node.genesis.spec.chain_type


@rpc()
async def system_properties(s: Session) -> dict[str, Any]:
    return dict(s.node.genesis.spec.properties)


@rpc()
async def system_nodeRoles(s: Session) -> list[str]:
    return ["Authority" if s.node.config.authority is not None else "Full"]


@rpc()
async def system_peers(s: Session) -> list[Any]:
    """The network layer may set ``node.peer_info`` to a callable returning peer objects."""
    peer_info = getattr(s.node, "peer_info", None)
    return list(peer_info()) if callable(peer_info) else []


@rpc()
async def system_localPeerId(s: Session) -> str | None:
    node = s.node
    known = getattr(node, "local_peer_id", None)
    if callable(known):
        known = known()
    if known:
        return str(known)
    from node import nodekey

    path = node.config.node_key_file or node.config.base_path / nodekey.NODE_KEY_FILE
    try:
        return nodekey.peer_id(nodekey.read_key_file(Path(path)))
    except nodekey.NodeKeyError:
        return None


@rpc()
async def system_syncState(s: Session) -> dict[str, int]:
    node = s.node
    highest = getattr(node, "highest_known_block", None)
    if callable(highest):
        highest = highest()
    best = node.best.number
    return {"startingBlock": s.service.starting_block, "currentBlock": best,
            "highestBlock": max(best, highest) if isinstance(highest, int) else best}


@rpc()
async def system_accountNextIndex(s: Session, address: Any) -> int:
    who = p_account(address)
    info = system.account_info(s.node.store.best_state(), who)
    return _next_nonce(s.node, who, info.nonce)


# ---------------------------------------------------------------------------
# chain_*


@rpc()
async def chain_getHeader(s: Session, hash: Any = None) -> dict[str, Any] | None:  # noqa: A002
    store = s.node.store
    header = store.best_header if hash is None else store.header(p_hash(hash))
    return None if header is None else header_to_json(header)


@rpc()
async def chain_getBlock(s: Session, hash: Any = None) -> dict[str, Any] | None:  # noqa: A002
    store = s.node.store
    block = store.block(store.best_hash if hash is None else p_hash(hash))
    return None if block is None else block_to_json(block)


@rpc()
async def chain_getBlockHash(s: Session, number: Any = None) -> Any:
    store = s.node.store
    if number is None:
        return hex0x(store.best_hash)
    if isinstance(number, list):
        if len(number) > MAX_PAGE:
            raise invalid_params(f"at most {MAX_PAGE} block numbers at once")
        found = [store.hash_at(p_uint(n, "number")) for n in number]
        return [None if h is None else hex0x(h) for h in found]
    block_hash = store.hash_at(p_uint(number, "number"))
    return None if block_hash is None else hex0x(block_hash)


@rpc()
async def chain_getFinalizedHead(s: Session) -> str:
    return hex0x(s.node.store.finalized_hash)


alias("chain_getFinalisedHead", "chain_getFinalizedHead")


def _heads_subscription(s: Session, kind: str, notification: str, broadcast: Any,
                        current: Callable[[], Header]) -> str:
    s.require_subscriptions()
    receive = broadcast.subscribe()

    async def produce(notify: Notify) -> None:
        with receive:
            await notify(header_to_json(current()))
            async for header in receive:
                await notify(header_to_json(header))

    try:
        return s.subscribe(kind, notification, produce, cleanup=receive.close)
    except RpcError:
        receive.close()
        raise


@rpc()
async def chain_subscribeNewHeads(s: Session) -> str:
    node = s.node
    return _heads_subscription(s, "newHeads", "chain_newHead", node.new_heads, lambda: node.best)


@rpc()
async def chain_unsubscribeNewHeads(s: Session, subscription: Any) -> bool:
    return s.unsubscribe("newHeads", subscription)


@rpc()
async def chain_subscribeFinalizedHeads(s: Session) -> str:
    node = s.node
    return _heads_subscription(s, "finalizedHeads", "chain_finalizedHead", node.finalized_heads,
                               lambda: node.finalized)


@rpc()
async def chain_unsubscribeFinalizedHeads(s: Session, subscription: Any) -> bool:
    return s.unsubscribe("finalizedHeads", subscription)


alias("chain_subscribeFinalisedHeads", "chain_subscribeFinalizedHeads")
alias("chain_unsubscribeFinalisedHeads", "chain_unsubscribeFinalizedHeads")


# ---------------------------------------------------------------------------
# author_*


@rpc()
async def author_submitExtrinsic(s: Session, extrinsic: Any) -> str:
    raw = p_extrinsic(extrinsic)
    try:
        tx_hash = await s.node.submit_extrinsic(raw)
    except PoolError as e:
        raise pool_error(e) from None
    return hex0x(tx_hash)


def _unwatch(node: Node, tx_hash: bytes, send: trio.MemorySendChannel[Any]) -> None:
    watchers = node.tx_watchers.get(tx_hash)
    if watchers is not None:
        if send in watchers:
            watchers.remove(send)
        if not watchers:
            node.tx_watchers.pop(tx_hash, None)
    send.close()


@rpc()
async def author_submitAndWatchExtrinsic(s: Session, extrinsic: Any) -> str:
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


@rpc()
async def author_unwatchExtrinsic(s: Session, subscription: Any) -> bool:
    return s.unsubscribe("extrinsic", subscription)


@rpc()
async def author_pendingExtrinsics(s: Session) -> list[str]:
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


def _keystore(node: Node) -> Path:
    return Path(node.config.base_path) / "keystore"


def _key_from_suri(suri: Any) -> Keypair:
    if not isinstance(suri, str):
        raise invalid_params("suri must be a string: 0x + a 32-byte seed, or //Alice … //Ferdie")
    try:
        if suri.startswith("//"):
            return dev_keypair(suri[2:])
        return Keypair.from_seed(from_hex0x(suri, 32))
    except ValueError as e:
        raise invalid_params(f"suri: {e}") from None


def _store_key(node: Node, key_type: str, key: Keypair, suri: str) -> None:
    directory = _keystore(node)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / (key_type.encode().hex() + key.public.hex())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(suri, f)


@rpc(safe=False)
async def author_insertKey(s: Session, keyType: Any, suri: Any, publicKey: Any) -> None:  # noqa: N803
    """Put a key into the node's keystore (``<base path>/keystore``). Unsafe."""
    key_type = p_key_type(keyType)
    key = _key_from_suri(suri)
    if p_account(publicKey, "publicKey") != key.public:
        raise invalid_params("publicKey does not belong to the suri's key")
    _store_key(s.node, key_type, key, suri)
    return None


@rpc(safe=False)
async def author_rotateKeys(s: Session) -> str:
    """Generate a new authoring key in the keystore; returns its public key. Unsafe."""
    key = Keypair.from_seed(secrets.token_bytes(32))
    _store_key(s.node, "aura", key, hex0x(key.seed))
    return hex0x(key.public)


@rpc(safe=False)
async def author_hasKey(s: Session, publicKey: Any, keyType: Any) -> bool:  # noqa: N803
    """Whether the node holds the secret of this key (its authority key or the keystore). Unsafe."""
    public = p_account(publicKey, "publicKey")
    key_type = p_key_type(keyType)
    authority = s.node.config.authority
    if authority is not None and authority.public == public:
        return True
    return (_keystore(s.node) / (key_type.encode().hex() + public.hex())).exists()


# ---------------------------------------------------------------------------
# state_*, payment_*


@rpc()
async def state_getStorage(s: Session, key: Any, block: Any = None) -> str | None:
    raw_key = p_bytes(key, "key")
    value = s.node.store.state_at(p_block(s, block)).get(raw_key)
    return None if value is None else hex0x(value)


@rpc()
async def state_getReadProof(s: Session, keys: Any, block: Any = None) -> dict[str, Any]:
    if not isinstance(keys, list) or len(keys) > MAX_READ_PROOF_KEYS:
        raise invalid_params(f"keys must be an array of at most {MAX_READ_PROOF_KEYS} 0x-hex keys")
    raw_keys = [p_bytes(k, "keys") for k in keys]
    block_hash = p_block(s, block)
    proof = await trio.to_thread.run_sync(s.node.store.prove, raw_keys, block_hash)
    return {"at": hex0x(block_hash), "proof": [hex0x(n) for n in proof]}


@rpc()
async def state_getRuntimeVersion(s: Session, block: Any = None) -> dict[str, Any]:
    if block is not None:
        p_block(s, block)
    v = executive.RUNTIME_VERSION
    return {"specName": v.spec_name, "implName": v.impl_name, "specVersion": v.spec_version,
            "transactionVersion": v.transaction_version, "apis": []}


@rpc()
async def payment_queryInfo(s: Session, extrinsic: Any, block: Any = None) -> dict[str, Any]:
    raw = p_extrinsic(extrinsic)
    if block is not None:
        p_block(s, block)
    try:
        ext = decode_extrinsic(raw)
    except codec.DecodeError as e:
        raise invalid_params(f"extrinsic does not decode: {type(e).__name__}: {e}") from None
    weight = executive.call_weight(ext)
    return {"weight": weight, "class": "normal",
            "partialFee": str(executive.compute_fee(len(raw), weight))}


# ---------------------------------------------------------------------------
# opus_*: accounts, works, terms, licenses


@rpc()
async def opus_accountInfo(s: Session, address: Any) -> dict[str, Any]:
    who = p_account(address)
    info = system.account_info(s.node.store.best_state(), who)
    return {"address": encode_address(who), "nonce": info.nonce,
            "nextNonce": _next_nonce(s.node, who, info.nonce), "free": str(info.free)}


def _work(state: Any, work_id: int) -> dict[str, Any] | None:
    work = provenance.works.get(state, work_id)
    return None if work is None else to_json(work)


@rpc()
async def opus_getWork(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    return _work(s.node.store.best_state(), p_uint(id, "id"))


@rpc()
async def opus_getWorkByContentHash(s: Session, contentHash: Any) -> dict[str, Any] | None:  # noqa: N803
    state = s.node.store.best_state()
    work_id = provenance.work_by_content.get(state, p_hash(contentHash, "contentHash"))
    return None if work_id is None else _work(state, work_id)


@rpc(object_param=True)
async def opus_listWorks(s: Session, query: Any) -> dict[str, Any]:
    options = p_options(query, "query", ("owner", "start", "limit"))
    if "owner" not in options:
        raise invalid_params("query.owner is required")
    owner = p_account(options["owner"], "owner")
    start, limit = p_page(options)
    return _page_of(s, indexes.works_by_owner, owner, start, limit, _work)


def _terms(state: Any, terms_id: int) -> dict[str, Any] | None:
    found = licensing.terms.get(state, terms_id)
    return None if found is None else to_json(found)


@rpc()
async def opus_getTerms(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    return _terms(s.node.store.best_state(), p_uint(id, "id"))


@rpc(object_param=True)
async def opus_listTerms(s: Session, query: Any) -> dict[str, Any]:
    options = p_options(query, "query", ("work", "start", "limit"))
    if "work" not in options:
        raise invalid_params("query.work is required")
    work_id = p_uint(options["work"], "work")
    start, limit = p_page(options)
    return _page_of(s, indexes.terms_by_work, work_id.to_bytes(8, "big"), start, limit,
                    _terms)


@rpc()
async def opus_getLicense(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    lic = licensing.licenses.get(s.node.store.best_state(), p_uint(id, "id"))
    return None if lic is None else license_json(lic, s.node.best.number + 1)


@rpc(object_param=True)
async def opus_listLicenses(s: Session, query: Any) -> dict[str, Any]:
    options = p_options(query, "query", ("licensee", "work", "start", "limit"))
    if ("licensee" in options) == ("work" in options):
        raise invalid_params("give exactly one of query.licensee and query.work")
    if "licensee" in options:
        index, owner_key = indexes.licenses_by_holder, p_account(options["licensee"],
                                                                 "licensee")
    else:
        index, owner_key = indexes.licenses_by_work, p_uint(options["work"],
                                                            "work").to_bytes(8, "big")
    start, limit = p_page(options)
    next_block = s.node.best.number + 1

    def load(state: Any, license_id: int) -> dict[str, Any] | None:
        lic = licensing.licenses.get(state, license_id)
        return None if lic is None else license_json(lic, next_block)

    return _page_of(s, index, owner_key, start, limit, load)


# ---------------------------------------------------------------------------
# opus_*: earnings and usage


def _credits(store: Any, who: bytes, start: int) -> Iterator[tuple[int, indexes.Credit]]:
    prefix = indexes.credits.prefix + who
    start_after = prefix + (start - 1).to_bytes(8, "big") if start > 0 else None
    for key, value in store.iter_index_prefix(prefix, start_after):
        seq = int.from_bytes(key[len(prefix):], "big")
        yield seq, codec.from_wire(codec.unpack(value), indexes.Credit)


def _credit_json(seq: int, credit: indexes.Credit) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": seq}
    out.update(to_json(credit))
    return out


def _credit_count(store: Any, who: bytes) -> int:
    raw = store.index_get(indexes.credit_count.key(who))
    return 0 if raw is None else int(codec.unpack(raw))


def _index_total(store: Any, key: bytes) -> int:
    """An earnings total of the node-side index (absent: 0)."""
    raw = store.index_get(key)
    return 0 if raw is None else int(codec.from_wire(codec.unpack(raw), codec.U128))


@rpc()
async def opus_getEarnings(s: Session, address: Any, options: Any = None) -> dict[str, Any]:
    who = p_account(address)
    opts = p_options(options, "options", ("work", "start", "limit"))
    start, limit = p_page(opts)
    work = p_uint(opts["work"], "work") if "work" in opts else None
    store = s.node.store
    result: dict[str, Any] = {
        "account": encode_address(who),
        "total": str(_index_total(store, indexes.earned.key(who))),
        "creditCount": _credit_count(store, who),
    }
    # Per-work totals (on chain, by the work paid into): the works are found in the history.
    works: dict[int, None] = {}
    scanned = 0
    for _, credit in _credits(store, who, 0):
        works[credit.source_work] = None
        scanned += 1
        if scanned >= EARNINGS_SCAN_LIMIT:
            break
    result["works"] = [
        {"workId": w, "amount": str(_index_total(store, indexes.work_paid_out.key((w, who))))}
        for w in sorted(works)
    ]
    result["worksComplete"] = scanned < EARNINGS_SCAN_LIMIT
    if work is not None:
        result["work"] = {
            "workId": work,
            "revenue": str(_index_total(store, indexes.work_revenue.key(work))),
            "paidToAccount": str(_index_total(store, indexes.work_paid_out.key((work, who)))),
        }
    history: list[dict[str, Any]] = []
    next_seq = None
    for seq, credit in _credits(store, who, start):
        if work is not None and work not in (credit.source_work, credit.via_work):
            continue
        if len(history) == limit:
            next_seq = seq
            break
        history.append(_credit_json(seq, credit))
    result["credits"] = history
    result["next"] = next_seq
    return result


@rpc(object_param=True)
async def opus_listUsage(s: Session, query: Any) -> dict[str, Any]:
    options = p_options(query, "query", ("work", "license", "start", "limit"))
    if ("work" in options) == ("license" in options):
        raise invalid_params("give exactly one of query.work and query.license")
    if "work" in options:
        index, owner = indexes.usage_by_work, p_uint(options["work"], "work")
    else:
        index, owner = indexes.usage_by_license, p_uint(options["license"], "license")
    start, limit = p_page(options)

    def load(state: Any, usage_id: int) -> dict[str, Any] | None:
        record = usage.usage.get(state, usage_id)
        return None if record is None else to_json(record)

    return _page_of(s, index, owner.to_bytes(8, "big"), start, limit, load)


# ---------------------------------------------------------------------------
# opus_*: events, transactions, proofs, equivocations


@rpc()
async def opus_getEvents(s: Session, hash: Any = None) -> list[dict[str, Any]] | None:  # noqa: A002
    store = s.node.store
    events = store.events(store.best_hash if hash is None else p_hash(hash))
    return None if events is None else [event_to_json(r) for r in events]


@rpc()
async def opus_getTransaction(s: Session, hash: Any) -> dict[str, Any] | None:  # noqa: A002
    """Where a transaction is: in the pool (ready/future) or in a best-chain block, with its
    outcome and events; null if the node knows nothing of it (never seen, dropped, invalid)."""
    tx_hash = p_hash(hash)
    node = s.node
    store = node.store
    location = store.tx_location(tx_hash)
    if location is None:
        if node.pool.contains(tx_hash):
            status = "ready" if node.pool.is_ready(tx_hash) else "future"
            return {"hash": hex0x(tx_hash), "status": status}
        return None
    header = store.header(location.block_hash)
    assert header is not None
    records = [r for r in store.events(location.block_hash) or ()
               if r.extrinsic_index == location.index]
    outcome = next((r.event for r in records
                    if isinstance(r.event, system.ExtrinsicSuccess | system.ExtrinsicFailed)),
                   None)
    failed = isinstance(outcome, system.ExtrinsicFailed)
    return {
        "hash": hex0x(tx_hash),
        "status": "finalized" if header.number <= node.finalized.number else "inBlock",
        "blockHash": hex0x(location.block_hash),
        "blockNumber": header.number,
        "index": location.index,
        "success": not failed,
        "error": outcome.error if isinstance(outcome, system.ExtrinsicFailed) else None,
        "detail": outcome.detail if isinstance(outcome, system.ExtrinsicFailed) else None,
        "fee": str(outcome.fee) if outcome is not None else None,
        "events": [event_to_json(r) for r in records],
    }


@rpc()
async def opus_getProvenanceProof(s: Session, id: Any, block: Any = None  # noqa: A002
                                  ) -> dict[str, Any] | None:
    """A work's record with a read proof of its state entries against a block's state root."""
    work_id = p_uint(id, "id")
    node = s.node
    store = node.store
    block_hash = p_block(s, block)
    header = store.header(block_hash)
    assert header is not None
    work = provenance.works.get(store.state_at(block_hash), work_id)
    if work is None:
        return None
    keys = [provenance.works.key(work_id), provenance.work_by_content.key(work.content_hash)]
    proof = await trio.to_thread.run_sync(store.prove, keys, block_hash)
    return {
        "workId": work_id,
        "work": to_json(work),
        "blockHash": hex0x(block_hash),
        "header": header_to_json(header),
        "stateRoot": hex0x(header.state_root),
        "finalized": header.number <= node.finalized.number and store.is_canonical(block_hash),
        "genesisHash": hex0x(node.genesis.hash),
        "keys": [hex0x(k) for k in keys],
        "proof": [hex0x(n) for n in proof],
    }


@rpc()
async def opus_getEquivocations(s: Session) -> list[dict[str, Any]]:
    out = []
    for record in list(s.node.equivocations):
        author = record.get("author", "")
        try:
            author = encode_address(bytes.fromhex(author))
        except ValueError:
            pass
        out.append({"slot": record.get("slot"), "author": author,
                    "blocks": ["0x" + h for h in record.get("blocks", [])]})
    return out
