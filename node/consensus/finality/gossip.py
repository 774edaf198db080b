"""Gossip of finality votes: what the gadget sends in a message, and its verdict on a
message it receives.

Gossip
    One :class:`~runtime.finality_types.VoteMessage` carries up to 20 votes (and
    optionally the sender's latest justification as a *commit*), so a validator
    sends about two messages a round. While a round makes no progress, every
    validator re-sends the votes it holds for the current and the previous
    round (and its latest commit) every ``rebroadcast_interval``: that is how a
    validator that restarted or reconnected catches up, and why a stalled round
    resumes once enough validators are back.

:func:`vote_messages` cuts the gadget's outgoing votes into messages; the
gadget's ``on_vote_message`` answers each incoming message with a
:class:`VoteVerdict`, whose ``penalize`` tells the network whether the peer sent
something invalid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.block import Justification
from runtime.finality_types import (
    MAX_VOTES_PER_MESSAGE,
    SignedVote,
    VoteMessage,
    encode_vote_message,
)

__all__ = ["SOFT_MESSAGE_LIMIT", "VoteVerdict", "vote_messages"]

#: Keep ordinary vote messages under py-libp2p-friendly sizes (p2p's per-item limit is 4 KiB).
SOFT_MESSAGE_LIMIT = 4096


@dataclass
class VoteVerdict:
    """What :meth:`FinalityGadget.on_vote_message` made of one gossip message."""

    accepted: int = 0  # new valid votes (or a new valid commit)
    duplicates: int = 0  # already known
    ignored: int = 0  # well-formed but not for us now (another set, an old round, …)
    bad: int = 0  # undecodable, forged signature, non-authority, invalid commit
    equivocations: int = 0  # valid votes that prove their signer equivocated
    reasons: list[str] = field(default_factory=list)

    @property
    def penalize(self) -> bool:
        """Whether the peer that sent the message should be penalized."""
        return self.bad > 0

    def _bad(self, reason: str) -> None:
        self.bad += 1
        if reason not in self.reasons:
            self.reasons.append(reason)


def vote_messages(votes: list[SignedVote], commit: Justification | None) -> Iterable[bytes]:
    """The encoded messages that carry ``votes`` (and ``commit``, in the first), in order."""
    chunks = [tuple(votes[i:i + MAX_VOTES_PER_MESSAGE])
              for i in range(0, len(votes), MAX_VOTES_PER_MESSAGE)] or [()]
    for index, chunk in enumerate(chunks):
        if index == 0 and commit is not None:
            data = encode_vote_message(VoteMessage(chunk, commit))
            if len(data) <= SOFT_MESSAGE_LIMIT or not chunk:
                yield data
                continue
            yield encode_vote_message(VoteMessage((), commit))
        yield encode_vote_message(VoteMessage(chunk, None))
