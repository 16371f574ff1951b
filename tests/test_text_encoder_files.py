"""Text encoders from one file (--text-encoder FILE): a tiny model's own encoder written as
llama.cpp writes GGUF files (UMT5 for Wan, T5 for LTX and CogVideoX, Llama for HunyuanVideo) and as ComfyUI's
transformers-named safetensors (scaled fp8 included), run through vidgen and compared with plain
diffusers + transformers loading the same file the documented way; wrong files refused before
anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import community
import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, png_frames, sidecar

DEFAULT_TIER = "pipeline"
FOX = ("t2v", "a fox in the snow")


def _tiny(name: str) -> Path:
    from vidgen.models import tiny

    return tiny.ensure(name)


def _run(name: str, *args: str, preset: str = "tiny-wan", seed: str = "3"):
    """(frames, sidecar) of a run written as png frames into the folder `name`."""
    result = cli(*FOX, "--preset", preset, "--seed", seed, "--format", "png", "--out", f"{name}/", *args)
    frames = png_frames(result)
    folder = Path(result.stdout.strip())
    return frames, sidecar(folder.with_name(folder.name + ".json"))


def _reseeded(model: str, seed: int = 1) -> dict:
    """Another encoder of the same config as `model`'s (other random weights), so that a run
    with it differs from one with the folder's own: the file is shown to be used."""
    import torch
    import transformers

    folder = _tiny(model) / "text_encoder"
    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = getattr(transformers, config.architectures[0])(config)
    return {k: v.contiguous() for k, v in encoder.state_dict().items() if k != "encoder.embed_tokens.weight"}


def test_umt5_ggufs_run_as_plain_transformers_loads_them(tmp_path: Path) -> None:
    base, _ = _run("base")
    q8, f32 = tmp_path / "umt5-xxl-encoder-Q8_0.gguf", tmp_path / "umt5-other-F32.gguf"
    assert community.write_encoder_gguf(community.encoder_state(_tiny("wan")), q8, quant="Q8_0") >= 8
    community.write_encoder_gguf(_reseeded("wan"), f32, quant=None)
    frames, data = _run("q8", "--text-encoder", str(q8))
    record = data["model"]["files"]["text_encoder"]
    assert (record["format"], record["quant"], record["layout"], record["tensors"]) == ("gguf", "Q8_0", "llama.cpp", 22)
    assert record["path"] == str(q8.resolve()) and len(record["sha256"]) == 64
    assert data["config"]["model"]["text_encoder"] == str(q8)
    # Plain: UMT5EncoderModel.from_pretrained(the model, subfolder="text_encoder", gguf_file=FILE,
    # config=its text_encoder config); another seed and another prompt must differ.
    assert_reproduces(frames, data)
    # Q8_0 stays near the encoder it came from; another encoder's file changes the video.
    assert np.abs(frames.astype(int) - base.astype(int)).mean() < 2
    replayed = cli("replay", str(next((tmp_path / "q8").glob("*.json"))))
    assert np.array_equal(png_frames(replayed), frames)
    other, data = _run("f32", "--text-encoder", str(f32))
    assert data["model"]["files"]["text_encoder"]["quant"] == "F32"
    assert np.abs(other.astype(int) - base.astype(int)).max() > 8
    assert_reproduces(other, data)


def test_a_t5_gguf_runs_in_ltx_and_cogvideox_and_a_llama_gguf_in_hunyuanvideo(tmp_path: Path) -> None:
    t5 = tmp_path / "t5-v1_1-xxl-encoder-Q8_0.gguf"
    assert community.write_encoder_gguf(_reseeded("ltx"), t5, quant="Q8_0", name="t5 tiny") > 0
    frames, data = _run("ltx", "--text-encoder", str(t5), preset="tiny-ltx")
    assert data["model"]["components"]["text_encoder"] == "T5EncoderModel"
    assert_reproduces(frames, data)
    # CogVideoX's T5 encoder is the same model (the tiny ones share their config).
    frames, data = _run("cogvideox", "--text-encoder", str(t5), preset="tiny-cogvideox")
    assert data["model"]["files"]["text_encoder"]["quant"] == "Q8_0"
    assert_reproduces(frames, data)
    # llama.cpp permutes a Llama's query and key rows; transformers undoes it from the head counts.
    # A whole language model's file also has its LM head (output.weight), which no encoder takes.
    llama = tmp_path / "llava-llama-3-8b-F32.gguf"
    state = _reseeded("hunyuanvideo")
    state["lm_head.weight"] = state["embed_tokens.weight"].flip(0)
    community.write_encoder_gguf(state, llama, "llama", None, "llama tiny", heads=(4, 4))
    frames, data = _run("hunyuan", "--text-encoder", str(llama), preset="tiny-hunyuanvideo")
    assert data["model"]["files"]["text_encoder"]["layout"] == "llama.cpp"
    assert_reproduces(frames, data)


