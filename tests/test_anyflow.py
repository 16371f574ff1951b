"""AnyFlow and AnyFlow FAR: their frame and size rules, the modes they do not do and the options
they cannot take, refused before loading with one line (exit 3); FAR's chunk schedule follows the
frame count; FAR image-to-video (the image as a one-frame video tensor) equals plain diffusers from
its sidecar; every full-size preset plans offline; the options declared run on the tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_reproduces, cli, decode, files_under, full_presets, one_line_error, sidecar, sidecar_media

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import Layer, merged_preset
from vidgen.families.anyflow import chunk_partition, context_chunks, image_video

T2V = ("t2v", "a red fox in snow", "--preset", "tiny-anyflow")
FAR = ("t2v", "a red fox in snow", "--preset", "tiny-anyflow-far")
FULL = full_presets("anyflow", "anyflow-far")


def _clip(folder: str, count: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> str:
    """A folder of `count` random frames named f0..fN."""
    import numpy as np
    from PIL import Image

    Path(folder).mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(f"{folder}/f{index}.png")
    return folder


def _image(size: tuple[int, int] = (32, 32)) -> str:
    from PIL import Image

    Image.new("RGB", size, (200, 80, 40)).save("first.png")
    return "first.png"


@pytest.mark.parametrize(
    ("run", "args", "needles"),
    [
        (T2V, ["--frames", "10"], ["--frames 10", "4k+1", "9 or 13"]),
        (FAR, ["--frames", "12"], ["--frames 12", "4k+1", "9 or 13"]),
        (T2V, ["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (FAR, ["--width", "24"], ["--width 24", "multiples of 16", "16 or 32"]),
        (T2V, ["--cache", "pab"], ["--cache", "CacheMixin"]),
        (FAR, ["--cache", "taylorseer"], ["--cache", "CacheMixin"]),
        (T2V, ["--compile"], ["--compile", "not checked"]),
        (T2V, ["--attention-slicing"], ["--attention-slicing", "--attention-backend"]),
        (FAR, ["--attention-backend", "native"], ["--attention-backend", "flex attention"]),
        (FAR, ["--live-preview"], ["--live-preview", "chunk by chunk"]),
        (T2V, ["--scheduler", "euler"], ["--scheduler", "flow-map"]),
    ],
)
def test_refused_before_loading(
    run: tuple[str, ...], args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    one_line_error(cli(*run, *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_wrong_mode_and_short_i2v_refused(nothing_loads: None, tmp_path: Path) -> None:
    image = _image()
    # The bidirectional checkpoints are text-to-video only; FAR takes an image.
    one_line_error(cli("i2v", image, "a fox", "--preset", "tiny-anyflow"), 3, "not `vidgen i2v`")
    one_line_error(cli("v2v", "clip.mp4", "a fox", "--preset", "tiny-anyflow-far"), 3, "not `vidgen v2v`")
    one_line_error(
        cli("i2v", image, "a fox", "--preset", "tiny-anyflow-far-i2v", "--frames", "1"), 3, "--frames 1", "at least 5"
    )
    assert files_under(tmp_path) == [tmp_path / "first.png"]


def test_far_chunks_follow_the_frame_count() -> None:
    # The released 81-frame schedule, and the same pattern for other lengths.
    assert chunk_partition(81) == [1, 3, 3, 3, 3, 3, 3, 2]
    assert chunk_partition(9) == [1, 2]
    assert chunk_partition(13) == [1, 3]
    assert chunk_partition(1) == [1]
    for frames in range(1, 200, 4):
        assert sum(chunk_partition(frames)) == (frames - 1) // 4 + 1
    asked = Layer("cli", {"inputs": {"prompt": "a fox"}, "sampling": {"num_frames": 33}})
    config = resolve("t2v", ["anyflow-far-wan2.1-1.3b"], [asked], families.defaults_layer).config
    kwargs = families.get("anyflow-far").call_kwargs(config, seed=0)
    assert kwargs["chunk_partition"] == [1, 3, 3, 2] and kwargs["num_frames"] == 33


@pytest.mark.parametrize("preset", FULL)
def test_full_presets_plan_offline(preset: str, nothing_loads: None) -> None:
    args = (
        ["i2v", _image()] if "i2v" in preset else ["v2v", _clip("clip", 37, (832, 480))] if "v2v" in preset else ["t2v"]
    )
    result = cli(*args, "a fox", "--preset", preset, "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "AnyFlow" in result.stdout and "--vram 24" in result.stdout


def test_full_presets_are_the_docs(nothing_loads: None) -> None:
    assert FULL == [
        "anyflow-far-wan2.1-1.3b",
        "anyflow-far-wan2.1-1.3b-i2v",
        "anyflow-far-wan2.1-1.3b-v2v",
        "anyflow-far-wan2.1-14b",
        "anyflow-far-wan2.1-14b-i2v",
        "anyflow-far-wan2.1-14b-v2v",
        "anyflow-wan2.1-t2v-1.3b",
        "anyflow-wan2.1-t2v-14b",
    ]
    for name, frames in (("anyflow-wan2.1-t2v-1.3b", 33), ("anyflow-far-wan2.1-14b", 81)):
        data = merged_preset(str(available_presets()[name]))
        sampling = data["sampling"]
        assert (sampling["height"], sampling["width"], sampling["num_frames"]) == (480, 832, frames)
        assert (sampling["num_inference_steps"], sampling["guidance_scale"], data["output"]["fps"]) == (4, 1.0, 16)


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("run", "option"),
    [
        (T2V, ["--attention-backend", "native"]),
        (T2V, ["--fp8-storage"]),
        (T2V, ["--vae-tiling"]),
        (FAR, ["--fp8-storage"]),
        (FAR, ["--vae-tiling"]),
    ],
)
def test_declared_options_run_on_the_tiny_model(run: tuple[str, ...], option: list[str], tmp_path: Path) -> None:
    result = cli(*run, *option, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    video = Path(result.stdout.strip())
    assert decode(video)[0].shape[:3] == (9, 32, 32)
    record = sidecar(video.with_suffix(".json"))
    assert record["optimizations"]["applied"], record["optimizations"]


@pytest.mark.pipeline
def test_live_preview_decodes_anyflow_latents(tmp_path: Path) -> None:
    result = cli(*T2V, "--live-preview", "--live-preview-every", "1", "--out", "a/")
    assert result.exit_code == 0, result.stderr
    assert "stopped" not in result.stderr
    assert Path(result.stdout.strip()).with_suffix(".preview.webp").is_file()


@pytest.mark.pipeline
def test_far_i2v_equals_plain_diffusers_with_the_image_as_a_tensor(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    args = ("i2v", _image(), "a red fox in snow", "--preset", "tiny-anyflow-far-i2v", "--seed", "5")
    result = cli(*args, "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["media_kwargs"] == {"video": "inputs.image"}
    assert data["pipeline"]["call_kwargs"]["chunk_partition"] == [1, 2]
    assert "tensor (1, 1, 3, height, width)" in data["pipeline"]["run"]
    media = sidecar_media(data)
    video = image_video(media["video"])
    assert tuple(video.shape) == (1, 1, 3, 32, 32) and 0.0 <= float(video.min()) <= float(video.max()) <= 1.0
    assert_reproduces(ours, data, {"video": video})
    # The first frame is the image, kept through the VAE (the context latent is fixed).
    assert ours.shape[0] == 9


def test_far_v2v_takes_whole_chunks() -> None:
    grid = families.get("anyflow-far").grid
    # A clip fills whole chunks: one latent frame, then threes (12k+1 frames); longer ones are cut.
    assert [grid.usable(n) for n in (1, 9, 12, 13, 17, 24, 25, 37, 40)] == [0, 0, 0, 13, 13, 13, 25, 37, 37]
    assert grid.min_frames == 13 and "12k+1" in grid.rule
    assert [context_chunks(n) for n in (1, 13, 25, 37)] == [1, 2, 3, 4]


def test_far_v2v_clip_too_short_refused_before_loading(nothing_loads: None, tmp_path: Path) -> None:
    _clip("clip", 9)
    result = cli("v2v", "clip", "a fox", "--preset", "tiny-anyflow-far-v2v")
    one_line_error(result, 4, "9 frame(s)", "at least 13")


def test_far_v2v_output_must_outlast_the_clip_refused_before_loading(nothing_loads: None, tmp_path: Path) -> None:
    _clip("clip", 13)
    result = cli("v2v", "clip", "a fox", "--preset", "tiny-anyflow-far-v2v", "--frames", "13", "--out", "a/")
    one_line_error(result, 3, "--frames 13", "13-frame input clip", "--frames 25")
    assert not Path("a").exists() or not any(Path("a").iterdir())


@pytest.mark.pipeline
def test_far_v2v_equals_plain_diffusers_with_the_clip_as_a_tensor(tmp_path: Path) -> None:
    import numpy as np
    from conftest import plain_diffusers
    from PIL import Image

    _clip("clip", 17)  # cut to 13 frames, two whole chunks, with a note
    args = ("v2v", "clip", "a red fox in snow", "--preset", "tiny-anyflow-far-v2v", "--seed", "5")
    result = cli(*args, "--max-frames", "17", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    assert "using the first 13 of 17 input frames" in result.stderr
    folder = Path(result.stdout.strip())
    ours = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert ours.shape == (21, 32, 32, 3)
    assert data["pipeline"]["media_kwargs"] == {"video": "inputs.video"}
    assert data["pipeline"]["call_kwargs"]["chunk_partition"] == [1, 3, 2]
    assert "tensor (1, frames, 3, height, width)" in data["pipeline"]["run"]
    frames = [Image.open(f"clip/f{index}.png").convert("RGB") for index in range(13)]
    video = image_video(frames)
    assert tuple(video.shape) == (1, 13, 3, 32, 32)
    assert_reproduces(ours, data, {"video": video})
    # Another clip gives another continuation: the chunks after it attend to its frames.
    other = image_video([frame.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for frame in frames])
    theirs = plain_diffusers(data, {"video": other}).frames
    assert np.abs(ours[13:].astype(int) - theirs[13:].astype(int)).max() > 1
