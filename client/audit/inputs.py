"""Reading what an audit is about: the items of a dataset and their SHA-256 content hashes.

An input is one of

* a parquet file, or a folder holding parquet shards (``*.parquet``, read in name order),
  with DataComp's columns (``uid``, ``url``, …, ``sha256``): read with pyarrow one record
  batch at a time, only the hash and id columns, never a whole file;
* a CSV file (``.csv``) or a JSON Lines file (``.jsonl``, ``.ndjson``) with a ``sha256``
  column (and optionally ``uid``, ``url``), streamed in blocks by pyarrow;
* a folder of media files (a folder without ``*.parquet`` in it): every regular file under
  it, in path order, hashed here by streaming (:data:`READ_SIZE` reads).

A hash is 64 hex digits (an optional ``0x`` and upper case are accepted) or, in parquet,
32 raw bytes. An item is named by its id column (``--id-column``, default ``uid``; ``url``
if there is no such column), else by ``FILE:ROW`` (rows count from 1, the header not
included); a media file by its path under the folder.

Anything malformed is one :class:`InputError` naming the file and the row: a missing hash
column, a hash that is not hex, an empty one, a truncated or unreadable file. Every file's
header is checked before the first row is read, so most errors come before any lookup.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from client.errors import ClientError

__all__ = ["CHUNK_ROWS", "DEFAULT_HASH_COLUMN", "DEFAULT_ID_COLUMN", "READ_SIZE", "Chunk",
           "InputError", "Manifest", "open_manifest", "open_shard"]

DEFAULT_HASH_COLUMN = "sha256"
DEFAULT_ID_COLUMN = "uid"
FALLBACK_ID_COLUMN = "url"
READ_SIZE = 1 << 20  # media files are hashed in reads of 1 MiB
CHUNK_ROWS = 2048  # rows per chunk handed to the lookups (one opus_getWorksByContentHashes call)
PARQUET_BATCH_ROWS = 16 * 1024  # rows pyarrow decodes at a time
TEXT_BLOCK_BYTES = 4 << 20  # bytes of CSV / JSON Lines pyarrow parses at a time
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
_HEX_HASH = "^[0-9a-f]{64}$"


class InputError(ClientError):
    """The input cannot be audited as it is (the message names the file and the row)."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive items of the input: their names and their hashes (64 lower-case hex
    digits each), at most :data:`CHUNK_ROWS`."""

    items: list[str]
    hashes: list[str]


class Manifest:
    """An opened input: its kind, its row count if known, and its chunks."""

    def __init__(self, path: Path, kind: str, files: list[Path], hash_column: str,
                 id_column: str | None, id_given: bool) -> None:
        self.path = path
        self.kind = kind  # "parquet", "csv", "jsonl" or "media"
        self.files = files
        self.hash_column = hash_column
        self.id_column = id_column
        self.id_given = id_given
        self.total_rows: int | None = None  # exact, where the input says it (parquet, media)
        self.total_bytes = sum(_size(f) for f in files)
        self.bytes_done = 0  # of the text inputs, what pyarrow has parsed so far
        self.finished = False  # whether the chunks were read to the input's end

    def estimated_rows(self, rows_done: int) -> int | None:
        """The number of rows: exact if known, else estimated from the bytes parsed."""
        if self.total_rows is not None:
            return self.total_rows
        if not self.bytes_done or not rows_done:
            return None
        return max(rows_done, round(rows_done * self.total_bytes / self.bytes_done))

    def chunks(self, stopped: Callable[[], bool] = lambda: False) -> Iterator[Chunk]:
        """The input's items, :data:`CHUNK_ROWS` at a time (InputError at the first bad row).

        Once ``stopped()`` is true the chunks end early (after the rows read so far);
        :attr:`finished` says whether they went to the input's end.
        """
        items: list[str] = []
        hashes: list[str] = []
        self.finished = True
        for batch_items, batch_hashes in self._batches(stopped):
            items.extend(batch_items)
            hashes.extend(batch_hashes)
            while len(hashes) >= CHUNK_ROWS:
                yield Chunk(items[:CHUNK_ROWS], hashes[:CHUNK_ROWS])
                del items[:CHUNK_ROWS], hashes[:CHUNK_ROWS]
            if stopped():
                self.finished = False
                break
        if hashes:
            yield Chunk(items, hashes)

    def _batches(self, stopped: Callable[[], bool]) -> Iterator[tuple[list[str], list[str]]]:
        if self.kind == "media":
            yield from _media_batches(self.path, self.files, stopped)
            return
        for path in self.files:
            name = self.name_of(path)
            first_row = 1
            for batch in self._record_batches(path):
                yield (self._items(batch, name, first_row),
                       _hashes(batch.column(self.hash_column), name, first_row,
                               self.hash_column))
                first_row += batch.num_rows

    def name_of(self, path: Path) -> str:
        """How errors name one of the input's files (its path under the input folder)."""
        return path.name if path == self.path else path.relative_to(self.path).as_posix()

    def _id_of(self, schema: pa.Schema) -> str | None:
        """The id column this file has, or None (items named FILE:ROW)."""
        if self.id_column is not None and self.id_column in schema.names:
            return self.id_column
        if not self.id_given and FALLBACK_ID_COLUMN in schema.names:
            return FALLBACK_ID_COLUMN
        return None

    def _items(self, batch: pa.RecordBatch, name: str, first_row: int) -> list[str]:
        column = self._id_of(batch.schema)
        if column is None:
            return [f"{name}:{row}" for row in range(first_row, first_row + batch.num_rows)]
        values = batch.column(column)
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            values = pc.cast(values, pa.string())
        ids: list[str | None] = values.to_pylist()
        return [f"{name}:{first_row + i}" if v is None else v for i, v in enumerate(ids)]

    def _record_batches(self, path: Path) -> Iterator[pa.RecordBatch]:
        name = self.name_of(path)
        try:
            if self.kind == "parquet":
                yield from self._parquet_batches(path)
            elif self.kind == "csv":
                yield from self._csv_batches(path)
            else:
                yield from self._json_batches(path)
        except pa.ArrowException as e:
            raise InputError(_located(path, name, self.kind, e)) from None
        except OSError as e:
            raise InputError(f"cannot read {name}: {e.strerror or e}") from None

    def _parquet_batches(self, path: Path) -> Iterator[pa.RecordBatch]:
        columns = [self.hash_column]
        # (No pre-buffering, one thread: a shard's columns are read a row group at a time.)
        parquet = pq.ParquetFile(path, pre_buffer=False)
        id_column = self._id_of(parquet.schema_arrow)
        if id_column is not None:
            columns.append(id_column)
        yield from parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns,
                                        use_threads=False)

    def _csv_batches(self, path: Path) -> Iterator[pa.RecordBatch]:
        names = _csv_header(path)
        id_column = self._id_of(pa.schema([(n, pa.string()) for n in names]))
        wanted = [self.hash_column] + ([id_column] if id_column else [])
        with _Counted(path, self) as source:
            yield from pa_csv.open_csv(
                source, read_options=pa_csv.ReadOptions(block_size=TEXT_BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=wanted, column_types={c: pa.string() for c in wanted},
                    strings_can_be_null=True))

    def _json_batches(self, path: Path) -> Iterator[pa.RecordBatch]:
        schema = pa.schema([(self.hash_column, pa.string())])
        with _Counted(path, self) as source:
            yield from pa_json.open_json(
                source, read_options=pa_json.ReadOptions(block_size=TEXT_BLOCK_BYTES),
                parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                   unexpected_field_behavior="infer"))


