"""Justifications and commits: the proof that a block is final, built from a round's
precommits, checked when it comes from a peer, and kept until its block arrives.

A block that gets precommits from at least ``finality_threshold(n)`` of the
``n`` authorities is final, and those precommits are its
:class:`~runtime.block.Justification`: the format holds ``t`` precommits for one
block (step 3 of a round, :mod:`node.consensus.finality.rounds`), and
:func:`final_justification` builds it from a round's precommits. The node stores
it with the block (``NodeCore.apply_justification``, which verifies it with
:func:`runtime.block.verify_justification` against the authorities of the
block's parent).

A validator also gossips its latest justification as a *commit* (in a
:class:`~runtime.finality_types.VoteMessage`). A commit for a block this node
does not have yet is checked with :func:`check_commit_signatures` (there is no
header to compare) and kept, the highest :data:`MAX_PENDING_COMMITS` of them,
until the block is imported (:func:`keep_commit`).
"""

from __future__ import annotations

from collections.abc import Callable

from node.consensus.finality.sets import VoterSet
from node.consensus.finality.votes import PhaseVotes
from runtime.block import (
    MAX_JUSTIFICATION_SIGNATURES,
    Header,
    InvalidJustification,
    Justification,
    finality_threshold,
    precommit_message,
)
from runtime.crypto import verify
from runtime.finality_types import SignedVote

__all__ = ["MAX_PENDING_COMMITS", "check_commit_signatures", "final_justification",
           "keep_commit"]

MAX_PENDING_COMMITS = 16


def final_justification(round_number: int, precommits: PhaseVotes, voter_set: VoterSet,
                        base_number: int, header: Callable[[bytes], Header | None],
                        ) -> Justification | None:
    """A justification from t precommits for exactly one block above the finalized one
    (``base_number``), the highest such block; ``header`` reads a stored header."""
    t = voter_set.threshold
    by_block: dict[tuple[bytes, int], dict[bytes, SignedVote]] = {}
    for vote in precommits.all():
        by_block.setdefault((vote.block_hash, vote.block_number), {})[vote.authority] = vote
    best: tuple[int, bytes] | None = None
    for (block_hash, number), votes in by_block.items():
        if len(votes) < t or number <= base_number:
            continue
        found = header(block_hash)
        if found is None or found.number != number:
            continue
        if best is None or (number, block_hash) > best:
            best = (number, block_hash)
    if best is None:
        return None
    number, block_hash = best
    votes = by_block[(block_hash, number)]
    signed = tuple(votes[a].as_precommit() for a in sorted(votes))
    return Justification(round_number, voter_set.set_id, block_hash, number,
                         signed[:MAX_JUSTIFICATION_SIGNATURES])


def check_commit_signatures(justification: Justification,
                            authorities: tuple[bytes, ...]) -> None:
    """verify_justification's checks for a block we do not have yet (no header to compare)."""
    message = precommit_message(justification.round, justification.set_id,
                                justification.block_hash, justification.block_number)
    signers: set[bytes] = set()
    for vote in justification.precommits:
        if vote.authority not in authorities or vote.authority in signers:
            raise InvalidJustification("a precommit is by a non-authority or repeated")
        if not verify(vote.authority, message, vote.signature):
            raise InvalidJustification("a precommit signature is invalid")
        signers.add(vote.authority)
    if len(signers) < finality_threshold(len(authorities)):
        raise InvalidJustification("too few precommits")


def keep_commit(pending: dict[bytes, Justification], justification: Justification) -> None:
    """Keep a checked commit for a block not imported yet in ``pending`` (by block hash):
    at most MAX_PENDING_COMMITS, dropping the lowest block's."""
    if justification.block_hash not in pending and len(pending) >= MAX_PENDING_COMMITS:
        lowest = min(pending.values(), key=lambda j: j.block_number)
        if lowest.block_number >= justification.block_number:
            return
        del pending[lowest.block_hash]
    pending[justification.block_hash] = justification
