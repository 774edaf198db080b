"""docs/network.md against a real ``opus --dev`` process, by a peer that does what the doc
says and nothing else it could only learn from the code.

The node listens on the wildcard address ``/ip4/0.0.0.0/tcp/P`` (the default's form): its log
must print dialable addresses (``/ip4/127.0.0.1/tcp/P/p2p/<peer id>`` first) and never the
wildcard, and the test dials the printed loopback address exactly as printed. Then:

* a peer that connects before registering its handshake handler is taken for another chain
  and banned for 10 minutes ("Handshake", rule 1): logged, disconnected, and a later
  connection of the same identity is closed on sight;
* a peer that registers ``/opus/<g>/handshake/1`` first and answers with its ``Status``
  (msgpack, varint length prefix) becomes a peer of the node (``system_peers``), and what
  it receives on ``/opus/<g>/blocks/1`` is a block that carries its justification, one
  precommit by the only authority with ``round`` = the block number and ``set_id`` 0
  (spec.md 5.7, 8), checked with plain msgpack and ed25519.

Only 127.0.0.1 is dialled; the node is ended by its PID; every wait is bounded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing
import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited
from multiaddr import Multiaddr
from processes import HOST, ROOT, RPC_NOT_READY, free_port, rpc_call

from p2p import NetworkConfig
from p2p.host import build_host, has_connection, running_host

pytestmark = pytest.mark.slow

NETWORK_DOC = (ROOT / "docs" / "network.md").read_text()
SPEC_DOC = (ROOT / "docs" / "spec.md").read_text()
STARTUP_TIMEOUT_S = 30
STEP_TIMEOUT_S = 20
EXIT_TIMEOUT_S = 20
ALICE_SEED = hashlib.blake2b(b"//Alice", digest_size=32).digest()  # spec.md 2: the dev key
ALICE = bytes(nacl.signing.SigningKey(ALICE_SEED).verify_key)
LISTENING = re.compile(r"Listening for new connections on (\S+)$", re.MULTILINE)
MAX_STATUS = 1024


def flat(text: str) -> str:
    """``text`` with its line breaks and markup (``**``) gone, for finding a sentence."""
    return " ".join(text.replace("**", "").split())


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


class DevNode:
    """``opus --dev`` listening on ``/ip4/0.0.0.0/tcp/<port>``, started and ended by its PID."""

    def __init__(self, base: Path) -> None:
        self.p2p_port = free_port()
        self.rpc_port = free_port()
        self.log_path = base / "node.log"
        command = [sys.executable, "-m", "node.cli", "--dev", "--base-path", str(base / "db"),
                   "--listen-addr", f"/ip4/0.0.0.0/tcp/{self.p2p_port}",
                   "--rpc-port", str(self.rpc_port), "--no-prometheus"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc_call(self.rpc_port, method, params)

    async def arpc(self, method: str, params: list[Any] | None = None) -> Any:
        return await trio.to_thread.run_sync(functools.partial(self.rpc, method, params))

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the node exited ({self.proc.returncode}) before {what}:\n"
                            f"{self.log()}")
            try:
                if condition():
                    return
            except RPC_NOT_READY:
                pass
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=EXIT_TIMEOUT_S)
            raise


@pytest.fixture
def dev_node(tmp_path: Path) -> Any:
    node = DevNode(tmp_path)
    try:
        yield node
    finally:
        node.stop()


async def wait_until(condition: Callable[[], Any], what: str, node: DevNode) -> None:
    """Poll ``condition`` (sync or async) until it holds, at most STEP_TIMEOUT_S."""
    with trio.move_on_after(STEP_TIMEOUT_S):
        while True:
            value = condition()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await trio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{node.log()[-4000:]}")


@asynccontextmanager
async def peer() -> AsyncIterator[IHost]:
    """A libp2p host of the doc's transport stack (TCP, Noise, Yamux, ed25519), listening
    on 127.0.0.1."""
    listen = [Multiaddr(f"/ip4/{HOST}/tcp/0")]
    host = build_host(create_new_key_pair(), listen)
    async with running_host(host, listen):
        yield host


def status(genesis: bytes) -> bytes:
    """Our ``Status``: network.md "Encodings" (a full node at genesis)."""
    return pack([1, genesis, 0, genesis, 0, genesis, "full"])


def handshake_handler(genesis: bytes, seen: list[list[Any]]) -> Callable[[INetStream],
                                                                         Any]:
    async def serve(stream: INetStream) -> None:
        # One varint-prefixed message, without waiting for the end of the stream.
        request = await read_varint_prefixed_bytes_limited(stream, MAX_STATUS)
        seen.append(msgpack.unpackb(request))
        answer = status(genesis)
        await stream.write(encode_uvarint(len(answer)) + answer)
        await stream.close()
    return serve


def test_the_documented_handshake_figures_are_the_codes() -> None:
    """The numbers network.md gives a peer implementer are the node's settings."""
    config = NetworkConfig()
    assert config.handshake_timeout == 5.0
    assert "**Answer within 5 s** (`NetworkConfig.handshake_timeout`)" in NETWORK_DOC
    assert config.other_chain_ban_seconds == 600.0
    assert "**banned for 10 minutes**\n   (`NetworkConfig.other_chain_ban_seconds`)" in \
        NETWORK_DOC
    assert config.status_interval == 5.0
    assert "afterwards to refresh the peer's best block" in NETWORK_DOC
    assert MAX_STATUS == 1024 and "at most 1 KiB" in NETWORK_DOC


