"""Block files: a range of canonical blocks exported to one file, and read back.

Format
    A block file is the 8-byte magic ``b"OPUSBLK1"`` followed by one frame per
    block, in chain order, and nothing else. A frame is the length of the
    block's encoding as a u32 big-endian, then that many bytes: the block's
    canonical encoding (:class:`runtime.block.Block`, with its justification
    if the exporting node had one).

Reading is strict: a wrong magic, a frame cut short, a frame longer than a
block may be, or bytes that are not a canonical block raise
:class:`BlockFileError`, which names the file and the frame. Reading does not
check that the blocks are valid or chained: importing them does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from node.chain.store import ChainStore, UnknownBlock
from runtime import codec
from runtime.block import MAX_BLOCK_SIZE, Block

__all__ = ["MAGIC", "BlockFileError", "export_blocks", "import_blocks"]

MAGIC = b"OPUSBLK1"
LENGTH_BYTES = 4
MAX_FRAME = MAX_BLOCK_SIZE


class BlockFileError(Exception):
    """A block file that is not a well-formed sequence of blocks."""


def export_blocks(store: ChainStore, path: Path | str, start: int, end: int) -> int:
    """Write canonical blocks ``start`` to ``end`` (inclusive) to ``path``; returns the count.

    The file is written beside ``path`` and renamed into place, so a reader
    never sees a half-written export. Raises :class:`UnknownBlock` if the best
    chain has no block at some number in the range.
    """
    if start < 0 or end < start:
        raise ValueError(f"bad block range {start}..{end}")
    target = Path(path)
    temporary = target.with_name(target.name + ".part")
    count = 0
    try:
        with open(temporary, "wb") as out:
            out.write(MAGIC)
            for number in range(start, end + 1):
                block_hash = store.hash_at(number)
                data = None if block_hash is None else store.encoded_block(block_hash)
                if data is None:
                    raise UnknownBlock(f"the best chain has no block #{number}")
                out.write(len(data).to_bytes(LENGTH_BYTES, "big"))
                out.write(data)
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def import_blocks(path: Path | str) -> Iterator[Block]:
    """Read the blocks of a block file, in order; raises BlockFileError on any malformation."""
    source = Path(path)
    try:
        handle = open(source, "rb")
    except OSError as e:
        raise BlockFileError(f"cannot read block file {source}: {e.strerror or e}") from None
    with handle:
        magic = handle.read(len(MAGIC))
        if magic != MAGIC:
            raise BlockFileError(f"{source} is not a block file (bad magic {magic!r})")
        index = 0
        while True:
            prefix = handle.read(LENGTH_BYTES)
            if not prefix:
                return
            if len(prefix) < LENGTH_BYTES:
                raise BlockFileError(f"{source}: frame {index} is truncated (length prefix)")
            length = int.from_bytes(prefix, "big")
            if length > MAX_FRAME:
                raise BlockFileError(f"{source}: frame {index} claims {length} bytes, more than "
                                     f"a block may have ({MAX_FRAME})")
            data = handle.read(length)
            if len(data) < length:
                raise BlockFileError(f"{source}: frame {index} is truncated ({len(data)} of "
                                     f"{length} bytes)")
            try:
                block: Block = codec.decode(data, Block)
            except codec.DecodeError as e:
                raise BlockFileError(f"{source}: frame {index} is not a block: {e}") from None
            yield block
            index += 1
