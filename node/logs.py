"""Logging in the shape Substrate users know: ``-l info,sync=debug``, one line per event."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-5s %(name)s  %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
TARGETS = ("opus", "opus.import", "opus.author", "opus.rpc", "opus.sync", "opus.net",
           "opus.finality", "opus.pool")
LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG, "trace": logging.DEBUG}


class LogSpecError(ValueError):
    """A ``-l/--log`` value that is not ``LEVEL`` or ``target=LEVEL`` items."""


def parse_log_spec(spec: str) -> dict[str, int]:
    """``"info,sync=debug"`` -> ``{"opus": INFO, "opus.sync": DEBUG}``."""
    levels: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, _, level = item.rpartition("=")
        if level.lower() not in LEVELS:
            raise LogSpecError(f"unknown log level {level!r} (use error, warn, info, debug)")
        if not target:
            name = "opus"
        else:
            name = target if target.startswith("opus") else "opus." + target
        levels[name] = LEVELS[level.lower()]
    return levels


class OneLineForThirdParty(logging.Filter):
    """Libraries' errors as one line: their tracebacks (py-libp2p logs some for
    connections racing a shutdown) would read as a crash of the node."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.name.startswith("opus"):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(spec: str = "info") -> None:
    levels = parse_log_spec(spec)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger("opus")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(levels.get("opus", logging.INFO))
    # Everything else (libraries) goes through the root logger: same format, one line each.
    third_party = logging.StreamHandler(sys.stderr)
    third_party.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    third_party.addFilter(OneLineForThirdParty())
    logging.getLogger().handlers[:] = [third_party]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    # Third-party libraries stay quiet unless something is wrong.
    for noisy in ("libp2p", "hypercorn", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def short_hash(block_hash: bytes) -> str:
    """``0x1234…abcd``, the way Substrate prints hashes in logs."""
    text = block_hash.hex()
    return f"0x{text[:4]}…{text[-4:]}"
