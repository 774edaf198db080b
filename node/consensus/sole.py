"""Finality on a chain with one authority: its own precommit is a whole justification.

The finality gadget (:mod:`node.consensus.finality`) needs more than two thirds of the
authorities; with one, the author finalizes each block it imports as the best block at
once, signing a one-vote justification that is stored with the block (and so travels
with it when the block is gossiped or synced). It signs with the keystore's ``gran`` key
of that authority, looked up at each block (a key inserted at run time is used at once).
"""

from __future__ import annotations

from node.consensus.keys import KeySource, SigningKeys
from node.core import NodeCore
from node.keystore import GRAN
from runtime.block import Header, Justification, sign_precommit
from runtime.modules import validators


class SoleAuthorityFinality:
    """Finalizes ``core``'s best block when a key of ``keys`` is the chain's only authority."""

    def __init__(self, core: NodeCore, keys: KeySource) -> None:
        self.core = core
        self.keys = SigningKeys(keys, GRAN, "finalizing")

    def on_block_imported(self, header: Header) -> None:
        core = self.core
        # Cheap checks first: this runs after every import, and reading the state of a
        # block that is not the best one goes through the trie.
        if header.hash != core.best.hash:
            return
        authorities = validators.authorities.get(core.store.best_state())
        if len(authorities) != 1:
            return
        # A hook cannot wait: a sealed key is opened here, once (it is cached after).
        key = self.keys.find_now(authorities)
        if key is None:
            return
        vote = sign_precommit(key, header.number, 0, header)
        core.apply_justification(Justification(header.number, 0, header.hash, header.number,
                                               (vote,)))


__all__ = ["SoleAuthorityFinality"]
