"""Kandinsky 6.0 Video (Kandinsky6TI2VAPipeline) on the tiny model: an mp4 with an AAC sound
stream (read back by imageio-ffmpeg's ffmpeg), frames and raw sound equal to plain diffusers from
the sidecar (another seed and another prompt differ), i2v's first image; --save-latents keeps the
video's and the sound's latents and `vidgen decode` makes the same picture and sound; off-grid
frames and sizes, a wrong mode and options it cannot take refused before loading; every
full-size preset plans offline; the options declared for it run on the tiny model."""

from __future__ import annotations

import subprocess
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
    png_frames,
    sidecar,
)
from test_ltx2 import raw_sha256

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-kandinsky6")
DRUMMER = ("t2v", "a drummer on a rooftop", *TINY)
FULL = full_presets("kandinsky6")


def _ffmpeg_streams(path: Path) -> str:
    """The stream lines imageio-ffmpeg's bundled ffmpeg prints for `path`."""
    import imageio_ffmpeg

    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return "\n".join(line.strip() for line in run.stderr.splitlines() if line.strip().startswith("Stream"))


def _png(*args: str) -> tuple[np.ndarray, dict]:
    from PIL import Image

    result = cli(*args, "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    return frames, sidecar(folder.with_name(folder.name + ".json"))


def test_t2v_writes_an_audio_stream_and_equals_plain_diffusers(tmp_path: Path) -> None:
    result = cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    shown = _ffmpeg_streams(tmp_path / "drum.mp4")
    assert "Video: h264" in shown and "Audio: aac" in shown and "16000 Hz, mono" in shown, shown
    data = sidecar(tmp_path / "drum.json")
    assert data["pipeline"]["class"] == "Kandinsky6TI2VAPipeline" and data["pipeline"]["setup"] == []
    assert data["pipeline"]["call_kwargs"]["frame_rate"] == 24.0
    audio = data["output"]["audio"]
    assert audio["codec"] == "aac" and audio["sample_rate"] == 16000 and audio["channels"] == 1
    # The sound covers the video (5 frames at 24 fps), rounded up to whole audio latent frames.
    assert 5 / 24 <= audio["duration"] < 5 / 24 + 320 / 16000
    assert decode(tmp_path / "drum.mp4")[0].shape == (5, 32, 32, 3)
    # The frames (lossless png) and the raw sound equal plain diffusers'; another seed and another
    # prompt change the frames (assert_reproduces) and the seed changes the sound.
    frames, data = _png(*DRUMMER, "--seed", "3")
    made = assert_reproduces(frames, data)
    assert made.audio.shape == (1, audio["samples"])
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"] == audio["raw_sha256"]
    assert np.abs(made.audio).max() > 0
    assert not np.allclose(plain_diffusers(data, seed=4).audio, made.audio, atol=1e-5)
    assert not np.allclose(plain_diffusers(data, prompt="a cat on a sofa").audio, made.audio, atol=1e-5)


def test_i2v_conditions_on_the_image_and_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    frames, data = _png("i2v", "first.png", "a drummer", *TINY, "--seed", "4")
    assert data["pipeline"]["class"] == "Kandinsky6TI2VAPipeline"
    made = assert_reproduces(frames, data, {"image": Image.open("first.png").convert("RGB")})
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]
    # The image conditions the video: without it the frames are others, and another image changes
    # them too (a little: in the tiny model the reference frame is a few tokens among many).
    alone = plain_diffusers(data, {})
    assert np.abs(alone.frames.astype(int) - made.frames.astype(int)).max() > 1
    other = plain_diffusers(data, {"image": Image.new("RGB", (32, 32), (255, 255, 255))})
    assert np.abs(other.frames.astype(int) - made.frames.astype(int)).max() >= 1


