"""The module framework: storage items, calls, events and errors (FRAME's shape).

Each runtime module declares, in one file and in this order: its config
constants, its storage items (:class:`StorageValue`, :class:`StorageMap`), its
events (:class:`Event` subclasses), its errors (:class:`DispatchError`
subclasses) and its calls (functions registered with :meth:`Module.call`, each
documented with who may call it, its weight and its errors).

Storage keys are ``b"<module>:<item>"`` for a value and
``b"<module>:<item>:" + map key`` for a map entry, where the map key is the
concatenation of its parts: an integer as 8 big-endian bytes, bytes as they
are. Values are canonical msgpack of the item's declared type.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from runtime import codec
from runtime.codec import U32, Bytes32, CustomCodec, Struct, frozen_dataclass
from runtime.state import Overlay, StateReader

V = TypeVar("V")
A = TypeVar("A", bound=Struct)

# ---------------------------------------------------------------------------
# Storage


def map_key_bytes(key: Any) -> bytes:
    """The byte form of a map key: ints as u64 big-endian, bytes as is, tuples concatenated."""
    if type(key) is int:
        return key.to_bytes(8, "big")
    if type(key) is bytes:
        return key
    if type(key) is tuple:
        return b"".join(map_key_bytes(part) for part in key)
    raise TypeError(f"unsupported storage map key {key!r}")


class _Item:
    """A storage item's value type, with its codec functions resolved once."""

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self._to_wire, self._from_wire = codec.codec_for(tp)

    def _read(self, state: StateReader, key: bytes) -> Any:
        raw = state.get(key)
        if raw is None:
            return None
        # Stored values were written canonically by the runtime itself; skip the
        # limits and re-encode check that codec.decode applies to untrusted input.
        return self._from_wire(codec.unpack_trusted(raw))

    def _encode(self, value: Any) -> bytes:
        return codec.pack(self._to_wire(value))


class StorageValue(_Item, Generic[V]):
    """A single typed value in state, with a default when absent."""

    def __init__(self, module: str, name: str, tp: Any, default: V) -> None:
        super().__init__(tp)
        self.key = f"{module}:{name}".encode()
        self.default = default

    def get(self, state: StateReader) -> V:
        value = self._read(state, self.key)
        return self.default if value is None else value

    def put(self, state: Overlay, value: V) -> None:
        state.set(self.key, self._encode(value))

    def kill(self, state: Overlay) -> None:
        """Remove the value from state (reads give the default again)."""
        state.delete(self.key)


class StorageMap(_Item, Generic[V]):
    """A typed map in state; keys are ints, bytes or tuples of them.

    ``decoded_cache`` (for records read again and again: accounts, works): keep
    the values of up to that many recently read or written encodings. Values are
    immutable and decoding is a pure function of the bytes, so the cache is keyed
    by the bytes themselves and can never be stale.
    """

    def __init__(self, module: str, name: str, value_tp: Any, decoded_cache: int = 0) -> None:
        super().__init__(value_tp)
        self.prefix = f"{module}:{name}:".encode()
        self._decoded: dict[bytes, Any] | None = {} if decoded_cache > 0 else None
        self._decoded_max = decoded_cache

    def key(self, key: Any) -> bytes:
        kind = type(key)
        if kind is bytes:
            plain: bytes = self.prefix + key
            return plain
        if kind is int:
            numbered: bytes = self.prefix + key.to_bytes(8, "big")
            return numbered
        if kind is tuple and len(key) == 2:  # the common compound key, without a generator
            first, second = key
            if type(first) is bytes and type(second) is int:
                owned: bytes = self.prefix + first + second.to_bytes(8, "big")
                return owned
            if type(first) is int and type(second) is bytes:
                by_id: bytes = self.prefix + first.to_bytes(8, "big") + second
                return by_id
        return self.prefix + map_key_bytes(key)

    def get(self, state: StateReader, key: Any) -> V | None:
        raw = state.get(self.key(key))
        if raw is None:
            return None
        decoded = self._decoded
        if decoded is None:
            return self._from_wire(codec.unpack_trusted(raw))  # type: ignore[no-any-return]
        value = decoded.get(raw)
        if value is None:
            value = self._from_wire(codec.unpack_trusted(raw))
            if len(decoded) >= self._decoded_max:
                decoded.clear()
            decoded[raw] = value
        return value  # type: ignore[no-any-return]

    def contains(self, state: StateReader, key: Any) -> bool:
        return state.get(self.key(key)) is not None

    def put(self, state: Overlay, key: Any, value: V) -> None:
        raw = self._encode(value)
        decoded = self._decoded
        if decoded is not None:  # the next read of this value needs no decoding
            if len(decoded) >= self._decoded_max:
                decoded.clear()
            decoded[raw] = value
        state.set(self.key(key), raw)

    def remove(self, state: Overlay, key: Any) -> None:
        state.delete(self.key(key))


