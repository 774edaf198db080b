"""``chain_*``: headers, blocks, block hashes and the head subscriptions.

Substrate's methods and answers (docs/rpc.md, "chain_*"); the British spellings
(``chain_getFinalisedHead``, …) are aliases, as in Substrate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from client.api import RpcError, header_to_json
from node.rpc import invalid_params
from node.rpc.protocol import MAX_PAGE, MethodTable, Notify, Session, p_hash, p_uint
from runtime import codec
from runtime.block import Block, Header
from runtime.codec import hex0x

if TYPE_CHECKING:
    from node.core import Broadcast

METHODS = MethodTable()


def block_to_json(block: Block) -> dict[str, Any]:
    """Substrate's ``SignedBlock``: ``{block: {header, extrinsics, seal}, justifications}``."""
    justifications = None
    if block.justification is not None:
        justifications = [["FRNK", hex0x(codec.encode(block.justification))]]
    return {
        "block": {
            "header": header_to_json(block.header),
            "extrinsics": [hex0x(raw) for raw in block.extrinsics],
            "seal": hex0x(block.seal),
        },
        "justifications": justifications,
    }


@METHODS.rpc()
async def chain_getHeader(s: Session, hash: Any = None) -> dict[str, Any] | None:  # noqa: A002
    """A block's header (default: the best block's); null for an unknown hash."""
    store = s.node.store
    header = store.best_header if hash is None else store.header(p_hash(hash))
    return None if header is None else header_to_json(header)


@METHODS.rpc()
async def chain_getBlock(s: Session, hash: Any = None) -> dict[str, Any] | None:  # noqa: A002
    """A block with its justification (default: the best block); null for an unknown hash."""
    store = s.node.store
    block = store.block(store.best_hash if hash is None else p_hash(hash))
    return None if block is None else block_to_json(block)


@METHODS.rpc()
async def chain_getBlockHash(s: Session, number: Any = None) -> Any:
    """The best chain's block hash at a number (default: the best block), or for each of a
    list of at most :data:`MAX_PAGE` numbers; null where the chain is shorter."""
    store = s.node.store
    if number is None:
        return hex0x(store.best_hash)
    if isinstance(number, list):
        if len(number) > MAX_PAGE:
            raise invalid_params(f"at most {MAX_PAGE} block numbers at once")
        found = [store.hash_at(p_uint(n, "number")) for n in number]
        return [None if h is None else hex0x(h) for h in found]
    block_hash = store.hash_at(p_uint(number, "number"))
    return None if block_hash is None else hex0x(block_hash)


@METHODS.rpc()
async def chain_getFinalizedHead(s: Session) -> str:
    """The hash of the last finalized block."""
    return hex0x(s.node.store.finalized_hash)


def _heads_subscription(s: Session, kind: str, notification: str, broadcast: Broadcast,
                        current: Callable[[], Header]) -> str:
    """A subscription sending ``current()`` at once, then every header ``broadcast`` sends."""
    s.require_subscriptions()
    receive = broadcast.subscribe()

    async def produce(notify: Notify) -> None:
        with receive:
            await notify(header_to_json(current()))
            async for header in receive:
                await notify(header_to_json(header))

    try:
        return s.subscribe(kind, notification, produce, cleanup=receive.close)
    except RpcError:
        receive.close()
        raise


@METHODS.rpc()
async def chain_subscribeNewHeads(s: Session) -> str:
    """WebSocket only: the best header now, then each new best header (``chain_newHead``)."""
    node = s.node
    return _heads_subscription(s, "newHeads", "chain_newHead", node.new_heads, lambda: node.best)


@METHODS.rpc()
async def chain_unsubscribeNewHeads(s: Session, subscription: Any) -> bool:
    """End a ``chain_subscribeNewHeads``; false if no such subscription."""
    return s.unsubscribe("newHeads", subscription)


@METHODS.rpc()
async def chain_subscribeFinalizedHeads(s: Session) -> str:
    """WebSocket only: the finalized header now, then each newly finalized one
    (``chain_finalizedHead``)."""
    node = s.node
    return _heads_subscription(s, "finalizedHeads", "chain_finalizedHead", node.finalized_heads,
                               lambda: node.finalized)


@METHODS.rpc()
async def chain_unsubscribeFinalizedHeads(s: Session, subscription: Any) -> bool:
    """End a ``chain_subscribeFinalizedHeads``; false if no such subscription."""
    return s.unsubscribe("finalizedHeads", subscription)


METHODS.alias("chain_getFinalisedHead", "chain_getFinalizedHead")
METHODS.alias("chain_subscribeFinalisedHeads", "chain_subscribeFinalizedHeads")
METHODS.alias("chain_unsubscribeFinalisedHeads", "chain_unsubscribeFinalizedHeads")
