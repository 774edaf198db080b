"""The finality gadget (node.finality): 4 in-process validators over real ChainStores,
wired by an in-memory transport that can take nodes offline, delay and drop messages."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from genesis import Genesis, build_genesis, local_spec
from node.chain.store import ChainStore
from node.consensus.finality import FinalityGadget, Timing
from node.service import ImportFailed, Node, NodeConfig
from runtime import codec
from runtime.block import Block, Justification, verify_justification
from runtime.crypto import dev_keypair
from runtime.execution import build_block, slot_owner
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.finality_types import (
    BlockId,
    Phase,
    SignedVote,
    VoteMessage,
    VoterRecord,
    decode_vote_message,
    encode_vote_message,
    sign_vote,
)
from runtime.modules import validators
from runtime.support import make_call

SLOT_MS = 200
NAMES = ("alice", "bob", "charlie", "dave")
KEYS = [dev_keypair(n) for n in NAMES]
EVE = dev_keypair("eve")
BY_PUBLIC = {k.public: k for k in (*KEYS, EVE, dev_keypair("ferdie"))}
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return build_genesis(local_spec(4, SLOT_MS))


# ---------------------------------------------------------------------------
# Building blocks


class Builder:
    """Authors blocks on its own store (on any parent), sealed by the slot's owner."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def block(self, parent_hash: bytes, slot: int, extrinsics: Sequence[bytes] = ()) -> Block:
        store = self.store
        parent = store.header(parent_hash)
        assert parent is not None
        state = store.state_at(parent_hash)
        author = BY_PUBLIC[slot_owner(state, slot)]
        built = build_block(state, store.node_store, parent, list(extrinsics),
                            timestamp=slot * SLOT_MS, author=author,
                            genesis_hash=store.genesis_hash)
        assert not built.invalid, built.invalid
        store.import_block(built.executed)
        return built.block

    def chain(self, parent_hash: bytes, slots: Iterable[int]) -> list[Block]:
        blocks = []
        for slot in slots:
            block = self.block(parent_hash, slot)
            blocks.append(block)
            parent_hash = block.hash
        return blocks

    def number(self, block_hash: bytes) -> int:
        header = self.store.header(block_hash)
        assert header is not None
        return header.number


# ---------------------------------------------------------------------------
# The in-memory transport


@dataclass
class Sent:
    sender: int
    message: VoteMessage


@dataclass
class Net:
    """Gadget i's publish delivers to every other online gadget (optionally late or never)."""

    nursery: trio.Nursery
    gadgets: dict[int, FinalityGadget] = field(default_factory=dict)
    online: set[int] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    verdicts: list[tuple[int, int, bool]] = field(default_factory=list)  # (from, to, penalize)
    unsaved: list[SignedVote] = field(default_factory=list)  # own votes sent before saving
    delay: Callable[[], float] | None = None
    drop: Callable[[], bool] | None = None

    def attach(self, index: int, gadget: FinalityGadget) -> None:
        self.gadgets[index] = gadget

        async def publish(data: bytes) -> None:
            await self._publish(index, data)

        gadget.publish = publish

    async def _publish(self, sender: int, data: bytes) -> None:
        message = decode_vote_message(data)
        gadget = self.gadgets[sender]
        self._check_saved(gadget, message)
        self.sent.append(Sent(sender, message))
        if sender not in self.online:
            return
        for index in list(self.gadgets):
            if index == sender or index not in self.online:
                continue
            if self.drop is not None and self.drop():
                continue
            if self.delay is not None:
                self.nursery.start_soon(self._deliver_later, sender, index, data, self.delay())
            else:
                await self._deliver(sender, index, data)

    async def _deliver_later(self, sender: int, index: int, data: bytes, seconds: float) -> None:
        await trio.sleep(seconds)
        if index in self.online:
            await self._deliver(sender, index, data)

    async def _deliver(self, sender: int, index: int, data: bytes) -> None:
        verdict = await self.gadgets[index].on_vote_message(data, f"peer{sender}")
        self.verdicts.append((sender, index, verdict.penalize))

    @staticmethod
    def _read_record(gadget: FinalityGadget) -> VoterRecord | None:
        try:
            return codec.decode(gadget.record_path.read_bytes(),  # type: ignore[no-any-return]
                                VoterRecord)
        except FileNotFoundError:
            return None

    def _check_saved(self, gadget: FinalityGadget, message: VoteMessage) -> None:
        """Every own vote of the latest recorded round must be on disk before it is sent."""
        if gadget.key is None:
            return
        record = self._read_record(gadget)
        for vote in message.votes:
            if vote.authority != gadget.key.public:
                continue
            if record is None or (vote.set_id, vote.round) > (record.set_id, record.round) or (
                    (vote.set_id, vote.round) == (record.set_id, record.round)
                    and vote not in record.votes):
                self.unsaved.append(vote)

    def votes_by_signer(self) -> dict[tuple[int, int, Phase, bytes], set[bytes]]:
        seen: dict[tuple[int, int, Phase, bytes], set[bytes]] = {}
        for sent in self.sent:
            for vote in sent.message.votes:
                key = (vote.set_id, vote.round, vote.phase, vote.authority)
                seen.setdefault(key, set()).add(vote.block_hash)
        return seen


