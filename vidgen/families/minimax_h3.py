"""MiniMax-H3 (MiniMaxAI): video with stereo sound from one transformer, at 24 fps for 5-15 s.

diffusers' MiniMaxH3ModularPipeline denoises the text, the keyframes, the sound and the video
as one packed sequence, so the sound comes out of the same denoising loop as the picture: `vidgen
t2v` runs its `t2va` workflow, `vidgen i2v IMAGE [--last-image LAST]` its `fl2va` one (the video
starts from IMAGE and, with --last-image, ends on LAST; both are stretched onto the canvas as
diffusers does). The checkpoint is guidance-distilled: no guidance and no negative prompt, one
transformer pass per step. Frames are 17n+5 (124 to 345: 5 to 15 s at 24 fps) and sizes
multiples of 32, refused before loading rather than rounded. The sound (32 kHz stereo) is muxed
into the mp4 (AAC) or webm (Opus) as LTX-2's is, or dropped with --no-audio.

`vidgen t2v PROMPT --reference FILE ...` runs its `ref2va` workflow on the checkpoint's other
transformer (`transformer_ref/`): up to 12 pictures (9 at most), videos (3, each with its sound)
and sounds (3, never alone), in an order that means something: the prompt names them <Picture 1>,
<Video 1>, <Audio 1> in the order given (a video's sound is the <Audio j> just before it).
vidgen reads each as the pipeline takes it: a video at 24 fps, no longer than the run, brought
down to the canvas of its own aspect ratio by ffmpeg's Lanczos as it is decoded (the reference
implementation's route, which diffusers passes through untouched), and every sound at the audio
VAE's 32 kHz, resampled by ffmpeg (diffusers would need torchaudio for it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from vidgen.config.kinds import InputKind, register_input
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError, ModelError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Audio,
    Decoding,
    Family,
    Footprint,
    Generated,
    Grid,
    Loading,
    Memory,
    Mode,
    Modular,
    Previewing,
    Takes,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)

PIPELINE = "MiniMaxH3ModularPipeline"
# diffusers' docs (api/pipelines/minimax_h3.md): ModularPipeline.from_pretrained("MiniMaxAI/MiniMax-H3").
REPO = "MiniMaxAI/MiniMax-H3"
_CALL = frozenset({"num_frames", "num_inference_steps", "height", "width"})
FPS = 24
# The video VAE encodes 17 frames per chunk and keeps 5 latent frames of each: 17n+5 frames.
_CHUNK, _KEPT = 17, 5
# 5 to 15 s at 24 fps, on that grid: 124 (n=7) to 345 (n=20).
SHORTEST, LONGEST = 124, 345
# Parameter counts for the memory planner. The transformer and both VAEs: diffusers' classes
# built on the meta device with their default configs (the published shapes; the transformer's
# 33.12e9 is the docs' 61.7 GB in bf16). The Qwen3-VL conditioner: the docs' 62.1 GB in bf16.
_SIZES = {
    REPO: {
        "transformer": 33.123e9,
        # ref2va's partition: the same class and shapes (one of the two loads, by workflow).
        "transformer_ref": 33.123e9,
        "text_encoder": 33.34e9,
        "vae": 2.604e9,
        "audio_vae": 0.151e9,
    },
}
_NO_GUIDANCE = "MiniMax-H3 is guidance-distilled: guidance is in its weights, one pass per step"
# ref2va's limits, as diffusers' setup step and the model card give them.
_MOST = {"image": 9, "video": 3, "audio": 3}
_MOST_IN_ALL = 12
# The audio VAE's rate, which every reference sound is brought to.
SAMPLE_RATE = 32000
# The released checkpoint's canvas rule (its pipeline config), which a video reference is put on.
_SHORT_EDGE, _MAX_PIXELS, _MULTIPLE = 768, 768 * 1344, 32
# The conditioner reads a reference video at 2 fps in pairs of frames: 13 frames at 24 fps at least.
_SHORTEST_REFERENCE = 13
_NAMES = {"image": "picture", "video": "video", "audio": "sound"}


def latent_frames(frames: int) -> int:
    """The video VAE's latent frames for a 17n+5-frame video: 5n+2."""
    return (frames - _KEPT) // _CHUNK * _KEPT + 2


