"""``opus audit`` end to end: datasets audited against a real ``opus --dev`` node.

A module-wide ``opus --dev`` process (tests/processes.py, ended by its PID) holds works in
every state an audit tells apart, registered from real files (their SHA-256): no terms,
terms refusing AI training, several terms (the cheapest wins), constrained terms with a
legal URI full of CSV-hostile characters, retired terms, a work licensed by Bob, and a
second rights holder. The datasets are built here: DataComp-shaped parquet shards (pyarrow),
CSV, JSON Lines and a folder of the files themselves. The command runs in this process
(``opus``'s parser and dispatch, in the main thread), except the Ctrl-C test, which runs
it as a process of its own and interrupts it.

Checked: the counts per status and the fees, exact; every report format (CSV, JSON,
parquet, HTML) holding the same rows and reading back; the block the report names; the
malformed inputs (one error naming the file and the row, exit 1, no report written and a
previous one untouched); and a partial report after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import Result, run_opus
from processes import ROOT, opus_dev, rpc_call
from runtime_helpers import offer_terms

from client import OpusClient, Receipt
from client.audit.classify import AuditRow, Status
from client.audit.report import read_csv_report, read_json_report, read_parquet_report
from runtime.codec import Struct, hex0x
from runtime.crypto import Keypair, dev_keypair, sha256
from runtime.modules import licensing, provenance
from runtime.modules.licensing import AiUse

pytestmark = pytest.mark.slow

ALICE, BOB, CHARLIE = (dev_keypair(n) for n in ("alice", "bob", "charlie"))
ONE = 10**12
HOSTILE_URI = 'ipfs://terms, "v2"\nsee §3; <b>&amp;</b>'
DATACOMP = pa.schema([
    ("uid", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("original_width", pa.int64()), ("original_height", pa.int64()),
    ("clip_b32_similarity_score", pa.float32()), ("clip_l14_similarity_score", pa.float32()),
    ("face_bboxes", pa.list_(pa.list_(pa.float64()))), ("sha256", pa.string()),
])
EXIT_TIMEOUT_S = 60


# ---------------------------------------------------------------------------
# The chain


offer = offer_terms


# What each file is: its owner, and the terms offered on it (None: not registered).
FILES: dict[str, tuple[Keypair | None, list[dict[str, Any]]]] = {
    "bare.png": (ALICE, []),
    "refused.jpg": (ALICE, [dict(ai=AiUse.NOT_ALLOWED, fee=0, commercial_use=True)]),
    "cheap.jpg": (ALICE, [dict(ai=AiUse.ALLOWED, fee=7 * ONE),
                          dict(ai=AiUse.CONSTRAINED, fee=2 * ONE, legal_uri="ipfs://c"),
                          dict(ai=AiUse.ALLOWED, fee=2 * ONE, commercial_use=True,
                               commercial_rev_share=250)]),
    "constrained.webp": (ALICE, [dict(ai=AiUse.CONSTRAINED, fee=ONE + ONE // 2, max_supply=10,
                                      legal_uri=HOSTILE_URI)]),
    "licensed.flac": (ALICE, [dict(ai=AiUse.ALLOWED, fee=3 * ONE)]),
    "big.bin": (ALICE, [dict(ai=AiUse.ALLOWED, fee=ONE // 4, expiry_blocks=100)]),
    "retired.png": (ALICE, [dict(ai=AiUse.ALLOWED, fee=ONE)]),
    "charlie.jpg": (CHARLIE, [dict(ai=AiUse.ALLOWED, fee=4 * ONE)]),
    "new1.jpg": (None, []),
    "new2.jpg": (None, []),
}
CHEAPEST = {"cheap.jpg": 2}  # which offer is the cheapest allowing training (default: the first)


def content(name: str) -> bytes:
    if name == "big.bin":  # several 1 MiB reads
        return b"".join(sha256(b"big %d" % i) for i in range(100_000))
    return f"the file {name}".encode()


@dataclass
class Chain:
    url: str
    media: Path  # a folder holding every file
    hashes: dict[str, str]  # file -> sha256 (hex)
    works: dict[str, int] = field(default_factory=dict)
    terms: dict[str, list[int]] = field(default_factory=dict)
    bob_license: int = 0
    before_offers: str = ""  # a block hash: works registered, no terms yet

    def expected(self, item: str, name: str, *, licensee: bool = True,
                 before_offers: bool = False) -> AuditRow:
        """The row an audit must give the item ``item`` holding the file ``name``."""
        sha = self.hashes[name]
        owner, offers = FILES[name]
        if owner is None:
            return AuditRow(item, sha, Status.NOT_REGISTERED)
        base = dict(item=item, sha256=sha, match="sha256", work_id=self.works[name],
                    owner=owner.address)
        live = [] if before_offers or name == "retired.png" else offers
        if not live:
            return AuditRow(status=Status.NO_TERMS, **base)
        if all(o["ai"] == AiUse.NOT_ALLOWED for o in live):
            return AuditRow(status=Status.NOT_ALLOWED, **base)
        if licensee and name == "licensed.flac":
            return AuditRow(status=Status.LICENSED, license_id=self.bob_license, **base)
        index = CHEAPEST.get(name, 0)
        chosen = live[index]
        status = Status.CONSTRAINED if chosen["ai"] == AiUse.CONSTRAINED else Status.ALLOWED
        return AuditRow(status=status, terms_id=self.terms[name][index],
                        ai_training=chosen["ai"].value, fee=chosen["fee"],
                        royalty_bps=chosen.get("commercial_rev_share", 0),
                        expiry_blocks=chosen.get("expiry_blocks", 0),
                        supply_left=chosen.get("max_supply") or None,
                        legal_uri=chosen.get("legal_uri", ""), **base)


def in_blocks(client: OpusClient, calls: list[tuple[Keypair, Struct]]) -> list[Receipt]:
    """Submit every call at once (each signer's nonces follow on in the pool), then wait."""
    hashes = [client.submit(client.sign(key, args)) for key, args in calls]
    receipts = [client.wait(h, timeout=120) for h in hashes]
    assert all(r.success for r in receipts), [r.error for r in receipts]
    return receipts


def build_chain(url: str, media: Path) -> Chain:
    media.mkdir()
    for name in FILES:
        (media / name).write_bytes(content(name))
    chain = Chain(url, media, {n: sha256(content(n)).hex() for n in FILES})
    client = OpusClient(url)
    registered = [n for n, (owner, _) in FILES.items() if owner is not None]
    receipts = in_blocks(client, [
        (owner, provenance.RegisterWork(sha256(content(n)), provenance.WorkKind.IMAGE, n, "",
                                        None, (provenance.Split(owner.public, 10_000),), ()))
        for n in registered for owner in [FILES[n][0]] if owner is not None])
    for name, receipt in zip(registered, receipts, strict=True):
        chain.works[name] = receipt.events_named("provenance", "WorkRegistered")[0]["workId"]
    chain.before_offers = hex0x(client.best_block()[1])
    offers = [(name, o) for name in registered for o in FILES[name][1]]
    receipts = in_blocks(client, [
        (owner, offer(chain.works[name], o["ai"], o["fee"],
                      **{k: v for k, v in o.items() if k not in ("ai", "fee")}))
        for name, o in offers for owner in [FILES[name][0]] if owner is not None])
    for (name, _), receipt in zip(offers, receipts, strict=True):
        terms_id = receipt.events_named("licensing", "TermsOffered")[0]["termsId"]
        chain.terms.setdefault(name, []).append(terms_id)
    receipts = in_blocks(client, [
        (BOB, licensing.AcquireLicense(chain.terms["licensed.flac"][0])),
        (ALICE, licensing.RetireTerms(chain.terms["retired.png"][0]))])
    chain.bob_license = receipts[0].events_named("licensing", "LicenseAcquired")[0]["licenseId"]
    return chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("audit-chain")
    with opus_dev(base / "node.log") as (_, port):
        yield build_chain(f"http://127.0.0.1:{port}", base / "media")


# ---------------------------------------------------------------------------
# Datasets and running the command


# The dataset: (item, file) rows; None is a hash nobody registered.
UNREGISTERED = 20


def dataset_rows() -> list[tuple[str, str | None]]:
    names: list[str | None] = [*FILES, "cheap.jpg", "charlie.jpg", "cheap.jpg"]
    names += [None] * UNREGISTERED
    return [(f"uid{i:04d}", name) for i, name in enumerate(names)]


def row_hash(chain: Chain, item: str, name: str | None) -> str:
    return chain.hashes[name] if name else sha256(f"nobody's {item}".encode()).hex()


def expected_rows(chain: Chain, **kw: Any) -> list[AuditRow]:
    """The rows an audit of :func:`dataset_rows` must give."""
    return [chain.expected(item, name, **kw) if name else
            AuditRow(item, row_hash(chain, item, None), Status.NOT_REGISTERED)
            for item, name in dataset_rows()]


def write_shards(chain: Chain, folder: Path, shards: int = 2) -> None:
    """The dataset as DataComp CommonPool parquet shards."""
    folder.mkdir()
    rows = dataset_rows()
    per = -(-len(rows) // shards)
    for s in range(shards):
        part = rows[s * per:(s + 1) * per]
        columns = {
            "uid": [item for item, _ in part],
            "url": [f"https://example.org/{item}.jpg" for item, _ in part],
            "text": [f"a caption for {item}" for item, _ in part],
            "original_width": [640] * len(part), "original_height": [480] * len(part),
            "clip_b32_similarity_score": [0.31] * len(part),
            "clip_l14_similarity_score": [0.27] * len(part),
            "face_bboxes": [[[0.1, 0.2, 0.3, 0.4]] if i % 3 == 0 else [] for i in range(len(part))],
            "sha256": [row_hash(chain, item, name) for item, name in part],
        }
        pq.write_table(pa.table(columns, schema=DATACOMP), folder / f"{s:08d}.parquet",
                       row_group_size=7)


opus = run_opus


def audit(chain: Chain, *argv: str) -> Result:
    return opus("audit", *argv, "--rpc", chain.url)


def compare(rows: list[AuditRow], expected: list[AuditRow]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got == want, (got.item, got, want)


# ---------------------------------------------------------------------------
# A DataComp dataset, every report format


class _Page(HTMLParser):
    """The cells of the page's item table, its text, and any reference to outside files."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.in_items = False
        self.cell: list[str] | None = None
        self.text: list[str] = []
        self.outside: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table" and values.get("id") == "rows":
            self.in_items = True
        elif tag == "tr" and self.in_items:
            self.rows.append([])
        elif tag == "td" and self.in_items:
            self.cell = []
        elif tag == "svg":
            self.svgs += 1
        self.outside += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "link":
            self.outside.append(str(values))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_items = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


def test_a_datacomp_dataset_in_every_report_format(chain: Chain, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shards(chain, shards)
    expected = expected_rows(chain)
    reports = {}
    for suffix in ("csv", "json", "parquet", "html"):
        out = tmp_path / f"report.{suffix}"
        result = audit(chain, str(shards), "--licensee", "bob", "--out", str(out))
        assert result.code == 0, result.err
        assert f"Report: {out}" in result.out
        reports[suffix] = out

    meta, csv_rows = read_csv_report(reports["csv"])
    compare(csv_rows, expected)
    json_meta, json_rows = read_json_report(reports["json"])
    compare(json_rows, expected)
    parquet_meta, parquet_rows = read_parquet_report(reports["parquet"])
    compare(parquet_rows, expected)
    for m in (meta, json_meta, parquet_meta):
        assert m["complete"] is True and m["licensee"] == BOB.address
        assert m["source"] == str(shards)
        # The block it names is a block of the chain, at which every row can be proved.
        header = rpc_call(port_of(chain), "chain_getHeader", [m["blockHash"]])
        assert int(header["number"], 16) == m["blockNumber"]
    proof = rpc_call(port_of(chain), "opus_getProvenanceProof",
                     [chain.works["cheap.jpg"], meta["blockHash"]])
    assert proof["work"]["contentHash"] == "0x" + chain.hashes["cheap.jpg"]

    # The counts and fees, exact: 3 copies of the cheap work and 2 of Charlie's owe one
    # license each; the licensed work owes nothing.
    summary = json_meta["summary"]
    assert summary["rows"] == len(dataset_rows()) == 33
    assert summary["counts"] == {"not_registered": UNREGISTERED + 2, "no_terms": 2,
                                 "not_allowed": 1, "allowed": 6, "constrained": 1,
                                 "licensed": 1}
    assert summary["feesOwed"] == str(2 * ONE + ONE // 4 + (ONE + ONE // 2) + 4 * ONE)
    assert summary["worksToLicense"] == 4
    assert summary["topRightsHolders"][0] == {"owner": CHARLIE.address, "items": 2,
                                              "works": 1, "fees": str(4 * ONE)}
    assert summary["topRightsHolders"][1] == {"owner": ALICE.address, "items": 9,
                                              "works": 3, "fees": str(3 * ONE + 3 * ONE // 4)}
    assert parquet_meta["summary"] == summary

    page = _Page()
    page.feed(reports["html"].read_text(encoding="utf-8"))
    page.close()
    assert page.outside == [] and page.svgs == 2
    text = "".join(page.text)
    assert "7.75 OPUS" in text and "Partial report" not in text
    items = [cells for cells in page.rows if cells]  # (the heading row has no td)
    assert len(items) == len(expected)
    by_item = {cells[0]: cells for cells in items}
    for row in expected:
        cells = by_item[row.item]
        assert cells[1] == row.sha256 and cells[2] == row.status.text
        assert cells[3] == ("" if row.work_id is None else str(row.work_id))
        assert cells[11] == (row.legal_uri or "")  # the hostile URI, escaped and read back


def port_of(chain: Chain) -> int:
    return int(chain.url.rsplit(":", 1)[1])


def test_summary_on_the_terminal_and_as_json(chain: Chain, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shards(chain, shards, shards=1)
    result = audit(chain, str(shards / "00000000.parquet"))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"Audited 33 items of {shards / '00000000.parquet'} at block #")
    assert "  not registered                    22   66.7%" in lines
    # Without a licensee Bob's license does not count: that work is owed for too.
    assert "  AI training allowed                7   21.2%" in lines
    assert any(line.startswith("  fees owed               10.75 OPUS for 5 works")
               for line in lines)
    data = json.loads(audit(chain, str(shards), "--json").out)
    assert data["complete"] is True and data["report"] is None
    assert data["summary"]["counts"]["licensed"] == 0
    assert data["summary"]["feesOwed"] == str(10 * ONE + 3 * ONE // 4)


def test_at_an_earlier_block(chain: Chain, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shards(chain, shards)
    out = tmp_path / "before.csv"
    result = audit(chain, str(shards), "--licensee", "bob", "--at", chain.before_offers,
                   "--out", str(out))
    assert result.code == 0, result.err
    meta, rows = read_csv_report(out)
    assert meta["blockHash"] == chain.before_offers
    compare(rows, expected_rows(chain, before_offers=True))
    unknown = audit(chain, str(shards), "--at", hex0x(bytes(32)))
    assert unknown.code == 1 and "has no block 0x0000" in unknown.err


def test_any_row_can_be_proved_at_the_reports_block(chain: Chain, tmp_path: Path) -> None:
    """``opus proof --content-hash`` proves a report row at its block, offline-checkable by
    ``opus verify``: a registered hash by its work's provenance, an unregistered one by
    the trie nodes showing its entry is empty."""
    block = chain.before_offers  # a block the report could name (not the best one)
    absent, registered = chain.hashes["new1.jpg"], chain.hashes["cheap.jpg"]

    out = tmp_path / "absent.json"
    made = opus("proof", "--content-hash", "0x" + absent, "--block", block, "--out", str(out),
                "--rpc", chain.url)
    assert made.code == 0, made.err
    assert f"0x{absent} is not registered" in made.out
    document = json.loads(out.read_text())
    assert document["format"] == "opus-absence-proof/1" and document["blockHash"] == block
    checked = opus("verify", str(out), "--json")  # offline: no --rpc needed
    assert checked.code == 0, checked.err
    assert checked.json() == {
        "valid": True, "registered": False, "contentHash": "0x" + absent, "blockHash": block,
        "blockNumber": int(document["header"]["number"], 16),
        "stateRoot": document["header"]["stateRoot"], "claimedFinalized": document["finalized"]}

    # The same nodes cannot pass for another hash, and a registered hash has no absence proof.
    for forged_hash in (registered, "11" * 32):
        forged = tmp_path / f"forged-{forged_hash[:4]}.json"
        forged.write_text(json.dumps({**document, "contentHash": "0x" + forged_hash}))
        refused = opus("verify", str(forged))
        assert refused.code == 1 and refused.err.startswith(f"Error: INVALID proof {forged}")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**document, "header": {**document["header"],
                                                           "number": "0x99"}}))
    assert "does not hash to blockHash" in opus("verify", str(tampered)).err

    # A registered row: the proof is its work's provenance at that block.
    work_proof = tmp_path / "work.json"
    made = opus("proof", "--content-hash", "0x" + registered, "--block", block,
                "--out", str(work_proof), "--rpc", chain.url)
    assert made.code == 0, made.err
    assert f"work #{chain.works['cheap.jpg']}" in made.out
    checked = opus("verify", str(work_proof), "--json")
    assert checked.code == 0 and checked.json()["workId"] == chain.works["cheap.jpg"]
    assert checked.json()["blockHash"] == block

    neither = opus("proof", "--out", str(tmp_path / "x.json"), "--rpc", chain.url)
    assert neither.code == 1 and "give a work id or --content-hash" in neither.err


def test_a_folder_of_media_files_csv_and_json_lines(chain: Chain, tmp_path: Path) -> None:
    # The files themselves, hashed here (big.bin takes several 1 MiB reads).
    out = tmp_path / "media.json"
    result = audit(chain, str(chain.media), "--licensee", "bob", "--out", str(out))
    assert result.code == 0, result.err
    _, rows = read_json_report(out)
    compare(rows, [chain.expected(name, name) for name in sorted(FILES)])

    # CSV with url and sha256 (items named by url), JSON Lines with uid and sha256.
    csv_input = tmp_path / "manifest.csv"
    csv_input.write_text("url,sha256\n" + "".join(
        f"https://example.org/{n},{chain.hashes[n].upper()}\n" for n in FILES))
    out = tmp_path / "from-csv.csv"
    # (The signer's account is the licensee when none is named.)
    assert audit(chain, str(csv_input), "--dev-account", "bob", "--out", str(out)).code == 0
    compare(read_csv_report(out)[1],
            [chain.expected(f"https://example.org/{n}", n) for n in FILES])
    lines = tmp_path / "manifest.jsonl"
    lines.write_text("".join(json.dumps({"uid": i, "sha256": "0x" + chain.hashes[n]}) + "\n"
                             for i, n in enumerate(FILES)))
    out = tmp_path / "from-jsonl.csv"
    assert audit(chain, str(lines), "--out", str(out)).code == 0
    compare(read_csv_report(out)[1],
            [chain.expected(str(i), n, licensee=False) for i, n in enumerate(FILES)])


# ---------------------------------------------------------------------------
# Malformed input: one error naming the file and row, exit 1, no report


PREVIOUS = "a previous report\n"


def refused(chain: Chain, tmp_path: Path, target: Path, *argv: str) -> str:
    """Audit ``target``, which must fail: its one error line. The report a previous run
    left is untouched and nothing else is written."""
    out = tmp_path / "report.csv"
    out.write_text(PREVIOUS)
    before = set(tmp_path.iterdir())
    result = audit(chain, str(target), *argv, "--out", str(out))
    assert result.code == 1, (result.out, result.err)
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert "Traceback" not in result.err
    assert out.read_text() == PREVIOUS and set(tmp_path.iterdir()) == before
    return lines[0]


def test_a_parquet_without_the_hash_column(chain: Chain, tmp_path: Path) -> None:
    target = tmp_path / "no-hash.parquet"
    pq.write_table(pa.table({"uid": ["a"], "url": ["https://example.org/a"]}), target)
    error = refused(chain, tmp_path, target)
    assert "no-hash.parquet has no column 'sha256' (its columns: uid, url" in error
    assert "--hash-column" in error
    error = refused(chain, tmp_path, target, "--hash-column", "url")
    assert "row 1: 'url' is 'https://example.org/a', not a SHA-256 hash" in error


def test_a_csv_with_bad_hex_names_the_row(chain: Chain, tmp_path: Path) -> None:
    target = tmp_path / "bad.csv"
    good = [chain.hashes[n] for n in FILES]
    bad = good[:5] + ["zz" + good[5][2:]] + good[6:]
    target.write_text("uid,sha256\n" + "".join(f"u{i},{h}\n" for i, h in enumerate(bad)))
    error = refused(chain, tmp_path, target)
    assert error == (f"Error: bad.csv: row 6: 'sha256' is {'zz' + good[5][2:]!r}, not a "
                     "SHA-256 hash (64 hex digits)")
    target.write_text("uid,sha256\nu0,\n")
    assert "bad.csv: row 1 has no 'sha256'" in refused(chain, tmp_path, target)


def test_a_bad_row_after_lookups_began(chain: Chain, tmp_path: Path) -> None:
    """The second shard is bad: the first one's 3000 rows (three calls' worth) were looked
    up already, and still nothing is written."""
    shards = tmp_path / "shards"
    shards.mkdir()
    first = [sha256(b"%d" % i).hex() for i in range(3000)]
    pq.write_table(pa.table({"uid": [f"a{i}" for i in range(3000)], "sha256": first}),
                   shards / "a.parquet")
    second = [chain.hashes["cheap.jpg"]] * 3 + ["0x1234"]
    pq.write_table(pa.table({"uid": ["b0", "b1", "b2", "b3"], "sha256": second}),
                   shards / "b.parquet")
    error = refused(chain, tmp_path, shards)
    assert error == ("Error: b.parquet: row 4: 'sha256' is '0x1234', not a SHA-256 hash "
                     "(64 hex digits)")


def test_truncated_files(chain: Chain, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shards(chain, shards)
    second = shards / "00000001.parquet"
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])
    error = refused(chain, tmp_path, shards)
    assert "00000001.parquet is not a readable parquet file" in error
    assert "truncated" in error

    rows = "uid,url,sha256\n" + "".join(
        f"u{i},https://example.org/{i},{chain.hashes[n]}\n" for i, n in enumerate(FILES))
    target = tmp_path / "cut.csv"
    target.write_text(rows + "u99,https://exa")  # the last row cut short
    error = refused(chain, tmp_path, target)
    assert "cut.csv: row 11 (line 12) has 2 fields, the header 3" in error

    target = tmp_path / "cut.jsonl"
    target.write_text("".join(json.dumps({"sha256": chain.hashes[n]}) + "\n" for n in FILES)
                      + '{"sha256": "ab')
    assert "cut.jsonl: line 11 is not JSON" in refused(chain, tmp_path, target)


def test_a_folder_with_an_unreadable_file(chain: Chain, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "day1").mkdir(parents=True)
    (folder / "day1" / "a.jpg").write_bytes(content("bare.png"))
    (folder / "day1" / "b.jpg").symlink_to(folder / "gone.jpg")  # (as root, a mode of 000
    error = refused(chain, tmp_path, folder)                        # would not stop a read)
    assert error == "Error: cannot read day1/b.jpg: it is a broken link"
    (folder / "day1" / "b.jpg").unlink()
    os.mkfifo(folder / "day1" / "c.jpg")
    assert "cannot read day1/c.jpg: not a regular file" in refused(chain, tmp_path, folder)


def test_no_such_input_and_no_such_format(chain: Chain, tmp_path: Path) -> None:
    assert "does not exist" in refused(chain, tmp_path, tmp_path / "missing.parquet")
    target = tmp_path / "rows.txt"
    target.write_text("sha256\n")
    assert "rows.txt: not an input this command reads" in refused(chain, tmp_path, target)
    good = tmp_path / "good.csv"
    good.write_text("sha256\n" + chain.hashes["bare.png"] + "\n")
    result = audit(chain, str(good), "--out", str(tmp_path / "report.xlsx"))
    assert result.code == 1 and "a report is a .csv, .parquet, .json or .html file" in result.err


# ---------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_leaves_a_partial_report(chain: Chain, tmp_path: Path) -> None:
    """The input is an endless stream (JSON Lines through a pipe): only Ctrl-C ends the
    audit. It stops after the lookups under way and writes the rows audited so far."""
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "partial.csv"
    log = tmp_path / "audit.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "audit", str(fifo), "--rpc", chain.url,
             "--licensee", "bob", "--out", str(out)],
            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    stop = threading.Event()
    writer = threading.Thread(target=stream_rows, args=(chain, fifo, proc, stop))
    writer.start()
    try:
        body = tmp_path / f".{out.name}.{proc.pid}.body"
        wait_until(lambda: body.exists() and body.stat().st_size > 0, proc, "rows written")
        proc.send_signal(signal.SIGINT)
    finally:
        stop.set()
        writer.join(EXIT_TIMEOUT_S)
        try:
            code = proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    output = log.read_text()
    assert code == 130, output
    assert "(partial: stopped by Ctrl-C)" in output and f"Report: {out} (partial)" in output
    meta, rows = read_csv_report(out)
    assert meta["complete"] is False and meta["rows"] == len(rows) > 0
    # The rows are the stream's first ones, in order, each audited.
    assert [r.item for r in rows] == [f"r{i}" for i in range(len(rows))]
    assert [r.status for r in rows[:len(FILES)]] == [
        chain.expected(n, n).status for n in FILES]
    assert not list(tmp_path.glob(f".{out.name}.*"))


def stream_rows(chain: Chain, fifo: Path, proc: subprocess.Popen[bytes],
                stop: threading.Event) -> None:
    """Write rows into the pipe until ``stop`` (bounded by EXIT_TIMEOUT_S), then close it."""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    fd = None
    while fd is None:  # the reader opens the pipe once the audit starts reading
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if proc.poll() is not None or stop.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.01)
    os.set_blocking(fd, True)
    names = list(FILES)
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            lines = []
            for _ in range(2000):
                sha = chain.hashes[names[i]] if i < len(names) else sha256(b"%d" % i).hex()
                lines.append(json.dumps({"uid": f"r{i}", "sha256": sha}) + "\n")
                i += 1
            os.write(fd, "".join(lines).encode())
    except BrokenPipeError:
        pass  # the audit stopped reading
    finally:
        os.close(fd)


def wait_until(condition: Any, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while not condition():
        assert proc.poll() is None, f"the audit exited before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
