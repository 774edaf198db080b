"""Near-duplicates: a re-encoded, resized, cropped or brightened copy is still the same work.

On real photographs (those that ship inside scikit-image, nothing downloaded) and their
variants (bench/near_duplicates.py makes both): the variants match their original at the
default distance and different photographs do not. Then against a real ``opus --dev``
node (tests/processes.py, ended by its PID): ``opus work register`` records an image's PDQ
fingerprint and warns before registering a resized copy (naming the work, its owner and
the distance), ``opus work match`` lists near-duplicates, ``opus audit`` of a folder of
images reports them with their distance, and ``opus_findSimilarWorks`` refuses bad params
by name.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_opus
from processes import opus_dev, rpc_call

from bench.near_duplicates import OTHERS, PHOTOS, VARIANTS, write_photo, write_variants
from client import OpusClient
from client.audit.classify import AuditRow, Status
from client.audit.report import read_csv_report
from client.fingerprint import (
    DEFAULT_MAX_DISTANCE,
    MAX_MATCH_DISTANCE,
    hamming,
    pdq_of_file,
    query_fingerprints,
)
from runtime.crypto import dev_keypair, sha256
from runtime.modules import licensing
from runtime.modules.licensing import AiUse

pytestmark = pytest.mark.slow

ALICE, BOB = dev_keypair("alice"), dev_keypair("bob")
ONE = 10**12
CORNER_CROP = "crop_5_corner"  # 5 % of the width and height off one corner: see below


# ---------------------------------------------------------------------------
# Matching on real photographs (no node)


@pytest.fixture(scope="module")
def photographs(tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, tuple[bytes, dict[str, list[bytes]]]]:
    """Each photograph: its original's fingerprint (what is registered) and, per file
    (original and variants), the fingerprints a lookup tries (its own first)."""
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name in PHOTOS:
        original = write_photo(name, folder)
        files = {"original": original, **write_variants(name, folder)}
        out[name] = (pdq_of_file(original).value,
                     {v: [q.value for q in query_fingerprints(p)] for v, p in files.items()})
    return out


def nearest(queries: list[bytes], registered: bytes) -> int:
    return min(hamming(q, registered) for q in queries)


def test_every_variant_matches_its_original(
        photographs: dict[str, tuple[bytes, dict[str, list[bytes]]]]) -> None:
    """JPEG quality 50-90, resized to 50 %, 5 % cropped off around the edges, brightness
    ±10 %, PNG and WebP: within the default distance of the original, as `opus work match`
    and `opus audit` look them up. A 5 % crop off one corner matches within the largest
    distance a node answers (`--max-distance 47`); docs/performance.md has the rates."""
    assert {v for v, _, _ in VARIANTS} >= {"jpeg_q50", "jpeg_q90", "resized_50",
                                           "crop_5_centred", CORNER_CROP, "brighter_10",
                                           "darker_10", "png", "webp"}
    missed = {f"{name}.{variant}": d for name, (registered, files) in photographs.items()
              for variant, queries in files.items()
              if variant != CORNER_CROP
              and (d := nearest(queries, registered)) > DEFAULT_MAX_DISTANCE}
    assert not missed
    corner = {name: nearest(files[CORNER_CROP], registered)
              for name, (registered, files) in photographs.items()}
    assert max(corner.values()) <= MAX_MATCH_DISTANCE, corner


def test_different_photographs_do_not_match(
        photographs: dict[str, tuple[bytes, dict[str, list[bytes]]]]) -> None:
    """No file of one photograph (original or variant, with every re-framing a lookup
    tries) is within even the largest distance of another photograph's fingerprint."""
    false = [(a, variant, b) for a, (_, files) in photographs.items()
             for variant, queries in files.items()
             for b, (registered, _) in photographs.items()
             if a != b and nearest(queries, registered) <= MAX_MATCH_DISTANCE]
    assert not false


def test_pdq_itself_misses_crops_without_the_reframing(
        photographs: dict[str, tuple[bytes, dict[str, list[bytes]]]]) -> None:
    """Why lookups re-frame: a 5 % crop moves PDQ past the default distance for most
    photographs when only the file's own fingerprint is compared."""
    plain = [nearest(files["crop_5_centred"][:1], registered)
             for registered, files in photographs.values()]
    assert sum(d > DEFAULT_MAX_DISTANCE for d in plain) > len(plain) // 2
    assert "clock" in OTHERS  # the near-flat image, kept out of PHOTOS (PDQ quality < 50)


