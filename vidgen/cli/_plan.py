"""A resolved config as YAML for people (`--dry-run`, `presets show`), each field commented with
the layer that set it.

The text stays YAML that loads back to the same values, and stays readable: provenance comments
line up at a column that short lines set (at most COMMENT_COLUMN), never after the longest value,
and a value too long for its line (Wan's Chinese negative prompt, a long prompt map) goes on the
lines below its key, folded with YAML's own escaped line breaks. Non-ASCII text is shown as
itself; control characters are escaped (YAML reads `\\x1b` and `\\u202e` back as the same
characters).
"""

from __future__ import annotations

import json
from typing import Any

from vidgen.core.terminal import columns, escape, fold, pad, width

# Comments start here at the latest; a longer line puts its comment two spaces after, and a value
# that would pass the line's limit moves onto the lines below its key.
COMMENT_COLUMN = 48
# A folded line is never narrower than this, however long its comment.
_MIN_FOLD = 40
_ESCAPE_LENGTH = {"u": 6, "x": 4, "U": 10}


def render_config(config: dict[str, Any], sources: dict[str, str], limit: int | None = None) -> str:
    """YAML of the set fields, each commented with the layer that set it; lines fit `limit`
    display columns (the terminal's width, or 100) except a comment too long for any line."""
    limit = limit or columns()
    rows: list[tuple[str, str, str]] = []  # (the key part, the value as YAML text, source)
    for section, values in config.items():
        if not isinstance(values, dict):
            rows.append((f"{section}: ", _scalar(values), sources.get(section, "default")))
            continue
        fields = [(key, value) for key, value in values.items() if value is not None]
        if fields:
            rows.append((f"{section}:", "", ""))
        for key, value in fields:
            rows.append((f"  {key}: ", _scalar(value), _source(sources, f"{section}.{key}")))
    commented = [width(head + text) for head, text, source in rows if source]
    column = min(max(commented, default=0) + 2, COMMENT_COLUMN, limit // 2)
    lines: list[str] = []
    for head, text, source in rows:
        # Sources name files (replay:NAME): escaped, so a name cannot break the line.
        lines += _commented(head, text, f"# {escape(source)}" if source else "", column, limit)
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    """A value as YAML flow text: JSON (which YAML reads), with non-ASCII kept as text and
    control characters escaped."""
    return escape(json.dumps(value, ensure_ascii=False))


def _source(sources: dict[str, str], path: str) -> str:
    """Who set a field; for a mapping (scheduler options, a prompt map), who set its entries."""
    if path in sources:
        return sources[path]
    inner = sorted({label for key, label in sources.items() if key.startswith(path + ".")})
    return ", ".join(inner) or "default"


def _commented(head: str, text: str, comment: str, column: int, limit: int) -> list[str]:
    line = head + text if text else head.rstrip()
    if not comment:
        return [line]
    if width(line) + 2 <= column:
        return [pad(line, column) + comment]
    if width(line) + 2 + width(comment) <= limit:
        return [f"{line}  {comment}"]
    # Too long for one line: the key keeps its comment, the value goes on indented lines below
    # (YAML reads a mapping's value from the next lines), folded where it must be.
    key = head.rstrip()
    indent = " " * (len(head) - len(head.lstrip()) + 4)
    first = pad(key, column) + comment if width(key) + 2 <= column else f"{key}  {comment}"
    return [first, *_fold_value(indent, text, max(limit, _MIN_FOLD), indent)]


def _units(text: str) -> list[tuple[str, bool]]:
    """`text` (JSON) as (unit, inside a string) pairs: one character, or one whole escape
    sequence (`\\"`, `\\u4e2d`, `\\x1b`), which a fold must not split."""
    units: list[tuple[str, bool]] = []
    inside = False
    index = 0
    while index < len(text):
        char = text[index]
        if inside and char == "\\":
            size = _ESCAPE_LENGTH.get(text[index + 1 : index + 2], 2)
            units.append((text[index : index + size], True))
            index += size
            continue
        if char == '"':
            units.append((char, False))
            inside = not inside
        else:
            units.append((char, inside))
        index += 1
    return units


def _fold_value(prefix: str, text: str, limit: int, indent: str) -> list[str]:
    """`prefix` + `text` (a JSON value) in lines of at most `limit` columns where it can break, as
    YAML that reads back the same: inside a string a line ends with an escaped line break (`\\`)
    and the next goes on after `indent` (YAML drops white space there, so a space it would start
    with is written `\\x20`); between the items of a list or mapping, after a comma. Breaks
    after a space are preferred, so words stay whole."""
    units = _units(text)
    total = [0]  # display columns of units[:i]
    for unit, _ in units:
        total.append(total[-1] + width(unit))
    lines: list[str] = []
    start = 0
    while True:
        lead = 3 if lines and units[start] == (" ", True) else 0  # a leading space becomes \x20
        room = limit - width(prefix) - lead
        if total[-1] - total[start] <= room:
            break
        at, best = _break(units, total, start, room)
        if at is None:
            break  # nowhere to break: the rest stays on one line
        if best is not None and 2 * (total[best] - total[start]) >= room:
            at = best  # after a space, unless that leaves the line less than half full
        lines.append(prefix + _piece(units[start:at], continued=bool(lines), ends=True))
        start, prefix = at, indent
    lines.append(prefix + _piece(units[start:], continued=bool(lines), ends=False))
    return lines


def _break(units: list[tuple[str, bool]], total: list[int], start: int, room: int) -> tuple[int | None, int | None]:
    """The last place after `start` to break within `room` columns (or, when none fits, the
    first place at all), and the last of those that follows a space."""
    at = best = None
    for index in range(start + 1, len(units)):
        if not _breakable(units, index):
            continue
        backslash = 1 if units[index][1] else 0
        if total[index] - total[start] + backslash > room:
            return (index if at is None else at), best
        at = index
        if units[index - 1][0] == " " and units[index][0] != " ":
            best = index
    return at, best


def _breakable(units: list[tuple[str, bool]], index: int) -> bool:
    """Whether a line may break before unit `index`: between two characters of a string, or
    after the comma and space that separate the items of a list or mapping."""
    before, inside_before = units[index - 1]
    inside = units[index][1]
    if inside and inside_before:
        return True
    separator = index >= 2 and units[index - 2][0] == "," and not units[index - 2][1]
    return not inside and not inside_before and before == " " and separator


def _piece(part: list[tuple[str, bool]], continued: bool, ends: bool) -> str:
    """One line's units as text: a continuation's leading space escaped, and a line that breaks
    inside a string ended with a backslash (an escaped line break, which YAML drops)."""
    text = "".join(unit for unit, _ in part)
    if continued and part and part[0] == (" ", True):
        text = "\\x20" + text[1:]
    if ends and part and part[-1][1]:
        return text + "\\"
    return text.rstrip() if ends else text


def comment(text: str, limit: int | None = None) -> list[str]:
    """`# text`, escaped; a line longer than `limit` columns is folded, its continuations
    indented under it (a line that fits is kept as it is, so tables stay aligned)."""
    limit = limit or columns()
    text = escape(text)
    if width(text) + 2 <= limit:
        return ["# " + text]
    indent = text[: len(text) - len(text.lstrip())]
    lines = fold(text, max(limit - 4 - len(indent), _MIN_FOLD))
    return [f"# {indent}{lines[0]}"] + [f"# {indent}  {line}" for line in lines[1:]]
