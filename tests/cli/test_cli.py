"""The ``opus`` command line: arguments, subcommands and user errors (no node running)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from processes import ROOT

from client.keys import keypair_from_phrase, load_key_file
from genesis import build_genesis, dev_spec, load_spec
from genesis.spec import spec_to_json
from node import nodekey
from node.chain.blockfile import MAGIC, import_blocks
from node.chain.store import ChainStore, db_path
from node.cli import build_parser, check_node_args, common, main, testnet
from node.cli.run import rpc_exposure
from runtime import codec
from runtime.crypto import dev_keypair
from runtime.execution import build_block
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules.balances import TransferArgs
from runtime.support import make_call

ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def make_chain(base: Path, blocks: int) -> bytes:
    """A dev chain of ``blocks`` blocks authored by alice (block 1 holds a transfer)."""
    genesis = build_genesis(dev_spec())
    with ChainStore.open(base, genesis) as store:
        for i in range(blocks):
            parent = store.best_header
            txs = []
            if i == 0:
                ext = sign_extrinsic(ALICE, make_call(TransferArgs(BOB.public, 10**12)), 0,
                                     genesis.hash, SPEC_VERSION)
                txs.append(codec.encode(ext))
            built = build_block(store.best_state(), store.node_store, parent, txs,
                                timestamp=(parent.slot + 1) * 2000, author=ALICE,
                                genesis_hash=genesis.hash)
            assert not built.invalid
            store.import_block(built.executed)
        return bytes(store.best_hash)


# ---------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize("argv", [
    ["--bogus"],
    ["--rpc-port", "70000"],
    ["--rpc-methods", "maybe"],
    ["--alice", "--bob"],
    ["key"],
    ["key", "inspect"],
    ["export-blocks", "--chain", "dev"],
    ["export-blocks", "--from", "x", "f"],
    ["nonsense-command"],
])
def test_argument_errors_exit_2_with_usage(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "usage: opus" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--rpc-port", "70000"], "argument --rpc-port: a port number must be 0 to 65535, not 70000"),
    (["--port", "x"], "argument --port: not a port number: 'x'"),
    (["--rpc-request-timeout", "nan"], "argument --rpc-request-timeout: not a number of seconds: "
                                       "'nan'"),
    (["--rpc-request-timeout", "0"], "a number of seconds must be more than 0, not 0"),
    (["--pool-limit", "0"], "argument --pool-limit: a transaction count must be at least 1, "
                            "not 0"),
    (["--rpc-max-request-size", "1.5"], "not a size in MiB: '1.5'"),
    (["export-blocks", "--from", "-1", "f"], "a block number must be at least 0, not -1"),
    (["testnet", "--validators", "33"], "a number of validators must be 1 to 32, not 33"),
    (["testnet", "--validators", "0"], "a number of validators must be 1 to 32, not 0"),
    (["testnet", "--slot-ms", "99"], "a slot duration in ms must be 100 to 600000, not 99"),
    (["testnet", "--base-port", "1023"], "a base port must be 1024 to 65439"),
    (["work", "show", "x"], "argument ID: not an id: 'x'"),
    (["usage", "list", "--work", "1", "--limit", "1001"],
     "a page size must be 0 to 1000, not 1001"),
    (["license", "offer", "1", "--royalty", "10001"], "a value in basis points must be 0 to 10000"),
])
def test_number_arguments_name_the_value_and_its_range(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert "usage: opus" in err and message in err.strip().splitlines()[-1], err


def test_number_arguments_accept_their_whole_range() -> None:
    parser = build_parser()
    args = parser.parse_args(["--rpc-port", "0", "--port", "65535", "--pool-limit", "1",
                              "--rpc-request-timeout", "0.25"])
    assert (args.rpc_port, args.port, args.pool_limit) == (0, 65535, 1)
    assert args.rpc_request_timeout == 0.25
    args = parser.parse_args(["testnet", "--validators", "32", "--slot-ms", "600000",
                              "--base-port", "65439"])
    assert (args.validators, args.slot_ms, args.base_port) == (32, 600000, 65439)
    args = parser.parse_args(["usage", "list", "--work", "18446744073709551615", "--limit", "0"])
    assert (args.work, args.limit) == (2**64 - 1, 0)


def test_testnet_nodes_find_this_checkout_first() -> None:
    # The launcher's nodes run `python -m node.cli`: the folder holding `node` leads their path.
    first = testnet.node_env()["PYTHONPATH"].split(os.pathsep)[0]
    assert Path(first) == ROOT and (Path(first) / "node" / "cli" / "__main__.py").is_file()


@pytest.mark.parametrize(("argv", "host", "methods"), [
    ([], "127.0.0.1", "safe"),
    (["--rpc-methods", "unsafe"], "127.0.0.1", "unsafe"),
    (["--rpc-external"], "0.0.0.0", "safe"),
    (["--rpc-external", "--rpc-methods", "safe"], "0.0.0.0", "safe"),
    (["--unsafe-rpc-external"], "0.0.0.0", "unsafe"),
    (["--unsafe-rpc-external", "--rpc-methods", "unsafe"], "0.0.0.0", "unsafe"),
    (["--unsafe-rpc-external", "--rpc-methods", "safe"], "0.0.0.0", "safe"),
    (["--alice", "--rpc-external"], "0.0.0.0", "safe"),  # a validator too: safe methods only
])
def test_who_may_call_what(argv: list[str], host: str, methods: str) -> None:
    """The matrix of docs/rpc.md ("Who may call what"), Substrate's semantics."""
    parser = build_parser()
    args = parser.parse_args(["--dev", *argv])
    check_node_args(parser, args)
    assert rpc_exposure(args) == (host, methods)


