"""Bad peers against real validators: two ``opus`` processes (alice and bob, 1 s slots, finality
threshold 2 of 2) on 127.0.0.1, attacked by real libp2p peers (TCP, Noise, Yamux, signed
GossipSub) that this test runs in-process with trio.

Attacker A connects to validator 1 (alice) and sends, each step checked in alice's log
(``👮 Peer … penalized (KIND…): reputation N``):

1. garbage bytes on the blocks topic                           GARBAGE_MESSAGE  -100
2. a transaction batch over the 321 KiB limit                  OVERSIZE_MESSAGE -200
3. a finality vote whose signature does not verify             BAD_VOTE         -300
4. a block sealed by the wrong key (bob's key, alice's slot)   BAD_SEAL         -500: banned,
   disconnected, and its re-dials (alice is its boot node) refused on sight.

Attacker B (a fresh identity: A is banned by then) sends

5. a correctly sealed block (alice's dev key, a slot alice owns) whose state root is wrong:
   it passes the cheap gossip checks, fails import and costs its publisher BAD_BLOCK (-200)
   on alice and on bob (alice forwarded it); B is not banned for one bad block.

Ban threshold is -400 (``p2p.peers``): the four A messages add up to -500, so A's ban comes
with its last message; B's single BAD_BLOCK keeps it connected. (The node's RPC does not expose
reputations: ``system_peers`` only lists the connected peers, so scores are read from the log.)

Throughout and after, both validators keep authoring, bob has the same blocks as alice,
finality advances by at least 2 blocks after the attacks, no forged block is known to either
node, neither process dies or logs a traceback, and both exit 0 on SIGINT. Every process is
ended by its PID, every wait is bounded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID
from processes import ROOT, RPC_NOT_READY, free_port, rpc_call
from test_p2p import FakeChain, chain_spec, fast_config

from client.api import header_from_json
from genesis.builder import build_genesis
from genesis.spec import load_spec, local_spec, spec_to_json
from node import nodekey
from p2p import Network
from p2p.host import has_connection
from p2p.protocol import MAX_TX_BATCH_BYTES, encode_block, encode_vote_batch
from p2p.sync import short_hash
from runtime.block import Block, Header, seal_header
from runtime.crypto import blake2_256, dev_keypair, encode_address
from runtime.execution import extrinsics_root
from runtime.finality_types import Phase, VoteMessage, encode_vote_message, sign_vote

pytestmark = pytest.mark.slow

SLOT_MS = 1000
TEST_TIMEOUT_S = 60  # hard bound for the scenario before the shutdown (it takes ~10-15 s)
STARTUP_TIMEOUT_S = 30
STEP_TIMEOUT_S = 10
EXIT_TIMEOUT_S = 20
ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")
AUTHORITIES = (ALICE.public, BOB.public)  # local_spec(2): slot owner = AUTHORITIES[slot % 2]

PENALTY = re.compile(r"Peer (\S+) penalized \((\w+)(.*)\): reputation (-?\d+)\s*$", re.M)


class Validator:
    """One real ``opus`` validator process (dev key ``key``), started and ended by this test."""

    def __init__(self, key: str, spec: Path, base: Path) -> None:
        self.name = key
        self.base_path = base / key
        self.log_path = base / f"{key}.log"
        self.key_file = base / f"{key}.key"
        node_key = nodekey.generate()
        nodekey.write_key_file(self.key_file, node_key)
        self.peer_id = nodekey.peer_id(node_key)
        self.p2p_port = free_port()
        self.rpc_port = free_port()
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    def start(self, bootnodes: list[str]) -> None:
        command = [
            sys.executable, "-m", "node.cli", "--chain", str(self.spec),
            "--base-path", str(self.base_path), f"--{self.name}", "--name", self.name,
            "--port", str(self.p2p_port), "--listen-addr", f"/ip4/127.0.0.1/tcp/{self.p2p_port}",
            "--rpc-port", str(self.rpc_port), "--no-prometheus",
            "--node-key-file", str(self.key_file),
            *(["--bootnodes", *bootnodes] if bootnodes else []),
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT, env=env)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc_call(self.rpc_port, method, params)

    async def arpc(self, method: str, params: list[Any] | None = None) -> Any:
        """RPC from a worker thread: the attackers' libp2p tasks keep running meanwhile."""
        return await trio.to_thread.run_sync(functools.partial(self.rpc, method, params))

    async def best(self) -> Header:
        return header_from_json(await self.arpc("chain_getHeader"))

    async def finalized(self) -> tuple[int, str]:
        block_hash = await self.arpc("chain_getFinalizedHead")
        return int((await self.arpc("chain_getHeader", [block_hash]))["number"], 16), block_hash

    async def hashes(self, start: int, end: int) -> list[str | None]:
        result: list[str | None] = await self.arpc("chain_getBlockHash",
                                                   [list(range(start, end + 1))])
        return result

    async def peers(self) -> set[str]:
        return {peer["peerId"] for peer in await self.arpc("system_peers")}

    async def knows(self, block_hash: bytes) -> bool:
        text = "0x" + block_hash.hex()
        header = await self.arpc("chain_getHeader", [text])
        block = await self.arpc("chain_getBlock", [text])
        return header is not None or block is not None

    def penalties(self, peer_id: str) -> list[tuple[str, int, str]]:
        """(penalty kind, reputation after it, reason) of every penalty ``peer_id`` got here."""
        return [(m[2], int(m[4]), m[3]) for m in PENALTY.finditer(self.log()) if m[1] == peer_id]

    def stop(self) -> int:
        """SIGINT by PID; the exit code (SIGKILL and fail if it does not stop in time)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} (PID {self.proc.pid}) did not stop on SIGINT:\n"
                        f"{self.tail()}")

    def kill(self) -> None:
        """Last resort (teardown): SIGKILL by PID if still running."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=EXIT_TIMEOUT_S)

    def tail(self, lines: int = 25) -> str:
        return "\n      ".join(self.log().splitlines()[-lines:])


