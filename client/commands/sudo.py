"""``opus sudo set-authorities | set-key | show``: the authority set and the sudo key.

    opus sudo show                                                 # sudo, authorities, change
    opus sudo set-authorities ADDR … --key sudo.json [--rpc URL]   # a new authority set
    opus sudo set-key NEW_SUDO --key sudo.json                     # hand the sudo key on

Both calls are ``validators`` calls only the sudo account may make; a new set takes
effect ``AUTHORITY_CHANGE_DELAY`` (10) blocks after the block the call is in, which the
command prints. They wait until that block is finalized (``--wait finalized``, their
default): until then a fork choice may move the call to another block, and the change
with it; ``--wait inBlock`` prints the block as first seen. Before signing, the command
reads the sudo key and any pending change from the node's best state
(``state_getStorage`` with the ``validators`` storage keys) and refuses what the chain
would refuse, so a mistake costs no fee: a signer that is not
the sudo account (``validators.NotSudo``), a set with a key twice
(``validators.DuplicateAuthority``), more than ``MAX_AUTHORITIES`` keys, or a change while
another is pending (``validators.ChangeAlreadyPending``). An empty set
(``validators.EmptyAuthoritySet``) cannot be written on the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from client import OpusClient
from client.commands import arguments
from client.commands.common import Context, CreatorError, command, group, receipt_lines
from runtime import codec
from runtime.codec import from_hex0x, hex0x
from runtime.crypto import encode_address as address_of
from runtime.modules import validators
from runtime.support import StorageValue

if TYPE_CHECKING:
    from client.commands.common import Subcommands


class SudoRefused(CreatorError):
    """A sudo call the chain would refuse, caught before it is signed: nothing is submitted.
    The message starts with the runtime's error name (``validators.NotSudo: …``)."""


def read_value(client: OpusClient, item: StorageValue[Any]) -> Any:
    """A ``validators`` storage value in the node's best state (its default if unset)."""
    raw = client.call("state_getStorage", hex0x(item.key))
    if raw is None:
        return item.default
    try:
        return codec.decode(from_hex0x(raw), item.tp)
    except (ValueError, codec.DecodeError) as e:
        raise CreatorError(f"the node's value of {item.key.decode()} does not decode: "
                           f"{e}") from None


def chain_state(client: OpusClient) -> dict[str, Any]:
    """The sudo key, the authorities and the pending change, at the best block."""
    number, _ = client.best_block()
    return {
        "best": number,
        "sudo": read_value(client, validators.sudo),
        "authorities": read_value(client, validators.authorities),
        "pending": read_value(client, validators.pending_change),
    }


def _ensure_sudo(signer: bytes, sudo: bytes | None) -> None:
    if sudo is None:
        raise SudoRefused("validators.NotSudo: this chain has no sudo account, so its "
                          "authority set cannot change; nothing was submitted")
    if signer != sudo:
        raise SudoRefused(f"validators.NotSudo: the signer {address_of(signer)} is not the "
                          f"sudo account {address_of(sudo)}; nothing was submitted")


def check_new_set(new: list[bytes]) -> None:
    """The runtime's rules for a new authority set, checked before anything is signed."""
    if not new:
        raise SudoRefused("validators.EmptyAuthoritySet: the new authority set is empty")
    if len(new) > validators.MAX_AUTHORITIES:
        raise SudoRefused(f"a set has at most {validators.MAX_AUTHORITIES} authorities, "
                          f"not {len(new)}; nothing was submitted")
    seen: set[bytes] = set()
    for key in new:
        if key in seen:
            raise SudoRefused(f"validators.DuplicateAuthority: {address_of(key)} appears "
                              "twice; nothing was submitted")
        seen.add(key)


def _pending_lines(pending: validators.PendingChange | None, best: int) -> list[str]:
    if pending is None:
        return ["  pending       none"]
    return [f"  pending       {len(pending.authorities)} authorities from block "
            f"#{pending.effective_at} (best #{best})",
            *(f"    {address_of(a)}" for a in pending.authorities)]


