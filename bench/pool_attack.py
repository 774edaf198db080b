"""Benchmark: a dev node under future-nonce spam, over RPC and over gossip, with honest users.

Transactions with a nonce gap ("future") are never included, so they never pay. This runs a
real ``opus --chain dev --alice`` process on 127.0.0.1 (2 s slots) and measures what such a
spam costs the node and its honest users (issue 11's goals: no missed slot, honest p99
inclusion within 2 slots, a refused spam submission costing within 3x of an honest one).

1. **Cost per submission, same run.** With the node otherwise idle, 2,000 honest transfers
   (bob, consecutive nonces) and then 20,000 future-nonce transfers (eve, nonces 1 … 20,000:
   all but ``future_per_sender`` are refused) are submitted over one WebSocket in JSON-RPC
   batches of 100. The node's CPU time (``/proc/<pid>/stat``) per submission, minus its idle
   CPU rate measured just before, gives the cost of each through the whole RPC path. The
   same submissions are timed against the pool alone (in this process, on the dev genesis
   state), which is the cost on the node's event loop.
2. **The attack** (``--seconds``, default 60): at once
   * an RPC spammer sends batches of 256 future-nonce transfers from eve in a closed loop;
   * a gossip spammer, a real libp2p peer (Noise, Yamux, signed GossipSub), publishes
     ``TxBatch`` messages of future-nonce transfers from ferdie (10 a second, ~1,400 each);
     when the node bans it, it comes back with a fresh identity;
   * an honest user (charlie) submits a transfer every 250 ms and the benchmark notes when
     the block that includes it is announced (``chain_subscribeNewHeads``).
   Reported: honest inclusion latency p50/p99 (ms and slots), missed slots (slots between
   the first and last block of the phase without a block), the node's RSS before and after
   and its peak, spam sent and refused, bans and identities used.

Prints one JSON line.

    .venv/bin/python -m bench.pool_attack
    .venv/bin/python -m bench.pool_attack --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count, cycle
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from bench.sync import HOST, NodeProcess
from client.api import header_from_json
from genesis.builder import build_genesis
from genesis.spec import dev_spec
from node import nodekey
from node.txpool import PoolError, PoolLimits, TransactionPool
from runtime import codec
from runtime.block import Block, Header, Justification
from runtime.crypto import Keypair, blake2_256, dev_keypair
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules.balances import TransferArgs
from runtime.state import MemoryState
from runtime.support import BlockInfo, make_call

SLOT_MS = 2000
HONEST_COST_TXS = 2000
SPAM_COST_TXS = 20000
COST_BATCH = 100
RPC_SPAM_BATCH = 256
GOSSIP_BATCHES_PER_S = 10
HONEST_INTERVAL_S = 0.25
IDLE_SAMPLE_S = 3.0
RSS_SAMPLE_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def transfers(key: Keypair, nonces: Sequence[int], genesis_hash: bytes, dest: bytes,
              amount: int = 1) -> list[bytes]:
    call = make_call(TransferArgs(dest, amount))
    return [codec.encode(sign_extrinsic(key, call, n, genesis_hash, SPEC_VERSION))
            for n in nonces]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------
# The node process


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


class Rpc:
    """JSON-RPC over one WebSocket: calls (single or batch) and subscription notifications."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self._ids = count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Any]] = {}

    async def reader(self, notify: trio.MemorySendChannel[Any] | None = None) -> None:
        """Hand answers to their callers and notifications to ``notify``; runs until
        cancelled."""
        while True:
            message = json.loads(await self.conn.get_message())
            if isinstance(message, dict) and "method" in message:
                if notify is not None:
                    await notify.send(message["params"]["result"])
                continue
            first = message[0] if isinstance(message, list) else message
            waiter = self._waiting.pop(first["id"], None)
            if waiter is not None:
                waiter.send_nowait(message)

    async def _send(self, payload: Any, first_id: int) -> Any:
        send, receive = trio.open_memory_channel[Any](1)
        self._waiting[first_id] = send
        await self.conn.send_message(json.dumps(payload))
        return await receive.receive()

    async def call(self, method: str, *params: Any) -> Any:
        request_id = next(self._ids)
        answer = await self._send({"jsonrpc": "2.0", "id": request_id, "method": method,
                                   "params": list(params)}, request_id)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def batch(self, method: str, params: Sequence[list[Any]]) -> list[dict[str, Any]]:
        ids = [next(self._ids) for _ in params]
        answers: list[dict[str, Any]] = await self._send(
            [{"jsonrpc": "2.0", "id": i, "method": method, "params": p}
             for i, p in zip(ids, params, strict=True)], ids[0])
        return answers


