"""The creator commands of ``opus``: keys, works, terms, licenses, royalties, usage, proofs.

They sign locally and talk to a node over JSON-RPC (:mod:`node.client`)::

    opus account new --out me.json
    opus work register song.flac --title "My song" --kind audio --key me.json
    opus license offer 1 --ai-training allowed --fee 5OPUS --commercial --royalty 1000 \\
        --derivatives --key me.json
    opus license acquire 1 --dev-account bob
    opus usage record 1 --purpose ai_training --subject "model-x v1" --dev-account bob
    opus earnings --key me.json
    opus proof 1 --out song.proof.json && opus verify song.proof.json

Common flags: ``--key FILE`` or ``--dev-account NAME`` (the signer), ``--rpc URL``
(default http://127.0.0.1:9944), ``--json`` (machine-readable output) and
``--wait inBlock|finalized`` (default inBlock). Amounts are in the smallest
unit, or in tokens with a suffix: ``2.5OPUS``.

A user error (a missing file, an unknown work, an unreachable node, a call the
chain refused, with its named error such as ``usage.PurposeNotAllowed``)
prints one ``Error: …`` line on stderr and exits 1; a wrong command line exits 2.

Titles, URIs, memos and every other text from the chain, the node or a proof
file are untrusted: the human-readable output shows their control, bidi and
other invisible characters as escapes (``\\x1b``, ``\\u202e``) and a backslash
as ``\\\\`` (:mod:`node.display`); ``--json`` keeps the exact text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from node.client import (
    DEFAULT_RPC,
    PROOF_FORMAT,
    CallFailed,
    ClientError,
    OpusClient,
    ProofError,
    Receipt,
    load_key_file,
    verify_provenance_proof,
    write_key_file,
)
from node.display import safe_message, safe_text
from runtime import codec
from runtime.codec import hex0x
from runtime.crypto import DEV_ACCOUNT_NAMES, InvalidAddress, Keypair, decode_address, dev_keypair
from runtime.crypto import encode_address as address_of
from runtime.modules import balances, licensing, provenance, usage

TOKEN_SYMBOL = "OPUS"
TOKEN_DECIMALS = 12
U128_MAX = (1 << 128) - 1
U64_MAX = (1 << 64) - 1


class CreatorError(Exception):
    """A user error: printed as one ``Error: …`` line, exit 1."""


class UsageError(Exception):
    """A wrong command line found after parsing: printed like argparse's errors, exit 2."""


# ---------------------------------------------------------------------------
# Argument types (argparse reports their errors as usage errors, exit 2)


def _amount(text: str) -> int:
    """``123`` (smallest units) or ``1.5OPUS`` / ``1.5 OPUS`` (tokens)."""
    value = text.strip()
    try:
        if value.upper().endswith(TOKEN_SYMBOL):
            tokens = Decimal(value[: -len(TOKEN_SYMBOL)].strip())
            units = tokens * (10**TOKEN_DECIMALS)
            if units != units.to_integral_value():
                raise argparse.ArgumentTypeError(
                    f"{text!r} has more than {TOKEN_DECIMALS} decimals")
            number = int(units)
        else:
            number = int(value, 10)
    except (ValueError, InvalidOperation):
        raise argparse.ArgumentTypeError(
            f"not an amount: {text!r} (use units, e.g. 1000, or tokens, e.g. 2.5OPUS)") from None
    if not 0 <= number <= U128_MAX:
        raise argparse.ArgumentTypeError(f"amount out of range: {text!r}")
    return number


