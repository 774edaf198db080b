"""The keys consensus signs with: whichever key of the node's keystore belongs to the
authority set at hand.

Authoring and finality do not hold a key; they ask a :class:`KeySource` (the node's
:class:`node.keystore.Keystore`) each time the question may have a new answer: the author
at every slot whose owner it could be, the finality gadget when its voter set or the
keystore changes. So a key inserted while the node runs (``author_insertKey``, ``opus key
insert``) is used without a restart. :class:`SigningKeys` does the asking for one role:
it opens the key on a worker thread (a sealed key costs argon2id's ~0.2 s the first time),
logs the key it starts signing with, and logs a key it cannot use once, not at every slot.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Protocol

import trio

from node.keystore import KeystoreError
from runtime.crypto import Keypair, encode_address

log = logging.getLogger("opus.keys")

MAX_REPORTED = 256  # keys reported as unusable, remembered so as not to repeat the line


class KeySource(Protocol):
    """What consensus needs of a keystore."""

    def has(self, key_type: str, public: bytes) -> bool:
        """Whether a ``key_type`` key of ``public`` is there (cheap: nothing decrypted)."""

    def key(self, key_type: str, public: bytes) -> Keypair | None:
        """The key, None if absent; raises a :class:`node.keystore.KeystoreError` if it
        cannot be used."""

    def version(self) -> Hashable:
        """Changes whenever a key may have been added or removed."""


class SigningKeys:
    """The ``key_type`` keys of ``source`` for one role (``what``: "authoring", …)."""

    def __init__(self, source: KeySource, key_type: str, what: str) -> None:
        self.source = source
        self.key_type = key_type
        self.what = what
        self.current: Keypair | None = None  # the key last signed with
        self.unusable = False  # the last search met a key it could not open
        self._reported: set[tuple[bytes, Hashable]] = set()

    def find_now(self, publics: Iterable[bytes]) -> Keypair | None:
        """The key of the first of ``publics`` the source holds and can open (blocking)."""
        self.unusable = False
        for public in publics:
            if not self.source.has(self.key_type, public):
                continue
            try:
                key = self.source.key(self.key_type, public)
            except KeystoreError as e:
                self._report(public, e)
                continue
            if key is not None:
                return self._using(key)
        return None

    async def find(self, publics: Iterable[bytes]) -> Keypair | None:
        """:meth:`find_now`, the keys opened on a worker thread (the event loop runs on);
        no thread when the source holds none of them (most slots of most validators)."""
        held = [public for public in publics if self.source.has(self.key_type, public)]
        if not held:
            self.unusable = False
            return None
        return await trio.to_thread.run_sync(self.find_now, held)

    def _using(self, key: Keypair) -> Keypair:
        if self.current is None or self.current.public != key.public:
            log.info("🔑 %s with the %s key %s", self.what.capitalize(), self.key_type,
                     key.address)
        self.current = key
        return key

    def _report(self, public: bytes, error: KeystoreError) -> None:
        """Log a key that cannot be used, once per key and keystore version."""
        self.unusable = True
        marker = (public, self.source.version())
        if marker not in self._reported:
            if len(self._reported) >= MAX_REPORTED:
                self._reported.clear()
            self._reported.add(marker)
            log.error("🔑 Cannot use the %s key %s for %s: %s", self.key_type,
                      encode_address(public), self.what, error)


__all__ = ["KeySource", "SigningKeys"]