# ---------------------------------------------------------------------------
# The gossip spammer: a real libp2p peer of the chain


class GenesisOnly:
    """``p2p.network.ChainAccess`` for a peer that has only the genesis block."""

    def __init__(self, genesis_hash: bytes, header: Header) -> None:
        self.genesis_hash = genesis_hash
        self.best_header = self.finalized_header = header

    def header(self, block_hash: bytes) -> Header | None:
        return self.best_header if block_hash == self.genesis_hash else None

    def block(self, block_hash: bytes) -> Block | None:
        return None

    def encoded_block(self, block_hash: bytes) -> bytes | None:
        return None

    def hash_at(self, number: int) -> bytes | None:
        return self.genesis_hash if number == 0 else None

    def justification(self, block_hash: bytes) -> Justification | None:
        return None

    async def import_block(self, block: Block) -> object:
        raise ValueError("a spammer imports nothing")

    async def submit_extrinsic(self, raw: bytes) -> Any:
        from p2p.network import TxImport

        return TxImport.KNOWN


@dataclass
class AttackStats:
    rpc_sent: int = 0
    rpc_refused: dict[str, int] = field(default_factory=dict)
    gossip_sent: int = 0
    gossip_batches: int = 0
    identities: int = 0
    honest: list[tuple[bytes, float]] = field(default_factory=list)  # (hash, submitted at)
    heads: list[tuple[int, int, float, tuple[bytes, ...]]] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # every RSS_SAMPLE_S of the attack


async def gossip_spammer(node: NodeProcess, genesis: Any, spam: list[bytes],
                         stats: AttackStats) -> None:
    from p2p import Network
    from p2p.protocol import TX_BATCH_TARGET, encode_tx_batch

    per_batch = TX_BATCH_TARGET // (len(spam[0]) + 5)
    batches = cycle([encode_tx_batch(tuple(spam[i:i + per_batch]))
                     for i in range(0, len(spam), per_batch)])
    node_id = nodekey.peer_id(nodekey.read_key_file(node.key_file))
    while True:  # one identity after another, as an attacker would
        chain = GenesisOnly(genesis.hash, genesis.header)
        network = Network(chain, nodekey.generate(), ["/ip4/127.0.0.1/tcp/0"],
                          [node.multiaddr], genesis.hash)
        stats.identities += 1
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            with trio.move_on_after(10):
                while not (network.peer_count() and any(
                        str(p) == node_id for p in network.gossip.pubsub.peer_topics.get(
                            network.names.txs_topic, ()))):
                    await trio.sleep(0.05)
            while network.peer_count():
                data = next(batches)
                await network.gossip.publish(network.names.txs_topic, data)
                stats.gossip_batches += 1
                stats.gossip_sent += per_batch
                await trio.sleep(1 / GOSSIP_BATCHES_PER_S)
            nursery.cancel_scope.cancel()


async def rpc_spammer(rpc: Rpc, spam: list[bytes], stats: AttackStats) -> None:
    hexes = ["0x" + raw.hex() for raw in spam]
    for start in cycle(range(0, len(hexes), RPC_SPAM_BATCH)):
        answers = await rpc.batch("author_submitExtrinsic",
                                  [[h] for h in hexes[start:start + RPC_SPAM_BATCH]])
        stats.rpc_sent += len(answers)
        for answer in answers:
            if "error" in answer:
                name = str(answer["error"].get("data", "")).split(":")[0] or str(
                    answer["error"]["code"])
                stats.rpc_refused[name] = stats.rpc_refused.get(name, 0) + 1


async def honest_user(rpc: Rpc, txs: list[bytes], stats: AttackStats,
                      stop: Callable[[], bool]) -> None:
    for raw in txs:
        if stop():
            return
        submitted = time.monotonic()
        await rpc.call("author_submitExtrinsic", "0x" + raw.hex())
        stats.honest.append((blake2_256(raw), submitted))
        await trio.sleep(HONEST_INTERVAL_S)


