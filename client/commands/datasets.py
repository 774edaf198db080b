"""Licensing and usage at dataset scale, from an audit report, and signed statements of it.

    opus audit shards/ --dev-account bob --out audit.csv
    opus license acquire --from audit.csv --max-total 500OPUS --dev-account bob
    opus usage record --from audit.csv --purpose ai_training --subject "model-x v1" \\
        --dev-account bob
    opus dataset certify audit.csv --subject "model-x v1" --out model-x.statement.json \\
        --dev-account bob
    opus verify model-x.statement.json

``license acquire --from`` and ``usage record --from`` act once per registered work whose
items the report says need a license for AI training (statuses ``allowed``,
``constrained``, ``licensed``; one license covers every copy of a work). They decide from
what the chain says now (:func:`client.audit.items.chain_view`), not from the report
alone: a work the signer already holds a training license on is skipped, as is a license
that already has the signer's usage record for this purpose and subject. So a second run,
after a finished or an interrupted one, buys and records nothing twice. Before planning,
each waits until none of the signer's transactions is left in the pool (an interrupted
run's last ones land first).

Nothing certain to fail is paid for: a work with no live terms allowing AI training now
(retired or sold out since the audit) is left out and reported; every call is then tried
on the chain first (``opus_dryRun``: applied to a scratch copy of the best state, kept
nowhere), and a purchase the chain would refuse is left out and reported with its named
error (a usage batch the chain would refuse stops the command before anything is
submitted). The total (license fees plus the transactions' fees, from the dry run) must be
within the signer's free balance and ``--max-total`` before anything is submitted. The
calls then go out with pipelined nonces (:mod:`client.pipeline`).

Licenses are bought under each work's cheapest live terms allowing AI training at the
moment of the run; usage is recorded with ``usage.record_usage_batch``, 64 works a call,
``units`` being the number of the work's items in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import OpusClient
from client.commands import arguments
from client.commands.common import (
    Context,
    CreatorError,
    command,
    format_amount,
    group,
    interactive,
    read_file,
)
from client.errors import ClientError
from runtime.codec import hex0x
from runtime.modules import licensing, usage

if TYPE_CHECKING:
    from client.audit.items import ChainWork, Report, Work
    from client.commands.common import Subcommands

OUTPUT_COLUMNS = ("item", "sha256", "work_id", "license_id", "terms_id", "fee", "outcome",
                  "error")
PROGRESS_DELAY_S = 1.0


class LimitExceeded(CreatorError):
    """The total is above ``--max-total``: nothing is bought."""


class InsufficientFunds(CreatorError):
    """The signer's free balance does not cover the total: nothing is bought."""


class NotConfirmed(CreatorError):
    """The purchase was not confirmed (declined, or no terminal to ask on and no --yes)."""


class NotCovered(CreatorError):
    """A statement cannot be made: works to license lack a license or a usage record."""


# ---------------------------------------------------------------------------
# Shared steps


def _load(ctx: Context) -> tuple[Report, list[Work]]:
    """The report (``--from``), checked row by row, and its works to license."""
    from client.audit.items import read_report, works_of

    report = read_report(ctx.args.from_report)
    block = report.block_hash
    if ctx.client.header(_hash(block)) is None:
        raise CreatorError(f"the node has no block {block}, the block {report.path.name} was "
                           "audited at: was it audited on another chain?")
    return report, works_of(report.items)


def _hash(text: str) -> bytes:
    try:
        return arguments.hash32(text)
    except argparse.ArgumentTypeError:
        raise CreatorError(f"the report's block hash {text!r} is not 0x + 32 bytes of "
                           "hex") from None


def _view(ctx: Context, works: Sequence[Work]) -> list[ChainWork]:
    """What the chain says of each work for the signer, once its pooled transactions are
    in (an interrupted run's)."""
    from client.audit.items import chain_view
    from client.pipeline import wait_until_settled

    address = ctx.key().address
    wait_until_settled(ctx.client, address)
    return chain_view(ctx.args.rpc, works, address)[1]


