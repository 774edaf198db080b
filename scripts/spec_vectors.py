"""Generate the test vectors and the generated reference blocks of docs/spec.md.

Every value here is computed by the runtime from fixed inputs (ed25519 signatures
are deterministic), so the output only changes when the wire format does.

    python scripts/spec_vectors.py            # the vectors as JSON {doc: {label: value}}
    python scripts/spec_vectors.py --markdown # the generated regions as markdown
    python scripts/spec_vectors.py --check    # exit 1 if a document is out of date
    python scripts/spec_vectors.py --write    # rewrite the generated regions

docs/spec.md (and docs/network.md, for the finality votes) hold the generated text between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->`` markers; everything
else in them is written by hand. ``tests/test_spec_vectors.py`` parses the
``vector:<label> = <value>`` lines from the documents and checks them against the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nacl.pwhash  # noqa: E402
import nacl.secret  # noqa: E402
from mnemonic import Mnemonic  # noqa: E402

from client import keys  # noqa: E402
from genesis import build_genesis, dev_spec  # noqa: E402
from genesis import spec as chain_spec  # noqa: E402
from p2p.protocol import encode_tx_batch, encode_vote_batch  # noqa: E402
from runtime import block as block_mod  # noqa: E402
from runtime import codec, execution, executive, extrinsic, support, trie  # noqa: E402
from runtime.block import (  # noqa: E402
    Block,
    Header,
    Justification,
    Precommit,
    VoteTarget,
    precommit_message,
    seal_header,
    seal_message,
    sign_precommit,
)
from runtime.codec import Blob, Fixed, Struct, Text, Tuple, UInt  # noqa: E402
from runtime.crypto import (  # noqa: E402
    ADDRESS_HRP,
    DEV_ACCOUNT_NAMES,
    blake2_256,
    dev_keypair,
    sha256,
)
from runtime.extrinsic import Era, Extrinsic, SigningPayload, sign_extrinsic  # noqa: E402
from runtime.finality_types import (  # noqa: E402
    Phase,
    VoteMessage,
    encode_vote_message,
    prevote_message,
    sign_vote,
)
from runtime.modules import (  # noqa: E402
    MODULE_NAMES,
    balances,
    licensing,
    provenance,
    royalties,
    system,
    usage,
    validators,
)
from runtime.state import MemoryState  # noqa: E402
from runtime.support import (  # noqa: E402
    CALLS,
    AnyEvent,
    Call,
    DispatchError,
    Event,
    EventRecord,
    StorageMap,
    StorageValue,
    make_call,
)

DOC_PATH = ROOT / "docs" / "spec.md"
NETWORK_DOC_PATH = ROOT / "docs" / "network.md"
# The generated regions holding vectors, per document.
DOC_VECTOR_REGIONS = {"spec": ("key-vectors", "vectors", "gossip-vectors"),
                      "network": ("vote-vectors",)}
MODULES = {m.NAME: m for m in (system, balances, validators, provenance, licensing, royalties,
                               usage)}

# ---------------------------------------------------------------------------
# Fixed inputs

ALICE, BOB, CHARLIE = (dev_keypair(n) for n in ("alice", "bob", "charlie"))
ONE_OPUS = 10**12
TRANSFER_AMOUNT = 10**12
MORTAL_BIRTH = 10
MORTAL_PERIOD = 64
MORTAL_BIRTH_HASH = blake2_256(b"opus/spec-vectors/block-10")
WORK_CONTENT = b"Opus Chain spec vector: Sunrise over the harbour"
WORK_METADATA = b'{"title":"Sunrise over the harbour"}'
HEADER_STATE_ROOT = blake2_256(b"opus/spec-vectors/state")
HEADER_TIMESTAMP = 1_700_000_000_000  # ms; slot 850,000,000 with 2 s slots
TRIE_ITEMS = {b"alice": b"1", b"bob": b"2", b"charlie": b"3", b"dave": b"4", b"eve": b"5",
              b"ferdie": b"6"}
TRIE_PROOF_KEYS = (b"alice", b"zed")

# Secret phrases (spec.md 2.1): (label, phrase, its password). The first is subkey's
# published ed25519 example, the second Substrate's dev phrase (polkadot-js's DEV_SEED), the
# last two substrate-bip39's own test vectors (all made with the password "Substrate").
PHRASES = (
    ("subkey", "marble crisp cover huge yellow quick warm pudding spatial engage unfair "
     "million", ""),
    ("dev", "bottom drive obey lake curtain smoke basket hold race lonely fit walk", ""),
    ("password", "ozone drill grab fiber curtain grace pudding thank cruise elder eight "
     "picnic", "Substrate"),
    ("words24", "hamster diagram private dutch cause delay private meat slide toddler razor "
     "book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length",
     "Substrate"),
)
# The key file vector: the "subkey" phrase's key sealed with fixed salt and nonce (a real
# file gets random ones), at the limits `opus` writes.
KEY_FILE_PASSPHRASE = "opus key file vector"
KEY_FILE_SALT = bytes(range(16))
KEY_FILE_NONCE = bytes(range(24))

# The ExtrinsicFailed vector: registering REGISTER_WORK's content hash a second time.
FAILED_ERROR = "provenance.AlreadyRegistered"
FAILED_DETAIL = "content hash already registered as work #1"

REGISTER_WORK = provenance.RegisterWork(
    content_hash=sha256(WORK_CONTENT),
    kind=provenance.WorkKind.IMAGE,
    title="Sunrise over the harbour",
    metadata_uri="ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    metadata_hash=sha256(WORK_METADATA),
    creators=(provenance.Split(ALICE.public, 7_000), provenance.Split(BOB.public, 3_000)),
    parents=(),
)

# A PDQ soft binding: a made-up 256-bit value (the runtime checks the form only).
PDQ_BINDING = provenance.SoftBinding(provenance.PDQ, blake2_256(b"opus/spec-vectors/pdq"), 92)

# One example of every call (encoding vectors; not meant to succeed in any given state).
EXAMPLE_CALLS: dict[str, Struct] = {
    "system.remark": system.Remark(b"hello, opus"),
    "balances.transfer": balances.TransferArgs(BOB.public, TRANSFER_AMOUNT),
    "validators.set_authorities": validators.SetAuthorities((ALICE.public, BOB.public)),
    "validators.set_sudo": validators.SetSudo(BOB.public),
    "provenance.register_work": REGISTER_WORK,
    "provenance.transfer_work": provenance.TransferWork(1, BOB.public),
    "provenance.update_metadata": provenance.UpdateMetadata(1, "ipfs://metadata-v2", None),
    "licensing.offer_terms": licensing.OfferTerms(
        work_id=1, transferable=True, commercial_use=True, commercial_attribution=True,
        commercial_rev_share=500, derivatives_allowed=True, derivatives_attribution=True,
        derivatives_approval=False, derivatives_reciprocal=False,
        ai_training=licensing.AiUse.CONSTRAINED, ai_inference=licensing.AiUse.ALLOWED,
        minting_fee=5 * ONE_OPUS, expiry_blocks=0, max_supply=100,
        legal_uri="ipfs://legal-terms", legal_hash=sha256(b"legal terms"),
    ),
    "licensing.retire_terms": licensing.RetireTerms(1),
    "licensing.acquire_license": licensing.AcquireLicense(1),
    "licensing.transfer_license": licensing.TransferLicense(1, CHARLIE.public),
    "licensing.approve_derivative": licensing.ApproveDerivative(1, True),
    "royalties.pay_revenue": royalties.PayRevenue(1, 2**70, "streaming, Q1"),
    "usage.record_usage": usage.RecordUsage(1, usage.Purpose.AI_TRAINING, "opus-diffusion-v1",
                                            1_000, "fine-tune run 7"),
    "usage.record_usage_batch": usage.RecordUsageBatch((
        usage.RecordUsage(1, usage.Purpose.AI_TRAINING, "dataset-2024", 1, ""),
        usage.RecordUsage(2, usage.Purpose.PUBLICATION, "anthology", 0, "print run"),
    )),
}

# Weight of every call as a formula over its arguments; checked against the code.
WEIGHTS: dict[str, str] = {
    "system.remark": "1000 + len(data)",
    "balances.transfer": "20000",
    "validators.set_authorities": "10000 + 1000*len(authorities)",
    "validators.set_sudo": "10000",
    "provenance.register_work": "150000 + 5000*len(creators) + 220000*len(parents)",
    "provenance.transfer_work": "300000",
    "provenance.update_metadata": "300000",
    "licensing.offer_terms": "710000",
    "licensing.retire_terms": "220000",
    "licensing.acquire_license": "45630000 (refunded down to 50000 + the distribution's use)",
    "licensing.transfer_license": "60000",
    "licensing.approve_derivative": "220000",
    "royalties.pay_revenue": "45610000 (refunded down to 30000 + the distribution's use)",
    "usage.record_usage": "100000",
    "usage.record_usage_batch": "40000 + 60000*len(entries)",
}

# The key layout of every storage map: what follows its ``<module>:<item>:`` prefix.
MAP_KEYS: dict[str, str] = {
    "system:account:": "account(32)",
    "system:block_hash:": "be64(block_number)",
    "provenance:works:": "be64(work_id)",
    "provenance:work_by_content:": "content_hash(32)",
    "licensing:terms:": "be64(terms_id)",
    "licensing:licenses:": "be64(license_id)",
    "usage:usage:": "be64(usage_id)",
}

# ---------------------------------------------------------------------------
# Type rendering (the notation of docs/spec.md section 1)


def render_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        base, spec = get_args(tp)[0], get_args(tp)[1]
        if isinstance(spec, UInt):
            return f"u{spec.bits}"
        if isinstance(spec, Fixed):
            return f"bytes{spec.length}"
        if isinstance(spec, Blob):
            return f"bin<={spec.max_length}"
        if isinstance(spec, Text):
            return f"str<={spec.max_length}"
        if isinstance(spec, Tuple):
            return f"array<={spec.max_items} of {render_type(get_args(base)[0])}"
        if spec is AnyEvent:
            return "Event"
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return f"{render_type(inner)}?"
    if tp is bool:
        return "bool"
    if tp is Call:
        return "Call"
    if tp is AnyEvent:
        return "Event"
    if isinstance(tp, type) and issubclass(tp, (enum.Enum, Struct)):
        return tp.__name__
    raise TypeError(f"no notation for {tp!r}")


def render_fields(cls: type[Struct]) -> str:
    hints = get_type_hints(cls, include_extras=True)
    return ", ".join(f"{f.name}: {render_type(hints[f.name])}" for f in dataclasses.fields(cls))


def struct_line(cls: type[Struct]) -> str:
    return f"struct {cls.__name__} = [{render_fields(cls)}]"


def enum_line(cls: type[enum.Enum]) -> str:
    return f"enum {cls.__name__} = " + " | ".join(json.dumps(m.value) for m in cls)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if doc else ""


def zero_value(tp: Any, items: int = 0) -> Any:
    """A value of ``tp`` (arrays get ``items`` elements), to evaluate weight functions."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, spec = get_args(tp)[0], get_args(tp)[1]
        if isinstance(spec, UInt):
            return 0
        if isinstance(spec, Fixed):
            return bytes(spec.length)
        if isinstance(spec, Blob):
            return bytes(items)
        if isinstance(spec, Text):
            return ""
        if isinstance(spec, Tuple):
            return tuple(zero_value(get_args(base)[0]) for _ in range(items))
    if origin in (typing.Union, types.UnionType):
        return None
    if tp is bool:
        return False
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(iter(tp))
    if isinstance(tp, type) and issubclass(tp, Struct):
        hints = get_type_hints(tp, include_extras=True)
        return tp(**{f.name: zero_value(hints[f.name], items) for f in dataclasses.fields(tp)})
    raise TypeError(f"no zero value for {tp!r}")


