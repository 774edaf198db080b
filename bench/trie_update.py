"""Benchmark: batch trie updates against a 200,000-key trie in a MemoryNodeStore.

Builds the trie in batches, then times batches of 5,000 random changes (60%
updates of existing keys, 30% inserts, 10% deletes), applying each batch's new
nodes to the store as block import would. Prints one JSON line: key changes per
second over all timed batches (wall clock), for the median batch, and per CPU
second (steadier on a shared machine).

    .venv/bin/python -m bench.trie_update [--keys N] [--batch N] [--batches N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from runtime.trie import EMPTY_ROOT, MemoryNodeStore, trie_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(1)

    store = MemoryNodeStore()
    root = EMPTY_ROOT
    keys: list[bytes] = []
    next_id = 0

    def new_key() -> bytes:
        nonlocal next_id
        next_id += 1
        return b"key:" + next_id.to_bytes(8, "big")

    build_start = time.perf_counter()
    while len(keys) < args.keys:
        batch = {}
        for _ in range(min(args.batch * 10, args.keys - len(keys))):
            key = new_key()
            keys.append(key)
            batch[key] = rng.randbytes(32)
        update = trie_update(store, root, batch)
        store.put_nodes(update.new_nodes)
        root = update.root
    build_seconds = time.perf_counter() - build_start

    live = set(keys)
    timed = 0.0
    cpu = 0.0
    batch_seconds: list[float] = []
    changed = 0
    for _ in range(args.batches):
        changes: dict[bytes, bytes | None] = {}
        while len(changes) < args.batch:
            roll = rng.random()
            if roll < 0.6:  # update an existing key
                changes[rng.choice(keys)] = rng.randbytes(32)
            elif roll < 0.9:  # insert a new key
                key = new_key()
                keys.append(key)
                changes[key] = rng.randbytes(32)
            else:  # delete (sometimes an already-deleted key: a no-op)
                changes[rng.choice(keys)] = None
        start = time.perf_counter()
        cpu_start = time.process_time()
        update = trie_update(store, root, changes)
        cpu += time.process_time() - cpu_start
        elapsed = time.perf_counter() - start
        timed += elapsed
        batch_seconds.append(elapsed)
        store.put_nodes(update.new_nodes)
        root = update.root
        changed += len(changes)
        for key, value in changes.items():
            if value is None:
                live.discard(key)
            else:
                live.add(key)

    print(
        json.dumps(
            {
                "bench": "trie_update",
                "trie_keys": len(live),
                "batch": args.batch,
                "batches": args.batches,
                "keys_per_second": round(changed / timed),
                "median_batch_keys_per_second": round(
                    args.batch / statistics.median(batch_seconds)
                ),
                "cpu_keys_per_second": round(changed / cpu),
                "seconds_per_batch": round(timed / args.batches, 4),
                "build_keys_per_second": round(args.keys / build_seconds),
                "store_nodes": len(store.nodes),
            }
        )
    )


if __name__ == "__main__":
    main()
