"""Lucy Edit: instruction video editing on `vidgen v2v`. Its frame and size rules and the options it
does not take are refused before loading with one line (exit 3), a clip too short to edit with
exit 4; the full presets plan offline; the tiny model equals plain diffusers from its sidecar, and
another seed, another instruction and another input video each change the frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    decode,
    files_under,
    full_presets,
    one_line_error,
    plain_diffusers,
    random_frames,
    sidecar,
)

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

TINY = ("--preset", "tiny-lucy-edit")
FULL = full_presets("lucy-edit")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--height", "48"], ["--height 48", "multiples of 32", "32 or 64"]),
        (["--width", "40"], ["--width 40", "multiples of 32", "32 or 64"]),
        (["--max-frames", "3"], ["--max-frames 3", "4k+1", "at least 5"]),
        (["--set", "sampling.num_frames=10"], ["--frames", "use --max-frames"]),
        (["--strength", "0.5"], ["--strength", "whole input video"]),
        (["--scheduler", "euler"], ["--scheduler", "UniPC"]),
        (["--cache", "faster"], ["--cache faster", "first-block"]),
        (["--quantize", "int8"], ["--quantize", "--fp8-storage"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    clip = random_frames("clip", 9)
    one_line_error(cli("v2v", clip, "make it snow", *TINY, *args), 3, *needles)
    assert files_under(tmp_path / "outputs") == []


def test_clips_too_short_to_edit_are_input_errors(nothing_loads: None, tmp_path: Path) -> None:
    Path("empty").mkdir()
    one_line_error(cli("v2v", "empty", "make it snow", *TINY), 4, "empty", "no frames")
    one_line_error(cli("v2v", random_frames("one", 1), "make it snow", *TINY), 4, "1 frame(s)", "at least 5")
    one_line_error(cli("v2v", random_frames("clip", 9), "   ", *TINY), 3, "needs a prompt")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None, tmp_path: Path) -> None:
    result = cli("v2v", random_frames("clip", 9), "make it snow", "--preset", preset, "--dry-run", "--memory", "auto")
    assert result.exit_code == 0, result.stderr
    planned = cli("v2v", "clip", "make it snow", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert planned.exit_code == 0, planned.stderr
    assert "LucyEditPipeline" in planned.stdout and "--vram 24" in planned.stdout
    assert "transformer 9.3" in planned.stdout  # 5.0B parameters in bf16, from the published sizes


def test_full_presets_are_the_model_card() -> None:
    assert FULL == ["lucy-edit-1.1-dev", "lucy-edit-dev"]
    repos = {"lucy-edit-dev": "decart-ai/Lucy-Edit-Dev", "lucy-edit-1.1-dev": "decart-ai/Lucy-Edit-1.1-Dev"}
    for name, repo in repos.items():
        data = merged_preset(str(available_presets()[name]))
        sampling = data["sampling"]
        assert data["model"]["id"] == repo and data["inputs"]["max_frames"] == 81
        assert (sampling["height"], sampling["width"], sampling["guidance_scale"]) == (480, 832, 5.0)
        assert (sampling["num_inference_steps"], data["output"]["fps"]) == (50, 24)


@pytest.mark.pipeline
def test_tiny_edit_equals_plain_diffusers_and_answers_to_its_video(tmp_path: Path) -> None:
    # 10 frames read: the first 9 (4k+1) are edited, and the sidecar says so.
    args = ("--max-frames", "10", "--seed", "3", "--format", "png", "--out", "out/")
    result = cli("v2v", random_frames("clip", 10), "make it snow", *TINY, *args)
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LucyEditPipeline"
    assert data["pipeline"]["call_kwargs"]["num_frames"] == 9
    assert data["inputs"]["video"]["frames_read"] == 10 and data["inputs"]["video"]["frames_used"] == 9
    from PIL import Image

    ours = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    assert ours.shape == (9, 32, 32, 3)
    frames = sorted(Path("clip").glob("*.png"), key=lambda p: int(p.stem[1:]))[:9]
    media = {"video": [Image.open(p).convert("RGB") for p in frames]}
    # Equal to plain diffusers; another seed, another instruction and another guidance differ.
    assert_reproduces(ours, data, media)
    # Another input video (same instruction, same seed) makes other frames: the clip is read.
    other = {
        "video": [Image.open(p).convert("RGB") for p in sorted(Path(random_frames("other", 9, seed=7)).glob("*.png"))]
    }
    assert np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option",
    [["--attention-backend", "native"], ["--vae-tiling"], ["--fp8-storage"], ["--cache", "first-block"]],
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli("v2v", random_frames("clip", 9), "make it snow", *TINY, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    assert sidecar(video.with_suffix(".json"))["optimizations"]["applied"]


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_video(tmp_path: Path) -> None:
    result = cli(
        "v2v", random_frames("clip", 9), "make it snow", *TINY, "--seed", "1", "--save-latents", "--out", "a.mp4"
    )
    assert result.exit_code == 0, result.stderr
    again = cli("decode", "a.latents.safetensors", "--out", "b.mp4")
    assert again.exit_code == 0, again.stderr
    first, second = decode(Path("a.mp4"))[0], decode(Path("b.mp4"))[0]
    assert first.shape == second.shape == (9, 32, 32, 3)
    assert np.abs(first.astype(int) - second.astype(int)).max() <= 1
