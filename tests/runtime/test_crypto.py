"""Keys, signatures, bech32m addresses and the dev accounts."""

from __future__ import annotations

import hashlib
import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import crypto
from runtime.crypto import InvalidAddress, InvalidKey

# Computed once from the code; a change here means every dev tool and doc is wrong.
ALICE_ADDRESS = "opus1sqtc0naznqecnzjt2sn5fpew27duk4kt2qyln8zwyu7hev9595nsg62p4g"
ALICE_PUBLIC = bytes.fromhex("801787cfa29833898a4b542744872e579bcb56cb5009f99c4e273d7cb0b42d27")
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def test_hashes() -> None:
    assert crypto.blake2_256(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
    assert crypto.sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert len(crypto.blake2_256(b"")) == 32


def test_alice_is_pinned() -> None:
    alice = crypto.dev_keypair("alice")
    assert alice.public == ALICE_PUBLIC
    assert alice.address == ALICE_ADDRESS
    assert alice.seed == crypto.blake2_256(b"//Alice")
    assert crypto.decode_address(ALICE_ADDRESS) == ALICE_PUBLIC


def test_dev_accounts_distinct_and_deterministic() -> None:
    keys = [crypto.dev_keypair(n) for n in crypto.DEV_ACCOUNT_NAMES]
    assert crypto.DEV_ACCOUNT_NAMES == ("alice", "bob", "charlie", "dave", "eve", "ferdie")
    assert len({k.public for k in keys}) == 6
    assert len({k.address for k in keys}) == 6
    assert len({k.seed for k in keys}) == 6
    for name, key in zip(crypto.DEV_ACCOUNT_NAMES, keys, strict=True):
        assert crypto.dev_keypair(name) == key
        assert crypto.dev_keypair(name.upper()) == key
        assert key.seed == crypto.blake2_256(b"//" + name.capitalize().encode())
    with pytest.raises(InvalidKey):
        crypto.dev_keypair("mallory")


def test_keypair_repr_hides_seed() -> None:
    alice = crypto.dev_keypair("alice")
    assert alice.seed.hex() not in repr(alice)
    assert ALICE_ADDRESS in repr(alice)


def test_seed_length_enforced() -> None:
    for n in (0, 31, 33, 64):
        with pytest.raises(InvalidKey):
            crypto.Keypair.from_seed(bytes(n))
    with pytest.raises(InvalidKey):
        crypto.encode_address(bytes(31))


# ---------------------------------------------------------------------------
# Signatures


def test_sign_and_verify() -> None:
    alice, bob = crypto.dev_keypair("alice"), crypto.dev_keypair("bob")
    sig = alice.sign(b"hello")
    assert len(sig) == crypto.SIGNATURE_LENGTH
    assert crypto.verify(alice.public, b"hello", sig)
    assert not crypto.verify(alice.public, b"hellO", sig)  # another message
    assert not crypto.verify(alice.public, b"", sig)
    assert not crypto.verify(bob.public, b"hello", sig)  # another key
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    assert not crypto.verify(alice.public, b"hello", tampered)


def test_verify_rejects_wrong_lengths() -> None:
    alice = crypto.dev_keypair("alice")
    sig = alice.sign(b"m")
    for bad in (b"", sig[:63], sig + b"\x00", sig + sig, bytes(64)):
        assert not crypto.verify(alice.public, b"m", bad)
    for bad_key in (b"", alice.public[:31], alice.public + b"\x00"):
        assert not crypto.verify(bad_key, b"m", sig)
    # A 32-byte string that is not a valid curve point must not raise.
    assert not crypto.verify(b"\xff" * 32, b"m", sig)


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=128), st.binary(max_size=128))
def test_property_signature_binds_message(seed: bytes, m1: bytes, m2: bytes) -> None:
    key = crypto.Keypair.from_seed(seed)
    sig = key.sign(m1)
    assert crypto.verify(key.public, m1, sig)
    assert crypto.verify(key.public, m2, sig) == (m1 == m2)


# ---------------------------------------------------------------------------
# Addresses


def test_address_shape() -> None:
    addr = crypto.dev_keypair("bob").address
    assert addr.startswith("opus1")
    assert len(addr) == 4 + 1 + 52 + 6
    assert set(addr[5:]) <= set(CHARSET)


@given(st.binary(min_size=32, max_size=32))
def test_property_address_round_trip(public: bytes) -> None:
    addr = crypto.encode_address(public)
    assert crypto.decode_address(addr) == public
    assert crypto.decode_address(addr.upper()) == public


