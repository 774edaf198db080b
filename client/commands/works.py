"""``opus work register | show | match``: a file's proof of provenance, what is known of a
work, and the works an image is a near-duplicate of.

An image work (``--kind image``) is registered with its PDQ fingerprint as the work's soft
binding (:mod:`client.fingerprint`), unless ``--no-fingerprint``. Before submitting,
``work register`` asks the node for works within ``--max-distance`` bits of it
(``opus_findSimilarWorks``): if there are any, it names them (work, owner, distance) and
registers only once confirmed (``--yes``, or "y" on the terminal). ``work match FILE`` lists
them.
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Any

from client.commands import arguments
from client.commands.common import (
    Context,
    CreatorError,
    UsageError,
    command,
    group,
    interactive,
    read_file,
    receipt_lines,
    require,
    when,
)
from client.commands.licenses import terms_line
from client.display import safe_text
from client.fingerprint import (
    DEFAULT_MAX_DISTANCE,
    MAX_MATCH_DISTANCE,
    MIN_QUALITY,
    Fingerprint,
    NotAnImage,
    find_near_duplicates,
    query_fingerprints,
)
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
    queries, why_none = _fingerprints(a.file, a.kind, a.no_fingerprint)
    fingerprint = queries[0] if queries else None
    if queries:
        _check_near_duplicates(ctx, queries, key.address)
    args = provenance.RegisterWork(
        content_hash=content_hash,
        kind=provenance.WorkKind(a.kind),
        title=a.title,
        metadata_uri=a.metadata_uri,
        metadata_hash=a.metadata_hash,
        creators=tuple(provenance.Split(acc, bps) for acc, bps in creators),
        parents=tuple(provenance.ParentLink(w, lic) for w, lic in a.parent or []),
        soft_binding=None if fingerprint is None else fingerprint.soft_binding(),
    )
    receipt = ctx.execute(args)
    work_id = receipt.events_named("provenance", "WorkRegistered")[0]["workId"]
    proof_file = f"work-{work_id}.proof.json"
    ctx.emit(
        {"workId": work_id, "contentHash": hex0x(content_hash), "owner": key.address,
         "fingerprint": None if fingerprint is None else _fingerprint_json(fingerprint),
         **receipt.to_json(),
         "proofCommand": f"opus proof {work_id} --out {proof_file}"},
        [f"Registered work #{work_id} \"{a.title}\" ({a.kind})",
         f"  content hash  {hex0x(content_hash)} (sha256 of {a.file})",
         f"  owner         {key.address}",
         *([f"  fingerprint   {why_none}"] if why_none else [] if fingerprint is None else
           [f"  fingerprint   pdq 0x{fingerprint.hex()} (quality {fingerprint.quality})"]),
         *(f"  derived from  work #{w} under license #{lic}" for w, lic in a.parent or []),
         *receipt_lines(receipt),
         f"Proof: opus proof {work_id} --out {proof_file}   then: opus verify {proof_file}"])
    return 0


def _fingerprints(path: str, kind: str, skip: bool) -> tuple[list[Fingerprint], str]:
    """An image work's query fingerprints, its own (the one registered) first, or none and
    why: not an image work, ``--no-fingerprint``, a file that does not decode here (a
    format Pillow does not read, such as a camera's raw file) or too flat an image to
    fingerprint reliably. The registration goes on either way."""
    if kind != provenance.WorkKind.IMAGE:
        return [], ""
    if skip:
        return [], "none (--no-fingerprint)"
    try:
        queries = query_fingerprints(path)
    except NotAnImage:
        return [], "none (not an image this client can decode)"
    if not queries[0].usable:
        return [], (f"none (too little structure: PDQ quality {queries[0].quality} < "
                    f"{MIN_QUALITY})")
    return queries, ""


def _fingerprint_json(fingerprint: Fingerprint) -> dict[str, Any]:
    return {"algorithm": provenance.PDQ, "value": "0x" + fingerprint.hex(),
            "quality": fingerprint.quality}


class NearDuplicate(CreatorError):
    """The image is a near-duplicate of a registered work, and registering was not confirmed."""


def _check_near_duplicates(ctx: Context, queries: list[Fingerprint], signer: str) -> None:
    """Warn about registered works within ``--max-distance`` of the image, and go on only if
    confirmed (``--yes``, or "y" on the terminal); near-duplicates that are all the
    signer's own works are a warning only."""
    found = find_near_duplicates(ctx.client, queries, ctx.args.max_distance)["works"]
    if not found:
        return
    for line in near_duplicate_lines(found):  # (titles come from the chain: made safe)
        print(f"Warning: {safe_text(line)}", file=sys.stderr)
    if ctx.args.yes or all(w["owner"] == signer for w in found):
        return
    if not interactive():
        raise NearDuplicate("not registered: the image is a near-duplicate of registered "
                            "work(s) above; give --yes to register it anyway")
    try:
        answer = input("Register it anyway? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise NearDuplicate("not registered (not confirmed); nothing was submitted")


def near_duplicate_lines(works: list[dict[str, Any]]) -> list[str]:
    """``opus_findSimilarWorks``' works for people, one line each."""
    return [f"near-duplicate of work #{w['workId']} \"{w['title']}\" owned by {w['owner']}: "
            f"PDQ distance {w['distance']} of 256 bits (content hash {w['contentHash']}, "
            f"registered at block #{w['registeredAt']})" for w in works]


def work_match(ctx: Context) -> int:
    a = ctx.args
    queries = query_fingerprints(a.file)
    fingerprint = queries[0]
    if not fingerprint.usable:
        raise CreatorError(f"{a.file} has too little structure to match on (PDQ quality "
                           f"{fingerprint.quality} < {MIN_QUALITY})")
    answer = find_near_duplicates(ctx.client, queries, a.max_distance, a.at)
    works = answer["works"]
    head = (f"{len(works)} registered work(s) within PDQ distance {a.max_distance} of "
            f"{a.file} at block #{answer['blockNumber']}" if works else
            f"No registered work within PDQ distance {a.max_distance} of {a.file} at "
            f"block #{answer['blockNumber']}")
    partial = [] if answer["complete"] else [
        "  (incomplete: the node stopped at its limit of candidates; many registered works "
        "share this image's fingerprint)"]
    ctx.emit({"file": a.file, "fingerprint": _fingerprint_json(fingerprint),
              "maxDistance": a.max_distance, "blockHash": answer["blockHash"],
              "blockNumber": answer["blockNumber"], "works": works,
              "complete": answer["complete"]},
             [head, *(f"  {line}" for line in near_duplicate_lines(works)), *partial])
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
    binding = work.get("softBinding")
    if binding:
        lines.append(f"  fingerprint   {binding['algorithm']} {binding['value']}"
                     + ("" if binding.get("quality") is None
                        else f" (quality {binding['quality']})"))
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
    p.add_argument("--no-fingerprint", action="store_true",
                   help="register an image without its PDQ fingerprint (soft binding)")
    _max_distance(p)
    p.add_argument("--yes", action="store_true",
                   help="register even if the image is a near-duplicate of a registered work")
    p = command(works, "match", work_match,
                "list the registered works an image is a near-duplicate of (PDQ)")
    p.add_argument("file", metavar="FILE")
    _max_distance(p)
    p.add_argument("--at", type=arguments.hash32, metavar="BLOCK_HASH",
                   help="as of this block (default: the best block)")
    p = command(works, "show", work_show, "show a work, its creators and its terms")
    p.add_argument("id", nargs="?", type=arguments.id_number, metavar="ID")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--content-hash", type=arguments.hash32, metavar="0xHASH")
    which.add_argument("--file", metavar="FILE", help="find the work of this file")


def _max_distance(p: Any) -> None:
    p.add_argument("--max-distance",
                   type=arguments.number_in_range("a distance in bits", 0, MAX_MATCH_DISTANCE),
                   default=DEFAULT_MAX_DISTANCE, metavar="BITS",
                   help="the PDQ Hamming distance (of 256 bits) within which an image is a "
                        f"near-duplicate (default {DEFAULT_MAX_DISTANCE}, at most "
                        f"{MAX_MATCH_DISTANCE})")