# ---------------------------------------------------------------------------
# A cluster of validators


class Cluster:
    def __init__(self, genesis: Genesis, base: Path, nursery: trio.Nursery, stack: ExitStack,
                 count: int = 4) -> None:
        self.genesis = genesis
        self.nursery = nursery
        self.net = Net(nursery)
        self.builder = Builder(stack.enter_context(ChainStore.open(base / "builder", genesis)))
        self.nodes: list[Node] = []
        self.scopes: dict[int, trio.CancelScope] = {}
        for index in range(count):
            path = base / f"node{index}"
            store = stack.enter_context(ChainStore.open(path, genesis))
            config = NodeConfig(base_path=path, name=NAMES[index], authority=KEYS[index],
                                rpc_port=None, prometheus_port=None, network=False)
            node = Node(config, genesis, store)
            assert node.finality is not None  # wired by Node for a multi-authority chain
            self.nodes.append(node)
            self.net.attach(index, node.finality)

    def gadget(self, index: int) -> FinalityGadget:
        gadget = self.nodes[index].finality
        assert gadget is not None
        return gadget

    async def start(self, *indexes: int) -> None:
        for index in indexes or range(len(self.nodes)):
            self.net.online.add(index)
            scope = trio.CancelScope()
            self.scopes[index] = scope
            await self.nursery.start(self._run, self.gadget(index), scope)

    @staticmethod
    async def _run(gadget: FinalityGadget, scope: trio.CancelScope,
                   task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await gadget.run(task_status=task_status)

    def stop(self, *indexes: int) -> None:
        """Take validators offline: their gadget stops and nothing reaches them."""
        for index in indexes:
            self.net.online.discard(index)
            self.scopes.pop(index).cancel()

    async def restart(self, index: int) -> FinalityGadget:
        """A fresh gadget for the node (as after a process restart): it reloads its record."""
        node = self.nodes[index]
        gadget = FinalityGadget(node, node.config.keystore)
        node.finality = gadget
        self.net.attach(index, gadget)
        await self.start(index)
        return gadget

    async def deliver(self, blocks: Iterable[Block], indexes: Iterable[int] | None = None, *,
                      forks_below_finality: bool = False) -> None:
        targets = list(range(len(self.nodes)) if indexes is None else indexes)
        for block in blocks:
            for index in targets:
                try:
                    await self.nodes[index].import_block(block)
                except ImportFailed as e:
                    # A fork that branches off below the finalized block is refused (and so
                    # are its descendants): exactly what finality is for.
                    if not forks_below_finality or e.reason not in ("BelowFinalized",
                                                                    "UnknownParent"):
                        raise

    async def finalize_then_stop_all(self, genesis: Genesis, number: int) -> None:
        """Run every validator until blocks 1..number are final, then stop them all."""
        await self.start()
        await self.deliver(self.builder.chain(genesis.hash, range(1, number + 1)))
        await self.wait_final(number)
        self.stop(*range(len(self.nodes)))
        await trio.sleep(0.1)  # let a record write in flight finish

    def finalized(self, index: int) -> int:
        return self.nodes[index].finalized.number

    async def wait(self, condition: Callable[[], bool], what: str,
                   timeout: float = TIMEOUT) -> None:
        with trio.move_on_after(timeout):
            while not condition():
                await trio.sleep(0.01)
            return
        raise AssertionError(f"timed out waiting for {what}:\n{self.describe()}")

    def describe(self) -> str:
        """Every node's heads and every tracked round's votes (for failure messages)."""
        store = self.builder.store

        def name(block_hash: bytes | None) -> str:
            header = None if block_hash is None else store.header(block_hash)
            return "-" if header is None or block_hash is None else (
                f"#{header.number}:{block_hash.hex()[:6]}")

        lines = []
        for index, node in enumerate(self.nodes):
            gadget = node.finality
            lines.append(f"node {index}: best {name(node.best.hash)} final "
                         f"{name(node.finalized.hash)}")
            if gadget is None:
                continue
            estimate = gadget.prev_estimate
            lines.append(f"  {gadget.status()} E_prev {name(estimate and estimate[0])}")
            for number in sorted(gadget.rounds):
                rnd = gadget.rounds[number]
                state = rnd.state
                lines.append(
                    f"  round {number}: prevotes {[name(v.block_hash) for v in rnd.prevotes.all()]}"
                    f" precommits {[name(v.block_hash) for v in rnd.precommits.all()]}"
                    + ("" if state is None else
                       f" ghost {name(state.prevote_ghost and state.prevote_ghost[0])}"
                       f" estimate {name(state.estimate and state.estimate[0])}"
                       f" completable {state.completable}"))
        return "\n".join(lines)

    async def wait_final(self, number: int, indexes: Iterable[int] | None = None) -> None:
        targets = list(range(len(self.nodes)) if indexes is None else indexes)
        await self.wait(lambda: all(self.finalized(i) >= number for i in targets),
                        f"#{number} final on {targets}")


    def with_ancestors(self, block: Block, receivers: Iterable[int]) -> list[Block]:
        """The block and whichever of its ancestors some receiver lacks, oldest first."""
        store = self.builder.store
        chain = [block]
        while True:
            parent = chain[-1].header.parent_hash
            if all(self.nodes[i].store.has_block(parent) for i in receivers):
                break
            found = store.block(parent)
            assert found is not None
            chain.append(found)
        return chain[::-1]

    def assert_finality_consistent(self) -> None:
        """No two nodes finalized conflicting blocks; no validator signed two votes."""
        store = self.builder.store
        heads = [n.store.finalized_hash for n in self.nodes]
        for a in heads:
            for b in heads:
                assert store.is_ancestor(a, b) or store.is_ancestor(b, a), "conflicting finality"
        for key, blocks in self.net.votes_by_signer().items():
            assert len(blocks) == 1, f"an honest validator equivocated: {key}"

    def assert_safe(self) -> None:
        """No two nodes ever finalized conflicting blocks; every justification verifies."""
        self.assert_finality_consistent()
        for node in self.nodes:
            block_hash = node.store.finalized_hash
            justification = node.store.justification(block_hash)
            header = node.store.header(block_hash)
            if justification is None or header is None or header.number == 0:
                continue
            parent_state = node.store.state_at(header.parent_hash)
            verify_justification(justification, header,
                                 validators.authorities.get(parent_state))
        assert all(not vote for vote in self.net.unsaved), self.net.unsaved
        for node in self.nodes:
            assert not node.equivocations
            assert node.finality is None or node.finality.errors == 0
        assert not any(penalize for _, _, penalize in self.net.verdicts)


@asynccontextmanager
async def cluster(genesis: Genesis, tmp_path: Path) -> AsyncIterator[Cluster]:
    with ExitStack() as stack:
        async with trio.open_nursery() as nursery:
            yield Cluster(genesis, tmp_path, nursery, stack)
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------
# Agreement and liveness


async def test_four_validators_finalize_the_same_blocks(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        blocks = c.builder.chain(genesis.hash, range(1, 4))
        await c.deliver(blocks)
        await c.wait_final(3)
        for slot in range(4, 8):
            block = c.builder.block(c.builder.store.best_hash, slot)
            rounds = c.gadget(0).round_number
            started = trio.current_time()
            await c.deliver([block])
            await c.wait_final(block.number)
            # Final within a couple of rounds (and well within a slot or two).
            assert c.gadget(0).round_number - rounds <= 3
            assert trio.current_time() - started < 10 * SLOT_MS / 1000
        assert len({n.store.finalized_hash for n in c.nodes}) == 1
        justification = c.nodes[0].store.justification(c.nodes[0].store.finalized_hash)
        assert justification is not None and justification.set_id == 0
        assert len(justification.precommits) >= 3
        # A block carries its justification, as sync serves it.
        served = c.nodes[1].store.block(c.nodes[1].store.finalized_hash)
        assert served is not None and served.justification is not None
        # Votes went out batched: far fewer messages than votes would need one by one.
        assert all(len(s.message.votes) <= 20 for s in c.net.sent)
        c.assert_safe()


async def test_three_of_four_keep_finalizing(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        await c.deliver(c.builder.chain(genesis.hash, range(1, 3)))
        await c.wait_final(2)
        c.stop(3)
        missed = c.builder.chain(c.builder.store.best_hash, range(3, 7))
        await c.deliver(missed, [0, 1, 2])
        await c.wait_final(6, [0, 1, 2])
        assert c.finalized(3) == 2
        # Dave comes back (synced by the network), catches up and votes again.
        await c.deliver(missed, [3])
        await c.restart(3)
        await c.wait_final(6, [3])
        c.stop(2)  # now finality needs dave's votes
        more = c.builder.chain(c.builder.store.best_hash, range(7, 9))
        await c.deliver(more, [0, 1, 3])
        await c.wait_final(8, [0, 1, 3])
        c.assert_safe()


async def test_two_of_four_stall_then_resume(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        await c.deliver(c.builder.chain(genesis.hash, range(1, 3)))
        await c.wait_final(2)
        c.stop(2, 3)
        missed = c.builder.chain(c.builder.store.best_hash, range(3, 7))
        await c.deliver(missed, [0, 1])
        await trio.sleep(8 * SLOT_MS / 1000)  # many rounds' worth of time
        assert c.finalized(0) == c.finalized(1) == 2, "finalized without a 2/3 majority"
        # Charlie returns: finality resumes on all three.
        await c.deliver(missed, [2])
        await c.restart(2)
        await c.wait_final(6, [0, 1, 2])
        c.assert_safe()


# ---------------------------------------------------------------------------
# Safety across forks


async def test_forks_never_finalize_conflicting_blocks(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        common = c.builder.chain(genesis.hash, range(1, 3))
        await c.deliver(common)
        await c.wait_final(2)
        fork = common[-1].hash
        branch_a = c.builder.chain(fork, (3, 4))
        branch_b = c.builder.chain(fork, (5, 6))
        await c.deliver(branch_a, [0, 1])
        await c.deliver(branch_b, [2, 3])
        await trio.sleep(6 * SLOT_MS / 1000)
        # Split 2/2: nothing past the fork point can be final.
        assert all(c.finalized(i) == 2 for i in range(4))
        # Everyone gets both branches (equal length: each keeps its own), then B grows.
        await c.deliver(branch_b, [0, 1])
        await c.deliver(branch_a, [2, 3])
        await trio.sleep(4 * SLOT_MS / 1000)
        assert all(c.finalized(i) == 2 for i in range(4))
        longer = c.builder.block(branch_b[-1].hash, 7)
        await c.deliver([longer])
        await c.wait_final(longer.number)
        assert all(n.store.finalized_hash == longer.hash for n in c.nodes)
        c.assert_safe()


async def test_random_partitions_delays_and_forks_stay_safe(genesis: Genesis,
                                                           tmp_path: Path) -> None:
    rng = random.Random(0x5AFE)
    async with cluster(genesis, tmp_path) as c:
        c.net.delay = lambda: rng.uniform(0, 0.06)
        c.net.drop = lambda: rng.random() < 0.1
        await c.start()
        tips = [genesis.hash]
        slot = 0
        for _ in range(24):
            slot += 1
            parent = rng.choice(tips[-3:])  # often build on a stale tip: forks
            block = c.builder.block(parent, slot)
            tips.append(block.hash)
            receivers = rng.sample(range(4), rng.randint(1, 4))
            await c.deliver(c.with_ancestors(block, receivers), receivers,
                            forks_below_finality=True)
            await trio.sleep(rng.uniform(0, SLOT_MS / 1000))
            c.assert_finality_consistent()
        # Heal: everyone gets everything and one chain outgrows the rest.
        everything = [b for b in map(c.builder.store.block, tips[1:]) if b is not None]
        await c.deliver(everything, forks_below_finality=True)
        c.net.drop = None
        final = max((n.store.finalized_header for n in c.nodes), key=lambda h: h.number).hash
        alive = [t for t in tips if c.builder.store.is_ancestor(final, t)]
        head = c.builder.block(max(alive, key=c.builder.number), slot + 1)
        head = c.builder.block(head.hash, slot + 2)
        await c.deliver(c.with_ancestors(head, range(4)), forks_below_finality=True)
        await c.wait_final(head.number)
        c.assert_finality_consistent()
        assert len({n.store.finalized_hash for n in c.nodes}) == 1




# ---------------------------------------------------------------------------
# Restarts: the vote record


async def test_restart_reloads_votes_and_never_equivocates(genesis: Genesis,
                                                          tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        await c.deliver(c.builder.chain(genesis.hash, range(1, 3)))
        await c.wait_final(2)
        c.stop(1, 2, 3)
        alone = c.builder.block(c.builder.store.best_hash, 3)
        await c.deliver([alone], [0])
        # Alice alone prevotes #3 in a new round, then waits forever for the others.
        alice = c.gadget(0)
        await c.wait(lambda: any(
            v.phase is Phase.PREVOTE and v.block_hash == alone.hash
            for s in c.net.sent if s.sender == 0 for v in s.message.votes),
            "alice's prevote for #3 (sent only once saved)")
        before = alice.record
        assert before is not None
        assert alice.record_path.exists()
        c.stop(0)
        # Meanwhile #4 arrives: without the record, alice would now prevote #4 in that round.
        newer = c.builder.block(alone.hash, 4)
        await c.deliver([newer], [0])
        restarted = await c.restart(0)
        assert restarted.record == before
        assert restarted.round_number == before.round
        await trio.sleep(3 * SLOT_MS / 1000)
        ours = [v for s in c.net.sent for v in s.message.votes
                if v.authority == KEYS[0].public and v.round == before.round
                and v.set_id == before.set_id and v.phase is Phase.PREVOTE]
        assert ours and all(v == before.votes[0] for v in ours)
        # The others return (synced): finality resumes, nobody saw an equivocation.
        await c.deliver([alone, newer], [1, 2, 3])
        for index in (1, 2, 3):
            await c.restart(index)
        await c.wait_final(4)
        c.assert_safe()


async def test_a_restarted_validator_resends_its_previous_rounds_votes(
        genesis: Genesis, tmp_path: Path) -> None:
    """Validators still in round r - 1 that lost a restarted validator's votes of that round
    (because they restarted too) get them again, and can complete the round."""
    async with cluster(genesis, tmp_path) as c:
        await c.finalize_then_stop_all(genesis, 3)
        record = Net._read_record(c.gadget(0))
        assert record is not None and record.round > 1
        assert record.prev_votes, "alice voted in the round before her last one"
        assert all(v.round == record.round - 1 and v.authority == KEYS[0].public
                   for v in record.prev_votes)
        already_sent = len(c.net.sent)
        await c.restart(0)

        def resent() -> bool:
            sent = {v for s in c.net.sent[already_sent:] if s.sender == 0
                    for v in s.message.votes}
            return set(record.prev_votes) | set(record.votes) <= sent

        await c.wait(resent, "alice re-sending her votes of both recorded rounds")
        for index in (1, 2, 3):
            await c.restart(index)
        await c.deliver(c.builder.chain(c.builder.store.best_hash, range(4, 6)))
        await c.wait_final(5)
        c.assert_safe()


def test_a_vote_record_from_before_prev_votes_still_loads(genesis: Genesis,
                                                           tmp_path: Path) -> None:
    with ChainStore.open(tmp_path / "n", genesis) as store:
        config = NodeConfig(base_path=tmp_path / "n", authority=KEYS[0], rpc_port=None,
                            prometheus_port=None, network=False)
        node = Node(config, genesis, store)
        assert node.finality is not None
        vote = sign_vote(KEYS[0], Phase.PREVOTE, 2, 0, genesis.hash, 0)
        record = VoterRecord(0, genesis.hash, 0, 2, (vote,), BlockId(genesis.hash, 0))
        six_items = codec.pack(codec.to_wire(record)[:6])  # the format before prev_votes
        node.finality.record_path.parent.mkdir(parents=True, exist_ok=True)
        node.finality.record_path.write_bytes(six_items)
        reloaded = FinalityGadget(node, node.config.keystore)
        assert reloaded.record == record and reloaded.record.prev_votes == ()
        assert reloaded.round_number == 2


async def test_corrupt_vote_record_refuses_to_start(genesis: Genesis, tmp_path: Path) -> None:
    with ChainStore.open(tmp_path / "n", genesis) as store:
        config = NodeConfig(base_path=tmp_path / "n", authority=KEYS[0], rpc_port=None,
                            prometheus_port=None, network=False)
        node = Node(config, genesis, store)
        assert node.finality is not None
        node.finality.record_path.parent.mkdir(parents=True, exist_ok=True)
        node.finality.record_path.write_bytes(b"\x93garbage")
        with pytest.raises(RuntimeError, match="corrupt"):
            FinalityGadget(node, node.config.keystore)


# ---------------------------------------------------------------------------
# Bad votes and equivocations


def _message(*votes: SignedVote, commit: Justification | None = None) -> bytes:
    return encode_vote_message(VoteMessage(tuple(votes), commit))


async def test_forged_and_foreign_votes_are_rejected(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        block = c.builder.block(genesis.hash, 1)
        await c.deliver([block])
        gadget = c.gadget(0)
        bob = KEYS[1]
        good = sign_vote(bob, Phase.PREVOTE, 1, 0, block.hash, 1)
        forged = SignedVote(Phase.PREVOTE, 1, 0, block.hash, 1, bob.public, bytes(64))
        tampered = SignedVote(Phase.PREVOTE, 1, 0, genesis.hash, 0, bob.public, good.signature)
        outsider = sign_vote(EVE, Phase.PREVOTE, 1, 0, block.hash, 1)
        as_precommit = SignedVote(Phase.PRECOMMIT, 1, 0, block.hash, 1, bob.public,
                                  good.signature)  # a prevote signature is not a precommit
        for bad in (forged, tampered, outsider, as_precommit):
            verdict = await gadget.on_vote_message(_message(bad), "peer")
            assert verdict.penalize and verdict.accepted == 0, verdict
        verdict = await gadget.on_vote_message(b"\x92\x90\xc0garbage", "peer")
        assert verdict.penalize
        verdict = await gadget.on_vote_message(_message(good), "peer")
        assert not verdict.penalize and verdict.accepted == 1
        again = await gadget.on_vote_message(_message(good), "peer")
        assert again.duplicates == 1 and not again.penalize
        other_set = sign_vote(bob, Phase.PREVOTE, 1, 7, block.hash, 1)
        ignored = await gadget.on_vote_message(_message(other_set), "peer")
        assert ignored.ignored == 1 and not ignored.penalize
        # A real hash with a false number is signed, but never counted for the block.
        lying = sign_vote(KEYS[2], Phase.PREVOTE, 1, 0, block.hash, 5)
        assert (await gadget.on_vote_message(_message(lying), "peer")).accepted == 1
        counted = gadget.rounds[1].prevotes
        assert set(counted.first) == {bob.public, KEYS[2].public} and not counted.second
        gadget._refresh_base()  # (the gadget is not running in this test)
        tally = gadget._tally(counted)
        assert tally.voted == 1 and tally.unknown == 1 and tally.weights[block.hash] == 1
        assert gadget.validate_message(_message(good))
        assert not gadget.validate_message(_message(forged))
        # The p2p.network hooks: False means "penalize the peer".
        assert gadget.check_vote(_message(good)) and not gadget.check_vote(b"junk")
        assert await gadget.on_vote(_message(good), "peer") is True
        assert await gadget.on_vote(_message(outsider), "peer") is False
        # A commit whose signatures do not check out is refused (and penalized).
        bogus = Justification(1, 0, block.hash, 1, tuple(
            sign_vote(k, Phase.PRECOMMIT, 1, 0, block.hash, 1).as_precommit()
            for k in (KEYS[0], KEYS[1], EVE)))
        verdict = await gadget.on_vote_message(_message(commit=bogus), "peer")
        assert verdict.penalize
        assert c.finalized(0) == 0
        # A valid commit from elsewhere finalizes.
        commit = Justification(1, 0, block.hash, 1, tuple(
            sign_vote(k, Phase.PRECOMMIT, 1, 0, block.hash, 1).as_precommit() for k in KEYS[:3]))
        verdict = await gadget.on_vote_message(_message(commit=commit), "peer")
        assert not verdict.penalize and verdict.accepted == 1
        await gadget.step()
        assert c.finalized(0) == 1


async def test_equivocating_authority_is_detected(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start(0, 1, 2)  # dave's key is played by the test, and it cheats
        blocks_a = c.builder.chain(genesis.hash, (1, 2))
        block_b = c.builder.block(genesis.hash, 3)
        await c.deliver([*blocks_a, block_b])
        dave = KEYS[3]
        round_ = c.gadget(0).round_number
        one = sign_vote(dave, Phase.PREVOTE, round_, 0, blocks_a[-1].hash, 2)
        two = sign_vote(dave, Phase.PREVOTE, round_, 0, block_b.hash, 1)
        assert not (await c.gadget(0).on_vote_message(_message(one), "dave")).penalize
        verdict = await c.gadget(0).on_vote_message(_message(two), "dave")
        assert verdict.equivocations == 1 and not verdict.penalize  # the relayer is innocent
        [record] = c.nodes[0].equivocations
        assert record["kind"] == "finality-prevote" and record["author"] == dave.public.hex()
        assert record["round"] == round_ and set(record["blocks"]) == {
            blocks_a[-1].hash.hex(), block_b.hash.hex()}
        # Finality carries on among the three honest validators, on one chain.
        await c.wait_final(2, [0, 1, 2])
        assert all(c.nodes[i].store.finalized_hash == blocks_a[-1].hash for i in range(3))


# ---------------------------------------------------------------------------
# Authority-set changes


async def test_authority_set_change_takes_effect_at_a_finalized_block(
        genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.start()
        alice = KEYS[0]
        new_set = tuple(k.public for k in KEYS[:3])  # dave leaves
        ext = sign_extrinsic(alice, make_call(validators.SetAuthorities(new_set)), 0,
                             genesis.hash, SPEC_VERSION)
        first = c.builder.block(genesis.hash, 1, [codec.encode(ext)])
        effective = 1 + validators.AUTHORITY_CHANGE_DELAY
        blocks = [first, *c.builder.chain(first.hash, range(2, effective + 5))]
        enacting = blocks[effective - 1]
        assert validators.authorities.get(c.builder.store.state_at(enacting.hash)) == new_set
        for block in blocks:
            await c.deliver([block])
            await trio.sleep(SLOT_MS / 4000)
        await c.wait_final(blocks[-1].number)
        # The old set finalized exactly up to the enacting block; the new set took over.
        old = c.nodes[0].store.justification(enacting.hash)
        assert old is not None and old.set_id == 0
        new = c.nodes[0].store.justification(blocks[-1].hash)
        assert new is not None and new.set_id == 1
        assert {p.authority for p in new.precommits} <= set(new_set)
        assert all(c.gadget(i).set_id == 1 for i in range(4))
        assert not c.gadget(3).is_voter and c.gadget(0).is_voter
        # Dave (now an observer) follows finality from the votes alone.
        assert c.nodes[3].store.finalized_hash == blocks[-1].hash
        # A restarted node picks the current set up again from its record and the chain.
        c.stop(0)
        restarted = await c.restart(0)
        assert restarted.set_id == 1
        c.assert_safe()


# ---------------------------------------------------------------------------
# Units


def test_timing_scales_with_the_slot() -> None:
    timing = Timing.for_slot(2000)
    assert timing.precommit_timeout == 1.0 and timing.rebroadcast_interval == 2.0
    assert timing.prevote_delay < timing.precommit_timeout < timing.idle_round_interval


def test_vote_messages_are_canonical_and_bounded(genesis: Genesis) -> None:
    vote = sign_vote(KEYS[0], Phase.PRECOMMIT, 2**64 - 1, 2**64 - 1, bytes(32), 2**64 - 1)
    data = _message(*([vote] * 20))
    assert len(data) < 4096
    assert decode_vote_message(data).votes == (vote,) * 20
    with pytest.raises(codec.DecodeError):
        decode_vote_message(_message(*([vote] * 20))[:-1])
    with pytest.raises(codec.DecodeError):
        codec.decode(codec.encode(VoteMessage((vote,) * 20, None))
                     .replace(b"\xdc\x00\x14", b"\xdc\x00\x15"), VoteMessage)
    assert vote.signature_valid()
    assert vote.as_precommit().authority == KEYS[0].public


def test_record_keys_are_what_the_brief_says(tmp_path: Path, genesis: Genesis) -> None:
    with ChainStore.open(tmp_path / "n", genesis) as store:
        config = NodeConfig(base_path=tmp_path / "n", authority=KEYS[0], rpc_port=None,
                            prometheus_port=None, network=False)
        node = Node(config, genesis, store)
        assert node.finality is not None
        assert node.finality.record_path == tmp_path / "n" / "finality" / "votes"
        observer = Node(NodeConfig(base_path=tmp_path / "n", authority=None, rpc_port=None,
                                   prometheus_port=None, network=False), genesis, store)
        # A node without an authority key follows finality as an observer (never votes).
        assert observer.finality is not None and not observer.finality.is_voter


async def test_whole_network_restart_resumes_finality(genesis: Genesis, tmp_path: Path) -> None:
    async with cluster(genesis, tmp_path) as c:
        await c.finalize_then_stop_all(genesis, 3)
        records = []
        for index in range(4):
            record = Net._read_record(c.gadget(index))  # what a restart will find on disk
            assert record is not None and record.round > 1 and record.prev_estimate is not None
            records.append(record)
        more = c.builder.chain(c.builder.store.best_hash, range(4, 6))
        await c.deliver(more)
        for index in range(4):
            gadget = await c.restart(index)
            assert gadget.round_number == records[index].round
            estimate = records[index].prev_estimate
            assert estimate is not None
            assert gadget.prev_estimate == (estimate.block_hash, estimate.block_number)
        await c.wait_final(5)
        c.assert_safe()


async def test_synced_block_justification_is_checked_and_finalizes_on_import(
        genesis: Genesis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A block that arrives with its justification (sync) is final once imported; a forged
    justification is dropped (logged) and the block imported without it."""
    from runtime.block import sign_precommit

    with ChainStore.open(tmp_path / "builder", genesis) as builder_store, \
            ChainStore.open(tmp_path / "full", genesis) as store:
        first, second = Builder(builder_store).chain(genesis.hash, [1, 2])
        node = Node(NodeConfig(base_path=tmp_path / "full", name="full", rpc_port=None,
                               prometheus_port=None, network=False), genesis, store)

        def justified(block: Block, keys: Sequence[Any]) -> Block:
            votes = tuple(sign_precommit(k, 1, 0, block.header) for k in keys)
            return replace(block, justification=Justification(1, 0, block.hash, block.number,
                                                              votes))

        await node.import_block(justified(first, KEYS[:3]))
        assert store.finalized_hash == first.hash == node.finalized.hash
        assert store.justification(first.hash) == justified(first, KEYS[:3]).justification
        # two precommits of four authorities are not enough (3 are needed)
        await node.import_block(justified(second, KEYS[:2]))
        assert store.best_hash == second.hash and store.finalized_hash == first.hash
        assert store.justification(second.hash) is None
        assert "Ignoring justification for #2: 2 precommits, 3 needed" in caplog.text
