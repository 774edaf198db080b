"""Build the genesis state, header and hash from a chain spec."""

from __future__ import annotations

from dataclasses import dataclass

from genesis.spec import ChainSpec, ChainSpecError
from runtime.block import ZERO_HASH, Header
from runtime.modules import balances, system, validators
from runtime.state import MemoryState, Overlay
from runtime.trie import EMPTY_ROOT, compute_root


@dataclass(frozen=True)
class Genesis:
    spec: ChainSpec
    state: dict[bytes, bytes]
    header: Header

    @property
    def hash(self) -> bytes:
        return self.header.hash


def genesis_state(spec: ChainSpec) -> dict[bytes, bytes]:
    """The key/value state a chain starts from."""
    if spec.raw is not None:
        return dict(spec.raw)
    state = Overlay(MemoryState())
    issuance = 0
    seen: dict[bytes, int] = {}
    for account, amount in spec.balances:
        if account in seen:
            raise ChainSpecError("chain spec: an account appears twice in genesis.balances")
        seen[account] = amount
        issuance += amount
        system.put_account(state, account, system.AccountInfo(0, amount))
    if issuance > balances.MAX_BALANCE:
        raise ChainSpecError("chain spec: genesis balances add up to more than 2^128 - 1")
    balances.total_issuance.put(state, issuance)
    if not spec.authorities:
        raise ChainSpecError("chain spec: genesis.authorities must not be empty")
    if len(dict.fromkeys(spec.authorities)) != len(spec.authorities):
        raise ChainSpecError("chain spec: an authority appears twice")
    validators.authorities.put(state, spec.authorities)
    if spec.sudo is not None:
        validators.sudo.put(state, spec.sudo)
    validators.slot_duration.put(state, spec.slot_duration_ms)
    _register_genesis_works(state, spec)
    return {k: v for k, v in state.changes.items() if v is not None}


def _register_genesis_works(state: Overlay, spec: ChainSpec) -> None:
    if not spec.works:
        return
    from runtime.modules import provenance

    for work in spec.works:
        try:
            provenance.insert_genesis_work(state, work.owner, work.content_hash, work.kind,
                                           work.title, work.metadata_uri, work.creators)
        except (ValueError, provenance.Error) as e:
            raise ChainSpecError(f"chain spec: genesis work {work.title!r}: {e}") from None


def genesis_header(state: dict[bytes, bytes]) -> Header:
    return Header(
        parent_hash=ZERO_HASH,
        number=0,
        state_root=compute_root(state),
        extrinsics_root=EMPTY_ROOT,
        timestamp=0,
        slot=0,
        author=bytes(32),
    )


def build_genesis(spec: ChainSpec) -> Genesis:
    state = genesis_state(spec)
    return Genesis(spec, state, genesis_header(state))
