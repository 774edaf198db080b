"""The informant: one status line every few seconds, as Substrate's node prints it."""

from __future__ import annotations

import logging

import trio

from node.core import NodeCore
from node.logs import short_hash

log = logging.getLogger("opus")

INFORMANT_INTERVAL_S = 5.0


async def informant(core: NodeCore) -> None:
    """Log the sync state, peers, best and finalized blocks every ``INFORMANT_INTERVAL_S``."""
    while True:
        await trio.sleep(INFORMANT_INTERVAL_S)
        best, finalized = core.best, core.finalized
        state = "⚙️ Syncing" if core.is_syncing() else "💤 Idle"
        log.info("%s (%d peers), best: #%d (%s), finalized #%d (%s)", state,
                 core.peer_count(), best.number, short_hash(best.hash), finalized.number,
                 short_hash(finalized.hash))


__all__ = ["INFORMANT_INTERVAL_S", "informant"]
