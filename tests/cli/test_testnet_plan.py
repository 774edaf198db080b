"""What ``opus testnet`` prepares before it starts a node (no process started here): a
freshly generated key per validator in that node's keystore, a spec whose authorities are
those keys and whose boot nodes are every node, a sudo key file, node command lines without
dev keys, and a base dir that resumes the same chain; the slot per network size; the
``last-testnet`` pointer ``status`` reads; the finality-lag flag."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import pytest

from client.keys import load_key_file
from genesis import build_genesis, load_spec
from genesis.spec import local_spec, spec_to_json
from node.cli import testnet
from node.informant import FINALITY_LAG_WARNING_BLOCKS, finality_lag_note
from node.keystore import AURA, GRAN, Keystore
from runtime.crypto import DEV_ACCOUNT_NAMES, dev_keypair, encode_address


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's data dir (where ``last-testnet`` goes), private to the test."""
    home = tmp_path / "data-home"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def test_each_validator_gets_a_generated_key_in_its_own_keystore(tmp_path: Path) -> None:
    base = tmp_path / "net"
    base.mkdir()
    planned = testnet.plan(base, 5, None, None)
    spec = load_spec(str(planned.spec))
    dev = {dev_keypair(n).public for n in DEV_ACCOUNT_NAMES}
    assert len(spec.authorities) == 5 and not dev & set(spec.authorities)
    assert len(set(spec.authorities)) == 5
    for i, (entry, authority) in enumerate(zip(planned.entries, spec.authorities, strict=True)):
        assert entry.name == f"node{i + 1}" and entry.key == encode_address(authority)
        keystore = Keystore(Path(entry.base_path) / "keystore")
        assert keystore.publics(AURA) == [authority] and keystore.publics(GRAN) == [authority]
        key = keystore.key(AURA, authority)
        assert key is not None and key.public == authority
        # The node is a validator with its keystore; no dev key; boot nodes from the spec.
        assert "--validator" in entry.command and "--bootnodes" not in entry.command
        assert not any(f"--{n}" in entry.command for n in DEV_ACCOUNT_NAMES)
        assert entry.command[entry.command.index("--chain") + 1] == str(planned.spec)
    assert spec.boot_nodes == tuple(e.multiaddr for e in planned.entries)
    assert spec.chain_type == "Local" and spec.id == testnet.TESTNET_ID
    # The sudo account: a generated key of its own, endowed, in a private key file.
    sudo = load_key_file(planned.sudo_key_file)
    assert spec.sudo == sudo.public and sudo.public not in dev and sudo.address == planned.sudo
    assert stat.S_IMODE(os.stat(planned.sudo_key_file).st_mode) == 0o600
    endowed = dict(spec.balances)
    assert all(endowed[k] > 0 for k in [sudo.public, *spec.authorities])
    assert all(endowed[dev_keypair(n).public] > 0 for n in DEV_ACCOUNT_NAMES)
    assert planned.slot_ms == testnet.default_slot_ms(5) == spec.slot_duration_ms


def test_a_base_dir_resumes_the_same_chain_with_new_ports(tmp_path: Path) -> None:
    base = tmp_path / "net"
    base.mkdir()
    first = testnet.plan(base, 3, 1500, None)
    genesis = build_genesis(load_spec(str(first.spec))).hash
    again = testnet.plan(base, 3, None, None)
    spec = load_spec(str(again.spec))
    assert again.resumed and not first.resumed
    assert build_genesis(spec).hash == genesis  # the same chain and keys
    assert [e.key for e in again.entries] == [e.key for e in first.entries]
    assert spec.boot_nodes == tuple(e.multiaddr for e in again.entries)
    assert again.slot_ms == 1500  # a resumed testnet keeps its slot
    for argv, message in [((4, None), "a testnet of 3 validators, not 4"),
                          ((3, 2000), "1500 ms slots, not 2000")]:
        with pytest.raises(testnet.TestnetError, match=message):
            testnet.plan(base, *argv, None)


def test_a_base_dir_without_the_keys_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "old"
    base.mkdir()
    # A spec of the dev-key launcher (or any spec whose keys are not in the keystores).
    (base / "spec.json").write_text(json.dumps(spec_to_json(local_spec(2, 1000))))
    with pytest.raises(testnet.TestnetError, match="node1's keystore .* lacks its authority key"):
        testnet.plan(base, 2, None, None)


def test_slot_grows_with_the_network() -> None:
    slots = [testnet.default_slot_ms(n) for n in range(1, testnet.MAX_VALIDATORS + 1)]
    assert slots == sorted(slots) and slots[0] >= testnet.MIN_SLOT_MS
    assert testnet.default_slot_ms(testnet.MAX_VALIDATORS) <= testnet.MAX_SLOT_MS


def test_status_finds_the_last_testnet_without_base_dir(
        tmp_path: Path, data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "net"
    base.mkdir()
    planned = testnet.plan(base, 2, 1000, None)
    manifest = {"pid": None, "validators": 2, "slotMs": 1000, "spec": str(planned.spec),
                "nodes": [vars(e) for e in planned.entries]}
    (base / testnet.MANIFEST).write_text(json.dumps(manifest))
    assert testnet._last_testnet() is None  # nothing launched yet by this user
    testnet._remember(base)
    assert testnet.last_testnet_pointer() == data_home / "opus" / "last-testnet"
    assert testnet.find_base_dir(None) == base
    code = testnet.status(argparse.Namespace())
    out = capsys.readouterr().out
    assert code == 0 and f"Testnet in {base}" in out
    for entry in planned.entries:  # nothing runs: each node unreachable, with its address
        line = next(ln for ln in out.splitlines() if ln.startswith(entry.name + " "))
        assert "UNREACHABLE" in line and entry.multiaddr in line
    # A pointer to a directory that no longer holds a testnet is not followed.
    (base / testnet.MANIFEST).unlink()
    assert testnet._last_testnet() is None


def test_finality_lag_is_flagged_past_the_threshold() -> None:
    limit = FINALITY_LAG_WARNING_BLOCKS
    assert finality_lag_note(100, 100 - limit) == ""
    assert finality_lag_note(100, 99 - limit) == f"⚠️ finality lag {limit + 1} blocks"
    assert testnet.lag_text(50, 50 - limit) == str(limit)
    assert testnet.lag_text(50, 49 - limit) == f"{limit + 1} ⚠️ stalled"
