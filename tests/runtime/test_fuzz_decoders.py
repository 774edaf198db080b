"""Fuzz every decoder with random and mutated bytes: only DecodeError may ever escape.

Deterministic (fixed seeds). The corpus is built from real encodings of every
registered call, every event, extrinsics, headers and blocks; values are
generated from the types' own annotations, so calls added by new modules are
fuzzed without editing this file.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import string
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import msgpack
import pytest

import runtime.executive  # noqa: F401  (imports every module, registering calls and events)
import runtime.modules  # noqa: F401
from runtime import codec, crypto, support
from runtime.block import Block, Header, Justification, Precommit
from runtime.codec import Blob, Fixed, Struct, Text, Tuple, UInt
from runtime.extrinsic import Era, Extrinsic, SigningPayload, sign_extrinsic

SEED = 0x0F05_C4A1
N_MUTATED = 9_000
N_RANDOM = 3_000
N_ADDRESSES = 6_000


# ---------------------------------------------------------------------------
# Valid values of any codec type, generated from its annotations


def sample(tp: Any, rng: random.Random, depth: int = 0) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, spec, *_ = get_args(tp)
        if isinstance(spec, UInt):
            return rng.choice([0, 1, 2**spec.bits - 1, rng.randrange(2**spec.bits)])
        if isinstance(spec, Fixed):
            return rng.randbytes(spec.length)
        if isinstance(spec, Blob):
            return rng.randbytes(rng.randint(0, min(spec.max_length, 48)))
        if isinstance(spec, Text):
            n = rng.randint(0, min(spec.max_length, 24))
            return "".join(rng.choice(string.ascii_letters + "é ") for _ in range(n)).encode()[
                :spec.max_length].decode(errors="ignore")
        if isinstance(spec, Tuple):
            item = get_args(base)[0]
            n = rng.randint(0, min(spec.max_items, 3 if depth < 2 else 0))
            return tuple(sample(item, rng, depth + 1) for _ in range(n))
        raise TypeError(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in get_args(tp) if a is not type(None))
        return None if rng.random() < 0.3 else sample(inner, rng, depth + 1)
    if tp is bool:
        return rng.random() < 0.5
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return rng.choice(list(tp))
    if tp is support.Call:
        spec = rng.choice(sorted(support.CALLS.values(), key=lambda s: (s.module, s.name)))
        return support.Call(spec.module, spec.name, sample(spec.args, rng, depth + 1))
    if tp is support.AnyEvent:
        return sample(rng.choice(sorted(support.EVENT_TYPES.values(), key=lambda c: c.__name__)),
                      rng, depth + 1)
    if isinstance(tp, type) and issubclass(tp, Struct):
        hints = get_type_hints(tp, include_extras=True)
        return tp(*[sample(hints[f.name], rng, depth + 1) for f in dataclasses.fields(tp)])  # type: ignore[arg-type]
    raise TypeError(f"no sampler for {tp!r}")


def try_sample(tp: Any, rng: random.Random) -> Any | None:
    """A valid value, or None if the type's own validation keeps refusing random ones."""
    for _ in range(20):
        try:
            value = sample(tp, rng)
            codec.encode(value, tp)
            return value
        except (TypeError, ValueError):
            continue
    return None


# ---------------------------------------------------------------------------
# The decoders and the corpus


def decoders() -> dict[str, Any]:
    table: dict[str, Any] = {
        "Extrinsic": Extrinsic,
        "Block": Block,
        "Header": Header,
        "Justification": Justification,
        "EventRecord": support.EventRecord,
        "Call": support.Call,
        "SigningPayload": SigningPayload,
    }
    for (module, name), spec in sorted(support.CALLS.items()):
        table[f"{module}.{name}"] = spec.args
    return table


