"""``opus earnings``: an account's royalty earnings, per work, with every credit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.commands import arguments
from client.commands.common import Context, command, format_amount, more_lines, paging

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def earnings(ctx: Context) -> int:
    a = ctx.args
    report = ctx.client.get_earnings(ctx.address(a.address), work=a.work, start=a.start,
                                     limit=a.limit)
    lines = [f"Earnings of {report['account']}: {format_amount(report['total'])} "
             f"in {report['creditCount']} credit(s)"]
    for w in report["works"]:
        lines.append(f"  from work #{w['workId']}: {format_amount(w['amount'])}")
    if "work" in report:
        w = report["work"]
        lines.append(f"  work #{w['workId']}: revenue {format_amount(w['revenue'])}, "
                     f"paid to this account {format_amount(w['paidToAccount'])}")
    for c in report["credits"]:
        lines.append(f"  credit {c['seq']}: block #{c['block']} {format_amount(c['amount'])} "
                     f"({c['reason']}, paid into work #{c['sourceWork']}, "
                     f"share of work #{c['viaWork']})")
    ctx.emit(report, lines + more_lines(report))
    return 0


def add_parsers(sub: Subcommands) -> None:
    p = command(sub, "earnings", earnings,
                "an account's royalty earnings, per work, with their history")
    p.add_argument("address", nargs="?", type=arguments.address_text, metavar="ADDRESS",
                   help="default: the signer's account")
    p.add_argument("--work", type=arguments.id_number, help="only credits involving this work")
    paging(p, "first credit number")
