"""HunyuanVideo 1.0, FramePack and HunyuanVideo-1.5 on tiny models: true CFG, sections, the
guider, LoRAs into the transformer, progress totals, memory plans and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, plain_diffusers, sidecar

KOI = ("t2v", "a koi pond at dawn")


def _image(name: str, color: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> str:
    from PIL import Image

    Image.new("RGB", size, color).save(name)
    return name


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _passes(data: dict, media: dict) -> tuple[np.ndarray, int]:
    """Plain diffusers from a sidecar, counting the transformer's forward passes."""
    import diffusers

    calls = [0]
    original = diffusers.ModelMixin.__call__

    def counting(self, *args, **kwargs):
        if type(self).__name__.endswith("Transformer3DModel"):
            calls[0] += 1
        return original(self, *args, **kwargs)

    diffusers.ModelMixin.__call__ = counting
    try:
        frames = plain_diffusers(data, media).frames
    finally:
        diffusers.ModelMixin.__call__ = original
    return frames, calls[0]


def _steps(result) -> int:
    return sum(1 for line in result.stderr.splitlines() if json.loads(line)["event"] == "step")


def test_true_cfg_equals_plain_diffusers_and_counts_both_passes(tmp_path: Path) -> None:
    args = (*KOI, "--preset", "tiny-hunyuanvideo", "--true-cfg", "4", "--negative", "blurry", "--seed", "3")
    result = cli(*args, "--format", "png", "--out", "a/", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    call = data["pipeline"]["call_kwargs"]
    assert (call["true_cfg_scale"], call["negative_prompt"], call["guidance_scale"]) == (4.0, "blurry", 6.0)
    ours = _png_frames(folder)
    _, passes = _passes(data, {})
    # Two steps, each a guided and a negative pass: the progress total is the passes made.
    assert _steps(result) == passes == 4
    assert_reproduces(ours, data, {})
    # Without true CFG it is one pass per step, and the negative pass changed the video.
    plain = cli(*KOI, "--preset", "tiny-hunyuanvideo", "--seed", "3", "--format", "png", "--out", "b/")
    assert plain.exit_code == 0, plain.stderr
    assert np.abs(ours.astype(int) - _png_frames(Path(plain.stdout.strip())).astype(int)).max() > 1


def test_framepack_sections_make_the_frames_asked_for_and_count_every_pass(tmp_path: Path) -> None:
    _image("first.png", (200, 80, 40))
    from PIL import Image

    result = cli(
        "i2v", "first.png", "a koi", "--preset", "tiny-framepack", "--frames", "37", "--seed", "2",
        "--format", "png", "--out", "a/", "--progress", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = _png_frames(folder)
    assert ours.shape == (37, 16, 16, 3)
    data = sidecar(folder.with_name(folder.name + ".json"))
    # 3 sections of a 3-latent window: diffusers is asked for the num_frames that makes exactly that.
    call = data["pipeline"]["call_kwargs"]
    assert (call["num_frames"], call["latent_window_size"], call["sampling_type"]) == (27, 3, "inverted_anti_drifting")
    media = {"image": Image.open("first.png").convert("RGB")}
    _, passes = _passes(data, media)
    assert _steps(result) == passes == 3 * 2
    assert_reproduces(ours, data, media)


@pytest.mark.pipeline
def test_framepack_last_image_is_the_end_frame_goal_and_recorded(tmp_path: Path) -> None:
    _image("a.png", (200, 80, 40))
    _image("b.png", (20, 80, 240))
    _image("c.png", (240, 240, 20))
    base = ("i2v", "a.png", "a koi", "--preset", "tiny-framepack", "--frames", "13", "--seed", "1")
    assert cli(*base, "--last-image", "b.png", "--out", "b.mp4").exit_code == 0
    assert cli(*base, "--last-image", "c.png", "--out", "c.mp4").exit_code == 0
    data = sidecar(tmp_path / "b.json")
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.image", "last_image": "inputs.last_image"}
    b, c = decode(tmp_path / "b.mp4")[0], decode(tmp_path / "c.mp4")[0]
    assert len(b) == 13
    assert np.abs(b.astype(int) - c.astype(int)).max() > 2


def test_hunyuanvideo15_guidance_goes_to_the_guider_and_plain_diffusers_repeats_it(tmp_path: Path) -> None:
    result = cli(*KOI, "--preset", "tiny-hunyuanvideo15", "--guidance", "5", "--seed", "4", "--format", "png",
                 "--out", "a/", "--progress", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["setup"] == [{"method": "guider = guider.new", "kwargs": {"guidance_scale": 5.0}}]
    assert "guidance_scale" not in data["pipeline"]["call_kwargs"]  # the pipeline has no such argument
    ours = _png_frames(folder)
    _, passes = _passes(data, {})
    assert _steps(result) == passes == 4  # the guider's two passes per step
    assert_reproduces(ours, data, {})
    # The guidance reaches the video.
    other = cli(*KOI, "--preset", "tiny-hunyuanvideo15", "--guidance", "9", "--seed", "4", "--format", "png",
                "--out", "b/")  # fmt: skip
    assert np.abs(ours.astype(int) - _png_frames(Path(other.stdout.strip())).astype(int)).max() > 1


@pytest.mark.pipeline
def test_hunyuanvideo15_i2v_size_comes_from_the_image_after_resize(tmp_path: Path) -> None:
    # A 32x16 image is cropped to the run's 16x16 (vidgen's --resize rule), which the model keeps.
    _image("wide.png", (30, 160, 90), (32, 16))
    result = cli("i2v", "wide.png", "a koi", "--preset", "tiny-hunyuanvideo15-i2v", "--seed", "1", "--out", "v.mp4")
    assert result.exit_code == 0, result.stderr
    frames, _ = decode(tmp_path / "v.mp4")
    assert frames.shape[1:3] == (16, 16)
    data = sidecar(tmp_path / "v.json")
    assert data["inputs"]["image"]["prepared"]["size"] == [16, 16]
    assert not {"height", "width"} & set(data["pipeline"]["call_kwargs"])
    # A size the model would turn into another bucket is refused before denoising.
    before = files_under(tmp_path)
    result = cli("i2v", "wide.png", "a koi", "--preset", "tiny-hunyuanvideo15-i2v", "--width", "32", "--out", "w.mp4")
    one_line_error(result, 3, "--height 16 --width 32", "use --height")
    assert files_under(tmp_path) == before


def _lora(path: Path, seed: int, transformer) -> Path:
    """A PEFT LoRA saved as diffusers saves LoRAs ("transformer." keys)."""
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    path.mkdir()
    WanPipeline.save_lora_weights(path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return path / "pytorch_lora_weights.safetensors"


@pytest.mark.pipeline
def test_hunyuanvideo15_lora_loads_into_the_transformer_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    import hashlib

    from vidgen.families.hunyuan15 import _parts
    from vidgen.families.wan import tiny_transformer

    mine = _lora(tmp_path / "mine", 1, _parts("t2v")["transformer"])
    base = (*KOI, "--preset", "tiny-hunyuanvideo15", "--seed", "2")
    assert cli(*base, "--out", "plain.mp4").exit_code == 0
    result = cli(*base, "--lora", f"{mine}:0.8", "--out", "lora.mp4")
    assert result.exit_code == 0, result.stderr
    (record,) = sidecar(tmp_path / "lora.json")["model"]["loras"]
    assert (record["path"], record["scale"]) == (str(mine), 0.8)
    assert record["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()
    # Every layer it names (to_q, to_k, to_v of each attention) took it.
    assert (record["layout"], record["matched"]) == ("diffusers", record["modules"])
    plain, lora = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "lora.mp4")[0]
    assert np.abs(plain.astype(int) - lora.astype(int)).max() > 2
    # A Wan LoRA names layers this transformer does not have.
    wan = _lora(tmp_path / "wan", 1, tiny_transformer())
    before = files_under(tmp_path)
    one_line_error(cli(*base, "--lora", str(wan), "--out", "wan.mp4"), 5, "matches 0 of 12 layers", "another base")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        ((*KOI, "--preset", "tiny-hunyuanvideo", "--true-cfg", "4"), 3, ("--true-cfg 4", "--negative")),
        ((*KOI, "--preset", "tiny-hunyuanvideo", "--negative", "x"), 3, ("--negative", "--true-cfg")),
        ((*KOI, "--preset", "tiny-hunyuanvideo", "--guidance", "25"), 3, ("--guidance 25", "embedded", "1 to 20")),
        ((*KOI, "--preset", "tiny-hunyuanvideo15", "--guidance", "0.5"), 3, ("--guidance 0.5", "guider", "1 (no")),
        ((*KOI, "--preset", "tiny-hunyuanvideo", "--frames", "130"), 3, ("--frames 130", "4k+1", "129 or 133")),
        ((*KOI, "--preset", "hunyuanvideo", "--frames", "130"), 3, ("--frames 130", "129 or 133")),
        ((*KOI, "--preset", "tiny-hunyuanvideo15", "--cache", "first-block"), 3, ("first-block", "pab, taylorseer")),
        ((*KOI, "--preset", "tiny-hunyuanvideo", "--cache", "faster"), 3, ("--cache faster", "first-block")),
        ((*KOI, "--preset", "tiny-wan", "--true-cfg", "3"), 3, ("--true-cfg", "HunyuanVideo (t2v, i2v)")),
        (
            ("i2v", "a.png", "x", "--preset", "framepack", "--frames", "241"),
            3,
            ("--frames 241", "217 or 253", "--window 10"),
        ),
        (("i2v", "a.png", "x", "--preset", "tiny-framepack", "--sampling", "forward"), 3, ("--sampling forward",)),
        (("i2v", "a.png", "x", "--preset", "framepack-f1", "--sampling", "inverted-anti-drifting"), 3, ("F1_I2V",)),
        (
            ("i2v", "a.png", "x", "--preset", "framepack-f1", "--last-image", "b.png"),
            3,
            ("--last-image", "vanilla", "framepack, tiny-framepack"),
        ),
        (
            ("i2v", "a.png", "x", "--preset", "tiny-framepack", "--sampling", "vanilla", "--last-image", "b.png"),
            3,
            ("--last-image", "inverted anti-drifting"),
        ),
    ],
)
def test_bad_hunyuan_input_is_one_line_and_writes_nothing(
    tmp_path: Path, args: tuple, code: int, needles: tuple
) -> None:
    _image("a.png", (9, 9, 9))
    _image("b.png", (99, 9, 9))
    before = files_under(tmp_path)
    one_line_error(cli(*args), code, *needles)
    assert files_under(tmp_path) == before


def test_memory_auto_plans_every_full_size_preset_offline(tmp_path: Path) -> None:
    _image("a.png", (9, 9, 9), (64, 64))
    runs = [
        ("t2v", "hunyuanvideo"), ("t2v", "hunyuanvideo-fast"), ("i2v", "hunyuanvideo-i2v"),
        ("i2v", "framepack"), ("i2v", "framepack-f1"),
        ("t2v", "hunyuanvideo15-480p"), ("t2v", "hunyuanvideo15-720p"),
        ("i2v", "hunyuanvideo15-480p-i2v"), ("i2v", "hunyuanvideo15-720p-i2v"),
    ]  # fmt: skip
    for mode, preset in runs:
        args = [mode, *(["a.png"] if mode == "i2v" else []), "x", "--preset", preset]
        result = cli(*args, "--memory", "auto", "--vram", "24", "--dry-run")
        assert result.exit_code == 0, (preset, result.stderr)
        assert "# memory auto:" in result.stdout, preset
    # The 13B transformer in bf16 and the Llama-3 8B encoder in fp16 are priced from the published sizes.
    result = cli(*KOI, "--preset", "hunyuanvideo", "--memory", "auto", "--vram", "24", "--dry-run")
    assert "transformer 23.9" in result.stdout and "text_encoder 14.0" in result.stdout, result.stdout
    # Real CFG runs a second pass: its plan prices the extra activations.
    guided = cli(*KOI, "--preset", "hunyuanvideo", "--true-cfg", "4", "--negative", "blurry", "--memory", "auto",
                 "--vram", "80", "--dry-run", "--json")  # fmt: skip
    single = cli(*KOI, "--preset", "hunyuanvideo", "--memory", "auto", "--vram", "80", "--dry-run", "--json")
    peak = [json.loads(r.stdout)["memory"]["phases_bytes"]["denoise"] for r in (guided, single)]
    assert peak[0] == 2 * peak[1]


@pytest.mark.pipeline
def test_batch_jobs_with_another_guidance_get_their_own_guider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vidgen.models import loader

    loads: list[str] = []
    real = loader.load

    def counting(cfg, family, device, **kwargs):
        loads.append(cfg.model.id)
        return real(cfg, family, device, **kwargs)

    monkeypatch.setattr(loader, "load", counting)
    (tmp_path / "jobs.yaml").write_text(
        "defaults:\n  preset: tiny-hunyuanvideo15\njobs:\n  - prompt: a koi\nmatrix:\n  guidance: [3.0, 7.0]\n"
    )
    result = cli("batch", "jobs.yaml", "--out", "runs", "--report", "r.jsonl")
    assert result.exit_code == 0, result.stderr
    # The guider is set up once per pipeline, so each guidance loads its own.
    assert loads == ["tiny:hunyuanvideo15"] * 2
    setups = sorted(
        sidecar(Path(json.loads(line)["outputs"][0]).with_suffix(".json"))["pipeline"]["setup"][0]["kwargs"][
            "guidance_scale"
        ]
        for line in (tmp_path / "r.jsonl").read_text().splitlines()
    )
    assert setups == [3.0, 7.0]


def test_framepack_plans_one_section_whatever_the_length(tmp_path: Path) -> None:
    _image("a.png", (9, 9, 9), (64, 64))

    def denoise(*extra: str) -> int:
        result = cli("i2v", "a.png", "x", "--preset", "framepack", *extra, "--vram", "24", "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["memory"]["phases_bytes"]["denoise"]

    # A forward sees one section and its packed history: a longer video costs time, not memory.
    assert denoise("--frames", "109", "--memory", "auto") == denoise("--frames", "253", "--memory", "auto")
    assert denoise("--frames", "121", "--window", "10", "--memory", "auto") > denoise("--memory", "auto")


@pytest.mark.pipeline
def test_denoiser_options_reach_the_transformers(tmp_path: Path) -> None:
    result = cli(*KOI, "--preset", "tiny-hunyuanvideo", "--cache", "first-block", "--attention-backend", "flex",
                 "--fp8-storage", "--seed", "1", "--out", "a.mp4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    calls = [c["method"] for c in sidecar(tmp_path / "a.json")["optimizations"]["calls"]]
    for method in ("enable_layerwise_casting", "set_attention_backend", "enable_cache"):
        assert f"transformer.{method}" in calls
    result = cli(*KOI, "--preset", "tiny-hunyuanvideo15", "--cache", "pab", "--quantize", "int8", "--seed", "1",
                 "--out", "b.mp4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "b.json")
    (quantized,) = [c for c in data["optimizations"]["calls"] if c["method"] == "from_pretrained"]
    # The 7-8B text encoder is quantized with the transformer.
    assert set(quantized["kwargs"]["quantization_config"]["quant_mapping"]) == {"transformer", "text_encoder"}
    assert "transformer.enable_cache" in [c["method"] for c in data["optimizations"]["calls"]]


@pytest.mark.pipeline
def test_magcache_runs_with_the_authors_published_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vidgen.families import hunyuan

    before = files_under(tmp_path)
    published = "hunyuanvideo-community/HunyuanVideo"
    one_line_error(cli(*KOI, "--preset", "tiny-hunyuanvideo", "--cache", "magcache"), 3, "magnitude ratios", published)
    i2v = ("i2v", "a.png", "x", "--preset", "hunyuanvideo-i2v", "--cache", "magcache")
    one_line_error(cli(*i2v), 3, "HunyuanVideo-I2V i2v")
    true_cfg = ("--true-cfg", "4", "--negative", "blurry")
    one_line_error(cli(*KOI, "--preset", "hunyuanvideo", "--cache", "magcache", *true_cfg), 3, "--true-cfg")
    framepack = ("i2v", "a.png", "x", "--preset", "tiny-framepack", "--cache", "magcache")
    one_line_error(cli(*framepack), 3, "--cache magcache", "full schedule per section")
    assert files_under(tmp_path) == before
    # The full-size presets plan offline with it.
    for preset in ("hunyuanvideo", "hunyuanvideo-fast"):
        assert cli(*KOI, "--preset", preset, "--cache", "magcache", "--dry-run").exit_code == 0
    # Random tiny weights have no published ratios: the test lends them the real checkpoint's
    # (data, not code), so the real MagCache hook runs and skips steps.
    monkeypatch.setitem(hunyuan.MAG_RATIOS, "tiny:hunyuanvideo", hunyuan.MAG_RATIOS[published])
    base = (*KOI, "--preset", "tiny-hunyuanvideo", "--seed", "3", "--steps", "10")
    assert cli(*base, "--out", "plain.mp4").exit_code == 0
    result = cli(*base, "--cache", "magcache", "--out", "mag.mp4")
    assert result.exit_code == 0, result.stderr
    calls = sidecar(tmp_path / "mag.json")["optimizations"]["calls"]
    (call,) = [c for c in calls if c["method"].endswith("enable_cache")]
    shown = call["kwargs"]["config"]["MagCacheConfig"]
    assert (shown["num_inference_steps"], shown["threshold"], shown["max_skip_steps"]) == (10, 0.24, 6)
    # 16x16 is nearer the 544x960 calibration than the 720x1280 one.
    assert shown["mag_ratios"] == "MAG_RATIOS['tiny:hunyuanvideo'][(544, 960)] (50 values)"
    plain, mag = decode(tmp_path / "plain.mp4")[0], decode(tmp_path / "mag.mp4")[0]
    assert np.abs(plain.astype(int) - mag.astype(int)).max() > 0


def test_magcache_curve_follows_the_run_size() -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.families import hunyuan

    for preset, size in (("hunyuanvideo", (720, 1280)), ("hunyuanvideo-fast", (544, 960))):
        cfg = resolve("t2v", [preset], [], families.defaults_layer).config
        assert hunyuan.mag_curve(cfg)[0] == size
    curves = hunyuan.MAG_RATIOS["hunyuanvideo-community/HunyuanVideo"]
    # As published: 50 steps, a neutral first value, the residual growing then falling at the end.
    assert all(len(c.ratios) == 50 and c.ratios[0] == 1.0 and c.ratios[-1] < 0.8 for c in curves.values())
