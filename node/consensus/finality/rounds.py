"""Rounds: one round's votes, and what they make of it (its GHOST, estimate, completability
and the block it finalizes).

Authorities vote in numbered rounds of an authority set. Writing ``t`` for the
threshold, ``f = n - t`` for the faults tolerated, and with the supermajority,
``g(V)`` and "possible" of :mod:`node.consensus.finality.votes`:

* *estimate* ``E_r``: the highest ancestor of ``g(prevotes_r)`` (itself
  included) that is possible for the precommits of round ``r``.
* round ``r`` is *completable* once it has ``t`` precommits, ``g(prevotes)``
  exists and either ``E_r`` is below ``g`` or no child of ``g`` is possible.

Round ``r`` of a validator ``v`` (GRANDPA, Stewart & Kokoris-Kogia 2020, sect. 3)
    1. *Prevote* for the best block if the best chain contains ``E_{r-1}`` (else
       for ``E_{r-1}`` itself), after waiting up to ``prevote_delay`` if other
       prevotes of the round name blocks it does not have yet.
    2. *Precommit* for ``g(prevotes_r)`` once it exists, descends from
       ``E_{r-1}``, and either no child of it can still reach a prevote
       supermajority or ``precommit_timeout`` has passed since the round began.
    3. Any block with ``t`` precommits *for exactly it* is finalized and its
       justification built from them (the justification format holds precommits
       for one block; a GHOST-only supermajority spread over a block and its
       descendants is finalized in a later round instead; finalizing less is
       always safe).
    4. Move to round ``r + 1`` once round ``r`` is completable, after the
       validator precommitted (or gave up waiting to), and when there is
       something to finalize, another validator already moved on, or the idle
       interval passed. Rounds never go back.

    ``E_{r-1}`` is the estimate of round ``r - 1`` taken at a moment it was
    completable (round 1 of a set uses the block that enacted the set).

    :func:`evaluate` computes what steps 2 to 4 look at (:class:`RoundState`);
    the gadget takes the steps (:mod:`node.consensus.finality.gadget`), and step
    3's justification is built by :mod:`node.consensus.finality.justifications`.

Why this is safe (sketch of the paper's argument)
    Suppose B is final in round r: t precommits are for B or descendants, so
    at least ``t - f >= f + 1`` honest validators precommitted ``g_u >= B``, each
    having seen a prevote supermajority for descendants of B. Any validator v
    that sees round r completable has its own ``g_v`` comparable with B (two
    prevote supermajorities share an honest validator, who prevotes once). ``g_v``
    cannot be below B: then the child of ``g_v`` towards B would still be
    possible (it really has t precommits) and the round would not be completable
    for v. So ``g_v >= B`` and, B being possible, ``E_{r,v} >= B``. In round r+1
    every honest validator precommits only descendants of its ``E_{r,v}``, hence of
    B; a supermajority needs an honest precommit, so whatever is final in r+1 (and,
    by induction, later) descends from B. Within one round two conflicting
    supermajorities would need ``f + 1`` equivocators. What is load-bearing is that
    an honest validator never signs two different votes in one phase of a round,
    precommits only ``g >= E_{r-1}``, and takes ``E`` only from a completable view;
    timers and the prevote choice only affect liveness.

    Votes for blocks this node does not have are kept and counted once the
    block is imported; until then the voter counts as not having voted, which
    only overestimates what is "possible" (safe: a higher estimate, later
    completion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.consensus.finality.sets import VoterSet
from node.consensus.finality.votes import (
    Ancestry,
    BlockRef,
    PhaseVotes,
    Tally,
    ghost_of,
    still_possible,
)
from runtime.block import Justification
from runtime.finality_types import Phase

__all__ = ["Round", "RoundState", "evaluate"]


class Round:
    """One round of the current set: its prevotes and precommits as this node has them, and
    its :class:`RoundState`, cached under ``state_key`` until a vote or the chain changes."""

    __slots__ = ("number", "prevotes", "precommits", "started_at", "version", "state",
                 "state_key")

    def __init__(self, number: int) -> None:
        self.number = number
        self.prevotes = PhaseVotes()
        self.precommits = PhaseVotes()
        self.started_at: float | None = None  # when this node entered the round
        self.version = 0  # bumped on every vote added
        self.state: RoundState | None = None
        self.state_key: tuple[Any, ...] | None = None

    def phase(self, phase: Phase) -> PhaseVotes:
        return self.prevotes if phase is Phase.PREVOTE else self.precommits

    def voters(self) -> int:
        return len(set(self.prevotes.first) | set(self.precommits.first))


@dataclass(frozen=True)
class RoundState:
    """What a round's votes make of it at one moment (see the module docstring)."""

    prevote_ghost: BlockRef | None
    prevote_stable: bool  # no child of the prevote GHOST can still reach a supermajority
    estimate: BlockRef | None
    completable: bool
    unknown_prevotes: int
    final: Justification | None  # t precommits for exactly one block above the finalized


def evaluate(prevotes: Tally, precommits: Tally, voter_set: VoterSet, base: BlockRef,
             ancestry: Ancestry, final: Justification | None) -> RoundState:
    """A round's state from its prevotes' and precommits' tallies over the block tree above
    ``base`` (the finalized block); ``final`` is the block its precommits finalize, if any."""
    n = len(voter_set.authorities)
    t = voter_set.threshold
    ghost = ghost_of(prevotes, t, base)
    stable = False
    estimate: BlockRef | None = None
    completable = False
    if ghost is not None:
        possible_prevote = still_possible(prevotes, n, t)
        stable = not any(possible_prevote(c) for c in prevotes.children.get(ghost[0], ()))
        if precommits.voted < t:
            estimate = ghost
        else:
            possible = still_possible(precommits, n, t)
            path = ancestry(*ghost) or ()
            for offset, block_hash in enumerate(path):
                if possible(block_hash):
                    estimate = (block_hash, ghost[1] - offset)
                    break
            if estimate is not None:
                completable = estimate != ghost or not any(
                    possible(c) for c in precommits.children.get(ghost[0], ()))
    return RoundState(ghost, stable, estimate, completable, prevotes.unknown, final)