async def head_watcher(rpc: Rpc, heads: trio.MemoryReceiveChannel[Any],
                       stats: AttackStats) -> None:
    await rpc.call("chain_subscribeNewHeads")
    async for header in heads:
        seen = time.monotonic()
        block_hash = header_from_json(header).hash
        block = await rpc.call("chain_getBlock", "0x" + block_hash.hex())
        hashes = tuple(blake2_256(codec.from_hex0x(x)) for x in block["block"]["extrinsics"])
        stats.heads.append((int(header["number"], 16), header["slot"], seen, hashes))


# ---------------------------------------------------------------------------
# Phases


async def submission_costs(rpc: Rpc, pid: int, honest: list[bytes],
                           spam: list[bytes]) -> dict[str, Any]:
    """Node CPU per submission for honest and for refused spam transactions, minus idle."""
    idle_start, idle_cpu = time.monotonic(), cpu_seconds(pid)
    await trio.sleep(IDLE_SAMPLE_S)
    idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_start)

    async def submit_all(txs: list[bytes]) -> tuple[float, dict[str, int]]:
        outcomes: dict[str, int] = {}
        started, cpu = time.monotonic(), cpu_seconds(pid)
        for i in range(0, len(txs), COST_BATCH):
            answers = await rpc.batch("author_submitExtrinsic",
                                      [["0x" + raw.hex()] for raw in txs[i:i + COST_BATCH]])
            for answer in answers:
                name = ("accepted" if "result" in answer
                        else str(answer["error"].get("data", "")).split(":")[0])
                outcomes[name] = outcomes.get(name, 0) + 1
        spent = cpu_seconds(pid) - cpu - idle_rate * (time.monotonic() - started)
        return spent / len(txs), outcomes

    honest_cost, honest_outcomes = await submit_all(honest)
    spam_cost, spam_outcomes = await submit_all(spam)
    return {
        "idle_cpu_share": round(idle_rate, 3),
        "honest_submissions": honest_outcomes,
        "spam_submissions": spam_outcomes,
        "node_cpu_us_per_honest_submission": round(honest_cost * 1e6, 1),
        "node_cpu_us_per_spam_submission": round(spam_cost * 1e6, 1),
        "node_spam_to_honest_cost_ratio": round(spam_cost / honest_cost, 3),
    }


def pool_costs(genesis: Any, honest: list[bytes], spam: list[bytes]) -> dict[str, Any]:
    """The same submissions against the pool alone: the node's event-loop cost."""
    state = MemoryState(genesis.state)
    block = BlockInfo(1, 0, bytes(32), genesis.hash)
    pool = TransactionPool(PoolLimits())
    started = time.perf_counter()
    for raw in honest:
        pool.submit(raw, state, block, genesis.hash)
    honest_s = (time.perf_counter() - started) / len(honest)
    refused = 0
    started = time.perf_counter()
    for raw in spam:
        try:
            pool.submit(raw, state, block, genesis.hash)
        except PoolError:
            refused += 1
    spam_s = (time.perf_counter() - started) / len(spam)
    return {"pool_us_per_honest_submission": round(honest_s * 1e6, 1),
            "pool_us_per_spam_submission": round(spam_s * 1e6, 1),
            "pool_spam_refused": refused,
            "pool_spam_to_honest_cost_ratio": round(spam_s / honest_s, 3)}


