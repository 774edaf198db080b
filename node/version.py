"""The node's version string, read once from the installed package (or pyproject.toml)."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

FALLBACK = "0.1.0"


def _read() -> str:
    try:
        return version("opuschain")
    except PackageNotFoundError:  # not installed: read pyproject.toml
        pass
    try:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return FALLBACK


VERSION = _read()

__all__ = ["VERSION"]
