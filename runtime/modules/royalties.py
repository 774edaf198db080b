"""Royalties: every payment into a work is split at once, exactly, up its derivative graph.

Semantics are Story Protocol's "liquid absolute percentage" (LAP) policy:

* A work's royalty stack (computed once, at registration, by
  :func:`compute_royalty_stack`) lists every ancestor with its absolute share
  of ALL revenue of the work: for each parent link (parent P via a license under
  terms T) it adds ``(P, T.commercial_rev_share)`` and every entry of P's own
  stack, sums the entries per ancestor, and sorts by work id. Provenance
  refuses stacks over ``MAX_ANCESTORS`` entries or 10,000 bps in total.
* :func:`distribute` moves an amount from the payer and splits it in one go:
  each ancestor A gets ``floor(amount × bps_A / 10,000)``, split among A's
  creators; the rest goes to the work's own creators.

Rounding rule: splitting X among creators gives each ``floor(X × bps / 10,000)``
and the remainder (the dust, less than one unit per creator) to the FIRST
listed creator. Ancestor shares round down, and what they leave goes to the
work's own creators. So the credits always sum exactly to the amount paid and
no value is created or destroyed. Zero-value credits are skipped (not recorded).

Revenue goes to the creators listed at registration, not to the current owner
(see :mod:`runtime.modules.provenance`). Credits are plain balance moves from
the payer (through ``balances.move``), so total issuance never changes. A
payer who is also a creator is credited like anyone else (the move to
themselves is a no-op, the credit is still recorded).

Weight: a call's weight is fixed before dispatch, so calls that distribute
are charged up front for the worst case: ``MAX_ANCESTORS + 1`` shares ×
``MAX_CREATORS`` creators = 528 credits and 33 work reads, 45,580,000 (under
5% of a block). ``distribute`` returns the weight it actually used and the
executive refunds the difference.

Storage
  none: the module only moves balances (``system.account``) and emits events.
  The earnings totals (per account, per work, per work and account; saturating
  at 2**128 - 1) and each account's credit history are node-side indexes built
  from the ``RoyaltyPaid`` and ``Credited`` events (:mod:`node.chain.indexes`); the
  runtime never reads them.
Events
  ``RoyaltyPaid(work_id, payer, amount, reason, memo)``, then one
  ``Credited(account, work_id, via_work, amount)`` per credit.
Errors
  none of its own; raised from other modules: ``balances.ZeroAmount``,
  ``balances.InsufficientBalance``, ``provenance.WorkNotFound``.
Calls
  ``pay_revenue(work_id, amount, memo)``: any signed account; weight 30,000 + the
  worst-case distribution (``distribute_max_weight()``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from runtime.codec import U64, U128, Struct, Text, frozen_dataclass
from runtime.modules import balances, licensing, provenance
from runtime.state import StateReader
from runtime.support import AccountId, Env, Event, Module

NAME = "royalties"
# Config
BPS = 10_000
U128_MAX = (1 << 128) - 1  # where the (node-side) earnings totals saturate
MAX_MEMO = 256
# Weights (reference ns, calibrated against a balance transfer = 20,000): a
# credit is a balance move and an event, charged as when it also updated three
# totals and wrote a history entry (about 3.7 transfers; nodes now keep those
# outside the state, from the events); the paid work and each ancestor cost a
# work read (``provenance.WORK_READ_WEIGHT``).
DISTRIBUTE_BASE_WEIGHT = 40_000
CREDIT_WEIGHT = 75_000
PAY_REVENUE_BASE_WEIGHT = 30_000

Memo = Annotated[str, Text(MAX_MEMO)]


class Reason(StrEnum):
    LICENSE_FEE = "license_fee"
    REVENUE = "revenue"


# Events
@frozen_dataclass
class RoyaltyPaid(Event):
    module = NAME
    work_id: U64
    payer: AccountId
    amount: U128
    reason: Reason
    memo: Memo


@frozen_dataclass
class Credited(Event):
    module = NAME
    account: AccountId
    work_id: U64  # the work paid into
    via_work: U64  # whose share it is
    amount: U128


# Bounds and weights (functions: they read provenance's limits, which are not
# available while the modules are still importing each other).


def max_credits() -> int:
    return (provenance.MAX_ANCESTORS + 1) * provenance.MAX_CREATORS


def distribute_max_weight() -> int:
    work_reads = 1 + provenance.MAX_ANCESTORS
    return (DISTRIBUTE_BASE_WEIGHT + provenance.WORK_READ_WEIGHT * work_reads
            + CREDIT_WEIGHT * max_credits())


# Pure helpers


def compute_royalty_stack(
    state: StateReader, parents: tuple[provenance.ParentLink, ...]
) -> tuple[provenance.AncestorShare, ...]:
    """The royalty stack of a work derived through ``parents`` (see the module docstring).

    The links must already be checked (``provenance.check_parent``); the caller
    enforces the bounds (``MAX_ANCESTORS`` entries, total ≤ 10,000 bps). At most
    ``len(parents) × (MAX_ANCESTORS + 1)`` entries are merged.
    """
    merged: dict[int, int] = {}
    for link in parents:
        lic = licensing.get_license(state, link.license_id)
        lic_terms = licensing.get_terms(state, lic.terms_id)
        parent = provenance.get_work(state, link.work_id)
        merged[link.work_id] = merged.get(link.work_id, 0) + lic_terms.commercial_rev_share
        for share in parent.royalty_stack:
            merged[share.work_id] = merged.get(share.work_id, 0) + share.bps
    return tuple(provenance.AncestorShare(w, bps) for w, bps in sorted(merged.items()))


def split_among(amount: int, creators: tuple[provenance.Split, ...]) -> list[tuple[bytes, int]]:
    """Split ``amount`` by the creators' bps; the dust goes to the first creator.

    Returns ``(account, share)`` for every creator, in listed order (shares may be zero).
    """
    shares = [(c.account, amount * c.bps // BPS) for c in creators]
    dust = amount - sum(s for _, s in shares)
    if shares:
        first, share = shares[0]
        shares[0] = (first, share + dust)
    return shares


def plan_distribution(
    state: StateReader, work: provenance.Work, amount: int
) -> list[tuple[bytes, int, int]]:
    """The credits ``(account, via_work, amount)`` a payment of ``amount`` into ``work`` makes.

    Ancestors first (by work id), then the work's own creators; zero credits
    are left out. The amounts sum exactly to ``amount``.
    """
    planned: list[tuple[bytes, int, int]] = []
    to_ancestors = 0
    for share in work.royalty_stack:
        portion = amount * share.bps // BPS
        if portion == 0:
            continue
        to_ancestors += portion
        ancestor = provenance.get_work(state, share.work_id)
        planned.extend((a, ancestor.id, s) for a, s in split_among(portion, ancestor.creators))
    planned.extend((a, work.id, s) for a, s in split_among(amount - to_ancestors, work.creators))
    return [c for c in planned if c[2] > 0]


def distribute(
    env: Env, payer: bytes, work_id: int, amount: int, reason: Reason, *, memo: str = ""
) -> int:
    """Move ``amount`` from ``payer`` into ``work_id`` and split it at once (see above).

    Raises ``provenance.WorkNotFound`` or ``balances.InsufficientBalance``; a
    zero amount does nothing. Emits ``RoyaltyPaid`` and one ``Credited`` per credit.
    Returns the weight actually used (at most ``distribute_max_weight()``).
    """
    state = env.state
    work = provenance.get_work(state, work_id)
    if amount == 0:
        return DISTRIBUTE_BASE_WEIGHT + provenance.WORK_READ_WEIGHT
    available = balances.free_balance(state, payer)
    if available < amount:
        raise balances.InsufficientBalance(f"balance {available} is below {amount}")
    env.emit(RoyaltyPaid(work.id, payer, amount, reason, memo))
    planned = plan_distribution(state, work, amount)
    for account, via_work, share in planned:
        balances.move(state, payer, account, share)
        env.emit(Credited(account, work.id, via_work, share))
    work_reads = 1 + len(work.royalty_stack)
    return (DISTRIBUTE_BASE_WEIGHT + provenance.WORK_READ_WEIGHT * work_reads
            + CREDIT_WEIGHT * len(planned))


module = Module(NAME)


@frozen_dataclass
class PayRevenue(Struct):
    work_id: U64
    amount: U128
    memo: Memo


@module.call(PayRevenue, weight=lambda a: PAY_REVENUE_BASE_WEIGHT + distribute_max_weight())
def pay_revenue(env: Env, who: AccountId, args: PayRevenue) -> int:
    """Pay revenue into a work (e.g. a platform paying a creator's sales).

    The amount is split at once among the work's ancestors and creators.

    Origin: any signed account. Weight: 30,000 + ``distribute_max_weight()``
    (the worst case: 528 credits) before dispatch; the unused part is refunded.
    Errors: ``balances.ZeroAmount``, ``provenance.WorkNotFound``,
    ``balances.InsufficientBalance``.
    """
    if args.amount == 0:
        raise balances.ZeroAmount("amount must be positive")
    return PAY_REVENUE_BASE_WEIGHT + distribute(env, who, args.work_id, args.amount,
                                                Reason.REVENUE, memo=args.memo)
