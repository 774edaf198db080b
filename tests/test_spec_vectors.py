"""docs/spec.md and the code cannot drift apart.

* Every ``vector:<label> = <value>`` line of docs/spec.md must equal what the code produces
  now (``scripts/spec_vectors.py``), and every vector the generator makes must be in the doc.
* The generated reference blocks (calls, events, errors, storage, constants) must be current.
* The central vectors are rebuilt from the *text* of the spec alone, with plain msgpack,
  PyNaCl and hashlib (not the runtime's codec), so the prose is checked too.
* Every ``module.Name`` the doc mentions exists, and every type it uses is defined in it.
* docs/network.md's finality vote vectors, and spec.md section 8's gossip batches, likewise
  (checked against ``runtime.finality_types`` and ``p2p.protocol``).

After an intentional wire-format change: ``python scripts/spec_vectors.py --write``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re
import sys
import unicodedata
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import nacl.pwhash
import nacl.secret
import nacl.signing
import pytest
from mnemonic import Mnemonic

from client import keys
from genesis import build_genesis, dev_spec
from p2p.protocol import decode_tx_batch, decode_vote_batch, encode_tx_batch, encode_vote_batch
from runtime import codec, trie
from runtime.block import Header, Justification, decode_block
from runtime.codec import MAX_DECODE_SIZE
from runtime.crypto import DEV_ACCOUNT_NAMES, decode_address, dev_keypair
from runtime.execution import build_block, execute_block
from runtime.extrinsic import Era, decode_extrinsic, sign_extrinsic
from runtime.finality_types import decode_vote_message
from runtime.modules import MODULE_NAMES, provenance
from runtime.modules.system import AccountInfo, ExtrinsicFailed
from runtime.state import MemoryState
from runtime.support import CALLS, EVENT_TYPES, Call, DispatchError, StorageMap, StorageValue

# Section 6's executive.SPEC_VERSION: the version every extrinsic vector is signed for
# (2 since works may carry a soft binding).
SPEC_VERSION = 2

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "spec.md"
NETWORK_DOC_PATH = ROOT / "docs" / "network.md"
RPC_DOC_PATH = ROOT / "docs" / "rpc.md"
VECTOR_LINE = re.compile(r"^vector:(?P<label>[A-Za-z0-9_.\-]+) = (?P<value>.+)$", re.MULTILINE)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spec_vectors", ROOT / "scripts" /
                                                  "spec_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("spec_vectors", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC_PATH.read_text()


def vector_lines(text: str, name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in VECTOR_LINE.finditer(text):
        label = match.group("label")
        assert label not in found, f"vector {label} appears twice in {name}"
        found[label] = match.group("value").strip()
    assert found, f"no vector lines found in {name}"
    return found


@pytest.fixture(scope="module")
def doc(doc_text: str) -> dict[str, str]:
    return vector_lines(doc_text, "docs/spec.md")


@pytest.fixture(scope="module")
def network_text() -> str:
    return NETWORK_DOC_PATH.read_text()


@pytest.fixture(scope="module")
def network_doc(network_text: str) -> dict[str, str]:
    return vector_lines(network_text, "docs/network.md")


# Helpers: the primitives the spec is written in, independent of runtime.codec.


def b(value: str) -> bytes:
    assert value.startswith("0x"), value
    return bytes.fromhex(value[2:])


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def sign(seed: bytes, message: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).sign(message).signature)


def verify(public: bytes, message: bytes, signature: bytes) -> None:
    nacl.signing.VerifyKey(public).verify(message, signature)  # raises if invalid


def dev_seed(name: str) -> bytes:
    return blake(b"//" + name.capitalize().encode())


def nibbles(data: bytes) -> bytes:
    return bytes(n for byte in data for n in (byte >> 4, byte & 15))


_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32m_address(public: bytes) -> str:
    """Section 2: hrp "opus", 8-to-5-bit regrouping with zero padding, bech32m checksum."""
    groups: list[int] = []
    acc = bits = 0
    for byte in public:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            groups.append((acc >> bits) & 31)
    if bits:
        groups.append((acc << (5 - bits)) & 31)
    values = [ord(c) >> 5 for c in "opus"] + [0] + [ord(c) & 31 for c in "opus"] + groups
    chk = 1
    for v in values + [0] * 6:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    chk ^= 0x2BC830A3
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return "opus1" + "".join(_CHARSET[d] for d in groups + checksum)


SIGNING_DOMAIN = "opus/extrinsic/v1"
GENESIS_BALANCE = 10**18


# ---------------------------------------------------------------------------
# The doc equals the generator's output, and the generator covers the code.


def test_every_vector_in_the_doc_is_what_the_code_produces(gen: ModuleType,
                                                           doc: dict[str, str]) -> None:
    expected: dict[str, str] = gen.vectors()
    missing = [label for label in expected if label not in doc]
    unknown = [label for label in doc if label not in expected]
    wrong = [label for label in expected if label in doc and doc[label] != expected[label]]
    hint = " (regenerate with: python scripts/spec_vectors.py --write)"
    assert not missing, f"vectors missing from docs/spec.md: {missing}{hint}"
    assert not unknown, f"docs/spec.md has vectors the code no longer makes: {unknown}{hint}"
    assert not wrong, f"docs/spec.md vectors differ from the code: {wrong}{hint}"


def test_every_vector_in_network_md_is_what_the_code_produces(
        gen: ModuleType, network_doc: dict[str, str]) -> None:
    assert network_doc == gen.vectors("network"), (
        "docs/network.md's vectors differ from the code: "
        "python scripts/spec_vectors.py --write")


def test_generated_reference_blocks_are_current(gen: ModuleType, doc_text: str,
                                                network_text: str) -> None:
    for path, regions in gen.documents():
        in_doc = gen.doc_regions(path.read_text())
        for name, body in regions.items():
            assert name in in_doc, f"{path.name} lacks the generated region {name!r}"
            assert in_doc[name] == body, (
                f"generated region {name!r} of {path.name} is stale: "
                "run python scripts/spec_vectors.py --write"
            )


def test_generator_covers_every_call_and_storage_map(gen: ModuleType) -> None:
    every_call = {f"{m}.{f}" for m, f in CALLS}
    assert set(gen.EXAMPLE_CALLS) == every_call
    assert set(gen.WEIGHTS) == every_call
    gen.check_weight_formulas()
    prefixes = {
        item.prefix.decode()
        for name in MODULE_NAMES
        for item in vars(gen.MODULES[name]).values()
        if isinstance(item, StorageMap)
    }
    assert prefixes == set(gen.MAP_KEYS)


def test_every_name_the_doc_mentions_exists(gen: ModuleType, doc_text: str) -> None:
    known = {f"{m}.{f}" for m, f in CALLS} | {f"{m}.{n}" for m, n in EVENT_TYPES}
    stack: list[type] = [DispatchError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        known.add(cls.error_name())  # type: ignore[attr-defined]
    known |= {name.removesuffix("()") for name, _ in gen.CONSTANTS}
    modules = "|".join(MODULE_NAMES)
    mentioned = set(re.findall(rf"\b(?:{modules})\.[A-Za-z_]+\b", doc_text))
    unknown = sorted(mentioned - known)
    assert not unknown, f"docs/spec.md mentions names the code does not have: {unknown}"


BUILTIN_TYPES = {"Call", "Event"}
# A field's type (``name: Type``), an array's items (``of Type``), a storage value (``-> Type``).
TYPE_USE = re.compile(r"(?:\b[a-z_]+:|\bof|->) ([A-Z][A-Za-z]*)\b")


def test_every_type_the_doc_uses_is_defined(gen: ModuleType, doc_text: str) -> None:
    """A type named in a generated block (a field's type, an array's items) has its own
    ``struct`` or ``enum`` line: ``record_usage_batch(entries: array<=64 of RecordUsage)``
    once named a struct the spec defined nowhere."""
    generated = "".join(body for name, body in gen.doc_regions(doc_text).items()
                        if "vectors" not in name)
    used = set(TYPE_USE.findall(generated)) - BUILTIN_TYPES
    defined = set(re.findall(r"^(?:struct|enum) ([A-Za-z]+) =", generated, re.MULTILINE))
    assert used, "no type uses found: the pattern no longer matches the generated blocks"
    assert used <= defined, f"types used but defined nowhere in docs/spec.md: {used - defined}"


def test_every_storage_item_is_in_the_doc(gen: ModuleType, doc_text: str) -> None:
    for name in MODULE_NAMES:
        for item in vars(gen.MODULES[name]).values():
            if isinstance(item, StorageValue):
                assert f"value {item.key.decode()} ->" in doc_text
            elif isinstance(item, StorageMap):
                assert f"map   {item.prefix.decode()} ++" in doc_text


# ---------------------------------------------------------------------------
# Section 2: keys and addresses, from the spec's text.


@pytest.mark.parametrize("name", DEV_ACCOUNT_NAMES)
def test_dev_accounts(doc: dict[str, str], name: str) -> None:
    seed = dev_seed(name)
    if f"{name}.seed" in doc:
        assert b(doc[f"{name}.seed"]) == seed
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    assert b(doc[f"{name}.public"]) == public
    address = doc[f"{name}.address"]
    assert address == bech32m_address(public)
    assert len(address) == 63 and address.startswith("opus1")
    assert decode_address(address) == public
    assert decode_address(address.upper()) == public


# ---------------------------------------------------------------------------
# Section 2.1: secret phrases and key files, from the spec's text.

PHRASE_LABELS = ("subkey", "dev", "password", "words24")
# What section 2.1 says the vectors are: values published by others (subkey's example,
# polkadot-js's DEV_SEED, substrate-bip39's test vectors).
PUBLISHED = {
    "phrase.subkey.public": "0xe7988839e659db69ae9ad08c3ef2ccabba44236024a039ebad83bd8fc75dccfb",
    "phrase.dev.seed": "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e",
    "phrase.password.seed": "0xf4956be6960bc145cdab782e649a5056598fd07cd3f32ceb73421c3da2783324",
    "phrase.words24.seed": "0x7c60c555126c297deddddd59f8cdcdc9e3608944455824dd604897984b5cc369",
}


def bip39_entropy(phrase: str) -> bytes:
    """Step 1 of 2.1: each word is its 11-bit index in the list; the entropy, then a
    checksum of the first bits of its sha256."""
    words = unicodedata.normalize("NFKD", phrase).split()
    assert len(words) in (12, 15, 18, 21, 24)
    word_list = Mnemonic("english").wordlist
    assert len(word_list) == 2048
    bits = "".join(format(word_list.index(word), "011b") for word in words)
    ent = len(bits) * 32 // 33
    entropy = int(bits[:ent], 2).to_bytes(ent // 8, "big")
    checksum_bits = ent // 32
    first_byte = hashlib.sha256(entropy).digest()[0]
    assert bits[ent:] == format(first_byte >> (8 - checksum_bits), f"0{checksum_bits}b")
    return entropy


@pytest.mark.parametrize("label", PHRASE_LABELS)
def test_secret_phrases_from_the_text(doc: dict[str, str], label: str) -> None:
    phrase = json.loads(doc[f"phrase.{label}.words"])
    password = json.loads(doc[f"phrase.{label}.password"])
    entropy = bip39_entropy(phrase)
    assert b(doc[f"phrase.{label}.entropy"]) == entropy
    salt = b"mnemonic" + unicodedata.normalize("NFKD", password).encode()
    seed = hashlib.pbkdf2_hmac("sha512", entropy, salt, 2048, 64)[:32]
    assert b(doc[f"phrase.{label}.seed"]) == seed
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    assert b(doc[f"phrase.{label}.public"]) == public
    assert doc[f"phrase.{label}.address"] == bech32m_address(public)
    # The secret URI of the grammar names the same key.
    suri = f"{phrase}///{password}" if password else phrase
    assert keys.keypair_from_suri(suri).seed == seed


def test_secret_phrase_vectors_are_the_published_ones(doc: dict[str, str]) -> None:
    assert {label: doc[label] for label in PUBLISHED} == PUBLISHED
    assert len(json.loads(doc["phrase.words24.words"]).split()) == 24
    assert json.loads(doc["phrase.password.password"]) != ""


def test_key_file_from_the_text(doc: dict[str, str]) -> None:
    document = json.loads(doc["keyfile.document"])
    passphrase = json.loads(doc["keyfile.passphrase"])
    assert list(document) == ["format", "address", "encrypted", "kdf", "cipher", "nonce",
                              "ciphertext"]
    assert (document["format"], document["encrypted"], document["cipher"]) == (
        "opus-key/1", True, "xsalsa20-poly1305")
    kdf = document["kdf"]
    assert kdf["name"] == "argon2id"
    salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(document["nonce"])
    sealed = bytes.fromhex(document["ciphertext"])
    assert (len(salt), len(nonce), len(sealed)) == (16, 24, 48)
    stretched = nacl.pwhash.argon2id.kdf(
        32, unicodedata.normalize("NFKC", passphrase).encode(), salt,
        opslimit=kdf["opslimit"], memlimit=kdf["memlimit"])
    assert b(doc["keyfile.secretbox_key"]) == stretched
    seed = nacl.secret.SecretBox(stretched).decrypt(sealed, nonce)
    assert seed == b(doc["phrase.subkey.seed"])
    assert document["address"] == bech32m_address(bytes(nacl.signing.SigningKey(seed)
                                                        .verify_key))
    # The code opens the documented file, and only with its passphrase.
    assert keys.open_key(document, passphrase).seed == seed
    with pytest.raises(keys.WrongPassword):
        keys.open_key(document, passphrase + " ")


def test_key_file_limits_in_the_text_are_the_code_s(doc_text: str) -> None:
    text = " ".join(doc_text.split())  # the prose is wrapped anywhere
    assert (f"opslimit {keys.OPSLIMIT} and memlimit {keys.MEMLIMIT:,} "
            f"({keys.MEMLIMIT // 2**20} MiB)") in text
    assert (f"opslimit 1 to {keys.MAX_OPSLIMIT} and memlimit "
            f"{nacl.pwhash.argon2id.MEMLIMIT_MIN:,} to {keys.MAX_MEMLIMIT:,}") in text
    assert f"at most {keys.MAX_KEY_FILE_BYTES:,} bytes" in text


# ---------------------------------------------------------------------------
# Section 1: codec forms.


def test_u128_forms(doc: dict[str, str]) -> None:
    assert b(doc["codec.account_info.small"]) == pack([1, 10**12])
    assert b(doc["codec.account_info.u64_max"]) == pack([0, 2**64 - 1])
    big = b(doc["codec.account_info.big"])
    assert big == pack([0, (2**64).to_bytes(16, "big")])
    assert big[2:4] == b"\xc4\x10"
    assert codec.decode(big, AccountInfo) == AccountInfo(0, 2**64)
    assert b(doc["codec.era.mortal"]) == pack([10, 64])


@pytest.mark.parametrize(
    ("data", "target", "error"),
    [
        (bytes.fromhex("92cc0500"), Era, codec.NonCanonical),  # 5 written as cc 05
        (bytes.fromhex("92d00500"), Era, codec.NonCanonical),  # a signed integer form
        (bytes.fromhex("92d9016100"), Era, codec.WrongType),  # a str for an integer
        (pack([1.0, 0]), Era, codec.WrongType),  # a float
        (pack([True, 0]), Era, codec.WrongType),  # a bool for an integer
        (pack([-1, 0]), Era, codec.OutOfRange),
        (pack([0, 2**32]), Era, codec.OutOfRange),  # period is a u32
        (pack([0, 0, 0]), Era, codec.WrongFieldCount),
        (pack([0]), Era, codec.WrongFieldCount),
        (pack({}), Era, codec.InvalidMsgpack),  # maps are never used
        (pack(msgpack.ExtType(1, b"x")), Era, codec.InvalidMsgpack),
        (pack([0, 0]) + b"\x00", Era, codec.TrailingBytes),
        (b"\x91" * 1025 + b"\xc0", Era, codec.InvalidMsgpack),  # nested too deep
        (b"", Era, codec.InvalidMsgpack),
        (pack([0, (5).to_bytes(16, "big")]), AccountInfo, codec.NonCanonical),  # small u128
        (pack([0, (5).to_bytes(8, "big")]), AccountInfo, codec.WrongType),  # not 16 bytes
        (pack([0, 1]) + bytes(MAX_DECODE_SIZE), AccountInfo, codec.Oversize),
        (pack(["system", "nope", []]), Call, codec.OutOfRange),  # unknown call
        (pack(["system", "remark"]), Call, codec.WrongType),
        (pack(["system", "remark", [b"x" * 4097]]), Call, codec.TooLong),
        (pack(["system", "remark", ["text"]]), Call, codec.WrongType),  # str for bin
    ],
)
def test_strict_decoding_rules(data: bytes, target: Any, error: type[Exception]) -> None:
    """Section 1.3: each rule gives its named error."""
    with pytest.raises(error):
        codec.decode(data, target)


def test_size_limits() -> None:
    from runtime.block import Block
    from runtime.extrinsic import Extrinsic

    assert Extrinsic.MAX_SIZE == 65_536 and Block.MAX_SIZE == 1_048_576
    with pytest.raises(codec.Oversize):
        decode_extrinsic(b"\x90" * 65_537)


# ---------------------------------------------------------------------------
# Section 3: extrinsics, rebuilt from the spec's text.


def _check_extrinsic(doc: dict[str, str], prefix: str, call: list[Any], nonce: int,
                     era: list[int], birth_hash: bytes) -> bytes:
    genesis_hash = b(doc["genesis.hash"])
    alice = b(doc["alice.public"])
    seed = b(doc["alice.seed"])
    payload = pack([SIGNING_DOMAIN, genesis_hash, SPEC_VERSION, birth_hash, alice, nonce, 0, era,
                    call])
    assert b(doc[f"{prefix}.signing_payload"]) == payload
    signature = sign(seed, payload)
    assert b(doc[f"{prefix}.signature"]) == signature
    verify(alice, payload, signature)
    ext = pack([alice, signature, nonce, 0, era, call])
    assert b(doc[f"{prefix}.extrinsic"]) == ext
    assert b(doc[f"{prefix}.hash"]) == blake(ext)
    decoded = decode_extrinsic(ext)
    assert codec.encode(decoded) == ext
    assert decoded.signature_valid(genesis_hash, SPEC_VERSION, birth_hash)
    return ext


def test_transfer_immortal(doc: dict[str, str]) -> None:
    call = ["balances", "transfer", [b(doc["bob.public"]), 10**12]]
    assert b(doc["transfer.call"]) == pack(call)
    genesis_hash = b(doc["genesis.hash"])
    ext = _check_extrinsic(doc, "transfer", call, 0, [0, 0], genesis_hash)
    assert int(doc["transfer.length"]) == len(ext)
    assert int(doc["transfer.fee"]) == 100_000_000 + 1_000_000 * len(ext) + 1_000 * 120_000


def test_transfer_mortal(doc: dict[str, str]) -> None:
    birth_hash = blake(b"opus/spec-vectors/block-10")
    assert b(doc["transfer_mortal.birth_hash"]) == birth_hash
    call = ["balances", "transfer", [b(doc["bob.public"]), 10**12]]
    _check_extrinsic(doc, "transfer_mortal", call, 0, [10, 64], birth_hash)
    # The same extrinsic signed for another birth block does not verify.
    other = decode_extrinsic(b(doc["transfer_mortal.extrinsic"]))
    assert not other.signature_valid(b(doc["genesis.hash"]), SPEC_VERSION,
                                     b(doc["genesis.hash"]))


def _register_work_args(doc: dict[str, str]) -> list[Any]:
    sha = hashlib.sha256
    content_hash = sha(b"Opus Chain spec vector: Sunrise over the harbour").digest()
    assert b(doc["register_work.content_hash"]) == content_hash
    return [
        content_hash, "image", "Sunrise over the harbour",
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        sha(b'{"title":"Sunrise over the harbour"}').digest(),
        [[b(doc["alice.public"]), 7000], [b(doc["bob.public"]), 3000]],
        [],
    ]


def test_register_work(doc: dict[str, str]) -> None:
    call = ["provenance", "register_work", _register_work_args(doc)]
    assert b(doc["register_work.call"]) == pack(call)
    _check_extrinsic(doc, "register_work", call, 1, [0, 0], b(doc["genesis.hash"]))


def test_register_work_with_a_soft_binding(doc: dict[str, str]) -> None:
    """Section 1.1 (optional trailing fields) and 4.4: the binding is one more field, and
    without it the arguments are the 7 fields of spec version 1, byte for byte."""
    binding = ["pdq", blake(b"opus/spec-vectors/pdq"), 92]
    assert b(doc["soft_binding.pdq"]) == pack(binding)
    args = _register_work_args(doc)
    assert b(doc["register_work_pdq.args"]) == pack([*args, binding])
    assert b(doc["register_work_pdq.call"]) == pack(["provenance", "register_work",
                                                     [*args, binding]])
    decoded = codec.decode(pack([*args, binding]), provenance.RegisterWork)
    assert decoded.soft_binding == provenance.SoftBinding("pdq", binding[1], 92)
    plain = codec.decode(pack(args), provenance.RegisterWork)
    assert plain.soft_binding is None and codec.encode(plain) == pack(args)
    with pytest.raises(codec.NonCanonical):  # the absent binding written as nil
        codec.decode(pack([*args, None]), provenance.RegisterWork)
    with pytest.raises(codec.WrongFieldCount):
        codec.decode(pack(args[:-1]), provenance.RegisterWork)


def test_record_usage_batch_from_the_text(doc: dict[str, str], doc_text: str) -> None:
    """Section 4.7: a batch is ``[entries]``, each entry a ``RecordUsage`` whose fields are
    ``record_usage``'s, in the order the spec gives."""
    assert ("struct RecordUsage = [license_id: u64, purpose: Purpose, subject: str<=256, "
            "units: u64, memo: str<=256]") in doc_text
    entries = [[1, "ai_training", "dataset-2024", 1, ""], [2, "publication", "anthology", 0,
                                                          "print run"]]
    assert b(doc["call.usage.record_usage_batch"]) == pack(
        ["usage", "record_usage_batch", [entries]])
    assert json.loads(doc["call.usage.record_usage_batch.args"]) == {"entries": [
        dict(zip(("license_id", "purpose", "subject", "units", "memo"), e, strict=True))
        for e in entries]}


