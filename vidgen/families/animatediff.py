"""AnimateDiff: a motion adapter that animates any Stable Diffusion 1.5 checkpoint.

The base model can be a Hub repo, a diffusers folder or a single `.safetensors` file as model
sites ship them; the motion adapter, scheduler and LoRAs are loaded beside it. FreeNoise (long
videos, prompt travel) and FreeInit (temporal consistency) are pipeline switches set up once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, ModelError
from vidgen.families.base import (
    SDPA_SLICING,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    ModelAccess,
    Takes,
    check_grid,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)

SAMPLING = frozenset(
    {
        "num_inference_steps",
        "guidance_scale",
        "height",
        "width",
        "eta",
        "context_length",
        "context_stride",
        "free_init_iters",
        "free_init_method",
    }
)
# Settings that configure the pipeline (enable_free_noise / enable_free_init), not its call.
SETUP_FIELDS = frozenset({"context_length", "context_stride", "free_init_iters", "free_init_method"})
# FreeNoise's defaults in diffusers, used when prompt travel switches it on implicitly.
FREE_NOISE_DEFAULTS = {"context_length": 16, "context_stride": 4}
SD15_SIZES = {"unet": 8.6e8, "text_encoder": 1.23e8, "vae": 8.37e7}
SIZES = {
    "emilianJR/epiCRealism": SD15_SIZES,
    "stable-diffusion-v1-5/stable-diffusion-v1-5": SD15_SIZES,
    "guoyww/animatediff-motion-adapter-v1-5-2": {"motion_adapter": 4.53e8},
    "guoyww/animatediff-motion-adapter-v1-5-3": {"motion_adapter": 4.19e8},
    "stabilityai/stable-diffusion-xl-base-1.0": {
        "unet": 2.567e9,
        "text_encoder": 1.23e8,
        "text_encoder_2": 6.95e8,
        "vae": 8.37e7,
    },
    "guoyww/animatediff-motion-adapter-sdxl-beta": {"motion_adapter": 2.38e8},
    **dict.fromkeys(
        ("lllyasviel/sd-controlnet-canny", "lllyasviel/sd-controlnet-openpose", "lllyasviel/sd-controlnet-depth"),
        {"controlnet": 3.61e8},
    ),
}
# The `model` options of every AnimateDiff (the motion adapter beside the base model).
MODEL_FIELDS = frozenset({"motion_adapter", "base_config", "scheduler", "scheduler_options", "loras"})
# The base (SD 1.5) model; the motion adapter is a component beside it.
SD15_BASE = "emilianJR/epiCRealism"


def free_noise(cfg: RunConfig) -> tuple[int | None, int | None]:
    """(context_length, context_stride) when FreeNoise is on, else (None, None).

    Prompt travel needs FreeNoise, so a prompt map switches it on with diffusers' defaults.
    """
    s = cfg.sampling
    if s.context_length is None and s.context_stride is None and not cfg.inputs.prompts:
        return None, None
    # The implicit window never exceeds the video (FreeNoise fails on a window past its end).
    length = s.context_length or min(FREE_NOISE_DEFAULTS["context_length"], s.num_frames or 10_000)
    return length, s.context_stride or min(FREE_NOISE_DEFAULTS["context_stride"], length)


def repair_add_embedding(pipe: Any, folder: str | None) -> list[dict[str, Any]]:
    """diffusers 0.42.1 builds the motion UNet with `UNetMotionModel.from_unet2d`, which does
    not copy SDXL's text-time `add_embedding` from the base UNet (raised in the review of
    diffusers PR #6721 and left for later): it stays randomly initialised, so every process
    runs a different, wrong conditioning. Copy it from the base model's UNet weights."""
    import torch
    from safetensors import safe_open

    unet = Path(folder or "") / "unet"
    files = sorted(unet.glob("*.safetensors")) if unet.is_dir() else []
    weights: dict[str, Any] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith("add_embedding."):
                    weights[key.removeprefix("add_embedding.")] = handle.get_tensor(key)
    if not weights:
        raise ModelError(
            f"cannot find the base UNet's add_embedding weights under {unet}; AnimateDiff SDXL needs a "
            "diffusers SDXL folder or Hub repo as --base-model."
        )
    target = pipe.unet.add_embedding
    first = next(target.parameters())
    with torch.no_grad():
        target.load_state_dict({k: v.to(first.dtype) for k, v in weights.items()})
    return [{"method": "unet.add_embedding.load_state_dict", "kwargs": {"from": str(unet)}}]


