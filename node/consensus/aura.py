"""Aura authoring: in each slot it owns, a validator builds, seals and commits a block.

Slot ``= timestamp / slot duration``; its owner is ``authorities[slot mod n]``
(:func:`runtime.execution.slot_owner`). The author builds from the pool's ready queue
on a worker thread while the event loop stays free, stops adding extrinsics after
``BUILD_SHARE_OF_SLOT`` of the slot so the block can travel and be imported within it,
commits it through the core and hands it to the network.

The author holds no key: at each slot it asks the keystore for the ``aura`` key of the
slot's owner (:class:`node.consensus.keys.SigningKeys`), so it authors with whichever of
its keys is in the authority set, and with a key inserted while it runs from the next slot
that key owns.
"""

from __future__ import annotations

import logging
import time

import trio

from node.consensus.keys import KeySource, SigningKeys
from node.core import NodeCore
from node.keystore import AURA
from node.logs import short_hash
from runtime.block import Block
from runtime.execution import build_block, slot_owner
from runtime.modules import validators

log = logging.getLogger("opus.author")

BUILD_SHARE_OF_SLOT = 0.4  # stop adding extrinsics after this share of the slot


class AuraAuthor:
    """Authors the blocks of the slots owned by a key of ``keys`` on ``core``'s chain."""

    def __init__(self, core: NodeCore, keys: KeySource) -> None:
        self.core = core
        self.keys = SigningKeys(keys, AURA, "authoring")

    async def run(self) -> None:
        """At every slot boundary, author if the slot is ours; runs until cancelled."""
        core = self.core
        while True:
            duration = core.slot_duration
            now = core.now_ms()
            await trio.sleep(((now // duration + 1) * duration - now) / 1000)
            await self.author_in_slot(core.now_ms() // duration)

    async def author_in_slot(self, slot: int) -> Block | None:
        """Author a block for ``slot`` if one of our keys owns it; the block if one was made."""
        core = self.core
        async with core.import_lock:
            best = core.best
            state = core.store.best_state()
            duration = validators.slot_duration.get(state)
            if slot <= best.slot:
                return None
            key = await self.keys.find((slot_owner(state, slot),))
            if key is None:
                return None
            deadline = time.monotonic() + duration * BUILD_SHARE_OF_SLOT / 1000
            started = time.perf_counter()
            candidates = core.pool.ready()  # read the pool here, not on the worker thread
            built = await trio.to_thread.run_sync(
                lambda: build_block(
                    state, core.store.node_store, best, candidates,
                    timestamp=slot * duration, author=key, genesis_hash=core.genesis.hash,
                    should_stop=lambda: time.monotonic() > deadline,
                )
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            if built.invalid:
                core.forget_invalid(built.invalid)
            block = built.block
            log.info(
                "🎁 Prepared block for proposing at %d (%d ms) [hash: %s; parent_hash: %s; "
                "extrinsics (%d)]", block.number, elapsed_ms, short_hash(block.hash),
                short_hash(best.hash), len(block.extrinsics),
            )
            if core.metrics is not None:
                core.metrics.block_authored(elapsed_ms / 1000)
            core.commit_authored(built, elapsed_ms / 1000)
        for hook in core.on_block_authored:
            await hook(core.store.block(block.hash) or block)
        return block


__all__ = ["BUILD_SHARE_OF_SLOT", "AuraAuthor"]
