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


# -- ref2va: --reference pictures, videos and sounds ------------------------------------------------


def _sound(seed: int, seconds: float, channels: int = 1, rate: int = 32000) -> np.ndarray:
    """Random float32 samples (by default at 32 kHz, the audio VAE's rate), shaped (channels, samples)."""
    return (np.random.default_rng(seed).standard_normal((channels, int(seconds * rate))) * 0.2).astype(np.float32)


def _frames(seed: int, count: int, width: int = 96, height: int = 54) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (count, height, width, 3), dtype=np.uint8)


def _write(path: str, frames: np.ndarray | None, sound: np.ndarray | None, fps: int = 24, rate: int = 32000) -> str:
    """A file of exactly these frames (lossless PNG frames in Matroska) and this sound (float PCM), by the
    bundled ffmpeg: what vidgen decodes from it can be compared with what went in."""
    import subprocess
    import tempfile

    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error"]
    with tempfile.TemporaryDirectory() as folder:
        if frames is not None:
            raw = Path(folder, "frames.rgb")
            raw.write_bytes(frames.tobytes())
            size = f"{frames.shape[2]}x{frames.shape[1]}"
            command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", size, "-r", str(fps), "-i", str(raw)]
        if sound is not None:
            pcm = Path(folder, "sound.f32")
            pcm.write_bytes(np.ascontiguousarray(sound.T, dtype="<f4").tobytes())
            command += ["-f", "f32le", "-ar", str(rate), "-ac", str(sound.shape[0]), "-i", str(pcm)]
        codecs = (["-c:v", "png", "-pix_fmt", "rgb24"] if frames is not None else []) + (
            ["-c:a", "pcm_f32le"] if sound is not None else []
        )
        subprocess.run([*command, *codecs, path], check=True)
    return path