class _Counted:
    """A file whose reads are counted in the manifest's ``bytes_done`` (for the progress
    bar's estimate of the rows of a CSV or JSON Lines input)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self._file = path.open("rb")
        self._manifest = manifest
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._manifest.bytes_done += len(data)
        return data

    def close(self) -> None:
        self._file.close()
        self.closed = True

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def open_manifest(path: Path | str, *, hash_column: str = DEFAULT_HASH_COLUMN,
                  id_column: str | None = None) -> Manifest:
    """Open an input (InputError if it is not one, or a file lacks the hash column).

    ``id_column`` None means the default (``uid``, else ``url``, else ``FILE:ROW``); a
    named one is used where a file has it.
    """
    root = Path(path)
    if not root.exists() and not root.is_symlink():
        raise InputError(f"{str(path)!r} does not exist")
    given = id_column is not None
    id_name = id_column if id_column is not None else DEFAULT_ID_COLUMN
    if root.is_dir():
        files = _walk(root)
        shards = [p for p in files if p.suffix.lower() in PARQUET_SUFFIXES]
        if not shards:
            manifest = Manifest(root, "media", files, hash_column, None, given)
            manifest.total_rows = len(files)
            return manifest
        manifest = Manifest(root, "parquet", shards, hash_column, id_name, given)
    else:
        manifest = Manifest(root, _file_kind(root), [root], hash_column, id_name, given)
    _check_headers(manifest)
    return manifest


def open_shard(root: Path | str, shard: Path | str, *,
               hash_column: str = DEFAULT_HASH_COLUMN, id_column: str | None = None
               ) -> Manifest:
    """One file of the input ``root`` (a folder of shards) as an input of its own, its items
    named as in an audit of the whole folder (for a distributed audit, shard by shard)."""
    folder, path = Path(root), Path(shard)
    given = id_column is not None
    kind = _file_kind(path)
    manifest = Manifest(folder if folder.is_dir() else path, kind, [path], hash_column,
                        id_column if given else DEFAULT_ID_COLUMN, given)
    _check_headers(manifest)
    return manifest


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSON_LINES_SUFFIXES:
        return "jsonl"
    accepted = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_LINES_SUFFIXES)
    raise InputError(f"{path.name}: not an input this command reads (a file ending in "
                     f"{accepted}, or a folder of parquet shards or of media files)")


def _check_headers(manifest: Manifest) -> None:
    """Every file opens and has the hash column (parquet: also its row count)."""
    total = 0
    for path in manifest.files:
        name = manifest.name_of(path)
        try:
            if manifest.kind == "parquet":
                parquet = pq.ParquetFile(path)
                names = parquet.schema_arrow.names
                total += parquet.metadata.num_rows
            elif manifest.kind == "csv":
                names = _csv_header(path)
            else:
                names = None  # JSON Lines: each row says it (a missing hash: that row's error)
        except pa.ArrowException as e:
            raise InputError(_located(path, name, manifest.kind, e)) from None
        except OSError as e:
            raise InputError(f"cannot read {name}: {e.strerror or e}") from None
        if names is None:
            continue
        if manifest.hash_column not in names:
            raise InputError(f"{name} has no column {manifest.hash_column!r} (its columns: "
                             f"{', '.join(names) or 'none'}; name the hash column with "
                             "--hash-column)")
        if manifest.id_given and manifest.id_column not in names:
            raise InputError(f"{name} has no column {manifest.id_column!r} (--id-column; "
                             f"its columns: {', '.join(names)})")
    if manifest.kind == "parquet":
        manifest.total_rows = total


def _csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first line)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise InputError(f"{path.name} is empty: a CSV input starts with a header line "
                         "naming its columns")
    return header


def _hashes(values: pa.Array, name: str, first_row: int, column: str) -> list[str]:
    """A batch's hash column as 64 lower-case hex digits each; InputError at a bad one."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or \
            pa.types.is_fixed_size_binary(kind):
        return _binary_hashes(values, name, first_row, column)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{name}: column {column!r} holds {kind}, not SHA-256 hashes "
                         "(64 hex digits or 32 bytes)")
    text = pc.utf8_lower(pc.replace_substring_regex(pc.utf8_trim_whitespace(values),
                                                    "^0[xX]", ""))
    good = pc.fill_null(pc.match_substring_regex(text, _HEX_HASH), False)
    if not pc.all(good).as_py():
        row = pc.index(good, False).as_py()
        raise InputError(_bad_hash(name, first_row + row, column, values[row].as_py()))
    hashes: list[str] = text.to_pylist()
    return hashes


