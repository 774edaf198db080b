"""Wire types of the finality gadget: signed prevotes and precommits, the gossip message.

Every type here is canonical msgpack (see :mod:`runtime.codec`). The gadget's
protocol is described in :mod:`node.consensus.finality`; these are only its encodings.

What a vote signs
    ``domain + encode(VoteTarget(round, set_id, block_hash, block_number))``
    where the domain is ``opus/prevote/v1`` for a prevote and ``opus/precommit/v1``
    (:data:`runtime.block.VOTE_DOMAIN`) for a precommit, so a precommit is exactly
    a :class:`runtime.block.Precommit` of a :class:`runtime.block.Justification`
    and a prevote can never be mistaken for one.

:class:`SignedVote` (wire form)
    ``[phase, round, set_id, block_hash, block_number, authority, signature]``;
    ``phase`` is the string ``"prevote"`` or ``"precommit"``.

:class:`VoteMessage` (one gossip message, wire form ``[votes, commit]``)
    up to :data:`MAX_VOTES_PER_MESSAGE` votes (several votes travel in one message
    to stay under GossipSub's per-peer message rate) and optionally a *commit*: the
    justification of a block the sender finalized, so that nodes which missed the
    round's votes learn of the finality too. At most :data:`MAX_VOTE_MESSAGE_SIZE`
    bytes; a message of votes only stays under 4 KiB.

:class:`VoterRecord`
    node-local (not consensus, never gossiped): what a validator writes durably
    before sending a vote, so that after a restart it never signs a conflicting
    vote in a round it already voted in, and can re-send its votes of that round
    and the one before. Wire form ``[set_id, set_start_hash, set_start_number,
    round, votes, prev_estimate, prev_votes]``; a record written before
    ``prev_votes`` existed (six items) is read with none.
"""

from __future__ import annotations

import enum
from typing import Annotated

from runtime import codec
from runtime.block import Justification, Precommit, VoteTarget, precommit_message
from runtime.codec import U64, Bytes64, Struct, Tuple, frozen_dataclass
from runtime.crypto import Keypair, verify
from runtime.support import AccountId, Hash

PREVOTE_DOMAIN = b"opus/prevote/v1"
#: Votes in one gossip message: 20 worst-case votes encode to under 3.5 KiB.
MAX_VOTES_PER_MESSAGE = 20
#: One encoded VoteMessage (room for 20 votes and a justification of up to ~120 signatures).
MAX_VOTE_MESSAGE_SIZE = 16 * 1024


class Phase(enum.StrEnum):
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


def prevote_message(round_: int, set_id: int, block_hash: bytes, block_number: int) -> bytes:
    return PREVOTE_DOMAIN + codec.encode(VoteTarget(round_, set_id, block_hash, block_number))


def vote_message(phase: Phase, round_: int, set_id: int, block_hash: bytes,
                 block_number: int) -> bytes:
    """The bytes an authority signs for a vote of ``phase``."""
    if phase is Phase.PREVOTE:
        return prevote_message(round_, set_id, block_hash, block_number)
    return precommit_message(round_, set_id, block_hash, block_number)


@frozen_dataclass
class SignedVote(Struct):
    """One authority's prevote or precommit for a block in a round of an authority set."""

    phase: Phase
    round: U64
    set_id: U64
    block_hash: Hash
    block_number: U64
    authority: AccountId
    signature: Bytes64

    def signed_message(self) -> bytes:
        return vote_message(self.phase, self.round, self.set_id, self.block_hash,
                            self.block_number)

    def signature_valid(self) -> bool:
        return verify(self.authority, self.signed_message(), self.signature)

    def as_precommit(self) -> Precommit:
        """The justification entry of a precommit."""
        assert self.phase is Phase.PRECOMMIT
        return Precommit(self.authority, self.signature)


def sign_vote(key: Keypair, phase: Phase, round_: int, set_id: int, block_hash: bytes,
              block_number: int) -> SignedVote:
    signature = key.sign(vote_message(phase, round_, set_id, block_hash, block_number))
    return SignedVote(phase, round_, set_id, block_hash, block_number, key.public, signature)


@frozen_dataclass
class VoteMessage(Struct):
    """What one gossip message on the votes topic carries."""

    MAX_SIZE = MAX_VOTE_MESSAGE_SIZE

    votes: Annotated[tuple[SignedVote, ...], Tuple(MAX_VOTES_PER_MESSAGE)]
    commit: Justification | None = None


def encode_vote_message(message: VoteMessage) -> bytes:
    return codec.encode(message)


def decode_vote_message(data: bytes) -> VoteMessage:
    """Strictly decode a gossiped vote message (raises codec.DecodeError)."""
    return codec.decode(data, VoteMessage)  # type: ignore[no-any-return]


@frozen_dataclass
class BlockId(Struct):
    block_hash: Hash
    block_number: U64


@frozen_dataclass
class VoterRecord(Struct):
    """A validator's durable vote record: its authority set and its votes in its last round."""

    MAX_SIZE = 64 * 1024

    set_id: U64
    set_start_hash: Hash  # the finalized block that enacted the set (genesis for set 0)
    set_start_number: U64
    round: U64  # the last round this validator voted in (0: none yet)
    votes: Annotated[tuple[SignedVote, ...], Tuple(2)]  # its votes in that round
    #: The estimate of the round before, as seen when it was completable (lets a whole
    #: network that restarted at once precommit again without the lost rounds' votes).
    prev_estimate: BlockId | None = None
    #: Its votes in round ``round - 1``, if it voted there: re-sent after a restart, for
    #: validators that are still in that round and lost them (restarted themselves).
    prev_votes: Annotated[tuple[SignedVote, ...], Tuple(2)] = ()


# Build the codecs now: building one lazily is not thread-safe.
for _type in (BlockId, SignedVote, VoteMessage, VoterRecord):
    codec.codec_for(_type)

__all__ = ["BlockId", "MAX_VOTES_PER_MESSAGE", "MAX_VOTE_MESSAGE_SIZE", "PREVOTE_DOMAIN", "Phase",
           "SignedVote", "VoteMessage", "VoterRecord", "decode_vote_message",
           "encode_vote_message", "prevote_message", "sign_vote", "vote_message"]
