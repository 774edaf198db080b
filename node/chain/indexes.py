"""Node-side listing indexes and earnings totals, built from each block's events.

The runtime never reads these for a decision, so they are not consensus state
and not part of the state trie: every node derives them from the events of its
best chain, on the store's indexer thread once a block is imported (see
:mod:`node.chain.indexer`, prefix ``i``), and a reorg reverts them with undo logs.
The RPC listing methods read them (``opus_listWorks``, ``opus_listTerms``, ``opus_listLicenses``,
``opus_listUsage``, ``opus_getEarnings``).

Each index keeps the key layout and value encoding the entries had when they
were state items, so ``<module>:<item>:`` + map key:

==============================  =============================================  ==========
index                           key after the prefix                           value
==============================  =============================================  ==========
``provenance:works_by_owner:``  owner(32) ++ be64(work_id)                     true
``licensing:terms_by_work:``    be64(work_id) ++ be64(terms_id)                true
``licensing:licenses_by_holder:``  account(32) ++ be64(license_id)             true
``licensing:licenses_by_work:`` be64(work_id) ++ be64(license_id)              true
``usage:usage_by_work:``        be64(work_id) ++ be64(usage_id)                true
``usage:usage_by_license:``     be64(license_id) ++ be64(usage_id)             true
``royalties:credits:``          account(32) ++ be64(seq)                       Credit
``royalties:credit_count:``     account(32)                                    u64
``royalties:earned:``           account(32)                                    u128
``royalties:work_revenue:``     be64(work_id)                                  u128
``royalties:work_paid_out:``    be64(work_id) ++ account(32)                   u128
``provenance:pdq_chunks:``      u8(i) ++ be16(chunk i) ++ be64(work_id)        bin(32)
==============================  =============================================  ==========

From the events (in block order): ``WorkRegistered`` adds the owner's entry, and for a
work with a PDQ soft binding its 16 ``pdq_chunks`` entries (:mod:`node.chain.similar`),
``WorkTransferred`` moves it; ``TermsOffered`` adds the work's terms entry;
``LicenseAcquired`` adds the holder's and the work's entries,
``LicenseTransferred`` moves the holder's; ``UsageRecorded`` adds the work's and
the license's entries; each ``Credited`` appends ``Credit{block, extrinsic_index,
source_work = work_id, via_work, amount, reason}`` to the account's history
(``seq = credit_count``, then ``credit_count + 1``), ``reason`` being that of the
``RoyaltyPaid`` event that precedes it. The earnings totals add up, saturating
at 2**128 - 1: ``RoyaltyPaid(work_id, amount)`` adds to ``work_revenue[work_id]``,
each ``Credited(account, work_id, amount)`` to ``earned[account]`` and
``work_paid_out[work_id ++ account]``. A failed extrinsic emits none of these
(its events are dropped with its changes), so the index matches what the same
calls used to write into state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from node.chain import similar
from runtime import codec
from runtime.codec import U32, U64, U128, Struct
from runtime.modules import licensing, provenance, royalties, usage
from runtime.modules.royalties import Reason
from runtime.support import EventRecord, StorageMap

__all__ = [
    "Credit",
    "credit_count",
    "credits",
    "genesis_index",
    "index_changes",
    "licenses_by_holder",
    "licenses_by_work",
    "terms_by_work",
    "usage_by_license",
    "usage_by_work",
    "works_by_owner",
]


@dataclass(frozen=True)
class Credit(Struct):
    """One entry of an account's credit history (from a ``royalties.Credited`` event)."""

    block: U64
    extrinsic_index: U32 | None
    source_work: U64  # the work the payment was made into
    via_work: U64  # the work whose share this is (the source or one of its ancestors)
    amount: U128
    reason: Reason


