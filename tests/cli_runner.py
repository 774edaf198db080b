"""Running ``opus`` commands in the test's own process, their output captured.

What ``node.cli.main`` does, minus installing a signal handler (so it also runs in a
worker thread): parse, dispatch, and turn ``SystemExit`` into an exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

from node import cli


@dataclass
class Result:
    """An ``opus`` command's exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_opus(*argv: str) -> Result:
    """``opus ARGV…`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.dispatch(cli.build_parser().parse_args(list(argv)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())
