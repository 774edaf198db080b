"""GossipSub for blocks, transactions and finality votes.

* Standard signed GossipSub (``/meshsub/1.1.0`` and friends, StrictSign): every
  message carries its origin's peer id, a sequence number and an ed25519
  signature that py-libp2p checks before anything else.
* One topic per kind of message, named from the genesis hash (see
  :mod:`p2p.protocol`).
* Each topic has a validator that runs before a message is delivered or
  forwarded: size, strict decoding and, for blocks, a cheap check (seal
  signature, consistency with the parent when we know it). A rejected message
  is not forwarded and costs the peer that sent it reputation
  (:class:`p2p.peers.Penalty`).
* Each subscription is drained by its own task into a bounded channel that the
  network's workers consume, so a slow node never blocks the drain loop; when
  a channel is full the message is dropped *with a warning* (blocks are then
  fetched by sync).
* Transactions and votes are batched (:class:`Batcher`): many encoded items per
  message, flushed every ``flush_interval`` or when ``target_bytes`` is reached,
  so py-libp2p's per-topic rate limit never drops them.

py-libp2p 0.8 settings that matter (all set explicitly in :class:`GossipConfig`):
``max_messages_per_topic_per_second`` (default 10, counted per forwarding peer and
for our own publishes) is raised to 500; adaptive gossip (which may stretch the
heartbeat to 30–60 s) and eclipse protection (which needs distinct IPs) are off;
the heartbeat is 1 s.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream, ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID as MESHSUB_1_0
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11 as MESHSUB_1_1
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12 as MESHSUB_1_2
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import OutBoundQueueSize
from libp2p.tools.anyio_service import background_trio_service

from p2p.peers import Penalty
from p2p.protocol import (
    MAX_GOSSIP_MESSAGE,
    MAX_TX_BATCH_BYTES,
    MAX_TX_BATCH_ITEMS,
    MAX_VOTE_BATCH_BYTES,
    MAX_VOTE_BATCH_ITEMS,
    MAX_VOTE_SIZE,
    TX_BATCH_TARGET,
    ProtocolNames,
    decode_tx_batch,
    decode_vote_batch,
    encode_block,
    encode_tx_batch,
    encode_vote_batch,
)
from runtime import codec
from runtime.block import Block, Header, decode_block, seal_valid
from runtime.extrinsic import decode_extrinsic

log = logging.getLogger("opus.p2p")

DROP_LOG_INTERVAL = 1.0  # at most one "falling behind" warning per kind per second


@dataclass(frozen=True)
class GossipConfig:
    degree: int = 6  # D: mesh peers per topic
    degree_low: int = 4  # D_lo
    degree_high: int = 12  # D_hi
    heartbeat_interval: int = 1  # seconds
    gossip_window: int = 3
    gossip_history: int = 5
    fanout_ttl: int = 60
    # py-libp2p drops past this many messages per topic per second from one
    # forwarding peer (our own publishes included). Default 10. Our own traffic is
    # ≤ 10 tx batches/s + 1 block per slot + vote batches, and a peer forwards that
    # for every origin, so 500/s leaves room for ~50 busy nodes behind one peer.
    max_messages_per_topic_per_second: float = 500.0
    seen_ttl: int = 120
    # Transactions: flush a batch every 100 ms or at 256 KiB.
    tx_flush_interval: float = 0.1
    tx_batch_target: int = TX_BATCH_TARGET  # at most TX_BATCH_TARGET (receivers' limit)
    # Votes are latency-sensitive: a short window.
    vote_flush_interval: float = 0.02
    vote_batch_target: int = 64 * 1024
    # Hand-over channels to the node (messages, not bytes).
    block_queue: int = 64
    tx_queue: int = 512
    vote_queue: int = 1024


# What the network layer needs to know of the chain for the cheap block check.
HeaderLookup = Callable[[bytes], Header | None]
PenaltyReporter = Callable[[str, Penalty, str], None]
VoteCheck = Callable[[bytes], bool]


@dataclass(frozen=True)
class GossipBlock:
    block: Block
    forwarder: str  # the peer that sent it to us
    origin: str  # the peer that published it (signed)


@dataclass(frozen=True)
class GossipTxs:
    extrinsics: tuple[bytes, ...]
    forwarder: str
    origin: str


@dataclass(frozen=True)
class GossipVotes:
    votes: tuple[bytes, ...]
    forwarder: str
    origin: str


class Batcher:
    """Collects encoded items and publishes them in batches.

    ``add`` never blocks; the ``run`` task flushes ``flush_interval`` after the first
    pending item or as soon as ``target_bytes`` are pending, whichever is first.
    """

    def __init__(self, name: str, publish: Callable[[tuple[bytes, ...]], Awaitable[None]], *,
                 flush_interval: float, target_bytes: int, max_items: int) -> None:
        self.name = name
        self._publish = publish
        self.flush_interval = flush_interval
        self.target_bytes = target_bytes
        self.max_items = max_items
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._has_items = trio.Event()
        self._full = trio.Event()
        self.batches_sent = 0
        self.items_sent = 0

    def add(self, item: bytes) -> None:
        self._pending.append(item)
        self._pending_bytes += len(item) + 5
        self._has_items.set()
        if self._pending_bytes >= self.target_bytes or len(self._pending) >= self.max_items:
            self._full.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _take(self) -> tuple[bytes, ...]:
        taken: list[bytes] = []
        size = 0
        for item in self._pending:
            if taken and (size + len(item) + 5 > self.target_bytes
                          or len(taken) >= self.max_items):
                break
            taken.append(item)
            size += len(item) + 5
        del self._pending[:len(taken)]
        self._pending_bytes -= size
        if not self._pending:
            self._has_items = trio.Event()
        if self._pending_bytes < self.target_bytes and len(self._pending) < self.max_items:
            self._full = trio.Event()
        return tuple(taken)

    async def run(self) -> None:
        while True:
            await self._has_items.wait()
            with trio.move_on_after(self.flush_interval):
                await self._full.wait()
            batch = self._take()
            if not batch:
                continue
            try:
                await self._publish(batch)
            except Exception as e:
                log.warning("Failed to publish a %s batch of %d items: %s", self.name,
                            len(batch), e)
                continue
            self.batches_sent += 1
            self.items_sent += len(batch)


class GuardedPubsub(Pubsub):
    """py-libp2p's ``Pubsub`` with every peer's input contained and its writes whole.

    Input: py-libp2p 0.8.1 reads each peer's pubsub stream, and pushes each message
    it receives, in tasks of its service manager, and an exception in any such task
    stops the whole swarm: one length-prefixed frame that is not a protobuf ``RPC``
    (``google.protobuf.message.DecodeError``, which its reader does not catch) ended
    the node. Here such a failure resets that peer's stream, drops the peer from
    pubsub and costs it a BAD_PUBSUB_FRAME penalty; the node carries on.

    Output: three tasks write to a peer's stream (the outbound queue's writer, the
    flush of messages queued before the peer was identified, and the resend of recent
    messages when it subscribes), and Yamux locks each *frame* of a write, not the
    whole message, so two large messages written at once interleaved their frames and
    the peer read garbage. Writes to a stream are serialized here, and a stream left
    with half a message (Yamux gives up after 5 s without a window update) is reset
    rather than written to again.
    """

    # Set by Gossip: report a peer whose input made py-libp2p fail.
    on_peer_failure: Callable[[str, str], None] = staticmethod(lambda peer, reason: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = (
            weakref.WeakKeyDictionary())

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        lock = self._write_locks.setdefault(stream, trio.Lock())
        async with lock:
            try:
                return await super().write_msg(stream, rpc_msg)
            except Exception as e:  # noqa: BLE001 - e.g. a write cut short: never continue
                log.debug("Pubsub write to %s failed (%s): resetting the stream",
                          stream.muxed_conn.peer_id, e)
                with contextlib.suppress(Exception):
                    await stream.reset()
                self._handle_dead_peer(stream.muxed_conn.peer_id)
                return False

    async def stream_handler(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except Exception as e:  # noqa: BLE001 - a peer's bytes must never stop the node
            self.on_peer_failure(peer_id.to_base58(), f"pubsub frame: {type(e).__name__}")
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(peer_id)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as e:  # noqa: BLE001 - as above, for one message's fields
            self.on_peer_failure(msg_forwarder.to_base58(),
                                 f"pubsub message: {type(e).__name__}")


class Gossip:
    """The pubsub side of the network: topics, validators, drains and batchers."""

    def __init__(self, host: IHost, names: ProtocolNames, *, header: HeaderLookup,
                 finalized_number: Callable[[], int], penalize: PenaltyReporter,
                 is_banned: Callable[[str], bool], config: GossipConfig | None = None) -> None:
        self.host = host
        self.names = names
        self.config = cfg = config or GossipConfig()
        self._header = header
        self._finalized_number = finalized_number
        self._penalize = penalize
        self._is_banned = is_banned
        self.vote_check: VoteCheck | None = None
        self.router = GossipSub(
            protocols=[MESHSUB_1_2, MESHSUB_1_1, MESHSUB_1_0],
            degree=cfg.degree,
            degree_low=cfg.degree_low,
            degree_high=cfg.degree_high,
            time_to_live=cfg.fanout_ttl,
            gossip_window=cfg.gossip_window,
            gossip_history=cfg.gossip_history,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=cfg.heartbeat_interval,
            max_messages_per_topic_per_second=cfg.max_messages_per_topic_per_second,
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
            spam_protection_enabled=True,
        )
        self.pubsub = GuardedPubsub(host, self.router, strict_signing=True,
                                    seen_ttl=cfg.seen_ttl, cache_size=4096,
                                    validation_cache_size=4096)
        self.pubsub.on_peer_failure = self._on_peer_failure
        # Message ids are from ‖ seqno. py-libp2p starts the seqno counter at the Unix time in
        # *seconds* and adds one per publish, so a node that published faster than 1/s and
        # restarts reuses seqnos its peers still hold as "seen" (seen_ttl): its blocks and votes
        # were dropped as duplicates for seconds. Start from nanoseconds, as go-libp2p does.
        self.pubsub.counter = max(self.pubsub.counter, time.time_ns())
        self.my_id = host.get_id()
        self._decoded: OrderedDict[bytes, Any] = OrderedDict()
        self.blocks_send, self.blocks = trio.open_memory_channel[GossipBlock](cfg.block_queue)
        self.txs_send, self.txs = trio.open_memory_channel[GossipTxs](cfg.tx_queue)
        self.votes_send, self.votes = trio.open_memory_channel[GossipVotes](cfg.vote_queue)
        self.tx_batcher = Batcher("transaction", self._publish_txs,
                                  flush_interval=cfg.tx_flush_interval,
                                  target_bytes=min(cfg.tx_batch_target, TX_BATCH_TARGET),
                                  max_items=MAX_TX_BATCH_ITEMS)
        self.vote_batcher = Batcher("vote", self._publish_votes,
                                    flush_interval=cfg.vote_flush_interval,
                                    target_bytes=min(cfg.vote_batch_target,
                                                     MAX_VOTE_BATCH_BYTES - MAX_VOTE_SIZE),
                                    max_items=MAX_VOTE_BATCH_ITEMS)
        self.dropped = {"blocks": 0, "txs": 0, "votes": 0}  # handed-over messages lost
        self._last_drop_log: dict[str, float] = {}
        self.running = False
        for topic, validator in ((names.blocks_topic, self._validate_block),
                                 (names.txs_topic, self._validate_txs),
                                 (names.votes_topic, self._validate_votes)):
            self.pubsub.set_topic_validator(topic, validator, is_async_validator=False)

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def services(self) -> AsyncIterator[None]:
        """Run pubsub and the GossipSub router (py-libp2p services) for the block's duration."""
        async with background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            yield

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe to the topics and drain them; flush batches. Runs until cancelled."""
        names = self.names
        subs = [(await self.pubsub.subscribe(names.blocks_topic), self._on_block),
                (await self.pubsub.subscribe(names.txs_topic), self._on_txs),
                (await self.pubsub.subscribe(names.votes_topic), self._on_votes)]
        try:
            async with trio.open_nursery() as nursery:
                for sub, handler in subs:
                    nursery.start_soon(self._drain, sub, handler)
                nursery.start_soon(self.tx_batcher.run)
                nursery.start_soon(self.vote_batcher.run)
                self.running = True
                task_status.started()
        finally:
            self.running = False

    async def _drain(self, sub: ISubscriptionAPI,
                     handler: Callable[[rpc_pb2.Message], None]) -> None:
        while True:
            msg = await sub.get()
            try:
                handler(msg)
            except Exception:  # a bug in a handler must not stop the drain
                log.exception("Error handling a gossip message")

    # ------------------------------------------------------------------ publishing

    def _warn_if_queues_full(self) -> None:
        for peer_id, queue in list(self.pubsub.peer_queues.items()):
            if len(queue) >= OutBoundQueueSize - 1:
                log.warning("Outbound gossip queue to %s is full (%d RPCs): py-libp2p may drop "
                            "messages to it", peer_id, len(queue))

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish raw bytes on a topic (no local validation: we trust ourselves)."""
        self._warn_if_queues_full()
        await self.pubsub.publish(topic, data)

    async def publish_block(self, block: Block) -> None:
        data = encode_block(block)
        if len(data) > MAX_GOSSIP_MESSAGE:
            log.warning("Block #%d is %d bytes, over the %d-byte gossip limit: peers will "
                        "fetch it by sync", block.number, len(data), MAX_GOSSIP_MESSAGE)
            return
        await self.publish(self.names.blocks_topic, data)

    async def _publish_txs(self, extrinsics: tuple[bytes, ...]) -> None:
        await self.publish(self.names.txs_topic, encode_tx_batch(extrinsics))

    async def _publish_votes(self, votes: tuple[bytes, ...]) -> None:
        await self.publish(self.names.votes_topic, encode_vote_batch(votes))

    # ------------------------------------------------------------------ validation

    def _remember(self, msg: rpc_pb2.Message, forwarder: ID, value: Any) -> None:
        """Keep what a validator decoded (and who sent it) for the drain loop."""
        key = self.pubsub.get_message_id(msg)
        self._decoded[key] = (value, forwarder.to_base58())
        if len(self._decoded) > 4096:
            self._decoded.popitem(last=False)

    def _recall(self, msg: rpc_pb2.Message,
                decode: Callable[[bytes], Any]) -> tuple[Any, str] | None:
        entry = self._decoded.pop(self.pubsub.get_message_id(msg), None)
        if entry is not None:
            return entry  # type: ignore[no-any-return]
        try:  # evicted (very busy node): decode again; the origin stands in for the forwarder
            return decode(msg.data), ID(msg.from_id).to_base58()
        except codec.DecodeError:
            return None

    def _from_banned(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Messages sent or published by a banned peer are dropped (not forwarded).

        (py-libp2p's own ``Pubsub.add_to_blacklist`` is not used: its stream teardown
        races with our disconnect and can crash the pubsub service.)"""
        return (self._is_banned(forwarder.to_base58())
                or self._is_banned(ID(msg.from_id).to_base58()))

    def _on_peer_failure(self, peer_id: str, reason: str) -> None:
        log.info("Pubsub input from %s failed (%s): its stream is reset", peer_id, reason)
        self._penalize(peer_id, Penalty.BAD_PUBSUB_FRAME, reason)

    def _reject(self, forwarder: ID, penalty: Penalty, reason: str) -> bool:
        self._penalize(forwarder.to_base58(), penalty, reason)
        return False

    def _validate_block(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if forwarder == self.my_id:
            return True
        if self._from_banned(forwarder, msg):
            return False
        data = msg.data
        if len(data) > MAX_GOSSIP_MESSAGE:
            return self._reject(forwarder, Penalty.OVERSIZE_MESSAGE,
                                f"{len(data)}-byte block message")
        try:
            block = decode_block(data)
        except codec.DecodeError as e:
            return self._reject(forwarder, Penalty.GARBAGE_MESSAGE, f"block message: {e}")
        header = block.header
        if header.number == 0:
            return self._reject(forwarder, Penalty.WRONG_CHAIN, "a genesis block")
        if not seal_valid(header, block.seal):
            return self._reject(forwarder, Penalty.BAD_SEAL, f"block #{header.number}")
        parent = self._header(header.parent_hash)
        if parent is not None and (parent.number + 1 != header.number
                                   or header.timestamp <= parent.timestamp):
            return self._reject(forwarder, Penalty.WRONG_CHAIN,
                                f"block #{header.number} does not follow its parent")
        if (parent is None and header.number <= self._finalized_number()
                and self._header(block.hash) is None):
            return False  # a stale fork below finality: ignore (no penalty, not forwarded)
        self._remember(msg, forwarder, block)
        return True

    def _validate_txs(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if forwarder == self.my_id:
            return True
        if self._from_banned(forwarder, msg):
            return False
        data = msg.data
        if len(data) > MAX_TX_BATCH_BYTES:
            return self._reject(forwarder, Penalty.OVERSIZE_MESSAGE,
                                f"{len(data)}-byte transaction batch")
        try:
            batch = decode_tx_batch(data)
            for raw in batch.extrinsics:
                decode_extrinsic(raw)
        except codec.DecodeError as e:
            return self._reject(forwarder, Penalty.GARBAGE_MESSAGE, f"transaction batch: {e}")
        self._remember(msg, forwarder, batch.extrinsics)
        return True

    def _validate_votes(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        if forwarder == self.my_id:
            return True
        if self._from_banned(forwarder, msg):
            return False
        data = msg.data
        if len(data) > MAX_VOTE_BATCH_BYTES:
            return self._reject(forwarder, Penalty.OVERSIZE_MESSAGE,
                                f"{len(data)}-byte vote batch")
        try:
            batch = decode_vote_batch(data)
        except codec.DecodeError as e:
            return self._reject(forwarder, Penalty.GARBAGE_MESSAGE, f"vote batch: {e}")
        check = self.vote_check
        if check is not None:
            for vote in batch.votes:
                try:
                    ok = check(vote)
                except Exception as e:
                    log.debug("vote check raised: %s", e)
                    ok = False
                if not ok:
                    return self._reject(forwarder, Penalty.BAD_VOTE, "invalid vote")
        self._remember(msg, forwarder, batch.votes)
        return True

    # ------------------------------------------------------------------ drains

    def _hand_over(self, kind: str, send: trio.MemorySendChannel[Any], item: Any,
                   what: str) -> None:
        try:
            send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped[kind] += 1
            now = time.monotonic()
            if now - self._last_drop_log.get(kind, -DROP_LOG_INTERVAL) >= DROP_LOG_INTERVAL:
                self._last_drop_log[kind] = now
                log.warning("⚠️ The node is falling behind on gossip: %s dropped (%d %s "
                            "dropped so far)", what, self.dropped[kind], kind)

    def _on_block(self, msg: rpc_pb2.Message) -> None:
        origin = ID(msg.from_id)
        if origin == self.my_id:
            return
        entry = self._recall(msg, decode_block)
        if entry is not None:
            block, forwarder = entry
            self._hand_over("blocks", self.blocks_send,
                            GossipBlock(block, forwarder, origin.to_base58()),
                            f"block #{block.number}")

    def _on_txs(self, msg: rpc_pb2.Message) -> None:
        origin = ID(msg.from_id)
        if origin == self.my_id:
            return
        entry = self._recall(msg, lambda data: decode_tx_batch(data).extrinsics)
        if entry is not None:
            extrinsics, forwarder = entry
            self._hand_over("txs", self.txs_send,
                            GossipTxs(extrinsics, forwarder, origin.to_base58()),
                            f"a batch of {len(extrinsics)} transactions")

    def _on_votes(self, msg: rpc_pb2.Message) -> None:
        origin = ID(msg.from_id)
        if origin == self.my_id:
            return
        entry = self._recall(msg, lambda data: decode_vote_batch(data).votes)
        if entry is not None:
            votes, forwarder = entry
            self._hand_over("votes", self.votes_send,
                            GossipVotes(votes, forwarder, origin.to_base58()),
                            f"a batch of {len(votes)} votes")
