"""LTX-2 on tiny models: video with sound, muxed by the bundled ffmpeg, equal to plain diffusers."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, plain_diffusers, sidecar, variations

DRUMMER = ("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx2")


def raw_sha256(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


def streams(path: Path) -> dict[str, dict]:
    """codec, duration (s) and rate of each stream, read by PyAV (ffprobe's library)."""
    import av

    found = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            found[stream.type] = {
                "codec": stream.codec_context.name,
                "duration": duration,
                "rate": getattr(stream.codec_context, "sample_rate", None),
                "channels": getattr(stream.codec_context, "channels", None),
                "frames": stream.frames,
            }
    return found


def test_t2v_writes_h264_with_aac_sound_equal_to_plain_diffusers(tmp_path: Path) -> None:
    result = cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "drum.json")
    audio = data["output"]["audio"]
    assert audio["codec"] == "aac" and audio["sample_rate"] == 16000 and audio["channels"] == 2
    # The sound lasts as long as the video (9 frames at 24 fps), give or take a mel hop.
    assert abs(audio["duration"] - 9 / 24) < 0.06
    assert audio["duration"] == pytest.approx(audio["samples"] / 16000)
    found = streams(tmp_path / "drum.mp4")
    assert found["video"]["codec"] == "h264" and found["video"]["frames"] == 9
    assert found["audio"]["codec"] == "aac" and found["audio"]["rate"] == 16000 and found["audio"]["channels"] == 2
    # AAC codes whole 1024-sample frames; the container's edit list trims the padding.
    assert abs(found["audio"]["duration"] - audio["duration"]) < 1024 / 16000
    # The raw sound (before AAC) is exactly what plain diffusers makes from the sidecar.
    assert data["pipeline"]["setup"] == []
    made = plain_diffusers(data)
    theirs = made.audio
    assert theirs.shape == (audio["channels"], audio["samples"])
    assert raw_sha256(theirs) == audio["raw_sha256"]
    ours, _ = decode(tmp_path / "drum.mp4")
    assert ours.shape == made.frames.shape
    # Not a vacuous comparison: the sound carries signal, and another seed, prompt and guidance
    # each change what is made (--guidance is the video's, so it may change the frames alone).
    assert np.abs(theirs).max() > 0
    for tries in variations(data):
        others = (plain_diffusers(data, **change) for change in tries)
        assert any(
            np.abs(other.audio - theirs).max() > 1e-4
            or np.abs(other.frames.astype(int) - made.frames.astype(int)).max() > 1
            for other in others
        ), tries


def test_png_frames_and_wav_equal_plain_diffusers(tmp_path: Path) -> None:
    result = cli(*DRUMMER, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["output"]["audio"]["file"] == "audio.wav"
    from PIL import Image

    ours = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
    import av

    with av.open(str(folder / "audio.wav")) as container:
        # pcm_f32le decodes to packed (interleaved) float samples.
        wav = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).reshape(-1, 2).T
    theirs = assert_reproduces(ours, data).audio
    assert np.allclose(wav, theirs, atol=1e-6)
    assert raw_sha256(theirs) == data["output"]["audio"]["raw_sha256"]
    assert not np.allclose(wav, plain_diffusers(data, seed=6).audio, atol=1e-4)


