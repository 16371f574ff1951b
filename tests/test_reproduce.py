"""Every tiny preset, in every mode it runs, equals plain diffusers run from its own sidecar.

The presets are read from the preset folder, so a new tiny preset is tested here without editing
a list. Text, image, video, control and animate runs all go through the one reproducer
(conftest's `plain_diffusers`), which also shows that another seed, another prompt and another
guidance each change the frames. Families whose run is not one plain call (their `run_note`:
long-video extension, Text2Video-Zero's per-frame calls, LTX conditions and two-stage runs) are
checked by their own tests with the same reproducer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, sidecar, sidecar_media

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.kinds import BUILTIN, INPUT_KINDS
from vidgen.config.layers import merged_preset
from vidgen.families.base import run_note
from vidgen.families.wan import LAST_IMAGE_PRESETS

MODES = ("t2v", "i2v", "v2v", "control", "animate")


def _runs() -> list[tuple[str, str]]:
    """(preset, mode) for every tiny preset; a preset without a mode runs in each of its family's."""
    runs = []
    for name, path in available_presets().items():
        data = merged_preset(str(path))
        if not str((data.get("model") or {}).get("id", "")).startswith("tiny:"):
            continue
        family = families.get(data["model"]["family"])
        for mode in [data["mode"]] if data.get("mode") else list(family.modes):
            if mode in MODES:
                runs.append((name, mode))
    return runs


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _frames_folder(folder: Path, count: int, size: tuple[int, int]) -> None:
    """Random frames at the run's size, named so that text order is wrong (f10 before f2)."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"f{index}.png")


@pytest.mark.parametrize(("preset", "mode"), _runs(), ids=[f"{p}-{m}" for p, m in _runs()])
def test_tiny_preset_equals_plain_diffusers_from_its_sidecar(tmp_path: Path, preset: str, mode: str) -> None:
    from PIL import Image

    config = resolve(mode, [preset], [], families.defaults_layer).config
    family = families.get(config.model.family or "")
    if run_note(family, config):
        pytest.skip(f"{family.title} runs more than one plain call here (its run_note); its own tests check it")
    spec = family.modes[mode]
    # Inputs of the family's own that a run cannot do without (a declared kind it requires, or
    # keyframes and other inputs that are not file kinds); an optional kind (MiniMax-H3's
    # references, SANA-WM's camera file) is left out and the plain run is reproduced here.
    own = sorted(
        name
        for name in spec.inputs - {kind.field for kind in BUILTIN}
        if name in spec.requires or name not in INPUT_KINDS
    )
    if own:
        pytest.skip(f"{family.title} needs inputs of its own ({', '.join(own)}); its own tests make them and check it")
    size = (config.sampling.width or 32, config.sampling.height or 32)
    args = [mode]
    if mode == "i2v":
        # At the run's size already, so the pipeline gets the file's own pixels.
        Image.new("RGB", size, (200, 80, 40)).save("first.png")
        args.append("first.png")
        if preset in LAST_IMAGE_PRESETS:
            Image.new("RGB", size, (30, 90, 220)).save("last.png")
            args += ["--last-image", "last.png"]
    elif mode in ("v2v", "control"):
        # 9 frames, or the shortest clip the family takes (Helios continues from 33-frame chunks).
        _frames_folder(tmp_path / "clip", max(9, family.grid.min_frames), size)
        args += ["clip"] if mode == "v2v" else ["--control", "clip"]
    if family.takes.text:
        args.append("a red fox in snow")
    result = cli(*args, "--preset", preset, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert folder.name == f"{mode}-{'a-red-fox-in-snow' if family.takes.text else 'first'}-5"
    ours = _png_frames(folder)
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert ours.shape[0] == data["output"]["frames"]
    # The media are read again from the files the sidecar names, checked against its hashes.
    assert_reproduces(ours, data, sidecar_media(data))
