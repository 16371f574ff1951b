"""SkyReels-V2 on tiny models: diffusion-forcing long video (sync and async), image to long video,
extending a clip, the window plan and its progress count, resuming a killed run, refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CountingProgress,
    assert_reproduces,
    cli,
    cli_subprocess,
    decode,
    files_under,
    one_line_error,
    plain_diffusers,
    sidecar,
)

LONG = ("t2v", "a train crossing a bridge", "--preset", "tiny-skyreels-df")


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _run(*args: str) -> tuple[np.ndarray, dict]:
    """Run vidgen writing PNG frames; returns the frames and the sidecar."""
    result = cli(*args, "--format", "png")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _png_frames(folder), sidecar(folder.with_name(folder.name + ".json"))


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_long_video_in_windows_equals_plain_diffusers(asynchronous: bool) -> None:
    extra = ("--ar-step", "1", "--causal-block", "1") if asynchronous else ()
    ours, data = _run(*LONG, "--frames", "33", "--window", "17", "--overlap", "9", *extra, "--seed", "3", "--out", "o/")
    assert ours.shape == (33, 16, 16, 3)
    call = data["pipeline"]["call_kwargs"]
    assert (call["num_frames"], call["base_num_frames"], call["overlap_history"]) == (33, 17, 9)
    assert (call["ar_step"], call["causal_block_size"]) == ((1, 1) if asynchronous else (0, 1))
    windows = data["pipeline"]["windows"]
    assert windows["mode"] == ("asynchronous" if asynchronous else "synchronous")
    # 9 latent frames in windows of 5 that carry 3 over: 5 + 2 + 2, i.e. 17 + 8 + 8 video frames.
    assert [w["new_frames"] for w in windows["windows"]] == [17, 8, 8]
    assert [w["first_new_frame"] for w in windows["windows"]] == [0, 17, 25]
    assert_reproduces(ours, data, {})


def test_progress_counts_every_windows_denoising_steps() -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.run import generate

    # Asynchronous windows run more iterations than --steps, and the later ones fewer than the first.
    sampling = {"num_frames": 33, "ar_step": 1, "causal_block_size": 1, "num_inference_steps": 3}
    layer = Layer("cli", {"inputs": {"prompt": "a train"}, "sampling": sampling, "output": {"path": "p.mp4"}})
    plan = generate.plan(resolve("t2v", ["tiny-skyreels-df"], [layer], families.defaults_layer))
    count = CountingProgress()
    results = generate.execute(plan, count)
    per_window = [w["steps"] for w in results[0].record["pipeline"]["windows"]["windows"]]
    assert count.totals == [sum(per_window)] and count.steps == sum(per_window)
    # 5 latent frames, one block each, lagging 1 step: 3 + 4 iterations; the later windows carry 3 ready.
    assert per_window == [7, 4, 4]


def test_image_to_long_video_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 80, 40)).save("first.png")
    ours, data = _run("i2v", "first.png", "a fox", "--preset", "tiny-skyreels-df", "--frames", "33", "--seed", "2")
    assert ours.shape == (33, 16, 16, 3)
    assert data["pipeline"]["class"] == "SkyReelsV2DiffusionForcingImageToVideoPipeline"
    assert len(data["pipeline"]["windows"]["windows"]) == 3
    assert_reproduces(ours, data, {"image": Image.open("first.png").convert("RGB")})


def test_last_image_within_one_window_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 80, 40)).save("first.png")
    Image.new("RGB", (16, 16), (20, 80, 240)).save("last.png")
    args = ("i2v", "first.png", "a fox", "--preset", "tiny-skyreels-df", "--last-image", "last.png", "--seed", "2")
    ours, data = _run(*args)
    assert ours.shape == (17, 16, 16, 3)
    media = {"image": Image.open("first.png").convert("RGB"), "last_image": Image.open("last.png").convert("RGB")}
    assert_reproduces(ours, data, media)


def _clip(path: Path, frames: int = 13) -> np.ndarray:
    """An mp4 clip of moving colour bands, written by the bundled ffmpeg; returns its decoded frames."""
    import imageio_ffmpeg

    rows = np.arange(16)[:, None, None]
    video = [((rows * 16 + 20 * i) % 256 * np.ones((16, 16, 3))).astype(np.uint8) for i in range(frames)]
    writer = imageio_ffmpeg.write_frames(str(path), (16, 16), fps=24, macro_block_size=1, quality=10)
    writer.send(None)
    for frame in video:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return decode(path)[0]


def test_extend_writes_the_clip_then_the_new_frames(tmp_path: Path) -> None:
    from PIL import Image

    clip = _clip(tmp_path / "clip.mp4")
    args = ("v2v", "clip.mp4", "it keeps walking", "--preset", "tiny-skyreels-df-extend", "--extend", "16")
    ours, data = _run(*args, "--seed", "4")
    assert ours.shape == (13 + 16, 16, 16, 3)
    # The first part is the input clip (vidgen read it with the same ffmpeg; ±1 for the round trip).
    assert np.abs(ours[:13].astype(int) - clip.astype(int)).max() <= 1
    call = data["pipeline"]["call_kwargs"]
    assert call["num_frames"] == 16 + 9 and call["overlap_history"] == 9
    assert "drops that repeat" in data["pipeline"]["run"]
    # Plain diffusers returns the clip, the 9 carried-over frames decoded again, then the new ones:
    # without that repeat, its frames are vidgen's; another seed, prompt or guidance differs.
    media = {"video": [Image.fromarray(frame) for frame in clip]}
    assert plain_diffusers(data, media).frames.shape[0] == 13 + 9 + 16
    assert_reproduces(ours, data, media, then=lambda frames: np.concatenate([frames[:13], frames[13 + 9 :]]))


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        ((*LONG, "--frames", "33", "--window", "17", "--overlap", "17"), 3, ("--overlap 17", "shorter than --window")),
        ((*LONG, "--window", "21"), 3, ("--window 21", "17 frames tiny:skyreels-df was trained on")),
        ((*LONG, "--window", "13", "--frames", "33", "--overlap", "18"), 3, ("--overlap 18", "4k+1", "17 or 21")),
        ((*LONG, "--frames", "33", "--ar-step", "1"), 3, ("--overlap 9", "--causal-block 5", "17")),
        ((*LONG, "--frames", "33", "--causal-block", "2"), 3, ("--causal-block", "--ar-step")),
        (("i2v", "a.png", "x", "--preset", "tiny-skyreels-df", "--frames", "29"), 3, ("last window", "25 or 33")),
        (
            ("i2v", "a.png", "x", "--preset", "tiny-skyreels-df", "--frames", "33", "--last-image", "a.png"),
            3,
            ("--last-image works within one window", "--frames 17"),
        ),
        (("v2v", "clip.mp4", "x", "--preset", "tiny-skyreels-df-extend", "--extend", "10"), 3, ("8 or 12",)),
        (
            ("v2v", "clip.mp4", "x", "--preset", "tiny-skyreels-df-extend", "--set", "sampling.num_frames=33"),
            3,
            ("--extend N",),
        ),
        (
            ("v2v", "clip.mp4", "x", "--preset", "tiny-cogvideox-v2v", "--extend", "16"),
            3,
            ("--extend is not used by CogVideoX v2v", "SkyReels-V2 DF (v2v)"),
        ),
        ((*LONG, "--cache", "pab"), 3, ("--cache pab", "timestep per frame")),
        (("v2v", "clip.mp4", "x", "--preset", "tiny-skyreels-df-extend", "--save-latents"), 3, ("--oom-retry",)),
    ],
)
def test_bad_long_video_input_is_one_line_and_writes_nothing(
    tmp_path: Path, args: tuple, code: int, needles: tuple
) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (9, 9, 9)).save("a.png")
    (tmp_path / "clip.mp4").write_bytes(b"not read: the config is refused first")
    before = files_under(tmp_path)
    one_line_error(cli(*args), code, *needles)
    assert files_under(tmp_path) == before


@pytest.mark.pipeline
def test_last_image_on_a_skyreels_i2v_model_is_refused_before_denoising(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (9, 9, 9)).save("a.png")
    before = files_under(tmp_path)
    result = cli("i2v", "a.png", "x", "--preset", "tiny-skyreels-i2v", "--last-image", "a.png")
    one_line_error(result, 3, "--last-image", "skyreels-v2-df-1.3b")
    assert files_under(tmp_path) == before


def test_a_run_killed_in_its_third_window_resumes_to_the_same_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """41 frames in windows of 17 that carry 9 over: 4 windows. The first run SIGKILLs itself
    after the first step of window 3; the rerun replays windows 1-2 from the kept latents."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    args = (*LONG, "--frames", "41", "--seed", "6", "--save-latents", "--format", "png")
    full, full_record = _run(*args[:-2], "--out", "full/")
    killed = cli_subprocess(*args, "--out", "run/", env={"VIDGEN_TEST_KILL_WINDOW": "3"})
    assert killed.returncode == -9, killed.stderr
    kept = tmp_path / "run" / "t2v-a-train-crossing-a-bridge-6.windows.safetensors"
    with safe_open(str(kept), framework="pt") as handle:
        info = json.loads(handle.metadata()["vidgen"])
        tensor = handle.get_tensor("latents")
    assert info["windows"] == [5, 5] and info["total_windows"] == 4
    assert not list((tmp_path / "run").glob("*.json"))  # no sidecar: the video was never finished
    # A copy whose latents are changed resumes from them: the replay does use what was kept.
    os.makedirs("bent")
    save_file(
        {"latents": tensor * 0.5},
        "bent/t2v-a-train-crossing-a-bridge-6.windows.safetensors",
        {"vidgen": json.dumps(info)},
    )

    resumed = cli_subprocess(*args, "--out", "run/")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 2 of 4 windows" in resumed.stderr
    ours = _png_frames(tmp_path / "run" / "t2v-a-train-crossing-a-bridge-6")
    assert ours.shape == (41, 16, 16, 3)
    assert np.array_equal(ours, full)
    resumed_record = sidecar(tmp_path / "run" / "t2v-a-train-crossing-a-bridge-6.json")["pipeline"]["resumed"]
    assert resumed_record["windows_replayed"] == 2 and resumed_record["windows"] == 4
    assert resumed_record["from"].endswith("t2v-a-train-crossing-a-bridge-6.windows.safetensors")
    assert "resumed" not in full_record["pipeline"]  # an uninterrupted run says nothing
    assert not kept.exists()  # finished: nothing left to resume
    bent, _ = _run(*args[:-2], "--out", "bent/")
    assert np.abs(bent[:25].astype(int) - full[:25].astype(int)).max() > 1
    # An out-of-memory in window 3 with --oom-retry: the retry starts from the two finished windows.
    monkeypatch.setenv("VIDGEN_TEST_OOM_WINDOW", "3")
    result = cli(*LONG, "--frames", "41", "--seed", "6", "--oom-retry", "--format", "png", "--out", "oom/")
    assert result.exit_code == 0, result.stderr
    assert "retrying seed 6" in result.stderr and "resuming: 2 of 4 windows" in result.stderr
    assert np.array_equal(_png_frames(tmp_path / "oom" / "t2v-a-train-crossing-a-bridge-6"), full)
    oom = sidecar(tmp_path / "oom" / "t2v-a-train-crossing-a-bridge-6.json")
    assert oom["optimizations"]["oom_retries"] and oom["pipeline"]["resumed"]["windows_replayed"] == 2
    assert not list((tmp_path / "oom").glob("*.windows.safetensors"))


