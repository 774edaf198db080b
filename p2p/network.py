"""The network service: host, handshake, gossip, sync and peer management in one place.

:class:`Network` needs only a :class:`ChainAccess` (the node adapts itself to it;
``p2p`` never imports ``node``) and a libp2p key pair. ``await nursery.start(network.run)``
runs everything in the caller's nursery; cancelling it closes every connection.

Wiring a node (done by ``node/``)::

    network = Network(chain_access, key_pair, listen_addrs, bootnodes, genesis.hash,
                      role="authority" if validator else "full")
    node.on_block_authored.append(network.publish_block)
    node.on_extrinsic_submitted.append(network.publish_extrinsic)
    node.peer_count = network.peer_count
    node.is_syncing = network.is_syncing
    network.vote_handler = finality.on_vote          # async (vote, peer_id) -> bool | None
    network.vote_validator = finality.check_vote     # optional, sync (vote) -> bool
    await nursery.start(network.run)
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.request_response import (
    BytesCodec,
    ProtocolNotSupportedError,
    RequestContext,
    RequestDecodeError,
    RequestResponseConfig,
    RequestResponseError,
)
from libp2p.utils.address_validation import expand_wildcard_address
from multiaddr import Multiaddr

from p2p.gossip import Gossip, GossipConfig
from p2p.host import (
    DEFAULT_LISTEN_ADDR,
    ConnectionEvents,
    build_host,
    has_connection,
    parse_listen_addr,
    parse_peer_addr,
    refuse_dials,
    running_host,
)
from p2p.peers import (
    BAN_THRESHOLD,
    DEFAULT_BAN_SECONDS,
    Backoff,
    PeerSet,
    PeerSummary,
    Penalty,
    Reputation,
)
from p2p.protocol import (
    MAX_STATUS_SIZE,
    MAX_VOTE_SIZE,
    PROTOCOL_VERSION,
    ProtocolNames,
    Role,
    Status,
    decode_status,
    encode_status,
)
from p2p.sync import (
    BENIGN_IMPORT_FAILURES,
    ChainSync,
    SyncConfig,
    SyncRequestResponse,
    SyncServer,
    failure_reason,
)
from p2p.sync import short_hash as _short
from runtime import codec
from runtime.block import Block, Header, Justification
from runtime.extrinsic import MAX_EXTRINSIC_SIZE

log = logging.getLogger("opus.p2p")

VoteHandler = Callable[[bytes, str], Awaitable[bool | None]]
# Gossiped transactions are pooled this many at a time between checkpoints (about 4 ms of
# signature checks), so a large batch never holds the event loop for long.
TX_SLICE = 32


class ChainAccess(Protocol):
    """What the network needs from the node (``node/`` provides an adapter)."""

    @property
    def genesis_hash(self) -> bytes: ...

    @property
    def best_header(self) -> Header: ...

    @property
    def finalized_header(self) -> Header: ...

    def header(self, block_hash: bytes) -> Header | None: ...

    def block(self, block_hash: bytes) -> Block | None: ...

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        """The canonical encoding of a stored block, with its justification if known."""
        ...

    def hash_at(self, number: int) -> bytes | None:
        """The hash of the best chain's block at ``number``."""
        ...

    def justification(self, block_hash: bytes) -> Justification | None: ...

    async def import_block(self, block: Block) -> object:
        """Verify, execute and commit; raise an exception with a ``reason`` attribute
        (``UnknownParent``, ``FutureBlock``, ``BelowFinalized``, ``BadSeal``, …) if it fails."""
        ...

    async def submit_extrinsic(self, raw: bytes) -> TxImport:
        """Add a transaction received from the network to the pool (must not re-announce it)
        and say how that went; never raises for a refusal."""
        ...


LOOPBACK = {"ip4": "127.0.0.1", "ip6": "::1"}
WILDCARDS = ("0.0.0.0", "::")