def check_weight_formulas() -> None:
    """Raise AssertionError if a formula in WEIGHTS disagrees with a call's weight function."""
    assert set(WEIGHTS) == {f"{m}.{f}" for m, f in CALLS}, "WEIGHTS must list every call"
    for name, formula in WEIGHTS.items():
        spec = CALLS[tuple(name.split("."))]  # type: ignore[index]
        expression = formula.split(" (")[0]
        for n in (0, 1, 5, 16):
            args = zero_value(spec.args, n)
            env = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
            expected = eval(expression, {"len": len}, env)  # noqa: S307 - our own table
            actual = spec.weight(args)
            assert actual == expected, f"{name}: weight {actual} at size {n}, formula {formula}"


# ---------------------------------------------------------------------------
# Generated reference blocks


def _types_in(tp: Any) -> set[Any]:
    """``tp`` and every type inside it (the parts of an Annotated, a tuple, an optional)."""
    found = {tp}
    for arg in get_args(tp):
        if not isinstance(arg, (UInt, Fixed, Blob, Text, Tuple)):
            found |= _types_in(arg)
    return found


def _nested_arg_types() -> set[type]:
    """Call argument structs that another call takes as a field type (``RecordUsage``, the
    entries of ``record_usage_batch``): their field order must be in the doc too."""
    arg_types = {spec.args for spec in CALLS.values()}
    nested: set[type] = set()
    for spec in CALLS.values():
        for hint in get_type_hints(spec.args, include_extras=True).values():
            nested |= _types_in(hint) & arg_types
    return nested


