"""Hashing, ed25519 keys, account addresses and the dev accounts.

* Chain hashes (blocks, extrinsics, trie nodes) are BLAKE2b-256; work content
  hashes are SHA-256 of the file's bytes, the hash every tool already computes.
* Accounts are ed25519 public keys (32 bytes). Signatures are exactly 64 bytes.
* Addresses are bech32m (BIP-350) with the human-readable part ``opus``:
  ``opus1`` + 52 data characters + a 6-character checksum that detects any
  single typo and any swap of two adjacent characters.
* Dev accounts ``alice`` … ``ferdie`` use the seed ``blake2_256(b"//Alice")``
  (Substrate's ``//Alice`` convention). They are public: never hold value.
* Secret phrases (BIP-39) give keys as Substrate's ed25519 does (substrate-bip39), so
  ``subkey inspect --scheme ed25519 "<phrase>"`` shows the same public key: the phrase's
  *entropy* (the bits its words encode, checksum removed) is stretched with
  PBKDF2-HMAC-SHA512 (salt ``"mnemonic" + password``, 2,048 rounds) and the first 32 of
  the 64 bytes are the ed25519 seed (:func:`keypair_from_entropy`). Turning words into
  entropy needs the BIP-39 word list: the client does that (``client.keys``).
"""

from __future__ import annotations

import hashlib
import unicodedata

import nacl.exceptions
import nacl.signing

from runtime.codec import frozen_dataclass

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
SEED_LENGTH = 32
ADDRESS_HRP = "opus"
DEV_ACCOUNT_NAMES = ("alice", "bob", "charlie", "dave", "eve", "ferdie")


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class InvalidAddress(ValueError):
    """Not an ``opus1…`` address: bad characters, wrong length or a failed checksum."""


class InvalidKey(ValueError):
    """A seed or public key of the wrong length or form."""


@frozen_dataclass
class Keypair:
    """An ed25519 signing key. ``public`` is the account id."""

    seed: bytes
    public: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        if len(seed) != SEED_LENGTH:
            raise InvalidKey(f"an ed25519 seed is {SEED_LENGTH} bytes, got {len(seed)}")
        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        return cls(seed=seed, public=public)

    def sign(self, message: bytes) -> bytes:
        return bytes(nacl.signing.SigningKey(self.seed).sign(message).signature)

    @property
    def address(self) -> str:
        return encode_address(self.public)

    def __repr__(self) -> str:  # never print the seed
        return f"Keypair({self.address})"


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid ed25519 signature of ``message`` by ``public``."""
    if len(signature) != SIGNATURE_LENGTH or len(public) != PUBLIC_KEY_LENGTH:
        return False
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


PHRASE_KDF_ROUNDS = 2048
ENTROPY_LENGTHS = (16, 20, 24, 28, 32)  # 12, 15, 18, 21, 24 words


def keypair_from_entropy(entropy: bytes, password: str = "") -> Keypair:
    """The key of a secret phrase, from the phrase's BIP-39 entropy (see the module docstring).

    ``password`` is the phrase's optional password (``"<phrase>///password"`` in a URI).
    """
    if len(entropy) not in ENTROPY_LENGTHS:
        raise InvalidKey(f"BIP-39 entropy is 16 to 32 bytes in steps of 4, got {len(entropy)}")
    salt = b"mnemonic" + unicodedata.normalize("NFKD", password).encode()
    stretched = hashlib.pbkdf2_hmac("sha512", entropy, salt, PHRASE_KDF_ROUNDS)
    return Keypair.from_seed(stretched[:SEED_LENGTH])


def dev_keypair(name: str) -> Keypair:
    """The well-known, insecure dev key for ``alice`` … ``ferdie``."""
    if name.lower() not in DEV_ACCOUNT_NAMES:
        raise InvalidKey(f"unknown dev account {name!r}; one of {', '.join(DEV_ACCOUNT_NAMES)}")
    return Keypair.from_seed(blake2_256(b"//" + name.lower().capitalize().encode()))


# ---------------------------------------------------------------------------
# bech32m (BIP-173 / BIP-350), used for account addresses.

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & maxv)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & maxv):
        raise InvalidAddress("invalid padding")
    return out


def encode_address(public: bytes) -> str:
    if len(public) != PUBLIC_KEY_LENGTH:
        raise InvalidKey(f"an account id is {PUBLIC_KEY_LENGTH} bytes, got {len(public)}")
    data = _convert_bits(public, 8, 5, pad=True)
    polymod = _polymod(_hrp_expand(ADDRESS_HRP) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return ADDRESS_HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_address(address: str) -> bytes:
    """The 32-byte account id of an ``opus1…`` address; a typo raises InvalidAddress."""
    if not isinstance(address, str) or len(address) > 90:
        raise InvalidAddress(f"not an address: {address!r}")
    if not address.isascii():
        # BIP-173: only ASCII 33..126. Without this, e.g. the Kelvin sign (U+212A)
        # lower-cases to "k" and a second spelling of an address would decode.
        raise InvalidAddress(f"non-ASCII characters in address {address!r}")
    if address.lower() != address and address.upper() != address:
        raise InvalidAddress("mixed-case address")
    text = address.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or hrp != ADDRESS_HRP:
        raise InvalidAddress(f"address must start with {ADDRESS_HRP}1: {address!r}")
    if any(c not in _CHARSET for c in rest) or len(rest) < 7:
        raise InvalidAddress(f"invalid characters in address {address!r}")
    data = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise InvalidAddress(f"checksum mismatch in address {address!r} (a typo?)")
    public = bytes(_convert_bits(data[:-6], 5, 8, pad=False))
    if len(public) != PUBLIC_KEY_LENGTH:
        raise InvalidAddress(f"address does not hold a {PUBLIC_KEY_LENGTH}-byte account id")
    return public