def _comfy_state(state: dict) -> dict:
    """A ComfyUI text encoder file's tensors: transformers' names and its tokenizer as bytes."""
    import torch

    return {**state, "spiece_model": torch.frombuffer(bytearray(b"\x0a\x03abc"), dtype=torch.uint8)}


def test_comfyui_safetensors_and_scaled_fp8_text_encoders(tmp_path: Path) -> None:
    state = _reseeded("wan")
    community.write_safetensors(state, tmp_path / "umt5_bf16.safetensors")
    community.write_safetensors(_comfy_state(state), tmp_path / "umt5_comfy_bf16.safetensors")
    fp8_file, unscaled = tmp_path / "umt5_fp8_scaled.safetensors", tmp_path / "umt5_fp8_unscaled.safetensors"
    assert community.write_fp8_scaled(_comfy_state(state), fp8_file, blocks="block.") == 14  # the blocks' linears
    community.write_fp8_scaled(_comfy_state(state), unscaled, scales=False, blocks="block.")
    original, data = _run("bf16", "--text-encoder", str(tmp_path / "umt5_bf16.safetensors"))
    record = data["model"]["files"]["text_encoder"]
    assert (record["format"], record["quant"], record["layout"]) == ("safetensors", "bf16", "transformers")
    # Plain: UMT5EncoderModel.from_pretrained(None, config=..., state_dict=the file's tensors).
    assert_reproduces(original, data)
    comfy, _ = _run("comfy", "--text-encoder", str(tmp_path / "umt5_comfy_bf16.safetensors"))
    assert np.array_equal(comfy, original)  # the tokenizer bytes are no weight
    fp8, data = _run("fp8", "--text-encoder", str(fp8_file))
    assert data["model"]["files"]["text_encoder"]["quant"] == "fp8_e4m3fn (scaled)"
    dropped, _ = _run("dropped", "--text-encoder", str(unscaled))
    # fp8 keeps 3 mantissa bits: near the bf16 original on average (a pixel may move more), and
    # far nearer than the same file without its scales (what transformers alone computes).
    near = np.abs(fp8.astype(int) - original.astype(int)).mean()
    far = np.abs(dropped.astype(int) - original.astype(int)).mean()
    assert 0 < near <= 0.5 and far > 4 * max(near, 0.25), (near, far)


