"""The finality gadget's driver: :class:`FinalityGadget`, one per node, voting (or, outside
the authority set, following the votes) round after round, and finalizing.

Each wake-up (a vote arrived, a block was imported or finalized) or tick, the
gadget takes one :meth:`~FinalityGadget.step`: it follows the finalized block
and the authority sets (:mod:`node.consensus.finality.sets`), applies commits
whose blocks arrived (:mod:`node.consensus.finality.justifications`), finalizes
what a round's precommits justify, and takes the steps of a round
(:mod:`node.consensus.finality.rounds`): step 1 is ``_maybe_prevote``, step 2
``_maybe_precommit``, step 3 ``_finalize`` and step 4 ``_maybe_advance`` (with
``_catch_up`` for rounds that other validators completed first). Votes are
counted by :mod:`node.consensus.finality.votes`; a vote is signed only once the
vote record says it may be (:mod:`node.consensus.finality.record`) and sent
after the record is saved (:mod:`node.consensus.finality.gossip`).

Timing (``S`` = the slot duration)
    prevote_delay S/8, precommit_timeout S/2, a new round at most every S/2,
    an idle round every 4 S, rebroadcast every S while stalled.

The gadget receives its node as a :class:`node.core.NodeCore` (the store, the
import lock, ``apply_justification``) and its keys as a key source (the node's keystore,
:class:`node.consensus.keys.KeySource`; None for an observer); how to wire it: the API in
:mod:`node.consensus.finality`.

Its voter key
    is the keystore's ``gran`` key of the first authority of the current set that the
    keystore holds, looked up again whenever the set or the keystore changes, or while
    the key it found could not be opened (``_refresh_key``, at every step): a key
    inserted at run time makes the node a voter at its next step; without one it
    follows the votes as an observer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from node.consensus.finality.gossip import VoteVerdict, vote_messages
from node.consensus.finality.justifications import (
    check_commit_signatures,
    final_justification,
    keep_commit,
)
from node.consensus.finality.record import VOTES_DIR, VOTES_FILE, read_record, write_record
from node.consensus.finality.rounds import Round, RoundState, evaluate
from node.consensus.finality.sets import VoterSet, first_change, initial_set
from node.consensus.finality.votes import BlockRef, PhaseVotes, Tally, tally_votes
from node.consensus.keys import KeySource, SigningKeys
from node.keystore import GRAN
from node.logs import short_hash
from runtime import codec
from runtime.block import InvalidJustification, Justification, verify_justification
from runtime.crypto import Keypair
from runtime.finality_types import (
    BlockId,
    Phase,
    SignedVote,
    VoterRecord,
    decode_vote_message,
    sign_vote,
)
from runtime.modules import validators

if TYPE_CHECKING:
    from node.chain.store import ChainStore
    from node.core import NodeCore as Node

__all__ = ["FinalityGadget", "Publish", "Timing"]

log = logging.getLogger("opus.finality")

MAX_TRACKED_FUTURE_ROUNDS = 8
MAX_EQUIVOCATION_RECORDS = 1024
MAX_PATH_CACHE = 1024

Publish = Callable[[bytes], Awaitable[None]]


async def _drop(_data: bytes) -> None:
    """The publish function until the network sets one."""


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


class FinalityGadget:
    """The finality voter (or observer) of one node; see the module docstring."""

    def __init__(self, node: Node, keys: KeySource | None, publish: Publish | None = None, *,
                 path: Path | None = None, timing: Timing | None = None) -> None:
        self.node = node
        self.keys = SigningKeys(keys, GRAN, "voting") if keys is not None else None
        self.key: Keypair | None = None  # the voter key: see "Its voter key" above
        self._key_checked: tuple[int, Hashable] | None = None
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
        self.record = read_record(self.record_path)
        self._saved_record = self.record
        self.voter_set = initial_set(self.store, self.record)
        self._scanned_to = self.voter_set.start_number
        self._sync_set(force_reset=True)
        if self.keys is not None and self._key_changed():
            self.key = self.keys.find_now(self.voter_set.authorities)

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
        await self._refresh_key()
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

    # ------------------------------------------------------------------ the voter key

    def _key_changed(self) -> bool:
        """Whether the set or the keystore changed since the voter key was looked up."""
        assert self.keys is not None
        checked = (self.voter_set.set_id, self.keys.source.version())
        if checked == self._key_checked:
            return False
        self._key_checked = checked
        return True

    async def _refresh_key(self) -> None:
        if self.keys is None:
            return
        # Also while a key of the set could not be opened: its file may have been fixed
        # (the keystore answers from its cache until the file changes).
        if not self._key_changed() and not (self.key is None and self.keys.unusable):
            return
        was_voter = self.is_voter
        self.key = await self.keys.find(self.voter_set.authorities)
        if self.is_voter != was_voter:
            log.info("🗳️ Finality: %s in set %d", "voting" if self.is_voter else "observing",
                     self.voter_set.set_id)

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

        enacted = first_change(self.store, block_at, base_number, number)
        result = ref if enacted is None else (path[number - enacted], enacted)
        self._limits[block_hash] = result
        return result

    def _is_ancestor(self, ancestor: BlockRef, descendant: BlockRef) -> bool:
        return ancestor[0] == descendant[0] or self.store.is_ancestor(ancestor[0], descendant[0])

    # ------------------------------------------------------------------ authority sets

    def _sync_set(self, force_reset: bool = False) -> None:
        """Follow the finalized chain: each finalized block that enacts a change starts a set."""
        store = self.store
        finalized = store.finalized_header.number
        voter_set = self.voter_set
        changed = False
        while self._scanned_to < finalized:
            enacted = first_change(store, store.hash_at, self._scanned_to, finalized)
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
        """One phase's votes counted over this node's block tree above the finalized block."""
        return tally_votes(votes, self._ancestry)

    def _evaluate(self, rnd: Round) -> RoundState:
        voter_set = self.voter_set
        final = final_justification(rnd.number, rnd.precommits, voter_set, self._base[1],
                                    self.store.header)
        return evaluate(self._tally(rnd.prevotes), self._tally(rnd.precommits), voter_set,
                        self._base, self._ancestry, final)

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
                check_commit_signatures(justification, self.voter_set.authorities)
        except InvalidJustification as e:
            verdict._bad(f"invalid commit: {e}")
            return
        keep_commit(self._pending_commits, justification)
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
                await trio.to_thread.run_sync(write_record, self.dir, codec.encode(record))
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
        for message in vote_messages(outbox, commit):
            try:
                await self.publish(message)
            except Exception as e:  # the transport's trouble must not stop finality
                log.debug("Publishing finality votes failed: %s", e)
        self._wake.set()

    # ------------------------------------------------------------------ the vote record

    @property
    def record_path(self) -> Path:
        return self.dir / VOTES_FILE
