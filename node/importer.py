"""Block verification on two cores: signatures in a worker process, execution here.

Checking an ed25519 signature costs about as much as executing a typical
extrinsic, so a node that imports a large block sends the block's signature
checks to a worker process and executes the block at the same time (with
``signatures_checked=True``). The block is accepted only if every signature
verifies too; nothing is committed before that.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Sequence

from runtime.block import Block, Header
from runtime.crypto import verify
from runtime.execution import (
    ExecutedBlock,
    InvalidExtrinsicInBlock,
    decode_body,
    execute_block,
    signature_checks,
)
from runtime.state import StateReader
from runtime.trie import NodeStore

# Below this many extrinsics the round trip to the worker costs more than it saves.
PARALLEL_MIN_EXTRINSICS = 32


def first_invalid_signature(checks: Sequence[tuple[bytes, bytes, bytes]]) -> int:
    """Index of the first (signer, message, signature) that does not verify, or -1."""
    for index, (signer, message, signature) in enumerate(checks):
        if not verify(signer, message, signature):
            return index
    return -1


class SignatureWorkers:
    """A pool of worker processes that verify signature batches (one per spare core)."""

    def __init__(self, workers: int | None = None) -> None:
        count = workers if workers is not None else max(1, (os.cpu_count() or 2) - 1)
        # "spawn": a fresh interpreter, safe whatever threads the node runs.
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=count, mp_context=multiprocessing.get_context("spawn")
        )
        self.workers = count

    def submit(self, checks: Sequence[tuple[bytes, bytes, bytes]]) -> concurrent.futures.Future[int]:
        return self._pool.submit(first_invalid_signature, list(checks))

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first large block."""
        for future in [self.submit([]) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def verify_and_execute(
    state: StateReader,
    nodes: NodeStore,
    parent: Header,
    block: Block,
    genesis_hash: bytes,
    workers: SignatureWorkers | None,
) -> ExecutedBlock:
    """``execute_block`` with the signatures checked in parallel on ``workers``.

    Raises the same named BlockErrors as ``execute_block``; a bad signature is
    ``InvalidExtrinsicInBlock`` naming the extrinsic.
    """
    if workers is None or len(block.extrinsics) < PARALLEL_MIN_EXTRINSICS:
        return execute_block(state, nodes, parent, block, genesis_hash)
    extrinsics = decode_body(block)
    checks = signature_checks(state, parent, extrinsics, genesis_hash)
    chunks = _split([(c.signer, c.message, c.signature) for c in checks], workers.workers)
    futures = [workers.submit(chunk) for chunk in chunks]
    try:
        executed = execute_block(state, nodes, parent, block, genesis_hash,
                                 signatures_checked=True, decoded=extrinsics)
    finally:
        results = [f.result() for f in futures]
    offset = 0
    for chunk, bad in zip(chunks, results, strict=True):
        if bad >= 0:
            raise InvalidExtrinsicInBlock(f"extrinsic {offset + bad}: InvalidSignature")
        offset += len(chunk)
    return executed


def _split(items: list[tuple[bytes, bytes, bytes]], parts: int) -> list[list[tuple[bytes, bytes, bytes]]]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
