"""The Opus Chain JSON-RPC API as both sides of the wire see it: error codes and JSON shapes.

The node's server (:mod:`node.rpc`) answers with these shapes and codes; the client
library (:mod:`client.rpc`) and offline proof checks (:mod:`client.proof`) read them. This
module imports only the runtime, so a client never needs the node's packages.

JSON conventions (Substrate's where they exist): hashes and bytes are ``0x``-hex,
accounts are ``opus1…`` addresses, token amounts (u128) are decimal strings, other
integers are JSON numbers, enums are their names and object keys are camelCase. A
header's ``number`` is ``0x``-hex like Substrate's (see :func:`header_to_json`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from runtime import codec
from runtime.block import Header
from runtime.codec import UInt, from_hex0x, hex0x
from runtime.crypto import decode_address, encode_address

# ---------------------------------------------------------------------------
# Error codes

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# jsonrpsee's (Substrate's RPC server) codes for its limits, with its messages.
TOO_MANY_SUBSCRIPTIONS = -32006
OVERSIZED_REQUEST = -32007
OVERSIZED_RESPONSE = -32008
SERVER_IS_BUSY = -32009
TOO_BIG_BATCH_REQUEST = -32010
TOO_BIG_BATCH_RESPONSE = -32011
# Substrate's --rpc-rate-limit middleware (sc-rpc-server).
RATE_LIMIT_EXCEEDED = -32999
# Substrate's author_* codes.
POOL_INVALID_TX = 1010
POOL_UNKNOWN_VALIDITY = 1011
POOL_TEMPORARILY_BANNED = 1012
POOL_ALREADY_IMPORTED = 1013
POOL_TOO_LOW_PRIORITY = 1014
POOL_IMMEDIATELY_DROPPED = 1016


class RpcError(Exception):
    """A JSON-RPC error answer: ``{"code", "message", "data"?}``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    def __str__(self) -> str:
        if self.data is None:
            return f"{self.message} ({self.code})"
        return f"{self.message}: {self.data} ({self.code})"


# ---------------------------------------------------------------------------
# JSON shapes of chain values

# Struct fields that hold account ids (shown as opus1 addresses, not hex).
ACCOUNT_FIELDS = frozenset({
    "owner", "account", "licensee", "offered_by", "signer", "who", "source", "dest", "author",
    "old_owner", "new_owner", "old_holder", "new_holder", "payer", "to", "new_sudo",
    "authorities", "sudo",
})


def camel(name: str) -> str:
    """``offered_by`` -> ``offeredBy``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _is_u128(hint: Any) -> bool:
    if get_origin(hint) is Annotated:
        return any(isinstance(m, UInt) and m.bits == 128 for m in get_args(hint)[1:])
    # Optional[U128]
    return any(_is_u128(a) for a in get_args(hint) if a is not type(None))


@functools.cache
def _field_kinds(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(field name, json key, is an amount) for each field of a struct class."""
    hints = get_type_hints(cls, include_extras=True)
    return tuple((f.name, camel(f.name), _is_u128(hints.get(f.name)))
                 for f in dataclasses.fields(cls))


# An address's bech32m checksum costs ~200 µs in Python, and the same few accounts (owners,
# offerers) come up again and again in listings and bulk lookups.
address_of = functools.lru_cache(maxsize=4096)(encode_address)


def to_json(value: Any, *, account: bool = False, amount: bool = False) -> Any:
    """Any runtime value as JSON, per the conventions in the module docstring."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        if account and len(value) == 32:
            return address_of(value)
        return hex0x(value)
    if isinstance(value, int):
        return str(value) if amount else value
    if isinstance(value, str):
        return value  # StrEnum members are str: their value
    if isinstance(value, tuple):
        return [to_json(v, account=account, amount=amount) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            key: to_json(getattr(value, name), account=name in ACCOUNT_FIELDS, amount=is_amount)
            for name, key, is_amount in _field_kinds(type(value))
        }
    raise TypeError(f"no JSON form for {type(value).__name__}")


def header_to_json(header: Header) -> dict[str, Any]:
    """Substrate's header shape plus Opus's ``timestamp``, ``slot`` and ``author``."""
    return {
        "parentHash": hex0x(header.parent_hash),
        "number": hex(header.number),
        "stateRoot": hex0x(header.state_root),
        "extrinsicsRoot": hex0x(header.extrinsics_root),
        "digest": {"logs": []},
        "timestamp": header.timestamp,
        "slot": header.slot,
        "author": encode_address(header.author) if any(header.author) else hex0x(header.author),
    }


def header_from_json(data: Any) -> Header:
    """The header a :func:`header_to_json` object describes (ValueError if malformed)."""
    if not isinstance(data, dict):
        raise ValueError("a header must be a JSON object")
    try:
        number = data["number"]
        if isinstance(number, str):
            number = int(number, 16)
        author_text = data["author"]
        author = (from_hex0x(author_text, 32) if author_text.startswith("0x")
                  else decode_address(author_text))
        for name in ("timestamp", "slot"):
            if not isinstance(data[name], int) or isinstance(data[name], bool):
                raise ValueError(f"header.{name} must be an integer")
        header = Header(
            parent_hash=from_hex0x(data["parentHash"], 32),
            number=number,
            state_root=from_hex0x(data["stateRoot"], 32),
            extrinsics_root=from_hex0x(data["extrinsicsRoot"], 32),
            timestamp=data["timestamp"],
            slot=data["slot"],
            author=author,
        )
        codec.encode(header)  # range checks
    except KeyError as e:
        raise ValueError(f"header lacks {e.args[0]!r}") from None
    except (TypeError, AttributeError, codec.EncodeError) as e:
        raise ValueError(f"malformed header: {e}") from None
    return header


__all__ = [
    "ACCOUNT_FIELDS",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "OVERSIZED_REQUEST",
    "OVERSIZED_RESPONSE",
    "PARSE_ERROR",
    "POOL_ALREADY_IMPORTED",
    "POOL_IMMEDIATELY_DROPPED",
    "POOL_INVALID_TX",
    "POOL_TEMPORARILY_BANNED",
    "POOL_TOO_LOW_PRIORITY",
    "POOL_UNKNOWN_VALIDITY",
    "RATE_LIMIT_EXCEEDED",
    "RpcError",
    "SERVER_IS_BUSY",
    "TOO_BIG_BATCH_REQUEST",
    "TOO_BIG_BATCH_RESPONSE",
    "TOO_MANY_SUBSCRIPTIONS",
    "address_of",
    "camel",
    "header_from_json",
    "header_to_json",
    "to_json",
]
