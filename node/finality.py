"""Finality: a GRANDPA-style BFT gadget run by every validator.

Authorities vote in numbered *rounds* of an *authority set*; a block that gets
precommits from at least ``finality_threshold(n) = n - floor((n-1)/3)`` of the
``n`` authorities is final, and those precommits are its
:class:`~runtime.block.Justification` (stored with the block through
:meth:`Node.apply_justification`). Two conflicting blocks are never both final
as long as fewer than a third of the authorities are faulty.

Votes
    A vote is a :class:`runtime.finality_types.SignedVote`: a phase (prevote or
    precommit), the round, the set id and a block (hash and number), signed by
    an authority (see :mod:`runtime.finality_types` for the signed bytes). A vote
    for a block counts for all its ancestors (GHOST). Writing ``t`` for the
    threshold and ``f = n - t`` for the faults tolerated:

    * *supermajority for B*: votes for B or its descendants from at least ``t``
      authorities; an authority that signed two different votes in one phase of
      a round (an *equivocator*) counts for every block.
    * ``g(V)``: the GHOST of a vote set: the highest block with a supermajority.
    * *possible for B* (precommits C): B could still get a supermajority once
      every authority has voted, counting authorities not yet seen as voting for
      B and up to ``f`` further equivocations among those that voted elsewhere.
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

Never vote twice
    Before a vote is gossiped it is written with its round and set to
    ``<base path>/finality/votes`` (write, fsync, rename, fsync the directory).
    On restart the record is reloaded: the validator resumes in that round with
    the same votes, never signs another vote of a phase it already voted in, and
    never votes in an older round. The record also keeps ``E_{r-1}`` (a local view,
    any completable-time estimate is safe to use), so even a whole network that
    restarts at once can precommit again; without it (an old record) a validator
    prevotes but precommits only after it has seen round ``r - 1`` (or a later
    round) completable from gossiped votes. It keeps the validator's own votes
    of round ``r - 1`` as well, and re-sends them with those of round ``r``:
    validators that restarted while still in ``r - 1`` lost them, and without
    them that round may never become completable for them.

Authority sets
    The voters are the authorities in the state of the block that enacted the
    set (set 0: genesis). A change scheduled by the runtime's validators module
    is enacted at a block X; the current set votes on blocks up to X and no
    further (prevote targets, precommit targets and estimates are cut back to X),
    so every justification verifies against the authorities of its block's
    parent. When a finalized block enacts a change, ``set_id`` goes up by one and
    rounds restart at 1 with the new authorities. A validator outside the set
    follows the votes without voting (an observer).

Gossip
    One :class:`~runtime.finality_types.VoteMessage` carries up to 20 votes (and
    optionally the sender's latest justification as a *commit*), so a validator
    sends about two messages a round. While a round makes no progress, every
    validator re-sends the votes it holds for the current and the previous
    round (and its latest commit) every ``rebroadcast_interval``: that is how a
    validator that restarted or reconnected catches up, and why a stalled round
    resumes once enough validators are back.

Timing (``S`` = the slot duration)
    prevote_delay S/8, precommit_timeout S/2, a new round at most every S/2,
    an idle round every 4 S, rebroadcast every S while stalled.

API
    ``FinalityGadget(node, key, publish=...)``; run :meth:`FinalityGadget.run` in
    the node's nursery; hand every gossiped vote message to
    :meth:`FinalityGadget.on_vote_message` (it returns a :class:`VoteVerdict`
    whose ``penalize`` says whether the sender sent something invalid); the node
    calls :meth:`FinalityGadget.on_block_imported` and
    :meth:`FinalityGadget.on_finalized`. With :class:`p2p.network.Network`::

        node.finality.publish = network.publish_vote
        network.vote_handler = node.finality.on_vote        # False: penalize the peer
        network.vote_validator = node.finality.check_vote   # before forwarding
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from node.logs import short_hash
from runtime import codec
from runtime.block import (
    MAX_JUSTIFICATION_SIGNATURES,
    InvalidJustification,
    Justification,
    finality_threshold,
    precommit_message,
    verify_justification,
)
from runtime.crypto import Keypair, verify
from runtime.finality_types import (
    MAX_VOTES_PER_MESSAGE,
    BlockId,
    Phase,
    SignedVote,
    VoteMessage,
    VoterRecord,
    decode_vote_message,
    encode_vote_message,
    sign_vote,
)
from runtime.modules import validators

if TYPE_CHECKING:
    from node.service import Node
    from node.storage import ChainStore

log = logging.getLogger("opus.finality")

VOTES_DIR = "finality"
VOTES_FILE = "votes"
MAX_TRACKED_FUTURE_ROUNDS = 8
MAX_PENDING_COMMITS = 16
MAX_EQUIVOCATION_RECORDS = 1024
MAX_PATH_CACHE = 1024
#: Keep ordinary vote messages under py-libp2p-friendly sizes (p2p's per-item limit is 4 KiB).
SOFT_MESSAGE_LIMIT = 4096

BlockRef = tuple[bytes, int]  # (hash, number)
Publish = Callable[[bytes], Awaitable[None]]


async def _drop(_data: bytes) -> None:
    """The publish function until the network sets one."""


# ---------------------------------------------------------------------------
# Results and settings


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


@dataclass(frozen=True)
class Timing:
    """The gadget's timers, in seconds."""

    tick: float
    prevote_delay: float
    precommit_timeout: float
    min_round_interval: float
    idle_round_interval: float
    rebroadcast_interval: float

    @classmethod
    def for_slot(cls, slot_ms: int) -> Timing:
        s = max(slot_ms, 1) / 1000
        return cls(tick=max(0.005, s / 20), prevote_delay=s / 8, precommit_timeout=s / 2,
                   min_round_interval=s / 2, idle_round_interval=4 * s, rebroadcast_interval=s)


