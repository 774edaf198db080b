"""Fixtures of the node tests: real ``opus`` processes, each ended by its PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import NodeProcess


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Starts ``opus ARGV…`` processes (logs in ``tmp_path``); kills each one at the end."""
    started: list[NodeProcess] = []

    def start(*argv: str) -> NodeProcess:
        node = NodeProcess(list(argv), tmp_path / f"node-{len(started)}.log")
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()
