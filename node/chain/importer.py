"""Block verification on two cores: signatures in a worker process, execution here.

Checking an ed25519 signature costs about as much as executing a typical
extrinsic, so a node that imports a large block sends the block's signature
checks to a worker process and executes the block at the same time (with
``signatures_checked=True``). The block is accepted only if every signature
verifies too; nothing is committed before that.
"""

from __future__ import annotations

import concurrent.futures
import gc
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.block import Block, Header
from runtime.crypto import verify
from runtime.execution import (
    BlockError,
    ExecutedBlock,
    InvalidExtrinsicInBlock,
    apply_body,
    check_block,
    commit_state_root,
    decode_body,
    extrinsics_root,
    require_extrinsics_root,
    signature_checks,
)
from runtime.state import StateReader
from runtime.trie import NodeStore

# Below this many extrinsics the round trip to the worker costs more than it saves.
PARALLEL_MIN_EXTRINSICS = 32
# Thresholds of the cyclic garbage collector's generations once a node runs (default
# 700, 10, 10): a block's import allocates a few hundred thousand short-lived containers.
GC_THRESHOLDS = (100_000, 50, 100)


def settle_for_import() -> None:
    """Tune the garbage collector for a long-running importer; call once after start-up.

    Everything alive at this point (the genesis spec and state, module tables,
    the store) lives as long as the process, so it is frozen out of the cyclic
    collector: otherwise every full collection walks it again (with a genesis
    of 100,000 works, several hundred thousand objects). Importing a block
    allocates a burst of short-lived containers (decoded extrinsics, events,
    trie nodes), almost all freed by reference counting; larger thresholds
    keep the collector from walking (and promoting) them every 700
    allocations. Memory freed by reference counting is unaffected; only
    garbage in reference cycles waits a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


Check = tuple[bytes, bytes, bytes]  # (signer, message, signature)


def first_invalid_signature(checks: Sequence[Check]) -> int:
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

    def submit(self, checks: Sequence[Check]) -> concurrent.futures.Future[int]:
        return self._pool.submit(first_invalid_signature, list(checks))

    def submit_extrinsics_root(self, raws: Sequence[bytes]) -> concurrent.futures.Future[bytes]:
        """Compute the extrinsics root of a block body (encoded extrinsics) on a worker."""
        return self._pool.submit(extrinsics_root, list(raws))

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first large block."""
        for future in [self.submit([]) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class PhaseTimes:
    """Seconds spent per import phase (accumulated over blocks; for the benchmark and metrics)."""

    checks: float = 0.0  # header, seal, extrinsics root, decoding, preparing signature checks
    execution: float = 0.0  # applying the extrinsics
    signatures: float = 0.0  # verifying signatures not hidden behind execution
    state_root: float = 0.0  # the trie update and root comparison


def verify_and_execute(
    state: StateReader,
    nodes: NodeStore,
    parent: Header,
    block: Block,
    genesis_hash: bytes,
    workers: SignatureWorkers | None,
    times: PhaseTimes | None = None,
) -> ExecutedBlock:
    """``execute_block`` with the signatures checked in parallel on ``workers``.

    Raises the same named BlockErrors as ``execute_block``; a bad signature is
    ``InvalidExtrinsicInBlock`` naming the extrinsic.
    """
    times = times if times is not None else PhaseTimes()
    started = time.perf_counter()
    parallel = workers is not None and len(block.extrinsics) >= PARALLEL_MIN_EXTRINSICS
    root: concurrent.futures.Future[bytes] | None = None
    if parallel:
        assert workers is not None
        # The extrinsics root (a trie over the whole body) is computed on a worker as
        # well; a mismatch is reported ahead of any error found meanwhile, exactly as
        # if it had been checked first.
        check_block(state, parent, block, extrinsics_root_checked=True)
        root = workers.submit_extrinsics_root(block.extrinsics)
    else:
        check_block(state, parent, block)
    try:
        extrinsics = decode_body(block)
        futures: list[concurrent.futures.Future[int]] = []
        chunks: list[list[Check]] = []
        if parallel:
            assert workers is not None
            checks = signature_checks(state, parent, extrinsics, genesis_hash)
            chunks = _split([(c.signer, c.message, c.signature) for c in checks],
                            workers.workers)
            futures = [workers.submit(chunk) for chunk in chunks]
        checked = time.perf_counter()
        times.checks += checked - started
        try:
            body = apply_body(state, block, extrinsics, genesis_hash,
                              signatures_checked=parallel)
        except BaseException:
            for future in futures:
                future.result()  # (the verdicts are checked below, first)
            raise
        finally:
            executed_at = time.perf_counter()
            times.execution += executed_at - checked
        # The state root does not depend on the signatures: update the trie while the
        # worker finishes them, and only then give the verdicts, in the order of
        # execute_block (extrinsics root, signatures, state root).
        state_error: BlockError | None = None
        try:
            executed = commit_state_root(nodes, parent, block, body, state)
        except BlockError as e:  # BadStateRoot
            state_error = e
        rooted_at = time.perf_counter()
        times.state_root += rooted_at - executed_at
        results = [f.result() for f in futures]
        times.signatures += time.perf_counter() - rooted_at
        if root is not None:
            require_extrinsics_root(block, root.result())
            root = None
        offset = 0
        for chunk, bad in zip(chunks, results, strict=True):
            if bad >= 0:
                raise InvalidExtrinsicInBlock(f"extrinsic {offset + bad}: InvalidSignature")
            offset += len(chunk)
        if state_error is not None:
            raise state_error
    except BlockError:
        if root is not None:  # a body that is not the header's comes first
            require_extrinsics_root(block, root.result())
        raise
    return executed


def _split(items: list[Check], parts: int) -> list[list[Check]]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
