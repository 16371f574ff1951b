"""Output naming: `--out` templates, slugs, formats and sidecar paths."""

from __future__ import annotations

import hashlib
import re
import string
import time
import unicodedata
from pathlib import Path

from vidgen.config.kinds import OUTPUT_KINDS
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError

DEFAULT_NAME = "{mode}-{slug}-{seed}.{ext}"
FORMATS = ("mp4", "webm", "gif", "webp", "png")
FIELDS = ("mode", "slug", "seed", "ext", "family", "index", "date", "time")


def slug(text: str | None, limit: int = 48) -> str:
    """The readable ASCII words of a prompt, joined by dashes ("café au lait" -> cafe-au-lait).

    Words in other scripts (or emoji) cannot be spelled in ASCII, so when any were dropped a short
    hash of the whole prompt is appended, or used alone as `p-1a2b3c4d` when nothing readable is
    left: different prompts keep different names, and the same prompt always gets the same one.
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        return "video"
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    lost = _unspelled(text)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    if not words:
        return f"p-{digest}"
    room = limit - (len(digest) + 1 if lost else 0)
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > room:
            break
        out = candidate
    out = out or words[0][:room]
    return f"{out}-{digest}" if lost else out


def _unspelled(text: str) -> bool:
    """Whether `text` has letters, digits or symbols (emoji) that ASCII cannot spell."""
    for char in text:
        if char.isascii():
            continue
        category = unicodedata.category(char)
        if category[0] in "LNS" and not unicodedata.normalize("NFKD", char).encode("ascii", "ignore"):
            return True
    return False


def output_format(cfg: RunConfig) -> str:
    """--format if given, else the --out file's extension, else mp4.

    The extension is a promise about the bytes: one vidgen does not write (`--out clip.txt`,
    `clip.avi`) is refused rather than given mp4 bytes, and it must agree with --format (a png
    frames folder is named without one, or with .png). A name without an extension, a template
    extension (`.{ext}`) and an existing folder are not checked."""
    if not cfg.output.path.strip():
        raise ConfigError("--out is empty; name a file or folder (or leave --out out for outputs/).")
    path = cfg.output.path
    suffix = Path(path).suffix.lower().lstrip(".")
    if "{" in suffix or "}" in suffix or path.endswith(("/", "\\")) or _is_folder(path):
        suffix = ""
    from_name = suffix if suffix in FORMATS else None
    chosen = cfg.output.format
    if suffix and from_name is None:
        stem = Path(path).with_suffix("").name
        raise ConfigError(
            f"--out {path}: vidgen writes {', '.join(FORMATS)}, not {suffix}; name the file with one of those "
            f"extensions (e.g. {stem}.{chosen or 'mp4'}), which also picks the format."
        )
    if chosen and from_name and chosen != from_name:
        raise ConfigError(f"--out {path} ends in .{from_name} but --format is {chosen}; make them agree.")
    return chosen or from_name or "mp4"


def _is_folder(path: str) -> bool:
    """Whether --out names an existing folder (a name too long to look up is none)."""
    try:
        return Path(path).expanduser().is_dir()
    except OSError:
        return False


def describe(cfg: RunConfig) -> str | None:
    """What names a run: its prompt, the frame-0 prompt of a prompt map, or the input's name."""
    return cfg.inputs.prompt or _first_prompt(cfg) or _input_stem(cfg)


def _first_prompt(cfg: RunConfig) -> str | None:
    """The frame-0 prompt of a prompt-travel map."""
    prompts = cfg.inputs.prompts or {}
    return prompts[min(prompts)] if prompts else None


def _input_stem(cfg: RunConfig) -> str | None:
    """'rocket' for rocket.png or https://example.com/img/rocket.png?size=2, so prompt-less
    image-to-video runs still get a telling name."""
    ref = cfg.inputs.image or cfg.inputs.video
    if not ref:
        return None
    return Path(ref.split("?", 1)[0].rstrip("/")).stem


def _template(path: str) -> str:
    if path.endswith(("/", "\\")) or _is_folder(path):
        return str(Path(path) / DEFAULT_NAME)
    return path


def render(cfg: RunConfig, fmt: str, seeds: list[int]) -> list[Path]:
    """The output path of each video; a folder of frames for png."""
    template = _template(cfg.output.path)
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:  # "x-{seed.mp4": an unclosed brace
        raise ConfigError(f"--out {cfg.output.path}: {exc}; write a literal brace as {{{{ or }}}}.") from None
    unknown = sorted(used - set(FIELDS))
    if unknown:
        valid = " ".join(f"{{{name}}}" for name in FIELDS)
        raise ConfigError(f"--out {cfg.output.path}: unknown field {{{unknown[0]}}}; valid fields: {valid}.")
    if len(seeds) > 1 and not used & {"seed", "index"}:
        # Several videos need several names: the seed tells them apart.
        stem, dot, ext = template.rpartition(".")
        template = f"{stem}-{{seed}}.{ext}" if dot and "/" not in ext else f"{template}-{{seed}}"
    now = time.localtime()
    fields = {
        "mode": cfg.mode,
        "slug": slug(describe(cfg)),
        "family": cfg.model.family,
        "ext": fmt,
        "date": time.strftime("%Y%m%d", now),
        "time": time.strftime("%H%M%S", now),
    }
    paths = []
    for index, seed in enumerate(seeds, start=1):
        path = Path(template.format(**fields, seed=seed, index=index)).expanduser()
        if fmt == "png" and path.suffix.lower() == ".png":
            path = path.with_suffix("")
        paths.append(path)
    if len(set(paths)) != len(paths):
        raise ConfigError(f"--out {cfg.output.path} gives several videos the same name; add {{seed}} or {{index}}.")
    return paths


def beside(name: str, output: Path) -> Path:
    """Where the output kind `name` (config/kinds.py: sidecar, control, latents, preview,
    windows) of the video `output` goes: clip.mp4 -> clip.json, clip-control.mp4,
    clip.latents.safetensors, clip.preview.png, clip.windows.safetensors."""
    return OUTPUT_KINDS[name].path(output)


def requested(cfg: RunConfig, output: Path) -> dict[str, Path]:
    """The files this run is asked to write beside the video `output`, by output kind: the
    sidecar always, and each kind whose switch the config turns on."""
    return {
        kind.name: kind.path(output)
        for kind in OUTPUT_KINDS.values()
        if kind.name == "sidecar" or (kind.switch and getattr(cfg.output, kind.switch, False))
    }