def test_unsafe_methods_on_all_interfaces_need_their_own_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--dev", "--rpc-external", "--rpc-methods", "unsafe"], capsys)
    assert code == 2 and "--unsafe-rpc-external" in err


def test_other_flag_conflicts(capsys: pytest.CaptureFixture[str]) -> None:
    # --validator needs no dev key: it signs with its keystore's keys (tests/node).
    parser = build_parser()
    args = parser.parse_args(["--validator", "--password-filename", "pw"])
    check_node_args(parser, args)
    assert args.validator and args.dev_key is None and args.keystore_password_filename == "pw"
    code, _, err = run(["--password", "x", "--password-filename", "pw"], capsys)
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run(["--tmp", "--base-path", "/tmp/x"], capsys)
    assert code == 2 and "--tmp" in err


def test_creator_command_options_are_not_taken_for_node_flags() -> None:
    args = build_parser().parse_args(["account", "show", "--rpc", "http://127.0.0.1:1", "alice"])
    assert args.command == "account" and callable(args.handler)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("opus ")


# ---------------------------------------------------------------------------
# build-spec


@pytest.mark.parametrize("raw", [False, True])
def test_build_spec_round_trips(raw: bool, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["build-spec", "--chain", "dev", *(["--raw"] if raw else [])], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["id"] == "opus_dev"
    assert ("raw" in document["genesis"]) is raw
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(out)
    assert build_genesis(load_spec(str(spec_file))).hash == build_genesis(dev_spec()).hash
    # A raw spec stays raw and identical through another build-spec.
    code, again, _ = run(["build-spec", "--chain", str(spec_file), "--raw"], capsys)
    assert code == 0
    code, raw_out, _ = run(["build-spec", "--chain", "dev", "--raw"], capsys)
    assert json.loads(again) == json.loads(raw_out)


def test_build_spec_local_and_dev_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["build-spec", "--chain", "local"], capsys)
    assert code == 0 and json.loads(out)["id"] == "opus_local"
    code, out, _ = run(["build-spec", "--dev"], capsys)
    assert code == 0 and json.loads(out)["id"] == "opus_dev"


def test_unreadable_or_invalid_chain_spec_is_a_one_line_error(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"name": "x", "id": "x", "chainType": "Live",
                                   "genesis": {"balances": [], "authorities": ["opus1nope"]}}))
    cases = [
        ("build-spec", "--chain", str(tmp_path / "missing.json")),
        ("build-spec", "--chain", str(bad_json)),
        ("build-spec", "--chain", str(invalid)),
        ("--chain", str(tmp_path / "missing.json"), "--tmp", "--no-prometheus"),
        ("purge-chain", "-y", "--chain", str(bad_json)),
    ]
    for argv in cases:
        result = run_process(*argv)
        assert result.returncode == 1, (argv, result.stderr)
        assert result.stderr.startswith("Error: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_process("--dev", "--base-path", str(tmp_path), "--no-prometheus",
                             "--rpc-port", str(port), "--port", "0")
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port} for JSON-RPC" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# key


