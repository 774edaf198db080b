"""The audit's report files: CSV, parquet, JSON or HTML, chosen by the name's suffix.

Every report has one row per audited item, with the :data:`COLUMNS` (``fee`` in the
smallest unit, as a decimal string where it can exceed 64 bits), and says what it is:
the input, the block it was audited at (hash and number, so that any row can be proved
later with ``opus proof WORK_ID --block HASH --out FILE``), the licensee, and whether it is
complete or partial (an audit stopped by Ctrl-C: its rows are the input's first rows, in
order).

* CSV: a first line ``# opus-audit {…}`` holding that as JSON, then a header line and the
  rows (pandas: ``read_csv(path, comment="#")``).
* JSON: ``{"format", "complete", "blockHash", …, "summary", "rows": [{…}, …]}``.
* parquet: the rows as columns; the report's JSON (with the summary) in the file's
  key-value metadata ``opus-audit`` (``pyarrow.parquet.read_metadata(path).metadata``).
* HTML: one self-contained page (:mod:`client.audit.html`).

A report is written to a hidden file next to it and renamed into place when it is
finished (complete or partial), so an audit that fails leaves no report and never
overwrites a previous one with something half-written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from client.audit import html
from client.audit.classify import AuditRow, Status, Summary
from client.errors import ClientError

__all__ = ["COLUMNS", "FORMAT", "SCHEMA", "TOP_HOLDERS", "ReportError", "ReportInfo",
           "ReportWriter", "check_report_path", "open_report", "read_csv_report",
           "read_json_report", "read_parquet_report", "record_batch", "row_from_json",
           "row_json"]

FORMAT = "opus-audit/1"
TOP_HOLDERS = 10  # rights holders named in a summary
COLUMNS = AuditRow._fields  # item, sha256, status, match, work_id, owner, terms_id, …
_INT_COLUMNS = ("work_id", "terms_id", "fee", "royalty_bps", "expiry_blocks", "supply_left",
                "license_id", "distance")
_TERMS_TEXT = ("ai_training", "legal_uri")  # present (maybe empty) exactly when terms_id is
PARQUET_BATCH_ROWS = 64 * 1024
CSV_MARK = "# opus-audit "
PARQUET_KEY = b"opus-audit"  # the parquet file's key-value metadata holding the report's JSON


# The rows as columns (for the CSV and parquet writers). ``fee`` is a u128: a decimal string.
SCHEMA = pa.schema([
    ("item", pa.string()), ("sha256", pa.string()), ("status", pa.string()),
    ("match", pa.string()), ("work_id", pa.uint64()), ("owner", pa.string()),
    ("terms_id", pa.uint64()), ("ai_training", pa.string()), ("fee", pa.string()),
    ("royalty_bps", pa.uint16()), ("expiry_blocks", pa.uint64()),
    ("supply_left", pa.uint32()), ("legal_uri", pa.string()), ("license_id", pa.uint64()),
    ("distance", pa.uint16()),
])
_FEE = COLUMNS.index("fee")
# The columns of reports written before near-duplicates (``distance``) were reported: still read.
_COLUMNS_BEFORE_DISTANCE = COLUMNS[:COLUMNS.index("distance")]


def record_batch(rows: Sequence[AuditRow]) -> pa.RecordBatch:
    """``rows`` as columns of :data:`SCHEMA`."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    columns[_FEE] = [None if fee is None else str(fee) for fee in columns[_FEE]]
    return pa.record_batch([pa.array(values, type=f.type)
                            for values, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA)


class ReportError(ClientError):
    """A report cannot be written, or a file is not a report this module wrote."""


@dataclass
class ReportInfo:
    """What a report says about itself."""

    source: str  # the input audited
    block_hash: str  # 0x-hex: the block the lookups were answered at
    block_number: int
    licensee: str | None
    audited_at: str  # when the audit started, ISO 8601 UTC
    complete: bool = False
    # The PDQ distance near-duplicates were looked up within (None: not looked up).
    near_max_distance: int | None = None
    # The registry file audited against (opus audit --registry), None: the node was asked.
    registry: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"format": FORMAT, "complete": self.complete, "blockHash": self.block_hash,
               "blockNumber": self.block_number, "source": self.source,
               "licensee": self.licensee, "auditedAt": self.audited_at,
               "nearDuplicateMaxDistance": self.near_max_distance}
        if self.registry is not None:
            out["registry"] = self.registry
        return out


def row_json(row: AuditRow) -> dict[str, Any]:
    """A row as JSON (``fee`` as a decimal string)."""
    out = row._asdict()
    if row.fee is not None:
        out["fee"] = str(row.fee)
    return out


