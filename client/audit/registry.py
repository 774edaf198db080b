"""The registry as of a block, as one parquet file: an audit past one machine is a join.

DataComp CommonPool alone is 12.8 billion rows: far beyond what any node's RPC can answer.
So the registry comes to the data instead:

* :func:`export_registry` (``opus registry export --at BLOCK --out registry.parquet``)
  pages through every work as of a block (``opus_exportRegistry``, a few pages in flight)
  and writes one row a work, :data:`ROWS_PER_GROUP` rows at a time (never every work in
  memory): its content hash, PDQ fingerprint, work id, owner and the terms that apply to AI
  training (what ``opus_getWorksByContentHashes`` says of it, :data:`SCHEMA`). The file's
  key-value metadata ``opus-registry`` (:class:`RegistryInfo`) names the block (hash and
  number) and the chain (genesis hash), so that every row of an audit against it can be
  proved later (``opus proof WORK_ID --block HASH``).
* :class:`Registry` reads such a file back (:func:`open_registry`, a
  :class:`RegistryError` naming what is wrong) and is a :data:`~client.audit.classify.
  Lookup`: a hash join, in memory, of content hashes against the registry's, each match
  turned into the same :class:`~client.audit.classify.Registered` as the node's answer,
  so :func:`~client.audit.classify.audit_rows` classifies the rows with the very code of
  the node-backed audit and gives the same rows.
* :func:`audit_shard` is the audit of one shard: a plain function (shard in, report rows
  out) for a distributed engine to map over thousands of shards; :func:`dask_audit` does
  that with ``dask.distributed`` (``opus audit --registry R --dask ADDRESS``).

A licensee's licenses are a property of the licensee, not of the registry: a registry
exported with ``--licensee ADDR`` holds, for each work, that account's license for training
(``license_id``), and an audit against it reports that licensee's ``licensed`` items. An
audit against a registry is always for the registry's licensee (none: nothing is
``licensed``); asking for another is a :class:`RegistryError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from client.audit.classify import AuditRow, Offer, Registered, audit_rows
from client.audit.inputs import Manifest, open_manifest, open_shard
from client.errors import ClientError
from client.fingerprint import Fingerprint
from client.pipeline import ordered_map
from client.rpc import OpusClient

__all__ = ["FORMAT", "METADATA_KEY", "SCHEMA", "Registry", "RegistryError", "RegistryInfo",
           "audit_manifest", "audit_shard", "dask_audit", "export_registry", "open_registry"]

FORMAT = "opus-registry/1"
METADATA_KEY = b"opus-registry"
PAGE_WORKS = 2048  # works a page of opus_exportRegistry (the node's most)
PAGES_IN_FLIGHT = 4
MAX_SIMILAR_WORKS = 100  # works a near-duplicate lookup answers, nearest first (the node's)
ROWS_PER_GROUP = 64 * 1024  # rows the export writes at a time (a parquet row group)
EXPORT_TIMEOUT_S = 120.0

# One row a work. ``fee`` is a u128: a decimal string. The terms columns are null when no
# live terms allow AI training; ``license_id`` is the licensee's license for training.
SCHEMA = pa.schema([
    ("content_hash", pa.string()),  # 64 lower-case hex digits (the audit's sha256)
    ("work_id", pa.uint64()), ("owner", pa.string()), ("kind", pa.string()),
    ("registered_at", pa.uint64()),
    ("pdq", pa.binary(32)), ("pdq_quality", pa.uint8()),
    ("live_terms", pa.uint32()),
    ("terms_id", pa.uint64()), ("ai_training", pa.string()), ("fee", pa.string()),
    ("royalty_bps", pa.uint16()), ("expiry_blocks", pa.uint64()), ("supply_left", pa.uint32()),
    ("legal_uri", pa.string()), ("license_id", pa.uint64()),
])
_HEX_HASH = "^[0-9a-f]{64}$"


class RegistryError(ClientError):
    """A registry file that is missing, malformed or not for this audit, or a node whose
    export pages do not fit together."""


@dataclass(frozen=True)
class RegistryInfo:
    """What a registry file says about itself (its ``opus-registry`` metadata)."""

    block_hash: str  # 0x-hex
    block_number: int
    genesis_hash: str  # 0x-hex: the chain
    licensee: str | None  # whose licenses ``license_id`` holds (None: nobody's)
    works: int

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "blockHash": self.block_hash,
                "blockNumber": self.block_number, "genesisHash": self.genesis_hash,
                "licensee": self.licensee, "works": self.works}

    @classmethod
    def from_json(cls, data: Any) -> RegistryInfo:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}"
                             f", expected {FORMAT!r}")
        licensee = data["licensee"]
        return cls(str(data["blockHash"]), int(data["blockNumber"]),
                   str(data["genesisHash"]), None if licensee is None else str(licensee),
                   int(data["works"]))


# ---------------------------------------------------------------------------
# Export


def export_registry(url: str, out: Path | str, *, at: bytes | None = None,
                    licensee: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> RegistryInfo:
    """Write the registry as of block ``at`` (default: the best block now) to ``out``.

    ``progress(done, total)`` is called after each page written. The file is written next
    to ``out`` under a hidden name and renamed into place once complete, so a failed
    export leaves nothing (and never half a registry) at ``out``.
    """
    target = Path(out)
    client = OpusClient(url, timeout=EXPORT_TIMEOUT_S)
    try:
        first = client.export_registry(at=at, start=1, limit=PAGE_WORKS, licensee=licensee)
    finally:
        client.close()
    block = bytes.fromhex(str(first["blockHash"])[2:])
    total = int(first["total"])
    info = RegistryInfo(str(first["blockHash"]), int(first["blockNumber"]),
                        str(first["genesisHash"]), licensee, total)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        writer = pq.ParquetWriter(part, SCHEMA)
    except (OSError, pa.ArrowException) as e:
        raise RegistryError(f"cannot write {str(target)!r}: {_reason(e)}") from None
    try:
        pending: list[pa.RecordBatch] = []
        held = done = 0
        for page in _pages(url, first, block, licensee):
            batch = _record_batch(_page_rows(page, info, done + 1))
            done += batch.num_rows
            pending.append(batch)
            held += batch.num_rows
            if held >= ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_batches(pending, SCHEMA))
                pending, held = [], 0
            if progress is not None:
                progress(done, total)
        if pending:
            writer.write_table(pa.Table.from_batches(pending, SCHEMA))
        if done != total:
            raise RegistryError(f"the node's export ended after {done} of {total} works")
        writer.add_key_value_metadata({METADATA_KEY.decode(): json.dumps(info.to_json())})
        writer.close()
        os.replace(part, target)
    except BaseException as e:
        with contextlib.suppress(OSError, pa.ArrowException):
            writer.close()
        with contextlib.suppress(OSError):
            part.unlink()
        if isinstance(e, OSError | pa.ArrowException):
            raise RegistryError(f"cannot write {str(target)!r}: {_reason(e)}") from None
        raise
    return info


def _reason(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def _pages(url: str, first: dict[str, Any], block: bytes, licensee: str | None
           ) -> Iterator[dict[str, Any]]:
    """Every page of the export in order, the first one given, :data:`PAGES_IN_FLIGHT`
    pages asked for at a time (each thread on a connection of its own)."""
    yield first
    total = int(first["total"])
    starts = iter(range(1 + PAGE_WORKS, total + 1, PAGE_WORKS))

    def fetch(start: int) -> dict[str, Any]:
        client = OpusClient(url, timeout=EXPORT_TIMEOUT_S)
        try:
            return client.export_registry(at=block, start=start, limit=PAGE_WORKS,
                                          licensee=licensee)
        finally:
            client.close()

    yield from ordered_map(fetch, starts, in_flight=PAGES_IN_FLIGHT, name="opus-export")


def _page_rows(page: dict[str, Any], info: RegistryInfo, first_id: int
               ) -> list[tuple[Any, ...]]:
    """A page's works as registry rows, checked to be the page asked for."""
    if page.get("blockHash") != info.block_hash or page.get("genesisHash") != info.genesis_hash \
            or page.get("total") != info.works or not isinstance(page.get("works"), list):
        raise RegistryError("the node answered opus_exportRegistry for another block or chain")
    rows = []
    try:
        for i, entry in enumerate(page["works"]):
            found = Registered.from_json(entry)
            if found.work_id != first_id + i:
                raise RegistryError(f"the node's export skipped work #{first_id + i}")
            content_hash = str(entry["contentHash"])
            fingerprint = entry.get("fingerprint")
            rows.append(_row(content_hash[2:], found, entry["kind"], entry["registeredAt"],
                             None if fingerprint is None else bytes.fromhex(fingerprint[2:]),
                             entry.get("quality")))
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(f"a malformed entry in the node's export: {e!r}") from None
    return rows