def _binary_hashes(values: pa.Array, name: str, first_row: int, column: str) -> list[str]:
    out = []
    for row, value in enumerate(values.to_pylist()):
        if value is None or len(value) != 32:
            where = f"{name}: row {first_row + row}"
            raise InputError(f"{where}: {column!r} is "
                             f"{'empty' if value is None else f'{len(value)} bytes'}, "
                             "not a SHA-256 hash (32 bytes)")
        out.append(value.hex())
    return out


def _bad_hash(name: str, row: int, column: str, value: str | None) -> str:
    if value is None or not value.strip():
        return f"{name}: row {row} has no {column!r} (a SHA-256 hash is required)"
    shown = value if len(value) <= 80 else value[:77] + "..."
    return (f"{name}: row {row}: {column!r} is {shown!r}, not a SHA-256 hash "
            "(64 hex digits)")


def _located(path: Path, name: str, kind: str, error: pa.ArrowException) -> str:
    """An error pyarrow raised reading ``path``, with the row it is at where we can find it."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if kind == "parquet":
        return (f"{name} is not a readable parquet file ({message}); is it truncated or "
                "still being written?")
    where = _first_bad_row(path, kind)
    return f"{name}: {where or message}"


def _first_bad_row(path: Path, kind: str) -> str | None:
    """Where a CSV or JSON Lines file stops being well-formed, read again line by line
    (only after pyarrow failed on it, so the error can name the row)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            if kind == "csv":
                reader = csv.reader(f)
                header = next(reader, [])
                for row, fields in enumerate(reader, start=1):
                    if len(fields) != len(header):
                        return (f"row {row} (line {reader.line_num}) has {len(fields)} "
                                f"fields, the header {len(header)}: is the file truncated?")
            else:
                for line_number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as e:
                        return (f"line {line_number} is not JSON ({e.msg}): is the file "
                                "truncated?")
                    if not isinstance(value, dict):
                        return f"line {line_number} is not a JSON object"
    except UnicodeDecodeError as e:
        return f"not UTF-8 text ({e.reason} at byte {e.start} of a line)"
    except (OSError, csv.Error):
        return None
    return None


