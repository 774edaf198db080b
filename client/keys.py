"""Key files: an account's signing seed on disk, readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from client.errors import ClientError
from runtime.codec import from_hex0x
from runtime.crypto import InvalidAddress, Keypair, decode_address


def load_key_file(path: str | Path) -> Keypair:
    """Read a key file (JSON ``{"address": "opus1…", "seed": "<64 hex>"}``)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ClientError(f"key file {str(path)!r} does not exist") from None
    except OSError as e:
        raise ClientError(f"cannot read key file {str(path)!r}: {e.strerror}") from None
    except ValueError:
        raise ClientError(f"key file {str(path)!r} is not JSON") from None
    seed_text = data.get("seed") if isinstance(data, dict) else None
    if not isinstance(seed_text, str):
        raise ClientError(f"key file {str(path)!r} has no \"seed\"")
    try:
        key = Keypair.from_seed(bytes.fromhex(seed_text.removeprefix("0x")))
    except ValueError:
        raise ClientError(f"key file {str(path)!r}: the seed is not 32 bytes of hex") from None
    if data.get("address") not in (None, key.address):
        raise ClientError(f"key file {str(path)!r}: the address does not match the seed")
    return key


def write_key_file(path: str | Path, key: Keypair, *, overwrite: bool = False) -> None:
    """Write ``key`` as a key file readable by its owner only (mode 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ClientError(f"{str(path)!r} already exists (refusing to overwrite a key)") from None
    except OSError as e:
        raise ClientError(f"cannot write {str(path)!r}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        json.dump({"address": key.address, "seed": key.seed.hex()}, f, indent=2)
        f.write("\n")
    os.chmod(path, 0o600)


def parse_account(text: str) -> bytes:
    """An account id from an ``opus1…`` address or ``0x`` + 32 bytes of hex."""
    if text.startswith("0x"):
        try:
            return from_hex0x(text, 32)
        except ValueError as e:
            raise ClientError(str(e)) from None
    try:
        return decode_address(text)
    except InvalidAddress as e:
        raise ClientError(str(e)) from None



__all__ = ["load_key_file", "parse_account", "write_key_file"]
