"""Wan-Animate-2 on `vidgen control`: a character image (--character) driven by a raw video
(--control), through diffusers' WanAnimate2ModularPipeline, vidgen's first modular pipeline.
Wrong inputs are one line before loading with nothing written (exit 3 for what the command line
asks, exit 4 for videos that do not fit); both full presets plan offline; the tiny models equal
plain diffusers' modular pipeline built from the sidecar, and another seed, prompt and driving
video each change the frames; progress counts every denoising step of every segment."""

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
    random_frames,
    sidecar_media,
)

TINY = ("--preset", "tiny-wan-animate-2")


def _inputs(frames: int = 17) -> tuple[str, ...]:
    """A driving video and the character, both at the run's size."""
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save("character.png")
    return ("--control", random_frames("drive", frames), "--character", "character.png")


@pytest.mark.parametrize(
    ("preset", "args", "needles"),
    [
        ("tiny-wan-animate-2", ["--segment-frames", "10"], ["--segment-frames 10", "4k+1", "9 or 13"]),
        ("tiny-wan-animate-2", ["--segment-overlap", "3"], ["--segment-overlap 3", "1 or 5"]),
        ("tiny-wan-animate-2", ["--height", "40"], ["--height 40", "multiples of 16", "32 or 48"]),
        ("tiny-wan-animate-2", ["--guidance", "0.5"], ["--guidance 0.5", "1 (no guidance)"]),
        ("tiny-wan-animate-2", ["--preprocess", "canny"], ["--preprocess canny", "raw driving video"]),
        ("tiny-wan-animate-2", ["--face", "drive"], ["--face", "drop --face"]),
        ("tiny-wan-animate-2", ["--save-latents"], ["--save-latents", "decodes inside"]),
        ("tiny-wan-animate-2", ["--live-preview"], ["--live-preview", "segment by segment"]),
        ("tiny-wan-animate-2", ["--attention-backend", "flash"], ["--attention-backend", "flex"]),
        ("tiny-wan-animate-2-distilled", ["--guidance", "3"], ["--guidance", "pinned to 1"]),
    ],
)
def test_refused_before_loading(
    preset: str, args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    one_line_error(cli("control", "a dancer", "--preset", preset, *_inputs(), *args), 3, *needles)
    assert not (tmp_path / "outputs").exists()


def test_character_is_required(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("control", "a dancer", *TINY, "--control", random_frames("drive", 17)), 3, "needs --character")


@pytest.mark.parametrize(
    ("frames", "args", "needles"),
    [
        (0, [], ["--control drive", "no frames"]),
        (1, [], ["--control drive gives 1 frame(s)", "at least 2"]),
        # 3 frames, 9-frame segments: the pipeline would mirror 6 of the video's 3 frames.
        (3, [], ["gives 3 frames", "--segment-frames 9", "at least 5 frames"]),
        (40, ["--segment-frames", "81"], ["gives 40 frames", "--segment-frames 81", "at least 41 frames"]),
        (5, ["--segment-overlap", "5"], ["gives 5 frame(s)", "more than --segment-overlap 5"]),
    ],
)
def test_driving_videos_that_do_not_fit_are_input_errors(
    frames: int, args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    one_line_error(cli("control", "a dancer", *TINY, *_inputs(frames), *args), 4, *needles)
    assert not (tmp_path / "outputs").exists()


def test_a_malformed_driving_video_is_an_input_error(nothing_loads: None, tmp_path: Path) -> None:
    from PIL import Image

    Path("broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    Image.new("RGB", (32, 32)).save("character.png")
    result = cli("control", "a dancer", *TINY, "--control", "broken.mp4", "--character", "character.png")
    one_line_error(result, 4, "broken.mp4")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("preset", "pipeline"),
    [
        ("wan2.2-animate-2-14b", "WanAnimate2ModularPipeline"),
        ("wan2.2-animate-2-14b-distilled", "WanAnimate2DistilledModularPipeline"),
    ],
)
@pytest.mark.parametrize("vram", ["24", "80"])
def test_full_presets_plan_offline(preset: str, pipeline: str, vram: str, nothing_loads: None, tmp_path: Path) -> None:
    given = _inputs(81)
    result = cli("control", "a dancer", "--preset", preset, *given, "--dry-run", "--memory", "auto", "--vram", vram)
    assert result.exit_code == 0, result.stderr
    assert pipeline in result.stdout and f"--vram {vram}" in result.stdout
    # A ModularPipeline has no model offload: the plan groups or streams the blocks.
    assert "--offload model" not in result.stdout
    assert "control: drive -> 81 frames 640x800" in result.stdout


@pytest.mark.parametrize(("offload", "why"), [("model", "no model offload"), ("sequential", "K/V cache")])
def test_model_and_sequential_offload_are_refused(offload: str, why: str, nothing_loads: None, tmp_path: Path) -> None:
    # Planned for a GPU, so the refusal is the family's, not "no CUDA device".
    result = cli(
        "control", "a dancer", *TINY, *_inputs(), "--offload", offload, "--dry-run", "--vram", "24"
    )  # fmt: skip
    one_line_error(result, 3, f"--offload {offload} does not fit", why, "--offload group")


@pytest.mark.pipeline
def test_group_offload_over_a_modular_pipeline_changes_nothing(tmp_path: Path) -> None:
    """--offload group on a ModularPipeline (which has no enable_group_offload): diffusers' hooks
    on each of its models, onloaded to the CPU here, make the same frames."""
    import torch
    from PIL import Image

    from vidgen.config.schema import OptimizationConfig, RunConfig
    from vidgen.families import get
    from vidgen.models import optimize
    from vidgen.models.loader import load

    family = get("wan-animate-2")
    cfg = RunConfig.model_validate({"mode": "control", "model": {"id": "tiny:wan-animate-2"}})
    rng = np.random.default_rng(0)
    drive = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(9)]
    media = {"driving_video": drive, "image": Image.new("RGB", (32, 32), (200, 80, 40))}
    kwargs = {"prompt": "a dancer", "height": 32, "width": 32, "num_inference_steps": 2, "segment_frame_length": 9}
    kwargs.update(max_sequence_length=16, output_type="np")

    def run(pipe: object) -> np.ndarray:
        return family.call(pipe, cfg, kwargs, media, generator=torch.Generator().manual_seed(0))

    plain = run(load(cfg, family, "cpu").pipe)
    pipe = load(cfg, family, "cpu").pipe
    done = optimize.apply(pipe, OptimizationConfig(offload="group"), "cpu", "fp32", ("transformer",))
    assert done["calls"][-1]["method"] == "enable_group_offload"
    assert getattr(pipe.transformer, "_diffusers_hook", None) is not None
    assert np.array_equal(run(pipe), plain)


@pytest.mark.pipeline
@pytest.mark.parametrize("preset", ["tiny-wan-animate-2", "tiny-wan-animate-2-distilled"])
def test_equals_plain_modular_diffusers_and_answers_to_the_driving_video(preset: str, tmp_path: Path) -> None:
    from PIL import Image

    result = cli(
        "control", "a dancer", "--preset", preset, *_inputs(), "--seed", "4", "--format", "png", "--out", "out/"
    )
    ours = png_frames(result)
    data = printed_sidecar(result)
    modular = data["model"]["modular"]
    distilled = preset.endswith("distilled")
    assert data["pipeline"]["class"] == (
        "WanAnimate2DistilledModularPipeline" if distilled else "WanAnimate2ModularPipeline"
    )
    assert modular["blocks"] == ("WanAnimate2DistilledBlocks" if distilled else "WanAnimate2Blocks")
    # Every component from the model's own folder, whatever its index says.
    assert set(modular["load_components"]["subfolder"]) >= {"transformer", "vae", "text_encoder", "image_encoder"}
    assert modular["load_components"]["pretrained_model_name_or_path"] == data["model"]["path"]
    assert data["pipeline"]["media_kwargs"] == {"driving_video": "inputs.control", "image": "inputs.character"}
    # Two 9-frame segments (the second starts from the first's last frame) make the 17 frames.
    assert ours.shape == (17, 32, 32, 3)
    media = sidecar_media(data)  # read again from the files the sidecar names, hashes checked
    # Equal to plain diffusers; another seed and another prompt (and on the base model another
    # guidance, set on its guider) differ.
    assert_reproduces(ours, data, media)
    other = {
        **media,
        "driving_video": [
            Image.open(p).convert("RGB")
            for p in sorted(Path(random_frames("d2", 17, seed=5)).glob("*.png"), key=lambda p: int(p.stem[1:]))
        ],
    }
    assert np.abs(ours.astype(int) - plain_diffusers(data, other).frames.astype(int)).max() > 1
    # replay reads the character and the driving video again (when told to: DESIGN §7).
    recorded = str(Path(result.stdout.strip()).with_suffix(".json"))
    one_line_error(cli("replay", recorded), 4, "drive, character.png", "--allow-inputs")
    assert np.array_equal(png_frames(cli("replay", recorded, "--allow-inputs")), ours)


@pytest.mark.pipeline
def test_guidance_is_set_on_the_guider(tmp_path: Path) -> None:
    result = cli("control", "a dancer", *TINY, *_inputs(), "--guidance", "5", "--format", "png", "--out", "out/")
    data = printed_sidecar(result)
    assert {"method": "guider = guider.new", "kwargs": {"guidance_scale": 5.0}} in data["pipeline"]["setup"]
    assert "guidance_scale" not in data["pipeline"]["call_kwargs"]
    assert_reproduces(png_frames(result), data, sidecar_media(data))
    assert files_under(tmp_path / "out")


@pytest.mark.pipeline
def test_progress_counts_each_step_of_each_segment(tmp_path: Path) -> None:
    """The modular pipeline takes no step callback: the scheduler's steps are counted, two
    segments of two steps here, and the scheduler is left as it was."""
    from vidgen.config.schema import RunConfig
    from vidgen.families import get
    from vidgen.models.loader import load

    family = get("wan-animate-2")
    cfg = RunConfig.model_validate({"mode": "control", "model": {"id": "tiny:wan-animate-2"}})
    pipe = load(cfg, family, "cpu").pipe
    counted: list[int] = []
    with family.steps(pipe, lambda: counted.append(1)) as extra:
        assert extra == {}
        assert "step" in vars(pipe.scheduler)
    assert "step" not in vars(pipe.scheduler)
    _inputs()
    from PIL import Image

    driving = [Image.open(p).convert("RGB") for p in sorted(Path("drive").glob("*.png"), key=lambda p: int(p.stem[1:]))]
    kwargs = {"prompt": "a dancer", "height": 32, "width": 32, "num_inference_steps": 2, "segment_frame_length": 9}
    kwargs["max_sequence_length"] = 16
    media = {"driving_video": driving, "image": Image.open("character.png")}
    with family.steps(pipe, lambda: counted.append(1)) as extra:
        family.call(pipe, cfg, kwargs, media, **extra)
    assert len(counted) == family.step_count(cfg, kwargs, media) == 4


def _model_copy(tmp_path: Path) -> Path:
    """The tiny model's folder, copied where a test may change it."""
    import shutil

    from vidgen.models import tiny

    model = tmp_path / "model"
    shutil.copytree(tiny.ensure("wan-animate-2"), model)
    return model


@pytest.mark.pipeline
def test_an_index_naming_another_place_is_not_followed(tmp_path: Path) -> None:
    """modular_model_index.json is data: its specs may name any repo or folder, but every
    component loads from the model itself, each from its own subfolder."""
    import json

    model = _model_copy(tmp_path)
    index = json.loads((model / "modular_model_index.json").read_text())
    for entry in index.values():
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], dict):
            entry[2]["pretrained_model_name_or_path"] = "someone/elsewhere"
            entry[2]["subfolder"] = "../../outside"
    (model / "modular_model_index.json").write_text(json.dumps(index))
    result = cli("control", "a dancer", *TINY, "--model", str(model), *_inputs(), "--format", "png", "--out", "o/")
    assert result.exit_code == 0, result.stderr
    assert printed_sidecar(result)["model"]["modular"]["load_components"]["pretrained_model_name_or_path"] == str(model)


