"""A peer's malformed pubsub frames never stop a real node.

py-libp2p 0.8.1 reads a peer's pubsub stream in a task of its service manager and does not
catch ``google.protobuf.message.DecodeError``: one length-prefixed frame that was not a
protobuf ``RPC`` (sent on purpose, or cut short by a peer that disconnected mid-frame) ended
the swarm, and with it the node process. Found while benchmarking the pool under attack.

One ``opus`` validator (1 s slots) runs as a real process on 127.0.0.1. A real libp2p peer
(Noise, Yamux) opens raw ``/meshsub/1.1.0`` streams to it and writes, one stream each: a frame
that is not protobuf, an absurd length prefix, and well-formed RPCs with hostile fields (a
junk originator, a junk signing key, junk peer-exchange records, a flood of IHAVE ids). After
each, the node is alive and authoring; the sender of the malformed frame is penalized
BAD_PUBSUB_FRAME; the node exits 0 on SIGINT with no traceback in its log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils import encode_varint_prefixed
from test_bad_peers import STARTUP_TIMEOUT_S, STEP_TIMEOUT_S, Validator, attacker
from test_p2p import chain_spec

from genesis.spec import local_spec, spec_to_json
from p2p import Network
from p2p.host import parse_peer_addr
from p2p.protocol import ProtocolNames

pytestmark = pytest.mark.slow

SLOT_MS = 1000
TEST_TIMEOUT_S = 90


def hostile_frames(txs_topic: str) -> dict[str, bytes]:
    def frame(**fields: object) -> bytes:
        return encode_varint_prefixed(rpc_pb2.RPC(**fields).SerializeToString())

    message, control = rpc_pb2.Message, rpc_pb2.ControlMessage
    return {
        "not protobuf": encode_varint_prefixed(b"\xff\xff\xff\x0f this is not a protobuf RPC"),
        "absurd length": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        "junk originator": frame(publish=[message(from_id=b"junk", data=b"x", seqno=b"1" * 8,
                                                  topicIDs=[txs_topic], signature=b"s",
                                                  key=b"k")]),
        "junk signing key": frame(publish=[message(
            from_id=b"\x00\x24\x08\x01\x12\x20" + bytes(32), data=b"x", seqno=bytes(8),
            topicIDs=[txs_topic], signature=bytes(64), key=b"\xff\xfe junk")]),
        "junk peer exchange": frame(control=control(prune=[rpc_pb2.ControlPrune(
            topicID=txs_topic, backoff=2**63,
            peers=[rpc_pb2.PeerInfo(peerID=b"junk", signedPeerRecord=b"\xff junk")])])),
        "IHAVE flood": frame(control=control(ihave=[rpc_pb2.ControlIHave(
            topicID=txs_topic, messageIDs=[os.urandom(40) for _ in range(5000)])])),
    }


async def test_malformed_pubsub_frames_never_stop_the_node(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_to_json(local_spec(1, slot_duration_ms=SLOT_MS))))
    genesis_nodes = chain_spec(1, SLOT_MS)
    node = Validator("alice", spec_path, tmp_path)

    async def until(condition: Callable[[], Awaitable[bool]], what: str,
                    timeout: float = STEP_TIMEOUT_S) -> None:
        with trio.fail_after(timeout):
            while True:
                assert node.running, f"the node exited while waiting for {what}:\n{node.tail()}"
                try:
                    if await condition():
                        return
                except (OSError, ValueError, KeyError, TypeError):
                    pass
                await trio.sleep(0.1)

    async def authoring_past(number: int) -> bool:
        return (await node.best()).number > number

    try:
        node.start([])
        await until(lambda: authoring_past(1), "the first blocks", STARTUP_TIMEOUT_S)
        with trio.fail_after(TEST_TIMEOUT_S):
            topic = ProtocolNames.for_genesis(genesis_nodes[0].hash).txs_topic
            for name, data in hostile_frames(topic).items():
                async with attacker(genesis_nodes, node) as (peer, _):
                    await until(lambda peer=peer: _connected(peer), f"a peer to send {name!r}")
                    stream = await peer.host.new_stream(parse_peer_addr(node.multiaddr).peer_id,
                                                        [PROTOCOL_ID_V11])
                    await stream.write(data)
                    if name == "not protobuf":
                        penalized = f"Peer {peer.peer_id} penalized (BAD_PUBSUB_FRAME"
                        await until(lambda text=penalized: _true(text in node.log()),
                                    "the sender's penalty")
                best = (await node.best()).number
                await until(lambda best=best: authoring_past(best),
                            f"a block after {name!r}")
        assert node.stop() == 0, node.tail()
        assert "Traceback" not in node.log(), node.tail(60)
    finally:
        node.kill()


async def _connected(peer: Network) -> bool:
    return bool(peer.peer_count())


async def _true(value: bool) -> bool:
    return value
