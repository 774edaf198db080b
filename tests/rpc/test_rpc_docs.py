"""docs/rpc.md, checked against a running node: what a client written from the doc alone
relies on, word for word where the doc quotes the node.

* the exact ``data`` of a ``Malformed`` refusal (it once read "Malformed: Malformed: …"), and
  the list of 1010 reasons (it once named ``ExtrinsicTooLarge``, which cannot happen);
* an empty extrinsic is -32602, not a pool refusal;
* resending identical bytes is answered 1012 without the first reason, for the ban's length;
* every method's by-name parameter names (``opus_getEarnings`` takes ``options``);
* paging: ``limit: 0`` is a full page, ``limit: 1001`` is refused; negative integers;
* the provenance proof's key order;
* the header field mapping, on the doc's worked example and on live headers.

The node runs in this trio loop (``test_rpc.running_node``): a dev chain with RPC on a free
port of 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import re
from itertools import takewhile
from pathlib import Path
from typing import Any

import msgpack
import trio
from processes import ROOT
from test_rpc import ALICE, BOB, ONE, post, request, running_node, signed, wait_for

from client.api import header_to_json
from node.service import Node
from node.txpool import PoolLimits
from runtime import codec, executive
from runtime.block import Header
from runtime.codec import hex0x
from runtime.crypto import Keypair, blake2_256, decode_address, sha256
from runtime.modules import balances, provenance

RPC_DOC = (ROOT / "docs" / "rpc.md").read_text()
SPEC_DOC = (ROOT / "docs" / "spec.md").read_text()


def doc_table(heading_row: str) -> list[list[str]]:
    """The rows of the markdown table of rpc.md whose heading row is ``heading_row``."""
    lines = RPC_DOC[RPC_DOC.index(heading_row):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert rows, f"no rows under {heading_row!r}"
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


async def call(node: Node, method: str, params: Any) -> dict[str, Any]:
    """The node's whole JSON-RPC answer (result or error) over HTTP."""
    status, answer, _ = await post(node, json.dumps(request(method, params)))
    assert status == 200 and isinstance(answer, dict), (status, answer)
    return answer


async def error_of(node: Node, method: str, params: Any) -> dict[str, Any]:
    answer = await call(node, method, params)
    assert "error" in answer, answer
    error: dict[str, Any] = answer["error"]
    return error


async def result_of(node: Node, method: str, params: Any) -> Any:
    answer = await call(node, method, params)
    assert "error" not in answer, answer
    return answer["result"]


# ---------------------------------------------------------------------------
# Refused extrinsics


def negative_amount_transfer() -> bytes:
    """A transfer whose amount is the msgpack integer -5 (the positional extrinsic fields)."""
    call_ = ["balances", "transfer", [BOB.public, -5]]
    return msgpack.packb([ALICE.public, bytes(64), 0, 0, [0, 0], call_], use_bin_type=True)


# What the doc's "Malformed" table sends, by the text of its first column.
MALFORMED_INPUTS = {
    "`0xc1`": bytes.fromhex("c1"),
    "`0x9201`": bytes.fromhex("9201"),
    "70,000 zero bytes": bytes(70_000),
    "`0x920102`": bytes.fromhex("920102"),
    "an extrinsic whose transfer amount is the msgpack integer −5 (`fb`)":
        negative_amount_transfer(),
}


async def test_malformed_extrinsics_get_the_documented_data(tmp_path: Path) -> None:
    rows = doc_table("| sent (`0x`-hex) | `data` |")
    assert {row[0] for row in rows} == set(MALFORMED_INPUTS)
    assert negative_amount_transfer().endswith(b"\xfb")  # the amount, -5, is the byte fb
    async with running_node(tmp_path / "node") as node:
        for sent, data in rows:
            error = await error_of(node, "author_submitExtrinsic",
                                   [hex0x(MALFORMED_INPUTS[sent])])
            assert error == {"code": 1010, "message": "Invalid Transaction",
                             "data": ticked(data)[0]}, sent
            assert not error["data"].startswith("Malformed: Malformed")


async def test_an_empty_extrinsic_is_invalid_params(tmp_path: Path) -> None:
    assert "(`\"0x\"`: `extrinsic is empty`)" in RPC_DOC
    async with running_node(tmp_path / "node") as node:
        for method in ("author_submitExtrinsic", "payment_queryInfo"):
            error = await error_of(node, method, ["0x"])
            assert error["code"] == -32602, error
            assert error["message"] == "Invalid params: extrinsic is empty"


def test_the_1010_reasons_are_the_runtimes() -> None:
    """The 1010 row lists ``Malformed`` and every validity reason a submission can get: each
    InvalidTransaction but ``FutureNonce`` (the pool keeps such a transaction as future)."""
    row = next(r for r in doc_table("| code | message | when |")
               if r[0] == "1010" and "the reason being" in r[2])
    listed = set(ticked(row[2].split("the reason being", 1)[1]))
    runtime = {cls.__name__ for cls in executive.InvalidTransaction.__subclasses__()}
    assert listed == (runtime - {"FutureNonce"}) | {"Malformed"}


