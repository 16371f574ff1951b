"""Community checkpoint files (--transformer FILE): GGUF, ComfyUI and original-layout
safetensors and scaled fp8, each written offline from a tiny model's own weights in the layout
its publishers use, run through vidgen and compared with plain diffusers loading the same file
the documented way; wrong files refused before anything loads."""

from __future__ import annotations

from pathlib import Path

import community
import numpy as np
import pytest
from conftest import assert_reproduces, cli, cli_subprocess, files_under, one_line_error, png_frames, sidecar
from PIL import Image

DEFAULT_TIER = "pipeline"
FOX = ("t2v", "a fox in the snow")


def _tiny(name: str) -> Path:
    from vidgen.models import tiny

    return tiny.ensure(name)


def _wan_original(component: str = "transformer", model: str = "wan") -> dict:
    return community.wan_original(community.transformer_state(_tiny(model), component))


def _run(tmp_path: Path, name: str, *args: str, preset: str = "tiny-wan", seed: str = "3"):
    """(frames, sidecar) of a run written as png frames (lossless, so plain diffusers' frames
    compare within 1 of 255) into the folder `name`."""
    result = cli(*FOX, "--preset", preset, "--seed", seed, "--format", "png", "--out", f"{name}/", *args)
    frames = png_frames(result)
    folder = Path(result.stdout.strip())
    return frames, sidecar(folder.with_name(folder.name + ".json"))


@pytest.mark.parametrize(
    ("name", "quant", "write"),
    [
        ("wan-Q8_0.gguf", "Q8_0", lambda sd, p: community.write_gguf(sd, p, "Q8_0")),
        ("wan-Q4_0.gguf", "Q4_0", lambda sd, p: community.write_gguf(sd, p, "Q4_0")),
        ("wan-comfy-bf16.safetensors", "bf16", lambda sd, p: community.write_safetensors(community.prefixed(sd), p)),
        ("wan-original.safetensors", "f32", lambda sd, p: community.write_safetensors(sd, p, "float32")),
    ],
)
def test_a_wan_file_runs_as_plain_diffusers_loads_it(tmp_path: Path, name: str, quant: str, write) -> None:
    path = tmp_path / name
    written = write(_wan_original(), path)
    if name.endswith(".gguf"):
        assert written >= 4  # the tiny model's linear weights whose rows split into blocks
    frames, data = _run(tmp_path, "v", "--transformer", str(path))
    record = data["model"]["files"]["transformer"]
    assert record["quant"] == quant
    assert record["layout"] == ("comfyui" if "comfy" in name else "original")
    assert record["format"] == path.suffix[1:]
    assert record["path"] == str(path.resolve()) and len(record["sha256"]) == 64
    # Plain diffusers: from_single_file(file, config=the model, subfolder="transformer"), GGUF
    # through GGUFQuantizationConfig; another seed and another prompt must differ.
    assert_reproduces(frames, data)


def test_quantized_files_run_close_to_the_full_weights_they_came_from(tmp_path: Path) -> None:
    base, _ = _run(tmp_path, "base")
    community.write_gguf(_wan_original(), tmp_path / "q4.gguf", "Q4_0")
    q4, _ = _run(tmp_path, "q4", "--transformer", str(tmp_path / "q4.gguf"))
    # Q4_0 loses precision (so the file was really used), and stays near the original.
    assert 0 < np.abs(q4.astype(int) - base.astype(int)).max() <= 12


def test_scaled_fp8_equals_the_bf16_original_and_dropped_scales_do_not(tmp_path: Path) -> None:
    state = community.prefixed(_wan_original())
    community.write_safetensors(state, tmp_path / "bf16.safetensors")
    scaled = community.write_fp8_scaled(state, tmp_path / "fp8_scaled.safetensors")
    community.write_fp8_scaled(state, tmp_path / "fp8_unscaled.safetensors", scales=False)
    assert scaled == 20  # every 2-D block weight
    original, _ = _run(tmp_path, "bf16", "--transformer", str(tmp_path / "bf16.safetensors"))
    fp8, data = _run(tmp_path, "fp8", "--transformer", str(tmp_path / "fp8_scaled.safetensors"))
    dropped, _ = _run(tmp_path, "dropped", "--transformer", str(tmp_path / "fp8_unscaled.safetensors"))
    assert data["model"]["files"]["transformer"]["quant"] == "fp8_e4m3fn (scaled)"
    near = np.abs(fp8.astype(int) - original.astype(int))
    far = np.abs(dropped.astype(int) - original.astype(int))
    # The stated tolerance (README): within 4 of 255 per pixel and 0.5 on average on this model;
    # without its scales the same file is far off (what diffusers alone computes).
    assert near.max() <= 4 and near.mean() <= 0.5, (near.max(), near.mean())
    assert far.mean() > 4 * max(near.mean(), 0.25), (far.mean(), near.mean())
    other, _ = _run(tmp_path, "seed", "--transformer", str(tmp_path / "fp8_scaled.safetensors"), seed="4")
    assert np.abs(other.astype(int) - fp8.astype(int)).max() > 1


