"""What the tests of untrusted text share: hostile strings, a check for what a terminal
must never receive raw, and a hostile JSON-RPC node on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A title that, printed raw, clears the screen, prints a red line over the current one,
# rings the bell, reverses the rest of the line and starts a one-byte (C1) CSI sequence;
# it ends with the literal six characters \x1b, which must stay distinguishable.
HOSTILE = ("Sunrise\x1b[2J\x1b[31mtransfer approved\x1b[0m\x07\rX\u202eevil\u009b2J"
           "\ttab \\x1b")
# How each hostile piece must appear instead.
HOSTILE_SHOWN = ("\\x1b[2J", "\\x1b[31m", "\\x07", "\\r", "\\u202e", "\\x9b2J", "\\t",
                 "\\\\x1b")

# What a terminal must never be sent raw: C0 controls but the line feed that ends each
# line, DEL, C1 controls, the bidi controls, the line and paragraph separators, the
# invisible tag characters and lone surrogates. (Written out here on purpose, not taken
# from client.display: the test checks that module's choice against this list.)
_DANGERS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e"
                      "\u2028\u2029\u2066-\u2069\ufeff\U000e0000-\U000e007f\ud800-\udfff]")


def dangers(text: str) -> list[str]:
    """The characters of ``text`` a terminal must not receive (empty when safe)."""
    return _DANGERS.findall(text)


Answer = Callable[[str, Any], dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    answer: Answer  # set on the subclass made for each server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length))
        reply = {"jsonrpc": "2.0", "id": request.get("id"),
                 **self.answer(request.get("method", ""), request.get("params"))}
        # ensure_ascii: a lone surrogate in a string travels as the escape \ud800, which a
        # JSON parser turns back into the lone surrogate, as a hostile node may send it.
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@contextmanager
def hostile_node(answer: Answer) -> Iterator[int]:
    """A JSON-RPC server on 127.0.0.1 answering ``answer(method, params)``; its port."""
    handler = type("Handler", (_Handler,), {"answer": staticmethod(answer)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
