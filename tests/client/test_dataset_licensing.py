"""Licensing a dataset in bulk, end to end, against a real ``opus --dev`` node.

The chain and the DataComp-shaped dataset are test_audit.py's (works in every state an
audit tells apart, registered from real files). Dave, an AI builder who holds nothing at
first, audits the dataset to a CSV report, and that report goes into ``opus license
acquire --from`` (dry run, ``--max-total``, no confirmation, then for real), ``opus usage
record --from`` and ``opus dataset certify``; ``opus verify`` checks the statement against
the chain, and tampered statements fail with the named reason. Second runs buy and record
nothing (nonce and balance unchanged). Eve checks that malformed reports are one error
naming the row, with nothing spent. Ferdie's run follows an interrupted one whose
purchases are still in the pool, and buys each work's license once. ``opus_dryRun``,
which the commands check every call with first, tells each outcome and changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import opus_dev
from test_audit import (
    ALICE,
    CHARLIE,
    FILES,
    ONE,
    Chain,
    build_chain,
    dataset_rows,
    in_blocks,
    offer,
    opus,
    write_shards,
)

from client import OpusClient, RpcCallError
from client.audit.report import COLUMNS
from client.keys import write_key_file
from client.statement import canonical
from runtime import codec
from runtime.codec import hex0x
from runtime.crypto import Keypair, dev_keypair, sha256
from runtime.modules import balances, licensing, provenance, usage
from runtime.modules.licensing import AiUse

pytestmark = pytest.mark.slow

DAVE, EVE, FERDIE = (dev_keypair(n) for n in ("dave", "eve", "ferdie"))
SUBJECT = "model-x v1"
# The works Dave must license (every one whose live terms allow AI training) and the fee
# of each one's cheapest such terms (test_audit.FILES).
TO_LICENSE = {"cheap.jpg": 2 * ONE, "constrained.webp": ONE + ONE // 2,
              "licensed.flac": 3 * ONE, "big.bin": ONE // 4, "charlie.jpg": 4 * ONE}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("licensing-chain")
    with opus_dev(base / "node.log") as (_, port):
        yield build_chain(f"http://127.0.0.1:{port}", base / "media")


def run(chain: Chain, *argv: str) -> Any:
    return opus(*argv, "--rpc", chain.url)


def account(chain: Chain, who: str) -> tuple[int, int]:
    """(nonce, free balance) of an account."""
    info = OpusClient(chain.url).account_info(who)
    return int(info["nonce"]), int(info["free"])


def audited(chain: Chain, tmp_path: Path, who: str) -> Path:
    """The dataset as DataComp parquet shards, audited for ``who`` into a CSV report."""
    write_shards(chain, tmp_path / "shards")
    report = tmp_path / "audit.csv"
    result = run(chain, "audit", str(tmp_path / "shards"), "--dev-account", who,
                 "--out", str(report))
    assert result.code == 0, result.err
    return report


def items_of(name: str) -> list[str]:
    """The dataset's items holding the file ``name``."""
    return [item for item, file in dataset_rows() if file == name]


