"""Text vidgen is handed as bytes, decoded as UTF-8 or refused in one line.

A shell passes whatever bytes it was given: `vidgen t2v $'caf\\xe9'` hands Python the Latin-1
byte 0xE9, which it keeps in the argument as the lone surrogate U+DCE9 (PEP 383). Such a string
cannot be written to a sidecar, a slug or a container's metadata, so every way text enters a
run (the command line, stdin, a config value) is checked here, once, and refused with the byte
it holds and where, instead of failing later inside an encoder.
"""

from __future__ import annotations

import contextlib
import re

from vidgen.core.errors import ConfigError, VidgenError

# What PEP 383 leaves in a str for a byte that is not UTF-8 (U+DC80-U+DCFF), and any other lone
# surrogate a JSON "\\ud800" escape can make: neither can be encoded as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
HINT = "vidgen takes UTF-8 text: convert it first (e.g. iconv -f latin1 -t utf-8)"


def valid(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (it holds no lone surrogate)."""
    return _SURROGATE.search(text) is None


def _snippet(data: bytes, at: int) -> str:
    """Up to 40 bytes around position `at`, with the bytes that are not UTF-8 as \\xNN."""
    start = max(0, at - 20)
    shown = data[start : at + 20].decode("utf-8", "backslashreplace")
    return ("..." if start else "") + shown + ("..." if at + 20 < len(data) else "")


def decode(data: bytes, what: str, error: type[VidgenError] = ConfigError) -> str:
    """`data` as UTF-8 text; `error` naming `what`, the first bad byte and where it is, if it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        raise error(
            f"{what} is not UTF-8 text (byte 0x{byte:02x} at position {exc.start}: '{_snippet(data, exc.start)}'); "
            f"{HINT}."
        ) from None


def check(text: str, what: str, error: type[VidgenError] = ConfigError) -> str:
    """`text` unchanged when it is valid Unicode; else `error`, as `decode` words it. `text` is a
    str decoded with surrogateescape (sys.argv, os.environ, file names) or parsed from JSON."""
    found = _SURROGATE.search(text)
    if found is None:
        return text
    with contextlib.suppress(UnicodeEncodeError):  # a surrogate no byte decodes to ("\ud800" from JSON)
        decode(text.encode("utf-8", "surrogateescape"), what, error)  # the bytes the shell passed
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    raise error(
        f"{what} holds a lone surrogate (U+{ord(found.group()):04X}) that no UTF-8 text has: '{shown[:60]}'; {HINT}."
    )


def check_all(value: object, what: str, error: type[VidgenError] = ConfigError) -> None:
    """`check` every string in `value` (nested lists and mappings, keys too); `what` names the
    whole, a path inside it is added (inputs.prompt, jobs[2].negative)."""
    stack: list[tuple[object, str]] = [(value, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            check(item, where, error)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    check(key, where, error)
                stack.append((inner, f"{where}.{key}"))
        elif isinstance(item, (list, tuple)):
            stack.extend((inner, f"{where}[{index}]") for index, inner in enumerate(item))