def test_example_calls_decode_strictly(doc: dict[str, str]) -> None:
    labels = [label for label in doc if label.startswith("call.") and
              not label.endswith(".args")]
    assert {label.removeprefix("call.") for label in labels} == {f"{m}.{f}" for m, f in CALLS}
    for label in labels:
        raw = b(doc[label])
        call = codec.decode(raw, Call)
        assert f"call.{call.module}.{call.function}" == label
        assert codec.encode(call, Call) == raw
        assert isinstance(json.loads(doc[label + ".args"]), dict)


# ---------------------------------------------------------------------------
# Section 4: event records.


def test_event_records(doc: dict[str, str], doc_text: str) -> None:
    alice, bob = b(doc["alice.public"]), b(doc["bob.public"])
    assert b(doc["event.transfer"]) == pack([0, ["balances", "Transfer", [alice, bob, 10**12]]])
    assert b(doc["event.authorities_changed"]) == pack(
        [None, ["validators", "AuthoritiesChanged", [[alice, bob]]]])
    # event.failed, rebuilt whole from its description: the error and the detail text the
    # vector uses are stated there (the detail is the reference runtime's wording, 3.7).
    stated = re.search(r"`error` is `(\"[^`]*\")` and `detail` is `(\"[^`]*\")`", doc_text)
    assert stated, "the event.failed vector's text must state its error and detail"
    error, detail = json.loads(stated.group(1)), json.loads(stated.group(2))
    assert error == "provenance.AlreadyRegistered"
    length = len(b(doc["register_work.extrinsic"]))
    weight = 100_000 + 150_000 + 5_000 * 2  # register_work, 2 creators, no parents
    fee = 100_000_000 + 1_000_000 * length + 1_000 * weight
    assert b(doc["event.failed"]) == pack(
        [1, ["system", "ExtrinsicFailed", [weight, fee, error, detail]]])