# ---------------------------------------------------------------------------
# Errors


class DispatchError(Exception):
    """A call failed: its changes are reverted, its fee is kept, its nonce is used.

    Each module subclasses this once per failure; the error's name on chain
    (in events and RPC) is ``<module>.<ClassName>``.
    """

    module: ClassVar[str] = "system"

    @classmethod
    def error_name(cls) -> str:
        return f"{cls.module}.{cls.__name__}"


class BadOrigin(DispatchError):
    """The signer may not make this call."""


# ---------------------------------------------------------------------------
# Events

EVENT_TYPES: dict[tuple[str, str], type[Event]] = {}
# Per event class: (module, name, fields to_wire), resolved on first use.
_EVENT_HEADS: dict[type, tuple[str, str, Any]] = {}


class Event(Struct):
    """Base of module events: frozen dataclasses registered by (module, name)."""

    module: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.module:
            EVENT_TYPES[(cls.module, cls.__name__)] = cls


class AnyEvent(CustomCodec):
    """Wire form of an event of any module: ``[module, name, [fields…]]``."""

    @classmethod
    def to_wire(cls, value: Any) -> Any:
        event_type = type(value)
        head = _EVENT_HEADS.get(event_type)
        if head is None:
            if not isinstance(value, Event) or not value.module:
                raise codec.EncodeError(f"not an event: {value!r}")
            head = _EVENT_HEADS[event_type] = (value.module, event_type.__name__,
                                               codec.codec_for(event_type)[0])
        return [head[0], head[1], head[2](value)]

    @classmethod
    def from_wire(cls, wire: Any) -> Any:
        if type(wire) is not list or len(wire) != 3:
            raise codec.WrongType("an event is [module, name, fields]")
        module, name, fields = wire
        event_type = EVENT_TYPES.get((module, name)) if type(module) is type(name) is str else None
        if event_type is None:
            raise codec.OutOfRange(f"unknown event {module!r}.{name!r}")
        return codec.from_wire(fields, event_type)


@frozen_dataclass
class EventRecord(Struct):
    """An event with the index of the extrinsic that emitted it (None: block initialization)."""

    extrinsic_index: U32 | None
    event: Annotated[Event, AnyEvent]


# Per event class: generated code giving its wire form from trusted field values.
_TRUSTED_WIRE: dict[type, Callable[[Any], Any]] = {}


def _field_form(tp: Any) -> str:
    """How an event field goes on the wire: "raw" (msgpack packs the value itself
    exactly as its codec's wire form), "u128" (an int, a 16-byte bin from 2**64) or
    "codec" (through the field's codec)."""
    if typing.get_origin(tp) is Annotated:
        base, spec = typing.get_args(tp)[0], typing.get_args(tp)[1]
        if isinstance(spec, codec.UInt):
            return "raw" if spec.bits <= 64 else "u128"
        if isinstance(spec, (codec.Fixed, codec.Blob, codec.Text)) and base in (bytes, str):
            return "raw"
        return "codec"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return "raw" if len(inner) == 1 and _field_form(inner[0]) == "raw" else "codec"
    if tp is bool or (isinstance(tp, type) and issubclass(tp, enum.StrEnum)):
        return "raw"  # a StrEnum packs as its str value
    return "codec"


