"""MiniMax-H3 through diffusers' MiniMaxH3ModularPipeline: `vidgen t2v` (its t2va workflow) and
`vidgen i2v IMAGE [--last-image LAST]` (fl2va) write an mp4 with a 32 kHz stereo AAC stream; the
frames and the raw sound equal plain modular diffusers built from the sidecar, and another seed,
prompt and keyframe each change them; progress counts the transformer's steps (one fewer than
num_inference_steps). Frame counts off 17n+5 or outside 5-15 s, sizes off 32, guidance, negative
prompts, another fps and model/sequential offload are refused before loading, nothing written;
the full preset plans a group offload offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, one_line_error, plain_diffusers, png_frames, printed_sidecar, sidecar
from test_ltx2 import raw_sha256, streams

TINY = ("--preset", "tiny-minimax-h3")
FOX = ("t2v", "a red fox trotting through snow", *TINY)


def _noise(seed: int) -> object:
    """A 32x32 image of random pixels (the tiny VAE tells flat colours apart too little)."""
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def _keyframes() -> tuple[str, ...]:
    _noise(1).save("first.png")
    _noise(2).save("last.png")
    return ("first.png",)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--frames", "130"], ["--frames 130", "17n+5", "nearest valid: 124 or 141"]),
        (["--frames", "121"], ["--frames 121", "124 to 345", "nearest valid: 124"]),
        (["--frames", "362"], ["--frames 362", "5 to 15 s", "nearest valid: 345"]),
        (["--height", "48"], ["--height 48", "multiples of 32", "32 or 64"]),
        (["--guidance", "3"], ["--guidance", "guidance-distilled"]),
        (["--negative", "blurry"], ["--negative", "guidance-distilled"]),
        (["--fps", "30"], ["--fps 30", "24 fps"]),
        (["--save-latents"], ["--save-latents"]),
        (["--live-preview"], ["--live-preview", "packed sequence"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli(*FOX, *args), 3, *needles)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(("offload", "why"), [("model", "no model offload"), ("sequential", "not checked")])
def test_model_and_sequential_offload_are_refused(offload: str, why: str, nothing_loads: None, tmp_path: Path) -> None:
    result = cli(*FOX, "--offload", offload, "--dry-run", "--vram", "24")
    one_line_error(result, 3, f"--offload {offload} does not fit", why, "--offload group")


def test_a_broken_keyframe_is_an_input_error(nothing_loads: None, tmp_path: Path) -> None:
    Path("broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    one_line_error(cli("i2v", "broken.png", "a fox", *TINY), 4, "broken.png")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("vram", ["24", "80"])
def test_full_preset_plans_a_group_offload_offline(vram: str, nothing_loads: None, tmp_path: Path) -> None:
    result = cli("t2v", "a fox", "--preset", "minimax-h3", "--dry-run", "--memory", "auto", "--vram", vram)
    assert result.exit_code == 0, result.stderr
    assert "MiniMaxH3ModularPipeline" in result.stdout and f"--vram {vram}" in result.stdout
    assert "--offload group" in result.stdout and "--offload model" not in result.stdout
    assert "transformer 61.7, text_encoder 62.1" in result.stdout


@pytest.mark.pipeline
def test_t2v_writes_stereo_sound_and_equals_plain_modular_diffusers(tmp_path: Path) -> None:
    result = cli(*FOX, "--seed", "3", "--out", "fox.mp4")
    assert result.exit_code == 0, result.stderr
    found = streams(tmp_path / "fox.mp4")
    assert found["video"]["codec"] == "h264" and found["audio"]["codec"] == "aac", found
    data = sidecar(tmp_path / "fox.json")
    modular = data["model"]["modular"]
    assert data["pipeline"]["class"] == "MiniMaxH3ModularPipeline"
    assert modular["blocks"] == "MiniMaxH3Blocks" and modular["workflow"] == "t2va"
    assert modular["output"] == ["videos", "audio", "sampling_rate"]
    # Only the t2va half's components: the ref2va transformer is never loaded.
    assert "transformer_ref" not in modular["load_components"]["names"]
    assert {"transformer", "audio_vae", "scheduler", "audio_scheduler"} <= set(modular["load_components"]["names"])
    audio = data["output"]["audio"]
    assert audio["codec"] == "aac" and audio["sample_rate"] == 32000 and audio["channels"] == 2
    # 124 frames at 24 fps: 207 audio latents of 800 samples.
    assert audio["samples"] == 207 * 800
    # The frames (lossless png) and the raw sound equal plain diffusers'; another seed and another
    # prompt change the frames (assert_reproduces) and the sound.
    result = cli(*FOX, "--seed", "3", "--format", "png", "--out", "frames/")
    ours, data = png_frames(result), printed_sidecar(result)
    assert ours.shape == (124, 32, 32, 3)
    made = assert_reproduces(ours, data)
    assert made.audio.shape == (2, audio["samples"])
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"] == audio["raw_sha256"]
    assert not np.allclose(plain_diffusers(data, seed=4).audio, made.audio, atol=1e-5)
    assert not np.allclose(plain_diffusers(data, prompt="a cat on a sofa").audio, made.audio, atol=1e-5)


@pytest.mark.pipeline
def test_i2v_runs_fl2va_from_the_first_and_last_frames(tmp_path: Path) -> None:
    from PIL import Image

    first = _keyframes()
    result = cli(
        "i2v", *first, "a red fox", *TINY, "--last-image", "last.png", "--seed", "3", "--format", "png", "--out", "fl/"
    )
    ours, data = png_frames(result), printed_sidecar(result)
    assert data["model"]["modular"]["workflow"] == "fl2va"
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.image", "last_image": "inputs.last_image"}
    made = assert_reproduces(ours, data)
    media = {"image": Image.open("first.png").convert("RGB"), "last_image": Image.open("last.png").convert("RGB")}
    # Another last frame changes the video.
    other = plain_diffusers(data, {**media, "last_image": _noise(3)})
    assert np.abs(other.frames.astype(int) - made.frames.astype(int)).max() > 1


@pytest.mark.pipeline
def test_progress_counts_one_step_fewer_than_num_inference_steps(tmp_path: Path) -> None:
    """num_inference_steps counts the sigma grid's points, the final 0 included: 3 make two
    transformer passes, each counted on the video scheduler's step."""
    from vidgen.config.schema import RunConfig
    from vidgen.families import get
    from vidgen.models.loader import load

    family = get("minimax-h3")
    cfg = RunConfig.model_validate({"mode": "t2v", "model": {"id": "tiny:minimax-h3"}})
    pipe = load(cfg, family, "cpu").pipe
    kwargs = {"prompt": "a fox", "height": 32, "width": 32, "num_frames": 124, "num_inference_steps": 3}
    counted: list[int] = []
    with family.steps(pipe, lambda: counted.append(1)) as extra:
        family.call(pipe, cfg, {**kwargs, "output_type": "np"}, {}, **extra)
    assert "step" not in vars(pipe.scheduler)
    assert len(counted) == family.step_count(cfg, kwargs) == 2


@pytest.mark.pipeline
def test_fp8_storage_runs_on_the_transformer(tmp_path: Path) -> None:
    result = cli(*FOX, "--fp8-storage", "--seed", "2", "--out", "f8.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "f8.json")
    methods = [call["method"] for call in data["optimizations"]["calls"]]
    assert methods == ["transformer.enable_layerwise_casting"]
    assert streams(tmp_path / "f8.mp4")["audio"]["codec"] == "aac"
