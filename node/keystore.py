"""The node's keystore: the keys a validator authors blocks and votes with.

Substrate's layout: a directory (``<base path>/keystore``, ``--keystore-path`` to move
it) with one file per key, named by the key type's four ASCII bytes and the public key,
both in hex: ``61757261<public hex>`` for an ``aura`` (authoring) key,
``6772616e<public hex>`` for a ``gran`` (finality) key. Opus uses one ed25519 key per
validator in both roles, so a validator's keystore usually holds that key twice.

Each file is an ``opus-key/1`` key file (:mod:`client.keys`, the format of every key
file): sealed with the keystore password (argon2id and secretbox) when the node has one
(``--password-filename FILE``, ``--password``, ``--password-interactive``), plain
otherwise. Plain is the default because Substrate's keystore is: the files are the node's
user's alone (directory 0700, files 0600, and a key file other users may read is
refused), and a node that starts unattended needs its password from a file anyway; a
password protects the keys in backups and copies of the directory.

Decrypting a key costs argon2id's ~0.2 s, so decrypted keys (and the error of a file that
cannot be used) are cached by file name and the file's identity (mtime, ctime, inode,
size): a file replaced on disk, or made private with chmod, is read again. A key
can also be held in memory only (:meth:`Keystore.insert_ephemeral`, never written): the
dev keys of ``--alice`` … ``--ferdie``, as Substrate holds its ``--dev`` seed.

Errors: :class:`KeystorePasswordRequired`, :class:`WrongKeystorePassword`,
:class:`UnreadableKeyFile`, :class:`MismatchedKeyFile`, :class:`UnknownKeyType` and
:class:`KeystoreWriteFailed`, all :class:`KeystoreError`. No message, ``repr`` or log line
holds a secret: keys are named by their address.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Hashable
from pathlib import Path

from client.keys import (
    CorruptKeyFile,
    KeyFileError,
    PasswordRequired,
    UnsafeKeyFile,
    WrongPassword,
    key_file_is_encrypted,
    load_key_file,
    random_seed,
    write_key_file,
)
from runtime.crypto import Keypair, encode_address

AURA = "aura"  # block authoring (Aura)
GRAN = "gran"  # finality votes (GRANDPA's key type)
KEY_TYPES = (AURA, GRAN)
SESSION_KEY_TYPES = KEY_TYPES  # what author_rotateKeys makes: one key in both roles
KEYSTORE_DIR = "keystore"  # under the base path

_FILE_NAME = re.compile(r"[0-9a-f]{8}[0-9a-f]{64}")


class KeystoreError(Exception):
    """A keystore that cannot be used as asked; the message says what and where."""


class KeystorePasswordRequired(KeystoreError):
    """The keystore holds encrypted keys and the node was given no password."""


class WrongKeystorePassword(KeystoreError):
    """The keystore password does not open a key file (or the file was changed)."""


class UnreadableKeyFile(KeystoreError):
    """A keystore file that cannot be read as a key file: truncated, corrupt, readable by
    other users, or unreadable."""


class MismatchedKeyFile(KeystoreError):
    """A keystore file whose key is not the public key its name says."""


class UnknownKeyType(KeystoreError):
    """A key type other than ``aura`` and ``gran``."""


class KeystoreWriteFailed(KeystoreError):
    """A key could not be written to the keystore directory."""


def check_key_type(key_type: str) -> str:
    """``key_type`` if it is one of :data:`KEY_TYPES`, else :class:`UnknownKeyType`."""
    if key_type not in KEY_TYPES:
        raise UnknownKeyType(f"unknown key type {key_type!r}: one of {', '.join(KEY_TYPES)}")
    return key_type


def file_name(key_type: str, public: bytes) -> str:
    """Substrate's keystore file name: the key type's bytes and the public key, in hex."""
    return key_type.encode().hex() + public.hex()


def parse_file_name(name: str) -> tuple[str, bytes] | None:
    """(key type, public key) of a keystore file name; None for any other file."""
    if not _FILE_NAME.fullmatch(name):
        return None
    try:
        key_type = bytes.fromhex(name[:8]).decode("ascii")
    except UnicodeDecodeError:
        return None
    return key_type, bytes.fromhex(name[8:])


# mtime, ctime (a chmod too), inode, size: a file replaced or fixed is read again
_FileId = tuple[int, int, int, int]


class Keystore:
    """The node's keys: in ``path`` (see the module docstring), or only in memory if
    ``path`` is None. ``password``: None or ``""`` for plain key files.

    Reading methods may run on worker threads: the cache's updates are single dict
    operations, and two threads loading one file at once only both decrypt it.
    """

    def __init__(self, path: Path | None, password: str | None = None) -> None:
        self.path = path
        self._password = password or None
        self._held: dict[tuple[str, bytes], Keypair] = {}  # in memory only (ephemeral)
        self._cache: dict[str, tuple[_FileId, Keypair | KeystoreError]] = {}
        self._changes = 0

    @classmethod
    def in_memory(cls, *keys: Keypair) -> Keystore:
        """A keystore in memory holding each of ``keys`` in both roles (aura and gran)."""
        keystore = cls(None)
        for key in keys:
            for key_type in SESSION_KEY_TYPES:
                keystore.insert_ephemeral(key_type, key)
        return keystore

    def __repr__(self) -> str:  # never the password
        return f"Keystore({str(self.path) if self.path is not None else 'in memory'})"

    @property
    def encrypted(self) -> bool:
        """Whether keys written from now on are sealed with a password."""
        return self._password is not None

    # ------------------------------------------------------------------ writing

    def insert(self, key_type: str, key: Keypair) -> None:
        """Store ``key`` as a ``key_type`` key (replacing the same key's file, if any)."""
        check_key_type(key_type)
        if self.path is None:
            self.insert_ephemeral(key_type, key)
            return
        self._make_dir()
        name = file_name(key_type, key.public)
        final = self.path / name
        temporary = self.path / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            write_key_file(temporary, key, password=self._password or "")
            _fsync(temporary)
            os.replace(temporary, final)  # a crash leaves the old file or the new one
            _fsync(self.path)
            self._cache[name] = (_file_id(final), key)
        except (KeyFileError, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise KeystoreWriteFailed(f"cannot write the {key_type} key {key.address} to "
                                      f"{self.path}: {reason}") from None
        finally:
            temporary.unlink(missing_ok=True)
        self._changes += 1

    def insert_ephemeral(self, key_type: str, key: Keypair) -> None:
        """Hold ``key`` as a ``key_type`` key in memory only, never written (dev keys)."""
        self._held[(check_key_type(key_type), key.public)] = key
        self._changes += 1

    def generate(self, *key_types: str) -> Keypair:
        """A new random key, stored under each of ``key_types`` (default: aura and gran)."""
        for key_type in key_types:
            check_key_type(key_type)
        key = Keypair.from_seed(random_seed())
        for key_type in key_types or SESSION_KEY_TYPES:
            self.insert(key_type, key)
        return key

    # ------------------------------------------------------------------ reading

    def has(self, key_type: str, public: bytes) -> bool:
        """Whether the keystore holds a ``key_type`` key for ``public`` (without opening it)."""
        if (key_type, public) in self._held:
            return True
        return self.path is not None and (self.path / file_name(key_type, public)).is_file()

    def key(self, key_type: str, public: bytes) -> Keypair | None:
        """The ``key_type`` key of ``public``, None if the keystore has none; a file that
        cannot be used raises its :class:`KeystoreError` (the same one, cached, until the
        file changes)."""
        held = self._held.get((key_type, public))
        if held is not None or self.path is None:
            return held
        name = file_name(key_type, public)
        try:
            return self._load(name)
        except FileNotFoundError:
            return None

    def publics(self, key_type: str) -> list[bytes]:
        """The public keys of every ``key_type`` key the keystore holds, sorted."""
        found = {public for (kind, public) in self._held if kind == key_type}
        for name in self._file_names():
            parsed = parse_file_name(name)
            if parsed is not None and parsed[0] == key_type:
                found.add(parsed[1])
        return sorted(found)

    def version(self) -> Hashable:
        """Changes whenever a key is added or removed, here or by another process writing
        to the directory (``opus key insert`` next to a running node). The directory's
        listing, not its mtime: a coarse clock can give two changes one mtime."""
        try:
            names = tuple(self._file_names())
        except UnreadableKeyFile:
            names = ()
        return (self._changes, names)

    def check(self) -> None:
        """Make the directory (0700) if it is missing, and check that the password opens
        the keystore's keys: the first encrypted file is opened with it
        (:class:`KeystorePasswordRequired`, :class:`WrongKeystorePassword`)."""
        if self.path is None:
            return
        self._make_dir()
        for name in self._file_names():
            if parse_file_name(name) is not None and key_file_is_encrypted(self.path / name):
                self._load(name)
                return

    # ------------------------------------------------------------------ files

    def _make_dir(self) -> None:
        assert self.path is not None
        if self.path.is_dir():
            return
        try:
            self.path.mkdir(parents=True, mode=0o700)
            os.chmod(self.path, 0o700)  # whatever the umask
        except FileExistsError:
            if not self.path.is_dir():
                raise KeystoreWriteFailed(f"the keystore path {self.path} is not a directory") \
                    from None
        except OSError as e:
            raise KeystoreWriteFailed(f"cannot create the keystore directory {self.path}: "
                                      f"{e.strerror or e}") from None

    def _file_names(self) -> list[str]:
        if self.path is None:
            return []
        try:
            return sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UnreadableKeyFile(f"cannot list the keystore {self.path}: "
                                    f"{e.strerror or e}") from None

    def _load(self, name: str) -> Keypair:
        """The key in file ``name`` (decrypted once per version of the file)."""
        assert self.path is not None
        path = self.path / name
        file_id = _file_id(path)  # FileNotFoundError: no such key
        cached = self._cache.get(name)
        if cached is not None and cached[0] == file_id:
            found = cached[1]
            if isinstance(found, KeystoreError):
                raise type(found)(str(found))  # a fresh one: re-raising would grow its traceback
            return found
        try:
            key = self._open(path, name)
        except KeystoreError as e:
            self._cache[name] = (file_id, e)
            raise
        self._cache[name] = (file_id, key)
        return key

    def _open(self, path: Path, name: str) -> Keypair:
        try:
            key = load_key_file(path, self._password)
        except PasswordRequired:
            raise KeystorePasswordRequired(
                f"the keystore {self.path} holds encrypted keys: give its password "
                "(--password-filename FILE, --password or --password-interactive)") from None
        except WrongPassword:
            raise WrongKeystorePassword(f"wrong keystore password for {path} (or the file "
                                        "was changed)") from None
        except (CorruptKeyFile, UnsafeKeyFile, KeyFileError) as e:
            raise UnreadableKeyFile(f"keystore file: {e}") from None
        parsed = parse_file_name(name)
        if parsed is None or parsed[1] != key.public:
            named = encode_address(parsed[1]) if parsed is not None else "?"
            raise MismatchedKeyFile(f"keystore file {path} holds the key {key.address}, not "
                                    f"{named} as its name says")
        return key


def _file_id(path: Path) -> _FileId:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk (a key must survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "AURA",
    "GRAN",
    "KEYSTORE_DIR",
    "KEY_TYPES",
    "SESSION_KEY_TYPES",
    "Keystore",
    "KeystoreError",
    "KeystorePasswordRequired",
    "KeystoreWriteFailed",
    "MismatchedKeyFile",
    "UnknownKeyType",
    "UnreadableKeyFile",
    "WrongKeystorePassword",
    "check_key_type",
    "file_name",
    "parse_file_name",
]
