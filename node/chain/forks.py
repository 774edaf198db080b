"""The route between two blocks of the block tree, for moving the best chain (or an index)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from runtime.block import Header

__all__ = ["NoCommonAncestor", "Route", "tree_route"]


class NoCommonAncestor(Exception):
    """Two blocks whose chains do not meet (different genesis blocks: a corrupt database)."""


class Route(NamedTuple):
    retracted: list[tuple[bytes, Header]]  # from the old block back to the ancestor, newest first
    enacted: list[tuple[bytes, Header]]  # from the ancestor up to the new block, oldest first
    ancestor_hash: bytes
    ancestor: Header


def tree_route(lookup: Callable[[bytes], Header], old_hash: bytes, old: Header,
               new_hash: bytes, new: Header) -> Route:
    """The blocks to retract and enact to move from ``old_hash`` to ``new_hash``.

    ``lookup`` reads a stored header; the common ancestor is neither retracted
    nor enacted. Raises NoCommonAncestor if the chains do not meet.
    """
    retracted: list[tuple[bytes, Header]] = []
    enacted: list[tuple[bytes, Header]] = []
    while old.number > new.number:
        retracted.append((old_hash, old))
        old_hash = old.parent_hash
        old = lookup(old_hash)
    while new.number > old.number:
        enacted.append((new_hash, new))
        new_hash = new.parent_hash
        new = lookup(new_hash)
    while old_hash != new_hash:
        if old.number == 0:
            raise NoCommonAncestor("two stored chains do not share the genesis block")
        retracted.append((old_hash, old))
        old_hash = old.parent_hash
        old = lookup(old_hash)
        enacted.append((new_hash, new))
        new_hash = new.parent_hash
        new = lookup(new_hash)
    enacted.reverse()
    return Route(retracted, enacted, old_hash, old)
