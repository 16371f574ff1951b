"""Every tiny text- and image-to-video preset equals plain diffusers run from its own sidecar.

The presets are read from the preset folder, so a new tiny preset is tested here without editing
a list. Video-to-video, control and animate presets need input videos and adapter setup that
plain diffusers repeats differently per family; their equality tests live in test_i2v_v2v.py,
test_animate.py and test_control.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, sidecar

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import merged_preset
from vidgen.families.base import run_note
from vidgen.families.wan import LAST_IMAGE_PRESETS

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _runs() -> list[tuple[str, str]]:
    """(preset, mode) for every tiny t2v/i2v preset; a preset without a mode runs in each."""
    runs = []
    for name, path in available_presets().items():
        data = merged_preset(str(path))
        if not str((data.get("model") or {}).get("id", "")).startswith("tiny:"):
            continue
        family = families.get(data["model"]["family"])
        for mode in [data["mode"]] if data.get("mode") else list(family.modes):
            if mode in ("t2v", "i2v"):
                runs.append((name, mode))
    return runs


def plain_diffusers(data: dict, media: dict) -> np.ndarray:
    """What plain diffusers makes from a sidecar: class, model path and dtypes, the recorded
    scheduler swaps, call kwargs, the input images and the seed."""
    import diffusers
    import torch

    dtypes = data["model"].get("dtypes")
    dtype = {k: getattr(torch, DTYPES[v]) for k, v in dtypes.items()} if dtypes else torch.float32
    pipe = getattr(diffusers, data["pipeline"]["class"]).from_pretrained(
        data["model"]["path"], dtype=dtype, **data["model"].get("from_pretrained", {})
    )
    for step in data["pipeline"]["setup"]:
        if step["method"] == "guider = guider.new":
            # HunyuanVideo-1.5 carries its guidance on the guider, not in __call__.
            pipe.guider = pipe.guider.new(**step["kwargs"])
            continue
        # `scheduler = UniPCMultistepScheduler.from_config` with the options it got.
        assert step["method"].startswith("scheduler = "), step
        cls = getattr(diffusers, step["method"].split(" = ")[1].split(".")[0])
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **step["kwargs"])
    generator = torch.Generator(data["pipeline"]["generator"]["device"]).manual_seed(data["seed"])
    if "torch_manual_seed" in data["pipeline"]["generator"]:
        torch.manual_seed(data["pipeline"]["generator"]["torch_manual_seed"])
    out = pipe(**data["pipeline"]["call_kwargs"], **media, generator=generator)
    # Text2Video-Zero returns its frames as `images`, the video pipelines as a batch of `frames`.
    frames = out.frames[0] if hasattr(out, "frames") else out.images
    return (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


@pytest.mark.parametrize(("preset", "mode"), _runs(), ids=[f"{p}-{m}" for p, m in _runs()])
def test_tiny_preset_equals_plain_diffusers_from_its_sidecar(tmp_path: Path, preset: str, mode: str) -> None:
    from PIL import Image

    config = resolve(mode, [preset], [], families.defaults_layer).config
    family = families.get(config.model.family or "")
    if run_note(family, config):
        pytest.skip(f"{family.title} runs more than one plain call here (its run_note); its own tests check it")
    args = [mode]
    media: dict = {}
    size = (config.sampling.width, config.sampling.height)
    if mode == "i2v":
        # At the run's size already, so the pipeline gets the file's own pixels.
        Image.new("RGB", size, (200, 80, 40)).save("first.png")
        args.append("first.png")
        media["image"] = Image.open("first.png").convert("RGB")
        if preset in LAST_IMAGE_PRESETS:
            Image.new("RGB", size, (30, 90, 220)).save("last.png")
            args += ["--last-image", "last.png"]
            media["last_image"] = Image.open("last.png").convert("RGB")
    if family.takes.text:
        args.append("a red fox in snow")
    result = cli(*args, "--preset", preset, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = _png_frames(folder)
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["media_kwargs"].keys() == media.keys()
    theirs = plain_diffusers(data, media)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # Not a vacuous comparison: the frames carry signal, and another seed differs.
    assert ours.std() > 0
    data["seed"] += 1
    assert np.abs(ours.astype(int) - plain_diffusers(data, media).astype(int)).max() > 1
