"""Text from files, made safe and readable to print on a terminal.

Prompts, paths and ids come from sidecars, manifests and file names that anyone may have
written. Printed raw, an ANSI escape in one can clear the screen, retitle the window, or draw a
fake line ("model: ..."); a newline can fake a second message. Every control character (C0, DEL,
C1), the line and paragraph separators and the bidirectional overrides that reorder what is shown
are printed as visible escapes; every other character, Chinese or accented, is printed as itself.

Text a person reads is also kept to a size they can read: `shorten` caps a value (a 50 MB prompt
is shown as its first characters and a count of the rest), `fold` breaks prose at a column,
counting wide (East Asian) characters as the two columns a terminal gives them.
"""

from __future__ import annotations

import re
import shutil
import unicodedata

# ... and lone surrogates (bytes a shell passed that are not UTF-8), which no terminal can encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What text for people is folded at when the terminal's own width is not known (a pipe, a file).
WIDTH = 100
_NARROWEST, _WIDEST = 60, 200


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """`value` as text with every control character written as \\xNN or \\uNNNN."""
    return _UNSAFE.sub(_visible, str(value))


def columns() -> int:
    """The width to fold text for people at: the terminal's (within 60 to 200 columns), or
    WIDTH when the output is not a terminal or says nothing."""
    found = shutil.get_terminal_size((WIDTH, 24)).columns
    return min(max(found or WIDTH, _NARROWEST), _WIDEST)


def char_width(char: str) -> int:
    """Columns a terminal gives one character: 2 for wide and fullwidth (CJK), 0 for combining."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Columns `text` takes on a terminal (ASCII counted fast)."""
    if text.isascii():
        return len(text)
    return sum(char_width(char) for char in text)


def pad(text: str, columns: int) -> str:
    """`text` padded with spaces to `columns` display columns (ljust counts characters)."""
    return text + " " * max(columns - width(text), 0)


def shorten(text: str, limit: int, tail: int = 0, count: bool = True) -> str:
    """`text` cut for display when over `limit` characters: its start (and its last `tail`
    characters, so the end of a path stays visible) around `…`, with how many characters were
    left out unless `count` is False (then the result is `limit` characters long)."""
    if len(text) <= limit:
        return text
    head = max(limit - tail - (0 if count else 1), 1)
    left_out = len(text) - head - tail
    marker = f"… [{left_out} more characters]" if count else "…"
    return f"{text[:head]}{marker}{('…' if count else '') + text[-tail:] if tail else ''}"


def fold(text: str, columns: int) -> list[str]:
    """Prose broken into lines of at most `columns` display columns: at spaces where it can be,
    inside a word longer than a line (or a run of CJK text, which has no spaces) where it must.
    Runs of white space become one space."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while word:
            gap = 1 if line else 0
            if width(line) + gap + width(word) <= columns:
                line, word = f"{line} {word}" if line else word, ""
            elif line and width(word) <= columns:
                lines.append(line)
                line = ""
            else:  # longer than any line: fill this one with as much as fits
                cut = _fits(word, columns - width(line) - gap)
                if cut == 0 and line:
                    lines.append(line)
                    line = ""
                    continue
                cut = max(cut, 1)  # a character wider than the line still goes somewhere
                lines.append(f"{line} {word[:cut]}" if line else word[:cut])
                line, word = "", word[cut:]
    if line or not lines:
        lines.append(line)
    return lines


def _fits(text: str, columns: int) -> int:
    """How many leading characters of `text` fit in `columns` display columns."""
    used = 0
    for index, char in enumerate(text):
        used += char_width(char)
        if used > columns:
            return index
    return len(text)