def _module_structs(mod: types.ModuleType) -> list[type]:
    listed_args = {s.args for s in CALLS.values()} - _nested_arg_types()
    found = []
    for value in vars(mod).values():
        if not isinstance(value, type) or value.__module__ != mod.__name__:
            continue
        if issubclass(value, enum.Enum) or (
            issubclass(value, Struct) and not issubclass(value, Event)
            and value not in listed_args
        ):
            found.append(value)
    return found


def _storage_line(item: StorageValue[Any] | StorageMap[Any]) -> str:
    value_type = render_type(item.tp)
    if isinstance(item, StorageValue):
        key = item.key.decode()
        default = item.default
        shown = "[]" if default == () else "nil" if default is None else json.dumps(default)
        return f"value {key} -> {value_type}   (absent: {shown})"
    prefix = item.prefix.decode()
    return f"map   {prefix} ++ {MAP_KEYS[prefix]} -> {value_type}"


def module_block(name: str) -> str:
    mod = MODULES[name]
    lines: list[str] = []
    for fn, spec in mod.module.calls.items():
        lines.append(f"call {name}.{fn}({render_fields(spec.args)})")
        lines.append(f"    weight {WEIGHTS[f'{name}.{fn}']}")
    events = [e for (m, _), e in support.EVENT_TYPES.items() if m == name]
    if events:
        lines.append("")
    for event_type in events:
        lines.append(f"event {name}.{event_type.__name__}({render_fields(event_type)})")
    errors = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, DispatchError)
              and v.__module__ == mod.__name__ and v.__name__ != "Error"]
    if errors:
        lines.append("")
    for error in errors:
        lines.append(f"error {error.error_name()}: {_first_line(error.__doc__)}")
    structs = _module_structs(mod)
    if structs:
        lines.append("")
    for cls in structs:
        lines.append(enum_line(cls) if issubclass(cls, enum.Enum) else struct_line(cls))
    items = [v for v in vars(mod).values() if isinstance(v, (StorageValue, StorageMap))]
    if items:
        lines.append("")
    lines.extend(_storage_line(item) for item in items)
    return "```\n" + "\n".join(lines) + "\n```\n"


def core_types_block() -> str:
    lines = [struct_line(cls) for cls in (Era, SigningPayload, Extrinsic, EventRecord, Header,
                                          Block, Precommit, Justification, VoteTarget)]
    return "```\n" + "\n".join(lines) + "\n```\n"


def _error_list(base: type) -> list[type]:
    out = []
    for sub in base.__subclasses__():
        out.append(sub)
        out.extend(_error_list(sub))
    return out


