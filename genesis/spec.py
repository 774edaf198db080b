"""Chain specs: what a chain starts from, as JSON (Substrate's chain-spec shape).

A human-readable spec::

    {
      "name": "Opus Development", "id": "opus_dev", "chainType": "Development",
      "bootNodes": ["/ip4/127.0.0.1/tcp/30333/p2p/12D3Koo…"],
      "properties": {"tokenSymbol": "OPUS", "tokenDecimals": 12},
      "genesis": {
        "slotDurationMs": 2000,
        "balances": [["opus1…", "1000000000000000000"], …],   # amounts as decimal strings
        "authorities": ["opus1…", …],
        "sudo": "opus1…",
        "works": [{"owner": "opus1…", "contentHash": "0x…", "kind": "image",
                   "title": "…", "metadataUri": "", "creators": [["opus1…", 10000]]}]
      }
    }

``build-spec --raw`` replaces ``genesis`` by ``{"raw": {"top": {"0xkey": "0xvalue", …}}}``:
the exact genesis state, so every node computes the same genesis hash from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.codec import from_hex0x, hex0x
from runtime.crypto import (
    DEV_ACCOUNT_NAMES,
    InvalidAddress,
    decode_address,
    dev_keypair,
    encode_address,
)
from runtime.modules.validators import MAX_AUTHORITIES

TOKEN_SYMBOL = "OPUS"
TOKEN_DECIMALS = 12
ONE_OPUS = 10**TOKEN_DECIMALS
DEV_ENDOWMENT = 1_000_000 * ONE_OPUS
CHAIN_TYPES = ("Development", "Local", "Live")
# A chain id names the node's default base path (<data dir>/chains/<id>), so it is a
# plain file name: no separators, no dots, no spaces or control characters.
MAX_CHAIN_ID = 64
CHAIN_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CHAIN_ID}}}", re.ASCII)
# A boot node as a node dials it: TCP to an IP address or a DNS name, then the peer id
# (base58). The node's p2p layer parses it fully when it dials (``p2p.host.parse_peer_addr``);
# this is the shape, so a spec with a UDP or id-less address is refused when it is read.
BOOT_NODE = re.compile(r"/(?:ip4|ip6|dns|dns4|dns6)/[^/\s]+/tcp/([0-9]{1,5})"
                       r"/p2p/[1-9A-HJ-NP-Za-km-z]{32,64}", re.ASCII)
BOOT_NODE_FORM = "/ip4|ip6|dns4|dns6|dns/<host>/tcp/<port>/p2p/<peer id>"
MAX_BOOT_NODES = 64


class ChainSpecError(ValueError):
    """A chain spec file that cannot be used (the message names the field)."""


def check_chain_id(chain_id: str) -> str:
    """``chain_id`` if it is 1 to :data:`MAX_CHAIN_ID` characters of ``A-Z a-z 0-9 _ -``."""
    if CHAIN_ID.fullmatch(chain_id) is None:
        shown = chain_id if len(chain_id) <= MAX_CHAIN_ID else chain_id[:MAX_CHAIN_ID] + "…"
        raise ChainSpecError(f"chain spec: id {shown!r} is not allowed: an id is 1 to "
                             f"{MAX_CHAIN_ID} characters of A-Z, a-z, 0-9, '_' and '-' "
                             "(it names the node's data directory)")
    return chain_id


def check_boot_node(text: str) -> str:
    """``text`` if it has a boot node's form (:data:`BOOT_NODE_FORM`), else a ChainSpecError."""
    found = BOOT_NODE.fullmatch(text)
    if found is None or not 0 < int(found.group(1)) <= 65535:
        raise ChainSpecError(f"chain spec: boot node {text[:200]!r} is not {BOOT_NODE_FORM}")
    return text