class Scenario:
    __test__ = False

    def __init__(self, nodes: list[Validator]) -> None:
        self.nodes = nodes
        self.alice, self.bob = nodes

    def report(self) -> str:
        return "\n".join(f"  {n.name} (PID {n.proc.pid if n.proc else None}, running="
                         f"{n.running}):\n      {n.tail()}" for n in self.nodes)

    async def until(self, condition: Callable[[], Awaitable[bool]], timeout: float,
                    what: str) -> float:
        """Poll ``condition`` (RPC errors count as "not yet"); fail with both logs' tails if
        it is not met in ``timeout`` s or a validator exits. Returns the seconds it took."""
        started = time.monotonic()
        while True:
            for node in self.nodes:
                if not node.running:
                    pytest.fail(f"{node.name} exited while waiting for {what}:\n{self.report()}")
            try:
                if await condition():
                    return time.monotonic() - started
            except RPC_NOT_READY:
                pass
            if time.monotonic() - started > timeout:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                            f"{self.report()}")
            await trio.sleep(0.1)

    async def agree_finalized(self, height: int) -> bool:
        """Both validators have finalized ``height`` and have the same blocks up to it."""
        for node in self.nodes:
            if (await node.finalized())[0] < height:
                return False
        chains = [await node.hashes(0, height) for node in self.nodes]
        return chains[0] == chains[1] and None not in chains[0]

    async def penalized(self, node: Validator, peer_id: str, kinds: list[str]) -> int:
        """Wait until ``peer_id``'s penalties on ``node`` are exactly ``kinds`` (in order);
        the reputation after the last one."""
        await self.until(lambda: _true_if(len(node.penalties(peer_id)) >= len(kinds)),
                         STEP_TIMEOUT_S, f"{node.name} to penalize {peer_id} ({kinds[-1]})")
        got = node.penalties(peer_id)
        assert [kind for kind, _, _ in got] == kinds, got
        return got[-1][1]


