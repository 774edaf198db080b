"""``opus usage record | list``: how a licensee used a work, on chain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.commands import arguments, datasets
from client.commands.common import (
    Context,
    UsageError,
    command,
    group,
    more_lines,
    paging,
    receipt_lines,
    require,
)
from runtime.modules.usage import MAX_MEMO, MAX_SUBJECT, Purpose, RecordUsage

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def usage_record(ctx: Context) -> int:
    a = ctx.args
    if (a.license is None) == (a.from_report is None):
        raise UsageError("give either LICENSE (one record) or --from REPORT (a dataset's)")
    if a.from_report is not None:
        return datasets.record_from(ctx)
    if a.dry_run:
        raise UsageError("--dry-run goes with --from REPORT")
    require(ctx.client.get_license(a.license), f"no license #{a.license}")
    receipt = ctx.execute(RecordUsage(a.license, Purpose(a.purpose), a.subject, a.units,
                                      a.memo))
    event = receipt.events_named("usage", "UsageRecorded")[0]
    ctx.emit({"usageId": event["usageId"], "usage": event, **receipt.to_json()},
             [f"Recorded usage #{event['usageId']}: {a.purpose} of work #{event['workId']} "
              f"under license #{a.license} ({a.units} units, subject \"{a.subject}\")",
              *receipt_lines(receipt)])
    return 0


def usage_list(ctx: Context) -> int:
    a = ctx.args
    page = ctx.client.list_usage(work=a.work, license=a.license, start=a.start, limit=a.limit)
    what = f"work #{a.work}" if a.work is not None else f"license #{a.license}"
    lines = [f"Usage of {what}: {len(page['items'])} record(s)"]
    for r in page["items"]:
        lines.append(f"  #{r['id']} block #{r['block']}: {r['purpose']} by {r['licensee']} "
                     f"(license #{r['licenseId']}, {r['units']} units, "
                     f"subject \"{r['subject']}\")")
    ctx.emit(page, lines + more_lines(page))
    return 0


def add_parsers(sub: Subcommands) -> None:
    usage = group(sub, "usage", "record and list usage of licensed works")
    p = command(usage, "record", usage_record,
                "record a use of a work under your license, or of every licensed work of an "
                "audit report (--from; 64 a transaction)", signing=True)
    p.add_argument("license", type=arguments.id_number, metavar="LICENSE", nargs="?")
    datasets.add_from_options(p, dry_run_help="show what would be recorded; record nothing")
    p.add_argument("--purpose", required=True, choices=[u.value for u in Purpose])
    p.add_argument("--subject", required=True,
                   type=arguments.text_of_at_most(MAX_SUBJECT, "subject"),
                   help="what it was used for, e.g. a model or dataset name")
    p.add_argument("--units", type=arguments.count, default=1,
                   help="how many units (default 1; with --from: the work's items in the "
                        "report)")
    p.add_argument("--memo", default="", type=arguments.text_of_at_most(MAX_MEMO, "memo"))
    p = command(usage, "list", usage_list, "list the usage of a work or a license")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--work", type=arguments.id_number)
    which.add_argument("--license", type=arguments.id_number)
    paging(p, "first usage id")