def check_boot_nodes(boot_nodes: Sequence[str]) -> tuple[str, ...]:
    """Boot nodes in their form, at most :data:`MAX_BOOT_NODES`, duplicates dropped."""
    if len(boot_nodes) > MAX_BOOT_NODES:
        raise ChainSpecError(f"chain spec: at most {MAX_BOOT_NODES} boot nodes, "
                             f"not {len(boot_nodes)}")
    return tuple(dict.fromkeys(check_boot_node(b) for b in boot_nodes))


def check_authorities(authorities: Sequence[bytes]) -> tuple[bytes, ...]:
    """An authority set a chain can start from: 1 to ``MAX_AUTHORITIES`` keys, each once."""
    if not authorities:
        raise ChainSpecError("chain spec: genesis.authorities must not be empty")
    if len(authorities) > MAX_AUTHORITIES:
        raise ChainSpecError(f"chain spec: at most {MAX_AUTHORITIES} authorities, "
                             f"not {len(authorities)}")
    seen: set[bytes] = set()
    for key in authorities:
        if key in seen:
            raise ChainSpecError(f"chain spec: authority {encode_address(key)} appears twice")
        seen.add(key)
    return tuple(authorities)


def check_balances(balances: Sequence[tuple[bytes, int]]) -> tuple[tuple[bytes, int], ...]:
    """Genesis balances with each account once (their total is checked by the builder)."""
    seen: set[bytes] = set()
    for account, _amount in balances:
        if account in seen:
            raise ChainSpecError(f"chain spec: account {encode_address(account)} is endowed "
                                 "twice in genesis.balances")
        seen.add(account)
    return tuple(balances)


@dataclass(frozen=True)
class GenesisWork:
    owner: bytes
    content_hash: bytes
    kind: str
    title: str
    metadata_uri: str = ""
    creators: tuple[tuple[bytes, int], ...] = ()


@dataclass(frozen=True)
class ChainSpec:
    name: str
    id: str
    chain_type: str
    boot_nodes: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    slot_duration_ms: int = 2000
    balances: tuple[tuple[bytes, int], ...] = ()
    authorities: tuple[bytes, ...] = ()
    sudo: bytes | None = None
    works: tuple[GenesisWork, ...] = ()
    raw: dict[bytes, bytes] | None = None  # the genesis state, for a raw spec

    def __post_init__(self) -> None:
        check_chain_id(self.id)  # every spec, however made, has an id that is a file name


def dev_spec() -> ChainSpec:
    """One authority (alice, also sudo); every dev account endowed."""
    return _dev_like("Opus Development", "opus_dev", "Development", ("alice",), 2000)


def local_spec(validators: int = 4, slot_duration_ms: int = 2000) -> ChainSpec:
    """A local testnet: the first ``validators`` dev accounts author blocks; alice is sudo."""
    if not 1 <= validators <= len(DEV_ACCOUNT_NAMES):
        raise ChainSpecError(f"a local spec has 1 to {len(DEV_ACCOUNT_NAMES)} validators")
    return _dev_like("Opus Local Testnet", "opus_local", "Local",
                     DEV_ACCOUNT_NAMES[:validators], slot_duration_ms)


def _dev_like(name: str, chain_id: str, chain_type: str, authorities: tuple[str, ...],
              slot_duration_ms: int) -> ChainSpec:
    return ChainSpec(
        name=name,
        id=chain_id,
        chain_type=chain_type,
        properties={"tokenSymbol": TOKEN_SYMBOL, "tokenDecimals": TOKEN_DECIMALS},
        slot_duration_ms=slot_duration_ms,
        balances=tuple((dev_keypair(n).public, DEV_ENDOWMENT) for n in DEV_ACCOUNT_NAMES),
        authorities=tuple(dev_keypair(n).public for n in authorities),
        sudo=dev_keypair("alice").public,
    )


