"""The p2p layer over real libp2p connections on 127.0.0.1: handshake, gossip, bad peers.

Every node here is a :class:`p2p.network.Network` over :class:`FakeChain`, an
in-memory chain of real blocks (built with ``runtime.execution.build_block``
on the ``local`` genesis and executed on import with ``execute_block``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
from libp2p.network.exceptions import SwarmException
from libp2p.pubsub.pb import rpc_pb2

from genesis import Genesis, build_genesis, local_spec
from p2p import GossipConfig, Network, NetworkConfig, Penalty, SyncConfig, TxImport
from p2p.host import has_connection
from p2p.peers import Backoff, Reputation
from p2p.protocol import (
    MAX_GOSSIP_MESSAGE,
    MAX_TX_BATCH_BYTES,
    ProtocolNames,
    Role,
    Status,
    decode_status,
    decode_tx_batch,
    encode_block,
    encode_status,
    encode_tx_batch,
)
from runtime import codec
from runtime.block import Block, Header, Justification, seal_header
from runtime.crypto import dev_keypair
from runtime.execution import BlockError, build_block, execute_block
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules.balances import TransferArgs
from runtime.support import make_call
from runtime.trie import EMPTY_ROOT, MemoryNodeStore, trie_get, trie_update

LOCALHOST = "/ip4/127.0.0.1/tcp/0"
SLOT_MS = 1000
ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")

log = logging.getLogger("test.p2p")


# ---------------------------------------------------------------------------
# A tiny in-memory chain that satisfies p2p.network.ChainAccess


class ImportFailed(Exception):
    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class TrieReader:
    def __init__(self, nodes: MemoryNodeStore, root: bytes) -> None:
        self.nodes, self.root = nodes, root

    def get(self, key: bytes) -> bytes | None:
        return trie_get(self.nodes, self.root, key)


@functools.cache
def chain_spec(validators: int = 1, slot_ms: int = SLOT_MS) -> tuple[Genesis, MemoryNodeStore]:
    genesis = build_genesis(local_spec(validators, slot_ms))
    nodes = MemoryNodeStore()
    nodes.put_nodes(trie_update(nodes, EMPTY_ROOT, genesis.state).new_nodes)
    return genesis, nodes


@functools.cache
def chain_blocks(count: int) -> tuple[Block, ...]:
    """``count`` empty blocks on the 1-validator local genesis, authored by alice."""
    genesis, nodes = chain_spec()
    blocks: list[Block] = []
    parent = genesis.header
    for _ in range(count):
        built = build_block(TrieReader(nodes, parent.state_root), nodes, parent, [],
                            timestamp=(parent.slot + 1) * SLOT_MS, author=ALICE,
                            genesis_hash=genesis.hash)
        nodes.put_nodes(built.executed.trie.new_nodes)
        blocks.append(built.block)
        parent = built.block.header
    return tuple(blocks)


class FakeChain:
    """Implements ChainAccess: blocks are executed on import; longest chain wins."""

    def __init__(self, genesis: Genesis | None = None, blocks: tuple[Block, ...] = (),
                 nodes: MemoryNodeStore | None = None) -> None:
        if genesis is None:
            genesis, nodes = chain_spec()
        assert nodes is not None
        self.genesis = genesis
        self.nodes = MemoryNodeStore(dict(nodes.nodes))
        self._headers: dict[bytes, Header] = {genesis.hash: genesis.header}
        self._blocks: dict[bytes, Block] = {genesis.hash: Block(genesis.header, (), bytes(64))}
        self._justifications: dict[bytes, Justification] = {}
        self.canon: list[bytes] = [genesis.hash]
        self.finalized_number = 0
        self.extrinsics: list[bytes] = []
        self._known_tx: set[bytes] = set()
        self.unwanted: set[bytes] = set()  # what this fake pool refuses by a limit
        self.import_times: dict[bytes, float] = {}
        self.import_delay = 0.0
        for block in blocks:
            self._add(block)

    # ChainAccess ------------------------------------------------------------
    @property
    def genesis_hash(self) -> bytes:
        return self.genesis.hash

    @property
    def best_header(self) -> Header:
        return self._headers[self.canon[-1]]

    @property
    def finalized_header(self) -> Header:
        return self._headers[self.canon[self.finalized_number]]

    def header(self, block_hash: bytes) -> Header | None:
        return self._headers.get(block_hash)

    def block(self, block_hash: bytes) -> Block | None:
        block = self._blocks.get(block_hash)
        justification = self._justifications.get(block_hash)
        if block is not None and justification is not None:
            block = replace(block, justification=justification)
        return block

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        block = self.block(block_hash)
        return None if block is None else codec.encode(block)

    def hash_at(self, number: int) -> bytes | None:
        return self.canon[number] if 0 <= number < len(self.canon) else None

    def justification(self, block_hash: bytes) -> Justification | None:
        return self._justifications.get(block_hash)

    async def import_block(self, block: Block) -> str:
        await trio.sleep(self.import_delay)
        if block.hash in self._headers:
            return "known"
        parent = self._headers.get(block.header.parent_hash)
        if parent is None:
            raise ImportFailed("UnknownParent", f"parent of #{block.number} is not known")
        if block.number <= self.finalized_number:
            raise ImportFailed("BelowFinalized", f"#{block.number}")
        try:
            executed = execute_block(TrieReader(self.nodes, parent.state_root), self.nodes,
                                     parent, block, self.genesis.hash)
        except BlockError as e:
            raise ImportFailed(type(e).__name__, str(e)) from None
        self.nodes.put_nodes(executed.trie.new_nodes)
        self._add(block)
        if block.justification is not None:
            self._justifications[block.hash] = block.justification
        return "imported"

    async def submit_extrinsic(self, raw: bytes) -> TxImport:
        if raw in self._known_tx:
            return TxImport.KNOWN
        if raw in self.unwanted:
            return TxImport.UNWANTED
        self._known_tx.add(raw)
        self.extrinsics.append(raw)
        return TxImport.NEW

    # helpers ----------------------------------------------------------------
    def _add(self, block: Block) -> None:
        self._headers[block.hash] = block.header
        self._blocks[block.hash] = replace(block, justification=None)
        self.import_times[block.hash] = time.perf_counter()
        if block.number > self.best_header.number:  # longest chain: re-walk the route
            route = [block.hash]
            header = block.header
            while header.parent_hash not in self.canon[:header.number]:
                header = self._headers[header.parent_hash]
                route.append(header.hash)
            del self.canon[header.number:]
            self.canon.extend(reversed(route))
            assert len(self.canon) == block.number + 1

    def add_local(self, block: Block) -> None:
        """Import a block as if we authored it (no execution, no gossip)."""
        self._add(block)


# ---------------------------------------------------------------------------
# Network helpers


def fast_config(**overrides: object) -> NetworkConfig:
    sync_overrides = {k[5:]: v for k, v in overrides.items() if k.startswith("sync_")}
    gossip_overrides = {k[7:]: v for k, v in overrides.items() if k.startswith("gossip_")}
    rest = {k: v for k, v in overrides.items()
            if not k.startswith("sync_") and not k.startswith("gossip_")}
    values: dict[str, object] = dict(handshake_timeout=3.0, status_interval=1.0,
                                     reconnect_initial=0.2, reconnect_max=2.0, ban_seconds=30.0)
    values.update(rest)
    return NetworkConfig(sync=SyncConfig(**sync_overrides),  # type: ignore[arg-type]
                         gossip=GossipConfig(**gossip_overrides),  # type: ignore[arg-type]
                         **values)  # type: ignore[arg-type]


@asynccontextmanager
async def running(chain: FakeChain, *, bootnodes: tuple[str, ...] = (),
                  listen: str = LOCALHOST, key: object = None,
                  config: NetworkConfig | None = None) -> AsyncIterator[Network]:
    from node.nodekey import generate

    network = Network(chain, key or generate(), [listen], list(bootnodes), chain.genesis_hash,
                      config=config or fast_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(network.run)
        try:
            yield network
        finally:
            nursery.cancel_scope.cancel()


def addr(network: Network) -> str:
    return network.listen_addresses()[0]


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0,
                   what: str = "condition") -> float:
    """Poll until ``predicate()``; returns the seconds it took. The timeout only bounds a
    test that went wrong: generous, so that a busy machine is not a failure."""
    started = time.perf_counter()
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.01)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
    return time.perf_counter() - started


def subscribed(network: Network, others: list[Network], topic: str) -> bool:
    peers = network.gossip.pubsub.peer_topics.get(topic, set())
    return all(o.host.get_id() in peers for o in others)


def in_mesh(network: Network, others: list[Network], topic: str) -> bool:
    """Whether GossipSub has grafted each of ``others`` into ``network``'s mesh of ``topic``:
    only then does a publish reach them (a subscribed peer outside the mesh gets nothing
    until the next heartbeat grafts it)."""
    mesh = network.gossip.router.mesh.get(topic, set())
    return all(o.host.get_id() in mesh for o in others)


async def wait_meshed(networks: list[Network], neighbours: dict[int, list[int]]) -> None:
    """Wait until each network is connected (handshake done) to its neighbours, they are
    subscribed to each other's topics, and in each other's mesh of them."""
    for i, others in neighbours.items():
        net = networks[i]
        peers = [networks[j] for j in others]
        await wait_for(lambda net=net, peers=peers: all(
            net.peerset.get(p.peer_id) is not None and net.peerset.get(p.peer_id).ready
            for p in peers), what="handshakes")
        for topic in (net.names.blocks_topic, net.names.txs_topic, net.names.votes_topic):
            await wait_for(lambda net=net, peers=peers, topic=topic:
                           subscribed(net, peers, topic), what="subscriptions")
            await wait_for(lambda net=net, peers=peers, topic=topic:
                           in_mesh(net, peers, topic), what="mesh")


def make_transfers(count: int, genesis_hash: bytes) -> list[bytes]:
    return [codec.encode(sign_extrinsic(ALICE, make_call(TransferArgs(BOB.public, 10**12 + i)),
                                        i, genesis_hash, SPEC_VERSION))
            for i in range(count)]


# ---------------------------------------------------------------------------
# Unit tests (no network)


def test_protocol_names_are_derived_from_genesis() -> None:
    names = ProtocolNames.for_genesis(bytes.fromhex("ab" * 32))
    assert names.handshake == "/opus/abababababababab/handshake/1"
    assert names.sync == "/opus/abababababababab/sync/1"
    assert names.blocks_topic == "/opus/abababababababab/blocks/1"
    assert names.txs_topic == "/opus/abababababababab/txs/1"
    assert names.votes_topic == "/opus/abababababababab/votes/1"


def test_status_and_batches_are_canonical_msgpack() -> None:
    status = Status(1, b"\x01" * 32, 7, b"\x02" * 32, 5, b"\x03" * 32, Role.AUTHORITY)
    data = encode_status(status)
    assert decode_status(data) == status
    assert codec.unpack(data) == [1, b"\x01" * 32, 7, b"\x02" * 32, 5, b"\x03" * 32, "authority"]
    with pytest.raises(codec.DecodeError):
        decode_status(data + b"\x00")
    batch = encode_tx_batch((b"a", b"bc"))
    assert codec.unpack(batch) == [[b"a", b"bc"]]
    assert decode_tx_batch(batch).extrinsics == (b"a", b"bc")
    with pytest.raises(codec.DecodeError):
        decode_tx_batch(b"\x91\x91\x01")  # an integer where bytes belong


def test_reputation_bans_below_threshold_and_decays() -> None:
    now = [0.0]
    reputation = Reputation(ban_threshold=-400, ban_seconds=10, half_life=60,
                            clock=lambda: now[0])
    assert not reputation.penalize("p", Penalty.BAD_SEAL)
    assert not reputation.penalize("p", Penalty.GARBAGE_MESSAGE)
    now[0] = 60.0  # one half-life: -300 -> -150
    assert reputation.score("p") == pytest.approx(-150)
    assert not reputation.penalize("p", Penalty.BAD_SEAL)
    assert reputation.penalize("p", Penalty.BAD_BLOCK)  # -550: banned
    assert reputation.is_banned("p")
    now[0] = 71.0
    assert not reputation.is_banned("p") and reputation.score("p") == 0


def test_reputation_adds_up_within_a_second_and_decays_per_second() -> None:
    now = [100.0]
    reputation = Reputation(ban_threshold=-400, ban_seconds=10, half_life=60,
                            clock=lambda: now[0])
    # Two bad blocks in the same second reach the threshold exactly: banned.
    assert not reputation.penalize("burst", Penalty.BAD_SEAL)
    now[0] = 100.6
    assert reputation.score("burst") == -200
    assert reputation.penalize("burst", Penalty.BAD_SEAL)
    # Two seconds apart, the first has decayed a little: not banned.
    assert not reputation.penalize("slow", Penalty.BAD_SEAL)
    now[0] = 102.6
    assert not reputation.penalize("slow", Penalty.BAD_SEAL)
    assert -400 < reputation.score("slow") < -390  # -200 * 0.5 ** (2 / 60) - 200
    # Penalties less than a second apart still decay: the sub-second rest carries over.
    now[0] = 200.0
    for _ in range(10):
        reputation.penalize("drip", Penalty.REQUEST_FAILED)
        now[0] += 0.9
    assert -97 < reputation.score("drip") < -90  # decayed over 9 ticks, not a flat -100


def test_backoff_grows_exponentially_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


# ---------------------------------------------------------------------------
# Networks


async def test_handshake_exchanges_status_and_peers_are_listed() -> None:
    blocks = chain_blocks(3)
    with trio.fail_after(60):
        async with running(FakeChain(blocks=blocks)) as a, \
                running(FakeChain(blocks=blocks[:1]), bootnodes=(addr(a),)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            [peer] = b.peers()
            assert peer.peer_id == a.peer_id and peer.roles == "full"
            assert peer.address.startswith("/ip4/127.0.0.1/tcp/")
            assert peer.to_json()["peerId"] == a.peer_id
            assert a.peer_count() == b.peer_count() == 1
            # b is 2 blocks behind (not more than sync_lag): no sync; a's view of b
            assert a.peerset.get(b.peer_id).best_number == 1
            assert b.peerset.get(a.peer_id).best_number == 3


async def test_block_gossip_reaches_all_peers() -> None:
    """A line a - b - c: blocks published by a are imported by b and forwarded to c."""
    blocks = chain_blocks(30)
    chains = [FakeChain(blocks=blocks[:5]) for _ in range(3)]
    with trio.fail_after(30):
        async with running(chains[0]) as a, \
                running(chains[1], bootnodes=(addr(a),)) as b, \
                running(chains[2], bootnodes=(addr(b),)) as c:
            nets = [a, b, c]
            await wait_meshed(nets, {0: [1], 1: [0, 2], 2: [1]})
            latencies = []
            for block in blocks[5:]:
                chains[0].add_local(block)
                sent = time.perf_counter()
                await a.publish_block(block)
                await wait_for(lambda block=block: chains[2].header(block.hash) is not None,
                               what=f"#{block.number} at c")
                latencies.append(chains[2].import_times[block.hash] - sent)
            assert [ch.best_header.hash for ch in chains] == [blocks[-1].hash] * 3
            assert c.peerset.get(a.peer_id) is None  # c only hears a through b
            latencies.sort()
            log.warning("gossip a->b->c latency: median %.1f ms, max %.1f ms",
                        latencies[len(latencies) // 2] * 1000, latencies[-1] * 1000)
            # a burst: 10 blocks published back to back all arrive
            more = chain_blocks(40)[30:]
            for block in more:
                chains[0].add_local(block)
                await a.publish_block(block)
            await wait_for(lambda: chains[2].best_header.hash == more[-1].hash, 15)
            assert sum(n.gossip.dropped["blocks"] for n in nets) == 0


async def test_a_slow_node_reports_dropped_gossip_and_catches_up_by_sync(
        caplog: pytest.LogCaptureFixture) -> None:
    blocks = chain_blocks(12)
    chain_a, slow = FakeChain(blocks=blocks[:2]), FakeChain(blocks=blocks[:2])
    slow.import_delay = 0.3
    caplog.set_level(logging.WARNING, logger="opus.p2p")
    with trio.fail_after(30):
        async with running(chain_a) as a, \
                running(slow, bootnodes=(addr(a),), config=fast_config(gossip_block_queue=1)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            for block in blocks[2:]:
                chain_a.add_local(block)
                await a.publish_block(block)
            await wait_for(lambda: b.gossip.dropped["blocks"] > 0)
            assert any("falling behind" in r.getMessage() for r in caplog.records)
            # what gossip could not hand over, sync fetches
            await wait_for(lambda: slow.best_header.hash == blocks[-1].hash, 20)


async def test_500_transactions_arrive_complete() -> None:
    genesis, _ = chain_spec()
    transfers = make_transfers(500, genesis.hash)
    chain_a, chain_b = FakeChain(), FakeChain()
    with trio.fail_after(30):
        async with running(chain_a) as a, running(chain_b, bootnodes=(addr(a),)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            started = time.perf_counter()
            for raw in transfers:
                await a.publish_extrinsic(raw)
            await wait_for(lambda: len(chain_b.extrinsics) >= 500, 15, "500 transactions")
            assert chain_b.extrinsics == transfers  # complete and in order
            batches = a.gossip.tx_batcher.batches_sent
            assert 1 <= batches <= 5
            assert b.gossip.dropped["txs"] == 0 and b.txs_rejected == 0
            log.warning("500 txs in %d batch(es), complete at b after %.0f ms", batches,
                        (time.perf_counter() - started) * 1000)
            # b does not send them back (a's own messages are not delivered to a)
            await trio.sleep(0.3)
            assert chain_a.extrinsics == []


@pytest.mark.slow
async def test_transaction_flood_is_batched_by_size() -> None:
    """6000 transactions (~1 MB) published at once: ~256 KiB batches, none lost."""
    genesis, _ = chain_spec()
    transfers = make_transfers(6000, genesis.hash)
    chain_b = FakeChain()
    with trio.fail_after(40):
        async with running(FakeChain()) as a, running(chain_b, bootnodes=(addr(a),)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            started = time.perf_counter()
            for raw in transfers:
                await a.publish_extrinsic(raw)
            await wait_for(lambda: len(chain_b.extrinsics) >= 6000, 30)
            elapsed = time.perf_counter() - started
            assert chain_b.extrinsics == transfers
            batches = a.gossip.tx_batcher.batches_sent
            assert 4 <= batches <= 6  # 1 MB in 256 KiB batches
            assert b.gossip.dropped["txs"] == 0
    log.warning("6000 txs (%d KiB) in %d batches, all at b after %.0f ms (%.0f tx/s)",
                sum(map(len, transfers)) // 1024, batches, elapsed * 1000, 6000 / elapsed)


async def test_a_publisher_of_transactions_over_the_pool_limits_loses_reputation() -> None:
    """Each gossiped transaction the pool refuses by a limit costs its publisher 0.05 points:
    a thousand now and then decay away, a flood of 8,000 gets the publisher banned, and the
    transactions it published after that are never looked at."""
    genesis, _ = chain_spec()
    spam = make_transfers(9000, genesis.hash)
    chain_b = FakeChain()
    chain_b.unwanted.update(spam)
    with trio.fail_after(60):
        async with running(FakeChain()) as a, running(chain_b, bootnodes=(addr(a),)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            for raw in spam[:1000]:
                await a.publish_extrinsic(raw)
            await wait_for(lambda: b.txs_received >= 1000, 20, "the first 1,000")
            assert -50 <= b.reputation.score(a.peer_id) < -45
            assert not b.reputation.is_banned(a.peer_id) and b.txs_rejected == 1000
            for raw in spam[1000:]:
                await a.publish_extrinsic(raw)
            await wait_for(lambda: b.reputation.is_banned(a.peer_id), 30, "the ban")
            await wait_for(lambda: b.peer_count() == 0, 10, "the disconnection")
            assert b.txs_received < len(spam)
            assert chain_b.extrinsics == []


async def test_large_pubsub_messages_written_at_once_arrive_whole(
        caplog: pytest.LogCaptureFixture) -> None:
    """Yamux locks each frame of a write, not the whole message, and py-libp2p's pubsub has
    several writers per peer stream (its outbound queue, the flush of messages queued before
    the peer was identified, the resend of recent messages): two large messages written at
    once interleaved their frames, the peer read garbage, and a peer that got such a frame
    used to stop altogether. Writes to a stream are now whole, one after the other."""
    caplog.set_level(logging.INFO, logger="opus.p2p")
    message_ids = [os.urandom(40) for _ in range(12_000)]  # ~500 KB: many Yamux frames
    with trio.fail_after(30):
        async with running(FakeChain()) as a, running(FakeChain(), bootnodes=(addr(a),)) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            stream = a.gossip.pubsub.peers[b.host.get_id()]
            rpcs = [rpc_pb2.RPC(control=rpc_pb2.ControlMessage(ihave=[rpc_pb2.ControlIHave(
                topicID=a.names.txs_topic, messageIDs=message_ids[i::2])])) for i in range(2)]
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    for rpc in rpcs:
                        nursery.start_soon(a.gossip.pubsub.write_msg, stream, rpc)
            await trio.sleep(1)  # b reads what was written
            assert not [r for r in caplog.records if "pubsub frame" in r.getMessage()]
            assert b.peer_count() == 1 and b.reputation.score(a.peer_id) == 0


def test_per_transaction_penalties_add_up_exactly() -> None:
    now = [0.0]
    reputation = Reputation(clock=lambda: now[0])
    assert not reputation.penalize("relay", Penalty.UNWANTED_TRANSACTION, count=4000)
    assert reputation.score("relay") == pytest.approx(-200)
    assert reputation.penalize("relay", Penalty.UNWANTED_TRANSACTION, count=4000)  # -400


async def test_votes_are_batched_and_handed_to_the_vote_handler() -> None:
    received: list[tuple[bytes, str]] = []

    async def on_vote(vote: bytes, peer: str) -> bool:
        received.append((vote, peer))
        return vote != b"bad vote"

    with trio.fail_after(60):
        async with running(FakeChain()) as a, running(FakeChain(), bootnodes=(addr(a),)) as b:
            b.vote_handler = on_vote
            await wait_meshed([a, b], {0: [1], 1: [0]})
            for i in range(50):
                await a.publish_vote(b"vote %d" % i)
            await wait_for(lambda: len(received) == 50)
            assert [v for v, _ in received] == [b"vote %d" % i for i in range(50)]
            assert {p for _, p in received} == {a.peer_id}
            assert a.gossip.vote_batcher.batches_sent <= 3
            await a.publish_vote(b"bad vote")
            await wait_for(lambda: b.reputation.score(a.peer_id) < 0)


async def test_bad_peer_is_penalized_banned_and_the_good_peers_carry_on() -> None:
    blocks = chain_blocks(12)
    good_a, good_b = FakeChain(blocks=blocks[:5]), FakeChain(blocks=blocks[:5])
    bad_chain = FakeChain(blocks=blocks[:5])
    bad_seal = replace(blocks[5], seal=bytes(64))
    with trio.fail_after(30):
        async with running(good_a) as a, running(good_b, bootnodes=(addr(a),)) as b, \
                running(bad_chain, bootnodes=(addr(a),)) as bad:
            await wait_meshed([a, b, bad], {0: [1, 2], 1: [0], 2: [0]})
            topics = a.names
            # garbage, an oversize transaction batch and a block with a bad seal
            await bad.gossip.publish(topics.blocks_topic, b"\xc1 not msgpack")
            await wait_for(lambda: a.reputation.score(bad.peer_id) <= -90)
            await bad.gossip.publish(topics.txs_topic, b"\x00" * (MAX_TX_BATCH_BYTES + 1))
            await wait_for(lambda: a.reputation.score(bad.peer_id) <= -180)
            await bad.gossip.publish(topics.blocks_topic, encode_block(bad_seal))
            await wait_for(lambda: a.reputation.score(bad.peer_id) <= -370)
            await bad.gossip.publish(topics.blocks_topic, b"\x93" * (MAX_GOSSIP_MESSAGE + 100))
            await wait_for(lambda: a.reputation.is_banned(bad.peer_id))
            await wait_for(lambda: not has_connection(a.host, bad.host.get_id()), 10)
            assert a.peerset.get(bad.peer_id) is None
            with pytest.raises(SwarmException, match="banned"):  # a never dials it back
                await a.host.get_network().dial_peer(bad.host.get_id())
            assert good_a.best_header.number == 5  # nothing bad was imported
            assert not b.reputation.is_banned(bad.peer_id)  # b never saw the garbage
            # the good peers carry on
            for block in blocks[5:]:
                good_a.add_local(block)
                await a.publish_block(block)
            await wait_for(lambda: good_b.best_header.hash == blocks[-1].hash)
            assert a.peer_count() == 1 and b.reputation.score(a.peer_id) == 0
            # the banned peer keeps re-dialling (it has a as boot node) and is refused
            await trio.sleep(1.0)
            assert a.peerset.get(bad.peer_id) is None
            assert bad.peer_count() == 0


async def test_block_that_fails_import_penalizes_its_publisher() -> None:
    blocks = chain_blocks(8)
    good = FakeChain(blocks=blocks[:5])
    # a correctly sealed block with a wrong state root, "authored" by alice's key
    parent = blocks[4].header
    header = replace(blocks[5].header, state_root=b"\x00" * 32)
    forged = Block(header, (), seal_header(ALICE, header))
    with trio.fail_after(60):
        async with running(good) as a, \
                running(FakeChain(blocks=blocks[:5]), bootnodes=(addr(a),)) as bad:
            await wait_meshed([a, bad], {0: [1], 1: [0]})
            await bad.gossip.publish(a.names.blocks_topic, encode_block(forged))
            await wait_for(lambda: a.reputation.score(bad.peer_id) <= -Penalty.BAD_BLOCK.cost * 0.9)
            assert good.best_header.hash == parent.hash


async def test_peer_of_another_chain_is_disconnected_at_handshake(
        caplog: pytest.LogCaptureFixture) -> None:
    genesis2, nodes2 = chain_spec(2)  # another chain: two validators
    ours, theirs = FakeChain(), FakeChain(genesis2, nodes=nodes2)
    assert ours.genesis_hash != theirs.genesis_hash
    caplog.set_level(logging.WARNING, logger="opus.p2p")
    with trio.fail_after(60):
        async with running(ours) as a, running(theirs, bootnodes=(addr(a),)) as x:
            await wait_for(lambda: a.reputation.is_banned(x.peer_id)
                           and x.reputation.is_banned(a.peer_id))
            await wait_for(lambda: not has_connection(a.host, x.host.get_id()))
            assert a.peer_count() == 0 and x.peer_count() == 0
            assert any("another chain" in r.getMessage() for r in caplog.records)
            await trio.sleep(0.5)  # x does not keep re-dialling
            assert not has_connection(a.host, x.host.get_id())


async def _run_in(scope: trio.CancelScope, network: Network, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await network.run(task_status=task_status)


@pytest.mark.slow
async def test_reconnects_with_backoff_after_a_peer_restarts() -> None:
    from node.nodekey import generate

    key_a = generate()
    chain_a, chain_b = FakeChain(), FakeChain()
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            a, scope_a = Network(chain_a, key_a, [LOCALHOST], config=fast_config()), \
                trio.CancelScope()
            await nursery.start(functools.partial(_run_in, scope_a, a))
            a_addr = addr(a)
            same_port = a_addr.split("/p2p/")[0]
            async with running(chain_b, bootnodes=(a_addr,)) as b:
                await wait_for(lambda: b.peer_count() == 1)
                scope_a.cancel()  # a stops: b sees the drop and re-dials with back-off
                await wait_for(lambda: b.peer_count() == 0)
                await trio.sleep(1.5)  # a few failed dials: 0.2 s, 0.4 s, 0.8 s, ...
                a2 = Network(chain_a, key_a, [same_port], config=fast_config())
                scope_a2 = trio.CancelScope()
                await nursery.start(functools.partial(_run_in, scope_a2, a2))
                assert a2.peer_id == a.peer_id
                took = await wait_for(lambda: b.peer_count() == 1, 20)
                log.warning("b reconnected %.2f s after a restarted", took)
                assert took < 5.0  # the back-off is capped at reconnect_max = 2 s
                scope_a2.cancel()
