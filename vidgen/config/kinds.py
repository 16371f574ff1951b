"""Input and output kinds: every file a run reads, and every file it writes, declared once.

One `InputKind` is the config field `inputs.<field>`, the flag that sets it (the command's
positional argument, or an option on every command whose families take it), how vidgen reads it
(`reads`, a reader in vidgen/io/inputs.py), and what the trust boundary, a batch job's identity,
the sidecar, `replay` and `inspect` do with it: all of them read this table. A new kind (a camera
path, an audio track, a pose video) is one `register_input` call beside the family that takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.config.flags import register_flag

# What vidgen can read, by the reader in vidgen/io/inputs.py that reads it:
#   image: one picture file or http(s) URL, brought to the run's size;
#   video: a video file or a folder of frames, at the run's size, trimmed to the family's grid;
#   control: a video read like `video`, then turned into control maps (--preprocess);
#   mask: a video, folder or one image with the control frames' count and size;
#   images: several picture files (the option repeats), each at the run's size;
#   data: one local file that is not a picture or video (a camera path), parsed by the kind's
#     own `parse` function, declared by the family that takes it;
#   media: several files (the option repeats), in order, each a picture, a video (its frames at
#     the run's rate, with its sound) or a sound, told apart by what the file holds (MiniMax-H3's
#     references).
READERS = ("image", "video", "control", "mask", "images", "data", "media")
# What one file of a media kind is, as its sidecar entry's `kind` says.
MEDIA_KINDS = ("image", "video", "audio")


@dataclass(frozen=True)
class InputKind:
    """A file input: its field under `inputs`, its flag, its reader and its --help line."""

    field: str
    # The option that sets it (--last-image), or the positional argument's name (IMAGE).
    flag: str
    reads: str
    help: str
    metavar: str = "FILE"
    # The mode it is the main input of, which needs it (i2v: image; control: the control frames).
    main_of: str | None = None
    # A list of files (the option repeats).
    many: bool = False
    # Video kinds: frames keep their own size instead of the run's (Wan Animate's face crops,
    # which the pipeline brings to its face encoder's square).
    own_size: bool = False
    # Video kinds: the input whose frame count this one must have, frame for frame (Wan Animate's
    # face video beside its pose video); read after it. A mismatch is an input error.
    frames_of: str | None = None
    # Data kinds: (bytes, name, config) -> (pipeline arguments, what the sidecar records), raising
    # InputError with one line on a malformed file. vidgen reads the bytes (local regular files
    # only, size-capped) and hashes them; the family's parser never opens anything itself.
    parse: Callable[[bytes, str, Any], tuple[dict[str, Any], dict[str, Any]]] | None = None
    # Data kinds: the largest file read, in bytes.
    max_bytes: int = 64 * 1024 * 1024
    # Media kinds: the rate sounds are brought to (by ffmpeg, as they are decoded); None keeps
    # each file's own.
    sample_rate: int | None = None
    # Media kinds: the size a video's frames are brought to from their own (width, height), as
    # they are decoded; None keeps their own.
    fit: Callable[[int, int], tuple[int, int]] | None = None
    # Media kinds: the family's rules on the files as read, [(file, Medium)] in order (how many
    # of each kind, which may come alone), raising InputError with one line.
    check: Callable[[list[tuple[str, Any]]], None] | None = None

    @property
    def path(self) -> str:
        return f"inputs.{self.field}"

    @property
    def positional(self) -> bool:
        """Given as the command's argument (IMAGE, VIDEO) rather than an option."""
        return not self.flag.startswith("-")

    @property
    def single_file(self) -> bool:
        """Read as one file (a picture); the others may also be a folder of frames."""
        return self.reads in ("image", "images", "data", "media")


# Insertion order is reading order: a mask is read after the control frames it must match.
INPUT_KINDS: dict[str, InputKind] = {}


def register_input(kind: InputKind) -> None:
    """Declare an input kind (the built-ins below, or a family module's own)."""
    if kind.reads not in READERS:
        raise ValueError(f"input {kind.field}: reads must be one of {', '.join(READERS)}")
    if (kind.own_size or kind.frames_of) and kind.reads != "video":
        raise ValueError(f"input {kind.field}: own_size and frames_of are for video kinds")
    if (kind.parse is None) != (kind.reads != "data"):
        raise ValueError(f"input {kind.field}: a data kind, and only a data kind, has a parse function")
    if (kind.sample_rate or kind.fit or kind.check) and kind.reads != "media":
        raise ValueError(f"input {kind.field}: sample_rate, fit and check are for media kinds")
    if kind.reads == "media" and not kind.many:
        raise ValueError(f"input {kind.field}: a media kind is a list (many=True)")
    if kind.frames_of is not None and kind.frames_of not in INPUT_KINDS:
        raise ValueError(f"input {kind.field}: frames_of names {kind.frames_of}, which is not declared before it")
    known = INPUT_KINDS.get(kind.field)
    if known is not None and known != kind:
        raise ValueError(f"input {kind.field} is already declared differently")
    INPUT_KINDS[kind.field] = kind
    register_flag(kind.path, kind.flag)


def input_fields() -> tuple[str, ...]:
    """Every file input's field, in reading order."""
    return tuple(INPUT_KINDS)