def attack_report(stats: AttackStats, started: float) -> dict[str, Any]:
    included: dict[bytes, float] = {}
    for _, _, seen, hashes in stats.heads:
        for tx_hash in hashes:
            included.setdefault(tx_hash, seen)
    latencies = [(included[h] - at) * 1000 for h, at in stats.honest if h in included]
    heads = sorted({(n, s) for n, s, seen, _ in stats.heads if seen >= started})
    missed = None
    if len(heads) >= 2:
        (first_n, first_s), (last_n, last_s) = heads[0], heads[-1]
        missed = (last_s - first_s + 1) - (last_n - first_n + 1)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return {
        "honest_submitted": len(stats.honest),
        "honest_included": len(latencies),
        "honest_latency_ms_p50": None if p50 is None else round(p50),
        "honest_latency_ms_p99": None if p99 is None else round(p99),
        "honest_latency_slots_p99": None if p99 is None else round(p99 / SLOT_MS, 2),
        "honest_latency_ms_mean": round(statistics.fmean(latencies)) if latencies else None,
        "blocks": len(heads),
        "missed_slots": missed,
        "rpc_spam_sent": stats.rpc_sent,
        "rpc_spam_refused": stats.rpc_refused,
        "gossip_spam_sent": stats.gossip_sent,
        "gossip_batches": stats.gossip_batches,
        "gossip_identities": stats.identities,
        "rss_mb_every_10s": stats.rss_mb,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    genesis = build_genesis(dev_spec())
    bob, charlie, eve, ferdie = (dev_keypair(n) for n in ("bob", "charlie", "eve", "ferdie"))
    dave = dev_keypair("dave").public
    print("signing the workloads…", file=sys.stderr)
    honest_cost = transfers(bob, range(HONEST_COST_TXS), genesis.hash, dave)
    spam_cost = transfers(eve, range(1, SPAM_COST_TXS + 1), genesis.hash, dave)
    rpc_spam = transfers(eve, range(SPAM_COST_TXS + 1, SPAM_COST_TXS + 5001), genesis.hash, dave)
    gossip_spam = transfers(ferdie, range(1, 10001), genesis.hash, dave)
    honest_txs = transfers(charlie, range(int(args.seconds / HONEST_INTERVAL_S) + 10),
                           genesis.hash, dave, amount=2)
    result: dict[str, Any] = {"bench": "pool_attack", "seconds": args.seconds}
    result.update(pool_costs(genesis, honest_cost, spam_cost))

    node = NodeProcess("victim", Path("dev"), workdir / "node", workdir / "node.log", "--alice")
    try:
        node.wait_answering()
        pid = node.process.pid
        url = f"ws://{HOST}:{node.rpc_port}/"
        async with open_websocket_url(url) as c1, open_websocket_url(url) as c2, \
                open_websocket_url(url) as c3, trio.open_nursery() as nursery:
            spam_rpc, honest_rpc, watch_rpc = Rpc(c1), Rpc(c2), Rpc(c3)
            heads_send, heads = trio.open_memory_channel[Any](1024)
            for rpc in (spam_rpc, honest_rpc):
                nursery.start_soon(rpc.reader)
            nursery.start_soon(watch_rpc.reader, heads_send)
            print("measuring the cost per submission…", file=sys.stderr)
            result.update(await submission_costs(spam_rpc, pid, honest_cost, spam_cost))
            stats = AttackStats()
            result["rss_mb_before_attack"] = round(memory_mb(pid)["VmRSS"], 1)
            print(f"attacking for {args.seconds} s…", file=sys.stderr)
            started = time.monotonic()
            done = False
            async with trio.open_nursery() as attack:
                attack.start_soon(head_watcher, watch_rpc, heads, stats)
                attack.start_soon(rpc_spammer, spam_rpc, rpc_spam, stats)
                attack.start_soon(gossip_spammer, node, genesis, gossip_spam, stats)
                attack.start_soon(honest_user, honest_rpc, honest_txs, stats, lambda: done)
                for _ in range(int(args.seconds // RSS_SAMPLE_S)):
                    await trio.sleep(RSS_SAMPLE_S)
                    stats.rss_mb.append(round(memory_mb(pid)["VmRSS"], 1))
                await trio.sleep(args.seconds % RSS_SAMPLE_S)
                done = True
                await trio.sleep(2 * SLOT_MS / 1000)  # the last honest ones get included
                attack.cancel_scope.cancel()
            result.update(attack_report(stats, started))
            memory = memory_mb(pid)
            result["rss_mb_after_attack"] = round(memory["VmRSS"], 1)
            result["rss_mb_peak"] = round(memory["VmHWM"], 1)
            result["bans_logged"] = node.log.read_text(errors="replace").count("Banning peer")
            nursery.cancel_scope.cancel()
    finally:
        node.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_attack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the attack phase (default 60)")
    parser.add_argument("--node-log", metavar="FILE", type=Path,
                        help="keep the node's log here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opus-pool-attack-") as tmp:
        try:
            result = trio.run(run, args, Path(tmp))
        finally:
            if args.node_log is not None and (Path(tmp) / "node.log").exists():
                shutil.copyfile(Path(tmp) / "node.log", args.node_log)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