def _row(content_hash: str, found: Registered, kind: str, registered_at: int,
         pdq: bytes | None, quality: int | None) -> tuple[Any, ...]:
    """A work's registry row (:data:`SCHEMA`'s order) from what the node says of it."""
    offer = found.offer
    terms: tuple[Any, ...] = (None,) * 7 if offer is None else (
        offer.terms_id, offer.ai_training, str(offer.fee), offer.royalty_bps,
        offer.expiry_blocks, offer.supply_left, offer.legal_uri)
    return (content_hash, found.work_id, found.owner, kind, registered_at, pdq, quality,
            found.live_terms, *terms, found.license_id)


def _record_batch(rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else \
        [[] for _ in SCHEMA]
    return pa.record_batch([pa.array(values, type=f.type)
                            for values, f in zip(columns, SCHEMA, strict=True)],
                           schema=SCHEMA)


# ---------------------------------------------------------------------------
# Reading a registry: a Lookup


class Registry:
    """A registry file in memory: a :data:`~client.audit.classify.Lookup` (a hash join of
    content hashes against the registry's)."""

    def __init__(self, path: Path, info: RegistryInfo, table: pa.Table) -> None:
        self.path = path
        self.info = info
        self._table = table
        hashes: list[str] = table.column("content_hash").to_pylist()
        self._row_of = {h: i for i, h in enumerate(hashes)}
        if len(self._row_of) != len(hashes):
            raise RegistryError(f"{path.name}: a content hash is in it twice (each is one "
                                "work's: was the file edited?)")
        self._pdq: tuple[list[int], list[str], np.ndarray[Any, np.dtype[np.uint8]]] | None = None

    def __call__(self, hashes: Sequence[str]) -> list[Registered | None]:
        row_of = self._row_of.get
        rows = [row_of(content_hash) for content_hash in hashes]
        matched = [row for row in rows if row is not None]
        if not matched:
            return [None] * len(rows)
        # The matched rows, read in one take: the registry stays columnar in memory.
        found = iter(_registered(r) for r in
                     self._table.take(pa.array(matched, pa.uint64())).to_pylist())
        return [None if row is None else next(found) for row in rows]

    def near_duplicates(self, fingerprints: list[Fingerprint], max_distance: int
                        ) -> list[dict[str, Any]]:
        """The works whose PDQ fingerprint is within ``max_distance`` bits of any of an
        image's query ``fingerprints``, each once at its least distance, nearest first
        (then by id), at most :data:`MAX_SIMILAR_WORKS`: ``opus_findSimilarWorks``'
        ``works`` (merged as :func:`client.fingerprint.find_near_duplicates` merges them:
        ``workId``, ``distance``, ``contentHash``), computed over the registry's
        fingerprints (every one: the node's lookup stops at 50,000 candidates, this one
        does not)."""
        work_ids, hashes, matrix = self._fingerprints()
        if not len(work_ids):
            return []
        nearest: np.ndarray[Any, np.dtype[np.int64]] | None = None
        for fingerprint in fingerprints:
            query = np.frombuffer(fingerprint.value, dtype=np.uint8)
            distance = np.bitwise_count(matrix ^ query).sum(axis=1, dtype=np.int64)
            nearest = distance if nearest is None else np.minimum(nearest, distance)
        assert nearest is not None
        within = np.flatnonzero(nearest <= max_distance)
        order = sorted(within.tolist(), key=lambda i: (int(nearest[i]), work_ids[i]))
        return [{"workId": work_ids[i], "distance": int(nearest[i]),
                 "contentHash": "0x" + hashes[i]} for i in order[:MAX_SIMILAR_WORKS]]

    def _fingerprints(self) -> tuple[list[int], list[str], np.ndarray[Any, np.dtype[np.uint8]]]:
        """The works with a fingerprint: their ids, content hashes and fingerprints (one
        row of 32 bytes each), made on the first near-duplicate lookup."""
        if self._pdq is None:
            has = pc.is_valid(self._table.column("pdq"))
            with_pdq = self._table.filter(has)
            values: list[bytes] = with_pdq.column("pdq").to_pylist()
            self._pdq = (with_pdq.column("work_id").to_pylist(),
                         with_pdq.column("content_hash").to_pylist(),
                         np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, 32))
        return self._pdq

    def check_licensee(self, licensee: str | None) -> None:
        """RegistryError unless ``licensee`` is the registry's (None: accept it)."""
        if licensee is not None and licensee != self.info.licensee:
            held = (f"for the licensee {self.info.licensee}" if self.info.licensee
                    else "without a licensee")
            raise RegistryError(
                f"{self.path.name} was exported {held}: a registry holds one licensee's "
                f"licenses; export it again with --licensee {licensee}")