def main_input(mode: str) -> InputKind | None:
    """The input `mode` needs (i2v: IMAGE, v2v: VIDEO, control: --control), if any."""
    return next((kind for kind in INPUT_KINDS.values() if kind.main_of == mode), None)


IMAGE = "PNG, JPEG or WebP file, or an http(s) URL."
for _kind in (
    InputKind("image", "IMAGE", "image", f"The image the video starts from: {IMAGE}", "IMAGE", main_of="i2v"),
    InputKind(
        "last_image",
        "--last-image",
        "image",
        "First-last-frame models: the image the video ends on (PNG, JPEG or WebP file, or URL).",
        "IMAGE",
    ),
    InputKind("video", "VIDEO", "video", "Video file or folder of frames to transform.", "VIDEO", main_of="v2v"),
    InputKind(
        "control",
        "--control",
        "control",
        "Video file or folder of frames that guides the motion.",
        "VIDEO|DIR",
        main_of="control",
    ),
    InputKind(
        "mask",
        "--mask",
        "mask",
        "Wan VACE: white = generate, black = keep the --control pixels; one image masks every frame.",
        "VIDEO|DIR|IMAGE",
    ),
    InputKind(
        "reference_images",
        "--ref",
        "images",
        "Wan VACE: reference image of a subject or style (repeatable).",
        "IMAGE",
        many=True,
    ),
):
    register_input(_kind)
BUILTIN = tuple(INPUT_KINDS.values())


# The share of a run's time that an `every` kind's file may take when its bare flag asks for "auto".
AUTO_SHARE = 0.1


@dataclass(frozen=True)
class OutputKind:
    """A file a run writes beside its video. One declaration gives its name (from the video's),
    the switch that asks for it (the config field `output.<switch>`, its flag and --help line),
    and the key of the sidecar's `output` block that records it: planning, the overwrite check,
    batch's same-path check, the schema, the CLI and `inspect` read this table."""

    name: str
    # The file's name: {stem} is the video's name without its extension, {suffix} the extension
    # ("" for a folder of png frames).
    rule: str
    help: str
    switch: str | None = None
    flag: str | None = None
    # Whether the flag has a --no- form (off means "not given", so a preset can turn it on).
    negatable: bool = True
    record: str | None = None
    # A file rewritten while the run denoises, every N steps: the switch then holds N (None: off),
    # `FLAG-every N` asks for every N, and the bare flag for "auto": every `every` steps while
    # writing it takes under AUTO_SHARE of the run's time (see vidgen.run.live). Such a file is
    # derived data: one a killed run left without its video is replaced by the next run.
    every: int | None = None

    @property
    def every_flag(self) -> str | None:
        """`--live-preview-every` for an `every` kind's `--live-preview`."""
        return f"{self.flag}-every" if self.every is not None and self.flag else None

    def path(self, video: Path) -> Path:
        stem = video.name if video.suffix == "" else video.stem
        return video.with_name(self.rule.format(stem=stem, suffix=video.suffix))


OUTPUT_KINDS: dict[str, OutputKind] = {}


def register_output(kind: OutputKind) -> None:
    """Declare an output kind (the built-ins below)."""
    OUTPUT_KINDS[kind.name] = kind
    if kind.switch and kind.flag:
        register_flag(f"output.{kind.switch}", kind.flag)


for _output in (
    OutputKind("sidecar", "{stem}.json", "How the video was made (always written)."),
    OutputKind(
        "control",
        "{stem}-control{suffix}",
        "Also write the control maps as a video beside the output.",
        switch="save_control",
        flag="--save-control",
        negatable=False,
        record="control",
    ),
    OutputKind(
        "latents",
        "{stem}.latents.safetensors",
        "Also write the final latents (before the VAE decode); `vidgen decode` re-decodes them.",
        switch="save_latents",
        flag="--save-latents",
        record="latents",
    ),
    OutputKind(
        "preview",
        "{stem}.preview.png",
        "Also write NAME.preview.png: a contact sheet of frames with prompt and seed.",
        switch="preview",
        flag="--preview",
        record="preview",
    ),
    OutputKind(
        "last_frame",
        "{stem}.last.png",
        "Also write NAME.last.png: the video's last frame as an image (an image edit's result, e.g. ChronoEdit's).",
        switch="save_last_frame",
        flag="--save-last-frame",
        record="last_frame",
    ),
    OutputKind(
        "live_preview",
        "{stem}.preview.webp",
        "While denoising, rewrite NAME.preview.webp: the video as it forms, every 2 steps while previews "
        "take under a tenth of the run's time (--live-preview-every N: every N steps, whatever they take).",
        switch="live_preview",
        flag="--live-preview",
        negatable=False,
        record="live_preview",
        every=2,
    ),
    # A long run's finished windows (SkyReels-V2 DF with --save-latents or --oom-retry), until
    # it completes.
    OutputKind("windows", "{stem}.windows.safetensors", "Finished windows of a resumable run."),
    # The clip after each finished step of --interpolate/--upscale, until the chain completes:
    # a rerun of a killed chain starts from it.
    OutputKind("finish", "{stem}.finish.safetensors", "The clip after the last finished step of its chain."),
):
    register_output(_output)
