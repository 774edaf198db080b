"""The node's JSON-RPC 2.0 server: its error answers and limits.

* :mod:`node.rpc.protocol` is JSON-RPC 2.0 itself (requests, batches, sessions,
  subscriptions, limits) and the registration of methods;
* :mod:`node.rpc.methods` holds the methods, one module per namespace;
* :mod:`node.rpc.server` serves them over HTTP and WebSocket on one port
  (Starlette on Hypercorn's trio worker).

The error codes and the JSON shapes of chain values are the API's, shared with the
client library: :mod:`client.api`.
"""

from __future__ import annotations

from client.api import (
    INVALID_PARAMS,
    OVERSIZED_REQUEST,
    OVERSIZED_RESPONSE,
    RATE_LIMIT_EXCEEDED,
    SERVER_IS_BUSY,
    TOO_BIG_BATCH_REQUEST,
    TOO_BIG_BATCH_RESPONSE,
    RpcError,
)

# ---------------------------------------------------------------------------
# Error answers

def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}")


def _exceeded(limit: int) -> str:
    return f"Exceeded max limit of {limit}"


def request_too_big(limit: int) -> RpcError:
    """An HTTP body or WebSocket message over ``limit`` bytes."""
    return RpcError(OVERSIZED_REQUEST, "Request is too big", _exceeded(limit))


def response_too_big(limit: int) -> RpcError:
    """One answer over ``limit`` bytes."""
    return RpcError(OVERSIZED_RESPONSE, "Response is too big", _exceeded(limit))


def batch_too_long(limit: int) -> RpcError:
    """A batch of more than ``limit`` requests."""
    return RpcError(TOO_BIG_BATCH_REQUEST, "The batch request was too large", _exceeded(limit))


def batch_response_too_big(limit: int) -> RpcError:
    """A batch whose answers add up to more than ``limit`` bytes."""
    return RpcError(TOO_BIG_BATCH_RESPONSE, "The batch response was too large", _exceeded(limit))


def server_busy(data: str) -> RpcError:
    """A connection over the server's connection limit."""
    return RpcError(SERVER_IS_BUSY, "Server is busy, try again later", data)


def rate_limited() -> RpcError:
    """A call over the connection's ``--rpc-rate-limit``."""
    return RpcError(RATE_LIMIT_EXCEEDED, "RPC rate limit exceeded")


# ---------------------------------------------------------------------------
# Limits: the defaults of the --rpc-* flags (docs/rpc.md, "Limits")

MIB = 1024 * 1024  # Substrate's "MB" in --rpc-max-request-size and --rpc-max-response-size
# Substrate's default is 15 MB; ours is 1 MB: the largest request a client needs (a batch of
# 1024 transfers, ~0.4 MB; one extrinsic, at most 128 KiB of hex) fits, and Python's parser
# turns a body into objects 20-60 times its size, so 15 MB on each of 100 connections could
# take gigabytes.
DEFAULT_MAX_REQUEST_MB = 1
DEFAULT_MAX_RESPONSE_MB = 10
DEFAULT_MAX_BATCH_LEN = 1024
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_MAX_SUBSCRIPTIONS = 1024
DEFAULT_REQUEST_TIMEOUT_S = 30.0


__all__ = [
    "DEFAULT_MAX_BATCH_LEN",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_REQUEST_MB",
    "DEFAULT_MAX_RESPONSE_MB",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "MIB",
    "batch_response_too_big",
    "batch_too_long",
    "invalid_params",
    "rate_limited",
    "request_too_big",
    "response_too_big",
    "server_busy",
]
