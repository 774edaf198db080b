"""Votes and their tallies: each authority's votes in one phase of a round, and how a phase's
votes count over the block tree.

Votes
    A vote is a :class:`runtime.finality_types.SignedVote`: a phase (prevote or
    precommit), the round, the set id and a block (hash and number), signed by
    an authority (see :mod:`runtime.finality_types` for the signed bytes). A vote
    for a block counts for all its ancestors (GHOST). Writing ``t`` for the
    threshold and ``f = n - t`` for the faults tolerated:

    * *supermajority for B*: votes for B or its descendants from at least ``t``
      authorities; an authority that signed two different votes in one phase of
      a round (an *equivocator*) counts for every block.
    * ``g(V)``: the GHOST of a vote set: the highest block with a supermajority
      (:func:`ghost_of`).
    * *possible for B* (precommits C): B could still get a supermajority once
      every authority has voted, counting authorities not yet seen as voting for
      B and up to ``f`` further equivocations among those that voted elsewhere
      (:func:`still_possible`).

    A round's estimate and whether it is completable, built on these, are in
    :mod:`node.consensus.finality.rounds`.

A vote for a block this node does not have counts as no vote until the block is
imported (:attr:`Tally.unknown`; why that is safe: :mod:`node.consensus.finality.rounds`).

A vote reaches :class:`PhaseVotes` only once the gadget has checked it (set,
authority, round, signature: ``FinalityGadget._import_vote``). The counting
functions here are pure: they take the block tree as an ``ancestry`` function
(a block's hashes down to the finalized base) from the gadget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runtime.finality_types import SignedVote

__all__ = ["Ancestry", "BlockRef", "PhaseVotes", "Tally", "ghost_of", "still_possible",
           "tally_votes"]

BlockRef = tuple[bytes, int]  # (hash, number)
#: The hashes from a block (hash, number) down to the base (finalized) block; () if the block
#: is known but not on the base's chain; None if it is unknown (or the number lies).
Ancestry = Callable[[bytes, int], tuple[bytes, ...] | None]


class PhaseVotes:
    """The prevotes (or precommits) of one round: each authority's first vote, and a
    second, different one if it equivocated (further ones are dropped)."""

    __slots__ = ("first", "second")

    def __init__(self) -> None:
        self.first: dict[bytes, SignedVote] = {}
        self.second: dict[bytes, SignedVote] = {}

    def knows(self, vote: SignedVote) -> bool:
        return self.first.get(vote.authority) == vote or self.second.get(vote.authority) == vote

    def add(self, vote: SignedVote) -> str:
        """Record a verified vote: "new", "equivocation", "duplicate" or "extra"."""
        first = self.first.get(vote.authority)
        if first is None:
            self.first[vote.authority] = vote
            return "new"
        if first == vote or self.second.get(vote.authority) == vote:
            return "duplicate"
        if vote.authority in self.second:
            return "extra"
        self.second[vote.authority] = vote
        return "equivocation"

    def all(self) -> Iterator[SignedVote]:
        yield from self.first.values()
        yield from self.second.values()


@dataclass
class Tally:
    """One phase of a round counted over the block tree above the base (the finalized block)."""

    weights: dict[bytes, int]  # block -> non-equivocating voters for it or a descendant
    children: dict[bytes, set[bytes]]
    numbers: dict[bytes, int]
    equivocators: int
    voted: int  # authorities whose vote is counted (equivocators included)
    unknown: int  # votes for blocks this node does not have (yet)

    def support(self, block_hash: bytes) -> int:
        return self.weights.get(block_hash, 0) + self.equivocators


def tally_votes(votes: PhaseVotes, ancestry: Ancestry) -> Tally:
    """Count one phase's votes over the block tree above the base (equivocators apart)."""
    weights: dict[bytes, int] = {}
    children: dict[bytes, set[bytes]] = {}
    numbers: dict[bytes, int] = {}
    voted = unknown = 0
    equivocators = votes.second
    for authority, vote in votes.first.items():
        if authority in equivocators:
            continue
        path = ancestry(vote.block_hash, vote.block_number)
        if path is None:
            unknown += 1
            continue
        voted += 1
        number = vote.block_number
        child: bytes | None = None
        for block_hash in path:
            weights[block_hash] = weights.get(block_hash, 0) + 1
            numbers[block_hash] = number
            number -= 1
            if child is not None:
                children.setdefault(block_hash, set()).add(child)
            child = block_hash
    return Tally(weights, children, numbers, len(equivocators), voted + len(equivocators),
                 unknown)


def still_possible(tally: Tally, n: int, t: int) -> Callable[[bytes], bool]:
    """Whether a block could still get a supermajority in this phase (see the docstring),
    for ``n`` authorities and the threshold ``t``."""
    additional = max(0, (n - t) - tally.equivocators)
    remaining = n - tally.voted

    def possible(block_hash: bytes) -> bool:
        support = tally.support(block_hash)
        more_equivocations = min(max(0, tally.voted - support), additional)
        return support + remaining + more_equivocations >= t

    return possible


def ghost_of(tally: Tally, t: int, base: BlockRef) -> BlockRef | None:
    """``g(V)``: the highest block with at least ``t`` votes, None if not even the base has."""
    base_hash, base_number = base
    if tally.voted < t or tally.support(base_hash) < t:
        return None
    node = base_hash
    while True:
        best: tuple[int, bytes] | None = None
        for child in tally.children.get(node, ()):
            support = tally.support(child)
            if support >= t and (best is None or (support, child) > best):
                best = (support, child)
        if best is None:
            return node, tally.numbers.get(node, base_number)
        node = best[1]
