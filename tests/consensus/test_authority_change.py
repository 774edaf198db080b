"""Validators with their own keys change places on a real network, from the command line.

Four ``opus`` processes, the authorities of a ``build-spec`` chain written for them (their
keys, a sudo account, endowments and boot nodes all from the command line): each validator's
key is a freshly generated secret phrase (``opus key generate``) inserted into its node's
keystore with ``opus key insert`` (aura and gran). The fourth validator rotates its keys
(``author_rotateKeys`` on its running node) and ``opus sudo set-authorities`` moves the set to
that new key.

Asserted: the four author and finalize with the phrase keys; what the chain would refuse is
refused before anything is signed (no fee, no nonce used); the change takes effect at the
block the command prints (the new set authors and finalizes from the next block, docs/spec.md
4.3); finality carries on across it on every node, which agree; after the effective block the
old key signs nothing (no block, no counted precommit) while the rotated key authors and votes
on the same node, without a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import processes
import pytest
from processes import ROOT, NodeProcess, free_port

from client.keys import keypair_from_phrase
from node import nodekey
from runtime import codec
from runtime.block import Justification
from runtime.codec import from_hex0x
from runtime.crypto import encode_address
from runtime.modules.validators import AUTHORITY_CHANGE_DELAY

pytestmark = pytest.mark.slow

NAMES = ("v1", "v2", "v3", "v4")
SLOT_MS = 2000  # fewer forks on a busy machine: a fork can drop a transaction born on it
TIMEOUT_S = 180  # the whole switch: 10 blocks of delay and a few more to finalize


def opus(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               nodes: dict[str, NodeProcess]) -> None:
    """:func:`processes.wait_until`, failing with the log of a node that exited."""
    def exited() -> str | None:
        return next((f"{name} exited ({node.proc.returncode}) waiting for {what}:\n"
                     f"{node.log[-3000:]}" for name, node in nodes.items()
                     if node.proc.poll() is not None), None)

    def tails() -> str:
        return "\n".join(f"--- {n}\n" + "\n".join(node.log.splitlines()[-8:])
                         for n, node in nodes.items())

    processes.wait_until(condition, timeout, what, exited, describe=tails)


def finalized(node: NodeProcess) -> int:
    return int(node.rpc("chain_getHeader", [node.rpc("chain_getFinalizedHead")])["number"], 16)


def nonce(node: NodeProcess, address: str) -> int:
    return int(node.rpc("system_accountNextIndex", [address]))


@dataclass(frozen=True)
class Account:
    """A freshly generated key: its secret phrase, address and plain key file."""

    phrase: str
    address: str
    key_file: Path


def generate_account(path: Path) -> Account:
    """``opus key generate --output-type json``: a key file with its phrase beside it."""
    made = opus("key", "generate", "--output-type", "json")
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    path.write_text(made.stdout)
    path.chmod(0o600)
    # The phrase derives the same key on every machine (docs/spec.md 2.1).
    assert keypair_from_phrase(document["secretPhrase"]).address == document["address"]
    return Account(document["secretPhrase"], document["address"], path)


@dataclass
class Network:
    nodes: dict[str, NodeProcess]
    validators: dict[str, Account]
    sudo: Account


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """The four validators, up, each with its phrase key in its keystore; every process
    ended by its PID on the way out."""
    validators = {name: generate_account(tmp_path / f"{name}-account.json") for name in NAMES}
    sudo = generate_account(tmp_path / "sudo-account.json")
    addresses, listen, node_keys = {}, {}, {}
    for name in NAMES:
        node_keys[name] = tmp_path / f"{name}.node-key"
        nodekey.write_key_file(node_keys[name], nodekey.generate())
        listen[name] = f"/ip4/127.0.0.1/tcp/{free_port()}"
        addresses[name] = (f"{listen[name]}/p2p/"
                           f"{nodekey.peer_id(nodekey.read_key_file(node_keys[name]))}")
    built = opus("build-spec", "--chain", "local", "--name", "Switch Net", "--id", "switchnet",
                 "--slot-ms", str(SLOT_MS), "--sudo", sudo.address,
                 "--endow", f"{sudo.address}=1000OPUS",
                 *[a for n in NAMES for a in ("--authority", validators[n].address)],
                 *[a for n in NAMES for a in ("--endow", f"{validators[n].address}=100OPUS")],
                 *[a for n in NAMES for a in ("--bootnode", addresses[n])])
    assert built.returncode == 0, built.stderr
    spec = tmp_path / "spec.json"
    spec.write_text(built.stdout)
    for name in NAMES:
        for key_type in ("aura", "gran"):
            inserted = opus("key", "insert", "--chain", spec, "--base-path", tmp_path / name,
                            "--key-type", key_type, "--suri", validators[name].phrase)
            assert inserted.returncode == 0, inserted.stderr
            assert validators[name].address in inserted.stdout
    nodes: dict[str, NodeProcess] = {}
    try:
        for name in NAMES:  # no --bootnodes: the spec's are the only ones
            unsafe = ["--rpc-methods", "unsafe"] if name == "v4" else []
            nodes[name] = NodeProcess(
                ["--chain", str(spec), "--validator", "--name", name, "--base-path",
                 str(tmp_path / name), "--node-key-file", str(node_keys[name]),
                 "--listen-addr", listen[name], *unsafe], tmp_path / f"{name}.log")
        yield Network(nodes, validators, sudo)
    finally:
        for node in nodes.values():
            if node.proc.poll() is None:
                node.stop()
            else:
                node.wait()


def block(node: NodeProcess, number: int) -> dict[str, Any]:
    block_hash = node.rpc("chain_getBlockHash", [number])
    answer: dict[str, Any] = node.rpc("chain_getBlock", [block_hash])
    return answer


def precommitters(signed_block: dict[str, Any]) -> tuple[int, set[str]] | None:
    """(set id, the authorities whose precommits the block's justification holds), or None."""
    found = signed_block["justifications"]
    if not found:
        return None
    (engine, encoded), = found
    assert engine == "FRNK"
    justification = codec.decode(from_hex0x(encoded), Justification)
    return justification.set_id, {encode_address(p.authority) for p in justification.precommits}


def test_a_validator_rotates_its_keys_and_sudo_moves_the_set_to_them(
        network: Network) -> None:
    nodes, validators, sudo = network.nodes, network.validators, network.sudo
    v1, v4 = nodes["v1"], nodes["v4"]
    rpc = f"http://127.0.0.1:{v1.rpc_port}"
    wait_until(lambda: all(finalized(n) >= 3 for n in nodes.values()), TIMEOUT_S,
               "the four phrase-key validators finalizing", nodes)

    # v4 makes a new key in its running node's keystore; only its public part comes back.
    rotated = v4.rpc("author_rotateKeys")
    new_v4 = encode_address(from_hex0x(rotated, 32))
    old_v4 = validators["v4"].address
    assert v4.rpc("author_hasSessionKeys", [rotated]) is True
    assert new_v4 not in {a.address for a in validators.values()}

    # Refused for free: a signer that is not sudo, a key twice. No nonce is used.
    v2 = validators["v2"]
    before = nonce(v1, v2.address), nonce(v1, sudo.address)
    refused = opus("sudo", "set-authorities", *[validators[n].address for n in NAMES[:3]],
                   new_v4, "--key", v2.key_file, "--password", "", "--rpc", rpc)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Error: validators.NotSudo: the signer {v2.address} is "
                                     f"not the sudo account {sudo.address}; nothing was "
                                     "submitted"), refused.stderr
    twice = opus("sudo", "set-authorities", new_v4, validators["v1"].address, new_v4,
                 "--key", sudo.key_file, "--password", "", "--rpc", rpc)
    assert twice.returncode == 1 and "validators.DuplicateAuthority" in twice.stderr

    new_set = [*[validators[n].address for n in NAMES[:3]], new_v4]
    switched = opus("sudo", "set-authorities", *new_set, "--key", sudo.key_file,
                    "--password", "", "--rpc", rpc, "--json")
    assert switched.returncode == 0, switched.stderr
    answer = json.loads(switched.stdout)
    assert answer["status"] == "finalized"  # the command's default: the block printed is final
    effective = answer["effectiveAt"]
    assert effective == answer["blockNumber"] + AUTHORITY_CHANGE_DELAY
    assert answer["authorities"] == new_set
    # While it is pending, a second change is refused for free.
    pending = opus("sudo", "set-authorities", *new_set[:2], "--key", sudo.key_file,
                   "--password", "", "--rpc", rpc)
    assert pending.returncode == 1
    assert f"validators.ChangeAlreadyPending: a change to 4 authorities takes effect at " \
           f"block #{effective}" in pending.stderr
    assert (nonce(v1, v2.address), nonce(v1, sudo.address)) == (before[0], before[1] + 1)

    # Finality passes the change by several blocks on every node, and they agree.
    target = effective + 8
    wait_until(lambda: all(finalized(n) >= target for n in nodes.values()), TIMEOUT_S,
               f"finality past the change at #{effective} (to #{target}) on every node", nodes)
    assert len({n.rpc("chain_getBlockHash", [target]) for n in nodes.values()}) == 1

    shown = opus("sudo", "show", "--rpc", rpc, "--json")
    assert json.loads(shown.stdout)["authorities"] == new_set
    assert json.loads(shown.stdout)["pendingChange"] is None

    authors: dict[int, str] = {}
    votes: dict[int, tuple[int, set[str]]] = {}
    for number in range(1, finalized(v1) + 1):
        signed = block(v1, number)
        authors[number] = signed["block"]["header"]["author"]
        found = precommitters(signed)
        if found is not None:
            votes[number] = found
    old_set = {a.address for a in validators.values()}
    # Up to the effective block the old set authors and votes (v4's first key included) …
    assert old_v4 in {a for n, a in authors.items() if n <= effective}
    assert all(voters <= old_set and set_id == 0
               for n, (set_id, voters) in votes.items() if n <= effective)
    # … after it, the old key signs nothing: no block, no counted precommit; the rotated key,
    # on the same running node, authors and votes.
    after = {n: a for n, a in authors.items() if n > effective}
    assert old_v4 not in after.values(), after
    assert new_v4 in after.values(), after
    later_votes = {n: v for n, v in votes.items() if n > effective}
    assert later_votes, "no justification after the change"
    assert all(set_id == 1 and old_v4 not in voters and voters <= set(new_set)
               for set_id, voters in later_votes.values()), later_votes
    assert any(new_v4 in voters for _, voters in later_votes.values()), later_votes
    log = v4.log
    assert f"Authoring with the aura key {new_v4}" in log
    # No secret of any validator in any log.
    for name, node in nodes.items():
        for account in validators.values():
            assert account.phrase not in node.log, name
