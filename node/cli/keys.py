"""``opus key generate | inspect | generate-node-key | inspect-node-key``: account keys
(ed25519, ``opus1…`` addresses) and libp2p node keys, as Substrate's ``key`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from node.cli.common import UserError, parse_hex
from runtime.codec import hex0x
from runtime.crypto import (
    DEV_ACCOUNT_NAMES,
    Keypair,
    decode_address,
    dev_keypair,
    encode_address,
)


def key_command(args: argparse.Namespace) -> int:
    handlers = {
        "generate": key_generate,
        "inspect": key_inspect,
        "generate-node-key": key_generate_node_key,
        "inspect-node-key": key_inspect_node_key,
    }
    return handlers[args.key_command](args)


def _print_key(*, public: bytes, seed: bytes | None, output: str) -> None:
    fields: dict[str, str] = {}
    if seed is not None:
        fields["secretSeed"] = hex0x(seed)
    fields["publicKey"] = hex0x(public)
    fields["accountId"] = hex0x(public)
    fields["address"] = encode_address(public)
    if output == "json":
        print(json.dumps(fields, indent=2))
        return
    labels = {"secretSeed": "Secret seed", "publicKey": "Public key (hex)",
              "accountId": "Account ID", "address": "Address"}
    for name, value in fields.items():
        print(f"{labels[name] + ':':<19}{value}")


def key_generate(args: argparse.Namespace) -> int:
    pair = Keypair.from_seed(os.urandom(32))
    _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    return 0


def key_inspect(args: argparse.Namespace) -> int:
    if args.dev_account is not None:
        pair = dev_keypair(args.dev_account)
        _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    elif args.seed is not None:
        pair = Keypair.from_seed(parse_hex(args.seed, "the seed", 32))
        _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
    else:
        text: str = args.address
        if text.startswith("//") and text[2:].lower() in DEV_ACCOUNT_NAMES:
            pair = dev_keypair(text[2:])
            _print_key(public=pair.public, seed=pair.seed, output=args.output_type)
        elif text.startswith("0x"):
            _print_key(public=parse_hex(text, "the public key", 32), seed=None,
                       output=args.output_type)
        else:
            _print_key(public=decode_address(text), seed=None, output=args.output_type)
    return 0


def key_generate_node_key(args: argparse.Namespace) -> int:
    from node import nodekey

    key = nodekey.generate()
    if args.file is not None:
        path = Path(args.file)
        if path.exists():
            raise UserError(f"{path} already exists; not overwriting a node key")
        try:
            nodekey.write_key_file(path, key, binary=args.bin)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    else:
        secret = key.private_key.to_bytes()
        if args.bin:
            sys.stdout.buffer.write(secret)
            sys.stdout.flush()
        else:
            print(secret.hex())
    print(nodekey.peer_id(key), file=sys.stderr)  # Substrate prints the peer id to stderr
    return 0


def key_inspect_node_key(args: argparse.Namespace) -> int:
    from node import nodekey

    print(nodekey.peer_id(nodekey.read_key_file(Path(args.file))))
    return 0
