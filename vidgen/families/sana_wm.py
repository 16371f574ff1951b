"""SANA-WM (NVIDIA, MIT HAN Lab): a camera-controlled world model. From a first frame, a prompt
and a camera path it makes a video whose camera follows the path (6 degrees of freedom): a 2.6B
linear-attention transformer on the LTX-2 VAE (8x32x32), prompted by Gemma-2 2B.

`vidgen i2v IMAGE PROMPT --preset sana-wm --camera orbit-left` moves the camera by name: orbit-left
/ orbit-right (around the subject, about 2.4 scene units ahead), dolly-in / dolly-out, truck-left /
truck-right, pan-left / pan-right, tilt-up / tilt-down, static, for the whole clip; or by the model
card's keys, `--camera "w-80,jw-40,w-40"` (w/s forward and back, a/d sideways, j/l turn, i/k tilt,
each for N frames). `--camera-path FILE` follows a recorded path instead: JSON or NPZ with `c2w`,
camera-to-world matrices (F x 4 x 4, OpenCV axes: x right, y down, z forward), and optionally
`intrinsics` ([fx, fy, cx, cy], a 3x3 matrix, or one per frame), as SANA-WM-Bench exports them.

Intrinsics (--intrinsics FX,FY,CX,CY or the file's) are in the pixels of the video frame: vidgen
brings the image to --size first (centre crop by default, as the pipeline's own preprocessing
does), so the pipeline gets it at that size. Without them vidgen uses a 75-degree horizontal field
of view about the centre (fx = fy = 0.65 x width, as diffusers' own SANA-WM example).

diffusers' pipeline silently shortens the clip to the path and snaps the frame count to 8k+1:
vidgen refuses a path shorter than --frames and an off-grid count before loading instead. Only the
first stage runs (`SanaWMPipeline`); the optional LTX-2 refiner (`SanaWMLTX2Refiner`, a 22B
transformer and a Gemma-3 12B encoder) is not run.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any, ClassVar

from vidgen.config.kinds import InputKind, register_input
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError
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
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.sana_video import tiny_gemma2
from vidgen.families.tiny_parts import redraw_zeros

REPO = "Efficient-Large-Model/SANA-WM_bidirectional-diffusers"
_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The named moves, as the model card's keys held for the whole clip: w/s forward and back, a/d
# sideways, j/l turn left and right, i/k tilt up and down. An orbit is a sideways step while
# turning the other way: a circle about a point ahead of the camera (step / turn = 0.05 / 1.2
# degrees, the pipeline's speeds: about 2.4 scene units).
MOVES = {
    "static": "none",
    "dolly-in": "w",
    "dolly-out": "s",
    "truck-left": "a",
    "truck-right": "d",
    "pan-left": "j",
    "pan-right": "l",
    "tilt-up": "i",
    "tilt-down": "k",
    "orbit-left": "al",
    "orbit-right": "dj",
}
_SEGMENT = re.compile(r"(none|[wasdijkl]+)-([0-9]+)")
# The diffusers example's field of view: fx = 540 for an 832-pixel-wide frame, about 75 degrees.
_FOCAL = 0.65
_MAX_POSES = 100_000


def _moves() -> str:
    return ", ".join(MOVES)


CAMERA = Option(
    "camera",
    "--camera",
    str,
    f"SANA-WM: how the camera moves over the clip: {_moves()}; or the model card's keys, "
    "e.g. w-80,jw-40 (w/s forward/back, a/d sideways, j/l turn, i/k tilt, each for N frames).",
    call=False,
)
INTRINSICS = Option(
    "intrinsics",
    "--intrinsics",
    str,
    "SANA-WM: the camera's FX,FY,CX,CY in the video frame's pixels (default: a 75-degree horizontal "
    "field of view about the centre).",
    call=False,
)


def _poses(value: Any, ref: str) -> Any:
    import numpy as np

    try:
        c2w = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{ref}: c2w is not a list of 4x4 matrices of numbers.") from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or not 2 <= len(c2w) <= _MAX_POSES:
        raise InputError(f"{ref}: c2w must be F x 4 x 4 camera-to-world matrices (F at least 2); got {c2w.shape}.")
    if not np.isfinite(c2w).all():
        raise InputError(f"{ref}: c2w holds NaN or infinite values.")
    if not np.allclose(c2w[:, 3], [0.0, 0.0, 0.0, 1.0], atol=1e-4):
        raise InputError(f"{ref}: every c2w matrix must end in the row 0 0 0 1 (a rigid camera pose).")
    rotation = c2w[:, :3, :3]
    eye = np.einsum("fij,fkj->fik", rotation, rotation)
    if not (np.allclose(eye, np.eye(3), atol=1e-3) and np.allclose(np.linalg.det(rotation), 1.0, atol=1e-3)):
        raise InputError(f"{ref}: the upper-left 3x3 of each c2w matrix must be a rotation (orthonormal, det 1).")
    return c2w.astype(np.float32)


def _vector(value: Any, what: str) -> list[float] | Any:
    """[fx, fy, cx, cy] from four numbers or a 3x3 K matrix; an F x 4 or F x 3 x 3 array per frame."""
    import numpy as np

    try:
        k = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not numbers.") from None
    if k.shape == (3, 3) or (k.ndim == 3 and k.shape[1:] == (3, 3)):
        k = np.stack([k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2]], axis=-1)
    if k.shape[-1:] != (4,) or k.ndim > 2:
        raise InputError(f"{what} must be fx,fy,cx,cy, a 3x3 matrix, or one of those per frame; got shape {k.shape}.")
    if not np.isfinite(k).all() or (k[..., :2] <= 0).any():
        raise InputError(f"{what} needs finite values and positive focal lengths fx, fy.")
    return k.astype(np.float32)


def parse_camera(data: bytes, ref: str, cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A camera path file: JSON {"c2w": ..., "intrinsics": ...} or NPZ with those arrays (read
    without pickles). The first --frames poses are used."""
    import numpy as np

    if data[:2] == b"PK":  # an .npz is a zip archive
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                found = {name: archive[name] for name in ("c2w", "intrinsics") if name in archive.files}
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{ref} is not an NPZ of arrays vidgen can read ({exc}).") from None
    else:
        try:
            found = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{ref} is neither JSON nor NPZ ({exc}); see `vidgen i2v --help`.") from None
        if not isinstance(found, dict):
            raise InputError(f"{ref} must be a JSON object with a c2w list of 4x4 matrices.")
    if "c2w" not in found:
        raise InputError(f"{ref} has no c2w (camera-to-world matrices, F x 4 x 4).")
    c2w = _poses(found["c2w"], ref)
    frames = cfg.sampling.num_frames or len(c2w)
    if len(c2w) < frames:
        shorter = _grid_below(len(c2w))
        raise InputError(
            f"{ref} has {len(c2w)} camera poses and --frames {frames} needs one per frame; give a longer path"
            + (f" or --frames {shorter}." if shorter > 1 else ".")
        )
    media: dict[str, Any] = {"c2w": c2w[:frames]}
    described: dict[str, Any] = {"poses": len(c2w), "poses_used": frames}
    if found.get("intrinsics") is not None:
        intrinsics = _vector(found["intrinsics"], f"{ref}: intrinsics")
        if intrinsics.ndim == 2 and len(intrinsics) < frames:
            raise InputError(f"{ref} has {len(intrinsics)} intrinsics rows and {frames} frames; give one per frame.")
        if cfg.sampling.get("intrinsics") is None:
            media["intrinsics"] = intrinsics[:frames] if intrinsics.ndim == 2 else intrinsics
            described["intrinsics"] = "from the file"
        else:
            described["intrinsics"] = "from --intrinsics (the file's are not used)"
    return media, described