def test_events_are_in_no_consensus_commitment(doc: dict[str, str], doc_text: str) -> None:
    """Section 3.7: no hash covers an event, so ``detail`` is not consensus. The header is
    the seven fields of 5.1 (no events root), and a block's state writes (what the state
    root covers) hold none of its events: a failed call's detail is nowhere in them."""
    assert "are **not consensus**: no hash covers them" in doc_text
    assert [f.name for f in dataclasses.fields(Header)] == [
        "parent_hash", "number", "state_root", "extrinsics_root", "timestamp", "slot", "author"]
    genesis = build_genesis(dev_spec())
    nodes = trie.MemoryNodeStore()
    nodes.put_nodes(trie.trie_update(nodes, trie.EMPTY_ROOT, genesis.state).new_nodes)
    register = b(doc["register_work.extrinsic"])  # Alice's nonce 1: a transfer comes first
    again = sign_extrinsic(dev_keypair("alice"), decode_extrinsic(register).call, 2,
                           genesis.hash, SPEC_VERSION)
    built = build_block(MemoryState(genesis.state), nodes, genesis.header,
                        [b(doc["transfer.extrinsic"]), register, codec.encode(again)],
                        timestamp=1_700_000_000_000, author=dev_keypair("alice"),
                        genesis_hash=genesis.hash)
    assert len(built.block.extrinsics) == 3 and not built.invalid
    failed = [r.event for r in built.executed.events if isinstance(r.event, ExtrinsicFailed)]
    assert [e.error for e in failed] == ["provenance.AlreadyRegistered"]
    detail = failed[0].detail.encode()
    assert detail
    committed = [codec.encode(built.block.header), *built.executed.changes,
                 *(v for v in built.executed.changes.values() if v is not None)]
    assert not any(detail in part for part in committed)


