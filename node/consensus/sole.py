"""Finality on a chain with one authority: its own precommit is a whole justification.

The finality gadget (:mod:`node.consensus.finality`) needs more than two thirds of the
authorities; with one, the author finalizes each block it imports as the best block at
once, signing a one-vote justification that is stored with the block (and so travels
with it when the block is gossiped or synced).
"""

from __future__ import annotations

from node.core import NodeCore
from runtime.block import Header, Justification, sign_precommit
from runtime.crypto import Keypair
from runtime.modules import validators


class SoleAuthorityFinality:
    """Finalizes ``core``'s best block when ``key`` is the chain's only authority."""

    def __init__(self, core: NodeCore, key: Keypair) -> None:
        self.core = core
        self.key = key

    def on_block_imported(self, header: Header) -> None:
        core, key = self.core, self.key
        # Cheap checks first: this runs after every import, and reading the state of a
        # block that is not the best one goes through the trie.
        if header.hash != core.best.hash:
            return
        if validators.authorities.get(core.store.best_state()) != (key.public,):
            return
        vote = sign_precommit(key, header.number, 0, header)
        core.apply_justification(Justification(header.number, 0, header.hash, header.number,
                                               (vote,)))


__all__ = ["SoleAuthorityFinality"]
