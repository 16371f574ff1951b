"""Community LoRA layouts on tiny models: Kohya/musubi, ComfyUI, Lightning/lightx2v and original
key names load as diffusers loads them, and a LoRA made for another model is refused in one line
(exit 5) before the pipeline loads.

The LoRAs are written here, offline, in each layout, with random non-zero pairs sized from the
tiny model's own weights, so each one changes the video.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, png_frames, printed_sidecar, sidecar

# Every test here runs a tiny pipeline, or stops just before one would load.
DEFAULT_TIER = "pipeline"

PROMPT = "a red fox in snow"
RANK = 4
# Wan's original layer names (as Wan-Video, ComfyUI and musubi-tuner write them) -> diffusers'.
WAN_NAMES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
# HunyuanVideo's original attention layers -> the diffusers layer whose sizes they take (the fused
# qkv projections hold three of them).
HUNYUAN_NAMES = {
    "img_attn_qkv": ("attn.to_q", 3),
    "txt_attn_qkv": ("attn.add_q_proj", 3),
    "img_attn_proj": ("attn.to_out.0", 1),
    "txt_attn_proj": ("attn.to_add_out", 1),
}
# The layers of LTX-Video and LTX-2 blocks a LoRA trainer for them adapts; both keep diffusers' names.
LTX_LAYERS = re.compile(
    r"transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|transformer_blocks\.\d+\.ff\."
)


# -- writing LoRAs ----------------------------------------------------------------------------


def _sizes(model: str) -> dict[str, tuple[int, ...]]:
    """The tiny model's transformer weights: name -> shape (from its file's header)."""
    from safetensors import safe_open

    from vidgen.models import tiny

    (weights,) = (tiny.ensure(model) / "transformer").glob("*.safetensors")
    with safe_open(str(weights), framework="pt") as handle:
        names = handle.keys()
        return {key: tuple(handle.get_slice(key).get_shape()) for key in names}


def _pair(seed: int, out: int, inp: int, down: str, up: str, prefix: str) -> dict:
    """One layer's random low-rank pair, large enough to change a tiny model's video."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {
        f"{prefix}.{down}.weight": torch.randn(RANK, inp, generator=generator) * 0.3,
        f"{prefix}.{up}.weight": torch.randn(out, RANK, generator=generator) * 0.3,
    }


def _blocks(sizes: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in sizes if (m := re.match(pattern, key))})


def wan_lora(layout: str, model: str = "wan", width: int | None = None, image_layers: bool = False) -> dict:
    """A Wan LoRA in `layout` (kohya: musubi-tuner's names; comfyui: ComfyUI's; lightx2v: ComfyUI's
    with the .diff/.diff_b tensors of the Lightning and lightx2v distill LoRAs), for the tiny
    model or, with `width`, for one of another width. `image_layers` adds the image
    cross-attention an image-to-video LoRA has."""
    import torch

    sizes = _sizes(model)
    names = dict(WAN_NAMES)
    if image_layers:
        names.update({"cross_attn.k_img": "attn2.to_k", "cross_attn.v_img": "attn2.to_v"})
    inner = sizes["blocks.0.attn1.to_q.weight"][0]

    def sized(n: int) -> int:  # the model's width, or the other model's
        return width if width and n == inner else n

    tensors: dict = {}
    for block in _blocks(sizes, r"blocks\.(\d+)\."):
        for index, (original, ours) in enumerate(names.items()):
            out, inp = (sized(n) for n in sizes[f"blocks.{block}.{ours}.weight"])
            prefix = (
                f"lora_unet_blocks_{block}_{original.replace('.', '_')}"
                if layout == "kohya"
                else f"diffusion_model.blocks.{block}.{original}"
            )
            tensors.update(_pair(100 * block + index, out, inp, "lora_down", "lora_up", prefix))
            # alpha / rank scales the pair (0.5 here); diffusers' converters fold it in.
            tensors[f"{prefix}.alpha"] = torch.tensor(RANK / 2)
            if layout == "lightx2v":
                tensors[f"{prefix}.diff_b"] = torch.randn(out, generator=torch.Generator().manual_seed(block)) * 0.1
        if layout == "lightx2v":  # zero norm deltas, as the distill LoRAs ship them (diffusers drops them)
            tensors[f"diffusion_model.blocks.{block}.norm3.diff"] = torch.zeros(sizes[f"blocks.{block}.norm2.weight"])
    if layout == "lightx2v":  # a full delta of the output head, as Wan2.2-Distill-Loras have
        out, inp = sizes["proj_out.weight"]
        tensors["diffusion_model.head.head.diff"] = torch.randn(out, inp, generator=torch.Generator().manual_seed(7))
        tensors["diffusion_model.head.head.diff"] *= 0.05
        tensors["diffusion_model.head.head.diff_b"] = torch.zeros(out)
    return tensors


