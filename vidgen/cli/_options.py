"""Options shared by the generation commands, defined once.

Every option that a preset can also set defaults to None, so "not given" is distinguishable
from "given the default" and only flags the user typed override the preset.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import typer

from vidgen import families
from vidgen.config import Layer, set_layer
from vidgen.config.flags import (
    finish_steps,
    flag,
    from_flag_form,
    parse_condition_video,
    parse_keyframe,
    parse_lora,
    parse_numbers,
)
from vidgen.config.kinds import INPUT_KINDS, OUTPUT_KINDS

MODEL = "Model"
SAMPLING = "Sampling"
OPTIMIZE = "Memory and speed"
OUTPUT = "Output"
RUN = "Run"
INPUT = "Input"
FAMILY = "Model-specific"
ENHANCE = "Prompt enhancement"

Preset = Annotated[
    list[str] | None,
    typer.Option(
        "--preset",
        "-p",
        metavar="NAME|FILE",
        help="Preset name or YAML file; repeat to stack overlays. See `vidgen presets list`.",
        rich_help_panel=MODEL,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="ID|DIR",
        help="Hub repo id or local diffusers folder, overriding the preset's.",
        rich_help_panel=MODEL,
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
        metavar="KEY=VALUE",
        help="KEY=VALUE into the config, e.g. sampling.guidance_scale=6 (repeatable; highest precedence).",
        rich_help_panel=SAMPLING,
    ),
]
Device = Annotated[
    str | None, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N.", rich_help_panel=OPTIMIZE)
]
Memory = Annotated[
    Literal["manual", "auto"] | None,
    typer.Option(
        "--memory",
        help="auto: pick the fastest offload/decode plan that fits the GPU's free memory (see --dry-run).",
        rich_help_panel=OPTIMIZE,
    ),
]
Vram = Annotated[
    float | None,
    typer.Option("--vram", help="With --memory auto: plan for a card with this many GiB.", rich_help_panel=OPTIMIZE),
]
Offload = Annotated[
    Literal["none", "model", "sequential", "group"] | None,
    typer.Option(
        "--offload",
        help="Keep weights in CPU RAM and move them to the GPU as needed: whole models, "
        "layer by layer (sequential, least memory, slowest) or in groups of blocks.",
        rich_help_panel=OPTIMIZE,
    ),
]
OffloadType = Annotated[
    Literal["block", "leaf"] | None,
    typer.Option(
        "--offload-type", help="With --offload group: move one block or one layer at a time.", rich_help_panel=OPTIMIZE
    ),
]
OffloadStream = Annotated[
    bool | None,
    typer.Option(
        "--offload-stream/--no-offload-stream",
        help="With --offload group: overlap weight transfers with compute (needs ~2x model size in RAM).",
        rich_help_panel=OPTIMIZE,
    ),
]
AttentionSlicing = Annotated[
    bool | None,
    typer.Option(
        "--attention-slicing/--no-attention-slicing",
        help="Compute attention in slices (less memory, slower).",
        rich_help_panel=OPTIMIZE,
    ),
]
Fp8Storage = Annotated[
    bool | None,
    typer.Option(
        "--fp8-storage/--no-fp8-storage",
        help="Keep the denoiser's weights in float8, upcasting each layer as it runs (about half the memory).",
        rich_help_panel=OPTIMIZE,
    ),
]
Gpus = Annotated[
    int | None,
    typer.Option(
        "--gpus",
        min=1,
        help="Split one video over N GPUs (context parallelism; Wan, LTX...): one process per GPU.",
        rich_help_panel=OPTIMIZE,
    ),
]
ContextParallel = Annotated[
    str | None,
    typer.Option(
        "--context-parallel",
        help="How --gpus splits: ulysses (heads; default), ring (sequence) or unified (both).",
        rich_help_panel=OPTIMIZE,
    ),
]
RingDegree = Annotated[
    int | None,
    typer.Option(
        "--ring-degree",
        min=1,
        help="--context-parallel unified: GPUs in each ring (the rest split heads).",
        rich_help_panel=OPTIMIZE,
    ),
]
AttentionBackend = Annotated[
    str | None,
    typer.Option(
        "--attention-backend",
        help="diffusers attention backend (flash, sage, native, ...) for families that dispatch attention.",
        rich_help_panel=OPTIMIZE,
    ),
]
Cache = Annotated[
    str | None,
    typer.Option(
        "--cache",
        metavar="NAME[:T]",
        help="Reuse transformer outputs across steps: first-block[:THRESHOLD] (default 0.05), pab, faster, "
        "taylorseer, magcache[:THRESHOLD] (default 0.06) or magcache:calibrate (records the ratios "
        "--mag-ratios reads) (per family: vidgen models --optimizations).",
        rich_help_panel=OPTIMIZE,
    ),
]
MagRatios = Annotated[
    str | None,
    typer.Option(
        "--mag-ratios",
        metavar="FILE|LIST",
        help="MagCache's magnitude ratios for --cache magcache: the sidecar of a --cache magcache:calibrate run, "
        "or comma-separated numbers.",
        rich_help_panel=OPTIMIZE,
    ),
]
Quantize = Annotated[
    Literal["int8", "fp8", "nf4"] | None,
    typer.Option(
        "--quantize",
        help="Load the denoiser quantized (needs the vidgen[quantize] extra).",
        rich_help_panel=OPTIMIZE,
    ),
]
OomRetry = Annotated[
    bool | None,
    typer.Option(
        "--oom-retry/--no-oom-retry",
        help="On out-of-memory, retry the same seed with the next cheaper plan until one fits.",
        rich_help_panel=OPTIMIZE,
    ),
]
Audio = Annotated[
    bool | None,
    typer.Option(
        "--audio/--no-audio",
        help="Keep (default) or drop the sound of models that make it (LTX-2).",
        rich_help_panel=OUTPUT,
    ),
]
FINISH = "Finish (after generating)"
Interpolate = Annotated[
    str | None,
    typer.Option(
        "--interpolate",
        metavar="x2|x4|FPSfps",
        help="More frames in the same time with RIFE: a factor (2, x4) or a target rate (32fps); originals kept. "
        "Needs --interpolate-model.",
        rich_help_panel=FINISH,
    ),
]
InterpolateModel = Annotated[
    str | None,
    typer.Option(
        "--interpolate-model",
        metavar="FILE|REPO:PATH",
        help="RIFE weights (Practical-RIFE 4.25/4.26 IFNet, flownet.pkl or a .safetensors conversion); "
        "tiny:rife tries it offline with random weights.",
        rich_help_panel=FINISH,
    ),
]
Upscale = Annotated[
    str | None,
    typer.Option(
        "--upscale",
        metavar="FILE|REPO:PATH",
        help="Upscale every frame with a Real-ESRGAN network (SRVGGNetCompact or RRDBNet weights) or another "
        "architecture spandrel loads (SwinIR, HAT, DAT, ...); the file sets the factor. Or a Kandinsky6SRPipeline "
        "(folder, repo): diffusion super-resolution. tiny:realesrgan tries it offline. Runs after --interpolate.",
        rich_help_panel=FINISH,
    ),
]
UpscaleTile = Annotated[
    int | None,
    typer.Option(
        "--upscale-tile",
        min=0,
        max=8192,
        metavar="PX",
        help="Upscale in tiles of PX input pixels a side (default 512, or what fits the budget under --memory auto; "
        "0: whole frames), so big frames fit memory.",
        rich_help_panel=FINISH,
    ),
]
UpscaleScale = Annotated[
    float | None,
    typer.Option(
        "--upscale-scale",
        metavar="2|2.25|4",
        help="--upscale with a Kandinsky6SRPipeline: the factor (default 2).",
        rich_help_panel=FINISH,
    ),
]
UpscaleSteps = Annotated[
    int | None,
    typer.Option(
        "--upscale-steps",
        min=1,
        max=100,
        help="--upscale with a Kandinsky6SRPipeline: its denoising steps (default 4).",
        rich_help_panel=FINISH,
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
DecodeChunk = Annotated[
    int | None,
    typer.Option(
        "--decode-chunk",
        help="Frames the VAE decodes at once (SVD, I2VGen-XL); lower needs less memory.",
        rich_help_panel=OPTIMIZE,
    ),
]
Resize = Annotated[
    Literal["fit", "crop", "pad"] | None,
    typer.Option(
        "--resize",
        help="Bring the input to the model's size: crop (default) fills and trims the edges, "
        "pad fits inside and fills with --background, fit stretches.",
        rich_help_panel=INPUT,
    ),
]
Background = Annotated[
    str | None,
    typer.Option(
        "--background",
        help="Colour under transparent pixels and around --resize pad: a name or #rrggbb (default white).",
        rich_help_panel=INPUT,
    ),
]
InputFps = Annotated[
    float | None,
    typer.Option(
        "--input-fps",
        help="Resample the input video to this frame rate first (default: the output --fps).",
        rich_help_panel=INPUT,
    ),
]
MaxFrames = Annotated[
    int | None,
    typer.Option("--max-frames", help="Take at most this many frames of the input video.", rich_help_panel=INPUT),
]
MotionBucketId = Annotated[
    int | None,
    typer.Option("--motion-bucket-id", help="SVD: amount of motion, 0-1023 (default 127).", rich_help_panel=FAMILY),
]
NoiseAugStrength = Annotated[
    float | None,
    typer.Option(
        "--noise-aug-strength",
        help="SVD: noise added to the image; more gives more motion, less likeness (default 0.02).",
        rich_help_panel=FAMILY,
    ),
]
CondFps = Annotated[
    int | None,
    typer.Option(
        "--cond-fps",
        help="SVD: the frame rate the model is conditioned on (default 7); --fps sets the file's.",
        rich_help_panel=FAMILY,
    ),
]
MinGuidance = Annotated[
    float | None,
    typer.Option("--min-guidance", help="SVD: guidance at the first frame (default 1.0).", rich_help_panel=FAMILY),
]
MaxGuidance = Annotated[
    float | None,
    typer.Option("--max-guidance", help="SVD: guidance at the last frame (default 3.0).", rich_help_panel=FAMILY),
]
TargetFps = Annotated[
    int | None,
    typer.Option(
        "--target-fps",
        help="I2VGen-XL: the frame rate the model is conditioned on (default 16).",
        rich_help_panel=FAMILY,
    ),
]
Strength = Annotated[
    float | None,
    typer.Option(
        "--strength",
        help="How far to move away from the input video: 0 keeps it, 1 ignores it (default 0.8).",
        rich_help_panel=FAMILY,
    ),
]
BaseModel = Annotated[
    str | None,
    typer.Option(
        "--base-model",
        "--model",
        metavar="ID|DIR|FILE",
        help="SD 1.5 base: Hub repo id, diffusers folder, or a single .safetensors checkpoint file.",
        rich_help_panel=MODEL,
    ),
]
MotionAdapter = Annotated[
    str | None,
    typer.Option(
        "--motion-adapter",
        metavar="ID|DIR|FILE",
        help="AnimateDiff motion adapter: Hub repo id, diffusers folder or checkpoint file.",
        rich_help_panel=MODEL,
    ),
]
BaseConfig = Annotated[
    str | None,
    typer.Option(
        "--base-config",
        metavar="ID|DIR",
        help="Diffusers folder or Hub id with the configs of a single-file --base-model (works offline).",
        rich_help_panel=MODEL,
    ),
]
Scheduler = Annotated[
    Literal["ddim", "euler", "euler-a", "dpm++", "lcm", "unipc"] | None,
    typer.Option(
        "--scheduler",
        help="Sampler (unipc, euler, dpm++ on flow-matching families); options via "
        "--set model.scheduler_options.NAME=VALUE.",
        rich_help_panel=MODEL,
    ),
]
Lora = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        metavar="SPEC",
        help="LoRA as ID|FOLDER|FILE[:SCALE], e.g. ./zoom.safetensors:0.8 (repeatable; motion or style).",
        rich_help_panel=MODEL,
    ),
]
LoraHigh = Annotated[
    list[str] | None,
    typer.Option(
        "--lora-high",
        metavar="SPEC",
        help="LoRA for the high-noise expert only of a two-expert model (Wan 2.2 A14B), FILE[:SCALE].",
        rich_help_panel=MODEL,
    ),
]
LoraLow = Annotated[
    list[str] | None,
    typer.Option(
        "--lora-low",
        metavar="SPEC",
        help="LoRA for the low-noise expert only of a two-expert model (Wan 2.2 A14B), FILE[:SCALE].",
        rich_help_panel=MODEL,
    ),
]
Transformer = Annotated[
    str | None,
    typer.Option(
        "--transformer",
        metavar="FILE|REPO:PATH",
        help="The denoiser from one file: GGUF (Q8_0, Q4_K, ...) or safetensors in diffusers, original or "
        "ComfyUI layout, scaled fp8 included; the rest comes from the preset's model.",
        rich_help_panel=MODEL,
    ),
]
Transformer2 = Annotated[
    str | None,
    typer.Option(
        "--transformer-2",
        metavar="FILE|REPO:PATH",
        help="The second expert (low-noise transformer_2) of a two-expert model (Wan 2.2 A14B) from one file.",
        rich_help_panel=MODEL,
    ),
]
TextEncoder = Annotated[
    str | None,
    typer.Option(
        "--text-encoder",
        metavar="FILE|REPO:PATH",
        help="The text encoder from one file: GGUF (UMT5/T5/Llama, e.g. umt5-xxl-encoder-Q8_0.gguf) or "
        "safetensors in transformers' names (ComfyUI's, scaled fp8 included). transformers dequantizes a "
        "GGUF whole as it loads: it saves download and disk, not memory.",
        rich_help_panel=MODEL,
    ),
]
PreviewDecoder = Annotated[
    str | None,
    typer.Option(
        "--preview-decoder",
        metavar="FILE|REPO:PATH",
        help="--live-preview's decoder: TAEHV weights for the model's latents (taew2_1.safetensors for Wan 2.1, "
        "taehv for HunyuanVideo...; github.com/madebyollin/taehv); without it the model's own VAE at half size.",
        rich_help_panel=OUTPUT,
    ),
]
Keyframe = Annotated[
    list[str] | None,
    typer.Option(
        "--keyframe",
        metavar="FRAME:IMAGE[:STRENGTH]",
        help="LTX-Video, LTX-2, AnimateDiff SparseCtrl: this image at this frame (repeatable), e.g. 96:last.png.",
        rich_help_panel=INPUT,
    ),
]
ConditionVideo = Annotated[
    list[str] | None,
    typer.Option(
        "--condition-video",
        metavar="VIDEO[:FRAME]",
        help="LTX-Video, LTX-2: a clip whose frames start at FRAME (default 0).",
        rich_help_panel=INPUT,
    ),
]
PromptAt = Annotated[
    list[str] | None,
    typer.Option(
        "--prompt-at",
        help="FRAME:TEXT keyframe prompt for prompt travel, e.g. '24:a blooming rose' (repeatable), or @FILE: "
        "lines of FRAME: TEXT.",
        rich_help_panel=SAMPLING,
    ),
]
ContextLength = Annotated[
    int | None,
    typer.Option(
        "--context-length",
        help="FreeNoise window in frames: videos longer than the motion adapter's 32 frames.",
        rich_help_panel=FAMILY,
    ),
]
ContextStride = Annotated[
    int | None,
    typer.Option("--context-stride", help="FreeNoise: frames between windows (default 4).", rich_help_panel=FAMILY),
]
FreeInit = Annotated[
    int | None,
    typer.Option(
        "--free-init",
        help="FreeInit iterations for smoother motion; each one costs a full run.",
        rich_help_panel=FAMILY,
    ),
]
Preprocess = Annotated[
    Literal["none", "canny", "pose", "depth", "blur"] | None,
    typer.Option(
        "--preprocess",
        help="Make control maps from the frames: canny edges (needs opencv), pose or depth (need controlnet-aux), "
        "blur (a Gaussian blur, Cosmos Transfer's blur control), or none when the frames already are maps (default).",
        rich_help_panel=INPUT,
    ),
]
CannyLow = Annotated[
    int | None, typer.Option("--canny-low", help="Canny lower threshold (default 100).", rich_help_panel=INPUT)
]
CannyHigh = Annotated[
    int | None, typer.Option("--canny-high", help="Canny upper threshold (default 200).", rich_help_panel=INPUT)
]
ControlNet = Annotated[
    str | None,
    typer.Option(
        "--controlnet",
        metavar="NAME|ID|DIR",
        help="canny, pose, depth (the standard SD 1.5 ControlNets), a Hub repo id or a diffusers folder "
        "(SparseCtrl on animate: guoyww/animatediff-sparsectrl-scribble or -rgb).",
        rich_help_panel=MODEL,
    ),
]
ControlScale = Annotated[
    float | None,
    typer.Option("--control-scale", help="How strongly the control maps steer (default 1.0).", rich_help_panel=FAMILY),
]
Chunk = Annotated[
    int | None,
    typer.Option(
        "--chunk",
        help="Text2Video-Zero: frames per run after the first-frame anchor (less memory for long inputs).",
        rich_help_panel=FAMILY,
    ),
]
MotionFieldX = Annotated[
    float | None,
    typer.Option(
        "--motion-field-x", help="Text2Video-Zero: horizontal motion per frame (default 12).", rich_help_panel=FAMILY
    ),
]
MotionFieldY = Annotated[
    float | None,
    typer.Option(
        "--motion-field-y", help="Text2Video-Zero: vertical motion per frame (default 12).", rich_help_panel=FAMILY
    ),
]
T0 = Annotated[
    int | None, typer.Option("--t0", help="Text2Video-Zero: motion timestep t0 (default 44).", rich_help_panel=FAMILY)
]
T1 = Annotated[
    int | None,
    typer.Option(
        "--t1", help="Text2Video-Zero: motion timestep t1 (default 47; needs --steps > t1).", rich_help_panel=FAMILY
    ),
]
ImageGuidance = Annotated[
    float | None,
    typer.Option(
        "--image-guidance",
        help="InstructPix2Pix: how closely to keep the input frames (default 1.5).",
        rich_help_panel=FAMILY,
    ),
]
EnhancePrompt = Annotated[
    bool | None,
    typer.Option(
        "--enhance-prompt/--no-enhance-prompt",
        help="Rewrite the prompt into a detailed one with an instruct LLM first (the sidecar keeps both); "
        "with --dry-run, print the rewritten prompt only.",
        rich_help_panel=ENHANCE,
    ),
]
Enhancer = Annotated[
    str | None,
    typer.Option(
        "--enhancer",
        metavar="ID|DIR",
        help="The LLM --enhance-prompt runs: a Hub id or a local transformers folder with a chat template "
        "(default Qwen/Qwen2.5-7B-Instruct; LTX-2 uses its own Gemma; tiny:llm offline).",
        rich_help_panel=ENHANCE,
    ),
]
EnhancerSeed = Annotated[
    int | None,
    typer.Option(
        "--enhancer-seed",
        help="Seed of the LLM's sampling (default: the run's --seed).",
        rich_help_panel=ENHANCE,
    ),
]
PromptsFile = Annotated[
    str | None,
    typer.Option(
        "--prompts-file",
        metavar="FILE",
        help="Run every line of a text file as a prompt (a resumable batch into --out; see vidgen batch).",
        rich_help_panel=RUN,
    ),
]
Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        metavar="PATH",
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
ProgressFormat = Annotated[
    Literal["rich", "json"],
    typer.Option(
        "--progress",
        help="rich: lines on a terminal; json: NDJSON phase and step events on stderr.",
        rich_help_panel=RUN,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or status on stderr.", rich_help_panel=RUN)]

# Typer parameter name -> config path, for every option that feeds the config.
PARAMS = {
    "prompt": "inputs.prompt",
    "image": "inputs.image",
    "video": "inputs.video",
    "negative": "inputs.negative_prompt",
    "resize": "inputs.resize",
    "background": "inputs.background",
    "input_fps": "inputs.input_fps",
    "max_frames": "inputs.max_frames",
    "model": "model.id",
    "revision": "model.revision",
    "dtype": "model.dtype",
    "allow_pickle": "model.allow_pickle",
    "motion_adapter": "model.motion_adapter",
    "base_config": "model.base_config",
    "transformer": "model.transformer",
    "transformer_2": "model.transformer_2",
    "text_encoder": "model.text_encoder",
    "enhancer": "model.enhancer",
    "enhance_prompt": "inputs.enhance_prompt",
    "enhancer_seed": "inputs.enhancer_seed",
    "preview_decoder": "model.preview_decoder",
    "scheduler": "model.scheduler",
    "lora": "model.loras",
    "prompt_at": "inputs.prompts",
    "preprocess": "inputs.preprocess",
    "canny_low": "inputs.canny_low",
    "canny_high": "inputs.canny_high",
    "controlnet": "model.controlnet",
    "control_scale": "sampling.controlnet_conditioning_scale",
    "chunk": "sampling.chunk",
    "motion_field_x": "sampling.motion_field_strength_x",
    "motion_field_y": "sampling.motion_field_strength_y",
    "t0": "sampling.t0",
    "t1": "sampling.t1",
    "image_guidance": "sampling.image_guidance_scale",
    "context_length": "sampling.context_length",
    "context_stride": "sampling.context_stride",
    "free_init": "sampling.free_init_iters",
    "frames": "sampling.num_frames",
    "steps": "sampling.num_inference_steps",
    "guidance": "sampling.guidance_scale",
    "height": "sampling.height",
    "width": "sampling.width",
    "seed": "sampling.seed",
    "num_videos": "sampling.num_videos",
    "motion_bucket_id": "sampling.motion_bucket_id",
    "noise_aug_strength": "sampling.noise_aug_strength",
    "cond_fps": "sampling.fps",
    "min_guidance": "sampling.min_guidance_scale",
    "max_guidance": "sampling.max_guidance_scale",
    "target_fps": "sampling.target_fps",
    "strength": "sampling.strength",
    "device": "optimization.device",
    "memory": "optimization.memory",
    "vram": "optimization.vram_gb",
    "offload": "optimization.offload",
    "offload_type": "optimization.offload_type",
    "offload_stream": "optimization.offload_stream",
    "vae_tiling": "optimization.vae_tiling",
    "vae_slicing": "optimization.vae_slicing",
    "forward_chunking": "optimization.forward_chunking",
    "decode_chunk": "optimization.decode_chunk_size",
    "attention_slicing": "optimization.attention_slicing",
    "fp8_storage": "optimization.fp8_storage",
    "attention_backend": "optimization.attention_backend",
    "compile_": "optimization.compile",
    "cache": "optimization.cache",
    "mag_ratios": "optimization.mag_ratios",
    "quantize": "optimization.quantize",
    "oom_retry": "optimization.oom_retry",
    "gpus": "optimization.gpus",
    "context_parallel": "optimization.context_parallel",
    "ring_degree": "optimization.ring_degree",
    "audio": "output.audio",
    "out": "output.path",
    "format_": "output.format",
    "fps": "output.fps",
    "crf": "output.crf",
    "codec": "output.codec",
    "overwrite": "output.overwrite",
}


# Output kinds' switches by config field (--save-latents -> save_latents).
OUTPUT_SWITCHES = {kind.switch for kind in OUTPUT_KINDS.values() if kind.switch}

# On/off flags whose "off" means "not given", so presets can still turn them on.
SWITCHES = ("overwrite", *(k.switch for k in OUTPUT_KINDS.values() if k.switch and not k.negatable))


# --lora-high / --lora-low -> the expert their LoRAs target; they join --lora in one list.
LORA_EXPERTS = {"lora_high": "high", "lora_low": "low"}


# `every` output kinds' interval options (--live-preview-every) -> the switch they set.
EVERY_OPTIONS = {f"{kind.switch}_every": kind for kind in OUTPUT_KINDS.values() if kind.switch and kind.every_flag}


def output_option(name: str) -> tuple[object, object]:
    """The Typer switch of an output kind (config/kinds.py), named by its config field."""
    kind = OUTPUT_KINDS[name]
    assert kind.switch and kind.flag
    if kind.negatable:
        option = typer.Option(f"{kind.flag}/--no-{kind.flag[2:]}", help=kind.help, rich_help_panel=OUTPUT)
        return Annotated[bool | None, option], None
    return Annotated[bool, typer.Option(kind.flag, help=kind.help, rich_help_panel=OUTPUT)], False


def every_option(name: str) -> tuple[object, object]:
    """The interval option of an output kind written every N steps (--live-preview-every N)."""
    kind = OUTPUT_KINDS[name]
    assert kind.every_flag
    text = (
        f"{kind.flag} every N denoising steps (as the progress counts them), whatever they cost, instead of "
        f"every {kind.every} while they take under a tenth of the run's time."
    )
    return Annotated[int | None, typer.Option(kind.every_flag, metavar="N", help=text, rich_help_panel=OUTPUT)], None


def input_option(field: str) -> tuple[object, object]:
    """The Typer option of an input kind (config/kinds.py), named by its config field."""
    kind = INPUT_KINDS[field]
    kind_type = list[str] | None if kind.many else str | None
    option = typer.Option(kind.flag, metavar=kind.metavar, help=kind.help, rich_help_panel=INPUT)
    return Annotated[kind_type, option], None


def input_params(mode: str) -> dict[str, tuple[object, object]]:
    """Typer options for the input kinds some family takes in `mode` (a command places the
    built-in ones where its --help lists them; any other kind joins here)."""
    return {
        kind.field: input_option(kind.field)
        for kind in INPUT_KINDS.values()
        if not kind.positional and any(kind.path in family.accepts(mode) for family in families.FAMILIES.values())
    }


def prompt_params(mode: str) -> dict[str, tuple[object, object]]:
    """--prompt-at, on the commands of modes that some family with prompt travel runs."""
    taken = any(f.takes.prompts and "inputs.prompts" in f.accepts(mode) for f in families.FAMILIES.values())
    return {"prompt_at": (PromptAt, None)} if taken else {}


def read_prompt_map(items: list[str]) -> list[str]:
    """--prompt-at items with each @FILE replaced by its lines (FRAME: TEXT; blank lines and
    lines starting with # skipped), the prompt travel file AnimateDiff's users write. Only a flag
    typed now names a file to read; a manifest or preset holds the map itself."""
    from pathlib import Path

    from vidgen.core.errors import InputError
    from vidgen.core.limits import MAX_MANIFEST_BYTES, read_text

    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        text = read_text(Path(item[1:]).expanduser(), MAX_MANIFEST_BYTES, "--prompt-at file", InputError)
        lines = [line.strip() for line in text.splitlines()]
        out += [line for line in lines if line and not line.startswith("#")]
    return out


def family_params(mode: str) -> dict[str, tuple[object, object]]:
    """Typer options for the options the families of `mode` declare (families/base.py `Option`),
    named by their config field; the help says which families take each."""
    params: dict[str, tuple[object, object]] = {}
    for field, (option, titles) in families.mode_options(mode).items():
        text = f"{option.help} [{', '.join(titles)}]"
        kind = Annotated[option.type | None, typer.Option(option.flag, help=text, rich_help_panel=FAMILY)]
        params[field] = (kind, None)
    return params


def _lora_layer(params: dict[str, object]) -> Layer | None:
    """--lora, --lora-high and --lora-low together as one model.loras list."""
    loras: list[dict[str, object]] = []
    given = []
    for name, expert in (("lora", None), *LORA_EXPERTS.items()):
        for spec in params.get(name) or []:  # type: ignore[attr-defined]
            loras.append(parse_lora(str(spec), expert))
            given.append(name)
    if not loras:
        return None
    label = "cli:" + "+".join(dict.fromkeys(f"--{name.replace('_', '-')}" for name in given))
    return Layer(label=label, data={"model": {"loras": loras}}, origin=label.removeprefix("cli:"))


def finish_layer(params: dict[str, object]) -> Layer | None:
    """--interpolate and --upscale (with their weights and tile options) as the output.finish chain."""
    steps = finish_steps(params)
    if not steps:
        return None
    given = [flag for flag in ("--interpolate", "--upscale") if params.get(flag.lstrip("-")) is not None]
    label = "cli:" + "+".join(given)
    return Layer(label=label, data={"output": {"finish": steps}}, origin=label.removeprefix("cli:"))


def _conditions_layer(params: dict[str, object]) -> Layer | None:
    """--keyframe and --condition-video together as one inputs.conditions list."""
    keyframes = [parse_keyframe(str(spec)) for spec in params.get("keyframe") or []]  # type: ignore[attr-defined]
    clips = [parse_condition_video(str(spec)) for spec in params.get("condition_video") or []]  # type: ignore[attr-defined]
    if not keyframes and not clips:
        return None
    given = [name for name, items in (("--keyframe", keyframes), ("--condition-video", clips)) if items]
    label = "cli:" + "+".join(given)
    return Layer(label=label, data={"inputs": {"conditions": keyframes + clips}}, origin=label.removeprefix("cli:"))


def flag_layers(params: dict[str, object]) -> list[Layer]:
    """One layer per option actually given (so sources name the flag), then --set on top.

    `params` is the command's `ctx.params`; options left at None (or an off switch such as
    --overwrite) were not given and leave the lower layers alone.
    """
    layers = []
    for name, value in params.items():
        # Repeatable options arrive as empty lists when not given.
        if value in (None, [], ()) or (name in SWITCHES and value is False) or name in ("lora", *LORA_EXPERTS):
            continue
        if name in PARAMS:
            path = PARAMS[name]
        elif name in INPUT_KINDS:
            path = INPUT_KINDS[name].path
        elif name in OUTPUT_SWITCHES or name in EVERY_OPTIONS:
            switched = _output_switch(name, value, params)
            if switched is None:
                continue
            path, value, label = switched
            section, key = path.split(".", 1)
            layers.append(Layer(label=f"cli:{label}", data={section: {key: value}}, origin=label))
            continue
        elif name in families.OPTIONS:
            path = families.OPTIONS[name].path
        else:
            continue
        section, key = path.split(".", 1)
        label = flag(path)
        # Only a flag typed now may name a file to read the ratios from; files hold the list.
        if name == "mag_ratios":
            value = read_mag_ratios(str(value))
        else:
            value = from_flag_form(path, read_prompt_map(list(value)) if name == "prompt_at" else value)  # type: ignore[call-overload]
        layers.append(Layer(label=f"cli:{label}", data={section: {key: value}}, origin=label))
    lora = _lora_layer(params)
    if lora is not None:
        layers.append(lora)
    conditions = _conditions_layer(params)
    if conditions is not None:
        layers.append(conditions)
    chain = finish_layer(params)
    if chain is not None:
        layers.append(chain)
    if params.get("set_"):
        layers.append(set_layer(params["set_"]))  # type: ignore[arg-type]
    return layers


def _output_switch(name: str, value: object, params: dict[str, object]) -> tuple[str, object, str] | None:
    """(config path, value, flag) of an output kind's switch or interval option, None when
    another option gives the value: `--live-preview` asks for "auto" (its kind's own interval,
    within a share of the run's time) unless `--live-preview-every N` gives one."""
    if name in EVERY_OPTIONS:
        kind = EVERY_OPTIONS[name]
        return f"output.{kind.switch}", value, str(kind.every_flag)
    kind = next(k for k in OUTPUT_KINDS.values() if k.switch == name)
    if kind.every is None:
        return f"output.{name}", value, flag(f"output.{name}")
    if params.get(f"{name}_every") is not None:
        return None
    return f"output.{name}", "auto", str(kind.flag)


def read_mag_ratios(given: str) -> list[float]:
    """--mag-ratios: comma-separated numbers, or a JSON file holding them: the sidecar of a
    --cache magcache:calibrate run (optimizations.magcache_calibration.mag_ratios) or a list."""
    import json
    from pathlib import Path

    from vidgen.core.errors import InputError
    from vidgen.core.limits import MAX_SIDECAR_BYTES, read_text

    path = Path(given).expanduser()
    if not path.exists() and ("," in given or re.fullmatch(r"\s*[\d.eE+-]+\s*", given)):
        # Not a file: numbers, or a list that is not one (a,b), said so, not "cannot read file a,b".
        return parse_numbers(given, "--mag-ratios")
    try:
        data = json.loads(read_text(path, MAX_SIDECAR_BYTES, "--mag-ratios file", InputError))
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"--mag-ratios {given} is not JSON; give a calibration run's sidecar or numbers.") from None
    if isinstance(data, dict):
        data = ((data.get("optimizations") or {}).get("magcache_calibration") or {}).get("mag_ratios")
    if not isinstance(data, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
        raise InputError(
            f"--mag-ratios {given} holds no MagCache ratios; give the sidecar of a --cache magcache:calibrate run."
        )
    return [float(x) for x in data]
