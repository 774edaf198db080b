"""The Prometheus exporter: the named series, their values, and a clean stop."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from processes import free_port
from prometheus_client.parser import text_string_to_metric_families

from genesis import build_genesis, dev_spec
from node.chain.store import ChainStore
from node.consensus.aura import AuraAuthor
from node.consensus.sole import SoleAuthorityFinality
from node.keystore import Keystore
from node.metrics import Metrics
from node.service import Node, NodeConfig
from runtime import codec
from runtime.crypto import dev_keypair
from runtime.executive import SPEC_VERSION
from runtime.extrinsic import sign_extrinsic
from runtime.modules.balances import TransferArgs
from runtime.support import make_call

ALICE = dev_keypair("alice")
BOB = dev_keypair("bob")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def http_get(port: int, request: bytes) -> tuple[str, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


async def scrape(port: int) -> Samples:
    status, body = await http_get(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[tuple[Node, int]]:
    genesis = build_genesis(dev_spec())
    port = free_port()
    config = NodeConfig(base_path=tmp_path, name="metrics-test", rpc_port=None,
                        prometheus_port=port, network=False)
    with ChainStore.open(tmp_path, genesis) as store:
        node = Node(config, genesis, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            # Author by hand (no slot timer, so the heights are exact), and finalize as the
            # sole authority does: consensus is attached after run() (which started none).
            keys = Keystore.in_memory(ALICE)
            node.author = AuraAuthor(node, keys)
            node.on_imported.insert(0, SoleAuthorityFinality(node, keys).on_block_imported)
            yield node, port
            nursery.cancel_scope.cancel()


async def author(node: Node) -> None:
    slot = max(node.best.slot, node.now_ms() // node.slot_duration) + 1
    assert node.author is not None
    assert await node.author.author_in_slot(slot) is not None


async def test_metrics_series_and_values(tmp_path: Path) -> None:
    async with running_node(tmp_path) as (node, port):
        first = await scrape(port)
        assert first[("opus_block_height", (("status", "best"),))] == 0
        assert first[("opus_block_height", (("status", "finalized"),))] == 0
        assert first[("opus_ready_transactions_number", ())] == 0
        assert first[("opus_peers", ())] == 0
        assert first[("opus_imported_extrinsics_total", ())] == 0
        assert first[("opus_block_import_seconds_count", ())] == 0
        assert first[("opus_block_authoring_seconds_count", ())] == 0
        info = [k for k in first if k[0] == "opus_build_info"]
        assert info and dict(info[0][1]) == {"chain": "opus_dev", "name": "metrics-test",
                                             "version": dict(info[0][1])["version"]}
        assert first[info[0]] == 1

        ext = sign_extrinsic(ALICE, make_call(TransferArgs(BOB.public, 10**12)), 0,
                             node.genesis.hash, SPEC_VERSION)
        await node.submit_extrinsic(codec.encode(ext))
        assert (await scrape(port))[("opus_ready_transactions_number", ())] == 1

        await author(node)  # includes the transfer; a sole authority finalizes it
        await author(node)
        after = await scrape(port)
        assert after[("opus_block_height", (("status", "best"),))] == 2
        assert after[("opus_block_height", (("status", "finalized"),))] == 2
        assert after[("opus_ready_transactions_number", ())] == 0
        assert after[("opus_imported_extrinsics_total", ())] == 1
        assert after[("opus_block_import_seconds_count", ())] == 2
        assert after[("opus_block_authoring_seconds_count", ())] == 2
        assert after[("opus_block_import_seconds_bucket", (("le", "+Inf"),))] == 2


async def test_exporter_survives_bad_requests_and_stops_cleanly(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    async with running_node(tmp_path) as (_node, port):
        status, _ = await http_get(port, b"GET / HTTP/1.1\r\n\r\n")
        assert status.startswith("HTTP/1.1 404")
        status, _ = await http_get(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status.startswith("HTTP/1.1 405")
        status, _ = await http_get(port, b"x" * 10_000)
        assert status.startswith("HTTP/1.1 400")
        head, body = await http_get(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head == "HTTP/1.1 200 OK" and body == b""
        stream = await trio.open_tcp_stream("127.0.0.1", port)  # connect and hang up
        await stream.aclose()
        assert ("opus_peers", ()) in await scrape(port)
    with socket.socket() as s:  # the listener is closed
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert threading.active_count() <= threads_before + 1  # trio's idle worker thread at most


def test_registries_are_per_node() -> None:
    one = Metrics(version="1", chain="a", name="one")
    two = Metrics(version="1", chain="b", name="two")  # no duplicate-registration error
    one.block_imported(3, 0.01)
    one.block_authored(0.02)
    text_one, text_two = one.render().decode(), two.render().decode()
    assert "opus_imported_extrinsics_total 3.0" in text_one
    assert "opus_imported_extrinsics_total 0.0" in text_two
    assert "opus_block_authoring_seconds_count 1.0" in text_one
    assert 'opus_build_info{chain="b",name="two",version="1"} 1.0' in text_two
