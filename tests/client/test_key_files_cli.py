"""Encrypted key files through the real ``opus`` commands, against a real ``opus --dev``.

``opus account new`` and ``account import`` write a key file encrypted with a passphrase;
every command reading ``--key FILE`` opens it with ``--password-filename``, ``--password``
or a prompt on a terminal. Each ``opus`` command is a process of its own (ended by the
time ``subprocess.run`` returns); the terminal ones run on a pseudo-terminal in a session
of their own, so they can never prompt on the terminal running the tests.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import ROOT, opus_dev, rpc_call
from test_creator_cli import Processes

from client.keys import keypair_from_phrase
from runtime.crypto import dev_keypair

BOB = dev_keypair("bob")
PASSPHRASE = "tide pool at dawn, 1987"
TERMINAL_TIMEOUT_S = 120


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def nonce(port: int, address: str) -> int:
    return int(rpc_call(port, "opus_accountInfo", [address])["nonce"])


class Terminal:
    """``opus argv`` on a pseudo-terminal: what a person at a terminal sees and types."""

    def __init__(self, argv: list[str], workdir: Path) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *argv], cwd=workdir, stdin=slave, stdout=slave,
            stderr=slave, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        os.close(slave)
        self.seen = b""
        self.deadline = time.monotonic() + TERMINAL_TIMEOUT_S

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace").replace("\r\n", "\n")

    def _read(self) -> bool:
        """Read what the process wrote; False once it closed the terminal."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.kill()
            pytest.fail(f"the command did not finish in time; it wrote:\n{self.text}")
        ready, _, _ = select.select([self.master], [], [], remaining)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the process closed its side of the terminal
            return False
        self.seen += chunk
        return bool(chunk)

    def expect(self, prompt: str) -> None:
        while prompt not in self.text:
            if not self._read():
                pytest.fail(f"no {prompt!r} on the terminal; it shows:\n{self.text}")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> int:
        while self._read():
            pass
        os.close(self.master)
        return self.proc.wait(timeout=TERMINAL_TIMEOUT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.mark.slow
def test_key_files_against_opus_dev(tmp_path: Path) -> None:
    log_path = tmp_path / "node.log"
    with opus_dev(log_path) as (node, port):
        opus = Processes(f"http://127.0.0.1:{port}", tmp_path)
        _round_trip(opus, port, tmp_path)
        _refusals(opus, port, tmp_path)
        _terminal(opus, port, tmp_path)
    text = log_path.read_text()
    assert node.returncode == 0, text
    assert "Traceback" not in text


def _round_trip(opus: Processes, port: int, tmp: Path) -> None:
    key_file = tmp / "me.json"
    password_file = tmp / "passphrase.txt"
    password_file.write_text(PASSPHRASE + "\n")
    unlock = ("--password-filename", str(password_file))

    done = opus.run("account", "new", "--out", str(key_file), *unlock, rpc=False)
    lines = done.stdout.splitlines()
    address = lines[0].removeprefix("New account ")
    phrase = next(line.split(None, 2)[2] for line in lines if "secret phrase" in line)
    assert len(phrase.split()) == 12 and keypair_from_phrase(phrase).address == address
    assert "Write the secret phrase down" in done.stdout and "shown only this once" in done.stdout
    # On disk: private, encrypted, neither the phrase nor the seed in clear.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = json.loads(key_file.read_text())
    assert stored["encrypted"] is True and stored["address"] == address
    assert keypair_from_phrase(phrase).seed.hex() not in key_file.read_text()
    assert phrase not in key_file.read_text()

    # The account signs with its key file and passphrase.
    opus.run("transfer", address, "10OPUS", "--dev-account", "alice")
    opus.run("transfer", BOB.address, "1OPUS", "--key", str(key_file), *unlock)
    assert nonce(port, address) == 1

    # The phrase restores the same account (read from standard input, not the command line).
    restored = tmp / "restored.json"
    imported = json.loads(opus.run("account", "import", "--phrase", "-", "--out",
                                   str(restored), "--password", "another passphrase",
                                   "--json", rpc=False, stdin=phrase + "\n").stdout)
    assert imported == {"address": address, "keyFile": str(restored), "encrypted": True}
    opus.run("transfer", BOB.address, "1OPUS", "--key", str(restored), "--password",
             "another passphrase")
    assert nonce(port, address) == 2

    # A seed and a secret URI import too; 24-word phrases.
    seed = "0x" + keypair_from_phrase(phrase).seed.hex()
    by_seed = json.loads(opus.run("account", "import", "--seed", seed, "--out",
                                  str(tmp / "seed.json"), *unlock, "--json",
                                  rpc=False).stdout)
    assert by_seed["address"] == address
    by_uri = json.loads(opus.run("account", "import", "--suri", f"{phrase}///extra",
                                 "--out", str(tmp / "uri.json"), *unlock, "--json",
                                 rpc=False).stdout)
    assert by_uri["address"] == keypair_from_phrase(phrase, "extra").address != address
    long = json.loads(opus.run("account", "new", "--words", "24", "--out",
                               str(tmp / "long.json"), *unlock, "--json", rpc=False).stdout)
    assert len(long["secretPhrase"].split()) == 24

    # An unencrypted dev key only with an explicit empty passphrase.
    plain = tmp / "plain.json"
    opus.run("account", "import", "--suri", "//Dave", "--out", str(plain), "--password", "",
             rpc=False)
    assert json.loads(plain.read_text())["seed"] == dev_keypair("dave").seed.hex()
    opus.run("transfer", BOB.address, "1", "--key", str(plain))


def _refusals(opus: Processes, port: int, tmp: Path) -> None:
    """Each refusal is one ``Error:`` line, exit 1, and sends nothing."""
    key_file = tmp / "me.json"
    address = json.loads(key_file.read_text())["address"]
    before = nonce(port, address)
    transfer = ("transfer", BOB.address, "1OPUS", "--key")

    wrong = opus.run(*transfer, str(key_file), "--password", "not it", expect=1)
    assert one_error_line(wrong) == (f"Error: wrong passphrase for key file {str(key_file)!r} "
                                     "(or the file was changed)")
    empty_file = tmp / "empty.txt"
    empty_file.write_text("")
    opus.run(*transfer, str(key_file), "--password-filename", str(empty_file), expect=1)

    missing = opus.run(*transfer, str(key_file), expect=1)  # standard input: not a terminal
    assert one_error_line(missing) == (
        f"Error: key file {str(key_file)!r} is encrypted: give its passphrase "
        "(--password-filename FILE, or --password)")

    truncated = tmp / "truncated.json"
    truncated.write_bytes(key_file.read_bytes()[:120])
    truncated.chmod(0o600)
    done = opus.run(*transfer, str(truncated), "--password", PASSPHRASE, expect=1)
    assert "not JSON (truncated or not a key file)" in one_error_line(done)

    shared = tmp / "shared.json"
    shared.write_bytes(key_file.read_bytes())
    shared.chmod(0o644)
    done = opus.run(*transfer, str(shared), "--password", PASSPHRASE, expect=1)
    assert one_error_line(done) == (f"Error: key file {str(shared)!r} is accessible by other "
                                    f"users (mode 0644); make it private: chmod 600 {shared}")

    hostile = json.loads(key_file.read_text())
    hostile["kdf"]["memlimit"] = 1 << 60
    (tmp / "hostile.json").write_text(json.dumps(hostile))
    (tmp / "hostile.json").chmod(0o600)
    done = opus.run(*transfer, str(tmp / "hostile.json"), "--password", PASSPHRASE, expect=1)
    assert "kdf.memlimit must be an integer" in one_error_line(done)

    # New key files: no passphrase and no terminal, an empty passphrase file, a bad phrase.
    target = tmp / "never.json"
    done = opus.run("account", "new", "--out", str(target), rpc=False, expect=1)
    assert "--password-filename FILE" in one_error_line(done)
    done = opus.run("account", "new", "--out", str(target), "--password-filename",
                    str(empty_file), rpc=False, expect=1)
    assert 'is empty; for an unencrypted key file give --password ""' in one_error_line(done)
    done = opus.run("account", "import", "--phrase", "marble crisp cover", "--out",
                    str(target), "--password", "x", rpc=False, expect=1)
    assert "not 3" in one_error_line(done)
    assert not target.exists()
    assert nonce(port, address) == before


def _terminal(opus: Processes, port: int, tmp: Path) -> None:
    """On a terminal the passphrase is asked for (twice for a new file), never echoed."""
    key_file = tmp / "typed.json"
    term = Terminal(["account", "new", "--out", str(key_file)], tmp)
    term.expect(f"Passphrase for {key_file}: ")
    term.type(PASSPHRASE)
    term.expect("Repeat the passphrase: ")
    term.type(PASSPHRASE)
    assert term.finish() == 0, term.text
    assert PASSPHRASE not in term.text and "secret phrase" in term.text
    address = json.loads(key_file.read_text())["address"]

    opus.run("transfer", address, "2OPUS", "--dev-account", "alice")
    term = Terminal(["account", "show", "--key", str(key_file), "--rpc", opus.rpc], tmp)
    term.expect(f"Passphrase for key file {key_file}: ")
    term.type(PASSPHRASE)
    assert term.finish() == 0, term.text
    assert f"Account {address}" in term.text and "2 OPUS" in term.text
    assert PASSPHRASE not in term.text

    term = Terminal(["account", "show", "--key", str(key_file), "--rpc", opus.rpc], tmp)
    term.expect(f"Passphrase for key file {key_file}: ")
    term.type("a guess")
    assert term.finish() == 1
    assert "Error: wrong passphrase" in term.text and "Traceback" not in term.text

    other = tmp / "mistyped.json"
    term = Terminal(["account", "new", "--out", str(other)], tmp)
    term.expect("Passphrase for")
    term.type(PASSPHRASE)
    term.expect("Repeat the passphrase: ")
    term.type(PASSPHRASE + "!")
    assert term.finish() == 1
    assert "Error: the two passphrases differ; nothing was written" in term.text
    assert not other.exists()
