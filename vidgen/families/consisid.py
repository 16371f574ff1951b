"""ConsisID (PKU-YuanGroup): identity-preserving video from one photo of a face. CogVideoX-5B's
image-to-video transformer with a face branch: a local facial extractor and cross-attention
every second block, fed by the face's identity embedding (`id_cond`) and EVA-CLIP features
(`id_vit_hidden`).

`vidgen i2v FACE.png PROMPT --preset consisid` keeps that person's face through the clip. The
photo is IMAGE, as for any image-to-video model: ConsisID is one (its pipeline starts from the
face). vidgen runs the face preprocessing diffusers ships (pipelines/consisid/consisid_utils.py,
as the model card does): insightface's antelopev2 detector and identity embedding, facexlib's
alignment and face parsing, EVA02-CLIP-L; the pipeline then starts from the aligned face on white,
as diffusers' example passes it. Those models come from the model repo's face_encoder folder and
need `pip install insightface onnxruntime facexlib consisid_eva_clip opencv-python-headless
torchvision`; a run without them is refused before anything loads. Their weights are pickle files
(.pt/.pth), so the run needs --allow-pickle. They run before the pipeline loads: a photo where no
face is found is refused in one line before the transformer loads.

The tiny model (`tiny-consisid`) has no face models to run: a stand-in face encoder (a small
random network, `StandInFaces`) turns the photo into embeddings of the tiny transformer's shapes,
so another face still makes another video.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError, ModelError
from vidgen.families.base import (
    ONE_VIDEO_PER_CALL,
    SDPA_SLICING,
    Footprint,
    Grid,
    Loading,
    Memory,
    Mode,
    Takes,
    settings,
)
from vidgen.families.cogvideox import CogVideoX
from vidgen.families.tiny_parts import redraw_zeros

REPO = "BestWishYsh/ConsisID-preview"
# CogVideoX image-to-video's call arguments; the face's embeddings are passed beside them.
_SAMPLING = frozenset(
    {
        "num_frames",
        "num_inference_steps",
        "guidance_scale",
        "height",
        "width",
        "max_sequence_length",
        "use_dynamic_cfg",
        "eta",
    }
)
_T5_XXL = 4.76e9  # the T5 v1.1 XXL encoder, as every CogVideoX
# The face preprocessing's imports (module -> what to pip install): consisid_utils imports the
# first three at import time and cv2 and torchvision inside its functions.
FACE_PACKAGES = {
    "insightface": "insightface",
    "onnxruntime": "onnxruntime",
    "facexlib": "facexlib",
    "consisid_eva_clip": "consisid_eva_clip",
    "cv2": "opencv-python-headless",
    "torchvision": "torchvision",
}
# What `prepare_face_models` reads from the repo's face_encoder folder: EVA02-CLIP-L (a torch
# pickle), antelopev2's ONNX models, and facexlib's RetinaFace detector and BiSeNet parser, which
# facexlib would otherwise download from GitHub on first use (vidgen reads only what is named).
FACE_FILES = (
    "EVA02_CLIP_L_336_psz14_s6B.pt",
    "models/antelopev2/glintr100.onnx",
    "models/antelopev2/scrfd_10g_bnkps.onnx",
    "detection_Resnet50_Final.pth",
    "parsing_bisenet.pth",
)
# diffusers' consisid_utils raises exactly this when facexlib finds no face to align.
NO_FACE = "facexlib align face fail"
# Parameters: the transformer built on the meta device with the published config (42 blocks of
# 3072, the face branch: local facial extractor of depth 10 and 21 cross-attentions), 6.162B,
# plus its learned position table (54.6M values, saved with the weights): 6.217B, which is the
# published shards' 12.43 GB in bf16. The face models: EVA02-CLIP-L/14-336's vision tower (0.30B),
# RetinaFace-R50 and BiSeNet; antelopev2 runs under onnxruntime (an estimate, not a file count).
_SIZES = {REPO: {"transformer": 6.217e9, "text_encoder": _T5_XXL, "vae": 2.16e8, "face_encoder": 0.35e9}}


def _missing_packages() -> list[str]:
    return [package for module, package in FACE_PACKAGES.items() if importlib.util.find_spec(module) is None]


def is_tiny(cfg: RunConfig) -> bool:
    """The tiny model, whose faces the stand-in encodes."""
    return str(cfg.model.id or "").startswith("tiny:")


def _check_face_models(cfg: RunConfig) -> None:
    """The face preprocessing's packages, --allow-pickle and files, named before anything loads
    (--dry-run plans without them)."""
    missing = _missing_packages()
    if missing:
        raise ConfigError(
            f"ConsisID's face preprocessing needs {', '.join(missing)}, not installed here: "
            f"pip install {' '.join(missing)}"
            + (" (the torchvision build that matches your torch)" if "torchvision" in missing else "")
            + "; tiny-consisid runs without them."
        )
    if not cfg.model.allow_pickle:
        raise ModelError(
            f"ConsisID's face models ({cfg.model.id}/face_encoder: EVA02-CLIP, RetinaFace, BiSeNet) are pickle "
            "files (.pt, .pth), which can run code when loaded; pass --allow-pickle only if you trust their source."
        )
    folder = Path(str(cfg.model.id)).expanduser()
    if folder.is_dir():
        absent = [name for name in FACE_FILES if not (folder / "face_encoder" / name).is_file()]
        if absent:
            raise ModelError(
                f"{cfg.model.id} has no face_encoder/{absent[0]}"
                + (f" (and {len(absent) - 1} more face model files)" if len(absent) > 1 else "")
                + f"; ConsisID's face models come from the face_encoder folder of {REPO}."
            )


def _one_size(cfg: RunConfig, height: int, width: int) -> None:
    s = cfg.sampling
    if (s.height, s.width) != (height, width):
        raise ConfigError(
            f"{cfg.model.id} only makes {width}x{height} videos (its position embeddings are learned for that "
            f"size); use --width {width} --height {height}."
        )


# The face models of the last real model run, kept for its next video (a batch's).
_FACE_MODELS: dict[tuple[Any, ...], Any] = {}


def prepare_faces(cfg: RunConfig, media: dict[str, Any], device: str, dtype: str) -> dict[str, Any]:
    """The real face models' pipeline arguments, made before the pipeline loads so a photo
    without a face stops the run before the 6B transformer loads. The tiny model's stand-in runs
    with the pipeline instead (it takes the tiny transformer's shapes)."""
    if is_tiny(cfg):
        return {}
    _check_face_models(cfg)
    key = (str(cfg.model.id), cfg.model.revision, device, dtype)
    if key not in _FACE_MODELS:
        _FACE_MODELS.clear()  # one model's face models at a time
        _FACE_MODELS[key] = DiffusersFaces(cfg, device, dtype)
    return _FACE_MODELS[key].encode(media["image"])


class ConsisID(CogVideoX):
    name = "consisid"
    title = "ConsisID"
    modes: ClassVar[dict[str, Mode]] = {
        # The photo is the image to start from; it is letterboxed rather than cropped so no part
        # of the face is cut off before detection (the pipeline starts from the aligned face).
        "i2v": Mode("ConsisIDPipeline", REPO, _SAMPLING, defaults={"inputs": {"resize": "pad"}}),
    }
    # The model card and diffusers' example: 720x480, 49 frames, 50 steps, guidance 6 without
    # dynamic CFG, written at 8 fps; CogVideoX's 226-token prompts.
    reference = settings(
        size=(480, 720), frames=49, steps=50, guidance=6.0, fps=8, max_sequence_length=226, use_dynamic_cfg=False
    )
    # VAE tiling and fp8 storage checked on the tiny model (tests/test_consisid.py); offloading as
    # CogVideoX's (it needs CUDA). The transformer has no cache hooks.
    takes = Takes(optimizations=frozenset({"offload", "vae_tiling", "fp8_storage"}), caches=frozenset())
    hints: ClassVar[dict[str, str]] = {
        "optimization.attention_slicing": SDPA_SLICING,
        "optimization.decode_chunk_size": "the CogVideoX VAE decodes in tiles; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.cache": "ConsisID's transformer has no cache hooks in diffusers (no CacheMixin)",
        "optimization.compile": "not checked on ConsisID yet",
        "optimization.quantize": "not checked on ConsisID yet; use --fp8-storage",
        "optimization.forward_chunking": "its feed-forward layers take no chunking; use --offload model",
        "model.loras": "not checked on ConsisID yet",
    }
    # As CogVideoX-5B: trained in bf16. (CogVideoX's --text-encoder FILE is not checked here.)
    loading = Loading(cuda_dtype="bf16", prepare=prepare_faces)
    memory = Memory(
        Footprint(
            denoiser="transformer",
            blocks=42,
            sizes=_SIZES,
            temporal=4,
            patch=2,
            width=3072,
            live=10,
            decode=546,
            tiled=0.19,
        ),
        sliced=False,
    )
    # CogVideoX's VAE and patches: 4k+1 frames (49 -> 13 latent frames), sizes multiples of 16.
    grid = Grid(frames=4, size=16)

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        # The published checkpoint learned its positions for 720x480 only: refused before anything
        # downloads (check_loaded says it of any checkpoint whose configs are on disk).
        if cfg.model.id == REPO:
            _one_size(cfg, 480, 720)

    def check_loaded(self, pipe: Any, cfg: RunConfig, frames: int | None = None) -> None:
        # CogVideoX's rule, with the VAE's scale read from its config, so that it also runs on
        # the configs alone before loading (a folder, a cached or tiny model).
        config = pipe.transformer.config
        if getattr(config, "use_learned_positional_embeddings", False):
            scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
            _one_size(cfg, config.sample_height * scale, config.sample_width * scale)

    def latent_call(
        self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any
    ) -> Any:
        return pipe(**{**call_kwargs, "output_type": "latent"}, **stand_in(pipe, cfg, media), **extra).frames

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        return pipe(**call_kwargs, **stand_in(pipe, cfg, media), **extra).frames[0]

    def record(self, cfg: RunConfig, call_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        # The call gets the face's embeddings beside the recorded arguments: a plain call repeats
        # it with the same encoder's output.
        if is_tiny(cfg):
            how = (
                "id_cond and id_vit_hidden made from inputs.image by vidgen's stand-in face encoder "
                "(vidgen.families.consisid.StandInFaces) and passed with it"
            )
        else:
            how = (
                "id_cond, id_vit_hidden and image made from inputs.image by diffusers' consisid_utils."
                f"process_face_embeddings_infer(is_align_face=True) on prepare_face_models({cfg.model.id}) "
                "and passed instead of it: image is the aligned face on white, as diffusers' example passes it"
            )
        return {"run": how}

    tiny: ClassVar[dict[str, Any]] = {}


# -- the face encoders ---------------------------------------------------------------------------


def stand_in(pipe: Any, cfg: RunConfig, media: dict[str, Any]) -> dict[str, Any]:
    """The call's media with the stand-in's embeddings for the tiny model (made once per loaded
    pipeline); a real model's came from `ConsisID.prepare`."""
    if not is_tiny(cfg):
        return media
    encoder = getattr(pipe, "vidgen_faces", None)
    if encoder is None:
        encoder = pipe.vidgen_faces = StandInFaces(pipe.transformer.config)
    return encoder.media(media)


class StandInFaces:
    """Embeddings of the tiny transformer's shapes from a photo, by a small random network (seed
    0): the photo at 16x16 through one linear map to the identity vector and one per ViT scale to
    its tokens. It stands in for the face models (whose weights cannot be had offline) so that a
    tiny run's face changes its video, as a real one does."""

    TOKENS = 4
    SIDE = 16

    def __init__(self, config: Any) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        pixels = 3 * self.SIDE * self.SIDE
        self.scales = int(config.LFE_num_scale)
        self.vit = int(config.LFE_vit_dim)
        self.to_id = torch.randn(pixels, int(config.LFE_id_dim), generator=generator) / pixels**0.5
        self.to_vit = torch.randn(self.scales, pixels, self.TOKENS * self.vit, generator=generator) / pixels**0.5

    def encode(self, image: Any) -> tuple[Any, list[Any]]:
        """(id_cond, id_vit_hidden) of a PIL image."""
        import numpy as np
        import torch

        small = image.convert("RGB").resize((self.SIDE, self.SIDE))
        x = torch.from_numpy(np.asarray(small, dtype=np.float32) / 127.5 - 1.0).reshape(1, -1)
        id_cond = torch.tanh(x @ self.to_id)
        hidden = [torch.tanh(x @ self.to_vit[i]).reshape(1, self.TOKENS, self.vit) for i in range(self.scales)]
        return id_cond, hidden

    def media(self, media: dict[str, Any]) -> dict[str, Any]:
        id_cond, hidden = self.encode(media["image"])
        return {**media, "id_cond": id_cond, "id_vit_hidden": hidden}


def refuse_no_face(exc: RuntimeError) -> None:
    """diffusers' "facexlib align face fail" as the one-line input error it is; anything else
    goes on as it was."""
    if NO_FACE in str(exc):
        raise InputError(
            "no face found in the image: ConsisID keeps one person's face, so give a photo where a face is "
            "clearly visible (the model card suggests half-body or full-body)."
        ) from None


class DiffusersFaces:
    """diffusers' own face preprocessing (consisid_utils), on the models of the repo's
    face_encoder folder. Not run by vidgen's tests: the weights cannot be had offline."""

    def __init__(self, cfg: RunConfig, device: str, dtype: str) -> None:
        import torch
        from diffusers.pipelines.consisid import consisid_utils

        self.utils = consisid_utils
        self.device = torch.device(device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        root = _face_root(cfg)
        try:
            self.models = consisid_utils.prepare_face_models(str(root), device=self.device, dtype=self.dtype)
        except FileNotFoundError as exc:
            raise ModelError(f"ConsisID's face models could not be read from {root}: {exc}") from None

    def encode(self, image: Any) -> dict[str, Any]:
        """The pipeline arguments for a PIL photo: the aligned face on white as `image`, its
        `id_cond` and `id_vit_hidden`."""
        import numpy as np

        helper_1, helper_2, clip, main, mean, std = self.models
        try:
            id_cond, hidden, aligned, _kps = self.utils.process_face_embeddings_infer(
                helper_1, clip, helper_2, mean, std, main, self.device, self.dtype,
                np.asarray(image.convert("RGB")), is_align_face=True,
            )  # fmt: skip
        except RuntimeError as exc:
            refuse_no_face(exc)
            raise
        # The published transformer takes no keypoints (is_kps false), so they are not passed.
        return {"image": aligned, "id_cond": id_cond, "id_vit_hidden": hidden}


def _face_root(cfg: RunConfig) -> Path:
    """The folder holding face_encoder/: the model's own folder, or the Hub repo's snapshot of
    that folder alone (downloaded on first use, as the model's other files are)."""
    folder = Path(str(cfg.model.id)).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(cfg.model.id), revision=cfg.model.revision, allow_patterns=["face_encoder/*"]))


# -- tiny random-weight recipe -------------------------------------------------------------------


def tiny_consisid() -> Any:
    """ConsisID at a tiny scale, after diffusers' own test model: two blocks with learned positions
    for 16x16 pixels and the face branch (one ViT scale of width 8, cross-attention after every
    block), on a 4-channel CogVideoX VAE and the tiny T5 of tiny-cogvideox."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDPMScheduler,
        ConsisIDPipeline,
        ConsisIDTransformer3DModel,
    )

    from vidgen.families import tiny_parts

    tokenizer = tiny_parts.t5_tokenizer()
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    transformer = ConsisIDTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        is_train_face=True,
        is_kps=False,
        cross_attn_interval=1,
        cross_attn_dim_head=8,
        cross_attn_num_heads=2,
        LFE_id_dim=8,
        LFE_vit_dim=8,
        LFE_depth=1,
        LFE_dim_head=4,
        LFE_num_heads=2,
        LFE_num_id_token=1,
        LFE_num_querie=2,
        LFE_output_dim=21,
        LFE_ff_mult=1,
        LFE_num_scale=1,
    )
    # Zero-initialised layers (the face cross-attention's output, as in training) would let the
    # face change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    # The published scheduler's settings: v-prediction, trailing timesteps, zero terminal SNR.
    scheduler = CogVideoXDPMScheduler(
        prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True
    )
    return ConsisIDPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_parts.t5_encoder(tokenizer),
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=scheduler,
    )


ConsisID.tiny = {"consisid": tiny_consisid}

FAMILIES = (ConsisID,)