# ---------------------------------------------------------------------------
# A folder of media files


def _walk(root: Path) -> list[Path]:
    """Every file under ``root`` but hidden ones, in path order: InputError for a folder
    that cannot be listed, a broken link or a file that is no regular file (a pipe would
    block the audit)."""
    found: list[Path] = []

    def failed(error: OSError) -> None:
        raise InputError(f"cannot list {error.filename}: {error.strerror}")

    for folder, dirs, files in os.walk(root, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder, f) for f in files if not f.startswith("."))
    found.sort()
    for path in found:
        _check_regular(root, path)
    return found


def _check_regular(root: Path, path: Path) -> None:
    name = path.relative_to(root).as_posix()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: it is a broken link") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"cannot read {name}: not a regular file (a device, pipe or socket)")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {name}: permission denied")


def _media_batches(root: Path, files: list[Path], stopped: Callable[[], bool]
                   ) -> Iterator[tuple[list[str], list[str]]]:
    """Each file's path under ``root`` and SHA-256, one file at a time (until stopped)."""
    for path in files:
        if stopped():
            return
        yield [path.relative_to(root).as_posix()], [_file_hash(root, path)]


def _file_hash(root: Path, path: Path) -> str:
    """The SHA-256 of a file's bytes, read :data:`READ_SIZE` at a time."""
    name = path.relative_to(root).as_posix()
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(READ_SIZE):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: it was removed during the audit") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

