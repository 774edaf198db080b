"""Block sync: the ``/opus/<g>/sync/1`` request/response protocol and the catch-up logic.

Serving (:class:`SyncServer`): a :class:`p2p.protocol.BlockRequest` names a range of
the responder's best chain by number; the response carries the blocks (with
their justifications when known) or headers, in order, bounded by
``MAX_SYNC_BLOCKS`` blocks and ``MAX_SYNC_RESPONSE_BYTES`` bytes (py-libp2p's
request/response helper allows 10 MiB).

Catching up (:class:`ChainSync`): when a peer's best block is more than
``sync_lag`` blocks ahead of ours (after its handshake, a status refresh, or a
gossiped block with an unknown parent), we sync from the peer with the best
chain: ranges are fetched one request ahead of the import (a two-stage
pipeline) and imported in order through the node. If the first block does not
attach to our chain (we are on a fork), the range is fetched again from our
last finalized block. Progress is logged Substrate-style every
``log_interval`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from libp2p.abc import INetStream
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.io.msgio import VarIntLengthMsgReadWriter
from libp2p.peer.id import ID
from libp2p.request_response import (
    BytesCodec,
    RequestContext,
    RequestDecodeError,
    RequestResponse,
    RequestResponseConfig,
    RequestResponseError,
)
from libp2p.request_response.exceptions import MessageTooLargeError

from p2p.peers import PeerSet, Penalty
from p2p.protocol import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_REQUEST_SIZE,
    MAX_SYNC_RESPONSE_BYTES,
    MAX_SYNC_RESPONSE_WIRE,
    BlockRequest,
    BlockResponse,
    blob_overhead,
    decode_block_request,
    decode_block_response,
    decode_header,
    encode_block_request,
    encode_block_response,
)
from runtime import codec
from runtime.block import Block, Header, decode_block

if TYPE_CHECKING:
    from p2p.network import ChainAccess

log = logging.getLogger("opus.sync")

#: Import failures that are not the sending peer's fault.
BENIGN_IMPORT_FAILURES = frozenset({"UnknownParent", "FutureBlock", "BelowFinalized"})


def short_hash(block_hash: bytes) -> str:
    text = block_hash.hex()
    return f"0x{text[:4]}…{text[-4:]}"


def failure_reason(error: BaseException) -> str | None:
    """The named reason of a failed import (``ImportFailed.reason``), None for other errors."""
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else None


@dataclass(frozen=True)
class SyncConfig:
    request_timeout: float = 20.0
    sync_lag: int = 2  # start syncing when a peer is more than this many blocks ahead
    major_sync_gap: int = 5  # is_syncing() while the target is more than this ahead
    log_interval: float = 5.0
    blocks_per_request: int = MAX_SYNC_BLOCKS
    bytes_per_request: int = MAX_SYNC_RESPONSE_BYTES


def request_config(timeout: float) -> RequestResponseConfig:
    return RequestResponseConfig(timeout=timeout, max_request_size=MAX_SYNC_REQUEST_SIZE,
                                 max_response_size=MAX_SYNC_RESPONSE_WIRE + 1024)


class SyncRequestResponse(RequestResponse):
    """py-libp2p's request/response helper, reading a message until it is whole.

    py-libp2p 0.8.1 reads a length-prefixed message with ``read_exactly``, which
    gives up after 101 partial reads; Yamux hands out about 64 KiB per read, so
    a response of more than about 6 MiB failed as "connection closed" although
    the peer sent all of it. Same wire format: a varint length, then the bytes.
    """

    async def _read_message(self, stream: INetStream, max_msg_size: int) -> bytes:
        try:
            length = await VarIntLengthMsgReadWriter(stream, max_msg_size).next_msg_len()
        except MessageTooLarge as error:
            raise MessageTooLargeError(str(error)) from error
        buffer = bytearray()
        while len(buffer) < length:
            chunk = await stream.read(length - len(buffer))
            if not chunk:
                raise IncompleteReadError(
                    f"stream closed after {len(buffer)} of {length} bytes",
                    expected_bytes=length, received_bytes=len(buffer))
            buffer += chunk
        return bytes(buffer)


class SyncServer:
    """Answers block requests from the local chain."""

    def __init__(self, chain: ChainAccess, penalize: Callable[[str, Penalty, str], None],
                 is_banned: Callable[[str], bool]) -> None:
        self.chain = chain
        self._penalize = penalize
        self._is_banned = is_banned
        self.requests_served = 0

    async def handle(self, payload: bytes, context: RequestContext) -> bytes:
        peer = context.peer_id.to_base58()
        if self._is_banned(peer):
            raise RequestDecodeError("peer is banned")
        try:
            request = decode_block_request(payload)
        except codec.DecodeError as e:
            self._penalize(peer, Penalty.BAD_REQUEST, f"sync request: {e}")
            raise RequestDecodeError(str(e)) from None
        self.requests_served += 1
        return encode_block_response(self.respond(request))

    def respond(self, request: BlockRequest) -> BlockResponse:
        """The response to ``request`` (synchronous: one consistent view of the chain)."""
        chain = self.chain
        best = chain.best_header
        finalized = chain.finalized_header
        max_bytes = min(request.max_bytes, MAX_SYNC_RESPONSE_BYTES)
        count = min(request.count, MAX_SYNC_BLOCKS)
        items: list[bytes] = []
        total = 0
        end = min(best.number, request.from_number + count - 1)
        for number in range(request.from_number, end + 1):
            block_hash = chain.hash_at(number)
            if block_hash is None:
                break
            data: bytes | None
            if request.headers_only:
                header = chain.header(block_hash)
                data = None if header is None else codec.encode(header)
            else:
                data = chain.encoded_block(block_hash)
            if data is None:
                break
            size = len(data) + blob_overhead(len(data))
            if items and total + size > max_bytes:
                break
            items.append(data)
            total += size
        return BlockResponse(best.number, best.hash, finalized.number, tuple(items))


class SyncAborted(Exception):
    """A sync session with one peer stopped (the reason is logged where it happened)."""


class ChainSync:
    """Catches the local chain up with the best peer."""

    def __init__(self, chain: ChainAccess, rr: RequestResponse, protocol_id: str,
                 peers: PeerSet, penalize: Callable[[str, Penalty, str], None],
                 config: SyncConfig | None = None) -> None:
        self.chain = chain
        self.rr = rr
        self.protocol_id = protocol_id
        self.peers = peers
        self._penalize = penalize
        self.config = config or SyncConfig()
        self._wake = trio.Event()
        self._hint: tuple[str, int] | None = None  # (peer, block number) of an orphan block
        self.active = False
        self.target = 0
        self.imported = 0  # blocks imported by sync, ever
        self.last_rate = 0.0  # blocks/s of the last session
        self._codec = BytesCodec()

    # ------------------------------------------------------------------ state

    def is_major_syncing(self) -> bool:
        return self.active and self.target > self.chain.best_header.number + \
            self.config.major_sync_gap

    def wake(self) -> None:
        self._wake.set()

    def on_unknown_parent(self, peer_id: str, number: int) -> None:
        """A gossiped block from ``peer_id`` did not attach: fetch what we miss from it."""
        if self._hint is None or number > self._hint[1]:
            self._hint = (peer_id, number)
        self._wake.set()

    # ------------------------------------------------------------------ requests

    async def request(self, peer_id: str, request: BlockRequest) -> BlockResponse:
        """Send one block request; raises RequestResponseError or DecodeError."""
        payload = await self.rr.send_request(
            ID.from_base58(peer_id), [self.protocol_id], encode_block_request(request),  # type: ignore[list-item]
            self._codec, request_config(self.config.request_timeout))
        return decode_block_response(payload)

    async def request_headers(self, peer_id: str, from_number: int, count: int) -> list[Header]:
        response = await self.request(
            peer_id, BlockRequest(from_number, count, MAX_SYNC_RESPONSE_BYTES, True))
        return [decode_header(item) for item in response.items]

    async def request_blocks(self, peer_id: str, from_number: int, count: int) -> list[Block]:
        response = await self.request(
            peer_id, BlockRequest(from_number, count, self.config.bytes_per_request, False))
        return [decode_block(item) for item in response.items]

    # ------------------------------------------------------------------ the loop

    def _choose(self) -> tuple[str, bool] | None:
        """The peer to sync from now (and whether an orphan block asked for it), if any."""
        best = self.chain.best_header.number
        hint, self._hint = self._hint, None
        if hint is not None:
            record = self.peers.get(hint[0])
            if record is not None and record.ready and hint[1] > best:
                return hint[0], True
        peer = self.peers.best_peer()
        if peer is not None and peer.best_number > best + self.config.sync_lag:
            return peer.peer_id, False
        if hint is not None and hint[1] > best:  # the orphan's sender is gone: ask the best
            if peer is not None and peer.best_number > best:
                return peer.peer_id, True
        return None

    async def run(self) -> None:
        failed: dict[str, float] = {}
        while True:
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()
            choice = self._choose()
            if choice is None:
                continue
            peer_id, _forced = choice
            if time.monotonic() < failed.get(peer_id, 0.0):
                other = self.peers.best_peer(exclude={peer_id})
                if other is None or other.best_number <= self.chain.best_header.number:
                    continue
                peer_id = other.peer_id
            try:
                await self.sync_from(peer_id)
            except SyncAborted:
                failed[peer_id] = time.monotonic() + 5.0
            else:
                failed.pop(peer_id, None)
                self._wake.set()  # look again: the target may have moved on

    # ------------------------------------------------------------------ one session

    async def sync_from(self, peer_id: str) -> int:
        """Fetch and import everything ``peer_id`` has beyond our best block; blocks imported."""
        chain = self.chain
        record = self.peers.get(peer_id)
        self.target = max(self.target if self.active else 0,
                          record.best_number if record is not None else 0)
        self.active = True
        started = time.monotonic()
        imported_before = self.imported
        try:
            start = chain.best_header.number + 1
            try:
                await self._session(peer_id, start)
            except _Restart:
                start = chain.finalized_header.number + 1
                log.info("Our best block is not on %s's chain: syncing again from #%d", peer_id,
                         start)
                await self._session(peer_id, start, allow_restart=False)
        finally:
            self.active = False
            count = self.imported - imported_before
            elapsed = time.monotonic() - started
            if count:
                self.last_rate = count / elapsed if elapsed > 0 else 0.0
                best = chain.best_header
                log.info("✅ Synced %d blocks from %s in %.1f s (%.1f bps), best: #%d (%s)",
                         count, peer_id, elapsed, self.last_rate, best.number,
                         short_hash(best.hash))
        return self.imported - imported_before

    async def _session(self, peer_id: str, start: int, *, allow_restart: bool = True) -> None:
        send, receive = trio.open_memory_channel[list[Block]](1)
        outcome: dict[str, BaseException] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fetch, peer_id, start, send, outcome)
            try:
                await self._import(peer_id, start, receive, allow_restart)
            except (SyncAborted, _Restart) as e:
                outcome.setdefault("import", e)
                nursery.cancel_scope.cancel()
        for key in ("import", "fetch"):
            if key in outcome:
                raise outcome[key]

    async def _fetch(self, peer_id: str, start: int, send: trio.MemorySendChannel[list[Block]],
                     outcome: dict[str, BaseException]) -> None:
        async with send:
            number = start
            while True:
                record = self.peers.get(peer_id)
                if record is None:
                    log.info("Sync peer %s disconnected", peer_id)
                    outcome["fetch"] = SyncAborted()
                    return
                if number > max(self.target, record.best_number):
                    return
                request = BlockRequest(number, self.config.blocks_per_request,
                                       self.config.bytes_per_request, False)
                try:
                    response = await self.request(peer_id, request)
                except codec.DecodeError as e:
                    self._penalize(peer_id, Penalty.BAD_SYNC_RESPONSE, str(e))
                    outcome["fetch"] = SyncAborted()
                    return
                except RequestResponseError as e:
                    self._penalize(peer_id, Penalty.REQUEST_FAILED, f"sync request: {e}")
                    outcome["fetch"] = SyncAborted()
                    return
                record.note_best(response.best_number, response.best_hash)
                self.target = max(self.target, response.best_number)
                if not response.items:
                    return
                try:
                    blocks = self._check_response(number, response)
                except codec.DecodeError as e:
                    self._penalize(peer_id, Penalty.BAD_SYNC_RESPONSE, str(e))
                    outcome["fetch"] = SyncAborted()
                    return
                await send.send(blocks)
                number += len(blocks)

    @staticmethod
    def _check_response(start: int, response: BlockResponse) -> list[Block]:
        blocks: list[Block] = []
        for index, item in enumerate(response.items):
            block = decode_block(item)
            if block.number != start + index:
                raise codec.DecodeError(f"expected block #{start + index}, got #{block.number}")
            if blocks and block.header.parent_hash != blocks[-1].hash:
                raise codec.DecodeError(f"block #{block.number} does not follow the previous one")
            blocks.append(block)
        return blocks

    async def _import(self, peer_id: str, start: int,
                      receive: trio.MemoryReceiveChannel[list[Block]],
                      allow_restart: bool) -> None:
        chain = self.chain
        window_start = time.monotonic()
        window_count = 0
        first = True
        async for blocks in receive:
            for block in blocks:
                try:
                    await chain.import_block(block)
                except Exception as e:
                    reason = failure_reason(e)
                    if reason == "UnknownParent" and first and allow_restart \
                            and start > chain.finalized_header.number + 1:
                        raise _Restart() from None
                    if reason == "BelowFinalized":
                        continue
                    if reason == "FutureBlock":
                        log.info("Sync from %s stopped at #%d: the block is for a future slot",
                                 peer_id, block.number)
                        raise SyncAborted() from None
                    if reason is None:
                        log.exception("Importing synced block #%d failed", block.number)
                        raise SyncAborted() from None
                    self._penalize(peer_id, Penalty.BAD_BLOCK,
                                   f"synced block #{block.number}: {e}")
                    raise SyncAborted() from None
                first = False
                self.imported += 1
                window_count += 1
            now = time.monotonic()
            if now - window_start >= self.config.log_interval:
                self._log_progress(window_count / (now - window_start))
                window_start, window_count = now, 0

    def _log_progress(self, rate: float) -> None:
        best = self.chain.best_header
        finalized = self.chain.finalized_header
        log.info("⚙️ Syncing %.1f bps, target=#%d (%d peers), best: #%d (%s), finalized #%d (%s)",
                 rate, self.target, len(self.peers.ready()), best.number, short_hash(best.hash),
                 finalized.number, short_hash(finalized.hash))


class _Restart(Exception):
    """The first synced block did not attach: start again from the finalized block."""

