"""Untrusted text on a terminal: client.display's escaping, and the ``opus`` commands that
show what a hostile node answers (creator commands, ``opus testnet status``).

The hostile node is a small JSON-RPC server on 127.0.0.1 (tests/untrusted.py): a real
node never sends such answers, which is the point; each ``opus`` command runs as a real
process, so what reaches the terminal is the bytes it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import ROOT, free_port
from untrusted import HOSTILE, HOSTILE_SHOWN, dangers, hostile_node

from client.display import safe_message, safe_text
from runtime.crypto import dev_keypair

ALICE = dev_keypair("alice")


def opus(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "node.cli", *argv], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, encoding="utf-8", errors="strict", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# ---------------------------------------------------------------------------
# client.display


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J", "\\x1b[2J"),
    ("\x07\x00\x7f", "\\x07\\x00\\x7f"),
    ("a\rb\nc\td", "a\\rb\\nc\\td"),
    ("\u009b31m\u0085", "\\x9b31m\\x85"),  # C1: a one-character CSI, NEL
    ("\u202eabc\u202c", "\\u202eabc\\u202c"),
    ("\u2066\u2069\u200e\u200f\u061c", "\\u2066\\u2069\\u200e\\u200f\\u061c"),
    ("zero\u200bwidth\ufeff\u2060", "zero\\u200bwidth\\ufeff\\u2060"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("tag\U000e0041\U000e007f", "tag\\U000e0041\\U000e007f"),
    ("lone \ud800", "lone \\ud800"),
    ("back\\slash", "back\\\\slash"),
    ("literal \\x1b", "literal \\\\x1b"),
])
def test_safe_text_escapes_what_a_terminal_acts_on(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert dangers(safe_text(raw) + "\n") == []


@pytest.mark.parametrize("text", [
    "Sunrise over the bay", "Émile — «Nocturne» №3", "東京の夜", "مرحبا", "שלום",
    "👩\u200d🎨 artist",  # ZERO WIDTH JOINER in an emoji sequence stays
    "می\u200cخواهم",  # ZERO WIDTH NON-JOINER in Persian stays
    "café\u0301 ñ", "non\u00a0breaking", "",
])
def test_safe_text_keeps_ordinary_text(text: str) -> None:
    assert safe_text(text) == text


def test_an_escaped_esc_and_a_literal_backslash_x1b_differ() -> None:
    assert safe_text("\x1b") == "\\x1b"
    assert safe_text("\\x1b") == "\\\\x1b"


def test_safe_message_keeps_backslashes_and_optionally_line_breaks() -> None:
    assert safe_message("file 'a\\\\b': \x1b[2J\u202e") == "file 'a\\\\b': \\x1b[2J\\u202e"
    assert safe_message("one\ntwo\r") == "one\\ntwo\\r"
    assert safe_message("one\ntwo\r", multiline=True) == "one\ntwo\\r"


# ---------------------------------------------------------------------------
# Creator commands against a hostile node


def _work(title: str) -> dict[str, Any]:
    """``opus_getWork``'s shape, every text field hostile."""
    return {"id": 1, "contentHash": "0x" + "ab" * 32, "kind": "image\x1b[8m",
            "title": title, "metadataUri": "ipfs://\x1b]8;;http://evil\x07x\x1b]8;;\x07",
            "owner": ALICE.address + "\u202e", "registeredAt": 3, "registeredAtMs": 6000,
            "creators": [{"account": ALICE.address + "\x1b[1A", "bps": 10000}],
            "parents": [], "royaltyStack": []}


def _terms() -> dict[str, Any]:
    return {"id": 1, "workId": 1, "commercialUse": True, "derivativesAllowed": False,
            "transferable": False, "commercialRevShare": 0, "retired": False, "minted": 0,
            "maxSupply": 0, "mintingFee": "5", "aiTraining": "allowed\x1b[2K\r",
            "aiInference": "not_allowed\u2066"}


