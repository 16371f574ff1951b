"""Cosmos Transfer 2.5 (NVIDIA): Cosmos Predict 2.5's 2B transformer steered by a ControlNet that
reads a control video: edge maps, depth maps, segmentation maps or a blurred clip. One ControlNet
per kind of map, each on its own branch of nvidia/Cosmos-Transfer2.5-2B (`--preset
cosmos-transfer2.5-2b-edge|depth|seg|blur` picks it).

`vidgen control PROMPT --control CLIP` makes one output frame per control frame. vidgen makes the
maps from a plain clip where it can: `--preprocess canny` (edges, OpenCV; the edge preset's
default), `--preprocess blur` (a Gaussian blur; the blur preset's default) and `--preprocess
depth` (controlnet-aux's MiDaS, when installed). Segmentation maps (NVIDIA makes them with
GroundingDINO and SAM2) and depth maps made elsewhere are given as a video with `--preprocess
none`, the depth and seg presets' default.

`Cosmos2_5_TransferPipeline` makes the video in chunks of --chunk-frames frames (93), each after the
first starting from the last frame of the one before, and decodes each chunk inside its own call:
there are no final latents to save. It runs NVIDIA's Cosmos Guardrail as Cosmos Predict 2.5 does
(see cosmos.py: the `cosmos_guardrail` package for real checkpoints, a pass-through stand-in for
the tiny ones).

diffusers' ControlNet resizes its padding mask (all zeros) with torchvision. Where torchvision is
not installed (the CPU machines vidgen is tested on have no build of it), vidgen stands in for that
one call with the same nearest-neighbour interpolation in torch (`torchvision_stand_in`); the real
transformer needs torchvision for its own padding mask, so a real checkpoint still asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Decoding,
    Family,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Option,
    Previewing,
    Takes,
    merged,
    option_kwargs,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.cosmos import NEGATIVE, REASON1_7B, guardrail_class
from vidgen.families.tiny_parts import redraw_zeros
from vidgen.families.wan import VAE_21

REPO = "nvidia/Cosmos-Transfer2.5-2B"
# The diffusers docstring loads the pipeline from this branch and each ControlNet from its own
# (`AutoModel.from_pretrained(REPO, revision="diffusers/controlnet/general/edge")`); the conversion
# script (scripts/convert_cosmos_to_diffusers.py) names the four kinds.
REVISION = "diffusers/general"
KINDS = ("edge", "depth", "seg", "blur")
CONTROLNETS = {kind: f"{REPO}@diffusers/controlnet/general/{kind}" for kind in KINDS}
_CALL = frozenset({"num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
_CHUNK = 93
CHUNK = Option(
    "num_frames_per_chunk",
    "--chunk-frames",
    int,
    "Cosmos Transfer: frames made per chunk (4k+1; default 93); a longer control video is made chunk by chunk, "
    "each starting from the last frame of the one before.",
    ge=5,
    le=1001,
)
# Parameters, from diffusers' models built on the meta device with the conversion script's
# Cosmos-2.5-Transfer-General-2B configs: the transformer (28 blocks of 16x128 with the image
# context projections) 2.414B, the ControlNet (4 blocks, control every 7th block) 0.471B. The text
# encoder is Cosmos-Reason1-7B and the VAE Wan 2.1's, as for Cosmos Predict 2.5.
_TRANSFORMER = 2.414e9
_CONTROLNET = 0.471e9
_SIZES = {
    REPO: {"transformer": _TRANSFORMER, "text_encoder": REASON1_7B, "vae": VAE_21},
    **{ref: {"controlnet": _CONTROLNET} for ref in CONTROLNETS.values()},
}


def _chunk(cfg: RunConfig) -> int:
    return cfg.sampling.get("num_frames_per_chunk") or _CHUNK


class _Chunks(Memory):
    """One denoiser forward sees one chunk and the VAE decodes one chunk at a time, whatever the
    video's length: the pipeline pads a shorter control video to a whole chunk."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        return (_chunk(cfg) - 1) // self.footprint.temporal + 1

    def decode_frames(self, cfg: RunConfig, frames: int) -> int:
        return _chunk(cfg)


