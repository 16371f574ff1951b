"""Memory and speed: the capability table, refused combinations, the planner, OOM handling,
saved latents and `vidgen decode`, and every option that runs on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, sidecar

from vidgen import families
from vidgen.config import resolve
from vidgen.models.loader import locate_all, resolve_dtype
from vidgen.run import memory

TINY = ["--preset", "tiny-cogvideox", "--seed", "5"]
GIB = 1024**3


def test_models_optimizations_lists_every_option() -> None:
    body = json.loads(cli("models", "--optimizations", "--json").stdout)
    table = body["table"]
    assert table["cogvideox"]["--cache"] is True and table["svd"]["--cache"] is False
    assert table["modelscope"]["--attention-slicing"] is True and table["cogvideox"]["--attention-slicing"] is False
    assert all(row["--fp8-storage"] for row in table.values())
    # Only families whose attention goes through diffusers' dispatcher take a backend.
    backends = {name for name, row in table.items() if row["--attention-backend"]}
    dispatched = {"wan", "wan2.2", "wan2.2-ti2v", "wan-vace", "wan2.2-vace", "wan-v2v", "skyreels", "skyreels-df"}
    assert dispatched | {"hunyuanvideo", "framepack", "hunyuanvideo15"} <= backends
    unet_era = {"cogvideox", "cogvideox1.5", "modelscope", "svd", "i2vgen-xl", "animatediff", "text2video-zero"}
    assert not backends & unet_era
    assert table["animatediff"]["--quantize"] is False and table["cogvideox"]["--quantize"] is True
    assert "--fp8-storage" in body["instead"]["animatediff"]["--quantize"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--offload", "model"], ["needs a CUDA device"]),
        (["--offload", "group", "--offload-type", "leaf"], ["needs a CUDA device"]),
        (["--offload-type", "leaf"], ["--offload-type tunes --offload group"]),
        (["--offload", "model", "--offload-stream"], ["--offload-stream tunes --offload group"]),
        (["--offload", "sequential", "--compile"], ["--compile cannot be combined with --offload sequential"]),
        (
            ["--offload", "sequential", "--quantize", "int8"],
            ["--quantize cannot be combined with --offload sequential"],
        ),
        (["--quantize", "int8", "--fp8-storage"], ["--fp8-storage cannot be combined with --quantize"]),
        (["--memory", "auto", "--offload", "model"], ["--memory auto chooses --offload"]),
        (["--vram", "8"], ["--vram is the budget --memory auto plans for"]),
        (["--attention-backend", "flash"], ["it applies to: Wan 2.1 (t2v, i2v)", "scaled_dot_product_attention"]),
        (["--attention-slicing"], ["ModelScope T2V", "SDPA"]),
        (["--quantize", "nf4"], ["bitsandbytes", "vidgen[quantize]"]),
        (["--cache", "sometimes"], ["optimization.cache", "first-block"]),
        (["--cache", "faster", "--guidance", "1"], ["--cache faster needs --guidance above 1"]),
        (["--decode-chunk", "2"], ["--vae-tiling"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    result = cli("t2v", "a fox", *TINY, *args)
    one_line_error(result, 3, *needles)
    assert files_under(tmp_path) == []


def test_refused_per_family(nothing_loads: None) -> None:
    from PIL import Image

    # The input exists, so the refusal is the family's, not the missing file's.
    Image.new("RGB", (32, 32)).save("x.png")
    one_line_error(cli("i2v", "x.png", "--preset", "tiny-svd", "--vae-tiling"), 3, "--decode-chunk")
    one_line_error(cli("i2v", "x.png", "--preset", "tiny-svd", "--cache", "pab"), 3, "CogVideoX (t2v")
    one_line_error(cli("animate", "fox", "--preset", "tiny-animatediff", "--quantize", "int8"), 3, "--fp8-storage")
    one_line_error(
        cli("t2v", "fox", "--preset", "tiny-text2video-zero", "--attention-slicing"), 3, "cross-frame attention"
    )
    one_line_error(cli("t2v", "fox", "--preset", "tiny-text2video-zero", "--save-latents"), 3, "--save-latents")


def test_dry_run_plans_cogvideox_5b_for_8_gib_offline(nothing_loads: None) -> None:
    result = cli("t2v", "a fox", "--preset", "cogvideox-5b", "--dry-run", "--memory", "auto", "--vram", "8")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "# memory auto: --offload group --offload-type block --offload-stream --vae-tiling" in out
    assert "of 8.0 GiB (--vram 8)" in out and "transformer 10.4" in out and "published sizes" in out
    body = json.loads(
        cli("t2v", "a fox", "--preset", "cogvideox-5b", "--dry-run", "--memory", "auto", "--vram", "8", "--json").stdout
    )
    assert body["memory"]["plan"] == "group" and body["memory"]["estimated_peak_bytes"] < 8 * GIB
    assert body["config"]["optimization"]["offload"] == "group"
    assert body["sources"]["optimization.offload"] == "memory:auto (group)"


@pytest.mark.parametrize(
    ("vram", "plan"), [(80, "none"), (24, "model"), (16, "model"), (8, "group"), (3, "sequential")]
)
def test_auto_picks_the_fastest_plan_that_fits(vram: int, plan: str, nothing_loads: None) -> None:
    body = json.loads(
        cli(
            "t2v", "fox", "--preset", "cogvideox-5b", "--dry-run", "--json", "--memory", "auto", "--vram", str(vram)
        ).stdout
    )
    assert body["memory"]["plan"] == plan
    fitting = [r for r in body["memory"]["ladder"] if r["estimated_peak_bytes"] <= vram * GIB * memory.HEADROOM]
    if fitting:
        assert fitting[0]["plan"] == plan  # the first, fastest, that fits
    else:
        assert "fewer --frames" in body["memory"]["notes"][-1]


def _estimate(preset: str, mode: str, **opt: object) -> float:
    resolved = resolve(mode, [preset], [], families.defaults_layer)
    cfg = resolved.config
    cfg = cfg.model_copy(update={"optimization": cfg.optimization.model_copy(update=opt)})
    family = families.get(cfg.model.family or "")
    found = locate_all(cfg, family, build=False)
    sizes = memory.sizes(family, cfg, found)
    dtype = resolve_dtype(cfg.model.dtype, family, "cuda")
    return memory.estimate(family, cfg, sizes.params, dtype, None).peak / 1e9


def test_estimates_match_diffusers_published_cogvideox_2b_table() -> None:
    # diffusers' CogVideoX docs, 49 frames 720x480 fp16: 33 GB plain, 19 GB model offload,
    # 11 GB model offload + tiling, under 4 GB sequential (+ tiling, as the CogVideo README says).
    plain = _estimate("cogvideox-2b", "t2v", vae_tiling=False, vae_slicing=False)
    offload = _estimate("cogvideox-2b", "t2v", offload="model", vae_tiling=False, vae_slicing=False)
    tiled = _estimate("cogvideox-2b", "t2v", offload="model", vae_tiling=True)
    sequential = _estimate("cogvideox-2b", "t2v", offload="sequential", vae_tiling=True)
    assert 33 * 0.85 < plain < 33 * 1.15
    assert 19 * 0.85 < offload < 19 * 1.15
    assert 11 * 0.85 < tiled < 11 * 1.15
    assert sequential < 4


def test_estimate_grows_with_frames_and_shrinks_with_savers() -> None:
    base = _estimate("svd-xt", "i2v", decode_chunk_size=None)
    assert _estimate("svd-xt", "i2v", decode_chunk_size=2) < base / 3
    assert _estimate("svd-xt", "i2v", fp8_storage=True) < base
    assert _estimate("cogvideox-5b", "t2v", quantize="int8") < _estimate("cogvideox-5b", "t2v") - 9


def test_sizes_come_from_safetensors_headers_when_on_disk() -> None:
    cli("t2v", "fox", *TINY, "--out", "warm.mp4")  # builds the tiny model
    resolved = resolve("t2v", ["tiny-cogvideox"], [], families.defaults_layer)
    family = families.get("cogvideox")
    found = locate_all(resolved.config, family, build=False)
    counted = memory.sizes(family, resolved.config, found)
    assert counted.source == "safetensors headers"
    import diffusers

    from vidgen.models import tiny

    pipe = diffusers.CogVideoXPipeline.from_pretrained(tiny.folder("cogvideox"))
    assert counted.params["transformer"] == sum(p.numel() for p in pipe.transformer.parameters())


@pytest.mark.pipeline
def test_injected_oom_names_the_next_plan_and_keeps_the_latents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr("vidgen.run.runner._injected", {})
    result = cli("t2v", "a fox", *TINY, "--out", "fox.mp4")
    line = one_line_error(
        result, 6, "ran out of memory during decode", "Next cheaper plan: --vae-tiling", "--oom-retry"
    )
    assert "vidgen decode fox.latents.safetensors --vae-tiling" in line
    assert not Path("fox.mp4").exists() and Path("fox.latents.safetensors").is_file()
    # The saved latents finish the video without denoising again.
    done = cli("decode", "fox.latents.safetensors", "--vae-tiling")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == "fox.mp4"
    frames, meta = decode(Path("fox.mp4"))
    assert frames.shape[0] == 9
    record = sidecar(Path("fox.json"))
    assert record["decoded_from"]["path"] == "fox.latents.safetensors"
    assert "vae_tiling" in record["optimizations"]["applied"]


@pytest.mark.pipeline
def test_oom_retry_steps_down_and_records_the_plan_that_worked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_TEST_OOM", "denoise")
    monkeypatch.setattr("vidgen.run.runner._injected", {})
    result = cli("t2v", "a fox", *TINY, "--out", "fox.mp4", "--oom-retry")
    assert result.exit_code == 0, result.stderr
    assert "retrying seed 5 with --vae-tiling" in result.stderr
    record = sidecar(Path("fox.json"))
    assert record["optimizations"]["oom_retries"] == [{"plan": "--offload none", "phase": "denoise", "seed": 5}]
    assert record["config"]["optimization"]["vae_tiling"] is True
    assert record["sources"]["optimization.vae_tiling"] == "oom-retry (cheaper-decode)"
    assert record["optimizations"]["applied"] == ["vae_tiling"]
    assert not Path("fox.latents.safetensors").exists()
    # Replaying the sidecar runs the plan that worked, straight away.
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    again = cli("replay", "fox.json")
    assert again.exit_code == 0, again.stderr
    assert sidecar(Path("fox-replay.json"))["optimizations"]["applied"] == ["vae_tiling"]


@pytest.mark.pipeline
def test_oom_at_the_bottom_of_the_ladder_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_TEST_OOM", "denoise:5")
    monkeypatch.setattr("vidgen.run.runner._injected", {})
    result = cli("t2v", "a fox", *TINY, "--oom-retry")
    one_line_error(result, 6, "cheapest plan", "fewer --frames")


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("command", "preset", "extra"),
    [
        ("t2v", "tiny-cogvideox", []),
        ("t2v", "tiny-modelscope", []),
        ("animate", "tiny-animatediff", []),
        ("i2v", "tiny-svd", ["--decode-chunk", "2"]),
        ("i2v", "tiny-i2vgen-xl", []),
    ],
)
def test_decode_reproduces_the_frames_of_a_run(command: str, preset: str, extra: list[str]) -> None:
    from PIL import Image

    args = ["fox"] if command != "i2v" else ["red.png"] + (["fox"] if "i2vgen" in preset else [])
    Image.new("RGB", (64, 64), (200, 40, 40)).save("red.png")
    made = cli(command, *args, "--preset", preset, "--seed", "3", "--out", "run.mp4", "--save-latents", *extra)
    assert made.exit_code == 0, made.stderr
    record = sidecar(Path("run.json"))
    assert record["output"]["latents"]["path"] == "run.latents.safetensors"
    again = cli("decode", "run.latents.safetensors", "--out", "again.mp4", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["outputs"][0]["frames"] == record["output"]["frames"]
    original, _ = decode(Path("run.mp4"))
    redone, _ = decode(Path("again.mp4"))
    assert original.shape == redone.shape
    assert np.array_equal(original, redone)


@pytest.mark.pipeline
def test_decode_refuses_bad_inputs(tmp_path: Path) -> None:
    one_line_error(cli("decode", "missing.latents.safetensors"), 4, "does not exist")
    Path("junk.safetensors").write_bytes(b"not a safetensors file at all")
    one_line_error(cli("decode", "junk.safetensors"), 4, "not a latents file")
    assert cli("t2v", "fox", *TINY, "--out", "a.mp4", "--save-latents").exit_code == 0
    one_line_error(cli("decode", "a.latents.safetensors"), 7, "a.mp4 already exists", "--overwrite")


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("command", "preset", "args", "applied"),
    [
        ("t2v", "tiny-cogvideox", ["--fp8-storage"], "fp8_storage"),
        ("t2v", "tiny-cogvideox", ["--cache", "pab"], "cache=pab"),
        ("t2v", "tiny-cogvideox", ["--cache", "faster"], "cache=faster"),
        ("t2v", "tiny-cogvideox", ["--quantize", "int8"], "quantize=int8"),
        ("t2v", "tiny-modelscope", ["--attention-slicing", "--forward-chunking"], "attention_slicing"),
        ("t2v", "tiny-modelscope", ["--quantize", "fp8"], "quantize=fp8"),
        ("animate", "tiny-animatediff", ["--fp8-storage"], "fp8_storage"),
        ("t2v", "tiny-text2video-zero", ["--fp8-storage"], "fp8_storage"),
    ],
)
def test_cpu_options_run_and_are_recorded(command: str, preset: str, args: list[str], applied: str) -> None:
    result = cli(command, "a fox", "--preset", preset, "--seed", "2", "--out", "o.mp4", *args)
    assert result.exit_code == 0, result.stderr
    record = sidecar(Path("o.json"))
    assert applied in record["optimizations"]["applied"]
    methods = [call["method"] for call in record["optimizations"]["calls"]]
    assert methods, record["optimizations"]
    frames, _ = decode(Path("o.mp4"))
    assert frames.shape[0] == record["output"]["frames"]


@pytest.mark.pipeline
def test_first_block_cache_needs_two_blocks() -> None:
    # The tiny CogVideoX has one transformer block; diffusers would fail with an IndexError.
    one_line_error(cli("t2v", "a fox", *TINY, "--cache", "first-block:0.1"), 3, "single block", "--cache pab")


@pytest.mark.pipeline
def test_an_attention_backend_does_not_leak_into_the_next_pipeline_of_the_process() -> None:
    # diffusers' set_attention_backend also sets the process-wide default: a Wan model compiled
    # after a flex-attention pipeline in the same process (a batch's next group) then failed in
    # inductor. Each pipeline now starts from diffusers' default.
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    flex = cli("t2v", "a koi", "--preset", "tiny-hunyuanvideo", "--attention-backend", "flex", "--out", "f.mp4")
    assert flex.exit_code == 0, flex.stderr
    wan = cli("t2v", "a fox", "--preset", "tiny-wan22", "--compile", "--seed", "2", "--out", "w.mp4")
    assert wan.exit_code == 0, wan.stderr
    assert _AttentionBackendRegistry.get_active_backend()[0].value == "native"


@pytest.mark.pipeline
def test_compile_runs_regionally_where_blocks_repeat() -> None:
    # One compile on CPU (inductor needs a C compiler, which CI has): T2V-Zero's UNet declares
    # repeated blocks, so only those compile.
    result = cli("t2v", "a fox", "--preset", "tiny-text2video-zero", "--seed", "1", "--out", "c.mp4", "--compile")
    assert result.exit_code == 0, result.stderr
    record = sidecar(Path("c.json"))
    assert record["optimizations"]["applied"] == ["compile=regional"]
    assert record["optimizations"]["calls"] == [{"method": "unet.compile_repeated_blocks", "kwargs": {}}]


def test_group_and_model_offload_calls_are_accepted_by_diffusers() -> None:
    # Offload needs CUDA to save anything, and vidgen refuses it on a CPU; diffusers' own hooks
    # accept cpu as the onload device, which proves the calls vidgen makes are well formed.
    import diffusers
    import torch

    from vidgen.config.schema import OptimizationConfig
    from vidgen.models import optimize, tiny

    cli("t2v", "fox", *TINY, "--out", "warm.mp4")
    for settings, label in (
        ({"offload": "group", "offload_type": "block"}, "offload=group(block_level)"),
        ({"offload": "group", "offload_type": "leaf"}, "offload=group(leaf_level)"),
        ({"offload": "model"}, "offload=model"),
    ):
        pipe = diffusers.CogVideoXPipeline.from_pretrained(tiny.folder("cogvideox"))
        done = optimize.apply(pipe, OptimizationConfig(**settings), "cpu", "fp32")
        assert done["applied"] == [label]
        out = pipe("fox", num_frames=9, height=16, width=16, num_inference_steps=2, max_sequence_length=16,
                   generator=torch.Generator().manual_seed(0), output_type="np")  # fmt: skip
        assert out.frames[0].shape[0] == 9


@pytest.mark.gpu
def test_offload_plans_run_on_cuda() -> None:
    for args in (["--offload", "model"], ["--offload", "group", "--offload-stream"], ["--offload", "sequential"]):
        result = cli("t2v", "a fox", *TINY, "--device", "cuda", "--out", "g.mp4", "--overwrite", *args)
        assert result.exit_code == 0, result.stderr
        assert sidecar(Path("g.json"))["optimizations"]["applied"][0].startswith("offload=")


@pytest.mark.gpu
def test_memory_auto_plans_for_the_free_memory_of_this_card() -> None:
    body = json.loads(cli("t2v", "fox", *TINY, "--device", "cuda", "--memory", "auto", "--dry-run", "--json").stdout)
    assert body["memory"]["plan"] == "none" and body["memory"]["budget_source"].startswith("free memory on cuda")


@pytest.mark.pipeline
def test_the_suggested_decode_command_runs_for_svd(monkeypatch: pytest.MonkeyPatch) -> None:
    # SVD's cheaper plan includes --forward-chunking, which `vidgen decode` does not take: the
    # suggestion must name only decode options, and work as printed.
    from PIL import Image

    Image.new("RGB", (64, 64), (30, 120, 30)).save("green.png")
    monkeypatch.setenv("VIDGEN_TEST_OOM", "decode")
    monkeypatch.setattr("vidgen.run.runner._injected", {})
    line = one_line_error(cli("i2v", "green.png", "--preset", "tiny-svd", "--seed", "1", "--out", "g.mp4"), 6)
    suggested = line.split("`")[1].split()
    assert suggested == ["vidgen", "decode", "g.latents.safetensors", "--decode-chunk", "2"]
    done = cli(*suggested[1:])
    assert done.exit_code == 0, done.stderr
    assert decode(Path("g.mp4"))[0].shape[0] == sidecar(Path("g.json"))["output"]["frames"]


def test_memory_auto_sources_only_what_it_changed(nothing_loads: None) -> None:
    body = json.loads(
        cli("t2v", "fox", "--preset", "cogvideox-5b", "--dry-run", "--json", "--memory", "auto", "--vram", "16").stdout
    )
    planned = {path for path, source in body["sources"].items() if source.startswith("memory:auto")}
    # Model offload: the preset already tiles and slices, so only these changed.
    assert planned == {"optimization.memory", "optimization.vram_gb", "optimization.offload"}