class _VideoPatches:
    """Stands in for Qwen3-VL's video processor, which transformers builds on torchvision, and no
    torchvision build fits this CPU-only torch (the real one needs a GPU user's install): the same
    patch layout (frames in pairs, 16 px patches merged 2x2, normalised to [-1, 1]), in numpy.
    Only the tiny conditioner reads it; vidgen hands the pipeline the same frames either way."""

    temporal_patch_size, patch_size, merge_size = 2, 16, 2

    def __call__(self, videos, do_sample_frames=False, return_tensors="pt"):
        import torch
        from PIL import Image

        pixels, grids = [], []
        tp, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        for video in videos:
            unit = p * m
            height = max(unit, round(video.shape[1] / unit) * unit)
            width = max(unit, round(video.shape[2] / unit) * unit)
            frames = np.stack([np.asarray(Image.fromarray(f).resize((width, height))) for f in video])
            frames = frames.astype(np.float32) / 127.5 - 1.0
            frames = np.concatenate([frames, frames[-1:].repeat(-len(frames) % tp, axis=0)])
            x = frames.transpose(0, 3, 1, 2)
            t, h, w = len(x) // tp, height // p, width // p
            x = x.reshape(t, tp, 3, h // m, m, p, w // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
            pixels.append(x.reshape(t * h * w, 3 * tp * p * p))
            grids.append([t, h, w])
        return {"pixel_values_videos": torch.from_numpy(np.concatenate(pixels)), "video_grid_thw": torch.tensor(grids)}


@pytest.fixture
def reads_video(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's processor gets the stand-in video processor above (see why there)."""
    import transformers

    monkeypatch.setattr(transformers.ColQwen2Processor, "video_processor", _VideoPatches(), raising=False)


def _media_files() -> dict[str, np.ndarray]:
    """face.png (a 60x40 picture), clip.mkv (30 frames at 24 fps, with 1.25 s of stereo sound)
    and voice.wav (2 s of mono sound): what went into each."""
    from PIL import Image

    face = _frames(5, 1, 60, 40)[0]
    Image.fromarray(face).save("face.png")
    clip, track, voice = _frames(6, 30), _sound(7, 1.25, channels=2), _sound(8, 2.0)
    _write("clip.mkv", clip, track)
    _write("voice.wav", None, voice)
    return {"face": face, "clip": clip, "track": track, "voice": voice}


def _references(made: dict[str, np.ndarray], order: tuple[str, ...] = ("face", "clip", "voice")) -> list:
    """diffusers' references for the files, built from what went into them, in `order`."""
    import torch
    from diffusers.modular_pipelines.minimax_h3 import (
        MiniMaxH3AudioReference,
        MiniMaxH3ImageReference,
        MiniMaxH3VideoReference,
    )
    from PIL import Image

    each = {
        "face": MiniMaxH3ImageReference(image=Image.fromarray(made["face"])),
        "clip": MiniMaxH3VideoReference(
            frames=made["clip"], fps=24.0, audio=torch.from_numpy(made["track"]), sample_rate=32000
        ),
        "mute": MiniMaxH3VideoReference(frames=made["clip"], fps=24.0),
        "voice": MiniMaxH3AudioReference(audio=torch.from_numpy(made["voice"]), sample_rate=32000),
    }
    return [each[name] for name in order]


REFERENCES = ("--reference", "face.png", "--reference", "clip.mkv", "--reference", "voice.wav")
SINGER = ("t2v", "Picture 1 sings Audio 1 as in Video 1", *TINY)


@pytest.mark.pipeline
def test_ref2va_takes_pictures_videos_and_sounds_in_order_and_equals_plain_diffusers(
    reads_video: None, tmp_path: Path
) -> None:
    import hashlib

    made = _media_files()
    result = cli(*SINGER, *REFERENCES, "--seed", "3", "--format", "png", "--out", "sing/")
    ours, data = png_frames(result), printed_sidecar(result)
    modular = data["model"]["modular"]
    # The references choose the ref2va workflow, on the checkpoint's other transformer alone.
    assert modular["workflow"] == "ref2va"
    assert "transformer_ref" in modular["load_components"]["names"]
    assert "transformer" not in modular["load_components"]["names"]
    assert data["pipeline"]["media_kwargs"] == {"references": "inputs.references"}
    record = data["inputs"]["references"]
    assert record["path"] == ["face.png", "clip.mkv", "voice.wav"]
    face, clip, voice = record["items"]
    assert (face["kind"], clip["kind"], voice["kind"]) == ("image", "video", "audio")
    # What reached the pipeline is what went into the files: the picture at its own size, every
    # frame of the clip at 24 fps (small enough to keep its size), both sounds at 32 kHz.
    assert face["prepared"]["sha256"] == hashlib.sha256(made["face"].tobytes()).hexdigest()
    assert clip["prepared"]["frames"] == 30 and clip["prepared"]["size"] == [96, 54]
    assert clip["prepared"]["sha256"] == hashlib.sha256(made["clip"].tobytes()).hexdigest()
    assert clip["prepared"]["sound"]["sha256"] == raw_sha256(made["track"])
    assert voice["prepared"]["sha256"] == raw_sha256(made["voice"])
    assert voice["prepared"]["channels"] == 1 and voice["prepared"]["samples"] == 64000
    references = _references(made)
    theirs = assert_reproduces(ours, data, {"references": references})
    assert raw_sha256(theirs.audio) == data["output"]["audio"]["raw_sha256"]
    # The order means something, and so does a video's sound.
    for other in (_references(made, ("clip", "face", "voice")), _references(made, ("face", "mute", "voice"))):
        changed = plain_diffusers(data, {"references": other})
        assert np.abs(changed.frames.astype(int) - theirs.frames.astype(int)).max() > 1
    # `inspect` says what each file became; `replay` reads them again and makes the same video.
    shown = cli("inspect", result.stdout.strip() + ".json")
    assert shown.exit_code == 0, shown.stderr
    shown = shown.stdout
    assert "references   face.png" in shown and "picture, 60x40" in shown
    assert "video, 30 frames at 24 fps, 96x54, sound 2 channel(s) at 32000 Hz, 1.25 s" in shown
    assert "sound, 1 channel(s) at 32000 Hz, 2.00 s" in shown
    assert "MiniMaxH3ModularPipeline (ref2va workflow)" in shown
    again = cli("replay", result.stdout.strip() + ".json", "--allow-inputs", "--out", "again/")
    assert np.array_equal(png_frames(again), ours)
    # The gallery names them on the tile (and finds the tile by them).
    assert cli("gallery", "sing").exit_code == 0
    page = Path("sing/index.html").read_text()
    assert '<p class="inputs">--reference face.png, clip.mkv, voice.wav</p>' in page


@pytest.mark.pipeline
def test_ref2va_reads_a_video_at_24_fps_and_its_sound_at_32_khz_no_longer_than_the_run(tmp_path: Path) -> None:
    """A 30 fps clip of 6 s with 44.1 kHz sound, for a 124-frame (5.17 s) run: 124 frames at
    24 fps, the sound resampled by ffmpeg and cut at the run's length. The tiny model's processor
    reads no video (see _VideoPatches): without the stand-in, the run ends in one line, exit 5."""
    frames = _frames(9, 180, 64, 36)
    _write("long.mkv", frames, _sound(10, 6.0, channels=2, rate=44100), fps=30, rate=44100)
    result = cli(*SINGER, "--reference", "long.mkv", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "references: long.mkv (video) -> 124 frames 64x36, with sound (2 channel(s) at 32000 Hz)" in result.stdout
    one_line_error(cli(*SINGER, "--reference", "long.mkv", "--out", "x.mp4"), 5, "reads no video", "torchvision")
    assert not Path("x.mp4").exists()

    from vidgen.config.kinds import INPUT_KINDS
    from vidgen.config.schema import RunConfig
    from vidgen.families import get
    from vidgen.io.inputs import prepare

    cfg = RunConfig.model_validate(
        {"mode": "t2v", "inputs": {"prompt": "a", "references": ["long.mkv"]}, "sampling": {"num_frames": 124}}
    )
    cfg.sampling.width = cfg.sampling.height = 32
    (medium,) = prepare(cfg, get("minimax-h3"), 24).media["references"]
    assert medium.kind == "video" and medium.frames.shape == (124, 36, 64, 3) and medium.fps == 24.0
    assert medium.sample_rate == 32000 and medium.audio.shape == (2, round(124 / 24 * 32000))
    # A large video is brought down to the canvas of its own aspect ratio as it is decoded.
    assert INPUT_KINDS["references"].fit is not None
    assert INPUT_KINDS["references"].fit(1920, 1080) == (1344, 768)
    assert INPUT_KINDS["references"].fit(640, 360) == (640, 360)


def _many_pictures(count: int) -> tuple[str, ...]:
    args: tuple[str, ...] = ()
    for index in range(count):
        _noise(index).save(f"p{index}.png")
        args += ("--reference", f"p{index}.png")
    return args


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda: _many_pictures(10), ["10 pictures", "at most 9"]),
        (lambda: ("--reference", _write("v.wav", None, _sound(1, 1.0))), ["only sounds", "picture or video"]),
        (lambda: (Path("n.txt").write_text("hello"), ("--reference", "n.txt"))[1], ["n.txt", "not a picture, video"]),
        (lambda: ("--reference", _write("e.wav", None, _sound(1, 0.0))), ["e.wav", "no sound"]),
        (lambda: ("--reference", _write("s.mkv", _frames(1, 5), None)), ["s.mkv gives 5 frame(s)", "at least 13"]),
        (
            lambda: (_noise(1).resize((200, 40)).save("wide.png"), ("--reference", "wide.png"))[1],
            ["wide.png is 200x40", "1:4 to 4:1"],
        ),
        (
            lambda: (Path("d").mkdir(), ("--reference", "d"))[1],
            ["--reference d is a folder; pass one picture, video or sound file"],
        ),
        (lambda: ("--reference", "gone.mp4"), ["--reference gone.mp4 does not exist"]),
        (lambda: ("--reference", "/dev/zero"), ["not a regular file"]),
        (lambda: ("--reference", "ftp://example.com/a.png"), ["only local files and http(s) URLs"]),
        (
            lambda: (
                Path("bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64),
                ("--reference", "bad.mp4"),
            )[1],
            ["bad.mp4", "not a picture, video or sound"],
        ),
    ],
)
def test_wrong_references_are_refused_before_loading(
    make, needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    args = make()
    one_line_error(cli(*FOX, *args), 4, *needles)
    assert not (tmp_path / "outputs").exists()


def test_references_fit_t2v_of_minimax_h3_only(nothing_loads: None, tmp_path: Path) -> None:
    _noise(1).save("p.png")
    # No family takes references on i2v: the option is not there (a usage error, as for any).
    result = cli("i2v", "p.png", "a fox", *TINY, "--reference", "p.png")
    assert result.exit_code == 2 and "No such option: --reference" in result.stderr
    wan = cli("t2v", "a fox", "--preset", "tiny-wan", "--reference", "p.png")
    one_line_error(wan, 3, "--reference", "MiniMax-H3 (t2v)")
    # Wan VACE's --ref (on vidgen control) is not MiniMax-H3's: t2v suggests --reference.
    result = cli(*FOX, "--ref", "p.png")
    assert result.exit_code == 2 and "--reference" in result.stderr
    result = cli(*FOX, "--set", "inputs.reference_images=[p.png]")
    one_line_error(result, 3, "--ref is not used", "MiniMax-H3 takes pictures, videos and sounds with --reference")


def test_ref2va_plans_the_reference_transformer_and_the_references_rows(nothing_loads: None, tmp_path: Path) -> None:
    from vidgen import families
    from vidgen.batch.jobs import group_key
    from vidgen.config import Layer, resolve

    _noise(1).save("p.png")
    plain = cli("t2v", "a fox", "--preset", "minimax-h3", "--dry-run", "--memory", "auto", "--vram", "80")
    result = cli("t2v", "a fox", "--preset", "minimax-h3", "--reference", "p.png", "--dry-run", "--memory", "auto")
    assert result.exit_code == 0 and plain.exit_code == 0, result.stderr + plain.stderr
    assert "transformer_ref 61.7, text_encoder 62.1" in result.stdout and "transformer 61.7" not in result.stdout
    assert "references: p.png (image) -> 32x32" in result.stdout

    def denoise(text: str) -> float:
        return float(text.split("denoise ")[1].split(",")[0])

    # A 2048 px picture's rows are priced beside the video's.
    assert denoise(result.stdout) > denoise(plain.stdout)

    # A batch runs jobs with and without references on different loaded pipelines.
    def key(inputs: dict) -> str:
        return group_key(resolve("t2v", ["minimax-h3"], [Layer("job", {"inputs": inputs})], families.defaults_layer))

    assert key({"prompt": "a", "references": ["p.png"]}) != key({"prompt": "a"})
    assert key({"prompt": "a"}) == key({"prompt": "b"})


@pytest.mark.pipeline
def test_a_batch_job_with_references_is_redone_when_one_of_them_changes(tmp_path: Path) -> None:
    """A job's identity hashes every reference: a rerun skips it, until a sound it names
    changes; its references also make it a pipeline group of its own (ref2va loads another
    transformer), so the manifest loads twice."""
    _media_files()
    Path("jobs.yaml").write_text(
        "defaults:\n  preset: tiny-minimax-h3\njobs:\n"
        "  - {prompt: 'Picture 1 sings Audio 1', reference: [face.png, voice.wav], seed: 1}\n"
        "  - {prompt: 'a fox', seed: 2}\n"
    )
    first = cli("batch", "jobs.yaml", "--out", "out/")
    assert first.exit_code == 0, first.stderr
    assert first.stderr.count("loading tiny:minimax-h3") == 2
    assert "2 done" in first.stderr
    again = cli("batch", "jobs.yaml", "--out", "out/")
    assert again.exit_code == 0 and "2 skipped" in again.stderr, again.stderr
    _write("voice.wav", None, _sound(11, 2.0))
    changed = cli("batch", "jobs.yaml", "--out", "out/")
    assert changed.exit_code == 0 and "1 done, 1 skipped" in changed.stderr, changed.stderr


@pytest.mark.pipeline
def test_model_folder_without_a_preset_is_known_by_its_modular_index(tmp_path: Path) -> None:
    """A local copy of the repo (`huggingface-cli download MiniMaxAI/MiniMax-H3 --local-dir D`)
    has a modular_model_index.json and no model_index.json: `--model D` alone finds the family."""
    import json

    from vidgen.models import tiny

    folder = str(tiny.ensure("minimax-h3"))
    result = cli("t2v", "a fox", "--model", folder, "--height", "32", "--width", "32", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["config"]["model"]["family"] == "minimax-h3"
    assert plan["sources"]["model.family"] == "model:modular_model_index.json"
    made = cli("t2v", "a fox", "--model", folder, "--height", "32", "--width", "32", "--steps", "2", "--out", "m.mp4")
    assert made.exit_code == 0, made.stderr
    assert sidecar(tmp_path / "m.json")["model"]["modular"]["workflow"] == "t2va"


@pytest.mark.pipeline
def test_denoiser_options_act_on_the_reference_transformer(tmp_path: Path) -> None:
    """ref2va's transformer is `transformer_ref`: --fp8-storage casts it, and a group offload
    (onloaded to the CPU here) hooks it and makes the same frames."""
    import torch
    from PIL import Image

    from vidgen.config.schema import OptimizationConfig, RunConfig
    from vidgen.families import get
    from vidgen.io.inputs import Medium
    from vidgen.models import optimize
    from vidgen.models.loader import load, present_denoisers

    _noise(1).save("p.png")
    result = cli(*FOX, "--reference", "p.png", "--fp8-storage", "--seed", "2", "--out", "f8.mp4")
    assert result.exit_code == 0, result.stderr
    methods = [call["method"] for call in sidecar(tmp_path / "f8.json")["optimizations"]["calls"]]
    assert methods == ["transformer_ref.enable_layerwise_casting"]

    family = get("minimax-h3")
    cfg = RunConfig.model_validate(
        {"mode": "t2v", "model": {"id": "tiny:minimax-h3"}, "inputs": {"prompt": "a", "references": ["p.png"]}}
    )
    media = {"references": [Medium("image", image=Image.open("p.png").convert("RGB"))]}
    kwargs = {"prompt": "Picture 1", "height": 32, "width": 32, "num_frames": 124, "num_inference_steps": 2}

    def run(pipe: object) -> np.ndarray:
        made = family.call(
            pipe, cfg, {**kwargs, "output_type": "np"}, media, generator=torch.Generator().manual_seed(0)
        )
        return made.frames

    plain = run(load(cfg, family, "cpu").pipe)
    pipe = load(cfg, family, "cpu").pipe
    assert present_denoisers(pipe, family) == ("transformer_ref",)
    done = optimize.apply(pipe, OptimizationConfig(offload="group"), "cpu", "fp32", present_denoisers(pipe, family))
    assert done["calls"][-1]["method"] == "enable_group_offload"
    assert getattr(pipe.transformer_ref, "_diffusers_hook", None) is not None
    assert np.array_equal(run(pipe), plain)


def test_a_plan_with_references_prints_nothing_but_the_plan(tmp_path: Path) -> None:
    """Planning reads the workflow's components from diffusers' blocks, whose import pulls in
    torchao (installed with the quantize extra), which warns about its CUDA kernels on a CPU
    build: vidgen quiets it first. A fresh process, as a user's shell runs it."""
    from conftest import cli_subprocess

    _noise(1).save("p.png")
    done = cli_subprocess("t2v", "Picture 1", "--preset", "minimax-h3", "--reference", "p.png", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