def _trusted_event_wire(event_type: type[Event]) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(event_type, include_extras=True)
    env: dict[str, Any] = {"M": event_type.module, "N": event_type.__name__, "L": 1 << 64}
    items = []
    for i, f in enumerate(dataclasses.fields(event_type)):  # type: ignore[arg-type]
        form = _field_form(hints[f.name])
        if form == "raw":
            items.append(f"d[{f.name!r}]")
        elif form == "u128":
            items.append(f"(x if (x := d[{f.name!r}]) < L else x.to_bytes(16, 'big'))")
        else:
            env[f"C{i}"] = codec.codec_for(hints[f.name])[0]
            items.append(f"C{i}(d[{f.name!r}])")
    source = f"def wire(e):\n    d = e.__dict__\n    f = [{', '.join(items)}]\n"
    least = len(items) - event_type.OPTIONAL_TAIL
    if least < len(items):  # optional trailing fields are left off while None (codec doc)
        source += f"    while len(f) > {least} and f[-1] is None:\n        f.pop()\n"
    source += "    return [M, N, f]"
    exec(source, env)  # noqa: S102 - generated from type hints only
    return env["wire"]  # type: ignore[no-any-return]


def _encode_record(record: EventRecord) -> bytes:
    """One EventRecord's canonical encoding, from trusted field values (no re-checks)."""
    event = record.event
    wire = _TRUSTED_WIRE.get(type(event))
    if wire is None:
        if not isinstance(event, Event) or not event.module:
            raise codec.EncodeError(f"not an event: {event!r}")
        wire = _TRUSTED_WIRE[type(event)] = _trusted_event_wire(type(event))
    return codec.pack([record.extrinsic_index, wire(event)])


_list_append = list.append


class EventLog(list[EventRecord]):
    """The events of a block so far, in order, with their canonical encoding.

    Each record is encoded as it is appended, while its values are still in the
    CPU cache: a node stores the events of every block it imports, and encoding
    the thousands of records of a large block at its end costs about four times
    as much (they are cold by then), as does even collecting per-record
    encodings. The encoding grows in one buffer, so :meth:`encoded` is one copy.
    A failed call's events are dropped with :meth:`truncate`, never ``del``.
    """

    __slots__ = ("_encoded",)

    def __init__(self, records: Iterable[EventRecord] = ()) -> None:
        super().__init__()
        self._encoded = bytearray()
        for record in records:
            self.append(record)

    def append(self, record: EventRecord) -> None:
        _list_append(self, record)  # (not super(): this runs for every event)
        self._encoded += _encode_record(record)

    def mark(self) -> tuple[int, int]:
        """The log's current end, for :meth:`truncate`."""
        return len(self), len(self._encoded)

    def truncate(self, mark: tuple[int, int]) -> None:
        """Drop every record appended since ``mark``."""
        count, size = mark
        del self[count:]
        del self._encoded[size:]

    def encoded(self) -> bytes:
        """The records' canonical encoding as a tuple (``codec.encode`` of
        ``tuple[EventRecord, ...]``) without re-checking every field: the runtime
        built the events from checked values. A msgpack array is its header
        followed by its items' encodings."""
        return codec.pack_array_header(len(self)) + self._encoded


def event_to_json(event: Event) -> dict[str, Any]:
    """An event as JSON for RPC and the CLI: bytes as 0x-hex, enums as their names."""
    out: dict[str, Any] = {"module": event.module, "name": type(event).__name__}
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        out[f.name] = json_value(getattr(event, f.name))
    return out


def json_value(value: Any) -> Any:
    """Any codec value as plain JSON (the form RPC answers use)."""
    if isinstance(value, bytes):
        return codec.hex0x(value)
    if isinstance(value, Struct) and dataclasses.is_dataclass(value):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


