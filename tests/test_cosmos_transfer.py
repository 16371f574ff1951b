"""Cosmos Transfer 2.5 on `vidgen control`: a ControlNet reads the --control video (edge, depth,
segmentation or blur maps, or a clip vidgen makes edge or blur maps from). Wrong settings and
inputs are one line before loading with nothing written (exit 3 for what the command line asks,
exit 4 for files that do not fit); the four full presets plan offline, each with its own
ControlNet branch; the tiny model equals plain diffusers from its sidecar, made in two chunks, and
another seed, prompt, guidance, control video and control scale each change the frames;
--preprocess blur gives the pipeline Gaussian-blurred frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_reproduces,
    cli,
    files_under,
    full_presets,
    one_line_error,
    plain_diffusers,
    png_frames,
    printed_sidecar,
    sidecar_media,
)

from vidgen.config import available_presets
from vidgen.config.layers import merged_preset

TINY = ("--preset", "tiny-cosmos-transfer")
FULL = full_presets("cosmos-transfer")


def _clip(name: str, count: int = 13, seed: int = 0, size: int = 32) -> str:
    """A folder of `count` random frames at `size` pixels a side."""
    from PIL import Image

    folder = Path(name)
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"f{index}.png")
    return name


def _frames(folder: str) -> list:
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(Path(folder).glob("*.png"), key=lambda p: int(p.stem[1:]))]


def test_four_full_presets_one_controlnet_branch_each() -> None:
    assert [f"cosmos-transfer2.5-2b-{kind}" for kind in ("blur", "depth", "edge", "seg")] == FULL
    for name in FULL:
        model = merged_preset(str(available_presets()[name]))["model"]
        kind = name.rsplit("-", 1)[1]
        assert model["id"] == "nvidia/Cosmos-Transfer2.5-2B" and model["revision"] == "diffusers/general"
        assert model["controlnet"] == f"nvidia/Cosmos-Transfer2.5-2B@diffusers/controlnet/general/{kind}"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--chunk-frames", "10"], ["--chunk-frames 10", "4k+1", "9 or 13"]),
        (["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        (["--frames", "9"], ["--frames", "--control video sets the length"]),
        (["--preprocess", "pose"], ["--preprocess pose", "canny, depth, blur or none"]),
        (["--controlnet", "depth"], ["--controlnet depth", "Stable Diffusion ControlNet", "cosmos-transfer2.5-2b-"]),
        (["--mask", "ctl"], ["--mask"]),
        (["--save-latents"], ["--save-latents"]),
        (["--live-preview"], ["--live-preview", "chunk by chunk"]),
        (["--cache", "first-block"], ["--cache", "CacheMixin"]),
        (["--scheduler", "euler"], ["--scheduler", "UniPC"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    _clip("ctl")
    before = files_under(tmp_path)
    one_line_error(cli("control", "a red car", *TINY, "--control", "ctl", *args), 3, *needles)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        ("empty", ["--control in", "no frames"]),
        ("one", ["--control in gives 1 frame(s)", "at least 2"]),
        ("notvideo", ["--control in", "not a video ffmpeg can read"]),
        ("zero.mp4", ["--control in", "not a video ffmpeg can read"]),
        ("missing", ["--control in", "does not exist"]),
    ],
)
def test_control_videos_that_do_not_fit_are_input_errors(
    make: str, needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    if make == "empty":
        Path("in").mkdir()
    elif make == "one":
        _clip("in", 1)
    elif make == "notvideo":
        Path("in").write_text("not a video")
    elif make == "zero.mp4":
        # An mp4 that ffmpeg wrote with no frames in it.
        import subprocess

        import imageio_ffmpeg

        lavfi = ["-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", "-frames:v", "0", "-c:v", "libx264", "in.mp4"]
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *lavfi], check=True)
        Path("in.mp4").rename("in")
    before = files_under(tmp_path)
    one_line_error(cli("control", "a red car", *TINY, "--control", "in"), 4, *needles)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("name", FULL)
def test_full_presets_plan_offline(name: str, nothing_loads: None, tmp_path: Path) -> None:
    _clip("ctl")
    result = cli(
        "control", "a red car", "--preset", name, "--control", "ctl", "--dry-run", "--memory", "auto", "--vram", "24"
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Cosmos2_5_TransferPipeline" in out and "--vram 24" in out
    # The ControlNet is counted beside the transformer, from the published sizes.
    assert "transformer 4.5" in out and "controlnet 0.9" in out
    assert f"@diffusers/controlnet/general/{name.rsplit('-', 1)[1]}" in out
    assert "control: ctl -> 13 frames 1280x704" in out
    assert files_under(tmp_path / "outputs") == []


@pytest.mark.pipeline
def test_chunk_past_the_models_positions_refused_after_loading(tmp_path: Path) -> None:
    _clip("ctl")
    one_line_error(
        cli("control", "a red car", *TINY, "--control", "ctl", "--chunk-frames", "17"),
        3,
        "--chunk-frames 17",
        "16 frames a chunk",
        "--chunk-frames 13 or less",
    )
    assert not Path("outputs").exists()


@pytest.mark.pipeline
def test_tiny_equals_plain_diffusers_and_answers_to_the_control(tmp_path: Path) -> None:
    _clip("ctl")
    result = cli("control", "a red car", *TINY, "--control", "ctl", "--seed", "4", "--format", "png", "--out", "out/")
    ours = png_frames(result)
    data = printed_sidecar(result)
    call = data["pipeline"]["call_kwargs"]
    assert data["pipeline"]["class"] == "Cosmos2_5_TransferPipeline"
    assert data["pipeline"]["media_kwargs"] == {"controls": "inputs.control"}
    # One frame per control frame, made in two 9-frame chunks (the second from the first's last).
    assert ours.shape == (13, 32, 32, 3) and call["num_frames"] == 13 and call["num_frames_per_chunk"] == 9
    assert call["controls_conditioning_scale"] == 1.0 and call["guidance_scale"] == 3.0
    # The ControlNet came through --controlnet, recorded for plain diffusers to load the same.
    assert data["model"]["controlnet"]["id"] == "tiny:cosmos-transfer2.5-controlnet"
    assert data["model"]["components"]["controlnet"] == "CosmosControlNetModel"
    media = sidecar_media(data)
    # Equal to plain diffusers; another seed, prompt and guidance differ.
    assert_reproduces(ours, data, media)
    # Another control video changes the frames, and so does the control scale.
    other = {"controls": _frames(_clip("ctl2", seed=5))}
    assert np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1
    unscaled = json.loads(json.dumps(data))
    unscaled["pipeline"]["call_kwargs"]["controls_conditioning_scale"] = 0.0
    assert np.abs(ours.astype(int) - plain_diffusers(unscaled, media).frames.astype(int)).max() > 1


@pytest.mark.pipeline
def test_preprocess_blur_passes_gaussian_blurred_frames(tmp_path: Path) -> None:
    from PIL import ImageFilter

    _clip("ctl", 9)
    result = cli(
        "control", "a red car", *TINY, "--control", "ctl", "--preprocess", "blur", "--control-scale", "0.5",
        "--seed", "2", "--format", "png", "--out", "out/",
    )  # fmt: skip
    ours = png_frames(result)
    data = printed_sidecar(result)
    assert data["config"]["inputs"]["preprocess"] == "blur"
    assert data["pipeline"]["call_kwargs"]["controls_conditioning_scale"] == 0.5
    # A Gaussian blur of radius 1/90 of the short side (at least 1 pixel) of each frame.
    blurred = [frame.filter(ImageFilter.GaussianBlur(1.0)) for frame in _frames("ctl")]
    assert_reproduces(ours, data, {"controls": blurred})


def test_blur_maps_are_smoother_than_the_frames(tmp_path: Path) -> None:
    from vidgen.config import resolve
    from vidgen.families import defaults_layer
    from vidgen.io.inputs import control_maps

    config = resolve("control", ["tiny-cosmos-transfer"], [], defaults_layer).config
    config = config.model_copy(update={"inputs": config.inputs.model_copy(update={"preprocess": "blur"})})
    frames = _frames(_clip("ctl", 2, size=180))
    maps = control_maps(config, frames)
    for frame, blurred in zip(frames, maps, strict=True):
        before, after = (np.abs(np.diff(np.asarray(image, dtype=int), axis=1)).mean() for image in (frame, blurred))
        assert blurred.size == frame.size and after < before / 3


def test_listed_by_models_and_control_help() -> None:
    models = cli("models")
    assert models.exit_code == 0 and "cosmos-transfer" in models.stdout
    text = " ".join(cli("control", "--help").stdout.split())
    assert "--chunk-frames" in text and "blur" in text


def test_readme_steer_with_depth_commands_plan_offline(nothing_loads: None, tmp_path: Path) -> None:
    """Every command of the README's "Steer with depth or edges" section plans offline as typed
    (with --dry-run), on a clip and folders of maps named as there; the one that makes depth maps
    needs controlnet-aux and says so in one line where it is not installed."""
    import importlib.util
    import shlex

    import imageio.v2 as imageio

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Steer with depth or edges", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.startswith("vidgen ")]
    assert len(commands) == 10 and {"wan2.1-vace-1.3b", "animatediff-controlnet", "ltx2-ic-depth"} <= {
        c for cmd in commands for c in cmd
    }
    rng = np.random.default_rng(0)
    imageio.mimwrite("drive.mp4", list(rng.integers(0, 255, (13, 64, 64, 3), dtype=np.uint8)), fps=16)
    _clip("depth", seed=1)
    _clip("seg", seed=2)
    aux = importlib.util.find_spec("controlnet_aux") is not None
    for command in commands:
        result = cli(*command[1:], "--dry-run")
        if "--preprocess" in command and command[command.index("--preprocess") + 1] == "depth" and not aux:
            one_line_error(result, 4, "--preprocess depth needs a depth detector", "pip install controlnet-aux")
            continue
        assert result.exit_code == 0, (command, result.stderr)
        assert "control: " in result.stdout, command
    assert files_under(tmp_path / "outputs") == []


@pytest.mark.pipeline
def test_controlnet_from_a_hub_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--controlnet REPO@REVISION loads the ControlNet from that branch of the repo (here a Hub
    cache holding only the branch, offline), records the revision and the snapshot it came from,
    and plain diffusers loading that snapshot makes the same frames."""
    import shutil

    from huggingface_hub import constants

    from vidgen.models import tiny

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    commit = "0" * 40
    repo = cache / "models--someone--transfer"
    (repo / "refs" / "diffusers" / "controlnet").mkdir(parents=True)
    (repo / "refs" / "diffusers" / "controlnet" / "depth").write_text(commit)
    shutil.copytree(tiny.ensure("cosmos-transfer2.5-controlnet"), repo / "snapshots" / commit)
    _clip("ctl")
    args = ("control", "a red car", *TINY, "--control", "ctl", "--seed", "4", "--format", "png", "--out", "out/")
    one_line_error(cli(*args, "--controlnet", "someone/transfer@diffusers/controlnet/seg"), 5, "someone/transfer")
    result = cli(*args, "--controlnet", "someone/transfer@diffusers/controlnet/depth")
    data = printed_sidecar(result)
    assert data["model"]["controlnet"] == {
        "id": "someone/transfer@diffusers/controlnet/depth",
        "source": "hub",
        "path": str(repo / "snapshots" / commit),
        "revision": "diffusers/controlnet/depth",
    }
    assert_reproduces(png_frames(result), data, sidecar_media(data))