def customized(base: ChainSpec, *, name: str | None = None, chain_id: str | None = None,
               chain_type: str | None = None,
               authorities: Sequence[bytes] | None = None,
               balances: Sequence[tuple[bytes, int]] | None = None,
               sudo: bytes | None = None, boot_nodes: Sequence[str] | None = None,
               slot_duration_ms: int | None = None) -> ChainSpec:
    """``base`` with what is given replaced (``opus build-spec``'s flags), every rule checked:
    a network of any size up to ``MAX_AUTHORITIES`` authorities, its own endowments, sudo
    key and boot nodes. A list given replaces the base's list; ``None`` keeps it."""
    if base.raw is not None:
        raise ChainSpecError("chain spec: a raw spec holds its genesis state as it is; "
                             "customize the human-readable spec instead")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if chain_id is not None:
        changes["id"] = check_chain_id(chain_id)
    if chain_type is not None:
        if chain_type not in CHAIN_TYPES:
            raise ChainSpecError(f"chain spec: chainType must be one of {', '.join(CHAIN_TYPES)}")
        changes["chain_type"] = chain_type
    if authorities is not None:
        changes["authorities"] = check_authorities(authorities)
    if balances is not None:
        changes["balances"] = check_balances(balances)
    if sudo is not None:
        changes["sudo"] = sudo
    if boot_nodes is not None:
        changes["boot_nodes"] = check_boot_nodes(boot_nodes)
    if slot_duration_ms is not None:
        if not 0 < slot_duration_ms < 1 << 32:
            raise ChainSpecError("chain spec: genesis.slotDurationMs must be 1 to 2^32 - 1")
        changes["slot_duration_ms"] = slot_duration_ms
    return dataclasses.replace(base, **changes)


BUILTIN_SPECS = {"dev": dev_spec, "local": local_spec}