# subkey's published ed25519 example (docs/spec.md, "phrase.subkey")
SUBKEY_PHRASE = "marble crisp cover huge yellow quick warm pudding spatial engage unfair million"
SUBKEY_SEED = "0xfd72a60d6cd6d226c7dac996b9479bf5f4631434fd6b1bdec3e76e35a39e2be4"
SUBKEY_PUBLIC = "0xe7988839e659db69ae9ad08c3ef2ccabba44236024a039ebad83bd8fc75dccfb"


def test_key_generate_prints_a_phrase_and_its_key(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["key", "generate", "--output-type", "json"], capsys)
    assert code == 0
    key = json.loads(out)
    assert len(key["secretPhrase"].split()) == 12
    derived = keypair_from_phrase(key["secretPhrase"])
    assert key["address"] == derived.address and key["publicKey"] == "0x" + derived.public.hex()
    assert key["secretSeed"] == "0x" + derived.seed.hex()
    # The JSON is a plain key file: what --key FILE reads (once it is private).
    key_file = tmp_path / "key.json"
    key_file.write_text(out)
    key_file.chmod(0o600)
    assert load_key_file(key_file) == derived
    # Inspecting the phrase gives the same key, with every field.
    code, out, _ = run(["key", "inspect", key["secretPhrase"], "--output-type", "json"], capsys)
    assert code == 0 and json.loads(out) == key
    code, out, _ = run(["key", "generate", "--words", "24", "--output-type", "json"], capsys)
    assert code == 0 and len(json.loads(out)["secretPhrase"].split()) == 24
    code, out, _ = run(["key", "generate"], capsys)
    assert code == 0
    assert [line.split(":")[0].strip() for line in out.splitlines()] == [
        "Secret phrase", "Secret seed", "Public key (hex)", "Account ID", "Address"]


def test_key_inspect_reads_one_secret_uri_grammar(capsys: pytest.CaptureFixture[str]) -> None:
    def inspect(*argv: str) -> dict[str, str]:
        code, out, _ = run(["key", "inspect", *argv, "--output-type", "json"], capsys)
        assert code == 0
        return dict(json.loads(out))

    phrase = inspect(SUBKEY_PHRASE)
    assert (phrase["secretSeed"], phrase["publicKey"]) == (SUBKEY_SEED, SUBKEY_PUBLIC)
    assert phrase["secretPhrase"] == SUBKEY_PHRASE
    seed = inspect(SUBKEY_SEED)
    assert "secretPhrase" not in seed and seed == {k: v for k, v in phrase.items()
                                                  if k != "secretPhrase"}
    with_password = inspect(SUBKEY_PHRASE + "///Substrate")
    assert with_password["address"] == keypair_from_phrase(SUBKEY_PHRASE, "Substrate").address
    assert with_password["address"] != phrase["address"]
    assert "secretPhrase" not in with_password  # the phrase alone is another key
    public_only = {"publicKey": SUBKEY_PUBLIC, "accountId": SUBKEY_PUBLIC,
                   "address": phrase["address"]}
    assert inspect(phrase["address"]) == public_only
    assert inspect("--public", SUBKEY_PUBLIC) == public_only
    alice = inspect("//Alice")
    assert (alice["address"], alice["secretSeed"]) == (ALICE.address, "0x" + ALICE.seed.hex())
    code, out, _ = run(["key", "inspect", SUBKEY_PHRASE], capsys)
    assert code == 0 and out.splitlines()[0] == f"Secret phrase:       {SUBKEY_PHRASE}"
    assert f"  Address:           {phrase['address']}" in out.splitlines()


@pytest.mark.parametrize("argv", [
    ["key", "inspect", "opus1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"],
    ["key", "inspect", BOB.address[:-1] + ("q" if BOB.address[-1] != "q" else "p")],  # typo
    ["key", "inspect", "//Mallory"],
    ["key", "inspect", "0x1234"],
    ["key", "inspect", "--public", "zz"],
    ["key", "inspect", SUBKEY_PHRASE.replace("marble", "crisp")],  # checksum
    ["key", "inspect", SUBKEY_PHRASE.replace("marble", "marbles")],  # not a word
    ["key", "inspect", "marble crisp"],
])
def test_key_inspect_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 1
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert out == ""


