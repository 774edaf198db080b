"""``opus_getWorksByContentHashes``: many content hashes in one call, for a dataset audit.

A real node (``test_rpc.running_node``: a dev chain in this trio loop, RPC on a free port of
127.0.0.1) with works in every state an audit tells apart: no terms, terms that refuse AI
training, several terms that allow it (the cheapest wins), constrained terms, retired and
sold-out terms, and licenses (live, expired, under terms that refuse training, held by
someone else) — then the answers, at the best block and at an earlier one, and the limits.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path
from typing import Any

import trio
from runtime_helpers import offer_terms
from test_rpc import (
    ALICE,
    BOB,
    CHARLIE,
    ONE,
    client_do,
    rpc,
    rpc_error,
    running_node,
    url,
    wait_for,
)

from client import OpusClient, Receipt
from node.rpc.methods.opus import MAX_CONTENT_HASHES
from runtime.codec import Struct, hex0x
from runtime.crypto import Keypair, sha256
from runtime.modules import licensing, provenance
from runtime.modules.licensing import AiUse

FILES = {name: f"the {name} work".encode() for name in (
    "bare", "refused", "cheap", "constrained", "retired", "sold_out", "licensed", "expired")}


def offer(work_id: int, ai: AiUse, fee: int, **changes: Any) -> licensing.OfferTerms:
    """Terms whose constrained AI use points at its legal text."""
    legal_uri = "ipfs://terms" if ai == AiUse.CONSTRAINED else ""
    return offer_terms(work_id, ai, fee, **{"legal_uri": legal_uri, **changes})


def in_blocks(client: OpusClient, calls: list[tuple[Keypair, Struct]]) -> list[Receipt]:
    """Submit every call at once (each signer's nonces follow on in the pool), then wait."""
    hashes = [client.submit(client.sign(key, args)) for key, args in calls]
    receipts = [client.wait(h) for h in hashes]
    assert all(r.success for r in receipts), [r.error for r in receipts]
    return receipts


def first_event(receipt: Receipt, module: str, name: str, field: str) -> int:
    return int(receipt.events_named(module, name)[0][field])


def build_story(client: OpusClient) -> dict[str, Any]:
    """Every case the audit tells apart; the ids of what was made."""
    out: dict[str, Any] = {"before_terms": client.best_block()[1]}
    registered = in_blocks(client, [
        (ALICE, provenance.RegisterWork(sha256(data), provenance.WorkKind.IMAGE, name, "", None,
                                        (provenance.Split(ALICE.public, provenance.BPS),), ()))
        for name, data in FILES.items()])
    works = {name: first_event(r, "provenance", "WorkRegistered", "workId")
             for name, r in zip(FILES, registered, strict=True)}
    out["works"] = works
    out["before_offers"] = client.best_block()[1]
    offers = {
        "refused": offer(works["refused"], AiUse.NOT_ALLOWED, 0, commercial_use=True),
        "cheap_dear": offer(works["cheap"], AiUse.ALLOWED, 9 * ONE),
        "cheap_constrained": offer(works["cheap"], AiUse.CONSTRAINED, 2 * ONE),
        "cheap": offer(works["cheap"], AiUse.ALLOWED, 2 * ONE, commercial_use=True,
                       commercial_rev_share=500, expiry_blocks=1000, max_supply=50),
        "constrained": offer(works["constrained"], AiUse.CONSTRAINED, ONE),
        "retired": offer(works["retired"], AiUse.ALLOWED, ONE),
        "sold_out": offer(works["sold_out"], AiUse.ALLOWED, ONE, max_supply=1),
        "licensed": offer(works["licensed"], AiUse.ALLOWED, 3 * ONE),
        "expired": offer(works["expired"], AiUse.ALLOWED, ONE, expiry_blocks=1),
    }
    offered = in_blocks(client, [(ALICE, o) for o in offers.values()])
    terms = {name: first_event(r, "licensing", "TermsOffered", "termsId")
             for name, r in zip(offers, offered, strict=True)}
    out["terms"] = terms
    out["after_offers"] = client.best_block()[1]
    # Charlie buys first on the licensed work (so Bob's license is not its first), Bob holds
    # licenses on other works too, one of them under terms that refuse training.
    licensed = in_blocks(client, [
        (CHARLIE, licensing.AcquireLicense(terms["licensed"])),
        (BOB, licensing.AcquireLicense(terms["refused"])),
        (BOB, licensing.AcquireLicense(terms["licensed"])),
        (BOB, licensing.AcquireLicense(terms["expired"])),
        (CHARLIE, licensing.AcquireLicense(terms["sold_out"])),
        (ALICE, licensing.RetireTerms(terms["retired"])),
    ])
    out["bob_license"] = first_event(licensed[2], "licensing", "LicenseAcquired", "licenseId")
    return out


def hashes_of(*names: str) -> list[str]:
    return [hex0x(sha256(FILES[n])) if n in FILES else hex0x(sha256(n.encode()))
            for n in names]


async def test_answers_each_hash_with_what_an_audit_needs(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        story = await client_do(node, build_story)
        works, terms = story["works"], story["terms"]
        names = ["bare", "refused", "cheap", "not registered", "constrained", "retired",
                 "sold_out", "licensed", "expired", "cheap"]
        answer = await rpc(node, "opus_getWorksByContentHashes", hashes_of(*names),
                           {"licensee": BOB.address})
        header = await rpc(node, "chain_getHeader", answer["blockHash"])
        assert answer["blockNumber"] == int(header["number"], 16) > 0
        entries = answer["works"]
        assert len(entries) == len(names)
        assert entries[3] is None  # not registered
        assert entries[2] == entries[9]  # the same hash twice: the same answer

        def entry(i: int) -> dict[str, Any]:
            found: dict[str, Any] = entries[i]
            assert found["workId"] == works[names[i]] and found["owner"] == ALICE.address
            assert found["kind"] == "image"
            return found

        assert entry(0)["liveTerms"] == 0 and entry(0)["trainingTerms"] is None
        assert entry(0)["trainingLicense"] is None
        assert entry(1)["liveTerms"] == 1 and entry(1)["trainingTerms"] is None
        # Bob holds a license on the refused work, but its terms refuse training.
        assert entry(1)["trainingLicense"] is None
        cheap = entry(2)
        assert cheap["liveTerms"] == 3
        # 2 OPUS allowed beats 2 OPUS constrained (same fee) and 9 OPUS allowed.
        assert cheap["trainingTerms"] == await rpc(node, "opus_getTerms", terms["cheap"])
        assert cheap["trainingTerms"]["mintingFee"] == str(2 * ONE)
        constrained = entry(4)["trainingTerms"]
        assert constrained["id"] == terms["constrained"]
        assert constrained["aiTraining"] == "constrained"
        assert constrained["legalUri"] == "ipfs://terms"
        assert entry(5)["liveTerms"] == 0 and entry(5)["trainingTerms"] is None  # retired
        assert entry(6)["liveTerms"] == 0 and entry(6)["trainingTerms"] is None  # sold out
        assert entry(7)["trainingTerms"]["id"] == terms["licensed"]
        assert entry(7)["trainingLicense"] == story["bob_license"]
        # Bob's license on the expired work lasted one block: not live any more.
        assert entry(8)["trainingTerms"]["id"] == terms["expired"]
        assert entry(8)["trainingLicense"] is None

        # Without a licensee no license is looked for; another licensee holds none.
        plain = await rpc(node, "opus_getWorksByContentHashes", hashes_of("licensed"))
        assert "trainingLicense" not in plain["works"][0]
        other = await rpc(node, "opus_getWorksByContentHashes", hashes_of("licensed"),
                          {"licensee": hex0x(ALICE.public)})
        assert other["works"][0]["trainingLicense"] is None
        assert (await rpc(node, "opus_getWorksByContentHashes", []))["works"] == []


async def test_answers_at_an_earlier_block(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        story = await client_do(node, build_story)
        names = ["cheap", "licensed", "bare"]
        before = await rpc(node, "opus_getWorksByContentHashes", hashes_of(*names),
                           {"at": hex0x(story["before_terms"])})
        assert before["blockHash"] == hex0x(story["before_terms"])
        assert before["works"] == [None, None, None]  # not registered yet
        offered = await rpc(node, "opus_getWorksByContentHashes", hashes_of(*names),
                            {"at": hex0x(story["before_offers"]), "licensee": BOB.address})
        assert [w["workId"] for w in offered["works"]] == [story["works"][n] for n in names]
        assert all(w["liveTerms"] == 0 and w["trainingTerms"] is None
                   and w["trainingLicense"] is None for w in offered["works"])
        # After the offers, before any license: the terms, and no license for Bob yet.
        licensed = await rpc(node, "opus_getWorksByContentHashes", hashes_of("licensed"),
                             {"at": hex0x(story["after_offers"]), "licensee": BOB.address})
        work = licensed["works"][0]
        assert work["trainingTerms"]["minted"] == 0
        assert work["trainingLicense"] is None


async def test_limits_and_bad_params(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        most = [hex0x(sha256(b"%d" % i)) for i in range(MAX_CONTENT_HASHES)]
        answer = await rpc(node, "opus_getWorksByContentHashes", most)
        assert answer["works"] == [None] * MAX_CONTENT_HASHES
        error = await rpc_error(node, "opus_getWorksByContentHashes",
                                most + [hex0x(bytes(32))])
        assert error.code == -32602
        assert f"at most {MAX_CONTENT_HASHES} hashes a call, got {MAX_CONTENT_HASHES + 1}" \
            in str(error)
        bad = [hex0x(bytes(32)), "0x1234", hex0x(bytes(32))]
        error = await rpc_error(node, "opus_getWorksByContentHashes", bad)
        assert error.code == -32602 and "contentHashes[1]" in str(error)
        for params in (("0x" + "00" * 32,), ([hex0x(bytes(32))], {"block": 1}),
                       ([hex0x(bytes(32))], {"at": hex0x(bytes(32))}),
                       ([hex0x(bytes(32))], {"licensee": "opus1nope"})):
            error = await rpc_error(node, "opus_getWorksByContentHashes", *params)
            assert error.code == -32602, params


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed the connection (the socket reads end of file)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


async def test_a_kept_connection_the_node_closed_is_made_again(tmp_path: Path) -> None:
    """The audit's lookups share kept connections; the node closes one that stays idle
    (--rpc-request-timeout): the next call goes out on a new one instead of failing."""
    async with running_node(tmp_path / "node", rpc_request_timeout=0.5) as node:
        client = OpusClient(url(node), keep_alive=True, timeout=10)
        first = await trio.to_thread.run_sync(client.call, "system_health")
        connection = client._connection
        assert connection is not None and connection.sock is not None
        second = await trio.to_thread.run_sync(client.call, "system_health")
        assert client._connection is connection  # kept
        sock = connection.sock
        await wait_for(lambda: closed_by_peer(sock))
        answer = await trio.to_thread.run_sync(client.works_by_content_hashes,
                                               [hex0x(sha256(b"anything"))])
        assert answer["works"] == [None] and first == second
        assert client._connection is not connection
        client.close()
