"""Authority sets: who votes, from which block, and where a set's finality ends.

Authority sets
    The voters are the authorities in the state of the block that enacted the
    set (set 0: genesis). A change scheduled by the runtime's validators module
    is enacted at a block X; the current set votes on blocks up to X and no
    further (prevote targets, precommit targets and estimates are cut back to X),
    so every justification verifies against the authorities of its block's
    parent. When a finalized block enacts a change, ``set_id`` goes up by one and
    rounds restart at 1 with the new authorities. A validator outside the set
    follows the votes without voting (an observer).

The gadget (:mod:`node.consensus.finality.gadget`) follows the finalized chain
with :func:`first_change` (``FinalityGadget._sync_set``) and cuts its targets
back with it (``FinalityGadget._limit``); after a restart it resumes the set of
its vote record (:func:`initial_set`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.block import finality_threshold
from runtime.finality_types import VoterRecord
from runtime.modules import validators

if TYPE_CHECKING:
    from node.chain.store import ChainStore

__all__ = ["VoterSet", "first_change", "initial_set"]


@dataclass(frozen=True)
class VoterSet:
    set_id: int
    authorities: tuple[bytes, ...]
    start_hash: bytes  # the finalized block that enacted this set (genesis for set 0)
    start_number: int

    @property
    def threshold(self) -> int:
        return finality_threshold(len(self.authorities))


def first_change(store: ChainStore, block_at: Callable[[int], bytes | None], low: int,
                 high: int) -> int | None:
    """The number of the first block in (low, high] that enacts an authority-set change.

    ``block_at`` names the block at a number on the chain looked at. A change
    enacted at ``e`` is pending in the states of the AUTHORITY_CHANGE_DELAY
    blocks before it, so sampling every AUTHORITY_CHANGE_DELAY blocks finds it.
    """
    number = low
    while number < high:
        block_hash = block_at(number)
        if block_hash is None:
            return None
        change = validators.pending_change.get(store.state_at(block_hash))
        if change is not None:
            return change.effective_at if change.effective_at <= high else None
        number += validators.AUTHORITY_CHANGE_DELAY
    return None


def initial_set(store: ChainStore, record: VoterRecord | None) -> VoterSet:
    """The set to start with: the vote record's, if its start block is finalized and on the
    best chain, else set 0 from genesis (later sets are found by following the chain)."""
    finalized = store.finalized_header.number
    if (record is not None and record.set_start_number <= finalized
            and store.hash_at(record.set_start_number) == record.set_start_hash):
        start_hash, start_number, set_id = (record.set_start_hash, record.set_start_number,
                                            record.set_id)
    else:
        genesis = store.hash_at(0)
        assert genesis is not None
        start_hash, start_number, set_id = genesis, 0, 0
    authorities = validators.authorities.get(store.state_at(start_hash))
    return VoterSet(set_id, authorities, start_hash, start_number)