# ---------------------------------------------------------------------------
# Section 5: header, seal, votes, trie, genesis.


def single_item_trie_root(key: bytes, value: bytes) -> bytes:
    """A trie with one key is one leaf at depth 0 holding the whole 64-nibble path."""
    return blake(pack([0, nibbles(blake(key)), key, value]))


def test_header_seal_precommit_justification_block(doc: dict[str, str]) -> None:
    alice, seed = b(doc["alice.public"]), b(doc["alice.seed"])
    ext = b(doc["transfer.extrinsic"])
    ext_root = single_item_trie_root((0).to_bytes(4, "big"), ext)
    assert b(doc["header.extrinsics_root"]) == ext_root
    header = [b(doc["genesis.hash"]), 1, blake(b"opus/spec-vectors/state"), ext_root,
              1_700_000_000_000, 850_000_000, alice]
    assert b(doc["header.encoding"]) == pack(header)
    block_hash = blake(pack(header))
    assert b(doc["header.hash"]) == block_hash
    seal_message = b"opus/seal/v1" + block_hash
    assert b(doc["header.seal_message"]) == seal_message
    seal = sign(seed, seal_message)
    assert b(doc["header.seal"]) == seal
    verify(alice, seal_message, seal)
    vote_message = b"opus/precommit/v1" + pack([1, 0, block_hash, 1])
    assert b(doc["precommit.message"]) == vote_message
    vote = sign(seed, vote_message)
    assert b(doc["precommit.signature"]) == vote
    justification = [1, 0, block_hash, 1, [[alice, vote]]]
    assert b(doc["justification.encoding"]) == pack(justification)
    assert b(doc["block.encoding"]) == pack([header, [ext], seal, justification])
    block = decode_block(b(doc["block.encoding"]))
    assert block.hash == block_hash