def _uint(limit: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not 0 <= number <= limit:
            raise argparse.ArgumentTypeError(f"{what} out of range (0-{limit}): {number}")
        return number

    parse.__name__ = what
    return parse


_id = _uint(U64_MAX, "id")
_count = _uint(U64_MAX, "number")
_bps = _uint(provenance.BPS, "basis points value")


def _account(text: str) -> bytes:
    if text.startswith("0x"):
        try:
            return codec.from_hex0x(text, 32)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if text.lower() in DEV_ACCOUNT_NAMES:
        return dev_keypair(text).public
    try:
        return decode_address(text)
    except InvalidAddress as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _address_text(text: str) -> str:
    return address_of(_account(text))


def _hash32(text: str) -> bytes:
    try:
        return codec.from_hex0x(text, 32)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _split(text: str) -> tuple[bytes, int]:
    account, sep, bps = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"a split is ADDRESS:BPS, got {text!r}")
    return _account(account), _bps(bps)


def _parent(text: str) -> tuple[int, int]:
    work, sep, lic = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"a parent is WORK:LICENSE (two ids), got {text!r}")
    return _id(work), _id(lic)


def _text(limit: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text.encode()) > limit:
            raise argparse.ArgumentTypeError(f"{what} is longer than {limit} bytes")
        return text

    parse.__name__ = what
    return parse


# ---------------------------------------------------------------------------
# Output


def format_amount(units: int | str, decimals: int = TOKEN_DECIMALS,
                  symbol: str = TOKEN_SYMBOL) -> str:
    """``1500000000000`` -> ``1.5 OPUS``."""
    value = int(units)
    whole, frac = divmod(value, 10**decimals)
    text = f"{whole:,}"
    if frac:
        text += "." + str(frac).rjust(decimals, "0").rstrip("0")
    return f"{text} {symbol}"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str) -> str:
    return value if len(value) <= 20 else f"{value[:10]}…{value[-6:]}"


