"""Block sync over real libp2p connections: late joiners, orphans, forks, bad responders."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest
import trio
from test_p2p import (
    ALICE,
    SLOT_MS,
    FakeChain,
    TrieReader,
    addr,
    chain_blocks,
    chain_spec,
    fast_config,
    running,
    wait_for,
    wait_meshed,
)

from p2p.protocol import (
    MAX_SYNC_BLOCKS,
    BlockRequest,
    decode_block_response,
    encode_block_response,
)
from p2p.sync import SyncServer
from runtime import codec
from runtime.block import Block, Justification, Precommit, decode_block, seal_header
from runtime.execution import build_block

log = logging.getLogger("test.sync")


def fork_blocks(base: tuple[Block, ...], count: int) -> tuple[Block, ...]:
    """``count`` blocks on top of ``base[-1]`` that differ from the canonical ones (slots +2)."""
    genesis, shared = chain_spec()
    nodes = shared
    parent = base[-1].header
    out: list[Block] = []
    for _ in range(count):
        built = build_block(TrieReader(nodes, parent.state_root), nodes, parent, [],
                            timestamp=(parent.slot + 2) * SLOT_MS, author=ALICE,
                            genesis_hash=genesis.hash)
        nodes.put_nodes(built.executed.trie.new_nodes)
        out.append(built.block)
        parent = built.block.header
    return tuple(out)


# ---------------------------------------------------------------------------
# The server side, without a network


def test_sync_response_is_bounded() -> None:
    blocks = chain_blocks(600)
    server = SyncServer(FakeChain(blocks=blocks), lambda *a: None, lambda p: False)
    response = server.respond(BlockRequest(1, 10_000, 100 * 1024 * 1024, False))
    assert len(response.items) == MAX_SYNC_BLOCKS  # at most 512 blocks
    assert [decode_block(i).number for i in response.items[:3]] == [1, 2, 3]
    assert response.best_number == 600 and response.best_hash == blocks[-1].hash
    # max_bytes: stops before going over, but always sends the first block
    one = len(codec.encode(blocks[0]))
    assert len(server.respond(BlockRequest(1, 100, one * 3 + 9, False)).items) == 3
    assert len(server.respond(BlockRequest(1, 100, 1, False)).items) == 1
    # past the best block: empty; headers only
    assert server.respond(BlockRequest(601, 10, 1 << 20, False)).items == ()
    headers = server.respond(BlockRequest(599, 10, 1 << 20, True)).items
    assert [codec.decode(h, type(blocks[0].header)).number for h in headers] == [599, 600]
    # the wire form round-trips and stays under the 10 MiB request/response limit
    full = server.respond(BlockRequest(1, 512, 8 * 1024 * 1024, False))
    data = encode_block_response(full)
    assert decode_block_response(data) == full and len(data) < 10 * 1024 * 1024


# ---------------------------------------------------------------------------
# Networks


async def test_late_node_syncs_the_whole_range(caplog: pytest.LogCaptureFixture) -> None:
    blocks = chain_blocks(1200)
    source = FakeChain(blocks=blocks)
    # a justification on block #700 travels with it
    justification = Justification(0, 0, blocks[699].hash, 700,
                                  (Precommit(ALICE.public, bytes(64)),))
    source._justifications[blocks[699].hash] = justification
    late = FakeChain()
    caplog.set_level(logging.INFO, logger="opus.sync")
    config = fast_config(sync_log_interval=0.2)
    with trio.fail_after(40):
        async with running(source) as a:
            started = time.perf_counter()
            async with running(late, bootnodes=(addr(a),), config=config) as b:
                saw_syncing = False
                while late.best_header.number < 1200:
                    saw_syncing |= b.is_syncing()
                    await trio.sleep(0.005)
                elapsed = time.perf_counter() - started
                assert late.canon == source.canon
                assert late.justification(blocks[699].hash) == justification
                assert saw_syncing
                await wait_for(lambda: not b.is_syncing())
                assert b.sync.imported == 1200
    rate = 1200 / elapsed
    log.warning("late node synced 1200 blocks in %.2f s: %.0f blocks/s (connect included)",
                elapsed, rate)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("⚙️ Syncing ") and "bps, target=#1200 (1 peers), best: #" in m
               and "finalized #0 (0x" in m for m in messages), messages
    assert any(m.startswith("✅ Synced 1200 blocks") for m in messages)


async def test_a_full_size_sync_response_arrives_whole() -> None:
    """An ~8 MiB response (20 blocks of 400 KB) reaches the requester intact.

    py-libp2p's own reader gives up after 101 partial reads (about 6 MiB).
    """
    genesis, _ = chain_spec()
    parent = genesis.header
    big: list[Block] = []
    for number in range(1, 21):
        header = replace(parent, parent_hash=parent.hash, number=number, slot=number,
                         timestamp=number * SLOT_MS)
        extrinsics = tuple(bytes([number, i]) * 30_000 for i in range(7))
        big.append(Block(header, extrinsics, bytes(64)))
        parent = header
    source = FakeChain()
    for block in big:
        source._add(block)
    config = fast_config(sync_sync_lag=10**6)  # fetch by hand only: these blocks are not valid
    with trio.fail_after(30):
        async with running(source, config=config) as a, \
                running(FakeChain(), bootnodes=(addr(a),), config=config) as b:
            await wait_for(lambda: b.peer_count() == 1)
            response = await b.sync.request(a.peer_id, BlockRequest(1, 512, 8 * 2**20, False))
    assert sum(len(item) for item in response.items) > 7 * 2**20
    assert [decode_block(item) for item in response.items] == big[:len(response.items)]
    assert len(response.items) >= 19


async def test_gossiped_block_with_unknown_parent_triggers_sync() -> None:
    blocks = chain_blocks(20)
    chain_a, chain_b = FakeChain(blocks=blocks[:10]), FakeChain(blocks=blocks[:10])
    config = fast_config(status_interval=60.0)  # only the orphan can start the sync
    with trio.fail_after(60):
        async with running(chain_a, config=config) as a, \
                running(chain_b, bootnodes=(addr(a),), config=config) as b:
            await wait_meshed([a, b], {0: [1], 1: [0]})
            for block in blocks[10:16]:  # b misses these
                chain_a.add_local(block)
            await a.publish_block(blocks[15])
            await wait_for(lambda: chain_b.best_header.hash == blocks[15].hash)
            assert b.sync.imported == 6  # 11..16 through sync
            # and then it follows gossip
            chain_a.add_local(blocks[16])
            await a.publish_block(blocks[16])
            await wait_for(lambda: chain_b.best_header.hash == blocks[16].hash)
            assert b.sync.imported == 6


async def test_node_on_a_shorter_fork_resyncs_from_finality() -> None:
    blocks = chain_blocks(30)
    fork = fork_blocks(blocks[:10], 5)  # 11'..15' on #10
    source = FakeChain(blocks=blocks)
    forked = FakeChain(blocks=blocks[:10] + fork)
    assert forked.best_header.number == 15 and forked.best_header.hash != blocks[14].hash
    with trio.fail_after(60):
        async with running(source) as a, running(forked, bootnodes=(addr(a),)) as b:
            await wait_for(lambda: forked.best_header.hash == blocks[-1].hash)
            assert forked.canon == source.canon
            assert b.reputation.score(a.peer_id) == 0  # a fork is nobody's fault


async def test_peer_serving_an_invalid_block_is_penalized() -> None:
    blocks = chain_blocks(12)
    header = replace(blocks[8].header, state_root=b"\x11" * 32)
    forged = Block(header, (), seal_header(ALICE, header))
    liar = FakeChain(blocks=blocks[:8])
    liar.add_local(forged)  # claims a #9 that does not execute to its state root
    honest = FakeChain(blocks=blocks)
    late = FakeChain()
    with trio.fail_after(25):
        async with running(liar) as bad, running(honest) as good, \
                running(late, bootnodes=(addr(bad),)) as b:
            # first only the liar: b syncs 1..8 and rejects #9
            await wait_for(lambda: b.reputation.score(bad.peer_id) < 0)
            assert late.best_header.number == 8
            assert late.header(forged.hash) is None
            # an honest peer appears: b completes the chain from it
            await b.connect(addr(good))
            await wait_for(lambda: late.best_header.hash == blocks[-1].hash)


@pytest.mark.slow
async def test_sync_throughput_with_full_responses() -> None:
    """3000 empty blocks: six full 512-block responses, pipelined with the import."""
    blocks = chain_blocks(3000)
    source, late = FakeChain(blocks=blocks), FakeChain()
    with trio.fail_after(60):
        async with running(source) as a, running(late, bootnodes=(addr(a),)) as b:
            await wait_for(lambda: b.sync.active, 10)
            started = time.perf_counter()
            await wait_for(lambda: late.best_header.number == 3000, 50)
            elapsed = time.perf_counter() - started
    log.warning("sync: 3000 blocks in %.2f s = %.0f blocks/s (FakeChain executes each block)",
                elapsed, 3000 / elapsed)
    assert 3000 / elapsed > 200
