"""Dataset statements: a training set's rights, signed by the AI builder, checked on chain.

A statement (``opus dataset certify``) says: this manifest (its SHA-256), audited at this
block, has these counts per status; every registered work in it whose terms allow AI
training is covered by a license the builder holds and a usage record of the builder
(purpose, subject: the model) under it. The builder signs it with its account key, so a
model card can link to it and anyone can check it against the chain (``opus verify``).
docs/datasets.md describes the format; in short, a JSON object::

    {"format": "opus-dataset-statement/1", "genesisHash": "0x…", "builder": "opus1…",
     "manifest": {"source": "shards/", "sha256": "…", "files": 2},
     "audit": {"report": "audit.csv", "reportSha256": "…", "blockHash": "0x…",
               "blockNumber": 12, "rows": 33, "counts": {"not_registered": 22, …},
               "worksToLicense": 6},
     "use": {"purpose": "ai_training", "subject": "model-x v1"},
     "certifiedAt": {"blockHash": "0x…", "blockNumber": 20},
     "coverage": [[work, license, usage, items], …],
     "signature": "0x…"}

The signature is ed25519 by ``builder`` over :data:`SIGNING_DOMAIN` followed by the
statement without ``signature`` as canonical JSON (keys sorted, no spaces, ASCII).

:func:`verify_statement` raises :class:`StatementInvalid` whose ``reason`` names what is
wrong (:data:`REASONS`), else returns what it checked. The coverage is checked a few
entries at a time (:func:`client.pipeline.parallel_calls`): three calls an entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import ClientError
from client.pipeline import parallel_calls
from client.rpc import OpusClient
from runtime.codec import from_hex0x, hex0x
from runtime.crypto import InvalidAddress, Keypair, decode_address, verify

__all__ = ["FORMAT", "REASONS", "SIGNING_DOMAIN", "Checked", "StatementInvalid",
           "canonical", "manifest_sha256", "sign_statement", "verify_statement"]

FORMAT = "opus-dataset-statement/1"
SIGNING_DOMAIN = b"opus-dataset-statement/1\n"

REASONS = {
    "Malformed": "the file is not a statement of this format",
    "BadSignature": "the signature is not the builder's over this content",
    "WrongChain": "the node's chain is not the statement's (genesis hash)",
    "UnknownBlock": "the audit's block is not on the node's chain",
    "ReportMismatch": "the report given is not the one the statement names",
    "Incomplete": "works to license without a coverage entry",
    "LicenseNotFound": "a license of the coverage does not exist",
    "NotLicensee": "a license of the coverage is not the builder's",
    "WrongWork": "a license of the coverage is on another work",
    "TrainingNotAllowed": "a license's terms do not allow AI training",
    "UsageNotFound": "a usage record of the coverage does not exist as stated",
}


class StatementInvalid(ClientError):
    """A statement that does not hold; ``reason`` is one of :data:`REASONS`' names."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes signed: the domain and the statement without its signature, canonical."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return SIGNING_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=True).encode()


def sign_statement(document: dict[str, Any], key: Keypair) -> dict[str, Any]:
    """``document`` with ``builder`` set to the key's account and its ``signature``."""
    signed = {**document, "builder": key.address}
    signed.pop("signature", None)
    signed["signature"] = hex0x(key.sign(canonical(signed)))
    return signed


