"""The items of an audit report that an AI builder licenses, records usage of and certifies.

:func:`read_report` reads a report that ``opus audit --out`` wrote (CSV, JSON or parquet:
:mod:`client.audit.report`) row by row, checking each row on its own, so that a malformed
report is one :class:`ReportInputError` naming the file and the row (and, for CSV, its
line) before anything is signed. Only the columns the bulk commands need are read
(``item``, ``sha256``, ``status``, ``match``, ``work_id``), so a report with more columns
reads the same.

:func:`works_of` groups the items by the registered work they are a copy of: one license
covers every copy of a work, so the bulk commands act once per work.

:func:`chain_view` asks the node, now, what it knows of each work for a licensee (the
live terms that allow AI training, the cheapest first, and the licensee's license for
training), with the audit's own lookup (``opus_getWorksByContentHashes``, a few calls in
flight): the bulk commands decide from this answer, never from the report alone, so a
second run skips what the first one bought.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from client.audit.classify import EXACT_MATCH, TO_LICENSE, Registered, Status
from client.audit.inputs import CHUNK_ROWS
from client.audit.lookup import IN_FLIGHT, RpcLookup
from client.audit.report import CSV_MARK, FORMAT, PARQUET_KEY
from client.errors import ClientError
from client.rpc import OpusClient
from runtime.codec import from_hex0x

__all__ = ["NEEDS_LICENSE", "ChainWork", "Item", "Report", "ReportInputError", "Work",
           "chain_view", "read_report", "works_of"]

# The statuses whose items a model may be trained on once licensed: the report's
# "allowed" and "constrained" (a license to buy) and "licensed" (held at the audit).
NEEDS_LICENSE = frozenset({*TO_LICENSE, Status.LICENSED})
_COLUMNS = ("item", "sha256", "status", "work_id")  # the columns read (``match`` optional)
_HEX = frozenset("0123456789abcdef")


class ReportInputError(ClientError):
    """A file that is not an audit report, or a malformed row of one (the message names
    the file and the row)."""


@dataclass(frozen=True)
class Item:
    """One row of a report, as far as licensing it goes."""

    row: int  # 1-based, in the report's order
    item: str
    sha256: str  # 64 lower-case hex digits
    status: Status
    exact: bool  # matched by its exact content hash (else a near-duplicate of the work)
    work_id: int | None


@dataclass
class Report:
    """A report's own description (its JSON header) and its rows."""

    path: Path
    meta: dict[str, Any]
    items: list[Item]

    @property
    def block_hash(self) -> str:
        return str(self.meta.get("blockHash", ""))

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def counts(self) -> dict[str, int]:
        """How many rows have each status (every status named, 0 if none)."""
        counts = dict.fromkeys((s.value for s in Status), 0)
        for item in self.items:
            counts[item.status.value] += 1
        return counts


@dataclass
class Work:
    """A registered work of the report and its items that need a license for training."""

    work_id: int
    items: list[Item] = field(default_factory=list)

    @property
    def lookup_hash(self) -> str | None:
        """A content hash the registry knows the work by: an item matched exactly."""
        return next((i.sha256 for i in self.items if i.exact), None)


# ---------------------------------------------------------------------------
# Reading a report


def read_report(path: Path | str) -> Report:
    """Every row of the report at ``path`` (CSV, JSON or parquet, by its suffix)."""
    target = Path(path)
    readers = {".csv": _read_csv, ".json": _read_json, ".parquet": _read_parquet}
    reader = readers.get(target.suffix.lower())
    if reader is None:
        raise ReportInputError(f"{target.name}: an audit report to read is a .csv, .json or "
                               ".parquet file (opus audit --out)")
    try:
        meta, rows = reader(target)
        items = [_item(target.name, where, number, raw)
                 for number, (where, raw) in enumerate(rows, start=1)]
    except FileNotFoundError:
        raise ReportInputError(f"the report {str(target)!r} does not exist") from None
    except IsADirectoryError:
        raise ReportInputError(f"{str(target)!r} is a folder, not a report") from None
    except OSError as e:
        raise ReportInputError(f"cannot read the report {str(target)!r}: {e.strerror}") from None
    if meta.get("format") != FORMAT:
        raise ReportInputError(f"{target.name} is not an opus audit report (format "
                               f"{meta.get('format')!r}, expected {FORMAT!r})")
    return Report(target, meta, items)


