"""Stored blocks: headers, bodies, justifications, events, the canonical index and the
transaction index, and how the store reads them.

A block is stored under its hash in four parts (see :mod:`node.chain.dbformat`
for the keys): its header (``h``, the bytes its hash is taken of), its body
without justification (``b``), its justification apart (``j``, attached later
when finality reaches it) and its events (``e``). The canonical index (``n`` +
number) names the best chain's block at each height, and the transaction index
(``x`` + extrinsic hash) where the best chain holds each extrinsic; both move
with the best chain in the store's import batch (:mod:`node.chain.store`).

:class:`StoredBlocks` holds the reads of these keys. :class:`~node.chain.store.ChainStore`
is one: the reads are its own methods (no layer between a caller and the
database), and the store supplies the database and the best block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any

import msgpack

from node.chain.dbformat import BODY, EVENTS, HEADER, JUSTIFICATION, TX, number_key
from node.chain.errors import DatabaseError, UnknownBlock
from runtime import codec
from runtime.block import Block, Header, Justification
from runtime.support import EventRecord

__all__ = ["MAX_EVENTS_SIZE", "EventRecords", "StoredBlocks", "TxLocation"]

EventRecords = Annotated[tuple[EventRecord, ...], codec.Tuple(codec.MAX_CONTAINER_LEN)]
MAX_EVENTS_SIZE = 256 * 1024 * 1024


@dataclass(frozen=True)
class TxLocation:
    """Where a canonical block holds an extrinsic."""

    block_hash: bytes
    index: int


class StoredBlocks:
    """The reads of stored blocks and of the canonical and transaction indexes.

    A base of :class:`~node.chain.store.ChainStore`, which sets ``_raw_db`` (the
    open database), ``_best_hash`` and ``_best`` (the best block) and defines
    ``_db`` (the database once the last block's batch is written).
    """

    _raw_db: Any
    _best_hash: bytes
    _best: Header

    @property
    def _db(self) -> Any:
        raise NotImplementedError  # ChainStore._db

    # ------------------------------------------------------------------ blocks

    def has_block(self, block_hash: bytes) -> bool:
        return self._db.get(HEADER + block_hash) is not None

    def header(self, block_hash: bytes) -> Header | None:
        if block_hash == self._best_hash:
            return self._best
        data = self._db.get(HEADER + block_hash)
        return None if data is None else _decode_header(data)

    def block(self, block_hash: bytes) -> Block | None:
        """The stored block, with its justification attached if one is known."""
        data = self._db.get(BODY + block_hash)
        if data is None:
            return None
        block: Block = codec.decode(data, Block)
        justification = self.justification(block_hash)
        if justification is not None:
            block = replace(block, justification=justification)
        return block

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        """The block's canonical encoding (with justification if known), ready to send."""
        data: bytes | None = self._db.get(BODY + block_hash)
        if data is None or self._db.get(JUSTIFICATION + block_hash) is None:
            return data
        block = self.block(block_hash)
        assert block is not None
        return codec.encode(block)

    def justification(self, block_hash: bytes) -> Justification | None:
        data = self._db.get(JUSTIFICATION + block_hash)
        return None if data is None else codec.decode(data, Justification)

    def events(self, block_hash: bytes) -> tuple[EventRecord, ...] | None:
        return _decode_events(self._db.get(EVENTS + block_hash))

    # ------------------------------------------------------------------ the canonical index

    def hash_at(self, number: int) -> bytes | None:
        """The hash of the best chain's block at ``number``."""
        if number < 0 or number > self._best.number:
            return None
        return self._db.get(number_key(number))  # type: ignore[no-any-return]

    def header_at(self, number: int) -> Header | None:
        block_hash = self.hash_at(number)
        return None if block_hash is None else self.header(block_hash)

    def is_canonical(self, block_hash: bytes) -> bool:
        """Whether the block is on the best chain."""
        header = self.header(block_hash)
        return header is not None and self.hash_at(header.number) == block_hash

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        """Whether ``ancestor`` is ``descendant`` or one of its ancestors (both stored)."""
        target = self.header(ancestor)
        header = self.header(descendant)
        if target is None or header is None:
            return False
        if target.number > header.number:
            return False
        block_hash = descendant
        if self.is_canonical(descendant):
            return self.hash_at(target.number) == ancestor
        while header.number > target.number:
            block_hash = header.parent_hash
            header = self._require_header(block_hash)
        return block_hash == ancestor

    # ------------------------------------------------------------------ the transaction index

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        """Where the best chain holds the extrinsic with this hash."""
        data = self._db.get(TX + tx_hash)
        if data is None:
            return None
        return TxLocation(data[:32], int.from_bytes(data[32:], "big"))

    # ------------------------------------------------------------------ internals

    def _require_header(self, block_hash: bytes) -> Header:
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"no stored block 0x{block_hash.hex()}")
        return header

    # The indexer's readers: written blocks only, without waiting for a batch being written.

    def _stored_header(self, block_hash: bytes) -> Header:
        data = self._raw_db.get(HEADER + block_hash)
        if data is None:
            raise DatabaseError(f"the header of 0x{block_hash.hex()} is missing (corrupt?)")
        return _decode_header(data)

    def _stored_events(self, block_hash: bytes) -> tuple[EventRecord, ...]:
        events = _decode_events(self._raw_db.get(EVENTS + block_hash))
        if events is None:
            raise DatabaseError(f"the events of 0x{block_hash.hex()} are missing (corrupt?)")
        return events

    def _extrinsics(self, block_hash: bytes) -> tuple[bytes, ...]:
        data = self._db.get(BODY + block_hash)
        if data is None:
            raise DatabaseError(f"the body of 0x{block_hash.hex()} is missing (corrupt?)")
        # Trusted bytes we wrote: [header, extrinsics, seal, justification].
        return msgpack.unpackb(data, use_list=False)[1]  # type: ignore[no-any-return]


def _decode_header(data: bytes) -> Header:
    return codec.decode(data, Header)  # type: ignore[no-any-return]


def _decode_events(data: bytes | None) -> tuple[EventRecord, ...] | None:
    if data is None:
        return None
    return codec.decode(data, EventRecords, max_size=MAX_EVENTS_SIZE)  # type: ignore[no-any-return]
