"""The informant: one status line every few seconds, as Substrate's node prints it, and the
hints an operator needs from it.

* Each line ends with ``⚠️ finality lag N blocks`` when the best block is more than
  :data:`FINALITY_LAG_WARNING_BLOCKS` above the finalized one (and the node is not major
  syncing): finality has stalled, most likely because fewer than two thirds of the
  authorities are voting. ``opus testnet status`` flags the same lag.
* A node of a ``Local`` or ``Live`` chain that has neither boot nodes nor peers
  :data:`NO_PEERS_HINT_AFTER_S` seconds after it started says so once, with the flag to
  use: on such a chain it will never find another node by itself.
"""

from __future__ import annotations

import logging

import trio

from node.core import NodeCore
from node.logs import short_hash

log = logging.getLogger("opus")

INFORMANT_INTERVAL_S = 5.0
# Best − finalized above this is a stalled finality. In a healthy network the gadget
# finalizes within a slot or two (docs/performance.md); eight slots without finality
# means votes are missing, not slow.
FINALITY_LAG_WARNING_BLOCKS = 8
NO_PEERS_HINT_AFTER_S = 10.0
NETWORKED_CHAIN_TYPES = ("Local", "Live")


def finality_lag_note(best: int, finalized: int) -> str:
    """``"⚠️ finality lag N blocks"`` if ``best − finalized`` shows a stalled finality,
    else ``""``."""
    lag = best - finalized
    return f"⚠️ finality lag {lag} blocks" if lag > FINALITY_LAG_WARNING_BLOCKS else ""


async def informant(core: NodeCore) -> None:
    """Log the sync state, peers, best and finalized blocks every ``INFORMANT_INTERVAL_S``
    (and, once, the no-peers hint)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_no_peers_hint, core)
        while True:
            await trio.sleep(INFORMANT_INTERVAL_S)
            best, finalized = core.best, core.finalized
            syncing = core.is_syncing()
            state = "⚙️ Syncing" if syncing else "💤 Idle"
            note = "" if syncing else finality_lag_note(best.number, finalized.number)
            log.info("%s (%d peers), best: #%d (%s), finalized #%d (%s)%s", state,
                     core.peer_count(), best.number, short_hash(best.hash), finalized.number,
                     short_hash(finalized.hash), f", {note}" if note else "")


def needs_boot_nodes(core: NodeCore) -> bool:
    """A networked node of a Local or Live chain with no boot node and no peer."""
    config = core.config
    return (config.network and core.genesis.spec.chain_type in NETWORKED_CHAIN_TYPES
            and not config.bootnodes and core.peer_count() == 0)


async def _no_peers_hint(core: NodeCore) -> None:
    await trio.sleep(NO_PEERS_HINT_AFTER_S)
    if needs_boot_nodes(core):
        log.warning("💤 No peers and no boot nodes: start with --bootnodes "
                    "/ip4/…/tcp/…/p2p/… (another node's address, as its \"Listening for new "
                    "connections on\" log line shows), or list them in the chain spec's "
                    "bootNodes")


__all__ = ["FINALITY_LAG_WARNING_BLOCKS", "INFORMANT_INTERVAL_S", "NO_PEERS_HINT_AFTER_S",
           "finality_lag_note", "informant", "needs_boot_nodes"]