def errors_block(base: type, qualify: str) -> str:
    lines = [f"{qualify}{e.__name__}: {_first_line(e.__doc__)}" for e in _error_list(base)]
    return "```\n" + "\n".join(lines) + "\n```\n"


CONSTANTS: list[tuple[str, Callable[[], Any]]] = [
    ("codec.MAX_DECODE_SIZE", lambda: codec.MAX_DECODE_SIZE),
    ("codec.MAX_CONTAINER_LEN", lambda: codec.MAX_CONTAINER_LEN),
    ("crypto.ADDRESS_HRP", lambda: ADDRESS_HRP),
    ("extrinsic.MAX_EXTRINSIC_SIZE", lambda: extrinsic.MAX_EXTRINSIC_SIZE),
    ("extrinsic.SIGNING_DOMAIN", lambda: extrinsic.SIGNING_DOMAIN),
    ("executive.SPEC_NAME", lambda: executive.SPEC_NAME),
    ("executive.SPEC_VERSION", lambda: executive.SPEC_VERSION),
    ("executive.TRANSACTION_VERSION", lambda: executive.TRANSACTION_VERSION),
    ("executive.BASE_FEE", lambda: executive.BASE_FEE),
    ("executive.LENGTH_FEE", lambda: executive.LENGTH_FEE),
    ("executive.WEIGHT_FEE", lambda: executive.WEIGHT_FEE),
    ("executive.EXTRINSIC_BASE_WEIGHT", lambda: executive.EXTRINSIC_BASE_WEIGHT),
    ("executive.MAX_BLOCK_WEIGHT", lambda: executive.MAX_BLOCK_WEIGHT),
    ("executive.MAX_BLOCK_LENGTH", lambda: executive.MAX_BLOCK_LENGTH),
    ("block.MAX_BLOCK_SIZE", lambda: block_mod.MAX_BLOCK_SIZE),
    ("block.MAX_BLOCK_EXTRINSICS", lambda: block_mod.MAX_BLOCK_EXTRINSICS),
    ("block.MAX_JUSTIFICATION_SIGNATURES", lambda: block_mod.MAX_JUSTIFICATION_SIGNATURES),
    ("block.SEAL_DOMAIN", lambda: block_mod.SEAL_DOMAIN),
    ("block.VOTE_DOMAIN", lambda: block_mod.VOTE_DOMAIN),
    ("trie.EMPTY_ROOT", lambda: trie.EMPTY_ROOT),
    ("system.BLOCK_HASH_COUNT", lambda: system.BLOCK_HASH_COUNT),
    ("system.MAX_REMARK", lambda: system.MAX_REMARK),
    ("validators.MAX_AUTHORITIES", lambda: validators.MAX_AUTHORITIES),
    ("validators.AUTHORITY_CHANGE_DELAY", lambda: validators.AUTHORITY_CHANGE_DELAY),
    ("provenance.BPS", lambda: provenance.BPS),
    ("provenance.MAX_CREATORS", lambda: provenance.MAX_CREATORS),
    ("provenance.MAX_PARENTS", lambda: provenance.MAX_PARENTS),
    ("provenance.MAX_ANCESTORS", lambda: provenance.MAX_ANCESTORS),
    ("provenance.MAX_TITLE", lambda: provenance.MAX_TITLE),
    ("provenance.MAX_URI", lambda: provenance.MAX_URI),
    ("provenance.MAX_BINDING_ALGORITHM", lambda: provenance.MAX_BINDING_ALGORITHM),
    ("provenance.MAX_BINDING_VALUE", lambda: provenance.MAX_BINDING_VALUE),
    ("provenance.MAX_BINDING_QUALITY", lambda: provenance.MAX_BINDING_QUALITY),
    ("provenance.SOFT_BINDING_ALGORITHMS", lambda: "; ".join(
        f"{name}: {length} bytes, {' or '.join(sorted(kinds))} works"
        for name, (length, kinds) in sorted(provenance.SOFT_BINDING_ALGORITHMS.items()))),
    ("provenance.WORK_READ_WEIGHT", lambda: provenance.WORK_READ_WEIGHT),
    ("provenance.WORK_WRITE_WEIGHT", lambda: provenance.WORK_WRITE_WEIGHT),
    ("licensing.MAX_LEGAL_URI", lambda: licensing.MAX_LEGAL_URI),
    ("royalties.MAX_MEMO", lambda: royalties.MAX_MEMO),
    ("royalties.DISTRIBUTE_BASE_WEIGHT", lambda: royalties.DISTRIBUTE_BASE_WEIGHT),
    ("royalties.CREDIT_WEIGHT", lambda: royalties.CREDIT_WEIGHT),
    ("royalties.PAY_REVENUE_BASE_WEIGHT", lambda: royalties.PAY_REVENUE_BASE_WEIGHT),
    ("royalties.max_credits()", royalties.max_credits),
    ("royalties.distribute_max_weight()", royalties.distribute_max_weight),
    ("usage.MAX_BATCH", lambda: usage.MAX_BATCH),
    ("usage.MAX_SUBJECT", lambda: usage.MAX_SUBJECT),
    ("usage.MAX_MEMO", lambda: usage.MAX_MEMO),
    ("usage.BASE_WEIGHT", lambda: usage.BASE_WEIGHT),
    ("usage.RECORD_WEIGHT", lambda: usage.RECORD_WEIGHT),
    ("genesis.TOKEN_SYMBOL", lambda: chain_spec.TOKEN_SYMBOL),
    ("genesis.TOKEN_DECIMALS", lambda: chain_spec.TOKEN_DECIMALS),
    ("genesis.DEV_ENDOWMENT", lambda: chain_spec.DEV_ENDOWMENT),
]


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is not None and text.isprintable() and len(value) != 32:
            return f'b"{text}" (ASCII bytes)'
        return "0x" + value.hex()
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def constants_block() -> str:
    width = max(len(name) for name, _ in CONSTANTS)
    lines = [f"{name.ljust(width)} = {_show(get())}" for name, get in CONSTANTS]
    return "```\n" + "\n".join(lines) + "\n```\n"


