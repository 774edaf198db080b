"""Validators with their own keys, as real ``opus`` processes: ``opus key insert`` into a
keystore sealed with a password, then a validator authoring and finalizing with that key;
a key inserted over RPC into a running validator, used without a restart; the keystore
RPCs; a wrong keystore password; and no secret in any log line or error. A one-validator
chain whose authority is a fresh phrase's key, from a spec written by the test. Every
process is ended by its PID; every wait is bounded."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processes import ROOT, STARTUP_TIMEOUT_S, NodeProcess

from client.keys import generate_phrase, keypair_from_phrase
from genesis import dev_spec
from genesis.spec import spec_to_json
from node.keystore import AURA, GRAN, file_name
from runtime.crypto import Keypair

pytestmark = pytest.mark.slow

SLOT_MS = 1000
PASSWORD = "keystore password 5c1e"


def opus(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def one_validator_spec(path: Path, key: Keypair) -> Path:
    """A dev-like chain whose only authority is ``key``."""
    spec = dataclasses.replace(dev_spec(), name="Opus Keys Test", id="opus_keys_test",
                               authorities=(key.public,), slot_duration_ms=SLOT_MS)
    path.write_text(json.dumps(spec_to_json(spec)))
    return path


def answer(node: NodeProcess, method: str, *params: Any) -> dict[str, Any]:
    """The whole JSON-RPC answer (a result or an error)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": list(params)}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{node.rpc_port}/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def finalized_number(node: NodeProcess) -> int:
    head = node.rpc("chain_getFinalizedHead")
    return int(node.rpc("chain_getHeader", [head])["number"], 16)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_no_secret(text: str, phrase: str, key: Keypair) -> None:
    assert phrase not in text
    assert " ".join(phrase.split()[:3]) not in text  # not even part of it
    assert key.seed.hex() not in text and key.seed.hex().upper() not in text
    assert PASSWORD not in text