@contextlib.contextmanager
def _progress(total: int, unit: str) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit=f" {unit}", file=sys.stderr, delay=PROGRESS_DELAY_S,
               disable=None, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _confirm(ctx: Context, question: str) -> None:
    """Go on only with ``--yes`` or a "y" typed on the terminal."""
    if ctx.args.yes:
        return
    if not interactive():
        raise NotConfirmed("no terminal to confirm on: give --yes to go ahead (or --dry-run "
                           "to see the plan); nothing was submitted")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was submitted")


def _id_ranges(ids: Sequence[int]) -> str:
    """``1 2 3 5`` -> ``#1-#3, #5``."""
    parts: list[str] = []
    ordered = sorted(ids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(f"#{ordered[i]}" if i == j else f"#{ordered[i]}-#{ordered[j]}")
        i = j + 1
    return ", ".join(parts) or "none"


# ---------------------------------------------------------------------------
# opus license acquire --from REPORT


@dataclass
class Outcome:
    """What became of one work: ``held``, ``acquired``, ``unavailable`` (no live terms
    allow AI training), ``refused`` (by the dry run: not bought) or ``failed`` (the call
    failed when included: its fee paid, no license)."""

    outcome: str
    license_id: int | None = None
    terms_id: int | None = None
    fee: int | None = None
    error: str = ""


def acquire_from(ctx: Context) -> int:
    from client.pipeline import Pipeline

    a = ctx.args
    out = Path(a.out) if a.out else _default_out(Path(a.from_report))
    if out.suffix.lower() not in (".csv", ".json"):
        raise CreatorError(f"{out.name}: the licenses file is a .csv or .json file")
    report, works = _load(ctx)
    key = ctx.key()
    view = _view(ctx, works)
    outcomes: dict[int, Outcome] = {}
    to_buy: list[tuple[Work, int, int]] = []  # (work, terms id, fee)
    for cw in view:
        found = cw.found
        if found is not None and found.license_id is not None:
            outcomes[cw.work.work_id] = Outcome("held", found.license_id)
        elif found is None or found.offer is None:
            outcomes[cw.work.work_id] = Outcome(
                "unavailable", error="no live terms allow AI training now")
        else:
            to_buy.append((cw.work, found.offer.terms_id, found.offer.fee))
    pipeline = Pipeline(ctx.client, key, until=ctx.until, tip=a.tip)
    to_buy, tx_fees = _dry_run(pipeline, to_buy, outcomes)
    licenses_fee = sum(fee for _, _, fee in to_buy)
    total = licenses_fee + tx_fees
    free = int(ctx.client.account_info(key.address)["free"])
    plan = {"report": str(report.path), "licensee": key.address, "works": len(works),
            "held": _count(outcomes, "held"), "unavailable": _count(outcomes, "unavailable"),
            "refused": _count(outcomes, "refused"), "toBuy": len(to_buy),
            "licenseFees": str(licenses_fee), "transactionFees": str(tx_fees),
            "total": str(total), "free": str(free)}
    if not ctx.json:  # (on stderr: the plan comes before the question, or an error)
        print("\n".join(_plan_lines(plan, report)), file=sys.stderr)
    if a.max_total is not None and total > a.max_total:
        raise LimitExceeded(f"the total {format_amount(total)} exceeds --max-total "
                            f"{format_amount(a.max_total)}; nothing was bought")
    if total > free:
        raise InsufficientFunds(f"the total {format_amount(total)} exceeds the free balance "
                                f"{format_amount(free)} of {key.address}; nothing was bought")
    if a.dry_run or not to_buy:
        if not a.dry_run:
            _write_licenses(out, works, outcomes)
        ctx.emit(plan | {"dryRun": a.dry_run, "out": None if a.dry_run else str(out)},
                 ["Dry run: nothing was submitted." if a.dry_run
                  else f"Nothing to buy. Licenses: {out}"])
        return 0
    _confirm(ctx, f"Buy {len(to_buy)} licenses for {format_amount(total)}?")
    try:
        _buy(ctx, pipeline, to_buy, outcomes)
    finally:
        _write_licenses(out, works, outcomes)
    return _acquired(ctx, plan, pipeline.fees_paid, outcomes, out)


def _default_out(report: Path) -> Path:
    """``audit.csv`` -> ``audit.licenses.csv``, next to the report."""
    return report.with_name(report.stem + ".licenses.csv")


def _count(outcomes: dict[int, Outcome], outcome: str) -> int:
    return sum(o.outcome == outcome for o in outcomes.values())


def _dry_run(pipeline: Any, to_buy: list[tuple[Work, int, int]],
             outcomes: dict[int, Outcome]) -> tuple[list[tuple[Work, int, int]], int]:
    """The purchases a dry run on the chain accepts, and their transaction fees; the
    others are recorded as ``refused`` with the chain's named error (not bought)."""
    accepted: list[tuple[Work, int, int]] = []
    fees = 0
    runs = pipeline.dry_run([licensing.AcquireLicense(t) for _, t, _ in to_buy])
    for (work, terms_id, fee), run in zip(to_buy, runs, strict=True):
        if run.ok:
            accepted.append((work, terms_id, fee))
            fees += run.fee
        else:
            outcomes[work.work_id] = Outcome("refused", None, terms_id, fee,
                                             f"{run.error}: {run.detail}" if run.detail
                                             else str(run.error))
    return accepted, fees


def _plan_lines(plan: dict[str, Any], report: Report) -> list[str]:
    partial = "" if report.complete else " (a PARTIAL report: only its rows)"
    return [f"Licenses for the works of {plan['report']}{partial}, for {plan['licensee']}",
            f"  works to license     {plan['works']:,}",
            f"  held already         {plan['held']:,}",
            f"  unavailable now      {plan['unavailable']:,} (no live terms allow AI training)",
            f"  refused by dry run   {plan['refused']:,}",
            f"  to buy               {plan['toBuy']:,}",
            f"  license fees         {format_amount(plan['licenseFees'])}",
            f"  transaction fees     {format_amount(plan['transactionFees'])}",
            f"  total                {format_amount(plan['total'])} (free balance "
            f"{format_amount(plan['free'])})"]


def _buy(ctx: Context, pipeline: Any, to_buy: Sequence[tuple[Work, int, int]],
         outcomes: dict[int, Outcome]) -> None:
    calls = (licensing.AcquireLicense(terms_id) for _, terms_id, _ in to_buy)
    with _progress(len(to_buy), "licenses") as bar:
        for (work, terms_id, _), receipt in zip(to_buy, pipeline.run(calls), strict=False):
            if receipt.success:
                event = receipt.events_named("licensing", "LicenseAcquired")[0]
                outcomes[work.work_id] = Outcome("acquired", int(event["licenseId"]), terms_id,
                                                 int(event["fee"]))
            else:
                outcomes[work.work_id] = Outcome("failed", None, terms_id,
                                                 error=receipt.error or "unknown")
            bar.update(1)


def _acquired(ctx: Context, plan: dict[str, Any], fees_paid: int,
              outcomes: dict[int, Outcome], out: Path) -> int:
    acquired = [o for o in outcomes.values() if o.outcome == "acquired"]
    failed = [o for o in outcomes.values() if o.outcome == "failed"]
    paid = sum(o.fee or 0 for o in acquired)
    data = plan | {"acquired": len(acquired), "failed": len(failed),
                   "licenseIds": sorted(o.license_id for o in acquired if o.license_id),
                   "licenseFeesPaid": str(paid), "transactionFeesPaid": str(fees_paid),
                   "out": str(out)}
    lines = [f"Acquired {len(acquired):,} licenses ({_id_ranges(data['licenseIds'])}) for "
             f"{format_amount(paid)} + {format_amount(fees_paid)} in transaction fees"]
    if failed:
        errors = sorted({o.error for o in failed})
        lines.append(f"  FAILED: {len(failed):,} ({', '.join(errors)}); fees paid, no license")
    refused = sorted({o.error for o in outcomes.values() if o.outcome == "refused"})
    if refused:
        lines.append(f"  not bought: {len(refused)} kind(s) of refusal by the dry run: "
                     + "; ".join(refused))
    lines.append(f"Licenses: {out}")
    ctx.emit(data, lines)
    return 1 if failed else 0


def _write_licenses(out: Path, works: Sequence[Work], outcomes: dict[int, Outcome]) -> None:
    """One row per item of the works to license: the license covering it, or why none."""
    rows: list[dict[str, Any]] = []
    for work in works:
        o = outcomes.get(work.work_id) or Outcome("not_tried")
        for item in work.items:
            rows.append({"item": item.item, "sha256": item.sha256, "work_id": work.work_id,
                         "license_id": o.license_id, "terms_id": o.terms_id,
                         "fee": None if o.fee is None else str(o.fee),
                         "outcome": o.outcome, "error": o.error})
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with part.open("w", encoding="utf-8", newline="") as f:
            if out.suffix.lower() == ".json":
                json.dump({"format": "opus-licenses/1", "rows": rows}, f, indent=1)
            else:
                writer = csv.DictWriter(f, OUTPUT_COLUMNS)
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in r.items()}
                                 for r in rows)
        os.replace(part, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            part.unlink()
        raise CreatorError(f"cannot write {str(out)!r}: {e.strerror}") from None


# ---------------------------------------------------------------------------
# opus usage record --from REPORT


def recorded_usage(url: str, license_ids: Sequence[int], licensee: str, purpose: str,
                   subject: str) -> dict[int, int]:
    """license id -> the id of ``licensee``'s first usage record under it for ``purpose``
    and ``subject``, for the licenses that have one (a few listings in flight)."""
    from client.pipeline import parallel_calls

    def first(client: OpusClient, license_id: int) -> int | None:
        start: int | None = 0
        while start is not None:
            page = client.list_usage(license=license_id, start=start, limit=1000)
            for r in page["items"]:
                if (r["licensee"], r["purpose"], r["subject"]) == (licensee, purpose, subject):
                    return int(r["id"])
            start = page["next"]
        return None

    found = parallel_calls(url, first, license_ids)
    return {lic: usage_id for lic, usage_id in zip(license_ids, found, strict=True)
            if usage_id is not None}


def record_from(ctx: Context) -> int:
    from client.pipeline import Pipeline

    a = ctx.args
    _, works = _load(ctx)
    key = ctx.key()
    view = _view(ctx, works)
    licensed = [(cw.work, cw.found.license_id) for cw in view
                if cw.found is not None and cw.found.license_id is not None]
    unlicensed = [cw.work.work_id for cw in view
                  if cw.found is None or cw.found.license_id is None]
    already = recorded_usage(a.rpc, [lic for _, lic in licensed], key.address, a.purpose,
                             a.subject)
    todo = [(work, lic) for work, lic in licensed if lic not in already]
    entries = [usage.RecordUsage(lic, usage.Purpose(a.purpose), a.subject, len(work.items),
                                 a.memo) for work, lic in todo]
    batches = [entries[i:i + usage.MAX_BATCH] for i in range(0, len(entries), usage.MAX_BATCH)]
    new: dict[int, int] = {}  # license id -> usage id
    failed: list[str] = []
    calls = [usage.RecordUsageBatch(tuple(b)) for b in batches]
    pipeline = Pipeline(ctx.client, key, until=ctx.until, tip=a.tip)
    for number, run in enumerate(pipeline.dry_run(calls), start=1):
        if not run.ok:
            raise CreatorError(f"the chain would refuse the usage batch {number} of "
                               f"{len(calls)}: {run.error}: {run.detail}; nothing was "
                               "submitted")
    if calls and not a.dry_run:
        with _progress(len(entries), "works") as bar:
            for batch, receipt in zip(batches, pipeline.run(calls), strict=False):
                if receipt.success:
                    for event in receipt.events_named("usage", "UsageRecorded"):
                        new[int(event["licenseId"])] = int(event["usageId"])
                else:
                    failed.append(f"{receipt.error}: {receipt.detail}")
                bar.update(len(batch))
    data = {"purpose": a.purpose, "subject": a.subject, "licensee": key.address,
            "works": len(works), "unlicensedWorks": unlicensed, "dryRun": a.dry_run,
            "alreadyRecorded": {str(k): v for k, v in sorted(already.items())},
            "recorded": {str(k): v for k, v in sorted(new.items())},
            "toRecord": len(entries), "failedCalls": failed}
    verb = "Would record" if a.dry_run else "Recorded"
    count = len(entries) if a.dry_run else len(new)
    lines = [f"{verb} {count:,} usage records ({a.purpose}, subject \"{a.subject}\") in "
             f"{len(batches):,} transaction{'' if len(batches) == 1 else 's'}"
             + ("" if a.dry_run else f": usage {_id_ranges(list(new.values()))}"),
             f"  already recorded     {len(already):,}: usage "
             f"{_id_ranges(list(already.values()))}"]
    if unlicensed:
        lines.append(f"  NOT LICENSED         {len(unlicensed):,} works (no usage recorded: "
                     f"buy their licenses first: opus license acquire --from REPORT): "
                     + ", ".join(f"#{w}" for w in unlicensed[:10])
                     + (" …" if len(unlicensed) > 10 else ""))
    if failed:
        lines.append(f"  FAILED calls         {len(failed)}: {failed[0]}")
    ctx.emit(data, lines)
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# opus dataset certify REPORT


def certify(ctx: Context) -> int:
    from client.statement import FORMAT, manifest_sha256, sign_statement

    a = ctx.args
    report, works = _load(ctx)
    if not report.complete:
        raise CreatorError(f"{report.path.name} is a partial audit (stopped by Ctrl-C): audit "
                           "the whole dataset before certifying it")
    manifest = Path(a.manifest or str(report.meta.get("source", "")))
    if not manifest.exists():
        raise CreatorError(f"the manifest {str(manifest)!r} does not exist (the report names "
                           "it; give --manifest PATH)")
    key = ctx.key()
    view = _view(ctx, works)
    licenses = {cw.work.work_id: cw.found.license_id for cw in view
                if cw.found is not None and cw.found.license_id is not None}
    used = recorded_usage(a.rpc, list(licenses.values()), key.address, a.purpose, a.subject)
    missing = [w.work_id for w in works if licenses.get(w.work_id) not in used]
    if missing:
        raise NotCovered(f"{len(missing):,} works to license lack a license or a {a.purpose} "
                         f"usage record for {a.subject!r} ("
                         + ", ".join(f"#{w}" for w in missing[:10])
                         + ("…" if len(missing) > 10 else "")
                         + "): run opus license acquire --from and opus usage record --from "
                         "first")
    digest, files = manifest_sha256(manifest)
    number, best = ctx.client.best_block()
    statement = sign_statement({
        "format": FORMAT,
        "genesisHash": hex0x(ctx.client.genesis_hash()),
        "manifest": {"source": str(report.meta.get("source", manifest)), "sha256": digest,
                     "files": files},
        "audit": {"report": report.path.name,
                  "reportSha256": _sha256(read_file(str(report.path))),
                  "blockHash": report.block_hash,
                  "blockNumber": int(report.meta.get("blockNumber", -1)),
                  "rows": len(report.items), "counts": report.counts(),
                  "worksToLicense": len(works)},
        "use": {"purpose": a.purpose, "subject": a.subject},
        "certifiedAt": {"blockHash": hex0x(best), "blockNumber": number},
        "coverage": [[w.work_id, licenses[w.work_id], used[licenses[w.work_id]], len(w.items)]
                     for w in works],
    }, key)
    out = Path(a.out)
    try:
        out.write_text(_statement_text(statement), encoding="utf-8")
    except OSError as e:
        raise CreatorError(f"cannot write {a.out!r}: {e.strerror}") from None
    ctx.emit({"file": str(out), **statement},
             [f"Wrote the statement of {manifest} to {out}, signed by {key.address}",
              f"  manifest sha256   {digest} ({files} file{'s' if files != 1 else ''})",
              f"  audited at        block #{statement['audit']['blockNumber']} "
              f"{report.block_hash}",
              f"  items             {len(report.items):,}: "
              + ", ".join(f"{n:,} {s}" for s, n in report.counts().items() if n),
              f"  covered           {len(works):,} works, each by a license and a usage "
              f"record ({a.purpose}, \"{a.subject}\")",
              f"Check it: opus verify {out}"])
    return 0


def _statement_text(statement: dict[str, Any]) -> str:
    """The statement as indented JSON, one line per coverage entry (it may have many)."""
    head = {k: v for k, v in statement.items() if k not in ("coverage", "signature")}
    entries = ",\n  ".join(json.dumps(e) for e in statement["coverage"])
    return (json.dumps(head, indent=1)[:-2] + f',\n "coverage": [\n  {entries}\n ],\n'
            f' "signature": {json.dumps(statement["signature"])}\n}}\n')


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def verify_statement_file(ctx: Context, path: str, document: dict[str, Any]) -> int:
    """``opus verify STATEMENT``: the statement checked against the node (``--rpc``)."""
    from client.statement import StatementInvalid, verify_statement

    report_sha = _sha256(read_file(ctx.args.report)) if ctx.args.report else None
    try:
        checked = verify_statement(document, ctx.args.rpc, report_sha256=report_sha)
    except StatementInvalid as e:
        raise CreatorError(f"INVALID statement {path}: {e}") from None
    except ClientError as e:
        raise CreatorError(f"cannot check the statement {path}: {e}") from None
    ctx.emit({"valid": True, "builder": checked.builder, "blockNumber": checked.block_number,
              "works": checked.works, "licenses": checked.licenses,
              "usageRecords": checked.usage_records},
             [f"VALID: the statement {path} is signed by {checked.builder}",
              f"  audit block       #{checked.block_number}, on the node's chain",
              f"  covered           {checked.works:,} works: each license exists, is the "
              "builder's, on the work, allows AI training, with the usage record stated"])
    return 0


# ---------------------------------------------------------------------------
# The command line


def add_from_options(p: argparse.ArgumentParser, *, dry_run_help: str) -> None:
    """``--from REPORT`` (an audit report) and ``--dry-run``."""
    p.add_argument("--from", dest="from_report", metavar="REPORT",
                   help="an audit report (opus audit --out FILE.csv|.json|.parquet): act on "
                        "every registered work of it whose terms allow AI training")
    p.add_argument("--dry-run", action="store_true", help=dry_run_help)


def add_parsers(sub: Subcommands) -> None:
    datasets = group(sub, "dataset", "signed statements of a training set's licenses and usage")
    p = command(datasets, "certify", certify,
                "write a signed statement of a training set: its manifest's hash, the audit's "
                "block and counts, and the licenses and usage records covering it",
                signing=False)
    p.add_argument("from_report", metavar="REPORT", help="the dataset's audit report")
    p.add_argument("--subject", required=True,
                   type=arguments.text_of_at_most(usage.MAX_SUBJECT, "subject"),
                   help="the model trained on it: the usage records' subject")
    p.add_argument("--purpose", default="ai_training", choices=[u.value for u in usage.Purpose],
                   help="the usage records' purpose (default ai_training)")
    p.add_argument("--manifest", metavar="PATH",
                   help="the dataset audited (default: the input the report names)")
    p.add_argument("--out", required=True, metavar="FILE", help="the statement (JSON)")
