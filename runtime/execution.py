"""Block execution: the state transition function, as plain functions.

``execute_block(state, nodes, parent, block)`` is what every node runs on an
imported block: it checks the header against its parent (:func:`validate_header`),
the seal, the body's size and extrinsics root, applies every extrinsic, updates
the state trie once with the whole write set and compares the root. Any
mismatch raises a named :class:`BlockError` and nothing is written: the caller
commits the returned :class:`ExecutedBlock` in one batch, or drops it.

``build_block`` is the author's side: it applies candidate extrinsics in
order, skips the invalid ones, defers what does not fit, stops at the block's
limits or when the node says time is up, and seals the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from runtime import codec
from runtime.block import Block, Header, seal_header, seal_valid
from runtime.codec import frozen_dataclass
from runtime.crypto import Keypair
from runtime.executive import (
    MAX_BLOCK_LENGTH,
    MAX_BLOCK_WEIGHT,
    SPEC_VERSION,
    FutureNonce,
    InvalidTransaction,
    apply_extrinsic,
    birth_hash,
    call_weight,
    finalize_block,
    initialize_block,
)
from runtime.extrinsic import Extrinsic, decode_extrinsic
from runtime.modules import validators
from runtime.state import Overlay, StateReader
from runtime.support import BlockInfo, EventRecord
from runtime.trie import NodeStore, TrieUpdate, compute_root, trie_update


class BlockError(Exception):
    """A block that must not be imported; subclasses name the reason."""


class ParentMismatch(BlockError):
    """The header's parent hash or number does not follow its parent."""


class TimestampNotIncreasing(BlockError):
    """The timestamp is not after the parent's."""


class BadSlot(BlockError):
    """The slot is not ``timestamp // slot_duration`` or not after the parent's slot."""


class WrongAuthor(BlockError):
    """The author is not the authority that owns the slot."""


class BadSeal(BlockError):
    """The seal is not the author's signature over the block hash."""


class BlockTooLong(BlockError):
    """The extrinsics add up to more than MAX_BLOCK_LENGTH bytes."""


class BadExtrinsicsRoot(BlockError):
    """The header's extrinsics root does not commit to the body."""


class BadExtrinsic(BlockError):
    """An extrinsic in the body does not decode."""


class InvalidExtrinsicInBlock(BlockError):
    """An extrinsic in the body is not valid (bad signature, nonce, fee, mortality …)."""


class BlockWeightExceeded(BlockError):
    """The extrinsics' weights add up to more than MAX_BLOCK_WEIGHT."""


class BadStateRoot(BlockError):
    """Executing the block gives another state root than the header's."""


@frozen_dataclass
class ExecutedBlock:
    """A block that passed every check, with everything needed to commit it."""

    block: Block
    changes: dict[bytes, bytes | None]  # the block's whole state write set
    trie: TrieUpdate  # the new root and the trie nodes to store
    events: tuple[EventRecord, ...]
    events_encoded: bytes  # ``events`` encoded (tuple[EventRecord, ...]), as a node stores them
    weight: int


def extrinsics_root(extrinsics: Sequence[bytes]) -> bytes:
    return compute_root({i.to_bytes(4, "big"): raw for i, raw in enumerate(extrinsics)})


def slot_owner(state: StateReader, slot: int) -> bytes:
    """Aura: the authority that may author in ``slot``."""
    authorities = validators.authorities.get(state)
    return authorities[slot % len(authorities)]


def validate_header(state: StateReader, parent: Header, header: Header) -> None:
    """Check a header against its parent and the parent's state (authorities, slots)."""
    if header.parent_hash != parent.hash or header.number != parent.number + 1:
        raise ParentMismatch(f"#{header.number} does not follow #{parent.number}")
    if header.timestamp <= parent.timestamp:
        raise TimestampNotIncreasing(f"timestamp {header.timestamp} <= parent's {parent.timestamp}")
    slot_duration = validators.slot_duration.get(state)
    if header.slot != header.timestamp // slot_duration or header.slot <= parent.slot:
        raise BadSlot(f"slot {header.slot} for timestamp {header.timestamp}")
    if header.author != slot_owner(state, header.slot):
        raise WrongAuthor(f"slot {header.slot} belongs to another authority")


@frozen_dataclass
class SignatureCheck:
    """One extrinsic signature to verify: ed25519 ``signature`` by ``signer`` over ``message``."""

    signer: bytes
    message: bytes
    signature: bytes


