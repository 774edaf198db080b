"""A small client for an Opus Chain node's JSON-RPC, and offline proof checking.

Synchronous, standard library only (``urllib``), so scripts and the ``opus``
creator commands can use it without an event loop::

    from node.client import OpusClient
    from runtime.crypto import dev_keypair
    from runtime.modules import balances

    client = OpusClient("http://127.0.0.1:9944")
    alice, bob = dev_keypair("alice"), dev_keypair("bob")
    print(client.account_info(alice.address))          # {'address', 'nonce', 'free', …}
    receipt = client.execute(alice, balances.TransferArgs(bob.public, 10**12))
    print(receipt.block_number, receipt.events)

    work_id, receipt = client.register_work(alice, open("song.flac", "rb").read(),
                                            title="My song", kind="audio")
    proof = client.provenance_proof(work_id)
    verified = verify_provenance_proof(proof)          # offline: no node needed

Transactions are signed locally: :meth:`OpusClient.sign` takes the nonce from
``opus_accountInfo`` (``nextNonce``, which counts the signer's transactions
already in the pool) and, by default, a mortal era of ``DEFAULT_PERIOD`` blocks
born at the best block. :meth:`OpusClient.submit_and_wait` polls
``opus_getTransaction`` until the transaction is in a block (or finalized).

Errors are :class:`ClientError` subclasses with one-line messages:
:class:`NodeUnreachable`, :class:`RpcCallError` (an error answer; a refused
transaction is a :class:`TransactionRefused` whose ``reason`` is e.g.
``StaleNonce``), :class:`TransactionDropped`, :class:`WaitTimeout`,
:class:`CallFailed` (included, but the call failed: ``error`` is e.g.
``usage.PurposeNotAllowed``) and :class:`ProofError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.rpc import header_from_json, to_json
from runtime import codec, executive
from runtime.block import Header
from runtime.codec import U64, Struct, from_hex0x, hex0x
from runtime.crypto import InvalidAddress, Keypair, decode_address
from runtime.extrinsic import DEFAULT_PERIOD, IMMORTAL, Era, Extrinsic, sign_extrinsic
from runtime.modules import licensing, provenance, royalties, usage
from runtime.support import make_call
from runtime.trie import InvalidProof, verify_proof

DEFAULT_RPC = "http://127.0.0.1:9944"
PROOF_FORMAT = "opus-provenance-proof/1"
POLL_INTERVAL_S = 0.25

__all__ = [
    "DEFAULT_RPC",
    "CallFailed",
    "ClientError",
    "NodeUnreachable",
    "OpusClient",
    "ProofError",
    "Receipt",
    "RpcCallError",
    "TransactionDropped",
    "TransactionRefused",
    "VerifiedProof",
    "WaitTimeout",
    "load_key_file",
    "verify_provenance_proof",
    "write_key_file",
]


# ---------------------------------------------------------------------------
# Errors


class ClientError(Exception):
    """Base of every error the client reports (its message is one line for people)."""


class NodeUnreachable(ClientError):
    """No answer from the node at this URL."""


class RpcCallError(ClientError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data
        text = f"{message}: {data}" if data is not None else message
        super().__init__(f"{method}: {text} (code {code})")


class TransactionRefused(RpcCallError):
    """The pool refused the transaction (codes 1010-1016); ``reason`` names why."""

    @property
    def reason(self) -> str:
        if isinstance(self.data, str):
            return self.data.split(":", 1)[0]
        return self.rpc_message

    def __str__(self) -> str:
        return f"transaction refused: {self.data or self.rpc_message}"


class TransactionDropped(ClientError):
    """The transaction left the pool without being included (invalid, usurped or evicted)."""


class WaitTimeout(ClientError):
    """The transaction did not reach the awaited status in time."""


class CallFailed(ClientError):
    """The transaction was included and paid its fee, but its call failed."""

    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt
        self.error = receipt.error or "unknown"
        self.detail = receipt.detail or ""
        super().__init__(f"{self.error}: {self.detail}" if self.detail else self.error)


class ProofError(ClientError):
    """A proof document that does not prove what it claims."""


# ---------------------------------------------------------------------------
# Keys


def load_key_file(path: str | Path) -> Keypair:
    """Read a key file (JSON ``{"address": "opus1…", "seed": "<64 hex>"}``)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ClientError(f"key file {str(path)!r} does not exist") from None
    except OSError as e:
        raise ClientError(f"cannot read key file {str(path)!r}: {e.strerror}") from None
    except ValueError:
        raise ClientError(f"key file {str(path)!r} is not JSON") from None
    seed_text = data.get("seed") if isinstance(data, dict) else None
    if not isinstance(seed_text, str):
        raise ClientError(f"key file {str(path)!r} has no \"seed\"")
    try:
        key = Keypair.from_seed(bytes.fromhex(seed_text.removeprefix("0x")))
    except ValueError:
        raise ClientError(f"key file {str(path)!r}: the seed is not 32 bytes of hex") from None
    if data.get("address") not in (None, key.address):
        raise ClientError(f"key file {str(path)!r}: the address does not match the seed")
    return key


