"""Argument types of the ``opus`` command line: text to a checked value, or a named error.

Each is an ``argparse`` ``type=``: a value it refuses raises
:class:`argparse.ArgumentTypeError`, which argparse prints with the usage (exit 2).
:func:`number_in_range` is also the node's (``node/cli``) for its ports, sizes and counts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from runtime import codec
from runtime.crypto import DEV_ACCOUNT_NAMES, InvalidAddress, decode_address, dev_keypair
from runtime.crypto import encode_address as address_of
from runtime.modules import provenance

TOKEN_SYMBOL = "OPUS"
TOKEN_DECIMALS = 12
U128_MAX = (1 << 128) - 1
U64_MAX = (1 << 64) - 1

Number = TypeVar("Number", int, float)


def number_in_range(what: str, low: Number, high: Number | None = None, *,
                    above: bool = False, note: str = "") -> Callable[[str], Number]:
    """An argument type for a number from ``low`` to ``high`` (no upper bound if None).

    ``what`` names the value with its article (``"a port number"``); the errors read
    ``not a port number: 'x'`` and ``a port number must be 0 to 65535, not 70000``.
    The bounds' type is the value's: whole numbers for ``int`` bounds, finite decimals
    for ``float`` ones. With ``above`` the value must be more than ``low``; ``note`` says
    why the range is what it is.
    """
    parse: Callable[[str], Number] = type(low)
    if above:
        bounds = f"more than {_bound(low)}"
    elif high is None:
        bounds = f"at least {_bound(low)}"
    else:
        bounds = f"{_bound(low)} to {_bound(high)}"
    if note:
        bounds += f" ({note})"

    def convert(text: str) -> Number:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):  # nan and inf parse
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        if value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, not {text}")
        return value

    convert.__name__ = what  # argparse names the type by it in its own messages
    return convert


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


id_number = number_in_range("an id", 0, U64_MAX)
count = number_in_range("a whole number", 0, U64_MAX)
bps = number_in_range("a value in basis points", 0, provenance.BPS)
page_limit = number_in_range("a page size", 0, 1000)


def amount(text: str) -> int:
    """``123`` (smallest units) or ``1.5OPUS`` / ``1.5 OPUS`` (tokens)."""
    value = text.strip()
    try:
        if value.upper().endswith(TOKEN_SYMBOL):
            tokens = Decimal(value[: -len(TOKEN_SYMBOL)].strip())
            units = tokens * (10**TOKEN_DECIMALS)
            if units != units.to_integral_value():
                raise argparse.ArgumentTypeError(
                    f"{text!r} has more than {TOKEN_DECIMALS} decimals")
            number = int(units)
        else:
            number = int(value, 10)
    except (ValueError, InvalidOperation):
        raise argparse.ArgumentTypeError(
            f"not an amount: {text!r} (use units, e.g. 1000, or tokens, e.g. 2.5OPUS)") from None
    if not 0 <= number <= U128_MAX:
        raise argparse.ArgumentTypeError(f"amount out of range: {text!r}")
    return number


def account(text: str) -> bytes:
    """An account id: an ``opus1…`` address, ``0x`` + 32 bytes of hex or a dev account name."""
    if text.startswith("0x"):
        return hash32(text)
    if text.lower() in DEV_ACCOUNT_NAMES:
        return dev_keypair(text).public
    try:
        return decode_address(text)
    except InvalidAddress as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def address_text(text: str) -> str:
    """What :func:`account` accepts, as an ``opus1…`` address."""
    return address_of(account(text))


def hash32(text: str) -> bytes:
    """``0x`` + 32 bytes of hex."""
    try:
        return codec.from_hex0x(text, 32)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def split(text: str) -> tuple[bytes, int]:
    """A co-creator's share, ``ADDRESS:BPS``."""
    who, sep, share = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"a split is ADDRESS:BPS, got {text!r}")
    return account(who), bps(share)


def parent(text: str) -> tuple[int, int]:
    """A parent work and the license held on it, ``WORK:LICENSE``."""
    work, sep, lic = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"a parent is WORK:LICENSE (two ids), got {text!r}")
    return id_number(work), id_number(lic)


def text_of_at_most(limit: int, what: str) -> Callable[[str], str]:
    """An argument type for text of at most ``limit`` bytes in UTF-8 (the chain's limit)."""
    def convert(text: str) -> str:
        if len(text.encode()) > limit:
            raise argparse.ArgumentTypeError(f"{what} is longer than {limit} bytes")
        return text

    convert.__name__ = what
    return convert


__all__ = ["TOKEN_DECIMALS", "TOKEN_SYMBOL", "U128_MAX", "U64_MAX", "account", "address_text",
           "amount", "bps", "count", "hash32", "id_number", "number_in_range", "page_limit",
           "parent", "split", "text_of_at_most"]