def _grid_below(count: int) -> int:
    return max(1, (count - 1) // 8 * 8 + 1)


register_input(
    InputKind(
        "camera_path",
        "--camera-path",
        "data",
        "SANA-WM: the camera's path, JSON or NPZ with c2w (F x 4 x 4 camera-to-world matrices) and "
        "optional intrinsics; followed instead of --camera.",
        "FILE",
        parse=parse_camera,
    )
)


def action(cfg: RunConfig) -> str | None:
    """The model card's key string for --camera: a named move held for the whole clip, or the keys
    as typed. None when a camera file gives the path (it wins over --camera, which the presets set)."""
    camera = cfg.sampling.get("camera")
    if camera is None or cfg.inputs.get("camera_path"):
        return None
    frames = cfg.sampling.num_frames or 1
    if camera in MOVES:
        return f"{MOVES[camera]}-{frames - 1}"
    return "".join(camera.split()).lower()


def intrinsics(cfg: RunConfig) -> list[float]:
    """--intrinsics, or the default field of view at the run's size."""
    typed = cfg.sampling.get("intrinsics")
    if typed is not None:
        return [float(part) for part in typed.split(",")]
    width, height = cfg.sampling.width or 0, cfg.sampling.height or 0
    return [_FOCAL * width, _FOCAL * width, width / 2, height / 2]


class SanaWM(Family):
    name = "sana-wm"
    title = "SANA-WM"
    modes: ClassVar[dict[str, Mode]] = {
        "i2v": Mode("SanaWMPipeline", REPO, _SAMPLING, inputs=frozenset({"camera_path"})),
    }
    # The diffusers docs' example: 1280x704 (its training size), 161 frames at 16 fps, 60 steps,
    # guidance 5; the pipeline's 300-token prompts.
    reference = settings(size=(704, 1280), frames=161, steps=60, guidance=5.0, fps=16, max_sequence_length=300)
    options: ClassVar[tuple[Option, ...]] = (CAMERA, INTRINSICS)
    # Checked on the tiny model (tests/test_sana_wm.py): its attention is its own (gated DeltaNet
    # and softmax blocks, not diffusers' dispatcher); fp8 storage and VAE tiling run.
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "fp8_storage"}),
        caches=frozenset(),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache": "SANA-WM's transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.attention_backend": "SANA-WM's attention is its own (linear and softmax), not the dispatcher",
        "optimization.attention_slicing": "SANA-WM's attention is its own; use --offload",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "not checked on SANA-WM yet",
        "optimization.quantize": "not checked on SANA-WM's transformer; use --fp8-storage",
        "model.scheduler": "SANA-WM samples with its own per-token flow-matching Euler steps",
        "model.loras": "SANA-WM's pipeline loads no LoRAs",
    }
    # The docs: the transformer in bf16, the VAE in fp32 for its numerics.
    loading = Loading(cuda_dtype="bf16", dtypes={"vae": "fp32"})
    # Parameters: the transformer built on the meta device with diffusers' default config (the
    # public release: 20 blocks of 2240), 2.662B; Gemma-2 2B as SANA-Video's; the LTX-2 video VAE
    # as ltx2.py counts it.
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=20,
            sizes={REPO: {"transformer": 2.662e9, "text_encoder": 2.614e9, "vae": 1.222e9}},
            spatial=32,
            temporal=8,
            patch=1,
            width=2240,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        sliced=False,
    )
    # The LTX-2 VAE: 8k+1 frames, sizes in multiples of 32.
    grid = Grid(frames=8, size=32)
    decoding = Decoding(latents=None)  # the pipeline decodes inside its own call
    previewing = Previewing(refused="SANA-WM's step callback is not given the latents in a form vidgen previews")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        camera, path = cfg.sampling.get("camera"), cfg.inputs.get("camera_path")
        if camera is None and path is None:
            raise ConfigError(
                f"{self.title} follows a camera path: give --camera MOVE ({_moves()}, or keys such as w-80,jw-40) "
                "or --camera-path FILE."
            )
        frames = cfg.sampling.num_frames or 1
        if camera is not None and camera not in MOVES:
            keys = "".join(camera.split()).lower()
            segments = keys.split(",")
            if not all(_SEGMENT.fullmatch(part) and int(part.rsplit("-", 1)[1]) > 0 for part in segments):
                raise ConfigError(
                    f"--camera {camera} is neither a move ({_moves()}) nor keys such as w-80,jw-40 "
                    "(w a s d i j k l or none, then - and a frame count above 0)."
                )
            poses = 1 + sum(int(part.rsplit("-", 1)[1]) for part in segments)
            if poses < frames:
                shorter = _grid_below(poses)
                raise ConfigError(
                    f"--camera {camera} moves the camera for {poses - 1} frames ({poses} poses) and --frames {frames} "
                    f"needs {frames}; lengthen the keys" + (f" or use --frames {shorter}." if shorter > 1 else ".")
                )
        typed = cfg.sampling.get("intrinsics")
        if typed is not None:
            parts = typed.split(",")
            try:
                values = [float(part) for part in parts]
            except ValueError:
                values = []
            if len(values) != 4 or not all(math.isfinite(v) for v in values) or min(values[:2]) <= 0:
                width, height = cfg.sampling.width or 0, cfg.sampling.height or 0
                example = f"{_FOCAL * width:g},{_FOCAL * width:g},{width / 2:g},{height / 2:g}"
                raise ConfigError(
                    f"--intrinsics {typed} must be four numbers FX,FY,CX,CY in the frame's pixels with positive "
                    f"focal lengths, e.g. {example} (the default at this size)."
                )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _SAMPLING)}
        keys = action(cfg)
        if keys is not None:
            kwargs["action"] = keys
        if cfg.sampling.get("intrinsics") is not None or keys is not None:
            kwargs["intrinsics"] = intrinsics(cfg)
        kwargs["output_type"] = "np"
        return kwargs

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        # A camera file without intrinsics (and no --intrinsics): the default field of view.
        if "c2w" in media and "intrinsics" not in media and "intrinsics" not in call_kwargs:
            media = {**media, "intrinsics": intrinsics(cfg)}
        # One video, not a batch: the pipeline returns (frames, height, width, 3).
        return pipe(**call_kwargs, **media, **extra).frames

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if not cfg.inputs.get("camera_path"):
            return {}
        camera, typed = cfg.sampling.get("camera"), cfg.sampling.get("intrinsics")
        unused = f"; --camera {camera} not used" if camera else ""
        given = "" if typed is not None else f"; without intrinsics there: {intrinsics(cfg)}"
        return {"camera": f"c2w (and intrinsics, if the file has them) from --camera-path's first poses{given}{unused}"}

    tiny: ClassVar[dict[str, Any]] = {}


