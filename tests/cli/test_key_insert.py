"""``opus key insert``: Substrate's flags, the secret URI from the command line or a file,
the keystore password from a file, and one ``Error:`` line for each thing that is wrong
(the node side, a validator using the inserted key: tests/node/test_validator_keys.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from client.keys import keypair_from_phrase
from node.cli import main
from node.keystore import AURA, GRAN, Keystore, file_name

PHRASE = "ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic"
KEY = keypair_from_phrase(PHRASE)


def run(argv: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_insert_into_the_base_paths_keystore(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    code, out, err = run(["key", "insert", "--chain", "dev", "--base-path", base,
                          "--key-type", "gran", "--suri", PHRASE], capsys)
    assert code == 0, err
    assert out.strip() == f"Inserted the gran key {KEY.address} into {base / 'keystore'}"
    path = base / "keystore" / file_name(GRAN, KEY.public)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert Keystore(base / "keystore").key(GRAN, KEY.public) == KEY
    assert PHRASE not in out + err and KEY.seed.hex() not in out + err


def test_suri_and_password_from_files(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    keystore = tmp_path / "elsewhere"
    suri = tmp_path / "suri"
    suri.write_text(PHRASE + "///extra\n")
    password = tmp_path / "password"
    password.write_text("the keystore password\r\n")
    code, out, err = run(["key", "insert", "--keystore-path", keystore, "--key-type", "aura",
                          "--suri", suri, "--password-filename", password], capsys)
    assert code == 0, err
    key = keypair_from_phrase(PHRASE, "extra")
    assert out.strip().endswith("(encrypted)") and key.address in out
    assert Keystore(keystore, "the keystore password").key(AURA, key.public) == key


@pytest.mark.parametrize(("extra", "message"), [
    (["--suri", "//Mallory"], "//Mallory is not a dev key"),
    (["--suri", PHRASE.replace("ozone", "drill")], "checksum"),
    (["--suri", "0x1234"], "32-byte ed25519 seed"),
    ([], "give the key with --suri"),  # no terminal to ask on
    (["--suri", "//Alice", "--password-filename", "{empty}"], "is empty"),
    (["--suri", "//Alice", "--password-filename", "{missing}"], "cannot read the password"),
    (["--suri", "//Alice", "--password-interactive"], "needs a terminal"),
])
def test_insert_errors(extra: list[str], message: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").write_text("\n")
    extra = [e.format(empty=tmp_path / "empty", missing=tmp_path / "missing") for e in extra]
    code, out, err = run(["key", "insert", "--keystore-path", tmp_path / "ks",
                          "--key-type", "aura", *extra], capsys)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1 and message in err
    assert not any((tmp_path / "ks").glob("6*"))


def test_a_keystore_path_that_is_a_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = run(["key", "insert", "--keystore-path", tmp_path / "file", "--key-type",
                        "aura", "--suri", "//Alice"], capsys)
    assert code == 1 and "not a directory" in err


def test_key_type_is_aura_or_gran(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["key", "insert", "--key-type", "babe", "--suri", "//Alice"], capsys)
    assert code == 2 and "invalid choice: 'babe'" in err
