"""Usage: licensees record on chain how they used a work, under a license that allows it.

A usage record says who used which work, under which license, for what
purpose (AI training, AI inference, a derivative, a publication, other), on
what subject (e.g. the model or dataset name), how many units, and when. It is
accepted only from the licensee, only under a live license, and only if the
license's terms allow the purpose:

==============  ==========================================================
purpose         required of the terms
==============  ==========================================================
ai_training     ``ai_training`` is allowed or constrained
ai_inference    ``ai_inference`` is allowed or constrained
derivative      ``derivatives_allowed`` (and, if the terms require
                approval, the license approved for derivatives)
publication     any live license
other           any live license
==============  ==========================================================

Choices where the design is silent: a derivative use under terms that require
approval needs the approval too (``provenance.DerivativeNotApproved``), the
same rule as registering a derivative; zero units are accepted (a publication
has no natural unit); recording usage moves no value (prices are paid through
the license's minting fee and ``royalties.pay_revenue``). A batch is
all-or-nothing: the first refused entry fails the whole call with that entry's
error, its message starting with ``entry <index>:``.

Storage
  ``usage``             usage id -> UsageRecord
  ``next_usage_id``     the id the next record gets (ids start at 1)
  (Listing usage by work or license is a node-side index built from the events.)
Events
  ``UsageRecorded(usage_id, license_id, work_id, licensee, purpose, units)``
Errors
  ``PurposeNotAllowed``, ``EmptyBatch``, ``TooManyEntries``; raised from other modules:
  ``licensing.LicenseNotFound``, ``licensing.LicenseExpired``, ``licensing.NotLicensee``,
  ``provenance.DerivativeNotApproved``.
Calls
  ``record_usage(license_id, purpose, subject, units, memo)``: the licensee; weight 100,000.
  ``record_usage_batch(entries)``: the licensee of every entry; weight 40,000 + 60,000 per
  entry (at most MAX_BATCH = 64).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from runtime.codec import U64, Struct, Text, Tuple, frozen_dataclass
from runtime.modules import licensing, provenance
from runtime.support import AccountId, DispatchError, Env, Event, Module, StorageMap, StorageValue

NAME = "usage"
# Config
MAX_BATCH = 64
MAX_SUBJECT = 256
MAX_MEMO = 256
# Weights (reference ns; a balance transfer is 20,000): an entry reads the
# license and its terms and writes the record and a counter (charged as when it
# also wrote two listing indexes, which nodes now build from the events).
BASE_WEIGHT = 40_000
RECORD_WEIGHT = 60_000

Subject = Annotated[str, Text(MAX_SUBJECT)]
Memo = Annotated[str, Text(MAX_MEMO)]


class Purpose(StrEnum):
    AI_TRAINING = "ai_training"
    AI_INFERENCE = "ai_inference"
    DERIVATIVE = "derivative"
    PUBLICATION = "publication"
    OTHER = "other"


@frozen_dataclass
class UsageRecord(Struct):
    id: U64
    license_id: U64
    work_id: U64
    licensee: AccountId
    purpose: Purpose
    subject: Subject
    units: U64
    memo: Memo
    block: U64


# Storage
usage: StorageMap[UsageRecord] = StorageMap(NAME, "usage", UsageRecord)
next_usage_id: StorageValue[int] = StorageValue(NAME, "next_usage_id", U64, 1)


# Events
@frozen_dataclass
class UsageRecorded(Event):
    module = NAME
    usage_id: U64
    license_id: U64
    work_id: U64
    licensee: AccountId
    purpose: Purpose
    units: U64


# Errors
class Error(DispatchError):
    module = NAME


class PurposeNotAllowed(Error):
    """The license's terms do not allow this purpose (the message names it)."""


class EmptyBatch(Error):
    """A batch needs at least one entry."""


class TooManyEntries(Error):
    """A batch of more than MAX_BATCH entries."""


def purpose_allowed(terms: licensing.Terms, purpose: Purpose) -> bool:
    """Whether ``terms`` allow using the work for ``purpose`` (see the module docstring)."""
    if purpose == Purpose.AI_TRAINING:
        return terms.ai_training != licensing.AiUse.NOT_ALLOWED
    if purpose == Purpose.AI_INFERENCE:
        return terms.ai_inference != licensing.AiUse.NOT_ALLOWED
    if purpose == Purpose.DERIVATIVE:
        return terms.derivatives_allowed
    return True


module = Module(NAME)


@frozen_dataclass
class RecordUsage(Struct):
    license_id: U64
    purpose: Purpose
    subject: Subject
    units: U64
    memo: Memo


def _record(env: Env, who: bytes, entry: RecordUsage) -> None:
    state = env.state
    lic, terms = licensing.live_license(state, entry.license_id, env.block.number)
    if lic.licensee != who:
        raise licensing.NotLicensee(f"the signer does not hold license #{lic.id}")
    if not purpose_allowed(terms, entry.purpose):
        raise PurposeNotAllowed(
            f"purpose {entry.purpose.value} is not allowed by terms #{terms.id} "
            f"of work #{lic.work_id}"
        )
    if entry.purpose == Purpose.DERIVATIVE and terms.derivatives_approval and not (
        lic.derivative_approved
    ):
        raise provenance.DerivativeNotApproved(
            f"license #{lic.id} is not approved for derivatives of work #{lic.work_id}"
        )
    usage_id = next_usage_id.get(state)
    next_usage_id.put(state, usage_id + 1)
    usage.put(state, usage_id, UsageRecord(
        usage_id, lic.id, lic.work_id, who, entry.purpose, entry.subject, entry.units,
        entry.memo, env.block.number,
    ))
    env.emit(UsageRecorded(usage_id, lic.id, lic.work_id, who, entry.purpose, entry.units))


@module.call(RecordUsage, weight=lambda a: BASE_WEIGHT + RECORD_WEIGHT)
def record_usage(env: Env, who: AccountId, args: RecordUsage) -> None:
    """Record one use of a licensed work.

    Origin: the licensee. Weight: 100,000.
    Errors: ``licensing.LicenseNotFound``, ``licensing.LicenseExpired``,
    ``licensing.NotLicensee``, ``PurposeNotAllowed``, ``provenance.DerivativeNotApproved``.
    """
    _record(env, who, args)


@frozen_dataclass
class RecordUsageBatch(Struct):
    entries: Annotated[tuple[RecordUsage, ...], Tuple(MAX_BATCH)]


@module.call(RecordUsageBatch,
             weight=lambda a: BASE_WEIGHT + RECORD_WEIGHT * len(a.entries))
def record_usage_batch(env: Env, who: AccountId, args: RecordUsageBatch) -> None:
    """Record up to MAX_BATCH uses at once (e.g. every work in a training dataset).

    All or nothing: any refused entry fails the whole call with that entry's
    error, the message starting with ``entry <index>:``.

    Origin: the licensee of every entry. Weight: 40,000 + 60,000 per entry.
    Errors: ``EmptyBatch``, ``TooManyEntries``, and any of ``record_usage``'s.
    """
    if not args.entries:
        raise EmptyBatch("the batch has no entries")
    if len(args.entries) > MAX_BATCH:
        raise TooManyEntries(f"{len(args.entries)} entries exceeds {MAX_BATCH}")
    for index, entry in enumerate(args.entries):
        try:
            _record(env, who, entry)
        except DispatchError as e:
            raise type(e)(f"entry {index}: {e}") from None