def test_work_show_escapes_everything_a_node_sends() -> None:
    title = HOSTILE + " \ud800"  # and a lone surrogate, which cannot even be printed raw

    def answer(method: str, params: Any) -> dict[str, Any]:
        if method == "opus_getWork":
            return {"result": _work(title)}
        if method == "opus_listTerms":
            return {"result": {"items": [_terms()], "next": None}}
        return {"error": {"code": -32601, "message": "Method not found"}}

    with hostile_node(answer) as port:
        rpc = f"http://127.0.0.1:{port}"
        shown = opus("work", "show", "1", "--rpc", rpc)
        as_json = opus("work", "show", "1", "--rpc", rpc, "--json")
    assert shown.returncode == 0, shown.stderr
    assert dangers(shown.stdout) == [], shown.stdout
    for piece in HOSTILE_SHOWN + ("\\ud800", "image\\x1b[8m", "\\x1b]8;;http://evil\\x07",
                                  ALICE.address + "\\u202e", "allowed\\x1b[2K\\r",
                                  "not_allowed\\u2066"):
        assert piece in shown.stdout, (piece, shown.stdout)
    # --json keeps the exact text, and is itself plain ASCII: nothing raw reaches the terminal.
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout.isascii() and dangers(as_json.stdout) == []
    assert json.loads(as_json.stdout)["work"]["title"] == title


def test_errors_relayed_from_a_node_are_one_safe_line() -> None:
    def answer(method: str, params: Any) -> dict[str, Any]:
        return {"error": {"code": -32000, "message": "Server error\x1b[2J",
                          "data": "\rError: none. Transfer approved\x1b[32m\u202e\nsecond"}}

    with hostile_node(answer) as port:
        done = opus("work", "show", "1", "--rpc", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert dangers(done.stderr) == [], done.stderr
    assert "\\rError: none. Transfer approved\\x1b[32m\\u202e\\nsecond" in done.stderr


# ---------------------------------------------------------------------------
# opus testnet status against hostile nodes and a hostile manifest


def _entry(name: str, rpc_port: int) -> dict[str, Any]:
    return {"name": name, "key": "alice", "base_path": "/nonexistent", "p2p_port": 1,
            "rpc_port": rpc_port, "prometheus_port": 2, "peer_id": "12D3KooW",
            "node_key_file": "/nonexistent.key", "log": "/nonexistent.log", "command": [],
            "pid": None}


def test_testnet_status_escapes_names_answers_and_errors(tmp_path: Path) -> None:
    evil_hash = "0x\x1b]0;pwned\x07" + "ab" * 30

    def lying(method: str, params: Any) -> dict[str, Any]:
        results: dict[str, Any] = {
            "chain_getBlockHash": evil_hash, "chain_getFinalizedHead": evil_hash,
            "chain_getHeader": {"number": "0x5"},
            "system_health": {"peers": "3\x1b[2J", "isSyncing": False}}
        return {"result": results[method]}

    def refusing(method: str, params: Any) -> dict[str, Any]:
        return {"error": {"code": -32000, "message": "no\x1b[31m",
                          "data": "\u202eevil\rline"}}

    def malformed(method: str, params: Any) -> dict[str, Any]:
        results: dict[str, Any] = {"chain_getBlockHash": "0x" + "cd" * 32,
                                   "chain_getFinalizedHead": "0x" + "cd" * 32,
                                   "chain_getHeader": {"number": 5},  # not a hex string
                                   "system_health": []}
        return {"result": results[method]}

    with hostile_node(lying) as a, hostile_node(refusing) as b, hostile_node(malformed) as c:
        manifest = {"pid": None, "validators": 4, "slotMs": 2000, "nodes": [
            _entry("node1\x1b[2J\u202e", a), _entry("node2", b), _entry("node3", c),
            _entry("node4", free_port())]}
        (tmp_path / "testnet.json").write_text(json.dumps(manifest))
        done = opus("testnet", "status", "--base-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert dangers(out) == [], out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == {"node1\\x1b[2J\\u202e", "node2", "node3", "node4"}, out
    assert "#5 (0x\\x1b]" in rows["node1\\x1b[2J\\u202e"] and "3\\x1b[2J" in out
    assert "UNREACHABLE" in rows["node2"] and "no\\x1b[31m" in rows["node2"]
    assert "\\u202eevil\\rline" in rows["node2"]
    assert "UNREACHABLE" in rows["node3"] and "UNREACHABLE" in rows["node4"]


def test_testnet_status_refuses_a_manifest_of_the_wrong_shape(tmp_path: Path) -> None:
    entry = _entry("node1", free_port())
    entry["pid"] = "1234"
    (tmp_path / "testnet.json").write_text(json.dumps({"pid": "x", "nodes": [entry]}))
    done = opus("testnet", "status", "--base-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == ("Error: the testnet manifest is malformed: nodes[0] has "
                                   "a wrong pid"), done.stderr
