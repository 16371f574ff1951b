"""The weights files a sidecar records, found again and checked before a replay loads them.

A run records the sha256 of each weights file it loads as a file: a single-file checkpoint
(`model.checkpoint`), a motion adapter or ControlNet file (`model.motion_adapter`,
`model.controlnet`), each LoRA (`model.loras`) and each single-file component such as a GGUF
transformer (`model.files.<component>`). A replay that loaded another file under the same name
would make other frames and call them the same run, so each file is hashed again first (through
the hash cache: an unchanged 15 GB file costs a stat) and a changed or missing one stops the
replay with exit 5. The paths a sidecar names are data: they are read and hashed here, never
written, and nothing is fetched because of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.config import Resolved
from vidgen.config.schema import LoraConfig, RunConfig
from vidgen.core.errors import ModelError
from vidgen.core.hashes import short
from vidgen.core.limits import pseudo_file
from vidgen.models.components import file_sha256

# Extra models recorded with a hash when loaded from a file: sidecar key -> what they are.
EXTRA_MODELS = {"motion_adapter": "motion adapter", "controlnet": "ControlNet"}


@dataclass(frozen=True)
class Recorded:
    """One weights file a sidecar records with its hash, and what the replay's config names for it.

    `what` says what it is in messages ("checkpoint", "LoRA", "transformer"); `field` is the
    config field that names it (a replay skips a field the command line set on purpose); `ref`
    is what that field names now; `weight_name` the file inside a LoRA folder; `path` the local
    path it was loaded from; `repo` and `revision` where a Hub file came from."""

    what: str
    field: str
    ref: str | None
    path: str | None
    sha256: str
    weight_name: str | None = None
    repo: str | None = None
    revision: str | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def recorded_files(data: dict[str, Any], cfg: RunConfig) -> Iterator[Recorded]:
    """Every weights file the sidecar `data` records with a sha256, paired with what the replay
    config `cfg` (made from it) names for that file."""
    model = _dict(data.get("model"))
    checkpoint = _text(_dict(model.get("checkpoint")).get("sha256"))
    if checkpoint and model.get("source") == "file":
        yield Recorded("checkpoint", "model.id", cfg.model.id, _text(model.get("path")), checkpoint)
    for key, what in EXTRA_MODELS.items():
        part = _dict(model.get(key))
        if _text(part.get("sha256")):
            yield Recorded(what, f"model.{key}", getattr(cfg.model, key), _text(part.get("path")), part["sha256"])
    yield from _lora_files(model, cfg.model.loras or [])
    for component, record in _dict(model.get("files")).items():
        record = _dict(record)
        if _text(record.get("sha256")):
            # The field that names a component's file now (`model.transformer`), when the config
            # has one; else the source the run recorded.
            ref = getattr(cfg.model, str(component), None)
            yield Recorded(
                component,
                f"model.{component}",
                ref if isinstance(ref, str) else _text(record.get("source")),
                _text(record.get("path")),
                record["sha256"],
                repo=_text(record.get("repo")),
                revision=_text(record.get("revision")),
            )


def _lora_files(model: dict[str, Any], loras: list[LoraConfig]) -> Iterator[Recorded]:
    """Each configured LoRA with its record: the one at its position when the sources agree (the
    loader writes one record per LoRA, in order), else the first with its source."""
    records = [_dict(record) for record in model.get("loras") or []]
    for index, lora in enumerate(loras):
        same = [record for record in records if record.get("source") == lora.source]
        record = records[index] if index < len(records) and records[index] in same else (same or [{}])[0]
        if _text(record.get("sha256")):
            yield Recorded(
                "LoRA", "model.loras", lora.source, _text(record.get("path")), record["sha256"], lora.weight_name
            )


def found(file: Recorded) -> Path | None:
    """The file a replay loads for `file`: the path its config field names from here (inside a
    folder, its weight_name), else the recorded path (a relative path written in another folder,
    a Hub file in the local cache); None when neither exists."""
    if file.ref and not file.ref.startswith("tiny:"):
        here = Path(file.ref).expanduser()
        if here.exists():
            here = here.absolute()  # messages name the file wherever the replay runs from
            return here / file.weight_name if here.is_dir() and file.weight_name else here
    if file.path and Path(file.path).exists():
        return Path(file.path)
    return None


def check(data: dict[str, Any], resolved: Resolved) -> None:
    """ModelError (exit 5) naming the first recorded weights file that is missing or whose
    sha256 differs from the recording, with both short hashes. Files whose config field was set
    on the command line (--set, --model, ...) are chosen on purpose and not compared."""
    for file in recorded_files(data, resolved.config):
        if str(resolved.sources.get(file.field, "")).startswith("cli:"):
            continue
        where = found(file)
        if where is None:
            raise ModelError(_missing(file))
        kind = "folder" if where.is_dir() else "file"
        try:
            if pseudo_file(where):
                raise OSError("a system file, not weights")
            now = file_sha256(where)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ModelError(
                f"replay: {file.what} {kind} {where} cannot be read ({reason}); restore that file or run it anew."
            ) from None
        if now != file.sha256:
            raise ModelError(
                f"replay: {file.what} {kind} {where} has changed since the run (sha256 {short(now)}..., "
                f"recorded {short(file.sha256)}...); restore that file or run it anew."
            )


def _missing(file: Recorded) -> str:
    """The message for a recorded file found nowhere: where it was, and how to get it back."""
    named = file.path or file.ref
    if file.repo:
        at = f" at revision {file.revision}" if file.revision else ""
        return (
            f"replay: {file.what} file {file.ref or named} from {file.repo}{at} is not on this machine (recorded "
            f"sha256 {short(file.sha256)}...); download it{at} again, or run it anew."
        )
    return (
        f"replay: {file.what} file {named} is missing (recorded sha256 {short(file.sha256)}...); "
        "restore that file or run it anew."
    )
