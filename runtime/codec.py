"""Canonical msgpack encoding of every runtime value.

Every value on chain has exactly one byte string. A struct (a frozen dataclass
deriving from :class:`Struct`) is a msgpack array of its fields in declaration
order; field types are declared with the annotations below, and decoding checks
each of them strictly:

==================  ==========================================================
annotation          msgpack form
==================  ==========================================================
``U8`` … ``U128``   non-negative integer below ``2**bits`` (``U128`` values
                    above ``2**64 - 1`` are a 16-byte big-endian bin, because
                    msgpack integers stop at 64 bits)
``Bytes32`` etc.    bin of exactly that length (``Fixed(n)``)
``Blob(n)``         bin of at most ``n`` bytes
``Text(n)``         UTF-8 str of at most ``n`` bytes
``bool``            true / false
``Tuple(n)``        array of at most ``n`` items (``tuple[T, ...]``)
``T | None``        nil or ``T``
``StrEnum``         str, one of the enum's values
``Struct``          array of the fields, in order
==================  ==========================================================

A struct may end in optional fields added after it was first declared
(``OPTIONAL_TAIL``, each ``T | None``): the array leaves off the trailing ones
that are None, so a record written before they existed decodes (with None) and
encodes to the same bytes; an array that ends in such a field written as nil is
``NonCanonical``.

Decoding rejects, each with its own named error: input over the size limit,
bytes that are not msgpack, trailing bytes, a wrong type, a wrong field count,
an integer out of range, an over-long string/bin/array, an unknown enum value,
and any encoding that is not the canonical one (e.g. a small integer written in
a wider form), so ``encode(decode(b)) == b`` for every accepted ``b``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar, get_args, get_origin, get_type_hints

import msgpack

# Hard bounds on any single decode; per-type limits below are usually tighter.
MAX_DECODE_SIZE = 4 * 1024 * 1024
MAX_CONTAINER_LEN = 65_536
MAX_NESTING = 1024  # msgpack-python's C parser refuses deeper nesting


# ---------------------------------------------------------------------------
# Errors


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected type."""


class Oversize(DecodeError):
    """The input is larger than the limit for its type."""


class InvalidMsgpack(DecodeError):
    """The input does not parse as msgpack of the chain's subset (no maps, no extension types).

    Also: a str that is not UTF-8, more than 1,024 nested arrays, an array of more than
    MAX_CONTAINER_LEN items, or a str/bin longer than the input's size limit. (Named apart
    from the RPC's ``Malformed``, which means "any decode error" and is followed by one of
    these names.)
    """


class TrailingBytes(DecodeError):
    """Valid msgpack followed by extra bytes."""


class WrongType(DecodeError):
    """A value has the wrong msgpack type for its field."""


class WrongFieldCount(DecodeError):
    """A struct array has unknown (extra) or missing fields."""


class OutOfRange(DecodeError):
    """An integer outside its declared range, or an unknown enum value."""


class TooLong(DecodeError):
    """A string, bin or array longer than its declared maximum."""


class NonCanonical(DecodeError):
    """Decodes, but is not the one canonical byte string for the value."""


class EncodeError(ValueError):
    """A value that cannot be encoded under its declared type (a bug in the caller)."""


# ---------------------------------------------------------------------------
# Records

_T = TypeVar("_T")


