"""``state_*`` and ``payment_*``: raw storage, read proofs, the runtime version, fees.

Substrate's methods and answers (docs/rpc.md, "state_*, payment_*"). A ``block`` param is
a block hash; left out, it is the best block.
"""

from __future__ import annotations

from typing import Any

import trio

from node.rpc import invalid_params
from node.rpc.protocol import MethodTable, Session, p_block, p_bytes, p_extrinsic
from runtime import codec, executive
from runtime.codec import hex0x
from runtime.extrinsic import decode_extrinsic

METHODS = MethodTable()

MAX_READ_PROOF_KEYS = 1024  # keys one state_getReadProof may ask for


@METHODS.rpc()
async def state_getStorage(s: Session, key: Any, block: Any = None) -> str | None:
    """The raw value under a state key at a block; null if there is none."""
    raw_key = p_bytes(key, "key")
    value = s.node.store.state_at(p_block(s, block)).get(raw_key)
    return None if value is None else hex0x(value)


@METHODS.rpc()
async def state_getReadProof(s: Session, keys: Any, block: Any = None) -> dict[str, Any]:
    """The trie nodes proving the values (or absence) of ``keys`` against a block's state root."""
    if not isinstance(keys, list) or len(keys) > MAX_READ_PROOF_KEYS:
        raise invalid_params(f"keys must be an array of at most {MAX_READ_PROOF_KEYS} 0x-hex keys")
    raw_keys = [p_bytes(k, "keys") for k in keys]
    block_hash = p_block(s, block)
    proof = await trio.to_thread.run_sync(s.node.store.prove, raw_keys, block_hash)
    return {"at": hex0x(block_hash), "proof": [hex0x(n) for n in proof]}


@METHODS.rpc()
async def state_getRuntimeVersion(s: Session, block: Any = None) -> dict[str, Any]:
    """The runtime's names and versions (the same at every block: no runtime upgrades)."""
    if block is not None:
        p_block(s, block)
    v = executive.RUNTIME_VERSION
    return {"specName": v.spec_name, "implName": v.impl_name, "specVersion": v.spec_version,
            "transactionVersion": v.transaction_version, "apis": []}


@METHODS.rpc()
async def payment_queryInfo(s: Session, extrinsic: Any, block: Any = None) -> dict[str, Any]:
    """The weight and the fee (before tip) a signed extrinsic would pay."""
    raw = p_extrinsic(extrinsic)
    if block is not None:
        p_block(s, block)
    try:
        ext = decode_extrinsic(raw)
    except codec.DecodeError as e:
        raise invalid_params(f"extrinsic does not decode: {type(e).__name__}: {e}") from None
    weight = executive.call_weight(ext)
    return {"weight": weight, "class": "normal",
            "partialFee": str(executive.compute_fee(len(raw), weight))}
