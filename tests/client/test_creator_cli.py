"""The creator commands (``opus account|transfer|work|license|royalty|usage|earnings|proof|
verify``) end to end against a running node.

The fast tests run a real node in the test's trio loop (RPC on a free port) and
call ``opus``'s ``main`` in a worker thread, capturing its output. The slow test
runs the whole creator story with real processes: ``opus --dev`` and one
``python -m node.cli`` process per command, every process ended by its PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cli_runner import Result, run_opus
from processes import ROOT, free_port, opus_dev
from untrusted import HOSTILE, HOSTILE_SHOWN, dangers

from genesis import build_genesis, dev_spec
from node.chain.store import ChainStore
from node.service import Node, NodeConfig
from runtime.crypto import dev_keypair, sha256

SLOT_MS = 400
ALICE, BOB, CHARLIE, DAVE = (dev_keypair(n) for n in ("alice", "bob", "charlie", "dave"))
ONE = 10**12
RPC_FLAG = "--rpc"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    genesis = build_genesis(dataclasses.replace(dev_spec(), slot_duration_ms=SLOT_MS))
    base = tmp_path / "node"
    with ChainStore.open(base, genesis) as store:
        config = NodeConfig(base_path=base, authority=ALICE, rpc_port=free_port(),
                            prometheus_port=None, network=False)
        n = Node(config, genesis, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(n.run)
            yield n
            nursery.cancel_scope.cancel()


class Opus:
    """Runs ``opus`` commands against one node, in a worker thread."""

    def __init__(self, node: Node) -> None:
        self.rpc = f"http://127.0.0.1:{node.config.rpc_port}"

    async def __call__(self, *argv: str, rpc: bool = True) -> Result:
        args = list(argv) + ([RPC_FLAG, self.rpc] if rpc else [])
        result = await trio.to_thread.run_sync(run_opus, *args)
        assert "Traceback" not in result.err, result.err
        return result

    async def ok(self, *argv: str, rpc: bool = True) -> Result:
        result = await self(*argv, rpc=rpc)
        assert result.code == 0, result.err
        assert result.err == "", result.err
        return result

    async def fails(self, code: int, *argv: str, rpc: bool = True) -> str:
        result = await self(*argv, rpc=rpc)
        assert result.code == code, (result.out, result.err)
        if code == 1:  # one clear line
            lines = result.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
        return result.err


async def test_creator_story(node: Node, tmp_path: Path) -> None:
    opus = Opus(node)
    song = tmp_path / "song.flac"
    song.write_bytes(b"fLaC pretend audio")
    remix = tmp_path / "remix.flac"
    remix.write_bytes(b"fLaC pretend remix")

    out = (await opus.ok("work", "register", str(song), "--title", "Song", "--kind", "audio",
                         "--dev-account", "alice")).out
    assert 'Registered work #1 "Song" (audio)' in out
    assert sha256(song.read_bytes()).hex() in out
    assert "opus proof 1 --out" in out

    shown = (await opus.ok("work", "show", "1", "--json")).json()
    assert shown["work"]["owner"] == ALICE.address and shown["terms"] == []
    by_file = (await opus.ok("work", "show", "--file", str(song), "--json")).json()
    assert by_file["work"]["id"] == 1

    offered = (await opus.ok("license", "offer", "1", "--ai-training", "allowed", "--fee",
                             "5OPUS", "--commercial", "--royalty", "1000", "--derivatives",
                             "--dev-account", "alice", "--json")).json()
    assert offered["termsId"] == 1 and offered["terms"]["mintingFee"] == str(5 * ONE)
    no_ai = (await opus.ok("license", "offer", "1", "--dev-account", "alice", "--json")).json()
    assert no_ai["terms"]["aiTraining"] == "not_allowed"

    bought = (await opus.ok("license", "acquire", "1", "--dev-account", "bob", "--json")).json()
    assert bought["licenseId"] == 1
    out = (await opus.ok("license", "acquire", str(no_ai["termsId"]),
                         "--dev-account", "charlie")).out
    assert "Acquired license #2 on work #1" in out
    out = (await opus.ok("license", "show", "1")).out
    assert BOB.address in out and "live" in out

    derived = (await opus.ok("work", "register", str(remix), "--title", "Remix",
                             "--parent", "1:1", "--split", f"{BOB.address}:6000",
                             "--split", "charlie:4000", "--dev-account", "bob",
                             "--json")).json()
    assert derived["workId"] == 2
    work2 = (await opus.ok("work", "show", "2", "--json")).json()["work"]
    assert work2["parents"] == [{"workId": 1, "licenseId": 1}]
    assert work2["royaltyStack"] == [{"workId": 1, "bps": 1000}]

    paid = (await opus.ok("royalty", "pay", "2", "100OPUS", "--memo", "sales",
                          "--dev-account", "dave", "--json")).json()
    assert {(c["account"], c["amount"]) for c in paid["credits"]} == {
        (ALICE.address, str(10 * ONE)), (BOB.address, str(54 * ONE)),
        (CHARLIE.address, str(36 * ONE))}

    used = (await opus.ok("usage", "record", "1", "--purpose", "ai_training", "--subject",
                          "model-x v1", "--units", "3", "--dev-account", "bob",
                          "--json")).json()
    assert used["usageId"] == 1
    # Charlie's license does not allow AI training: the chain refuses, with the named error.
    err = await opus.fails(1, "usage", "record", "2", "--purpose", "ai_training",
                           "--subject", "model-y", "--dev-account", "charlie")
    assert "usage.PurposeNotAllowed" in err
    # Dave holds no license at all.
    err = await opus.fails(1, "usage", "record", "1", "--purpose", "ai_training",
                           "--subject", "model-z", "--dev-account", "dave")
    assert "licensing.NotLicensee" in err

    listed = (await opus.ok("usage", "list", "--work", "1", "--json")).json()
    assert [(u["licensee"], u["purpose"], u["units"]) for u in listed["items"]] == [
        (BOB.address, "ai_training", 3)]
    out = (await opus.ok("usage", "list", "--license", "1")).out
    assert "model-x v1" in out

    earnings = (await opus.ok("earnings", "--dev-account", "charlie", "--json")).json()
    assert earnings["total"] == str(36 * ONE)
    assert earnings["works"] == [{"workId": 2, "amount": str(36 * ONE)}]
    out = (await opus.ok("earnings", BOB.address)).out
    assert "54 OPUS" in out and "from work #2" in out

    proof_file = tmp_path / "remix.proof.json"
    out = (await opus.ok("proof", "2", "--out", str(proof_file))).out
    assert "opus verify" in out
    verdict = (await opus.ok("verify", str(proof_file), rpc=False)).out
    assert verdict.startswith('VALID: work #2 "Remix"') and BOB.address in verdict
    as_json = (await opus.ok("verify", str(proof_file), "--json", rpc=False)).json()
    assert as_json["valid"] is True and as_json["workId"] == 2

    # Any change to the proof file is caught offline.
    doc = json.loads(proof_file.read_text())
    for field, value in (("title", "Stolen"), ("owner", DAVE.address)):
        forged = json.loads(json.dumps(doc))
        forged["work"][field] = value
        forged_file = tmp_path / f"forged-{field}.json"
        forged_file.write_text(json.dumps(forged))
        err = await opus.fails(1, "verify", str(forged_file), rpc=False)
        assert "INVALID" in err
    forged = json.loads(json.dumps(doc))
    forged["proof"] = forged["proof"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(forged))
    assert "INVALID" in await opus.fails(1, "verify", str(tmp_path / "short.json"), rpc=False)
    forged = json.loads(json.dumps(doc))
    forged["header"]["timestamp"] += 1
    (tmp_path / "header.json").write_text(json.dumps(forged))
    err = await opus.fails(1, "verify", str(tmp_path / "header.json"), rpc=False)
    assert "blockHash" in err


async def test_accounts_keys_and_transfer(node: Node, tmp_path: Path) -> None:
    opus = Opus(node)
    key_file = tmp_path / "me.json"
    password_file = tmp_path / "passphrase.txt"
    password_file.write_text("a long passphrase\n")
    unlock = ("--password-filename", str(password_file))
    created = (await opus.ok("account", "new", "--out", str(key_file), *unlock, "--json",
                             rpc=False)).json()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = json.loads(key_file.read_text())
    assert stored["address"] == created["address"] and stored["encrypted"] is True
    assert created["encrypted"] is True and len(created["secretPhrase"].split()) == 12
    err = await opus.fails(1, "account", "new", "--out", str(key_file), *unlock, rpc=False)
    assert "already exists" in err

    await opus.ok("transfer", created["address"], "2.5OPUS", "--dev-account", "alice")
    shown = (await opus.ok("account", "show", "--key", str(key_file), *unlock,
                           "--json")).json()
    assert shown["free"] == str(2_500_000_000_000) and shown["nonce"] == 0
    out = (await opus.ok("account", "show", created["address"])).out
    assert "2.5 OPUS" in out

    # The new account signs with its key file (and pays its own fee); the passphrase is the
    # file's text without its line break.
    await opus.ok("transfer", BOB.address, "1000", "--key", str(key_file), "--password",
                  "a long passphrase", "--wait", "finalized")
    after = (await opus.ok("account", "show", created["address"], "--json")).json()
    assert after["nonce"] == 1 and int(after["free"]) < 2_500_000_000_000 - 1000

    # Its secret phrase restores it.
    restored = tmp_path / "restored.json"
    imported = (await opus.ok("account", "import", "--phrase", created["secretPhrase"],
                              "--out", str(restored), "--password", "", "--json",
                              rpc=False)).json()
    assert imported == {"address": created["address"], "keyFile": str(restored),
                        "encrypted": False}
    shown = (await opus.ok("account", "show", "--key", str(restored), "--json")).json()
    assert shown["address"] == created["address"] and shown["nonce"] == 1


async def test_user_errors_are_one_line(node: Node, tmp_path: Path) -> None:
    opus = Opus(node)
    missing = str(tmp_path / "missing.png")
    err = await opus.fails(1, "work", "register", missing, "--title", "x", "--dev-account",
                           "alice")
    assert "does not exist" in err
    err = await opus.fails(1, "work", "register", str(tmp_path), "--title", "x",
                           "--dev-account", "alice")
    assert "directory" in err
    assert "no work #42" in await opus.fails(1, "work", "show", "42")
    assert "no work #42" in await opus.fails(1, "license", "offer", "42", "--dev-account",
                                             "alice")
    assert "no work #42" in await opus.fails(1, "royalty", "pay", "42", "10", "--dev-account",
                                             "bob")
    assert "no work #42" in await opus.fails(1, "proof", "42", "--out", str(tmp_path / "p"))
    assert "no terms #9" in await opus.fails(1, "license", "acquire", "9", "--dev-account",
                                             "bob")
    assert "no license #9" in await opus.fails(1, "license", "show", "9")
    assert "no license #9" in await opus.fails(1, "usage", "record", "9", "--purpose",
                                               "other", "--subject", "s", "--dev-account",
                                               "bob")

    song = tmp_path / "song.txt"
    song.write_text("la la la")
    await opus.ok("work", "register", str(song), "--title", "Song", "--dev-account", "alice")
    err = await opus.fails(1, "work", "register", str(song), "--title", "Again",
                           "--dev-account", "bob")
    assert "already registered as work #1" in err

    # The chain's own refusals come back with their names.
    err = await opus.fails(1, "license", "offer", "1", "--dev-account", "bob")
    assert "provenance.NotOwner" in err
    err = await opus.fails(1, "transfer", ALICE.address, "100000000OPUS", "--dev-account",
                           "bob")
    assert "balances.InsufficientBalance" in err

    # Node unreachable.
    dead = f"http://127.0.0.1:{free_port()}"
    result = await opus("work", "show", "1", RPC_FLAG, dead, rpc=False)
    assert result.code == 1 and "cannot reach the node" in result.err
    assert len(result.err.strip().splitlines()) == 1

    # Offline failures.
    not_json = tmp_path / "not.json"
    not_json.write_text("hello")
    assert "not JSON" in await opus.fails(1, "verify", str(not_json), rpc=False)
    assert "does not exist" in await opus.fails(1, "verify", missing, rpc=False)
    bad_key = tmp_path / "bad-key.json"
    bad_key.write_text('{"seed": "abcd"}')
    bad_key.chmod(0o600)
    assert "32 bytes" in await opus.fails(1, "transfer", BOB.address, "1", "--key",
                                          str(bad_key))

    # Wrong command lines: usage errors, exit 2.
    await opus.fails(2, "transfer", "opus1typo", "1", "--dev-account", "alice")
    await opus.fails(2, "transfer", BOB.address, "lots", "--dev-account", "alice")
    await opus.fails(2, "transfer", BOB.address, "1")  # no signer
    await opus.fails(2, "work", "register", str(song), "--dev-account", "alice")  # no title
    await opus.fails(2, "work", "register", str(song), "--title", "t", "--split",
                     f"{BOB.address}:5000", "--dev-account", "alice")
    err = await opus.fails(2, "license", "offer", "1", "--royalty", "500", "--dev-account",
                           "alice")
    assert "contradictory terms" in err
    await opus.fails(2, "usage", "record", "1", "--purpose", "juggling", "--subject", "s",
                     "--dev-account", "bob")
    await opus.fails(2, "earnings")  # whose?
    await opus.fails(2, "work", "show", "1", "--dev-account", "nobody")
    await opus.fails(2, "proof", "1")  # no --out


async def _opus_process(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """The real ``opus`` command, a process of its own: what it writes is what a terminal
    would get."""
    with trio.fail_after(120):
        done = await trio.run_process([sys.executable, "-m", "node.cli", *argv], cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)},
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert b"Traceback" not in done.stderr, done.stderr
    return done


async def test_text_from_the_chain_is_shown_escaped(node: Node, tmp_path: Path) -> None:
    """Titles, URIs and usage subjects may hold ESC, BEL, CR, C1 and bidi controls: the
    human-readable output shows them as escapes, --json keeps them exactly."""
    opus = Opus(node)
    rpc = [RPC_FLAG, opus.rpc]
    art = tmp_path / "art.png"
    art.write_bytes(b"pretend pixels")
    uri = "ipfs://x\x1b]8;;http://evil\x07 \x1b[1A\x1b[2K"
    registered = await opus.ok("work", "register", str(art), "--title", HOSTILE, "--kind",
                               "image", "--metadata-uri", uri, "--dev-account", "alice")
    assert dangers(registered.out) == [] and "\\x1b[31m" in registered.out, registered.out
    await opus.ok("license", "offer", "1", "--ai-training", "allowed", "--dev-account", "alice")
    await opus.ok("license", "acquire", "1", "--dev-account", "bob")
    subject = "model\x1b[8m hidden\x1b[0m \u2066v1"
    recorded = await opus.ok("usage", "record", "1", "--purpose", "ai_training", "--subject",
                             subject, "--dev-account", "bob")
    assert dangers(recorded.out) == [] and "model\\x1b[8m hidden" in recorded.out

    shown = await _opus_process("work", "show", "1", *rpc)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.decode()  # strict UTF-8
    assert dangers(out) == [], out
    for piece in HOSTILE_SHOWN:
        assert piece in out, (piece, out)
    assert "ipfs://x\\x1b]8;;http://evil\\x07 \\x1b[1A\\x1b[2K" in out
    as_json = await _opus_process("work", "show", "1", "--json", *rpc)
    assert as_json.returncode == 0 and as_json.stdout.isascii(), as_json.stdout
    work = json.loads(as_json.stdout)["work"]
    assert (work["title"], work["metadataUri"]) == (HOSTILE, uri)

    listed = await _opus_process("usage", "list", "--work", "1", *rpc)
    assert listed.returncode == 0 and dangers(listed.stdout.decode()) == [], listed.stdout
    assert "model\\x1b[8m hidden\\x1b[0m \\u2066v1" in listed.stdout.decode()
    listed_json = json.loads((await _opus_process("usage", "list", "--work", "1", "--json",
                                                  *rpc)).stdout)
    assert listed_json["items"][0]["subject"] == subject

    # A proof file is untrusted input as well: opus verify shows its title escaped.
    proof = tmp_path / "art.proof.json"
    await opus.ok("proof", "1", "--out", str(proof))
    verdict = await _opus_process("verify", str(proof))
    assert verdict.returncode == 0 and dangers(verdict.stdout.decode()) == []
    assert verdict.stdout.decode().startswith('VALID: work #1 "Sunrise\\x1b[2J')


async def test_rpc_url_spellings(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    rpc = f"http://127.0.0.1:{node.config.rpc_port}"
    for argv in (["--rpc", rpc], ["--rpc-url", rpc], [f"--rpc={rpc}"]):
        result = await trio.to_thread.run_sync(run_opus, "account", "show", "alice", *argv)
        assert result.code == 0 and ALICE.address in result.out, result.err
    monkeypatch.setenv("OPUS_RPC", rpc)  # the default when no flag is given
    result = await trio.to_thread.run_sync(run_opus, "account", "show", "alice")
    assert result.code == 0 and ALICE.address in result.out, result.err


# ---------------------------------------------------------------------------
# The whole story with real processes


class Processes:
    """`opus` commands as subprocesses against a real `opus --dev` node."""

    def __init__(self, rpc: str, workdir: Path) -> None:
        self.rpc = rpc
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(self, *argv: str, rpc: bool = True, expect: int = 0, stdin: str = ""
            ) -> subprocess.CompletedProcess[str]:
        """Run ``opus argv``; ``stdin`` is all its standard input (never a terminal)."""
        args = [sys.executable, "-m", "node.cli", *argv] + ([RPC_FLAG, self.rpc] if rpc else [])
        done = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True,
                              input=stdin, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == expect, (argv, done.stdout, done.stderr)
        return done

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "--json").stdout)


@pytest.mark.slow
def test_creator_story_against_opus_dev(tmp_path: Path) -> None:
    log_path = tmp_path / "node.log"
    with opus_dev(log_path) as (node, port):
        _story(Processes(f"http://127.0.0.1:{port}", tmp_path), tmp_path)
    text = log_path.read_text()
    assert node.returncode == 0, text
    assert "Traceback" not in text


def _story(opus: Processes, tmp: Path) -> None:
    creator_key = tmp / "creator.json"
    password_file = tmp / "passphrase.txt"
    password_file.write_text("creator's passphrase\n")
    signer = ("--key", str(creator_key), "--password-filename", str(password_file))
    creator = json.loads(opus.run("account", "new", "--out", str(creator_key),
                                  "--password-filename", str(password_file), "--json",
                                  rpc=False).stdout)["address"]
    opus.run("transfer", creator, "100OPUS", "--dev-account", "alice")
    artwork = tmp / "artwork.png"
    artwork.write_bytes(b"\x89PNG pretend image bytes")
    registered = opus.json("work", "register", str(artwork), "--title", "Sunrise", "--kind",
                           "image", *signer)
    work = registered["workId"]
    terms = opus.json("license", "offer", str(work), "--ai-training", "allowed",
                      "--fee", "5OPUS", "--commercial", "--royalty", "2000", "--derivatives",
                      *signer)["termsId"]
    closed = opus.json("license", "offer", str(work), *signer)["termsId"]

    ai_license = opus.json("license", "acquire", str(terms), "--dev-account", "bob")["licenseId"]
    plain_license = opus.json("license", "acquire", str(closed),
                              "--dev-account", "charlie")["licenseId"]

    remix_file = tmp / "remix.png"
    remix_file.write_bytes(b"\x89PNG pretend remix bytes")
    remix = opus.json("work", "register", str(remix_file), "--title", "Sunrise remix",
                      "--parent", f"{work}:{ai_license}", "--dev-account", "bob")["workId"]
    opus.run("royalty", "pay", str(remix), "50OPUS", "--memo", "print sales",
             "--dev-account", "dave")
    opus.run("usage", "record", str(ai_license), "--purpose", "ai_training", "--subject",
             "diffusion-model v2", "--units", "1", "--dev-account", "bob")
    refused = opus.run("usage", "record", str(plain_license), "--purpose", "ai_training",
                       "--subject", "sneaky-model", "--dev-account", "charlie", expect=1)
    assert "usage.PurposeNotAllowed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    earnings = opus.json("earnings", creator)
    # 5 OPUS license fee + 20% of the 50 OPUS paid into the remix.
    assert earnings["total"] == str(15 * ONE)
    assert earnings["works"] == [{"workId": work, "amount": str(5 * ONE)},
                                 {"workId": remix, "amount": str(10 * ONE)}]
    usage = opus.json("usage", "list", "--work", str(work))["items"]
    assert [(u["purpose"], u["subject"]) for u in usage] == [("ai_training",
                                                              "diffusion-model v2")]

    proof = tmp / "sunrise.proof.json"
    opus.run("proof", str(work), "--out", str(proof))
    verdict = opus.run("verify", str(proof), rpc=False).stdout
    assert verdict.startswith(f'VALID: work #{work} "Sunrise"') and creator in verdict
    doc = json.loads(proof.read_text())
    doc["work"]["owner"] = DAVE.address
    proof.write_text(json.dumps(doc))
    bad = opus.run("verify", str(proof), rpc=False, expect=1)
    assert bad.stderr.startswith("Error: INVALID proof")

    missing = opus.run("work", "register", str(tmp / "nope.png"), "--title", "x",
                       "--dev-account", "alice", expect=1)
    assert "does not exist" in missing.stderr
    unknown = opus.run("work", "show", "999", expect=1)
    assert unknown.stderr.strip() == "Error: no work #999"
