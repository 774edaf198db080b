# ruff: noqa: E402  (sys.path is set up before importing the project)
"""Shared fixtures: a tiny in-memory chain driven through the executive."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

# The project is not installed into the venv: make `runtime` (etc.) importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from runtime import codec, executive
from runtime.codec import Struct
from runtime.crypto import Keypair, blake2_256, dev_keypair
from runtime.extrinsic import IMMORTAL, Era, Extrinsic, sign_extrinsic
from runtime.modules import balances, system
from runtime.state import MemoryState, Overlay
from runtime.support import BlockInfo, Env, EventRecord, make_call

GENESIS_HASH = blake2_256(b"opus-test-genesis")
BLOCK_TIME_MS = 6_000


class Chain:
    """Genesis built by hand, then blocks applied with initialize_block/apply_extrinsic."""

    def __init__(
        self,
        endowed: dict[bytes, int],
        *,
        genesis_hash: bytes = GENESIS_HASH,
        author: Keypair | None = None,
        setup: Callable[[Overlay], None] | None = None,
    ) -> None:
        self.state = MemoryState()
        overlay = Overlay(self.state)
        for who, amount in endowed.items():
            system.put_account(overlay, who, system.AccountInfo(0, amount))
        balances.total_issuance.put(overlay, sum(endowed.values()))
        if setup is not None:
            setup(overlay)
        self.state.apply(overlay.changes)
        self.genesis_hash = genesis_hash
        self.author = (author or dev_keypair("ferdie")).public
        self.number = 0
        self.hashes = {0: genesis_hash}

    @property
    def head_hash(self) -> bytes:
        return self.hashes[self.number]

    def open_block(self, author: bytes | None = None) -> Env:
        number = self.number + 1
        info = BlockInfo(number, number * BLOCK_TIME_MS, author or self.author, self.head_hash)
        return executive.initialize_block(Overlay(self.state), info)

    def apply(self, env: Env, ext: Extrinsic, index: int = 0) -> executive.ApplyOutcome:
        length = len(codec.encode(ext))
        return executive.apply_extrinsic(env, ext, length, index, self.genesis_hash)

    def close_block(self, env: Env) -> None:
        executive.finalize_block(env)
        self.state.apply(env.state.changes)
        self.number = env.block.number
        self.hashes[self.number] = blake2_256(b"block" + self.number.to_bytes(8, "big"))

    def build_block(
        self, exts: Iterable[Extrinsic], author: bytes | None = None
    ) -> tuple[list[executive.ApplyOutcome | executive.InvalidTransaction], list[EventRecord]]:
        """Apply each extrinsic (invalid ones are skipped, like an author would) and commit."""
        env = self.open_block(author)
        results: list[executive.ApplyOutcome | executive.InvalidTransaction] = []
        index = 0
        for ext in exts:
            try:
                results.append(self.apply(env, ext, index))
                index += 1
            except executive.InvalidTransaction as e:
                results.append(e)
        self.close_block(env)
        return results, env.events

    def sign(
        self,
        key: Keypair,
        args: Struct,
        nonce: int | None = None,
        *,
        tip: int = 0,
        era: Era = IMMORTAL,
        birth_hash: bytes | None = None,
        genesis_hash: bytes | None = None,
        spec_version: int = executive.SPEC_VERSION,
    ) -> Extrinsic:
        if nonce is None:
            nonce = self.nonce(key.public)
        if not era.immortal and birth_hash is None:
            birth_hash = self.hashes[era.birth]
        return sign_extrinsic(
            key, make_call(args), nonce, genesis_hash or self.genesis_hash, spec_version,
            tip=tip, era=era, birth_hash=birth_hash,
        )

    def account(self, who: bytes) -> system.AccountInfo:
        return system.account_info(self.state, who)

    def free(self, who: bytes) -> int:
        return self.account(who).free

    def nonce(self, who: bytes) -> int:
        return self.account(who).nonce

    def balances_sum(self) -> int:
        total = 0
        for _, raw in self.state.iter_prefix(system.account.prefix):
            total += codec.decode(raw, system.AccountInfo).free
        return total


@pytest.fixture(scope="session")
def new_chain() -> Callable[..., Chain]:
    """Factory for a fresh :class:`Chain` (session-scoped so hypothesis tests may use it)."""

    def factory(*args: Any, **kwargs: Any) -> Chain:
        return Chain(*args, **kwargs)

    return factory
