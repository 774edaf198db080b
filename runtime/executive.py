"""The executive: transaction validity, fees and dispatch, with Substrate's semantics.

* :func:`check_transaction` decides whether an extrinsic may enter a block
  (weight, mortality, nonce, signature, fee). An invalid extrinsic is never
  included and costs nothing. Its size needs no check here: every extrinsic is
  decoded first (:func:`runtime.extrinsic.decode_extrinsic`, in the pool, in block
  building and in block import), and decoding refuses more than MAX_EXTRINSIC_SIZE
  bytes (``Oversize``).
* :func:`apply_extrinsic` applies a valid extrinsic: it withholds the
  worst-case fee and the tip, bumps the nonce, then dispatches the call in its
  own overlay. If the call fails with a :class:`DispatchError`, the call's
  changes and events are dropped but the fee and nonce stay, and an
  ``ExtrinsicFailed`` event names the error. A call that used less than its
  worst-case weight (it returns what it used) has the difference refunded.

Fees (in the smallest unit; the token has 12 decimals)::

    fee = BASE_FEE + LENGTH_FEE * encoded_length + WEIGHT_FEE * weight
    weight = EXTRINSIC_BASE_WEIGHT + call weight   # worst case before dispatch,
                                                   # actual weight after it
    paid = fee + tip           # all of it to the block author, credited at the
                               # end of the block (finalize_block)

The pool orders by ``priority = tip``, then by arrival.
"""

from __future__ import annotations

from runtime import modules  # noqa: F401  (registers every call)
from runtime.codec import frozen_dataclass
from runtime.extrinsic import Extrinsic
from runtime.modules import balances, system, validators
from runtime.state import Overlay, StateReader
from runtime.support import BlockInfo, DispatchError, Env, EventLog

SPEC_NAME = "opus"
IMPL_NAME = "opus-node"
SPEC_VERSION = 2  # 2: works may carry a soft binding (a perceptual fingerprint)
TRANSACTION_VERSION = 1

BASE_FEE = 100_000_000
LENGTH_FEE = 1_000_000
WEIGHT_FEE = 1_000
EXTRINSIC_BASE_WEIGHT = 100_000  # decode + signature check + fee handling, in ns

MAX_BLOCK_WEIGHT = 1_000_000_000  # one second of reference execution
MAX_BLOCK_LENGTH = 900 * 1024  # a block must fit one 1 MiB gossip message


@frozen_dataclass
class RuntimeVersion:
    spec_name: str = SPEC_NAME
    impl_name: str = IMPL_NAME
    spec_version: int = SPEC_VERSION
    transaction_version: int = TRANSACTION_VERSION


RUNTIME_VERSION = RuntimeVersion()


# ---------------------------------------------------------------------------
# Validity errors: the extrinsic may not enter a block.


class InvalidTransaction(Exception):
    """Base of the reasons an extrinsic is not valid (it is never included)."""

    @classmethod
    def error_name(cls) -> str:
        return cls.__name__


class ExhaustsResources(InvalidTransaction):
    """The call's weight or length alone exceeds a block's limit."""


class TransactionExpired(InvalidTransaction):
    """The mortality window has passed (or the birth block is too old to check)."""


class BirthBlockUnknown(InvalidTransaction):
    """The birth block is not before the block being built.

    (A birth hash from another fork is not detectable here: it makes the signature
    invalid instead.)
    """


class StaleNonce(InvalidTransaction):
    """The nonce was already used: a replay, or a transaction already included."""


class FutureNonce(InvalidTransaction):
    """The nonce is ahead of the account's; earlier transactions must come first."""


class InvalidSignature(InvalidTransaction):
    """The signature does not match the signer, this chain and this runtime version."""


class CannotPayFee(InvalidTransaction):
    """The signer's free balance is below the fee plus tip."""


@frozen_dataclass
class ValidTransaction:
    """What the pool needs to know about a valid extrinsic."""

    priority: int
    weight: int
    fee: int  # without the tip
    account_nonce: int  # the signer's current nonce; ext.nonce > this means "future"


def truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode(errors="ignore")


def call_weight(ext: Extrinsic) -> int:
    return EXTRINSIC_BASE_WEIGHT + ext.call.spec.weight(ext.call.args)


def compute_fee(length: int, weight: int) -> int:
    return BASE_FEE + LENGTH_FEE * length + WEIGHT_FEE * weight


def birth_hash(state: StateReader, block: BlockInfo, ext: Extrinsic, genesis_hash: bytes) -> bytes:
    """The block hash the extrinsic's signature must bind (genesis for immortal ones)."""
    era = ext.era
    if era.immortal:
        return genesis_hash
    if not era.valid_at(block.number):
        if era.birth >= block.number:
            raise BirthBlockUnknown(f"birth block #{era.birth} is not before #{block.number}")
        raise TransactionExpired(f"mortal until #{era.birth + era.period}, now #{block.number}")
    if era.birth == block.number - 1:
        return block.parent_hash
    known = system.block_hash.get(state, era.birth)
    if known is None:
        raise TransactionExpired(f"birth block #{era.birth} is older than the kept hashes")
    return known