def test_provenance_proof_keys_in_the_nodes_order(doc_text: str) -> None:
    """5.9 and rpc.md give the proof's two keys in the order opus_getProvenanceProof uses
    (``works`` first; tests/test_rpc_docs.py checks the node's answer), and the order does
    not change the proof."""
    spec_part = doc_text[doc_text.index("**Proving a registration"):]
    spec_part = spec_part[:spec_part.index("### 5.10")]
    assert spec_part.index('b"provenance:works:"') < spec_part.index(
        'b"provenance:work_by_content:"')
    assert "decode the first value as\n`Work`" in spec_part
    rpc_text = RPC_DOC_PATH.read_text()
    keys_line = next(line for line in rpc_text.splitlines() if line.startswith("The keys are"))
    assert keys_line.index("provenance:works:") < keys_line.index("provenance:work_by_content:")
    items = {b"provenance:works:" + (1).to_bytes(8, "big"): b"w",
             b"provenance:work_by_content:" + bytes(32): b"\x01", b"other": b"x"}
    store = trie.MemoryNodeStore()
    update = trie.trie_update(store, trie.EMPTY_ROOT, items)
    store.put_nodes(update.new_nodes)
    keys = list(items)[:2]
    assert trie.prove(store, update.root, keys) == trie.prove(store, update.root, keys[::-1])


