"""Validators: the authority set that authors and finalizes blocks, and the sudo key.

The set is fixed at genesis and changed only by the sudo account, and a change
takes effect ``AUTHORITY_CHANGE_DELAY`` blocks after the block that scheduled
it, so every node learns of it before it applies.

Storage
  ``authorities``     the current authority keys (ed25519), in authoring order
  ``pending_change``  a scheduled change (effective block, new keys), if any
  ``sudo``            the account allowed to change the set
  ``slot_duration``   milliseconds per Aura slot (set at genesis)
Events
  ``AuthoritiesChangeScheduled(effective_at, authorities)``,
  ``AuthoritiesChanged(authorities)``, ``SudoChanged(new_sudo)``
Errors
  ``NotSudo``, ``EmptyAuthoritySet``, ``DuplicateAuthority``, ``ChangeAlreadyPending``
Calls
  ``set_authorities(authorities)``: sudo only; weight 10,000 + 1,000 per key.
  ``set_sudo(new_sudo)``: sudo only; weight 10,000.
"""

from __future__ import annotations

from typing import Annotated

from runtime.codec import U64, Struct, Tuple, frozen_dataclass
from runtime.support import AccountId, DispatchError, Env, Event, Module, StorageValue

NAME = "validators"
MAX_AUTHORITIES = 100
AUTHORITY_CHANGE_DELAY = 10

AuthorityList = Annotated[tuple[AccountId, ...], Tuple(MAX_AUTHORITIES)]


@frozen_dataclass
class PendingChange(Struct):
    effective_at: U64
    authorities: AuthorityList


authorities: StorageValue[tuple[bytes, ...]] = StorageValue(NAME, "authorities", AuthorityList, ())
pending_change: StorageValue[PendingChange | None] = StorageValue(
    NAME, "pending_change", PendingChange | None, None
)
sudo: StorageValue[bytes | None] = StorageValue(NAME, "sudo", AccountId | None, None)
# Aura: slot = timestamp // slot_duration, author = authorities[slot % len(authorities)].
slot_duration: StorageValue[int] = StorageValue(NAME, "slot_duration", U64, 2000)


@frozen_dataclass
class AuthoritiesChangeScheduled(Event):
    module = NAME
    effective_at: U64
    authorities: AuthorityList


@frozen_dataclass
class AuthoritiesChanged(Event):
    module = NAME
    authorities: AuthorityList


@frozen_dataclass
class SudoChanged(Event):
    module = NAME
    new_sudo: AccountId


class Error(DispatchError):
    module = NAME


class NotSudo(Error):
    """Only the sudo account may change the authority set or the sudo key."""


class EmptyAuthoritySet(Error):
    """A chain with no authorities could never produce another block."""


class DuplicateAuthority(Error):
    """The same key appears twice in the new set."""


class ChangeAlreadyPending(Error):
    """A change is already scheduled; wait until it takes effect."""


def initialize(env: Env) -> None:
    """Apply a scheduled change when its block arrives."""
    change = pending_change.get(env.state)
    if change is not None and env.block.number >= change.effective_at:
        authorities.put(env.state, change.authorities)
        pending_change.kill(env.state)
        env.emit(AuthoritiesChanged(change.authorities))


def ensure_sudo(env: Env, who: bytes) -> None:
    if sudo.get(env.state) != who:
        raise NotSudo("the signer is not the sudo account")


module = Module(NAME)


@frozen_dataclass
class SetAuthorities(Struct):
    authorities: AuthorityList


@module.call(SetAuthorities, weight=lambda a: 10_000 + 1_000 * len(a.authorities))
def set_authorities(env: Env, who: AccountId, args: SetAuthorities) -> None:
    """Schedule a new authority set, effective AUTHORITY_CHANGE_DELAY blocks later.

    Origin: sudo. Errors: ``NotSudo``, ``EmptyAuthoritySet``, ``DuplicateAuthority``,
    ``ChangeAlreadyPending``.
    """
    ensure_sudo(env, who)
    if not args.authorities:
        raise EmptyAuthoritySet("the new authority set is empty")
    if len(dict.fromkeys(args.authorities)) != len(args.authorities):
        raise DuplicateAuthority("a key appears twice")
    if pending_change.get(env.state) is not None:
        raise ChangeAlreadyPending("a change is already scheduled")
    effective_at = env.block.number + AUTHORITY_CHANGE_DELAY
    pending_change.put(env.state, PendingChange(effective_at, args.authorities))
    env.emit(AuthoritiesChangeScheduled(effective_at, args.authorities))


@frozen_dataclass
class SetSudo(Struct):
    new_sudo: AccountId


@module.call(SetSudo, weight=lambda a: 10_000)
def set_sudo(env: Env, who: AccountId, args: SetSudo) -> None:
    """Hand the sudo key to another account.

    Origin: sudo. Errors: ``NotSudo``.
    """
    ensure_sudo(env, who)
    sudo.put(env.state, args.new_sudo)
    env.emit(SudoChanged(args.new_sudo))
