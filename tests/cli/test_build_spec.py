"""``opus build-spec`` for a network of one's own: authorities, endowments, sudo, boot nodes,
name, id, chain type and slot; the checks on each; and, with real processes, a node that finds
its peer only through the spec's boot nodes, and the hint of a node that has none."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
from processes import BLOCK_TIMEOUT_S, NodeProcess, free_port

from genesis import build_genesis, load_spec
from genesis.spec import (
    MAX_BOOT_NODES,
    ChainSpecError,
    check_boot_node,
    spec_from_json,
    spec_to_json,
)
from node import nodekey
from node.cli import main
from node.informant import NO_PEERS_HINT_AFTER_S
from runtime.crypto import Keypair, dev_keypair, encode_address
from runtime.modules import validators

ALICE, BOB, CHARLIE = (dev_keypair(n) for n in ("alice", "bob", "charlie"))
PEER = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"
BOOT = f"/ip4/127.0.0.1/tcp/30333/p2p/{PEER}"
ONE = 10**12


def new_key() -> Keypair:
    return Keypair.from_seed(secrets.token_bytes(32))


def build(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["build-spec", *argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------
# a spec of one's own


def test_every_flag_lands_in_the_spec_and_the_spec_builds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = [new_key() for _ in range(7)]
    sudo = new_key()
    argv = ["--chain", "local", "--name", "Opus Live Net", "--id", "opus_live",
            "--chain-type", "Live", "--slot-ms", "3000", "--sudo", sudo.address,
            "--endow", f"{sudo.address}=1000OPUS", "--endow", f"{keys[0].address}=2.5OPUS",
            "--endow", f"{keys[1].address}=7", "--bootnode", BOOT]
    for key in keys:
        argv += ["--authority", key.address]
    code, out, err = build(argv, capsys)
    assert code == 0, err
    assert err == ""  # no dev key anywhere: nothing to warn about
    document = json.loads(out)
    assert (document["name"], document["id"], document["chainType"]) == \
        ("Opus Live Net", "opus_live", "Live")
    assert document["bootNodes"] == [BOOT]
    genesis = document["genesis"]
    assert genesis["slotDurationMs"] == 3000
    assert genesis["authorities"] == [k.address for k in keys]  # in the order given
    assert genesis["sudo"] == sudo.address
    assert genesis["balances"] == [[sudo.address, str(1000 * ONE)],
                                   [keys[0].address, str(5 * ONE // 2)], [keys[1].address, "7"]]
    path = tmp_path / "live.json"
    path.write_text(out)
    spec = load_spec(str(path))
    assert spec.authorities == tuple(k.public for k in keys) and spec.boot_nodes == (BOOT,)
    build_genesis(spec)
    # --raw of the same flags is the same genesis.
    code, raw_out, _ = build([*argv, "--raw"], capsys)
    assert code == 0
    raw_path = tmp_path / "raw.json"
    raw_path.write_text(raw_out)
    raw = load_spec(str(raw_path))
    assert raw.raw is not None and raw.boot_nodes == (BOOT,)
    assert build_genesis(raw).hash == build_genesis(spec).hash


def test_flags_not_given_keep_the_base_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = build(["--chain", "local"], capsys)
    base = json.loads(out)
    code, out, err = build(["--chain", "local", "--authority", "charlie", "--authority",
                            "alice"], capsys)
    assert code == 0
    custom = json.loads(out)
    assert custom["genesis"]["authorities"] == [CHARLIE.address, ALICE.address]
    assert custom["genesis"]["balances"] == base["genesis"]["balances"]
    assert (custom["id"], custom["genesis"]["sudo"]) == (base["id"], base["genesis"]["sudo"])
    # A Local spec endowing the public dev keys is allowed, and said so.
    assert "warning" in err and "dev keys" in err and "authority alice" in err


def test_a_network_of_the_largest_size(capsys: pytest.CaptureFixture[str]) -> None:
    keys = [new_key() for _ in range(validators.MAX_AUTHORITIES)]
    argv = ["--chain", "local"] + [a for k in keys for a in ("--authority", k.address)]
    code, out, err = build(argv, capsys)
    assert code == 0, err
    assert len(json.loads(out)["genesis"]["authorities"]) == validators.MAX_AUTHORITIES
    code, _, err = build([*argv, "--authority", new_key().address], capsys)
    assert code == 1
    assert err.startswith("Error: chain spec: at most 100 authorities, not 101")


@pytest.mark.parametrize("argv, code, message", [
    (["--authority", "alice", "--authority", "bob", "--authority", "alice"], 1,
     f"authority {ALICE.address} appears twice"),
    (["--endow", "bob=1", "--endow", "bob=2"], 1, f"account {BOB.address} is endowed twice"),
    (["--authority", "opus1nope"], 2, "argument --authority"),
    (["--sudo", "0x1234"], 2, "argument --sudo"),
    (["--endow", "alice"], 2, "an endowment is ADDR=AMOUNT"),
    (["--endow", "alice=1.5"], 2, "not an amount"),
    (["--endow", "alice=-3"], 2, "amount"),
    (["--bootnode", "/ip4/127.0.0.1/tcp/30333"], 2, "a boot node is /ip4|ip6"),
    (["--bootnode", f"/ip4/127.0.0.1/udp/30333/p2p/{PEER}"], 2, "a boot node is"),
    (["--bootnode", f"/ip4/127.0.0.1/tcp/70000/p2p/{PEER}"], 2, "a boot node is"),
    (["--bootnode", "/ip4/127.0.0.1/tcp/1/p2p/" + "1" * 40], 1, "--bootnode: invalid peer"),
    (["--bootnode", f"/ip4/999.1.1.1/tcp/1/p2p/{PEER}"], 1, "--bootnode: invalid peer"),
    (["--id", "my net"], 1, "id 'my net' is not allowed"),
    (["--slot-ms", "0"], 2, "a slot duration in ms must be"),
    (["--chain-type", "Production"], 2, "invalid choice"),
])
def test_what_cannot_make_a_network_is_refused_by_name(
        argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    got, out, err = build(["--chain", "local", *argv], capsys)
    assert (got, out) == (code, "")
    assert message in err
    if code == 1:
        assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err


def test_a_raw_spec_cannot_be_customized(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = build(["--chain", "dev", "--raw"], capsys)
    path = tmp_path / "raw.json"
    path.write_text(out)
    code, out, err = build(["--chain", str(path), "--authority", "bob"], capsys)
    assert code == 1 and "a raw spec" in err


def test_a_spec_file_is_checked_when_read() -> None:
    document = spec_to_json(load_spec("local"))
    for bad in ["/ip4/127.0.0.1/tcp/30333", f"/ip4/127.0.0.1/udp/1/p2p/{PEER}", "x"]:
        with pytest.raises(ChainSpecError, match="boot node"):
            spec_from_json(dict(document, bootNodes=[bad]))
    with pytest.raises(ChainSpecError, match="at most 64 boot nodes"):
        spec_from_json(dict(document, bootNodes=[f"/ip4/10.0.0.1/tcp/{i + 1}/p2p/{PEER}"
                                                 for i in range(MAX_BOOT_NODES + 1)]))
    too_many = [encode_address(new_key().public) for _ in range(validators.MAX_AUTHORITIES + 1)]
    with pytest.raises(ChainSpecError, match="at most 100 authorities"):
        spec_from_json(dict(document, genesis=dict(document["genesis"], authorities=too_many)))
    twice = [ALICE.address, BOB.address, ALICE.address]
    with pytest.raises(ChainSpecError, match="appears twice"):
        spec_from_json(dict(document, genesis=dict(document["genesis"], authorities=twice)))
    # Every form a node can dial passes.
    for good in [BOOT, f"/ip6/::1/tcp/30333/p2p/{PEER}",
                 f"/dns4/boot.example.org/tcp/30333/p2p/{PEER}",
                 f"/dns/boot.example.org/tcp/1/p2p/{PEER}"]:
        assert check_boot_node(good) == good


# ---------------------------------------------------------------------------
# real nodes: the spec's boot nodes are dialled; a node without any says so


def informant_lines(log: str) -> int:
    return len(re.findall(r"\(\d+ peers\), best: #", log))


@pytest.mark.slow
def test_a_node_finds_its_peer_through_the_specs_boot_nodes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "a.key"
    nodekey.write_key_file(key_file, nodekey.generate())
    peer_id = nodekey.peer_id(nodekey.read_key_file(key_file))
    p2p_port = free_port()
    common = ["--chain", "local", "--id", "bootnet", "--authority", "alice", "--slot-ms", "1000"]
    code, out, _ = build(common, capsys)
    assert code == 0
    lonely_spec = tmp_path / "lonely.json"
    lonely_spec.write_text(out)
    address = f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}"
    code, out, _ = build([*common, "--bootnode", address], capsys)
    assert code == 0
    boot_spec = tmp_path / "boot.json"
    boot_spec.write_text(out)

    # A: the authority, started from the spec without boot nodes and no --bootnodes.
    a = NodeProcess(["--chain", str(lonely_spec), "--alice", "--base-path", str(tmp_path / "a"),
                     "--node-key-file", str(key_file), "--listen-addr",
                     f"/ip4/127.0.0.1/tcp/{p2p_port}"], tmp_path / "a.log")
    b: NodeProcess | None = None
    try:
        hint = "No peers and no boot nodes: start with --bootnodes /ip4/"
        a.wait_for(lambda: hint in a.log, NO_PEERS_HINT_AFTER_S + BLOCK_TIMEOUT_S,
                   "the no-peers hint")
        a.wait_for_height(2)
        # B: a full node whose only way to A is the spec's boot node.
        b = NodeProcess(["--chain", str(boot_spec), "--base-path", str(tmp_path / "b")],
                        tmp_path / "b.log")
        assert "--bootnodes" not in " ".join(b.proc.args)  # type: ignore[arg-type]
        node_b = b
        target = (a.best_number() or 0) + 2
        b.wait_for(lambda: (node_b.best_number() or 0) >= target, BLOCK_TIMEOUT_S,
                   f"B importing #{target} from A")
        assert int(b.rpc("system_health")["peers"]) >= 1
        assert b.rpc("chain_getBlockHash", [target]) == a.rpc("chain_getBlockHash", [target])
        peers = b.rpc("system_peers")
        assert peer_id in [p["peerId"] for p in peers]
        # B has a boot node, and a peer: three status lines later (past the hint's
        # delay), it has not printed the hint.
        b.wait_for(lambda: informant_lines(node_b.log) >= 3, BLOCK_TIMEOUT_S,
                   "three informant lines")
        assert "No peers and no boot nodes" not in b.log
        assert a.log.count(hint) == 1  # said once
    finally:
        if b is not None:
            b.stop()
        a.stop()