def test_node_key_peer_id_is_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "node.key"
    code, out, err = run(["key", "generate-node-key", "--file", str(key_file)], capsys)
    assert code == 0 and out == ""
    peer_id = err.strip()
    assert peer_id.startswith("12D3KooW")
    for _ in range(2):
        code, out, _ = run(["key", "inspect-node-key", "--file", str(key_file)], capsys)
        assert code == 0 and out.strip() == peer_id
    code, _, err = run(["key", "generate-node-key", "--file", str(key_file)], capsys)
    assert code == 1 and "already exists" in err  # never overwrite a node key
    # --bin writes the raw 32 bytes, which read back to the same kind of key.
    bin_file = tmp_path / "node.bin"
    code, _, err = run(["key", "generate-node-key", "--bin", "--file", str(bin_file)], capsys)
    assert code == 0 and len(bin_file.read_bytes()) == 32
    code, out, _ = run(["key", "inspect-node-key", "--file", str(bin_file)], capsys)
    assert out.strip() == err.strip()
    # Without --file the secret goes to stdout and the peer id to stderr.
    code, out, err = run(["key", "generate-node-key"], capsys)
    assert code == 0 and len(bytes.fromhex(out.strip())) == 32
    assert nodekey.peer_id(nodekey.from_secret(bytes.fromhex(out.strip()))) == err.strip()
    code, _, err = run(["key", "inspect-node-key", "--file", str(tmp_path / "none")], capsys)
    assert code == 1 and err.startswith("Error: ")


def test_node_key_in_base_path_is_created_once(tmp_path: Path) -> None:
    first = nodekey.load_or_create(tmp_path)
    stored = tmp_path / "network" / "secret_ed25519"
    assert len(stored.read_bytes()) == 32
    assert nodekey.peer_id(nodekey.load_or_create(tmp_path)) == nodekey.peer_id(first)
    other = tmp_path / "other.key"
    nodekey.write_key_file(other, nodekey.generate())
    assert nodekey.peer_id(nodekey.load_or_create(tmp_path, other)) != nodekey.peer_id(first)


# ---------------------------------------------------------------------------
# purge-chain


def test_purge_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    base = tmp_path / "data" / "opus" / "chains" / "opus_dev"  # the default base path
    make_chain(base, 1)
    assert db_path(base).exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, _ = run(["purge-chain", "--chain", "dev"], capsys)
    assert code == 0 and "Aborted" in out and db_path(base).exists()
    with ChainStore.open(base, build_genesis(dev_spec())):
        code, _, err = run(["purge-chain", "--dev", "-y"], capsys)
        assert code == 1 and "in use" in err and db_path(base).exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _ = run(["purge-chain", "--dev"], capsys)
    assert code == 0 and "removed" in out and not db_path(base).exists()
    assert base.exists()  # the network key and the rest of the base path stay
    code, out, _ = run(["purge-chain", "--chain", "dev", "-y", "--base-path", str(base)], capsys)
    assert code == 0 and "did not exist" in out


def _tree(root: Path) -> list[tuple[str, bytes | None]]:
    """Every path under ``root`` with its bytes (None for a directory)."""
    return sorted((str(p.relative_to(root)), None if p.is_dir() else p.read_bytes())
                  for p in root.rglob("*"))


