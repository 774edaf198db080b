"""Finality: a GRANDPA-style BFT gadget run by every validator.

Authorities vote in numbered *rounds* of an *authority set*; a block that gets
precommits from at least ``finality_threshold(n) = n - floor((n-1)/3)`` of the
``n`` authorities is final, and those precommits are its
:class:`~runtime.block.Justification` (stored with the block through
:meth:`NodeCore.apply_justification <node.core.NodeCore.apply_justification>`).
Two conflicting blocks are never both final as long as fewer than a third of the
authorities are faulty.

The gadget, by concern:

* :mod:`~node.consensus.finality.votes`: votes and their tallies (supermajority,
  GHOST, what is still possible);
* :mod:`~node.consensus.finality.rounds`: a round's votes and state (estimate,
  completable), the round's steps, and why they are safe;
* :mod:`~node.consensus.finality.justifications`: justifications built from
  precommits, and commits from peers checked and kept;
* :mod:`~node.consensus.finality.sets`: authority sets and where a set's
  finality ends;
* :mod:`~node.consensus.finality.record`: the vote record on disk (never vote
  twice);
* :mod:`~node.consensus.finality.gossip`: vote messages out, verdicts on
  messages in;
* :mod:`~node.consensus.finality.gadget`: :class:`FinalityGadget`, the driver
  that ties them together, and its :class:`Timing`.

API
    ``FinalityGadget(node, keys, publish=...)`` (``keys``: the node's keystore, None
    for an observer); run :meth:`FinalityGadget.run` in
    the node's nursery; hand every gossiped vote message to
    :meth:`FinalityGadget.on_vote_message` (it returns a :class:`VoteVerdict`
    whose ``penalize`` says whether the sender sent something invalid); the node
    calls :meth:`FinalityGadget.on_block_imported` and
    :meth:`FinalityGadget.on_finalized`. With :class:`p2p.network.Network`::

        node.finality.publish = network.publish_vote
        network.vote_handler = node.finality.on_vote        # False: penalize the peer
        network.vote_validator = node.finality.check_vote   # before forwarding
"""

from node.consensus.finality.gadget import FinalityGadget, Timing
from node.consensus.finality.gossip import VoteVerdict
from node.consensus.finality.sets import VoterSet

__all__ = ["FinalityGadget", "Timing", "VoteVerdict", "VoterSet"]