works_by_owner: StorageMap[bool] = StorageMap("provenance", "works_by_owner", bool)
terms_by_work: StorageMap[bool] = StorageMap("licensing", "terms_by_work", bool)
licenses_by_holder: StorageMap[bool] = StorageMap("licensing", "licenses_by_holder", bool)
licenses_by_work: StorageMap[bool] = StorageMap("licensing", "licenses_by_work", bool)
usage_by_work: StorageMap[bool] = StorageMap("usage", "usage_by_work", bool)
usage_by_license: StorageMap[bool] = StorageMap("usage", "usage_by_license", bool)
credits: StorageMap[Credit] = StorageMap("royalties", "credits", Credit)
credit_count: StorageMap[int] = StorageMap("royalties", "credit_count", U64)
earned: StorageMap[int] = StorageMap("royalties", "earned", U128)
work_revenue: StorageMap[int] = StorageMap("royalties", "work_revenue", U128)
work_paid_out: StorageMap[int] = StorageMap("royalties", "work_paid_out", U128)

INDEXES = (works_by_owner, terms_by_work, licenses_by_holder, licenses_by_work, usage_by_work,
           usage_by_license, credits, credit_count, earned, work_revenue, work_paid_out,
           similar.pdq_chunks)

TRUE = codec.pack(True)
_pack = codec.pack
_u128_to_wire, _u128_from_wire = codec.codec_for(U128)


_INDEXED_EVENTS = frozenset({
    royalties.Credited, royalties.RoyaltyPaid, provenance.WorkRegistered,
    provenance.WorkTransferred, licensing.TermsOffered, licensing.LicenseAcquired,
    licensing.LicenseTransferred, usage.UsageRecorded,
})


def _be64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def index_changes(
    get: Callable[[bytes], bytes | None], number: int, events: Iterable[EventRecord],
    before: dict[bytes, bytes | None] | None = None,
) -> dict[bytes, bytes | None]:
    """The index writes of block ``number`` with ``events`` (None deletes).

    ``get`` reads the index as it is before the block. If ``before`` is given, it
    receives the value before the block of every key written, and of no other
    (an undo log): the keys of new ids (works, terms, licenses, usage records,
    credit history entries) are absent by construction and are not read.
    """
    changes: dict[bytes, bytes | None] = {}
    old: dict[bytes, bytes | None] = {} if before is None else before
    counts: dict[bytes, int] = {}
    added: dict[bytes, int] = {}  # totals' index key -> what the block adds to it

    def read(key: bytes) -> bytes | None:
        if key in old:
            return old[key]
        raw = old[key] = get(key)
        return raw

    def move(gone: bytes, new: bytes) -> None:
        read(gone)
        read(new)
        changes[gone] = None
        changes[new] = TRUE

    # (The hot path, about one indexed event per extrinsic, is inlined: new keys
    # are absent before the block, ``old.setdefault(key, None)``.)
    reason: Reason = Reason.REVENUE
    wbo, tbw = works_by_owner.prefix, terms_by_work.prefix
    lbh, lbw = licenses_by_holder.prefix, licenses_by_work.prefix
    ubw, ubl = usage_by_work.prefix, usage_by_license.prefix
    cp, cc = credits.prefix, credit_count.prefix
    ep, wrp, wpp = earned.prefix, work_revenue.prefix, work_paid_out.prefix
    credited_type = royalties.Credited
    indexed = _INDEXED_EVENTS
    fresh = old.setdefault
    add = added.get
    for record in events:
        event = record.event
        kind = type(event)
        if kind not in indexed:  # most events (fees, outcomes, transfers) index nothing
            continue
        e: Any = event
        if kind is credited_type:
            account, amount = e.account, e.amount
            seq = counts.get(account)
            if seq is None:
                raw = read(cc + account)
                seq = 0 if raw is None else msgpack.unpackb(raw)
            # Credit{block, extrinsic_index, source_work, via_work, amount, reason}'s wire
            # form, built directly (the event's fields were checked when it was emitted).
            key = cp + account + seq.to_bytes(8, "big")
            fresh(key, None)
            changes[key] = _pack([number, record.extrinsic_index, e.work_id, e.via_work,
                                  _u128_to_wire(amount), reason])
            counts[account] = seq + 1
            key = ep + account
            added[key] = add(key, 0) + amount
            key = wpp + e.work_id.to_bytes(8, "big") + account
            added[key] = add(key, 0) + amount
        elif kind is royalties.RoyaltyPaid:
            reason = e.reason
            key = wrp + e.work_id.to_bytes(8, "big")
            added[key] = add(key, 0) + e.amount
        elif kind is provenance.WorkRegistered:
            key = wbo + e.owner + e.work_id.to_bytes(8, "big")
            fresh(key, None)
            changes[key] = TRUE
            if e.soft_binding is not None:  # (new keys: the work id is new)
                for key, value in similar.chunk_entries(e.work_id, e.soft_binding).items():
                    fresh(key, None)
                    changes[key] = value
        elif kind is licensing.LicenseAcquired:
            license_id = e.license_id.to_bytes(8, "big")
            key = lbh + e.licensee + license_id
            fresh(key, None)
            changes[key] = TRUE
            key = lbw + e.work_id.to_bytes(8, "big") + license_id
            fresh(key, None)
            changes[key] = TRUE
        elif kind is usage.UsageRecorded:
            usage_id = e.usage_id.to_bytes(8, "big")
            key = ubw + e.work_id.to_bytes(8, "big") + usage_id
            fresh(key, None)
            changes[key] = TRUE
            key = ubl + e.license_id.to_bytes(8, "big") + usage_id
            fresh(key, None)
            changes[key] = TRUE
        elif kind is licensing.TermsOffered:
            key = tbw + e.work_id.to_bytes(8, "big") + e.terms_id.to_bytes(8, "big")
            fresh(key, None)
            changes[key] = TRUE
        elif kind is provenance.WorkTransferred:
            move(wbo + e.old_owner + _be64(e.work_id), wbo + e.new_owner + _be64(e.work_id))
        elif kind is licensing.LicenseTransferred:
            move(lbh + e.old_holder + _be64(e.license_id),
                 lbh + e.new_holder + _be64(e.license_id))
    for account, count in counts.items():
        changes[cc + account] = _pack(count)
    # Amounts are never negative, so saturating once at the end is the same as
    # saturating after each addition.
    for key, amount in added.items():
        raw = read(key)
        total = amount if raw is None else _u128_from_wire(msgpack.unpackb(raw)) + amount
        changes[key] = _pack(_u128_to_wire(min(total, royalties.U128_MAX)))
    return changes