def test_a_dataset_licensed_used_and_certified(chain: Chain, tmp_path: Path) -> None:
    report = audited(chain, tmp_path, "dave")
    acquire = ("license", "acquire", "--from", str(report), "--dev-account", "dave")
    before = account(chain, DAVE.address)

    # The dry run shows the exact fees of the five works and spends nothing.
    result = run(chain, *acquire, "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert (plan["works"], plan["toBuy"], plan["held"]) == (5, 5, 0)
    assert int(plan["licenseFees"]) == sum(TO_LICENSE.values())
    assert int(plan["total"]) > int(plan["licenseFees"])  # transaction fees come on top
    assert account(chain, DAVE.address) == before

    # Over the limit, or without a confirmation: refused, nothing spent.
    result = run(chain, *acquire, "--max-total", "10OPUS")
    assert result.code == 1 and "exceeds --max-total 10 OPUS; nothing was bought" in result.err
    result = run(chain, *acquire)  # (the test's stdin is no terminal)
    assert result.code == 1 and "give --yes" in result.err and "Traceback" not in result.err
    assert account(chain, DAVE.address) == before

    # Dave buys one license by hand: the bulk run asks the chain, and skips it.
    by_hand = run(chain, "license", "acquire", str(chain.terms["big.bin"][0]),
                  "--dev-account", "dave", "--json")
    assert by_hand.code == 0, by_hand.err
    big_license = json.loads(by_hand.out)["licenseId"]
    before = account(chain, DAVE.address)
    result = run(chain, *acquire, "--yes", "--json", "--max-total", "11OPUS")
    assert result.code == 0, result.err
    bought = json.loads(result.out)
    assert (bought["held"], bought["toBuy"], bought["acquired"], bought["failed"]) == (1, 4, 4, 0)
    paid = int(bought["licenseFeesPaid"]) + int(bought["transactionFeesPaid"])
    assert int(bought["licenseFeesPaid"]) == sum(TO_LICENSE.values()) - ONE // 4
    nonce, free = account(chain, DAVE.address)
    assert (nonce, free) == (before[0] + 4, before[1] - paid)

    # Which license covers which item: every item of the five works, checked on chain.
    covering = {r["item"]: r for r in csv.DictReader(
        (tmp_path / "audit.licenses.csv").open(encoding="utf-8"))}
    client = OpusClient(chain.url)
    for name in TO_LICENSE:
        for item in items_of(name):
            row = covering.pop(item)
            lic = client.get_license(int(row["license_id"]))
            assert lic is not None and lic["licensee"] == DAVE.address
            assert lic["workId"] == chain.works[name] == int(row["work_id"])
            assert row["outcome"] == ("held" if name == "big.bin" else "acquired")
    assert not covering  # and nothing else

    # A second run buys nothing: nonce and balance unchanged.
    result = run(chain, *acquire, "--yes", "--json")
    assert result.code == 0, result.err
    assert (json.loads(result.out)["held"], json.loads(result.out)["toBuy"]) == (5, 0)
    assert account(chain, DAVE.address) == (nonce, free)

    # Usage of every licensed work, in one record_usage_batch call; a second run: none.
    record = ("usage", "record", "--from", str(report), "--purpose", "ai_training",
              "--subject", SUBJECT, "--dev-account", "dave")
    result = run(chain, *record, "--json")
    assert result.code == 0, result.err
    recorded = json.loads(result.out)["recorded"]
    assert len(recorded) == 5 and json.loads(result.out)["unlicensedWorks"] == []
    assert account(chain, DAVE.address)[0] == nonce + 1
    text = run(chain, *record)
    assert text.code == 0 and "Recorded 0 usage records" in text.out, text.out
    assert "already recorded     5" in text.out
    assert account(chain, DAVE.address)[0] == nonce + 1
    for license_id, usage_id in recorded.items():
        records = client.list_usage(license=int(license_id))["items"]
        assert [r["id"] for r in records] == [usage_id]
        work = next(n for n in TO_LICENSE if chain.works[n] == records[0]["workId"])
        assert records[0]["units"] == len(items_of(work))
        assert (records[0]["purpose"], records[0]["subject"]) == ("ai_training", SUBJECT)
    assert big_license in {int(k) for k in recorded}

    # The signed statement, checked against the chain.
    statement = tmp_path / "model-x.statement.json"
    result = run(chain, "dataset", "certify", str(report), "--subject", SUBJECT,
                 "--out", str(statement), "--dev-account", "dave")
    assert result.code == 0, result.err
    doc = json.loads(statement.read_text())
    counts = doc["audit"]["counts"]
    assert counts["allowed"] + counts["constrained"] == sum(len(items_of(n)) for n in TO_LICENSE)
    assert counts["not_registered"] == sum(1 for _, f in dataset_rows()
                                           if f is None or FILES[f][0] is None)
    assert doc["builder"] == DAVE.address and len(doc["coverage"]) == 5
    verified = opus("verify", str(statement), "--rpc", chain.url, "--report", str(report))
    assert verified.code == 0 and verified.out.startswith("VALID"), verified.err

    # Tampered: a count changed (the signature breaks); a coverage entry pointing at
    # another usage record, re-signed by Dave (the chain says no); the statement made
    # Eve's and signed by her (Dave holds the licenses).
    def refused(document: dict[str, Any], reason: str) -> None:
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(document))
        result = opus("verify", str(path), "--rpc", chain.url)
        assert result.code == 1, result.out
        assert result.err.startswith(f"Error: INVALID statement {path}: {reason}:"), result.err

    refused({**doc, "audit": {**doc["audit"], "counts": {**counts, "not_allowed": 0}}},
            "BadSignature")
    swapped = json.loads(json.dumps(doc))
    swapped["coverage"][0][2] = swapped["coverage"][1][2]
    refused(resign(swapped, DAVE), "UsageNotFound")
    refused(resign({**doc, "builder": EVE.address}, EVE), "NotLicensee")
    refused(resign({**doc, "coverage": doc["coverage"][1:]}, DAVE), "Incomplete")
    other = tmp_path / "other.csv"
    other.write_bytes(report.read_bytes() + b"\n")
    result = opus("verify", str(statement), "--rpc", chain.url, "--report", str(other))
    assert result.code == 1 and "ReportMismatch" in result.err


