"""Mochi 1: its frame and size rules, the modes it does not do and the options it cannot take,
refused before loading with one line (exit 3); the full-size preset plans offline; the options
declared for it run on the tiny model; saved latents decode to the same frames; a LoRA loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, full_presets, one_line_error, png_frames, printed_sidecar, sidecar

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-mochi")
FULL = full_presets("mochi")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "8"], ["--frames 8", "6k+1", "7 or 13"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--attention-backend", "native"], ["--attention-backend", "SDPA itself"]),
        (["--attention-slicing"], ["--attention-slicing", "SDPA"]),
        (["--compile"], ["--compile", "repeated blocks"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
        (["--vae-slicing"], ["--vae-slicing", "--vae-tiling"]),
        (["--scheduler", "euler"], ["--scheduler", "linear-quadratic"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_modes_refused(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    one_line_error(cli("i2v", "first.png", "a fox", "--preset", "tiny-mochi"), 3, "not `vidgen i2v`")
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-mochi"), 3, "not `vidgen v2v`")
    assert files_under(tmp_path) == [tmp_path / "first.png"]


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "MochiPipeline" in result.stdout and "--vram 24" in result.stdout


def test_full_preset_is_the_model_card(nothing_loads: None) -> None:
    assert FULL == ["mochi-1-preview"]
    data = merged_preset(str(available_presets()["mochi-1-preview"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (480, 848, 85)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (64, 4.5, 30)
    assert data["model"]["variant"] == "bf16"


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option",
    [
        ["--cache", "first-block"],
        ["--cache", "pab"],
        ["--cache", "faster"],
        ["--cache", "taylorseer"],
        ["--cache", "magcache:calibrate"],
        ["--fp8-storage"],
        ["--vae-tiling"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*T2V, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (7, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_frames(tmp_path: Path) -> None:
    made = cli(*T2V, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents")
    run = png_frames(made)
    saved = Path(printed_sidecar(made)["output"]["latents"]["path"])
    result = cli("decode", str(saved), "--format", "png", "--out", "again/")
    assert printed_sidecar(result)["pipeline"]["decode"]["method"] == "vae.decode"
    assert np.array_equal(run, png_frames(result))
    # Not vacuous: another seed decodes to other frames.
    other = png_frames(cli(*T2V, "--seed", "4", "--format", "png", "--out", "other/"))
    assert np.abs(other.astype(int) - run.astype(int)).max() > 1


@pytest.mark.pipeline
def test_live_preview_runs(tmp_path: Path) -> None:
    result = cli(*T2V, "--live-preview-every", "1", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    assert "previews stopped" not in result.stderr
    assert decode(tmp_path / "a.mp4")[0].shape[:3] == (7, 32, 32)
    assert (tmp_path / "a.preview.webp").stat().st_size > 0


def _lora(path: Path) -> Path:
    """A PEFT LoRA on the tiny Mochi transformer's attention, saved as diffusers saves LoRAs."""
    import torch
    from diffusers import MochiPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vidgen.families.mochi import tiny_t2v

    transformer = tiny_t2v().transformer
    torch.manual_seed(1)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    path.mkdir()
    MochiPipeline.save_lora_weights(path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return path / "pytorch_lora_weights.safetensors"


@pytest.mark.pipeline
def test_lora_changes_the_output(tmp_path: Path) -> None:
    lora = _lora(tmp_path / "lora")
    assert cli(*T2V, "--seed", "2", "--out", "plain.mp4").exit_code == 0
    result = cli(*T2V, "--seed", "2", "--lora", f"{lora}:0.8", "--out", "lora.mp4")
    assert result.exit_code == 0, result.stderr
    (record,) = sidecar(tmp_path / "lora.json")["model"]["loras"]
    assert (record["scale"], record["matched"]) == (0.8, record["modules"])
    plain, with_lora = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "lora.mp4")[0]
    assert np.abs(plain.astype(int) - with_lora.astype(int)).max() > 2