async def _true_if(value: bool) -> bool:
    return value


def owner(slot: int) -> bytes:
    return AUTHORITIES[slot % len(AUTHORITIES)]


def forged_header(parent: Header, slot: int, *, state_root: bytes | None = None) -> Header:
    """An empty block after ``parent`` in ``slot`` by the slot's owner."""
    return Header(parent_hash=parent.hash, number=parent.number + 1,
                  state_root=state_root or parent.state_root, extrinsics_root=extrinsics_root(()),
                  timestamp=slot * SLOT_MS, slot=slot, author=owner(slot))


@asynccontextmanager
async def attacker(genesis_nodes: Any, target: Validator
                   ) -> AsyncIterator[tuple[Network, Callable[[], Awaitable[bool]]]]:
    """A real libp2p peer of the chain (its own in-memory chain on the same genesis, a fresh
    node key) with ``target`` as boot node. Yields it and ``ready()``: whether ``target`` lists
    it (handshake done) and it has ``target`` in its gossip mesh of every topic."""
    genesis, nodes = genesis_nodes
    chain = FakeChain(genesis, nodes=nodes)
    network = Network(chain, nodekey.generate(), ["/ip4/127.0.0.1/tcp/0"], [target.multiaddr],
                      genesis.hash, config=fast_config())
    target_id = ID.from_base58(target.peer_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(network.run)
        try:
            names = network.names
            topics = (names.blocks_topic, names.txs_topic, names.votes_topic)

            async def ready() -> bool:
                router = network.gossip.router
                return (network.peer_id in await target.peers()
                        and all(target_id in network.gossip.pubsub.peer_topics.get(t, ())
                                and target_id in router.mesh.get(t, ()) for t in topics))

            yield network, ready
        finally:
            nursery.cancel_scope.cancel()


async def test_bad_peers_are_penalized_banned_and_the_chain_carries_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="opus.p2p")
    started = time.monotonic()
    spec = local_spec(2, slot_duration_ms=SLOT_MS)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_to_json(spec), indent=2) + "\n")
    genesis_nodes = chain_spec(2, SLOT_MS)  # the attackers' genesis: build_genesis(local_spec)
    genesis = genesis_nodes[0]
    assert build_genesis(load_spec(str(spec_path))).hash == genesis.hash

    alice = Validator("alice", spec_path, tmp_path)
    bob = Validator("bob", spec_path, tmp_path)
    net = Scenario([alice, bob])
    forged: list[bytes] = []
    try:
        alice.start([bob.multiaddr])
        bob.start([alice.multiaddr])
        with trio.fail_after(TEST_TIMEOUT_S):
            # --- both validators up, on our genesis, authoring and finalizing together
            for node in (alice, bob):
                await net.until(functools.partial(_answers, node), STARTUP_TIMEOUT_S,
                                f"{node.name} to answer RPC")
                assert await node.arpc("chain_getBlockHash", [0]) == "0x" + genesis.hash.hex()
            await net.until(lambda: net.agree_finalized(2), STARTUP_TIMEOUT_S,
                            "alice and bob to finalize #2 together")
            first_best = (await alice.best()).number

            # --- attacker A: garbage, oversize, a forged vote, a bad seal -> banned
            async with attacker(genesis_nodes, alice) as (a, a_ready):
                await net.until(a_ready, STEP_TIMEOUT_S, "attacker A to be connected and meshed")
                names = a.names
                kinds: list[str] = []

                await a.gossip.publish(names.blocks_topic, b"\xc1 garbage: not msgpack \xff")
                kinds.append("GARBAGE_MESSAGE")
                score = await net.penalized(alice, a.peer_id, kinds)
                assert -100 <= score <= -90

                await a.gossip.publish(names.txs_topic, b"\x00" * (MAX_TX_BATCH_BYTES + 1))
                kinds.append("OVERSIZE_MESSAGE")
                score = await net.penalized(alice, a.peer_id, kinds)
                assert -200 <= score <= -180

                best = await alice.best()
                vote = sign_vote(ALICE, Phase.PRECOMMIT, 1, 0, best.hash, best.number)
                bad_signature = bytes([vote.signature[0] ^ 1]) + vote.signature[1:]
                bad_vote = encode_vote_message(VoteMessage((replace(vote,
                                                                    signature=bad_signature),)))
                await a.gossip.publish(names.votes_topic, encode_vote_batch((bad_vote,)))
                kinds.append("BAD_VOTE")
                score = await net.penalized(alice, a.peer_id, kinds)
                assert -300 <= score <= -270
                assert a.peer_id in await alice.peers()  # penalized, not yet banned

                best = await alice.best()
                slot = next(s for s in (best.slot + 1, best.slot + 2) if owner(s) == ALICE.public)
                header = forged_header(best, slot)
                bad_seal = Block(header, (), seal_header(BOB, header))  # the wrong key
                forged.append(bad_seal.hash)
                await a.gossip.publish(names.blocks_topic, encode_block(bad_seal))
                kinds.append("BAD_SEAL")
                score = await net.penalized(alice, a.peer_id, kinds)
                assert -500 <= score <= -400

                # banned: disconnected, no longer listed, and its re-dials are refused
                banned_line = f"Banning peer {a.peer_id}"
                await net.until(lambda: _true_if(banned_line in alice.log()),
                                STEP_TIMEOUT_S, "alice to ban attacker A")
                alice_id = ID.from_base58(alice.peer_id)
                await net.until(lambda: _true_if(not has_connection(a.host, alice_id)),
                                STEP_TIMEOUT_S, "alice to disconnect attacker A")
                assert a.peer_id not in await alice.peers()
                banned_at = time.monotonic()
                redials_before = _redials(caplog, alice.peer_id)
                while time.monotonic() - banned_at < 3.0:  # A re-dials alice (its boot node)
                    assert a.peer_id not in await alice.peers()
                    await trio.sleep(0.2)
                assert _redials(caplog, alice.peer_id) > redials_before  # and is refused
                assert alice.log().count(f"Banning peer {a.peer_id}") == 1
                assert [k for k, _, _ in alice.penalties(a.peer_id)] == kinds
                assert bob.penalties(a.peer_id) == []  # alice forwarded none of it

            # --- attacker B: a correctly sealed block with a wrong state root
            async with attacker(genesis_nodes, alice) as (b, b_ready):
                await net.until(b_ready, STEP_TIMEOUT_S, "attacker B to be connected and meshed")
                await publish_bad_state_root(net, b, forged)
                score = await net.penalized(alice, b.peer_id, ["BAD_BLOCK"])
                assert -200 <= score <= -180
                [(_, _, reason)] = alice.penalties(b.peer_id)
                assert "BadStateRoot" in reason, reason
                # alice checked only the cheap things before forwarding it: bob rejects it too
                await net.penalized(bob, b.peer_id, ["BAD_BLOCK"])
                assert b.peer_id in await alice.peers()  # one bad block: penalized, not banned
                assert f"Banning peer {b.peer_id}" not in alice.log()
            attacks_done = time.monotonic()

            # --- the chain carries on: both author, bob follows alice, finality advances
            finalized = min([(await node.finalized())[0] for node in net.nodes])
            target = finalized + 2
            took = await net.until(lambda: net.agree_finalized(target), 20 * SLOT_MS / 1000,
                                   f"both to finalize #{target} after the attacks")
            last_best = (await alice.best()).number
            await net.until(lambda: _best_at_least(bob, last_best), 10,
                            f"bob to import alice's best #{last_best}")
            assert await bob.hashes(0, last_best) == await alice.hashes(0, last_best)
            authors = set()
            for hash_text in await alice.hashes(first_best + 1, last_best):
                authors.add((await alice.arpc("chain_getHeader", [hash_text]))["author"])
            assert authors == {encode_address(ALICE.public), encode_address(BOB.public)}

            # --- nothing forged was imported, nothing crashed
            for node in net.nodes:
                for block_hash in forged:
                    assert not await node.knows(block_hash), (node.name, short_hash(block_hash))
                assert await node.arpc("opus_getEquivocations") == [], node.name
                assert node.running, node.name
                assert "Traceback" not in node.log(), node.name
            # alice never dialled the banned attacker A back (py-libp2p's pubsub would have,
            # and failed since A stopped listening)
            assert "Failed to open TCP stream" not in alice.log().split(banned_line, 1)[1]
            print(f"[measure] attacks took {attacks_done - started:.1f} s from the start; "
                  f"+2 finalized blocks (#{target}) {took:.1f} s after them")

        # --- clean shutdown by PID
        for node in net.nodes:
            code = await trio.to_thread.run_sync(node.stop)
            assert code == 0, f"{node.name} exited with {code}:\n{node.tail()}"
            assert "Traceback" not in node.log(), node.name
        print(f"[measure] whole scenario: {time.monotonic() - started:.1f} s")
    finally:
        for node in net.nodes:
            node.kill()


