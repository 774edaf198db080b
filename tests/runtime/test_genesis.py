"""Chain specs: built-in specs, JSON round trips, and clear errors for bad spec files."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from genesis import ChainSpecError, build_genesis, dev_spec, load_spec, local_spec
from genesis.builder import genesis_state
from genesis.spec import spec_from_json, spec_to_json
from runtime.modules import validators
from runtime.state import MemoryState


def test_dev_and_local_specs() -> None:
    dev, local = build_genesis(dev_spec()), build_genesis(local_spec(4))
    assert dev.hash != local.hash
    assert len(validators.authorities.get(MemoryState(dev.state))) == 1
    assert len(validators.authorities.get(MemoryState(local.state))) == 4
    assert build_genesis(dev_spec()).hash == dev.hash  # deterministic


def test_json_and_raw_round_trips_keep_the_genesis_hash(tmp_path: Path) -> None:
    spec = dev_spec()
    genesis = build_genesis(spec)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(spec_to_json(spec)))
    assert build_genesis(load_spec(str(plain))).hash == genesis.hash
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(spec_to_json(spec, genesis_state(spec))))
    assert build_genesis(load_spec(str(raw))).hash == genesis.hash


def _broken(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(spec_to_json(dev_spec()))
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("name"), "missing name"),
        (lambda d: d.update(chainType="Mainnet"), "chainType"),
        (lambda d: d["genesis"]["balances"].append(["opus1xyz", "1"]), r"balances\[6\]"),
        (lambda d: d["genesis"]["balances"][0].__setitem__(1, "١٢٣"), r"balances\[0\]"),
        (lambda d: d["genesis"]["balances"][0].__setitem__(1, "-5"), r"balances\[0\]"),
        (lambda d: d["genesis"].update(authorities=[]), "authorities"),
        (lambda d: d["genesis"].update(slotDurationMs=2**64), "slotDurationMs"),
        (lambda d: d["genesis"].update(works={"a": 1}), "works must be a list"),
        (lambda d: d["genesis"].update(works=[{
            "owner": d["genesis"]["sudo"], "contentHash": "0x" + "11" * 32, "kind": "image",
            "title": "x", "creators": [[d["genesis"]["sudo"]]]}]), "creators"),
        (lambda d: d.update(genesis={"raw": {"top": {"0x01": "0x"}}}), "empty"),
        (lambda d: d.update(genesis={"raw": {"top": {"0x01": "zz"}}}), "hex"),
        (lambda d: d.update(id="/srv/x"), "id '/srv/x' is not allowed"),
        (lambda d: d.update(id="../../x"), "id '../../x' is not allowed"),
        (lambda d: d.update(id="a b"), "id 'a b' is not allowed"),
        (lambda d: d.update(id=""), "id '' is not allowed"),
        (lambda d: d.update(id="x" * 65), "id 'x{64}…' is not allowed"),
        (lambda d: d.update(id="opus\n"), "id 'opus\\\\n' is not allowed"),
        (lambda d: d.update(id="caf\u00e9"), "is not allowed"),
    ],
)
def test_bad_specs_raise_named_errors(mutate: Any, message: str) -> None:
    with pytest.raises(ChainSpecError, match=message):
        build_genesis(spec_from_json(_broken(mutate)))


def test_chain_ids_are_plain_names_however_the_spec_is_made() -> None:
    for chain_id in ("opus_dev", "my-chain-2", "X" * 64):
        assert spec_from_json(dict(spec_to_json(dev_spec()), id=chain_id)).id == chain_id
    for chain_id in ("../x", "a/b", ".", "x" * 65):
        with pytest.raises(ChainSpecError, match="A-Z, a-z, 0-9, '_' and '-'"):
            dataclasses.replace(dev_spec(), id=chain_id)


def test_genesis_works_are_registered_and_checked() -> None:
    doc = spec_to_json(dev_spec())
    sudo = doc["genesis"]["sudo"]
    work = {"owner": sudo, "contentHash": "0x" + "22" * 32, "kind": "audio", "title": "Tide",
            "creators": [[sudo, 10_000]]}
    doc["genesis"]["works"] = [work]
    assert build_genesis(spec_from_json(doc)).hash != build_genesis(dev_spec()).hash
    doc["genesis"]["works"] = [dict(work, creators=[[sudo, 9_000]])]
    with pytest.raises(ChainSpecError, match="Tide"):
        build_genesis(spec_from_json(doc))
    doc["genesis"]["works"] = [dict(work, kind="hologram")]
    with pytest.raises(ChainSpecError, match="hologram"):
        build_genesis(spec_from_json(doc))


def test_unreadable_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ChainSpecError, match="cannot read"):
        load_spec(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ChainSpecError, match="not JSON"):
        load_spec(str(bad))
