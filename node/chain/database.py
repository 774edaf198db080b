"""Opening the chain database: LevelDB's settings, the lock, the schema and genesis checks,
the genesis block of a new database, and the priority of LevelDB's compaction thread.

The store (:mod:`node.chain.store`) opens its database through :func:`open_leveldb`
and :func:`initialize`; what is tuned here bounds the node's memory (two
memtables, the block cache, the open tables) and keeps LevelDB's background work
from slowing block import (see docs/performance.md).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import plyvel

from genesis.builder import Genesis
from node.chain.blocks import EventRecords
from node.chain.dbformat import (
    BODY,
    EVENTS,
    HEADER,
    INDEX,
    META_BEST,
    META_FINALIZED,
    META_GENESIS,
    META_INDEXED,
    META_VERSION,
    SCHEMA_VERSION,
    STATE,
    TRIE,
    db_path,
    number_key,
)
from node.chain.errors import BasePathInUse, DatabaseError, GenesisMismatch
from node.chain.indexes import genesis_index
from runtime import codec
from runtime.block import Block
from runtime.crypto import blake2_256
from runtime.trie import EMPTY_ROOT, MissingNode, trie_update

__all__ = [
    "COMPACTION_NICENESS",
    "MAX_OPEN_FILES",
    "initialize",
    "lower_compaction_priority",
    "open_leveldb",
    "plyvel_message",
]

GENESIS_SEAL = bytes(64)

# LevelDB tuning: bounded memory (two memtables + block cache + the node cache).
WRITE_BUFFER_SIZE = 16 * 1024 * 1024
BLOCK_CACHE_SIZE = 64 * 1024 * 1024
BLOOM_FILTER_BITS = 10
# Each open table keeps its index and filter blocks in memory, and LevelDB maps open
# tables into the process: their touched pages count in its RSS (about 2 MiB a table).
# 64 instead of 256: peak RSS 440 instead of 644 MB importing 200,000 registrations,
# at the same speed (trie-node keys are random: the table cache misses either way).
MAX_OPEN_FILES = 64
# LevelDB compacts in a background thread of its own, on the same cores as the
# importing thread; at this niceness it yields to block import (Linux only).
COMPACTION_NICENESS = 10


def open_leveldb(base: Path) -> Any:
    """The LevelDB of base path ``base`` (created if missing), opened with the node's settings.

    Raises :class:`BasePathInUse` if another node holds it and
    :class:`DatabaseError` for any other failure to open it.
    """
    location = db_path(base)
    try:
        location.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatabaseError(f"cannot create the database directory {location}: "
                            f"{e.strerror or e}") from None
    try:
        return plyvel.DB(
            str(location),
            create_if_missing=True,
            write_buffer_size=WRITE_BUFFER_SIZE,
            lru_cache_size=BLOCK_CACHE_SIZE,
            bloom_filter_bits=BLOOM_FILTER_BITS,
            # Keys and trie nodes are hashes: compression only costs CPU.
            compression=None,
            max_open_files=MAX_OPEN_FILES,
        )
    except plyvel.Error as e:
        message = plyvel_message(e)
        if "lock" in message.lower():
            raise BasePathInUse(base) from None
        raise DatabaseError(f"cannot open the database {location}: {message}") from None
    except OSError as e:
        raise DatabaseError(f"cannot open the database {location}: {e}") from None


def plyvel_message(error: BaseException) -> str:
    """The text of a plyvel error (LevelDB's status message)."""
    arg = error.args[0] if error.args else error
    if isinstance(arg, bytes):
        return arg.decode(errors="replace")
    return str(arg)


def initialize(db: Any, base: Path, genesis: Genesis) -> None:
    """Write the genesis block into an empty database, or check an existing one."""
    stored = db.get(META_GENESIS)
    if stored is not None:
        if stored != genesis.hash:
            raise GenesisMismatch(base, stored, genesis.hash)
        version = db.get(META_VERSION)
        if version is None or int.from_bytes(version, "big") != SCHEMA_VERSION:
            raise DatabaseError(f"the database {db_path(base)} has an unsupported schema version")
        return
    with db.iterator(include_value=False) as it:
        if next(it, None) is not None:
            raise DatabaseError(f"{db_path(base)} is not an Opus Chain database")
    header = genesis.header
    header_bytes = codec.encode(header)
    genesis_hash = blake2_256(header_bytes)
    update = trie_update(_NoNodes(), EMPTY_ROOT, dict(genesis.state))
    if update.root != header.state_root:
        raise DatabaseError("the genesis state does not match the genesis header's state root")
    batch = db.write_batch(sync=True)
    batch.put(HEADER + genesis_hash, header_bytes)
    batch.put(BODY + genesis_hash, codec.encode(Block(header, (), GENESIS_SEAL)))
    batch.put(EVENTS + genesis_hash, codec.encode((), EventRecords))
    for node_hash, encoding in update.new_nodes.items():
        batch.put(TRIE + node_hash, encoding)
    for key, value in genesis.state.items():
        batch.put(STATE + key, value)
    for key, value in genesis_index(genesis.state).items():
        batch.put(INDEX + key, value)
    batch.put(META_INDEXED, genesis_hash)
    batch.put(number_key(0), genesis_hash)
    batch.put(META_BEST, genesis_hash)
    batch.put(META_FINALIZED, genesis_hash)
    batch.put(META_VERSION, SCHEMA_VERSION.to_bytes(4, "big"))
    batch.put(META_GENESIS, genesis_hash)
    batch.write()


class _NoNodes:
    """The node store of an empty trie."""

    def get_node(self, node_hash: bytes) -> bytes | None:
        raise MissingNode(node_hash)


def lower_compaction_priority() -> bool:
    """Give LevelDB's compaction thread a lower CPU priority; True once it is done.

    Compaction is background work: importing a large block writes a few MB,
    and merging it into the lower levels costs about as much CPU again as the
    import itself. Run at the same priority, it takes the importing thread's
    core away for whole time slices. LevelDB starts its one background thread
    at its first compaction; it is the only thread of the process that Python
    did not start. (RocksDB offers the same as ``LowerThreadPoolCPUPriority``.)
    """
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return True  # not Linux: nothing to do
    ours = {t.native_id for t in threading.enumerate()}
    native = [int(tid) for tid in threads if int(tid) not in ours]
    for tid in native:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, COMPACTION_NICENESS)
        except ProcessLookupError:
            continue
        except OSError:
            return True  # not allowed here: leave it
    return bool(native)