def test_trie_root_and_proof(doc: dict[str, str]) -> None:
    items = {b"alice": b"1", b"bob": b"2", b"charlie": b"3", b"dave": b"4", b"eve": b"5",
             b"ferdie": b"6"}
    root = b(doc["trie.root"])
    assert b(doc["trie.empty_root"]) == blake(b"") == trie.EMPTY_ROOT
    assert trie.compute_root(items) == root
    # The trie module's docstring (the trie spec) states the same root.
    assert root.hex() in (trie.__doc__ or "")
    assert doc["trie.path.alice"] == blake(b"alice").hex()
    proof = [b(doc[f"trie.proof.{i}"]) for i in range(len(
        [label for label in doc if label.startswith("trie.proof.")]))]
    assert trie.verify_proof(root, proof, [b"alice", b"zed"]) == {b"alice": b"1", b"zed": None}
    # By hand (section 5.9): the root branch, then alice's leaf; zed's slot is empty.
    assert blake(proof[0]) == root
    kind, partial, children = msgpack.unpackb(proof[0])
    assert kind == 1 and len(children) == 16
    alice_path, zed_path = nibbles(blake(b"alice")), nibbles(blake(b"zed"))
    depth = len(partial) + 1
    assert children[alice_path[len(partial)]] == blake(proof[1])
    assert children[zed_path[len(partial)]] is None
    assert msgpack.unpackb(proof[1]) == [0, alice_path[depth:], b"alice", b"1"]
    with pytest.raises(trie.InvalidProof):
        trie.verify_proof(root, proof[:1], [b"alice"])