async def test_resending_identical_bytes_is_banned_for_the_ban_length(tmp_path: Path) -> None:
    """A refused transaction sent again is 1012 without its first reason, even once that
    reason has gone, until the best block reaches the refusal's best block + ban_blocks;
    then it is checked afresh. (The mechanism with a ban of 12 blocks, to keep the test
    short; the default's figure, 30, is the doc's.)"""
    assert PoolLimits().ban_blocks == 30
    assert "for 30 blocks (`PoolLimits.ban_blocks`)" in RPC_DOC
    ban = 12
    async with running_node(tmp_path / "node", pool_limits=PoolLimits(ban_blocks=ban)) as node:
        await wait_for(lambda: node.best.number >= 1)
        poor = Keypair.from_seed(blake2_256(b"rpc docs: no funds yet"))
        tx = signed(node, poor, balances.TransferArgs(BOB.public, 1), 0)
        banned = {"code": 1012, "message": "Transaction is temporarily banned",
                  "data": f"TemporarilyBanned: {hex0x(blake2_256(tx))} is banned for now"}

        before = node.best.number
        first = await error_of(node, "author_submitExtrinsic", [hex0x(tx)])
        refused_by = node.best.number  # the refusal happened at a best block in before..this
        assert first["code"] == 1010 and first["data"].startswith("CannotPayFee: ")
        assert await error_of(node, "author_submitExtrinsic", [hex0x(tx)]) == banned

        # The reason goes away (the account is funded); the bytes are still banned.
        await node.submit_extrinsic(signed(node, ALICE, balances.TransferArgs(poor.public, ONE),
                                           0))
        await wait_for(lambda: node.store.best_state().get(b"system:account:" + poor.public)
                       is not None)
        resent_banned = 0
        with trio.fail_after(30):
            while True:
                at = node.best.number
                answer = await call(node, "author_submitExtrinsic", [hex0x(tx)])
                if "error" not in answer:
                    break
                assert answer["error"] == banned
                assert at < refused_by + ban
                resent_banned += 1
                await trio.sleep(0.05)
        assert answer["result"] == hex0x(blake2_256(tx))
        assert node.best.number >= before + ban
        assert resent_banned >= 1


# ---------------------------------------------------------------------------
# Parameter names


def documented_names() -> dict[str, list[str]]:
    """rpc.md's "Parameter names" table: method → its names (``?`` marks optional ones)."""
    names: dict[str, list[str]] = {}
    for methods, cell in doc_table("| method | names |"):
        for method in ticked(methods):
            names[method] = ticked(cell.split("(", 1)[0])
    return names


async def test_parameter_names_are_the_nodes(tmp_path: Path) -> None:
    """Every method answers a call with an unknown param name by naming its params; they
    must be the doc's. The options-object methods (``query``) take the object itself too."""
    documented = documented_names()
    assert documented["opus_getEarnings"] == ["address", "options?"]
    async with running_node(tmp_path / "node", rpc_methods="unsafe") as node:
        methods = (await result_of(node, "rpc_methods", []))["methods"]
        assert set(documented) <= set(methods)
        for method in methods:
            error = await error_of(node, method, {"noSuchParam": 1})
            assert error["code"] == -32602, (method, error)
            expected = documented.get(method.replace("Finalised", "Finalized"), [])
            if expected == ["query"]:
                # The whole params object was taken as the query and refused field by field.
                assert error["message"].startswith("Invalid params: query: unknown field")
            else:
                assert error["message"] == (
                    f"Invalid params: {method} takes [{', '.join(expected)}]"), method

        # By name, as the doc writes it.
        earnings = await result_of(node, "opus_getEarnings",
                                   {"address": ALICE.address, "options": {"limit": 1}})
        assert earnings["account"] == ALICE.address
        works = await result_of(node, "opus_listWorks", {"query": {"owner": ALICE.address}})
        assert works == await result_of(node, "opus_listWorks", {"owner": ALICE.address})


# ---------------------------------------------------------------------------
# Paging, integers, proofs (one node with 101 works)


def register(node: Node, index: int) -> bytes:
    args = provenance.RegisterWork(
        content_hash=sha256(f"rpc docs work {index}".encode()),
        kind=provenance.WorkKind.TEXT, title=f"Work {index}", metadata_uri="",
        metadata_hash=None, creators=(provenance.Split(ALICE.public, 10_000),), parents=())
    return signed(node, ALICE, args, index)


