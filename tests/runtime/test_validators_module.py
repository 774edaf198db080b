"""The validators module: sudo-scheduled authority changes and the sudo key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runtime import codec, support
from runtime.crypto import dev_keypair
from runtime.modules import validators
from runtime.modules.validators import (
    AUTHORITY_CHANGE_DELAY,
    MAX_AUTHORITIES,
    PendingChange,
    SetAuthorities,
    SetSudo,
)
from runtime.state import Overlay

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (
    dev_keypair(n) for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))
GENESIS_SET = (ALICE.public, BOB.public)
NEW_SET = (CHARLIE.public, DAVE.public, EVE.public)
UNIT = 10**12


def genesis(sudo: bytes | None) -> Callable[[Overlay], None]:
    def setup(overlay: Overlay) -> None:
        validators.authorities.put(overlay, GENESIS_SET)
        validators.sudo.put(overlay, sudo)

    return setup


@pytest.fixture
def chain(new_chain: Callable[..., Any]) -> Any:
    return new_chain({ALICE.public: 100 * UNIT, BOB.public: 100 * UNIT},
                     setup=genesis(ALICE.public))


def call(chain: Any, key: Any, args: Any) -> tuple[str | None, list[support.Event]]:
    """Apply one extrinsic in a new block; its dispatch error and all the block's events."""
    (outcome,), events = chain.build_block([chain.sign(key, args)])
    assert not isinstance(outcome, Exception), outcome
    return outcome.error, [r.event for r in events]


def test_set_authorities_takes_effect_exactly_after_the_delay(chain: Any) -> None:
    chain.build_block([])
    chain.build_block([])
    error, events = call(chain, ALICE, SetAuthorities(NEW_SET))  # block 3
    assert error is None
    scheduled_at = chain.number
    effective = scheduled_at + AUTHORITY_CHANGE_DELAY
    assert validators.AuthoritiesChangeScheduled(effective, NEW_SET) in events
    assert validators.pending_change.get(chain.state) == PendingChange(effective, NEW_SET)
    assert validators.authorities.get(chain.state) == GENESIS_SET

    while chain.number < effective - 1:
        _, events = chain.build_block([])
        assert validators.authorities.get(chain.state) == GENESIS_SET, chain.number
        assert not events
    assert chain.number == effective - 1
    _, events = chain.build_block([])  # the effective block
    assert chain.number == effective
    assert validators.authorities.get(chain.state) == NEW_SET
    assert validators.pending_change.get(chain.state) is None
    assert [(r.extrinsic_index, r.event) for r in events] == [
        (None, validators.AuthoritiesChanged(NEW_SET))]
    _, events = chain.build_block([])
    assert validators.authorities.get(chain.state) == NEW_SET
    assert not events


def test_change_applies_at_the_start_of_its_block(chain: Any) -> None:
    """initialize_block applies the change, so the effective block itself uses the new set."""
    call(chain, ALICE, SetAuthorities(NEW_SET))
    for _ in range(AUTHORITY_CHANGE_DELAY - 1):
        chain.build_block([])
    env = chain.open_block()
    assert validators.authorities.get(env.state) == NEW_SET


def test_not_sudo(chain: Any) -> None:
    error, events = call(chain, BOB, SetAuthorities(NEW_SET))
    assert error == "validators.NotSudo"
    assert validators.pending_change.get(chain.state) is None
    assert not any(isinstance(e, validators.AuthoritiesChangeScheduled) for e in events)
    error, _ = call(chain, BOB, SetSudo(BOB.public))
    assert error == "validators.NotSudo"
    assert validators.sudo.get(chain.state) == ALICE.public


def test_no_sudo_means_nobody_may(new_chain: Callable[..., Any]) -> None:
    chain = new_chain({ALICE.public: 100 * UNIT}, setup=genesis(None))
    assert call(chain, ALICE, SetAuthorities(NEW_SET))[0] == "validators.NotSudo"
    assert call(chain, ALICE, SetSudo(ALICE.public))[0] == "validators.NotSudo"


def test_empty_authority_set(chain: Any) -> None:
    assert call(chain, ALICE, SetAuthorities(()))[0] == "validators.EmptyAuthoritySet"
    assert validators.pending_change.get(chain.state) is None


def test_duplicate_authority(chain: Any) -> None:
    for dup in ((CHARLIE.public, CHARLIE.public), (CHARLIE.public, DAVE.public, CHARLIE.public)):
        assert call(chain, ALICE, SetAuthorities(dup))[0] == "validators.DuplicateAuthority"
    assert validators.pending_change.get(chain.state) is None


def test_change_already_pending(chain: Any) -> None:
    assert call(chain, ALICE, SetAuthorities(NEW_SET))[0] is None
    pending = validators.pending_change.get(chain.state)
    error, _ = call(chain, ALICE, SetAuthorities((EVE.public,)))
    assert error == "validators.ChangeAlreadyPending"
    assert validators.pending_change.get(chain.state) == pending
    while validators.pending_change.get(chain.state) is not None:
        chain.build_block([])
    # Once applied, a new change may be scheduled.
    assert call(chain, ALICE, SetAuthorities((EVE.public,)))[0] is None
    assert validators.pending_change.get(chain.state) == PendingChange(
        chain.number + AUTHORITY_CHANGE_DELAY, (EVE.public,))


def test_max_authorities_is_enforced_by_the_codec() -> None:
    keys = tuple(i.to_bytes(32, "big") for i in range(MAX_AUTHORITIES))
    assert codec.decode(SetAuthorities(keys).encode(), SetAuthorities).authorities == keys
    with pytest.raises(codec.EncodeError):
        SetAuthorities(keys + (bytes(32),)).encode()
    too_many = codec.pack([[bytes([i % 256, i // 256]) + bytes(30) for i in range(101)]])
    with pytest.raises(codec.TooLong):
        codec.decode(too_many, SetAuthorities)


def test_set_sudo(chain: Any) -> None:
    error, events = call(chain, ALICE, SetSudo(BOB.public))
    assert error is None
    assert validators.SudoChanged(BOB.public) in events
    assert validators.sudo.get(chain.state) == BOB.public
    # The old key lost its power; the new one has it.
    assert call(chain, ALICE, SetAuthorities(NEW_SET))[0] == "validators.NotSudo"
    assert call(chain, ALICE, SetSudo(ALICE.public))[0] == "validators.NotSudo"
    assert call(chain, BOB, SetAuthorities(NEW_SET))[0] is None


def test_weights() -> None:
    assert support.CALLS[("validators", "set_authorities")].weight(SetAuthorities(NEW_SET)) == (
        10_000 + 1_000 * len(NEW_SET))
    assert support.CALLS[("validators", "set_sudo")].weight(SetSudo(ALICE.public)) == 10_000