class CosmosTransfer(Family):
    name = "cosmos-transfer"
    title = "Cosmos Transfer 2.5"
    modes: ClassVar[dict[str, Mode]] = {
        "control": Mode(
            "Cosmos2_5_TransferPipeline",
            REPO,
            _CALL | {"controlnet_conditioning_scale"},
            media={"control": "controls"},
            defaults=merged({"inputs": {"preprocess": "none"}}, settings(controlnet_conditioning_scale=1.0)),
        )
    }
    # The diffusers docstring and the pipeline's defaults: 1280x704, 36 steps, guidance 3, 93-frame
    # chunks, 512 Qwen tokens, the Cosmos negative prompt; 16 fps as NVIDIA times it.
    reference = merged(
        settings(size=(704, 1280), steps=36, guidance=3.0, fps=16, max_sequence_length=512),
        {"inputs": {"negative_prompt": NEGATIVE}, "model": {"revision": REVISION}},
    )
    options: ClassVar[tuple[Option, ...]] = (CHUNK,)
    # Offload follows the pipeline's declared order (the guardrail stays put); the VAE tiles; the
    # transformer's weights can be stored in fp8 (tests/test_cosmos_transfer.py runs it).
    takes = Takes(
        model=frozenset({"controlnet"}),
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "sampling.num_frames": "the --control video sets the length (--max-frames caps it)",
        "optimization.cache": "Cosmos' transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.attention_backend": "not checked on Cosmos Transfer's ControlNet yet",
        "optimization.attention_slicing": "its attention goes through diffusers' dispatcher",
        "optimization.decode_chunk_size": "its VAE decodes each chunk in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "diffusers lists no repeated blocks for Cosmos' transformer",
        "optimization.quantize": "not checked on Cosmos Transfer yet",
        "model.scheduler": "Cosmos Transfer 2.5 samples with the flow UniPC scheduler its checkpoint ships",
        "model.loras": "Cosmos2_5_TransferPipeline loads no LoRAs",
    }
    loading = Loading(cuda_dtype="bf16", components={"controlnet": "CosmosControlNetModel"})
    memory = _Chunks(
        Footprint(
            denoiser="transformer",
            blocks=28,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=2048,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
    )
    # Any length from 2 frames (a chunk after the first starts from one frame of the one before;
    # the last is padded and cut back); the Wan 2.1 VAE and 2x2 patches: sizes in multiples of 16.
    grid = Grid(frames=1, size=16, shortest=2, note="any number of frames, at least 2")
    decoding = Decoding(latents=None)
    previewing = Previewing(refused="Cosmos Transfer denoises chunk by chunk and decodes each inside its own call")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        chunk = cfg.sampling.get("num_frames_per_chunk")
        if chunk is not None and (chunk - 1) % 4:
            low = (chunk - 1) // 4 * 4 + 1
            raise ConfigError(
                f"--chunk-frames {chunk} does not fit {self.title}: it needs 4k+1 frames; "
                f"nearest valid: {max(low, 5)} or {low + 4}."
            )
        if cfg.inputs.preprocess == "pose":
            raise ConfigError(
                f"--preprocess pose does not fit {self.title}: it has edge, depth, segmentation and blur "
                "ControlNets; use --preprocess canny, depth, blur or none."
            )
        controlnet = cfg.model.controlnet
        if controlnet and "/" not in controlnet and not controlnet.startswith("tiny:"):
            # canny / pose / depth name the SD 1.5 ControlNets of the UNet families.
            raise ConfigError(
                f"--controlnet {controlnet} names a Stable Diffusion ControlNet; {self.title} takes a "
                f"CosmosControlNetModel (a folder, or REPO@REVISION): pick the kind with --preset "
                f"cosmos-transfer2.5-2b-{'|'.join(KINDS)}."
            )

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        import importlib.util

        # As in cosmos.py: the real transformer resizes its padding mask with torchvision.
        if pipe.transformer.config.concat_padding_mask and importlib.util.find_spec("torchvision") is None:
            raise ConfigError(
                f"{self.title} needs torchvision (its transformer resizes its padding mask with it): "
                "pip install torchvision (the build that matches your torch)."
            )
        # The pipeline's own bound: a chunk's frames within the rotary table of the transformer.
        config = pipe.transformer.config
        most = max(size // patch for size, patch in zip(config.max_size, config.patch_size, strict=True))
        if _chunk(cfg) > most:
            largest = (most - 1) // 4 * 4 + 1
            raise ConfigError(
                f"--chunk-frames {_chunk(cfg)} does not fit this {self.title} model: its positions reach "
                f"{most} frames a chunk; use --chunk-frames {largest} or less."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL), **option_kwargs(self, cfg)}
        scale = cfg.sampling.controlnet_conditioning_scale
        if scale is not None:
            kwargs["controls_conditioning_scale"] = scale  # the pipeline's name for --control-scale
        if frames:
            kwargs["num_frames"] = frames  # one output frame per control frame
        kwargs["output_type"] = "np"
        return kwargs

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        with torchvision_stand_in():
            return super().call(pipe, cfg, call_kwargs, media, **extra)

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        steps = int(call_kwargs.get("num_inference_steps", 0))
        controls = (media or {}).get("controls")
        if not controls:
            return steps
        return steps * chunks(len(controls), call_kwargs.get("num_frames_per_chunk", _CHUNK))

    tiny: ClassVar[dict[str, Any]] = {}


def chunks(frames: int, chunk: int, overlap: int = 1) -> int:
    """How many chunks the pipeline makes `frames` frames in: one from frame 0, then one every
    `chunk - overlap` frames while frames past the overlap remain (its own `chunk_idxs`)."""
    return len(range(0, frames - overlap, chunk - overlap))


# -- torchvision's one call in diffusers' Cosmos ControlNet ------------------------------------


def _nearest(tensor: Any, size: list[int], interpolation: Any = None, **_: Any) -> Any:
    """torchvision's `functional.resize` of a tensor with NEAREST: torch's nearest interpolation
    (what torchvision calls for it)."""
    import torch.nn.functional as F

    return F.interpolate(tensor, size=list(size), mode="nearest")


class _Functional:
    resize = staticmethod(_nearest)


class _InterpolationMode:
    NEAREST = "nearest"


class _Transforms:
    """The part of `torchvision.transforms` diffusers' CosmosControlNetModel uses."""

    functional = _Functional
    InterpolationMode = _InterpolationMode


@contextmanager
def torchvision_stand_in() -> Iterator[None]:
    """While the ControlNet runs: where torchvision is missing, diffusers' Cosmos ControlNet module
    gets the nearest-neighbour resize it would import from it (its only use, on the all-zero
    padding mask), and loses it again after. With torchvision installed nothing changes."""
    import importlib.util

    from diffusers.models.controlnets import controlnet_cosmos

    if importlib.util.find_spec("torchvision") is not None or hasattr(controlnet_cosmos, "transforms"):
        yield
        return
    controlnet_cosmos.transforms = _Transforms  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del controlnet_cosmos.transforms  # type: ignore[attr-defined]


# -- tiny random-weight recipe (after diffusers' own Cosmos Transfer 2.5 tests, offline tokenizer) --

# The tiny transformer's shape, which its ControlNet follows: 2 heads of 16, 2 blocks, control
# into every block, a 4-token image context of 32 (zeros, as the pipeline passes them).
_TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "mlp_ratio": 2,
    "text_embed_dim": 32,  # two Qwen layers of 16, concatenated by the pipeline
    "adaln_lora_dim": 4,
    "max_size": (4, 32, 32),
    "patch_size": (1, 2, 2),
    "rope_scale": (1.0, 3.0, 3.0),
    "extra_pos_embed_type": None,
    "img_context_dim_in": 32,
    "img_context_dim_out": 32,
}


