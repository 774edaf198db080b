"""Offline verification of provenance proofs, no node needed, only the runtime's trie rules:
that a work is registered (:func:`verify_provenance_proof`), or that a content hash is not
(:func:`verify_absence_proof`, what an audit's "not registered" row rests on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.api import header_from_json, to_json
from client.errors import ProofError
from runtime import codec
from runtime.block import Header
from runtime.codec import U64, from_hex0x
from runtime.modules import provenance
from runtime.trie import InvalidProof, verify_proof

PROOF_FORMAT = "opus-provenance-proof/1"  # the "format" of an ``opus proof`` file
ABSENCE_FORMAT = "opus-absence-proof/1"  # ``opus proof --content-hash`` of an unregistered hash

@dataclass(frozen=True)
class VerifiedProof:
    """What a valid provenance proof establishes."""

    work_id: int
    work: provenance.Work
    block_hash: bytes
    header: Header
    claimed_finalized: bool  # what the node said; check the block hash on a trusted node
    genesis_hash: bytes | None


def _field(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise ProofError(f"the proof lacks {name!r}")
    return doc[name]


def verify_provenance_proof(doc: Any) -> VerifiedProof:
    """Check a proof document (``opus_getProvenanceProof``'s answer or an ``opus proof`` file).

    Offline: the header must hash to ``blockHash``, the proof nodes must prove
    the work's entries against the header's state root
    (:func:`runtime.trie.verify_proof`), the proven bytes must decode to exactly
    the work record in the document, and the content hash must map to the work.
    Raises :class:`ProofError` saying what does not hold.
    """
    if not isinstance(doc, dict):
        raise ProofError("a proof is a JSON object")
    try:
        header = header_from_json(_field(doc, "header"))
        block_hash = from_hex0x(_field(doc, "blockHash"), 32)
        state_root = from_hex0x(_field(doc, "stateRoot"), 32)
        keys = [from_hex0x(k) for k in _field(doc, "keys")]
        nodes = [from_hex0x(n) for n in _field(doc, "proof")]
        work_id = _field(doc, "workId")
        claimed = _field(doc, "work")
        content_hash = from_hex0x(claimed["contentHash"], 32)
        genesis = doc.get("genesisHash")
        genesis_hash = from_hex0x(genesis, 32) if genesis else None
    except (ValueError, TypeError, KeyError) as e:
        raise ProofError(f"malformed proof: {e}") from None
    if not isinstance(work_id, int) or isinstance(work_id, bool) or not 0 <= work_id < 1 << 64:
        raise ProofError("malformed proof: workId is not a work id")
    if header.hash != block_hash:
        raise ProofError("the header does not hash to blockHash")
    if header.state_root != state_root:
        raise ProofError("stateRoot is not the header's state root")
    work_key = provenance.works.key(work_id)
    content_key = provenance.work_by_content.key(content_hash)
    if sorted(keys) != sorted([work_key, content_key]):
        raise ProofError("the proof's keys are not the work's storage keys")
    try:
        values = verify_proof(header.state_root, nodes, [work_key, content_key])
    except InvalidProof as e:
        raise ProofError(f"the proof nodes do not match the state root: {e}") from None
    raw_work, raw_owner = values[work_key], values[content_key]
    if raw_work is None:
        raise ProofError(f"the proof shows that work #{work_id} does not exist at this block")
    if raw_owner is None:
        raise ProofError("the proof shows that the content hash is not registered at this block")
    try:
        work: provenance.Work = codec.decode(raw_work, provenance.Work)
        owner_of_hash = codec.decode(raw_owner, U64)
    except codec.DecodeError as e:
        raise ProofError(f"the proven state does not decode: {e}") from None
    if work.id != work_id or to_json(work) != claimed:
        raise ProofError("the work record in the proof differs from the proven state")
    if owner_of_hash != work_id:
        raise ProofError(f"the content hash is registered to work #{owner_of_hash}, "
                         f"not #{work_id}")
    return VerifiedProof(work_id, work, block_hash, header, bool(doc.get("finalized")),
                         genesis_hash)


@dataclass(frozen=True)
class VerifiedAbsence:
    """What a valid absence proof establishes: no work had ``content_hash`` at the block."""

    content_hash: bytes
    block_hash: bytes
    header: Header
    claimed_finalized: bool
    genesis_hash: bytes | None


def verify_absence_proof(doc: Any) -> VerifiedAbsence:
    """Check an absence proof document (``opus proof --content-hash`` of a hash nobody had
    registered): the header must hash to ``blockHash`` and the proof nodes must show, against
    its state root, that ``provenance:work_by_content:<hash>`` holds nothing. Offline;
    raises :class:`ProofError` saying what does not hold."""
    if not isinstance(doc, dict):
        raise ProofError("a proof is a JSON object")
    try:
        header = header_from_json(_field(doc, "header"))
        block_hash = from_hex0x(_field(doc, "blockHash"), 32)
        content_hash = from_hex0x(_field(doc, "contentHash"), 32)
        nodes = [from_hex0x(n) for n in _field(doc, "proof")]
        genesis = doc.get("genesisHash")
        genesis_hash = from_hex0x(genesis, 32) if genesis else None
    except (ValueError, TypeError, KeyError) as e:
        raise ProofError(f"malformed proof: {e}") from None
    if header.hash != block_hash:
        raise ProofError("the header does not hash to blockHash")
    key = provenance.work_by_content.key(content_hash)
    try:
        value = verify_proof(header.state_root, nodes, [key])[key]
    except InvalidProof as e:
        raise ProofError(f"the proof nodes do not match the state root: {e}") from None
    if value is not None:
        raise ProofError("the content hash is registered at this block: prove its work instead "
                         "(opus proof WORK)")
    return VerifiedAbsence(content_hash, block_hash, header, bool(doc.get("finalized")),
                           genesis_hash)


__all__ = ["ABSENCE_FORMAT", "PROOF_FORMAT", "VerifiedAbsence", "VerifiedProof",
           "verify_absence_proof", "verify_provenance_proof"]