def test_bech32m_reference_vectors() -> None:
    """The checksum is BIP-350's bech32m (valid test vectors from the BIP)."""
    for s in (
        "A1LQFN3A",
        "a1lqfn3a",
        "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
        "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
        "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
        "?1v759aa",
    ):
        hrp, _, data = s.lower().rpartition("1")
        values = [CHARSET.index(c) for c in data]
        assert crypto._polymod(crypto._hrp_expand(hrp) + values) == crypto._BECH32M_CONST


def _addresses() -> list[str]:
    rng = random.Random(7)
    return [ALICE_ADDRESS] + [crypto.encode_address(rng.randbytes(32)) for _ in range(3)]


@pytest.mark.parametrize("address", _addresses())
def test_every_single_substitution_is_detected(address: str) -> None:
    alphabet = CHARSET + "1bio" + string.ascii_uppercase + "-_ !"
    for i, original in enumerate(address):
        for c in alphabet:
            if c == original:
                continue
            typo = address[:i] + c + address[i + 1:]
            with pytest.raises(InvalidAddress):
                crypto.decode_address(typo)


@pytest.mark.parametrize("address", _addresses())
def test_every_adjacent_swap_is_detected(address: str) -> None:
    for i in range(len(address) - 1):
        if address[i] == address[i + 1]:
            continue
        swapped = address[:i] + address[i + 1] + address[i] + address[i + 2:]
        with pytest.raises(InvalidAddress):
            crypto.decode_address(swapped)


def test_deletions_and_insertions_are_detected() -> None:
    for i in range(5, len(ALICE_ADDRESS)):
        with pytest.raises(InvalidAddress):
            crypto.decode_address(ALICE_ADDRESS[:i] + ALICE_ADDRESS[i + 1:])
        for c in "qpl":
            with pytest.raises(InvalidAddress):
                crypto.decode_address(ALICE_ADDRESS[:i] + c + ALICE_ADDRESS[i:])


def _bech32m(hrp: str, data: list[int]) -> str:
    polymod = crypto._polymod(crypto._hrp_expand(hrp) + data + [0] * 6) ^ crypto._BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def test_wrong_hrp() -> None:
    data = [CHARSET.index(c) for c in ALICE_ADDRESS[5:-6]]
    for hrp in ("bc", "opu", "opuss", "sopus", "xpus", ""):
        with pytest.raises(InvalidAddress):
            crypto.decode_address(_bech32m(hrp, data))
    assert crypto.decode_address(_bech32m("opus", data)) == ALICE_PUBLIC


def test_wrong_payload_length_or_padding() -> None:
    data = [CHARSET.index(c) for c in ALICE_ADDRESS[5:-6]]
    for bad in (data[:-1], data + [0], data[:-2], []):
        with pytest.raises(InvalidAddress):
            crypto.decode_address(_bech32m("opus", bad))
    # 52 symbols carry 260 bits: the last 4 are padding and must be zero.
    with pytest.raises(InvalidAddress):
        crypto.decode_address(_bech32m("opus", data[:-1] + [data[-1] | 1]))


def test_bech32_not_bech32m_is_rejected() -> None:
    data = [CHARSET.index(c) for c in ALICE_ADDRESS[5:-6]]
    polymod = crypto._polymod(crypto._hrp_expand("opus") + data + [0] * 6) ^ 1  # BIP-173 const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    with pytest.raises(InvalidAddress):
        crypto.decode_address("opus1" + "".join(CHARSET[d] for d in data + checksum))


def test_mixed_case_and_junk_rejected() -> None:
    mixed = ALICE_ADDRESS[:10] + ALICE_ADDRESS[10:].upper()
    for bad in (mixed, "", "opus1", "opus", ALICE_ADDRESS + "q" * 40, " " + ALICE_ADDRESS,
                ALICE_ADDRESS + "\n", None, 5, ALICE_PUBLIC):
        with pytest.raises(InvalidAddress):
            crypto.decode_address(bad)  # type: ignore[arg-type]


def test_non_ascii_look_alikes_rejected() -> None:
    """Only one spelling (per case) decodes: Unicode that lower-cases to ASCII is refused."""
    upper = ALICE_ADDRESS.upper()
    assert "K" in upper
    assert crypto.decode_address(upper) == ALICE_PUBLIC
    with pytest.raises(InvalidAddress):
        crypto.decode_address(upper.replace("K", "\u212a"))  # KELVIN SIGN lower-cases to "k"
    with pytest.raises(InvalidAddress):
        crypto.decode_address(ALICE_ADDRESS.replace("s", "\u017f", 1))  # LONG S
