"""Audits past one machine: ``opus registry export`` and ``opus audit --registry``.

The chain and the DataComp-shaped dataset are test_audit.py's (works in every state an
audit tells apart, registered from real files), on a module-wide ``opus --dev`` process.
The registry is exported from it at a block; the dataset's shards are then joined
against the file with no node in the join, in this process and on a Dask cluster of
worker processes (``distributed.LocalCluster``, 2 workers, on 127.0.0.1), and every row
(status, work id, terms, fee, licence, distance) must equal the node-backed audit's at
the same block. A registry exported at an earlier block gives that block's answers, and a
malformed, missing or mismatched registry is one error, with no report written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import distributed
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from processes import opus_dev, rpc_call
from test_audit import (
    BOB,
    FILES,
    Chain,
    audit,
    build_chain,
    compare,
    expected_rows,
    opus,
    write_shards,
)

from client.audit.classify import AuditRow
from client.audit.registry import METADATA_KEY, SCHEMA, audit_shard
from client.audit.report import read_csv_report
from runtime.codec import hex0x

pytestmark = pytest.mark.slow

REGISTERED = sum(1 for owner, _ in FILES.values() if owner is not None)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("registry-chain")
    with opus_dev(base / "node.log") as (_, port):
        yield build_chain(f"http://127.0.0.1:{port}", base / "media")


def port_of(chain: Chain) -> int:
    return int(chain.url.rsplit(":", 1)[1])


def best_hash(chain: Chain) -> str:
    return str(rpc_call(port_of(chain), "chain_getBlockHash", []))


def export(chain: Chain, out: Path, *argv: str) -> dict[str, object]:
    result = opus("registry", "export", "--out", str(out), "--rpc", chain.url, "--json",
                  *argv)
    assert result.code == 0, result.err
    answer: dict[str, object] = json.loads(result.out)
    return answer


def node_audit(chain: Chain, shards: Path, out: Path, *argv: str
               ) -> tuple[dict[str, object], list[AuditRow]]:
    result = audit(chain, str(shards), "--out", str(out), *argv)
    assert result.code == 0, result.err
    return read_csv_report(out)


def registry_audit(chain: Chain, shards: Path, registry: Path, out: Path, *argv: str
                   ) -> tuple[dict[str, object], list[AuditRow]]:
    # No --rpc: the default URL has no node behind it, so a call would fail the audit.
    result = opus("audit", str(shards), "--registry", str(registry), "--out", str(out), *argv)
    assert result.code == 0, result.err
    assert f"registry                {registry} (no node asked)" in result.out
    return read_csv_report(out)


def test_export_then_audit_equals_the_node_backed_audit(chain: Chain, tmp_path: Path) -> None:
    at = best_hash(chain)
    registry = tmp_path / "registry.parquet"
    answer = export(chain, registry, "--at", at, "--licensee", "bob")
    genesis = rpc_call(port_of(chain), "chain_getBlockHash", [0])
    assert answer["blockHash"] == at and answer["works"] == REGISTERED
    assert answer["genesisHash"] == genesis and answer["licensee"] == BOB.address

    # The file: one row a work, the block and chain in its metadata.
    meta = json.loads(pq.read_metadata(registry).metadata[METADATA_KEY])
    assert meta["blockHash"] == at and meta["genesisHash"] == genesis
    header = rpc_call(port_of(chain), "chain_getHeader", [at])
    assert meta["blockNumber"] == int(header["number"], 16)
    table = pq.read_table(registry)
    assert table.schema == SCHEMA
    by_hash = {r["content_hash"]: r for r in table.to_pylist()}
    assert set(by_hash) == {chain.hashes[n] for n, (o, _) in FILES.items() if o is not None}
    cheap = by_hash[chain.hashes["cheap.jpg"]]
    assert (cheap["work_id"], cheap["terms_id"], cheap["fee"], cheap["live_terms"]) == \
        (chain.works["cheap.jpg"], chain.terms["cheap.jpg"][2], str(2 * 10**12), 3)
    assert by_hash[chain.hashes["licensed.flac"]]["license_id"] == chain.bob_license

    shards = tmp_path / "shards"
    write_shards(chain, shards)
    node_meta, node_rows = node_audit(chain, shards, tmp_path / "node.csv", "--at", at,
                                      "--licensee", "bob")
    local_meta, local_rows = registry_audit(chain, shards, registry, tmp_path / "local.csv")
    compare(local_rows, node_rows)
    compare(local_rows, expected_rows(chain))
    for key in ("blockHash", "blockNumber", "licensee", "complete"):
        assert local_meta[key] == node_meta[key], key
    assert local_meta["registry"] == str(registry)

    # The per-shard function gives each shard's rows, named as in the folder's audit.
    shard_rows = [row for path in sorted(shards.iterdir())
                  for row in audit_shard(str(path), str(registry), root=str(shards))]
    compare(shard_rows, node_rows)


def test_a_dask_cluster_of_processes_gives_the_same_rows(chain: Chain, tmp_path: Path) -> None:
    at = best_hash(chain)
    registry = tmp_path / "registry.parquet"
    export(chain, registry, "--at", at, "--licensee", "bob")
    shards = tmp_path / "shards"
    write_shards(chain, shards, shards=5)
    _, node_rows = node_audit(chain, shards, tmp_path / "node.csv", "--at", at,
                              "--licensee", "bob")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # two processes of their own
        meta, rows = registry_audit(chain, shards, registry, tmp_path / "dask.csv",
                                    "--dask", cluster.scheduler_address)
        # The same function mapped by hand, as a program would on its own cluster.
        paths = [str(p) for p in sorted(shards.iterdir())]
        mapped = client.gather(client.map(audit_shard, paths, registry=str(registry),
                                          root=str(shards)))
    compare(rows, node_rows)
    compare([row for part in mapped for row in part], node_rows)
    assert meta["blockHash"] == at and meta["complete"] is True
    # --dask local:N starts a cluster of its own for the audit, and stops it.
    _, rows = registry_audit(chain, shards, registry, tmp_path / "local.csv", "--dask", "local:2")
    compare(rows, node_rows)


def test_a_registry_of_an_earlier_block_gives_that_blocks_answers(chain: Chain,
                                                                   tmp_path: Path) -> None:
    registry = tmp_path / "before.parquet"
    answer = export(chain, registry, "--at", chain.before_offers)
    assert answer["blockHash"] == chain.before_offers and answer["licensee"] is None
    shards = tmp_path / "shards"
    write_shards(chain, shards)
    node_meta, node_rows = node_audit(chain, shards, tmp_path / "node.csv",
                                      "--at", chain.before_offers)
    meta, rows = registry_audit(chain, shards, registry, tmp_path / "local.csv")
    compare(rows, node_rows)
    compare(rows, expected_rows(chain, before_offers=True, licensee=False))
    assert meta["blockHash"] == node_meta["blockHash"] == chain.before_offers
    assert meta["blockNumber"] == node_meta["blockNumber"]


def refused(tmp_path: Path, *argv: str) -> str:
    """``opus audit`` that must fail: its one error line; no report is written."""
    out = tmp_path / "reports" / "report.csv"
    out.parent.mkdir(exist_ok=True)
    result = opus("audit", *argv, "--out", str(out))
    assert result.code == 1, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert "Traceback" not in result.err
    assert list(out.parent.iterdir()) == []
    return lines[0]


def as_registry(table: pa.Table, like: Path, path: Path) -> None:
    """Write ``table`` with the registry metadata of the file ``like``."""
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(
            {METADATA_KEY.decode(): pq.read_metadata(like).metadata[METADATA_KEY].decode()})


def test_a_malformed_or_missing_registry_is_one_clear_error(chain: Chain,
                                                           tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shards(chain, shards)
    good = tmp_path / "registry.parquet"
    export(chain, good, "--licensee", "bob")
    files = tmp_path / "files"
    files.mkdir()

    missing = files / "missing.parquet"
    assert "the registry" in refused(tmp_path, str(shards), "--registry", str(missing))
    assert "does not exist" in refused(tmp_path, str(shards), "--registry", str(missing))

    truncated = files / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    error = refused(tmp_path, str(shards), "--registry", str(truncated))
    assert "truncated.parquet is not a readable parquet file" in error

    plain = files / "plain.parquet"  # a parquet file, not a registry
    pq.write_table(pa.table({"sha256": [chain.hashes["bare.png"]]}), plain)
    error = refused(tmp_path, str(shards), "--registry", str(plain))
    assert "plain.parquet is not an opus registry (no 'opus-registry' metadata" in error

    table = pq.read_table(good)
    bad = files / "bad-hash.parquet"
    hashes = table.column("content_hash").to_pylist()
    hashes[3] = "zz" + hashes[3][2:]
    as_registry(table.set_column(0, "content_hash", pa.array(hashes, pa.string())), good, bad)
    error = refused(tmp_path, str(shards), "--registry", str(bad))
    assert error == "Error: bad-hash.parquet: row 4: content_hash is not 64 lower-case hex digits"

    short = files / "short.parquet"  # rows lost, the metadata kept
    as_registry(table.slice(0, 2), good, short)
    error = refused(tmp_path, str(shards), "--registry", str(short))
    assert f"short.parquet holds 2 works, its metadata says {REGISTERED}" in error

    # A registry is one licensee's and one block's.
    error = refused(tmp_path, str(shards), "--registry", str(good), "--licensee", "charlie")
    assert "was exported for the licensee " + BOB.address in error
    assert "--licensee" in error
    error = refused(tmp_path, str(shards), "--registry", str(good), "--at",
                    chain.before_offers)
    assert f"--at {chain.before_offers}: the registry" in error
    error = refused(tmp_path, str(shards), "--dask", "local:2")
    assert "--dask needs --registry" in error
    error = refused(tmp_path, str(shards), "--registry", str(good), "--dask", "local:0")
    assert "local:N takes a number of workers, 1 to 1024" in error
    error = refused(tmp_path, str(chain.media), "--registry", str(good), "--dask", "local:2")
    assert "--dask maps the audit over files of rows" in error

    # The export's own errors: no such block, not a parquet name.
    result = opus("registry", "export", "--out", str(files / "r.parquet"), "--rpc", chain.url,
                  "--at", hex0x(bytes(32)))
    assert result.code == 1 and "the node has no block 0x0000" in result.err
    result = opus("registry", "export", "--out", str(files / "r.csv"), "--rpc", chain.url)
    assert result.code == 1 and "a registry is a .parquet file" in result.err


def test_the_export_rpc_is_paged_and_bounded(chain: Chain) -> None:
    port = port_of(chain)
    at = best_hash(chain)
    ids: list[int] = []
    start: int | None = 1
    pages = 0
    while start is not None:
        page = rpc_call(port, "opus_exportRegistry", {"at": at, "start": start, "limit": 3})
        assert page["blockHash"] == at and page["total"] == REGISTERED
        assert len(page["works"]) <= 3
        ids += [w["workId"] for w in page["works"]]
        start = page["next"]
        pages += 1
    assert ids == sorted(chain.works.values()) and pages == -(-REGISTERED // 3)
    work = rpc_call(port, "opus_exportRegistry", [{"start": chain.works["cheap.jpg"],
                                                   "limit": 1}])["works"][0]
    assert work["contentHash"] == "0x" + chain.hashes["cheap.jpg"]
    assert work["fingerprint"] is None and work["liveTerms"] == 3
    too_many = _rpc_error(port, "opus_exportRegistry", {"limit": 2049})
    assert too_many["code"] == -32602 and "limit" in too_many["message"] + str(
        too_many.get("data"))
    unknown = _rpc_error(port, "opus_exportRegistry", {"at": hex0x(bytes(32))})
    assert unknown["code"] == -32602


def _rpc_error(port: int, method: str, params: object) -> dict[str, object]:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "error" in answer, answer
    error: dict[str, object] = answer["error"]
    return error