def _randomised(model: Any, seed: int) -> Any:
    """Zero-initialised layers (as in training) would let the prompt or the control change
    nothing: they are drawn at random instead."""
    redraw_zeros(model, seed=seed)
    return model.eval()


def tiny_controlnet(seed: int = 0) -> Any:
    """A CosmosControlNetModel for the tiny transformer: 2 control blocks, the control latents
    padded from 16 to 18 channels (the real one pads to 128), the condition and padding masks."""
    import torch
    from diffusers import CosmosControlNetModel

    torch.manual_seed(seed)
    controlnet = CosmosControlNetModel(
        n_controlnet_blocks=2,
        in_channels=16 + 2 + 1 + 1,
        latent_channels=16 + 1 + 1,
        model_channels=32,
        use_crossattn_projection=False,
        **_TINY,
    )
    return _randomised(controlnet, seed)


def tiny_transfer() -> Any:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        Cosmos2_5_TransferPipeline,
        CosmosTransformer3DModel,
        UniPCMultistepScheduler,
    )

    from vidgen.families.hunyuan15 import qwen2_tokenizer
    from vidgen.families.tiny_parts import qwen25_vl_encoder

    tokenizer = qwen2_tokenizer()
    torch.manual_seed(0)
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1,
        out_channels=16,
        num_layers=2,
        # Without torchvision the transformer's padding-mask channel cannot be resized (see
        # cosmos.py); everything else is the real Transfer architecture.
        concat_padding_mask=False,
        controlnet_block_every_n=1,
        img_context_num_tokens=4,
        **_TINY,
    )
    return Cosmos2_5_TransferPipeline(
        text_encoder=qwen25_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_randomised(transformer, 0),
        controlnet=tiny_controlnet(0),
        vae=AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval(),
        # The scheduler the conversion script gives Cosmos Transfer 2.5.
        scheduler=UniPCMultistepScheduler(
            use_karras_sigmas=True,
            use_flow_sigmas=True,
            prediction_type="flow_prediction",
            sigma_max=200.0,
            sigma_min=0.01,
        ),
        safety_checker=guardrail_class()(),
    )


CosmosTransfer.tiny = {
    "cosmos-transfer2.5": tiny_transfer,
    # A ControlNet of its own, drawn from another seed than the pipeline's, as a control kind's
    # ControlNet comes from its own branch: the tiny preset loads it through --controlnet.
    "cosmos-transfer2.5-controlnet": lambda: tiny_controlnet(1),
}

FAMILIES = (CosmosTransfer,)