def test_newer_weight_scale_keys_are_applied_too(tmp_path: Path) -> None:
    state = community.prefixed(_wan_original())
    community.write_safetensors(state, tmp_path / "bf16.safetensors")
    community.write_fp8_scaled(state, tmp_path / "ws.safetensors", key="weight_scale")
    original, _ = _run(tmp_path, "bf16", "--transformer", str(tmp_path / "bf16.safetensors"))
    fp8, _ = _run(tmp_path, "ws", "--transformer", str(tmp_path / "ws.safetensors"))
    assert np.abs(fp8.astype(int) - original.astype(int)).mean() <= 0.5


def test_both_experts_of_a_two_expert_model_from_gguf_files(tmp_path: Path) -> None:
    high, low = tmp_path / "high.gguf", tmp_path / "low.gguf"
    community.write_gguf(_wan_original("transformer", "wan22"), high, "Q8_0")
    community.write_gguf(_wan_original("transformer_2", "wan22"), low, "Q4_0")
    frames, data = _run(tmp_path, "v", "--transformer", str(high), "--transformer-2", str(low), preset="tiny-wan22")
    files = data["model"]["files"]
    assert (files["transformer"]["quant"], files["transformer_2"]["quant"]) == ("Q8_0", "Q4_0")
    assert_reproduces(frames, data)


def test_an_ltx_gguf_runs_as_plain_diffusers_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "ltx-Q8_0.gguf"
    state = community.ltx_original(community.transformer_state(_tiny("ltx")))
    assert community.write_gguf(state, path, "Q8_0", arch="ltxv") > 0
    frames, data = _run(tmp_path, "v", "--transformer", str(path), preset="tiny-ltx")
    assert data["model"]["files"]["transformer"]["quant"] == "Q8_0"
    assert_reproduces(frames, data)


def test_a_gguf_run_replays_to_identical_frames(tmp_path: Path) -> None:
    community.write_gguf(_wan_original(), tmp_path / "q8.gguf", "Q8_0")
    frames, data = _run(tmp_path, "v", "--transformer", str(tmp_path / "q8.gguf"))
    result = cli("replay", str(next((tmp_path / "v").glob("*.json"))))
    again = png_frames(result)
    assert np.array_equal(frames, again)
    replayed = sidecar(Path(result.stdout.strip()).with_name(Path(result.stdout.strip()).name + ".json"))
    assert replayed["model"]["files"] == data["model"]["files"]
    other, _ = _run(tmp_path, "w", "--transformer", str(tmp_path / "q8.gguf"), seed="4")
    assert not np.array_equal(frames, other)
    shown = cli("inspect", str(next((tmp_path / "v").glob("*.json")))).stdout
    sha = data["model"]["files"]["transformer"]["sha256"][:12]
    assert f"transformer  {tmp_path / 'q8.gguf'} (gguf Q8_0, original layout, sha256 {sha}, " in shown


def test_a_hub_file_comes_from_the_cache_with_its_revision(tmp_path: Path) -> None:
    # A Hugging Face cache laid out as hf_hub_download leaves it (no network here): REPO:PATH
    # resolves to the cached snapshot, and its commit is recorded.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--city96--Wan-tiny-gguf"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit / "q8"
    snapshot.mkdir(parents=True)
    community.write_gguf(_wan_original(), snapshot / "wan-Q8_0.gguf", "Q8_0")
    # huggingface_hub reads HF_HUB_CACHE when imported: a process of its own sees this cache.
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    args = (*FOX, "--preset", "tiny-wan", "--seed", "3", "--format", "png", "--out", "v/")
    result = cli_subprocess(*args, "--transformer", "city96/Wan-tiny-gguf:q8/wan-Q8_0.gguf", env=env)
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    record = data["model"]["files"]["transformer"]
    assert (record["repo"], record["revision"], record["quant"]) == ("city96/Wan-tiny-gguf", commit, "Q8_0")
    assert record["path"] == str(snapshot / "wan-Q8_0.gguf")
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
    assert_reproduces(frames, data)
    missing = cli_subprocess(*args, "--transformer", "city96/Wan-tiny-gguf:q8/other.gguf", "--overwrite", env=env)
    assert missing.returncode == 5 and "could not be downloaded" in missing.stderr.strip().splitlines()[-1]