def test_dev_genesis(doc: dict[str, str]) -> None:
    count = len([label for label in doc if re.fullmatch(r"genesis\.state\.\d+\.key", label)])
    state = {b(doc[f"genesis.state.{i}.key"]): b(doc[f"genesis.state.{i}.value"])
             for i in range(count)}
    state_root = b(doc["genesis.state_root"])
    assert trie.compute_root(state) == state_root
    header = pack([bytes(32), 0, state_root, blake(b""), 0, 0, bytes(32)])
    assert b(doc["genesis.header"]) == header
    assert b(doc["genesis.hash"]) == blake(header)
    # Spot checks of the state against section 5.10.
    for name in DEV_ACCOUNT_NAMES:
        key = b"system:account:" + b(doc[f"{name}.public"])
        assert state[key] == pack([0, GENESIS_BALANCE])
    assert state[b"balances:total_issuance"] == pack(6 * GENESIS_BALANCE)
    assert state[b"validators:authorities"] == pack([b(doc["alice.public"])])
    assert state[b"validators:sudo"] == pack(b(doc["alice.public"]))
    assert state[b"validators:slot_duration"] == pack(2000)
    genesis = build_genesis(dev_spec())
    assert genesis.state == state
    assert genesis.hash == b(doc["genesis.hash"])


