"""Peak VRAM and seconds per step of each memory plan on full-size models, on any CUDA machine.

The models are built from the published configs with random weights (the same layers and FLOPs
as the real checkpoints, no download), saved once to a temporary folder, and run through
`vidgen` itself, one fresh process per plan, so the figures are vidgen's own sidecar records
(`peak_memory_bytes` is torch.cuda.max_memory_allocated). Then `--memory auto --dry-run` shows
which plan vidgen picks for 24, 16 and 8 GiB cards.

    python benchmarks/gpu_memory.py --model cogvideox-2b --steps 5 --write
    python benchmarks/gpu_memory.py --model svd-xt --steps 5 --write
    python benchmarks/gpu_memory.py --model wan2.1-1.3b --steps 5 --write
    python benchmarks/gpu_memory.py --scale tiny     # CPU smoke test of the harness itself

Random weights make noise, not video: only memory and time mean anything here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
PROMPT = "a red fox running through fresh snow"
# (label, flags) in the order of the diffusers CogVideoX table, then vidgen's other rungs.
PLANS: dict[str, list[tuple[str, list[str]]]] = {
    "cogvideox-2b": [
        ("none", []),
        ("model offload", ["--offload", "model"]),
        ("model offload + tiling", ["--offload", "model", "--vae-tiling"]),
        ("group offload + streams + tiling", ["--offload", "group", "--offload-stream", "--vae-tiling"]),
        ("sequential + tiling", ["--offload", "sequential", "--vae-tiling"]),
        ("model offload + tiling + compile", ["--offload", "model", "--vae-tiling", "--compile"]),
    ],
    "svd-xt": [
        ("none", []),
        ("model offload", ["--offload", "model"]),
        ("model offload + chunking + decode 2", ["--offload", "model", "--forward-chunking", "--decode-chunk", "2"]),
        ("group offload + streams + decode 2", ["--offload", "group", "--offload-stream", "--decode-chunk", "2"]),
        ("sequential + decode 2", ["--offload", "sequential", "--decode-chunk", "2"]),
        ("model offload + decode 2 + compile", ["--offload", "model", "--decode-chunk", "2", "--compile"]),
    ],
    "wan2.1-1.3b": [
        ("none", []),
        ("model offload", ["--offload", "model"]),
        ("group offload + streams", ["--offload", "group", "--offload-stream"]),
        ("taylorseer cache + compile", ["--cache", "taylorseer", "--compile"]),
    ],
}
# The full-size run: command, dtype, and sampling as the published numbers were measured.
RUNS = {
    "cogvideox-2b": ("t2v", "fp16", ["--frames", "49", "--height", "480", "--width", "720"]),
    "svd-xt": ("i2v", "fp16", ["--frames", "25", "--height", "576", "--width", "1024"]),
    "wan2.1-1.3b": ("t2v", "bf16", ["--frames", "81", "--height", "480", "--width", "832"]),
}
# Each model's preset, and its tiny stand-in for the CPU smoke test.
PRESETS = {"cogvideox-2b": "cogvideox-2b", "svd-xt": "svd-xt", "wan2.1-1.3b": "wan2.1-t2v-1.3b"}
TINY = {"cogvideox-2b": "cogvideox", "svd-xt": "svd", "wan2.1-1.3b": "wan"}


def build_cogvideox_2b(folder: Path) -> None:
    """CogVideoX-2b from THUDM/CogVideoX-2b's published configs, random weights, fp16."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from vidgen.families.tiny_parts import t5_tokenizer as _t5_tokenizer

    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=30,
        attention_head_dim=64,
        in_channels=16,
        out_channels=16,
        time_embed_dim=512,
        text_embed_dim=4096,
        num_layers=30,
        sample_width=90,
        sample_height=60,
        sample_frames=49,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
        spatial_interpolation_scale=1.875,
        temporal_interpolation_scale=1.0,
        use_rotary_positional_embeddings=False,
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=4096,
            d_kv=64,
            d_ff=10240,
            num_layers=24,
            num_heads=64,
            feed_forward_proj="gated-gelu",
        )
    )
    pipe = CogVideoXPipeline(
        tokenizer=_t5_tokenizer(),
        text_encoder=text_encoder,
        vae=AutoencoderKLCogVideoX(),  # the defaults are CogVideoX's published VAE config
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)