def _ip_of(addr: Multiaddr) -> tuple[str, str] | None:
    """``(family, host)`` of an ``/ip4/…`` or ``/ip6/…`` multiaddr."""
    for protocol, value in addr.items():
        if protocol.name in LOOPBACK:
            return protocol.name, str(value)
    return None


def dialable_addresses(listening: Sequence[Multiaddr], peer_id: str) -> list[str]:
    """The multiaddrs a peer can dial for the addresses we listen on, each with ``/p2p/<id>``.

    A wildcard listen address (``/ip4/0.0.0.0/…``, the default, or ``/ip6/::/…``) accepts
    connections on every interface but cannot be dialled as written: it stands for the
    loopback address (first: it works on this machine) and then every other address of
    that family on the machine's interfaces (py-libp2p's wildcard expansion, which leaves
    link-local addresses out). Other addresses are kept as they are, duplicates dropped.
    """
    out: list[str] = []
    for addr in listening:
        ip = _ip_of(addr)
        concrete = [addr]
        if ip is not None and ip[1] in WILDCARDS:
            family = ip[0]
            rest = str(addr).split("/", 3)[3]  # what follows /<family>/<host>/
            concrete = [Multiaddr(f"/{family}/{LOOPBACK[family]}/{rest}"),
                        *expand_wildcard_address(addr)]
        for one in concrete:
            found = _ip_of(one)
            if found is not None and found[1] in WILDCARDS:
                continue  # the expansion's fallback when it finds no interface
            text = f"{one}/p2p/{peer_id}"
            if text not in out:
                out.append(text)
    return out


class TxImport(enum.Enum):
    """What became of a gossiped transaction (Substrate's ``TransactionImport``)."""

    NEW = "new"  # pooled
    KNOWN = "known"  # already pooled, or recently included or refused (banned)
    REFUSED = "refused"  # not valid here (stale nonce, cannot pay …): may be a race, no penalty
    UNWANTED = "unwanted"  # refused by a pool limit an honest relay respects: costs reputation


@dataclass(frozen=True)
class NetworkConfig:
    handshake_timeout: float = 5.0
    status_interval: float = 5.0  # refresh every peer's status (best block) this often
    dial_timeout: float = 10.0
    reconnect_initial: float = 1.0  # back-off when a boot node drops or cannot be dialled
    reconnect_max: float = 60.0
    stable_after: float = 30.0  # a connection this old resets the back-off when it drops
    ban_threshold: float = BAN_THRESHOLD
    ban_seconds: float = DEFAULT_BAN_SECONDS
    other_chain_ban_seconds: float = 600.0
    gossip: GossipConfig = field(default_factory=GossipConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)