def genesis_index(state: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """The index of a genesis state (its works, terms, licenses and usage records).

    Genesis has no events: the entries are read off the records themselves. A
    (raw) genesis state that still holds index entries as state keys has them
    copied too.
    """
    out: dict[bytes, bytes] = {}
    prefixes = tuple(index.prefix for index in INDEXES)
    decoders = (
        (provenance.works.prefix, provenance.Work),
        (licensing.terms.prefix, licensing.Terms),
        (licensing.licenses.prefix, licensing.License),
        (usage.usage.prefix, usage.UsageRecord),
    )
    for key in sorted(state):
        value = state[key]
        if key.startswith(prefixes):
            out[key] = value
            continue
        for prefix, tp in decoders:
            if key.startswith(prefix):
                record = codec.from_wire(codec.unpack_trusted(value), tp)
                if tp is provenance.Work:
                    out[works_by_owner.key((record.owner, record.id))] = TRUE
                    out.update(similar.chunk_entries(record.id, record.soft_binding))
                elif tp is licensing.Terms:
                    out[terms_by_work.key((record.work_id, record.id))] = TRUE
                elif tp is licensing.License:
                    out[licenses_by_holder.key((record.licensee, record.id))] = TRUE
                    out[licenses_by_work.key((record.work_id, record.id))] = TRUE
                else:
                    out[usage_by_work.key((record.work_id, record.id))] = TRUE
                    out[usage_by_license.key((record.license_id, record.id))] = TRUE
                break
    return out
