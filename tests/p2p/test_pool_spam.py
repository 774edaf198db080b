"""A funded account spamming nonce-gap ("future") transactions, against two real validators.

The finding (issue 11): transactions with a nonce gap are never included, so they never pay;
one account holding about one fee filled every validator's pool (8,192) over gossip, each
further submission cost the event loop 24-35 ms, slots were missed, the publisher was never
penalized and the spammer's own gap filler was refused as PoolFull.

Here two ``opus`` validators (alice and bob, 1 s slots) run as real processes on 127.0.0.1.
A real libp2p peer (in-process, signed GossipSub) publishes 9,000 transfers from eve with
nonces 1 … 9,000 (eve's nonce is 0: every one waits for a gap). Then:

* each validator pools at most ``future_per_sender`` (16) of them;
* the publisher loses reputation per refused transaction and is banned by both validators;
* an honest transfer submitted over RPC is finalized on both;
* the same spam over RPC gets error 1016 with the limit's name, past the 16 that fit;
* eve's gap filler is accepted, promotes the 16 waiting ones, and all 17 are included;
* both validators keep finalizing, and exit 0 on SIGINT.

Every process is ended by its PID; every wait is bounded and waits on a condition.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from processes import HOST
from test_bad_peers import (
    STARTUP_TIMEOUT_S,
    STEP_TIMEOUT_S,
    Scenario,
    Validator,
    attacker,
)
from test_p2p import chain_spec

from genesis.spec import local_spec, spec_to_json
from node.txpool import PoolLimits
from runtime import codec
from runtime.crypto import dev_keypair
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import decode_extrinsic, sign_extrinsic
from runtime.modules.balances import TransferArgs
from runtime.support import make_call

pytestmark = pytest.mark.slow

SLOT_MS = 1000
TEST_TIMEOUT_S = 120
SPAM = 9000
EVE = dev_keypair("eve")
FERDIE = dev_keypair("ferdie")
BOB = dev_keypair("bob")
CHARLIE = dev_keypair("charlie")
PER_SENDER = PoolLimits().future_per_sender


def transfer(key: Any, nonce: int, genesis_hash: bytes, amount: int = 1) -> bytes:
    call = make_call(TransferArgs(CHARLIE.public, amount))
    return codec.encode(sign_extrinsic(key, call, nonce, genesis_hash, SPEC_VERSION))


def raw_rpc(port: int, method: str, params: list[Any]) -> dict[str, Any]:
    """One JSON-RPC call; the whole answer (result or error)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(f"http://{HOST}:{port}/", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def pooled_from(node: Validator, signer: bytes) -> int:
    pending = node.rpc("author_pendingExtrinsics")
    return sum(1 for raw in pending if decode_extrinsic(codec.from_hex0x(raw)).signer == signer)


async def test_a_future_nonce_spammer_cannot_fill_the_pools_and_gets_banned(
        tmp_path: Path) -> None:
    spec = local_spec(2, slot_duration_ms=SLOT_MS)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_to_json(spec), indent=2) + "\n")
    genesis_nodes = chain_spec(2, SLOT_MS)
    genesis_hash = genesis_nodes[0].hash
    spam = [transfer(EVE, nonce, genesis_hash) for nonce in range(1, SPAM + 1)]

    alice = Validator("alice", spec_path, tmp_path)
    bob = Validator("bob", spec_path, tmp_path)
    net = Scenario([alice, bob])
    try:
        alice.start([bob.multiaddr])
        bob.start([alice.multiaddr])
        with trio.fail_after(TEST_TIMEOUT_S):
            await net.until(lambda: net.agree_finalized(2), STARTUP_TIMEOUT_S,
                            "alice and bob to finalize #2 together")

            # --- the flood over gossip
            async with attacker(genesis_nodes, alice) as (a, a_ready):
                await net.until(a_ready, STEP_TIMEOUT_S, "the spammer to be connected")
                started = time.monotonic()
                for raw in spam:
                    await a.publish_extrinsic(raw)
                for node in (alice, bob):
                    await net.until(functools.partial(_logged, node, f"Banning peer {a.peer_id}"),
                                    STEP_TIMEOUT_S * 3, f"{node.name} to ban the spammer")
                print(f"[measure] both validators banned the spammer "
                      f"{time.monotonic() - started:.1f} s after its first batch")
                for node in (alice, bob):
                    penalties = [p for p in node.penalties(a.peer_id)
                                 if p[0] == "UNWANTED_TRANSACTION"]
                    assert penalties and penalties[-1][1] <= -400, penalties
                    assert await trio.to_thread.run_sync(pooled_from, node,
                                                         EVE.public) <= PER_SENDER

            # --- an honest transfer still goes through, on both
            honest = transfer(BOB, 0, genesis_hash, amount=7)
            tx_hash = await alice.arpc("author_submitExtrinsic", ["0x" + honest.hex()])

            async def final_on_both() -> bool:
                for node in (alice, bob):
                    found = await node.arpc("opus_getTransaction", [tx_hash])
                    if found is None or found["status"] != "finalized":
                        return False
                return True

            await net.until(final_on_both, STEP_TIMEOUT_S * 2, "the honest transfer's finality")

            # --- the same spam over RPC: the limits answer with their names
            answers = [await trio.to_thread.run_sync(
                raw_rpc, alice.rpc_port, "author_submitExtrinsic",
                ["0x" + transfer(FERDIE, nonce, genesis_hash).hex()]) for nonce in range(1, 101)]
            accepted = [a for a in answers if "result" in a]
            refused = [a["error"] for a in answers if "error" in a]
            assert len(accepted) == PER_SENDER
            assert {e["code"] for e in refused} == {1016}
            assert {e["data"].split(":")[0] for e in refused} == {"TooManyFuture",
                                                                  "NonceTooFarAhead"}

            # --- the spammer's own gap filler is taken and releases what waited
            for key in (EVE, FERDIE):
                waiting = await trio.to_thread.run_sync(pooled_from, alice, key.public)
                filler = transfer(key, 0, genesis_hash)
                await alice.arpc("author_submitExtrinsic", ["0x" + filler.hex()])

                async def included(key: Any = key, waiting: int = waiting) -> bool:
                    info = await alice.arpc("opus_accountInfo", [key.address])
                    return bool(info["nonce"] == waiting + 1)

                await net.until(included, STEP_TIMEOUT_S * 2,
                                f"{waiting} waiting transactions of {key.address} included")
            best = (await alice.best()).number
            await net.until(lambda: net.agree_finalized(best), STEP_TIMEOUT_S * 2,
                            "finality to carry on")
        for node in (alice, bob):
            assert node.stop() == 0, node.tail()
            assert "Traceback" not in node.log()
    finally:
        for node in (alice, bob):
            node.kill()


async def _logged(node: Validator, text: str) -> bool:
    return text in node.log()