def _wrong_files(tmp_path: Path) -> list[tuple[str, Path, str, str]]:
    """(preset, file, words its refusal must contain, what it is)."""
    import transformers

    wan = tmp_path / "wan-Q8_0.gguf"
    community.write_gguf(community.wan_original(community.transformer_state(_tiny("wan"))), wan)
    umt5 = tmp_path / "umt5.gguf"
    community.write_encoder_gguf(community.encoder_state(_tiny("wan")), umt5)
    t5 = tmp_path / "t5.gguf"
    community.write_encoder_gguf(community.encoder_state(_tiny("ltx")), t5, name="t5 tiny")
    (tmp_path / "truncated.gguf").write_bytes(umt5.read_bytes()[: umt5.stat().st_size // 2])
    config = transformers.AutoConfig.from_pretrained(_tiny("wan") / "text_encoder")
    config.d_model = 64
    wider = transformers.UMT5EncoderModel(config).state_dict()
    community.write_encoder_gguf({k: v for k, v in wider.items() if "embed_tokens" not in k}, tmp_path / "wide.gguf")
    return [
        ("tiny-wan", wan, "is a Wan transformer, not the UMT5EncoderModel of tiny:wan", "a transformer"),
        ("tiny-wan", tmp_path / "truncated.gguf", "truncated or damaged", "truncated"),
        ("tiny-wan", tmp_path / "wide.gguf", "is a model of another size", "another size"),
        # UMT5 has an attention bias in every block, T5 in the first (and the tiny T5 an ungated
        # feed-forward): neither file fills the other.
        ("tiny-ltx", umt5, "holds tensors with no place in tiny:ltx's T5EncoderModel", "UMT5 for T5"),
        ("tiny-wan", t5, "lacks 3 of the 22 weights of tiny:wan's UMT5EncoderModel", "T5 for UMT5"),
    ]


def test_wrong_text_encoder_files_are_refused_before_loading(tmp_path: Path) -> None:
    for preset, path, words, what in _wrong_files(tmp_path):
        result = cli(*FOX, "--preset", preset, "--text-encoder", str(path), "--out", "out/v.mp4")
        one_line_error(result, 5, words)
        assert "loading" not in result.stderr.lower() and not files_under(tmp_path / "out"), what
    # The other way round: an encoder file given as the denoiser says what it is.
    umt5 = tmp_path / "umt5.gguf"
    one_line_error(cli(*FOX, "--preset", "tiny-wan", "--transformer", str(umt5)), 5, "is a T5 text encoder model")


def test_dry_run_prices_a_text_encoder_gguf_as_dequantized(tmp_path: Path) -> None:
    path = tmp_path / "umt5-Q8_0.gguf"
    community.write_encoder_gguf(community.encoder_state(_tiny("wan")), path)
    args = (*FOX, "--preset", "tiny-wan", "--dry-run", "--memory", "auto", "--vram", "12", "--json")
    result = cli(*args, "--text-encoder", str(path))
    assert result.exit_code == 0, result.stderr
    memory = json.loads(result.stdout)["memory"]
    # transformers dequantizes the file whole: its parameters in fp32 (the tied embedding once),
    # more than the file's own bytes.
    parameters = sum(v.numel() for v in community.encoder_state(_tiny("wan")).values())
    assert memory["weights_bytes"]["text_encoder"] == 4 * parameters > path.stat().st_size
    assert "gguf header" in memory["sizes_from"]


def test_options_with_a_text_encoder_file(tmp_path: Path) -> None:
    path = tmp_path / "umt5.gguf"
    community.write_encoder_gguf(community.encoder_state(_tiny("wan")), path)
    quantize = cli(*FOX, "--preset", "tiny-wan", "--text-encoder", str(path), "--quantize", "int8")
    one_line_error(quantize, 3, "drop --quantize")
    other = cli(*FOX, "--preset", "tiny-modelscope", "--text-encoder", str(path))
    one_line_error(other, 3, "not used by ModelScope")


def test_transformers_reads_no_gguf_for_a_llava_encoder() -> None:
    import torch
    import transformers

    from vidgen.core.errors import ModelError
    from vidgen.models import checkpoints

    text = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision = transformers.CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    with torch.device("meta"):
        llava = transformers.LlavaForConditionalGeneration(
            transformers.LlavaConfig(text_config=text, vision_config=vision)
        )
    file = checkpoints.Checkpoint(Path("x.gguf"), "x.gguf", "gguf", {"token_embd.weight": ((8, 16), "F32")}, 512)
    with pytest.raises(ModelError, match="transformers cannot load m's text encoder .LlavaForConditionalGeneration."):
        checkpoints.check_encoder(file, "LlavaForConditionalGeneration", llava, "--text-encoder", "m")


@pytest.mark.unit
def test_vidgen_models_lists_each_familys_files() -> None:
    text = cli("models").stdout
    blocks = {}
    for line in text.splitlines():
        if not line.startswith(" "):
            family = line.split(":")[0]
        blocks.setdefault(family, []).append(line.strip())
    assert (
        "files:    --transformer, --transformer-2 (GGUF, safetensors, scaled fp8); "
        "--text-encoder (GGUF dequantized on load, safetensors, scaled fp8)"
    ) in blocks["wan2.2"]
    assert "files:    --text-encoder (GGUF dequantized on load, safetensors, scaled fp8)" in blocks["cogvideox"]
    assert "files:    diffusers folders only" in blocks["modelscope"]
    assert "files:    --model (single-file checkpoint)" in blocks["animatediff"]
    rows = {row["family"]: row["files"] for row in json.loads(cli("models", "--json").stdout)}
    assert rows["ltx"]["--text-encoder"] == ["GGUF dequantized on load", "safetensors", "scaled fp8"]
    assert "--text-encoder" not in rows["ltx2"] and rows["svd"] == {}
    assert rows["animatediff"] == {"--model": ["single-file checkpoint"]}
