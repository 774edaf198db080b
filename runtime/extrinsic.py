"""Signed extrinsics: the only way anything enters a block.

An extrinsic is ``[signer, signature, nonce, tip, era, call]``. The signature
is ed25519 over the canonical bytes of the :class:`SigningPayload`, which binds:

* the chain: its genesis hash and the runtime's spec version, so a transaction
  for another chain (or another runtime) never verifies here;
* the signer's nonce, so a transaction applies at most once;
* the mortality window (``era``) and the hash of its birth block, so a
  transaction expires and is tied to the fork it was made on;
* the tip and the call itself.

The transaction hash is ``blake2_256`` of the extrinsic's canonical bytes.
"""

from __future__ import annotations

from typing import Annotated

from runtime import codec
from runtime.codec import U32, U64, U128, Bytes64, Struct, Text, frozen_dataclass
from runtime.crypto import Keypair, blake2_256, verify
from runtime.support import AccountId, Call, Hash

MAX_EXTRINSIC_SIZE = 64 * 1024
SIGNING_DOMAIN = "opus/extrinsic/v1"


@frozen_dataclass
class Era(Struct):
    """Mortality: valid in blocks ``birth + 1 .. birth + period`` (``period == 0``: immortal).

    ``birth`` is the number of the best block the sender saw; its hash is part
    of the signing payload (the genesis hash for an immortal transaction).
    """

    birth: U64
    period: U32

    @property
    def immortal(self) -> bool:
        return self.period == 0

    def valid_at(self, block_number: int) -> bool:
        return self.immortal or self.birth < block_number <= self.birth + self.period


IMMORTAL = Era(0, 0)
DEFAULT_PERIOD = 64


@frozen_dataclass
class SigningPayload(Struct):
    domain: Annotated[str, Text(32)]
    genesis_hash: Hash
    spec_version: U32
    birth_hash: Hash
    signer: AccountId
    nonce: U64
    tip: U128
    era: Era
    call: Call


@frozen_dataclass
class Extrinsic(Struct):
    MAX_SIZE = MAX_EXTRINSIC_SIZE

    signer: AccountId
    signature: Bytes64
    nonce: U64
    tip: U128
    era: Era
    call: Call

    def payload(self, genesis_hash: bytes, spec_version: int, birth_hash: bytes) -> bytes:
        wire = self.__dict__.get("_wire")
        if wire is not None:
            # Decoded from bytes: build the payload from the wire form we already
            # have (same bytes as signing_payload, without re-encoding the call).
            return codec.pack([SIGNING_DOMAIN, genesis_hash, spec_version, birth_hash, wire[0],
                               *wire[2:]])
        return signing_payload(
            genesis_hash, spec_version, birth_hash, self.signer, self.nonce, self.tip, self.era,
            self.call,
        )

    @property
    def hash(self) -> bytes:
        return blake2_256(codec.encode(self))

    def signature_valid(self, genesis_hash: bytes, spec_version: int, birth_hash: bytes) -> bool:
        payload = self.payload(genesis_hash, spec_version, birth_hash)
        return verify(self.signer, payload, self.signature)


def signing_payload(
    genesis_hash: bytes,
    spec_version: int,
    birth_hash: bytes,
    signer: bytes,
    nonce: int,
    tip: int,
    era: Era,
    call: Call,
) -> bytes:
    """The exact bytes an extrinsic's signature covers."""
    return codec.encode(
        SigningPayload(SIGNING_DOMAIN, genesis_hash, spec_version, birth_hash, signer, nonce, tip,
                       era, call)
    )


def sign_extrinsic(
    key: Keypair,
    call: Call,
    nonce: int,
    genesis_hash: bytes,
    spec_version: int,
    *,
    tip: int = 0,
    era: Era = IMMORTAL,
    birth_hash: bytes | None = None,
) -> Extrinsic:
    """Build and sign an extrinsic. A mortal era needs the hash of its birth block."""
    if era.immortal:
        birth_hash = genesis_hash
    elif birth_hash is None:
        raise ValueError("a mortal extrinsic needs the hash of its birth block")
    payload = signing_payload(genesis_hash, spec_version, birth_hash, key.public, nonce, tip, era,
                              call)
    return Extrinsic(key.public, key.sign(payload), nonce, tip, era, call)


def decode_extrinsic(data: bytes) -> Extrinsic:
    """Decode untrusted bytes into an extrinsic (raises a codec.DecodeError subclass)."""
    ext, wire = codec.decode_with_wire(data, Extrinsic, MAX_EXTRINSIC_SIZE)
    ext.__dict__["_wire"] = wire  # not a field: equality and encoding ignore it
    return ext  # type: ignore[no-any-return]