def build_corpus(rng: random.Random) -> list[bytes]:
    genesis = crypto.blake2_256(b"fuzz")
    keys = [crypto.dev_keypair(n) for n in crypto.DEV_ACCOUNT_NAMES]
    corpus: list[bytes] = []
    for _, spec in sorted(support.CALLS.items()):
        for _ in range(4):
            args = try_sample(spec.args, rng)
            if args is None:
                continue
            call = support.Call(spec.module, spec.name, args)
            corpus.append(codec.encode(args))
            corpus.append(codec.encode(call, support.Call))
            era = Era(rng.randrange(2**20), rng.choice([0, 64, 2**32 - 1]))
            ext = sign_extrinsic(rng.choice(keys), call, rng.randrange(2**64), genesis, 1,
                                 tip=rng.choice([0, 5, 2**64, 2**128 - 1]), era=era,
                                 birth_hash=genesis)
            corpus.append(ext.encode())
    for event_type in sorted(support.EVENT_TYPES.values(), key=lambda c: c.__name__):
        for _ in range(3):
            event = try_sample(event_type, rng)
            if event is not None:
                record = support.EventRecord(rng.choice([None, 0, 7, 2**32 - 1]), event)
                corpus.append(record.encode())
    extrinsics = [c for c in corpus if len(c) < 2_000][:6]
    for i in range(4):
        header = Header(rng.randbytes(32), i, rng.randbytes(32), rng.randbytes(32),
                        rng.randrange(2**48), rng.randrange(2**32), keys[i].public)
        corpus.append(header.encode())
        justification = Justification(
            1, 0, header.hash, i,
            tuple(Precommit(k.public, k.sign(header.hash)) for k in keys[: i + 1]))
        corpus.append(justification.encode())
        block = Block(header, tuple(extrinsics[:i + 1]), keys[i].sign(header.hash),
                      justification if i % 2 else None)
        corpus.append(block.encode())
    return corpus


# ---------------------------------------------------------------------------
# Mutations


def mutate_wire(w: Any, rng: random.Random) -> Any:
    """Replace, drop or add one node somewhere in a msgpack value."""
    if isinstance(w, list) and w and rng.random() < 0.75:
        w = list(w)
        i = rng.randrange(len(w))
        op = rng.random()
        if op < 0.6:
            w[i] = mutate_wire(w[i], rng)
        elif op < 0.8:
            del w[i]
        else:
            w.insert(i, random_wire(rng, 1))
        return w
    choices: list[Callable[[], Any]] = [
        lambda: random_wire(rng, 2),
        lambda: w + rng.choice([-1, 1, 2**32, 2**64 - 1 - w]) if type(w) is int else None,
        lambda: w[:-1] if isinstance(w, bytes | str) else [],
        lambda: (typing.cast(Any, w) + w[:1]) if isinstance(w, bytes | str) else {},
        lambda: w.encode() if isinstance(w, str) else (w.decode("latin-1")
                                                       if isinstance(w, bytes) else 1.5),
        lambda: rng.choice([True, False, None, 0, -1, 2**64 - 1, -(2**63), b"", "", [], 0.0]),
        lambda: (2**64 + rng.randrange(2**64)).to_bytes(16, "big"),
        lambda: rng.randrange(2**64).to_bytes(16, "big"),
        # Over-long: past Blob/Text/Tuple limits.
        lambda: w * rng.choice([2, 40, 300]) if isinstance(w, bytes | str) and w else b"x" * 5000,
        lambda: [w] * rng.choice([2, 101, 2000]),
    ]
    return rng.choice(choices)()


def random_wire(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(10 if depth > 0 else 8)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, 127, 128, 255, 256, 2**32, 2**64 - 1, -1, -(2**63)])
    if kind == 2:
        return rng.randbytes(rng.choice([0, 1, 16, 32, 64, 65]))
    if kind == 3:
        return rng.choice(["", "system", "balances", "transfer", "validators", "é" * 40])
    if kind == 4:
        return rng.random()
    if kind == 5:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(4)))
    if kind == 6:
        return {}
    if kind == 7:
        return rng.randrange(2**64).to_bytes(16, "big")
    return [random_wire(rng, depth - 1) for _ in range(rng.randrange(5))]


def mutate(data: bytes, corpus: list[bytes], rng: random.Random) -> bytes:
    op = rng.randrange(10)
    n = len(data)
    if op == 9:  # widen a positive fixint: same value, non-canonical form
        small = [i for i, c in enumerate(data) if c < 0x80]
        if small:
            i = rng.choice(small)
            wide = rng.choice([b"\xcc", b"\xcd\x00", b"\xce\x00\x00\x00", b"\xd0"])
            return data[:i] + wide + data[i:]
        op = 2
    if op == 0 and n:  # bit flips
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if op == 1 and n:  # overwrite a byte with an interesting one
        b = bytearray(data)
        b[rng.randrange(n)] = rng.choice([0x00, 0x7F, 0x80, 0x90, 0xC0, 0xC1, 0xC4, 0xCC, 0xCF,
                                          0xD0, 0xD3, 0xD4, 0xDC, 0xDD, 0xDE, 0xFF,
                                          rng.randrange(256)])
        return bytes(b)
    if op == 2:  # truncation
        return data[: rng.randrange(n + 1)]
    if op == 3:  # insertion
        i = rng.randrange(n + 1)
        return data[:i] + rng.randbytes(rng.randint(1, 8)) + data[i:]
    if op == 4 and n:  # deletion of a range
        i = rng.randrange(n)
        return data[:i] + data[i + rng.randint(1, 8):]
    if op == 5:  # splice two real encodings
        other = rng.choice(corpus)
        return data[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1):]
    if op == 6:  # duplicate a chunk / append junk
        i = rng.randrange(n + 1)
        return data[:i] + data[i:i + rng.randint(1, 16)] + data[i:]
    # Structural: decode the msgpack, change one node, re-encode.
    try:
        w = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return bytes(msgpack.packb(mutate_wire(w, rng), use_bin_type=True))
    except Exception:
        return data + b"\x00"


