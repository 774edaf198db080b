"""Keys: secret phrases, secret URIs, and key files on disk, encrypted and readable by their
owner only.

Secret phrases are BIP-39 (English word list, 12 or 24 words here, any standard length
read), checked with the ``mnemonic`` package (word list and checksum); the key of a phrase
is Substrate's ed25519 key of it (:func:`runtime.crypto.keypair_from_entropy`; docs/spec.md
§2 has the derivation and test vectors).

A *secret URI* (``suri``) names a key the way Substrate's tools do:

* ``"<phrase>"`` or ``"<phrase>///password"`` (the phrase's optional password);
* ``0x`` followed by a 32-byte ed25519 seed in hex;
* ``//Alice`` … ``//Ferdie``: the public, insecure dev keys.

A key file is JSON, format ``opus-key/1``, mode 0600::

    {"format": "opus-key/1", "address": "opus1…", "encrypted": true,
     "kdf": {"name": "argon2id", "salt": "<16 bytes hex>", "opslimit": 2,
             "memlimit": 67108864},
     "cipher": "xsalsa20-poly1305", "nonce": "<24 bytes hex>",
     "ciphertext": "<hex: the 32-byte seed, sealed>"}

The passphrase is stretched with argon2id (libsodium's ``crypto_pwhash``, the parameters
recorded in the file) into a key for libsodium's secretbox (XSalsa20-Poly1305), which seals
the seed: a wrong passphrase, like any change to the file, fails the seal's check. With
an empty passphrase, given on purpose (``--password ""``), the file holds the seed in
clear (``"encrypted": false, "seed": "<hex>"``), as older key files did (``{"address",
"seed"}``, still read). Every failure has its own error: :class:`WrongPassword`,
:class:`CorruptKeyFile`, :class:`UnsafeKeyFile` (readable by others), :class:`InvalidPhrase`,
:class:`InvalidSecretUri`; all are :class:`KeyFileError` or :class:`client.errors.ClientError`.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import unicodedata
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from mnemonic import Mnemonic

from client.errors import ClientError
from runtime.codec import from_hex0x
from runtime.crypto import (
    DEV_ACCOUNT_NAMES,
    InvalidAddress,
    InvalidKey,
    Keypair,
    decode_address,
    dev_keypair,
    keypair_from_entropy,
)

KEY_FILE_FORMAT = "opus-key/1"
CIPHER = "xsalsa20-poly1305"
KDF = "argon2id"
# libsodium's "interactive" argon2id limits: about 0.1-0.3 s and 64 MiB to open a key file.
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# What a file may ask for (a hostile file must not make the reader allocate without bound).
MAX_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
PHRASE_WORDS = (12, 24)
MAX_KEY_FILE_BYTES = 65_536
PASSWORD_SEPARATOR = "///"

_WORDS = Mnemonic("english")


class KeyFileError(ClientError):
    """A key file that cannot be used; the message names the file and what is wrong."""


class WrongPassword(KeyFileError):
    """The passphrase does not open the key file (or the file was changed)."""


class CorruptKeyFile(KeyFileError):
    """The key file is not a whole key file: truncated, not JSON, or a field is wrong."""


class UnsafeKeyFile(KeyFileError):
    """The key file is readable or writable by users other than its owner."""


class PasswordRequired(KeyFileError):
    """The key file is encrypted and no passphrase was given."""


class InvalidPhrase(ClientError):
    """Not a BIP-39 secret phrase: an unknown word, a wrong number of words or checksum."""


class InvalidSecretUri(ClientError):
    """A secret URI that is none of: a phrase, ``0x`` + a seed, ``//Alice`` … ``//Ferdie``."""


# ---------------------------------------------------------------------------
# Phrases and secret URIs


