"""``opus audit INPUT``: what in a dataset is registered, and on what terms.

Reads the input (:mod:`client.audit.inputs`: parquet shards, CSV, JSON Lines or a folder of
media files), looks its content hashes up on the node at one block
(:mod:`client.audit.lookup`, ``opus_getWorksByContentHashes``, several calls in flight),
classifies each item (:mod:`client.audit.classify`), prints a summary and, with ``--out``,
writes a report (:mod:`client.audit.report`)::

    opus audit shards/ --licensee opus1… --out audit.html
    opus audit manifest.csv --hash-column sha256 --id-column url --out audit.csv
    opus audit photos/ --at 0x… --json

The audit is answered at one block: ``--at``, else the node's best block when it starts;
the summary and the report name it. In a folder of images, an image no work has the
hash of is also looked up by its PDQ fingerprint (:mod:`client.audit.near`): a
near-duplicate of a work (within ``--max-distance`` bits) is reported as a copy of it, with
``match`` = ``pdq`` and its ``distance`` (``--no-near-duplicates`` skips this). A progress
bar (rows/s, ETA) shows on a terminal once an audit takes more than a second. Ctrl-C stops
it after the lookups under way: the summary and the report then cover the rows audited so
far and say they are partial (exit 130); a second Ctrl-C gives up at once and writes no
report. A malformed input is one error naming
the file and the row (exit 1), and no report is written.

With ``--registry FILE`` (``opus registry export``, :mod:`client.audit.registry`) no node is
asked: the rows are joined against the file, at its block and for its licensee, by the
same classification; ``--dask ADDRESS`` (or ``local:N``) maps that join over the input's
files on a Dask cluster::

    opus audit shards/ --registry registry.parquet --dask tcp://scheduler:8786 --out a.csv
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from client.commands import arguments
from client.commands.common import Context, CreatorError, command, format_amount
from client.fingerprint import DEFAULT_MAX_DISTANCE, MAX_MATCH_DISTANCE
from runtime.codec import from_hex0x, hex0x

if TYPE_CHECKING:
    from client.audit.classify import AuditRow, Summary
    from client.audit.inputs import Manifest
    from client.audit.registry import Registry
    from client.audit.report import ReportInfo, ReportWriter
    from client.commands.common import Subcommands

DASK_CONNECT_TIMEOUT_S = 30  # seconds to reach a Dask scheduler (--dask ADDRESS)
PROGRESS_DELAY_S = 1.0  # the progress bar shows once an audit has taken this long
DEFAULT_HASH_COLUMN = "sha256"  # (client.audit.inputs's; pyarrow loads only for an audit)


class _Interrupt:
    """The first Ctrl-C asks the audit to stop after the lookups under way; the second
    raises KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nStopping after the lookups under way (Ctrl-C again to give up at once)…",
              file=sys.stderr)

    @contextmanager
    def installed(self) -> Iterator[_Interrupt]:
        """Handle Ctrl-C while the audit runs (signals reach the main thread only: in any
        other, as when a program runs the command in a worker, Ctrl-C is left alone)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def _block(ctx: Context) -> tuple[bytes, int]:
    """The block to audit at (``--at``, else the best block now) and its number."""
    at: bytes | None = ctx.args.at
    client = ctx.client
    if at is None:
        number, at = client.best_block()
        return at, number
    header = client.header(at)
    if header is None:
        raise CreatorError(f"the node has no block {hex0x(at)} (--at)")
    return at, header.number


def audit(ctx: Context) -> int:
    # (Imported here: pyarrow takes half a second to load, which no other command needs.)
    from client.audit.classify import Summary
    from client.audit.inputs import open_manifest
    from client.audit.report import ReportInfo, check_report_path, open_report

    a = ctx.args
    if a.out:
        check_report_path(a.out)
    if a.dask and not a.registry:
        raise CreatorError("--dask needs --registry: the workers join the shards against a "
                           "registry file, they do not call the node")
    manifest = open_manifest(a.input, hash_column=a.hash_column, id_column=a.id_column)
    registry = _registry(ctx, manifest) if a.registry else None
    if registry is not None:
        licensee, at, number = (registry.info.licensee,
                                from_hex0x(registry.info.block_hash, 32),
                                registry.info.block_number)
    else:
        licensee = _licensee(ctx)
        at, number = _block(ctx)
    near = manifest.kind == "media" and not a.no_near_duplicates
    info = ReportInfo(source=str(a.input), block_hash=hex0x(at), block_number=number,
                      licensee=licensee,
                      audited_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      near_max_distance=a.max_distance if near else None,
                      registry=None if registry is None else str(a.registry))
    writer = open_report(a.out, info) if a.out else None
    summary = Summary()
    try:
        if registry is None:
            info.complete = _run(ctx, manifest, at, licensee, summary, writer,
                                 info.near_max_distance)
        else:
            info.complete = _run_local(ctx, manifest, registry, summary, writer,
                                       info.near_max_distance)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.finish(summary)
    _emit(ctx, info, summary)
    return 0 if info.complete else 130


def _registry(ctx: Context, manifest: Manifest) -> Registry:
    """``--registry``'s file, checked against the other options: its block, its licensee."""
    from client.audit.registry import open_registry

    a = ctx.args
    registry = open_registry(a.registry)
    if a.at is not None and hex0x(a.at) != registry.info.block_hash:
        raise CreatorError(f"--at {hex0x(a.at)}: the registry {a.registry} is as of block "
                           f"{registry.info.block_hash} (#{registry.info.block_number}); "
                           "export one at that block")
    registry.check_licensee(a.licensee)
    if a.dask and manifest.kind == "media":
        raise CreatorError("--dask maps the audit over files of rows (parquet shards, CSV, "
                           "JSON Lines), not over a folder of media files")
    return registry