def test_dev_block_1_imports(doc: dict[str, str]) -> None:
    genesis = build_genesis(dev_spec())
    nodes = trie.MemoryNodeStore()
    nodes.put_nodes(trie.trie_update(nodes, trie.EMPTY_ROOT, genesis.state).new_nodes)
    block = decode_block(b(doc["block1.block"]))
    assert block.extrinsics == (b(doc["transfer.extrinsic"]),)
    assert codec.encode(block.header) == b(doc["block1.header"])
    assert block.hash == b(doc["block1.hash"]) == blake(b(doc["block1.header"]))
    verify(b(doc["alice.public"]), b"opus/seal/v1" + block.hash, b(doc["block1.seal"]))
    executed = execute_block(MemoryState(genesis.state), nodes, genesis.header, block,
                             genesis.hash)
    assert executed.trie.root == b(doc["block1.state_root"])
    events = [codec.encode(record) for record in executed.events]
    assert events == [b(doc[f"block1.event.{i}"]) for i in range(len(events))]
    assert f"block1.event.{len(events)}" not in doc
    # The fee went to Alice, the author: her balance only lost the amount sent.
    key = b(doc["block1.alice_account.key"])
    assert key == b"system:account:" + b(doc["alice.public"])
    assert executed.changes[key] == b(doc["block1.alice_account.value"])
    assert b(doc["block1.alice_account.value"]) == pack([1, GENESIS_BALANCE - 10**12])


# ---------------------------------------------------------------------------
# Section 8 and docs/network.md: gossip batches and finality votes, from the text.


def test_gossip_batches(doc: dict[str, str]) -> None:
    """Section 8: a batch is ``[[item, …]]`` (one field, the array of bins)."""
    transfer, work = b(doc["transfer.extrinsic"]), b(doc["register_work.extrinsic"])
    tx_batch = b(doc["gossip.tx_batch"])
    assert tx_batch == pack([[transfer, work]])
    assert tx_batch[:2] == bytes.fromhex("9192")
    assert decode_tx_batch(tx_batch).extrinsics == (transfer, work)
    assert encode_tx_batch((transfer, work)) == tx_batch
    # The form `[[x], [y]]` is no batch: one array per item is two fields.
    with pytest.raises(codec.WrongFieldCount):
        decode_tx_batch(pack([[transfer], [work]]))
    vote_batch = b(doc["gossip.vote_batch"])
    (message,) = decode_vote_batch(vote_batch).votes
    assert encode_vote_batch((message,)) == vote_batch == pack([[message]])
    with pytest.raises(codec.WrongFieldCount):
        decode_vote_batch(pack([[message], [message]]))


def test_votes(doc: dict[str, str], network_doc: dict[str, str], network_text: str) -> None:
    """network.md "Finality votes": a vote signs ``domain ++ encode(VoteTarget)``, with the
    domains ``opus/prevote/v1`` and ``opus/precommit/v1``; the message forms."""
    alice, seed = b(doc["alice.public"]), b(doc["alice.seed"])
    block_hash = b(doc["header.hash"])
    assert f"`header.hash` = `0x{block_hash.hex()}`" in network_text
    target = pack([1, 0, block_hash, 1])
    prevote_message = b"opus/prevote/v1" + target
    assert b(network_doc["prevote.message"]) == prevote_message
    prevote_signature = sign(seed, prevote_message)
    assert b(network_doc["prevote.signature"]) == prevote_signature
    precommit_signature = b(doc["precommit.signature"])
    verify(alice, b"opus/precommit/v1" + target, precommit_signature)
    prevote = ["prevote", 1, 0, block_hash, 1, alice, prevote_signature]
    precommit = ["precommit", 1, 0, block_hash, 1, alice, precommit_signature]
    assert b(network_doc["vote.prevote"]) == pack(prevote)
    assert b(network_doc["vote.precommit"]) == pack(precommit)
    votes = b(network_doc["vote_message.votes"])
    assert votes == pack([[prevote, precommit], None])
    justification = msgpack.unpackb(b(doc["justification.encoding"]))
    assert b(network_doc["vote_message.commit"]) == pack([[], justification])
    # What the node's gadget makes of them: every signature valid, the commit a justification.
    decoded = decode_vote_message(votes)
    assert [v.phase.value for v in decoded.votes] == ["prevote", "precommit"]
    assert all(v.signature_valid() for v in decoded.votes)
    assert decode_vote_message(b(network_doc["vote_message.commit"])).commit == codec.decode(
        b(doc["justification.encoding"]), Justification)
    # The spec's vote batch carries exactly this message.
    assert decode_vote_batch(b(doc["gossip.vote_batch"])).votes == (votes,)
