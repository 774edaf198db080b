"""The audit's lookups over JSON-RPC, pipelined.

:class:`RpcLookup` is a :data:`~client.audit.classify.Lookup` answered by the node's
``opus_getWorksByContentHashes`` at one fixed block. Each thread that calls it gets its own
:class:`~client.rpc.OpusClient` on a kept (HTTP keep-alive) connection.

:func:`audit_chunks` keeps :data:`IN_FLIGHT` chunks (one call each) in flight on a pool of
threads, so that the client reads and classifies while the node looks up, and yields the
report rows in the input's order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from client.audit.classify import AuditRow, Registered, audit_rows
from client.audit.inputs import Chunk
from client.errors import ClientError
from client.fingerprint import Fingerprint, find_near_duplicates
from client.pipeline import ordered_map
from client.rpc import OpusClient
from runtime.codec import hex0x

__all__ = ["IN_FLIGHT", "LookupAnswerError", "RpcLookup", "audit_chunks"]

IN_FLIGHT = 4  # calls in flight at once (each on a connection of its own)
LOOKUP_TIMEOUT_S = 120.0  # one call of up to 1024 hashes (the node answers in well under 1 s)


class LookupAnswerError(ClientError):
    """The node's answer to a lookup is not what was asked for."""


class RpcLookup:
    """``opus_getWorksByContentHashes`` at block ``at`` (for ``licensee``, if given)."""

    def __init__(self, url: str, at: bytes, licensee: str | None = None, *,
                 timeout: float = LOOKUP_TIMEOUT_S) -> None:
        self.url = url
        self.at = at
        self.licensee = licensee
        self.timeout = timeout
        self._local = threading.local()
        self._clients: list[OpusClient] = []
        self._lock = threading.Lock()

    def _client(self) -> OpusClient:
        client: OpusClient | None = getattr(self._local, "client", None)
        if client is None:
            client = OpusClient(self.url, timeout=self.timeout, keep_alive=True)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def __call__(self, hashes: Sequence[str]) -> list[Registered | None]:
        answer = self._client().works_by_content_hashes(
            ["0x" + h for h in hashes], at=self.at, licensee=self.licensee)
        works = answer.get("works")
        if answer.get("blockHash") != hex0x(self.at) or not isinstance(works, list) \
                or len(works) != len(hashes):
            raise LookupAnswerError("the node answered opus_getWorksByContentHashes for another "
                              "block or with another number of entries than asked")
        try:
            return [None if w is None else Registered.from_json(w) for w in works]
        except (KeyError, TypeError, ValueError) as e:
            raise LookupAnswerError(f"a malformed entry in the node's answer: {e!r}") from None

    def near_duplicates(self, fingerprints: list[Fingerprint], max_distance: int
                        ) -> list[dict[str, Any]]:
        """``opus_findSimilarWorks`` at block ``at``: the works within ``max_distance`` bits
        of any of an image's query ``fingerprints``, nearest first."""
        answer = find_near_duplicates(self._client(), fingerprints, max_distance, self.at)
        if answer.get("blockHash") != hex0x(self.at):
            raise LookupAnswerError("the node answered opus_findSimilarWorks for another block")
        works: list[dict[str, Any]] = answer["works"]
        return works

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


def audit_chunks(chunks: Iterable[Chunk], lookup: RpcLookup, *, in_flight: int = IN_FLIGHT,
                 then: Callable[[list[AuditRow]], list[AuditRow]] | None = None
                 ) -> Iterator[list[AuditRow]]:
    """The report rows of each chunk, in order, with ``in_flight`` lookups under way.

    ``then``, if given, is applied to each chunk's rows on the same worker thread (the
    near-duplicate lookups of :mod:`client.audit.near`). Closing the iterator early (an
    error, Ctrl-C) drops the calls still in flight.
    """
    def audit(chunk: Chunk) -> list[AuditRow]:
        audited = audit_rows(list(zip(chunk.items, chunk.hashes, strict=True)), lookup)
        return audited if then is None else then(audited)

    return ordered_map(audit, chunks, in_flight=in_flight, name="opus-audit")

