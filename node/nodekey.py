"""The libp2p node key: an ed25519 secret that gives the node its peer id.

Stored like Substrate does: ``<base>/network/secret_ed25519`` holds the raw
32-byte secret, created on first start. A ``--node-key-file`` may hold the raw
32 bytes or their hex (optionally ``0x``-prefixed), as ``key generate-node-key``
writes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

# libp2p is imported inside the functions: importing it takes over a second,
# which every `opus` command (creator commands included) would pay otherwise.

NODE_KEY_FILE = Path("network") / "secret_ed25519"


class NodeKeyError(ValueError):
    """A node key file that is missing or does not hold a 32-byte ed25519 secret."""


def generate() -> KeyPair:
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair

    private = Ed25519PrivateKey.new()
    return KeyPair(private, private.get_public_key())


def from_secret(secret: bytes) -> KeyPair:
    if len(secret) != 32:
        raise NodeKeyError(f"a node key is 32 bytes, got {len(secret)}")
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair

    private = Ed25519PrivateKey.from_bytes(secret)
    return KeyPair(private, private.get_public_key())


def peer_id(key: KeyPair) -> str:
    from libp2p.peer.id import ID

    return ID.from_pubkey(key.public_key).to_base58()


def read_key_file(path: Path) -> KeyPair:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NodeKeyError(f"cannot read node key file {str(path)!r}: {e.strerror}") from None
    if len(data) != 32:
        text = data.strip().decode("ascii", "replace").removeprefix("0x")
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise NodeKeyError(f"{str(path)!r} holds neither 32 bytes nor their hex") from None
    try:
        return from_secret(data)
    except NodeKeyError as e:
        raise NodeKeyError(f"{str(path)!r}: {e}") from None


def write_key_file(path: Path, key: KeyPair, *, binary: bool = False) -> None:
    """Write the secret (hex unless ``binary``), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = key.private_key.to_bytes()
    data = secret if binary else secret.hex().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_or_create(base_path: Path, key_file: Path | None = None) -> KeyPair:
    """The key from ``key_file`` if given, else ``<base>/network/secret_ed25519`` (created once)."""
    if key_file is not None:
        return read_key_file(key_file)
    path = base_path / NODE_KEY_FILE
    if path.exists():
        return read_key_file(path)
    key = generate()
    write_key_file(path, key, binary=True)
    return key
