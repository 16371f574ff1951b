"""CogVideoX (THUDM / zai-org): text-to-video with a 3D transformer and a causal 3D VAE."""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.errors import ConfigError
from vidgen.families.base import Family, nearest, prompt_kwargs, sampling_kwargs

_CALL_FIELDS = (
    "num_frames",
    "num_inference_steps",
    "guidance_scale",
    "height",
    "width",
    "max_sequence_length",
    "use_dynamic_cfg",
    "eta",
)


class CogVideoX(Family):
    name = "cogvideox"
    title = "CogVideoX"
    pipelines: ClassVar[dict[str, str]] = {"t2v": "CogVideoXPipeline"}
    default_repo = "THUDM/CogVideoX-5b"
    extra_sampling = frozenset({"max_sequence_length", "use_dynamic_cfg", "eta"})
    optimizations = frozenset({"offload", "vae_tiling", "vae_slicing", "compile"})
    cuda_dtype = "bf16"
    # The causal VAE compresses 4 frames into one latent; the transformer patches 2x2 latents.
    frame_step = 8
    size_step = 16
    defaults: ClassVar[dict[str, Any]] = {
        "model": {"id": "THUDM/CogVideoX-5b"},
        "sampling": {
            "num_frames": 49,
            "height": 480,
            "width": 720,
            "num_inference_steps": 50,
            "guidance_scale": 6.0,
            "max_sequence_length": 226,
        },
        "output": {"fps": 8},
    }

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        s = cfg.sampling
        # Off-grid frame counts decode to a different length than asked for (13 -> 16), so
        # they are refused here rather than recorded wrongly in the sidecar.
        if s.num_frames is not None and (s.num_frames - 1) % self.frame_step:
            raise ConfigError(
                f"--frames {s.num_frames} does not fit {self.title}: it needs {self.frame_step}k+1 frames; "
                f"nearest valid: {nearest(s.num_frames, self.frame_step, 1)}."
            )
        for flag, value in (("--height", s.height), ("--width", s.width)):
            if value is not None and value % self.size_step:
                raise ConfigError(
                    f"{flag} {value} does not fit {self.title}: sizes must be multiples of {self.size_step}; "
                    f"nearest valid: {nearest(value, self.size_step)}."
                )

    def call_kwargs(self, cfg: RunConfig, seed: int) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL_FIELDS)}
        # One video per call: CogVideoX ignores num_videos_per_prompt (diffusers #13622),
        # so vidgen loops over seeds instead.
        kwargs["num_videos_per_prompt"] = 1
        kwargs["output_type"] = "np"
        return kwargs


class CogVideoX15(CogVideoX):
    name = "cogvideox1.5"
    title = "CogVideoX 1.5"
    default_repo = "THUDM/CogVideoX1.5-5B"
    # 1.5 patches two latent frames at a time, so its grid is 16k+1.
    frame_step = 16
    defaults: ClassVar[dict[str, Any]] = {
        "model": {"id": "THUDM/CogVideoX1.5-5B"},
        "sampling": {
            "num_frames": 81,
            "height": 768,
            "width": 1360,
            "num_inference_steps": 50,
            "guidance_scale": 6.0,
            "max_sequence_length": 226,
        },
        "output": {"fps": 16},
    }