# ---------------------------------------------------------------------------
# Vectors


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclasses.dataclass
class Group:
    title: str
    text: str
    vectors: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    region: str = "vectors"  # the generated region (see DOC_VECTOR_REGIONS) that shows it

    def add(self, label: str, value: bytes | int | str) -> None:
        if isinstance(value, bytes):
            shown = _hex(value)
        elif isinstance(value, int):
            shown = str(value)
        else:
            shown = value
        self.vectors.append((label, shown))


def _dev_chain() -> tuple[Any, MemoryState, trie.MemoryNodeStore]:
    genesis = build_genesis(dev_spec())
    nodes = trie.MemoryNodeStore()
    nodes.put_nodes(trie.trie_update(nodes, trie.EMPTY_ROOT, genesis.state).new_nodes)
    return genesis, MemoryState(genesis.state), nodes


def key_file_vector() -> tuple[bytes, dict[str, Any]]:
    """The key file vector: the secretbox key its passphrase stretches to, and the file."""
    key = keys.keypair_from_phrase(PHRASES[0][1])
    stretched = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, KEY_FILE_PASSPHRASE.encode(), KEY_FILE_SALT,
        opslimit=keys.OPSLIMIT, memlimit=keys.MEMLIMIT)
    sealed = nacl.secret.SecretBox(stretched).encrypt(key.seed, KEY_FILE_NONCE).ciphertext
    document = {"format": keys.KEY_FILE_FORMAT, "address": key.address, "encrypted": True,
                "kdf": {"name": keys.KDF, "salt": KEY_FILE_SALT.hex(),
                        "opslimit": keys.OPSLIMIT, "memlimit": keys.MEMLIMIT},
                "cipher": keys.CIPHER, "nonce": KEY_FILE_NONCE.hex(),
                "ciphertext": sealed.hex()}
    # The same fields as the files the code writes, and the code opens it.
    assert list(document) == list(keys.seal_key(key, KEY_FILE_PASSPHRASE))
    assert keys.open_key(document, KEY_FILE_PASSPHRASE) == key
    return bytes(stretched), document


def key_vector_groups() -> list[Group]:
    g = Group("Secret phrases",
              "Each phrase with its password (a JSON string; in a secret URI "
              "`\"<phrase>///<password>\"`), the entropy its words encode, the ed25519 seed "
              "(the first 32 bytes of the PBKDF2 output), the public key and the address. "
              "`subkey` is `subkey inspect --scheme ed25519`'s published example, `dev` is "
              "Substrate's dev phrase (its seed is polkadot-js's `DEV_SEED`), `password` and "
              "`words24` are substrate-bip39's test vectors (their seeds are the first halves "
              "of its published 64-byte seeds).", region="key-vectors")
    for label, phrase, password in PHRASES:
        key = keys.keypair_from_phrase(phrase, password)
        g.add(f"phrase.{label}.words", json.dumps(phrase))
        g.add(f"phrase.{label}.password", json.dumps(password))
        g.add(f"phrase.{label}.entropy", bytes(Mnemonic("english").to_entropy(phrase)))
        g.add(f"phrase.{label}.seed", key.seed)
        g.add(f"phrase.{label}.public", key.public)
        g.add(f"phrase.{label}.address", key.address)
    stretched, document = key_file_vector()
    f = Group("Key file",
              "The key of `phrase.subkey` in an encrypted key file: the passphrase (a JSON "
              "string), the secretbox key argon2id makes of it with the file's salt "
              f"(`{KEY_FILE_SALT.hex()}`) and limits, and the whole file (JSON, here on one "
              f"line), sealed with the nonce `{KEY_FILE_NONCE.hex()}`. A real file has a "
              "random salt and nonce.", region="key-vectors")
    f.add("keyfile.passphrase", json.dumps(KEY_FILE_PASSPHRASE))
    f.add("keyfile.secretbox_key", stretched)
    f.add("keyfile.document", json.dumps(document))
    return [g, f]