class AnimateDiff(Family):
    name = "animatediff"
    title = "AnimateDiff"
    modes: ClassVar[dict[str, Mode]] = {
        "animate": Mode("AnimateDiffPipeline", SD15_BASE, SAMPLING | {"num_frames"}, defaults=settings(frames=16)),
        "v2v": Mode(
            "AnimateDiffVideoToVideoPipeline",
            SD15_BASE,
            SAMPLING | {"strength"},
            defaults={"sampling": {"strength": 0.8}, "inputs": {"max_frames": 32}},
        ),
        # The control video sets the length.
        "control": Mode(
            "AnimateDiffControlNetPipeline",
            SD15_BASE,
            SAMPLING | {"controlnet_conditioning_scale"},
            media={"control": "conditioning_frames"},
            model=MODEL_FIELDS | {"controlnet"},
            defaults={
                "model": {"controlnet": "canny"},
                "sampling": {"controlnet_conditioning_scale": 1.0},
                "inputs": {"max_frames": 16, "preprocess": "none"},
            },
        ),
    }
    reference = merged(
        {"model": {"motion_adapter": "guoyww/animatediff-motion-adapter-v1-5-2"}},
        settings(size=(512, 512), steps=25, guidance=7.5, fps=8),
    )
    takes = Takes(
        prompts=True,
        model=MODEL_FIELDS,
        optimizations=frozenset(
            {"offload", "vae_tiling", "vae_slicing", "forward_chunking", "decode_chunk_size", "fp8_storage", "compile"}
        ),
    )
    hints: ClassVar[dict[str, str]] = {
        "sampling.num_frames": "in v2v the input video sets the length",
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.quantize": "its motion UNet is assembled from the base UNet after loading, which a "
        "quantized UNet cannot be; use --fp8-storage",
    }
    loading = Loading(
        cuda_dtype="fp16",
        single_file=True,
        # model field -> the diffusers class loaded for it and passed to the pipeline.
        components={"motion_adapter": "MotionAdapter", "controlnet": "ControlNetModel"},
        # FreeNoise and FreeInit are switched on once after loading (see setup).
        setup_fields=SETUP_FIELDS,
    )
    # decode_chunk_size (default 16) frames per VAE call, each split per frame by slicing.
    memory = Memory(Footprint(denoiser="unet", blocks=16, sizes=SIZES), decode_batch=16)
    # The UNet's VAE works on multiples of 8 pixels.
    grid = Grid(size=8)

    def check(self, cfg: RunConfig) -> None:
        # Not the base check: a prompt map (prompt travel) may stand in for the prompt.
        if not (cfg.inputs.prompt or "").strip() and not cfg.inputs.prompts:
            raise ConfigError(f'{self.title} needs a prompt: vidgen {cfg.mode} ... "what the video shows".')
        check_grid(self.title, cfg, self.grid)
        if not cfg.model.motion_adapter:
            raise ConfigError("AnimateDiff needs a motion adapter: set --motion-adapter (a Hub id, folder or file).")
        s = cfg.sampling
        prompts = cfg.inputs.prompts or {}
        if prompts:
            if cfg.inputs.prompt is not None and 0 in prompts:
                raise ConfigError('both PROMPT and --prompt-at "0:..." give the first prompt; drop one.')
            if cfg.inputs.prompt is None and 0 not in prompts:
                raise ConfigError('prompt travel starts at frame 0: add --prompt-at "0:..." or a PROMPT.')
            last = max(prompts)
            if s.num_frames is not None and last >= s.num_frames:
                raise ConfigError(
                    f"--prompt-at {last}:... is past the last frame ({s.num_frames - 1}); raise --frames."
                )
        length, stride = free_noise(cfg)
        if stride is not None and length is not None and stride > length:
            raise ConfigError(
                f"--context-stride {stride} is larger than --context-length {length}; frames would be skipped."
            )
        if s.free_init_method is not None and s.free_init_iters is None:
            raise ConfigError("sampling.free_init_method needs --free-init ITERS to switch FreeInit on.")

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        limit = pipe.unet.config.motion_max_seq_length
        count = frames if frames is not None else cfg.sampling.num_frames
        length, _ = free_noise(cfg)
        if length is None and count is not None and count > limit:
            flag = "input frames" if cfg.mode == "v2v" else f"--frames {count}"
            raise ConfigError(
                f"{flag}: this motion adapter handles at most {limit} frames at once; "
                f"add --context-length 16 (FreeNoise) for longer videos."
            )
        if length is not None and length > limit:
            raise ConfigError(f"--context-length {length} is more than this motion adapter's {limit} frames.")
        if length is not None and count is not None and length > count:
            raise ConfigError(
                f"the FreeNoise window (--context-length {length}) is longer than the {count} frames; "
                f"set --context-length {count} or fewer."
            )

    def setup(self, pipe: Any, cfg: RunConfig, models: ModelAccess) -> list[dict[str, Any]]:
        """Switch FreeNoise / FreeInit on as configured; returns the calls, for the sidecar."""
        calls: list[dict[str, Any]] = []
        length, stride = free_noise(cfg)
        if length is not None:
            kwargs = {"context_length": length, "context_stride": stride}
            calls.append({"method": "enable_free_noise", "kwargs": kwargs})
        s = cfg.sampling
        if s.free_init_iters is not None:
            init: dict[str, Any] = {"num_iters": s.free_init_iters}
            if s.free_init_method is not None:
                init["method"] = s.free_init_method
            calls.append({"method": "enable_free_init", "kwargs": init})
        for call in calls:
            getattr(pipe, call["method"])(**call["kwargs"])
        return calls

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling - SETUP_FIELDS)
        if not cfg.inputs.prompts:  # a prompt map goes beside the JSON kwargs (its keys are ints)
            kwargs.update(prompt_kwargs(cfg))
        elif cfg.inputs.negative_prompt is not None:
            kwargs["negative_prompt"] = cfg.inputs.negative_prompt
        if cfg.mode == "control" and frames is not None:
            kwargs["num_frames"] = frames  # one output frame per control frame
        if cfg.optimization.decode_chunk_size is not None:
            kwargs["decode_chunk_size"] = cfg.optimization.decode_chunk_size
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = super().step_count(cfg, call_kwargs, media)
        # Each FreeInit iteration runs the whole schedule again.
        return steps * (cfg.sampling.free_init_iters or 1)