# ---------------------------------------------------------------------------
# Against a real node


@dataclass
class Node:
    url: str
    port: int
    folder: Path
    original: Path  # astronaut.png, registered by Alice as work #1 with terms
    work_id: int


opus = run_opus


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("near-node")
    folder = base / "files"
    folder.mkdir()
    original = write_photo("astronaut", folder)
    write_variants("astronaut", folder)
    write_photo("camera", folder)
    with opus_dev(base / "node.log") as (_, port):
        url = f"http://127.0.0.1:{port}"
        done = opus("work", "register", str(original), "--title", "Astronaut", "--kind", "image",
                    "--dev-account", "alice", "--rpc", url, "--json")
        assert done.code == 0, done.err
        work_id = json.loads(done.out)["workId"]
        client = OpusClient(url)
        terms = licensing.OfferTerms(
            work_id=work_id, transferable=False, commercial_use=False,
            commercial_attribution=False, commercial_rev_share=0, derivatives_allowed=False,
            derivatives_attribution=False, derivatives_approval=False,
            derivatives_reciprocal=False, ai_training=AiUse.ALLOWED,
            ai_inference=AiUse.NOT_ALLOWED, minting_fee=2 * ONE, expiry_blocks=0,
            max_supply=0, legal_uri="", legal_hash=None)
        receipt = client.wait(client.submit(client.sign(ALICE, terms)), timeout=120)
        assert receipt.success, receipt.error
        yield Node(url, port, folder, original, work_id)


def test_register_records_the_fingerprint(node: Node) -> None:
    work = rpc_call(node.port, "opus_getWork", [node.work_id])
    expected = pdq_of_file(node.original)
    assert work["softBinding"] == {"algorithm": "pdq", "value": "0x" + expected.hex(),
                                   "quality": expected.quality}
    shown = opus("work", "show", str(node.work_id), "--rpc", node.url)
    assert f"fingerprint   pdq 0x{expected.hex()} (quality {expected.quality})" in shown.out


def test_register_warns_before_a_resized_copy_and_needs_yes(node: Node) -> None:
    copy = node.folder / "astronaut.resized_50.png"
    client = OpusClient(node.url)
    nonce = client.account_info(BOB.address)["nonce"]
    argv = ("work", "register", str(copy), "--title", "My astronaut", "--kind", "image",
            "--dev-account", "bob", "--rpc", node.url)
    refused = opus(*argv)
    distance = hamming(pdq_of_file(copy).value, pdq_of_file(node.original).value)
    assert refused.code == 1
    assert (f"Warning: near-duplicate of work #{node.work_id} \"Astronaut\" owned by "
            f"{ALICE.address}: PDQ distance {distance} of 256 bits") in refused.err
    assert "give --yes to register it anyway" in refused.err
    assert "Traceback" not in refused.err
    # Nothing was submitted: no fee, no nonce, no work.
    assert client.account_info(BOB.address)["nonce"] == nonce
    assert client.get_work_by_content_hash(sha256(copy.read_bytes())) is None
    confirmed = opus(*argv, "--yes", "--json")
    assert confirmed.code == 0, confirmed.err
    assert f"near-duplicate of work #{node.work_id}" in confirmed.err
    registered = json.loads(confirmed.out)
    assert registered["fingerprint"]["value"] == "0x" + pdq_of_file(copy).hex()


def test_an_image_with_no_near_duplicate_registers_without_a_warning(node: Node) -> None:
    done = opus("work", "register", str(node.folder / "camera.png"), "--title", "Camera",
                "--kind", "image", "--dev-account", "alice", "--rpc", node.url)
    assert done.code == 0, done.err
    assert "Warning" not in done.err
    assert "fingerprint   pdq 0x" in done.out


def test_a_near_duplicate_of_ones_own_work_is_a_warning_only(node: Node, tmp_path: Path) -> None:
    original = write_photo("moon", tmp_path)
    darker = write_variants("moon", tmp_path)["darker_10"]
    first = opus("work", "register", str(original), "--title", "Moon\x1b[31m", "--kind",
                 "image", "--dev-account", "alice", "--rpc", node.url, "--json")
    assert first.code == 0, first.err
    again = opus("work", "register", str(darker), "--title", "Moon, darker", "--kind", "image",
                 "--dev-account", "alice", "--rpc", node.url)
    assert again.code == 0, again.err
    # The title comes from the chain: shown escaped, never as a terminal control.
    assert (f"Warning: near-duplicate of work #{json.loads(first.out)['workId']} "
            f"\"Moon\\x1b[31m\" owned by {ALICE.address}") in again.err
    assert "\x1b" not in again.err