def _licensee(ctx: Context) -> str | None:
    """``--licensee``, else the signer's account if one is given, else None."""
    if ctx.args.licensee:
        return str(ctx.args.licensee)
    key = ctx.signer(required=False)
    return None if key is None else key.address


def _run(ctx: Context, manifest: Manifest, at: bytes, licensee: str | None, summary: Summary,
         writer: ReportWriter | None, near_max_distance: int | None) -> bool:
    """Audit every row (or, after Ctrl-C, the first ones); whether it was every row.
    With ``near_max_distance``, images are also looked up by fingerprint."""
    from client.audit.lookup import RpcLookup, audit_chunks
    from client.audit.near import NearDuplicates

    lookup = RpcLookup(ctx.args.rpc, at, licensee)
    then = (None if near_max_distance is None
            else NearDuplicates(manifest.path, lookup, near_max_distance))
    try:
        with _Interrupt().installed() as stopped:
            _take(audit_chunks(manifest.chunks(stopped), lookup, then=then), manifest, summary,
                  writer)
            return manifest.finished
    finally:
        lookup.close()


def _take(batches: Iterable[list[AuditRow]], manifest: Manifest, summary: Summary,
          writer: ReportWriter | None) -> None:
    """Count each batch of report rows into ``summary`` and write it, with a progress bar
    on stderr once the audit has taken :data:`PROGRESS_DELAY_S`."""
    from tqdm import tqdm

    bar = tqdm(total=manifest.total_rows, unit=" rows", unit_scale=True, file=sys.stderr,
               delay=PROGRESS_DELAY_S, disable=None, dynamic_ncols=True)
    try:
        for rows in batches:
            summary.add(rows)
            if writer is not None:
                writer.write(rows)
            if manifest.total_rows is None:
                bar.total = manifest.estimated_rows(summary.rows)
            bar.update(len(rows))
    finally:
        bar.close()


def _run_local(ctx: Context, manifest: Manifest, registry: Registry, summary: Summary,
               writer: ReportWriter | None, near_max_distance: int | None) -> bool:
    """Audit every row (or, after Ctrl-C, the first ones) against ``registry``, in this
    process or, with ``--dask``, on a Dask cluster; whether it was every row. With
    ``near_max_distance``, images are also looked up by fingerprint in the registry."""
    from client.audit.near import NearDuplicates
    from client.audit.registry import audit_manifest

    then = (None if near_max_distance is None
            else NearDuplicates(manifest.path, registry, near_max_distance))
    with _Interrupt().installed() as stopped, _dask(ctx.args.dask) as scheduler:
        if scheduler is None:
            batches = audit_manifest(manifest, registry, stopped, then=then)
        else:
            from client.audit.registry import dask_audit

            batches = dask_audit(scheduler, manifest, registry.path, stopped=stopped)
        _take(batches, manifest, summary, writer)
        return manifest.finished