@pytest.mark.pipeline
def test_a_component_that_does_not_load_fails_in_one_line(tmp_path: Path) -> None:
    import shutil

    model = _model_copy(tmp_path)
    shutil.rmtree(model / "vae")
    result = cli("control", "a dancer", *TINY, "--model", str(model), *_inputs(), "--out", "o.mp4")
    one_line_error(result, 5, "could not load", str(model))
    assert not Path("o.mp4").exists()


def test_a_folder_without_a_modular_index_is_refused(nothing_loads: None, tmp_path: Path) -> None:
    Path("plain").mkdir()
    Path("plain/model_index.json").write_text("{}")
    result = cli("control", "a dancer", *TINY, "--model", "plain", *_inputs(), "--dry-run")
    one_line_error(result, 5, "plain", "modular_model_index.json")


@pytest.mark.pipeline
def test_out_of_memory_between_steps_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The step hook runs vidgen's checks between a modular pipeline's steps too: an allocation
    failure there is exit 6 in one line (not diffusers' block error log), nothing written."""
    monkeypatch.setenv("VIDGEN_TEST_OOM", "denoise")
    one_line_error(cli("control", "a dancer", *TINY, *_inputs(), "--out", "o.mp4"), 6, "during denoise")
    assert not Path("o.mp4").exists()