def _pending_json(pending: validators.PendingChange | None) -> dict[str, Any] | None:
    if pending is None:
        return None
    return {"effectiveAt": pending.effective_at,
            "authorities": [address_of(a) for a in pending.authorities]}


def sudo_show(ctx: Context) -> int:
    state = chain_state(ctx.client)
    sudo = state["sudo"]
    ctx.emit({"best": state["best"], "sudo": address_of(sudo) if sudo else None,
              "authorities": [address_of(a) for a in state["authorities"]],
              "pendingChange": _pending_json(state["pending"])},
             [f"At best block #{state['best']}",
              f"  sudo          {address_of(sudo) if sudo else 'none'}",
              f"  authorities   {len(state['authorities'])}",
              *(f"    {address_of(a)}" for a in state["authorities"]),
              *_pending_lines(state["pending"], state["best"])])
    return 0


def set_authorities(ctx: Context) -> int:
    new: list[bytes] = list(ctx.args.authorities)
    check_new_set(new)
    key = ctx.key()
    state = chain_state(ctx.client)
    _ensure_sudo(key.public, state["sudo"])
    pending: validators.PendingChange | None = state["pending"]
    if pending is not None:
        raise SudoRefused(f"validators.ChangeAlreadyPending: a change to "
                          f"{len(pending.authorities)} authorities takes effect at block "
                          f"#{pending.effective_at} (best #{state['best']}); wait until it "
                          "has, then try again; nothing was submitted")
    receipt = ctx.execute(validators.SetAuthorities(tuple(new)))
    scheduled = receipt.events_named("validators", "AuthoritiesChangeScheduled")
    if not scheduled:
        raise CreatorError(f"the call is in block #{receipt.block_number} but the chain "
                           "reported no AuthoritiesChangeScheduled event")
    effective = int(scheduled[0]["effectiveAt"])
    addresses = [address_of(a) for a in new]
    ctx.emit({"effectiveAt": effective, "authorities": addresses, **receipt.to_json()},
             [f"Authority set change scheduled: {len(new)} authorities, effective at block "
              f"#{effective} ({validators.AUTHORITY_CHANGE_DELAY} blocks after "
              f"#{receipt.block_number}); they author and finalize from #{effective + 1} on",
              *(f"    {a}" for a in addresses),
              *receipt_lines(receipt)])
    return 0


def set_key(ctx: Context) -> int:
    new_sudo: bytes = ctx.args.new_sudo
    key = ctx.key()
    state = chain_state(ctx.client)
    _ensure_sudo(key.public, state["sudo"])
    receipt = ctx.execute(validators.SetSudo(new_sudo))
    ctx.emit({"sudo": address_of(new_sudo), "effectiveAt": receipt.block_number,
              **receipt.to_json()},
             [f"Sudo key handed to {address_of(new_sudo)} (from block #{receipt.block_number}"
              f" on; {key.address} no longer is sudo)",
              *receipt_lines(receipt)])
    return 0


def add_parsers(sub: Subcommands) -> None:
    sudo = group(sub, "sudo", "change the authority set or the sudo key (sudo account only)")
    command(sudo, "show", sudo_show, "show the sudo account, the authorities and a pending "
            "change")
    p = command(sudo, "set-authorities", set_authorities,
                "schedule a new authority set; it takes effect "
                f"{validators.AUTHORITY_CHANGE_DELAY} blocks after the call's block (waits "
                "until that block is final, unless --wait inBlock)",
                signing=True)
    p.add_argument("authorities", nargs="+", type=arguments.account, metavar="ADDR",
                   help="the new set, in authoring order: opus1… addresses, 0x public keys "
                        "or dev account names")
    p.set_defaults(wait="finalized")  # the effective block printed is final, not provisional
    p = command(sudo, "set-key", set_key, "hand the sudo key to another account",
                signing=True)
    p.add_argument("new_sudo", type=arguments.account, metavar="NEW_SUDO",
                   help="the new sudo account")
    p.set_defaults(wait="finalized")


__all__ = ["SudoRefused", "add_parsers", "chain_state", "check_new_set", "read_value"]
