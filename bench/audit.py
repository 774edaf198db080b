"""Benchmark: ``opus audit`` of a DataComp-shaped dataset against a node on the same machine.

1. Writes a raw chain spec whose genesis holds ``--works`` registered works (the import
   benchmark's preloaded works, :func:`bench.import_blocks.bench_spec`) and, on them, terms
   of every kind an audit tells apart: a quarter with no terms, a quarter refusing AI
   training, a quarter allowing it (fees from 0.1 to 0.7 OPUS, some with a supply limit),
   a quarter constrained; the licensee holds a license on one in ten of the allowed ones.
2. Writes ``--rows`` manifest rows as DataComp CommonPool parquet shards (``--shards``;
   every column DataComp has): every registered work once, the other rows hashes nobody
   registered, in a shuffled order.
3. Starts the node (``opus --chain SPEC``, not a validator: the chain stays at genesis, so
   the audit reads the best block's flat state), then runs ``opus audit SHARDS --licensee
   ADDR --out report.csv`` as a process of its own and times it from start to exit, with
   its peak RSS (``wait4``). The audit's counts are checked against what was built.

Prints one JSON line: rows, wall seconds, rows per second, the client's peak RSS, the
node's peak RSS, and the audit's counts. Goals: 1,000,000 rows in at most 60 s (20 s
hoped for) with the client under 500 MB.

With ``--registry``, step 3 is instead ``opus registry export --licensee ADDR --out
registry.parquet`` (timed, with its peak RSS), then ``opus audit SHARDS --registry
registry.parquet`` (the join: no node asked; ``--dask N``: on a local Dask cluster of N
worker processes), timed the same way; the JSON line has both.

    .venv/bin/python -m bench.audit                    # the recorded run
    .venv/bin/python -m bench.audit --rows 100000 --works 10000 --out-format html
    .venv/bin/python -m bench.audit --registry         # export, then join
    .venv/bin/python -m bench.audit --registry --dask 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.import_blocks import bench_spec
from bench.sync import NodeProcess, opus
from genesis.builder import genesis_state
from genesis.spec import spec_to_json
from runtime.crypto import dev_keypair, sha256
from runtime.modules import licensing
from runtime.modules.licensing import AiUse
from runtime.state import MemoryState, Overlay

ACCOUNTS = 256
LICENSEE = dev_keypair("bob")
TENTH = 10**11  # 0.1 OPUS
DATACOMP = pa.schema([
    ("uid", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("original_width", pa.int64()), ("original_height", pa.int64()),
    ("clip_b32_similarity_score", pa.float32()), ("clip_l14_similarity_score", pa.float32()),
    ("face_bboxes", pa.list_(pa.list_(pa.float64()))), ("sha256", pa.string()),
])


@dataclasses.dataclass
class Built:
    counts: dict[str, int]  # what the audit must find, per status
    fees_owed: int


def terms_of(work_id: int) -> tuple[AiUse, int, int] | None:
    """The terms offered on a work (AI use, fee, max supply), or None for no terms."""
    kind = work_id % 4
    if kind == 0:
        return None
    if kind == 1:
        return AiUse.NOT_ALLOWED, TENTH, 0
    ai = AiUse.ALLOWED if kind == 2 else AiUse.CONSTRAINED
    return ai, TENTH * (1 + work_id % 7), 1000 if work_id % 3 == 0 else 0


def licensed(work_id: int) -> bool:
    return work_id % 40 == 2  # one in ten of the allowed works


def write_chain_spec(works: int, path: Path) -> Built:
    """The raw spec: the preloaded works, their terms, the licensee's licenses."""
    spec = bench_spec(works, ACCOUNTS)
    state = Overlay(MemoryState())
    for key, value in genesis_state(spec).items():
        state.set(key, value)
    counts = dict.fromkeys(("no_terms", "not_allowed", "allowed", "constrained", "licensed"), 0)
    fees = 0
    terms_id = license_id = 0
    for work_id in range(1, works + 1):
        offered = terms_of(work_id)
        if offered is None:
            counts["no_terms"] += 1
            continue
        ai, fee, supply = offered
        terms_id += 1
        holds = licensed(work_id)
        owner = spec.works[work_id - 1].owner
        licensing.terms.put(state, terms_id, licensing.Terms(
            id=terms_id, work_id=work_id, offered_by=owner, transferable=False,
            commercial_use=False, commercial_attribution=False, commercial_rev_share=0,
            derivatives_allowed=False, derivatives_attribution=False,
            derivatives_approval=False, derivatives_reciprocal=False, ai_training=ai,
            ai_inference=AiUse.NOT_ALLOWED, minting_fee=fee, expiry_blocks=0,
            max_supply=supply, legal_uri="ipfs://bench-terms" if ai == AiUse.CONSTRAINED else "",
            legal_hash=None, retired=False, minted=1 if holds else 0))
        if holds:
            license_id += 1
            licensing.licenses.put(state, license_id, licensing.License(
                license_id, terms_id, work_id, LICENSEE.public, 0, 0, False))
            counts["licensed"] += 1
        elif ai == AiUse.NOT_ALLOWED:
            counts["not_allowed"] += 1
        else:
            counts[ai.value] += 1
            fees += fee
    licensing.next_terms_id.put(state, terms_id + 1)
    licensing.next_license_id.put(state, license_id + 1)
    raw = {k: v for k, v in state.changes.items() if v is not None}
    spec = dataclasses.replace(spec, works=(), name="Opus audit bench", id="opus_audit_bench")
    path.write_text(json.dumps(spec_to_json(spec, raw)))
    return Built(counts, fees)


