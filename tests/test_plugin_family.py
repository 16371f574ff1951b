"""A family with a new input kind, from a module outside vidgen, runs with no vidgen file changed.

The module declares an input kind (`--start-frame`, read as an image) and a family whose text-to-
video mode passes it to the pipeline as `image`; VIDGEN_FAMILIES adds it. Everything else (the
config field, the flag and its --help line, the refusal on other families, the reader, the
sidecar record, inspect and replay) comes from the one declaration.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_subprocess, decode, sidecar

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "process"

MODULE = """
from typing import Any, ClassVar

from vidgen.config.kinds import InputKind, register_input
from vidgen.core.errors import ConfigError
from vidgen.families.base import (
    Decoding, Family, Footprint, Grid, Memory, Mode, Takes, prompt_kwargs, sampling_kwargs, settings,
)

register_input(InputKind("start_frame", "--start-frame", "image", "The picture the clip starts from.", "IMAGE"))

_CALL = frozenset({"num_frames", "num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length"})


class Throwaway(Family):
    name = "throwaway"
    title = "Throwaway"
    modes: ClassVar[dict[str, Mode]] = {
        "t2v": Mode(
            "CogVideoXImageToVideoPipeline",
            "tiny:cogvideox-i2v",
            _CALL,
            inputs=frozenset({"start_frame"}),
            media={"start_frame": "image"},
        )
    }
    reference = settings(size=(16, 16), frames=9, steps=2, guidance=6.0, fps=8, max_sequence_length=16)
    takes = Takes(optimizations=frozenset({"offload"}))
    memory = Memory(Footprint(denoiser="transformer", blocks=2, temporal=4, patch=2, width=32))
    grid = Grid(frames=8, size=16)
    decoding = Decoding(latents=None)

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        if not cfg.inputs.get("start_frame"):
            raise ConfigError("Throwaway needs --start-frame IMAGE.")

    def call_kwargs(self, cfg: Any, seed: int, frames: int | None = None) -> dict[str, Any]:
        return {**prompt_kwargs(cfg), **sampling_kwargs(cfg.sampling, _CALL), "output_type": "np"}


FAMILIES = (Throwaway,)
"""


@pytest.fixture
def plugin(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "throwaway_family.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "throwaway.yaml").write_text("model:\n  family: throwaway\n  id: tiny:cogvideox-i2v\n  dtype: fp32\n")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "VIDGEN_FAMILIES": "throwaway_family"}


def _picture(name: str, colour: tuple[int, int, int]) -> str:
    from PIL import Image

    Image.new("RGB", (16, 16), colour).save(name)
    return name


def test_a_family_from_outside_with_its_own_input_kind_runs(plugin: dict[str, str]) -> None:
    start = _picture("start.png", (220, 40, 40))
    help_text = cli_subprocess("t2v", "--help", env=plugin).stdout
    assert "--start-frame" in help_text and "The picture the clip starts from." in help_text

    args = ["t2v", "a fox", "--preset", "throwaway.yaml", "--seed", "3", "--start-frame", start]
    result = cli_subprocess(*args, "--out", "a.mp4", env=plugin)
    assert result.returncode == 0, result.stderr
    data = sidecar(Path("a.json"))
    assert data["config"]["model"]["family"] == "throwaway"
    assert data["config"]["inputs"]["start_frame"] == start
    assert data["sources"]["inputs.start_frame"] == "cli:--start-frame"
    assert data["inputs"]["start_frame"]["prepared"]["size"] == [16, 16]
    assert data["pipeline"]["class"] == "CogVideoXImageToVideoPipeline"
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.start_frame"}
    frames, _ = decode(Path("a.mp4"))
    assert frames.shape[0] == 9

    # The input steers the video: another start frame gives other frames.
    other = _picture("other.png", (20, 200, 40))
    args[-1] = other
    assert cli_subprocess(*args, "--out", "b.mp4", env=plugin).returncode == 0
    assert np.abs(decode(Path("b.mp4"))[0].astype(int) - frames.astype(int)).max() > 1

    # inspect shows the new input, and replay reads it again (the same frames).
    assert "start_frame" in cli_subprocess("inspect", "a.json", env=plugin).stdout
    replayed = cli_subprocess("replay", "a.json", env=plugin)
    assert replayed.returncode == 0, replayed.stderr
    assert np.array_equal(decode(Path(replayed.stdout.strip()))[0], frames)


def test_the_new_input_kind_is_checked_like_the_others(plugin: dict[str, str]) -> None:
    def error(*args: str) -> str:
        result = cli_subprocess(*args, env=plugin)
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr
        return f"{result.returncode} {lines[-1]}"

    # Another family does not take it: refused, naming the family that does.
    refused = error("t2v", "a fox", "--preset", "tiny-cogvideox", "--start-frame", _picture("s.png", (1, 2, 3)))
    assert refused.startswith("3 Error: --start-frame is not used by CogVideoX t2v; it applies to: Throwaway (t2v)")
    # A missing file and a folder: input errors naming the flag.
    missing = error("t2v", "a fox", "--preset", "throwaway.yaml", "--start-frame", "nope.png")
    assert missing.startswith("4 Error: --start-frame nope.png")
    Path("frames").mkdir()
    folder = error("t2v", "a fox", "--preset", "throwaway.yaml", "--start-frame", "frames")
    assert folder.startswith("4 Error: --start-frame frames")
    assert list(Path.cwd().glob("outputs/*")) == []


def test_a_family_module_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_family.py").write_text("raise RuntimeError('no')\n")
    env = {"PYTHONPATH": str(tmp_path), "VIDGEN_FAMILIES": "broken_family"}
    result = cli_subprocess("models", env=env)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "Error: VIDGEN_FAMILIES names broken_family, which could not be added: RuntimeError: no"
    )


@pytest.mark.unit
def test_a_family_module_in_the_package_registers_without_a_list_entry() -> None:
    """A new family is one file: every module of vidgen/families that defines FAMILIES is found and
    registered, whether or not MODULES names it (MODULES only orders `vidgen models`)."""
    from vidgen import families

    folder = Path(families.__file__).parent
    defining = {path.stem for path in folder.glob("*.py") if "\nFAMILIES = " in path.read_text(encoding="utf-8")}
    registered = {
        type(family).__module__.rsplit(".", 1)[1]
        for family in families.FAMILIES.values()
        if type(family).__module__.startswith("vidgen.families.")
    }
    assert defining and defining == registered
    assert families._modules()[: len(families.MODULES)] == list(families.MODULES)