def ltx_lora(model: str, down: str = "lora_A", up: str = "lora_B", prefix: str = "diffusion_model.") -> dict:
    """An LTX-Video or LTX-2 LoRA as ComfyUI and the LTX trainers write it: diffusers' layer
    names under diffusion_model. (`prefix=""`: the same names without a prefix)."""
    sizes = _sizes(model)
    tensors: dict = {}
    layers = sorted(key.removesuffix(".weight") for key in sizes if LTX_LAYERS.match(key) and key.endswith(".weight"))
    for index, layer in enumerate(layers):
        out, inp = sizes[f"{layer}.weight"]
        tensors.update(_pair(index, out, inp, down, up, f"{prefix}{layer}"))
    return tensors


def hunyuan_lora(prefix: str = "diffusion_model.") -> dict:
    """A HunyuanVideo LoRA in the original model's names (fused qkv), as ComfyUI and musubi
    write them (`prefix=""`: the original names alone)."""
    sizes = _sizes("hunyuanvideo")
    tensors: dict = {}
    for block in _blocks(sizes, r"transformer_blocks\.(\d+)\."):
        for index, (original, (ours, fused)) in enumerate(HUNYUAN_NAMES.items()):
            out, inp = sizes[f"transformer_blocks.{block}.{ours}.weight"]
            name = f"{prefix}double_blocks.{block}.{original}"
            tensors.update(_pair(10 * block + index, fused * out, inp, "lora_A", "lora_B", name))
    return tensors