def test_a_file_that_does_not_decode_registers_without_a_fingerprint(node: Node,
                                                                     tmp_path: Path) -> None:
    raw = tmp_path / "photo.cr2"  # say, a camera's raw file, which Pillow does not read
    raw.write_bytes(b"not pixels Pillow knows")
    done = opus("work", "register", str(raw), "--title", "Raw", "--kind", "image",
                "--dev-account", "alice", "--rpc", node.url, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert answer["fingerprint"] is None
    assert rpc_call(node.port, "opus_getWork", [answer["workId"]])["softBinding"] is None
    text = opus("work", "register", str(node.folder / "astronaut.webp.webp"), "--title", "Mine",
                "--kind", "image", "--no-fingerprint", "--dev-account", "bob", "--rpc", node.url)
    assert text.code == 0 and "fingerprint   none (--no-fingerprint)" in text.out
    assert "Warning" not in text.err  # no fingerprint, no lookup


def test_work_match_lists_near_duplicates(node: Node) -> None:
    jpeg = node.folder / "astronaut.jpeg_q50.jpg"
    found = opus("work", "match", str(jpeg), "--rpc", node.url, "--json")
    assert found.code == 0, found.err
    answer = json.loads(found.out)
    first = answer["works"][0]
    assert first["workId"] == node.work_id and first["owner"] == ALICE.address
    assert first["distance"] == min(hamming(q.value, pdq_of_file(node.original).value)
                                    for q in query_fingerprints(jpeg))
    assert first["distance"] <= DEFAULT_MAX_DISTANCE
    assert [w["distance"] for w in answer["works"]] == sorted(w["distance"]
                                                              for w in answer["works"])
    text = opus("work", "match", str(node.folder / "astronaut.crop_5_centred.png"),
                "--rpc", node.url)
    assert text.code == 0 and f"near-duplicate of work #{node.work_id} \"Astronaut\"" in text.out
    other = opus("work", "match", str(node.folder / "camera.png"), "--max-distance", "0",
                 "--rpc", node.url, "--json")
    assert [w["title"] for w in json.loads(other.out)["works"]] in ([], ["Camera"])


def test_work_match_refuses_what_is_not_an_image_or_too_far(node: Node, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    bad = opus("work", "match", str(notes), "--rpc", node.url)
    assert bad.code == 1 and bad.err.startswith("Error: ") and "not an image" in bad.err
    assert "Traceback" not in bad.err
    far = opus("work", "match", str(node.original), "--max-distance", "48", "--rpc", node.url)
    assert far.code == 2 and "must be 0 to 47" in far.err


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_audit_of_a_folder_of_images_reports_near_duplicates(node: Node, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    names = {"astronaut.png": "astronaut.png", "copy.jpg": "astronaut.jpeg_q70.jpg",
             "brighter.png": "astronaut.brighter_10.png"}
    for name, source in names.items():
        (dataset / name).write_bytes((node.folder / source).read_bytes())
    (dataset / "cat.webp").write_bytes(
        (write_variants("chelsea", tmp_path)["webp"]).read_bytes())  # nobody's
    (dataset / "notes.txt").write_text("a caption")
    (dataset / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = tmp_path / "audit.csv"
    done = opus("audit", str(dataset), "--out", str(report), "--rpc", node.url, "--json")
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert summary["nearDuplicateMaxDistance"] == DEFAULT_MAX_DISTANCE
    assert summary["summary"]["nearDuplicates"] == 2
    assert summary["summary"]["counts"]["allowed"] == 3
    assert summary["summary"]["feesOwed"] == str(2 * ONE)  # one work: one license covers all
    _, rows = read_csv_report(report)
    by_item = {row.item: row for row in rows}
    registered = pdq_of_file(node.original).value
    for item in ("copy.jpg", "brighter.png"):
        row = by_item[item]
        want = nearest([q.value for q in query_fingerprints(dataset / item)], registered)
        assert row == AuditRow(item, sha256((dataset / item).read_bytes()).hex(),
                               Status.ALLOWED, "pdq", node.work_id, ALICE.address,
                               row.terms_id, "allowed", 2 * ONE, 0, 0, None, "", None, want)
        assert row.terms_id is not None
    assert by_item["astronaut.png"].match == "sha256" and by_item["astronaut.png"].distance is None
    for item in ("cat.webp", "notes.txt", "broken.jpg"):
        assert by_item[item].status is Status.NOT_REGISTERED and by_item[item].distance is None
    # The HTML report says how each item was found.
    page = tmp_path / "audit.html"
    assert opus("audit", str(dataset), "--out", str(page), "--rpc", node.url).code == 0
    parser = _Cells()
    parser.feed(page.read_text())
    cells = {r[0]: r for r in parser.rows if r}
    assert cells["copy.jpg"][-1] == f"pdq, distance {by_item['copy.jpg'].distance}"
    assert cells["astronaut.png"][-1] == "sha256"
    assert "Near-duplicates: 2 items found by their PDQ fingerprint" in page.read_text()
    assert "looked up by PDQ fingerprint, within 31 bits" in page.read_text()
    # On the terminal, and without the fingerprint lookups.
    text = opus("audit", str(dataset), "--rpc", node.url)
    assert "near-duplicates" in text.out and "PDQ within 31 bits" in text.out
    plain = opus("audit", str(dataset), "--no-near-duplicates", "--rpc", node.url, "--json")
    assert json.loads(plain.out)["summary"]["counts"]["not_registered"] == 5


def test_find_similar_works_refuses_bad_params_by_name(node: Node) -> None:
    def error(params: list[Any]) -> dict[str, Any]:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "opus_findSimilarWorks",
                           "params": params}).encode()
        request = urllib.request.Request(node.url, data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())["error"]
        return answer

    good = "0x" + pdq_of_file(node.original).hex()
    short = error([good[:-2], 31])
    assert short["code"] == -32602 and "fingerprint: expected 32 bytes of hex" in short["message"]
    far = error([good, 48])
    assert far["code"] == -32602 and "maxDistance: expected an integer from 0 to 47" \
        in far["message"]
    unknown = error([good, 31, "0x" + "00" * 32])
    assert unknown["code"] == -32602 and "at: unknown block" in unknown["message"]
    answer = rpc_call(node.port, "opus_findSimilarWorks", [good, 0])
    assert answer["works"][0]["workId"] == node.work_id and answer["works"][0]["distance"] == 0
    assert answer["complete"] is True and answer["candidates"] >= 1


def test_an_audit_against_a_registry_finds_the_same_near_duplicates(node: Node,
                                                                    tmp_path: Path) -> None:
    """The registry file holds the works' fingerprints: an audit of a folder of images
    against it (no node asked) finds the node's near-duplicates, at the same distances."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for name, source in {"copy.jpg": "astronaut.jpeg_q70.jpg",
                         "half.png": "astronaut.resized_50.png",
                         "corner.png": "astronaut.crop_5_corner.png",
                         "astronaut.png": "astronaut.png", "camera.png": "camera.png"}.items():
        (dataset / name).write_bytes((node.folder / source).read_bytes())
    at = rpc_call(node.port, "chain_getBlockHash", [])
    registry = tmp_path / "registry.parquet"
    done = opus("registry", "export", "--at", at, "--out", str(registry), "--rpc", node.url)
    assert done.code == 0, done.err
    on_node = opus("audit", str(dataset), "--at", at, "--out", str(tmp_path / "node.csv"),
                   "--rpc", node.url)
    assert on_node.code == 0, on_node.err
    local = opus("audit", str(dataset), "--registry", str(registry),
                 "--out", str(tmp_path / "local.csv"))
    assert local.code == 0, local.err
    node_meta, node_rows = read_csv_report(tmp_path / "node.csv")
    meta, rows = read_csv_report(tmp_path / "local.csv")
    assert rows == node_rows
    assert meta["blockHash"] == node_meta["blockHash"] == at
    assert meta["nearDuplicateMaxDistance"] == DEFAULT_MAX_DISTANCE
    # (Other tests of this module register more images, such as the resized copy: the
    # node's answer is the measure.)
    near = {row.item: row for row in rows if row.match == "pdq"}
    assert {"copy.jpg", "corner.png"} <= set(near)
    assert all(near[i].work_id == node.work_id and near[i].distance is not None
               for i in ("copy.jpg", "corner.png"))