@pytest.mark.pipeline
def test_webm_carries_opus_and_no_audio_drops_the_sound(tmp_path: Path) -> None:
    assert cli(*DRUMMER, "--seed", "1", "--out", "drum.webm").exit_code == 0
    found = streams(tmp_path / "drum.webm")
    assert found["video"]["codec"] == "vp9" and found["audio"]["codec"] == "opus"
    assert sidecar(tmp_path / "drum.json")["output"]["audio"]["codec"] == "opus"
    result = cli(*DRUMMER, "--seed", "1", "--out", "silent.mp4", "--no-audio")
    assert result.exit_code == 0, result.stderr
    assert set(streams(tmp_path / "silent.mp4")) == {"video"}
    data = sidecar(tmp_path / "silent.json")
    assert "audio" not in data["output"] and data["config"]["output"]["audio"] is False
    # --no-audio also lets a format without an audio track through.
    assert cli(*DRUMMER, "--seed", "1", "--out", "still.gif", "--no-audio").exit_code == 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((*DRUMMER, "--frames", "100"), ("--frames 100", "8k+1", "97 or 105")),
        ((*DRUMMER, "--width", "700"), ("--width 700", "multiples of 32", "672 or 704")),
        ((*DRUMMER, "--format", "gif"), ("gif has no audio track", "--no-audio")),
        (("t2v", "a fox", "--preset", "tiny-wan", "--no-audio"), ("--no-audio", "Wan 2.1 makes no sound", "LTX-2")),
        ((*DRUMMER, "--set", "sampling.image_crf=0"), ("--image-crf is not used by LTX-2 t2v", "LTX-2 (i2v)")),
        ((*DRUMMER, "--cache", "first-block"), ("--cache first-block", "it takes: pab, taylorseer", "registry")),
        ((*DRUMMER, "--cache", "pab"), ("--cache pab", "--stg-scale 0", "--modality-scale 1", "taylorseer")),
        (
            (*DRUMMER, "--cache", "pab", "--stg-scale", "0", "--audio-stg-scale", "0", "--modality-scale", "1"),
            ("--audio-modality-scale 1",),
        ),
        ((*DRUMMER, "--sigma", "1.0", "--sigma", "0.5", "--sigma", "0.2"), ("--steps 2", "3 --sigma", "--steps 3")),
    ],
)
def test_bad_ltx2_input_is_one_line_exit_3_and_writes_nothing(tmp_path: Path, args: tuple, needles: tuple) -> None:
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


