"""``opus proof`` and ``opus verify``: a work's provenance proof, fetched from a node and
written to a file, then checked offline against the block header it carries.
``opus verify`` also checks a dataset statement (``opus dataset certify``) against a node
(:func:`client.commands.datasets.verify_statement_file`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import (
    ABSENCE_FORMAT,
    DEFAULT_RPC,
    PROOF_FORMAT,
    ProofError,
    verify_absence_proof,
    verify_provenance_proof,
)
from client.commands import arguments, datasets
from client.commands.common import Context, CreatorError, command, read_file, require, short, when
from client.statement import FORMAT as STATEMENT_FORMAT
from runtime import codec
from runtime.codec import U64, from_hex0x, hex0x
from runtime.crypto import encode_address as address_of
from runtime.modules import provenance
from runtime.trie import InvalidProof, verify_proof

if TYPE_CHECKING:
    from client.commands.common import Subcommands


def _write(path: str, document: dict[str, object]) -> Path:
    out = Path(path)
    try:
        out.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as e:
        raise CreatorError(f"cannot write {path!r}: {e.strerror}") from None
    return out


def proof(ctx: Context) -> int:
    a = ctx.args
    if (a.work is None) == (a.content_hash is None):
        raise CreatorError("give a work id or --content-hash 0xHASH (one of them)")
    if a.content_hash is not None:
        answer = ctx.client.read_proof([provenance.work_by_content.key(a.content_hash)],
                                       a.block)
        work = _registered_work(ctx, a.content_hash, answer)
        if work is None:
            return _absence_proof(ctx, a.content_hash, answer)
        a.work, a.block = work, from_hex0x(answer["at"], 32)
    doc = require(ctx.client.provenance_proof(a.work, a.block), f"no work #{a.work}"
                  + (f" at block {hex0x(a.block)}" if a.block else ""))
    verified = verify_provenance_proof(doc)  # never write a proof that does not check out
    out = _write(a.out, {"format": PROOF_FORMAT, **doc})
    ctx.emit({"file": str(out), "workId": a.work, "blockHash": doc["blockHash"],
              "blockNumber": verified.header.number, "stateRoot": doc["stateRoot"]},
             [f"Wrote the provenance proof of work #{a.work} to {out}",
              f"  proven at     block #{verified.header.number} {doc['blockHash']}"
              f"{' (finalized)' if doc.get('finalized') else ''}",
              f"  state root    {doc['stateRoot']}",
              f"Check it offline: opus verify {out}"])
    return 0


def _registered_work(ctx: Context, content_hash: bytes, answer: dict[str, Any]) -> int | None:
    """The id of the work ``content_hash`` is registered to, by the node's read proof
    ``answer`` (checked), None if none."""
    header = require(ctx.client.header(from_hex0x(answer["at"], 32)), "no such block")
    key = provenance.work_by_content.key(content_hash)
    try:
        value = verify_proof(header.state_root, [from_hex0x(n) for n in answer["proof"]],
                             [key])[key]
        return None if value is None else int(codec.decode(value, U64))
    except (InvalidProof, codec.DecodeError, ValueError) as e:
        raise CreatorError(f"the node's read proof does not check out: {e}") from None


def _absence_proof(ctx: Context, content_hash: bytes, answer: dict[str, Any]) -> int:
    """Write the proof that no work has ``content_hash``, from the node's read proof."""
    client = ctx.client
    block_hash = from_hex0x(answer["at"], 32)
    header_json = client.call("chain_getHeader", answer["at"])
    finalized_head = require(client.header(client.finalized_head()), "no finalized block")
    number = int(header_json["number"], 16)
    finalized = number <= finalized_head.number and \
        client.call("chain_getBlockHash", number) == answer["at"]
    document = {"format": ABSENCE_FORMAT, "contentHash": hex0x(content_hash),
                "blockHash": answer["at"], "header": header_json, "proof": answer["proof"],
                "finalized": finalized, "genesisHash": hex0x(client.genesis_hash())}
    try:  # never write a proof that does not check out
        verify_absence_proof(document)
    except ProofError as e:
        raise CreatorError(f"the node's answer does not prove absence: {e}") from None
    out = _write(ctx.args.out, document)
    ctx.emit({"file": str(out), "contentHash": hex0x(content_hash), "registered": False,
              "blockHash": hex0x(block_hash), "blockNumber": number},
             [f"Wrote the proof that {hex0x(content_hash)} is not registered to {out}",
              f"  proven at     block #{number} {hex0x(block_hash)}"
              f"{' (finalized)' if finalized else ''}",
              f"Check it offline: opus verify {out}"])
    return 0


def _verify_absence(ctx: Context, path: str, doc: dict[str, object]) -> int:
    try:
        v = verify_absence_proof(doc)
    except ProofError as e:
        raise CreatorError(f"INVALID proof {path}: {e}") from None
    ctx.emit(
        {"valid": True, "registered": False, "contentHash": hex0x(v.content_hash),
         "blockHash": hex0x(v.block_hash), "blockNumber": v.header.number,
         "stateRoot": hex0x(v.header.state_root), "claimedFinalized": v.claimed_finalized},
        [f"VALID: content hash {hex0x(v.content_hash)} is NOT registered",
         f"  proven in     block #{v.header.number} {hex0x(v.block_hash)}",
         f"  state root    {hex0x(v.header.state_root)}",
         "The proof nodes match the header's state root. To trust the header, check that "
         f"block #{v.header.number} has hash {short(hex0x(v.block_hash))} on a node you trust."])
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
    if isinstance(doc, dict) and doc.get("format") == ABSENCE_FORMAT:
        return _verify_absence(ctx, path, doc)
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
                "fetch a work's provenance proof, or the proof that a content hash is not "
                "registered (checkable offline with opus verify)")
    p.add_argument("work", type=arguments.id_number, metavar="WORK", nargs="?")
    p.add_argument("--content-hash", type=arguments.hash32, metavar="0xHASH",
                   help="instead of WORK: prove what this content hash is at the block (an "
                        "audit row): its work's provenance, or that nothing is registered")
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
