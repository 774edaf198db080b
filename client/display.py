"""Showing untrusted text (from the chain, a node or a file) on a terminal, safely.

A work's title, a metadata URI, a usage memo, a node's name or an RPC error's
``data`` is chosen by whoever wrote it on chain or runs that node. Printed raw,
an ESC sequence in it can clear the screen, move the cursor or colour a fake
"transfer approved" line; a BEL rings, a CR overwrites the line it is on, and a
bidi override (U+202E) makes text read backwards. Every command that prints such
text in human-readable form passes it through :func:`safe_text` (data) or
:func:`safe_message` (an error message), which show each dangerous character
as a visible Python-style escape instead: ``\\x1b``, ``\\u202e``, ``\\U000e0041``.

Escaped (:func:`is_unsafe`):

* every control character, Unicode category Cc: C0 (U+0000–U+001F, including
  TAB, LF and CR: a title or a memo is one line), DEL (U+007F) and C1
  (U+0080–U+009F, where U+009B is a one-character CSI);
* every format character, category Cf, except ZERO WIDTH NON-JOINER and ZERO
  WIDTH JOINER (U+200C, U+200D, which Persian, Indic scripts and emoji
  sequences need and which do not reorder or hide text). Cf holds the bidi
  controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the
  zero-width space U+200B, the word joiner U+2060, the BOM U+FEFF, the soft
  hyphen U+00AD and the invisible tag characters U+E0000–U+E007F, which can
  smuggle whole hidden sentences;
* surrogates (Cs: only a node's JSON can carry them, and printing one would
  raise) and the line and paragraph separators U+2028 and U+2029 (Zl, Zp).

Look-alike letters (homographs, e.g. a Cyrillic ``а`` for a Latin ``a``) and
combining marks are shown as they are: they cannot move the cursor or reorder
the line, and a work is identified by its number and content hash, which are
plain ASCII.

In data (:func:`safe_text`) a backslash is shown doubled, ``\\\\``, so every
backslash on screen starts an escape: a title holding the six characters
``\\x1b`` is shown as ``\\\\x1b`` and cannot pass for one holding ESC. Error
messages (:func:`safe_message`) keep single backslashes, since the values they
quote come with Python's ``repr``, which is unambiguous already.

``--json`` output is not passed through here: it keeps the exact text, and
``json.dumps`` with ``ensure_ascii=True`` (the default) writes every non-ASCII
and control character as a ``\\uXXXX`` escape, so the JSON itself is plain
printable ASCII and safe on a terminal too.
"""

from __future__ import annotations

import unicodedata

# Unicode categories whose characters are escaped (see the module docstring).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Format characters that stay: they join or separate neighbouring letters, visibly.
KEPT_FORMAT_CHARACTERS = frozenset({"\u200c", "\u200d"})
# The short escapes Python's repr uses, kept for the characters people know by them.
SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def is_unsafe(char: str) -> bool:
    """Whether one character is escaped before it reaches a terminal."""
    if char in KEPT_FORMAT_CHARACTERS:
        return False
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def escape_char(char: str) -> str:
    """The visible form of one character, as in a Python string literal."""
    short = SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def _escape(text: str, *, backslash: bool, keep_newlines: bool) -> str:
    # Most text is plain printable ASCII: return it unchanged without a per-character walk.
    if text.isascii() and text.isprintable() and not (backslash and "\\" in text):
        return text
    out = []
    for char in text:
        if char == "\\" and backslash:
            out.append("\\\\")
        elif char == "\n" and keep_newlines:
            out.append(char)
        elif is_unsafe(char):
            out.append(escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def safe_text(text: str) -> str:
    """``text`` for a terminal: unsafe characters and backslashes escaped, on one line."""
    return _escape(text, backslash=True, keep_newlines=False)


def safe_message(text: str, *, multiline: bool = False) -> str:
    """An error message for a terminal: unsafe characters escaped, backslashes kept as
    they are; with ``multiline`` its line breaks (LF only) are kept too."""
    return _escape(text, backslash=False, keep_newlines=multiline)


__all__ = ["escape_char", "is_unsafe", "safe_message", "safe_text"]