def row_from_json(data: dict[str, Any]) -> AuditRow:
    """A row from :func:`row_json`'s JSON, or from a CSV row's text (empty: none)."""
    values: dict[str, Any] = {}
    for name in COLUMNS:
        value = data.get(name)
        if value == "" and name not in ("item", "sha256", "match"):
            value = None
        if value is not None and name in _INT_COLUMNS:
            value = int(value)
        values[name] = value
    if values["terms_id"] is not None:  # CSV writes an empty text and a missing one alike
        for name in _TERMS_TEXT:
            values[name] = values[name] or ""
    values["status"] = Status(values["status"])
    values["match"] = values["match"] or ""
    return AuditRow(**values)


# ---------------------------------------------------------------------------
# Writers


class ReportWriter:
    """A report being written: :meth:`write` rows as they come, then :meth:`finish` it (or
    :meth:`discard` it). What is written goes to hidden files next to ``path``."""

    def __init__(self, path: Path, info: ReportInfo) -> None:
        self.path = path
        self.info = info
        self.rows = 0
        self._parts: list[Path] = []

    def _part(self, what: str) -> Path:
        part = self.path.with_name(f".{self.path.name}.{os.getpid()}.{what}")
        self._parts.append(part)
        return part

    def _failed(self, error: Exception) -> ReportError:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        return ReportError(f"cannot write the report {str(self.path)!r}: {reason}")

    def write(self, rows: Sequence[AuditRow]) -> None:
        if rows:
            self.rows += len(rows)
            self._write_rows(rows)

    def _write_rows(self, rows: Sequence[AuditRow]) -> None:
        raise NotImplementedError

    def finish(self, summary: Summary) -> None:
        """Write the report in its place (complete or partial, as ``info`` says)."""
        try:
            self._finish(summary)
        except (OSError, pa.ArrowException) as e:
            self.discard()
            raise self._failed(e) from None
        self._remove_parts()

    def _finish(self, summary: Summary) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        """Forget the report: nothing is left in its place."""
        self._close()
        self._remove_parts()

    def _close(self) -> None:
        """Close what is open, quietly (the report is being given up)."""

    def _remove_parts(self) -> None:
        for part in self._parts:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()


class _TextReport(ReportWriter):
    """A text report: its rows go to a body file; the final file is a head (which can tell
    the summary), the body and a tail."""

    def __init__(self, path: Path, info: ReportInfo) -> None:
        super().__init__(path, info)
        self._body = self._open_part("body")

    def _open_part(self, what: str) -> TextIO:
        try:
            return self._part(what).open("w", encoding="utf-8", newline="")
        except OSError as e:
            raise self._failed(e) from None

    def _finish(self, summary: Summary) -> None:
        self._body.close()
        final = self._part("final")
        with final.open("w", encoding="utf-8", newline="") as out:
            out.write(self._head(summary))
            with self._parts[0].open(encoding="utf-8", newline="") as body:
                shutil.copyfileobj(body, out, 1 << 20)
            out.write(self._tail(summary))
        os.replace(final, self.path)

    def _head(self, summary: Summary) -> str:
        return ""

    def _tail(self, summary: Summary) -> str:
        return ""

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._body.close()