@pytest.mark.parametrize("chain_id", ["<absolute>", "../../../sentinel", "a b"])
def test_a_chain_spec_id_that_is_not_a_plain_name_is_refused(
        chain_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The id names the default base path <data dir>/chains/<id>: an id like /srv/x or
    ../../x once made purge-chain delete <id>/db and the node write its database there."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the commands' data dir
    sentinel = tmp_path / "sentinel"  # where /srv/x-style and ../ ids would lead
    (sentinel / "db").mkdir(parents=True)
    (sentinel / "db" / "CURRENT").write_text("a database that must survive")
    if chain_id == "<absolute>":
        chain_id = str(sentinel)
    document = spec_to_json(dev_spec())
    document["id"] = chain_id
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document))
    before = _tree(tmp_path)
    for argv in (("build-spec", "--chain", str(spec)),
                 ("purge-chain", "--chain", str(spec), "-y"),
                 ("--chain", str(spec), "--alice", "--no-prometheus", "--port", "0",
                  "--rpc-port", "0")):
        result = run_process(*argv)
        assert result.returncode == 1, (argv, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: chain spec: id "), result.stderr
        assert "A-Z, a-z, 0-9, '_' and '-'" in lines[0]
    assert _tree(tmp_path) == before  # nothing written, nothing deleted, anywhere


def test_the_default_base_path_never_leaves_the_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    chains = tmp_path / "opus" / "chains"
    assert common.default_base_path("opus_dev") == chains / "opus_dev"
    for chain_id in ("/srv/x", "../x", "..", ".", "", "a/b", "a/../../x"):
        with pytest.raises(common.UserError, match="cannot name a directory in"):
            common.default_base_path(chain_id)


# ---------------------------------------------------------------------------
# export-blocks, import-blocks, check-block


def test_export_import_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    best = make_chain(source, 4)
    blocks = tmp_path / "blocks.bin"
    code, _, err = run(["export-blocks", "--chain", "dev", "--base-path", str(source),
                        str(blocks)], capsys)
    assert code == 0, err
    assert [b.number for b in import_blocks(blocks)] == [1, 2, 3, 4]
    code, _, err = run(["import-blocks", "--chain", "dev", "--base-path", str(target),
                        str(blocks)], capsys)
    assert code == 0, err
    with ChainStore.open(target, build_genesis(dev_spec())) as store:
        assert store.best_hash == best
    # Importing again finds every block known.
    code, _, err = run(["import-blocks", "--dev", "-d", str(target), str(blocks)], capsys)
    assert code == 0 and "4 already known" in err

    for block in ("2", "0x" + best.hex(), "0"):
        code, out, err = run(["check-block", "--chain", "dev", "--base-path", str(target),
                              block], capsys)
        assert code == 0, err
        assert "OK" in out
    for block, message in (("9", "no block #9"), ("0x" + "00" * 32, "no stored block"),
                           ("0x12", "32 bytes")):
        code, _, err = run(["check-block", "--dev", "--base-path", str(target), block], capsys)
        assert code == 1 and err.startswith("Error: ") and message in err

    # A partial range.
    part = tmp_path / "part.bin"
    code, _, _ = run(["export-blocks", "--dev", "-d", str(source), "--from", "2", "--to", "3",
                      str(part)], capsys)
    assert code == 0 and [b.number for b in import_blocks(part)] == [2, 3]
    code, _, err = run(["export-blocks", "--dev", "-d", str(source), "--to", "9", str(part)],
                       capsys)
    assert code == 1 and "#4" in err


def test_import_rejects_a_bad_block_by_name(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "a"
    make_chain(source, 3)
    blocks = tmp_path / "blocks.bin"
    assert run(["export-blocks", "--dev", "-d", str(source), str(blocks)], capsys)[0] == 0
    chain = list(import_blocks(blocks))
    forged = chain[1].__class__(chain[1].header, chain[1].extrinsics, bytes(64))  # bad seal
    bad = tmp_path / "bad.bin"
    with open(bad, "wb") as f:
        f.write(MAGIC)
        for block in (chain[0], forged, chain[2]):
            data = codec.encode(block)
            f.write(len(data).to_bytes(4, "big") + data)
    target = tmp_path / "b"
    code, _, err = run(["import-blocks", "--dev", "-d", str(target), str(bad)], capsys)
    assert code == 1
    assert err.startswith("Error: block #2 (0x") and "BadSeal" in err
    assert "Traceback" not in err
    with ChainStore.open(target, build_genesis(dev_spec())) as store:
        assert store.best_header.number == 1  # block 1 stays, nothing after the bad one
    (tmp_path / "junk.bin").write_bytes(b"not a block file")
    code, _, err = run(["import-blocks", "--dev", "-d", str(target), str(tmp_path / "junk.bin")],
                       capsys)
    assert code == 1 and err.startswith("Error: ") and "junk.bin" in err


def test_missing_database_and_database_in_use(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check-block", "--dev", "-d", str(tmp_path / "none"), "1"], capsys)
    assert code == 1 and "no chain database" in err
    make_chain(tmp_path / "a", 1)
    with ChainStore.open(tmp_path / "a", build_genesis(dev_spec())):
        code, _, err = run(["export-blocks", "--dev", "-d", str(tmp_path / "a"),
                            str(tmp_path / "out.bin")], capsys)
    assert code == 1 and err.startswith("Error: ") and str(tmp_path / "a") in err
    assert "in use" in err
    code, _, err = run(["check-block", "--chain", "local", "-d", str(tmp_path / "a"), "1"],
                       capsys)
    assert code == 1 and "genesis" in err  # the database holds another chain
