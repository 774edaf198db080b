"""Benchmark: import signed blocks of a creative-works workload into a fresh LevelDB chain.

1. Builds a genesis with ``--preload-works`` works already registered and
   ``--accounts`` endowed accounts.
2. Authors ``--blocks`` blocks of ``--txs-per-block`` signed extrinsics with the
   node's own block builder, on a scratch database, and exports them to a file.
   ``mixed``: transfers, work registrations (originals and derivatives), license
   offers and acquisitions, revenue payments through derivative chains, usage
   records. ``register``: work registrations only.
3. In a fresh process (so its peak RSS is the importer's alone) imports the
   file into a fresh database exactly as a node does: decode, header and seal
   checks, signatures verified on the spare core while the block executes,
   state root, one synced write batch per block; the node-side listing index
   follows on the store's indexer thread, and the clock stops once it has
   caught up.

Prints one JSON line: transactions and blocks per second, the share of import
time per phase, the state size, the importer's peak RSS, and, measured in the
same run, this machine's single-core ed25519 verify rate and the ratio of the
import rate to it.

    .venv/bin/python -m bench.import_blocks                      # the recorded run
    .venv/bin/python -m bench.import_blocks --preload-works 0 --workload register \\
        --blocks 500 --txs-per-block 2000                        # 1,000,000 registrations
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genesis.builder import build_genesis
from genesis.spec import ChainSpec, GenesisWork, dev_spec
from node.chain.blockfile import export_blocks, import_blocks
from node.chain.importer import PhaseTimes, SignatureWorkers, settle_for_import, verify_and_execute
from node.chain.store import ChainStore
from runtime import codec
from runtime.crypto import Keypair, blake2_256, dev_keypair, sha256, verify
from runtime.execution import build_block
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules import balances, licensing, provenance, royalties, system, usage
from runtime.modules.licensing import AiUse
from runtime.modules.provenance import ParentLink, Split, WorkKind
from runtime.modules.usage import Purpose
from runtime.support import make_call

SLOT_MS = 2000
ENDOWMENT = 10**24


def bench_accounts(count: int) -> list[Keypair]:
    return [Keypair.from_seed(blake2_256(b"bench//" + str(i).encode())) for i in range(count)]


def bench_spec(preload_works: int, accounts: int) -> ChainSpec:
    keys = bench_accounts(accounts)
    works = tuple(
        GenesisWork(keys[i % accounts].public, sha256(b"preloaded work %d" % i), "image",
                    f"Preloaded work {i}", "", ((keys[i % accounts].public, 10_000),))
        for i in range(preload_works)
    )
    base = dev_spec()
    return dataclasses.replace(
        base, balances=base.balances + tuple((k.public, ENDOWMENT) for k in keys), works=works
    )


# ---------------------------------------------------------------------------
# Building the blocks


@dataclasses.dataclass
class Model:
    """What the generator knows exists on chain (learned from the built blocks' events)."""

    works_by_owner: dict[int, list[int]]
    terms: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (terms, work)
    # (license id, holder, work)
    licenses: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    derivatives: list[int] = dataclasses.field(default_factory=list)
    registered: int = 0


TERMS = dict(
    transferable=True, commercial_use=True, commercial_attribution=True, commercial_rev_share=500,
    derivatives_allowed=True, derivatives_attribution=True, derivatives_approval=False,
    derivatives_reciprocal=False, ai_training=AiUse.ALLOWED, ai_inference=AiUse.CONSTRAINED,
    minting_fee=10**12, expiry_blocks=0, max_supply=0, legal_uri="ipfs://pil/commercial-remix",
    legal_hash=None,
)


def next_calls(rng: random.Random, model: Model, keys: list[Keypair], count: int,
               workload: str, block_number: int) -> list[tuple[int, Any]]:
    """``count`` (signer index, call args) pairs drawing on what exists so far."""
    calls: list[tuple[int, Any]] = []
    n = len(keys)
    for i in range(count):
        signer = rng.randrange(n)
        roll = rng.random() if workload == "mixed" else 0.30
        if roll < 0.25:
            calls.append((signer, balances.TransferArgs(keys[rng.randrange(n)].public, 10**9)))
        elif roll < 0.45:
            model.registered += 1
            content = sha256(b"work %d/%d/%d" % (block_number, i, model.registered))
            parents: tuple[ParentLink, ...] = ()
            held = [lic for lic in model.licenses if lic[1] == signer]
            if held and roll < 0.32:
                license_id, _, work_id = held[rng.randrange(len(held))]
                parents = (ParentLink(work_id, license_id),)
            calls.append((signer, provenance.RegisterWork(
                content, WorkKind.IMAGE, f"Work {model.registered}", "ipfs://meta", None,
                (Split(keys[signer].public, 10_000),), parents)))
        elif roll < 0.52:
            owned = model.works_by_owner.get(signer)
            if owned:
                calls.append((signer, licensing.OfferTerms(
                    work_id=owned[rng.randrange(len(owned))], **TERMS)))  # type: ignore[arg-type]
            else:
                calls.append((signer, balances.TransferArgs(keys[0].public, 10**9)))
        elif roll < 0.67 and model.terms:
            terms_id, _ = model.terms[rng.randrange(len(model.terms))]
            calls.append((signer, licensing.AcquireLicense(terms_id)))
        elif roll < 0.85 and (model.derivatives or model.terms):
            pool = model.derivatives or [w for _, w in model.terms]
            calls.append((signer, royalties.PayRevenue(pool[rng.randrange(len(pool))],
                                                       10**15, "monthly sales")))
        elif model.licenses:
            license_id, holder, _ = model.licenses[rng.randrange(len(model.licenses))]
            calls.append((holder, usage.RecordUsage(license_id, Purpose.AI_TRAINING,
                                                    "opus-diffusion-v2", 1, "training run")))
        else:
            calls.append((signer, balances.TransferArgs(keys[rng.randrange(n)].public, 10**9)))
    return calls


def learn(model: Model, events: Any, keys_index: dict[bytes, int]) -> None:
    for record in events:
        event = record.event
        if isinstance(event, provenance.WorkRegistered):
            owner = keys_index.get(event.owner)
            if owner is not None:
                model.works_by_owner.setdefault(owner, []).append(event.work_id)
            if event.parents:
                model.derivatives.append(event.work_id)
        elif isinstance(event, licensing.TermsOffered):
            model.terms.append((event.terms_id, event.work_id))
        elif isinstance(event, licensing.LicenseAcquired):
            holder = keys_index.get(event.licensee)
            if holder is not None:
                model.licenses.append((event.license_id, holder, event.work_id))
        elif isinstance(event, system.ExtrinsicFailed):
            raise RuntimeError(f"workload extrinsic failed: {event.error}: {event.detail}")


def build_blocks(args: argparse.Namespace, workdir: Path, block_file: Path) -> dict[str, Any]:
    spec = bench_spec(args.preload_works, args.accounts)
    genesis = build_genesis(spec)
    keys = bench_accounts(args.accounts)
    keys_index = {k.public: i for i, k in enumerate(keys)}
    model = Model(works_by_owner={})
    for work_id in range(1, args.preload_works + 1):
        model.works_by_owner.setdefault((work_id - 1) % args.accounts, []).append(work_id)
    nonces = [0] * args.accounts
    rng = random.Random(7)
    alice = dev_keypair("alice")
    started = time.perf_counter()
    with ChainStore.open(workdir / "builder", genesis) as store:
        for number in range(1, args.blocks + 1):
            raws = []
            for signer, call_args in next_calls(rng, model, keys, args.txs_per_block,
                                                args.workload, number):
                ext = sign_extrinsic(keys[signer], make_call(call_args), nonces[signer],
                                     genesis.hash, SPEC_VERSION)
                nonces[signer] += 1
                raws.append(codec.encode(ext))
            parent = store.best_header
            built = build_block(store.best_state(), store.node_store, parent, raws,
                                timestamp=number * SLOT_MS, author=alice,
                                genesis_hash=genesis.hash)
            if built.invalid or built.deferred:
                raise RuntimeError(f"block {number}: {len(built.invalid)} invalid, "
                                   f"{len(built.deferred)} deferred: lower --txs-per-block")
            store.import_block(built.executed)
            learn(model, built.executed.events, keys_index)
            print(f"built #{number} ({len(raws)} extrinsics)", file=sys.stderr, flush=True)
        export_blocks(store, block_file, 1, args.blocks)
    return {"build_seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------
# Importing them (runs in its own process)


def single_core_verify_rate(rounds: int = 5, samples: int = 2000) -> float:
    """ed25519 verifications per second on one core: the best of ``rounds`` rounds.

    The best round is the one least disturbed by other work on the machine, as
    ``timeit`` takes the minimum; the import benchmark measures it before and
    after the import and keeps the higher, so the ratio is not flattered by a
    verify rate measured in a slow moment.
    """
    key = dev_keypair("bob")
    message = bytes(180)
    signature = key.sign(message)
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(samples):
            verify(key.public, message, signature)
        best = max(best, samples / (time.perf_counter() - started))
    return best


def anon_rss_megabytes() -> float:
    """Private (anonymous) resident memory. ru_maxrss also counts the pages of the
    database files LevelDB maps into memory, which the kernel reclaims at will."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def import_file(args: argparse.Namespace, workdir: Path, block_file: Path) -> dict[str, Any]:
    genesis = build_genesis(bench_spec(args.preload_works, args.accounts))
    verify_rate = single_core_verify_rate()
    workers = SignatureWorkers()
    workers.warm_up()
    times = PhaseTimes()
    commit = 0.0
    txs = blocks = 0
    peak_anon = 0.0
    try:
        with ChainStore.open(workdir / "importer", genesis) as store:
            settle_for_import()  # as a node does once it has started
            started = time.perf_counter()
            cpu_started = time.thread_time()
            for block in import_blocks(block_file):  # streamed: one block in memory at a time
                parent = store.best_header
                executed = verify_and_execute(store.best_state(), store.node_store, parent,
                                              block, genesis.hash, workers, times)
                before_commit = time.perf_counter()
                # Written while the next block executes, as a syncing node does (the
                # next import waits for it, and that wait counts as commit time).
                store.import_block(executed, durable=False)
                commit += time.perf_counter() - before_commit
                txs += len(block.extrinsics)
                blocks += 1
                peak_anon = max(peak_anon, anon_rss_megabytes())
            # The last block's write, and the node-side index catching up with it, count
            # as commit (the indexer thread's own work is reported on its own below).
            before_commit = time.perf_counter()
            store.wait_indexed()
            commit += time.perf_counter() - before_commit
            total = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
            indexer_cpu = store.indexer_cpu_seconds
            verify_rate = max(verify_rate, single_core_verify_rate())
            state_keys = sum(1 for _ in store.iter_state_prefix(b""))
    finally:
        workers.close()
    db_bytes = sum(f.stat().st_size for f in (workdir / "importer").rglob("*") if f.is_file())
    tx_rate = txs / total
    phases = {"checks_and_decode": times.checks, "execution": times.execution,
              "signature_wait": times.signatures, "state_root": times.state_root,
              "commit": commit}
    return {
        "workload": args.workload,
        "preloaded_works": args.preload_works,
        "blocks": blocks,
        "extrinsics": txs,
        "import_seconds": round(total, 3),
        # CPU time of the importing thread alone: on a machine shared with other work
        # it shows how much of the wall time was this import's own work.
        "import_thread_cpu_seconds": round(cpu, 3),
        # The node-side listing index follows on a thread of its own (node.chain.indexer),
        # sharing the GIL and the cores with the import: its time is within
        # import_seconds, spread over the phases.
        "indexer_thread_cpu_seconds": round(indexer_cpu, 3),
        "txs_per_second": round(tx_rate),
        "blocks_per_second": round(blocks / total, 2),
        "time_share": {k: round(v / total, 3) for k, v in phases.items()},
        "state_root_plus_commit_share": round((times.state_root + commit) / total, 3),
        "state_keys": state_keys,
        "db_megabytes": round(db_bytes / 2**20, 1),
        "peak_rss_megabytes": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_anon_rss_megabytes": round(peak_anon, 1),
        "signature_workers": workers.workers,
        "single_core_verify_per_second": round(verify_rate),
        "import_to_verify_ratio": round(tx_rate / verify_rate, 3),
        "cpu_count": os.cpu_count(),
    }


def import_in_subprocess(args: argparse.Namespace, block_file: Path,
                         workdir: Path) -> dict[str, Any]:
    """Import ``block_file`` in a fresh process (its peak RSS is the importer's alone)."""
    command = [sys.executable, "-m", "bench.import_blocks", "--import-only", str(block_file),
               "--workdir", str(workdir), "--preload-works", str(args.preload_works),
               "--accounts", str(args.accounts), "--workload", args.workload]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preload-works", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--txs-per-block", type=int, default=2000)
    parser.add_argument("--workload", choices=("mixed", "register"), default="mixed")
    parser.add_argument("--workdir", type=Path, help="keep databases here (default: a temp dir)")
    parser.add_argument("--import-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.import_only is not None:
        print(json.dumps(import_file(args, args.workdir, args.import_only)))
        return
    with tempfile.TemporaryDirectory(prefix="opus-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        block_file = workdir / "blocks.opus"
        built = build_blocks(args, workdir, block_file)
        result = import_in_subprocess(args, block_file, workdir)
        result.update(built)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
