"""Many calls in flight at once: pipelined transactions of one signer, parallel queries.

:class:`Pipeline` signs calls with consecutive nonces (from the account's ``nextNonce``,
which counts its transactions already in the pool), keeps up to ``window`` of them
submitted and not yet included, and yields each one's :class:`~client.rpc.Receipt` in
submission order. Blocks fill from the pool, so the calls land in as few blocks as their
weight allows instead of one block each.

A submission the pool refuses (``TransactionRefused``: e.g. the fees of the signer's
pooled transactions exceed its balance) stops the pipeline: the transactions already
submitted are waited for and yielded, then the refusal is raised. Nothing after it was
submitted, and its nonce is free again, so a later run carries on from the chain's state.

:func:`wait_until_settled` waits until none of an account's transactions is left in the
pool, so a run that follows an interrupted one sees every transaction of it on chain.

:func:`parallel_calls` maps a function of an :class:`~client.rpc.OpusClient` over many
items, ``threads`` at a time, each thread on a kept connection of its own;
:func:`ordered_map` maps any function over a stream of items, a few at a time, in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from client.errors import ClientError, RpcCallError, TransactionRefused
from client.rpc import OpusClient, Receipt
from runtime import codec, executive
from runtime.codec import Struct, hex0x
from runtime.crypto import Keypair
from runtime.extrinsic import DEFAULT_PERIOD, Era, Extrinsic, sign_extrinsic
from runtime.support import make_call

__all__ = ["DRY_RUN_CHUNK", "THREADS", "WINDOW", "DryRun", "Pipeline", "PoolNotSettled",
           "fee_of", "ordered_map", "parallel_calls", "wait_until_settled"]

WINDOW = 256  # transactions submitted and not yet included, at most (the pool holds 8,192)
SETTLE_TIMEOUT_S = 120.0
INCLUSION_TIMEOUT_S = 120.0  # for the oldest transaction in flight
POLL_S = 0.25
THREADS = 4  # parallel_calls' connections
DRY_RUN_CHUNK = 256  # calls one opus_dryRun applies (the node's limit)
BIRTH_EVERY = 64  # transactions signed with one birth block (their era: DEFAULT_PERIOD = 64)

In = TypeVar("In")
Out = TypeVar("Out")


class PoolNotSettled(ClientError):
    """The account still has transactions in the pool after the wait."""


class DryRun(NamedTuple):
    """What a call would do if submitted now (``opus_dryRun``'s answer for it)."""

    ok: bool  # valid, and its call succeeds
    error: str | None  # the named error: of validity (``CannotPayFee``) or of the call
    detail: str | None
    fee: int  # the fee it would pay (0 if it may not enter a block)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DryRun:
        ok = bool(data["valid"]) and bool(data["success"])
        return cls(ok, data.get("error"), data.get("detail"), int(data.get("fee") or 0))


def fee_of(ext: Extrinsic) -> int:
    """The most the chain charges for ``ext`` without its tip (the runtime's own formula:
    unused weight is refunded after the call)."""
    return executive.compute_fee(len(codec.encode(ext)), executive.call_weight(ext))


def wait_until_settled(client: OpusClient, address: str, *,
                       timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until ``address`` has no transaction left in the pool (its nonce is its next)."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.account_info(address)
        pending = int(info["nextNonce"]) - int(info["nonce"])
        if pending <= 0:
            return
        if time.monotonic() > deadline:
            raise PoolNotSettled(f"{pending} transaction(s) of {address} are still in the "
                                 f"node's pool after {timeout:.0f} s; try again later")
        time.sleep(POLL_S)


class Pipeline:
    """Sign and submit calls of ``key`` with consecutive nonces, ``window`` in flight."""

    def __init__(self, client: OpusClient, key: Keypair, *, window: int = WINDOW,
                 until: str = "inBlock", tip: int = 0,
                 timeout: float = INCLUSION_TIMEOUT_S) -> None:
        self.client = client
        self.key = key
        self.window = window
        self.until = until
        self.tip = tip
        self.timeout = timeout
        self.fees_paid = 0

    def sign(self, args: Struct, nonce: int, birth: tuple[int, bytes]) -> Extrinsic:
        """``args``' call signed with ``nonce``, mortal from the block ``birth``."""
        number, block_hash = birth
        return sign_extrinsic(self.key, make_call(args), nonce, self.client.genesis_hash(),
                              executive.SPEC_VERSION, tip=self.tip,
                              era=Era(number, DEFAULT_PERIOD), birth_hash=block_hash)

    def dry_run(self, calls: Sequence[Struct]) -> list[DryRun]:
        """Each call's outcome if the signer submitted them now, in order (``opus_dryRun``:
        at most :data:`DRY_RUN_CHUNK` calls weighing at most a block a request). The calls
        of a request are applied one after the other from the chain's best state, as one
        block would apply them (the balance they spend adds up); each request starts from
        that state again."""
        client = self.client
        nonce = int(client.account_info(self.key.address)["nonce"])
        birth = client.best_block()
        outcomes: list[DryRun] = []
        for chunk in _requests(calls):
            raws = [hex0x(codec.encode(self.sign(args, nonce + i, birth)))
                    for i, args in enumerate(chunk)]
            answer = client.call("opus_dryRun", raws)
            try:
                if not isinstance(answer, list) or len(answer) != len(raws):
                    raise TypeError("one outcome per extrinsic")
                outcomes.extend(DryRun.from_json(a) for a in answer)
            except (KeyError, TypeError, ValueError) as e:
                raise RpcCallError("opus_dryRun", 0, f"a malformed answer: {e}") from None
        return outcomes

    def run(self, calls: Iterable[Struct]) -> Iterator[Receipt]:
        """Each call's receipt, in order (a failed call's too: check ``success``)."""
        client = self.client
        nonce = int(client.account_info(self.key.address)["nextNonce"])
        flight: deque[bytes] = deque()
        birth = client.best_block()
        signed = 0  # since ``birth`` was read
        refused: TransactionRefused | None = None
        for args in calls:
            if len(flight) >= self.window:
                yield self._included(flight.popleft())
            if signed >= BIRTH_EVERY:  # a fresh mortality window for what follows
                birth, signed = client.best_block(), 0
            try:
                flight.append(client.submit(self.sign(args, nonce, birth)))
            except TransactionRefused as e:
                refused = e
                break
            nonce += 1
            signed += 1
        while flight:
            yield self._included(flight.popleft())
        if refused is not None:
            raise refused

    def _included(self, tx_hash: bytes) -> Receipt:
        receipt = self.client.wait(tx_hash, self.until, timeout=self.timeout)
        self.fees_paid += receipt.fee
        return receipt


def _requests(calls: Sequence[Struct]) -> Iterator[Sequence[Struct]]:
    """``calls`` in runs that one ``opus_dryRun`` takes: at most DRY_RUN_CHUNK calls whose
    weights (with each extrinsic's base weight) add up to at most a block's."""
    start = weight = 0
    for end, args in enumerate(calls):
        cost = executive.EXTRINSIC_BASE_WEIGHT + make_call(args).spec.weight(args)
        if end > start and (end - start >= DRY_RUN_CHUNK
                            or weight + cost > executive.MAX_BLOCK_WEIGHT):
            yield calls[start:end]
            start, weight = end, 0
        weight += cost
    if start < len(calls):
        yield calls[start:]


def parallel_calls(url: str, fn: Callable[[OpusClient, In], Out], items: Sequence[In], *,
                   threads: int = THREADS) -> list[Out]:
    """``[fn(client, item) for item in items]``, ``threads`` calls at a time (the first
    error is raised, in the items' order)."""
    local = threading.local()
    clients: list[OpusClient] = []
    lock = threading.Lock()

    def call(item: In) -> Out:
        client: OpusClient | None = getattr(local, "client", None)
        if client is None:
            client = local.client = OpusClient(url, keep_alive=True)
            with lock:
                clients.append(client)
        return fn(client, item)

    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="opus-calls") as pool:
            return list(pool.map(call, items))
    finally:
        for client in clients:
            client.close()


def ordered_map(fn: Callable[[In], Out], items: Iterable[In], *, in_flight: int,
                name: str) -> Iterator[Out]:
    """``fn`` of each item on ``in_flight`` threads (named ``name``), the results yielded
    in the items' order, with at most ``in_flight`` calls under way (the items are read
    lazily). Closing the iterator early (an error, Ctrl-C) drops the calls not started."""
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=name)
    pending: deque[Future[Out]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