def nearest_frames(frames: int) -> str:
    """The valid frame counts either side of `frames`, for messages."""
    low = max(SHORTEST, min(LONGEST, (frames - _KEPT) // _CHUNK * _CHUNK + _KEPT))
    high = low + _CHUNK if low < frames and low < LONGEST else None
    return " or ".join(str(n) for n in (low, high) if n is not None)


def _aspect_ok(width: int, height: int) -> bool:
    return width <= 4 * height and height <= 4 * width


def fit(width: int, height: int) -> tuple[int, int]:
    """The size a video reference's frames are decoded at: the canvas of its own aspect ratio
    (the pipeline's rule, at the released checkpoint's 768 px short edge), never up from its own."""
    if not _aspect_ok(width, height):
        return width, height  # refused by `check_references`, once read
    from vidgen.core.libs import quiet

    quiet()  # before diffusers' modular blocks import torchao, which warns on a CPU build
    from diffusers.modular_pipelines.minimax_h3.modular_pipeline import resolve_canvas_size

    canvas_height, canvas_width = resolve_canvas_size(width, height, _MULTIPLE, _SHORT_EDGE, _MAX_PIXELS)
    return (canvas_width, canvas_height) if canvas_width * canvas_height < width * height else (width, height)


def check_references(read: list[tuple[str, Any]]) -> None:
    """ref2va's rules on its references, as read: how many of each kind, a sound never alone,
    pictures and videos within 1:4 to 4:1, a video long enough for the conditioner."""
    kinds = [medium.kind for _, medium in read]
    for kind, most in _MOST.items():
        if kinds.count(kind) > most:
            raise InputError(f"--reference gives {kinds.count(kind)} {_NAMES[kind]}s; MiniMax-H3 takes at most {most}.")
    if len(kinds) > _MOST_IN_ALL:
        raise InputError(f"--reference gives {len(kinds)} files; MiniMax-H3 takes at most {_MOST_IN_ALL} in all.")
    if kinds and set(kinds) == {"audio"}:
        raise InputError(
            "--reference gives only sounds; MiniMax-H3 takes a sound beside at least one picture or video."
        )
    for ref, medium in read:
        width, height = medium.image.size if medium.kind == "image" else (0, 0)
        if medium.kind == "video":
            height, width = medium.frames.shape[1:3]
            if len(medium.frames) < _SHORTEST_REFERENCE:
                raise InputError(
                    f"--reference {ref} gives {len(medium.frames)} frame(s) at {FPS} fps; MiniMax-H3 reads a "
                    f"reference video in pairs of frames at 2 fps: give at least {_SHORTEST_REFERENCE} "
                    f"({_SHORTEST_REFERENCE / FPS:.2f} s)."
                )
        if medium.kind != "audio" and not _aspect_ok(width, height):
            raise InputError(
                f"--reference {ref} is {width}x{height}; MiniMax-H3 takes references from 1:4 to 4:1. Crop it first."
            )


register_input(
    InputKind(
        "references",
        "--reference",
        "media",
        "MiniMax-H3: a picture, video (with its sound) or sound to make the video from; repeat it in the "
        "order the prompt names them: <Picture 1>, <Video 1>, <Audio 1> (up to 9 pictures, 3 videos, 3 sounds).",
        "FILE",
        many=True,
        sample_rate=SAMPLE_RATE,
        fit=fit,
        check=check_references,
    )
)


# A reference picture's rows, priced before it is read: a 16:9 picture at its own 2048 px short edge.
_PICTURE_ROWS = 2048 * 3648 // (_MULTIPLE * _MULTIPLE)
_PICTURES = (".png", ".jpg", ".jpeg", ".webp")
_SOUNDS = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac", ".opus")


class _Packed(Memory):
    """One forward sees every latent frame (5n+2 for 17n+5 frames); the sound's and the text's
    rows are a few hundred beside tens of thousands of video rows. ref2va packs each reference's
    block ahead of them: a video's as many rows as the generated video's at most (cut to its
    length, on a canvas no larger), a picture's those of a 16:9 picture at 2048 px (a sound's few),
    counted here in the run's latent frames, by each file's suffix."""

    def latent_frames(self, cfg: RunConfig, frames: int) -> int:
        own = latent_frames(frames)
        rows = max((cfg.sampling.height or 768) // _MULTIPLE * ((cfg.sampling.width or 1344) // _MULTIPLE), 1)
        extra = 0
        for ref in cfg.inputs.get("references") or []:
            suffix = "." + str(ref).rsplit(".", 1)[-1].lower()
            if suffix in _PICTURES or str(ref).startswith(("http://", "https://")):
                extra += -(-_PICTURE_ROWS // rows)
            elif suffix not in _SOUNDS:
                extra += own
        return own + extra


class MiniMaxH3(Family):
    name = "minimax-h3"
    title = "MiniMax-H3"
    # A ModularPipeline has no enable_model_cpu_offload; accelerate's per-layer hooks are not
    # checked on it: --offload group.
    modes: ClassVar[dict[str, Mode]] = {
        # With --reference: the ref2va workflow (`loading.modular.triggers`).
        "t2v": Mode(
            PIPELINE,
            REPO,
            _CALL,
            inputs=frozenset({"references"}),
            audio=True,
            model_offload=False,
            sequential_offload=False,
        ),
        "i2v": Mode(
            PIPELINE,
            REPO,
            _CALL,
            inputs=frozenset({"last_image"}),
            audio=True,
            model_offload=False,
            sequential_offload=False,
        ),
    }
    # diffusers' docs: its own 16:9 canvas (1344x768, the 768 px short edge), 124 frames (its
    # num_frames default, 5 s) at 24 fps, 50 steps (the blocks' default; counted as sigma grid
    # points, so 49 transformer passes).
    reference = settings(size=(768, 1344), frames=SHORTEST, steps=50, fps=FPS)
    takes = Takes(optimizations=frozenset({"offload", "fp8_storage"}), caches=frozenset(), schedulers={})
    hints: ClassVar[dict[str, str]] = {
        "sampling.guidance_scale": _NO_GUIDANCE,
        "inputs.negative_prompt": f"{_NO_GUIDANCE}, so no negative prompt",
        "model.scheduler": "MiniMax-H3 steps the video and the sound on its own two schedulers (shift 12 and 3)",
        "model.loras": "not checked on MiniMax-H3 yet",
        "optimization.cache": "not checked on MiniMax-H3's packed sequence yet",
        "optimization.attention_backend": "not checked on MiniMax-H3 yet",
        "optimization.quantize": "not checked on MiniMax-H3 yet (diffusers' docs load it int8 with torchao by hand)",
        "optimization.compile": "not checked on MiniMax-H3 yet",
        "optimization.vae_tiling": "not checked on MiniMax-H3's VAE yet",
        "optimization.decode_chunk_size": "MiniMax-H3's VAE decodes in its own 17-frame chunks",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "MiniMax-H3 attends through diffusers' dispatcher",
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "inputs.reference_images": "MiniMax-H3 takes pictures, videos and sounds with --reference, on vidgen t2v",
        "inputs.references": "MiniMax-H3 takes --reference on vidgen t2v (its ref2va workflow)",
    }
    loading = Loading(
        cuda_dtype="bf16",
        modular=Modular(
            "MiniMaxH3Blocks",
            output=("videos", "audio", "sampling_rate"),
            workflows={"t2v": "t2va", "i2v": "fl2va"},
            triggers={"references": "ref2va"},
        ),
        # ref2va runs the checkpoint's other transformer partition.
        denoisers=("transformer", "transformer_ref"),
    )
    memory = _Packed(
        Footprint(
            denoiser="transformer",
            # The published transformer: 50 blocks of 5376.
            blocks=50,
            sizes=_SIZES,
            spatial=16,
            temporal=3,
            patch=2,
            width=5376,
            live=10,
            # The VAE decodes with a 36-layer transformer; taken as Wan's working set, unmeasured.
            decode=120,
            tiled=0.3,
            guided=False,
        ),
        sliced=False,
    )
    # Sizes on the VAE's 16 px and the 2x2 patches; frames checked in `check` (17n+5, 5-15 s).
    grid = Grid(size=32, note="17n+5 frames")
    decoding = Decoding(latents=None)
    previewing = Previewing(refused="MiniMax-H3 denoises one packed sequence of text, sound and video rows")

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        frames = cfg.sampling.num_frames
        if frames is not None and (frames % _CHUNK != _KEPT or not SHORTEST <= frames <= LONGEST):
            raise ConfigError(
                f"--frames {frames} does not fit {self.title}: it makes 17n+5 frames, {SHORTEST} to {LONGEST} "
                f"(5 to 15 s at {FPS} fps); nearest valid: {nearest_frames(frames)}."
            )
        fps = cfg.output.fps
        if fps is not None and fps != FPS:
            raise ConfigError(
                f"--fps {fps} does not fit {self.title}: it makes {FPS} fps video, and its sound is timed to it."
            )
        if cfg.inputs.negative_prompt is not None:
            raise ConfigError(f"--negative does not fit {self.title}: {_NO_GUIDANCE}.")
        offload = cfg.optimization.offload
        if offload in ("model", "sequential"):
            why = (
                "a modular pipeline has no model offload"
                if offload == "model"
                else "accelerate's per-layer hooks are not checked on it"
            )
            raise ConfigError(f"--offload {offload} does not fit {self.title}: {why}; use --offload group.")

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL)}
        kwargs["output_type"] = "np"
        return kwargs

    def step_count(self, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any] | None = None) -> int:
        # num_inference_steps counts sigma grid points, the final 0 included: one step fewer.
        return max(int(call_kwargs.get("num_inference_steps", 0)) - 1, 0)

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        modular = self.loading.modular
        assert modular is not None
        if "references" in media:
            _check_reads_video(pipe, media["references"])
            media = {**media, "references": references(media["references"])}
        out = pipe(**call_kwargs, **media, **extra, output=list(modular.output))
        return Generated(out["videos"][0], sound(out["audio"][0], out["sampling_rate"]))


def _check_reads_video(pipe: Any, read: list[Any]) -> None:
    """A reference video reaches the conditioner through its processor's video processor:
    MiniMax-H3's Qwen3VLProcessor has one (transformers builds it on torchvision); a model whose
    processor has none cannot read a video."""
    processor = getattr(pipe, "processor", None)
    if any(medium.kind == "video" for medium in read) and getattr(processor, "video_processor", None) is None:
        raise ModelError(
            f"this model's processor ({type(processor).__name__}) reads no video, so it cannot take a --reference "
            "video; MiniMax-H3's own (Qwen3VLProcessor, with torchvision installed) does."
        )


def references(read: list[Any]) -> list[Any]:
    """diffusers' reference objects for the pictures, videos and sounds vidgen read
    (vidgen.io.inputs.Medium), in their order: videos at their 24 fps and sounds at 32 kHz,
    stated, so the pipeline resamples nothing."""
    import torch
    from diffusers.modular_pipelines.minimax_h3 import (
        MiniMaxH3AudioReference,
        MiniMaxH3ImageReference,
        MiniMaxH3VideoReference,
    )

    def waveform(samples: Any) -> Any:
        return None if samples is None else torch.tensor(samples, dtype=torch.float32)

    made: list[Any] = []
    for medium in read:
        if medium.kind == "image":
            made.append(MiniMaxH3ImageReference(image=medium.image))
        elif medium.kind == "video":
            made.append(
                MiniMaxH3VideoReference(
                    frames=medium.frames,
                    fps=medium.fps,
                    audio=waveform(medium.audio),
                    sample_rate=medium.sample_rate,
                )
            )
        else:
            made.append(MiniMaxH3AudioReference(audio=waveform(medium.audio), sample_rate=medium.sample_rate))
    return made


def sound(samples: Any, sample_rate: int) -> Audio:
    """One video's stereo waveform, shaped (2, samples), at the audio VAE's sample rate."""
    import numpy as np

    if hasattr(samples, "cpu"):
        samples = samples.float().cpu().numpy()
    return Audio(samples=np.asarray(samples, dtype=np.float32), sample_rate=int(sample_rate))


# -- tiny random-weight recipe ---------------------------------------------------------------


def _qwen3_vl(tokenizer: Any) -> Any:
    """A Qwen3-VL of hidden size 16 with 51 text layers: MiniMax-H3 reads hidden_states[50] and
    refuses a conditioner with fewer layers. A one-block vision tower of 16 px patches."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    def token(name: str) -> int:
        return tokenizer.convert_tokens_to_ids(f"<|{name}|>")

    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 51,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "vocab_size": len(tokenizer),
        "rope_scaling": {"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True},
        "rope_theta": 1e6,
        "pad_token_id": 0,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    vision = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 16,
        "deepstack_visual_indexes": [0],
    }
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token("image_pad"),
        video_token_id=token("video_pad"),
        vision_start_token_id=token("vision_start"),
        vision_end_token_id=token("vision_end"),
    )
    return Qwen3VLForConditionalGeneration(config).eval()


def _processor(tokenizer: Any) -> Any:
    """The conditioner's processor. The real one is a Qwen3VLProcessor, which builds a video
    processor that needs torchvision even when only images and text pass through it (transformers
    5.x cannot make or load one without); the blocks only ask it for its image processor and the
    token types of a prompt (ProcessorMixin's), which ColQwen2Processor (Qwen2-VL's image
    processor and `<|image_pad|>`, no video processor) answers alike, from the PIL image
    processor."""
    from transformers import ColQwen2Processor, Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, min_pixels=32 * 32, max_pixels=64 * 64)
    return ColQwen2Processor(image_processor=images, tokenizer=tokenizer)


def _decoders() -> tuple[Any, Any]:
    """The video VAE (the real 16x compression, 4 latent channels, a one-layer decoder) and the
    audio VAE (the real 800-sample hop at 32 kHz)."""
    from diffusers import AutoencoderKLMiniMaxH3, AutoencoderKLMiniMaxH3Audio

    vae = AutoencoderKLMiniMaxH3(
        latent_channels=4,
        block_out_channels=(8,) * 6,
        layers_per_block=1,
        norm_num_groups=4,
        decoder_num_layers=1,
        decoder_num_attention_heads=2,
        decoder_attention_head_dim=8,
        decoder_num_register_tokens=1,
        decoder_ffn_mult=1,
        latents_mean=(0.0,) * 4,
        latents_std=(1.0,) * 4,
    )
    # The decoder halves its channels at each of its 7 upsamplings: 128 is the least that leaves one.
    audio_vae = AutoencoderKLMiniMaxH3Audio(
        encoder_dim=4,
        latent_dim=8,
        latent_channels=4,
        num_attention_heads=2,
        decoder_dim=128,
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1,),),
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    return vae.eval(), audio_vae.eval()


def _transformer(seed: int) -> Any:
    """A one-block transformer of width 32 (two heads of 16, rotary over 12 of them)."""
    import torch
    from diffusers import MiniMaxH3Transformer3DModel

    transformer = MiniMaxH3Transformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        hidden_size=32,
        num_layers=1,
        num_refiner_layers=1,
        ffn_dim=32,
        in_channels=4,
        audio_in_channels=4,
        text_dim=16,  # the Qwen3-VL hidden size
        time_embed_hidden_dim=32,
        time_embed_dim=16,
        rope_freq_dim=2,
    )
    # Zero-initialised output and gate layers (as in training) would make every prompt alike:
    # drawn at random instead. Even so the 31 text rows, among ~600 rows of noise, barely move
    # the picture (under 1/255): the block's modulation is drawn larger (wide gates) and its
    # query/key norms sharpened, so that the prompt shows in the frames and the sound.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "adaln_proj" in name:
                parameter.normal_(0.0, 1.0, generator=generator)
            elif not parameter.any():
                parameter.normal_(0.0, 0.2, generator=generator)
            if "attn.norm_q" in name or "attn.norm_k" in name:
                parameter.mul_(4.0)
    return transformer.eval()


def tiny() -> Any:
    """MiniMax-H3 at a tiny scale: two one-block transformers (the t2va/fl2va partition and the
    ref2va one, drawn apart), a video VAE of the real 16x compression with 4 latent channels and
    a one-layer decoder, an audio VAE of the real 800-sample hop at 32 kHz, the Qwen3-VL above
    with Hunyuan's offline letter-level Qwen2 tokenizer, and the two schedulers at shift 12 and
    3. Its canvas rule is scaled down with it (a 32 px short edge, pictures at 64), so
    references stay small."""
    import diffusers
    from diffusers import MiniMaxH3Scheduler

    from vidgen.families.hunyuan15 import qwen2_tokenizer
    from vidgen.families.tiny_parts import ModularSaved

    tokenizer = qwen2_tokenizer()
    qwen = _qwen3_vl(tokenizer)
    vae, audio_vae = _decoders()
    pipe = diffusers.MiniMaxH3Blocks().init_pipeline()
    pipe.update_components(
        transformer=_transformer(0),
        transformer_ref=_transformer(1),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=qwen,
        tokenizer=tokenizer,
        processor=_processor(tokenizer),
        scheduler=MiniMaxH3Scheduler(shift=12.0),
        audio_scheduler=MiniMaxH3Scheduler(shift=3.0),
    )
    pipe.register_to_config(canvas_short_edge=32, canvas_max_pixels=32 * 64, reference_image_short_edge=64)
    return ModularSaved(pipe)


MiniMaxH3.tiny = {"minimax-h3": tiny}

FAMILIES = (MiniMaxH3,)