@typing.dataclass_transform(
    frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field)
)
def frozen_dataclass(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True)`` with a cheaper ``__init__``: the runtime declares
    every frozen dataclass (structs, events, calls, results) with it.

    A frozen dataclass's ``__init__`` stores each field with ``object.__setattr__``
    (its own ``__setattr__`` refuses), some 60 ns a field on CPython 3.11, and
    importing a block builds several such records per extrinsic. The ``__init__``
    made here takes the same parameters and gives the instance all its fields as
    one new ``__dict__``, as the decoder does: about 15 % cheaper for two fields,
    25 % for three, 40 % for five, 60 % for twelve. Everything else is the
    dataclass's own (fields, defaults, eq, hash, repr, frozenness, ``replace``).
    A class with its own ``__init__``, or one this does not cover (``init=False``
    fields, ``InitVar``, ``__slots__``), keeps the dataclass's ``__init__``.
    """
    own_init = "__init__" in cls.__dict__
    cls = dataclasses.dataclass(frozen=True)(cls)
    if not own_init:
        _replace_init(cls)
    return cls


class _Factory:
    """The default of a ``default_factory`` parameter (shown as dataclasses show it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()
# The names the generated __init__ itself uses: no field may have one of them.
_INIT_NAMES = frozenset({"self", "_set_dict", "_FACTORY", "_factories"})


def _replace_init(cls: type) -> None:
    generated = cls.__dict__["__init__"]
    fields = dataclasses.fields(cls)
    # The instance-dict descriptor, from the class that gave the instances a dict;
    # with __slots__ anywhere, fields may live in slots instead.
    dict_slot = next((k.__dict__["__dict__"] for k in cls.__mro__ if "__dict__" in k.__dict__),
                     None)
    if (dict_slot is None or any("__slots__" in k.__dict__ for k in cls.__mro__)
            or not all(f.init for f in fields) or _INIT_NAMES & {f.name for f in fields}):
        return
    defaults: dict[str, Any] = {}  # evaluated once, when the def runs (as dataclasses do)
    factories: dict[str, Callable[[], Any]] = {}
    positional: list[str] = ["self"]
    keyword: list[str] = []
    body: list[str] = []
    for f in fields:
        param = f.name
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
            param += f"=_defaults[{f.name!r}]"
        elif f.default_factory is not dataclasses.MISSING:
            factories[f.name] = f.default_factory
            param += "=_FACTORY"
            body.append(f"    if {f.name} is _FACTORY:")
            body.append(f"        {f.name} = _factories[{f.name!r}]()")
        (keyword if f.kw_only else positional).append(param)
    params = positional + (["*", *keyword] if keyword else [])
    # One new dict through the descriptor. (Storing the fields one by one into
    # self.__dict__ is cheaper still, but leaves a split dict that makes every
    # later attribute read of the instance about twice as slow on CPython 3.11.)
    body.append("    _set_dict(self, {" + ", ".join(f"{f.name!r}: {f.name}" for f in fields) + "})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    env: dict[str, Any] = {"__name__": cls.__module__, "_set_dict": dict_slot.__set__,
                           "_FACTORY": _FACTORY, "_defaults": defaults, "_factories": factories}
    exec(f"def __init__({', '.join(params)}):\n" + "\n".join(body), env)  # noqa: S102
    init = env["__init__"]
    init.__qualname__ = generated.__qualname__
    init.__annotations__ = generated.__annotations__
    # Only if both take exactly the same parameters (an InitVar, or anything a later
    # dataclasses adds, shows here): otherwise the dataclass's __init__ stays.
    if str(inspect.signature(init)) == str(inspect.signature(generated)):
        type.__setattr__(cls, "__init__", init)


# ---------------------------------------------------------------------------
# Type annotations


@frozen_dataclass
class UInt:
    bits: int


@frozen_dataclass
class Fixed:
    length: int


@frozen_dataclass
class Blob:
    max_length: int


@frozen_dataclass
class Text:
    max_length: int


@frozen_dataclass
class Tuple:
    max_items: int


U8 = Annotated[int, UInt(8)]
U16 = Annotated[int, UInt(16)]
U32 = Annotated[int, UInt(32)]
U64 = Annotated[int, UInt(64)]
U128 = Annotated[int, UInt(128)]
Bytes32 = Annotated[bytes, Fixed(32)]
Bytes64 = Annotated[bytes, Fixed(64)]


class Struct:
    """Base of every encodable record: subclasses are frozen dataclasses
    (declared with :func:`frozen_dataclass`).

    ``MAX_SIZE`` bounds the encoded size accepted by :func:`decode`.
    """

    MAX_SIZE: ClassVar[int] = MAX_DECODE_SIZE
    # How many of the last fields are optional extensions (each ``T | None``): left off
    # the array while they are None (and every field after them is), see the module doc.
    OPTIONAL_TAIL: ClassVar[int] = 0

    def encode(self) -> bytes:
        return encode(self)


S = TypeVar("S", bound=Struct)

# A codec is a pair (to_wire, from_wire) converting between Python values and
# the primitives msgpack packs.
ToWire = Callable[[Any], Any]
FromWire = Callable[[Any], Any]


class CustomCodec:
    """Types with their own wire form implement these two classmethods."""

    @classmethod
    def to_wire(cls, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def from_wire(cls, wire: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


_codecs: dict[Any, tuple[ToWire, FromWire]] = {}


def _uint_codec(bits: int) -> tuple[ToWire, FromWire]:
    limit = 1 << bits

    def to_wire(v: Any) -> Any:
        if type(v) is not int or not 0 <= v < limit:
            raise EncodeError(f"not a u{bits}: {v!r}")
        if v >= 1 << 64:
            return v.to_bytes(16, "big")
        return v

    def from_wire(w: Any) -> int:
        if type(w) is int:
            if not 0 <= w < limit:
                raise OutOfRange(f"integer {w} is not a u{bits}")
            return w
        if bits == 128 and type(w) is bytes:
            if len(w) != 16:
                raise WrongType("a u128 bin must be 16 bytes")
            v = int.from_bytes(w, "big")
            if v < 1 << 64:
                raise NonCanonical("a u128 below 2**64 must be a msgpack integer")
            return v
        raise WrongType(f"expected u{bits}, got {type(w).__name__}")

    return to_wire, from_wire


def _bytes_codec(length: int, exact: bool) -> tuple[ToWire, FromWire]:
    def to_wire(v: Any) -> Any:
        if type(v) is not bytes or (len(v) != length if exact else len(v) > length):
            raise EncodeError(f"bad bytes for {'Fixed' if exact else 'Blob'}({length})")
        return v

    def from_wire(w: Any) -> bytes:
        if type(w) is not bytes:
            raise WrongType(f"expected bin, got {type(w).__name__}")
        if exact and len(w) != length:
            raise WrongType(f"expected {length} bytes, got {len(w)}")
        if len(w) > length:
            raise TooLong(f"bin of {len(w)} bytes exceeds {length}")
        return w

    return to_wire, from_wire


def _text_codec(max_length: int) -> tuple[ToWire, FromWire]:
    def to_wire(v: Any) -> Any:
        if type(v) is not str or len(v.encode()) > max_length:
            raise EncodeError(f"bad text for Text({max_length}): {v!r}")
        return v

    def from_wire(w: Any) -> str:
        if type(w) is not str:
            raise WrongType(f"expected str, got {type(w).__name__}")
        if len(w.encode()) > max_length:
            raise TooLong(f"text exceeds {max_length} bytes")
        return w

    return to_wire, from_wire


def _bool_to_wire(v: Any) -> Any:
    if type(v) is not bool:
        raise EncodeError(f"not a bool: {v!r}")
    return v


def _bool_from_wire(w: Any) -> bool:
    if type(w) is not bool:
        raise WrongType(f"expected bool, got {type(w).__name__}")
    return w


def _tuple_codec(item: Any, max_items: int) -> tuple[ToWire, FromWire]:
    item_to, item_from = codec_for(item)

    def to_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) > max_items:
            raise EncodeError(f"bad tuple for Tuple({max_items})")
        return [item_to(x) for x in v]

    def from_wire(w: Any) -> tuple[Any, ...]:
        if type(w) is not list:
            raise WrongType(f"expected array, got {type(w).__name__}")
        if len(w) > max_items:
            raise TooLong(f"array of {len(w)} items exceeds {max_items}")
        return tuple(item_from(x) for x in w)

    return to_wire, from_wire


def _optional_codec(inner: Any) -> tuple[ToWire, FromWire]:
    inner_to, inner_from = codec_for(inner)

    def to_wire(v: Any) -> Any:
        return None if v is None else inner_to(v)

    def from_wire(w: Any) -> Any:
        return None if w is None else inner_from(w)

    return to_wire, from_wire


def _enum_codec(cls: type[enum.Enum]) -> tuple[ToWire, FromWire]:
    values = {m.value: m for m in cls}

    def to_wire(v: Any) -> Any:
        if not isinstance(v, cls):
            raise EncodeError(f"not a {cls.__name__}: {v!r}")
        return v.value

    def from_wire(w: Any) -> Any:
        if type(w) is not str:
            raise WrongType(f"expected {cls.__name__} name, got {type(w).__name__}")
        member = values.get(w)
        if member is None:
            raise OutOfRange(f"unknown {cls.__name__}: {w!r}")
        return member

    return to_wire, from_wire


def _fast_check(tp: Any) -> tuple[str, int]:
    """How generated struct code can check a field inline: ("uint", limit), ("fixed", n),
    ("bool", 0), or ("call", 0) for everything else (the field's codec does the work)."""
    if get_origin(tp) is Annotated:
        base, spec = get_args(tp)[0], get_args(tp)[1]
        if base is int and isinstance(spec, UInt) and spec.bits <= 64:
            return "uint", 1 << spec.bits
        if base is bytes and isinstance(spec, Fixed):
            return "fixed", spec.length
    if tp is bool:
        return "bool", 0
    return "call", 0


def _struct_codec(cls: type[Struct]) -> tuple[ToWire, FromWire]:
    """Generate straight-line (to_wire, from_wire) code for a struct.

    Struct codecs run for every extrinsic, event and state read, so the code
    checks the common primitive fields inline and builds the instance without
    the dataclass ``__init__`` (the checks it would do are the codec's own).
    """
    hints = get_type_hints(cls, include_extras=True)
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    # Register a forward placeholder first so self-referential types terminate.
    placeholder: list[tuple[ToWire, FromWire]] = []
    _codecs[cls] = (lambda v: placeholder[0][0](v), lambda w: placeholder[0][1](w))
    field_codecs = [codec_for(hints[name]) for name in fields]
    pairs = list(zip(fields, field_codecs, strict=True))
    env: dict[str, Any] = {
        "cls": cls, "EncodeError": EncodeError, "WrongType": WrongType,
        "WrongFieldCount": WrongFieldCount, "DecodeError": DecodeError, "new": object.__new__,
        "failing": lambda w: _failing_field(pairs, w),
    }
    to_lines = ["def to_wire(v):", "    if type(v) is not cls:",
                "        raise EncodeError(f'expected {cls.__name__}, got {type(v).__name__}')"]
    from_lines = [
        "def from_wire(w):",
        "    if type(w) is not list:",
        "        raise WrongType(f'{cls.__name__}: expected array, got {type(w).__name__}')",
    ]
    tail = _optional_tail(cls, hints, fields)
    least = len(fields) - tail
    if tail:
        env["NonCanonical"] = NonCanonical
        from_lines += [
            f"    if not {least} <= len(w) <= {len(fields)}:",
            f"        raise WrongFieldCount(f'{{cls.__name__}}: expected {least} to "
            f"{len(fields)} fields, got {{len(w)}}')",
            f"    if len(w) > {least} and w[-1] is None:",
            "        raise NonCanonical(f'{cls.__name__}: a trailing optional field is nil')",
            f"    if len(w) < {len(fields)}:",  # (a padded copy: the caller re-packs ``w``)
            f"        w = w + [None] * ({len(fields)} - len(w))",
        ]
    else:
        from_lines += [
            f"    if len(w) != {len(fields)}:",
            f"        raise WrongFieldCount(f'{{cls.__name__}}: expected {len(fields)} fields, "
            "got {len(w)}')",
        ]
    from_lines.append("    try:")
    for i, name in enumerate(fields):
        env[f"T{i}"], env[f"F{i}"] = field_codecs[i]
        kind, bound = _fast_check(hints[name])
        if kind == "uint":
            bad = f"type(x{i}) is not int or x{i} < 0 or x{i} >= {bound}"
        elif kind == "fixed":
            bad = f"type(x{i}) is not bytes or len(x{i}) != {bound}"
        elif kind == "bool":
            bad = f"type(x{i}) is not bool"
        else:
            to_lines.append(f"    x{i} = T{i}(v.{name})")
            from_lines.append(f"        x{i} = F{i}(w[{i}])")
            continue
        to_lines += [f"    x{i} = v.{name}", f"    if {bad}:", f"        T{i}(x{i})"]
        from_lines += [f"        x{i} = w[{i}]", f"        if {bad}:", f"            F{i}(x{i})"]
    to_lines.append(f"    out = [{', '.join(f'x{i}' for i in range(len(fields)))}]")
    if tail:
        to_lines += [f"    while len(out) > {least} and out[-1] is None:", "        out.pop()"]
    to_lines.append("    return out")
    from_lines += [
        "    except DecodeError as e:",
        "        raise type(e)(f'{cls.__name__}.{failing(w)}: {e}') from None",
        "    o = new(cls)",
        "    o.__dict__.update({" + ", ".join(f"{n!r}: x{i}" for i, n in enumerate(fields)) + "})",
        "    return o",
    ]
    exec("\n".join(to_lines + from_lines), env)  # noqa: S102 - generated from type hints only
    result: tuple[ToWire, FromWire] = (env["to_wire"], env["from_wire"])
    placeholder.append(result)
    return result


def _optional_tail(cls: type[Struct], hints: dict[str, Any], fields: list[str]) -> int:
    """``cls.OPTIONAL_TAIL``, checked: that many last fields, each ``T | None``."""
    tail = cls.OPTIONAL_TAIL
    if not 0 <= tail <= len(fields):
        raise TypeError(f"{cls.__name__}.OPTIONAL_TAIL {tail} is not 0..{len(fields)}")
    for name in fields[len(fields) - tail:]:
        if type(None) not in get_args(hints[name]):
            raise TypeError(f"{cls.__name__}.{name} is in OPTIONAL_TAIL but not T | None")
    return tail


def _failing_field(pairs: list[tuple[str, tuple[ToWire, FromWire]]], w: list[Any]) -> str:
    for (name, c), x in zip(pairs, w, strict=True):
        try:
            c[1](x)
        except DecodeError:
            return name
    return "?"


def codec_for(tp: Any) -> tuple[ToWire, FromWire]:
    """The (to_wire, from_wire) pair for an annotated type, built once and cached."""
    cached = _codecs.get(tp)
    if cached is not None:
        return cached
    result: tuple[ToWire, FromWire]
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        spec = meta[0]
        if isinstance(spec, UInt) and base is int:
            result = _uint_codec(spec.bits)
        elif isinstance(spec, Fixed) and base is bytes:
            result = _bytes_codec(spec.length, exact=True)
        elif isinstance(spec, Blob) and base is bytes:
            result = _bytes_codec(spec.max_length, exact=False)
        elif isinstance(spec, Text) and base is str:
            result = _text_codec(spec.max_length)
        elif isinstance(spec, Tuple) and get_origin(base) is tuple:
            result = _tuple_codec(get_args(base)[0], spec.max_items)
        elif isinstance(spec, type) and issubclass(spec, CustomCodec):
            result = (spec.to_wire, spec.from_wire)  # Annotated[ValueType, ItsCodec]
        else:
            raise TypeError(f"unsupported annotation {tp!r}")
    elif origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(get_args(tp)) != 2:
            raise TypeError(f"only T | None unions are encodable: {tp!r}")
        result = _optional_codec(args[0])
    elif tp is bool:
        result = (_bool_to_wire, _bool_from_wire)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        result = _enum_codec(tp)
    elif isinstance(tp, type) and issubclass(tp, CustomCodec):
        result = (tp.to_wire, tp.from_wire)
    elif isinstance(tp, type) and issubclass(tp, Struct):
        result = _struct_codec(tp)
    else:
        raise TypeError(f"type {tp!r} has no canonical encoding (use U64, Text(n), ...)")
    _codecs[tp] = result
    return result


# ---------------------------------------------------------------------------
# Public entry points


# One shared packer: msgpack.packb builds a Packer per call. Packer.pack runs
# entirely in C under the GIL (no default hook), so sharing it across threads is safe.
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)


def pack(wire: Any) -> bytes:
    """Pack wire primitives into msgpack bytes (the only packer the chain uses)."""
    return _PACKER.pack(wire)  # type: ignore[no-any-return]


def pack_array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` items (the items' encodings follow)."""
    return _PACKER.pack_array_header(count)  # type: ignore[no-any-return]


def unpack_trusted(data: bytes) -> Any:
    """Unpack bytes this node wrote itself (state values): no limits, no canonical check."""
    return msgpack.unpackb(data)


def _reject_ext(code: int, data: bytes) -> Any:
    # max_ext_len=0 still lets a zero-length ext through; refuse every ext type.
    raise ValueError("msgpack extension types are not part of the chain's encoding")


def _reject_map(pairs: Any) -> Any:
    # max_map_len=0 still lets the empty map through; refuse every map.
    raise ValueError("msgpack maps are not part of the chain's encoding")


def unpack(data: bytes, max_size: int = MAX_DECODE_SIZE) -> Any:
    """Unpack msgpack bytes to wire primitives, strictly (no ext, no maps, no floats)."""
    if type(data) is not bytes:
        raise WrongType("input must be bytes")
    if len(data) > max_size:
        raise Oversize(f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=0,
            max_ext_len=0,
            ext_hook=_reject_ext,
            object_pairs_hook=_reject_map,
        )
    except msgpack.ExtraData:
        raise TrailingBytes("extra bytes after the value") from None
    except (msgpack.StackError, RecursionError):
        raise InvalidMsgpack(f"more than {MAX_NESTING} nested arrays") from None
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as e:
        # msgpack's own message when it has one (e.g. "Unpack failed: incomplete input").
        raise InvalidMsgpack(str(e) or type(e).__name__) from None


def to_wire(value: Any, tp: Any = None) -> Any:
    """Convert a value to msgpack primitives under its type (default: its class)."""
    return codec_for(type(value) if tp is None else tp)[0](value)


def from_wire(wire: Any, tp: Any) -> Any:
    """Convert msgpack primitives to a value of ``tp``, strictly."""
    try:
        return codec_for(tp)[1](wire)
    except DecodeError:
        raise
    except (TypeError, ValueError, RecursionError) as e:
        # A constructor's own validation (__post_init__) failing is a decode error too.
        raise WrongType(f"invalid value: {e}") from None


def encode(value: Any, tp: Any = None) -> bytes:
    """The canonical bytes of ``value`` (typed by ``tp``, default its class)."""
    return pack(to_wire(value, tp))


def decode(data: bytes, tp: type[S] | Any, max_size: int | None = None) -> Any:
    """Decode canonical bytes into a ``tp`` value, rejecting anything non-canonical."""
    if max_size is None:
        is_struct = isinstance(tp, type) and issubclass(tp, Struct)
        max_size = tp.MAX_SIZE if is_struct else MAX_DECODE_SIZE
    return decode_with_wire(data, tp, max_size)[0]


def decode_with_wire(data: bytes, tp: Any, max_size: int = MAX_DECODE_SIZE) -> tuple[Any, Any]:
    """:func:`decode`, also returning the unpacked wire primitives.

    Canonical check: every ``from_wire`` is strict and inverse to ``to_wire``,
    so re-packing the wire primitives (in C) is equivalent to re-encoding the
    decoded value, at a fraction of the cost.
    """
    wire = unpack(data, max_size)
    value = from_wire(wire, tp)
    if pack(wire) != data:
        raise NonCanonical("not the canonical encoding of the value")
    return value, wire


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def from_hex0x(text: str, length: int | None = None) -> bytes:
    """Parse ``0x``-prefixed hex (the form RPC and the CLI use), optionally of a fixed length."""
    if not isinstance(text, str) or not text.startswith("0x"):
        raise ValueError(f"expected 0x-prefixed hex, got {text!r}")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise ValueError(f"invalid hex: {text!r}") from None
    if length is not None and len(raw) != length:
        raise ValueError(f"expected {length} bytes of hex, got {len(raw)}")
    return raw
