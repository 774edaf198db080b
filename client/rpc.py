"""A small client for an Opus Chain node's JSON-RPC.

Synchronous, standard library only (``urllib``), so scripts and the ``opus``
creator commands can use it without an event loop::

    from client import OpusClient, verify_provenance_proof
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

Errors are :class:`client.errors.ClientError` subclasses with one-line messages:
:class:`NodeUnreachable`, :class:`RpcCallError` (an error answer; a refused
transaction is a :class:`TransactionRefused` whose ``reason`` is e.g.
``StaleNonce``), :class:`TransactionDropped`, :class:`WaitTimeout`,
:class:`CallFailed` (included, but the call failed: ``error`` is e.g.
``usage.PurposeNotAllowed``) and :class:`ProofError`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from client.api import header_from_json
from client.errors import (
    CallFailed,
    ClientError,
    NodeUnreachable,
    RpcCallError,
    TransactionDropped,
    TransactionRefused,
    WaitTimeout,
)
from runtime import codec, executive
from runtime.block import Header
from runtime.codec import Struct, from_hex0x, hex0x
from runtime.crypto import Keypair
from runtime.extrinsic import DEFAULT_PERIOD, IMMORTAL, Era, Extrinsic, sign_extrinsic
from runtime.modules import licensing, provenance, royalties, usage
from runtime.support import make_call

DEFAULT_RPC = "http://127.0.0.1:9944"
POLL_INTERVAL_S = 0.25

__all__ = ["DEFAULT_RPC", "OpusClient", "Receipt"]


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
    """JSON-RPC over HTTP to one node.

    With ``keep_alive`` the calls share one persistent HTTP/1.1 connection (made at the
    first call, made again if the node closed it while idle): for many calls in a row,
    such as a dataset audit's lookups. Such a client is for one thread at a time.
    """

    def __init__(self, url: str = DEFAULT_RPC, *, timeout: float = 30.0,
                 keep_alive: bool = False) -> None:
        if url.startswith("ws://"):
            url = "http://" + url[5:]
        elif url.startswith("wss://"):
            url = "https://" + url[6:]
        self.url = url
        self.timeout = timeout
        self.keep_alive = keep_alive
        self._connection: http.client.HTTPConnection | None = None
        self._path = "/"
        self._next_id = 0
        self._genesis: bytes | None = None

    # ------------------------------------------------------------------ transport

    def _maybe(self, method: str, *params: Any) -> dict[str, Any] | None:
        result = self.call(method, *params)
        return None if result is None else dict(result)

    def _unreachable(self, reason: object) -> NodeUnreachable:
        return NodeUnreachable(f"cannot reach the node at {self.url}: {reason} "
                               f"(is it running? see --rpc)")

    def _post(self, method: str, body: bytes) -> bytes:
        """POST ``body`` on a new connection; the answer's body."""
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw: bytes = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            if not raw.startswith(b"{"):
                raise ClientError(f"{method}: the node answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(getattr(e, "reason", e)) from None
        return raw

    def _post_kept(self, method: str, body: bytes) -> bytes:
        """POST ``body`` on the kept connection; the answer's body."""
        reused = self._connection is not None
        try:
            return self._exchange(method, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
            self.close()
            if not reused:
                raise self._unreachable(e) from None
        # The node closed the kept connection while it was idle (--rpc-request-timeout):
        # the call is sent again on a new one.
        try:
            return self._exchange(method, body)
        except (http.client.HTTPException, OSError) as e:
            self.close()
            raise self._unreachable(e) from None

    def _exchange(self, method: str, body: bytes) -> bytes:
        """One request and its answer on the kept connection (made if there is none)."""
        if self._connection is None:
            self._connection = self._connect()
        try:
            self._connection.request("POST", self._path, body,
                                     {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            raw = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise
        except (http.client.HTTPException, OSError) as e:
            self.close()
            raise self._unreachable(e) from None
        if response.will_close:
            self.close()
        if response.status != 200 and not raw.startswith(b"{"):
            raise ClientError(f"{method}: the node answered HTTP {response.status} "
                              f"{response.reason}")
        return raw

    def _connect(self) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"not an http(s) URL: {self.url!r}")
        self._path = parts.path or "/"
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)

    def close(self) -> None:
        """Close the kept connection, if any (a later call opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` with positional ``params``; its result, or an RpcCallError."""
        self._next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                           "params": list(params)}).encode()
        raw = self._post_kept(method, body) if self.keep_alive else self._post(method, body)
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

    def works_by_content_hashes(self, content_hashes: Sequence[str], *, at: bytes | None = None,
                                licensee: str | None = None) -> dict[str, Any]:
        """``opus_getWorksByContentHashes``: ``{blockHash, blockNumber, works}``, one entry
        (or None) per ``0x``-hex content hash, at block ``at`` (default: the best)."""
        options: dict[str, Any] = {}
        if at is not None:
            options["at"] = hex0x(at)
        if licensee is not None:
            options["licensee"] = licensee
        return dict(self.call("opus_getWorksByContentHashes", list(content_hashes), options))

    def export_registry(self, *, at: bytes | None = None, start: int = 1,
                        limit: int | None = None, licensee: str | None = None
                        ) -> dict[str, Any]:
        """``opus_exportRegistry``: a page of the works as of block ``at`` (default: the
        best), from work id ``start``: ``{blockHash, blockNumber, genesisHash, total, works,
        next}``."""
        query: dict[str, Any] = {"start": start}
        if at is not None:
            query["at"] = hex0x(at)
        if limit is not None:
            query["limit"] = limit
        if licensee is not None:
            query["licensee"] = licensee
        return dict(self.call("opus_exportRegistry", query))

    def find_similar_works(self, fingerprint: bytes, max_distance: int, *,
                           at: bytes | None = None) -> dict[str, Any]:
        """``opus_findSimilarWorks``: ``{blockHash, blockNumber, works, candidates}``, the
        works whose PDQ fingerprint is within ``max_distance`` bits, nearest first."""
        params: list[Any] = [hex0x(fingerprint), max_distance]
        if at is not None:
            params.append(hex0x(at))
        return dict(self.call("opus_findSimilarWorks", *params))

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

    def read_proof(self, keys: list[bytes], block_hash: bytes | None = None
                   ) -> dict[str, Any]:
        """``state_getReadProof``: ``{at, proof}``, the trie nodes that prove each key's value
        or absence at a block (default: the best block)."""
        extra = [hex0x(block_hash)] if block_hash is not None else []
        return dict(self.call("state_getReadProof", [hex0x(k) for k in keys], *extra))

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