def save(tensors: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


# -- each layout loads as diffusers loads it --------------------------------------------------

CASES = [
    # preset, layout recorded, the LoRA, layers it targets
    ("tiny-wan", "kohya", lambda: wan_lora("kohya"), 20),
    ("tiny-wan", "comfyui", lambda: wan_lora("comfyui"), 20),
    ("tiny-wan", "lightx2v", lambda: wan_lora("lightx2v"), 21),  # and the head, from its .diff
    ("tiny-skyreels", "kohya", lambda: wan_lora("kohya", "skyreels"), 20),
    ("tiny-ltx", "comfyui", lambda: ltx_lora("ltx"), 20),
    ("tiny-ltx2", "comfyui", lambda: ltx_lora("ltx2"), 20),
    ("tiny-hunyuanvideo", "comfyui", lambda: hunyuan_lora(), 16),  # each qkv is 3 layers: 8 a block
    ("tiny-hunyuanvideo", "original", lambda: hunyuan_lora(prefix=""), 16),
]


@pytest.mark.parametrize(("preset", "layout", "make", "layers"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_community_lora_equals_plain_diffusers_loading_it(
    tmp_path: Path, preset: str, layout: str, make, layers: int
) -> None:
    tensors = make()
    lora = save(tensors, tmp_path / f"{layout}.safetensors")
    base = ("t2v", PROMPT, "--preset", preset, "--seed", "5", "--format", "png")
    result = cli(*base, "--lora", f"{lora}:0.8", "--out", "lora/")
    ours, data = png_frames(result), printed_sidecar(result)
    (record,) = data["model"]["loras"]
    assert record == {
        "source": str(lora),
        "name": layout,
        "scale": 0.8,
        "path": str(lora),
        "sha256": hashlib.sha256(lora.read_bytes()).hexdigest(),
        "bytes": lora.stat().st_size,
        "layout": layout,
        "tensors": len(tensors),
        "modules": layers,
        "matched": layers,
    }
    # Plain diffusers, `pipe.load_lora_weights(folder, weight_name=...)` and `set_adapters`, makes
    # the same frames; another seed, prompt or guidance makes others.
    assert_reproduces(ours, data)
    # The LoRA is in the video: without it the frames differ.
    plain = png_frames(cli(*base, "--out", "plain/"))
    assert np.abs(ours.astype(int) - plain.astype(int)).max() > 2


def test_a_lora_run_replays_to_the_same_frames_and_inspect_shows_its_layout(tmp_path: Path) -> None:
    lora = save(wan_lora("kohya"), tmp_path / "style.safetensors")
    result = cli("t2v", PROMPT, "--preset", "tiny-wan", "--seed", "2", "--format", "png", "--lora", str(lora))
    first, data = png_frames(result), printed_sidecar(result)
    replayed = cli("replay", str(Path(result.stdout.strip()).with_suffix(".json")))
    assert png_frames(replayed).tolist() == first.tolist()
    assert printed_sidecar(replayed)["model"]["loras"] == data["model"]["loras"]
    shown = cli("inspect", str(Path(result.stdout.strip()).with_suffix(".json")))
    assert "kohya layout, 20/20 layers, sha256 " in shown.stdout


# -- refusals ---------------------------------------------------------------------------------


@pytest.fixture
def no_pipeline_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading any pipeline fails the run with another error: a refusal seen with this fixture
    came before the pipeline would have loaded."""
    import diffusers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pipeline loaded before the LoRA was checked")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", classmethod(refuse))


REFUSED = [
    # preset, the LoRA, what the one line says
    ("tiny-wan", lambda: ltx_lora("ltx"), ("(comfyui layout) cannot be read by WanPipeline", "another base")),
    (
        "tiny-wan",
        lambda: wan_lora("kohya", width=48),
        ("matches 0 of 20 layers of this model's transformer (kohya layout)", "24 -> 24 here, 48 -> 48 in the LoRA"),
    ),
    # An image-to-video LoRA on a text-to-video model: 4 of its 24 layers are not there (83 %).
    (
        "tiny-wan",
        lambda: wan_lora("comfyui", image_layers=True),
        ("matches 20 of 24 layers", "(comfyui layout)", "another base model"),
    ),
    (
        "tiny-ltx",
        lambda: wan_lora("kohya"),
        ("matches 0 of 20 layers", "converts only the diffusers, comfyui layouts for LTXPipeline, not kohya"),
    ),
    (
        "tiny-ltx",
        lambda: ltx_lora("ltx", prefix=""),
        ("matches 0 of 20 layers", "(original layout)", "not original"),
    ),
    # ComfyUI names with kohya's lora_down/lora_up: LTX's converter leaves them, and diffusers
    # fails on them with an IndexError; vidgen says why.
    (
        "tiny-ltx",
        lambda: ltx_lora("ltx", down="lora_down", up="lora_up"),
        ("matches 0 of 20 layers", "does not convert its .lora_down.weight, .lora_up.weight tensors"),
    ),
    ("tiny-hunyuanvideo", lambda: wan_lora("comfyui"), ("matches 0 of 20 layers", "another base model")),
]


@pytest.mark.parametrize(("preset", "make", "needles"), REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)])
def test_a_lora_for_another_model_is_refused_before_the_pipeline_loads(
    tmp_path: Path, no_pipeline_loads: None, preset: str, make, needles: tuple
) -> None:
    from vidgen.models import tiny

    tiny.ensure(preset.removeprefix("tiny-"))  # built first: only the run itself is watched
    lora = save(make(), tmp_path / "other" / "other.safetensors")
    before = files_under(tmp_path)
    result = cli("t2v", PROMPT, "--preset", preset, "--lora", str(lora))
    line = one_line_error(result, 5, f"LoRA {lora} ", *needles)
    assert "the pipeline loaded" not in line
    assert files_under(tmp_path) == before  # no video, no sidecar, nothing under outputs/


def test_a_lora_only_on_this_machine_after_loading_is_held_to_the_same_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Hub LoRA not in the cache is only downloaded by diffusers while it loads, which needs the
    # network; the pre-load check being skipped stands in for it here. diffusers loads the 20
    # layers the model has, warns about the other 4 and would go on; vidgen refuses.
    from vidgen.models import loras

    monkeypatch.setattr(loras, "check_before_load", lambda *args: None)
    lora = save(wan_lora("comfyui", image_layers=True), tmp_path / "i2v.safetensors")
    before = files_under(tmp_path)
    result = cli("t2v", PROMPT, "--preset", "tiny-wan", "--lora", str(lora))
    one_line_error(result, 5, "matches 20 of 24 layers of this model's transformer (comfyui layout)")
    assert files_under(tmp_path) == before


def test_a_cached_hub_lora_is_checked_before_loading_too(tmp_path: Path, no_pipeline_loads: None) -> None:
    from huggingface_hub import constants

    from vidgen.models import tiny

    tiny.ensure("wan")
    # A Hub LoRA repo as a download leaves it in the Hugging Face cache.
    hub = tmp_path / "hf-cache"
    repo = hub / "models--someone--ltx-style"
    save(ltx_lora("ltx"), repo / "snapshots" / ("0" * 40) / "style.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(hub))
        result = cli("t2v", PROMPT, "--preset", "tiny-wan", "--lora", "someone/ltx-style")
    one_line_error(result, 5, "LoRA someone/ltx-style (comfyui layout) cannot be read by WanPipeline")


def test_sidecars_without_the_new_lora_fields_still_inspect(tmp_path: Path) -> None:
    lora = save(wan_lora("comfyui"), tmp_path / "style.safetensors")
    result = cli("t2v", PROMPT, "--preset", "tiny-wan", "--seed", "1", "--lora", str(lora), "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "a.json")
    for key in ("layout", "tensors", "modules", "matched"):
        del data["model"]["loras"][0][key]
    (tmp_path / "old.json").write_text(json.dumps(data))
    shown = cli("inspect", "old.json")
    assert shown.exit_code == 0, shown.stderr
    assert f"{lora} x1.0 (sha256 " in shown.stdout and "layers" not in shown.stdout