@dataclass(frozen=True)
class VoterSet:
    set_id: int
    authorities: tuple[bytes, ...]
    start_hash: bytes  # the finalized block that enacted this set (genesis for set 0)
    start_number: int

    @property
    def threshold(self) -> int:
        return finality_threshold(len(self.authorities))


# ---------------------------------------------------------------------------
# Vote bookkeeping


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


class Round:
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


@dataclass(frozen=True)
class RoundState:
    prevote_ghost: BlockRef | None
    prevote_stable: bool  # no child of the prevote GHOST can still reach a supermajority
    estimate: BlockRef | None
    completable: bool
    unknown_prevotes: int
    final: Justification | None  # t precommits for exactly one block above the finalized


def _check_commit_signatures(justification: Justification,
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


# ---------------------------------------------------------------------------
# The gadget


class FinalityGadget:
    """The finality voter (or observer) of one node; see the module docstring."""

    def __init__(self, node: Node, key: Keypair | None, publish: Publish | None = None, *,
                 path: Path | None = None, timing: Timing | None = None) -> None:
        self.node = node
        self.key = key
        self.publish: Publish = publish or _drop
        self.dir = path if path is not None else Path(node.config.base_path) / VOTES_DIR
        self._timing = timing
        self.rounds: dict[int, Round] = {}
        self.round_number = 1
        self.prev_estimate: BlockRef | None = None
        self.last_commit: Justification | None = None
        self.errors = 0
        self.finalized_by_rounds = 0
        self.equivocators: list[dict[str, Any]] = []
        self._commit_to_send: Justification | None = None
        self._pending_commits: dict[bytes, Justification] = {}
        self._failed: set[tuple[bytes, int, int]] = set()
        self._outbox: list[SignedVote] = []
        self._paths: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}  # hash -> (number, path)
        self._limits: dict[bytes, BlockRef] = {}
        self._base: BlockRef = (b"", -1)
        self._chain_version = 0
        self._scanned_to = 0
        self._last_progress = 0.0
        self._last_sent = 0.0
        self._resend = False
        self._wake = trio.Event()
        self.record = self._read_record()
        self._saved_record = self.record
        self.voter_set = self._initial_set()
        self._sync_set(force_reset=True)

    # ------------------------------------------------------------------ public API

    @property
    def store(self) -> ChainStore:
        return self.node.store

    @property
    def timing(self) -> Timing:
        if self._timing is None:
            self._timing = Timing.for_slot(self.node.slot_duration)
        return self._timing

    @property
    def is_voter(self) -> bool:
        return self.key is not None and self.key.public in self.voter_set.authorities

    @property
    def set_id(self) -> int:
        return self.voter_set.set_id

    def on_block_imported(self, header: Any = None) -> None:
        """A block was imported: votes waiting for it can be counted now."""
        self._chain_version += 1
        self._wake.set()

    def on_finalized(self, header: Any = None) -> None:
        """The node finalized a block (by this gadget or a justification from elsewhere)."""
        self._chain_version += 1
        self._wake.set()

    def status(self) -> dict[str, Any]:
        current = self.rounds.get(self.round_number)
        voted = self._our_votes(self.round_number)
        state = current.state if current is not None else None
        return {
            "setId": self.voter_set.set_id,
            "authorities": len(self.voter_set.authorities),
            "threshold": self.voter_set.threshold,
            "round": self.round_number,
            "voter": self.is_voter,
            "prevoted": Phase.PREVOTE in voted,
            "precommitted": Phase.PRECOMMIT in voted,
            "completable": bool(state and state.completable),
            "finalizedByRounds": self.finalized_by_rounds,
        }

    def validate_message(self, data: bytes) -> bool:
        """A side-effect-free check for a gossip validator: decodes, and every vote of the
        current set is signed by one of its authorities (votes of other sets pass)."""
        try:
            message = decode_vote_message(data)
        except codec.DecodeError:
            return False
        authorities = self.voter_set.authorities
        for vote in message.votes:
            if vote.set_id != self.voter_set.set_id:
                continue
            if vote.authority not in authorities or not vote.signature_valid():
                return False
        return True

    async def on_vote_message(self, data: bytes, origin: str | None = None) -> VoteVerdict:
        """Take in one gossiped vote message; the verdict says whether to penalize ``origin``."""
        verdict = VoteVerdict()
        try:
            message = decode_vote_message(data)
        except codec.DecodeError as e:
            verdict._bad(f"undecodable: {e}")
            return verdict
        for vote in message.votes:
            self._import_vote(vote, verdict)
        if message.commit is not None:
            self._import_commit(message.commit, verdict)
        if verdict.penalize:
            log.debug("Bad finality message from %s: %s", origin, "; ".join(verdict.reasons))
        if verdict.accepted:
            self._wake.set()
        return verdict

    # The p2p.network.Network hooks: `vote_handler` (False: penalize the peer) and
    # `vote_validator` (run before a gossiped vote batch is forwarded).

    async def on_vote(self, data: bytes, origin: str | None = None) -> bool:
        return not (await self.on_vote_message(data, origin)).penalize

    def check_vote(self, data: bytes) -> bool:
        return self.validate_message(data)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Vote and finalize until cancelled."""
        now = trio.current_time()
        self._last_progress = now
        current = self._round(self.round_number)
        if current is not None and current.started_at is None:
            current.started_at = now
        self._resend = bool(self._our_votes(self.round_number))
        log.info("🗳️ Finality: set %d, %d authorities, round %d%s", self.voter_set.set_id,
                 len(self.voter_set.authorities), self.round_number,
                 "" if self.is_voter else " (observer)")
        task_status.started()
        while True:
            self._wake = trio.Event()
            try:
                await self.step()
            except trio.Cancelled:
                raise
            except Exception:  # keep the node running; the error is logged and counted
                self.errors += 1
                log.exception("Finality step failed")
            with trio.move_on_after(self.timing.tick):
                await self._wake.wait()

    # ------------------------------------------------------------------ one step

    async def step(self) -> None:
        """Everything the gadget does at one moment (the run loop calls this on every
        wake-up and tick)."""
        now = trio.current_time()
        self._refresh_base()
        await self._apply_pending_commits()
        final = self._best_final()
        if final is not None:
            await self._finalize(final, now)
            self._refresh_base()
        self._catch_up(now)
        if self.is_voter:
            self._maybe_prevote(now)
            self._maybe_precommit(now)
        self._maybe_advance(now)
        self._maybe_rebroadcast(now)
        await self._flush(now)

    # ------------------------------------------------------------------ chain helpers

    def _refresh_base(self) -> None:
        store = self.store
        base = (store.finalized_hash, store.finalized_header.number)
        if base != self._base:
            self._base = base
            self._paths.clear()
            self._limits.clear()
            self._chain_version += 1
            justification = store.justification(base[0])
            if justification is not None and (self.last_commit is None
                                              or self.last_commit.block_hash != base[0]):
                self.last_commit = justification
                # Pass it on, but not while catching up: a syncing node finalizes block after
                # block from the justifications it downloads, and one commit message for each
                # flooded its peers (full outbound gossip queues, stalled sync streams).
                if not self.node.is_syncing():
                    self._commit_to_send = justification
            self._sync_set()

    def _ancestry(self, block_hash: bytes, number: int) -> tuple[bytes, ...] | None:
        """The hashes from the block down to the base (finalized) block; () if the block is
        known but not on the base's chain; None if the block is unknown (or the number lies)."""
        cached = self._paths.get(block_hash)
        if cached is not None:
            # A signed vote may pair a real hash with a false number: never count that.
            return cached[1] if cached[0] == number else None
        store = self.store
        header = store.header(block_hash)
        if header is None or header.number != number:
            return None
        base_hash, base_number = self._base
        result: tuple[bytes, ...] = ()
        if number >= base_number:
            hashes = [block_hash]
            while True:
                if header.number == base_number:
                    result = tuple(hashes) if hashes[-1] == base_hash else ()
                    break
                parent = header.parent_hash
                known = self._paths.get(parent)
                if known is not None:
                    result = tuple(hashes) + known[1] if known[1] else ()
                    break
                parent_header = store.header(parent)
                if parent_header is None:
                    break
                hashes.append(parent)
                header = parent_header
        if len(self._paths) >= MAX_PATH_CACHE:
            self._paths.clear()
        self._paths[block_hash] = (number, result)
        return result

    def _first_change(self, block_at: Callable[[int], bytes | None], low: int,
                      high: int) -> int | None:
        """The number of the first block in (low, high] that enacts an authority-set change.

        A change enacted at ``e`` is pending in the states of the AUTHORITY_CHANGE_DELAY
        blocks before it, so sampling every AUTHORITY_CHANGE_DELAY blocks finds it.
        """
        number = low
        while number < high:
            block_hash = block_at(number)
            if block_hash is None:
                return None
            change = validators.pending_change.get(self.store.state_at(block_hash))
            if change is not None:
                return change.effective_at if change.effective_at <= high else None
            number += validators.AUTHORITY_CHANGE_DELAY
        return None

    def _limit(self, ref: BlockRef) -> BlockRef:
        """``ref`` cut back to the last block the current set may finalize on its chain:
        the block that enacts the next authority-set change, if ``ref`` is past it."""
        block_hash, number = ref
        cached = self._limits.get(block_hash)
        if cached is not None:
            return cached
        path = self._ancestry(block_hash, number)
        if not path:
            return ref
        base_number = self._base[1]

        def block_at(n: int) -> bytes | None:
            return path[number - n]

        enacted = self._first_change(block_at, base_number, number)
        result = ref if enacted is None else (path[number - enacted], enacted)
        self._limits[block_hash] = result
        return result

    def _is_ancestor(self, ancestor: BlockRef, descendant: BlockRef) -> bool:
        return ancestor[0] == descendant[0] or self.store.is_ancestor(ancestor[0], descendant[0])

    # ------------------------------------------------------------------ authority sets

    def _initial_set(self) -> VoterSet:
        store = self.store
        record = self.record
        finalized = store.finalized_header.number
        if (record is not None and record.set_start_number <= finalized
                and store.hash_at(record.set_start_number) == record.set_start_hash):
            start_hash, start_number, set_id = (record.set_start_hash, record.set_start_number,
                                                record.set_id)
        else:
            genesis = store.hash_at(0)
            assert genesis is not None
            start_hash, start_number, set_id = genesis, 0, 0
        self._scanned_to = start_number
        authorities = validators.authorities.get(store.state_at(start_hash))
        return VoterSet(set_id, authorities, start_hash, start_number)

    def _sync_set(self, force_reset: bool = False) -> None:
        """Follow the finalized chain: each finalized block that enacts a change starts a set."""
        store = self.store
        finalized = store.finalized_header.number
        voter_set = self.voter_set
        changed = False
        while self._scanned_to < finalized:
            enacted = self._first_change(store.hash_at, self._scanned_to, finalized)
            if enacted is None:
                self._scanned_to = finalized
                break
            block_hash = store.hash_at(enacted)
            assert block_hash is not None
            authorities = validators.authorities.get(store.state_at(block_hash))
            voter_set = VoterSet(voter_set.set_id + 1, authorities, block_hash, enacted)
            self._scanned_to = enacted
            changed = True
        if changed:
            self.voter_set = voter_set
            log.info("🔁 Authority set %d: %d authorities from #%d (%s)", voter_set.set_id,
                     len(voter_set.authorities), voter_set.start_number,
                     short_hash(voter_set.start_hash))
        if changed or force_reset:
            self._enter_set()

    def _enter_set(self) -> None:
        """Start the current set's rounds (resuming the recorded round after a restart)."""
        voter_set = self.voter_set
        self.rounds = {}
        self._outbox = []
        self._pending_commits = {
            h: j for h, j in self._pending_commits.items() if j.set_id >= voter_set.set_id
        }
        record = self.record
        start = (voter_set.start_hash, voter_set.start_number)
        if record is not None and record.set_id == voter_set.set_id and record.round >= 1:
            self.round_number = record.round
            recorded = record.prev_estimate
            self.prev_estimate = start if record.round == 1 else (
                None if recorded is None else (recorded.block_hash, recorded.block_number))
            # Our own votes of the recorded round and the one before: the rebroadcast
            # re-sends them to validators still in those rounds that lost them.
            for number, votes in ((record.round - 1, record.prev_votes),
                                  (record.round, record.votes)):
                if number < 1 or not votes:
                    continue
                restored = self._new_round(number)
                for vote in votes:
                    restored.phase(vote.phase).add(vote)
                    restored.version += 1
            self._new_round(record.round)
        else:
            self.round_number = 1
            self.prev_estimate = start
            self._new_round(1)

    # ------------------------------------------------------------------ rounds

    @staticmethod
    def _started(rnd: Round, now: float) -> float:
        if rnd.started_at is None:
            rnd.started_at = now
        return rnd.started_at

    def _round(self, number: int) -> Round | None:
        return self.rounds.get(number)

    def _new_round(self, number: int) -> Round:
        found = self.rounds.get(number)
        if found is None:
            found = self.rounds[number] = Round(number)
        return found

    def _enter_round(self, number: int, estimate: BlockRef | None, now: float,
                     why: str) -> None:
        self.round_number = number
        self.prev_estimate = None if estimate is None else self._limit(estimate)
        entered = self._new_round(number)
        entered.started_at = now
        self._last_progress = now
        for old in [r for r in self.rounds if r < number - 1]:
            del self.rounds[old]
        log.debug("Round %d (set %d) %s; previous estimate #%s", number,
                  self.voter_set.set_id, why,
                  "?" if self.prev_estimate is None else self.prev_estimate[1])

    def _state(self, rnd: Round) -> RoundState:
        key = (rnd.version, self._chain_version, self._base)
        if rnd.state is not None and rnd.state_key == key and not (
                rnd.state.unknown_prevotes or self._has_unknown(rnd.precommits)):
            return rnd.state
        rnd.state = self._evaluate(rnd)
        rnd.state_key = key
        return rnd.state

    def _has_unknown(self, votes: PhaseVotes) -> bool:
        return any(self._ancestry(v.block_hash, v.block_number) is None
                   for v in votes.first.values())

    def _tally(self, votes: PhaseVotes) -> Tally:
        weights: dict[bytes, int] = {}
        children: dict[bytes, set[bytes]] = {}
        numbers: dict[bytes, int] = {}
        voted = unknown = 0
        equivocators = votes.second
        for authority, vote in votes.first.items():
            if authority in equivocators:
                continue
            path = self._ancestry(vote.block_hash, vote.block_number)
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

    def _possible(self, tally: Tally) -> Callable[[bytes], bool]:
        """Whether a block could still get a supermajority in this phase (see the docstring)."""
        n = len(self.voter_set.authorities)
        t = self.voter_set.threshold
        additional = max(0, (n - t) - tally.equivocators)
        remaining = n - tally.voted

        def possible(block_hash: bytes) -> bool:
            support = tally.support(block_hash)
            more_equivocations = min(max(0, tally.voted - support), additional)
            return support + remaining + more_equivocations >= t

        return possible

    def _ghost(self, tally: Tally) -> BlockRef | None:
        t = self.voter_set.threshold
        base_hash, base_number = self._base
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

    def _evaluate(self, rnd: Round) -> RoundState:
        t = self.voter_set.threshold
        prevotes = self._tally(rnd.prevotes)
        precommits = self._tally(rnd.precommits)
        ghost = self._ghost(prevotes)
        stable = False
        estimate: BlockRef | None = None
        completable = False
        if ghost is not None:
            possible_prevote = self._possible(prevotes)
            stable = not any(possible_prevote(c) for c in prevotes.children.get(ghost[0], ()))
            if precommits.voted < t:
                estimate = ghost
            else:
                possible = self._possible(precommits)
                path = self._ancestry(*ghost) or ()
                for offset, block_hash in enumerate(path):
                    if possible(block_hash):
                        estimate = (block_hash, ghost[1] - offset)
                        break
                if estimate is not None:
                    completable = estimate != ghost or not any(
                        possible(c) for c in precommits.children.get(ghost[0], ()))
        return RoundState(ghost, stable, estimate, completable, prevotes.unknown,
                          self._exact_final(rnd))

    def _exact_final(self, rnd: Round) -> Justification | None:
        """A justification from t precommits for exactly one block above the finalized one."""
        t = self.voter_set.threshold
        by_block: dict[tuple[bytes, int], dict[bytes, SignedVote]] = {}
        for vote in rnd.precommits.all():
            by_block.setdefault((vote.block_hash, vote.block_number), {})[vote.authority] = vote
        best: tuple[int, bytes] | None = None
        for (block_hash, number), votes in by_block.items():
            if len(votes) < t or number <= self._base[1]:
                continue
            header = self.store.header(block_hash)
            if header is None or header.number != number:
                continue
            if best is None or (number, block_hash) > best:
                best = (number, block_hash)
        if best is None:
            return None
        number, block_hash = best
        votes = by_block[(block_hash, number)]
        precommits = tuple(votes[a].as_precommit() for a in sorted(votes))
        return Justification(rnd.number, self.voter_set.set_id, block_hash, number,
                             precommits[:MAX_JUSTIFICATION_SIGNATURES])

    def _best_final(self) -> Justification | None:
        best: Justification | None = None
        for number in sorted(self.rounds):
            final = self._state(self.rounds[number]).final
            if final is not None and (best is None or final.block_number > best.block_number):
                best = final
        return best

    # ------------------------------------------------------------------ voting

    def _our_votes(self, round_number: int) -> dict[Phase, SignedVote]:
        record = self.record
        if (record is None or record.set_id != self.voter_set.set_id
                or record.round != round_number):
            return {}
        return {vote.phase: vote for vote in record.votes}

    def _cast(self, phase: Phase, target: BlockRef) -> None:
        """Sign a vote of ``phase`` in the current round; it is sent after the record is saved."""
        assert self.key is not None
        voter_set, number = self.voter_set, self.round_number
        record = self.record
        votes: tuple[SignedVote, ...] = ()
        prev_votes: tuple[SignedVote, ...] = ()
        if record is not None:
            if (record.set_id, record.round) > (voter_set.set_id, number):
                return  # never vote in a round older than one we voted in
            if (record.set_id, record.round) == (voter_set.set_id, number):
                if any(v.phase is phase for v in record.votes):
                    return  # already voted in this phase of this round
                votes, prev_votes = record.votes, record.prev_votes
            elif (record.set_id, record.round) == (voter_set.set_id, number - 1):
                prev_votes = record.votes
        vote = sign_vote(self.key, phase, number, voter_set.set_id, target[0], target[1])
        estimate = None if self.prev_estimate is None else BlockId(*self.prev_estimate)
        self.record = VoterRecord(voter_set.set_id, voter_set.start_hash, voter_set.start_number,
                                  number, votes + (vote,), estimate, prev_votes)
        self._outbox.append(vote)
        log.debug("Round %d: %s #%d (%s)", number, phase.value, target[1], short_hash(target[0]))

    def _maybe_prevote(self, now: float) -> None:
        rnd = self._round(self.round_number)
        if rnd is None or Phase.PREVOTE in self._our_votes(rnd.number):
            return
        state = self._state(rnd)
        started = self._started(rnd, now)
        if state.unknown_prevotes and now - started < self.timing.prevote_delay:
            return  # others prevote blocks we are about to receive: give them a moment
        store = self.store
        best = store.best_header
        head: BlockRef = (best.hash, best.number)
        estimate = self.prev_estimate
        if estimate is not None and not self._is_ancestor(estimate, head):
            head = estimate
        self._cast(Phase.PREVOTE, self._limit(head))

    def _maybe_precommit(self, now: float) -> None:
        rnd = self._round(self.round_number)
        if rnd is None or self.prev_estimate is None:
            return
        ours = self._our_votes(rnd.number)
        if Phase.PRECOMMIT in ours or Phase.PREVOTE not in ours:
            return
        state = self._state(rnd)
        if state.prevote_ghost is None:
            return
        started = self._started(rnd, now)
        if not state.prevote_stable and now - started < self.timing.precommit_timeout:
            return
        target = self._limit(state.prevote_ghost)
        if not self._is_ancestor(self.prev_estimate, target):
            return
        self._cast(Phase.PRECOMMIT, target)

    def _catch_up(self, now: float) -> None:
        """Jump to r + 1 when a later round r is completable here; keep E_{r-1} fresh."""
        for number in sorted(self.rounds, reverse=True):
            if number <= self.round_number:
                break
            state = self._state(self.rounds[number])
            if state.completable:
                self._enter_round(number + 1, state.estimate, now, "caught up")
                return
        previous = self._round(self.round_number - 1)
        if previous is not None:
            state = self._state(previous)
            if state.completable and state.estimate is not None:
                self.prev_estimate = self._limit(state.estimate)

    def _maybe_advance(self, now: float) -> None:
        rnd = self._round(self.round_number)
        if rnd is None:
            return
        state = self._state(rnd)
        if not state.completable:
            return
        elapsed = now - self._started(rnd, now)
        timing = self.timing
        if self.is_voter and Phase.PRECOMMIT not in self._our_votes(rnd.number) and (
                self.prev_estimate is not None and elapsed < 2 * timing.precommit_timeout):
            return  # let our precommit go out first
        if elapsed < timing.min_round_interval:
            return
        store = self.store
        something_new = store.best_header.number > store.finalized_header.number
        others_ahead = any(number > rnd.number and r.voters() for number, r in self.rounds.items())
        if something_new or others_ahead or elapsed >= timing.idle_round_interval:
            self._enter_round(rnd.number + 1, state.estimate, now, "started")

    # ------------------------------------------------------------------ finality

    async def _finalize(self, justification: Justification, now: float) -> None:
        node = self.node
        store = self.store
        if justification.block_number <= store.finalized_header.number:
            return
        attempt = (justification.block_hash, justification.round, self._chain_version)
        if attempt in self._failed:
            return  # it did not apply (and nothing changed since): do not verify it again
        async with node.import_lock:
            # The node verifies it and, if the block is on another fork than the best
            # block, makes the justified chain the best chain.
            done = node.apply_justification(justification)
        if not done:
            if len(self._failed) > 64:
                self._failed.clear()
            self._failed.add(attempt)
            log.debug("Could not finalize #%d (%s) with the round's precommits",
                        justification.block_number, short_hash(justification.block_hash))
        else:
            self.finalized_by_rounds += 1
            self.last_commit = self._commit_to_send = justification
            self._last_progress = now
            log.info("🔒 Finalized #%d (%s) in round %d of set %d", justification.block_number,
                     short_hash(justification.block_hash), justification.round,
                     justification.set_id)

    def _keep_commit(self, justification: Justification) -> None:
        pending = self._pending_commits
        if justification.block_hash not in pending and len(pending) >= MAX_PENDING_COMMITS:
            lowest = min(pending.values(), key=lambda j: j.block_number)
            if lowest.block_number >= justification.block_number:
                return
            del pending[lowest.block_hash]
        pending[justification.block_hash] = justification

    async def _apply_pending_commits(self) -> None:
        store = self.store
        for block_hash, justification in list(self._pending_commits.items()):
            header = store.header(block_hash)
            if header is None:
                continue
            del self._pending_commits[block_hash]
            if header.number <= store.finalized_header.number:
                continue
            async with self.node.import_lock:
                done = self.node.apply_justification(justification)
            if done:
                self.last_commit = justification
                self._last_progress = trio.current_time()
                log.info("🔒 Finalized #%d (%s) by a commit of round %d, set %d",
                         header.number, short_hash(block_hash), justification.round,
                         justification.set_id)

    # ------------------------------------------------------------------ incoming

    def _import_vote(self, vote: SignedVote, verdict: VoteVerdict) -> None:
        voter_set = self.voter_set
        if vote.set_id != voter_set.set_id:
            verdict.ignored += 1
            return
        if vote.authority not in voter_set.authorities:
            verdict._bad("vote from a non-authority")
            return
        if vote.round < self.round_number - 1:
            verdict.ignored += 1
            return
        rnd = self._round(vote.round)
        if rnd is not None and rnd.phase(vote.phase).knows(vote):
            verdict.duplicates += 1
            return
        if not vote.signature_valid():
            verdict._bad("bad vote signature")
            return
        if rnd is None:
            rnd = self._track_round(vote.round)
            if rnd is None:
                verdict.ignored += 1
                return
        outcome = rnd.phase(vote.phase).add(vote)
        if outcome == "duplicate":
            verdict.duplicates += 1
            return
        if outcome == "extra":
            verdict.ignored += 1
            return
        rnd.version += 1
        verdict.accepted += 1
        if outcome == "equivocation":
            verdict.equivocations += 1
            self._report_equivocation(rnd.phase(vote.phase).first[vote.authority], vote)

    def _track_round(self, number: int) -> Round | None:
        """A round to collect votes for; future rounds are bounded (fewest voters evicted)."""
        future = [r for r in self.rounds if r > self.round_number]
        if number > self.round_number and len(future) >= MAX_TRACKED_FUTURE_ROUNDS:
            victim = min(future, key=lambda r: (self.rounds[r].voters(), -r))
            if self.rounds[victim].voters() > 1:
                return None
            del self.rounds[victim]
        return self._new_round(number)

    def _report_equivocation(self, first: SignedVote, second: SignedVote) -> None:
        record = {
            "kind": f"finality-{first.phase.value}",
            "set_id": first.set_id,
            "round": first.round,
            "author": first.authority.hex(),
            "blocks": [first.block_hash.hex(), second.block_hash.hex()],
            "votes": [codec.encode(first).hex(), codec.encode(second).hex()],
        }
        self.equivocators.append(record)
        if len(self.node.equivocations) < MAX_EQUIVOCATION_RECORDS:
            self.node.equivocations.append(record)
        log.warning("⚠️ Equivocation: authority %s signed two %ss in round %d of set %d",
                    short_hash(first.authority), first.phase.value, first.round, first.set_id)

    def _import_commit(self, justification: Justification, verdict: VoteVerdict) -> None:
        store = self.store
        if justification.block_number <= store.finalized_header.number:
            verdict.duplicates += 1
            return
        if justification.block_hash in self._pending_commits:
            verdict.duplicates += 1
            return
        header = store.header(justification.block_hash)
        try:
            if header is not None:
                authorities = validators.authorities.get(store.state_at(header.parent_hash))
                verify_justification(justification, header, authorities)
            elif justification.set_id == self.voter_set.set_id:
                _check_commit_signatures(justification, self.voter_set.authorities)
        except InvalidJustification as e:
            verdict._bad(f"invalid commit: {e}")
            return
        self._keep_commit(justification)
        verdict.accepted += 1

    # ------------------------------------------------------------------ outgoing

    def _maybe_rebroadcast(self, now: float) -> None:
        interval = self.timing.rebroadcast_interval
        if not self._resend and (now - self._last_progress < interval
                                 or now - self._last_sent < interval):
            return
        self._resend = False
        self._last_sent = now
        votes: list[SignedVote] = []
        for number in (self.round_number - 1, self.round_number):
            rnd = self._round(number)
            if rnd is not None:
                votes.extend(rnd.prevotes.all())
                votes.extend(rnd.precommits.all())
        queued = set(self._outbox)
        self._outbox.extend(v for v in votes if v not in queued)
        if self.last_commit is not None:
            self._commit_to_send = self.last_commit

    async def _flush(self, now: float) -> None:
        outbox, self._outbox = self._outbox, []
        commit, self._commit_to_send = self._commit_to_send, None
        if not outbox and commit is None:
            return
        if self.record != self._saved_record:
            record = self.record
            assert record is not None
            try:
                await trio.to_thread.run_sync(self._write_record, codec.encode(record))
            except OSError as e:
                self.errors += 1
                log.error("Cannot save the finality vote record in %s (%s): not voting", self.dir,
                          e)
                self.record = self._saved_record
                return
            self._saved_record = record
            own = self._round(record.round)
            if record.set_id == self.voter_set.set_id and own is not None:
                for vote in record.votes:
                    if own.phase(vote.phase).add(vote) == "new":
                        own.version += 1
        self._last_sent = now
        for message in self._messages(outbox, commit):
            try:
                await self.publish(message)
            except Exception as e:  # the transport's trouble must not stop finality
                log.debug("Publishing finality votes failed: %s", e)
        self._wake.set()

    @staticmethod
    def _messages(votes: list[SignedVote], commit: Justification | None) -> Iterable[bytes]:
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

    # ------------------------------------------------------------------ the vote record

    @property
    def record_path(self) -> Path:
        return self.dir / VOTES_FILE

    def _read_record(self) -> VoterRecord | None:
        try:
            data = self.record_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            try:
                record: VoterRecord = codec.decode(data, VoterRecord)
            except codec.WrongFieldCount as e:
                # Written before ``prev_votes`` existed: six items, read as with none.
                try:
                    legacy = codec.unpack_trusted(data)
                except ValueError:
                    raise e from None
                if not isinstance(legacy, list) or len(legacy) != 6:
                    raise
                record = codec.decode(codec.pack([*legacy, []]), VoterRecord)
        except codec.DecodeError as e:
            # Refuse to guess: voting without knowing our past votes could equivocate.
            raise RuntimeError(f"the finality vote record {self.record_path} is corrupt ({e}); "
                               f"move it away only if this key has not voted elsewhere") from None
        return record

    def _write_record(self, data: bytes) -> None:
        """Write the encoded record durably: temp file, fsync, rename over, fsync the dir."""
        self.dir.mkdir(parents=True, exist_ok=True)
        temp = self.dir / (VOTES_FILE + ".tmp")
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.record_path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["FinalityGadget", "Timing", "VoteVerdict", "VoterSet"]