def test_hub_revision_is_read_from_hub_ids_only(tmp_path: Path) -> None:
    from vidgen.core.errors import ModelError
    from vidgen.models.components import hub_revision

    assert hub_revision("owner/name@diffusers/controlnet/general/edge") == (
        "owner/name",
        "diffusers/controlnet/general/edge",
    )
    assert hub_revision("owner/name") == ("owner/name", None)
    assert hub_revision("tiny:cosmos-transfer2.5-controlnet") == ("tiny:cosmos-transfer2.5-controlnet", None)
    Path("nets@v2").mkdir()  # a local folder whose name has an @ is a folder
    assert hub_revision("nets@v2") == ("nets@v2", None)
    assert hub_revision("./x@y") == ("./x@y", None)
    with pytest.raises(ModelError, match="after the @"):
        hub_revision("owner/name@")


@pytest.mark.pipeline
def test_fp8_storage_and_vae_tiling_run(tmp_path: Path) -> None:
    _clip("ctl", 9)
    result = cli(
        "control", "a red car", *TINY, "--control", "ctl", "--fp8-storage", "--vae-tiling", "--format", "png",
        "--out", "out/",
    )  # fmt: skip
    assert png_frames(result).shape == (9, 32, 32, 3)
    applied = printed_sidecar(result)["optimizations"]["applied"]
    assert any("fp8" in step for step in applied) and any("vae_tiling" in step for step in applied), applied