def test_key_insert_then_a_validator_authors_with_it(
        tmp_path: Path, spawn: Callable[..., NodeProcess]) -> None:
    phrase = generate_phrase()
    key = keypair_from_phrase(phrase)
    spec = one_validator_spec(tmp_path / "spec.json", key)
    base = tmp_path / "validator"
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")  # the final line break is not part of it
    password.chmod(0o600)

    # `opus key insert`, Substrate's command and flags, once per key type.
    outputs = []
    for key_type in (AURA, GRAN):
        result = opus("key", "insert", "--chain", spec, "--base-path", base,
                      "--key-type", key_type, "--suri", phrase, "--password-filename", password)
        assert result.returncode == 0, result.stderr
        assert key.address in result.stdout
        outputs.append(result.stdout + result.stderr)
    keystore = base / "keystore"
    assert mode(keystore) == 0o700
    names = sorted(p.name for p in keystore.iterdir())
    assert names == sorted(file_name(t, key.public) for t in (AURA, GRAN))
    for name in names:
        assert mode(keystore / name) == 0o600
        document = json.loads((keystore / name).read_text())
        assert document["encrypted"] is True and key.seed.hex() not in json.dumps(document)

    # A second insert with another password, or none, is refused: one keystore, one password.
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    for flags in (["--password-filename", wrong], []):
        result = opus("key", "insert", "--chain", spec, "--base-path", base,
                      "--key-type", AURA, "--suri", "//Bob", *flags)
        assert result.returncode == 1
        assert [line for line in result.stderr.splitlines() if line] == [
            result.stderr.strip()] and result.stderr.startswith("Error: ")
        assert "Traceback" not in result.stderr
        outputs.append(result.stdout + result.stderr)
    assert len(list(keystore.iterdir())) == 2

    # A validator with that keystore authors with the key and finalizes (one authority).
    node = spawn("--chain", str(spec), "--base-path", str(base), "--validator",
                 "--password-filename", str(password))
    node.wait_for_height(2)
    node.wait_for(lambda: finalized_number(node) >= 2, 60, "block #2 finalized")
    header = node.rpc("chain_getHeader")
    assert header["author"] == key.address
    assert node.rpc("system_nodeRoles") == ["Authority"]
    assert node.stop() == 0
    log = node.log
    assert f"🔑 Keystore key {key.address} (aura, gran): in the authority set" in log
    assert f"Authoring with the aura key {key.address}" in log
    assert "Traceback" not in log

    # A wrong keystore password: one clear error, exit 1, nothing secret in it.
    refused = spawn("--chain", str(spec), "--base-path", str(base), "--validator",
                    "--password-filename", str(wrong))
    assert refused.wait() == 1
    errors = [line for line in refused.log.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "wrong keystore password" in errors[0], refused.log
    assert "Traceback" not in refused.log

    for text in (log, refused.log, *outputs):
        assert_no_secret(text, phrase, key)


def test_a_key_inserted_by_rpc_is_used_without_a_restart(
        tmp_path: Path, spawn: Callable[..., NodeProcess]) -> None:
    phrase = generate_phrase()
    key = keypair_from_phrase(phrase)
    spec = one_validator_spec(tmp_path / "spec.json", key)
    base = tmp_path / "validator"
    node = spawn("--chain", str(spec), "--base-path", str(base), "--validator",
                 "--rpc-methods", "unsafe")
    node.wait_for(lambda: "holds no key of the authority set" in node.log
                  and "💤 Idle" in node.log, STARTUP_TIMEOUT_S, "the informant's first line")
    # Several slots went by, all the key's: without it the validator authored nothing.
    assert node.best_number() == 0 and "best: #0" in node.log
    public = "0x" + key.public.hex()
    assert node.rpc("author_hasKey", [public, "aura"]) is False
    assert node.rpc("author_hasSessionKeys", [public]) is False

    # Refused inserts answer without quoting the secret.
    refusals = [answer(node, "author_insertKey", "aura", phrase, "0x" + "11" * 32),
                answer(node, "author_insertKey", "aura",
                       phrase.replace(phrase.split()[0], "notaword"), public),
                answer(node, "author_insertKey", "babe", phrase, public)]
    for refused in refusals:
        assert refused["error"]["code"] == -32602, refused
        assert_no_secret(json.dumps(refused), phrase, key)

    assert node.rpc("author_insertKey", ["aura", phrase, public]) is None
    node.wait_for_height(2)  # authoring, no restart
    assert node.rpc("chain_getHeader")["author"] == key.address
    assert node.rpc("author_insertKey", ["gran", phrase, key.address]) is None
    node.wait_for(lambda: finalized_number(node) >= 2, 60, "finality with the gran key")
    assert node.rpc("author_hasKey", [key.address, "gran"]) is True
    assert node.rpc("author_hasSessionKeys", [public]) is True

    # rotateKeys: a new key, in both roles, on disk; only its public part is answered.
    rotated = node.rpc("author_rotateKeys")
    assert isinstance(rotated, str) and len(rotated) == 66 and rotated != public
    assert node.rpc("author_hasKey", [rotated, "aura"]) is True
    assert node.rpc("author_hasKey", [rotated, "gran"]) is True
    assert node.rpc("author_hasSessionKeys", [rotated]) is True
    assert node.rpc("author_hasSessionKeys", ["0x" + "22" * 32]) is False
    keystore = base / "keystore"
    assert mode(keystore) == 0o700
    files = sorted(keystore.iterdir())
    assert [p.name for p in files] == sorted(
        file_name(t, bytes.fromhex(k[2:])) for t in (AURA, GRAN) for k in (public, rotated))
    assert all(mode(p) == 0o600 for p in files)

    assert node.stop() == 0
    log = node.log
    assert f"Authoring with the aura key {key.address}" in log
    assert "Traceback" not in log
    assert_no_secret(log, phrase, key)