class Network:
    """The Opus p2p network service of one node."""

    def __init__(self, chain: ChainAccess, key_pair: KeyPair,
                 listen_addrs: Sequence[str] = (DEFAULT_LISTEN_ADDR,),
                 bootnodes: Sequence[str] = (), genesis_hash: bytes | None = None, *,
                 role: str = "full", config: NetworkConfig | None = None) -> None:
        self.chain = chain
        self.genesis_hash = chain.genesis_hash if genesis_hash is None else genesis_hash
        if self.genesis_hash != chain.genesis_hash:
            raise ValueError("genesis_hash does not match the chain's genesis")
        self.role = Role(role)
        self.config = cfg = config or NetworkConfig()
        self.names = ProtocolNames.for_genesis(self.genesis_hash)
        self._listen = [parse_listen_addr(a) for a in listen_addrs]
        self.host = build_host(key_pair, self._listen)
        self._id = self.host.get_id()
        self.peer_id = self._id.to_base58()
        self._bootnodes: list[PeerInfo] = []
        for text in bootnodes:
            info = parse_peer_addr(text)
            if info.peer_id != self._id and all(b.peer_id != info.peer_id
                                                  for b in self._bootnodes):
                self._bootnodes.append(info)
        self.peerset = PeerSet()
        self.reputation = Reputation(ban_threshold=cfg.ban_threshold, ban_seconds=cfg.ban_seconds)
        refuse_dials(self.host, self.reputation.is_banned)
        self.rr = SyncRequestResponse(self.host)
        self.gossip = Gossip(self.host, self.names, header=chain.header,
                             finalized_number=lambda: chain.finalized_header.number,
                             penalize=self.penalize, is_banned=self.reputation.is_banned,
                             config=cfg.gossip)
        self.sync_server = SyncServer(chain, self.penalize, self.reputation.is_banned)
        self.sync = ChainSync(chain, self.rr, self.names.sync, self.peerset, self.penalize,
                              cfg.sync)
        self.vote_handler: VoteHandler | None = None
        self.txs_received = 0
        self.txs_rejected = 0
        self._codec = BytesCodec()
        self._events_send, self._events = trio.open_memory_channel[tuple[str, ID, str]](4096)
        self._actions_send, self._actions = trio.open_memory_channel[tuple[str, str, float]](
            4096)
        self._handshaking: set[str] = set()
        self._peer_gone: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.running = False
        self.host.get_network().register_notifee(ConnectionEvents(self._events_send))
        self.rr.set_handler(self.names.handshake, self._serve_handshake,  # type: ignore[arg-type]
                            self._codec, self._handshake_config())
        self.rr.set_handler(self.names.sync, self.sync_server.handle,  # type: ignore[arg-type]
                            self._codec, RequestResponseConfig(
                                timeout=cfg.sync.request_timeout,
                                max_request_size=1024,
                                max_response_size=10 * 1024 * 1024))

    # ------------------------------------------------------------------ public API

    @property
    def vote_validator(self) -> Callable[[bytes], bool] | None:
        """Optional cheap check run on each gossiped vote before it is forwarded."""
        return self.gossip.vote_check

    @vote_validator.setter
    def vote_validator(self, check: Callable[[bytes], bool] | None) -> None:
        self.gossip.vote_check = check

    def listen_addresses(self) -> list[str]:
        """The addresses peers can dial us at, each ending in ``/p2p/<peer id>`` (valid boot
        node addresses); see :func:`dialable_addresses`. Empty until :meth:`run` listens."""
        return dialable_addresses(self.host.get_transport_addrs(), self.peer_id)

    def peers(self) -> list[PeerSummary]:
        return self.peerset.summaries()

    def peer_count(self) -> int:
        return len(self.peerset.ready())

    def is_syncing(self) -> bool:
        return self.sync.is_major_syncing()

    async def publish_block(self, block: Block) -> None:
        """Announce a block (ours, just authored) to the network."""
        if not self.running:
            return
        await self.gossip.publish_block(block)

    async def publish_extrinsic(self, raw: bytes) -> None:
        """Queue a transaction for the next batch (sent within ``tx_flush_interval``)."""
        if len(raw) > MAX_EXTRINSIC_SIZE:
            raise ValueError(f"an extrinsic is at most {MAX_EXTRINSIC_SIZE} bytes")
        self.gossip.tx_batcher.add(raw)

    async def publish_vote(self, encoded: bytes) -> None:
        """Queue a finality vote for the next vote batch (sent within ``vote_flush_interval``)."""
        if len(encoded) > MAX_VOTE_SIZE:
            raise ValueError(f"a vote is at most {MAX_VOTE_SIZE} bytes")
        self.gossip.vote_batcher.add(encoded)

    async def connect(self, address: str) -> None:
        """Dial a peer once (``…/p2p/<peer id>``); raises if it fails."""
        info = parse_peer_addr(address)
        with trio.fail_after(self.config.dial_timeout):
            await self.host.connect(info)

    def penalize(self, peer_id: str, penalty: Penalty, reason: str = "", *,
                 count: int = 1) -> None:
        """Lower a peer's reputation (``count`` times the penalty); below the threshold it is
        disconnected and banned."""
        if peer_id == self.peer_id:
            return
        if self.reputation.penalize(peer_id, penalty, reason, count=count):
            self._action("ban", peer_id)

    def ban(self, peer_id: str, seconds: float | None = None) -> None:
        self.reputation.ban(peer_id, seconds)
        self._action("ban", peer_id)

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with running_host(self.host, self._listen), self.gossip.services():
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.gossip.run)
                    nursery.start_soon(self._connection_events)
                    nursery.start_soon(self._actions_worker)
                    nursery.start_soon(self._block_worker)
                    nursery.start_soon(self._tx_worker)
                    nursery.start_soon(self._vote_worker)
                    nursery.start_soon(self.sync.run)
                    nursery.start_soon(self._status_loop)
                    for info in self._bootnodes:
                        nursery.start_soon(self._keep_connected, info)
                    self.running = True
                    log.info("🏷  Local node identity is: %s", self.peer_id)
                    for addr in self.listen_addresses():
                        log.info("🔍 Listening for new connections on %s", addr)
                    task_status.started()
            finally:
                self.running = False
                self._nursery = None

    # ------------------------------------------------------------------ status / handshake

    def status(self) -> Status:
        best = self.chain.best_header
        finalized = self.chain.finalized_header
        return Status(PROTOCOL_VERSION, self.genesis_hash, best.number, best.hash,
                      finalized.number, finalized.hash, self.role)

    def _handshake_config(self) -> RequestResponseConfig:
        return RequestResponseConfig(timeout=self.config.handshake_timeout,
                                     max_request_size=MAX_STATUS_SIZE,
                                     max_response_size=MAX_STATUS_SIZE)

    def _accept_status(self, peer_id: str, status: Status, address: str) -> bool:
        """Record a peer's status; a peer of another chain is disconnected and banned."""
        if status.genesis_hash != self.genesis_hash:
            if not self.reputation.is_banned(peer_id):
                log.warning("❌ Peer %s is on another chain (genesis 0x%s, ours 0x%s): "
                            "disconnecting", peer_id, status.genesis_hash.hex(),
                            self.genesis_hash.hex())
            self.reputation.ban(peer_id, self.config.other_chain_ban_seconds)
            self._action("ban", peer_id, 0.2)  # let our handshake response go out first
            return False
        if not has_connection(self.host, ID.from_base58(peer_id)):
            return False
        record = self.peerset.add(peer_id, address)
        new = not record.ready
        record.update_status(status)
        if new:
            log.info("🤝 Connected to %s (%s, best #%d), %d peers", peer_id, status.role.value,
                     status.best_number, self.peer_count())
        if status.best_number > self.chain.best_header.number:
            self.sync.wake()
        return True

    async def _serve_handshake(self, payload: bytes, context: RequestContext) -> bytes:
        peer_id = context.peer_id.to_base58()
        if self.reputation.is_banned(peer_id):
            self._action("disconnect", peer_id)
            raise RequestDecodeError("peer is banned")
        try:
            status = decode_status(payload)
        except codec.DecodeError as e:
            self.penalize(peer_id, Penalty.BAD_REQUEST, f"handshake: {e}")
            raise RequestDecodeError(str(e)) from None
        record = self.peerset.get(peer_id)
        self._accept_status(peer_id, status, record.address if record else "")
        return encode_status(self.status())

    async def request_status(self, peer_id: ID) -> Status:
        payload = await self.rr.send_request(
            peer_id, [self.names.handshake], encode_status(self.status()),  # type: ignore[list-item]
            self._codec, self._handshake_config())
        return decode_status(payload)

    async def _handshake(self, peer_id: ID, address: str) -> None:
        text = peer_id.to_base58()
        try:
            for attempt in range(2):
                try:
                    status = await self.request_status(peer_id)
                except ProtocolNotSupportedError:
                    self._not_our_chain(peer_id)
                    return
                except (RequestResponseError, codec.DecodeError) as e:
                    if attempt == 0 and has_connection(self.host, peer_id):
                        await trio.sleep(0.5)
                        continue
                    if has_connection(self.host, peer_id):
                        log.info("Handshake with %s failed (%s): disconnecting", text, e)
                        self._action("disconnect", text)
                    return
                self._accept_status(text, status, address)
                return
        finally:
            self._handshaking.discard(text)

    def _not_our_chain(self, peer_id: ID) -> None:
        """The peer does not speak our chain's handshake: another chain, or not an Opus node."""
        text = peer_id.to_base58()
        try:
            protocols = self.host.get_peerstore().get_protocols(peer_id)
        except Exception:
            protocols = []
        theirs = sorted(p for p in protocols if p.startswith("/opus/") and
                        p.endswith("/handshake/1"))
        if theirs:
            log.warning("❌ Peer %s is on another chain (it speaks %s, we speak %s): "
                        "disconnecting", text, ", ".join(theirs), self.names.handshake)
        else:
            log.warning("❌ Peer %s does not speak %s (another chain, or not an Opus node): "
                        "disconnecting", text, self.names.handshake)
        self.reputation.ban(text, self.config.other_chain_ban_seconds)
        self._action("ban", text)

    async def _status_loop(self) -> None:
        while True:
            await trio.sleep(self.config.status_interval)
            self.reputation.expired_bans()
            async with trio.open_nursery() as nursery:
                for record in self.peerset.ready():
                    nursery.start_soon(self._refresh_status, record.peer_id)

    async def _refresh_status(self, peer_id: str) -> None:
        try:
            status = await self.request_status(ID.from_base58(peer_id))
        except (RequestResponseError, codec.DecodeError) as e:
            log.debug("Status refresh from %s failed: %s", peer_id, e)
            return
        record = self.peerset.get(peer_id)
        self._accept_status(peer_id, status, record.address if record else "")

    # ------------------------------------------------------------------ connections

    async def _connection_events(self) -> None:
        async for kind, peer_id, address in self._events:
            text = peer_id.to_base58()
            if kind == "connected":
                if self.reputation.is_banned(text):
                    self.peerset.remove(text)
                    self._action("disconnect", text)
                    continue
                record = self.peerset.add(text, address)  # (fills in the address if missing)
                if text in self._handshaking or record.ready:
                    continue
                self._handshaking.add(text)
                assert self._nursery is not None
                self._nursery.start_soon(self._handshake, peer_id, address)
            else:
                if has_connection(self.host, peer_id):
                    continue  # another connection to the peer is still open
                removed = self.peerset.remove(text)
                if removed is not None and removed.ready:
                    log.info("💔 Disconnected from %s, %d peers", text, self.peer_count())
                gone = self._peer_gone.pop(text, None)
                if gone is not None:
                    gone.set()

    def _action(self, kind: str, peer_id: str, delay: float = 0.0) -> None:
        try:
            self._actions_send.send_nowait((kind, peer_id, delay))
        except trio.WouldBlock:
            log.warning("Network action queue full: cannot %s %s", kind, peer_id)

    async def _actions_worker(self) -> None:
        async for kind, peer_id, delay in self._actions:
            if kind == "ban":
                record = self.peerset.remove(peer_id)
                if record is not None and record.ready:
                    log.info("💔 Disconnecting banned peer %s, %d peers", peer_id,
                             self.peer_count())

            assert self._nursery is not None
            self._nursery.start_soon(self._disconnect, peer_id, delay)

    async def _disconnect(self, peer_id: str, delay: float) -> None:
        if delay:
            await trio.sleep(delay)
        try:
            await self.host.disconnect(ID.from_base58(peer_id))
        except Exception as e:
            log.debug("Disconnecting %s failed: %s", peer_id, e)

    async def _keep_connected(self, info: PeerInfo) -> None:
        """Stay connected to a boot node, re-dialling with exponential back-off."""
        peer_id = info.peer_id
        text = peer_id.to_base58()
        backoff = Backoff(self.config.reconnect_initial, self.config.reconnect_max)
        swarm = self.host.get_network()
        while True:
            if self.reputation.is_banned(text):
                await trio.sleep(self.reputation.ban_remaining(text) + 0.1)
                continue
            gone = self._peer_gone.setdefault(text, trio.Event())
            if not has_connection(self.host, peer_id):
                unblock = getattr(swarm, "unblock_peer", None)
                if unblock is not None:
                    unblock(peer_id)  # py-libp2p remembers failed dials for 60 s
                try:
                    with trio.fail_after(self.config.dial_timeout):
                        await self.host.connect(info)
                except Exception as e:
                    delay = backoff.next_delay()
                    log.info("Dialing boot node %s failed (%s); retrying in %.1f s", text,
                             type(e).__name__ if not str(e) else e, delay)
                    await trio.sleep(delay)
                    continue
            connected_at = time.monotonic()
            await gone.wait()
            if time.monotonic() - connected_at >= self.config.stable_after:
                backoff.reset()
            delay = backoff.next_delay()
            log.info("Boot node %s dropped; reconnecting in %.1f s", text, delay)
            await trio.sleep(delay)

    # ------------------------------------------------------------------ gossip workers

    async def _block_worker(self) -> None:
        chain = self.chain
        async for item in self.gossip.blocks:
            block = item.block
            for peer in {item.forwarder, item.origin}:
                record = self.peerset.get(peer)
                if record is not None:
                    record.note_best(block.number, block.hash)
            if chain.header(block.hash) is not None:
                continue
            if self.sync.active and block.number > chain.best_header.number + 1:
                continue  # the running sync fetches it in order
            try:
                await chain.import_block(block)
            except Exception as e:
                reason = failure_reason(e)
                if reason == "UnknownParent":
                    log.debug("Gossiped block #%d (%s) has an unknown parent: syncing",
                              block.number, _short(block.hash))
                    self.sync.on_unknown_parent(item.forwarder, block.number)
                elif reason in BENIGN_IMPORT_FAILURES:
                    log.info("Gossiped block #%d (%s) not imported: %s", block.number,
                             _short(block.hash), e)
                elif reason is None:
                    log.exception("Importing gossiped block #%d failed", block.number)
                else:
                    log.warning("Gossiped block #%d (%s) from %s is invalid: %s", block.number,
                                _short(block.hash), item.origin, e)
                    self.penalize(item.origin, Penalty.BAD_BLOCK, f"block #{block.number}: {e}")

    async def _tx_worker(self) -> None:
        """Pool gossiped transactions, a slice at a time so authoring and votes keep their time;
        a batch's publisher pays for the transactions the pool's limits refused."""
        chain = self.chain
        async for item in self.gossip.txs:
            unwanted = 0
            for index, raw in enumerate(item.extrinsics):
                if index % TX_SLICE == 0:
                    await trio.sleep(0)
                    if self.reputation.is_banned(item.origin):
                        break  # banned meanwhile: the rest of its batch is not looked at
                outcome = await chain.submit_extrinsic(raw)
                self.txs_received += 1
                if outcome is TxImport.UNWANTED:
                    unwanted += 1
                if outcome in (TxImport.REFUSED, TxImport.UNWANTED):
                    self.txs_rejected += 1
            if unwanted:
                self.penalize(item.origin, Penalty.UNWANTED_TRANSACTION,
                              f"{unwanted} of {len(item.extrinsics)} transactions over the pool's "
                              "limits", count=unwanted)

    async def _vote_worker(self) -> None:
        async for item in self.gossip.votes:
            handler = self.vote_handler
            if handler is None:
                log.debug("%d gossiped votes ignored: no vote handler", len(item.votes))
                continue
            for vote in item.votes:
                try:
                    ok = await handler(vote, item.origin)
                except Exception:
                    log.exception("The vote handler failed")
                    continue
                if ok is False:
                    self.penalize(item.origin, Penalty.BAD_VOTE, "vote rejected by finality")
