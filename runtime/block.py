"""Blocks: header, body, seal and justification.

* The block hash is ``blake2_256`` of the canonical header (the seal and the
  justification are not part of it).
* The seal is the author's ed25519 signature over ``SEAL_DOMAIN + block hash``.
* ``extrinsics_root`` is the Merkle trie root (see :mod:`runtime.trie`) of the
  map ``u32 big-endian index -> encoded extrinsic``.
* A justification proves finality: signatures of more than 2/3 of the
  authorities on the block (see the finality gadget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from runtime import codec
from runtime.codec import U64, Blob, Bytes64, Struct, Tuple
from runtime.crypto import Keypair, blake2_256, verify
from runtime.extrinsic import MAX_EXTRINSIC_SIZE
from runtime.support import AccountId, Hash

MAX_BLOCK_EXTRINSICS = 20_000
MAX_JUSTIFICATION_SIGNATURES = 100
MAX_BLOCK_SIZE = 1024 * 1024
SEAL_DOMAIN = b"opus/seal/v1"
ZERO_HASH = bytes(32)


@dataclass(frozen=True)
class Header(Struct):
    parent_hash: Hash
    number: U64
    state_root: Hash
    extrinsics_root: Hash
    timestamp: U64  # milliseconds since the Unix epoch
    slot: U64  # timestamp // slot duration
    author: AccountId  # the authority key that sealed the block

    @property
    def hash(self) -> bytes:
        return blake2_256(codec.encode(self))


@dataclass(frozen=True)
class Precommit(Struct):
    """One authority's signature in a justification."""

    authority: AccountId
    signature: Bytes64


@dataclass(frozen=True)
class Justification(Struct):
    round: U64
    set_id: U64
    block_hash: Hash
    block_number: U64
    precommits: Annotated[tuple[Precommit, ...], Tuple(MAX_JUSTIFICATION_SIGNATURES)]


@dataclass(frozen=True)
class Block(Struct):
    MAX_SIZE = MAX_BLOCK_SIZE

    header: Header
    extrinsics: Annotated[tuple[Annotated[bytes, Blob(MAX_EXTRINSIC_SIZE)], ...],
                          Tuple(MAX_BLOCK_EXTRINSICS)]
    seal: Bytes64
    justification: Justification | None = None

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def number(self) -> int:
        return self.header.number


def seal_message(block_hash: bytes) -> bytes:
    return SEAL_DOMAIN + block_hash


def seal_header(key: Keypair, header: Header) -> bytes:
    return key.sign(seal_message(header.hash))


def seal_valid(header: Header, seal: bytes) -> bool:
    return verify(header.author, seal_message(header.hash), seal)


def decode_block(data: bytes) -> Block:
    return codec.decode(data, Block)  # type: ignore[no-any-return]


__all__ = ["Block", "Header", "Justification", "Precommit", "ZERO_HASH", "seal_header",
           "seal_valid", "decode_block"]