def test_dry_run_prices_the_gguf_files_own_bytes(tmp_path: Path) -> None:
    import json

    import gguf

    path = tmp_path / "q4.gguf"
    community.write_gguf(_wan_original(), path, "Q4_0")
    result = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(path), "--dry-run", "--memory", "auto",
                 "--vram", "12", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    memory = json.loads(result.stdout)["memory"]
    data_bytes = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    assert memory["weights_bytes"]["transformer"] == data_bytes < path.stat().st_size
    assert "gguf header" in memory["sizes_from"]
    full = cli(*FOX, "--preset", "tiny-wan", "--dry-run", "--memory", "auto", "--vram", "12", "--json")
    full = json.loads(full.stdout)["memory"]
    assert full["weights_bytes"]["transformer"] > data_bytes  # fp32 weights of the same model


def _wrong_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its refusal must contain)."""
    import json

    from diffusers import WanTransformer3DModel

    original = _wan_original()
    files = {}
    ltx = tmp_path / "ltx.gguf"
    community.write_gguf(community.ltx_original(community.transformer_state(_tiny("ltx"))), ltx, arch="ltxv")
    files["another model"] = (ltx, "is an LTX-Video transformer, not the WanTransformer3DModel")
    config = json.loads((_tiny("wan") / "transformer" / "config.json").read_text())
    wider = WanTransformer3DModel(
        **{k: v for k, v in config.items() if not k.startswith("_")} | {"attention_head_dim": 16}
    )
    community.write_gguf(community.wan_original(wider.state_dict()), tmp_path / "wider.gguf")
    files["another size"] = (tmp_path / "wider.gguf", "is a model of another size")
    community.write_gguf({k: v for k, v in original.items() if not k.startswith("blocks.1.")}, tmp_path / "part.gguf")
    files["part of a model"] = (tmp_path / "part.gguf", "lacks 27 of the 69 weights")
    whole = (tmp_path / "part.gguf").read_bytes()
    community.write_gguf(original, tmp_path / "whole.gguf")
    (tmp_path / "truncated.gguf").write_bytes((tmp_path / "whole.gguf").read_bytes()[: len(whole) // 2])
    files["truncated"] = (tmp_path / "truncated.gguf", "truncated or damaged")
    community.write_raw_gguf(tmp_path / "iq2.gguf", {"blocks.0.ffn.2.weight": ((24, 256), "IQ2_XXS")})
    files["unknown quant type"] = (tmp_path / "iq2.gguf", "stores tensors as IQ2_XXS, which diffusers cannot")
    community.write_safetensors(original, tmp_path / "model.ckpt")
    files["pickle"] = (tmp_path / "model.ckpt", "pickle")
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    files["not safetensors"] = (tmp_path / "random.safetensors", "is not a safetensors file")
    return files


def test_wrong_files_are_refused_before_loading_with_nothing_written(tmp_path: Path) -> None:
    for what, (path, words) in _wrong_files(tmp_path).items():
        result = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(path), "--out", "out/v.mp4")
        one_line_error(result, 5, words)
        # Refused before the pipeline loads: nothing of the run's phases or outputs.
        assert "loading" not in result.stderr.lower() and not files_under(tmp_path / "out"), what


def test_options_that_would_touch_a_files_weights_again_are_refused(tmp_path: Path) -> None:
    community.write_gguf(_wan_original(), tmp_path / "q8.gguf")
    quantize = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(tmp_path / "q8.gguf"), "--quantize", "int8")
    one_line_error(quantize, 3, "drop --quantize")
    fp8 = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(tmp_path / "q8.gguf"), "--fp8-storage")
    one_line_error(fp8, 3, "drop --fp8-storage")
    second = cli(*FOX, "--preset", "tiny-wan", "--transformer-2", str(tmp_path / "q8.gguf"))
    one_line_error(second, 3, "Wan 2.2 A14B")
    other = cli(*FOX, "--preset", "tiny-cogvideox", "--transformer", str(tmp_path / "q8.gguf"))
    one_line_error(other, 3, "not used by CogVideoX")


def test_a_second_run_takes_the_files_hash_from_the_cache_and_replay_checks_it(tmp_path: Path) -> None:
    import os
    import time

    path = tmp_path / "q8.gguf"
    community.write_gguf(_wan_original(), path, "Q8_0")
    # As a downloaded file is: written a while ago (a file changed within 2 s is not cached).
    os.utime(path, (time.time() - 60, time.time() - 60))
    _, first = _run(tmp_path, "a", "--transformer", str(path))
    recorded = first["model"]["files"]["transformer"]["sha256"]
    # Other bytes of the same length under the same mtime: a run that hashed the file again
    # would record another hash; the cache (path, size, mtime) answers instead.
    stat = path.stat()
    community.write_gguf(_wan_original(), path, "Q8_0")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _, second = _run(tmp_path, "b", "--transformer", str(path))
    assert second["model"]["files"]["transformer"]["sha256"] == recorded
    # A new mtime makes vidgen read it again, and replay then refuses the changed file.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    result = cli("replay", str(next((tmp_path / "a").glob("*.json"))))
    one_line_error(result, 5, "has changed since the run")


def test_scaled_formats_vidgen_cannot_dequantize_are_refused_by_name(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = community.prefixed(_wan_original())
    name = next(k for k in state if k.endswith("ffn.2.weight"))
    layer = name[: -len(".weight")]
    nvfp4 = dict(state)
    nvfp4[name] = torch.zeros(state[name].shape[0], state[name].shape[1] // 2, dtype=torch.uint8)
    nvfp4[layer + ".weight_scale"] = torch.ones(1)
    nvfp4[layer + ".weight_scale_2"] = torch.ones(1)
    save_file(nvfp4, str(tmp_path / "nvfp4.safetensors"))
    result = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(tmp_path / "nvfp4.safetensors"))
    one_line_error(result, 5, "4-bit or block-scaled format")
    int8 = dict(state)
    int8[name] = torch.zeros(state[name].shape, dtype=torch.int8)
    int8[layer + ".weight_scale"] = torch.ones(state[name].shape[0], state[name].shape[1] // 8)
    save_file(int8, str(tmp_path / "int8.safetensors"))
    result = cli(*FOX, "--preset", "tiny-wan", "--transformer", str(tmp_path / "int8.safetensors"))
    one_line_error(result, 5, "stores model.diffusion_model.blocks.0.ffn.2.weight as I8 with 96 scales")


def test_batch_jobs_take_their_own_files_and_a_manifest_cannot_allow_a_pickle(tmp_path: Path) -> None:
    import json

    community.write_gguf(_wan_original(), tmp_path / "q8.gguf", "Q8_0")
    community.write_gguf(_wan_original(), tmp_path / "q4.gguf", "Q4_0")
    jobs = [
        {"id": "a", "preset": "tiny-wan", "prompt": "a fox", "seed": 3, "transformer": "q8.gguf"},
        {"id": "b", "preset": "tiny-wan", "prompt": "a fox", "seed": 3, "transformer": "q4.gguf"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    result = cli("batch", "jobs.jsonl", "--out", "runs/")
    assert result.exit_code == 0, result.stderr
    # Two files, two pipelines: the second job does not run on the first job's transformer.
    quants = [sidecar(tmp_path / "runs" / f"{job}.json")["model"]["files"]["transformer"]["quant"] for job in "ab"]
    assert quants == ["Q8_0", "Q4_0"]
    (tmp_path / "model.ckpt").write_bytes((tmp_path / "q8.gguf").read_bytes())
    evil = {"preset": "tiny-wan", "prompt": "a fox", "transformer": "model.ckpt", "allow_pickle": True}
    (tmp_path / "evil.jsonl").write_text(json.dumps(evil) + "\n")
    refused = cli("batch", "evil.jsonl", "--out", "evil/")
    assert refused.exit_code != 0 and "only the command line can allow them" in refused.stderr
    assert not files_under(tmp_path / "evil")


def test_a_gguf_presets_plan_prices_the_cached_file_and_before_download_its_name(tmp_path: Path) -> None:
    import json

    import gguf

    args = ("t2v", "a fox", "--preset", "wan2.1-t2v-14b-gguf-q4", "--dry-run", "--memory", "auto",
            "--vram", "12", "--json")  # fmt: skip
    # Not downloaded: priced by the quant type in the preset's file name over the 14B's parameters.
    before = cli_subprocess(*args, env={"HF_HUB_CACHE": str(tmp_path / "empty")})
    assert before.returncode == 0, before.stderr
    memory = json.loads(before.stdout)["memory"]
    assert 9.0e9 < memory["weights_bytes"]["transformer"] < 10.5e9  # the published file: 10.1 GB
    assert any("5.3 bits a weight" in note for note in memory["notes"])
    # In the Hugging Face cache (a stand-in file under the preset's repo and name): its own bytes.
    commit = "a" * 40
    repo = tmp_path / "hub" / "models--city96--Wan2.1-T2V-14B-gguf"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    path = repo / "snapshots" / commit / "wan2.1-t2v-14b-Q4_K_M.gguf"
    community.write_gguf(_wan_original(), path, "Q4_0")
    after = cli_subprocess(*args, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert after.returncode == 0, after.stderr
    data_bytes = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    assert json.loads(after.stdout)["memory"]["weights_bytes"]["transformer"] == data_bytes