def generate_phrase(words: int = 12) -> str:
    """A new random BIP-39 phrase of ``words`` words (12 or 24)."""
    if words not in PHRASE_WORDS:
        raise InvalidPhrase(f"a new phrase has 12 or 24 words, not {words}")
    return str(_WORDS.generate(strength=words * 32 // 3))


def keypair_from_phrase(phrase: str, password: str = "") -> Keypair:
    """The key of a BIP-39 phrase (its words are checked first: :class:`InvalidPhrase`)."""
    words = unicodedata.normalize("NFKD", phrase).split()
    normalized = " ".join(words)
    if len(words) not in (12, 15, 18, 21, 24):
        raise InvalidPhrase(f"a secret phrase has 12, 15, 18, 21 or 24 words, not {len(words)}")
    unknown = [w for w in words if w not in _WORDS.wordlist]
    if unknown:
        raise InvalidPhrase(f"{unknown[0]!r} is not a BIP-39 word (English list)")
    if not _WORDS.check(normalized):
        raise InvalidPhrase("the phrase's checksum does not match: a word is wrong or "
                            "the words are out of order")
    return keypair_from_entropy(bytes(_WORDS.to_entropy(normalized)), password)


def keypair_from_suri(suri: str) -> Keypair:
    """The key a secret URI names (see the module docstring)."""
    text = suri.strip()
    if text.startswith("//"):
        name = text[2:]
        if name.lower() not in DEV_ACCOUNT_NAMES:
            raise InvalidSecretUri(f"//{name} is not a dev key (//Alice … //Ferdie)")
        return dev_keypair(name)
    if text.startswith("0x"):
        try:
            return Keypair.from_seed(from_hex0x(text, 32))
        except (ValueError, InvalidKey):
            raise InvalidSecretUri("a 0x secret is a 32-byte ed25519 seed: 64 hex digits") \
                from None
    phrase, _, password = text.partition(PASSWORD_SEPARATOR)
    if not phrase.strip():
        raise InvalidSecretUri("empty secret: give a phrase, 0x + a seed, or //Alice … //Ferdie")
    if "/" in phrase:  # no BIP-39 word has one: Substrate's "<phrase>//hard/soft" paths
        raise InvalidSecretUri("derivation paths (<phrase>//hard, <phrase>/soft) are not "
                               "supported: give the phrase alone, or <phrase>///password")
    return keypair_from_phrase(phrase, password)


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


# ---------------------------------------------------------------------------
# Key files


def seal_key(key: Keypair, password: str) -> dict[str, Any]:
    """The key file document for ``key``: encrypted with ``password``, or plain if empty."""
    document: dict[str, Any] = {"format": KEY_FILE_FORMAT, "address": key.address}
    if not password:
        document.update(encrypted=False, seed=key.seed.hex())
        return document
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_stretch(password, salt, OPSLIMIT, MEMLIMIT))
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = box.encrypt(key.seed, nonce).ciphertext
    document.update(
        encrypted=True,
        kdf={"name": KDF, "salt": salt.hex(), "opslimit": OPSLIMIT, "memlimit": MEMLIMIT},
        cipher=CIPHER, nonce=nonce.hex(), ciphertext=sealed.hex())
    return document


def open_key(document: Any, password: str | None, where: str = "key file") -> Keypair:
    """The key a key file document holds (``password`` None: the caller has none to give)."""
    if not isinstance(document, dict):
        raise CorruptKeyFile(f"{where} is not a key file (a JSON object)")
    if document.get("format", KEY_FILE_FORMAT) != KEY_FILE_FORMAT:
        raise CorruptKeyFile(f"{where} is in format {document.get('format')!r}, not "
                             f"{KEY_FILE_FORMAT!r}")
    if document.get("encrypted", False) is True:
        key = _open_sealed(document, password, where)
    else:
        seed = _hex_field(document, "seed", where)
        try:
            key = Keypair.from_seed(seed)
        except InvalidKey:
            raise CorruptKeyFile(f"{where}: the seed is not 32 bytes") from None
    if document.get("address") not in (None, key.address):
        raise CorruptKeyFile(f"{where}: the address does not match the key it holds")
    return key


def write_key_file(path: str | Path, key: Keypair, *, password: str,
                   overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` (mode 0600), encrypted with ``password`` unless it is ``""``."""
    text = json.dumps(seal_key(key, password), indent=2) + "\n"
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{str(path)!r} already exists (refusing to overwrite a key)") \
            from None
    except OSError as e:
        raise KeyFileError(f"cannot write {str(path)!r}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # also when it existed with wider permissions


def load_key_file(path: str | Path, password: str | None = None) -> Keypair:
    """Read the key in a key file; ``password`` opens an encrypted one.

    Refuses a file other users may read or write (:class:`UnsafeKeyFile`), as ssh does.
    """
    where = f"key file {str(path)!r}"
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            # A key file is under 1 KiB: never read a huge file (or a device) whole.
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(f"{where} is a directory") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {where}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UnsafeKeyFile(f"{where} is accessible by other users (mode "
                            f"{stat.S_IMODE(mode):04o}); make it private: chmod 600 {path}")
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CorruptKeyFile(f"{where} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise CorruptKeyFile(f"{where} is not JSON (truncated or not a key file)") from None
    return open_key(document, password, where)


def key_file_is_encrypted(path: str | Path) -> bool:
    """Whether a readable key file needs a passphrase (False if it cannot be read as one)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("encrypted") is True


def _open_sealed(document: dict[str, Any], password: str | None, where: str) -> Keypair:
    if password is None:
        raise PasswordRequired(f"{where} is encrypted: give its passphrase (--password-filename "
                               "FILE, or --password)")
    kdf = document.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != KDF:
        raise CorruptKeyFile(f"{where}: unknown key derivation {kdf!r} (expected {KDF})")
    if document.get("cipher") != CIPHER:
        raise CorruptKeyFile(f"{where}: unknown cipher {document.get('cipher')!r}")
    opslimit = _limit(kdf, "opslimit", 1, MAX_OPSLIMIT, where)
    memlimit = _limit(kdf, "memlimit", 8192, MAX_MEMLIMIT, where)
    salt = _hex_field(kdf, "salt", where, nacl.pwhash.argon2id.SALTBYTES)
    nonce = _hex_field(document, "nonce", where, nacl.secret.SecretBox.NONCE_SIZE)
    sealed = _hex_field(document, "ciphertext", where)
    box = nacl.secret.SecretBox(_stretch(password, salt, opslimit, memlimit))
    try:
        seed = box.decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPassword(f"wrong passphrase for {where} (or the file was changed)") from None
    try:
        return Keypair.from_seed(seed)
    except InvalidKey:
        raise CorruptKeyFile(f"{where}: the sealed seed is not 32 bytes") from None


def _limit(kdf: dict[str, Any], name: str, low: int, high: int, where: str) -> int:
    value = kdf.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CorruptKeyFile(f"{where}: kdf.{name} must be an integer from {low} to {high}")
    return value


def _stretch(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return bytes(nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, unicodedata.normalize("NFKC", password).encode(), salt,
        opslimit=opslimit, memlimit=memlimit))


def _hex_field(document: dict[str, Any], name: str, where: str,
               length: int | None = None) -> bytes:
    value = document.get(name)
    if not isinstance(value, str):
        raise CorruptKeyFile(f"{where} lacks {name!r}")
    try:
        data = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise CorruptKeyFile(f"{where}: {name} is not hex") from None
    if length is not None and len(data) != length:
        raise CorruptKeyFile(f"{where}: {name} is {len(data)} bytes, not {length}")
    return data


def random_seed() -> bytes:
    """32 bytes from the operating system's random source (a new key without a phrase)."""
    return secrets.token_bytes(32)


__all__ = [
    "KEY_FILE_FORMAT",
    "CorruptKeyFile",
    "InvalidPhrase",
    "InvalidSecretUri",
    "KeyFileError",
    "PasswordRequired",
    "UnsafeKeyFile",
    "WrongPassword",
    "generate_phrase",
    "key_file_is_encrypted",
    "keypair_from_phrase",
    "keypair_from_suri",
    "load_key_file",
    "open_key",
    "parse_account",
    "random_seed",
    "seal_key",
    "write_key_file",
]
