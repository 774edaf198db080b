"""Wire protocol of the Opus network: protocol ids, topic names and message encodings.

Everything a node sends is canonical msgpack (see :mod:`runtime.codec`): a
record is a msgpack array of its fields in declaration order, byte strings are
``bin``, integers use their shortest form, and decoding is strict (wrong
types, extra fields, trailing bytes and oversize inputs are errors). Another
libp2p implementation can follow the chain from this module and
``docs/network.md`` alone.

Names are derived from the chain's genesis hash: ``<g>`` below is the first
16 hex digits of the genesis hash (``genesis_short``).

=====================================  ==============================================
``/opus/<g>/handshake/1``              request/response: :class:`Status` both ways
``/opus/<g>/sync/1``                   request/response: :class:`BlockRequest` ->
                                       :class:`BlockResponse`
``/opus/<g>/blocks/1``                 GossipSub topic: one encoded ``Block`` per message
``/opus/<g>/txs/1``                    GossipSub topic: :class:`TxBatch`
``/opus/<g>/votes/1``                  GossipSub topic: :class:`VoteBatch`
=====================================  ==============================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

from runtime import codec
from runtime.block import MAX_BLOCK_SIZE, Block, Header, decode_block
from runtime.codec import U32, U64, Blob, Bytes32, Struct, Tuple
from runtime.extrinsic import MAX_EXTRINSIC_SIZE

PROTOCOL_VERSION = 1

# --- size limits (all below py-libp2p's 1 MiB pubsub RPC and 10 MiB request/response limits)

#: A gossiped block: py-libp2p (like go-libp2p) drops pubsub RPCs over 1 MiB, and the
#: message envelope (topic, from, seqno, key, signature, sender record) needs room. The
#: runtime keeps a block's extrinsics under 900 KiB, so an honest block is < 960 KiB.
MAX_GOSSIP_MESSAGE = MAX_BLOCK_SIZE - 16 * 1024
#: A transaction batch is flushed at TX_BATCH_TARGET bytes; one extrinsic may overshoot it.
TX_BATCH_TARGET = 256 * 1024
MAX_TX_BATCH_BYTES = TX_BATCH_TARGET + MAX_EXTRINSIC_SIZE + 1024
MAX_TX_BATCH_ITEMS = 8192
#: Finality votes: a vote is small (a signed precommit, well under 1 KiB).
MAX_VOTE_SIZE = 4096
MAX_VOTE_BATCH_ITEMS = 1024
MAX_VOTE_BATCH_BYTES = 256 * 1024
#: Sync responses: at most this many blocks and bytes of encoded blocks.
MAX_SYNC_BLOCKS = 512
MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_SYNC_RESPONSE_WIRE = MAX_SYNC_RESPONSE_BYTES + 64 * 1024  # + msgpack framing
MAX_STATUS_SIZE = 1024
MAX_SYNC_REQUEST_SIZE = 256


def genesis_short(genesis_hash: bytes) -> str:
    return genesis_hash.hex()[:16]


@dataclass(frozen=True)
class ProtocolNames:
    """The protocol ids and topic names of one chain."""

    handshake: str
    sync: str
    blocks_topic: str
    txs_topic: str
    votes_topic: str

    @classmethod
    def for_genesis(cls, genesis_hash: bytes) -> ProtocolNames:
        prefix = f"/opus/{genesis_short(genesis_hash)}"
        return cls(
            handshake=f"{prefix}/handshake/1",
            sync=f"{prefix}/sync/1",
            blocks_topic=f"{prefix}/blocks/1",
            txs_topic=f"{prefix}/txs/1",
            votes_topic=f"{prefix}/votes/1",
        )


class Role(enum.StrEnum):
    FULL = "full"
    AUTHORITY = "authority"
    LIGHT = "light"


# ---------------------------------------------------------------------------
# Handshake


@dataclass(frozen=True)
class Status(Struct):
    """What each side of a connection tells the other (the handshake, both ways).

    Wire form: ``[version, genesis_hash, best_number, best_hash, finalized_number,
    finalized_hash, role]``.
    """

    MAX_SIZE = MAX_STATUS_SIZE

    version: U32
    genesis_hash: Bytes32
    best_number: U64
    best_hash: Bytes32
    finalized_number: U64
    finalized_hash: Bytes32
    role: Role


def encode_status(status: Status) -> bytes:
    return codec.encode(status)


def decode_status(data: bytes) -> Status:
    return codec.decode(data, Status)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Sync


@dataclass(frozen=True)
class BlockRequest(Struct):
    """Ask for the responder's best-chain blocks ``from_number .. from_number + count - 1``.

    Wire form: ``[from_number, count, max_bytes, headers_only]``. The response holds
    at most ``min(count, MAX_SYNC_BLOCKS)`` items and stops before ``max_bytes``
    (capped at MAX_SYNC_RESPONSE_BYTES) would be exceeded, but always holds the first
    item if the responder has it.
    """

    MAX_SIZE = MAX_SYNC_REQUEST_SIZE

    from_number: U64
    count: U32
    max_bytes: U32
    headers_only: bool


@dataclass(frozen=True)
class BlockResponse(Struct):
    """The responder's head and the requested items, in ascending block order.

    Wire form: ``[best_number, best_hash, finalized_number, items]``; each item is
    the canonical encoding of a ``Block`` (with its ``justification`` when the
    responder has one) or, for ``headers_only``, of a ``Header``.
    """

    MAX_SIZE = MAX_SYNC_RESPONSE_WIRE

    best_number: U64
    best_hash: Bytes32
    finalized_number: U64
    items: Annotated[tuple[Annotated[bytes, Blob(MAX_BLOCK_SIZE)], ...], Tuple(MAX_SYNC_BLOCKS)]


def encode_block_request(request: BlockRequest) -> bytes:
    return codec.encode(request)


def decode_block_request(data: bytes) -> BlockRequest:
    return codec.decode(data, BlockRequest)  # type: ignore[no-any-return]


def encode_block_response(response: BlockResponse) -> bytes:
    return codec.encode(response)


def decode_block_response(data: bytes) -> BlockResponse:
    return codec.decode(data, BlockResponse)  # type: ignore[no-any-return]


def decode_header(data: bytes) -> Header:
    return codec.decode(data, Header)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Gossip


@dataclass(frozen=True)
class TxBatch(Struct):
    """Encoded extrinsics, in submission order. Wire form: ``[[ext, ...]]``."""

    MAX_SIZE = MAX_TX_BATCH_BYTES

    extrinsics: Annotated[tuple[Annotated[bytes, Blob(MAX_EXTRINSIC_SIZE)], ...],
                          Tuple(MAX_TX_BATCH_ITEMS)]


@dataclass(frozen=True)
class VoteBatch(Struct):
    """Encoded finality votes (opaque to the network layer). Wire form: ``[[vote, ...]]``."""

    MAX_SIZE = MAX_VOTE_BATCH_BYTES

    votes: Annotated[tuple[Annotated[bytes, Blob(MAX_VOTE_SIZE)], ...],
                     Tuple(MAX_VOTE_BATCH_ITEMS)]


def encode_block(block: Block) -> bytes:
    return codec.encode(block)


def decode_gossip_block(data: bytes) -> Block:
    return decode_block(data)


def encode_tx_batch(extrinsics: tuple[bytes, ...]) -> bytes:
    return codec.encode(TxBatch(extrinsics))


def decode_tx_batch(data: bytes) -> TxBatch:
    return codec.decode(data, TxBatch)  # type: ignore[no-any-return]


def encode_vote_batch(votes: tuple[bytes, ...]) -> bytes:
    return codec.encode(VoteBatch(votes))


def decode_vote_batch(data: bytes) -> VoteBatch:
    return codec.decode(data, VoteBatch)  # type: ignore[no-any-return]


def blob_overhead(length: int) -> int:
    """Bytes msgpack adds in front of a ``bin`` of ``length`` bytes."""
    if length < 256:
        return 2
    if length < 65536:
        return 3
    return 5


__all__ = [
    "BlockRequest", "BlockResponse", "MAX_GOSSIP_MESSAGE", "MAX_SYNC_BLOCKS",
    "MAX_SYNC_RESPONSE_BYTES", "PROTOCOL_VERSION", "ProtocolNames", "Role", "Status", "TxBatch",
    "VoteBatch", "genesis_short",
]