def vector_groups() -> list[Group]:
    genesis, state, nodes = _dev_chain()
    gh = genesis.hash
    spec_version = executive.SPEC_VERSION
    groups: list[Group] = key_vector_groups()

    g = Group("Dev accounts",
              "Seed = `blake2_256(b\"//Alice\")` (capitalised name), public key = the ed25519 "
              "public key of that seed, address = bech32m(hrp `opus`, public key).")
    for name in DEV_ACCOUNT_NAMES:
        key = dev_keypair(name)
        if name == "alice":
            g.add(f"{name}.seed", key.seed)
        g.add(f"{name}.public", key.public)
        g.add(f"{name}.address", key.address)
    groups.append(g)

    g = Group("Codec",
              "`AccountInfo` values (`[nonce: u64, free: u128]`): a u128 below 2^64 is a msgpack "
              "integer, from 2^64 on a 16-byte big-endian bin (`c4 10 …`). An `Era`.")
    g.add("codec.account_info.small", codec.encode(system.AccountInfo(1, 10**12)))
    g.add("codec.account_info.u64_max", codec.encode(system.AccountInfo(0, 2**64 - 1)))
    g.add("codec.account_info.big", codec.encode(system.AccountInfo(0, 2**64)))
    g.add("codec.era.mortal", codec.encode(Era(MORTAL_BIRTH, MORTAL_PERIOD)))
    groups.append(g)

    g = Group("Dev chain genesis",
              "`build_genesis(dev_spec())`: the genesis state (every key/value, sorted by key), "
              "its trie root, the genesis header and its hash (the genesis hash every signing "
              "payload binds).")
    for i, (key, value) in enumerate(sorted(genesis.state.items())):
        g.add(f"genesis.state.{i}.key", key)
        g.add(f"genesis.state.{i}.value", value)
    g.add("genesis.state_root", genesis.header.state_root)
    g.add("genesis.header", codec.encode(genesis.header))
    g.add("genesis.hash", gh)
    groups.append(g)

    transfer_call = make_call(balances.TransferArgs(BOB.public, TRANSFER_AMOUNT))
    ext = sign_extrinsic(ALICE, transfer_call, 0, gh, spec_version)
    raw = codec.encode(ext)
    g = Group("balances.transfer, immortal",
              "Alice sends 10^12 (1 OPUS) to Bob: nonce 0, tip 0, era `[0, 0]` (immortal, so "
              "the birth hash is the genesis hash), on the dev chain (genesis hash above), spec "
              f"version {spec_version}. `fee` is the pre-dispatch fee "
              "`BASE_FEE + LENGTH_FEE * length + WEIGHT_FEE * (100000 + 20000)`.")
    g.add("transfer.call", codec.encode(transfer_call))
    g.add("transfer.signing_payload", ext.payload(gh, spec_version, gh))
    g.add("transfer.signature", ext.signature)
    g.add("transfer.extrinsic", raw)
    g.add("transfer.hash", ext.hash)
    g.add("transfer.length", len(raw))
    g.add("transfer.fee", executive.compute_fee(len(raw), executive.call_weight(ext)))
    groups.append(g)

    era = Era(MORTAL_BIRTH, MORTAL_PERIOD)
    mortal = sign_extrinsic(ALICE, transfer_call, 0, gh, spec_version, era=era,
                            birth_hash=MORTAL_BIRTH_HASH)
    g = Group("balances.transfer, mortal",
              "The same transfer with era `[10, 64]` (valid in blocks 11 … 74), bound to the "
              "birth block hash `blake2_256(b\"opus/spec-vectors/block-10\")`.")
    g.add("transfer_mortal.birth_hash", MORTAL_BIRTH_HASH)
    g.add("transfer_mortal.signing_payload", mortal.payload(gh, spec_version, MORTAL_BIRTH_HASH))
    g.add("transfer_mortal.signature", mortal.signature)
    g.add("transfer_mortal.extrinsic", codec.encode(mortal))
    g.add("transfer_mortal.hash", mortal.hash)
    groups.append(g)

    work_call = make_call(REGISTER_WORK)
    work_ext = sign_extrinsic(ALICE, work_call, 1, gh, spec_version)
    g = Group("provenance.register_work",
              "Alice (nonce 1, tip 0, immortal, dev chain) registers an image: content hash "
              "`sha256(b\"Opus Chain spec vector: Sunrise over the harbour\")`, title "
              "`\"Sunrise over the harbour\"`, metadata URI "
              f"`{REGISTER_WORK.metadata_uri}`, metadata hash "
              "`sha256(b'{\"title\":\"Sunrise over the harbour\"}')`, creators Alice 7000 bps and "
              "Bob 3000 bps, no parents.")
    g.add("register_work.content_hash", REGISTER_WORK.content_hash)
    g.add("register_work.call", codec.encode(work_call))
    g.add("register_work.signing_payload", work_ext.payload(gh, spec_version, gh))
    g.add("register_work.signature", work_ext.signature)
    g.add("register_work.extrinsic", codec.encode(work_ext))
    g.add("register_work.hash", work_ext.hash)
    groups.append(g)

    bound = dataclasses.replace(REGISTER_WORK, soft_binding=PDQ_BINDING)
    g = Group("provenance.register_work with a soft binding",
              "The same registration's arguments with a PDQ soft binding (spec version 2): "
              "value `blake2_256(b\"opus/spec-vectors/pdq\")` standing in for a fingerprint "
              "(the runtime checks only its length), quality 92. Without a binding the "
              "arguments (and a `Work` record) encode as before: the field is left off.")
    g.add("soft_binding.pdq", codec.encode(PDQ_BINDING))
    g.add("register_work_pdq.args", codec.encode(bound))
    g.add("register_work_pdq.call", codec.encode(make_call(bound)))
    groups.append(g)

    g = Group("One call of every kind",
              "The `Call` encoding `[module, function, [args…]]` of one example of every call "
              "(argument values shown as JSON: bytes as 0x-hex, enums by value; Alice, Bob and "
              "Charlie are the dev accounts).")
    for name, args in EXAMPLE_CALLS.items():
        shown = json.dumps(support.json_value(args), separators=(", ", ": "))
        for account, label in ((ALICE.public, "<alice>"), (BOB.public, "<bob>"),
                               (CHARLIE.public, "<charlie>")):
            shown = shown.replace(_hex(account), label)
        g.add(f"call.{name}.args", shown)
        g.add(f"call.{name}", codec.encode(make_call(args)))
    groups.append(g)

    work_raw = codec.encode(work_ext)
    work_weight = executive.call_weight(work_ext)
    work_fee = executive.compute_fee(len(work_raw), work_weight)
    g = Group("Event records",
              "`EventRecord = [extrinsic_index: u32?, [module, name, [fields…]]]`: the transfer's "
              "event (extrinsic 0); the last event of the register_work extrinsic above as "
              f"extrinsic 1 of a block where its content hash is already work #1 (a failed call "
              f"is charged its full weight, {work_weight}, so the fee is {work_fee}; `error` is "
              f"`{json.dumps(FAILED_ERROR)}` and `detail` is `{json.dumps(FAILED_DETAIL)}`, the "
              "reference runtime's text: any text is valid there, see 3.7); and an event "
              "of block initialization (no extrinsic index: nil).")
    g.add("event.transfer", codec.encode(EventRecord(0, balances.Transfer(
        ALICE.public, BOB.public, TRANSFER_AMOUNT))))
    g.add("event.failed", codec.encode(EventRecord(1, system.ExtrinsicFailed(
        work_weight, work_fee, FAILED_ERROR, FAILED_DETAIL))))
    g.add("event.authorities_changed", codec.encode(EventRecord(None, validators.AuthoritiesChanged(
        (ALICE.public, BOB.public)))))
    groups.append(g)

    ext_root = execution.extrinsics_root([raw])
    header = Header(parent_hash=gh, number=1, state_root=HEADER_STATE_ROOT,
                    extrinsics_root=ext_root, timestamp=HEADER_TIMESTAMP,
                    slot=HEADER_TIMESTAMP // 2000, author=ALICE.public)
    seal = seal_header(ALICE, header)
    vote = sign_precommit(ALICE, 1, 0, header)
    justification = Justification(1, 0, header.hash, 1, (vote,))
    g = Group("Header, seal, precommit, justification, block",
              "A fixed header (not an executed block): parent = the dev genesis hash, number 1, "
              "state root `blake2_256(b\"opus/spec-vectors/state\")`, extrinsics root of the "
              f"one-extrinsic body `[transfer.extrinsic]`, timestamp {HEADER_TIMESTAMP}, slot "
              f"{HEADER_TIMESTAMP // 2000}, author Alice; sealed by Alice; a precommit by Alice "
              "for round 1, set id 0; the justification holding it; the block with body "
              "`[transfer.extrinsic]`, the seal and the justification.")
    g.add("header.extrinsics_root", ext_root)
    g.add("header.encoding", codec.encode(header))
    g.add("header.hash", header.hash)
    g.add("header.seal_message", seal_message(header.hash))
    g.add("header.seal", seal)
    g.add("precommit.message", precommit_message(1, 0, header.hash, 1))
    g.add("precommit.signature", vote.signature)
    g.add("justification.encoding", codec.encode(justification))
    g.add("block.encoding", codec.encode(Block(header, (raw,), seal, justification)))
    groups.append(g)

    built = execution.build_block(state, nodes, genesis.header, [raw],
                                  timestamp=HEADER_TIMESTAMP, author=ALICE, genesis_hash=gh)
    block1 = built.block
    g = Group("Dev chain block 1 (executed)",
              "`build_block` on the dev genesis with the candidate `[transfer.extrinsic]`, "
              f"timestamp {HEADER_TIMESTAMP}, author Alice: a block every node imports. Its state "
              "root covers the fee (paid to Alice, the author, at the end of the block), the "
              "nonce bump and the transfer; its events are the transfer's three event records.")
    g.add("block1.state_root", block1.header.state_root)
    g.add("block1.header", codec.encode(block1.header))
    g.add("block1.hash", block1.hash)
    g.add("block1.seal", block1.seal)
    g.add("block1.block", codec.encode(block1))
    for i, record in enumerate(built.executed.events):
        g.add(f"block1.event.{i}", codec.encode(record))
    alice_key = system.account.key(ALICE.public)
    g.add("block1.alice_account.key", alice_key)
    g.add("block1.alice_account.value", built.executed.changes[alice_key] or b"")
    groups.append(g)

    store = trie.MemoryNodeStore()
    update = trie.trie_update(store, trie.EMPTY_ROOT, TRIE_ITEMS)
    store.put_nodes(update.new_nodes)
    proof = trie.prove(store, update.root, TRIE_PROOF_KEYS)
    g = Group("State trie",
              "The trie over `{b\"alice\": b\"1\", b\"bob\": b\"2\", b\"charlie\": b\"3\", "
              "b\"dave\": b\"4\", b\"eve\": b\"5\", b\"ferdie\": b\"6\"}`; the path (64 nibbles, "
              "as hex digits) of `b\"alice\"`; a read proof for the keys `b\"alice\"` (present, "
              "value `b\"1\"`) and `b\"zed\"` (absent), its nodes in proof order; and the root "
              "of the empty trie.")
    g.add("trie.empty_root", trie.EMPTY_ROOT)
    g.add("trie.path.alice", blake2_256(b"alice").hex())
    g.add("trie.root", update.root)
    for i, node in enumerate(proof):
        g.add(f"trie.proof.{i}", node)
    groups.append(g)

    prevote = sign_vote(ALICE, Phase.PREVOTE, 1, 0, header.hash, 1)
    precommit = sign_vote(ALICE, Phase.PRECOMMIT, 1, 0, header.hash, 1)
    assert precommit.as_precommit() == vote  # a precommit is a justification's entry
    votes_message = encode_vote_message(VoteMessage((prevote, precommit), None))
    g = Group("Votes",
              "Alice's prevote and precommit in round 1 of authority set 0 for the fixed header "
              "of spec.md section 7 (`header.hash` = "
              f"`{_hex(header.hash)}`, number 1): the prevote's signed message and signature, "
              "both votes as `SignedVote`s (the precommit's signature is spec.md's "
              "`precommit.signature`), a `VoteMessage` of the two votes without a commit, and "
              "one of no votes whose commit is spec.md's `justification.encoding`.",
              region="vote-vectors")
    g.add("prevote.message", prevote_message(1, 0, header.hash, 1))
    g.add("prevote.signature", prevote.signature)
    g.add("vote.prevote", codec.encode(prevote))
    g.add("vote.precommit", codec.encode(precommit))
    g.add("vote_message.votes", votes_message)
    g.add("vote_message.commit", encode_vote_message(VoteMessage((), justification)))
    groups.append(g)

    g = Group("Gossip batches",
              "A `TxBatch` of `transfer.extrinsic` and `register_work.extrinsic` (section 7), "
              "and a `VoteBatch` of one vote message, network.md's `vote_message.votes` "
              "(Alice's prevote and precommit for the fixed header of section 7).",
              region="gossip-vectors")
    g.add("gossip.tx_batch", encode_tx_batch((raw, work_raw)))
    g.add("gossip.vote_batch", encode_vote_batch((votes_message,)))
    groups.append(g)
    return groups


def vectors(doc: str = "spec") -> dict[str, str]:
    """Every vector ``doc`` ("spec" or "network") shows, by label."""
    regions = DOC_VECTOR_REGIONS[doc]
    out: dict[str, str] = {}
    for group in vector_groups():
        if group.region not in regions:
            continue
        for label, value in group.vectors:
            assert label not in out, label
            out[label] = value
    return out


def vectors_markdown(region: str = "vectors") -> str:
    parts = []
    for group in vector_groups():
        if group.region != region:
            continue
        body = "\n".join(f"vector:{label} = {value}" for label, value in group.vectors)
        parts.append(f"#### {group.title}\n\n{group.text}\n\n```\n{body}\n```\n")
    return "\n".join(parts)


def generated_regions() -> dict[str, str]:
    check_weight_formulas()
    regions = {
        "constants": constants_block(),
        "core-types": core_types_block(),
        "decode-errors": errors_block(codec.DecodeError, ""),
        "invalid-transaction": errors_block(executive.InvalidTransaction, ""),
        "block-errors": errors_block(execution.BlockError, ""),
    }
    for name in MODULE_NAMES:
        regions[f"module-{name}"] = module_block(name)
    for region in DOC_VECTOR_REGIONS["spec"]:
        regions[region] = vectors_markdown(region)
    return regions


def network_regions() -> dict[str, str]:
    """The generated regions of docs/network.md."""
    return {region: vectors_markdown(region) for region in DOC_VECTOR_REGIONS["network"]}


# ---------------------------------------------------------------------------
# Reading and writing docs/spec.md

REGION = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: "
    r"(?P=name) -->)",
    re.DOTALL,
)


