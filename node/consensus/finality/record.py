"""The vote record on disk: what keeps a validator from voting twice across restarts.

Never vote twice
    Before a vote is gossiped it is written with its round and set to
    ``<base path>/finality/votes`` (write, fsync, rename, fsync the directory).
    On restart the record is reloaded: the validator resumes in that round with
    the same votes, never signs another vote of a phase it already voted in, and
    never votes in an older round. The record also keeps ``E_{r-1}`` (a local view,
    any completable-time estimate is safe to use), so even a whole network that
    restarts at once can precommit again; without it (an old record) a validator
    prevotes but precommits only after it has seen round ``r - 1`` (or a later
    round) completable from gossiped votes. It keeps the validator's own votes
    of round ``r - 1`` as well, and re-sends them with those of round ``r``:
    validators that restarted while still in ``r - 1`` lost them, and without
    them that round may never become completable for them.

The record is a :class:`runtime.finality_types.VoterRecord` in its canonical
encoding. The gadget (:mod:`node.consensus.finality.gadget`) reads it once when
it starts and writes it, off the event loop, before it sends a new vote.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime import codec
from runtime.finality_types import VoterRecord

__all__ = ["VOTES_DIR", "VOTES_FILE", "read_record", "write_record"]

VOTES_DIR = "finality"  # under the node's base path
VOTES_FILE = "votes"


def read_record(path: Path) -> VoterRecord | None:
    """The vote record at ``path``, None if there is none.

    Raises RuntimeError if it is corrupt: voting without knowing our past votes
    could equivocate.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        try:
            record: VoterRecord = codec.decode(data, VoterRecord)
        except codec.WrongFieldCount as e:
            # Written before ``prev_votes`` existed: six items, read as with none.
            try:
                legacy = codec.unpack_trusted(data)
            except ValueError:
                raise e from None
            if not isinstance(legacy, list) or len(legacy) != 6:
                raise
            record = codec.decode(codec.pack([*legacy, []]), VoterRecord)
    except codec.DecodeError as e:
        # Refuse to guess: voting without knowing our past votes could equivocate.
        raise RuntimeError(f"the finality vote record {path} is corrupt ({e}); "
                           f"move it away only if this key has not voted elsewhere") from None
    return record


def write_record(directory: Path, data: bytes) -> None:
    """Write the encoded record to ``directory``/votes durably: temp file, fsync, rename
    over, fsync the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / (VOTES_FILE + ".tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, directory / VOTES_FILE)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
