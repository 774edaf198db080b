"""``opus license offer | acquire | show | approve``: the terms a work is offered under, and
the licenses bought under them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from client.commands import arguments, datasets
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
from runtime.modules import licensing

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def terms_line(t: dict[str, Any]) -> str:
    """License terms (``opus_getTerms``'s answer) on one line, for people."""
    rights = [name for flag, name in ((t["commercialUse"], "commercial"),
                                      (t["derivativesAllowed"], "derivatives"),
                                      (t["transferable"], "transferable")) if flag]
    extra = f", royalty {t['commercialRevShare'] / 100:g}%" if t["commercialRevShare"] else ""
    state = " [retired]" if t["retired"] else ""
    supply = f"{t['minted']}/{t['maxSupply']}" if t["maxSupply"] else f"{t['minted']}"
    return (f"  terms #{t['id']}{state}: fee {format_amount(t['mintingFee'])}{extra}; "
            f"AI training {t['aiTraining']}, AI inference {t['aiInference']}; "
            f"{', '.join(rights) or 'no commercial use, no derivatives'}; licenses {supply}")


def license_offer(ctx: Context) -> int:
    a = ctx.args
    require(ctx.client.get_work(a.work), f"no work #{a.work}")
    offer = licensing.OfferTerms(
        work_id=a.work,
        transferable=a.transferable,
        commercial_use=a.commercial,
        commercial_attribution=a.commercial_attribution,
        commercial_rev_share=a.royalty,
        derivatives_allowed=a.derivatives,
        derivatives_attribution=a.derivatives_attribution,
        derivatives_approval=a.derivatives_approval,
        derivatives_reciprocal=a.reciprocal,
        ai_training=licensing.AiUse(a.ai_training),
        ai_inference=licensing.AiUse(a.ai_inference),
        minting_fee=a.fee,
        expiry_blocks=a.expiry,
        max_supply=a.supply,
        legal_uri=a.legal_uri,
        legal_hash=a.legal_hash,
    )
    why = licensing.terms_contradiction(offer)
    if why is not None:
        raise UsageError(f"contradictory terms: {why}")
    receipt = ctx.execute(offer)
    terms_id = receipt.events_named("licensing", "TermsOffered")[0]["termsId"]
    terms = ctx.client.get_terms(terms_id) or {}
    ctx.emit({"termsId": terms_id, "terms": terms, **receipt.to_json()},
             [f"Offered terms #{terms_id} on work #{a.work}",
              *([terms_line(terms)] if terms else []),
              *receipt_lines(receipt),
              f"Anyone can now buy a license: opus license acquire {terms_id}"])
    return 0


def license_acquire(ctx: Context) -> int:
    a = ctx.args
    if (a.terms is None) == (a.from_report is None):
        raise UsageError("give either TERMS (one license) or --from REPORT (a dataset's)")
    if a.from_report is not None:
        return datasets.acquire_from(ctx)
    if a.dry_run or a.max_total is not None or a.out or a.yes:
        raise UsageError("--dry-run, --max-total, --out and --yes go with --from REPORT")
    terms = require(ctx.client.get_terms(a.terms), f"no terms #{a.terms}")
    receipt = ctx.execute(licensing.AcquireLicense(a.terms))
    event = receipt.events_named("licensing", "LicenseAcquired")[0]
    expires = f"block #{event['expiresAt']}" if event["expiresAt"] else "never"
    ctx.emit({"licenseId": event["licenseId"], "license": event, **receipt.to_json()},
             [f"Acquired license #{event['licenseId']} on work #{terms['workId']} "
              f"(terms #{a.terms})",
              f"  fee paid      {format_amount(event['fee'])}",
              f"  expires       {expires}",
              *credit_lines(receipt.events_named("royalties", "Credited")),
              *receipt_lines(receipt)])
    return 0


def license_show(ctx: Context) -> int:
    lic = require(ctx.client.get_license(ctx.args.id), f"no license #{ctx.args.id}")
    terms = ctx.client.get_terms(lic["termsId"]) or {}
    expires = f"block #{lic['expiresAt']}" if lic["expiresAt"] else "never"
    ctx.emit({"license": lic, "terms": terms},
             [f"License #{lic['id']} on work #{lic['workId']} (terms #{lic['termsId']})",
              f"  licensee      {lic['licensee']}",
              f"  acquired      block #{lic['acquiredAt']}",
              f"  expires       {expires} ({'live' if lic['live'] else 'EXPIRED'})",
              f"  derivatives   {'approved' if lic['derivativeApproved'] else 'not approved'}",
              *([terms_line(terms)] if terms else [])])
    return 0


def license_approve(ctx: Context) -> int:
    a = ctx.args
    require(ctx.client.get_license(a.id), f"no license #{a.id}")
    receipt = ctx.execute(licensing.ApproveDerivative(a.id, not a.revoke))
    verb = "Revoked derivative approval of" if a.revoke else "Approved for derivatives:"
    ctx.emit(receipt.to_json(), [f"{verb} license #{a.id}", *receipt_lines(receipt)])
    return 0


def add_parsers(sub: Subcommands) -> None:
    licenses = group(sub, "license", "offer terms, acquire and show licenses")
    p = command(licenses, "offer", license_offer, "offer license terms on a work you own",
                signing=True)
    p.add_argument("work", type=arguments.id_number, metavar="WORK")
    ai = [u.value for u in licensing.AiUse]
    p.add_argument("--ai-training", choices=ai, default="not_allowed")
    p.add_argument("--ai-inference", choices=ai, default="not_allowed")
    p.add_argument("--fee", type=arguments.amount, default=0, metavar="AMOUNT",
                   help="the price of a license (units or e.g. 5OPUS)")
    p.add_argument("--royalty", type=arguments.bps, default=0, metavar="BPS",
                   help="your cut of all revenue of derivatives, in basis points "
                        "(needs --commercial)")
    p.add_argument("--commercial", action="store_true", help="allow commercial use")
    p.add_argument("--commercial-attribution", action="store_true")
    p.add_argument("--derivatives", action="store_true", help="allow derivative works")
    p.add_argument("--derivatives-attribution", action="store_true")
    p.add_argument("--derivatives-approval", action="store_true",
                   help="each license needs your approval before derivatives")
    p.add_argument("--reciprocal", action="store_true",
                   help="derivatives must offer these same terms")
    p.add_argument("--transferable", action="store_true")
    p.add_argument("--expiry", type=arguments.count, default=0, metavar="BLOCKS",
                   help="licenses expire this many blocks after purchase (0: never)")
    p.add_argument("--supply", type=arguments.number_in_range("a supply", 0, (1 << 32) - 1),
                   default=0, metavar="N", help="at most N licenses (0: unlimited)")
    p.add_argument("--legal-uri", default="",
                   type=arguments.text_of_at_most(licensing.MAX_LEGAL_URI, "legal URI"))
    p.add_argument("--legal-hash", type=arguments.hash32, metavar="0xHASH")
    p = command(licenses, "acquire", license_acquire,
                "buy a license under terms, or one for every work of an audit report whose "
                "terms allow AI training (--from)", signing=True)
    p.add_argument("terms", type=arguments.id_number, metavar="TERMS", nargs="?")
    datasets.add_from_options(p, dry_run_help="show what would be bought and its total; "
                                              "buy nothing")
    p.add_argument("--max-total", type=arguments.amount, metavar="AMOUNT",
                   help="with --from: refuse, before buying anything, if the total (license "
                        "and transaction fees) exceeds AMOUNT (e.g. 500OPUS)")
    p.add_argument("--yes", action="store_true",
                   help="with --from: buy without asking for confirmation")
    p.add_argument("--out", metavar="FILE",
                   help="with --from: where to write which license covers which item, .csv "
                        "or .json (default: REPORT's name with .licenses.csv)")
    p = command(licenses, "show", license_show, "show a license and its terms")
    p.add_argument("id", type=arguments.id_number, metavar="ID")
    p = command(licenses, "approve", license_approve,
                "approve a license on your work for derivatives", signing=True)
    p.add_argument("id", type=arguments.id_number, metavar="LICENSE")
    p.add_argument("--revoke", action="store_true", help="withdraw the approval")