def test_memory_plans_for_one_window_not_the_whole_video() -> None:
    def plan(*args: str) -> dict:
        result = cli("t2v", "a train", "--dry-run", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    one = plan("--preset", "skyreels-v2-df-1.3b", "--frames", "97")
    long = plan("--preset", "skyreels-v2-df-1.3b", "--frames", "257")
    assert long["pipeline"]["windows"]["summary"].startswith("3 synchronous window(s) of at most 97 frames")
    assert long["memory"]["phases_bytes"]["denoise"] == one["memory"]["phases_bytes"]["denoise"]
    # The decoded video stays on the device until the end: that part does grow with the length.
    assert long["memory"]["phases_bytes"]["decode"] > one["memory"]["phases_bytes"]["decode"]
    big = plan("--preset", "skyreels-v2-df-14b-540p", "--frames", "257")
    assert big["memory"]["phases_bytes"]["denoise"] > 3 * long["memory"]["phases_bytes"]["denoise"]
    assert big["memory"]["weights_bytes"]["transformer"] > 9 * long["memory"]["weights_bytes"]["transformer"]
    wide = plan("--preset", "skyreels-v2-df-14b-720p", "--frames", "257", "--memory", "auto", "--vram", "24")
    assert wide["pipeline"]["call_kwargs"]["base_num_frames"] == 121
    assert wide["memory"]["plan"] != "none"