class CsvReport(ReportWriter):
    """The rows go through pyarrow's CSV writer (it quotes every text value), in C++."""

    def __init__(self, path: Path, info: ReportInfo) -> None:
        super().__init__(path, info)
        try:
            self._sink = pa.OSFile(str(self._part("body")), "wb")
            self._writer = pa_csv.CSVWriter(self._sink, SCHEMA,
                                            write_options=pa_csv.WriteOptions(
                                                include_header=False))
        except (OSError, pa.ArrowException) as e:
            raise self._failed(e) from None

    def _write_rows(self, rows: Sequence[AuditRow]) -> None:
        self._writer.write_batch(record_batch(rows))

    def _finish(self, summary: Summary) -> None:
        self._writer.close()
        self._sink.close()
        meta = self.info.to_json() | {"rows": self.rows}
        final = self._part("final")
        with final.open("wb") as out:
            out.write((CSV_MARK + json.dumps(meta) + "\n" + ",".join(COLUMNS) + "\n").encode())
            with self._parts[0].open("rb") as body:
                shutil.copyfileobj(body, out, 1 << 20)
        os.replace(final, self.path)

    def _close(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()
        with contextlib.suppress(OSError, pa.ArrowException):
            self._sink.close()


_encode = json.JSONEncoder().encode  # (made once: json.dumps makes one a call)


class JsonReport(_TextReport):
    def _write_rows(self, rows: Sequence[AuditRow]) -> None:
        encode = _encode
        prefix = "\n  " if self.rows == len(rows) else ",\n  "  # the first rows: no comma
        self._body.write(prefix + ",\n  ".join(encode(row_json(r)) for r in rows))

    def _head(self, summary: Summary) -> str:
        head = self.info.to_json() | {"summary": summary.to_json(TOP_HOLDERS)}
        return json.dumps(head, indent=1)[:-2] + ',\n "rows": ['

    def _tail(self, summary: Summary) -> str:
        return "\n ]\n}\n"


class HtmlReport(_TextReport):
    """The page of :mod:`client.audit.html`: the registered items' rows first, then the
    others, up to :data:`~client.audit.html.MAX_TABLE_ROWS` in all."""

    def __init__(self, path: Path, info: ReportInfo) -> None:
        super().__init__(path, info)
        self._others = self._open_part("others")
        self._kept = self._kept_others = 0

    def _write_rows(self, rows: Sequence[AuditRow]) -> None:
        limit = html.MAX_TABLE_ROWS
        for row in rows:
            if row.status is not Status.NOT_REGISTERED:
                if self._kept < limit:
                    self._body.write(html.table_row(row))
                    self._kept += 1
            elif self._kept_others < limit:
                self._others.write(html.table_row(row))
                self._kept_others += 1

    def _finish(self, summary: Summary) -> None:
        self._body.close()
        self._others.close()
        others = min(self._kept_others, html.MAX_TABLE_ROWS - self._kept)
        final = self._part("final")
        with final.open("w", encoding="utf-8") as out:
            out.write(html.page_head(self.info, summary, self._kept + others, self.rows))
            with self._parts[0].open(encoding="utf-8") as body:
                shutil.copyfileobj(body, out, 1 << 20)
            with self._parts[1].open(encoding="utf-8") as rest:
                for _ in range(others):
                    out.write(rest.readline())
            out.write(html.page_tail())
        os.replace(final, self.path)

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._others.close()
        super()._close()


class ParquetReport(ReportWriter):
    def __init__(self, path: Path, info: ReportInfo) -> None:
        super().__init__(path, info)
        self._pending: list[AuditRow] = []
        try:
            self._writer = pq.ParquetWriter(self._part("body"), SCHEMA)
        except (OSError, pa.ArrowException) as e:
            raise self._failed(e) from None

    def _write_rows(self, rows: Sequence[AuditRow]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= PARQUET_BATCH_ROWS:  # (row groups of about this many rows)
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_batch(record_batch(self._pending))
            self._pending = []

    def _finish(self, summary: Summary) -> None:
        self._flush()
        meta = self.info.to_json() | {"rows": self.rows,
                                      "summary": summary.to_json(TOP_HOLDERS)}
        self._writer.add_key_value_metadata({PARQUET_KEY.decode(): json.dumps(meta)})
        self._writer.close()
        os.replace(self._parts[0], self.path)

    def _close(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()


_WRITERS: dict[str, type[ReportWriter]] = {
    ".csv": CsvReport, ".json": JsonReport, ".html": HtmlReport, ".parquet": ParquetReport,
}


def check_report_path(path: Path | str) -> type[ReportWriter]:
    """The writer for ``path``'s format (its suffix); ReportError if it names none."""
    target = Path(path)
    writer = _WRITERS.get(target.suffix.lower())
    if writer is None:
        raise ReportError(f"{target.name}: a report is a .csv, .parquet, .json or .html file")
    if target.is_dir():
        raise ReportError(f"{str(target)!r} is a folder")
    return writer


def open_report(path: Path | str, info: ReportInfo) -> ReportWriter:
    """A writer for ``path`` (its suffix picks the format; ReportError if it is none)."""
    return check_report_path(path)(Path(path), info)


# ---------------------------------------------------------------------------
# Reading reports back


def read_csv_report(path: Path | str) -> tuple[dict[str, Any], list[AuditRow]]:
    """A CSV report's header JSON and rows (ReportError if it is not one)."""
    name = Path(path).name
    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            first = f.readline()
            if not first.startswith(CSV_MARK):
                raise ReportError(f"{name} is not an opus audit report (no {CSV_MARK.strip()} "
                                  "line)")
            meta = json.loads(first[len(CSV_MARK):])
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) not in (COLUMNS, _COLUMNS_BEFORE_DISTANCE):
                raise ReportError(f"{name}: the header is not an audit report's")
            return meta, [row_from_json(r) for r in reader]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"cannot read the report {name}: {e}") from None


def read_json_report(path: Path | str) -> tuple[dict[str, Any], list[AuditRow]]:
    """A JSON report's header fields (all but ``rows``) and rows."""
    name = Path(path).name
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ReportError(f"{name} is not an opus audit report")
        rows = data.pop("rows")
        return data, [row_from_json(r) for r in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ReportError(f"cannot read the report {name}: {e}") from None


def read_parquet_report(path: Path | str) -> tuple[dict[str, Any], list[AuditRow]]:
    """A parquet report's metadata JSON and rows."""
    name = Path(path).name
    try:
        raw = (pq.read_metadata(path).metadata or {}).get(PARQUET_KEY)
        if raw is None:
            raise ReportError(f"{name} is not an opus audit report")
        rows = [row_from_json(r) for r in pq.read_table(path).to_pylist()]
        return json.loads(raw), rows
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportError(f"cannot read the report {name}: {e}") from None