def check_transaction(
    state: StateReader,
    block: BlockInfo,
    ext: Extrinsic,
    length: int,
    genesis_hash: bytes,
    *,
    signature_checked: bool = False,
) -> ValidTransaction:
    """Decide whether ``ext`` (``length`` encoded bytes) may go into ``block`` on ``state``.

    ``ext`` comes from :func:`runtime.extrinsic.decode_extrinsic`, so ``length`` (the
    bytes it was decoded from) is at most MAX_EXTRINSIC_SIZE.

    A nonce above the account's is still valid here (the pool keeps it as
    "future"); :func:`apply_extrinsic` requires the exact nonce.
    """
    return _check(state, block, ext, length, genesis_hash, signature_checked)[0]


def _check(
    state: StateReader,
    block: BlockInfo,
    ext: Extrinsic,
    length: int,
    genesis_hash: bytes,
    signature_checked: bool,
) -> tuple[ValidTransaction, system.AccountInfo]:
    weight = call_weight(ext)
    if weight > MAX_BLOCK_WEIGHT or length > MAX_BLOCK_LENGTH:
        raise ExhaustsResources(f"weight {weight} or length {length} exceeds a block's limit")
    account = system.account_info(state, ext.signer)
    if ext.nonce < account.nonce:
        raise StaleNonce(f"nonce {ext.nonce} is below the account's {account.nonce}")
    bound_hash = birth_hash(state, block, ext, genesis_hash)
    if not signature_checked and not ext.signature_valid(genesis_hash, SPEC_VERSION, bound_hash):
        raise InvalidSignature("bad signature (wrong key, chain, runtime version or fork)")
    fee = compute_fee(length, weight)
    if account.free < fee + ext.tip:
        raise CannotPayFee(f"balance {account.free} is below fee {fee} + tip {ext.tip}")
    valid = ValidTransaction(priority=ext.tip, weight=weight, fee=fee, account_nonce=account.nonce)
    return valid, account


# ---------------------------------------------------------------------------
# Block execution steps


def initialize_block(state: Overlay, block: BlockInfo) -> Env:
    """Run the start-of-block hooks; returns the environment the block's extrinsics use."""
    env = Env(state, block, EventLog())
    system.initialize(env)
    validators.initialize(env)
    return env


def finalize_block(env: Env) -> None:
    """End a block: credit the author with every fee and tip of the block, at once."""
    if env.author_fees:
        author = system.account_info(env.state, env.block.author)
        system.put_account(env.state, env.block.author,
                           system.AccountInfo(author.nonce, author.free + env.author_fees))
        env.author_fees = 0


@frozen_dataclass
class ApplyOutcome:
    weight: int  # actually used (counts against the block's limit)
    fee: int  # fee + tip actually paid
    error: str | None  # the named DispatchError if the call failed


def apply_extrinsic(
    env: Env,
    ext: Extrinsic,
    length: int,
    index: int,
    genesis_hash: bytes,
    *,
    signature_checked: bool = False,
) -> ApplyOutcome:
    """Apply a valid extrinsic as the ``index``-th of the block.

    Raises InvalidTransaction (and changes nothing) if the extrinsic may not
    be included; otherwise always succeeds, recording the call's own failure
    as an ``ExtrinsicFailed`` event.
    """
    state = env.state
    valid, account = _check(state, env.block, ext, length, genesis_hash, signature_checked)
    if ext.nonce != valid.account_nonce:
        raise FutureNonce(f"nonce {ext.nonce}, account is at {valid.account_nonce}")
    # Pre-dispatch: take the worst-case fee and the tip, and use the nonce.
    withheld = valid.fee + ext.tip
    system.put_account(state, ext.signer,
                       system.AccountInfo(account.nonce + 1, account.free - withheld))
    env.extrinsic_index = index

    call_state = state.child()
    call_env = Env(call_state, env.block, env.events, index)
    events_before = env.events.mark()
    spec = ext.call.spec
    error: DispatchError | None = None
    try:
        used = spec.handler(call_env, ext.signer, ext.call.args)
    except DispatchError as failure:
        error, used = failure, None
        call_state.revert()
        env.events.truncate(events_before)
    else:
        call_state.commit()

    # Post-dispatch: charge the weight actually used, refund the rest, pay the author.
    weight = valid.weight if used is None else min(valid.weight, EXTRINSIC_BASE_WEIGHT + used)
    fee = compute_fee(length, weight)
    if fee != valid.fee:
        signer = system.account_info(state, ext.signer)
        system.put_account(state, ext.signer,
                           system.AccountInfo(signer.nonce, signer.free + valid.fee - fee))
    env.author_fees += fee + ext.tip  # credited once, by finalize_block
    env.emit(balances.FeePaid(ext.signer, fee, ext.tip, env.block.author))
    paid = fee + ext.tip
    if error is not None:
        env.emit(system.ExtrinsicFailed(weight, paid, error.error_name(),
                                        truncate_utf8(str(error), 512)))
    else:
        env.emit(system.ExtrinsicSuccess(weight, paid))
    env.extrinsic_index = None
    return ApplyOutcome(weight, paid, None if error is None else error.error_name())