@pytest.mark.pipeline
def test_guidance_options_reach_the_pipeline_by_diffusers_names(tmp_path: Path) -> None:
    result = cli(
        *DRUMMER, "--seed", "2", "--out", "g.mp4", "--stg-scale", "0", "--modality-scale", "1",
        "--guidance-rescale", "0", "--audio-guidance", "1", "--audio-stg-scale", "0", "--audio-modality-scale", "1",
        "--audio-guidance-rescale", "0", "--no-cross-timestep", "--fps", "25", "--sigma", "1.0", "--sigma", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    kwargs = sidecar(tmp_path / "g.json")["pipeline"]["call_kwargs"]
    assert kwargs["stg_scale"] == 0 and kwargs["modality_scale"] == 1 and kwargs["guidance_rescale"] == 0
    assert kwargs["audio_guidance_scale"] == 1 and kwargs["audio_stg_scale"] == 0
    assert kwargs["audio_modality_scale"] == 1 and kwargs["audio_guidance_rescale"] == 0
    assert kwargs["use_cross_timestep"] is False and kwargs["frame_rate"] == 25.0
    # A fixed sigma schedule replaces the step count, as the LTX-2 docs ask.
    assert kwargs["sigmas"] == [1.0, 0.5] and "num_inference_steps" not in kwargs


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_a_browser_plays_the_video_with_its_sound(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert cli(*DRUMMER, "--seed", "3", "--out", "drum.mp4", "--frames", "25").exit_code == 0
    (tmp_path / "page.html").write_text('<video id="v" src="drum.mp4" muted preload="auto"></video>')
    with sync_playwright() as playwright:
        # AudioVideoTracks exposes video.audioTracks (behind a flag in Chromium).
        args = ["--no-sandbox", "--enable-blink-features=AudioVideoTracks"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto((tmp_path / "page.html").as_uri())
        page.wait_for_function("document.getElementById('v').readyState >= 2", timeout=20_000)
        state = page.evaluate(
            "() => { const v = document.getElementById('v');"
            " return {duration: v.duration, tracks: v.audioTracks ? v.audioTracks.length : null,"
            " kind: v.audioTracks && v.audioTracks.length ? v.audioTracks[0].kind : null}; }"
        )
        browser.close()
    assert state["duration"] == pytest.approx(25 / 24, abs=0.1)
    assert state["tracks"] == 1 and state["kind"] is not None


def test_keyframes_run_the_condition_pipeline_equal_to_plain_diffusers(tmp_path: Path) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    Image.new("RGB", (32, 32), (30, 90, 220)).save("last.png")
    result = cli(
        "i2v", "first.png", "a drummer", "--preset", "tiny-ltx2", "--keyframe", "8:last.png:0.9", "--image-crf", "0",
        "--seed", "4", "--format", "png", "--out", "frames/",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTX2ConditionPipeline" and "image_crf" not in data["pipeline"]["call_kwargs"]
    assert data["config"]["sampling"]["image_crf"] == 0
    from PIL import Image as PILImage

    ours = np.stack([np.asarray(PILImage.open(p)) for p in sorted(folder.glob("*.png"))])
    conditions = [
        LTX2VideoCondition(frames=Image.open("first.png").convert("RGB"), index=0, strength=1.0, crf=0),
        LTX2VideoCondition(frames=Image.open("last.png").convert("RGB"), index=8, strength=0.9, crf=0),
    ]
    made = assert_reproduces(ours, data, {"conditions": conditions})
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]


@pytest.mark.pipeline
def test_inspect_shows_the_sound_and_replay_and_batch_make_it_again(tmp_path: Path) -> None:
    assert cli(*DRUMMER, "--seed", "7", "--out", "drum.mp4").exit_code == 0
    data = sidecar(tmp_path / "drum.json")
    shown = cli("inspect", "drum.mp4")
    assert shown.exit_code == 0 and "aac, 16000 Hz, 2 channels" in shown.stdout
    shutil.copy(tmp_path / "drum.mp4", tmp_path / "bare.mp4")  # no sidecar beside it: ffmpeg reads the file
    assert "aac (LC)" in cli("inspect", "bare.mp4").stdout
    replayed = cli("replay", "drum.json")
    assert replayed.exit_code == 0, replayed.stderr
    again = sidecar(tmp_path / "drum-replay.json")
    assert again["output"]["audio"]["raw_sha256"] == data["output"]["audio"]["raw_sha256"]
    assert streams(tmp_path / "drum-replay.mp4")["audio"]["codec"] == "aac"
    (tmp_path / "jobs.txt").write_text("a drummer on a rooftop\n")
    assert cli("batch", "jobs.txt", "--preset", "tiny-ltx2", "--out", "runs").exit_code == 0
    (made,) = (tmp_path / "runs").glob("*.mp4")
    assert streams(made)["audio"]["codec"] == "aac" and sidecar(made.with_suffix(".json"))["output"]["audio"]


def test_pab_with_one_pass_guidance_equals_plain_diffusers_with_the_same_config(tmp_path: Path) -> None:
    """PAB runs when STG and cross-modal guidance are off (classifier-free guidance stays on)."""
    one_pass = ("--stg-scale", "0", "--audio-stg-scale", "0", "--modality-scale", "1", "--audio-modality-scale", "1")
    args = (*DRUMMER, *one_pass, "--steps", "6", "--seed", "5", "--format", "png")
    cached = cli(*args, "--cache", "pab", "--out", "pab/")
    assert cached.exit_code == 0, cached.stderr
    folder = Path(cached.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    [call] = data["optimizations"]["calls"]
    assert call["method"] == "transformer.enable_cache"
    settings = dict(call["kwargs"]["config"]["PyramidAttentionBroadcastConfig"])
    assert settings.pop("current_timestep_callback") == "lambda: pipe.current_timestep"
    from PIL import Image

    ours = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
    # Plain diffusers with PyramidAttentionBroadcastConfig(**settings) on its transformer.
    assert_reproduces(ours, data)
    # The cache skips work: without it the same seed makes other frames.
    plain = cli(*args, "--out", "plain/")
    assert plain.exit_code == 0
    uncached = np.stack([np.asarray(Image.open(p)) for p in sorted(Path(plain.stdout.strip()).glob("*.png"))])
    assert np.abs(ours.astype(int) - uncached.astype(int)).max() > 1