def write_key_file(path: str | Path, key: Keypair, *, overwrite: bool = False) -> None:
    """Write ``key`` as a key file readable by its owner only (mode 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ClientError(f"{str(path)!r} already exists (refusing to overwrite a key)") from None
    except OSError as e:
        raise ClientError(f"cannot write {str(path)!r}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        json.dump({"address": key.address, "seed": key.seed.hex()}, f, indent=2)
        f.write("\n")
    os.chmod(path, 0o600)


def parse_account(text: str) -> bytes:
    """An account id from an ``opus1…`` address or ``0x`` + 32 bytes of hex."""
    if text.startswith("0x"):
        try:
            return from_hex0x(text, 32)
        except ValueError as e:
            raise ClientError(str(e)) from None
    try:
        return decode_address(text)
    except InvalidAddress as e:
        raise ClientError(str(e)) from None


# ---------------------------------------------------------------------------
# Receipts


@dataclass(frozen=True)
class Receipt:
    """Where a transaction landed and what it did (``opus_getTransaction``'s answer)."""

    tx_hash: bytes
    status: str  # "inBlock" or "finalized"
    block_hash: bytes
    block_number: int
    index: int
    success: bool
    error: str | None
    detail: str | None
    fee: int
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            tx_hash=from_hex0x(data["hash"]),
            status=data["status"],
            block_hash=from_hex0x(data["blockHash"]),
            block_number=data["blockNumber"],
            index=data["index"],
            success=data["success"],
            error=data.get("error"),
            detail=data.get("detail"),
            fee=int(data.get("fee") or 0),
            events=list(data.get("events") or []),
        )

    def events_named(self, module: str, name: str) -> list[dict[str, Any]]:
        """The ``data`` of this transaction's events ``module.name``, in order."""
        return [e["data"] for e in self.events if e["module"] == module and e["name"] == name]

    def to_json(self) -> dict[str, Any]:
        return {"txHash": hex0x(self.tx_hash), "status": self.status,
                "blockHash": hex0x(self.block_hash), "blockNumber": self.block_number,
                "index": self.index, "success": self.success, "error": self.error,
                "detail": self.detail, "fee": str(self.fee), "events": self.events}


# ---------------------------------------------------------------------------
# The client