# -- tiny random-weight recipe -------------------------------------------------------------------


def tiny_sana_wm() -> Any:
    """SANA-WM at a tiny scale: two blocks (one gated-DeltaNet, one softmax) of width 32 on the
    tiny LTX-2 VAE (2x2x2, 4 latent channels) and the tiny Gemma-2 SANA-Video uses."""
    from diffusers import AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, SanaWMPipeline
    from diffusers import SanaWMTransformer3DModel as Transformer

    from vidgen.families import tiny_parts
    from vidgen.families.ltx2 import TINY_LTX2_VAE

    vae = AutoencoderKLLTX2Video(**TINY_LTX2_VAE).eval()
    transformer = Transformer(
        in_channels=4,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        linear_head_dim=16,
        softmax_every_n=2,
        # Plucker rays (6 values) for each frame a latent frame covers.
        chunk_plucker_channels=6 * vae.temporal_compression_ratio,
        chunk_plucker_post_attn_blocks=2,
        caption_channels=8,  # the tiny Gemma's hidden size
        image_size=32,
        mixed_precision="fp32",
    )
    # Zero-initialised layers (output projections, the camera branch's gates, as in training)
    # would let the prompt and the camera change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    tokenizer = tiny_parts.gemma_tokenizer()
    return SanaWMPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_gemma2(len(tokenizer)),
        vae=vae,
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


SanaWM.tiny = {"sana-wm": tiny_sana_wm}

FAMILIES = (SanaWM,)
