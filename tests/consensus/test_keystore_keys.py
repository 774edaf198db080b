"""Consensus signs with the keystore's keys: a validator started without a key of the
authority set authors and votes nothing, and starts at once when one is inserted (no
restart); a key it cannot open is reported once, by address, never by its secret."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from client.keys import keypair_from_phrase
from genesis import build_genesis, dev_spec, local_spec
from node.chain.store import ChainStore
from node.keystore import AURA, GRAN, Keystore, file_name
from node.service import Node, NodeConfig
from runtime.crypto import dev_keypair
from runtime.execution import slot_owner
from runtime.modules import validators

PHRASE = "ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic"
KEY = keypair_from_phrase(PHRASE)
ALICE = dev_keypair("alice")
EVE = dev_keypair("eve")


def validator_config(base: Path, password: str | None = None) -> NodeConfig:
    return NodeConfig(base_path=base, validator=True, keystore_password=password,
                      rpc_port=None, prometheus_port=None, network=False)


def next_slot(node: Node) -> int:
    return max(node.best.slot, node.now_ms() // node.slot_duration) + 1


async def test_the_author_uses_a_key_inserted_while_it_runs(tmp_path: Path) -> None:
    spec = dataclasses.replace(dev_spec(), authorities=(KEY.public,))
    genesis = build_genesis(spec)
    with ChainStore.open(tmp_path, genesis) as store:
        node = Node(validator_config(tmp_path), genesis, store)
        assert node.author is not None and node.config.role == "authority"
        # Every slot is the phrase key's; the keystore does not hold it yet.
        assert await node.author.author_in_slot(next_slot(node)) is None
        node.config.keystore.insert(AURA, ALICE)  # a key outside the set changes nothing
        assert await node.author.author_in_slot(next_slot(node)) is None

        node.config.keystore.insert(AURA, KEY)
        block = await node.author.author_in_slot(next_slot(node))
        assert block is not None and block.header.author == KEY.public
        assert node.finalized.number == 0  # no gran key: nothing finalized

        node.config.keystore.insert(GRAN, KEY)
        block = await node.author.author_in_slot(next_slot(node))
        assert block is not None and node.finalized.number == block.number == 2


async def test_the_finality_gadget_votes_once_the_keystore_holds_a_key_of_the_set(
        tmp_path: Path) -> None:
    genesis = build_genesis(local_spec(4, 200))
    with ChainStore.open(tmp_path, genesis) as store:
        node = Node(validator_config(tmp_path), genesis, store)
        gadget = node.finality
        assert gadget is not None and not gadget.is_voter
        node.config.keystore.insert(GRAN, EVE)  # not an authority of this chain
        await gadget.step()
        assert not gadget.is_voter and gadget.key is None

        bob = dev_keypair("bob")
        node.config.keystore.insert(GRAN, bob)
        await gadget.step()
        assert gadget.is_voter and gadget.key == bob and gadget.status()["voter"]
        # Its next vote is signed with that key.
        assert gadget.record is not None
        assert {v.authority for v in gadget.record.votes} == {bob.public}


async def test_the_gadget_votes_once_an_unusable_key_file_is_fixed(tmp_path: Path) -> None:
    genesis = build_genesis(local_spec(4, 200))
    bob = dev_keypair("bob")
    Keystore(tmp_path / "keystore").insert(GRAN, bob)
    key_file = tmp_path / "keystore" / file_name(GRAN, bob.public)
    key_file.chmod(0o644)  # readable by others: refused
    with ChainStore.open(tmp_path, genesis) as store:
        node = Node(validator_config(tmp_path), genesis, store)
        gadget = node.finality
        assert gadget is not None and not gadget.is_voter
        await gadget.step()
        assert not gadget.is_voter
        key_file.chmod(0o600)  # the keystore's listing is unchanged
        await gadget.step()
        assert gadget.is_voter and gadget.key == bob


async def test_a_key_that_cannot_be_opened_is_reported_once_without_its_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = dataclasses.replace(dev_spec(), authorities=(KEY.public,))
    genesis = build_genesis(spec)
    # Sealed with another password than the node's.
    Keystore(tmp_path / "keystore", "the right one").insert(AURA, KEY)
    with ChainStore.open(tmp_path, genesis) as store:
        node = Node(validator_config(tmp_path, "not the right one"), genesis, store)
        assert node.author is not None
        caplog.set_level(logging.INFO)
        for _ in range(3):
            assert await node.author.author_in_slot(next_slot(node)) is None
        reports = [r.getMessage() for r in caplog.records if "Cannot use" in r.getMessage()]
        assert len(reports) == 1 and KEY.address in reports[0]
        assert "wrong keystore password" in reports[0]
        text = caplog.text
        assert KEY.seed.hex() not in text and "ozone" not in text
        assert "not the right one" not in text
        # The slot owner really is the key (what the author was asked to sign for).
        state = store.best_state()
        assert slot_owner(state, next_slot(node)) == KEY.public
        assert validators.authorities.get(state) == (KEY.public,)


async def test_dev_shortcut_holds_the_key_in_memory_only(tmp_path: Path) -> None:
    genesis = build_genesis(dev_spec())
    with ChainStore.open(tmp_path, genesis) as store:
        config = NodeConfig(base_path=tmp_path, authority=ALICE, rpc_port=None,
                            prometheus_port=None, network=False)
        assert config.validator and config.keystore.has(GRAN, ALICE.public)
        node = Node(config, genesis, store)
        assert node.author is not None
        block = await node.author.author_in_slot(next_slot(node))
        assert block is not None and node.finalized.number == 1
        assert not (tmp_path / "keystore").exists()
