"""``opus_*``: the chain's own data: accounts, works, license terms, licenses, earnings,
usage, events, transactions, provenance proofs and equivocations.

Lists are paged (``start``, ``limit``; the answer ``{"items", "next"}``) from the node-side
indexes (:mod:`node.chain.indexes`), the records read from the best block's state.
docs/rpc.md, "opus_*", gives every method's params and answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import trio

from client.api import address_of, header_to_json, to_json
from node.chain import indexes, similar
from node.rpc import invalid_params
from node.rpc.protocol import (
    MethodTable,
    Session,
    p_account,
    p_block,
    p_bytes,
    p_extrinsic,
    p_hash,
    p_options,
    p_page,
    p_uint,
)
from runtime import codec, executive
from runtime.codec import hex0x
from runtime.crypto import encode_address
from runtime.extrinsic import Extrinsic, decode_extrinsic
from runtime.modules import licensing, provenance, system, usage
from runtime.state import Overlay
from runtime.support import Env, EventRecord, StorageMap

if TYPE_CHECKING:
    from node.chain.store import ChainStore, IndexCursor

METHODS = MethodTable()

EARNINGS_SCAN_LIMIT = 10_000  # credits opus_getEarnings reads to find an account's works


def _ids_in(store: ChainStore, prefix: bytes, start: int, limit: int
            ) -> tuple[list[int], int | None]:
    """Ids (trailing u64 of index keys under ``prefix``) from ``start``, one page and the next.

    The listing indexes are node-side (:mod:`node.chain.indexes`), built from the events.
    """
    start_after = prefix + (start - 1).to_bytes(8, "big") if start > 0 else None
    ids: list[int] = []
    for key, _ in store.iter_index_prefix(prefix, start_after):
        ids.append(int.from_bytes(key[len(prefix):len(prefix) + 8], "big"))
        if len(ids) > limit:
            break
    return ids[:limit], (ids[limit] if len(ids) > limit else None)


def _page_of(session: Session, index: StorageMap[bool], owner_key: bytes, start: int,
             limit: int, load: Callable[[Any, int], Any]) -> dict[str, Any]:
    """A page of ``index``'s ids under ``owner_key``, each loaded from the best state."""
    store = session.node.store
    ids, next_id = _ids_in(store, index.prefix + owner_key, start, limit)
    state = store.best_state()
    items = [item for item in (load(state, i) for i in ids) if item is not None]
    return {"items": items, "next": next_id}


# ---------------------------------------------------------------------------
# Accounts, works, terms, licenses


@METHODS.rpc()
async def opus_accountInfo(s: Session, address: Any) -> dict[str, Any]:
    """An account's nonce, its next nonce (after its ready transactions in the pool) and its
    free balance."""
    who = p_account(address)
    info = system.account_info(s.node.store.best_state(), who)
    return {"address": encode_address(who), "nonce": info.nonce,
            "nextNonce": s.node.pool.next_nonce(who, info.nonce), "free": str(info.free)}


def _work(state: Any, work_id: int) -> dict[str, Any] | None:
    """A work's record as JSON; None if there is no such work."""
    work = provenance.works.get(state, work_id)
    return None if work is None else to_json(work)