@contextmanager
def _dask(address: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` of the cluster at ``address`` (``local`` or ``local:N``: a
    cluster of N worker processes on this machine, started here and ended after), or None."""
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise CreatorError("--dask needs the dask extra: pip install 'opuschain[dask]'") from None
    dask: Any = distributed  # (untyped)
    if address == "local" or address.startswith("local:"):
        workers = _local_workers(address)
        with dask.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None) as cluster, \
                dask.Client(cluster) as client:
            yield client
        return
    try:
        client = dask.Client(address, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        raise CreatorError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    with client:
        yield client


def _local_workers(address: str) -> int:
    """``local`` (one worker a core) or ``local:N`` (N workers)."""
    if address == "local":
        return os.cpu_count() or 1
    text = address.split(":", 1)[1]
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise CreatorError(f"--dask {address}: local:N takes a number of workers, 1 to 1024")
    return int(text)


def _emit(ctx: Context, info: ReportInfo, summary: Summary) -> None:
    from client.audit.classify import Status
    from client.audit.report import TOP_HOLDERS

    out = ctx.args.out
    data: dict[str, Any] = info.to_json() | {"summary": summary.to_json(TOP_HOLDERS),
                                             "report": out}
    state = "" if info.complete else " (partial: stopped by Ctrl-C)"
    lines = [f"Audited {summary.rows:,} items of {info.source} at block #{info.block_number} "
             f"{info.block_hash}{state}"]
    if info.registry:
        lines.append(f"  registry                {info.registry} (no node asked)")
    if info.licensee:
        lines.append(f"  licensee                {info.licensee}")
    for status in Status:
        lines.append(f"  {status.text:<24}{summary.counts[status]:>12,} "
                     f"{summary.share(status):>7.1%}")
    if info.near_max_distance is not None:
        lines.append(f"  near-duplicates         {summary.near_duplicates:>12,} (PDQ within "
                     f"{info.near_max_distance} bits; counted above as copies of their work)")
    lines.append(f"  fees owed               {format_amount(summary.fees_owed)} for "
                 f"{summary.works_to_license:,} works to license (one license a work)")
    top = summary.top_holders(TOP_HOLDERS)
    if top:
        lines.append(f"  rights holders          {len(summary.holders):,}; owed the most:")
        lines.extend(f"    {owner}  {_count(h.items, 'item')}, "
                     f"{_count(h.works, 'work')} to license, {format_amount(h.fees)}"
                     for owner, h in top)
    if out:
        lines.append(f"Report: {out}" + ("" if info.complete else " (partial)"))
    ctx.emit(data, lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def add_parsers(sub: Subcommands) -> None:
    p = command(sub, "audit", audit,
                "audit a dataset: which of its items are registered works, and on what terms")
    p.add_argument("input", metavar="INPUT",
                   help="a parquet file or a folder of parquet shards (DataComp's columns), a "
                        "CSV or JSON Lines file with a sha256 column, or a folder of media "
                        "files (hashed here)")
    p.add_argument("--hash-column", default=DEFAULT_HASH_COLUMN, metavar="NAME",
                   help="the column holding each item's SHA-256, 64 hex digits (default "
                        f"{DEFAULT_HASH_COLUMN})")
    p.add_argument("--id-column", metavar="NAME",
                   help="the column naming each item (default uid, else url; without one, "
                        "items are named FILE:ROW)")
    p.add_argument("--licensee", type=arguments.address_text, metavar="ADDR",
                   help="an AI builder's account: items it already holds a license for "
                        "are reported as licensed (default: the account of --key or "
                        "--dev-account, if given)")
    p.add_argument("--at", type=arguments.hash32, metavar="BLOCK_HASH",
                   help="audit as of this block (default: the best block when the audit "
                        "starts); the report names the block either way")
    p.add_argument("--no-near-duplicates", action="store_true",
                   help="in a folder of images, match by content hash only (default: an "
                        "image no hash finds is also looked up by its PDQ fingerprint)")
    p.add_argument("--max-distance",
                   type=arguments.number_in_range("a distance in bits", 0, MAX_MATCH_DISTANCE),
                   default=DEFAULT_MAX_DISTANCE, metavar="BITS",
                   help="the PDQ Hamming distance (of 256 bits) within which an image is a "
                        f"near-duplicate of a work (default {DEFAULT_MAX_DISTANCE}, at most "
                        f"{MAX_MATCH_DISTANCE})")
    p.add_argument("--out", metavar="FILE",
                   help="write a report: FILE.csv, FILE.parquet, FILE.json or FILE.html "
                        "(one self-contained page)")
    p.add_argument("--registry", metavar="FILE",
                   help="audit against a registry file (opus registry export) instead of "
                        "the node: a local join; the report names the registry's block, "
                        "and its licensee is the registry's")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="with --registry: audit the shards on a Dask cluster, one task a "
                        "shard (tcp://HOST:8786, the scheduler of a cluster whose workers "
                        "see the same paths; or local / local:N, N worker processes here)")