async def test_pages_integers_and_the_proof_keys(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        for index in range(101):
            await node.submit_extrinsic(register(node, index))
        owner = ALICE.address

        async def page(**options: Any) -> dict[str, Any]:
            result: dict[str, Any] = await result_of(node, "opus_listWorks",
                                                     [{"owner": owner, **options}])
            return result

        async def all_indexed() -> bool:
            return len((await page(limit=1000))["items"]) == 101

        with trio.fail_after(30):
            while not await all_indexed():
                await trio.sleep(0.1)

        def ids(result: dict[str, Any]) -> list[int]:
            return [item["id"] for item in result["items"]]

        # limit 0 is the default, a full page of 100; no limit is the same.
        full = await page(limit=0)
        assert ids(full) == list(range(1, 101)) and full["next"] == 101
        assert await page() == full
        assert ids(await page(limit=1000)) == list(range(1, 102))
        assert (await page(limit=1000))["next"] is None
        assert await page(start=None) == full
        # Integers as decimal or 0x-hex strings.
        assert ids(await page(start="0x64", limit="2")) == [100, 101]
        refused = await error_of(node, "opus_listWorks", [{"owner": owner, "limit": 1001}])
        assert refused == {"code": -32602, "message": "Invalid params: limit: expected an "
                                                      "integer from 0 to 1000, got 1001"}
        assert "`Invalid params:\n  limit: expected an integer from 0 to 1000, got 1001`" in RPC_DOC
        # Negative integers are -32602, naming the param.
        negative = await error_of(node, "opus_getWork", [-1])
        assert negative == {"code": -32602, "message": "Invalid params: id: expected an integer "
                                                       "from 0 to 18446744073709551615, got -1"}
        assert ('"message":"Invalid params: id: expected an integer from 0 to\n'
                '  18446744073709551615, got -1"') in RPC_DOC
        assert (await error_of(node, "opus_listWorks",
                               [{"owner": owner, "start": -1}]))["code"] == -32602

        # The proof's keys come in the order both docs give: works, then work_by_content.
        proof = await result_of(node, "opus_getProvenanceProof", [1])
        work_key = b"provenance:works:" + (1).to_bytes(8, "big")
        content_key = (b"provenance:work_by_content:"
                       + bytes.fromhex(proof["work"]["contentHash"][2:]))
        assert proof["keys"] == [hex0x(work_key), hex0x(content_key)]
        assert "The keys are `provenance:works:<id as u64>` and " \
               "`provenance:work_by_content:<content hash>`." in RPC_DOC


# ---------------------------------------------------------------------------
# Headers


def header_bytes_by_the_table(data: dict[str, Any]) -> bytes:
    """rpc.md "Headers": the seven fields, in the table's order, as canonical msgpack."""
    def hash32(text: str) -> bytes:
        assert re.fullmatch(r"0x[0-9a-f]{64}", text), text
        return bytes.fromhex(text[2:])

    number = data["number"]
    assert re.fullmatch(r"0x(0|[1-9a-f][0-9a-f]*)", number), number
    author = data["author"]
    author_bytes = hash32(author) if author.startswith("0x") else decode_address(author)
    assert data["digest"] == {"logs": []}
    fields = [hash32(data["parentHash"]), int(number, 16), hash32(data["stateRoot"]),
              hash32(data["extrinsicsRoot"]), data["timestamp"], data["slot"], author_bytes]
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def spec_vector(label: str) -> str:
    match = re.search(rf"^vector:{re.escape(label)} = (\S+)$", SPEC_DOC, re.MULTILINE)
    assert match, label
    return match.group(1)


def test_the_worked_header_example() -> None:
    section = RPC_DOC[RPC_DOC.index("### Headers"):RPC_DOC.index("## Errors")]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    listing = section.split("is the header\n\n```\n", 1)[1].split("```", 1)[0]
    # Each line: hex groups, then what they are.
    listed = bytes.fromhex("".join(
        "".join(takewhile(lambda part: re.fullmatch(r"[0-9a-f]+", part) is not None,
                          line.split()))
        for line in listing.splitlines()))
    stated_hash = re.search(r"whose `blake2_256` is the block hash\n`(0x[0-9a-f]{64})`", section)
    assert stated_hash

    encoded = header_bytes_by_the_table(example)
    assert encoded == listed == bytes.fromhex(spec_vector("block1.header")[2:])
    assert hex0x(blake(encoded)) == stated_hash.group(1) == spec_vector("block1.hash")
    # And the node sends exactly this JSON for that header.
    assert header_to_json(codec.decode(encoded, Header)) == example


async def test_live_headers_follow_the_mapping(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        await wait_for(lambda: node.best.number >= 2)
        genesis_hash = await result_of(node, "chain_getBlockHash", [0])
        genesis = await result_of(node, "chain_getHeader", [genesis_hash])
        assert genesis["author"] == "0x" + "00" * 32 and genesis["number"] == "0x0"
        assert hex0x(blake(header_bytes_by_the_table(genesis))) == genesis_hash
        best = await result_of(node, "chain_getHeader", [])
        best_hash = await result_of(node, "chain_getBlockHash", [int(best["number"], 16)])
        assert best["author"] == ALICE.address
        assert hex0x(blake(header_bytes_by_the_table(best))) == best_hash
