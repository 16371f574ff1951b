"""Kandinsky 6.0 Video (Kandinsky Lab): video with sound from text or a first image.

`Kandinsky6TI2VAPipeline` denoises the video (HunyuanVideo VAE latents, 4x8x8) and the sound
(MMAudio VAE latents) together in one multimodal transformer, prompted by Qwen2.5-VL and CLIP;
an image (i2v) conditions the first frame. The MMAudio VAE and vocoder turn the sound latents
into a mono waveform at the audio VAE's sample rate (44.1 kHz in the published checkpoints), which
vidgen muxes into the mp4 (AAC) or webm (Opus) it writes as it does LTX-2's, or drops with
--no-audio. The distilled checkpoints ship the few-step Piflow scheduler and run without guidance.
diffusers rounds off-grid frame counts with a warning; vidgen refuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    NO_FORWARD_CHUNKING,
    ONE_VIDEO_PER_CALL,
    Audio,
    Catch,
    Caught,
    Decoding,
    Family,
    Footprint,
    Generated,
    Grid,
    Loading,
    Memory,
    Mode,
    Previewing,
    Takes,
    merged,
    prompt_kwargs,
    sampling_kwargs,
    settings,
)
from vidgen.families.kandinsky5 import NEGATIVE
from vidgen.families.tiny_parts import redraw_zeros

PIPELINE = "Kandinsky6TI2VAPipeline"
# The pipeline attribute each step's audio latents pass through (see Kandinsky6.steps).
_AUDIO_HANDOVER = "vidgen_audio_latents"
DISTILLED = "kandinskylab/Kandinsky-6.0-Pro-distill-5s-Diffusers"
SFT = "kandinskylab/Kandinsky-6.0-Pro-sft-5s-Diffusers"
LITE = "kandinskylab/Kandinsky-6.0-Lite-5s-Diffusers"
_SAMPLING = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})
# The pipeline's own default and most: Qwen tokens after its chat template.
_MAX_SEQUENCE = 1024
# Parameter counts for the memory planner. The transformers: the published sizes (the model
# cards: "Lite (3B parameters) and Pro (29B parameters)"), not re-counted (no config is read
# offline). The MMAudio VAE and vocoder: diffusers' classes built on the meta device with their
# default (44.1 kHz) configs. Qwen2.5-VL-7B, CLIP ViT-L/14's text tower and the HunyuanVideo VAE
# as in kandinsky5.py.
_PRO = 29.0e9
_LITE = 3.0e9
_COMMON = {
    "text_encoder": 8.29e9,
    "text_encoder_2": 1.23e8,
    "vae": 2.46e8,
    "audio_vae": 0.305e9,
    "vocoder": 0.122e9,
}
_SIZES = {
    DISTILLED: {"transformer": _PRO, **_COMMON},
    SFT: {"transformer": _PRO, **_COMMON},
    LITE: {"transformer": _LITE, **_COMMON},
}


def passes(cfg: RunConfig) -> int:
    """Transformer passes per step: a second, unguided one when guidance is above 1."""
    guidance = cfg.sampling.guidance_scale
    return 2 if guidance is None or guidance > 1.0 else 1


class Kandinsky6(Family):
    name = "kandinsky6"
    title = "Kandinsky 6.0 Video"
    # One pipeline for both: an image conditions the first frame.
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(PIPELINE, DISTILLED, _SAMPLING, audio=True),
        "i2v": Mode(PIPELINE, DISTILLED, _SAMPLING, audio=True),
    }
    # The diffusers docs' example (the distilled Pro): 864x480, 121 frames at 24 fps, 16 steps,
    # guidance 1 (the Piflow scheduler runs without it).
    reference = merged(
        settings(size=(480, 864), frames=121, steps=16, guidance=1.0, fps=24),
        {"inputs": {"negative_prompt": NEGATIVE}},
    )
    # Checked on the tiny model (tests/test_kandinsky6.py). Offload needs CUDA (the pipeline
    # declares its model offload order).
    takes = Takes(
        optimizations=frozenset({"offload", "vae_tiling", "attention_backend", "fp8_storage", "cache"}),
        caches=frozenset({"taylorseer"}),
        schedulers={},
    )
    hints: ClassVar[dict[str, str]] = {
        "optimization.cache=faster": "FasterCache assumes a batched guided pass, and Kandinsky 6 runs two passes",
        "optimization.cache=first-block": (
            "vidgen looks for transformer_blocks, and Kandinsky 6's are visual_transformer_blocks; "
            "use --cache taylorseer"
        ),
        "optimization.cache=pab": "not checked on Kandinsky 6's transformer; use --cache taylorseer",
        "optimization.cache=magcache": "no magnitude ratios are published for Kandinsky 6; use --cache taylorseer",
        "optimization.decode_chunk_size": "its VAE decodes in one call; use --vae-tiling",
        "optimization.vae_slicing": ONE_VIDEO_PER_CALL,
        "optimization.attention_slicing": "it attends through diffusers' dispatcher; pick --attention-backend",
        "optimization.forward_chunking": NO_FORWARD_CHUNKING,
        "optimization.compile": "not checked on Kandinsky 6's transformer",
        "optimization.quantize": "not checked on Kandinsky 6's transformer",
        "model.scheduler": "Kandinsky 6 runs the scheduler its checkpoint ships (Piflow for the distilled ones)",
        "model.loras": "not checked on Kandinsky 6 yet",
    }
    loading = Loading(cuda_dtype="bf16")
    memory = Memory(
        Footprint(
            denoiser="transformer",
            # diffusers' default config (60 visual blocks of 4096), kept for every checkpoint:
            # the published configs are not read offline.
            blocks=60,
            sizes=_SIZES,
            spatial=8,
            temporal=4,
            patch=2,
            width=4096,
            live=10,
            decode=160,
            tiled=0.3,
        ),
        passes=passes,
        sliced=False,
    )
    # The HunyuanVideo VAE compresses 4 frames and 8x8 pixels; the transformer patches 2x2 latents.
    grid = Grid(frames=4, size=16)
    # The video's latents are caught on their way into `vae.decode` (already divided by the VAE's
    # scaling factor). The sound's never pass a method before the video decode, so they are caught
    # as the last step's callback hands them over (see `steps`), in the transformer's (batch,
    # length, channels) layout: a video decode that fails still keeps the sound, as with LTX-2.
    decoding = Decoding(
        latents="caught",
        catches={"latents": Catch("vae.decode"), "audio_latents": Catch(_AUDIO_HANDOVER, decodes=False)},
        needs=frozenset({"vae", "audio_vae", "vocoder"}),
    )
    previewing = Previewing(
        refused="Kandinsky 6 keeps its latents as (frames, height, width, channels) tokens with the reference "
        "frame appended; no preview yet"
    )

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        length = cfg.sampling.max_sequence_length
        if length is not None and length > _MAX_SEQUENCE:
            raise ConfigError(
                f"--set sampling.max_sequence_length={length} is too long for {self.title}: at most {_MAX_SEQUENCE}."
            )

    def call_kwargs(self, cfg: RunConfig, seed: int, frames: int | None = None) -> dict[str, Any]:
        kwargs = {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, self.modes[cfg.mode].sampling)}
        # The frame rate sets the sound's length: the file's.
        kwargs["frame_rate"] = float(cfg.output.fps or 24)
        kwargs["output_type"] = "np"
        return kwargs

    @contextmanager
    def steps(self, pipe: Any, on_step: Callable[[], None]) -> Iterator[dict[str, Any]]:
        # Each step's audio latents go through `pipe.<_AUDIO_HANDOVER>`, a pass-through the
        # latents catch wraps for the run (the last call counts: the final latents).
        setattr(pipe, _AUDIO_HANDOVER, _pass_through)

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            on_step()
            getattr(pipe, _AUDIO_HANDOVER)(tensors["audio_latents"])
            return tensors

        yield {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents", "audio_latents"]}

    def call(self, pipe: Any, cfg: RunConfig, call_kwargs: dict[str, Any], media: dict[str, Any], **extra: Any) -> Any:
        output = pipe(**call_kwargs, **media, **extra)
        return Generated(output.frames[0], audio_of(pipe, output.audio[0]))

    def decode(self, pipe: Any, cfg: RunConfig, caught: Caught) -> Any:
        # As the pipeline finishes: the VAE's video through its video processor; the audio VAE's
        # mel spectrogram through the vocoder, its first channel.
        video = pipe.vae.decode(caught.latents, *caught.args, **caught.kwargs)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
        if "audio_latents" not in caught.tensors:
            return frames
        # As the pipeline does after its loop: to (batch, channels, length), unscaled.
        audio_latents = caught.tensors["audio_latents"].permute(0, 2, 1)
        audio_latents = audio_latents.to(pipe.audio_vae.dtype) / pipe.audio_vae.config.scaling_factor
        mel = pipe.audio_vae.decode(audio_latents, return_dict=False)[0]
        waveform = pipe.vocoder(mel.to(pipe.vocoder.dtype), return_dict=False)[0][:, 0].float()
        return Generated(frames, audio_of(pipe, waveform[0]))


def _pass_through(tensor: Any) -> Any:
    return tensor


def audio_of(pipe: Any, samples: Any) -> Audio:
    """One video's mono waveform, shaped (1, samples), at the audio VAE's sample rate."""
    import numpy as np

    if hasattr(samples, "cpu"):
        samples = samples.float().cpu().numpy()
    return Audio(samples=np.asarray(samples, dtype=np.float32).reshape(1, -1), sample_rate=int(pipe.audio_sample_rate))


# -- tiny random-weight recipe (after diffusers' tests/pipelines/kandinsky6, offline tokenizers) --


def _transformer(text_dim: int) -> Any:
    from diffusers import Kandinsky6Transformer3DModel

    transformer = Kandinsky6Transformer3DModel(
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=text_dim,
        in_text_dim2=32,  # the CLIP hidden size
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=24,
        ff_dim=48,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 4, 4),
        visual_cond=True,
        in_audio_dim=4,
        out_audio_dim=4,
        visual_token_type_num_embeddings=2,
    )
    # The modulation layers start at zero (as in training), so every block would pass its input
    # through untouched and the prompt would change nothing: they are drawn at random instead.
    redraw_zeros(transformer)
    return transformer.eval()


def _decoders() -> dict[str, Any]:
    """The video VAE, the audio VAE and the vocoder."""
    from diffusers import AutoencoderKLHunyuanVideo, MMAudioVAE, MMAudioVocoder

    # Three levels, so the VAE's realised compression is the 4x8x8 it declares.
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8),
        down_block_types=("HunyuanVideoDownBlock3D",) * 3,
        up_block_types=("HunyuanVideoUpBlock3D",) * 3,
        layers_per_block=1,
        norm_num_groups=2,
        mid_block_add_attention=False,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        scaling_factor=0.476986,
    )
    # 16 kHz (ffmpeg's AAC encoder takes it) with 160 samples per mel frame, so the sound lasts
    # as long as the video as with the real 44.1 kHz one; the vocoder's upsampling makes the hop.
    audio_vae = MMAudioVAE(
        mel_bins=8,
        latent_channels=4,
        hidden_channels=8,
        channel_multipliers=(1, 2),
        layers_per_block=1,
        sample_rate=16000,
        n_fft=512,
        hop_length=160,
    )
    vocoder = MMAudioVocoder(
        num_mels=8,
        upsample_initial_channel=8,
        upsample_rates=(10, 16),
        upsample_kernel_sizes=(20, 32),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
    )
    return {"vae": vae.eval(), "audio_vae": audio_vae.eval(), "vocoder": vocoder.eval()}


def tiny() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky6TI2VAPipeline
    from diffusers.pipelines.kandinsky6 import pipeline_kandinsky6_ti2va as k6
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidgen.families.kandinsky5 import qwen_tokenizer
    from vidgen.families.tiny_parts import clip_tokenizer, qwen25_vl_encoder

    tokenizer = qwen_tokenizer(k6._PROMPT_TEMPLATE, k6._QWEN_CROP_START)
    qwen = qwen25_vl_encoder(tokenizer)
    tokenizer_2 = clip_tokenizer()
    clip = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer_2),
        projection_dim=32,
    )
    return Kandinsky6TI2VAPipeline(
        transformer=_transformer(qwen.config.text_config.hidden_size),
        text_encoder=qwen,
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModel(clip).eval(),
        tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        **_decoders(),
    )


Kandinsky6.tiny = {"kandinsky6": tiny}

FAMILIES = (Kandinsky6,)