# ---------------------------------------------------------------------------
# Execution environment


@frozen_dataclass
class BlockInfo:
    """What a call may know about the block it runs in."""

    number: int
    timestamp: int  # milliseconds since the Unix epoch, from the block header
    author: bytes  # the block author's account id
    parent_hash: bytes


@dataclass
class Env:
    """Passed to every call: the state overlay to read and write, the block, the event sink."""

    state: Overlay
    block: BlockInfo
    events: EventLog
    extrinsic_index: int | None = None
    author_fees: int = 0  # fees and tips of the block so far, paid out at its end

    def emit(self, event: Event) -> None:
        self.events.append(EventRecord(self.extrinsic_index, event))


# ---------------------------------------------------------------------------
# Calls

Weight = int  # reference nanoseconds of execution on the benchmark machine


@frozen_dataclass
class CallSpec:
    """A dispatchable call: its module, name, argument struct, handler and weight."""

    module: str
    name: str
    args: type[Struct]
    handler: Callable[[Env, bytes, Any], Weight | None]
    weight: Callable[[Any], Weight]
    doc: str = ""


CALLS: dict[tuple[str, str], CallSpec] = {}
Handler = Callable[[Env, bytes, A], Weight | None]
CALLS_BY_ARGS: dict[type[Struct], CallSpec] = {}


@dataclass
class Module:
    """A runtime module's call table; calls register themselves with :meth:`call`."""

    name: str
    calls: dict[str, CallSpec] = field(default_factory=dict)

    def call(
        self, args: type[A], weight: Callable[[A], Weight]
    ) -> Callable[[Handler[A]], Handler[A]]:
        """Register a call. ``weight`` gives its worst-case weight from its arguments
        (charged before dispatch); a handler may return the weight it actually used,
        and the difference is refunded (Substrate's post-dispatch correction)."""

        def register(fn: Handler[A]) -> Handler[A]:
            spec = CallSpec(self.name, fn.__name__, args, fn, weight, fn.__doc__ or "")
            self.calls[fn.__name__] = spec
            CALLS[(self.name, fn.__name__)] = spec
            if args in CALLS_BY_ARGS:
                raise TypeError(f"{args.__name__} is already the argument struct of another call")
            CALLS_BY_ARGS[args] = spec
            return fn

        return register


@frozen_dataclass
class Call(CustomCodec):
    """A call to dispatch: wire form ``[module, function, [args…]]``."""

    module: str
    function: str
    args: Struct

    @property
    def spec(self) -> CallSpec:
        return CALLS[(self.module, self.function)]

    @classmethod
    def to_wire(cls, value: Any) -> Any:
        if type(value) is not Call:
            raise codec.EncodeError(f"not a Call: {value!r}")
        spec = CALLS.get((value.module, value.function))
        if spec is None or type(value.args) is not spec.args:
            raise codec.EncodeError(f"unknown call or wrong args: {value.module}.{value.function}")
        return [value.module, value.function, codec.codec_for(spec.args)[0](value.args)]

    @classmethod
    def from_wire(cls, wire: Any) -> Any:
        if type(wire) is not list or len(wire) != 3:
            raise codec.WrongType("a call is [module, function, args]")
        module, function, args = wire
        spec = CALLS.get((module, function)) if type(module) is type(function) is str else None
        if spec is None:
            raise codec.OutOfRange(f"unknown call {module!r}.{function!r}")
        return Call(module, function, codec.codec_for(spec.args)[1](args))


def make_call(args: Struct) -> Call:
    """The Call for an argument struct (each struct belongs to exactly one call)."""
    spec = CALLS_BY_ARGS.get(type(args))
    if spec is None:
        raise KeyError(f"no call takes {type(args).__name__}")
    return Call(spec.module, spec.name, args)


# Common field types, shared by all modules.
AccountId = Bytes32
Hash = Bytes32
