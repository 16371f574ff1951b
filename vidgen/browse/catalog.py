"""The outputs under a folder, found through their sidecars (for `vidgen ls`, previews, a gallery).

A sidecar is data someone else may have written: the output it describes is looked for beside
it, under the sidecar's own name (`NAME.json` -> `NAME.mp4`, ...), never at a path it records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.core.errors import InputError
from vidgen.core.terminal import shorten

# More sidecars than this under one folder is a mistake (a home folder), not a gallery.
MAX_SIDECARS = 100_000
# A listing keeps this much of any text in a sidecar (a prompt may be 100 000 characters, and a
# sidecar from elsewhere may hold a 50 MB one): five such made `ls` print 250 MB and `gallery`
# write a 750 MB page. The sidecar itself keeps the whole text.
KEEP_CHARS = 4096
# ... except the poster vidgen puts in `output.poster` (a small JPEG as a data URI), kept whole
# up to this length for the gallery; a longer one is not vidgen's.
MAX_POSTER_CHARS = 256 << 10
# Files of one input a listing names (a sidecar from elsewhere may list thousands).
MAX_LISTED = 20


@dataclass
class Entry:
    path: Path  # the output: a video file, or a folder of PNG frames
    sidecar: Path
    data: dict[str, Any]

    def _block(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        return self._block("config")

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def prompt(self) -> str:
        inputs = self.section("inputs")
        prompt = inputs.get("prompt")
        if not prompt and isinstance(inputs.get("prompts"), dict) and inputs["prompts"]:
            prompt = next(iter(inputs["prompts"].values()))
        return str(prompt or "")

    @property
    def inputs(self) -> dict[str, list[str]]:
        """The files the run read, by the flag or argument that names them ({"--reference":
        ["face.png", "voice.wav"]}): each file's name as the config gives it, cut short."""
        from vidgen import families  # noqa: F401  (family modules declare their own input kinds)
        from vidgen.config.kinds import INPUT_KINDS

        found: dict[str, list[str]] = {}
        for field, kind in INPUT_KINDS.items():
            value = self.section("inputs").get(field)
            refs = value if isinstance(value, list) else [value]
            names = [shorten(Path(ref).name or ref, 80) for ref in refs[:MAX_LISTED] if isinstance(ref, str) and ref]
            if names:
                found[kind.flag] = names + ([f"... {len(refs) - MAX_LISTED} more"] if len(refs) > MAX_LISTED else [])
        return found

    @property
    def enhanced_prompt(self) -> str | None:
        """The prompt --enhance-prompt wrote and the pipeline got (None without one)."""
        text = self._block("prompt_enhancement").get("enhanced_prompt")
        return text if isinstance(text, str) else None

    def row(self) -> dict[str, Any]:
        """What `vidgen ls --json` prints for this output."""
        output = self._block("output")
        size = _size(self.path)
        return {
            "path": str(self.path),
            "sidecar": str(self.sidecar),
            "mode": self.config.get("mode"),
            "model": self.section("model").get("id"),
            "family": self.section("model").get("family"),
            "prompt": self.prompt,
            "enhanced_prompt": self.enhanced_prompt,
            "seed": self.data.get("seed"),
            "frames": output.get("frames"),
            "width": output.get("width"),
            "height": output.get("height"),
            "fps": output.get("fps"),
            "format": output.get("format"),
            "bytes": size,
            "created_at": self.data.get("created_at"),
            "timings": self._block("timings"),
            "peak_memory_bytes": self.data.get("peak_memory_bytes"),
            "preview": output.get("preview"),
            "finish": self.finish,
            "inputs": self.inputs,
        }

    @property
    def finish(self) -> str | None:
        """The finishing chain in a few words ("interpolate x2, upscale x2"), None without one."""
        steps = self.data.get("finish")
        if not isinstance(steps, list) or not steps:
            return None
        return ", ".join(f"{step.get('step')} {step.get('factor')}" for step in steps if isinstance(step, dict))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.iterdir() if item.is_file())
    return path.stat().st_size


def _output_beside(sidecar: Path, data: dict[str, Any]) -> Path | None:
    """The output a sidecar describes, beside it under its own name; None if it is gone."""
    from vidgen.io.outputs import FORMATS

    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    recorded = output.get("format")
    formats = [recorded] if recorded in FORMATS else list(FORMATS)
    for fmt in formats:
        candidate = sidecar.with_suffix("") if fmt == "png" else sidecar.with_suffix(f".{fmt}")
        if (candidate.is_dir() if fmt == "png" else candidate.is_file()) and not candidate.is_symlink():
            return candidate
    return None


def find(folder: Path) -> list[Entry]:
    """Every output under `folder` (recursively) that has its sidecar beside it, oldest first.
    JSON files that are not vidgen sidecars (manifests, reports) are passed over."""
    from vidgen.core.limits import MAX_SIDECAR_BYTES, read_text
    from vidgen.io import sidecar as sidecars

    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder.")
    entries = []
    for count, path in enumerate(sorted(folder.rglob("*.json"))):
        if count >= MAX_SIDECARS:
            raise InputError(f"{folder} holds more than {MAX_SIDECARS} JSON files; point at a smaller folder.")
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = sidecars.parse(read_text(path, MAX_SIDECAR_BYTES, "sidecar", InputError), str(path))
        except InputError:
            continue
        if not isinstance(data, dict) or "vidgen_version" not in data or not isinstance(data.get("config"), dict):
            continue
        output = _output_beside(path, data)
        if output is not None:
            entries.append(Entry(output, path, _kept(data)))
    entries.sort(key=lambda entry: (str(entry.data.get("created_at") or ""), str(entry.path)))
    return entries


def _kept(data: dict[str, Any]) -> dict[str, Any]:
    """What a listing keeps of a sidecar: every text cut to KEEP_CHARS, the poster whole."""
    kept = _trimmed(data)
    output = data.get("output")
    poster = output.get("poster") if isinstance(output, dict) else None
    if isinstance(poster, str) and len(poster) <= MAX_POSTER_CHARS:
        kept["output"]["poster"] = poster
    return kept


def _trimmed(value: Any) -> Any:
    """`value` with every string over KEEP_CHARS cut to that (with a count of what was cut), so a
    listing of many outputs holds kilobytes per sidecar, whatever their prompts."""
    if isinstance(value, str):
        return shorten(value, KEEP_CHARS)
    if isinstance(value, dict):
        return {key: _trimmed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trimmed(item) for item in value]
    return value