class OpusClient:
    """JSON-RPC over HTTP to one node."""

    def __init__(self, url: str = DEFAULT_RPC, *, timeout: float = 30.0) -> None:
        if url.startswith("ws://"):
            url = "http://" + url[5:]
        elif url.startswith("wss://"):
            url = "https://" + url[6:]
        self.url = url
        self.timeout = timeout
        self._next_id = 0
        self._genesis: bytes | None = None

    # ------------------------------------------------------------------ transport

    def _maybe(self, method: str, *params: Any) -> dict[str, Any] | None:
        result = self.call(method, *params)
        return None if result is None else dict(result)

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` with positional ``params``; its result, or an RpcCallError."""
        self._next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                           "params": list(params)}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            if not raw.startswith(b"{"):
                raise ClientError(f"{method}: the node answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise NodeUnreachable(f"cannot reach the node at {self.url}: {reason} "
                                  f"(is it running? see --rpc)") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ClientError(f"{method}: the node's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ClientError(f"{method}: unexpected answer from the node")
        error = answer.get("error")
        if error is not None:
            code = error.get("code", 0)
            kind = TransactionRefused if 1010 <= code <= 1016 else RpcCallError
            raise kind(method, code, error.get("message", ""), error.get("data"))
        return answer.get("result")

    # ------------------------------------------------------------------ chain

    def genesis_hash(self) -> bytes:
        if self._genesis is None:
            self._genesis = from_hex0x(self.call("chain_getBlockHash", 0), 32)
        return self._genesis

    def best_block(self) -> tuple[int, bytes]:
        """(number, hash) of the node's best block."""
        block_hash = self.call("chain_getBlockHash")
        header = self.call("chain_getHeader", block_hash)
        return int(header["number"], 16), from_hex0x(block_hash, 32)

    def header(self, block_hash: bytes | None = None) -> Header | None:
        data = self.call("chain_getHeader", *([hex0x(block_hash)] if block_hash else []))
        return None if data is None else header_from_json(data)

    def finalized_head(self) -> bytes:
        return from_hex0x(self.call("chain_getFinalizedHead"), 32)

    def properties(self) -> dict[str, Any]:
        return dict(self.call("system_properties"))

    def runtime_version(self) -> dict[str, Any]:
        return dict(self.call("state_getRuntimeVersion"))

    def events(self, block_hash: bytes | None = None) -> list[dict[str, Any]] | None:
        result = self.call("opus_getEvents", *([hex0x(block_hash)] if block_hash else []))
        return None if result is None else list(result)

    # ------------------------------------------------------------------ accounts and records

    def account_info(self, address: str) -> dict[str, Any]:
        """``{"address", "nonce", "nextNonce", "free"}`` (``free`` is a decimal string)."""
        return dict(self.call("opus_accountInfo", address))

    def get_work(self, work_id: int) -> dict[str, Any] | None:
        return self._maybe("opus_getWork", work_id)

    def get_work_by_content_hash(self, content_hash: bytes) -> dict[str, Any] | None:
        return self._maybe("opus_getWorkByContentHash", hex0x(content_hash))

    def list_works(self, owner: str, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        return dict(self.call("opus_listWorks", {"owner": owner, "start": start, "limit": limit}))

    def get_terms(self, terms_id: int) -> dict[str, Any] | None:
        return self._maybe("opus_getTerms", terms_id)

    def list_terms(self, work_id: int, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        return dict(self.call("opus_listTerms", {"work": work_id, "start": start,
                                                 "limit": limit}))

    def get_license(self, license_id: int) -> dict[str, Any] | None:
        return self._maybe("opus_getLicense", license_id)

    def list_licenses(self, *, licensee: str | None = None, work: int | None = None,
                      start: int = 0, limit: int = 100) -> dict[str, Any]:
        query: dict[str, Any] = {"start": start, "limit": limit}
        if licensee is not None:
            query["licensee"] = licensee
        if work is not None:
            query["work"] = work
        return dict(self.call("opus_listLicenses", query))

    def get_earnings(self, address: str, *, work: int | None = None, start: int = 0,
                     limit: int = 100) -> dict[str, Any]:
        options: dict[str, Any] = {"start": start, "limit": limit}
        if work is not None:
            options["work"] = work
        return dict(self.call("opus_getEarnings", address, options))

    def list_usage(self, *, work: int | None = None, license: int | None = None,  # noqa: A002
                   start: int = 0, limit: int = 100) -> dict[str, Any]:
        query: dict[str, Any] = {"start": start, "limit": limit}
        if work is not None:
            query["work"] = work
        if license is not None:
            query["license"] = license
        return dict(self.call("opus_listUsage", query))

    def provenance_proof(self, work_id: int, block_hash: bytes | None = None
                         ) -> dict[str, Any] | None:
        extra = [hex0x(block_hash)] if block_hash is not None else []
        return self._maybe("opus_getProvenanceProof", work_id, *extra)

    def get_transaction(self, tx_hash: bytes) -> dict[str, Any] | None:
        return self._maybe("opus_getTransaction", hex0x(tx_hash))

    # ------------------------------------------------------------------ transactions

    def sign(self, key: Keypair, args: Struct, *, nonce: int | None = None, tip: int = 0,
             mortal: bool = True, period: int = DEFAULT_PERIOD) -> Extrinsic:
        """Sign the call taking ``args`` (e.g. ``balances.TransferArgs``) for this chain."""
        if nonce is None:
            nonce = int(self.account_info(key.address)["nextNonce"])
        call = make_call(args)
        genesis = self.genesis_hash()
        if not mortal:
            return sign_extrinsic(key, call, nonce, genesis, executive.SPEC_VERSION, tip=tip,
                                  era=IMMORTAL)
        number, best_hash = self.best_block()
        return sign_extrinsic(key, call, nonce, genesis, executive.SPEC_VERSION, tip=tip,
                              era=Era(number, period), birth_hash=best_hash)

    def fee(self, ext: Extrinsic | bytes) -> int:
        """The fee (without tip) the chain will charge (``payment_queryInfo``)."""
        raw = ext if isinstance(ext, bytes) else codec.encode(ext)
        return int(self.call("payment_queryInfo", hex0x(raw))["partialFee"])

    def submit(self, ext: Extrinsic | bytes) -> bytes:
        """Submit a signed extrinsic; its hash. Raises TransactionRefused if the pool refuses."""
        raw = ext if isinstance(ext, bytes) else codec.encode(ext)
        return from_hex0x(self.call("author_submitExtrinsic", hex0x(raw)), 32)

    def wait(self, tx_hash: bytes, until: str = "inBlock", *, timeout: float = 60.0) -> Receipt:
        """Poll until the transaction is in a best-chain block (or finalized)."""
        if until not in ("inBlock", "finalized"):
            raise ValueError("until is 'inBlock' or 'finalized'")
        deadline = time.monotonic() + timeout
        missing = 0
        while True:
            status = self.get_transaction(tx_hash)
            if status is None:
                missing += 1
                if missing >= 3:
                    raise TransactionDropped(
                        f"transaction {hex0x(tx_hash)} left the pool without being included "
                        "(invalid or replaced; check the account's nonce and balance)")
            else:
                missing = 0
                if status["status"] == "finalized" or (
                        until == "inBlock" and status["status"] == "inBlock"):
                    return Receipt.from_json(status)
            if time.monotonic() > deadline:
                raise WaitTimeout(f"transaction {hex0x(tx_hash)} not {until} after {timeout:.0f} s")
            time.sleep(POLL_INTERVAL_S)

    def submit_and_wait(self, ext: Extrinsic | bytes, until: str = "inBlock", *,
                        timeout: float = 60.0) -> Receipt:
        return self.wait(self.submit(ext), until, timeout=timeout)

    def execute(self, key: Keypair, args: Struct, *, until: str = "inBlock", tip: int = 0,
                timeout: float = 60.0, check: bool = True) -> Receipt:
        """Sign, submit and wait; with ``check``, a failed call raises CallFailed."""
        receipt = self.submit_and_wait(self.sign(key, args, tip=tip), until, timeout=timeout)
        if check and not receipt.success:
            raise CallFailed(receipt)
        return receipt

    # ------------------------------------------------------------------ creator calls

    def register_work(self, key: Keypair, content: bytes, *, title: str, kind: str = "other",
                      creators: list[tuple[bytes, int]] | None = None,
                      parents: list[tuple[int, int]] | None = None, metadata_uri: str = "",
                      metadata_hash: bytes | None = None, until: str = "inBlock"
                      ) -> tuple[int, Receipt]:
        """Register ``content`` (hashed here with SHA-256); the new work id and the receipt."""
        args = provenance.RegisterWork(
            content_hash=hashlib.sha256(content).digest(),
            kind=provenance.WorkKind(kind),
            title=title,
            metadata_uri=metadata_uri,
            metadata_hash=metadata_hash,
            creators=tuple(provenance.Split(a, bps) for a, bps in
                           (creators or [(key.public, provenance.BPS)])),
            parents=tuple(provenance.ParentLink(w, lic) for w, lic in parents or []),
        )
        receipt = self.execute(key, args, until=until)
        return receipt.events_named("provenance", "WorkRegistered")[0]["workId"], receipt

    def offer_terms(self, key: Keypair, terms: licensing.OfferTerms, *,
                    until: str = "inBlock") -> tuple[int, Receipt]:
        receipt = self.execute(key, terms, until=until)
        return receipt.events_named("licensing", "TermsOffered")[0]["termsId"], receipt

    def acquire_license(self, key: Keypair, terms_id: int, *, until: str = "inBlock"
                        ) -> tuple[int, Receipt]:
        receipt = self.execute(key, licensing.AcquireLicense(terms_id), until=until)
        return receipt.events_named("licensing", "LicenseAcquired")[0]["licenseId"], receipt

    def pay_revenue(self, key: Keypair, work_id: int, amount: int, memo: str = "", *,
                    until: str = "inBlock") -> Receipt:
        return self.execute(key, royalties.PayRevenue(work_id, amount, memo), until=until)

    def record_usage(self, key: Keypair, license_id: int, purpose: str, subject: str,
                     units: int = 1, memo: str = "", *, until: str = "inBlock"
                     ) -> tuple[int, Receipt]:
        args = usage.RecordUsage(license_id, usage.Purpose(purpose), subject, units, memo)
        receipt = self.execute(key, args, until=until)
        return receipt.events_named("usage", "UsageRecorded")[0]["usageId"], receipt


# ---------------------------------------------------------------------------
# Offline proof verification


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