def resign(document: dict[str, Any], key: Any) -> dict[str, Any]:
    """``document`` signed again by ``key`` (as its builder)."""
    signed = {**document, "builder": key.address}
    signed.pop("signature", None)
    signed["signature"] = hex0x(key.sign(canonical(signed)))
    return signed


def edited(line: str, column: str, value: str) -> str:
    """A report's CSV line with one column's value changed."""
    row = next(csv.reader([line]))
    row[COLUMNS.index(column)] = value
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    return out.getvalue()


def test_malformed_reports_name_the_row_and_spend_nothing(chain: Chain, tmp_path: Path
                                                          ) -> None:
    report = audited(chain, tmp_path, "eve")
    before = account(chain, EVE.address)
    lines = report.read_text(encoding="utf-8").splitlines(keepends=True)

    def refused(name: str, text: str, *expected: str) -> None:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        for argv in (("license", "acquire", "--from", str(path), "--yes"),
                     ("usage", "record", "--from", str(path), "--purpose", "ai_training",
                      "--subject", SUBJECT)):
            result = run(chain, *argv, "--dev-account", "eve")
            assert result.code == 1, (argv, result.out)
            assert all(e in result.err for e in expected), result.err
            assert result.err.count("\n") == 1 and "Traceback" not in result.err

    # Row 3 is the line 5 (the # opus-audit line and the header come first).
    refused("bad-hex.csv", "".join(lines[:4] + [edited(lines[4], "sha256", "zz" + "0" * 62)]
                                   + lines[5:]),
            "bad-hex.csv, row 3 (line 5): sha256 must be 64 lower-case hex digits")
    refused("bad-status.csv", "".join(lines[:3] + [edited(lines[3], "status", "stolen")]
                                      + lines[4:]),
            "bad-status.csv, row 2 (line 4): unknown status 'stolen'")
    refused("truncated.csv", "".join(lines[:4]) + lines[4][:30],
            "truncated.csv, row 3 (line 5): not CSV: unexpected end of data")
    refused("no-mark.csv", "".join(lines[1:]), "no-mark.csv is not an opus audit report")
    refused("report.json", '{"format": "opus-audit/1", "rows": [{"item": "a"}]',
            "report.json is not JSON")
    refused("rows.json", json.dumps({"format": "opus-audit/1", "blockHash": "0x00",
                                     "rows": [{"item": "a", "sha256": "0" * 64,
                                               "status": "allowed", "work_id": None}]}),
            "rows.json, row 1: a allowed item needs its work_id")
    assert account(chain, EVE.address) == before

    # The same audit as a parquet report plans the same purchases.
    parquet = tmp_path / "audit.parquet"
    assert run(chain, "audit", str(tmp_path / "shards"), "--dev-account", "eve",
               "--out", str(parquet)).code == 0
    result = run(chain, "license", "acquire", "--from", str(parquet), "--dry-run", "--json",
                 "--dev-account", "eve")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert (plan["toBuy"], int(plan["licenseFees"])) == (5, sum(TO_LICENSE.values()))
    assert account(chain, EVE.address) == before


def test_a_run_after_an_interrupted_one_buys_nothing_twice(chain: Chain, tmp_path: Path
                                                           ) -> None:
    """An interrupted run leaves purchases in the pool; the next run waits for them and
    buys only the rest: one license per work."""
    report = audited(chain, tmp_path, "ferdie")
    client = OpusClient(chain.url)
    pending = [client.submit(client.sign(FERDIE, licensing.AcquireLicense(chain.terms[n][0])))
               for n in ("big.bin", "charlie.jpg")]  # (their cheapest terms: the first)
    result = run(chain, "license", "acquire", "--from", str(report), "--yes", "--json",
                 "--dev-account", "ferdie")
    assert result.code == 0, result.err
    bought = json.loads(result.out)
    assert (bought["held"], bought["acquired"]) == (2, 3)
    assert all(client.wait(h).success for h in pending)
    held = client.list_licenses(licensee=FERDIE.address)["items"]
    assert sorted(lic["workId"] for lic in held) == sorted(chain.works[n] for n in TO_LICENSE)