class Context:
    """One command's parsed arguments, its (lazily made) client and its output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._client: OpusClient | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json_output)

    @property
    def client(self) -> OpusClient:
        if self._client is None:
            self._client = OpusClient(self.args.rpc)
        return self._client

    @property
    def until(self) -> str:
        return str(getattr(self.args, "wait", "inBlock"))

    def signer(self, required: bool = True) -> Keypair | None:
        key_file = getattr(self.args, "key_file", None)
        dev = getattr(self.args, "dev_account", None)
        if key_file:
            return load_key_file(key_file)
        if dev:
            return dev_keypair(dev)
        if required:
            raise UsageError("this command signs a transaction: give --key FILE or "
                             "--dev-account NAME")
        return None

    def key(self) -> Keypair:
        key = self.signer()
        assert key is not None
        return key

    def emit(self, data: Any, lines: list[str]) -> None:
        """Print ``data`` as JSON (``--json``) or ``lines`` for people.

        The lines hold text from the chain, the node or a proof file, so each is made
        safe for a terminal (:func:`node.display.safe_text`). The JSON keeps the exact
        text; ``ensure_ascii`` writes its control and non-ASCII characters as ``\\uXXXX``.
        """
        if self.json:
            print(json.dumps(data, indent=2, ensure_ascii=True))
        else:
            for line in lines:
                print(safe_text(line))

    def execute(self, args: Any) -> Receipt:
        key = self.key()
        tip = getattr(self.args, "tip", 0)
        return self.client.execute(key, args, until=self.until, tip=tip)


def _receipt_lines(receipt: Receipt) -> list[str]:
    state = "finalized" if receipt.status == "finalized" else "in block"
    return [f"  block         #{receipt.block_number} {hex0x(receipt.block_hash)} ({state})",
            f"  transaction   {hex0x(receipt.tx_hash)} (fee {format_amount(receipt.fee)})"]


def _require(value: Any, message: str) -> Any:
    if value is None:
        raise CreatorError(message)
    return value


# ---------------------------------------------------------------------------
# account, transfer


def cmd_account_new(ctx: Context) -> int:
    key = Keypair.from_seed(_random_seed())
    out = Path(ctx.args.out)
    write_key_file(out, key, overwrite=ctx.args.force)
    ctx.emit({"address": key.address, "keyFile": str(out)},
             [f"New account {key.address}", f"  key file      {out} (keep it secret: it holds "
              "the signing seed)"])
    return 0


def _random_seed() -> bytes:
    import secrets

    return secrets.token_bytes(32)


def cmd_account_show(ctx: Context) -> int:
    if ctx.args.address:
        address = ctx.args.address
    else:
        key = ctx.signer(required=False)
        if key is None:
            raise UsageError("give an ADDRESS, --key FILE or --dev-account NAME")
        address = key.address
    info = ctx.client.account_info(address)
    ctx.emit(info, [f"Account {info['address']}",
                    f"  balance       {format_amount(info['free'])} ({info['free']} units)",
                    f"  nonce         {info['nonce']}"])
    return 0


def cmd_transfer(ctx: Context) -> int:
    dest, amount = ctx.args.dest, ctx.args.amount
    if amount == 0:
        raise UsageError("the amount must be positive")
    receipt = ctx.execute(balances.TransferArgs(dest, amount))
    ctx.emit({"dest": address_of(dest), "amount": str(amount), **receipt.to_json()},
             [f"Transferred {format_amount(amount)} to {address_of(dest)}",
              *_receipt_lines(receipt)])
    return 0


# ---------------------------------------------------------------------------
# work


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CreatorError(f"file {path!r} does not exist") from None
    except IsADirectoryError:
        raise CreatorError(f"{path!r} is a directory, not a file") from None
    except OSError as e:
        raise CreatorError(f"cannot read {path!r}: {e.strerror}") from None


def cmd_work_register(ctx: Context) -> int:
    a = ctx.args
    if not a.title.strip():
        raise UsageError("--title must not be empty")
    key = ctx.key()
    creators = a.split or [(key.public, provenance.BPS)]
    total = sum(bps for _, bps in creators)
    if total != provenance.BPS:
        raise UsageError(f"--split shares add up to {total} bps; they must add up to 10000")
    content = _read_file(a.file)
    content_hash = hashlib.sha256(content).digest()
    existing = ctx.client.get_work_by_content_hash(content_hash)
    if existing is not None:
        raise CreatorError(
            f"this file (sha256 {hex0x(content_hash)}) is already registered as work "
            f"#{existing['id']} by {existing['owner']} at block #{existing['registeredAt']}")
    args = provenance.RegisterWork(
        content_hash=content_hash,
        kind=provenance.WorkKind(a.kind),
        title=a.title,
        metadata_uri=a.metadata_uri,
        metadata_hash=a.metadata_hash,
        creators=tuple(provenance.Split(acc, bps) for acc, bps in creators),
        parents=tuple(provenance.ParentLink(w, lic) for w, lic in a.parent or []),
    )
    receipt = ctx.execute(args)
    work_id = receipt.events_named("provenance", "WorkRegistered")[0]["workId"]
    proof_file = f"work-{work_id}.proof.json"
    ctx.emit(
        {"workId": work_id, "contentHash": hex0x(content_hash), "owner": key.address,
         **receipt.to_json(),
         "proofCommand": f"opus proof {work_id} --out {proof_file}"},
        [f"Registered work #{work_id} \"{a.title}\" ({a.kind})",
         f"  content hash  {hex0x(content_hash)} (sha256 of {a.file})",
         f"  owner         {key.address}",
         *(f"  derived from  work #{w} under license #{lic}" for w, lic in a.parent or []),
         *_receipt_lines(receipt),
         f"Proof: opus proof {work_id} --out {proof_file}   then: opus verify {proof_file}"])
    return 0


def _work_lines(work: dict[str, Any]) -> list[str]:
    lines = [f"Work #{work['id']} \"{work['title']}\" ({work['kind']})",
             f"  content hash  {work['contentHash']}",
             f"  owner         {work['owner']}",
             f"  registered    block #{work['registeredAt']} at {_when(work['registeredAtMs'])}"]
    if work["metadataUri"]:
        lines.append(f"  metadata      {work['metadataUri']}")
    for c in work["creators"]:
        lines.append(f"  creator       {c['account']} {c['bps'] / 100:g}%")
    for p in work["parents"]:
        lines.append(f"  derived from  work #{p['workId']} (license #{p['licenseId']})")
    for s in work["royaltyStack"]:
        lines.append(f"  royalty to    work #{s['workId']}: {s['bps'] / 100:g}% of all revenue")
    return lines


def _terms_line(t: dict[str, Any]) -> str:
    rights = [name for flag, name in ((t["commercialUse"], "commercial"),
                                      (t["derivativesAllowed"], "derivatives"),
                                      (t["transferable"], "transferable")) if flag]
    extra = f", royalty {t['commercialRevShare'] / 100:g}%" if t["commercialRevShare"] else ""
    state = " [retired]" if t["retired"] else ""
    supply = f"{t['minted']}/{t['maxSupply']}" if t["maxSupply"] else f"{t['minted']}"
    return (f"  terms #{t['id']}{state}: fee {format_amount(t['mintingFee'])}{extra}; "
            f"AI training {t['aiTraining']}, AI inference {t['aiInference']}; "
            f"{', '.join(rights) or 'no commercial use, no derivatives'}; licenses {supply}")


def cmd_work_show(ctx: Context) -> int:
    a = ctx.args
    client = ctx.client
    if a.content_hash is not None:
        work = _require(client.get_work_by_content_hash(a.content_hash),
                        f"no work has content hash {hex0x(a.content_hash)}")
    elif a.file is not None:
        digest = hashlib.sha256(_read_file(a.file)).digest()
        work = _require(client.get_work_by_content_hash(digest),
                        f"{a.file} (sha256 {hex0x(digest)}) is not registered")
    elif a.id is not None:
        work = _require(client.get_work(a.id), f"no work #{a.id}")
    else:
        raise UsageError("give a work ID, --content-hash HASH or --file FILE")
    terms = client.list_terms(work["id"], limit=1000)["items"]
    ctx.emit({"work": work, "terms": terms},
             _work_lines(work) + [_terms_line(t) for t in terms])
    return 0


# ---------------------------------------------------------------------------
# license


def cmd_license_offer(ctx: Context) -> int:
    a = ctx.args
    _require(ctx.client.get_work(a.work), f"no work #{a.work}")
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
              *([_terms_line(terms)] if terms else []),
              *_receipt_lines(receipt),
              f"Anyone can now buy a license: opus license acquire {terms_id}"])
    return 0


def cmd_license_acquire(ctx: Context) -> int:
    a = ctx.args
    terms = _require(ctx.client.get_terms(a.terms), f"no terms #{a.terms}")
    receipt = ctx.execute(licensing.AcquireLicense(a.terms))
    event = receipt.events_named("licensing", "LicenseAcquired")[0]
    credits = receipt.events_named("royalties", "Credited")
    expires = f"block #{event['expiresAt']}" if event["expiresAt"] else "never"
    ctx.emit({"licenseId": event["licenseId"], "license": event, **receipt.to_json()},
             [f"Acquired license #{event['licenseId']} on work #{terms['workId']} "
              f"(terms #{a.terms})",
              f"  fee paid      {format_amount(event['fee'])}",
              f"  expires       {expires}",
              *(f"  credited      {c['account']} {format_amount(c['amount'])} "
                f"(share of work #{c['viaWork']})" for c in credits),
              *_receipt_lines(receipt)])
    return 0


def cmd_license_show(ctx: Context) -> int:
    lic = _require(ctx.client.get_license(ctx.args.id), f"no license #{ctx.args.id}")
    terms = ctx.client.get_terms(lic["termsId"]) or {}
    expires = f"block #{lic['expiresAt']}" if lic["expiresAt"] else "never"
    ctx.emit({"license": lic, "terms": terms},
             [f"License #{lic['id']} on work #{lic['workId']} (terms #{lic['termsId']})",
              f"  licensee      {lic['licensee']}",
              f"  acquired      block #{lic['acquiredAt']}",
              f"  expires       {expires} ({'live' if lic['live'] else 'EXPIRED'})",
              f"  derivatives   {'approved' if lic['derivativeApproved'] else 'not approved'}",
              *([_terms_line(terms)] if terms else [])])
    return 0


def cmd_license_approve(ctx: Context) -> int:
    a = ctx.args
    _require(ctx.client.get_license(a.id), f"no license #{a.id}")
    receipt = ctx.execute(licensing.ApproveDerivative(a.id, not a.revoke))
    verb = "Revoked derivative approval of" if a.revoke else "Approved for derivatives:"
    ctx.emit(receipt.to_json(), [f"{verb} license #{a.id}", *_receipt_lines(receipt)])
    return 0


# ---------------------------------------------------------------------------
# royalty, usage, earnings


def cmd_royalty_pay(ctx: Context) -> int:
    from runtime.modules import royalties

    a = ctx.args
    if a.amount == 0:
        raise UsageError("the amount must be positive")
    _require(ctx.client.get_work(a.work), f"no work #{a.work}")
    receipt = ctx.execute(royalties.PayRevenue(a.work, a.amount, a.memo))
    credits = receipt.events_named("royalties", "Credited")
    ctx.emit({"workId": a.work, "amount": str(a.amount), "credits": credits,
              **receipt.to_json()},
             [f"Paid {format_amount(a.amount)} into work #{a.work}",
              *(f"  credited      {c['account']} {format_amount(c['amount'])} "
                f"(share of work #{c['viaWork']})" for c in credits),
              *_receipt_lines(receipt)])
    return 0


def cmd_usage_record(ctx: Context) -> int:
    a = ctx.args
    _require(ctx.client.get_license(a.license), f"no license #{a.license}")
    receipt = ctx.execute(usage.RecordUsage(a.license, usage.Purpose(a.purpose), a.subject,
                                            a.units, a.memo))
    event = receipt.events_named("usage", "UsageRecorded")[0]
    ctx.emit({"usageId": event["usageId"], "usage": event, **receipt.to_json()},
             [f"Recorded usage #{event['usageId']}: {a.purpose} of work #{event['workId']} "
              f"under license #{a.license} ({a.units} units, subject \"{a.subject}\")",
              *_receipt_lines(receipt)])
    return 0


def cmd_usage_list(ctx: Context) -> int:
    a = ctx.args
    page = ctx.client.list_usage(work=a.work, license=a.license, start=a.start, limit=a.limit)
    what = f"work #{a.work}" if a.work is not None else f"license #{a.license}"
    lines = [f"Usage of {what}: {len(page['items'])} record(s)"]
    for r in page["items"]:
        lines.append(f"  #{r['id']} block #{r['block']}: {r['purpose']} by {r['licensee']} "
                     f"(license #{r['licenseId']}, {r['units']} units, "
                     f"subject \"{r['subject']}\")")
    if page["next"] is not None:
        lines.append(f"  more: --start {page['next']}")
    ctx.emit(page, lines)
    return 0


def cmd_earnings(ctx: Context) -> int:
    a = ctx.args
    if a.address:
        address = a.address
    else:
        key = ctx.signer(required=False)
        if key is None:
            raise UsageError("give an ADDRESS, --key FILE or --dev-account NAME")
        address = key.address
    report = ctx.client.get_earnings(address, work=a.work, start=a.start, limit=a.limit)
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
    if report["next"] is not None:
        lines.append(f"  more: --start {report['next']}")
    ctx.emit(report, lines)
    return 0


# ---------------------------------------------------------------------------
# proof, verify


def cmd_proof(ctx: Context) -> int:
    a = ctx.args
    doc = _require(ctx.client.provenance_proof(a.work, a.block), f"no work #{a.work}"
                   + (f" at block {hex0x(a.block)}" if a.block else ""))
    verified = verify_provenance_proof(doc)  # never write a proof that does not check out
    document = {"format": PROOF_FORMAT, **doc}
    out = Path(a.out)
    try:
        out.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as e:
        raise CreatorError(f"cannot write {a.out!r}: {e.strerror}") from None
    ctx.emit({"file": str(out), "workId": a.work, "blockHash": doc["blockHash"],
              "blockNumber": verified.header.number, "stateRoot": doc["stateRoot"]},
             [f"Wrote the provenance proof of work #{a.work} to {out}",
              f"  proven at     block #{verified.header.number} {doc['blockHash']}"
              f"{' (finalized)' if doc.get('finalized') else ''}",
              f"  state root    {doc['stateRoot']}",
              f"Check it offline: opus verify {out}"])
    return 0


def cmd_verify(ctx: Context) -> int:
    path = ctx.args.proof
    text = _read_file(path)
    try:
        doc = json.loads(text)
    except ValueError:
        raise CreatorError(f"{path!r} is not JSON (not a proof file)") from None
    if isinstance(doc, dict) and doc.get("format", PROOF_FORMAT) != PROOF_FORMAT:
        raise CreatorError(f"{path!r} is a {doc.get('format')!r} file, not a provenance proof")
    try:
        v = verify_provenance_proof(doc)
    except ProofError as e:
        raise CreatorError(f"INVALID proof {path}: {e}") from None
    w = v.work
    ctx.emit(
        {"valid": True, "workId": v.work_id, "contentHash": hex0x(w.content_hash),
         "owner": address_of(w.owner), "registeredAt": w.registered_at,
         "blockHash": hex0x(v.block_hash), "blockNumber": v.header.number,
         "stateRoot": hex0x(v.header.state_root), "claimedFinalized": v.claimed_finalized},
        [f"VALID: work #{v.work_id} \"{w.title}\" ({w.kind.value})",
         f"  content hash  {hex0x(w.content_hash)}",
         f"  owner         {address_of(w.owner)}",
         f"  registered    block #{w.registered_at} at {_when(w.registered_at_ms)}",
         f"  proven in     block #{v.header.number} {hex0x(v.block_hash)}",
         f"  state root    {hex0x(v.header.state_root)}",
         "The proof nodes match the header's state root. To trust the header, check that "
         f"block #{v.header.number} has hash {_short(hex0x(v.block_hash))} on a node you trust."])
    return 0


# ---------------------------------------------------------------------------
# Parsers


def _common(*, signing: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("node and output")
    group.add_argument("--rpc", "--rpc-url", dest="rpc", metavar="URL",
                       default=os.environ.get("OPUS_RPC", DEFAULT_RPC),
                       help=f"the node's JSON-RPC URL (default $OPUS_RPC or {DEFAULT_RPC})")
    group.add_argument("--json", dest="json_output", action="store_true",
                       help="print JSON for scripts")
    keys = parent.add_argument_group("signer").add_mutually_exclusive_group()
    keys.add_argument("--key", dest="key_file", metavar="FILE",
                      help="a key file (see: opus account new)")
    keys.add_argument("--dev-account", metavar="NAME", choices=DEV_ACCOUNT_NAMES,
                      help="a well-known dev key: " + ", ".join(DEV_ACCOUNT_NAMES))
    if signing:
        group.add_argument("--wait", choices=("inBlock", "finalized"), default="inBlock",
                           help="wait until the transaction is in a block (default) or final")
        group.add_argument("--tip", type=_amount, default=0, metavar="AMOUNT",
                           help="a tip to the block author, for priority (default 0)")
    return parent


def _run(fn: Callable[[Context], int], parser: argparse.ArgumentParser
         ) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return fn(Context(args))
        except UsageError as e:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {safe_message(str(e))}", file=sys.stderr)
            return 2
        except CallFailed as e:
            # The error's detail and an RPC error's data come from the node: one safe line.
            r = e.receipt
            print(f"Error: the chain refused the call: {safe_message(str(e))} (included in "
                  f"block #{r.block_number}, fee {format_amount(r.fee)} paid)", file=sys.stderr)
            return 1
        except (CreatorError, ClientError) as e:
            print(f"Error: {safe_message(str(e))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
        except Exception as e:  # noqa: BLE001 - a user sees one line, never a traceback
            print(f"Error: unexpected {type(e).__name__}: {safe_message(str(e))}",
                  file=sys.stderr)
            return 1

    return handler


def _command(sub: Any, name: str, fn: Callable[[Context], int], help_text: str, *,
             signing: bool = False, parents: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text,
        parents=[_common(signing=signing)] if parents else [])
    parser.set_defaults(handler=_run(fn, parser))
    return parser


def add_creator_commands(subparsers: Any) -> None:
    """Add the creator commands to ``opus``'s subparsers (each sets ``handler``)."""
    # account
    account = subparsers.add_parser("account", help="create a key file, show an account")
    acc = account.add_subparsers(dest="account_command", metavar="ACCOUNT_COMMAND",
                                 required=True)
    p = _command(acc, "new", cmd_account_new, "create a new account key file", parents=False)
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the key (0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    p = _command(acc, "show", cmd_account_show, "show an account's balance and nonce")
    p.add_argument("address", nargs="?", type=_address_text, metavar="ADDRESS",
                   help="an opus1… address or a dev account name (default: the signer's)")

    # transfer
    p = _command(subparsers, "transfer", cmd_transfer, "send tokens to an account",
                 signing=True)
    p.add_argument("dest", type=_account, metavar="DEST", help="an opus1… address")
    p.add_argument("amount", type=_amount, metavar="AMOUNT", help="units, or tokens: 2.5OPUS")

    # work
    work = subparsers.add_parser("work", help="register and show works")
    wsub = work.add_subparsers(dest="work_command", metavar="WORK_COMMAND", required=True)
    p = _command(wsub, "register", cmd_work_register,
                 "register a file as a work (the file is hashed here, never uploaded)",
                 signing=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--title", required=True, type=_text(provenance.MAX_TITLE, "title"))
    p.add_argument("--kind", default="other", choices=[k.value for k in provenance.WorkKind])
    p.add_argument("--split", type=_split, action="append", metavar="ADDR:BPS",
                   help="a co-creator's revenue share in basis points (repeat; must total "
                        "10000; default: the signer 10000)")
    p.add_argument("--parent", type=_parent, action="append", metavar="WORK:LICENSE",
                   help="a parent work and the license you hold on it (repeat)")
    p.add_argument("--metadata-uri", default="", type=_text(provenance.MAX_URI, "metadata URI"))
    p.add_argument("--metadata-hash", type=_hash32, metavar="0xHASH")
    p = _command(wsub, "show", cmd_work_show, "show a work, its creators and its terms")
    p.add_argument("id", nargs="?", type=_id, metavar="ID")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--content-hash", type=_hash32, metavar="0xHASH")
    which.add_argument("--file", metavar="FILE", help="find the work of this file")

    # license
    lic = subparsers.add_parser("license", help="offer terms, acquire and show licenses")
    lsub = lic.add_subparsers(dest="license_command", metavar="LICENSE_COMMAND", required=True)
    p = _command(lsub, "offer", cmd_license_offer, "offer license terms on a work you own",
                 signing=True)
    p.add_argument("work", type=_id, metavar="WORK")
    ai = [u.value for u in licensing.AiUse]
    p.add_argument("--ai-training", choices=ai, default="not_allowed")
    p.add_argument("--ai-inference", choices=ai, default="not_allowed")
    p.add_argument("--fee", type=_amount, default=0, metavar="AMOUNT",
                   help="the price of a license (units or e.g. 5OPUS)")
    p.add_argument("--royalty", type=_bps, default=0, metavar="BPS",
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
    p.add_argument("--expiry", type=_count, default=0, metavar="BLOCKS",
                   help="licenses expire this many blocks after purchase (0: never)")
    p.add_argument("--supply", type=_uint((1 << 32) - 1, "supply"), default=0, metavar="N",
                   help="at most N licenses (0: unlimited)")
    p.add_argument("--legal-uri", default="", type=_text(licensing.MAX_LEGAL_URI, "legal URI"))
    p.add_argument("--legal-hash", type=_hash32, metavar="0xHASH")
    p = _command(lsub, "acquire", cmd_license_acquire, "buy a license under terms",
                 signing=True)
    p.add_argument("terms", type=_id, metavar="TERMS")
    p = _command(lsub, "show", cmd_license_show, "show a license and its terms")
    p.add_argument("id", type=_id, metavar="ID")
    p = _command(lsub, "approve", cmd_license_approve,
                 "approve a license on your work for derivatives", signing=True)
    p.add_argument("id", type=_id, metavar="LICENSE")
    p.add_argument("--revoke", action="store_true", help="withdraw the approval")

    # royalty
    roy = subparsers.add_parser("royalty", help="pay revenue into a work")
    rsub = roy.add_subparsers(dest="royalty_command", metavar="ROYALTY_COMMAND", required=True)
    p = _command(rsub, "pay", cmd_royalty_pay,
                 "pay revenue into a work; it is split among its creators and ancestors",
                 signing=True)
    p.add_argument("work", type=_id, metavar="WORK")
    p.add_argument("amount", type=_amount, metavar="AMOUNT")
    p.add_argument("--memo", default="", type=_text(256, "memo"))

    # usage
    use = subparsers.add_parser("usage", help="record and list usage of licensed works")
    usub = use.add_subparsers(dest="usage_command", metavar="USAGE_COMMAND", required=True)
    p = _command(usub, "record", cmd_usage_record, "record a use of a work under your license",
                 signing=True)
    p.add_argument("license", type=_id, metavar="LICENSE")
    p.add_argument("--purpose", required=True, choices=[u.value for u in usage.Purpose])
    p.add_argument("--subject", required=True, type=_text(usage.MAX_SUBJECT, "subject"),
                   help="what it was used for, e.g. a model or dataset name")
    p.add_argument("--units", type=_count, default=1, help="how many units (default 1)")
    p.add_argument("--memo", default="", type=_text(usage.MAX_MEMO, "memo"))
    p = _command(usub, "list", cmd_usage_list, "list the usage of a work or a license")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--work", type=_id)
    which.add_argument("--license", type=_id)
    p.add_argument("--start", type=_id, default=0, help="first usage id")
    p.add_argument("--limit", type=_uint(1000, "limit"), default=100)

    # earnings
    p = _command(subparsers, "earnings", cmd_earnings,
                 "an account's royalty earnings, per work, with their history")
    p.add_argument("address", nargs="?", type=_address_text, metavar="ADDRESS",
                   help="default: the signer's account")
    p.add_argument("--work", type=_id, help="only credits involving this work")
    p.add_argument("--start", type=_id, default=0, help="first credit number")
    p.add_argument("--limit", type=_uint(1000, "limit"), default=100)

    # proof, verify
    p = _command(subparsers, "proof", cmd_proof,
                 "fetch a work's provenance proof (checkable offline with opus verify)")
    p.add_argument("work", type=_id, metavar="WORK")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--block", type=_hash32, metavar="0xHASH",
                   help="prove against this block (default: the best block)")
    p = _command(subparsers, "verify", cmd_verify,
                 "check a provenance proof file offline", parents=False)
    p.add_argument("proof", metavar="PROOF")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")


__all__ = ["CreatorError", "add_creator_commands", "format_amount"]