# ---------------------------------------------------------------------------
# The tests


def check_decoders(data: bytes, table: dict[str, Any], accepted: dict[str, int]) -> None:
    for name, tp in table.items():
        try:
            value = codec.decode(data, tp)
        except codec.DecodeError:
            continue
        except Exception as e:  # pragma: no cover - the failure being hunted
            pytest.fail(f"decode as {name} raised {type(e).__name__}: {e} on {data.hex()}")
        assert codec.encode(value, tp) == data, f"{name} accepted non-canonical {data.hex()}"
        accepted[name] = accepted.get(name, 0) + 1


def test_corpus_is_valid_and_covers_every_call() -> None:
    rng = random.Random(SEED)
    corpus = build_corpus(rng)
    table = decoders()
    assert len(support.CALLS) >= 4
    accepted: dict[str, int] = {}
    for data in corpus:
        check_decoders(data, table, accepted)
    assert sum(accepted.values()) >= len(corpus)  # every seed decodes as something
    for name in ("Extrinsic", "Block", "Header", "EventRecord", "Call", "Justification"):
        assert accepted.get(name), name


def test_fuzz_mutated_and_random_bytes() -> None:
    rng = random.Random(SEED)
    corpus = build_corpus(rng)
    table = decoders()
    accepted: dict[str, int] = {}
    tried = 0
    for _ in range(N_MUTATED):
        data = rng.choice(corpus)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = mutate(data, corpus, rng)
        check_decoders(data, table, accepted)
        tried += 1
    for _ in range(N_RANDOM):
        if rng.random() < 0.5:
            data = rng.randbytes(rng.choice([0, 1, 2, 3, 8, 33, 100, 300]))
        else:
            data = bytes(msgpack.packb(random_wire(rng, 4), use_bin_type=True))
        check_decoders(data, table, accepted)
        tried += 1
    assert tried >= 10_000
    # Mutations are not all rejected at the first byte: some still decode.
    assert sum(accepted.values()) > 0


def test_fuzz_addresses() -> None:
    rng = random.Random(SEED)
    real = [crypto.dev_keypair(n).address for n in crypto.DEV_ACCOUNT_NAMES]
    real += [crypto.encode_address(rng.randbytes(32)) for _ in range(10)]
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l1bio" + "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"
    exotic = "\u212a\u017f\u0130\u0131\x00 \t\u00e9\U0001f600"
    accepted = 0
    for i in range(N_ADDRESSES):
        kind = i % 4
        if kind == 0:
            s = "".join(rng.choice(alphabet + exotic) for _ in range(rng.randrange(100)))
        elif kind == 1:
            s = "opus1" + "".join(rng.choice(alphabet) for _ in range(58))
        else:
            chars = list(rng.choice(real))
            if rng.random() < 0.5:
                chars = list("".join(chars).upper())
            for _ in range(rng.randint(1, 3)):
                j = rng.randrange(len(chars))
                op = rng.randrange(4)
                if op == 0:
                    chars[j] = rng.choice(alphabet + exotic)
                elif op == 1:
                    del chars[j]
                elif op == 2:
                    chars.insert(j, rng.choice(alphabet))
                elif j + 1 < len(chars):
                    chars[j], chars[j + 1] = chars[j + 1], chars[j]
            s = "".join(chars)
        try:
            public = crypto.decode_address(s)
        except crypto.InvalidAddress:
            continue
        accepted += 1
        # Anything accepted is exactly one account's address, in one of its two cases.
        assert crypto.encode_address(public) == s.lower(), s
        assert s in (s.lower(), s.upper())
    for address in real:
        assert crypto.encode_address(crypto.decode_address(address)) == address
