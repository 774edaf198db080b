"""The canonical msgpack codec: exact bytes, strict decoding, one named error per failure."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Annotated, Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import codec
from runtime.codec import (
    U8,
    U16,
    U32,
    U64,
    U128,
    Blob,
    Bytes32,
    Fixed,
    Struct,
    Text,
    Tuple,
)


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True)
class Inner(Struct):
    a: U8
    tag: Annotated[bytes, Fixed(4)]


@dataclass(frozen=True)
class Everything(Struct):
    u8: U8
    u16: U16
    u32: U32
    u64: U64
    u128: U128
    fixed: Bytes32
    blob: Annotated[bytes, Blob(8)]
    text: Annotated[str, Text(8)]
    flag: bool
    items: Annotated[tuple[U16, ...], Tuple(3)]
    maybe: U32 | None
    colour: Colour
    inner: Inner
    inners: Annotated[tuple[Inner, ...], Tuple(2)]
    maybe_inner: Inner | None


@dataclass(frozen=True)
class Small(Struct):
    MAX_SIZE = 16

    data: Annotated[bytes, Blob(64)]


@dataclass(frozen=True)
class Pair(Struct):
    x: U64
    y: U128


SAMPLE = Everything(
    u8=255, u16=65535, u32=2**32 - 1, u64=2**64 - 1, u128=2**128 - 1,
    fixed=bytes(range(32)), blob=b"\x00\xffab", text="héllo", flag=True,
    items=(0, 1, 65535), maybe=7, colour=Colour.GREEN, inner=Inner(1, b"abcd"),
    inners=(Inner(0, b"wxyz"), Inner(255, b"\x00" * 4)), maybe_inner=None,
)


def wire(value: Any) -> list[Any]:
    """The wire list of a struct, for building hand-made (often invalid) encodings."""
    w = codec.to_wire(value)
    assert isinstance(w, list)
    return w


def raw(*parts: bytes) -> bytes:
    return b"".join(parts)


# ---------------------------------------------------------------------------
# Exact bytes and round trips


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        (0, U8, b"\x00"),
        (5, U8, b"\x05"),
        (255, U8, b"\xcc\xff"),
        (256, U16, b"\xcd\x01\x00"),
        (65535, U16, b"\xcd\xff\xff"),
        (2**32 - 1, U32, b"\xce\xff\xff\xff\xff"),
        (2**32, U64, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
        (2**64 - 1, U64, b"\xcf" + b"\xff" * 8),
        (2**64 - 1, U128, b"\xcf" + b"\xff" * 8),
        (2**64, U128, b"\xc4\x10" + (2**64).to_bytes(16, "big")),
        (2**128 - 1, U128, b"\xc4\x10" + b"\xff" * 16),
        (b"\x01" * 32, Bytes32, b"\xc4\x20" + b"\x01" * 32),
        (b"", Annotated[bytes, Blob(8)], b"\xc4\x00"),
        ("hi", Annotated[str, Text(8)], b"\xa2hi"),
        (True, bool, b"\xc3"),
        (False, bool, b"\xc2"),
        (None, U32 | None, b"\xc0"),
        (3, U32 | None, b"\x03"),
        ((1, 2), Annotated[tuple[U8, ...], Tuple(4)], b"\x92\x01\x02"),
        (Colour.RED, Colour, b"\xa3red"),
        (Inner(1, b"abcd"), Inner, b"\x92\x01\xc4\x04abcd"),
    ],
)
def test_exact_bytes_and_round_trip(value: Any, tp: Any, expected: bytes) -> None:
    assert codec.encode(value, tp) == expected
    decoded = codec.decode(expected, tp)
    assert decoded == value
    assert type(decoded) is type(value)
    assert codec.encode(decoded, tp) == expected


def test_every_field_kind_round_trips_byte_for_byte() -> None:
    for value in (SAMPLE, replace(SAMPLE, u128=2**64, maybe=None, maybe_inner=Inner(9, b"1234"),
                                  flag=False, items=(), inners=(), text="", blob=b"")):
        data = value.encode()
        assert data == codec.encode(value)
        back = codec.decode(data, Everything)
        assert back == value
        assert back.encode() == data


def test_u128_boundaries() -> None:
    for v in (0, 2**63, 2**64 - 1, 2**64, 2**127, 2**128 - 1):
        assert codec.decode(codec.encode(v, U128), U128) == v
    with pytest.raises(codec.EncodeError):
        codec.encode(2**128, U128)
    with pytest.raises(codec.EncodeError):
        codec.encode(-1, U128)


def test_encode_refuses_values_outside_their_type() -> None:
    for value, tp in [
        (256, U8), (True, U8), (b"x" * 31, Bytes32), (b"x" * 9, Annotated[bytes, Blob(8)]),
        ("é" * 5, Annotated[str, Text(8)]), (1, bool), ([1], Annotated[tuple[U8, ...], Tuple(2)]),
        ((1, 2, 3), Annotated[tuple[U8, ...], Tuple(2)]), ("red", Colour), (1.0, U64),
    ]:
        with pytest.raises(codec.EncodeError):
            codec.encode(value, tp)


def test_unsupported_annotations_have_no_codec() -> None:
    for tp in (int, str, bytes, float, dict[str, int], U8 | U16):
        with pytest.raises(TypeError):
            codec.codec_for(tp)


# ---------------------------------------------------------------------------
# Named decode errors


def test_oversize() -> None:
    ok = Small(b"x" * 10).encode()
    assert codec.decode(ok, Small) == Small(b"x" * 10)
    with pytest.raises(codec.Oversize):
        codec.decode(Small(b"x" * 20).encode(), Small)
    with pytest.raises(codec.Oversize):
        codec.decode(codec.encode(5, U8) + b"", U8, max_size=0)
    with pytest.raises(codec.Oversize):
        codec.decode(b"\xc4\x00" + b"\x00" * codec.MAX_DECODE_SIZE, Annotated[bytes, Blob(8)])


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x92\x01", b"\xc4\x05ab", b"\xa2\xff\xfe", b"\xdc\x00"],
    ids=["empty", "reserved-byte", "truncated-array", "truncated-bin", "bad-utf8", "short-hdr"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(codec.InvalidMsgpack):
        codec.decode(data, Inner)


def test_trailing_bytes() -> None:
    data = Inner(1, b"abcd").encode()
    for extra in (b"\x00", b"\xc0", data):
        with pytest.raises(codec.TrailingBytes):
            codec.decode(data + extra, Inner)


def test_wrong_type() -> None:
    good = wire(SAMPLE)
    cases = {
        0: "5",  # str for int
        1: b"\x01",  # bin for int
        5: "x" * 32,  # str for bin
        7: b"abc",  # bin for str
        8: 1,  # int for bool
        9: 5,  # int for array
        11: 0,  # int for enum
        12: "inner",  # str for a nested struct
        13: b"",  # bin for an array of structs
        14: 5,  # int for an optional struct
    }
    for index, bad in cases.items():
        w = list(good)
        w[index] = bad
        with pytest.raises(codec.WrongType):
            codec.decode(codec.pack(w), Everything)
    with pytest.raises(codec.WrongType):
        codec.decode(codec.pack(5), Inner)  # not an array at all
    with pytest.raises(codec.WrongType):
        codec.decode(bytearray(Inner(1, b"abcd").encode()), Inner)  # type: ignore[arg-type]
    # A Fixed(n) bin of another length.
    with pytest.raises(codec.WrongType):
        codec.decode(codec.pack([1, b"abc"]), Inner)
    # A u128 bin that is not 16 bytes.
    with pytest.raises(codec.WrongType):
        codec.decode(codec.pack(b"\x01" * 17), U128)
    # A bin is not an integer for the narrower widths.
    with pytest.raises(codec.WrongType):
        codec.decode(codec.pack(b"\x01" * 16), U64)


def test_wrong_type_names_the_field() -> None:
    w = wire(SAMPLE)
    w[6] = "not bytes"
    with pytest.raises(codec.WrongType, match="blob"):
        codec.decode(codec.pack(w), Everything)


def test_floats_rejected() -> None:
    for data in (b"\xca" + bytes(4), b"\xcb" + bytes(8), msgpack.packb(5.0)):
        with pytest.raises(codec.DecodeError):
            codec.decode(data, U64)
    with pytest.raises(codec.DecodeError):
        codec.decode(codec.pack([1.0, 2]), Pair)


def test_maps_rejected() -> None:
    for data in (msgpack.packb({"x": 1, "y": 2}), msgpack.packb({}), b"\xde\x00\x00",
                 codec.pack([1, 2])[:1] + b"\x80\x02"):
        with pytest.raises(codec.InvalidMsgpack):
            codec.decode(data, Pair)


def test_ext_types_rejected() -> None:
    ext = msgpack.packb(msgpack.ExtType(5, b"abc"))
    empty_ext = b"\xc7\x00\x05"
    timestamp = msgpack.packb(msgpack.Timestamp(1, 0))
    for data in (ext, empty_ext, timestamp, b"\x92\x01" + empty_ext):
        with pytest.raises(codec.InvalidMsgpack):
            codec.decode(data, Pair)


def test_deep_nesting_rejected() -> None:
    for depth in (100, 1_000, 100_000):
        data = b"\x91" * depth + b"\x00"
        with pytest.raises(codec.DecodeError):
            codec.decode(data, Everything)
    with pytest.raises(codec.InvalidMsgpack):
        codec.decode(b"\x91" * 100_000 + b"\x00", Everything)


def test_wrong_field_count() -> None:
    good = wire(Pair(1, 2))
    with pytest.raises(codec.WrongFieldCount):
        codec.decode(codec.pack(good + [3]), Pair)  # an unknown extra field
    with pytest.raises(codec.WrongFieldCount):
        codec.decode(codec.pack(good[:1]), Pair)  # a missing field
    with pytest.raises(codec.WrongFieldCount):
        codec.decode(codec.pack([]), Pair)
    w = wire(SAMPLE)
    w[12] = [1]  # nested struct with a missing field
    with pytest.raises(codec.WrongFieldCount):
        codec.decode(codec.pack(w), Everything)


def test_out_of_range() -> None:
    for value, tp in [(256, U8), (65536, U16), (2**32, U32), (-1, U64), (-1, U8), (-(2**63), U64),
                      (2**16, U16)]:
        with pytest.raises(codec.OutOfRange):
            codec.decode(codec.pack(value), tp)
    with pytest.raises(codec.OutOfRange):
        codec.decode(codec.pack("blue"), Colour)  # unknown enum value
    with pytest.raises(codec.OutOfRange):
        codec.decode(codec.pack("RED"), Colour)  # the name is not the value


def test_too_long() -> None:
    w = wire(SAMPLE)
    for index, bad in [(6, b"x" * 9), (7, "x" * 9), (7, "é" * 5), (9, [1, 2, 3, 4])]:
        v = list(w)
        v[index] = bad
        with pytest.raises(codec.TooLong):
            codec.decode(codec.pack(v), Everything)
    assert codec.decode(codec.pack("é" * 4), Annotated[str, Text(8)]) == "é" * 4


@pytest.mark.parametrize(
    ("data", "tp"),
    [
        (b"\xce\x00\x00\x00\x05", U32),  # 5 as uint32
        (b"\xcc\x05", U8),  # 5 as uint8
        (b"\xd0\x05", U8),  # 5 as int8
        (b"\xcd\x00\xff", U16),  # 255 as uint16
        (b"\xcf" + (2**32 - 1).to_bytes(8, "big"), U64),  # u32 value as uint64
        (b"\xc4\x10" + (5).to_bytes(16, "big"), U128),  # small u128 as 16-byte bin
        (b"\xc4\x10" + (2**64 - 1).to_bytes(16, "big"), U128),  # just below 2**64
        (b"\xd9\x02hi", Annotated[str, Text(8)]),  # str8 where fixstr fits
        (b"\xc5\x00\x02hi", Annotated[bytes, Blob(8)]),  # bin16 where bin8 fits
        (b"\xdc\x00\x02\x01\x02", Pair),  # array16 where fixarray fits
        (b"\x92\xd1\x00\x01\x02", Pair),  # a nested wide integer
    ],
)
def test_non_canonical(data: bytes, tp: Any) -> None:
    with pytest.raises(codec.NonCanonical):
        codec.decode(data, tp)


def test_decode_errors_are_value_errors() -> None:
    for cls in (codec.Oversize, codec.InvalidMsgpack, codec.TrailingBytes, codec.WrongType,
                codec.WrongFieldCount, codec.OutOfRange, codec.TooLong, codec.NonCanonical):
        assert issubclass(cls, codec.DecodeError)
        assert issubclass(cls, ValueError)


def test_hex_helpers() -> None:
    assert codec.hex0x(b"\x01\xab") == "0x01ab"
    assert codec.from_hex0x("0x01ab") == b"\x01\xab"
    assert codec.from_hex0x("0x" + "00" * 32, 32) == bytes(32)
    for bad in ("01ab", "0xzz", "0x0", 5):
        with pytest.raises(ValueError):
            codec.from_hex0x(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        codec.from_hex0x("0x00", 32)


# ---------------------------------------------------------------------------
# Properties

u8s = st.integers(0, 2**8 - 1)
inners = st.builds(Inner, u8s, st.binary(min_size=4, max_size=4))


def text_up_to(n: int) -> st.SearchStrategy[str]:
    return st.text(max_size=n).filter(lambda s: len(s.encode()) <= n)


everything = st.builds(
    Everything,
    u8=u8s,
    u16=st.integers(0, 2**16 - 1),
    u32=st.integers(0, 2**32 - 1),
    u64=st.integers(0, 2**64 - 1),
    u128=st.one_of(st.integers(0, 2**128 - 1), st.sampled_from([2**64 - 1, 2**64, 2**128 - 1])),
    fixed=st.binary(min_size=32, max_size=32),
    blob=st.binary(max_size=8),
    text=text_up_to(8),
    flag=st.booleans(),
    items=st.lists(st.integers(0, 2**16 - 1), max_size=3).map(tuple),
    maybe=st.none() | st.integers(0, 2**32 - 1),
    colour=st.sampled_from(Colour),
    inner=inners,
    inners=st.lists(inners, max_size=2).map(tuple),
    maybe_inner=st.none() | inners,
)


@given(everything)
def test_property_round_trip(value: Everything) -> None:
    data = value.encode()
    back = codec.decode(data, Everything)
    assert back == value
    assert back.encode() == data


@given(everything, st.binary(min_size=1, max_size=4))
def test_property_trailing_bytes_always_rejected(value: Everything, extra: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(value.encode() + extra, Everything)


@given(st.integers(0, 2**64 - 1))
def test_property_wide_integer_forms_are_non_canonical(v: int) -> None:
    canonical = codec.encode(v, U64)
    wide = b"\xcf" + v.to_bytes(8, "big")
    if wide == canonical:
        assert codec.decode(wide, U64) == v
    else:
        with pytest.raises(codec.NonCanonical):
            codec.decode(wide, U64)
    as_bin = b"\xc4\x10" + v.to_bytes(16, "big")
    with pytest.raises(codec.NonCanonical):
        codec.decode(as_bin, U128)


@given(st.binary(max_size=64))
def test_property_decode_accepts_only_canonical_bytes(data: bytes) -> None:
    try:
        value = codec.decode(data, Everything)
    except codec.DecodeError:
        return
    assert codec.encode(value) == data
