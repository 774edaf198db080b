"""``opus proof`` and ``opus verify``: a work's provenance proof, fetched from a node and
written to a file, then checked offline against the block header it carries.
``opus verify`` also checks a dataset statement (``opus dataset certify``) against a node
(:func:`client.commands.datasets.verify_statement_file`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from client import DEFAULT_RPC, PROOF_FORMAT, ProofError, verify_provenance_proof
from client.commands import arguments, datasets
from client.commands.common import Context, CreatorError, command, read_file, require, short, when
from client.statement import FORMAT as STATEMENT_FORMAT
from runtime.codec import hex0x
from runtime.crypto import encode_address as address_of

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def proof(ctx: Context) -> int:
    a = ctx.args
    doc = require(ctx.client.provenance_proof(a.work, a.block), f"no work #{a.work}"
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


def verify(ctx: Context) -> int:
    path = ctx.args.proof
    text = read_file(path)
    try:
        doc = json.loads(text)
    except ValueError:
        raise CreatorError(f"{path!r} is not JSON (not a proof file)") from None
    if isinstance(doc, dict) and doc.get("format") == STATEMENT_FORMAT:
        return datasets.verify_statement_file(ctx, path, doc)
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
         f"  registered    block #{w.registered_at} at {when(w.registered_at_ms)}",
         f"  proven in     block #{v.header.number} {hex0x(v.block_hash)}",
         f"  state root    {hex0x(v.header.state_root)}",
         "The proof nodes match the header's state root. To trust the header, check that "
         f"block #{v.header.number} has hash {short(hex0x(v.block_hash))} on a node you trust."])
    return 0


def add_parsers(sub: Subcommands) -> None:
    p = command(sub, "proof", proof,
                "fetch a work's provenance proof (checkable offline with opus verify)")
    p.add_argument("work", type=arguments.id_number, metavar="WORK")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--block", type=arguments.hash32, metavar="0xHASH",
                   help="prove against this block (default: the best block)")
    p = command(sub, "verify", verify, "check a provenance proof file offline, or a dataset "
                "statement (opus dataset certify) against a node", node=False)
    p.add_argument("proof", metavar="FILE", help="a provenance proof or a dataset statement")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    p.add_argument("--rpc", "--rpc-url", dest="rpc", metavar="URL",
                   default=os.environ.get("OPUS_RPC", DEFAULT_RPC),
                   help="a statement only: the node to check it against (default $OPUS_RPC "
                        f"or {DEFAULT_RPC})")
    p.add_argument("--report", metavar="REPORT",
                   help="a statement only: the audit report it names, checked to be that one")
