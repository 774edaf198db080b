"""``opus key generate | inspect | insert | generate-node-key | inspect-node-key``: account
keys (ed25519, ``opus1…`` addresses), the node's keystore and libp2p node keys, as
Substrate's ``key`` command.

Keys are named by one secret-URI grammar (:func:`client.keys.keypair_from_suri`): a
BIP-39 phrase, ``"<phrase>///password"``, ``0x`` + a 32-byte seed, or ``//Alice`` …
``//Ferdie``. ``key generate --output-type json`` prints a plain ``opus-key/1`` key file
(:func:`client.keys.seal_key`, the format every command reads with ``--key FILE``) with
the phrase and the display fields beside it.

The keystore's password (``--password-filename``, ``--password``,
``--password-interactive``) is read here, for ``key insert`` and for running a node
(:func:`open_keystore`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.errors import ClientError
from client.keys import (
    PASSWORD_SEPARATOR,
    PHRASE_WORDS,
    generate_phrase,
    keypair_from_phrase,
    keypair_from_suri,
    seal_key,
)
from node.cli.common import UserError, base_path, load_genesis, parse_hex
from node.keystore import KEY_TYPES, KEYSTORE_DIR, Keystore, KeystoreError
from runtime.codec import hex0x
from runtime.crypto import Keypair, decode_address, encode_address

ADDRESS_PREFIX = "opus1"
LABEL_WIDTH = 19  # "Public key (hex):  ": the values line up, as subkey's do


def key_command(args: argparse.Namespace) -> int:
    handlers = {
        "generate": key_generate,
        "inspect": key_inspect,
        "insert": key_insert,
        "generate-node-key": key_generate_node_key,
        "inspect-node-key": key_inspect_node_key,
    }
    try:
        return handlers[args.key_command](args)
    except (ClientError, KeystoreError) as e:  # a bad phrase or URI, a keystore error
        raise UserError(str(e)) from None


# ---------------------------------------------------------------------------
# arguments (node.cli builds the parser; these are the key-related parts)


def add_keystore_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--keystore-path`` and the keystore password flags, as Substrate has them."""
    parser.add_argument("--keystore-path", metavar="DIR",
                        help=f"the keystore directory (default: <base path>/{KEYSTORE_DIR})")
    password = parser.add_mutually_exclusive_group()
    password.add_argument("--password-filename", dest="keystore_password_filename",
                          metavar="FILE",
                          help="the keystore password: the text of FILE without its final "
                               "line break (for unattended starts); keys are then stored "
                               "encrypted (default: plain files, readable by this user only)")
    password.add_argument("--password", dest="keystore_password", metavar="PASSWORD",
                          help="the keystore password itself (other users can see it in the "
                               "process list: prefer --password-filename)")
    password.add_argument("--password-interactive", dest="keystore_password_interactive",
                          action="store_true",
                          help="ask for the keystore password on the terminal")


def add_parser(sub: Any, add_shared: Callable[[argparse.ArgumentParser], None]) -> None:
    """``opus key …`` and its subcommands (``add_shared`` adds ``--chain``, ``--dev`` and
    ``--base-path``)."""
    key = sub.add_parser("key", help="generate and inspect keys; insert keys into a keystore")
    key_sub = key.add_subparsers(dest="key_command", metavar="KEY_COMMAND", required=True)
    p = key_sub.add_parser("generate", help="a new secret phrase and its account key")
    p.add_argument("--words", type=int, choices=PHRASE_WORDS, default=12,
                   help="words in the phrase (default 12)")
    p.add_argument("--output-type", choices=("text", "json"), default="text",
                   help="json: a plain key file (opus-key/1) with the phrase beside it")
    p = key_sub.add_parser("inspect", help="the key of a secret URI, or a public key's forms")
    p.add_argument("uri", metavar="URI",
                   help='"<phrase>", "<phrase>///password", 0x<seed>, //Alice … //Ferdie, or '
                        "an opus1… address")
    p.add_argument("--public", action="store_true",
                   help="URI is a public key (0x<hex> or an address), not a secret")
    p.add_argument("--output-type", choices=("text", "json"), default="text")
    p = key_sub.add_parser("insert", help="put a key into a node's keystore")
    add_shared(p)
    p.add_argument("--key-type", required=True, choices=KEY_TYPES,
                   help="aura (authoring) or gran (finality votes); a validator needs both")
    p.add_argument("--suri", metavar="URI|FILE",
                   help='the key: "<phrase>", "<phrase>///password", 0x<seed> or //Alice, or a '
                        "file holding it (default: asked on the terminal)")
    add_keystore_arguments(p)
    p = key_sub.add_parser("generate-node-key", help="a new libp2p node key")
    p.add_argument("--file", metavar="FILE", help="write the secret here (else to stdout)")
    p.add_argument("--bin", action="store_true", help="write raw bytes instead of hex")
    p = key_sub.add_parser("inspect-node-key", help="print the peer id of a node key file")
    p.add_argument("--file", metavar="FILE", required=True)


