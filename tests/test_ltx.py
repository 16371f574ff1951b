"""LTX-Video 0.9.x on tiny models: keyframes and clips through LTXConditionPipeline, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, plain_diffusers, sidecar

FOX = ("t2v", "a fox in snow", "--preset", "tiny-ltx")


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_keyframe_equals_plain_condition_pipeline_from_the_sidecar(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("first.png")
    Image.new("RGB", (32, 32), (30, 90, 220)).save("last.png")
    result = cli(
        "i2v", "first.png", "a fox in snow", "--preset", "tiny-ltx", "--keyframe", "16:last.png",
        "--seed", "5", "--format", "png", "--out", "frames/",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    kwargs = data["pipeline"]["call_kwargs"]
    assert kwargs["frame_index"] == [0, 16] and kwargs["strength"] == [1.0, 1.0] and kwargs["frame_rate"] == 24
    assert data["config"]["inputs"]["conditions"] == [
        {"image": "last.png", "video": None, "frame_index": 16, "strength": 1.0}
    ]
    assert data["inputs"]["conditions"][0]["frame_index"] == 16
    # inspect names the keyframe file, which a replay would read.
    assert "last.png at frame 16, strength 1.0" in cli("inspect", str(folder.with_name(folder.name + ".json"))).stdout
    # A replay lists the keyframe among what it reads, and runs the condition pipeline again.
    # (first.png and last.png lie outside the sidecar's folder, frames/: the replay needs --allow-inputs.)
    replay = cli("replay", str(folder.with_name(folder.name + ".json")), "--dry-run", "--allow-inputs")
    assert replay.exit_code == 0, replay.stderr
    assert "keyframe last.png at frame 16" in replay.stderr + replay.stdout
    assert "LTXConditionPipeline" in replay.stdout and "conditions: last.png at frame 16" in replay.stdout
    ours = _frames(folder)
    images = [Image.open("first.png").convert("RGB"), Image.open("last.png").convert("RGB")]
    # Plain LTXConditionPipeline gets the image and video lists (another seed, prompt, guidance differ).
    assert data["pipeline"]["class"] == "LTXConditionPipeline"
    assert ours.shape == (17, 32, 32, 3)
    assert_reproduces(ours, data, {"image": images, "video": [None, None]})
    # Not vacuous either: the run without the keyframe differs.
    alone = plain_diffusers({**data, "pipeline": {**data["pipeline"], "call_kwargs": {
        **kwargs, "frame_index": [0], "strength": [1.0]}}}, {"image": images[:1], "video": [None]})  # fmt: skip
    assert np.abs(ours.astype(int) - alone.frames.astype(int)).max() > 1


def test_condition_video_extends_a_clip_in_text_to_video(tmp_path: Path) -> None:
    from PIL import Image

    clip = tmp_path / "clip"
    clip.mkdir()
    for index in range(12):
        Image.new("RGB", (32, 32), (20 * index, 90, 200)).save(clip / f"f{index:02d}.png")
    result = cli(*FOX, "--condition-video", "clip", "--seed", "1", "--format", "png", "--out", "ext/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTXConditionPipeline"
    # 12 frames are not 8k+1: the first 9 are used, and the sidecar says so.
    assert data["inputs"]["conditions"][0]["frames_used"] == 9
    frames = [Image.open(p).convert("RGB") for p in sorted(clip.glob("*.png"))][:9]
    assert_reproduces(_frames(folder), data, {"image": [None], "video": [frames]})


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((*FOX, "--frames", "100"), ("--frames 100", "8k+1", "97 or 105")),
        ((*FOX, "--width", "700"), ("--width 700", "multiples of 32", "672 or 704")),
        (("i2v", "a.png", "x", "--preset", "tiny-ltx", "--keyframe", "17:b.png"), ("past the last frame", "0 to 16")),
        (("i2v", "a.png", "x", "--preset", "tiny-ltx", "--keyframe", "last.png"), ("FRAME:IMAGE[:STRENGTH]",)),
        ((*FOX, "--image-cond-noise-scale", "0.025"), ("--image-cond-noise-scale", "--keyframe")),
        ((*FOX, "--no-audio"), ("--no-audio", "LTX-Video makes no sound", "LTX-2")),
        ((*FOX, "--cache", "magcache"), ("--cache magcache", "none are published", "magcache:calibrate")),
        (("t2v", "a fox", "--preset", "tiny-wan", "--condition-video", "c.mp4"), ("--keyframe is not used by Wan",)),
    ],
)
def test_bad_ltx_input_is_one_line_exit_3_and_writes_nothing(tmp_path: Path, args: tuple, needles: tuple) -> None:
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32), (9, 9, 9)).save(name)
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


def test_a_preset_cannot_make_vidgen_read_a_keyframe_outside_its_folder(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (9, 9, 9)).save("secret.png")
    Image.new("RGB", (32, 32), (9, 9, 9)).save("first.png")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "p.yaml").write_text(
        "extends: tiny-ltx\ninputs:\n  conditions:\n    - {image: ../secret.png, frame_index: 8}\n"
    )
    before = files_under(tmp_path)
    one_line_error(cli("i2v", "first.png", "a fox", "--preset", "shared/p.yaml"), 4, "../secret.png", "--allow-inputs")
    assert files_under(tmp_path) == before


def test_a_changed_keyframe_file_changes_the_batch_job_hash(tmp_path: Path) -> None:
    from PIL import Image

    from vidgen import families
    from vidgen.batch import jobs as batch
    from vidgen.config import Layer, resolve

    Image.new("RGB", (32, 32), (9, 9, 9)).save("key.png")
    layer = Layer(
        label="cli:--keyframe",
        data={"inputs": {"image": "first.png", "conditions": [{"image": "key.png", "frame_index": 8}]}},
        origin="--keyframe",
    )
    before = batch.config_hash(resolve("i2v", ["tiny-ltx"], [layer], families.defaults_layer))
    assert batch.config_hash(resolve("i2v", ["tiny-ltx"], [layer], families.defaults_layer)) == before
    Image.new("RGB", (32, 32), (200, 9, 9)).save("key.png")
    assert batch.config_hash(resolve("i2v", ["tiny-ltx"], [layer], families.defaults_layer)) != before