def _redials(caplog: pytest.LogCaptureFixture, peer_id: str) -> int:
    """How often an attacker (this process) saw its boot node ``peer_id`` drop or refuse."""
    return sum(1 for r in caplog.records if peer_id in r.getMessage()
               and ("dropped; reconnecting" in r.getMessage() or "failed" in r.getMessage()))


async def _answers(node: Validator) -> bool:
    await node.arpc("system_health")
    return True


async def _best_at_least(node: Validator, number: int) -> bool:
    return (await node.best()).number >= number


async def publish_bad_state_root(net: Scenario, b: Network, forged: list[bytes]) -> Block:
    """Publish an empty block on alice's best, in alice's slot, sealed with alice's key, whose
    state root is wrong. It must reach alice while its parent is unfinalized and its slot not
    in the future: so right after bob authored the best block (alice's slot is next). If the
    node still calls it a benign failure (FutureBlock/BelowFinalized: we were late), retry."""
    alice = net.alice
    parents: set[bytes] = set()  # a retry builds on a newer block (a new hash, a new log line)
    for attempt in range(1, 4):
        deadline = time.monotonic() + 6 * SLOT_MS / 1000
        while True:
            best = await alice.best()
            in_slot = time.time() * 1000 - best.slot * SLOT_MS
            if (owner(best.slot) == BOB.public and 0 <= in_slot < SLOT_MS * 0.6
                    and best.hash not in parents):
                parents.add(best.hash)
                break
            assert time.monotonic() < deadline, "no fresh block of bob's to build on"
            await trio.sleep(0.05)
        header = forged_header(best, best.slot + 1, state_root=blake2_256(b"not the state"))
        assert owner(header.slot) == ALICE.public
        block = Block(header, (), seal_header(ALICE, header))
        forged.append(block.hash)
        await b.gossip.publish(b.names.blocks_topic, encode_block(block))
        marker = f"({short_hash(block.hash)})"

        async def outcome(marker: str = marker) -> bool:
            return any(marker in line and ("not imported" in line or "is invalid" in line)
                       for line in alice.log().splitlines())

        await net.until(outcome, STEP_TIMEOUT_S, f"alice to reject {marker}")
        if any(marker in line and "is invalid" in line for line in alice.log().splitlines()):
            print(f"[measure] the bad-state-root block was executed (and refused) by alice on "
                  f"attempt {attempt}")
            return block
        # a benign failure (we were late): try again on a newer block
    pytest.fail(f"could not get a bad-state-root block to alice in time:\n{net.report()}")
