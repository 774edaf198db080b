"""A tiny in-memory chain for runtime tests.

``MiniChain()`` is a genesis state (every dev account endowed, ``total_issuance``
set) on a :class:`MemoryState`. ``chain.submit(key, args)`` signs a call with
the key's current nonce, applies it alone in a fresh block through
``executive.initialize_block`` / ``executive.apply_extrinsic``, commits the
block and returns an :class:`Applied` (the outcome and the extrinsic's events).
``expect_failure`` additionally checks Substrate's failure semantics: the named
error, the call's changes reverted, the fee paid and the nonce bumped.

The bottom section has shortcuts for the creative-works modules (register a
work, offer terms, acquire a license) that assert success and return the id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from node.chain.indexes import index_changes
from runtime import codec, executive
from runtime.codec import Struct
from runtime.crypto import DEV_ACCOUNT_NAMES, Keypair, blake2_256, dev_keypair, sha256
from runtime.extrinsic import sign_extrinsic
from runtime.modules import balances, licensing, provenance, system
from runtime.state import MemoryState, Overlay
from runtime.support import (
    CALLS_BY_ARGS,
    BlockInfo,
    DispatchError,
    Env,
    Event,
    EventLog,
    make_call,
)

GENESIS_HASH = blake2_256(b"opus/runtime-tests/genesis")
BLOCK_TIME_MS = 6_000
GENESIS_BALANCE = 10**18  # a million tokens (12 decimals) per dev account

DEV: dict[str, Keypair] = {name: dev_keypair(name) for name in DEV_ACCOUNT_NAMES}
ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (DEV[n] for n in DEV_ACCOUNT_NAMES)
AUTHOR = Keypair.from_seed(blake2_256(b"//TestAuthor"))  # receives every fee

E = TypeVar("E", bound=Event)


def account(index: int) -> bytes:
    """An extra account id (no key needed: creators need not sign)."""
    return blake2_256(b"test-account" + index.to_bytes(4, "big"))


@dataclass
class Applied:
    """One applied extrinsic: its outcome and its events (the call's, FeePaid, the result)."""

    outcome: executive.ApplyOutcome
    events: list[Event]
    block: int

    @property
    def error(self) -> str | None:
        return self.outcome.error

    @property
    def ok(self) -> bool:
        return self.outcome.error is None

    @property
    def detail(self) -> str:
        failed = self.of(system.ExtrinsicFailed)
        return failed[0].detail if failed else ""

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def one(self, kind: type[E]) -> E:
        found = self.of(kind)
        assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
        return found[0]


@dataclass
class MiniChain:
    """Genesis plus one-extrinsic blocks, all in memory."""

    endowed: Mapping[bytes, int] | None = None
    state: MemoryState = field(default_factory=MemoryState)
    # The node-side listing indexes (node.chain.indexes), built from each block's events.
    index: MemoryState = field(default_factory=MemoryState)
    number: int = 0
    author: bytes = AUTHOR.public

    def __post_init__(self) -> None:
        endowed = self.endowed
        if endowed is None:
            endowed = {key.public: GENESIS_BALANCE for key in DEV.values()}
        overlay = Overlay(self.state)
        for who, amount in endowed.items():
            system.put_account(overlay, who, system.AccountInfo(0, amount))
        balances.total_issuance.put(overlay, sum(endowed.values()))
        self.state.apply(overlay.changes)

    def block_info(self) -> BlockInfo:
        number = self.number + 1
        parent = GENESIS_HASH if self.number == 0 else blake2_256(self.number.to_bytes(8, "big"))
        return BlockInfo(number, number * BLOCK_TIME_MS, self.author, parent)

    def submit(self, key: Keypair, args: Struct, *, tip: int = 0) -> Applied:
        """Sign ``args`` as ``key`` and apply it alone in the next block."""
        ext = sign_extrinsic(key, make_call(args), self.nonce(key.public), GENESIS_HASH,
                             executive.SPEC_VERSION, tip=tip)
        env = executive.initialize_block(Overlay(self.state), self.block_info())
        start = len(env.events)
        outcome = executive.apply_extrinsic(env, ext, len(codec.encode(ext)), 0, GENESIS_HASH)
        executive.finalize_block(env)
        self.state.apply(env.state.changes)
        self.number += 1
        self.index.apply(index_changes(self.index.get, self.number, env.events))
        events = [r.event for r in env.events[start:] if r.extrinsic_index == 0]
        return Applied(outcome, events, self.number)  # type: ignore[arg-type]

    def advance(self, blocks: int) -> None:
        """Skip ``blocks`` empty blocks."""
        self.number += blocks

    def call_directly(self, who: bytes, args: Struct) -> DispatchError | None:
        """Run a call's handler on a throwaway overlay, bypassing the codec and fees.

        For checks an extrinsic cannot reach (e.g. over-long tuples the codec refuses).
        """
        env = Env(Overlay(self.state), self.block_info(), EventLog(), 0)
        try:
            CALLS_BY_ARGS[type(args)].handler(env, who, args)
        except DispatchError as e:
            return e
        return None

    def free(self, who: bytes) -> int:
        return system.account_info(self.state, who).free

    def nonce(self, who: bytes) -> int:
        return system.account_info(self.state, who).nonce

    def balances_sum(self) -> int:
        return sum(codec.decode(raw, system.AccountInfo).free
                   for _, raw in self.state.iter_prefix(system.account.prefix))


def expect_ok(chain: MiniChain, key: Keypair, args: Struct) -> Applied:
    applied = chain.submit(key, args)
    assert applied.ok, f"{applied.error}: {applied.detail}"
    return applied


def expect_failure(chain: MiniChain, key: Keypair, args: Struct, error: str) -> Applied:
    """Apply ``args`` and check it failed with ``error`` the Substrate way.

    The nonce is bumped, exactly the fee moved from the signer to the author,
    nothing else in state changed (apart from the block's own system entries),
    and the events are FeePaid then ExtrinsicFailed only.
    """
    who = key.public
    before = dict(chain.state.items)
    nonce, free, author_free = chain.nonce(who), chain.free(who), chain.free(chain.author)
    applied = chain.submit(key, args)
    assert applied.error == error, f"expected {error}, got {applied.error}: {applied.detail}"
    assert chain.nonce(who) == nonce + 1
    fee = applied.outcome.fee
    if who != chain.author:
        assert chain.free(who) == free - fee
        assert chain.free(chain.author) == author_free + fee
    allowed = {system.account.key(who), system.account.key(chain.author),
               system.number.key, system.timestamp.key}
    after = chain.state.items
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    unexpected = sorted(k for k in changed - allowed if not k.startswith(system.block_hash.prefix))
    assert not unexpected, f"a failed call changed state: {unexpected}"
    assert [type(e) for e in applied.events] == [balances.FeePaid, system.ExtrinsicFailed]
    return applied


# ---------------------------------------------------------------------------
# Creative-works shortcuts


def work_args(
    content: str,
    creators: tuple[tuple[bytes, int], ...] | None = None,
    parents: tuple[tuple[int, int], ...] = (),
    *,
    owner: Keypair = ALICE,
    title: str = "A work",
    kind: provenance.WorkKind = provenance.WorkKind.IMAGE,
) -> provenance.RegisterWork:
    """RegisterWork for the file bytes ``content``; creators default to the owner alone."""
    splits = creators if creators is not None else ((owner.public, 10_000),)
    return provenance.RegisterWork(
        content_hash=sha256(content.encode()),
        kind=kind,
        title=title,
        metadata_uri=f"ipfs://meta/{content}",
        metadata_hash=None,
        creators=tuple(provenance.Split(a, b) for a, b in splits),
        parents=tuple(provenance.ParentLink(w, lic) for w, lic in parents),
    )


# Permissive commercial terms with a 10% rev share; override any field.
DEFAULT_TERMS: dict[str, Any] = dict(
    transferable=True,
    commercial_use=True,
    commercial_attribution=True,
    commercial_rev_share=1_000,
    derivatives_allowed=True,
    derivatives_attribution=True,
    derivatives_approval=False,
    derivatives_reciprocal=False,
    ai_training=licensing.AiUse.ALLOWED,
    ai_inference=licensing.AiUse.ALLOWED,
    minting_fee=0,
    expiry_blocks=0,
    max_supply=0,
    legal_uri="ipfs://pil/commercial-remix",
    legal_hash=None,
)


def terms_args(work_id: int, **overrides: Any) -> licensing.OfferTerms:
    return licensing.OfferTerms(work_id=work_id, **{**DEFAULT_TERMS, **overrides})


def register(chain: MiniChain, key: Keypair, args: provenance.RegisterWork) -> int:
    return expect_ok(chain, key, args).one(provenance.WorkRegistered).work_id


def offer(chain: MiniChain, key: Keypair, work_id: int, **overrides: Any) -> int:
    return expect_ok(chain, key, terms_args(work_id, **overrides)).one(
        licensing.TermsOffered).terms_id


def acquire(chain: MiniChain, key: Keypair, terms_id: int) -> int:
    return expect_ok(chain, key, licensing.AcquireLicense(terms_id)).one(
        licensing.LicenseAcquired).license_id


def derive(
    chain: MiniChain,
    key: Keypair,
    content: str,
    parents: tuple[int, ...],
    *,
    rev_share: int = 1_000,
    creators: tuple[tuple[bytes, int], ...] | None = None,
) -> int:
    """Register ``content`` as ``key``'s derivative of ``parents`` and return its id.

    For each parent, its (dev account) owner offers fresh terms with ``rev_share``
    and ``key`` buys a license under them.
    """
    links = []
    for parent in parents:
        work = provenance.works.get(chain.state, parent)
        assert work is not None
        owner = next(k for k in DEV.values() if k.public == work.owner)
        terms_id = offer(chain, owner, parent, commercial_rev_share=rev_share)
        links.append((parent, acquire(chain, key, terms_id)))
    return register(chain, key, work_args(content, creators, tuple(links), owner=key))


def offer_terms(work_id: int, ai: licensing.AiUse, fee: int, **changes: Any
                ) -> licensing.OfferTerms:
    """``offer_terms`` arguments with every right off but AI training ``ai`` at ``fee``;
    ``changes`` overrides any field."""
    fields: dict[str, Any] = dict(
        work_id=work_id, transferable=False, commercial_use=False, commercial_attribution=False,
        commercial_rev_share=0, derivatives_allowed=False, derivatives_attribution=False,
        derivatives_approval=False, derivatives_reciprocal=False, ai_training=ai,
        ai_inference=licensing.AiUse.NOT_ALLOWED, minting_fee=fee, expiry_blocks=0,
        max_supply=0, legal_uri="", legal_hash=None)
    fields.update(changes)
    return licensing.OfferTerms(**fields)