def test_a_dry_run_tells_each_outcome_and_changes_nothing(chain: Chain) -> None:
    """``opus_dryRun``, what the bulk commands check every call with before paying."""
    client = OpusClient(chain.url)
    before = account(chain, EVE.address)
    nonce = before[0]

    def signed(terms: int, at: int) -> str:
        return hex0x(codec.encode(client.sign(EVE, licensing.AcquireLicense(terms), nonce=at)))

    cheap, retired = chain.terms["cheap.jpg"][2], chain.terms["retired.png"][0]
    outcomes = client.call("opus_dryRun", [signed(cheap, nonce), signed(retired, nonce + 1),
                                           signed(cheap, nonce + 5), "0x00"])
    bought, refused, future, malformed = outcomes
    assert bought["valid"] and bought["success"] and int(bought["fee"]) > 0
    assert refused["valid"] and not refused["success"]
    assert refused["error"] == "licensing.TermsRetired" and int(refused["fee"]) > 0
    assert (future["valid"], future["error"]) == (False, "FutureNonce")
    assert (malformed["valid"], malformed["error"]) == (False, "Malformed")
    assert account(chain, EVE.address) == before
    assert client.list_licenses(licensee=EVE.address)["items"] == []
    with pytest.raises(RpcCallError) as error:
        client.call("opus_dryRun", ["0x00"] * 257)
    assert error.value.code == -32602 and "at most 256" in str(error.value)
    # More than a block's weight (22 purchases, each charged a worst-case royalty
    # distribution) is refused: a free dry run costs the node at most one block's work.
    with pytest.raises(RpcCallError) as error:
        client.call("opus_dryRun", [signed(cheap, nonce + i) for i in range(22)])
    assert error.value.code == -32602 and "more than a block's" in str(error.value)
    assert len(client.call("opus_dryRun", [signed(cheap, nonce + i) for i in range(21)])) == 21


def test_more_works_than_one_usage_batch(chain: Chain, tmp_path: Path) -> None:
    """65 works: 65 licenses in pipelined transactions, their usage in two
    record_usage_batch calls (64 + 1); a CSV manifest and a JSON report this time."""
    buyer = Keypair.from_seed(sha256(b"a builder with a key file"))
    key_file = tmp_path / "builder.json"
    write_key_file(key_file, buyer, password="")
    signer = ("--key", str(key_file), "--password", "")
    client = OpusClient(chain.url)
    in_blocks(client, [(ALICE, balances.TransferArgs(buyer.public, 100 * ONE))])
    files = [f"a work of batch {i}".encode() for i in range(usage.MAX_BATCH + 1)]
    registered = in_blocks(client, [
        (CHARLIE, provenance.RegisterWork(sha256(f), provenance.WorkKind.IMAGE, f"w{i}", "",
                                          None, (provenance.Split(CHARLIE.public, 10_000),),
                                          ()))
        for i, f in enumerate(files)])
    works = [r.events_named("provenance", "WorkRegistered")[0]["workId"] for r in registered]
    in_blocks(client, [(CHARLIE, offer(w, AiUse.ALLOWED, ONE // 100)) for w in works])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("url,sha256\n" + "".join(
        f"https://example.org/{i}.jpg,{sha256(f).hex()}\n" for i, f in enumerate(files)))
    report = tmp_path / "report.json"
    result = run(chain, "audit", str(manifest), *signer, "--out", str(report))
    assert result.code == 0, result.err

    result = run(chain, "license", "acquire", "--from", str(report), "--yes", "--json", *signer)
    assert result.code == 0, result.err
    bought = json.loads(result.out)
    assert (bought["acquired"], int(bought["licenseFeesPaid"])) == (65, 65 * (ONE // 100))
    assert len(list(csv.DictReader((tmp_path / "report.licenses.csv").open()))) == 65
    nonce = account(chain, buyer.address)[0]
    result = run(chain, "usage", "record", "--from", str(report), "--purpose", "ai_training",
                 "--subject", SUBJECT, "--json", *signer)
    assert result.code == 0, result.err
    recorded = json.loads(result.out)["recorded"]
    assert sorted(int(k) for k in recorded) == bought["licenseIds"]
    assert len(set(recorded.values())) == 65
    assert account(chain, buyer.address)[0] == nonce + 2  # 64 + 1
