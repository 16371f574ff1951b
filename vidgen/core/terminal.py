"""Text from files, made safe to print on a terminal.

Prompts, paths and ids come from sidecars, manifests and file names that anyone may have
written. Printed raw, an ANSI escape in one can clear the screen, retitle the window, or draw a
fake line ("model: ..."); a newline can fake a second message. Every control character (C0, DEL,
C1) and the bidirectional overrides that reorder what is shown are printed as visible escapes.
"""

from __future__ import annotations

import re

# ... and lone surrogates (bytes a shell passed that are not UTF-8), which no terminal can encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """`value` as text with every control character written as \\xNN or \\uNNNN."""
    return _UNSAFE.sub(_visible, str(value))
