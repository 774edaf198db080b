"""``opus build-spec``: a chain spec as JSON (``--raw``: with its exact genesis state).

    opus build-spec --chain local --authority ADDR … --endow ADDR=AMOUNT … --sudo ADDR \\
        --bootnode /ip4/…/tcp/…/p2p/… … --name NAME --id ID --chain-type Live --slot-ms N

starts from ``--chain`` (``dev``, ``local`` or a JSON file) and replaces what the flags
give (:func:`genesis.spec.customized`): ``--authority`` the authority set (1 to
``validators.MAX_AUTHORITIES`` keys, each once), ``--endow`` the genesis balances,
``--bootnode`` the boot nodes, the others their one field. An address is an ``opus1…``
address, ``0x`` and a 32-byte public key in hex, or a dev account name; an amount is
whole units (``1000000``) or tokens with the symbol (``1000OPUS``, ``2.5OPUS``).
"""

from __future__ import annotations

import argparse
import json
import sys

from client.commands.arguments import account, amount, number_in_range
from genesis import build_genesis, load_spec
from genesis.builder import genesis_state
from genesis.spec import (
    BOOT_NODE_FORM,
    CHAIN_TYPES,
    ChainSpec,
    ChainSpecError,
    check_boot_node,
    customized,
    spec_to_json,
)
from node.cli.common import chain_name
from runtime.crypto import DEV_ACCOUNT_NAMES, dev_keypair

# Flags that change the spec; without any, build-spec prints ``--chain`` as it is.
CUSTOM_FLAGS = ("authorities", "endowments", "sudo", "boot_nodes", "spec_name", "spec_id",
                "chain_type", "slot_ms")


def endowment(text: str) -> tuple[bytes, int]:
    """``ADDR=AMOUNT``: an account and what it starts with (an argparse type)."""
    who, sep, value = text.rpartition("=")
    if not sep or not who:
        raise argparse.ArgumentTypeError(f"an endowment is ADDR=AMOUNT (e.g. "
                                         f"opus1…=1000OPUS), got {text!r}")
    return account(who), amount(value)


def boot_node(text: str) -> str:
    """A boot node multiaddr, in its form (an argparse type; fully parsed in build_spec)."""
    try:
        return check_boot_node(text)
    except ChainSpecError:
        raise argparse.ArgumentTypeError(f"a boot node is {BOOT_NODE_FORM}, got {text!r}") \
            from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """build-spec's own flags (``--chain``/``--dev`` come from the shared ones)."""
    p.add_argument("--raw", action="store_true", help="the raw form: the exact genesis state")
    custom = p.add_argument_group(
        "a spec of your own (each replaces that part of --chain's spec)")
    custom.add_argument("--authority", dest="authorities", metavar="ADDR", action="append",
                        type=account,
                        help="an authority (validator) key, in authoring order; repeat for "
                             "each (1 to 100)")
    custom.add_argument("--endow", dest="endowments", metavar="ADDR=AMOUNT", action="append",
                        type=endowment,
                        help="a genesis balance: units, or tokens as 1000OPUS; repeat for each")
    custom.add_argument("--sudo", type=account, metavar="ADDR",
                        help="the account allowed to change the authority set")
    custom.add_argument("--bootnode", dest="boot_nodes", metavar="MULTIADDR", action="append",
                        type=boot_node,
                        help="a boot node every node dials at start, "
                             "/ip4/…/tcp/…/p2p/<peer id>; repeat for each")
    custom.add_argument("--name", dest="spec_name", metavar="NAME",
                        help="the chain's human-readable name")
    custom.add_argument("--id", dest="spec_id", metavar="ID",
                        help="the chain id (names the default base path): 1 to 64 of "
                             "A-Z a-z 0-9 _ -")
    custom.add_argument("--chain-type", choices=CHAIN_TYPES,
                        help="Development, Local or Live (default: --chain's)")
    custom.add_argument("--slot-ms", dest="slot_ms", metavar="MS",
                        type=number_in_range("a slot duration in ms", 1, (1 << 32) - 1),
                        help="the slot duration in milliseconds")


def spec_from_args(args: argparse.Namespace) -> ChainSpec:
    """``--chain``'s spec with the custom flags applied."""
    spec = load_spec(chain_name(args))
    if not any(getattr(args, name, None) is not None for name in CUSTOM_FLAGS):
        return spec
    if args.boot_nodes:
        _parse_boot_nodes(args.boot_nodes)
    return customized(
        spec, name=args.spec_name, chain_id=args.spec_id, chain_type=args.chain_type,
        authorities=args.authorities, balances=args.endowments, sudo=args.sudo,
        boot_nodes=args.boot_nodes, slot_duration_ms=args.slot_ms)


def _parse_boot_nodes(boot_nodes: list[str]) -> None:
    """Parse each boot node as the node will when it dials (libp2p: slow to import, so only
    when there are boot nodes): a peer id that is no multihash, a bad address, fail here."""
    from p2p.host import InvalidMultiaddr, parse_peer_addr

    for text in boot_nodes:
        try:
            parse_peer_addr(text)
        except InvalidMultiaddr as e:
            raise ChainSpecError(f"--bootnode: {e}") from None


def dev_key_warnings(spec: ChainSpec) -> list[str]:
    """What a non-development spec gives to the public dev keys (their secrets are public)."""
    if spec.chain_type == "Development" or spec.raw is not None:
        return []
    dev = {dev_keypair(n).public: n for n in DEV_ACCOUNT_NAMES}
    found = [f"authority {dev[a]}" for a in spec.authorities if a in dev]
    if spec.sudo in dev:
        found.append(f"sudo {dev[spec.sudo]}")
    endowed = [dev[a] for a, value in spec.balances if a in dev and value]
    if endowed:
        found.append(f"balances of {', '.join(endowed)}")
    return [f"warning: this {spec.chain_type} spec uses the public dev keys "
            f"({'; '.join(found)}): anyone can sign with them"] if found else []


def build_spec(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.raw or spec.raw is not None:
        document = spec_to_json(spec, genesis_state(spec))
    else:
        build_genesis(spec)  # refuse a spec whose genesis cannot be built
        document = spec_to_json(spec)
    if any(getattr(args, name, None) is not None for name in CUSTOM_FLAGS):
        for line in dev_key_warnings(spec):
            print(line, file=sys.stderr)
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


__all__ = ["add_arguments", "boot_node", "build_spec", "dev_key_warnings", "endowment",
           "spec_from_args"]
