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

from typing import Annotated

from runtime import codec
from runtime.codec import U64, Blob, Bytes64, Struct, Tuple, frozen_dataclass
from runtime.crypto import Keypair, blake2_256, verify
from runtime.extrinsic import MAX_EXTRINSIC_SIZE
from runtime.support import AccountId, Hash

MAX_BLOCK_EXTRINSICS = 20_000
MAX_JUSTIFICATION_SIGNATURES = 100
MAX_BLOCK_SIZE = 1024 * 1024
SEAL_DOMAIN = b"opus/seal/v1"
ZERO_HASH = bytes(32)


@frozen_dataclass
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


@frozen_dataclass
class Precommit(Struct):
    """One authority's signature in a justification."""

    authority: AccountId
    signature: Bytes64


@frozen_dataclass
class Justification(Struct):
    round: U64
    set_id: U64
    block_hash: Hash
    block_number: U64
    precommits: Annotated[tuple[Precommit, ...], Tuple(MAX_JUSTIFICATION_SIGNATURES)]


@frozen_dataclass
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


# ---------------------------------------------------------------------------
# Finality votes and justifications

VOTE_DOMAIN = b"opus/precommit/v1"


class InvalidJustification(ValueError):
    """A justification that does not prove finality (wrong block, signer, signature, count)."""


@frozen_dataclass
class VoteTarget(Struct):
    """What a precommit signs: the round, the authority set and the block."""

    round: U64
    set_id: U64
    block_hash: Hash
    block_number: U64


def precommit_message(round_: int, set_id: int, block_hash: bytes, block_number: int) -> bytes:
    return VOTE_DOMAIN + codec.encode(VoteTarget(round_, set_id, block_hash, block_number))


def finality_threshold(authority_count: int) -> int:
    """Votes needed for finality: more than 2/3 of the set (GRANDPA's n - floor((n-1)/3))."""
    return authority_count - (authority_count - 1) // 3


def sign_precommit(key: Keypair, round_: int, set_id: int, header: Header) -> Precommit:
    message = precommit_message(round_, set_id, header.hash, header.number)
    return Precommit(key.public, key.sign(message))


def verify_justification(justification: Justification, header: Header,
                         authorities: tuple[bytes, ...]) -> None:
    """Check that ``justification`` finalizes ``header`` under ``authorities``."""
    if justification.block_hash != header.hash or justification.block_number != header.number:
        raise InvalidJustification("justification is for another block")
    message = precommit_message(justification.round, justification.set_id, header.hash,
                                header.number)
    signers: dict[bytes, None] = {}
    for vote in justification.precommits:
        if vote.authority not in authorities:
            raise InvalidJustification("a precommit is signed by a non-authority")
        if vote.authority in signers:
            raise InvalidJustification("an authority appears twice")
        if not verify(vote.authority, message, vote.signature):
            raise InvalidJustification("a precommit signature is invalid")
        signers[vote.authority] = None
    needed = finality_threshold(len(authorities))
    if len(signers) < needed:
        raise InvalidJustification(f"{len(signers)} precommits, {needed} needed")
