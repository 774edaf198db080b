"""Peer bookkeeping: what we know of each peer, its reputation, bans and dial back-off.

Reputation works like Substrate's: every peer starts at 0; misbehaviour costs
points (:class:`Penalty`), the score decays back towards 0 once per whole second
(half-life ``SCORE_HALF_LIFE_S``; so misbehaviour within the same second adds up
exactly: two bad blocks at once reach -400), and a peer whose score falls to
``BAN_THRESHOLD`` or below is disconnected and banned for ``ban_seconds``. A banned peer's
connections are closed on sight and it is not dialled until the ban expires.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p2p.protocol import Role, Status

log = logging.getLogger("opus.p2p")

SCORE_HALF_LIFE_S = 60.0
BAN_THRESHOLD = -400.0
DEFAULT_BAN_SECONDS = 120.0


class Penalty(enum.Enum):
    """Kinds of misbehaviour and their reputation cost (``cost`` points)."""

    GARBAGE_MESSAGE = "a gossip message that does not decode"
    OVERSIZE_MESSAGE = "a gossip message over its topic's size limit"
    BAD_SEAL = "a block whose seal is not its author's signature"
    BAD_BLOCK = "a block that failed import (bad state root, wrong author, ...)"
    WRONG_CHAIN = "a block that cannot be on this chain (number or time vs its parent)"
    BAD_VOTE = "a finality vote the finality gadget rejected"
    BAD_SYNC_RESPONSE = "a sync response that does not decode or does not connect"
    BAD_REQUEST = "a request that does not decode"
    REQUEST_FAILED = "a request that timed out or broke"
    BAD_PUBSUB_FRAME = "a pubsub frame or message py-libp2p fails on (e.g. not protobuf)"
    UNWANTED_TRANSACTION = ("a gossiped transaction the pool refused by a limit (full, too many "
                            "waiting for a nonce, nonce far ahead); per transaction")

    @property
    def cost(self) -> float:
        return PENALTY_COSTS[self]


PENALTY_COSTS = {
    Penalty.GARBAGE_MESSAGE: 100,
    Penalty.OVERSIZE_MESSAGE: 100,
    Penalty.BAD_SEAL: 200,
    Penalty.BAD_BLOCK: 200,
    Penalty.WRONG_CHAIN: 100,
    Penalty.BAD_VOTE: 100,
    Penalty.BAD_SYNC_RESPONSE: 150,
    Penalty.BAD_REQUEST: 50,
    Penalty.REQUEST_FAILED: 10,
    Penalty.BAD_PUBSUB_FRAME: 50,
    # A flood of 8,000 such transactions bans its publisher; a relay whose transactions we
    # refuse now and then (our pool is full, its is not) decays back long before.
    Penalty.UNWANTED_TRANSACTION: 0.05,
}


@dataclass
class PeerRecord:
    """One connected peer, as far as we know it."""

    peer_id: str
    address: str = ""
    status: Status | None = None  # from its handshake; None until the handshake completes
    best_number: int = 0
    best_hash: bytes = b""
    connected_at: float = field(default_factory=time.monotonic)

    @property
    def ready(self) -> bool:
        return self.status is not None

    @property
    def role(self) -> str:
        return self.status.role.value if self.status is not None else Role.FULL.value

    def update_status(self, status: Status) -> None:
        self.status = status
        if status.best_number >= self.best_number or status.best_hash != self.best_hash:
            self.best_number = status.best_number
            self.best_hash = status.best_hash

    def note_best(self, number: int, block_hash: bytes) -> None:
        if number > self.best_number:
            self.best_number = number
            self.best_hash = block_hash


@dataclass(frozen=True)
class PeerSummary:
    """What ``system_peers`` shows of a peer."""

    peer_id: str
    roles: str
    best_number: int
    best_hash: str
    address: str

    def to_json(self) -> dict[str, object]:
        return {"peerId": self.peer_id, "roles": self.roles.upper(),
                "bestHash": self.best_hash, "bestNumber": self.best_number,
                "address": self.address}


class Reputation:
    """Decaying per-peer scores and time-limited bans."""

    def __init__(self, *, ban_threshold: float = BAN_THRESHOLD,
                 ban_seconds: float = DEFAULT_BAN_SECONDS,
                 half_life: float = SCORE_HALF_LIFE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ban_threshold = ban_threshold
        self.ban_seconds = ban_seconds
        self.half_life = half_life
        self._clock = clock
        self._scores: dict[str, tuple[float, float]] = {}  # peer -> (score, at)
        self._bans: dict[str, float] = {}  # peer -> ban expiry (clock time)

    def score(self, peer_id: str) -> float:
        return self._decayed(peer_id)[0]

    def _decayed(self, peer_id: str) -> tuple[float, float]:
        """The peer's score now, and the clock time of its last decay tick.

        The score decays once per whole second since the last tick, which is
        carried forward by whole seconds (penalties less than a second apart
        still decay over time).
        """
        entry = self._scores.get(peer_id)
        if entry is None:
            return 0.0, self._clock()
        value, at = entry
        ticks = math.floor(self._clock() - at)
        return value * math.pow(0.5, ticks / self.half_life), at + ticks

    def penalize(self, peer_id: str, penalty: Penalty | int, reason: str = "", *,
                 count: int = 1) -> bool:
        """Lower the peer's score by ``count`` times the penalty; True if it just crossed the
        ban threshold."""
        cost = count * (penalty.cost if isinstance(penalty, Penalty) else int(penalty))
        value, at = self._decayed(peer_id)
        new = value - cost
        self._scores[peer_id] = (new, at)
        name = penalty.name if isinstance(penalty, Penalty) else str(penalty)
        log.warning("👮 Peer %s penalized (%s%s): reputation %.0f", peer_id, name,
                    f": {reason}" if reason else "", new)
        if new <= self.ban_threshold and not self.is_banned(peer_id):
            self.ban(peer_id)
            return True
        return False

    def ban(self, peer_id: str, seconds: float | None = None) -> None:
        duration = self.ban_seconds if seconds is None else seconds
        self._bans[peer_id] = self._clock() + duration
        log.warning("🚫 Banning peer %s for %.0f s", peer_id, duration)

    def is_banned(self, peer_id: str) -> bool:
        expiry = self._bans.get(peer_id)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._bans[peer_id]
            self._scores.pop(peer_id, None)  # a fresh start after the ban
            return False
        return True

    def ban_remaining(self, peer_id: str) -> float:
        expiry = self._bans.get(peer_id)
        return 0.0 if expiry is None else max(0.0, expiry - self._clock())

    def expired_bans(self) -> list[str]:
        """Peers whose ban has run out (and forget them)."""
        return [p for p in list(self._bans) if not self.is_banned(p)]


class Backoff:
    """Exponential back-off with jitter for re-dialling a peer."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, factor: float = 2.0,
                 jitter: float = 0.1) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * (1.0 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial


class PeerSet:
    """The connected peers and their records."""

    def __init__(self) -> None:
        self._peers: dict[str, PeerRecord] = {}

    def __contains__(self, peer_id: str) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(peer_id)

    def add(self, peer_id: str, address: str = "") -> PeerRecord:
        record = self._peers.get(peer_id)
        if record is None:
            record = self._peers[peer_id] = PeerRecord(peer_id, address)
        elif address and not record.address:
            record.address = address
        return record

    def remove(self, peer_id: str) -> PeerRecord | None:
        return self._peers.pop(peer_id, None)

    def ready(self) -> list[PeerRecord]:
        """Peers that completed the handshake."""
        return [p for p in self._peers.values() if p.ready]

    def best_peer(self, exclude: set[str] | None = None) -> PeerRecord | None:
        """The ready peer with the highest best block."""
        candidates = [p for p in self.ready() if not exclude or p.peer_id not in exclude]
        if not candidates:
            return None
        return max(candidates, key=lambda p: (p.best_number, p.connected_at * -1))

    def summaries(self) -> list[PeerSummary]:
        return [PeerSummary(p.peer_id, p.role, p.best_number, "0x" + p.best_hash.hex(),
                            p.address) for p in self.ready()]