def doc_regions(text: str) -> dict[str, str]:
    return {m.group("name"): m.group("body") for m in REGION.finditer(text)}


def rewrite(text: str, regions: dict[str, str], name: str = "docs/spec.md") -> str:
    missing = set(regions) - set(doc_regions(text))
    if missing:
        raise SystemExit(f"{name} lacks the generated regions {sorted(missing)}")
    return REGION.sub(lambda m: m.group(1) + regions[m.group("name")] + m.group(4), text)


def documents() -> list[tuple[Path, dict[str, str]]]:
    """Each document with generated regions, and what they should hold."""
    return [(DOC_PATH, generated_regions()), (NETWORK_DOC_PATH, network_regions())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--markdown", action="store_true", help="print the generated regions")
    mode.add_argument("--check", action="store_true", help="exit 1 if a document is stale")
    mode.add_argument("--write", action="store_true", help="update the documents in place")
    args = parser.parse_args(argv)
    if args.markdown:
        for path, regions in documents():
            print(f"<!-- {path.relative_to(ROOT)} -->\n")
            for name, body in regions.items():
                print(f"<!-- BEGIN GENERATED: {name} -->\n{body}<!-- END GENERATED: {name} -->\n")
        return 0
    if not (args.check or args.write):
        print(json.dumps({"spec": vectors("spec"), "network": vectors("network")}, indent=2))
        return 0
    stale = 0
    for path, regions in documents():
        name = str(path.relative_to(ROOT))
        text = path.read_text()
        updated = rewrite(text, regions, name)
        if args.write:
            if updated != text:
                path.write_text(updated)
            print(f"{name} " + ("updated" if updated != text else "already up to date"))
        elif updated != text:
            print(f"{name} is out of date: run python scripts/spec_vectors.py --write")
            stale += 1
        else:
            print(f"{name} is up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
