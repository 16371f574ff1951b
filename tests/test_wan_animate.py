"""Wan Animate on `vidgen control`: a character image (--character) driven by a pose video
(--control) and a face video (--face), or replacing a person in --background-video under --mask.
Wrong inputs are one line before loading with nothing written (exit 3 for what the command line
asks, exit 4 for files that do not fit); the full preset plans offline; the tiny model equals plain
diffusers from its sidecar in both modes, and another seed, another pose video and another face
video each change the frames; replay reads the new inputs again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    files_under,
    one_line_error,
    plain_diffusers,
    png_frames,
    printed_sidecar,
    sidecar_media,
)

TINY = ("--preset", "tiny-wan-animate")


def _clip(name: str, count: int, size: int = 32, seed: int = 0, mode: str = "RGB") -> str:
    """A folder of `count` random frames at `size` pixels a side."""
    from PIL import Image

    folder = Path(name)
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"f{index}.png")
    return name


def _flat(name: str, value: int, size: int = 16) -> str:
    """13 frames of one grey level (face crops unless `size` says otherwise)."""
    from PIL import Image

    Path(name).mkdir()
    for index in range(13):
        Image.new("RGB", (size, size), (value,) * 3).save(Path(name) / f"f{index}.png")
    return name


def _inputs() -> tuple[str, ...]:
    """A 13-frame pose video at the run's size, 16-pixel face crops (the tiny face encoder's
    square) and the character at the run's size."""
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("character.png")
    return ("--control", _clip("pose", 13), "--face", _clip("face", 13, 16, seed=1), "--character", "character.png")