def _item(name: str, where: str, number: int, raw: dict[str, Any]) -> Item:
    """One row, checked: a ReportInputError names the file, the row and what is wrong."""
    def bad(what: str) -> ReportInputError:
        return ReportInputError(f"{name}, {where}: {what}")

    missing = [c for c in _COLUMNS if c not in raw]
    if missing:
        raise bad(f"no {', '.join(missing)} column")
    sha = raw["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or not _HEX.issuperset(sha):
        raise bad(f"sha256 must be 64 lower-case hex digits, not {str(sha)[:80]!r}")
    try:
        status = Status(raw["status"])
    except ValueError:
        raise bad(f"unknown status {str(raw['status'])[:40]!r} (one of "
                  f"{', '.join(s.value for s in Status)})") from None
    work_id = _whole(raw["work_id"], "work_id", bad)
    if status is not Status.NOT_REGISTERED and work_id is None:
        raise bad(f"a {status.value} item needs its work_id")
    item = raw["item"]
    if not isinstance(item, str):
        raise bad("item must be text")
    match = raw.get("match") or EXACT_MATCH
    return Item(number, item, sha, status, match == EXACT_MATCH, work_id)


def _whole(value: Any, column: str, bad: Any) -> int | None:
    """A column's whole number (None if empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad(f"{column} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad(f"{column} must be a whole number, not {str(value)[:40]!r}") from None
    if number < 0 or number >= 1 << 64:
        raise bad(f"{column} {number} is out of range")
    return number


Rows = Iterator[tuple[str, dict[str, Any]]]  # (where the row is, for errors; the row)


def _read_csv(path: Path) -> tuple[dict[str, Any], Rows]:
    f = path.open(encoding="utf-8", newline="")
    first = f.readline()
    if not first.startswith(CSV_MARK):
        f.close()
        raise ReportInputError(f"{path.name} is not an opus audit report (its first line is "
                               f"not {CSV_MARK.strip()} {{…}})")
    try:
        meta = json.loads(first[len(CSV_MARK):])
    except ValueError:
        f.close()
        raise ReportInputError(f"{path.name}, line 1: the {CSV_MARK.strip()} line is not "
                               "JSON") from None
    if not isinstance(meta, dict):
        f.close()
        raise ReportInputError(f"{path.name}, line 1: the {CSV_MARK.strip()} line is not a "
                               "JSON object")

    def rows() -> Rows:
        with f:
            reader = csv.DictReader(f, strict=True)
            number = 0
            # The line a row starts on: after the # opus-audit line (which the reader did
            # not read) and the lines read so far (a quoted value may hold line breaks).
            start = 3
            try:
                for raw in reader:
                    number += 1
                    yield f"row {number} (line {start})", raw
                    start = reader.line_num + 2
            except (csv.Error, UnicodeDecodeError) as e:
                raise ReportInputError(f"{path.name}, row {number + 1} (line {start}): not "
                                       f"CSV: {e}") from None

    return meta, rows()


def _read_json(path: Path) -> tuple[dict[str, Any], Rows]:
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:
        raise ReportInputError(f"{path.name} is not JSON (truncated?): {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ReportInputError(f"{path.name} is not an opus audit report (no rows)")
    rows = data.pop("rows")

    def each() -> Rows:
        for i, raw in enumerate(rows, start=1):
            if not isinstance(raw, dict):
                raise ReportInputError(f"{path.name}, row {i}: not a JSON object")
            yield f"row {i}", raw

    return data, each()


def _read_parquet(path: Path) -> tuple[dict[str, Any], Rows]:
    try:
        parquet = pq.ParquetFile(path)
        raw = (parquet.metadata.metadata or {}).get(PARQUET_KEY)
    except pa.ArrowException as e:
        raise ReportInputError(f"{path.name} is not a parquet file (truncated?): {e}") from None
    if raw is None:
        raise ReportInputError(f"{path.name} is not an opus audit report (no {PARQUET_KEY!r} "
                               "metadata)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ReportInputError(f"{path.name}: its {PARQUET_KEY!r} metadata is not JSON") from None

    def rows() -> Rows:
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
                for raw_row in batch.to_pylist():
                    number += 1
                    yield f"row {number}", raw_row
        except pa.ArrowException as e:
            raise ReportInputError(f"{path.name}, after row {number}: {e}") from None

    return (meta if isinstance(meta, dict) else {}), rows()


def works_of(items: Sequence[Item]) -> list[Work]:
    """The works whose items need a license for AI training, in the order first seen."""
    works: dict[int, Work] = {}
    for item in items:
        if item.status in NEEDS_LICENSE and item.work_id is not None:
            work = works.get(item.work_id)
            if work is None:
                work = works[item.work_id] = Work(item.work_id)
            work.items.append(item)
    return list(works.values())


# ---------------------------------------------------------------------------
# What the chain says now


@dataclass(frozen=True)
class ChainWork:
    """A work as the chain sees it now, for a licensee."""

    work: Work
    found: Registered | None  # None: the chain does not know the work by that hash


def chain_view(url: str, works: Sequence[Work], licensee: str, *, at: bytes | None = None
               ) -> tuple[bytes, list[ChainWork]]:
    """The block answered at (``at``, else the best block now) and, for each work, what
    ``opus_getWorksByContentHashes`` says of it for ``licensee`` (several calls in flight).

    A work known only through near-duplicates is looked up by the content hash it was
    registered with (``opus_getWork``).
    """
    client = OpusClient(url)
    block = at if at is not None else client.best_block()[1]
    hashes = [w.lookup_hash or _registered_hash(client, w.work_id) for w in works]
    lookup = RpcLookup(url, block, licensee)
    chunks = [hashes[i:i + CHUNK_ROWS] for i in range(0, len(hashes), CHUNK_ROWS)]
    try:
        with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="opus-bulk") as pool:
            answers = [found for part in pool.map(lookup, chunks) for found in part]
    finally:
        lookup.close()
    view = []
    for work, found in zip(works, answers, strict=True):
        if found is not None and found.work_id != work.work_id:
            raise ReportInputError(
                f"the report says item {work.items[0].item!r} is work #{work.work_id}, the "
                f"node says #{found.work_id}: was the report audited on another chain?")
        view.append(ChainWork(work, found))
    return block, view


def _registered_hash(client: OpusClient, work_id: int) -> str:
    work = client.get_work(work_id)
    if work is None:
        raise ReportInputError(f"the node has no work #{work_id}: was the report audited on "
                               "another chain?")
    return from_hex0x(work["contentHash"], 32).hex()