def decode_body(block: Block) -> tuple[Extrinsic, ...]:
    """Decode every extrinsic of a block (BadExtrinsic names the first that fails)."""
    decoded = []
    for index, raw in enumerate(block.extrinsics):
        try:
            decoded.append(decode_extrinsic(raw))
        except codec.DecodeError as e:
            raise BadExtrinsic(f"extrinsic {index}: {e}") from None
    return tuple(decoded)


def signature_checks(
    state: StateReader, parent: Header, extrinsics: Sequence[Extrinsic], genesis_hash: bytes
) -> tuple[SignatureCheck, ...]:
    """The signatures a block's extrinsics carry, with the exact messages they must sign.

    Lets a node verify them on other cores while the block executes with
    ``signatures_checked=True``; the block is only committed if all verify.
    """
    block = BlockInfo(parent.number + 1, parent.timestamp, bytes(32), parent.hash)
    checks = []
    for index, ext in enumerate(extrinsics):
        try:
            bound = birth_hash(state, block, ext, genesis_hash)
        except InvalidTransaction as e:
            raise InvalidExtrinsicInBlock(f"extrinsic {index}: {e.error_name()}: {e}") from None
        checks.append(SignatureCheck(ext.signer, ext.payload(genesis_hash, SPEC_VERSION, bound),
                                     ext.signature))
    return tuple(checks)


def check_block(state: StateReader, parent: Header, block: Block, *,
                extrinsics_root_checked: bool = False) -> None:
    """Everything about a block that can be checked without executing it.

    ``extrinsics_root_checked`` lets a caller that compares the extrinsics root
    itself (e.g. computed on another core, see :func:`require_extrinsics_root`)
    skip it here.
    """
    header = block.header
    validate_header(state, parent, header)
    if not seal_valid(header, block.seal):
        raise BadSeal(f"bad seal on #{header.number}")
    length = sum(len(raw) for raw in block.extrinsics)
    if length > MAX_BLOCK_LENGTH:
        raise BlockTooLong(f"{length} bytes of extrinsics exceeds {MAX_BLOCK_LENGTH}")
    if not extrinsics_root_checked:
        require_extrinsics_root(block, extrinsics_root(block.extrinsics))


def require_extrinsics_root(block: Block, root: bytes) -> None:
    """Raise BadExtrinsicsRoot unless ``root`` (of the body) is the header's extrinsics root."""
    if root != block.header.extrinsics_root:
        raise BadExtrinsicsRoot(f"extrinsics root mismatch in #{block.header.number}")


@frozen_dataclass
class AppliedBody:
    changes: dict[bytes, bytes | None]
    events: tuple[EventRecord, ...]
    events_encoded: bytes
    weight: int


def apply_body(
    state: StateReader,
    block: Block,
    extrinsics: Sequence[Extrinsic],
    genesis_hash: bytes,
    *,
    signatures_checked: bool = False,
) -> AppliedBody:
    """Initialize the block and apply its (decoded) extrinsics in order."""
    header = block.header
    overlay = Overlay(state)
    env = initialize_block(overlay, BlockInfo(header.number, header.timestamp, header.author,
                                              header.parent_hash))
    weight = 0
    for index, (raw, ext) in enumerate(zip(block.extrinsics, extrinsics, strict=True)):
        try:
            outcome = apply_extrinsic(env, ext, len(raw), index, genesis_hash,
                                      signature_checked=signatures_checked)
        except InvalidTransaction as e:
            raise InvalidExtrinsicInBlock(f"extrinsic {index}: {e.error_name()}: {e}") from None
        weight += outcome.weight
        if weight > MAX_BLOCK_WEIGHT:
            raise BlockWeightExceeded(f"weight {weight} exceeds {MAX_BLOCK_WEIGHT}")
    finalize_block(env)
    return AppliedBody(overlay.changes, tuple(env.events), env.events.encoded(), weight)


def memory_hint(state: StateReader | None) -> StateReader | None:
    """The reader of ``state``'s values already in memory, if it offers one.

    A reader may offer ``in_memory()``: a reader that answers from memory only
    (None for anything it would have to read from disk). ``trie_update`` takes it
    as a hint of the old values; a reader that would walk the trie or read from
    disk for each key would cost more than it saves, so others give no hint.
    """
    in_memory = getattr(state, "in_memory", None)
    return in_memory() if in_memory is not None else None


