"""Wan 2.1 / 2.2 on tiny models: experts, options, LoRAs per expert, latents, --model, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, sidecar

# Most tests here run a tiny pipeline: their tier unless marked otherwise (see conftest.py).
DEFAULT_TIER = "pipeline"

FOX = ("t2v", "a fox in snow")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((*FOX, "--preset", "tiny-wan", "--frames", "80"), ("--frames 80", "4k+1", "77 or 81")),
        ((*FOX, "--preset", "tiny-wan", "--width", "840"), ("--width 840", "multiples of 16", "832 or 848")),
        ((*FOX, "--preset", "tiny-wan-ti2v", "--width", "48"), ("--width 48", "multiples of 32", "32 or 64")),
        ((*FOX, "--preset", "tiny-wan", "--guidance-2", "3"), ("--guidance-2", "Wan 2.2 A14B (t2v, i2v)")),
        ((*FOX, "--preset", "tiny-wan", "--lora-low", "low.safetensors"), ("--lora-low", "one denoiser")),
        ((*FOX, "--preset", "tiny-wan22", "--cache", "faster"), ("--cache faster", "taylorseer", "FasterCache")),
        ((*FOX, "--preset", "tiny-wan", "--scheduler", "ddim"), ("--scheduler ddim", "unipc, euler, dpm++")),
        ((*FOX, "--preset", "tiny-cogvideox", "--flow-shift", "5"), ("--flow-shift", "Wan 2.1 (t2v, i2v)")),
    ],
)
def test_bad_wan_input_is_one_line_exit_3_and_writes_nothing(tmp_path: Path, args: tuple, needles: tuple) -> None:
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


def test_frames_and_sizes_beyond_the_models_position_table_are_refused_before_loading(tmp_path: Path) -> None:
    before = files_under(tmp_path)
    from vidgen.models import tiny

    # The tiny transformer's rotary table covers 32 latent frames (the real ones 1024). The
    # check reads the model's config files, so nothing loads first (no "loading" status line)
    # once the tiny models exist (they are built on first use, by loading).
    tiny.ensure("wan"), tiny.ensure("skyreels")
    for args, needles in (
        (("--frames", "129"), ("--frames 129", "at most 125")),
        (("--width", "832"), ("--width 832", "at most 512")),
        (("--height", "1024", "--preset", "tiny-skyreels"), ("--height 1024", "at most 512")),
    ):
        result = cli(*FOX, "--preset", "tiny-wan", *args)
        one_line_error(result, 3, *needles)
        assert "loading" not in result.stderr.lower(), result.stderr
    assert files_under(tmp_path) == before


def test_last_image_on_an_image_to_video_only_model_is_refused_before_denoising(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (16, 16), (9, 9, 9)).save(name)
    before = files_under(tmp_path)
    result = cli("i2v", "a.png", "a fox", "--preset", "tiny-wan-i2v", "--last-image", "b.png")
    one_line_error(result, 3, "--last-image", "first-last-frame", "tiny-wan-flf2v")
    assert files_under(tmp_path) == before
    # A family without first-last-frame models refuses it before loading anything.
    result = cli("i2v", "a.png", "a fox", "--preset", "tiny-cogvideox-i2v", "--last-image", "b.png")
    one_line_error(result, 3, "--last-image is not used by CogVideoX i2v", "Wan 2.1 (i2v)")


def test_last_image_changes_the_video_and_is_recorded(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 80, 40)).save("a.png")
    Image.new("RGB", (16, 16), (20, 80, 240)).save("b.png")
    Image.new("RGB", (16, 16), (240, 240, 20)).save("c.png")
    base = ("i2v", "a.png", "a fox", "--preset", "tiny-wan-flf2v", "--seed", "1")
    assert cli(*base, "--last-image", "b.png", "--out", "b.mp4").exit_code == 0
    assert cli(*base, "--last-image", "c.png", "--out", "c.mp4").exit_code == 0
    data = sidecar(tmp_path / "b.json")
    assert data["inputs"]["last_image"]["sha256"] == hashlib.sha256(Path("b.png").read_bytes()).hexdigest()
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.image", "last_image": "inputs.last_image"}
    assert np.abs(decode(tmp_path / "b.mp4")[0].astype(int) - decode(tmp_path / "c.mp4")[0].astype(int)).max() > 2


def test_two_expert_options_reach_both_transformers(tmp_path: Path) -> None:
    result = cli(
        *FOX, "--preset", "tiny-wan22", "--guidance-2", "3", "--fp8-storage", "--compile", "--cache", "taylorseer",
        "--seed", "2", "--out", "v.mp4",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "v.json")
    calls = [call["method"] for call in data["optimizations"]["calls"]]
    for expert in ("transformer", "transformer_2"):
        for method in ("enable_layerwise_casting", "enable_cache", "compile_repeated_blocks"):
            assert f"{expert}.{method}" in calls
    assert data["model"]["denoisers"] == ["transformer", "transformer_2"]
    assert data["pipeline"]["call_kwargs"]["guidance_scale_2"] == 3.0
    assert data["sources"]["sampling.guidance_scale_2"] == "cli:--guidance-2"
    # The tiny preset inherits the family's A14B t2v shift; the sidecar says how it was set up.
    assert data["pipeline"]["setup"] == [
        {"method": "scheduler = UniPCMultistepScheduler.from_config", "kwargs": {"flow_shift": 12.0}}
    ]
    assert data["model"]["dtypes"] == {"default": "fp32", "vae": "fp32"}


def test_guidance_2_changes_the_low_noise_half(tmp_path: Path) -> None:
    base = (*FOX, "--preset", "tiny-wan22", "--seed", "2", "--steps", "4")
    assert cli(*base, "--guidance-2", "1", "--out", "a.mp4").exit_code == 0
    assert cli(*base, "--guidance-2", "9", "--out", "b.mp4").exit_code == 0
    a, b = decode(tmp_path / "a.mp4")[0], decode(tmp_path / "b.mp4")[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() > 2


def _wan_lora(path: Path, seed: int, experts: int = 1) -> Path:
    """A PEFT LoRA for the tiny Wan transformer, saved as diffusers saves LoRAs."""
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vidgen.families.wan import tiny_transformer

    torch.manual_seed(seed)
    transformer = tiny_transformer()
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    state = get_peft_model_state_dict(transformer)
    path.mkdir()
    WanPipeline.save_lora_weights(path, transformer_lora_layers=state)
    return path / "pytorch_lora_weights.safetensors"


def test_lora_pair_goes_one_file_per_expert_and_is_recorded(tmp_path: Path) -> None:
    high, low = _wan_lora(tmp_path / "high", 1), _wan_lora(tmp_path / "low", 2)
    base = (*FOX, "--preset", "tiny-wan22", "--seed", "4")
    assert cli(*base, "--out", "plain.mp4").exit_code == 0
    result = cli(*base, "--lora-high", f"{high}:1.0", "--lora-low", f"{low}:0.5", "--out", "pair.mp4")
    assert result.exit_code == 0, result.stderr
    loras = sidecar(tmp_path / "pair.json")["model"]["loras"]
    assert [(r["path"], r["scale"], r["into"]) for r in loras] == [
        (str(high), 1.0, ["transformer"]),
        (str(low), 0.5, ["transformer_2"]),
    ]
    assert loras[1]["sha256"] == hashlib.sha256(low.read_bytes()).hexdigest()
    plain, pair = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "pair.mp4")[0]
    assert np.abs(plain.astype(int) - pair.astype(int)).max() > 2
    # One --lora goes into both experts.
    assert cli(*base, "--lora", str(high), "--out", "both.mp4").exit_code == 0
    (both,) = sidecar(tmp_path / "both.json")["model"]["loras"]
    assert both["into"] == ["transformer", "transformer_2"]


@pytest.mark.parametrize(("preset", "mode"), [("tiny-wan", "t2v"), ("tiny-cogvideox", "t2v")])
def test_saved_latents_decode_to_the_same_video(tmp_path: Path, preset: str, mode: str) -> None:
    result = cli(mode, "a fox", "--preset", preset, "--seed", "6", "--save-latents", "--format", "png", "--out", "a/")
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "a" / "t2v-a-fox-6.latents.safetensors"
    assert saved.is_file()
    result = cli("decode", str(saved), "--format", "png", "--out", "b/")
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    ours = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "a" / "t2v-a-fox-6").glob("*.png"))]
    again = [np.asarray(Image.open(p)) for p in sorted(Path(result.stdout.strip()).glob("*.png"))]
    assert len(ours) == len(again) == 9
    assert all((x == y).all() for x, y in zip(ours, again, strict=True))
    assert np.std(ours) > 0
    # Another seed's latents decode to another video.
    assert cli(mode, "a fox", "--preset", preset, "--seed", "7", "--format", "png", "--out", "c/").exit_code == 0
    other = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "c" / "t2v-a-fox-7").glob("*.png"))]
    assert any((x != y).any() for x, y in zip(ours, other, strict=True))


def test_decode_out_of_memory_on_wan_keeps_the_latents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vidgen.run import runner

    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr(runner, "_injected", {})
    result = cli(*FOX, "--preset", "tiny-wan", "--seed", "3", "--out", "v.mp4")
    one_line_error(result, 6, "during decode", "vidgen decode")
    assert (tmp_path / "v.latents.safetensors").is_file()
    assert not (tmp_path / "v.mp4").exists()
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    assert cli("decode", "v.latents.safetensors").exit_code == 0
    assert decode(tmp_path / "v.mp4")[0].shape[0] == 9


def test_model_folder_picks_the_family_and_a_mismatched_preset_names_both(tmp_path: Path, tiny_cache: Path) -> None:
    from vidgen.models import tiny

    folder = tiny.ensure("wan22")
    # The family's 1280x720 is beyond the tiny transformer's positions (refused even in a dry
    # run, from its config): plan a size it can make.
    result = cli(*FOX, "--model", str(folder), "--height", "16", "--width", "16", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    plan = json.loads(result.stdout)
    assert plan["config"]["model"]["family"] == "wan2.2"
    assert plan["sources"]["model.family"] == "model:model_index.json"
    run = cli(
        *FOX, "--model", str(folder), "--steps", "2", "--frames", "5", "--height", "16", "--width", "16",
        "--set", "sampling.max_sequence_length=16", "--seed", "1", "--out", "m.mp4",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert sidecar(tmp_path / "m.json")["pipeline"]["class"] == "WanPipeline"
    one_line_error(cli(*FOX, "--preset", "tiny-cogvideox", "--model", str(folder)), 3, "Wan 2.2 A14B", "CogVideoX")
    one_line_error(cli(*FOX, "--model", str(tiny.ensure("wan-i2v"))), 3, "vidgen i2v")


@pytest.mark.unit
def test_memory_auto_plans_every_wan_preset_offline(tmp_path: Path) -> None:
    for preset in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "wan2.2-ti2v-5b"):
        result = cli("t2v", "x", "--preset", preset, "--memory", "auto", "--vram", "24", "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert "# memory auto:" in result.stdout
    result = cli("t2v", "x", "--preset", "wan2.2-t2v-a14b", "--memory", "auto", "--vram", "24", "--dry-run")
    # Both experts are priced; offloaded, only one is on the card at a time.
    assert "transformer 26.6, transformer_2 26.6" in result.stdout


def test_magcache_runs_with_the_checkpoints_published_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vidgen.families import wan

    one_line_error(
        cli(*FOX, "--preset", "tiny-wan", "--cache", "magcache"), 3, "magnitude ratios", "Wan2.1-T2V-1.3B-Diffusers"
    )
    one_line_error(cli(*FOX, "--preset", "tiny-wan22", "--cache", "magcache"), 3, "both experts")
    # Random tiny weights have no published ratios: the test lends them the 1.3B's (data, not
    # code), so the real MagCache hook runs and skips steps.
    monkeypatch.setitem(wan.MAG_RATIOS, "tiny:wan", wan.MAG_RATIOS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"])
    base = (*FOX, "--preset", "tiny-wan", "--seed", "3", "--steps", "10")
    assert cli(*base, "--out", "plain.mp4").exit_code == 0
    result = cli(*base, "--cache", "magcache", "--out", "mag.mp4")
    assert result.exit_code == 0, result.stderr
    (call,) = [
        c for c in sidecar(tmp_path / "mag.json")["optimizations"]["calls"] if c["method"].endswith("enable_cache")
    ]
    shown = call["kwargs"]["config"]["MagCacheConfig"]
    assert (shown["num_inference_steps"], shown["threshold"], shown["max_skip_steps"]) == (10, 0.12, 4)
    plain, mag = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "mag.mp4")[0]
    assert np.abs(plain.astype(int) - mag.astype(int)).max() > 0


def test_attention_backend_reaches_every_expert_and_missing_kernels_are_named(tmp_path: Path) -> None:
    from vidgen.core.errors import ConfigError
    from vidgen.models import optimize

    result = cli(*FOX, "--preset", "tiny-wan22", "--attention-backend", "flex", "--seed", "1", "--out", "v.mp4")
    assert result.exit_code == 0, result.stderr
    calls = sidecar(tmp_path / "v.json")["optimizations"]["calls"]
    assert [c["method"] for c in calls if "attention" in c["method"]] == [
        "transformer.set_attention_backend",
        "transformer_2.set_attention_backend",
    ]
    # On a GPU these come before any weights load; here they are called directly, as no CUDA
    # device lets a run get that far.
    with pytest.raises(ConfigError, match="offline"):
        optimize.check_backend("flash_hub")
    # SageAttention is not installed here (nor on CI), which is what a user without it sees.
    with pytest.raises(ConfigError, match="needs the sageattention package"):
        optimize.check_backend("sage")


def test_quantize_covers_both_experts_and_the_text_encoder(tmp_path: Path) -> None:
    result = cli(*FOX, "--preset", "tiny-wan22", "--quantize", "int8", "--seed", "1", "--out", "q.mp4")
    assert result.exit_code == 0, result.stderr
    (call,) = [c for c in sidecar(tmp_path / "q.json")["optimizations"]["calls"] if c["method"] == "from_pretrained"]
    assert set(call["kwargs"]["quantization_config"]["quant_mapping"]) == {
        "transformer",
        "transformer_2",
        "text_encoder",
    }


def test_flow_matching_scheduler_swap_keeps_the_shift(tmp_path: Path) -> None:
    base = (*FOX, "--preset", "tiny-wan", "--seed", "2", "--steps", "4")
    assert cli(*base, "--out", "unipc.mp4").exit_code == 0
    assert cli(*base, "--scheduler", "euler", "--flow-shift", "5", "--out", "euler.mp4").exit_code == 0
    data = sidecar(tmp_path / "euler.json")
    assert data["model"]["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    # FlowMatchEuler calls the shift `shift`; vidgen sets it under that name.
    assert data["pipeline"]["setup"] == [
        {"method": "scheduler = FlowMatchEulerDiscreteScheduler.from_config", "kwargs": {"shift": 5.0}}
    ]
    a, b = decode(tmp_path / "unipc.mp4")[0], decode(tmp_path / "euler.mp4")[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() > 2
