"""Key-value state access for the runtime, with transactional overlays.

The runtime reads and writes state only through :class:`Overlay`. A block runs
in one overlay over the parent block's state; each extrinsic runs in a child
overlay that is committed into the block overlay or reverted, and each call
inside it in a further child, so a failed call loses exactly its own changes.
At the end of the block the block overlay's ``changes`` are the block's whole
write set: the node feeds them to the Merkle trie once and writes them to
LevelDB in one batch.

Keys and values are bytes. A value of ``None`` in ``changes`` is a deletion.
Nothing here iterates over unordered collections: ``changes`` keeps insertion
order and consumers sort it when order matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol


class StateReader(Protocol):
    """Anything the runtime can read state from (memory, a LevelDB snapshot, an overlay)."""

    def get(self, key: bytes) -> bytes | None: ...


class MemoryState:
    """A plain in-memory state, for tests, genesis building and tools."""

    def __init__(self, items: Mapping[bytes, bytes] | None = None) -> None:
        self.items: dict[bytes, bytes] = dict(items or {})

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with ``prefix``, in key order."""
        for key in sorted(k for k in self.items if k.startswith(prefix)):
            yield key, self.items[key]


class Overlay:
    """Uncommitted changes on top of a reader; ``commit`` pushes them one level down."""

    __slots__ = ("parent", "changes")

    def __init__(self, parent: StateReader) -> None:
        self.parent = parent
        self.changes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        overlay = self
        while True:  # down the stack of overlays without a call per level
            changes = overlay.changes
            if key in changes:
                return changes[key]
            parent = overlay.parent
            if type(parent) is not Overlay:
                return parent.get(key)
            overlay = parent

    def set(self, key: bytes, value: bytes) -> None:
        self.changes[key] = value

    def delete(self, key: bytes) -> None:
        self.changes[key] = None

    def child(self) -> Overlay:
        return Overlay(self)

    def commit(self) -> None:
        """Merge these changes into the parent overlay (which must be an Overlay)."""
        parent = self.parent
        if not isinstance(parent, Overlay):
            raise TypeError("only a child overlay can be committed into its parent")
        parent.changes.update(self.changes)
        self.changes = {}

    def revert(self) -> None:
        self.changes = {}
