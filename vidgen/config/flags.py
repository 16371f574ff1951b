"""The command-line flag that sets each config field, so messages can name what the user typed.

The CLI builds its config layers from this table and the checks in `families` name flags
through it; a field with no flag (settable only by presets and --set) is named by its path.
"""

from __future__ import annotations

import re
from typing import Any

from vidgen.core.errors import ConfigError

# File inputs (IMAGE, --mask, ...) add theirs from vidgen/config/kinds.py.
FLAGS: dict[str, str] = {
    "inputs.prompt": "PROMPT",
    "inputs.conditions": "--keyframe",
    "inputs.negative_prompt": "--negative",
    "inputs.resize": "--resize",
    "inputs.background": "--background",
    "inputs.input_fps": "--input-fps",
    "inputs.max_frames": "--max-frames",
    "model.id": "--model",
    "model.revision": "--revision",
    "model.dtype": "--dtype",
    "model.allow_pickle": "--allow-pickle",
    "model.motion_adapter": "--motion-adapter",
    "model.base_config": "--base-config",
    "model.scheduler": "--scheduler",
    "model.loras": "--lora",
    "model.controlnet": "--controlnet",
    "model.transformer": "--transformer",
    "model.transformer_2": "--transformer-2",
    "model.text_encoder": "--text-encoder",
    "model.enhancer": "--enhancer",
    "inputs.enhance_prompt": "--enhance-prompt",
    "inputs.enhancer_seed": "--enhancer-seed",
    "model.preview_decoder": "--preview-decoder",
    "inputs.preprocess": "--preprocess",
    "inputs.canny_low": "--canny-low",
    "inputs.canny_high": "--canny-high",
    "sampling.controlnet_conditioning_scale": "--control-scale",
    "sampling.motion_field_strength_x": "--motion-field-x",
    "sampling.motion_field_strength_y": "--motion-field-y",
    "sampling.t0": "--t0",
    "sampling.t1": "--t1",
    "sampling.image_guidance_scale": "--image-guidance",
    "sampling.chunk": "--chunk",
    "inputs.prompts": "--prompt-at",
    "sampling.context_length": "--context-length",
    "sampling.context_stride": "--context-stride",
    "sampling.free_init_iters": "--free-init",
    "sampling.num_frames": "--frames",
    "sampling.num_inference_steps": "--steps",
    "sampling.guidance_scale": "--guidance",
    "sampling.height": "--height",
    "sampling.width": "--width",
    "sampling.seed": "--seed",
    "sampling.num_videos": "--num-videos",
    "sampling.motion_bucket_id": "--motion-bucket-id",
    "sampling.noise_aug_strength": "--noise-aug-strength",
    "sampling.fps": "--cond-fps",
    "sampling.min_guidance_scale": "--min-guidance",
    "sampling.max_guidance_scale": "--max-guidance",
    "sampling.target_fps": "--target-fps",
    "sampling.strength": "--strength",
    "optimization.device": "--device",
    "optimization.memory": "--memory",
    "optimization.vram_gb": "--vram",
    "optimization.offload": "--offload",
    "optimization.offload_type": "--offload-type",
    "optimization.offload_stream": "--offload-stream",
    "optimization.vae_tiling": "--vae-tiling",
    "optimization.vae_slicing": "--vae-slicing",
    "optimization.forward_chunking": "--forward-chunking",
    "optimization.decode_chunk_size": "--decode-chunk",
    "optimization.attention_slicing": "--attention-slicing",
    "optimization.fp8_storage": "--fp8-storage",
    "optimization.attention_backend": "--attention-backend",
    "optimization.compile": "--compile",
    "optimization.cache": "--cache",
    "optimization.mag_ratios": "--mag-ratios",
    "optimization.quantize": "--quantize",
    "optimization.oom_retry": "--oom-retry",
    "optimization.gpus": "--gpus",
    "optimization.context_parallel": "--context-parallel",
    "optimization.ring_degree": "--ring-degree",
    "output.audio": "--no-audio",
    "output.path": "--out",
    "output.format": "--format",
    "output.fps": "--fps",
    "output.crf": "--crf",
    "output.codec": "--codec",
    "output.overwrite": "--overwrite",
}


# The options that make the output.finish chain, by their command-line (and manifest) names.
FINISH_OPTIONS = ("interpolate", "interpolate_model", "upscale", "upscale_tile", "upscale_scale", "upscale_steps")


def finish_steps(values: dict[str, Any]) -> list[dict[str, Any]]:
    """--interpolate (with --interpolate-model), then --upscale (with --upscale-tile), as the
    steps of output.finish; a half-given pair is a ConfigError naming what is missing."""
    interpolate, weights = values.get("interpolate"), values.get("interpolate_model")
    upscale, tile = values.get("upscale"), values.get("upscale_tile")
    if interpolate is not None and weights is None:
        raise ConfigError("--interpolate needs --interpolate-model FILE|REPO:PATH (RIFE 4.25/4.26 weights).")
    if weights is not None and interpolate is None:
        raise ConfigError("--interpolate-model needs --interpolate x2|x4|FPSfps to say how many frames to make.")
    # Kandinsky6SRPipeline's factor and steps (the step's seed is the run's).
    diffusion = {"scale": values.get("upscale_scale"), "steps": values.get("upscale_steps")}
    for name, value in {"tile": tile, **diffusion}.items():
        if value is not None and upscale is None:
            raise ConfigError(f"--upscale-{name} needs --upscale FILE|REPO:PATH.")
    steps: list[dict[str, Any]] = []
    if interpolate is not None:
        steps.append({"step": "interpolate", "model": str(weights), "by": str(interpolate)})
    if upscale is not None:
        given = {name: value for name, value in {"tile": tile, **diffusion}.items() if value is not None}
        steps.append({"step": "upscale", "model": str(upscale), **given})
    return steps


