"""``opus royalty pay``: revenue paid into a work, split at once among its creators and the
works it derives from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.commands import arguments
from client.commands.common import (
    Context,
    UsageError,
    command,
    credit_lines,
    format_amount,
    group,
    receipt_lines,
    require,
)
from runtime.modules.royalties import MAX_MEMO, PayRevenue

if TYPE_CHECKING:
    from client.commands.common import Subcommands

def royalty_pay(ctx: Context) -> int:
    a = ctx.args
    if a.amount == 0:
        raise UsageError("the amount must be positive")
    require(ctx.client.get_work(a.work), f"no work #{a.work}")
    receipt = ctx.execute(PayRevenue(a.work, a.amount, a.memo))
    credits = receipt.events_named("royalties", "Credited")
    ctx.emit({"workId": a.work, "amount": str(a.amount), "credits": credits,
              **receipt.to_json()},
             [f"Paid {format_amount(a.amount)} into work #{a.work}",
              *credit_lines(credits),
              *receipt_lines(receipt)])
    return 0


def add_parsers(sub: Subcommands) -> None:
    royalties = group(sub, "royalty", "pay revenue into a work")
    p = command(royalties, "pay", royalty_pay,
                "pay revenue into a work; it is split among its creators and ancestors",
                signing=True)
    p.add_argument("work", type=arguments.id_number, metavar="WORK")
    p.add_argument("amount", type=arguments.amount, metavar="AMOUNT")
    p.add_argument("--memo", default="", type=arguments.text_of_at_most(MAX_MEMO, "memo"))
