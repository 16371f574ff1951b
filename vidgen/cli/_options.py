"""Options shared by the generation commands, defined once.

Every option that a preset can also set defaults to None, so "not given" is distinguishable
from "given the default" and only flags the user typed override the preset.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from vidgen.config import Layer, set_layer

MODEL = "Model"
SAMPLING = "Sampling"
OPTIMIZE = "Memory and speed"
OUTPUT = "Output"
RUN = "Run"

Preset = Annotated[
    list[str] | None,
    typer.Option(
        "--preset",
        "-p",
        help="Preset name or YAML file; repeat to stack overlays. See `vidgen presets list`.",
        rich_help_panel=MODEL,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model", help="Hub repo id or local diffusers folder, overriding the preset's.", rich_help_panel=MODEL
    ),
]
Revision = Annotated[
    str | None, typer.Option("--revision", help="Hub branch, tag or commit of --model.", rich_help_panel=MODEL)
]
DType = Annotated[
    Literal["auto", "fp32", "fp16", "bf16"] | None,
    typer.Option("--dtype", help="Weight precision; auto = the family's on CUDA, fp32 on CPU.", rich_help_panel=MODEL),
]
AllowPickle = Annotated[
    bool | None,
    typer.Option(
        "--allow-pickle/--no-allow-pickle",
        help="Allow pickle (.bin/.ckpt) weights, which can run code: only for sources you trust.",
        rich_help_panel=MODEL,
    ),
]
Frames = Annotated[int | None, typer.Option("--frames", help="Number of frames.", rich_help_panel=SAMPLING)]
Steps = Annotated[int | None, typer.Option("--steps", help="Denoising steps.", rich_help_panel=SAMPLING)]
Guidance = Annotated[
    float | None, typer.Option("--guidance", help="Classifier-free guidance scale.", rich_help_panel=SAMPLING)
]
Negative = Annotated[
    str | None, typer.Option("--negative", help="Negative prompt: what to steer away from.", rich_help_panel=SAMPLING)
]
Height = Annotated[int | None, typer.Option("--height", help="Frame height in pixels.", rich_help_panel=SAMPLING)]
Width = Annotated[int | None, typer.Option("--width", help="Frame width in pixels.", rich_help_panel=SAMPLING)]
Seed = Annotated[
    int | None, typer.Option("--seed", help="Random seed; drawn and recorded when not given.", rich_help_panel=SAMPLING)
]
NumVideos = Annotated[
    int | None,
    typer.Option("--num-videos", help="Videos to make, with seeds seed, seed+1, ...", rich_help_panel=SAMPLING),
]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="KEY=VALUE into the config, e.g. sampling.guidance_scale=6 (repeatable; highest precedence).",
        rich_help_panel=SAMPLING,
    ),
]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=OPTIMIZE)]
Offload = Annotated[
    Literal["none", "model", "sequential", "group"] | None,
    typer.Option(
        "--offload", help="Keep weights in CPU RAM and move them to the GPU as needed.", rich_help_panel=OPTIMIZE
    ),
]
VaeTiling = Annotated[
    bool | None,
    typer.Option(
        "--vae-tiling/--no-vae-tiling", help="Decode in spatial tiles (less memory).", rich_help_panel=OPTIMIZE
    ),
]
VaeSlicing = Annotated[
    bool | None,
    typer.Option("--vae-slicing/--no-vae-slicing", help="Decode one video at a time.", rich_help_panel=OPTIMIZE),
]
ForwardChunking = Annotated[
    bool | None,
    typer.Option(
        "--forward-chunking/--no-forward-chunking",
        help="Run feed-forward layers frame by frame (UNet families).",
        rich_help_panel=OPTIMIZE,
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile", help="torch.compile the denoiser (slow first run).", rich_help_panel=OPTIMIZE
    ),
]
Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        help="Output file or folder (ends in /); may use {mode} {slug} {seed} {index} {family} {date} {time} {ext}.",
        rich_help_panel=OUTPUT,
    ),
]
Format = Annotated[
    Literal["mp4", "webm", "gif", "webp", "png"] | None,
    typer.Option("--format", help="Container; png writes a folder of lossless frames.", rich_help_panel=OUTPUT),
]
Fps = Annotated[int | None, typer.Option("--fps", help="Frames per second of the file.", rich_help_panel=OUTPUT)]
Crf = Annotated[
    int | None, typer.Option("--crf", help="Quality for mp4/webm: lower is better and bigger.", rich_help_panel=OUTPUT)
]
Codec = Annotated[
    str | None,
    typer.Option("--codec", help="mp4: h264 (default), h265, av1; webm: vp9 (default), av1.", rich_help_panel=OUTPUT),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing outputs instead of refusing.", rich_help_panel=OUTPUT)
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the resolved config, sources and output paths; load nothing.", rich_help_panel=RUN
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.", rich_help_panel=RUN)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or status on stderr.", rich_help_panel=RUN)]

# flag -> config path, for the flags shared by generation commands.
FLAG_PATHS = {
    "PROMPT": "inputs.prompt",
    "--model": "model.id",
    "--revision": "model.revision",
    "--dtype": "model.dtype",
    "--allow-pickle": "model.allow_pickle",
    "--negative": "inputs.negative_prompt",
    "--frames": "sampling.num_frames",
    "--steps": "sampling.num_inference_steps",
    "--guidance": "sampling.guidance_scale",
    "--height": "sampling.height",
    "--width": "sampling.width",
    "--seed": "sampling.seed",
    "--num-videos": "sampling.num_videos",
    "--device": "optimization.device",
    "--offload": "optimization.offload",
    "--vae-tiling": "optimization.vae_tiling",
    "--vae-slicing": "optimization.vae_slicing",
    "--forward-chunking": "optimization.forward_chunking",
    "--compile": "optimization.compile",
    "--out": "output.path",
    "--format": "output.format",
    "--fps": "output.fps",
    "--crf": "output.crf",
    "--codec": "output.codec",
    "--overwrite": "output.overwrite",
}


def flag_layers(given: dict[str, object], assignments: list[str] | None) -> list[Layer]:
    """One layer per flag actually given (so sources name the flag), then --set on top."""
    layers = []
    for flag, value in given.items():
        if value is None:
            continue
        section, key = FLAG_PATHS[flag].split(".", 1)
        layers.append(Layer(label=f"cli:{flag}", data={section: {key: value}}, origin=flag))
    if assignments:
        layers.append(set_layer(assignments))
    return layers