def manifest_sha256(path: Path) -> tuple[str, int]:
    """A manifest's SHA-256 (hex) and how many files it is: a file's own hash, or for a
    folder the hash of its files' lines ``RELATIVE_PATH<TAB>SHA256<LF>``, sorted by path
    (hidden files left out, as the audit leaves them out)."""
    if path.is_file():
        return _file_sha256(path), 1
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    lines = "".join(f"{p.relative_to(path).as_posix()}\t{_file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest(), len(files)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class Checked:
    """What a valid statement establishes."""

    builder: str
    block_number: int
    works: int
    licenses: int
    usage_records: int


def _need(document: dict[str, Any], path: str, kind: type | tuple[type, ...]) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise StatementInvalid("Malformed", f"no {path!r}")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StatementInvalid("Malformed", f"{path!r} has the wrong type")
    return value


def _coverage(document: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    entries = _need(document, "coverage", list)
    out = []
    for i, entry in enumerate(entries):
        if (not isinstance(entry, list) or len(entry) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                           for v in entry)):
            raise StatementInvalid("Malformed", f"coverage[{i}] is not [work, license, usage, "
                                   "items]")
        out.append((entry[0], entry[1], entry[2], entry[3]))
    return out


def check_signature(document: Any) -> bytes:
    """The builder's account id, if the statement is well formed and signed by it."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StatementInvalid("Malformed", f"not an {FORMAT} document")
    builder = _need(document, "builder", str)
    try:
        public = decode_address(builder)
        signature = from_hex0x(_need(document, "signature", str), 64)
    except (InvalidAddress, ValueError) as e:
        raise StatementInvalid("Malformed", str(e)) from None
    if not verify(public, canonical(document), signature):
        raise StatementInvalid("BadSignature", f"the signature is not {builder}'s over this "
                               "statement (was it changed after signing?)")
    return public


def verify_statement(document: Any, url: str, *, report_sha256: str | None = None) -> Checked:
    """Check a statement against the node at ``url`` (see :data:`REASONS`).

    With ``report_sha256`` (the hash of the audit report at hand) the statement must name
    that report.
    """
    check_signature(document)
    builder = document["builder"]
    coverage = _coverage(document)
    number = _need(document, "audit.blockNumber", int)
    block_hash = _need(document, "audit.blockHash", str)
    to_license = _need(document, "audit.worksToLicense", int)
    use = (_need(document, "use.purpose", str), _need(document, "use.subject", str))
    named_report = _need(document, "audit.reportSha256", str)
    client = OpusClient(url)
    if hex0x(client.genesis_hash()) != _need(document, "genesisHash", str):
        raise StatementInvalid("WrongChain", f"the node's genesis is {hex0x(client.genesis_hash())}"
                               f", the statement's {document['genesisHash']}")
    if client.call("chain_getBlockHash", number) != block_hash:
        raise StatementInvalid("UnknownBlock", f"block #{number} {block_hash} is not on the "
                               "node's chain")
    if report_sha256 is not None and report_sha256 != named_report:
        raise StatementInvalid("ReportMismatch", f"the report's SHA-256 is {report_sha256}, "
                               f"the statement names {named_report}")
    if len({w for w, _, _, _ in coverage}) != to_license or len(coverage) != to_license:
        raise StatementInvalid("Incomplete", f"{to_license} works to license, "
                               f"{len(coverage)} coverage entries (one per work)")
    _check_coverage(url, coverage, builder, use)
    return Checked(builder, number, len(coverage), len({lic for _, lic, _, _ in coverage}),
                   len(coverage))


def _check_coverage(url: str, coverage: Sequence[tuple[int, int, int, int]], builder: str,
                    use: tuple[str, str]) -> None:
    """Every entry checked, a few at a time (the first failure raises, in order)."""
    parallel_calls(url, lambda client, entry: _check_entry(client, entry, builder, use),
                   coverage)


def _check_entry(client: OpusClient, entry: tuple[int, int, int, int], builder: str,
                 use: tuple[str, str]) -> None:
    work, license_id, usage_id, _ = entry
    lic = client.get_license(license_id)
    if lic is None:
        raise StatementInvalid("LicenseNotFound", f"no license #{license_id} (work #{work})")
    if lic["licensee"] != builder:
        raise StatementInvalid("NotLicensee", f"license #{license_id} is {lic['licensee']}'s, "
                               f"not the builder {builder}'s")
    if lic["workId"] != work:
        raise StatementInvalid("WrongWork", f"license #{license_id} is on work "
                               f"#{lic['workId']}, not #{work}")
    terms = client.get_terms(lic["termsId"])
    if terms is None or terms["aiTraining"] == "not_allowed":
        raise StatementInvalid("TrainingNotAllowed", f"the terms of license #{license_id} do "
                               "not allow AI training")
    if not _usage_recorded(client, license_id, usage_id, builder, use):
        raise StatementInvalid("UsageNotFound", f"no usage record #{usage_id} of {use[0]} "
                               f"for {use[1]!r} under license #{license_id} by {builder}")


def _usage_recorded(client: OpusClient, license_id: int, usage_id: int, builder: str,
                    use: tuple[str, str]) -> bool:
    """Whether usage record ``usage_id`` is under ``license_id``, by the builder, for
    ``use`` (the listing by license is in id order: it starts at the id)."""
    page = client.list_usage(license=license_id, start=usage_id, limit=1)
    return any(r["id"] == usage_id and r["licensee"] == builder
               and (r["purpose"], r["subject"]) == use for r in page["items"])
