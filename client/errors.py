"""The errors of the client library: one line for people each, named by what went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.rpc import Receipt

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



__all__ = ["CallFailed", "ClientError", "NodeUnreachable", "ProofError", "RpcCallError",
           "TransactionDropped", "TransactionRefused", "WaitTimeout"]