def keystore_password(args: argparse.Namespace) -> str | None:
    """The keystore password the flags give; None for none (plain key files)."""
    if getattr(args, "keystore_password_interactive", False):
        if not _interactive():
            raise UserError("--password-interactive needs a terminal; give "
                            "--password-filename FILE instead")
        try:
            return getpass.getpass("Keystore password: ") or None
        except EOFError:
            raise UserError("no keystore password given (end of input)") from None
    filename: str | None = getattr(args, "keystore_password_filename", None)
    if filename is not None:
        try:
            text = Path(filename).read_text()
        except UnicodeDecodeError:
            raise UserError(f"the password file {filename} is not UTF-8 text") from None
        except OSError as e:
            raise UserError(f"cannot read the password file {filename}: "
                            f"{e.strerror or e}") from None
        # ``echo secret > FILE`` ends the file with a line break that is not part of it.
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise UserError(f"the password file {filename} is empty (a plain keystore needs "
                            "no password flag)")
        return text
    given: str | None = getattr(args, "keystore_password", None)
    return given or None


def keystore_path(args: argparse.Namespace, base: Path) -> Path:
    """``--keystore-path``, else ``<base>/keystore``."""
    given: str | None = getattr(args, "keystore_path", None)
    return Path(given).expanduser() if given else base / KEYSTORE_DIR


def open_keystore(path: Path, password: str | None) -> Keystore:
    """The keystore at ``path``, its directory made and its password checked."""
    keystore = Keystore(path, password)
    keystore.check()
    return keystore


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------
# key generate | inspect


def _fields(key: Keypair | None, public: bytes, phrase: str | None) -> dict[str, Any]:
    """What ``generate`` and ``inspect`` print: with a secret, a plain key file document."""
    fields: dict[str, Any] = {}
    if key is not None:
        fields.update(seal_key(key, ""))  # format, address, encrypted: false, seed
        if phrase is not None:
            fields["secretPhrase"] = phrase
        fields["secretSeed"] = hex0x(key.seed)
    fields["publicKey"] = hex0x(public)
    fields["accountId"] = hex0x(public)
    fields["address"] = encode_address(public)
    return fields


def _print_key(heading: str, key: Keypair | None, public: bytes, *, phrase: str | None,
               output: str) -> None:
    if output == "json":
        print(json.dumps(_fields(key, public, phrase), indent=2))
        return
    lines = [heading]
    rows = []
    if key is not None:
        rows.append(("Secret seed", hex0x(key.seed)))
    rows += [("Public key (hex)", hex0x(public)), ("Account ID", hex0x(public)),
             ("Address", encode_address(public))]
    lines += [f"  {label + ':':<{LABEL_WIDTH}}{value}" for label, value in rows]
    print("\n".join(lines))


def _phrase_heading(phrase: str) -> str:
    return f"{'Secret phrase:':<{LABEL_WIDTH + 2}}{phrase}"


def key_generate(args: argparse.Namespace) -> int:
    """A new BIP-39 phrase and the key derived from it."""
    phrase = generate_phrase(args.words)
    key = keypair_from_phrase(phrase)
    _print_key(_phrase_heading(phrase), key, key.public, phrase=phrase,
               output=args.output_type)
    return 0


def key_inspect(args: argparse.Namespace) -> int:
    """A secret URI's key, or with ``--public`` (or an address) a public key's forms."""
    text = args.uri.strip()
    if args.public or (text.startswith(ADDRESS_PREFIX) and " " not in text):
        public = parse_hex(text, "the public key", 32) if text.startswith("0x") \
            else decode_address(text)
        _print_key(f"Public key `{text}` is account:", None, public, phrase=None,
                   output=args.output_type)
        return 0
    key = keypair_from_suri(text)
    phrase = None  # shown (and in the JSON) only when it alone gives the key
    if not text.startswith(("//", "0x")) and PASSWORD_SEPARATOR not in text:
        phrase = " ".join(text.split())
    heading = (_phrase_heading(phrase) if phrase is not None
               else f"Secret Key URI `{text}` is account:")
    _print_key(heading, key, key.public, phrase=phrase, output=args.output_type)
    return 0


# ---------------------------------------------------------------------------
# key insert


def key_insert(args: argparse.Namespace) -> int:
    """Put a key into a node's keystore (the node need not be stopped: a running
    validator uses it from its next slot)."""
    # The chain (and so its spec) matters only for the default base path.
    base = Path() if args.keystore_path else base_path(args, load_genesis(args))
    path = keystore_path(args, base)
    keystore = open_keystore(path, keystore_password(args))
    key = keypair_from_suri(_suri(args))
    keystore.insert(args.key_type, key)
    print(f"Inserted the {args.key_type} key {key.address} into {path}"
          f"{' (encrypted)' if keystore.encrypted else ''}")
    return 0


def _suri(args: argparse.Namespace) -> str:
    """``--suri``: the URI, or the text of the file it names; asked for if absent."""
    given: str | None = args.suri
    if given is None:
        if not _interactive():
            raise UserError("give the key with --suri \"<phrase>\" (or --suri FILE)")
        try:
            given = getpass.getpass("Secret URI (phrase, 0x seed or //Name): ")
        except EOFError:
            raise UserError("no secret URI given (end of input)") from None
    elif _is_file(given):  # Substrate's rule: a file's content is the URI
        try:
            given = Path(given).read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the secret URI file {given}: {e}") from None
    return given


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # too long for a file name, a NUL byte: a URI then
        return False


# ---------------------------------------------------------------------------
# node keys (libp2p)


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


__all__ = ["add_keystore_arguments", "add_parser", "key_command", "keystore_password",
           "keystore_path", "open_keystore"]