def register_flag(path: str, name: str) -> None:
    """Name the flag of a family-declared field (the families registry calls this)."""
    if FLAGS.get(path, name) != name:
        raise ValueError(f"{path} already has the flag {FLAGS[path]}, not {name}")
    FLAGS[path] = name


def flag(path: str) -> str:
    """`--frames` for sampling.num_frames; the path itself for fields without a flag."""
    return FLAGS.get(path, path)


# -- flag-form values -> config form (the CLI and batch manifests share these) ---------------


# --lora-high / --lora-low: a LoRA for one expert of a two-expert model.
LORA_EXPERT_FLAGS = {"high": "--lora-high", "low": "--lora-low"}


def parse_lora(spec: str, expert: str | None = None) -> dict[str, Any]:
    """`ID|PATH[:SCALE]` -> {source, scale}; a trailing :number is the scale. `expert` (high or
    low) targets one denoiser of a two-expert model."""
    source, sep, tail = spec.rpartition(":")
    parsed: dict[str, Any] = {"source": spec, "scale": 1.0}
    if sep and re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", tail.strip()):
        parsed = {"source": source, "scale": float(tail)}
    return {**parsed, "expert": expert} if expert else parsed


def parse_keyframe(spec: str) -> dict[str, Any]:
    """`FRAME:IMAGE[:STRENGTH]` -> {image, frame_index, strength}; a trailing :number is the
    strength (so an image path or URL may itself hold colons)."""
    frame, sep, rest = spec.partition(":")
    if not sep or not frame.strip().isdigit() or not rest.strip():
        raise ConfigError(f"--keyframe {spec!r}: expected FRAME:IMAGE[:STRENGTH], e.g. 96:last.png or 48:mid.png:0.8.")
    image, sep, tail = rest.rpartition(":")
    if sep and image and re.fullmatch(r"(\d+(\.\d*)?|\.\d+)", tail.strip()):
        return {"image": image, "frame_index": int(frame), "strength": float(tail)}
    return {"image": rest, "frame_index": int(frame), "strength": 1.0}


def parse_condition_video(spec: str) -> dict[str, Any]:
    """`VIDEO[:FRAME]` -> {video, frame_index}: the clip's first frame goes at FRAME (default 0)."""
    video, sep, tail = spec.rpartition(":")
    if sep and video and tail.strip().isdigit():
        return {"video": video, "frame_index": int(tail), "strength": 1.0}
    return {"video": spec, "frame_index": 0, "strength": 1.0}


def parse_prompt_map(items: list[str]) -> dict[int, str]:
    """["0:a bud", "24:a rose"] -> {0: "a bud", 24: "a rose"}."""
    prompts: dict[int, str] = {}
    for item in items:
        frame, sep, text = item.partition(":")
        if not sep or not frame.strip().isdigit() or not text.strip():
            raise ConfigError(f"--prompt-at {item!r}: expected FRAME:TEXT, e.g. '24:a blooming rose'.")
        if int(frame) in prompts:
            raise ConfigError(f"--prompt-at gives frame {int(frame)} twice.")
        prompts[int(frame)] = text.strip()
    return prompts


def parse_numbers(text: str, name: str) -> list[float]:
    """`0.98,0.95,0.9` -> [0.98, 0.95, 0.9]; `name` (the flag) names a part that is no number."""
    numbers = []
    for part in text.split(","):
        try:
            numbers.append(float(part))
        except ValueError:
            raise ConfigError(
                f"{name} {text} is not a list of numbers ({part.strip()!r} is not a number); give comma-separated "
                "numbers, e.g. 1.0,0.98,0.95."
            ) from None
    return numbers


def from_flag_form(path: str, value: Any) -> Any:
    """A value as typed after a flag (or in a manifest job) in its config form: `--lora` strings
    become {source, scale}, `--prompt-at` strings a frame map. Config-form values pass through."""
    if path == "model.loras":
        items = value if isinstance(value, (list, tuple)) else [value]
        return [parse_lora(item) if isinstance(item, str) else item for item in items]
    if path == "inputs.reference_images" and isinstance(value, str):
        return [value]  # one `ref:` in a manifest job
    if path == "inputs.prompts" and isinstance(value, (list, tuple, str)):
        return parse_prompt_map([value] if isinstance(value, str) else list(value))
    if path == "optimization.mag_ratios" and isinstance(value, str):
        return parse_numbers(value, flag(path))  # a file is read only when the flag itself names one
    return value
