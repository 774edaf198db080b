"""The chain database's errors: one named exception per failure, all under StorageError.

They live apart from the store so that every part of :mod:`node.chain` (block
reads, state, the store's writes) and the node's commands can name them
without importing the store itself.
"""

from __future__ import annotations

from pathlib import Path

from node.chain.dbformat import db_path

__all__ = [
    "BasePathInUse",
    "DatabaseError",
    "FinalityViolation",
    "GenesisMismatch",
    "StateRootMismatch",
    "StorageError",
    "UnknownBlock",
    "UnknownParent",
]


class StorageError(Exception):
    """Base of every chain database error."""


class DatabaseError(StorageError):
    """The database cannot be opened, read or written (the message says why)."""


class BasePathInUse(StorageError):
    """Another process (or another ChainStore here) holds the database at this base path."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"base path {path} is in use by another node (the database {db_path(path)} is locked); "
            f"stop that node or choose another --base-path"
        )
        self.path = path


class GenesisMismatch(StorageError):
    """The database at this base path belongs to another chain."""

    def __init__(self, path: Path, stored: bytes, expected: bytes) -> None:
        super().__init__(
            f"the database at {path} holds the chain with genesis 0x{stored.hex()}, "
            f"not 0x{expected.hex()}; use another base path or purge this one"
        )
        self.path = path
        self.stored = stored
        self.expected = expected


class UnknownParent(StorageError):
    """A block whose parent is not stored."""


class UnknownBlock(StorageError):
    """A block hash (or canonical number) the database does not hold."""


class FinalityViolation(StorageError):
    """A best-chain or finality change that would leave or go back past the finalized block."""


class StateRootMismatch(StorageError):
    """An ExecutedBlock whose trie update does not give its header's state root."""