async def test_a_peer_that_follows_network_md(dev_node: DevNode) -> None:
    node = dev_node
    node.wait_for(lambda: len(LISTENING.findall(node.log())) >= 1
                  and node.rpc("system_localPeerId") is not None, "the node to listen")
    peer_id = node.rpc("system_localPeerId")
    genesis = bytes.fromhex(node.rpc("chain_getBlockHash", [0])[2:])
    g = genesis.hex()[:16]

    # The log's addresses are dialable: no wildcard, loopback first, each with /p2p/<id>.
    printed = LISTENING.findall(node.log())
    assert printed[0] == f"/ip4/127.0.0.1/tcp/{node.p2p_port}/p2p/{peer_id}", printed
    for address in printed:
        assert "0.0.0.0" not in address and address.endswith(f"/p2p/{peer_id}"), address
        assert f"/tcp/{node.p2p_port}/" in address
    assert node.rpc("system_localListenAddresses") == printed  # rpc.md: the same list
    target = info_from_p2p_addr(Multiaddr(printed[0]))
    handshake = TProtocol(f"/opus/{g}/handshake/1")

    # A peer that registers its handshake handler only after connecting: banned.
    async with peer() as late:
        late_id = late.get_id().to_base58()
        await late.connect(target)
        await wait_until(lambda: f"Banning peer {late_id} for 600 s" in node.log(),
                         "the late peer's ban", node)
        assert f"❌ Peer {late_id} does not speak {handshake}" in node.log()
        await wait_until(lambda: not has_connection(late, target.peer_id),
                         "the late peer's disconnection", node)
        seen_late: list[list[Any]] = []
        late.set_stream_handler(handshake, handshake_handler(genesis, seen_late))
        try:  # too late: the node closes the connection on sight (or refuses it)
            await late.connect(target)
        except Exception:  # noqa: BLE001 - a refused connection is as good as a closed one
            pass
        await wait_until(lambda: not has_connection(late, target.peer_id),
                         "the banned peer's connection to close", node)
        peers = await node.arpc("system_peers")
        assert all(p["peerId"] != late_id for p in peers)

    # A peer that does what the doc says: handler first, then connect, then subscribe.
    async with peer() as good:
        good_id = good.get_id().to_base58()
        requests: list[list[Any]] = []
        good.set_stream_handler(handshake, handshake_handler(genesis, requests))
        router = GossipSub(protocols=[TProtocol("/meshsub/1.2.0"), TProtocol("/meshsub/1.1.0"),
                                      TProtocol("/meshsub/1.0.0")],
                           degree=6, degree_low=4, degree_high=12, heartbeat_interval=1)
        pubsub = Pubsub(good, router, strict_signing=True)
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            blocks = await pubsub.subscribe(f"/opus/{g}/blocks/1")
            await good.connect(target)

            async def listed() -> bool:
                return any(p["peerId"] == good_id for p in await node.arpc("system_peers"))

            await wait_until(listed, "the node to list the peer", node)
            # The node asked us: its own Status, of our chain, a validator's.
            version, their_genesis, *_, role = requests[0]
            assert (version, their_genesis, role) == (1, genesis, "authority")

            with trio.fail_after(STEP_TIMEOUT_S):
                message = await blocks.get()
        assert has_connection(good, target.peer_id)
        assert f"Banning peer {good_id}" not in node.log()

    # A gossiped dev-chain block carries its justification, as both docs now say.
    assert "every gossiped block has its one-precommit justification" in flat(NETWORK_DOC)
    assert "every gossiped block carries its one-precommit justification" in flat(SPEC_DOC)
    assert "no justification |" not in SPEC_DOC
    header, extrinsics, seal, justification = msgpack.unpackb(message.data)
    block_hash = blake(pack(header))
    number, author = header[1], header[6]
    assert author == ALICE
    assert verify(ALICE, b"opus/seal/v1" + block_hash, seal)
    assert isinstance(extrinsics, list)
    assert justification is not None, "a dev chain's gossiped block must carry a justification"
    round_, set_id, justified_hash, justified_number, precommits = justification
    assert (justified_hash, justified_number) == (block_hash, number)
    assert (round_, set_id) == (number, 0)
    assert len(precommits) == 1 and precommits[0][0] == ALICE
    signed = b"opus/precommit/v1" + pack([round_, set_id, block_hash, number])
    assert verify(ALICE, signed, precommits[0][1])

    assert node.stop() == 0
    assert "Traceback" not in node.log()
