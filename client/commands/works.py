"""``opus work register | show``: a file's proof of provenance, and what is known of a work."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from client.commands import arguments
from client.commands.common import (
    Context,
    CreatorError,
    UsageError,
    command,
    group,
    read_file,
    receipt_lines,
    require,
    when,
)
from client.commands.licenses import terms_line
from runtime.codec import hex0x
from runtime.modules import provenance

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def work_register(ctx: Context) -> int:
    a = ctx.args
    if not a.title.strip():
        raise UsageError("--title must not be empty")
    key = ctx.key()
    creators = a.split or [(key.public, provenance.BPS)]
    total = sum(bps for _, bps in creators)
    if total != provenance.BPS:
        raise UsageError(f"--split shares add up to {total} bps; they must add up to 10000")
    content = read_file(a.file)
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
         *receipt_lines(receipt),
         f"Proof: opus proof {work_id} --out {proof_file}   then: opus verify {proof_file}"])
    return 0


def work_lines(work: dict[str, Any]) -> list[str]:
    """A work (``opus_getWork``'s answer) for people."""
    lines = [f"Work #{work['id']} \"{work['title']}\" ({work['kind']})",
             f"  content hash  {work['contentHash']}",
             f"  owner         {work['owner']}",
             f"  registered    block #{work['registeredAt']} at {when(work['registeredAtMs'])}"]
    if work["metadataUri"]:
        lines.append(f"  metadata      {work['metadataUri']}")
    for c in work["creators"]:
        lines.append(f"  creator       {c['account']} {c['bps'] / 100:g}%")
    for p in work["parents"]:
        lines.append(f"  derived from  work #{p['workId']} (license #{p['licenseId']})")
    for s in work["royaltyStack"]:
        lines.append(f"  royalty to    work #{s['workId']}: {s['bps'] / 100:g}% of all revenue")
    return lines


def work_show(ctx: Context) -> int:
    a = ctx.args
    client = ctx.client
    if a.content_hash is not None:
        work = require(client.get_work_by_content_hash(a.content_hash),
                       f"no work has content hash {hex0x(a.content_hash)}")
    elif a.file is not None:
        digest = hashlib.sha256(read_file(a.file)).digest()
        work = require(client.get_work_by_content_hash(digest),
                       f"{a.file} (sha256 {hex0x(digest)}) is not registered")
    elif a.id is not None:
        work = require(client.get_work(a.id), f"no work #{a.id}")
    else:
        raise UsageError("give a work ID, --content-hash HASH or --file FILE")
    terms = client.list_terms(work["id"], limit=1000)["items"]
    ctx.emit({"work": work, "terms": terms},
             work_lines(work) + [terms_line(t) for t in terms])
    return 0


def add_parsers(sub: Subcommands) -> None:
    works = group(sub, "work", "register and show works")
    p = command(works, "register", work_register,
                "register a file as a work (the file is hashed here, never uploaded)",
                signing=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--title", required=True,
                   type=arguments.text_of_at_most(provenance.MAX_TITLE, "title"))
    p.add_argument("--kind", default="other", choices=[k.value for k in provenance.WorkKind])
    p.add_argument("--split", type=arguments.split, action="append", metavar="ADDR:BPS",
                   help="a co-creator's revenue share in basis points (repeat; must total "
                        "10000; default: the signer 10000)")
    p.add_argument("--parent", type=arguments.parent, action="append", metavar="WORK:LICENSE",
                   help="a parent work and the license you hold on it (repeat)")
    p.add_argument("--metadata-uri", default="",
                   type=arguments.text_of_at_most(provenance.MAX_URI, "metadata URI"))
    p.add_argument("--metadata-hash", type=arguments.hash32, metavar="0xHASH")
    p = command(works, "show", work_show, "show a work, its creators and its terms")
    p.add_argument("id", nargs="?", type=arguments.id_number, metavar="ID")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--content-hash", type=arguments.hash32, metavar="0xHASH")
    which.add_argument("--file", metavar="FILE", help="find the work of this file")
