"""Helios: long video in 33-frame chunks from text, an image or a clip, equal to plain diffusers; a
run killed mid-way (SIGKILL) and rerun makes the frames of an uninterrupted one; its frame and
size rules, the modes it does not do and the options it cannot take, refused before loading with
one line; every full-size preset plans offline; the options declared for it run on the tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    cli_subprocess,
    files_under,
    full_presets,
    one_line_error,
    sidecar,
    sidecar_media,
)

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-helios")
FULL = full_presets("helios", "helios-pyramid")


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _run(*args: str) -> tuple[np.ndarray, dict]:
    result = cli(*args, "--format", "png")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _png_frames(folder), sidecar(folder.with_name(folder.name + ".json"))


def _image(size: tuple[int, int] = (16, 16)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 80, 40)).save("first.png")
    return "first.png"


def _clip(count: int, size: tuple[int, int] = (16, 16)) -> str:
    """A folder of `count` random frames at the run's size."""
    from PIL import Image

    folder = Path("clip")
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{index:03d}.png")
    return str(folder)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "40"], ["--frames 40", "chunks of 33", "33 or 65"]),
        (["--frames", "99"], ["--frames 99", "nearest valid: 97 or 129"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--cache", "first-block"], ["--cache", "not register"]),
        (["--cache", "faster"], ["--cache", "batched guided pass"]),
        (["--compile"], ["--compile", "not checked"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--scheduler", "euler"], ["--scheduler", "HeliosScheduler"]),
        (["--live-preview"], ["--live-preview", "one chunk at a time"]),
        (["--amplify-first-chunk"], ["--amplify-first-chunk"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*T2V, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_pyramid_sizes_refused_before_loading(nothing_loads: None, tmp_path: Path) -> None:
    # Its first stage runs at a quarter of the latent size in 2x2 patches: multiples of 64.
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-helios-pyramid", "--height", "96"), 3, "64", "64 or 128")
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-helios-pyramid", "--frames", "34"), 3, "33 or 65")
    assert files_under(tmp_path) == []


def test_wrong_mode_and_short_clip_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("animate", "a fox", "--preset", "tiny-helios"), 3, "animate")
    clip = _clip(20)
    one_line_error(cli("v2v", clip, "a fox", "--preset", "tiny-helios"), 4, "20 frame(s)", "at least 33")
    assert all(path.parent.name == "clip" for path in files_under(tmp_path))


@pytest.mark.parametrize("preset", FULL)
@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_full_presets_plan_offline(preset: str, mode: str, nothing_loads: None) -> None:
    args = ["i2v", _image()] if mode == "i2v" else ["t2v"]
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Helios" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_docs(nothing_loads: None) -> None:
    assert FULL == ["helios-base", "helios-distilled", "helios-mid"]
    data = merged_preset(str(available_presets()["helios-base"]))
    sampling = data["sampling"]
    assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (384, 640, 97)
    assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (50, 5.0, 24)


def test_pyramid_steps_are_per_stage(nothing_loads: None) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer

    asked = Layer("cli", {"inputs": {"prompt": "a fox"}})
    config = resolve("t2v", ["helios-distilled"], [asked], families.defaults_layer).config
    family = families.get("helios-pyramid")
    kwargs = family.call_kwargs(config, seed=0)
    assert kwargs["pyramid_num_inference_steps_list"] == [2, 2, 2] and "num_inference_steps" not in kwargs
    assert kwargs["is_amplify_first_chunk"] is True and kwargs["num_frames"] == 261
    # 8 chunks of 3 stages of 2 steps; the amplified first chunk runs twice as many.
    assert family.step_count(config, kwargs) == 6 * 2 + 6 * 7


def test_memory_plans_for_one_chunk_not_the_whole_video(nothing_loads: None) -> None:
    def peak(frames: str) -> int:
        result = cli("t2v", "a fox", "--preset", "helios-base", "--frames", frames, "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["memory"]["phases_bytes"]["denoise"]

    assert peak("97") == peak("1021")


@pytest.mark.pipeline
def test_three_chunks_equal_plain_diffusers() -> None:
    ours, data = _run(*T2V, "--frames", "97", "--seed", "3", "--out", "o/")
    assert ours.shape == (97, 16, 16, 3)
    call = data["pipeline"]["call_kwargs"]
    assert (call["num_frames"], call["num_latent_frames_per_chunk"]) == (97, 9)
    assert data["pipeline"]["chunks"]["chunks"] == 3
    assert_reproduces(ours, data, {})


@pytest.mark.pipeline
def test_a_clip_continues_as_plain_diffusers(tmp_path: Path) -> None:
    ours, data = _run("v2v", _clip(40), "a red fox in snow", "--preset", "tiny-helios", "--seed", "4", "--out", "o/")
    assert ours.shape == (33, 16, 16, 3)  # the continuation only, as the pipeline returns it
    assert_reproduces(ours, data, sidecar_media(data))


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "option",
    [
        ["--cache", "pab"],
        ["--cache", "taylorseer"],
        ["--attention-backend", "native"],
        ["--fp8-storage"],
        ["--quantize", "int8"],
        ["--vae-tiling"],
    ],
)
def test_declared_options_run_on_the_tiny_model(option: list[str]) -> None:
    ours, data = _run(*T2V, "--frames", "65", *option, "--out", "o/")
    assert ours.shape == (65, 16, 16, 3)
    assert data["optimizations"]["applied"], data["optimizations"]


def test_a_run_killed_in_its_third_chunk_resumes_to_the_same_frames(tmp_path: Path) -> None:
    """97 frames: 3 chunks. The first run SIGKILLs itself after the first step of chunk 3; the
    rerun replays chunks 1-2 from the kept latents and makes the uninterrupted run's frames."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    args = (*T2V, "--frames", "97", "--seed", "6", "--save-latents", "--format", "png")
    full = cli_subprocess(*args, "--out", "full/")
    assert full.returncode == 0, full.stderr
    killed = cli_subprocess(*args, "--out", "run/", env={"VIDGEN_TEST_KILL_WINDOW": "3"})
    assert killed.returncode == -9, killed.stderr
    stem = "t2v-a-red-fox-in-snow-6"
    kept = tmp_path / "run" / f"{stem}.windows.safetensors"
    with safe_open(str(kept), framework="pt") as handle:
        info = json.loads(handle.metadata()["vidgen"])
        tensor = handle.get_tensor("latents")
    assert info["windows"] == [9, 9] and info["total_windows"] == 3
    assert not list((tmp_path / "run").glob("*.json"))  # no sidecar: the video was never finished
    # A copy whose kept latents are changed resumes from them: the replay does use what was kept.
    os.makedirs("bent")
    save_file({"latents": tensor * 0.5}, f"bent/{stem}.windows.safetensors", {"vidgen": json.dumps(info)})

    resumed = cli_subprocess(*args, "--out", "run/")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 2 of 3 chunks" in resumed.stderr
    ours, reference = _png_frames(tmp_path / "run" / stem), _png_frames(tmp_path / "full" / stem)
    assert ours.shape == (97, 16, 16, 3)
    assert np.array_equal(ours, reference)
    record = sidecar(tmp_path / "run" / f"{stem}.json")["pipeline"]["resumed"]
    assert record["chunks_replayed"] == 2 and record["chunks"] == 3
    assert "resumed" not in sidecar(tmp_path / "full" / f"{stem}.json")["pipeline"]
    assert not kept.exists()  # finished: nothing left to resume
    bent = cli_subprocess(*args, "--out", "bent/")
    assert bent.returncode == 0, bent.stderr
    assert np.abs(_png_frames(tmp_path / "bent" / stem).astype(int) - reference.astype(int)).max() > 1


@pytest.mark.pipeline
def test_pyramid_options_the_model_ignores_are_refused(tmp_path: Path) -> None:
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-helios-pyramid", "--amplify-first-chunk"), 3, "not distilled")
    one_line_error(cli("i2v", _image((64, 64)), "a fox", "--preset", "tiny-helios-distilled", "--guidance", "5"), 3,
                   "--guidance 5", "step-distilled")  # fmt: skip
    assert not list(tmp_path.glob("outputs/*.json"))


def test_a_distilled_run_killed_in_its_second_chunk_resumes_to_the_same_frames(tmp_path: Path) -> None:
    """The pyramid pipeline, whose first chunk (amplified) runs twice the steps of the next: 65
    frames, 2 chunks; killed after the first step of chunk 2, the rerun replays chunk 1."""
    args = ("i2v", _image((64, 64)), "a fox", "--preset", "tiny-helios-distilled", "--frames", "65", "--seed", "2")
    args = (*args, "--save-latents", "--format", "png")
    full = cli_subprocess(*args, "--out", "full/")
    assert full.returncode == 0, full.stderr
    killed = cli_subprocess(*args, "--out", "run/", env={"VIDGEN_TEST_KILL_WINDOW": "2"})
    assert killed.returncode == -9, killed.stderr
    resumed = cli_subprocess(*args, "--out", "run/")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 1 of 2 chunks" in resumed.stderr
    stem = "i2v-a-fox-2"
    ours, reference = _png_frames(tmp_path / "run" / stem), _png_frames(tmp_path / "full" / stem)
    assert ours.shape == (65, 64, 64, 3)
    assert np.array_equal(ours, reference)
    assert sidecar(tmp_path / "run" / f"{stem}.json")["pipeline"]["resumed"]["chunks_replayed"] == 1


@pytest.mark.pipeline
def test_saved_latents_decode_to_the_same_frames(tmp_path: Path) -> None:
    """The latents Helios keeps are the chunks'; `vidgen decode` decodes them chunk by chunk, as
    the pipeline does, back to the run's frames."""
    ours, _ = _run(*T2V, "--frames", "65", "--seed", "1", "--save-latents", "--out", "o/")
    result = cli("decode", "o/t2v-a-red-fox-in-snow-1.latents.safetensors", "--format", "png", "--out", "again/")
    assert result.exit_code == 0, result.stderr
    again = _png_frames(Path(result.stdout.strip()))
    assert again.shape == (65, 16, 16, 3) and np.array_equal(again, ours)