def write_manifest(rows: int, works: int, shards: int, folder: Path) -> None:
    """DataComp CommonPool parquet shards: every registered work once, shuffled in."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rng = random.Random(15)
    hashes = [sha256(b"preloaded work %d" % i).hex() for i in range(works)]
    hashes += [sha256(b"nobody's row %d" % i).hex() for i in range(rows - works)]
    rng.shuffle(hashes)
    per = -(-rows // shards)
    for s in range(shards):
        part = hashes[s * per:(s + 1) * per]
        n = len(part)
        first = s * per
        uids = [rng.randbytes(16).hex() for _ in range(n)]
        table = pa.table({
            "uid": uids,
            "url": [f"https://images.example.org/{u}.jpg" for u in uids],
            "text": [f"a photograph, row {first + i}" for i in range(n)],
            "original_width": [rng.choice((512, 640, 1024)) for _ in range(n)],
            "original_height": [rng.choice((384, 480, 768)) for _ in range(n)],
            "clip_b32_similarity_score": [rng.random() for _ in range(n)],
            "clip_l14_similarity_score": [rng.random() for _ in range(n)],
            "face_bboxes": [[[0.1, 0.1, 0.3, 0.4]] if i % 5 == 0 else [] for i in range(n)],
            "sha256": part,
        }, schema=DATACOMP)
        pq.write_table(table, folder / f"{s:08d}.parquet", row_group_size=64 * 1024)


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """A running process's CPU time so far (user + system)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class AuditRun:
    seconds: float  # wall time, from start to exit
    cpu_seconds: float
    peak_rss_mb: float
    answer: dict[str, Any]  # its --json output


def run_audit(args: argparse.Namespace, node: NodeProcess, shards: Path,
              workdir: Path) -> AuditRun:
    """``opus audit`` in a process of its own, timed, with its CPU time and peak RSS.

    It is started by a small measuring process (``--measure``): a process's peak RSS
    counts the pages it shared with its parent between fork and exec, and this one's
    parent holds the whole manifest in memory.
    """
    report = workdir / f"report.{args.out_format}"
    command = opus("audit", str(shards), "--rpc", f"http://127.0.0.1:{node.rpc_port}",
                   "--licensee", LICENSEE.address, "--out", str(report), "--json")
    return run_measured(command, workdir, "audit")


def run_measured(command: list[str], workdir: Path, name: str) -> AuditRun:
    """``command`` (an ``opus`` command with ``--json``) in a process of its own, measured
    as :func:`run_audit`'s."""
    measured = workdir / f"{name}.measured.json"
    with open(workdir / f"{name}.out", "wb") as out, open(workdir / f"{name}.err", "wb") as err:
        code = subprocess.run([sys.executable, "-m", "bench.audit", "--measure", str(measured),
                               "--", *command], stdout=out, stderr=err).returncode
    if code != 0:
        raise RuntimeError(f"{name} exited {code}: "
                           f"{(workdir / f'{name}.err').read_text()[-3000:]}")
    figures = json.loads(measured.read_text())
    return AuditRun(figures["seconds"], figures["cpu_seconds"], figures["peak_rss_mb"],
                    json.loads((workdir / f"{name}.out").read_text()))