def build_svd_xt(folder: Path) -> None:
    """SVD-XT from stabilityai's published configs (the diffusers defaults), random weights, fp16."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=1280,
            intermediate_size=5120,
            num_hidden_layers=32,
            num_attention_heads=16,
            patch_size=14,
            image_size=224,
            projection_dim=1024,
            hidden_act="gelu",
        )
    )
    pipe = StableVideoDiffusionPipeline(
        vae=AutoencoderKLTemporalDecoder(),
        image_encoder=image_encoder,
        unet=UNetSpatioTemporalConditionModel(num_frames=25),
        scheduler=EulerDiscreteScheduler(
            prediction_type="v_prediction", use_karras_sigmas=True, timestep_type="continuous", sigma_max=700.0
        ),
        feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
    )
    # The svd-xt preset loads the fp16 variant files, as the real repo has them.
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")


def build_wan_1_3b(folder: Path) -> None:
    """Wan 2.1 T2V 1.3B from the published configs (Wan-AI/Wan2.1-T2V-1.3B-Diffusers: 30 layers,
    12 heads of 128, ffn 8960; UMT5-XXL; the Wan VAE's defaults), random weights, bf16 with the VAE
    in fp32 as vidgen loads it."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from vidgen.families.tiny_parts import t5_tokenizer

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=12,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=8960,
        num_layers=30,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    )
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            d_model=4096,
            d_ff=10240,
            d_kv=64,
            num_heads=64,
            num_layers=24,
            vocab_size=256384,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=32,
        )
    )
    pipe = WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=text_encoder,
        vae=AutoencoderKLWan(),
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )
    pipe.to(torch.bfloat16)
    pipe.vae.to(torch.float32)
    pipe.save_pretrained(folder, safe_serialization=True)


BUILDERS = {"cogvideox-2b": build_cogvideox_2b, "svd-xt": build_svd_xt, "wan2.1-1.3b": build_wan_1_3b}


def vidgen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PLANS), default="cogvideox-2b")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--scale", choices=["full", "tiny"], default="full", help="tiny: CPU smoke test")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the model in this folder instead of a temp one")
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/README.md")
    args = parser.parse_args()
    import torch

    full = args.scale == "full"
    if full and not torch.cuda.is_available():
        sys.exit("gpu_memory.py needs a CUDA device (use --scale tiny for a CPU smoke test)")
    command, dtype, sampling = RUNS[args.model]
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VIDGEN_CACHE": str(work / "cache")}
        folder = args.keep or work / "model"
        if not full:
            model = "tiny:" + TINY[args.model]
            sampling, dtype = [], "fp32"
        elif not (folder / "model_index.json").is_file():
            print(f"building a random-weight {args.model} in {folder} ...", file=sys.stderr)
            BUILDERS[args.model](folder)
            model = str(folder)
        else:
            model = str(folder)
        inputs = [PROMPT] if command == "t2v" else [str(_image(work))]
        preset = PRESETS[args.model]
        if full:
            base = [command, *inputs, "--preset", preset, "--model", model, "--dtype", dtype, *sampling]
        else:
            base = [command, *inputs, "--preset", f"tiny-{model.removeprefix('tiny:')}"]
        base += ["--steps", str(args.steps), "--seed", "1"]
        if args.model == "cogvideox-2b":
            base += ["--no-vae-tiling", "--no-vae-slicing"]  # the preset's; the plans add them back
        rows = []
        for label, flags in PLANS[args.model]:
            if not full and any(flag.startswith("--offload") for flag in flags):
                continue  # offload needs CUDA
            out = work / f"{len(rows)}.mp4"
            result = vidgen(*base, *flags, "--out", str(out), "--quiet", env=env)
            if result.returncode != 0:
                rows.append((label, None, None, None, result.stderr.strip().splitlines()[-1]))
                continue
            record = json.loads(out.with_suffix(".json").read_text())
            per_step = record["timings"]["denoise"] / args.steps
            # The planner's estimate for these very settings, to check it against the measured peak.
            estimate = (record["optimizations"].get("memory") or {}).get("estimated_peak_bytes") or 0
            rows.append((label, record["peak_memory_bytes"] / 2**30, per_step, estimate / 2**30, ""))
        plans = []
        for budget in (24, 16, 8):
            result = vidgen(*base, "--memory", "auto", "--vram", str(budget), "--dry-run", "--json", env=env)
            body = json.loads(result.stdout) if result.returncode == 0 else {}
            memory = body.get("memory") or {}
            plans.append((budget, memory.get("flags"), (memory.get("estimated_peak_bytes") or 0) / 2**30))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (smoke test)"
    lines = [
        f"### {args.model}, random weights, {' '.join(sampling) or 'tiny sizes'}, {dtype}, {args.steps} steps "
        f"on {device}",
        "",
        "| plan | peak VRAM GiB | planner's estimate GiB | s/step | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for label, peak, per_step, estimate, note in rows:
        shown = ("-", "-", "-") if peak is None else (f"{peak:.2f}", f"{estimate:.2f}", f"{per_step:.2f}")
        lines.append(f"| {label} | {shown[0]} | {shown[1]} | {shown[2]} | {note} |")
    lines += ["", "| card | `--memory auto` picks | estimated GiB |", "| --- | --- | ---: |"]
    lines += [f"| {budget} GiB | `{flags}` | {estimate:.1f} |" for budget, flags, estimate in plans]
    table = "\n".join(lines)
    print(table)
    if args.write:
        with README.open("a", encoding="utf-8") as handle:
            handle.write("\n" + table + "\n")


def _image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "input.png"
    Image.new("RGB", (1024, 576), (200, 60, 40)).save(path)
    return path


if __name__ == "__main__":
    main()
