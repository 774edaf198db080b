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
        if record.name.startswith("opus"):
            return True
        # Some py-libp2p warnings embed a formatted traceback in the message itself.
        message = record.getMessage().split("\n", 1)[0]
        if record.exc_info:
            error = record.exc_info[1]
            message = f"{message} ({type(error).__name__}: {error})"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = None
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
    logging.getLogger().handlers[:] = [_third_party_handler()]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    # Third-party libraries stay quiet unless something is wrong.
    for noisy in ("libp2p", "hypercorn", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _third_party_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler.addFilter(OneLineForThirdParty())
    return handler


def adopt_library_logger(name: str) -> None:
    """Route a library's logger (py-libp2p configures its own, with no handler, on
    import) through the one-line handler instead of Python's last-resort printer."""
    library = logging.getLogger(name)
    library.handlers[:] = [_third_party_handler()]
    library.propagate = False
    library.setLevel(logging.WARNING)


def short_hash(block_hash: bytes) -> str:
    """``0x1234…abcd``, the way Substrate prints hashes in logs."""
    text = block_hash.hex()
    return f"0x{text[:4]}…{text[-4:]}"