def _registered(r: dict[str, Any]) -> Registered:
    """A registry row as the node's answer (``opus_getWorksByContentHashes``) has it."""
    offer = None if r["terms_id"] is None else Offer(
        r["terms_id"], r["ai_training"], int(r["fee"]), r["royalty_bps"],
        r["expiry_blocks"], r["supply_left"], r["legal_uri"])
    return Registered(r["work_id"], r["owner"], r["live_terms"], offer, r["license_id"])


_NOT_NULL = ("content_hash", "work_id", "owner", "live_terms")


def open_registry(path: Path | str) -> Registry:
    """The registry at ``path``, checked (RegistryError naming what is wrong)."""
    target = Path(path)
    name = target.name
    if not target.exists():
        raise RegistryError(f"the registry {str(path)!r} does not exist (opus registry "
                            "export --out FILE writes one)")
    if target.is_dir():
        raise RegistryError(f"the registry {str(path)!r} is a folder, not a parquet file")
    try:
        parquet = pq.ParquetFile(target)
        raw = (parquet.metadata.metadata or {}).get(METADATA_KEY)
    except (OSError, pa.ArrowException) as e:
        raise RegistryError(f"{name} is not a readable parquet file ({_reason(e)}); is it "
                            "truncated?") from None
    if raw is None:
        raise RegistryError(f"{name} is not an opus registry (no {METADATA_KEY.decode()!r} "
                            "metadata: opus registry export writes one)")
    try:
        info = RegistryInfo.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"{name}: its {METADATA_KEY.decode()!r} metadata is not a "
                            f"registry's ({e})") from None
    missing = [f.name for f in SCHEMA if f.name not in parquet.schema_arrow.names]
    if missing:
        raise RegistryError(f"{name} has no column {missing[0]!r}: not an opus registry")
    try:
        table = parquet.read(columns=SCHEMA.names).cast(SCHEMA)
    except (OSError, pa.ArrowException) as e:
        raise RegistryError(f"{name} is not a readable registry ({_reason(e)})") from None
    if table.num_rows != info.works:
        raise RegistryError(f"{name} holds {table.num_rows} works, its metadata says "
                            f"{info.works}: is it truncated?")
    for column in _NOT_NULL:
        if table.column(column).null_count:
            row = pc.index(pc.is_null(table.column(column)), True).as_py()
            raise RegistryError(f"{name}: row {row + 1} has no {column}")
    good = pc.match_substring_regex(table.column("content_hash"), _HEX_HASH)
    if not pc.all(good).as_py():
        row = pc.index(good, False).as_py()
        raise RegistryError(f"{name}: row {row + 1}: content_hash is not 64 lower-case hex "
                            "digits")
    return Registry(target, info, table)