def load_spec(name_or_path: str) -> ChainSpec:
    """``dev``, ``local`` or the path of a chain spec JSON file."""
    if name_or_path in BUILTIN_SPECS:
        return BUILTIN_SPECS[name_or_path]()
    path = Path(name_or_path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ChainSpecError(f"cannot read chain spec {name_or_path!r}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ChainSpecError(f"chain spec {name_or_path!r} is not JSON: {e}") from None
    return spec_from_json(data)


# ---------------------------------------------------------------------------
# JSON form


def spec_to_json(spec: ChainSpec, raw_state: dict[bytes, bytes] | None = None) -> dict[str, Any]:
    """The JSON document for ``spec``; with ``raw_state``, the raw form."""
    genesis: dict[str, Any]
    if raw_state is not None:
        genesis = {"raw": {"top": {hex0x(k): hex0x(v) for k, v in sorted(raw_state.items())}}}
    else:
        genesis = {
            "slotDurationMs": spec.slot_duration_ms,
            "balances": [[encode_address(a), str(v)] for a, v in spec.balances],
            "authorities": [encode_address(a) for a in spec.authorities],
            "sudo": encode_address(spec.sudo) if spec.sudo else None,
            "works": [
                {
                    "owner": encode_address(w.owner),
                    "contentHash": hex0x(w.content_hash),
                    "kind": w.kind,
                    "title": w.title,
                    "metadataUri": w.metadata_uri,
                    "creators": [[encode_address(a), bps] for a, bps in w.creators],
                }
                for w in spec.works
            ],
        }
    return {
        "name": spec.name,
        "id": spec.id,
        "chainType": spec.chain_type,
        "bootNodes": list(spec.boot_nodes),
        "properties": dict(spec.properties),
        "genesis": genesis,
    }


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ChainSpecError(f"chain spec: missing {where}{key}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ChainSpecError(f"chain spec: {where}{key} has the wrong type")
    return value


def _address(text: Any, where: str) -> bytes:
    decode = _decode_address if isinstance(text, str) else decode_address  # (hashable)
    try:
        return decode(text)
    except InvalidAddress as e:
        raise ChainSpecError(f"chain spec: {where}: {e}") from None


# A spec with many works names the same few accounts again and again (owners, splits),
# and a bech32m checksum in Python costs about 200 µs.
_decode_address = functools.lru_cache(maxsize=4096)(decode_address)


def _amount(value: Any, where: str, bits: int = 128) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise ChainSpecError(f"chain spec: {where} must be a non-negative integer below 2^{bits}")
    return value


def spec_from_json(data: Any) -> ChainSpec:
    """Parse and check a chain spec document; any problem is a ChainSpecError naming the field."""
    name = _field(data, "name", str, "")
    chain_id = check_chain_id(_field(data, "id", str, ""))
    chain_type = _field(data, "chainType", str, "")
    if chain_type not in CHAIN_TYPES:
        raise ChainSpecError(f"chain spec: chainType must be one of {', '.join(CHAIN_TYPES)}")
    boot_nodes = data.get("bootNodes", [])
    if not isinstance(boot_nodes, list) or not all(isinstance(b, str) for b in boot_nodes):
        raise ChainSpecError("chain spec: bootNodes must be a list of multiaddr strings")
    boot_nodes = list(check_boot_nodes(boot_nodes))
    properties = data.get("properties", {})
    if not isinstance(properties, dict):
        raise ChainSpecError("chain spec: properties must be an object")
    genesis = _field(data, "genesis", dict, "")
    common = dict(name=name, id=chain_id, chain_type=chain_type, boot_nodes=tuple(boot_nodes),
                  properties=properties)
    if "raw" in genesis:
        raw = _field(genesis, "raw", dict, "genesis.")
        top = _field(raw, "top", dict, "genesis.raw.")
        try:
            state = {from_hex0x(k): from_hex0x(v) for k, v in top.items()}
        except ValueError as e:
            raise ChainSpecError(f"chain spec: genesis.raw.top: {e}") from None
        if b"" in state.values():
            raise ChainSpecError("chain spec: genesis.raw.top: a value is empty")
        return ChainSpec(**common, raw=state)
    slot = _amount(genesis.get("slotDurationMs", 2000), "genesis.slotDurationMs", bits=32)
    if slot == 0:
        raise ChainSpecError("chain spec: genesis.slotDurationMs must be positive")
    balances = []
    for i, entry in enumerate(_field(genesis, "balances", list, "genesis.")):
        if not isinstance(entry, list) or len(entry) != 2:
            raise ChainSpecError(f"chain spec: genesis.balances[{i}] must be [address, amount]")
        balances.append((_address(entry[0], f"genesis.balances[{i}]"),
                         _amount(entry[1], f"genesis.balances[{i}]")))
    authorities = check_authorities([
        _address(a, f"genesis.authorities[{i}]")
        for i, a in enumerate(_field(genesis, "authorities", list, "genesis."))])
    sudo_text = genesis.get("sudo")
    sudo = _address(sudo_text, "genesis.sudo") if sudo_text is not None else None
    works = []
    work_list = genesis.get("works", [])
    if not isinstance(work_list, list):
        raise ChainSpecError("chain spec: genesis.works must be a list")
    for i, w in enumerate(work_list):
        where = f"genesis.works[{i}]."
        try:
            content_hash = from_hex0x(_field(w, "contentHash", str, where), 32)
        except ValueError as e:
            raise ChainSpecError(f"chain spec: {where}contentHash: {e}") from None
        owner = _address(_field(w, "owner", str, where), where + "owner")
        entries = w.get("creators", [[w["owner"], 10_000]])
        if not isinstance(entries, list) or not all(
            isinstance(c, list) and len(c) == 2 for c in entries
        ):
            raise ChainSpecError(f"chain spec: {where}creators must be a list of [address, bps]")
        creators = tuple(
            (_address(c[0], where + "creators"), _amount(c[1], where + "creators", bits=16))
            for c in entries
        )
        works.append(GenesisWork(owner, content_hash, _field(w, "kind", str, where),
                                 _field(w, "title", str, where), w.get("metadataUri", ""),
                                 creators))
    return ChainSpec(**common, slot_duration_ms=slot, balances=tuple(balances),
                     authorities=authorities, sudo=sudo, works=tuple(works))