class AnimateDiffSDXL(AnimateDiff):
    """The SDXL motion adapter (beta) on an SDXL checkpoint: no FreeNoise (so no prompt travel
    or windows) and no decode chunking in diffusers' pipeline; FreeInit works."""

    name = "animatediff-sdxl"
    title = "AnimateDiff SDXL"
    modes: ClassVar[dict[str, Mode]] = {
        "animate": Mode(
            "AnimateDiffSDXLPipeline",
            "stabilityai/stable-diffusion-xl-base-1.0",
            (SAMPLING - {"context_length", "context_stride"}) | {"num_frames"},
            model=MODEL_FIELDS - {"base_config"},
        )
    }
    # The diffusers AnimateDiff SDXL example's settings.
    reference = merged(
        {"model": {"motion_adapter": "guoyww/animatediff-motion-adapter-sdxl-beta"}},
        settings(size=(1024, 1024), frames=16, steps=20, guidance=8.0, fps=8),
    )
    takes = Takes(
        model=MODEL_FIELDS,
        optimizations=frozenset({"offload", "vae_tiling", "vae_slicing", "forward_chunking", "fp8_storage", "compile"}),
    )
    loading = Loading(
        cuda_dtype="fp16",
        # The add_embedding repair reads the base folder's UNet; a single file has none.
        single_file=False,
        components={"motion_adapter": "MotionAdapter"},
        setup_fields=SETUP_FIELDS,
        repair=repair_add_embedding,
    )


FAMILIES = (AnimateDiff, AnimateDiffSDXL)