@METHODS.rpc()
async def opus_getWork(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    """A registered work by id; null if there is none."""
    return _work(s.node.store.best_state(), p_uint(id, "id"))


@METHODS.rpc()
async def opus_getWorkByContentHash(s: Session, contentHash: Any) -> dict[str, Any] | None:  # noqa: N803
    """The work registered first with this content hash (sha256 of the file); null if none."""
    state = s.node.store.best_state()
    work_id = provenance.work_by_content.get(state, p_hash(contentHash, "contentHash"))
    return None if work_id is None else _work(state, work_id)


# At most this many content hashes in one opus_getWorksByContentHashes call: a ~140 KB request
# (the default limit is 1 MiB), and even if every hash is a work whose cheapest terms have the
# longest legal URI, all escapes (~3.9 KB an entry), the answer (~8 MB) stays under the 10 MiB
# default response limit.
MAX_CONTENT_HASHES = 2048
# opus_getWorksByContentHashes lets the node author and import between this many lookups.
LOOKUPS_PER_CHECKPOINT = 256


@METHODS.rpc()
async def opus_getWorksByContentHashes(s: Session, contentHashes: Any,  # noqa: N803
                                       options: Any = None) -> dict[str, Any]:
    """Many content hashes at once, for a dataset audit: ``{blockHash, blockNumber, works}``,
    ``works`` holding one entry per hash, in order (null if not registered).

    ``options`` ``{at?, licensee?}``: the block to answer at (default: the best block) and an
    account whose licenses to look for. Each hash is a few key lookups (docs/rpc.md):
    ``work_by_content``, the work, its terms (the ``terms_by_work`` index) and the licenses
    the licensee holds on it (``licenses_by_holder`` ∩ ``licenses_by_work``).
    """
    hashes = _content_hashes(contentHashes)
    opts = p_options(options, "options", ("at", "licensee"))
    block_hash = p_block(s, opts.get("at"), "at")
    licensee = p_account(opts["licensee"], "licensee") if "licensee" in opts else None
    store = s.node.store
    header = store.header(block_hash)
    assert header is not None
    state = store.state_at(block_hash, cache_reads=False)  # (the node's hot keys stay)
    works: list[dict[str, Any] | None] = []
    with store.index_cursor() as index:
        for i, content_hash in enumerate(hashes):
            if i and i % LOOKUPS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()  # a long call must not hold up the node
            work_id = provenance.work_by_content.get(state, content_hash)
            works.append(None if work_id is None else
                         _audited_work(index, state, header.number + 1, work_id, licensee))
    return {"blockHash": hex0x(block_hash), "blockNumber": header.number, "works": works}


def _content_hashes(value: Any) -> list[bytes]:
    """The ``contentHashes`` param: an array of at most MAX_CONTENT_HASHES hashes."""
    if not isinstance(value, list):
        raise invalid_params("contentHashes must be an array of 0x-hex SHA-256 hashes")
    if len(value) > MAX_CONTENT_HASHES:
        raise invalid_params(f"contentHashes: at most {MAX_CONTENT_HASHES} hashes a call, "
                             f"got {len(value)}")
    return [p_hash(h, f"contentHashes[{i}]") for i, h in enumerate(value)]


def _audited_work(index: IndexCursor, state: Any, next_block: int, work_id: int,
                  licensee: bytes | None) -> dict[str, Any] | None:
    """What an audit needs of a registered work: its owner, its live terms and the
    cheapest of them that allow AI training, and the licensee's license for training."""
    work = provenance.works.get(state, work_id)
    if work is None:  # the index of work_by_content points at a work: never happens
        return None
    return _audited_entry(index, state, next_block, work, licensee)


def _audited_entry(index: IndexCursor, state: Any, next_block: int, work: provenance.Work,
                   licensee: bytes | None) -> dict[str, Any]:
    """:func:`_audited_work`'s entry of a work record read already."""
    work_id = work.id
    live = [t for t in _work_terms(index, state, work_id) if _terms_live(t)]
    training = [t for t in live if t.ai_training != licensing.AiUse.NOT_ALLOWED]
    cheapest = min(training, key=_cheapness, default=None)
    entry: dict[str, Any] = {
        "workId": work_id,
        "owner": address_of(work.owner),
        "kind": work.kind.value,
        "registeredAt": work.registered_at,
        "liveTerms": len(live),
        "trainingTerms": None if cheapest is None else to_json(cheapest),
    }
    if licensee is not None:
        entry["trainingLicense"] = _training_license(index, state, next_block, work_id,
                                                     licensee)
    return entry


def _work_terms(index: IndexCursor, state: Any, work_id: int) -> list[licensing.Terms]:
    """The terms offered on a work as of ``state`` (the index is the best chain's: terms
    offered after that block are not in its state, and are left out)."""
    prefix = indexes.terms_by_work.prefix + work_id.to_bytes(8, "big")
    found = (licensing.terms.get(state, int.from_bytes(key[len(prefix):], "big"))
             for key in index.keys(prefix))
    return [t for t in found if t is not None]


def _terms_live(t: licensing.Terms) -> bool:
    """Whether a license can be acquired under these terms: not retired, not sold out
    (``licensing.acquire_license``'s checks)."""
    sold_out = (t.max_supply and t.minted >= t.max_supply) or t.minted >= licensing.U32_MAX
    return not t.retired and not sold_out


def _cheapness(t: licensing.Terms) -> tuple[int, int, int, int]:
    """The order "cheapest" means: the lowest fee, then AI training allowed before
    constrained, then the lowest royalty share, then the oldest terms."""
    return (t.minting_fee, -licensing.AI_RANK[t.ai_training], t.commercial_rev_share, t.id)


def _training_license(index: IndexCursor, state: Any, next_block: int, work_id: int,
                      licensee: bytes) -> int | None:
    """The id of the first license on the work that ``licensee`` holds, live in
    ``next_block``, whose terms allow AI training; None if there is none."""
    by_work = indexes.licenses_by_work.prefix + work_id.to_bytes(8, "big")
    by_holder = indexes.licenses_by_holder.prefix + licensee
    for license_id in _common_ids(index, by_work, by_holder):
        lic = licensing.licenses.get(state, license_id)
        if lic is None or lic.licensee != licensee or not licensing.is_live(lic, next_block):
            continue
        found = licensing.terms.get(state, lic.terms_id)
        if found is not None and found.ai_training != licensing.AiUse.NOT_ALLOWED:
            return license_id
    return None


def _common_ids(index: IndexCursor, prefix_a: bytes, prefix_b: bytes) -> Iterator[int]:
    """The ids under both index prefixes (keys ``prefix ++ be64(id)``), in order.

    A leapfrog join: each side seeks to the other's id, so the cost follows the smaller
    side (a work's few licenses, or a licensee's few), never a scan of the larger one.
    """
    a = _first_id(index, prefix_a, 0)
    while a is not None:
        b = _first_id(index, prefix_b, a)
        if b is None:
            return
        if b == a:
            yield a
            b += 1
        a = _first_id(index, prefix_a, b)


def _first_id(index: IndexCursor, prefix: bytes, start: int) -> int | None:
    """The first id at or after ``start`` under an index prefix, or None."""
    if start > licensing.U64_MAX:
        return None
    key = index.first_key(prefix, start.to_bytes(8, "big"))
    return None if key is None else int.from_bytes(key[len(prefix):len(prefix) + 8], "big")


# opus_exportRegistry: the works a page holds by default and at most. An entry is the
# opus_getWorksByContentHashes entry plus its content hash and fingerprint (~4 KB at most,
# with the longest legal URI, all escapes), so the largest page stays under the 10 MiB
# default response limit.
DEFAULT_EXPORT_PAGE = 1024
MAX_EXPORT_PAGE = 2048


@METHODS.rpc(object_param=True)
async def opus_exportRegistry(s: Session, query: Any) -> dict[str, Any]:
    """A page of the registry as of a block, for ``opus registry export``: ``{blockHash,
    blockNumber, genesisHash, total, works, next}``, ``works`` the works with ids from
    ``start`` on (ids are 1, 2, … in order of registration), each what
    ``opus_getWorksByContentHashes`` says of it plus its ``contentHash`` and PDQ
    ``fingerprint``/``quality``. ``query`` ``{at?, start?, limit?, licensee?}``."""
    opts = p_options(query, "query", ("at", "start", "limit", "licensee"))
    block_hash = p_block(s, opts.get("at"), "at")
    start = max(1, p_uint(opts.get("start", 1) or 1, "start"))
    limit = p_uint(opts.get("limit", DEFAULT_EXPORT_PAGE), "limit", MAX_EXPORT_PAGE) \
        or DEFAULT_EXPORT_PAGE
    licensee = p_account(opts["licensee"], "licensee") if "licensee" in opts else None
    store = s.node.store
    header = store.header(block_hash)
    assert header is not None
    state = store.state_at(block_hash, cache_reads=False)  # (the node's hot keys stay)
    total = provenance.next_work_id.get(state) - 1  # works at ``at``: ids 1..total
    end = min(total, start + limit - 1)
    works: list[dict[str, Any]] = []
    with store.index_cursor() as index:
        for work_id in range(start, end + 1):
            if work_id > start and (work_id - start) % LOOKUPS_PER_CHECKPOINT == 0:
                await trio.lowlevel.checkpoint()  # a long call must not hold up the node
            work = provenance.works.get(state, work_id)
            if work is not None:  # (ids below next_work_id are all works: never None)
                works.append(_exported_work(index, state, header.number + 1, work,
                                            licensee))
    return {"blockHash": hex0x(block_hash), "blockNumber": header.number,
            "genesisHash": hex0x(s.node.genesis.hash), "total": total, "works": works,
            "next": end + 1 if end < total else None}


def _exported_work(index: IndexCursor, state: Any, next_block: int, work: provenance.Work,
                   licensee: bytes | None) -> dict[str, Any]:
    """A work's registry entry: :func:`_audited_entry`'s, with its content hash and PDQ
    fingerprint (null if it has none)."""
    entry = _audited_entry(index, state, next_block, work, licensee)
    binding = work.soft_binding
    pdq = binding is not None and binding.algorithm == provenance.PDQ \
        and len(binding.value) == similar.FINGERPRINT_BYTES
    entry["contentHash"] = hex0x(work.content_hash)
    entry["fingerprint"] = hex0x(binding.value) if pdq and binding is not None else None
    entry["quality"] = binding.quality if pdq and binding is not None else None
    return entry


# At most this many works in an opus_findSimilarWorks answer (the nearest ones).
MAX_SIMILAR_WORKS = 100


@METHODS.rpc()
async def opus_findSimilarWorks(s: Session, fingerprint: Any, maxDistance: Any,  # noqa: N803
                                at: Any = None) -> dict[str, Any]:
    """The works whose PDQ fingerprint (soft binding) is within ``maxDistance`` bits of
    ``fingerprint``: ``{blockHash, blockNumber, works: [{workId, distance, …}], candidates,
    complete}``, nearest first, at most MAX_SIMILAR_WORKS. Multi-index hashing over the
    node-side index (:mod:`node.chain.similar`), never a scan."""
    value = p_bytes(fingerprint, "fingerprint", similar.FINGERPRINT_BYTES)
    distance = p_uint(maxDistance, "maxDistance", similar.MAX_DISTANCE)
    block_hash = p_block(s, at, "at")
    store = s.node.store
    header = store.header(block_hash)
    assert header is not None
    with store.index_cursor() as index:
        found, candidates, complete = similar.search(index, value, distance)
    # The index is the best chain's: a work it names that the state at ``at`` lacks was
    # registered after ``at`` (or on another branch), and is left out.
    state = store.state_at(block_hash)
    works: list[dict[str, Any]] = []
    for d, work_id, _ in found:
        work = provenance.works.get(state, work_id)
        if work is None:
            continue
        works.append({"workId": work_id, "distance": d, "owner": address_of(work.owner),
                      "title": work.title, "kind": work.kind.value,
                      "contentHash": hex0x(work.content_hash),
                      "registeredAt": work.registered_at,
                      "fingerprint": hex0x(work.soft_binding.value)
                      if work.soft_binding is not None else None,
                      "quality": work.soft_binding.quality
                      if work.soft_binding is not None else None})
        if len(works) >= MAX_SIMILAR_WORKS:
            break
    return {"blockHash": hex0x(block_hash), "blockNumber": header.number, "works": works,
            "candidates": candidates, "complete": complete}


@METHODS.rpc(object_param=True)
async def opus_listWorks(s: Session, query: Any) -> dict[str, Any]:
    """A page of the works an account owns: ``{owner, start?, limit?}``."""
    options = p_options(query, "query", ("owner", "start", "limit"))
    if "owner" not in options:
        raise invalid_params("query.owner is required")
    owner = p_account(options["owner"], "owner")
    start, limit = p_page(options)
    return _page_of(s, indexes.works_by_owner, owner, start, limit, _work)


def _terms(state: Any, terms_id: int) -> dict[str, Any] | None:
    """License terms as JSON; None if there are no such terms."""
    found = licensing.terms.get(state, terms_id)
    return None if found is None else to_json(found)


@METHODS.rpc()
async def opus_getTerms(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    """License terms by id; null if there are none."""
    return _terms(s.node.store.best_state(), p_uint(id, "id"))


@METHODS.rpc(object_param=True)
async def opus_listTerms(s: Session, query: Any) -> dict[str, Any]:
    """A page of the license terms offered on a work: ``{work, start?, limit?}``."""
    options = p_options(query, "query", ("work", "start", "limit"))
    if "work" not in options:
        raise invalid_params("query.work is required")
    work_id = p_uint(options["work"], "work")
    start, limit = p_page(options)
    return _page_of(s, indexes.terms_by_work, work_id.to_bytes(8, "big"), start, limit,
                    _terms)


def license_json(lic: licensing.License, next_block: int) -> dict[str, Any]:
    """A license as JSON, with ``live``: whether it is valid in block ``next_block``."""
    out: dict[str, Any] = to_json(lic)
    out["live"] = licensing.is_live(lic, next_block)
    return out


@METHODS.rpc()
async def opus_getLicense(s: Session, id: Any) -> dict[str, Any] | None:  # noqa: A002
    """A license by id, with whether it is live in the next block; null if there is none."""
    lic = licensing.licenses.get(s.node.store.best_state(), p_uint(id, "id"))
    return None if lic is None else license_json(lic, s.node.best.number + 1)


@METHODS.rpc(object_param=True)
async def opus_listLicenses(s: Session, query: Any) -> dict[str, Any]:
    """A page of the licenses an account holds or a work was licensed under:
    ``{licensee | work, start?, limit?}``."""
    options = p_options(query, "query", ("licensee", "work", "start", "limit"))
    if ("licensee" in options) == ("work" in options):
        raise invalid_params("give exactly one of query.licensee and query.work")
    if "licensee" in options:
        index, owner_key = indexes.licenses_by_holder, p_account(options["licensee"],
                                                                 "licensee")
    else:
        index, owner_key = indexes.licenses_by_work, p_uint(options["work"],
                                                            "work").to_bytes(8, "big")
    start, limit = p_page(options)
    next_block = s.node.best.number + 1

    def load(state: Any, license_id: int) -> dict[str, Any] | None:
        lic = licensing.licenses.get(state, license_id)
        return None if lic is None else license_json(lic, next_block)

    return _page_of(s, index, owner_key, start, limit, load)


# ---------------------------------------------------------------------------
# Earnings and usage


def _credits(store: ChainStore, who: bytes, start: int
             ) -> Iterator[tuple[int, indexes.Credit]]:
    """An account's credits (royalty payments to it) from sequence number ``start`` on."""
    prefix = indexes.credits.prefix + who
    start_after = prefix + (start - 1).to_bytes(8, "big") if start > 0 else None
    for key, value in store.iter_index_prefix(prefix, start_after):
        seq = int.from_bytes(key[len(prefix):], "big")
        yield seq, codec.from_wire(codec.unpack(value), indexes.Credit)


def _credit_json(seq: int, credit: indexes.Credit) -> dict[str, Any]:
    """A credit as JSON, with its sequence number."""
    out: dict[str, Any] = {"seq": seq}
    out.update(to_json(credit))
    return out


def _credit_count(store: ChainStore, who: bytes) -> int:
    """How many credits an account has received."""
    raw = store.index_get(indexes.credit_count.key(who))
    return 0 if raw is None else int(codec.unpack(raw))


def _index_total(store: ChainStore, key: bytes) -> int:
    """An earnings total of the node-side index (absent: 0)."""
    raw = store.index_get(key)
    return 0 if raw is None else int(codec.from_wire(codec.unpack(raw), codec.U128))


def _earned_by_work(store: ChainStore, who: bytes) -> tuple[list[dict[str, Any]], bool]:
    """What each work paid ``who``, and whether every work was found.

    The totals are the node-side index's, by the work paid into; which works paid is found
    in the account's first :data:`EARNINGS_SCAN_LIMIT` credits.
    """
    works: dict[int, None] = {}
    scanned = 0
    for _, credit in _credits(store, who, 0):
        works[credit.source_work] = None
        scanned += 1
        if scanned >= EARNINGS_SCAN_LIMIT:
            break
    amounts = [
        {"workId": w, "amount": str(_index_total(store, indexes.work_paid_out.key((w, who))))}
        for w in sorted(works)
    ]
    return amounts, scanned < EARNINGS_SCAN_LIMIT


def _credit_page(store: ChainStore, who: bytes, work: int | None, start: int, limit: int
                 ) -> tuple[list[dict[str, Any]], int | None]:
    """A page of ``who``'s credits (those paid into or through ``work`` if given), and the
    sequence number the next page starts at."""
    history: list[dict[str, Any]] = []
    for seq, credit in _credits(store, who, start):
        if work is not None and work not in (credit.source_work, credit.via_work):
            continue
        if len(history) == limit:
            return history, seq
        history.append(_credit_json(seq, credit))
    return history, None


@METHODS.rpc()
async def opus_getEarnings(s: Session, address: Any, options: Any = None) -> dict[str, Any]:
    """An account's royalty earnings: its total, per work, and a page of its credits;
    ``options`` ``{work?, start?, limit?}`` adds that work's revenue and keeps its credits."""
    who = p_account(address)
    opts = p_options(options, "options", ("work", "start", "limit"))
    start, limit = p_page(opts)
    work = p_uint(opts["work"], "work") if "work" in opts else None
    store = s.node.store
    result: dict[str, Any] = {
        "account": encode_address(who),
        "total": str(_index_total(store, indexes.earned.key(who))),
        "creditCount": _credit_count(store, who),
    }
    result["works"], result["worksComplete"] = _earned_by_work(store, who)
    if work is not None:
        result["work"] = {
            "workId": work,
            "revenue": str(_index_total(store, indexes.work_revenue.key(work))),
            "paidToAccount": str(_index_total(store, indexes.work_paid_out.key((work, who)))),
        }
    result["credits"], result["next"] = _credit_page(store, who, work, start, limit)
    return result


@METHODS.rpc(object_param=True)
async def opus_listUsage(s: Session, query: Any) -> dict[str, Any]:
    """A page of the usage recorded for a work or under a license:
    ``{work | license, start?, limit?}``."""
    options = p_options(query, "query", ("work", "license", "start", "limit"))
    if ("work" in options) == ("license" in options):
        raise invalid_params("give exactly one of query.work and query.license")
    if "work" in options:
        index, owner = indexes.usage_by_work, p_uint(options["work"], "work")
    else:
        index, owner = indexes.usage_by_license, p_uint(options["license"], "license")
    start, limit = p_page(options)

    def load(state: Any, usage_id: int) -> dict[str, Any] | None:
        record = usage.usage.get(state, usage_id)
        return None if record is None else to_json(record)

    return _page_of(s, index, owner.to_bytes(8, "big"), start, limit, load)


# ---------------------------------------------------------------------------
# Events, transactions, proofs, equivocations


def event_to_json(record: EventRecord) -> dict[str, Any]:
    """An event with the index of the extrinsic that emitted it."""
    event = record.event
    return {"extrinsicIndex": record.extrinsic_index, "module": event.module,
            "name": type(event).__name__, "data": to_json(event)}


@METHODS.rpc()
async def opus_getEvents(s: Session, hash: Any = None) -> list[dict[str, Any]] | None:  # noqa: A002
    """A block's events (default: the best block's); null for an unknown block."""
    store = s.node.store
    events = store.events(store.best_hash if hash is None else p_hash(hash))
    return None if events is None else [event_to_json(r) for r in events]


@METHODS.rpc()
async def opus_getTransaction(s: Session, hash: Any) -> dict[str, Any] | None:  # noqa: A002
    """Where a transaction is: in the pool (ready/future) or in a best-chain block, with its
    outcome and events; null if the node knows nothing of it (never seen, dropped, invalid)."""
    tx_hash = p_hash(hash)
    node = s.node
    store = node.store
    location = store.tx_location(tx_hash)
    if location is None:
        if node.pool.contains(tx_hash):
            status = "ready" if node.pool.is_ready(tx_hash) else "future"
            return {"hash": hex0x(tx_hash), "status": status}
        return None
    header = store.header(location.block_hash)
    assert header is not None
    records = [r for r in store.events(location.block_hash) or ()
               if r.extrinsic_index == location.index]
    outcome = next((r.event for r in records
                    if isinstance(r.event, system.ExtrinsicSuccess | system.ExtrinsicFailed)),
                   None)
    failed = isinstance(outcome, system.ExtrinsicFailed)
    return {
        "hash": hex0x(tx_hash),
        "status": "finalized" if header.number <= node.finalized.number else "inBlock",
        "blockHash": hex0x(location.block_hash),
        "blockNumber": header.number,
        "index": location.index,
        "success": not failed,
        "error": outcome.error if isinstance(outcome, system.ExtrinsicFailed) else None,
        "detail": outcome.detail if isinstance(outcome, system.ExtrinsicFailed) else None,
        "fee": str(outcome.fee) if outcome is not None else None,
        "events": [event_to_json(r) for r in records],
    }


@METHODS.rpc()
async def opus_getProvenanceProof(s: Session, id: Any, block: Any = None  # noqa: A002
                                  ) -> dict[str, Any] | None:
    """A work's record with a read proof of its state entries against a block's state root."""
    work_id = p_uint(id, "id")
    node = s.node
    store = node.store
    block_hash = p_block(s, block)
    header = store.header(block_hash)
    assert header is not None
    work = provenance.works.get(store.state_at(block_hash), work_id)
    if work is None:
        return None
    keys = [provenance.works.key(work_id), provenance.work_by_content.key(work.content_hash)]
    proof = await trio.to_thread.run_sync(store.prove, keys, block_hash)
    return {
        "workId": work_id,
        "work": to_json(work),
        "blockHash": hex0x(block_hash),
        "header": header_to_json(header),
        "stateRoot": hex0x(header.state_root),
        "finalized": header.number <= node.finalized.number and store.is_canonical(block_hash),
        "genesisHash": hex0x(node.genesis.hash),
        "keys": [hex0x(k) for k in keys],
        "proof": [hex0x(n) for n in proof],
    }


@METHODS.rpc()
async def opus_getEquivocations(s: Session) -> list[dict[str, Any]]:
    """The equivocations this node saw: two blocks by one author in one slot."""
    out = []
    for record in list(s.node.equivocations):
        author = record.get("author", "")
        try:
            author = encode_address(bytes.fromhex(author))
        except ValueError:
            pass
        out.append({"slot": record.get("slot"), "author": author,
                    "blocks": ["0x" + h for h in record.get("blocks", [])]})
    return out


# ---------------------------------------------------------------------------
# Dry runs

MAX_DRY_RUN = 256  # extrinsics one opus_dryRun may apply
DRY_RUNS_PER_CHECKPOINT = 16  # opus_dryRun lets the node author and import between these


@METHODS.rpc()
async def opus_dryRun(s: Session, extrinsics: Any) -> list[dict[str, Any]]:
    """Apply signed extrinsics, in order, to a scratch copy of the best state as the next
    block would (each one sees the previous ones' effects), keep nothing, and return each
    one's outcome: ``{valid: false, error, detail}`` if it may not enter a block (e.g.
    ``CannotPayFee``, ``FutureNonce``), else ``{valid: true, success, error?, detail?, fee}``
    (its call's named error, e.g. ``licensing.SupplySoldOut``, and the fee it would pay).

    At most MAX_DRY_RUN extrinsics whose weights add up to at most a block's: a dry run
    costs the node no more than importing one block, and is free to the caller."""
    if not isinstance(extrinsics, list) or len(extrinsics) > MAX_DRY_RUN:
        raise invalid_params(f"extrinsics must be an array of at most {MAX_DRY_RUN} 0x-hex "
                             "signed extrinsics")
    decoded = [_decoded(p_extrinsic(e, f"extrinsics[{i}]")) for i, e in enumerate(extrinsics)]
    weight = sum(executive.call_weight(ext) for _, ext in decoded if not isinstance(ext, str))
    if weight > executive.MAX_BLOCK_WEIGHT:
        raise invalid_params(f"the extrinsics weigh {weight}, more than a block's "
                             f"{executive.MAX_BLOCK_WEIGHT}: dry-run fewer at a time")
    node = s.node
    env = executive.initialize_block(Overlay(node.store.best_state()), node.next_block_info())
    outcomes = []
    for index, (raw, ext) in enumerate(decoded):
        if index and index % DRY_RUNS_PER_CHECKPOINT == 0:
            await trio.lowlevel.checkpoint()
        outcomes.append(_dry_run(env, raw, ext, index, node.genesis.hash))
    return outcomes


def _decoded(raw: bytes) -> tuple[bytes, Extrinsic | str]:
    """An extrinsic's bytes and the extrinsic, or why they do not decode."""
    try:
        return raw, decode_extrinsic(raw)
    except codec.DecodeError as e:
        return raw, str(e)[:512]


def _dry_run(env: Env, raw: bytes, ext: Extrinsic | str, index: int, genesis_hash: bytes
             ) -> dict[str, Any]:
    """One extrinsic applied in ``env`` (see :func:`opus_dryRun`)."""
    if isinstance(ext, str):
        return {"valid": False, "error": "Malformed", "detail": ext}
    mark = env.events.mark()
    try:
        outcome = executive.apply_extrinsic(env, ext, len(raw), index, genesis_hash)
    except executive.InvalidTransaction as e:
        return {"valid": False, "error": e.error_name(), "detail": str(e)[:512]}
    failed = [r.event for r in env.events[mark[0]:]
              if isinstance(r.event, system.ExtrinsicFailed)]
    return {"valid": True, "success": outcome.error is None, "error": outcome.error,
            "detail": failed[0].detail if failed else None, "fee": str(outcome.fee)}
