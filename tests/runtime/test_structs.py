"""Records declared with ``codec.frozen_dataclass`` behave as ``@dataclass(frozen=True)`` ones."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import FrozenInstanceError, InitVar, field
from typing import Annotated, Any

import pytest

from runtime import codec
from runtime.codec import U32, U64, Bytes32, Struct, Tuple, frozen_dataclass
from runtime.modules import balances, system
from runtime.modules.provenance import Work, WorkKind
from runtime.support import EventLog, EventRecord

A = b"a" * 32
B = b"b" * 32


@frozen_dataclass
class WithDefaults(Struct):
    owner: Bytes32
    count: U64 = 7
    tags: tuple[Any, ...] = field(default_factory=tuple)
    limit: U32 | None = field(default=None, kw_only=True)


@dataclasses.dataclass(frozen=True)
class WithDefaultsPlain(Struct):
    """The same fields under the plain decorator, to compare with."""

    owner: Bytes32
    count: U64 = 7
    tags: tuple[Any, ...] = field(default_factory=tuple)
    limit: U32 | None = field(default=None, kw_only=True)


def test_positional_keyword_and_decoded_instances_are_equal() -> None:
    positional = balances.Transfer(A, B, 5)
    keyword = balances.Transfer(source=A, dest=B, amount=5)
    decoded = codec.decode(codec.encode(positional), balances.Transfer)
    assert positional == keyword == decoded
    assert hash(positional) == hash(keyword) == hash(decoded)
    assert repr(positional) == repr(decoded) == (
        f"Transfer(source={A!r}, dest={B!r}, amount=5)")
    assert codec.encode(keyword) == codec.encode(decoded)
    assert positional != balances.Transfer(A, B, 6)

    kind = next(iter(WorkKind))
    work = Work(1, A, kind, "title", "uri", None, B, (), (), (), 2, 3)
    assert codec.decode(codec.encode(work), Work) == work
    record = EventRecord(0, positional)
    records_type = Annotated[tuple[EventRecord, ...], Tuple(8)]
    assert EventLog([record]).encoded() == codec.encode((record,), records_type)


def test_arguments_are_checked_as_by_dataclasses() -> None:
    with pytest.raises(TypeError):
        system.AccountInfo(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        system.AccountInfo(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        system.AccountInfo(1, nonce=2)  # type: ignore[call-arg, misc]
    with pytest.raises(TypeError):
        WithDefaults(A, 1, (), None)  # type: ignore[call-arg]


def test_defaults_and_default_factory() -> None:
    value = WithDefaults(A)
    assert (value.count, value.tags, value.limit) == (7, (), None)
    assert WithDefaults(A, 1, ("x",), limit=3) == WithDefaults(owner=A, count=1, tags=("x",),
                                                               limit=3)
    assert str(inspect.signature(WithDefaults)) == str(inspect.signature(WithDefaultsPlain))
    assert str(inspect.signature(WithDefaults)) == (
        "(owner: 'Bytes32', count: 'U64' = 7, tags: 'tuple[Any, ...]' = <factory>, *, "
        "limit: 'U32 | None' = None) -> None")
    lists: list[list[int]] = []

    @frozen_dataclass
    class Fresh:
        items: list[int] = field(default_factory=list)

    for _ in range(2):
        lists.append(Fresh().items)
    assert lists == [[], []] and lists[0] is not lists[1]


def test_instances_stay_immutable() -> None:
    info = system.AccountInfo(1, 100)
    with pytest.raises(FrozenInstanceError):
        info.free = 5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del info.nonce
    with pytest.raises(FrozenInstanceError):
        info.extra = 1  # type: ignore[attr-defined]
    assert info == system.AccountInfo(1, 100)


def test_dataclass_api() -> None:
    info = system.AccountInfo(1, 100)
    assert dataclasses.replace(info, free=5) == system.AccountInfo(1, 5)
    assert system.AccountInfo.__match_args__ == ("nonce", "free")
    assert [f.name for f in dataclasses.fields(info)] == ["nonce", "free"]
    assert dataclasses.astuple(info) == (1, 100)
    assert dataclasses.is_dataclass(info) and dataclasses.is_dataclass(system.AccountInfo)

    def described(cls: type) -> list[tuple[Any, ...]]:
        return [(f.name, f.type, f.default, f.default_factory, f.kw_only)
                for f in dataclasses.fields(cls)]

    assert described(WithDefaults) == described(WithDefaultsPlain)


def test_post_init_runs_and_own_init_is_kept() -> None:
    seen: list[int] = []

    @frozen_dataclass
    class Checked:
        value: int

        def __post_init__(self) -> None:
            seen.append(self.value)
            if self.value < 0:
                raise ValueError("negative")

    assert Checked(3).value == 3 and seen == [3]
    assert "_set_dict" in Checked.__init__.__code__.co_names
    with pytest.raises(ValueError):
        Checked(-1)

    @frozen_dataclass
    class Own:
        value: int

        def __init__(self, text: str) -> None:
            object.__setattr__(self, "value", int(text))

    assert Own("4").value == 4

    @frozen_dataclass
    class WithInitVar:  # not covered: keeps the dataclass's __init__, works the same
        value: int
        scale: InitVar[int] = 1

        def __post_init__(self, scale: int) -> None:
            object.__setattr__(self, "value", self.value * scale)

    assert WithInitVar(2, 3).value == 6 and WithInitVar(2).value == 2

    @frozen_dataclass
    class Slotted(Struct):  # not covered either: its field lives in a slot
        __slots__ = ("value",)
        value: int

    assert Slotted(5).value == 5 and Slotted(5) == Slotted(value=5)


def test_runtime_records_get_the_generated_init() -> None:
    # A silent fallback to the dataclass's __init__ would only cost speed: catch it here.
    for cls in (balances.Transfer, EventRecord, system.AccountInfo, Work, WithDefaults):
        assert "_set_dict" in cls.__init__.__code__.co_names, cls
