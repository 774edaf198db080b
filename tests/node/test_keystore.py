"""The node's keystore (node.keystore): Substrate's file layout, key files sealed with the
keystore password, permission bits, and one named error per way a file can be unusable."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from client.keys import KEY_FILE_FORMAT, keypair_from_phrase, write_key_file
from node.config import NodeConfig
from node.keystore import (
    AURA,
    GRAN,
    Keystore,
    KeystoreError,
    KeystorePasswordRequired,
    KeystoreWriteFailed,
    MismatchedKeyFile,
    UnknownKeyType,
    UnreadableKeyFile,
    WrongKeystorePassword,
    file_name,
    parse_file_name,
)
from runtime.crypto import dev_keypair

PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
KEY = keypair_from_phrase(PHRASE)
BOB = dev_keypair("bob")
PASSWORD = "keystore-password-7f3a"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_substrate_file_names() -> None:
    # "aura" and "gran" as hex, then the public key (Substrate's keystore layout).
    assert file_name(AURA, KEY.public) == "61757261" + KEY.public.hex()
    assert file_name(GRAN, KEY.public) == "6772616e" + KEY.public.hex()
    assert parse_file_name(file_name(GRAN, KEY.public)) == (GRAN, KEY.public)
    assert parse_file_name("README") is None
    assert parse_file_name(".6772616e" + KEY.public.hex() + ".1234.tmp") is None


def test_plain_keystore_round_trip_and_permission_bits(tmp_path: Path) -> None:
    path = tmp_path / "base" / "keystore"
    keystore = Keystore(path)
    assert not keystore.has(AURA, KEY.public) and keystore.key(AURA, KEY.public) is None
    keystore.insert(AURA, KEY)
    keystore.insert(GRAN, KEY)
    assert mode(path) == 0o700
    files = sorted(p.name for p in path.iterdir())
    assert files == sorted([file_name(AURA, KEY.public), file_name(GRAN, KEY.public)])
    for name in files:
        assert mode(path / name) == 0o600
        document = json.loads((path / name).read_text())
        # Plain (no password): an opus-key/1 key file holding the seed in clear.
        assert document["format"] == KEY_FILE_FORMAT and document["encrypted"] is False
        assert document["address"] == KEY.address
    # Another instance (a restarted node) reads them back.
    again = Keystore(path)
    assert again.has(AURA, KEY.public) and again.has(GRAN, KEY.public)
    assert again.key(GRAN, KEY.public) == KEY
    assert again.publics(AURA) == again.publics(GRAN) == [KEY.public]
    assert again.publics(AURA) == [KEY.public] and not again.has(AURA, BOB.public)


def test_a_password_seals_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    keystore = Keystore(path, "correct horse")
    assert keystore.encrypted
    keystore.insert(AURA, KEY)
    text = (path / file_name(AURA, KEY.public)).read_text()
    assert json.loads(text)["encrypted"] is True and KEY.seed.hex() not in text
    assert Keystore(path, "correct horse").key(AURA, KEY.public) == KEY
    Keystore(path, "correct horse").check()

    wrong = Keystore(path, "wrong horse")
    with pytest.raises(WrongKeystorePassword, match="wrong keystore password"):
        wrong.check()
    with pytest.raises(WrongKeystorePassword):
        wrong.key(AURA, KEY.public)
    with pytest.raises(WrongKeystorePassword):  # the same answer again, from the cache
        wrong.key(AURA, KEY.public)
    with pytest.raises(KeystorePasswordRequired, match="--password-filename"):
        Keystore(path).check()
    assert wrong.has(AURA, KEY.public)  # it is there, only unusable with this password


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    keystore = Keystore(path, "one")
    keystore.insert(AURA, KEY)
    assert keystore.key(AURA, KEY.public) == KEY  # decrypted and cached
    Keystore(path, "two").insert(AURA, KEY)  # another process re-seals it
    with pytest.raises(WrongKeystorePassword):
        keystore.key(AURA, KEY.public)


def test_unusable_files_have_named_errors(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    keystore = Keystore(path)
    keystore.insert(AURA, KEY)
    source = path / file_name(AURA, KEY.public)

    # A file whose key is not the one its name says.
    shutil.copy(source, path / file_name(AURA, BOB.public))
    os.chmod(path / file_name(AURA, BOB.public), 0o600)
    with pytest.raises(MismatchedKeyFile, match=BOB.address):
        keystore.key(AURA, BOB.public)

    # A truncated file.
    truncated = path / file_name(GRAN, KEY.public)
    truncated.write_text(source.read_text()[:40])
    truncated.chmod(0o600)
    with pytest.raises(UnreadableKeyFile, match="not JSON"):
        keystore.key(GRAN, KEY.public)

    # A file other users may read; usable again once it is made private.
    fresh = Keystore(path)
    source.chmod(0o644)
    with pytest.raises(UnreadableKeyFile, match="chmod 600"):
        fresh.key(AURA, KEY.public)
    source.chmod(0o600)
    assert fresh.key(AURA, KEY.public) == KEY

    with pytest.raises(UnknownKeyType):
        keystore.insert("babe", KEY)
    (tmp_path / "file").write_text("")
    with pytest.raises(KeystoreWriteFailed, match="not a directory"):
        Keystore(tmp_path / "file").insert(AURA, KEY)


def test_no_error_message_holds_a_secret(tmp_path: Path) -> None:
    """Every error a keystore raises names keys by address or public key only."""
    path = tmp_path / "keystore"
    Keystore(path, PASSWORD).insert(AURA, KEY)
    errors: list[KeystoreError] = []
    for attempt in (lambda: Keystore(path, "nope").key(AURA, KEY.public),
                    lambda: Keystore(path).check()):
        with pytest.raises(KeystoreError) as info:
            attempt()
        errors.append(info.value)
    plain = tmp_path / "plain"
    Keystore(plain).insert(AURA, KEY)
    shutil.copy(plain / file_name(AURA, KEY.public), plain / file_name(AURA, BOB.public))
    os.chmod(plain / file_name(AURA, BOB.public), 0o600)
    with pytest.raises(KeystoreError) as info:
        Keystore(plain).key(AURA, BOB.public)
    errors.append(info.value)
    for error in errors:
        text = f"{error} {error!r}"
        assert KEY.seed.hex() not in text and "bottom drive" not in text and PASSWORD not in text
    assert PASSWORD not in repr(Keystore(path, PASSWORD))
    config = NodeConfig(base_path=tmp_path, keystore_password=PASSWORD)
    assert PASSWORD not in repr(config) and PASSWORD not in str(config)


def test_in_memory_and_ephemeral_keys_are_never_written(tmp_path: Path) -> None:
    memory = Keystore.in_memory(KEY)
    assert memory.has(AURA, KEY.public) and memory.key(GRAN, KEY.public) == KEY
    generated = memory.generate()
    assert memory.publics(AURA) == sorted([KEY.public, generated.public])

    path = tmp_path / "keystore"
    keystore = Keystore(path)
    keystore.insert_ephemeral(AURA, KEY)
    assert keystore.has(AURA, KEY.public) and keystore.key(AURA, KEY.public) == KEY
    assert not path.exists()


def test_generate_stores_one_key_in_both_roles(tmp_path: Path) -> None:
    keystore = Keystore(tmp_path / "keystore", "pw")
    key = keystore.generate()
    assert keystore.key(AURA, key.public) == key and keystore.key(GRAN, key.public) == key
    assert Keystore(tmp_path / "keystore", "pw").key(GRAN, key.public) == key
    only_aura = keystore.generate(AURA)
    assert keystore.has(AURA, only_aura.public) and not keystore.has(GRAN, only_aura.public)


def test_version_sees_keys_added_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keystore"
    keystore = Keystore(path)
    keystore.check()  # makes the directory
    before = keystore.version()
    # What `opus key insert` does next to a running node: a key file renamed into place.
    write_key_file(tmp_path / "staged", BOB, password="")
    os.replace(tmp_path / "staged", path / file_name(AURA, BOB.public))
    assert keystore.version() != before
    assert keystore.key(AURA, BOB.public) == BOB
    after = keystore.version()
    keystore.insert_ephemeral(GRAN, KEY)
    assert keystore.version() != after