_cached: dict[tuple[str, int, int], Registry] = {}


def _registry_once(path: str) -> Registry:
    """The registry at ``path``, read once per process (a worker audits many shards
    against it), and again if the file changed."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    registry = _cached.get(key)
    if registry is None:
        _cached.clear()
        registry = _cached[key] = open_registry(path)
    return registry


# ---------------------------------------------------------------------------
# Auditing against a registry


def audit_manifest(manifest: Manifest, lookup: Callable[[Sequence[str]],
                                                        Sequence[Registered | None]],
                   stopped: Callable[[], bool] = lambda: False, *,
                   then: Callable[[list[AuditRow]], list[AuditRow]] | None = None
                   ) -> Iterator[list[AuditRow]]:
    """The report rows of an input, a chunk at a time, against a local lookup (``then``,
    if given, applied to each chunk's rows: the near-duplicate lookups of
    :mod:`client.audit.near`)."""
    for chunk in manifest.chunks(stopped):
        rows = audit_rows(list(zip(chunk.items, chunk.hashes, strict=True)), lookup)
        yield rows if then is None else then(rows)


def audit_shard(shard: str, registry: str, *, root: str | None = None,
                hash_column: str = "sha256", id_column: str | None = None
                ) -> list[AuditRow]:
    """The audit of one shard (a parquet, CSV or JSON Lines file) against the registry
    file ``registry``: its report rows, in order. Items without an id are named by the
    shard's path under ``root`` (the folder audited), as a one-process audit names them.

    A plain function of file paths: a distributed engine maps it over shards (each worker
    reads the registry once). Raises the audit's own errors (InputError, RegistryError).
    """
    lookup = _registry_once(registry)
    manifest = (open_manifest(shard, hash_column=hash_column, id_column=id_column)
                if root is None else
                open_shard(root, shard, hash_column=hash_column, id_column=id_column))
    return [row for rows in audit_manifest(manifest, lookup) for row in rows]


def _audit_shard_pickled(shard: str, registry: str, **options: Any) -> bytes:
    """:func:`audit_shard`'s rows as one pickle. Dask serializes a list of results item by
    item, 4 times slower than one pickle of it (measured: 13 s against 3.3 s for 250,000
    rows); the bytes travel as they are. (Dask pickles tasks and results anyway: the
    workers are trusted as much as with any Dask result.)"""
    return pickle.dumps(audit_shard(shard, registry, **options), protocol=pickle.HIGHEST_PROTOCOL)


def dask_audit(scheduler: Any, manifest: Manifest, registry: Path | str, *,
               stopped: Callable[[], bool] = lambda: False, in_flight: int | None = None
               ) -> Iterator[list[AuditRow]]:
    """Each file of ``manifest`` audited by :func:`audit_shard` on a Dask cluster
    (``scheduler``: a ``distributed.Client``), its rows yielded in the input's order.

    At most ``in_flight`` shards (default: twice the cluster's threads) are submitted at a
    time, so the rows waiting to be written stay bounded. Once ``stopped()`` the shards
    under way are dropped and the rows end after the last shard yielded.
    """
    # Absolute paths: a worker on another machine does not share this one's cwd.
    root = os.path.abspath(manifest.path)
    registry = os.path.abspath(registry)
    window = in_flight or max(2, 2 * sum(scheduler.nthreads().values()))
    pending: deque[Any] = deque()  # distributed.Future (untyped)
    files: Iterable[Path] = iter(manifest.files)
    manifest.finished = False
    try:
        for path in files:
            if stopped():
                return
            pending.append(scheduler.submit(
                _audit_shard_pickled, os.path.abspath(path), registry, root=root,
                hash_column=manifest.hash_column,
                id_column=manifest.id_column if manifest.id_given else None,
                pure=False))
            if len(pending) >= window:
                yield pickle.loads(pending.popleft().result())
        while pending:
            if stopped():
                return
            yield pickle.loads(pending.popleft().result())
        manifest.finished = True
    finally:
        for future in pending:
            future.cancel()