def test_decode_of_saved_latents_reproduces_picture_and_sound(tmp_path: Path) -> None:
    made = cli(*DRUMMER, "--seed", "3", "--format", "png", "--out", "run/", "--save-latents")
    assert made.exit_code == 0, made.stderr
    folder = Path(made.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    record = data["output"]["latents"]
    # Video latents (batch, channels, frames, height, width); the sound's as the transformer holds
    # them (batch, length, channels), caught at the last step.
    assert record["shape"] == [1, 4, 2, 4, 4] and record["tensors"] == {"audio_latents": [1, 11, 4]}
    saved = record["path"]
    result = cli("decode", saved, "--format", "png", "--out", "again/")
    assert result.exit_code == 0, result.stderr
    again = Path(result.stdout.strip())
    redone = sidecar(again.with_name(again.name + ".json"))
    assert redone["pipeline"]["decode"]["method"] == "vae.decode"
    assert redone["output"]["audio"] == data["output"]["audio"]

    assert np.array_equal(png_frames(made), png_frames(result))
    # Into an mp4: the sound stream is there; --no-audio drops it.
    assert cli("decode", saved, "--out", "again.mp4").exit_code == 0
    assert "Audio: aac" in _ffmpeg_streams(tmp_path / "again.mp4")
    assert cli("decode", saved, "--out", "silent.mp4", "--no-audio").exit_code == 0
    assert "Audio" not in _ffmpeg_streams(tmp_path / "silent.mp4")
    # Not vacuous: another seed's latents decode to another sound.
    other = cli(*DRUMMER, "--seed", "4", "--out", "other.mp4", "--save-latents")
    assert other.exit_code == 0, other.stderr
    assert sidecar(tmp_path / "other.json")["output"]["audio"]["raw_sha256"] != data["output"]["audio"]["raw_sha256"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "6"], ["--frames 6", "4k+1", "5 or 9"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (["--cache", "pab"], ["--cache pab", "taylorseer"]),
        (["--cache", "first-block"], ["--cache first-block", "visual_transformer_blocks"]),
        (["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (["--vae-slicing"], ["--vae-slicing"]),
        (["--scheduler", "euler"], ["--scheduler"]),
        (["--live-preview"], ["--live-preview", "no preview yet"]),
        (["--format", "gif"], ["gif has no audio track", "--no-audio"]),
        (["--set", "sampling.max_sequence_length=2000"], ["max_sequence_length=2000", "at most 1024"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*DRUMMER, *args), 3, *needles)
    assert files_under(tmp_path) == []


@pytest.mark.unit
def test_wrong_mode_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", "clip.mp4", "a fox", *TINY), 3, "does not do v2v", "t2v, i2v")
    assert files_under(tmp_path) == []


@pytest.mark.unit
@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "Kandinsky6TI2VAPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.unit
def test_full_presets_are_the_docs(nothing_loads: None) -> None:
    assert FULL == ["kandinsky6-lite", "kandinsky6-pro", "kandinsky6-pro-distill"]
    distilled = merged_preset(str(available_presets()["kandinsky6-pro-distill"]))
    assert distilled["model"]["id"] == "kandinskylab/Kandinsky-6.0-Pro-distill-5s-Diffusers"
    s = distilled["sampling"]
    assert (s["height"], s["width"], s["num_frames"], s["num_inference_steps"], s["guidance_scale"]) == (
        480,
        864,
        121,
        16,
        1.0,
    )
    sft = merged_preset(str(available_presets()["kandinsky6-pro"]))["sampling"]
    assert (sft["num_inference_steps"], sft["guidance_scale"]) == (50, 5.0)


@pytest.mark.parametrize(
    "option", [["--cache", "taylorseer"], ["--attention-backend", "native"], ["--vae-tiling"], ["--fp8-storage"]]
)
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli(*DRUMMER, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (5, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]
    assert record["output"]["audio"]["codec"] == "aac"


def test_decode_out_of_memory_keeps_the_sound_for_vidgen_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidgen.run import runner

    assert cli(*DRUMMER, "--seed", "7", "--out", "whole.mp4").exit_code == 0
    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr(runner, "_injected", {})
    one_line_error(cli(*DRUMMER, "--seed", "7", "--out", "cut.mp4"), 6, "during decode", "vidgen decode")
    assert not (tmp_path / "cut.mp4").exists()
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    # The video decode failed before the pipeline reached the sound, yet its latents were kept.
    assert cli("decode", "cut.latents.safetensors").exit_code == 0
    whole, cut = sidecar(tmp_path / "whole.json"), sidecar(tmp_path / "cut.json")
    assert cut["output"]["audio"]["raw_sha256"] == whole["output"]["audio"]["raw_sha256"]
    assert np.array_equal(decode(tmp_path / "whole.mp4")[0], decode(tmp_path / "cut.mp4")[0])