def run_registry(args: argparse.Namespace, node: NodeProcess, shards: Path, workdir: Path
                 ) -> tuple[AuditRun, AuditRun]:
    """``opus registry export`` from the node, then ``opus audit --registry`` of the shards
    (no node asked; with ``--dask``, on a local Dask cluster of that many processes)."""
    registry = workdir / "registry.parquet"
    exported = run_measured(opus("registry", "export", "--rpc",
                                 f"http://127.0.0.1:{node.rpc_port}", "--licensee",
                                 LICENSEE.address, "--out", str(registry), "--json"),
                            workdir, "export")
    command = opus("audit", str(shards), "--registry", str(registry),
                   "--out", str(workdir / f"report.{args.out_format}"), "--json")
    if args.dask:
        command += ["--dask", f"local:{args.dask}"]
    return exported, run_measured(command, workdir, "join")


def measure(command: list[str], into: Path) -> int:
    """Run ``command``, write its wall time, CPU time and peak RSS to ``into``; its exit
    code."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    into.write_text(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime
                                + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}))
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--works", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--out-format", choices=("csv", "parquet", "json", "html"),
                        default="csv")
    parser.add_argument("--registry", action="store_true",
                        help="export the registry from the node (opus registry export), then "
                             "audit against the file (opus audit --registry): both timed")
    parser.add_argument("--dask", type=int, metavar="N",
                        help="with --registry: the join on a local Dask cluster of N processes")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        sys.exit(measure(args.command, args.measure))
    if args.works > args.rows:
        parser.error("--works must not exceed --rows (each registered work is one row)")

    with tempfile.TemporaryDirectory(prefix="opus-bench-audit-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        spec_file = workdir / "spec.json"
        built = write_chain_spec(args.works, spec_file)
        shards = workdir / "shards"
        write_manifest(args.rows, args.works, args.shards, shards)
        prepare = time.perf_counter() - started
        shutil.rmtree(workdir / "node", ignore_errors=True)  # (a kept workdir's last run)
        node = NodeProcess("audit-bench", spec_file, workdir / "node", workdir / "node.log")
        try:
            node_up = node.wait_answering()
            node_cpu = cpu_seconds(node.process.pid)
            if args.registry:
                exported, run = run_registry(args, node, shards, workdir)
            else:
                run = run_audit(args, node, shards, workdir)
            node_cpu = cpu_seconds(node.process.pid) - node_cpu
            node_rss = peak_rss_mb(node.process.pid)
        finally:
            node.stop()
        load = os.getloadavg()[0]
    answer = run.answer
    counts = answer["summary"]["counts"]
    expected = dict(built.counts, not_registered=args.rows - args.works)
    if counts != expected or answer["summary"]["feesOwed"] != str(built.fees_owed):
        raise RuntimeError(f"the audit found {counts}, fees {answer['summary']['feesOwed']}; "
                           f"built {expected}, fees {built.fees_owed}")
    # What both modes print about the run as a whole; CPU time of each side during the
    # audit: on a machine shared with other work it shows what the audit itself cost.
    common = {
        "node_cpu_seconds": round(node_cpu, 2),
        "node_peak_rss_megabytes": round(node_rss, 1),
        "counts": counts,
        "fees_owed": answer["summary"]["feesOwed"],
        "block_number": answer["blockNumber"],
        "prepare_seconds": round(prepare, 1),
        "node_start_seconds": round(node_up, 1),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(load, 2),
    }
    sizes = {"rows": args.rows, "registered_works": args.works, "shards": args.shards,
             "report": args.out_format}
    if args.registry:
        print(json.dumps({
            "mode": "registry" + (f", dask local:{args.dask}" if args.dask else ""),
            **sizes,
            "export_seconds": round(exported.seconds, 2),
            "export_works_per_second": round(args.works / exported.seconds),
            "export_client_peak_rss_megabytes": round(exported.peak_rss_mb, 1),
            "export_client_cpu_seconds": round(exported.cpu_seconds, 2),
            "registry_megabytes": round(exported.answer.get("bytes", 0) / 2**20, 2),
            "join_seconds": round(run.seconds, 2),
            "join_rows_per_second": round(args.rows / run.seconds),
            "join_client_peak_rss_megabytes": round(run.peak_rss_mb, 1),
            "join_client_cpu_seconds": round(run.cpu_seconds, 2),
            **common,
        }))
        return
    print(json.dumps({
        **sizes,
        "audit_seconds": round(run.seconds, 2),
        "rows_per_second": round(args.rows / run.seconds),
        "client_peak_rss_megabytes": round(run.peak_rss_mb, 1),
        "client_cpu_seconds": round(run.cpu_seconds, 2),
        **common,
    }))


if __name__ == "__main__":
    main()
