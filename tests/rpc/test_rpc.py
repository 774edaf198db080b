"""JSON-RPC over real sockets: every method, the WebSocket subscriptions, and bad input.

Most tests run a real :class:`node.service.Node` in the test's trio loop (a dev
chain with short slots, its database under ``tmp_path``, RPC on a free port of
127.0.0.1) and talk to it over HTTP (the project's own client, in a worker
thread) and WebSocket (trio-websocket). The slow test at the end does the same
against a real ``opus --dev`` process, ended by its PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from processes import ROOT, RPC_NOT_READY, STARTUP_TIMEOUT_S, NodeProcess, free_port
from trio_websocket import HandshakeError, WebSocketConnection, open_websocket_url

from client import OpusClient, RpcCallError, TransactionRefused, verify_provenance_proof
from client.api import header_from_json
from genesis import build_genesis, dev_spec
from node.chain.store import ChainStore
from node.rpc.methods import METHODS
from node.service import Node, NodeConfig
from node.txpool import PoolLimits, TransactionPool
from runtime import codec, executive
from runtime.codec import Struct, from_hex0x, hex0x
from runtime.crypto import Keypair, blake2_256, dev_keypair, sha256
from runtime.execution import build_block
from runtime.extrinsic import Era, Extrinsic, sign_extrinsic
from runtime.modules import balances, licensing, system
from runtime.support import make_call
from runtime.trie import verify_proof

SLOT_MS = 400
ALICE, BOB, CHARLIE, DAVE = (dev_keypair(n) for n in ("alice", "bob", "charlie", "dave"))
ONE = 10**12

REQUIRED_METHODS = {
    "system_health", "system_name", "system_version", "system_chain", "system_properties",
    "system_peers", "system_localPeerId", "system_localListenAddresses", "system_syncState",
    "chain_getHeader",
    "chain_getBlock", "chain_getBlockHash", "chain_getFinalizedHead", "chain_subscribeNewHeads",
    "chain_unsubscribeNewHeads", "chain_subscribeFinalizedHeads",
    "chain_unsubscribeFinalizedHeads", "author_submitExtrinsic",
    "author_submitAndWatchExtrinsic", "author_pendingExtrinsics", "state_getStorage",
    "state_getReadProof", "state_getRuntimeVersion", "payment_queryInfo", "rpc_methods",
    "opus_accountInfo", "opus_getWork", "opus_getWorkByContentHash", "opus_listWorks",
    "opus_getTerms", "opus_getLicense", "opus_listLicenses", "opus_getEarnings",
    "opus_listUsage", "opus_getEvents", "opus_getProvenanceProof", "opus_getEquivocations",
}
UNSAFE_METHODS = {"author_insertKey", "author_rotateKeys", "author_hasKey",
                  "author_hasSessionKeys"}


# ---------------------------------------------------------------------------
# Helpers


@asynccontextmanager
async def running_node(base: Path, *, authority: Keypair | None = ALICE,
                       pool: TransactionPool | None = None, **config: Any
                       ) -> AsyncIterator[Node]:
    """A dev-chain node with RPC on a free port, running in this trio loop."""
    genesis = build_genesis(dataclasses.replace(dev_spec(), slot_duration_ms=SLOT_MS))
    settings: dict[str, Any] = {"rpc_port": free_port(), "prometheus_port": None,
                                "network": False}
    settings.update(config)
    with ChainStore.open(base, genesis) as store:
        node = Node(NodeConfig(base_path=base, authority=authority, **settings), genesis, store)
        if pool is not None:
            node.pool = pool
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            yield node
            nursery.cancel_scope.cancel()


def url(node: Node) -> str:
    return f"http://127.0.0.1:{node.config.rpc_port}/"


def ws_url(node: Node) -> str:
    return f"ws://127.0.0.1:{node.config.rpc_port}/"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path / "node", rpc_max_subscriptions=4,
                            rpc_max_request_size=64 * 1024) as n:
        yield n


async def rpc(node: Node, method: str, *params: Any) -> Any:
    client = OpusClient(url(node), timeout=10)
    return await trio.to_thread.run_sync(client.call, method, *params)


async def rpc_error(node: Node, method: str, *params: Any) -> RpcCallError:
    with pytest.raises(RpcCallError) as info:
        await rpc(node, method, *params)
    return info.value


async def client_do(node: Node, fn: Callable[[OpusClient], Any]) -> Any:
    client = OpusClient(url(node), timeout=10)
    return await trio.to_thread.run_sync(fn, client)


def _post(target: str, body: bytes, headers: dict[str, str] | None = None,
          method: str = "POST") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(target, data=body if method == "POST" else None,
                                     method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


async def post(node: Node, body: bytes | str, headers: dict[str, str] | None = None,
               method: str = "POST") -> tuple[int, Any, dict[str, str]]:
    """Send raw bytes; (HTTP status, decoded JSON answer or None, headers)."""
    data = body.encode() if isinstance(body, str) else body
    status, raw, answer_headers = await trio.to_thread.run_sync(_post, url(node), data, headers,
                                                               method)
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, decoded, {k.lower(): v for k, v in answer_headers.items()}


def request(method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        out["params"] = params
    return out


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def assert_still_serving(node: Node) -> None:
    assert (await rpc(node, "system_health"))["isSyncing"] is False


def signed(node: Node, key: Keypair, args: Struct, nonce: int, *, tip: int = 0,
           era: Era | None = None) -> bytes:
    birth_hash = None
    if era is not None and not era.immortal:
        birth_hash = node.store.hash_at(era.birth)
    ext = sign_extrinsic(key, make_call(args), nonce, node.genesis.hash, executive.SPEC_VERSION,
                         tip=tip, era=era or Era(0, 0), birth_hash=birth_hash)
    return codec.encode(ext)


def nonce_of(node: Node, key: Keypair) -> int:
    return system.account_info(node.store.best_state(), key.public).nonce


class WS:
    """A JSON-RPC WebSocket session: requests with ids, notifications kept apart."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []

    async def send_raw(self, text: str) -> Any:
        await self.conn.send_message(text)
        return await self.answer(None)

    async def answer(self, request_id: Any) -> Any:
        with trio.fail_after(10):
            while True:
                message = json.loads(await self.conn.get_message())
                if "method" in message and "id" not in message:
                    self.notifications.append(message)
                    continue
                if request_id is None or message.get("id") == request_id:
                    return message

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.conn.send_message(json.dumps(request(method, list(params), self.next_id)))
        answer: dict[str, Any] = await self.answer(self.next_id)
        return answer

    async def notification(self, subscription: str, timeout: float = 10.0) -> Any:
        with trio.fail_after(timeout):
            while True:
                for i, n in enumerate(self.notifications):
                    if n["params"]["subscription"] == subscription:
                        del self.notifications[i]
                        return n
                message = json.loads(await self.conn.get_message())
                self.notifications.append(message)

    async def drain(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            while True:
                self.notifications.append(json.loads(await self.conn.get_message()))


@asynccontextmanager
async def websocket(node: Node) -> AsyncIterator[WS]:
    async with open_websocket_url(ws_url(node)) as conn:
        yield WS(conn)


# ---------------------------------------------------------------------------
# system_*, rpc_methods


async def test_system_methods(node: Node) -> None:
    assert await rpc(node, "system_health") == {"peers": 0, "isSyncing": False,
                                                "shouldHavePeers": False}
    assert await rpc(node, "system_name") == "Opus Node"
    assert isinstance(await rpc(node, "system_version"), str)
    assert await rpc(node, "system_chain") == "Opus Development"
    assert await rpc(node, "system_chainType") == "Development"
    assert await rpc(node, "system_properties") == {"tokenSymbol": "OPUS", "tokenDecimals": 12}
    assert await rpc(node, "system_peers") == []
    assert await rpc(node, "system_nodeRoles") == ["Authority"]
    peer_id = await rpc(node, "system_localPeerId")
    assert peer_id is None or isinstance(peer_id, str)
    assert await rpc(node, "system_localListenAddresses") == []  # it runs no network
    await wait_for(lambda: node.best.number >= 1)
    sync = await rpc(node, "system_syncState")
    assert sync["startingBlock"] == 0
    assert sync["currentBlock"] >= 1 and sync["highestBlock"] >= sync["currentBlock"]
    assert await rpc(node, "system_accountNextIndex", ALICE.address) == 0

    methods = set((await rpc(node, "rpc_methods"))["methods"])
    assert REQUIRED_METHODS <= methods
    assert not methods & UNSAFE_METHODS  # safe mode lists only what may be called


async def test_sync_state_names_the_highest_block_a_peer_announced(node: Node) -> None:
    """``highestBlock`` is the best of the node's own best block and its peers' (what the
    network layer's peer table reports through ``peer_info``)."""
    await wait_for(lambda: node.best.number >= 1)
    ahead = node.best.number + 500
    node.peer_info = lambda: [{"peerId": "12D3KooWpeer", "bestNumber": ahead}]
    sync = await rpc(node, "system_syncState")
    assert sync["highestBlock"] == ahead and sync["currentBlock"] < ahead


# Where a reader looks for a method: node/rpc/methods/<its namespace>.py.
NAMESPACE_MODULES = {"rpc": "system", "payment": "state"}  # the rest: their own module


def test_each_method_is_in_its_namespaces_module() -> None:
    misplaced = []
    for name, spec in METHODS.items():
        namespace = name.split("_")[0]
        module = f"node.rpc.methods.{NAMESPACE_MODULES.get(namespace, namespace)}"
        if spec.fn.__module__ != module:
            misplaced.append(f"{name} is in {spec.fn.__module__}, not {module}")
    assert not misplaced, "\n".join(misplaced)


# ---------------------------------------------------------------------------
# chain_*


async def test_chain_methods(node: Node) -> None:
    await wait_for(lambda: node.finalized.number >= 2)
    genesis_hash = await rpc(node, "chain_getBlockHash", 0)
    assert genesis_hash == hex0x(node.genesis.hash)
    assert await rpc(node, "chain_getBlockHash", "0x0") == genesis_hash
    assert await rpc(node, "chain_getBlockHash", [0, 10**9]) == [genesis_hash, None]
    assert await rpc(node, "chain_getBlockHash", 10**9) is None

    best_hash = await rpc(node, "chain_getBlockHash")
    header = await rpc(node, "chain_getHeader", best_hash)
    assert set(header) == {"parentHash", "number", "stateRoot", "extrinsicsRoot", "digest",
                           "timestamp", "slot", "author"}
    assert header["digest"] == {"logs": []}
    assert header["author"] == ALICE.address
    number = int(header["number"], 16)
    assert number >= 2
    assert header_from_json(header).hash == from_hex0x(best_hash)  # the JSON is the header
    assert await rpc(node, "chain_getBlockHash", number) == best_hash
    assert (await rpc(node, "chain_getHeader"))["number"].startswith("0x")
    assert await rpc(node, "chain_getHeader", hex0x(bytes(32))) is None

    block = await rpc(node, "chain_getBlock", best_hash)
    assert block["block"]["header"] == header
    assert block["block"]["extrinsics"] == []
    assert await rpc(node, "chain_getBlock", hex0x(bytes(32))) is None

    finalized = await rpc(node, "chain_getFinalizedHead")
    assert await rpc(node, "chain_getFinalisedHead") == finalized
    final_block = await rpc(node, "chain_getBlock", finalized)
    # A sole authority finalizes its own blocks: the justification comes with the block.
    engine, encoded = final_block["justifications"][0]
    assert engine == "FRNK" and encoded.startswith("0x")
    genesis_block = await rpc(node, "chain_getBlock", genesis_hash)
    assert genesis_block["justifications"] is None


# ---------------------------------------------------------------------------
# state_*, payment_*


async def test_state_methods(node: Node) -> None:
    await wait_for(lambda: node.best.number >= 1)
    key = system.account.key(ALICE.public)
    raw = await rpc(node, "state_getStorage", hex0x(key))
    info = codec.decode(from_hex0x(raw), system.AccountInfo)
    assert info.free > 0
    assert await rpc(node, "state_getStorage", hex0x(b"no such key")) is None
    genesis_hash = hex0x(node.genesis.hash)
    at_genesis = await rpc(node, "state_getStorage", hex0x(key), genesis_hash)
    assert codec.decode(from_hex0x(at_genesis), system.AccountInfo).nonce == 0

    missing = system.account.key(bytes(32))
    proof = await rpc(node, "state_getReadProof", [hex0x(key), hex0x(missing)], genesis_hash)
    assert proof["at"] == genesis_hash
    proven = verify_proof(node.genesis.header.state_root,
                          [from_hex0x(n) for n in proof["proof"]], [key, missing])
    assert proven == {key: from_hex0x(at_genesis), missing: None}
    best = await rpc(node, "state_getReadProof", [hex0x(key)])
    assert best["at"].startswith("0x") and best["proof"]

    version = await rpc(node, "state_getRuntimeVersion")
    assert version["specName"] == "opus"
    assert version["specVersion"] == executive.SPEC_VERSION
    assert version["transactionVersion"] == executive.TRANSACTION_VERSION

    raw_ext = signed(node, BOB, balances.TransferArgs(CHARLIE.public, ONE), 0)
    info_json = await rpc(node, "payment_queryInfo", hex0x(raw_ext))
    ext: Extrinsic = codec.decode(raw_ext, Extrinsic)
    weight = executive.call_weight(ext)
    assert info_json == {"weight": weight, "class": "normal",
                         "partialFee": str(executive.compute_fee(len(raw_ext), weight))}


# ---------------------------------------------------------------------------
# author_* and the opus_* methods, through a whole creator story


async def test_author_and_opus_methods(node: Node) -> None:
    song, remix, other = b"a song", b"a remix of the song", b"another work"

    def story(client: OpusClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["song"], out["song_receipt"] = client.register_work(ALICE, song, title="Song",
                                                                kind="audio")
        out["other"], _ = client.register_work(ALICE, other, title="Other")
        offer = licensing.OfferTerms(
            work_id=out["song"], transferable=False, commercial_use=True,
            commercial_attribution=False, commercial_rev_share=1000, derivatives_allowed=True,
            derivatives_attribution=False, derivatives_approval=False,
            derivatives_reciprocal=False, ai_training=licensing.AiUse.ALLOWED,
            ai_inference=licensing.AiUse.NOT_ALLOWED, minting_fee=5 * ONE, expiry_blocks=0,
            max_supply=0, legal_uri="", legal_hash=None)
        out["terms"], _ = client.offer_terms(ALICE, offer)
        out["license"], out["license_receipt"] = client.acquire_license(BOB, out["terms"])
        out["remix"], _ = client.register_work(BOB, remix, title="Remix",
                                               parents=[(out["song"], out["license"])])
        out["pay_receipt"] = client.pay_revenue(DAVE, out["remix"], 100 * ONE, "sales")
        out["usage"], _ = client.record_usage(BOB, out["license"], "ai_training", "model-x", 7)
        return out

    s = await client_do(node, story)
    song_id, remix_id, license_id, terms_id = s["song"], s["remix"], s["license"], s["terms"]

    info = await rpc(node, "opus_accountInfo", ALICE.address)
    assert info["address"] == ALICE.address and info["nonce"] == 3
    assert info["nextNonce"] == 3 and isinstance(info["free"], str)
    assert (await rpc(node, "opus_accountInfo", hex0x(BOB.public)))["address"] == BOB.address

    work = await rpc(node, "opus_getWork", song_id)
    assert work["id"] == song_id and work["title"] == "Song" and work["kind"] == "audio"
    assert work["owner"] == ALICE.address
    assert work["contentHash"] == hex0x(sha256(song))
    assert work["creators"] == [{"account": ALICE.address, "bps": 10_000}]
    assert work["registeredAt"] == s["song_receipt"].block_number
    assert await rpc(node, "opus_getWork", 999) is None
    by_hash = await rpc(node, "opus_getWorkByContentHash", hex0x(sha256(remix)))
    assert by_hash["id"] == remix_id
    assert by_hash["parents"] == [{"workId": song_id, "licenseId": license_id}]
    assert by_hash["royaltyStack"] == [{"workId": song_id, "bps": 1000}]
    assert await rpc(node, "opus_getWorkByContentHash", hex0x(bytes(32))) is None

    page = await rpc(node, "opus_listWorks", {"owner": ALICE.address, "limit": 1})
    assert [w["id"] for w in page["items"]] == [song_id] and page["next"] == s["other"]
    page = await rpc(node, "opus_listWorks", {"owner": ALICE.address, "start": page["next"]})
    assert [w["id"] for w in page["items"]] == [s["other"]] and page["next"] is None
    # The options object may also be the whole params object, or named "query".
    for params in ({"owner": BOB.address}, {"query": {"owner": BOB.address}}):
        _, answer, _ = await post(node, json.dumps(request("opus_listWorks", params)))
        assert [w["id"] for w in answer["result"]["items"]] == [remix_id]

    terms = await rpc(node, "opus_getTerms", terms_id)
    assert terms["mintingFee"] == str(5 * ONE) and terms["aiTraining"] == "allowed"
    assert terms["offeredBy"] == ALICE.address and terms["minted"] == 1
    assert (await rpc(node, "opus_listTerms", {"work": song_id}))["items"] == [terms]
    assert await rpc(node, "opus_getTerms", 999) is None

    lic = await rpc(node, "opus_getLicense", license_id)
    assert lic["licensee"] == BOB.address and lic["workId"] == song_id and lic["live"] is True
    assert (await rpc(node, "opus_listLicenses", {"licensee": BOB.address}))["items"] == [lic]
    assert (await rpc(node, "opus_listLicenses", {"work": song_id}))["items"] == [lic]
    assert (await rpc(node, "opus_listLicenses", {"work": remix_id}))["items"] == []

    earnings = await rpc(node, "opus_getEarnings", ALICE.address)
    # 5 (license fee into the song) + 10 (10% of the 100 paid into the remix)
    assert earnings["total"] == str(15 * ONE) and earnings["creditCount"] == 2
    assert earnings["works"] == [{"workId": song_id, "amount": str(5 * ONE)},
                                 {"workId": remix_id, "amount": str(10 * ONE)}]
    assert [c["amount"] for c in earnings["credits"]] == [str(5 * ONE), str(10 * ONE)]
    assert earnings["credits"][1]["sourceWork"] == remix_id
    assert earnings["credits"][1]["viaWork"] == song_id
    assert earnings["credits"][1]["reason"] == "revenue"
    paged = await rpc(node, "opus_getEarnings", ALICE.address, {"limit": 1})
    assert len(paged["credits"]) == 1 and paged["next"] == 1
    second = await rpc(node, "opus_getEarnings", ALICE.address, {"start": 1})
    assert [c["seq"] for c in second["credits"]] == [1] and second["next"] is None
    for_remix = await rpc(node, "opus_getEarnings", BOB.address, {"work": remix_id})
    assert for_remix["work"] == {"workId": remix_id, "revenue": str(100 * ONE),
                                 "paidToAccount": str(90 * ONE)}

    usage_page = await rpc(node, "opus_listUsage", {"work": song_id})
    assert len(usage_page["items"]) == 1
    record = usage_page["items"][0]
    assert record["purpose"] == "ai_training" and record["subject"] == "model-x"
    assert record["units"] == 7 and record["licensee"] == BOB.address
    assert (await rpc(node, "opus_listUsage", {"license": license_id}))["items"] == [record]

    pay = s["pay_receipt"]
    events = await rpc(node, "opus_getEvents", hex0x(pay.block_hash))
    names = [(e["module"], e["name"]) for e in events if e["extrinsicIndex"] == pay.index]
    assert ("royalties", "RoyaltyPaid") in names and names[-1] == ("system", "ExtrinsicSuccess")
    credited = [e["data"] for e in events if e["name"] == "Credited"]
    assert {c["account"] for c in credited} == {ALICE.address, BOB.address}
    assert isinstance(await rpc(node, "opus_getEvents"), list)
    assert await rpc(node, "opus_getEvents", hex0x(bytes(32))) is None

    tx = await rpc(node, "opus_getTransaction", hex0x(pay.tx_hash))
    assert tx["status"] in ("inBlock", "finalized") and tx["success"] is True
    assert tx["blockNumber"] == pay.block_number and tx["index"] == pay.index
    assert await rpc(node, "opus_getTransaction", hex0x(bytes(32))) is None

    proof = await rpc(node, "opus_getProvenanceProof", remix_id)
    verified = verify_provenance_proof(proof)
    assert verified.work.id == remix_id and verified.work.owner == BOB.public
    assert proof["work"] == by_hash
    at_block = await rpc(node, "opus_getProvenanceProof", song_id, proof["blockHash"])
    assert at_block["blockHash"] == proof["blockHash"]
    assert await rpc(node, "opus_getProvenanceProof", 999) is None
    assert await rpc(node, "opus_getEquivocations") == []

    # Pending extrinsics: a gap in the nonce keeps this one in the future queue.
    future = signed(node, CHARLIE, balances.TransferArgs(DAVE.public, ONE), 5)
    tx_hash = await rpc(node, "author_submitExtrinsic", hex0x(future))
    assert tx_hash == hex0x(blake2_256(future))
    assert hex0x(future) in await rpc(node, "author_pendingExtrinsics")
    assert (await rpc(node, "opus_getTransaction", tx_hash))["status"] == "future"


async def test_submit_extrinsic_included_and_next_nonce(node: Node) -> None:
    first = signed(node, BOB, balances.TransferArgs(CHARLIE.public, ONE), 0)
    second = signed(node, BOB, balances.TransferArgs(CHARLIE.public, ONE), 1)
    await rpc(node, "author_submitExtrinsic", hex0x(first))
    await rpc(node, "author_submitExtrinsic", hex0x(second))
    assert await rpc(node, "system_accountNextIndex", BOB.address) in (1, 2)
    await wait_for(lambda: nonce_of(node, BOB) == 2)
    receipt = await rpc(node, "opus_getTransaction", hex0x(blake2_256(second)))
    assert receipt["success"] is True and receipt["fee"] is not None
    assert (await rpc(node, "opus_accountInfo", BOB.address))["nextNonce"] == 2


async def test_nonce_reads_use_the_pools_index_not_a_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding: ``system_accountNextIndex`` and ``opus_accountInfo`` rebuilt and sorted the
    whole pool and hashed every pooled transaction per call; one batch of 1,024 such calls
    on a pool of 8,000 held the node for 17.5 s. Now the answer comes from the pool's
    per-signer index: not one pass over the pool during the batch."""
    scans = []
    real_ready_order = TransactionPool._ready_order

    def counting_ready_order(self: TransactionPool, limit: int | None) -> Any:
        scans.append(limit)
        return real_ready_order(self, limit)

    async with running_node(tmp_path / "n", authority=None) as n:  # nothing gets included
        for nonce in range(300):
            await n.submit_extrinsic(signed(n, BOB, balances.TransferArgs(CHARLIE.public, 1),
                                            nonce))
        for nonce in range(5, 10):
            await n.submit_extrinsic(signed(n, DAVE, balances.TransferArgs(CHARLIE.public, 1),
                                            nonce))
        assert n.pool.status()[:2] == (300, 5)
        monkeypatch.setattr(TransactionPool, "_ready_order", counting_ready_order)
        calls = []
        for i in range(512):
            who = (BOB, DAVE, CHARLIE)[i % 3].address
            calls.append({"jsonrpc": "2.0", "id": 2 * i, "method": "system_accountNextIndex",
                          "params": [who]})
            calls.append({"jsonrpc": "2.0", "id": 2 * i + 1, "method": "opus_accountInfo",
                          "params": [who]})
        status, answers, _ = await post(n, json.dumps(calls))
        assert status == 200 and len(answers) == 1024
        expected = {BOB.address: 300, DAVE.address: 0, CHARLIE.address: 0}
        for call, answer in zip(calls, answers, strict=True):
            who = call["params"][0]  # type: ignore[index]
            result = answer["result"]
            assert (result if call["method"] == "system_accountNextIndex"
                    else result["nextNonce"]) == expected[who]
        assert scans == []


async def test_refused_extrinsics_get_named_errors(node: Node) -> None:
    await wait_for(lambda: node.best.number >= 1)
    args = balances.TransferArgs(CHARLIE.public, ONE)

    bad_signature = codec.decode(signed(node, BOB, args, 0), Extrinsic)
    forged = codec.encode(dataclasses.replace(bad_signature, signature=bytes(64)))
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(forged))
    assert isinstance(e, TransactionRefused)
    assert e.code == 1010 and e.reason == "InvalidSignature"

    e = await rpc_error(node, "author_submitExtrinsic", "0xdeadbeef")
    assert e.code == 1010 and e.data.startswith("Malformed")

    other_chain = sign_extrinsic(BOB, make_call(args), 0, bytes(32), executive.SPEC_VERSION)
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(codec.encode(other_chain)))
    assert e.code == 1010 and e.data.startswith("InvalidSignature")

    poor = Keypair.from_seed(blake2_256(b"no funds"))
    e = await rpc_error(node, "author_submitExtrinsic",
                        hex0x(signed(node, poor, balances.TransferArgs(BOB.public, 1), 0)))
    assert e.code == 1010 and e.data.startswith("CannotPayFee")

    future = signed(node, BOB, args, 3)
    await rpc(node, "author_submitExtrinsic", hex0x(future))
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(future))
    assert e.code == 1013 and e.data.startswith("AlreadyImported")
    same_nonce = signed(node, BOB, balances.TransferArgs(DAVE.public, ONE), 3)
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(same_nonce))
    assert e.code == 1014 and e.data.startswith("TooLowPriority")

    included = signed(node, CHARLIE, args, 0)
    await rpc(node, "author_submitExtrinsic", hex0x(included))
    await wait_for(lambda: nonce_of(node, CHARLIE) == 1)
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(included))
    assert e.code in (1010, 1012)  # stale nonce, or banned for now as just included
    stale = signed(node, CHARLIE, balances.TransferArgs(DAVE.public, 2), 0)
    e = await rpc_error(node, "author_submitExtrinsic", hex0x(stale))
    assert e.code == 1010 and e.data.startswith("StaleNonce")

    for bad in ("deadbeef", "0xzz", 7, "0x"):
        e = await rpc_error(node, "author_submitExtrinsic", bad)
        assert e.code == -32602
    e = await rpc_error(node, "payment_queryInfo", "0x01")
    assert e.code == -32602 and "does not decode" in str(e)
    await assert_still_serving(node)


# ---------------------------------------------------------------------------
# Bad input over HTTP


async def test_bad_requests_get_json_rpc_errors(node: Node) -> None:
    async def expect(body: Any, code: int, answer_id: Any = None) -> dict[str, Any]:
        text = body if isinstance(body, str | bytes) else json.dumps(body)
        status, answer, _ = await post(node, text)
        assert status == 200, answer
        assert answer["jsonrpc"] == "2.0" and answer["id"] == answer_id, answer
        assert answer["error"]["code"] == code, answer
        error: dict[str, Any] = answer["error"]
        return error

    await expect("{not json", -32700)
    await expect(b"\xff\xfe", -32700)
    await expect("[", -32700)
    await expect("[]", -32600)
    await expect('"a string"', -32600)
    await expect("42", -32600)
    await expect({"jsonrpc": "1.0", "method": "system_name", "id": 3}, -32600, 3)
    await expect({"jsonrpc": "2.0", "method": 5, "id": 4}, -32600, 4)
    await expect({"jsonrpc": "2.0", "method": "system_name", "params": "x", "id": 5}, -32600, 5)
    await expect({"jsonrpc": "2.0", "method": "system_name", "id": {"obj": 1}}, -32600)
    await expect({"jsonrpc": "2.0", "method": "system_name", "id": 6, "extra": 1}, -32600, 6)
    error = await expect(request("no_such_method"), -32601, 1)
    assert error["message"] == "Method not found"
    error = await expect(request("chain_getHeader", ["0x00", 1, 2]), -32602, 1)
    assert "chain_getHeader takes [hash?]" in error["message"]
    error = await expect(request("chain_getHeader", ["nothex"]), -32602, 1)
    assert "hash" in error["message"]
    await expect(request("chain_getHeader", {"nope": 1}), -32602, 1)
    await expect(request("opus_getWork", ["abc"]), -32602, 1)
    await expect(request("opus_getWork", [-1]), -32602, 1)
    await expect(request("opus_getWork", [True]), -32602, 1)
    await expect(request("opus_accountInfo", ["opus1notanaddress"]), -32602, 1)
    await expect(request("opus_listWorks", [{}]), -32602, 1)
    await expect(request("opus_listWorks", [{"owner": ALICE.address, "bogus": 1}]), -32602, 1)
    await expect(request("opus_listWorks", [{"owner": ALICE.address, "limit": 10**6}]),
                 -32602, 1)
    await expect(request("opus_listLicenses", [{"work": 1, "licensee": ALICE.address}]),
                 -32602, 1)
    await expect(request("opus_listUsage", [{}]), -32602, 1)
    await expect(request("state_getStorage", ["0x00", hex0x(bytes(32))]), -32602, 1)
    await expect(request("state_getReadProof", ["0x00"]), -32602, 1)
    await expect(request("opus_getEarnings", [ALICE.address, {"wrong": 1}]), -32602, 1)

    # Unsafe methods are refused in safe mode.
    error = await expect(request("author_rotateKeys"), -32601, 1)
    assert error["message"] == "Method not allowed"
    await expect(request("author_insertKey", ["aura", "//Bob", BOB.address]), -32601, 1)

    # Subscriptions need a WebSocket.
    await expect(request("chain_subscribeNewHeads"), -32601, 1)

    # Named params work.
    status, answer, _ = await post(node, json.dumps(request("chain_getBlockHash",
                                                            {"number": 0})))
    assert answer["result"] == hex0x(node.genesis.hash)

    # Batches: answers in order, notifications get none.
    batch = [request("system_name", [], 1), {"jsonrpc": "2.0", "method": "system_name"},
             request("nope", [], "two"), 17]
    status, answer, _ = await post(node, json.dumps(batch))
    assert status == 200 and [a["id"] for a in answer] == [1, "two", None]
    assert answer[0]["result"] == "Opus Node"
    assert answer[1]["error"]["code"] == -32601 and answer[2]["error"]["code"] == -32600
    status, answer, _ = await post(node, json.dumps([{"jsonrpc": "2.0",
                                                      "method": "system_name"}]))
    assert status == 200 and answer is None
    status, answer, _ = await post(node, '{"jsonrpc":"2.0","method":"system_name"}')
    assert status == 200 and answer is None

    # An oversize body: a JSON-RPC error (and HTTP 413), and the server carries on.
    big = json.dumps(request("system_name", ["x" * (70 * 1024)]))
    status, answer, _ = await post(node, big)
    assert status == 413 and answer["error"]["code"] == -32007

    status, answer, _ = await post(node, b"", method="GET")
    assert status == 405
    await expect("[" * 30_000 + "]" * 30_000, -32700)  # too deep to parse

    # Not even HTTP: the connection is dropped, the server carries on.
    assert node.config.rpc_port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", node.config.rpc_port)
    async with stream:
        await stream.send_all(b"\x00\x01 GARBAGE \xff\r\n\r\n" * 100)
        with trio.move_on_after(5):
            while await stream.receive_some(4096):
                pass
    await assert_still_serving(node)


async def test_cors_localhost_only_by_default(node: Node) -> None:
    body = json.dumps(request("system_name"))
    status, answer, headers = await post(node, body, {"Origin": "http://localhost:3000"})
    assert status == 200 and answer["result"] == "Opus Node"
    assert headers.get("access-control-allow-origin") == "http://localhost:3000"
    status, _, headers = await post(node, body, {"Origin": "https://127.0.0.1"})
    assert status == 200
    status, _, _ = await post(node, body, {"Origin": "https://evil.example"})
    assert status == 403
    status, _, _ = await post(node, body, {"Origin": "http://localhost.evil.example"})
    assert status == 403
    with pytest.raises(HandshakeError):  # the upgrade is refused (HTTP 403)
        async with open_websocket_url(ws_url(node),
                                      extra_headers=[(b"Origin", b"https://evil.example")]) as c:
            await c.get_message()
    async with open_websocket_url(ws_url(node),
                                  extra_headers=[(b"Origin", b"http://127.0.0.1:8080")]) as c:
        await c.send_message(json.dumps(request("system_name")))
        assert json.loads(await c.get_message())["result"] == "Opus Node"
    await assert_still_serving(node)


async def test_cors_configured_lists(tmp_path: Path) -> None:
    body = json.dumps(request("system_name"))
    async with running_node(tmp_path / "a", rpc_cors=("https://app.example",)) as n:
        status, _, headers = await post(n, body, {"Origin": "https://app.example"})
        assert status == 200
        assert headers.get("access-control-allow-origin") == "https://app.example"
        status, _, _ = await post(n, body, {"Origin": "http://localhost"})
        assert status == 403
    async with running_node(tmp_path / "b", rpc_cors=("*",)) as n:
        status, _, headers = await post(n, body, {"Origin": "https://anything.example"})
        assert status == 200 and headers.get("access-control-allow-origin") == "*"


async def test_unsafe_methods_with_rpc_methods_unsafe(tmp_path: Path) -> None:
    async with running_node(tmp_path / "n", rpc_methods="unsafe") as n:
        methods = set((await rpc(n, "rpc_methods"))["methods"])
        assert UNSAFE_METHODS <= methods
        public = await rpc(n, "author_rotateKeys")
        assert await rpc(n, "author_hasKey", public, "aura") is True
        assert await rpc(n, "author_hasKey", BOB.address, "aura") is False
        assert await rpc(n, "author_insertKey", "aura", "//Bob", BOB.address) is None
        assert await rpc(n, "author_hasKey", BOB.address, "aura") is True
        assert await rpc(n, "author_hasKey", ALICE.address, "gran") is True  # its authority key
        e = await rpc_error(n, "author_insertKey", "aura", "//Bob", ALICE.address)
        assert e.code == -32602
        e = await rpc_error(n, "author_insertKey", "nope", "//Bob", BOB.address)
        assert e.code == -32602
        stored = list((tmp_path / "n" / "keystore").iterdir())
        # The rotated key as aura and gran, bob's as aura; alice's dev key is never written.
        assert len(stored) == 3 and all(p.stat().st_mode & 0o077 == 0 for p in stored)


# ---------------------------------------------------------------------------
# WebSocket


async def test_ws_requests_and_bad_input(node: Node) -> None:
    async with websocket(node) as ws:
        assert (await ws.call("system_name"))["result"] == "Opus Node"
        answer = await ws.send_raw("{broken")
        assert answer["error"]["code"] == -32700
        answer = await ws.send_raw(json.dumps(request("nope", [], 9)))
        assert answer["error"]["code"] == -32601 and answer["id"] == 9
        answer = await ws.send_raw(json.dumps(request("opus_getWork", ["x"], 10)))
        assert answer["error"]["code"] == -32602
        answer = await ws.send_raw("x" * (65 * 1024))
        assert answer["error"]["code"] == -32007
        await ws.conn.send_message(b"\xff\xfe not utf-8")
        assert (await ws.answer(None))["error"]["code"] == -32700
        batch = await ws.send_raw(json.dumps([request("system_chain", [], 1),
                                              request("system_name", [], 2)]))
        assert [a["result"] for a in batch] == ["Opus Development", "Opus Node"]
        assert (await ws.call("system_health"))["result"]["peers"] == 0
    await assert_still_serving(node)


async def test_ws_head_subscriptions(node: Node) -> None:
    async with websocket(node) as ws:
        answer = await ws.call("chain_subscribeNewHeads")
        heads = answer["result"]
        assert isinstance(heads, str)
        numbers = []
        for _ in range(3):
            note = await ws.notification(heads)
            assert note["jsonrpc"] == "2.0" and note["method"] == "chain_newHead"
            assert set(note["params"]) == {"subscription", "result"}
            numbers.append(int(note["params"]["result"]["number"], 16))
        assert numbers == sorted(numbers) and numbers[-1] > numbers[0]

        finalized = (await ws.call("chain_subscribeFinalizedHeads"))["result"]
        note = await ws.notification(finalized)
        assert note["method"] == "chain_finalizedHead"
        header = note["params"]["result"]
        assert header_from_json(header).number == int(header["number"], 16)

        assert (await ws.call("chain_unsubscribeNewHeads", heads))["result"] is True
        assert (await ws.call("chain_unsubscribeNewHeads", heads))["result"] is False
        assert (await ws.call("chain_unsubscribeFinalizedHeads", heads))["result"] is False
        assert (await ws.call("chain_unsubscribeNewHeads", "unknown"))["result"] is False
        await ws.drain(0.1)
        ws.notifications = [n for n in ws.notifications
                            if n["params"]["subscription"] != heads]
        await ws.drain(3 * SLOT_MS / 1000)
        assert all(n["params"]["subscription"] == finalized for n in ws.notifications)
        assert any(n["params"]["subscription"] == finalized for n in ws.notifications)

        # rpc_max_subscriptions is 4 here: the fifth is refused, the connection goes on.
        extra = [(await ws.call("chain_subscribeNewHeads"))["result"] for _ in range(3)]
        assert all(isinstance(i, str) for i in extra)
        refused = await ws.call("chain_subscribeNewHeads")
        assert refused["error"]["code"] == -32006
        assert (await ws.call("chain_unsubscribeNewHeads", extra[0]))["result"] is True
        assert isinstance((await ws.call("chain_subscribeNewHeads"))["result"], str)
    await assert_still_serving(node)


async def test_submit_and_watch_ready_in_block_finalized(node: Node) -> None:
    raw = signed(node, BOB, balances.TransferArgs(CHARLIE.public, ONE), 0)
    async with websocket(node) as ws:
        sub = (await ws.call("author_submitAndWatchExtrinsic", hex0x(raw)))["result"]
        statuses: list[Any] = []
        while not (statuses and isinstance(statuses[-1], dict) and "finalized" in statuses[-1]):
            note = await ws.notification(sub)
            assert note["method"] == "author_extrinsicUpdate"
            statuses.append(note["params"]["result"])
        assert statuses[0] == "ready"
        in_block = statuses[1]["inBlock"]
        assert statuses[2] == {"finalized": in_block}
        assert len(statuses) == 3
        block = node.store.block(from_hex0x(in_block))
        assert block is not None and raw in block.extrinsics

        # Refused at once: an error answer, no subscription.
        forged = codec.encode(dataclasses.replace(codec.decode(raw, Extrinsic),
                                                  nonce=1, signature=bytes(64)))
        answer = await ws.call("author_submitAndWatchExtrinsic", hex0x(forged))
        assert answer["error"]["code"] == 1010
        assert answer["error"]["data"].startswith("InvalidSignature")
        answer = await ws.call("author_submitAndWatchExtrinsic", "0x1234")
        assert answer["error"]["code"] == 1010


async def test_submit_and_watch_future_usurped_invalid(node: Node) -> None:
    async with websocket(node) as ws:
        # Nonce 1 while the account is at 0: "future"; replaced by a higher tip: "usurped".
        low = signed(node, DAVE, balances.TransferArgs(BOB.public, 1), 1)
        sub = (await ws.call("author_submitAndWatchExtrinsic", hex0x(low)))["result"]
        assert (await ws.notification(sub))["params"]["result"] == "future"
        high = signed(node, DAVE, balances.TransferArgs(BOB.public, 1), 1, tip=ONE)
        await rpc(node, "author_submitExtrinsic", hex0x(high))
        usurped = (await ws.notification(sub))["params"]["result"]
        assert usurped == {"usurped": hex0x(blake2_256(high))}

        # Mortal for two blocks and stuck behind a nonce gap: "invalid" once it expires.
        best = node.best.number
        doomed = signed(node, CHARLIE, balances.TransferArgs(BOB.public, 1), 7,
                        era=Era(best, 2))
        sub = (await ws.call("author_submitAndWatchExtrinsic", hex0x(doomed)))["result"]
        assert (await ws.notification(sub))["params"]["result"] == "future"
        assert (await ws.notification(sub))["params"]["result"] == "invalid"
        assert (await ws.call("author_unwatchExtrinsic", sub))["result"] is False

        # Unwatching stops the updates and forgets the watcher.
        again = signed(node, DAVE, balances.TransferArgs(BOB.public, 2), 9)
        sub = (await ws.call("author_submitAndWatchExtrinsic", hex0x(again)))["result"]
        assert (await ws.notification(sub))["params"]["result"] == "future"
        assert (await ws.call("author_unwatchExtrinsic", sub))["result"] is True
        await wait_for(lambda: not node.tx_watchers.get(blake2_256(again)))


async def test_submit_and_watch_dropped(tmp_path: Path) -> None:
    limits = PoolLimits(future_count=1)
    async with running_node(tmp_path / "n", pool=TransactionPool(limits)) as n:
        async with websocket(n) as ws:
            waiting = signed(n, DAVE, balances.TransferArgs(BOB.public, 1), 4)
            sub = (await ws.call("author_submitAndWatchExtrinsic", hex0x(waiting)))["result"]
            assert (await ws.notification(sub))["params"]["result"] == "future"
            # A future transaction with a higher tip takes the only future slot.
            better = signed(n, CHARLIE, balances.TransferArgs(BOB.public, 1), 4, tip=ONE)
            await rpc(n, "author_submitExtrinsic", hex0x(better))
            assert (await ws.notification(sub))["params"]["result"] == "dropped"



async def test_equivocations_are_reported(tmp_path: Path) -> None:
    # A full node (no authority, so nothing is authored behind our back) is given two
    # different blocks sealed by alice for the same slot.
    async with running_node(tmp_path / "n", authority=None) as n:
        parent = n.best
        slot = n.now_ms() // SLOT_MS - 1
        blocks = []
        for offset in (0, 1):
            built = build_block(n.store.best_state(), n.store.node_store, parent, [],
                                timestamp=slot * SLOT_MS + offset, author=ALICE,
                                genesis_hash=n.genesis.hash)
            blocks.append(built.block)
        for block in blocks:
            await n.import_block(block)
        reported = await rpc(n, "opus_getEquivocations")
        assert reported == [{"slot": slot, "author": ALICE.address,
                             "blocks": [hex0x(b.hash) for b in blocks]}]


# ---------------------------------------------------------------------------
# Against a real `opus --dev` process


def _wait_rpc(client: OpusClient, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"opus --dev exited with {proc.returncode}")
        try:
            client.call("system_health")
            return
        except Exception:  # noqa: BLE001 - not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
async def test_rpc_against_opus_dev_process(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "--dev", "--rpc-port", str(port),
         "--no-prometheus", "--port", str(free_port())],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        client = OpusClient(f"http://127.0.0.1:{port}", timeout=10)
        await trio.to_thread.run_sync(_wait_rpc, client, proc, 30.0)
        assert await trio.to_thread.run_sync(client.call, "system_chain") == "Opus Development"
        receipt = await trio.to_thread.run_sync(
            lambda: client.execute(BOB, balances.TransferArgs(CHARLIE.public, ONE)))
        assert receipt.success
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as conn:
            ws = WS(conn)
            sub = (await ws.call("chain_subscribeNewHeads"))["result"]
            first = await ws.notification(sub, timeout=10)
            second = await ws.notification(sub, timeout=10)
            assert (int(second["params"]["result"]["number"], 16)
                    > int(first["params"]["result"]["number"], 16))
            answer = await ws.send_raw("{oops")
            assert answer["error"]["code"] == -32700
        status, _, _ = await trio.to_thread.run_sync(
            _post, f"http://127.0.0.1:{port}/", b"x" * (2 * 1024 * 1024), None, "POST")
        assert status == 413
        assert await trio.to_thread.run_sync(client.call, "system_name") == "Opus Node"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "node.log").read_text()
    assert "Traceback" not in (tmp_path / "node.log").read_text()


def _answer(node: NodeProcess, method: str) -> Any:
    """The node's answer to ``method``; None while its RPC is not up yet."""
    try:
        return node.rpc(method)
    except RPC_NOT_READY:
        return None


@pytest.mark.slow
def test_local_listen_addresses_are_dialable(tmp_path: Path) -> None:
    """system_localListenAddresses answers what another node's --bootnodes takes: the
    default wildcard listen address as loopback first (then the machine's other addresses),
    each with the node's peer id; a second node given the first of them connects and syncs."""
    first = NodeProcess(["--dev", "--base-path", str(tmp_path / "first")],
                        tmp_path / "first.log")
    started = [first]
    try:
        port = int(first.proc.args[first.proc.args.index("--port") + 1])  # NodeProcess's pick
        first.wait_for(lambda: bool(_answer(first, "system_localListenAddresses")),
                       STARTUP_TIMEOUT_S, "the p2p listen addresses")
        peer_id = first.rpc("system_localPeerId")
        addresses = first.rpc("system_localListenAddresses")
        assert addresses[0] == f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"
        for address in addresses:
            assert address.endswith(f"/tcp/{port}/p2p/{peer_id}"), address
            assert "/0.0.0.0/" not in address, address

        second = NodeProcess(["--chain", "dev", "--base-path", str(tmp_path / "second"),
                              "--bootnodes", addresses[0]], tmp_path / "second.log")
        started.append(second)
        second.wait_for(
            lambda: peer_id in [p["peerId"] for p in _answer(second, "system_peers") or []],
            STARTUP_TIMEOUT_S, "a connection to the first node")
        second.wait_for_height(2)  # and it syncs the first node's blocks
    finally:
        for node in started:
            node.kill()