def commit_state_root(nodes: NodeStore, parent: Header, block: Block,
                      body: AppliedBody, state: StateReader | None = None) -> ExecutedBlock:
    """Update the state trie once with the block's write set and check the header's root.

    ``state`` (the parent's state, optional): if it can tell which of its values
    are in memory (see :func:`memory_hint`), the trie uses them to recognise
    changed leaves without reading them (see ``trie_update``).
    """
    update = trie_update(nodes, parent.state_root, body.changes, memory_hint(state))
    if update.root != block.header.state_root:
        raise BadStateRoot(f"state root mismatch in #{block.header.number}")
    return ExecutedBlock(block, body.changes, update, body.events, body.events_encoded,
                         body.weight)


def execute_block(
    state: StateReader,
    nodes: NodeStore,
    parent: Header,
    block: Block,
    genesis_hash: bytes,
    *,
    signatures_checked: bool = False,
    decoded: Sequence[Extrinsic] | None = None,
) -> ExecutedBlock:
    """Re-execute ``block`` on its parent's ``state`` and check every commitment.

    ``signatures_checked`` lets a caller that verified the extrinsics'
    signatures beforehand (see :func:`signature_checks`) skip doing it again;
    ``decoded`` passes the body already decoded by :func:`decode_body`.
    """
    check_block(state, parent, block)
    extrinsics = decode_body(block) if decoded is None else decoded
    body = apply_body(state, block, extrinsics, genesis_hash,
                      signatures_checked=signatures_checked)
    return commit_state_root(nodes, parent, block, body, state)


@frozen_dataclass
class BuiltBlock:
    executed: ExecutedBlock
    included: tuple[bytes, ...]  # encoded extrinsics, in block order
    invalid: tuple[tuple[bytes, InvalidTransaction | codec.DecodeError], ...]  # drop these
    deferred: tuple[bytes, ...]  # valid but did not fit (or out of order): keep in the pool

    @property
    def block(self) -> Block:
        return self.executed.block


def build_block(
    state: StateReader,
    nodes: NodeStore,
    parent: Header,
    candidates: Iterable[bytes],
    *,
    timestamp: int,
    author: Keypair,
    genesis_hash: bytes,
    should_stop: Callable[[], bool] = lambda: False,
) -> BuiltBlock:
    """Author a block on ``parent`` from ``candidates`` (encoded extrinsics, in priority order).

    The caller checks that ``author`` owns the slot of ``timestamp``.
    """
    slot = timestamp // validators.slot_duration.get(state)
    overlay = Overlay(state)
    env = initialize_block(overlay, BlockInfo(parent.number + 1, timestamp, author.public,
                                              parent.hash))
    included: list[bytes] = []
    invalid: list[tuple[bytes, InvalidTransaction | codec.DecodeError]] = []
    deferred: list[bytes] = []
    weight = length = 0
    for raw in candidates:
        if should_stop():
            deferred.append(raw)
            continue
        try:
            ext = decode_extrinsic(raw)
        except codec.DecodeError as e:
            invalid.append((raw, e))
            continue
        ext_weight = call_weight(ext)
        if weight + ext_weight > MAX_BLOCK_WEIGHT or length + len(raw) > MAX_BLOCK_LENGTH:
            deferred.append(raw)
            continue
        try:
            outcome = apply_extrinsic(env, ext, len(raw), len(included), genesis_hash)
        except FutureNonce:
            deferred.append(raw)
            continue
        except InvalidTransaction as e:
            invalid.append((raw, e))
            continue
        included.append(raw)
        weight += outcome.weight
        length += len(raw)

    finalize_block(env)
    update = trie_update(nodes, parent.state_root, overlay.changes, memory_hint(state))
    header = Header(
        parent_hash=parent.hash,
        number=parent.number + 1,
        state_root=update.root,
        extrinsics_root=extrinsics_root(included),
        timestamp=timestamp,
        slot=slot,
        author=author.public,
    )
    block = Block(header, tuple(included), seal_header(author, header))
    executed = ExecutedBlock(block, overlay.changes, update, tuple(env.events),
                             env.events.encoded(), weight)
    return BuiltBlock(executed, tuple(included), tuple(invalid), tuple(deferred))
