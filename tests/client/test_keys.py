"""Secret phrases, secret URIs and key files (``client.keys``, ``runtime.crypto``).

The phrase vectors are published ones, so the keys here are the keys other wallets derive:
``subkey inspect --scheme ed25519`` for the first, polkadot-js's ``DEV_SEED`` for
Substrate's dev phrase, and substrate-bip39's own test vectors (all made with the
password ``Substrate``) for the password and 24-word forms.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from client.keys import (
    KEY_FILE_FORMAT,
    MAX_KEY_FILE_BYTES,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    CorruptKeyFile,
    InvalidPhrase,
    InvalidSecretUri,
    KeyFileError,
    PasswordRequired,
    UnsafeKeyFile,
    WrongPassword,
    generate_phrase,
    keypair_from_phrase,
    keypair_from_suri,
    load_key_file,
    write_key_file,
)
from runtime.crypto import InvalidKey, Keypair, dev_keypair, keypair_from_entropy

# `subkey inspect --scheme ed25519 "<phrase>"`, as published in Substrate's documentation.
SUBKEY_PHRASE = "marble crisp cover huge yellow quick warm pudding spatial engage unfair million"
SUBKEY_SEED = "fd72a60d6cd6d226c7dac996b9479bf5f4631434fd6b1bdec3e76e35a39e2be4"
SUBKEY_PUBLIC = "e7988839e659db69ae9ad08c3ef2ccabba44236024a039ebad83bd8fc75dccfb"
# Substrate's DEV_PHRASE and polkadot-js's DEV_SEED (its mini secret).
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_SEED = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
# substrate-bip39's test vectors (src/lib.rs): phrase, entropy, first half of the 64-byte seed.
SUBSTRATE_PASSWORD = "Substrate"
BIP39_VECTORS = [
    ("ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic",
     "9e885d952ad362caeb4efe34a8e91bd2",
     "f4956be6960bc145cdab782e649a5056598fd07cd3f32ceb73421c3da2783324"),
    ("hamster diagram private dutch cause delay private meat slide toddler razor book happy "
     "fancy gospel tennis maple dilemma loan word shrug inflict delay length",
     "68a79eaca2324873eacc50cb9c6eca8cc68ea5d936f98787c60c7ebc74e6ce7c",
     "7c60c555126c297deddddd59f8cdcdc9e3608944455824dd604897984b5cc369"),
    ("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo "
     "zoo vote",
     "ff" * 32,
     "047e89ef7739cbfe30da0ad32eb1720d8f62441dd4f139b981b8e2d0bd412ed4"),
    ("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
     "about",
     "00" * 16,
     "44e9d125f037ac1d51f0a7d3649689d422c2af8b1ec8e00d71db4d7bf6d127e3"),
]
PASSPHRASE = "correct horse battery staple"


# ---------------------------------------------------------------------------
# Phrases


def test_subkey_vector() -> None:
    key = keypair_from_phrase(SUBKEY_PHRASE)
    assert key.seed.hex() == SUBKEY_SEED
    assert key.public.hex() == SUBKEY_PUBLIC


def test_substrate_dev_phrase_gives_polkadot_js_dev_seed() -> None:
    assert keypair_from_phrase(DEV_PHRASE).seed.hex() == DEV_SEED


@pytest.mark.parametrize(("phrase", "entropy", "seed"), BIP39_VECTORS)
def test_substrate_bip39_vectors_with_a_password(phrase: str, entropy: str, seed: str) -> None:
    # The phrase's password, given in a secret URI after ``///``.
    assert keypair_from_suri(f"{phrase}///{SUBSTRATE_PASSWORD}").seed.hex() == seed
    assert keypair_from_phrase(phrase, SUBSTRATE_PASSWORD).seed.hex() == seed
    # runtime.crypto takes the entropy the words encode (no word list in the runtime).
    assert keypair_from_entropy(bytes.fromhex(entropy), SUBSTRATE_PASSWORD).seed.hex() == seed


def test_a_24_word_phrase_and_the_password_change_the_key() -> None:
    phrase, _, seed = BIP39_VECTORS[1]
    assert len(phrase.split()) == 24
    assert keypair_from_phrase(phrase).seed.hex() != seed  # no password: another key
    assert keypair_from_suri(f"{phrase}///").seed == keypair_from_phrase(phrase).seed


def test_phrase_spacing_and_unicode_form_do_not_matter() -> None:
    spaced = "  " + SUBKEY_PHRASE.replace(" ", " \t ") + "\n"
    assert keypair_from_phrase(spaced).public.hex() == SUBKEY_PUBLIC
    assert keypair_from_suri(spaced).public.hex() == SUBKEY_PUBLIC


@pytest.mark.parametrize(("phrase", "message"), [
    (SUBKEY_PHRASE.replace("marble", "marbel"), "'marbel' is not a BIP-39 word"),
    (SUBKEY_PHRASE.replace("million", "marble"), "checksum"),
    (" ".join(SUBKEY_PHRASE.split()[::-1]), "checksum"),
    (" ".join(SUBKEY_PHRASE.split()[:11]), "not 11"),
    (SUBKEY_PHRASE + " marble", "not 13"),
    (SUBKEY_PHRASE.upper(), "is not a BIP-39 word"),
    ("", "not 0"),
])
def test_invalid_phrases(phrase: str, message: str) -> None:
    with pytest.raises(InvalidPhrase, match=message):
        keypair_from_phrase(phrase)


@pytest.mark.parametrize("words", [12, 24])
def test_generated_phrases_round_trip(words: int) -> None:
    phrase = generate_phrase(words)
    assert len(phrase.split()) == words
    key = keypair_from_phrase(phrase)
    assert keypair_from_suri(phrase) == key
    assert generate_phrase(words) != phrase  # random, not a constant


def test_generate_phrase_refuses_other_lengths() -> None:
    with pytest.raises(InvalidPhrase, match="12 or 24"):
        generate_phrase(15)


@pytest.mark.parametrize("length", [0, 15, 17, 33])
def test_runtime_refuses_entropy_of_a_wrong_length(length: int) -> None:
    with pytest.raises(InvalidKey, match="16 to 32 bytes"):
        keypair_from_entropy(bytes(length))


# ---------------------------------------------------------------------------
# Secret URIs


def test_secret_uri_forms() -> None:
    assert keypair_from_suri("//Alice") == dev_keypair("alice")
    assert keypair_from_suri("//ferdie") == dev_keypair("ferdie")
    assert keypair_from_suri("0x" + SUBKEY_SEED).public.hex() == SUBKEY_PUBLIC
    assert keypair_from_suri(DEV_PHRASE).seed.hex() == DEV_SEED


@pytest.mark.parametrize(("suri", "error", "message"), [
    ("//Mallory", InvalidSecretUri, "not a dev key"),
    ("0x1234", InvalidSecretUri, "64 hex digits"),
    ("0x" + "zz" * 32, InvalidSecretUri, "64 hex digits"),
    ("", InvalidSecretUri, "empty secret"),
    ("  \n", InvalidSecretUri, "empty secret"),
    (f"{DEV_PHRASE}//Alice", InvalidSecretUri, "derivation paths"),
    (f"{DEV_PHRASE}/soft", InvalidSecretUri, "derivation paths"),
    ("not a phrase at all", InvalidPhrase, "not 5"),
])
def test_invalid_secret_uris(suri: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        keypair_from_suri(suri)


# ---------------------------------------------------------------------------
# Key files


def key() -> Keypair:
    return keypair_from_phrase(SUBKEY_PHRASE)


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def rewrite(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def test_encrypted_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = document(path)
    assert doc["format"] == KEY_FILE_FORMAT and doc["encrypted"] is True
    assert doc["address"] == key().address
    assert doc["kdf"]["name"] == "argon2id" and doc["cipher"] == "xsalsa20-poly1305"
    assert SUBKEY_SEED not in path.read_text() and "seed" not in doc
    assert load_key_file(path, PASSPHRASE) == key()
    # A new salt and nonce each time: the same key and passphrase give another file.
    other = tmp_path / "again.json"
    write_key_file(other, key(), password=PASSPHRASE)
    assert document(other)["ciphertext"] != doc["ciphertext"]
    assert document(other)["kdf"]["salt"] != doc["kdf"]["salt"]


def test_passphrase_unicode_forms_open_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password="caf\u00e9")  # é precomposed
    assert load_key_file(path, "cafe\u0301") == key()  # e + combining acute


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    for wrong in ("", "correct horse battery stapler", PASSPHRASE.upper()):
        with pytest.raises(WrongPassword, match="wrong passphrase for key file"):
            load_key_file(path, wrong)


def test_missing_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    with pytest.raises(PasswordRequired, match="is encrypted: give its passphrase "
                                               r"\(--password-filename FILE"):
        load_key_file(path)


def test_a_changed_file_fails_the_seal(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    doc = document(path)
    sealed = bytearray.fromhex(doc["ciphertext"])
    sealed[-1] ^= 1
    rewrite(path, {**doc, "ciphertext": sealed.hex()})
    with pytest.raises(WrongPassword):
        load_key_file(path, PASSPHRASE)
    # Another address than the key inside: refused, not trusted.
    rewrite(path, {**doc, "address": dev_keypair("alice").address})
    with pytest.raises(CorruptKeyFile, match="address does not match"):
        load_key_file(path, PASSPHRASE)


@pytest.mark.parametrize("keep", [0, 1, 40, 200, -2])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    text = path.read_text()
    path.write_text(text[:keep])
    with pytest.raises(CorruptKeyFile, match="not JSON"):
        load_key_file(path, PASSPHRASE)


def test_permissions(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    for mode in (0o644, 0o640, 0o604, 0o660, 0o602):
        path.chmod(mode)
        with pytest.raises(UnsafeKeyFile, match=f"mode {mode:04o}.*chmod 600"):
            load_key_file(path, PASSPHRASE)
    path.chmod(0o400)  # read-only for its owner is private
    assert load_key_file(path, PASSPHRASE) == key()


def test_overwrite_makes_an_existing_file_private(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    path.write_text("old")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path, key(), password=PASSPHRASE)
    assert path.read_text() == "old"
    write_key_file(path, key(), password=PASSPHRASE, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path, PASSPHRASE) == key()


def test_plain_key_files_with_an_empty_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    write_key_file(path, key(), password="")
    doc = document(path)
    assert doc == {"format": KEY_FILE_FORMAT, "address": key().address, "encrypted": False,
                   "seed": SUBKEY_SEED}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == key()
    assert load_key_file(path, "any passphrase") == key()  # nothing to open


def test_old_plain_key_files_still_load(tmp_path: Path) -> None:
    # What `opus account new` wrote before key files were encrypted.
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"address": key().address, "seed": SUBKEY_SEED}, indent=2))
    path.chmod(0o600)
    assert load_key_file(path) == key()


@pytest.mark.parametrize(("change", "message"), [
    ({"kdf": {"name": "scrypt"}}, "unknown key derivation"),
    ({"cipher": "aes-256-gcm"}, "unknown cipher"),
    ({"nonce": "00" * 23}, "nonce is 23 bytes, not 24"),
    ({"nonce": "xyz"}, "nonce is not hex"),
    ({"ciphertext": None}, "lacks 'ciphertext'"),
    ({"format": "opus-key/2"}, "format 'opus-key/2'"),
])
def test_malformed_fields(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    rewrite(path, {**document(path), **change})
    with pytest.raises(CorruptKeyFile, match=message):
        load_key_file(path, PASSPHRASE)


@pytest.mark.parametrize(("name", "value"), [
    ("memlimit", 1 << 62),
    ("memlimit", MAX_MEMLIMIT + 1024),
    ("memlimit", 0),
    ("memlimit", "67108864"),
    ("opslimit", 1 << 40),
    ("opslimit", MAX_OPSLIMIT + 1),
    ("opslimit", 0),
    ("opslimit", True),
])
def test_hostile_kdf_limits_are_refused_before_any_work(tmp_path: Path, name: str,
                                                        value: Any) -> None:
    """A key file says how much memory and time its KDF takes: beyond libsodium's
    "sensitive" limits (1 GiB, 4 passes) it is refused before argon2id runs, so a file
    cannot make the reader allocate 4 EiB or spin for hours."""
    path = tmp_path / "me.json"
    write_key_file(path, key(), password=PASSPHRASE)
    doc = document(path)
    rewrite(path, {**doc, "kdf": {**doc["kdf"], name: value}})
    with pytest.raises(CorruptKeyFile, match=f"kdf.{name} must be an integer"):
        load_key_file(path, PASSPHRASE)


def test_huge_and_deeply_nested_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"seed": SUBKEY_SEED, "pad": "x" * MAX_KEY_FILE_BYTES}))
    path.chmod(0o600)
    with pytest.raises(CorruptKeyFile, match="larger than 65536 bytes"):
        load_key_file(path)
    path.write_text("[" * 30_000 + "]" * 30_000)
    with pytest.raises(CorruptKeyFile, match="not JSON"):
        load_key_file(path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(tmp_path / "nope.json")
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="is a directory"):
        load_key_file(directory)
