"""`vidgen animate` and AnimateDiff v2v on tiny models: single files, LoRAs, prompt travel, FreeInit."""

from __future__ import annotations

import hashlib
import json
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
    sidecar,
)
from ldm_checkpoint import write_motion_module, write_single_file
from PIL import Image

TINY = ["animate", "a cat", "--preset", "tiny-animatediff"]


@pytest.fixture(scope="session")
def weights(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What a user downloads from model sites, made from the tiny SD 1.5 base: a single-file
    checkpoint (safetensors and pickle), a LoRA, and a LoRA made for another base."""
    import os

    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    os.environ["VIDGEN_CACHE"] = str(tiny_cache)
    from vidgen.models import tiny

    base = tiny.ensure("sd15")
    out = tmp_path_factory.mktemp("weights")
    write_single_file(base, out / "epic.safetensors")
    write_single_file(base, out / "epic.ckpt")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    bigger = UNet2DConditionModel.from_config({**unet.config, "block_out_channels": (16, 16)})
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    for model, name in ((unet, "style.safetensors"), (bigger, "other-base.safetensors")):
        torch.manual_seed(0)
        # init_lora_weights=False: random, non-zero B matrices, so the LoRA changes the output.
        model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
        layers = get_peft_model_state_dict(model)
        StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, weight_name=name)
    # A motion LoRA (like guoyww's zoom/pan ones) adapts only the motion modules' attention.
    from diffusers import AnimateDiffPipeline, MotionAdapter

    animated = AnimateDiffPipeline.from_pretrained(
        base, motion_adapter=MotionAdapter.from_pretrained(tiny.ensure("motion-adapter"))
    ).unet
    torch.manual_seed(1)
    motion_targets = r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0)"
    animated.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=motion_targets, init_lora_weights=False))
    layers = get_peft_model_state_dict(animated)
    assert layers and all("motion_modules" in key for key in layers)
    AnimateDiffPipeline.save_lora_weights(out, unet_lora_layers=layers, weight_name="zoom.safetensors")
    return {
        "motion_lora": out / "zoom.safetensors",
        "base": base,
        "single": out / "epic.safetensors",
        "pickle": out / "epic.ckpt",
        "lora": out / "style.safetensors",
        "wrong_lora": out / "other-base.safetensors",
    }


def _png_run(*args: str) -> tuple[np.ndarray, dict]:
    result = cli(*args, "--format", "png", "--out", "out/", "--overwrite")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
    return frames, sidecar(folder.with_name(folder.name + ".json"))


def _close(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return ours.shape == theirs.shape and int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1


def test_done_when_eight_frames_and_plain_diffusers_agrees(tmp_path: Path) -> None:
    result = cli("animate", "a cat", "--preset", "tiny-animatediff", "--frames", "8", "--steps", "2", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    frames, meta = decode(tmp_path / "a.mp4")
    assert frames.shape == (8, 32, 32, 3) and meta["fps"] == 8
    data = sidecar(tmp_path / "a.json")
    assert data["pipeline"]["class"] == "AnimateDiffPipeline"
    assert data["model"]["scheduler"] == {
        "class": "DDIMScheduler",
        "options": {"clip_sample": False, "timestep_spacing": "linspace", "beta_schedule": "linear", "steps_offset": 1},
    }
    assert data["model"]["motion_adapter"]["id"] == "tiny:motion-adapter"
    assert "clip_skip" not in data["pipeline"]["call_kwargs"]

    ours, data = _png_run("animate", "a cat", "--preset", "tiny-animatediff", "--seed", "4")
    assert ours.shape == (8, 32, 32, 3) and ours.std() > 0
    assert_reproduces(ours, data)


def test_single_file_checkpoint_loads_and_is_what_runs(tmp_path: Path, weights: dict) -> None:
    base_run, _ = _png_run(*TINY, "--seed", "2")
    single = weights["single"]
    config = str(weights["base"])
    ours, data = _png_run(*TINY, "--seed", "2", "--base-model", str(single), "--base-config", config)
    assert data["model"]["source"] == "file"
    assert data["model"]["checkpoint"]["sha256"] == hashlib.sha256(single.read_bytes()).hexdigest()
    assert data["sources"]["model.id"] == "cli:--model"
    # The tiny base's own weights in the original layout: the same video, loaded another way.
    assert _close(ours, base_run)
    assert_reproduces(ours, data)
    # Another checkpoint gives another video: the file really is what runs.
    from safetensors.torch import load_file, save_file

    tensors = load_file(single)
    tensors = {k: v * 1.5 if k.startswith("model.diffusion_model.out.") else v for k, v in tensors.items()}
    save_file(tensors, tmp_path / "other.safetensors")
    other, _ = _png_run(*TINY, "--seed", "2", "--base-model", "other.safetensors", "--base-config", config)
    assert not _close(other, base_run)


def test_lora_changes_the_output_and_its_scale_and_hash_are_recorded(tmp_path: Path, weights: dict) -> None:
    base_run, _ = _png_run(*TINY, "--seed", "3")
    ours, data = _png_run(*TINY, "--seed", "3", "--lora", f"{weights['lora']}:0.7")
    assert not _close(ours, base_run)
    (lora,) = data["model"]["loras"]
    assert (lora["source"], lora["name"], lora["scale"]) == (str(weights["lora"]), "style", 0.7)
    assert lora["sha256"] == hashlib.sha256(weights["lora"].read_bytes()).hexdigest()
    assert data["config"]["model"]["loras"] == [
        {"source": str(weights["lora"]), "scale": 0.7, "name": None, "weight_name": None, "expert": None}
    ]
    assert_reproduces(ours, data)
    weaker, _ = _png_run(*TINY, "--seed", "3", "--lora", f"{weights['lora']}:0.1")
    assert not _close(weaker, ours)  # the scale really reaches the adapter


def test_motion_lora_and_several_loras_at_once(tmp_path: Path, weights: dict) -> None:
    base_run, _ = _png_run(*TINY, "--seed", "3")
    motion, data = _png_run(*TINY, "--seed", "3", "--lora", str(weights["motion_lora"]))
    assert not _close(motion, base_run)
    assert data["model"]["loras"][0]["name"] == "zoom"
    # Recorded with its layout and the motion layers that took it (AnimateDiff's UNet has them
    # only once loaded, so they are counted after loading and not held to the 90 % rule).
    (record,) = data["model"]["loras"]
    assert record["layout"] == "diffusers" and record["matched"] == record["modules"] > 0, record
    both, data = _png_run(
        *TINY, "--seed", "3", "--lora", f"{weights['lora']}:0.5", "--lora", str(weights["motion_lora"])
    )
    assert [(lora["name"], lora["scale"]) for lora in data["model"]["loras"]] == [("style", 0.5), ("zoom", 1.0)]
    assert not _close(both, motion)
    assert_reproduces(both, data)


@pytest.mark.pipeline
def test_prompt_map_from_a_preset(tmp_path: Path) -> None:
    preset = tmp_path / "travel.yaml"
    preset.write_text(
        "extends: tiny-animatediff\ninputs:\n  prompts:\n    0: a bud\n    4: a rose\nsampling:\n  num_frames: 8\n"
    )
    _, data = _png_run("animate", "--preset", str(preset), "--seed", "1")
    assert data["inputs"]["prompts"] == {"0": "a bud", "4": "a rose"}
    assert data["sources"]["inputs.prompts.4"] == "preset:travel"


def test_prompt_travel_with_free_noise_is_recorded_and_reproducible(tmp_path: Path) -> None:
    args = ["animate", "--preset", "tiny-animatediff", "--prompt-at", "0:a bud", "--prompt-at", "24:a blooming rose"]
    ours, data = _png_run(*args, "--frames", "48", "--context-length", "16", "--seed", "1")
    assert ours.shape[0] == 48
    assert data["inputs"]["prompts"] == {"0": "a bud", "24": "a blooming rose"}
    assert data["config"]["inputs"]["prompts"] == {"0": "a bud", "24": "a blooming rose"}
    assert data["pipeline"]["setup"] == [
        {"method": "enable_free_noise", "kwargs": {"context_length": 16, "context_stride": 4}}
    ]
    assert "prompt" not in data["pipeline"]["call_kwargs"]
    assert data["pipeline"]["media_kwargs"]["prompt"].startswith("inputs.prompts")
    assert_reproduces(ours, data)


@pytest.mark.pipeline
def test_prompt_travel_alone_switches_free_noise_on(tmp_path: Path) -> None:
    _, data = _png_run("animate", "a bud", "--preset", "tiny-animatediff", "--prompt-at", "6:a rose", "--seed", "1")
    assert data["inputs"]["prompts"] == {"0": "a bud", "6": "a rose"}  # PROMPT is frame 0
    assert data["pipeline"]["setup"][0]["method"] == "enable_free_noise"


def test_free_init_runs_and_is_recorded(tmp_path: Path) -> None:
    ours, data = _png_run(*TINY, "--free-init", "2", "--seed", "1")
    assert data["pipeline"]["setup"] == [{"method": "enable_free_init", "kwargs": {"num_iters": 2}}]
    assert data["config"]["sampling"]["free_init_iters"] == 2
    base_run, _ = _png_run(*TINY, "--seed", "1")
    assert not _close(ours, base_run)
    assert_reproduces(ours, data)


@pytest.mark.pipeline
def test_scheduler_choice_and_options(tmp_path: Path) -> None:
    _, data = _png_run(*TINY, "--scheduler", "euler-a", "--set", "model.scheduler_options.timestep_spacing=trailing")
    assert data["model"]["scheduler"]["class"] == "EulerAncestralDiscreteScheduler"
    assert data["model"]["scheduler"]["options"]["timestep_spacing"] == "trailing"
    one_line_error(cli(*TINY, "--set", "model.scheduler_options.nope=1"), 3, "DDIMScheduler has no option nope")


def test_animatediff_v2v_matches_plain_diffusers(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    for index in range(8):
        pixels = (np.random.RandomState(index).rand(32, 32, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "frames" / f"f{index}.png")
    ours, data = _png_run("v2v", "frames", "claymation", "--preset", "tiny-animatediff-v2v", "--seed", "6")
    assert ours.shape == (8, 32, 32, 3)
    assert data["pipeline"]["class"] == "AnimateDiffVideoToVideoPipeline"
    assert data["pipeline"]["call_kwargs"]["strength"] == 0.8
    assert_reproduces(ours, data)


def test_motion_adapter_from_an_original_motion_module_file(tmp_path: Path, tiny_cache: Path) -> None:
    from vidgen.models import tiny

    adapter = tiny.ensure("motion-adapter")
    write_motion_module(adapter, tmp_path / "mm_tiny_v2.safetensors")
    # diffusers takes the file's configs from the Hub repo it recognises (v1-5-2 here). Offline,
    # they must be in the Hugging Face cache: put the tiny adapter's config there, as a previous
    # download would have.
    hub = tmp_path / "hf-cache"
    snapshot = hub / "models--guoyww--animatediff-motion-adapter-v1-5-2" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes((adapter / "config.json").read_bytes())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    args = [*TINY, "--seed", "1", "--format", "png"]
    env = {"HF_HUB_CACHE": str(hub), "VIDGEN_CACHE": str(tiny_cache)}
    from_folder = cli_subprocess(*args, "--out", "a/", env=env)
    from_file = cli_subprocess(*args, "--motion-adapter", "mm_tiny_v2.safetensors", "--out", "b/", env=env)
    assert from_folder.returncode == 0 and from_file.returncode == 0, from_file.stderr
    data = sidecar(tmp_path / "b" / "animate-a-cat-1.json")
    assert data["model"]["motion_adapter"]["source"] == "file"
    assert (
        data["model"]["motion_adapter"]["sha256"]
        == hashlib.sha256(Path("mm_tiny_v2.safetensors").read_bytes()).hexdigest()
    )
    ours = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "b" / "animate-a-cat-1").glob("*.png"))]
    reference = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "a" / "animate-a-cat-1").glob("*.png"))]
    assert np.array_equal(np.stack(ours), np.stack(reference))  # same weights, loaded from the original layout


# -- errors ---------------------------------------------------------------------------------


def test_model_errors_exit_5_and_write_nothing(tmp_path: Path, weights: dict) -> None:
    cases = [
        (["--lora", str(weights["wrong_lora"])], "does not fit this model"),
        (["--base-model", "./epicrealism.safetensors"], "does not exist"),
        (["--base-model", str(weights["pickle"]), "--base-config", str(weights["base"])], "--allow-pickle"),
        (["--lora", "./missing-lora.safetensors"], "does not exist"),
        (["--base-model", str(weights["single"])], "--base-config"),  # offline: configs need the Hub
    ]
    for extra, needle in cases:
        before = files_under(tmp_path)
        one_line_error(cli(*TINY, "--out", "x.mp4", *extra), 5, needle)
        assert files_under(tmp_path) == before, extra
    # With --allow-pickle the same .ckpt loads.
    args = ["--base-model", str(weights["pickle"]), "--base-config", str(weights["base"]), "--allow-pickle"]
    assert cli(*TINY, "--out", "p.mp4", *args).exit_code == 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--set", "sampling.clip_skip=2"], ["clip_skip", "#14124"]),
        # The motion adapter's own limit: read from the tiny adapter, which is built first.
        pytest.param(["--frames", "40"], ["at most 32 frames", "--context-length"], marks=pytest.mark.pipeline),
        (["--prompt-at", "9:x", "--frames", "8"], ["past the last frame"]),
        (["--prompt-at", "0:x"], ["both PROMPT and --prompt-at"]),
        (["--prompt-at", "nope"], ["expected FRAME:TEXT"]),
        (["--context-length", "4", "--context-stride", "8"], ["larger than --context-length"]),
        pytest.param(["--context-length", "64"], ["more than this motion adapter's 32"], marks=pytest.mark.pipeline),
        (["--base-config", "."], ["not a file"]),
        (["--set", "sampling.free_init_method=gaussian"], ["needs --free-init"]),
    ],
)
def test_config_errors_exit_3(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    one_line_error(cli(*TINY, "--out", "x.mp4", *args), 3, *needles)
    assert files_under(tmp_path) == []


def test_animatediff_options_on_other_families_name_animatediff(tmp_path: Path) -> None:
    line = one_line_error(cli("t2v", "x", "--preset", "tiny-cogvideox", "--set", "model.scheduler=ddim"), 3)
    assert "it applies to: AnimateDiff (animate, v2v, control)" in line
    (tmp_path / "f").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "f" / "a.png")
    line = one_line_error(cli("v2v", "f", "x", "--preset", "tiny-cogvideox-v2v", "--motion-adapter", "a/b"), 3)
    assert "--motion-adapter is not used by CogVideoX v2v" in line


def test_default_preset_and_listing() -> None:
    body = json.loads(cli("animate", "a rocket", "--dry-run", "--json").stdout)
    assert body["pipeline"]["class"] == "AnimateDiffPipeline"
    assert body["config"]["model"]["id"] == "emilianJR/epiCRealism"
    assert body["config"]["model"]["motion_adapter"] == "guoyww/animatediff-motion-adapter-v1-5-2"
    assert body["sources"]["model.scheduler"] == "preset:animatediff"
    text = cli("animate", "a rocket", "--dry-run").stdout
    assert [line for line in text.splitlines() if "scheduler_options" in line][0].endswith("# preset:animatediff")
    rows = {row["family"]: row for row in json.loads(cli("models", "--json").stdout)}
    assert set(rows["animatediff"]["modes"]) == {"animate", "v2v", "control"}


def test_prompt_travel_dry_run_shows_the_map_and_names_the_file_after_frame_0() -> None:
    args = ["animate", "--preset", "tiny-animatediff", "--prompt-at", "0:a bud", "--prompt-at", "5:a rose"]
    result = cli(*args, "--seed", "2", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "# prompts: 0: a bud | 5: a rose" in result.stdout
    assert "# would write: outputs/animate-a-bud-2.mp4" in result.stdout


@pytest.mark.parametrize(
    ("mode", "preset", "layer", "expected"),
    [
        ("animate", "tiny-animatediff", {"sampling": {"free_init_iters": 2, "num_inference_steps": 3}}, 6),
        ("v2v", "tiny-animatediff-v2v", {"sampling": {"strength": 0.5, "num_inference_steps": 4}}, 2),
    ],
)
def test_progress_total_matches_the_steps_reported(tmp_path: Path, mode, preset, layer, expected) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.run import generate

    (tmp_path / "frames").mkdir()
    for index in range(8):
        Image.new("RGB", (32, 32), (index * 30, 0, 0)).save(tmp_path / "frames" / f"f{index}.png")

    inputs = {"prompt": "a cat", **({"video": "frames"} if mode == "v2v" else {})}
    layers = [Layer("cli", {"inputs": inputs, **layer})]
    count = CountingProgress()
    generate.execute(generate.plan(resolve(mode, [preset], layers, families.defaults_layer)), count)
    assert (count.totals, count.steps) == ([expected], expected)


def test_sdxl_motion_adapter_preset(tmp_path: Path) -> None:
    args = ["animate", "a cat", "--preset", "tiny-animatediff-sdxl", "--seed", "2"]
    ours, data = _png_run(*args, "--free-init", "2")
    assert ours.shape == (4, 64, 64, 3)
    assert data["pipeline"]["class"] == "AnimateDiffSDXLPipeline"
    assert data["model"]["motion_adapter"]["id"] == "tiny:motion-adapter-sdxl"
    assert data["pipeline"]["setup"][0]["method"] == "unet.add_embedding.load_state_dict"
    assert_reproduces(ours, data)
    # Without the repair diffusers leaves the text-time embedding random: the frames would
    # change from process to process. Two separate runs must now agree.
    again, _ = _png_run(*args, "--free-init", "2")
    assert np.array_equal(ours, again)
    # What its diffusers pipeline lacks is refused, naming the family that has it.
    line = one_line_error(cli(*args, "--prompt-at", "2:a dog"), 3, "AnimateDiff SDXL")
    assert "it applies to: AnimateDiff (animate, v2v, control)" in line
    one_line_error(cli(*args, "--context-length", "4"), 3, "--context-length")
