"""JSON-RPC 2.0 itself, independent of the transport and of the methods.

:func:`handle_payload` is everything the server calls: raw request bytes in, the answer as
UTF-8 JSON bytes (or None for notifications) out. It never raises for bad input: strict
JSON (no lone surrogates, no NaN or Infinity) and strict request objects, and it enforces
the protocol's limits (batch length, answer size, the connection's rate limit). See
``docs/rpc.md`` for every method's params, result and an example, and its "Limits" section.

A :class:`MethodTable` maps method names to functions; each namespace module of
:mod:`node.rpc.methods` fills one with the ``@METHODS.rpc()`` decorator, and
:class:`RpcService` serves their union. A method takes the :class:`Session` (the node,
the connection's subscriptions) and the call's params, positionally
(``"params": [...]``) or by name (``"params": {...}``); methods registered with
``object_param`` take one options object, which may also be given as the whole
``params`` object. Unsafe methods answer -32601 "Method not allowed" unless the node runs
with ``--rpc-methods unsafe``. The ``p_*`` functions parse params for every namespace:
a bad one is -32602 naming the param.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from client.api import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TOO_MANY_SUBSCRIPTIONS,
    RpcError,
)
from node.rpc import (
    batch_response_too_big,
    batch_too_long,
    invalid_params,
    rate_limited,
    response_too_big,
)
from runtime.codec import from_hex0x
from runtime.crypto import InvalidAddress, decode_address

if TYPE_CHECKING:
    from node.core import NodeCore

log = logging.getLogger("opus.rpc")

DEFAULT_PAGE = 100  # a list's page when the call gives no limit (or 0)
MAX_PAGE = 1000  # the largest page, and the most block numbers chain_getBlockHash takes
U64_MAX = (1 << 64) - 1
SUBSCRIPTION_ID_ALPHABET = string.ascii_letters + string.digits


# ---------------------------------------------------------------------------
# Registration

MethodFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=MethodFn)


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its function, whether it is safe, how its params bind."""

    fn: MethodFn
    safe: bool
    object_param: bool
    signature: inspect.Signature

    def usage(self) -> str:
        """Its param names, ``?`` marking optional ones: ``[key, block?]``."""
        names = []
        for p in list(self.signature.parameters.values())[1:]:  # after the session
            names.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}?")
        return "[" + ", ".join(names) + "]"


class DuplicateMethod(ValueError):
    """Two methods registered under one name."""


class MethodTable(Mapping[str, MethodSpec]):
    """Methods by name. A namespace module registers its functions with :meth:`rpc`::

        METHODS = MethodTable()

        @METHODS.rpc()
        async def chain_getHeader(s: Session, hash: Any = None) -> dict[str, Any] | None:
            ...
    """

    def __init__(self, *tables: MethodTable) -> None:
        """A table holding the methods of ``tables`` (DuplicateMethod if two share a name)."""
        self._specs: dict[str, MethodSpec] = {}
        for table in tables:
            for name, spec in table.items():
                self._add(name, spec)

    def rpc(self, name: str | None = None, *, safe: bool = True,
            object_param: bool = False) -> Callable[[F], F]:
        """Register the decorated function as method ``name`` (default: the function's name).

        ``safe`` False: only served with ``--rpc-methods unsafe``. ``object_param``: the
        method's one param is an options object, which may be given as the whole params.
        """
        def register(fn: F) -> F:
            self._add(name or fn.__name__, MethodSpec(fn, safe, object_param,
                                                      inspect.signature(fn)))
            return fn

        return register

    def alias(self, name: str, target: str) -> None:
        """Serve the registered method ``target`` under ``name`` too (British spellings)."""
        self._add(name, self._specs[target])

    def _add(self, name: str, spec: MethodSpec) -> None:
        if name in self._specs:
            raise DuplicateMethod(f"RPC method {name} is registered twice")
        self._specs[name] = spec

    def __getitem__(self, name: str) -> MethodSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


# ---------------------------------------------------------------------------
# Service and sessions


class RpcService:
    """What the RPC serves: the node and its methods, plus what the server remembers."""

    def __init__(self, node: NodeCore, methods: MethodTable) -> None:
        self.node = node
        self.methods = methods
        self.starting_block = node.best.number

    @property
    def unsafe_allowed(self) -> bool:
        return self.node.config.rpc_methods == "unsafe"

    def available(self) -> list[str]:
        """The names of the methods this node lets clients call, sorted."""
        return sorted(name for name, spec in self.methods.items()
                      if spec.safe or self.unsafe_allowed)


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
    spec = session.service.methods.get(method)
    if spec is None:
        raise RpcError(METHOD_NOT_FOUND, "Method not found", f"no method {method!r}")
    if not spec.safe and not session.service.unsafe_allowed:
        raise RpcError(METHOD_NOT_FOUND, "Method not allowed",
                       f"{method} is unsafe; served only with --rpc-methods unsafe (on "
                       "127.0.0.1) or --unsafe-rpc-external")
    names = list(spec.signature.parameters)[1:]
    if spec.object_param and isinstance(params, dict) and set(params) != {names[0]}:
        params = [params]
    try:
        if isinstance(params, list):
            bound = spec.signature.bind(session, *params)
        else:
            bound = spec.signature.bind(session, **params)
    except TypeError:
        raise invalid_params(f"{method} takes {spec.usage()}") from None
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
    """``0x``-hex bytes (of ``length`` bytes if given)."""
    try:
        return from_hex0x(value, length)
    except ValueError as e:
        raise invalid_params(f"{name}: {e}") from None


def p_hash(value: Any, name: str = "hash") -> bytes:
    """A 32-byte hash in ``0x``-hex."""
    return p_bytes(value, name, 32)


def p_account(value: Any, name: str = "address") -> bytes:
    """An account id: an ``opus1…`` address or its 32 bytes in ``0x``-hex."""
    if isinstance(value, str) and value.startswith("0x"):
        return p_bytes(value, name, 32)
    try:
        return decode_address(value)
    except InvalidAddress as e:
        raise invalid_params(f"{name}: {e}") from None


def p_uint(value: Any, name: str, maximum: int = U64_MAX) -> int:
    """An integer from 0 to ``maximum``: a JSON number, a decimal string or ``0x``-hex."""
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
    """An options object holding only ``allowed`` fields; None is ``{}``."""
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
    """A list's ``start`` (null is 0) and ``limit`` (0 is the default page) in ``options``."""
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
    """An extrinsic's bytes in ``0x``-hex; ``0x`` alone is refused."""
    raw = p_bytes(value, name)
    if not raw:
        raise invalid_params(f"{name} is empty")
    return raw


__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "U64_MAX",
    "DuplicateMethod",
    "MethodSpec",
    "MethodTable",
    "Notify",
    "RateLimiter",
    "RpcService",
    "Session",
    "call_method",
    "encode_json",
    "handle_payload",
    "handle_request",
    "p_account",
    "p_block",
    "p_bytes",
    "p_extrinsic",
    "p_hash",
    "p_options",
    "p_page",
    "p_uint",
]