@pytest.mark.parametrize(
    ("drop", "args", "needles"),
    [
        ("--face", [], ["needs --face"]),
        ("--character", [], ["needs --character"]),
        (None, ["--mask", "mask"], ["--mask", "needs --background-video"]),
        (None, ["--background-video", "bg"], ["--background-video", "needs --mask"]),
        (None, ["--segment-frames", "10"], ["--segment-frames 10", "4k+1", "9 or 13"]),
        (None, ["--segment-overlap", "3"], ["--segment-overlap 3", "1 or 5"]),
        (None, ["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (None, ["--ref", "character.png"], ["--ref", "--character IMAGE"]),
        (None, ["--preprocess", "canny"], ["--preprocess canny", "pose video"]),
        (None, ["--save-latents"], ["--save-latents", "decodes inside"]),
        (None, ["--live-preview"], ["--live-preview", "segment by segment"]),
        (None, ["--cache", "first-block"], ["--cache", "segment loop"]),
    ],
)
def test_refused_before_loading(
    drop: str | None, args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    given = list(_inputs())
    _clip("bg", 13, seed=2)
    _clip("mask", 13, seed=3, mode="L")
    if drop:
        index = given.index(drop)
        del given[index : index + 2]
    one_line_error(cli("control", "a dancer", *TINY, *given, *args), 3, *needles)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--face", "face9"], ["--face face9 gives 9 frame(s)", "--control pose 13", "one frame per --control frame"]),
        (["--control", "empty"], ["--control empty", "no frames"]),
        (["--control", "one"], ["--control one gives 1 frame(s)", "at least 2"]),
        (["--background-video", "bg9", "--mask", "mask"], ["--background-video bg9 gives 9", "--control pose 13"]),
        (["--background-video", "bg", "--mask", "mask9"], ["--mask mask9 gives 9 frame(s)", "--control pose 13"]),
    ],
)
def test_inputs_that_do_not_fit_are_input_errors(
    args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    given = list(_inputs())
    _clip("face9", 9, 16)
    _clip("bg", 13, seed=2)
    _clip("bg9", 9, seed=2)
    _clip("mask", 13, seed=3, mode="L")
    _clip("mask9", 9, seed=3, mode="L")
    _clip("one", 1)
    Path("empty").mkdir()
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in given:
            given[given.index(flag) + 1] = value
        else:
            given += [flag, value]
    one_line_error(cli("control", "a dancer", *TINY, *given), 4, *needles)
    assert not (tmp_path / "outputs").exists()


def test_control_help_lists_the_new_inputs_once() -> None:
    result = cli("control", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for flag in ("--character", "--face", "--background-video", "--segment-frames", "--segment-overlap"):
        assert text.count(f"{flag} ") >= 1, flag
    assert "Wan Animate" in text


def test_full_preset_plans_offline(nothing_loads: None, tmp_path: Path) -> None:
    given = _inputs()
    result = cli(
        "control", "a dancer", "--preset", "wan2.2-animate-14b", *given, "--dry-run", "--memory", "auto", "--vram", "24"
    )
    assert result.exit_code == 0, result.stderr
    assert "WanAnimatePipeline" in result.stdout and "--vram 24" in result.stdout
    assert "face_video: face -> 13 frames 16x16" in result.stdout  # the face crops keep their size
    replaced = cli(
        "control", "a dancer", "--preset", "wan2.2-animate-14b", *given, "--background-video", _clip("bg", 13),
        "--mask", _clip("mask", 13, mode="L"), "--dry-run",
    )  # fmt: skip
    assert replaced.exit_code == 0, replaced.stderr
    assert "background_video: bg -> 13 frames 1280x720" in replaced.stdout


@pytest.mark.pipeline
def test_animate_equals_plain_diffusers_and_answers_to_pose_and_face(tmp_path: Path) -> None:
    result = cli("control", "a dancer", *TINY, *_inputs(), "--seed", "4", "--format", "png", "--out", "out/")
    ours = png_frames(result)
    data = printed_sidecar(result)
    call = data["pipeline"]["call_kwargs"]
    assert data["pipeline"]["class"] == "WanAnimatePipeline" and call["mode"] == "animate"
    assert data["pipeline"]["media_kwargs"] == {
        "pose_video": "inputs.control",
        "image": "inputs.character",
        "face_video": "inputs.face_video",
    }
    # Two 9-frame segments (the second starts from the first's last frame) make the 13 frames.
    assert ours.shape == (13, 32, 32, 3) and call["segment_frame_length"] == 9
    media = sidecar_media(data)  # read again from the files the sidecar names, hashes checked
    # Equal to plain diffusers; another seed and another prompt differ (guidance 1: no CFG to vary).
    assert_reproduces(ours, data, media)
    from PIL import Image

    # Another pose video, another face video: each changes the frames. The tiny model's face path
    # (a random motion encoder, face encoder and adapter) answers unevenly, so as for prompts
    # (conftest.variations) a few faces are tried: random crops, all black, all white.
    tries = {
        "pose_video": [_clip("pose2", 13, seed=5)],
        "face_video": [_clip("face2", 13, 16, seed=6), _flat("black", 0), _flat("white", 255)],
    }
    for name, folders in tries.items():
        changed = []
        for folder in folders:
            other = {**media, name: [Image.open(p).convert("RGB") for p in sorted(Path(folder).glob("*.png"))]}
            changed.append(np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1)
        assert any(changed), name
    # The sidecar names files outside its folder: replay reads them only when told to (DESIGN §7),
    # and then reads the character, pose and face again, checked against the sidecar.
    recorded = str(Path(result.stdout.strip()).with_suffix(".json"))
    one_line_error(cli("replay", recorded), 4, "pose, character.png, face", "--allow-inputs")
    replayed = cli("replay", recorded, "--allow-inputs")
    assert np.array_equal(png_frames(replayed), ours)


@pytest.mark.pipeline
def test_replace_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    extra = ("--background-video", _clip("bg", 13, seed=2), "--mask", _clip("mask", 13, seed=3, mode="L"))
    result = cli("control", "a dancer", *TINY, *_inputs(), *extra, "--seed", "4", "--format", "png", "--out", "out/")
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert data["pipeline"]["call_kwargs"]["mode"] == "replace"
    assert data["pipeline"]["media_kwargs"]["mask_video"] == "inputs.mask"

    def frames(folder: str, mode: str = "RGB") -> list:
        return [Image.open(p).convert(mode) for p in sorted(Path(folder).glob("*.png"), key=lambda p: int(p.stem[1:]))]

    media = {
        "pose_video": frames("pose"),
        "face_video": frames("face"),
        "image": Image.open("character.png").convert("RGB"),
        "background_video": frames("bg"),
        "mask_video": frames("mask", "L"),
    }
    assert_reproduces(ours, data, media)
    # The background video is read: another one changes the frames (tried as the faces above).
    changed = []
    for folder in (_clip("bg2", 13, seed=9), _flat("black", 0, 32), _flat("white", 255, 32)):
        other = {**media, "background_video": frames(folder)}
        changed.append(np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1)
    assert any(changed)
    assert files_under(tmp_path / "out")
