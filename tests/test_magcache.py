"""MagCache on checkpoints without published ratios: a calibration run measures them into its
sidecar, later runs read them with --mag-ratios; both equal plain diffusers with the same config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, png_frames, printed_sidecar

FOX = ("t2v", "a fox in the snow", "--preset", "tiny-ltx", "--steps", "6")


def test_calibrate_then_reuse_the_ratios_equals_plain_diffusers(tmp_path: Path) -> None:
    calibration = cli(*FOX, "--seed", "2", "--cache", "magcache:calibrate", "--format", "png", "--out", "cal/")
    calibrated = png_frames(calibration)
    # stdout is the output path alone (diffusers prints the ratios; vidgen keeps them instead).
    assert len(calibration.stdout.strip().splitlines()) == 1
    data = printed_sidecar(calibration)
    measured = data["optimizations"]["magcache_calibration"]
    assert measured["num_inference_steps"] == 6 and len(measured["mag_ratios"]) == 6
    assert measured["mag_ratios"][0] == 1.0 and all(0 < r < 10 for r in measured["mag_ratios"])
    # Calibration skips nothing: the frames are the uncached run's.
    plain = png_frames(cli(*FOX, "--seed", "2", "--format", "png", "--out", "plain/"))
    assert np.array_equal(calibrated, plain)

    sidecar_path = Path(calibration.stdout.strip()).with_suffix(".json")
    cached = cli(*FOX, "--seed", "2", "--cache", "magcache", "--mag-ratios", str(sidecar_path), "--format", "png",
                 "--out", "cached/")  # fmt: skip
    ours = png_frames(cached)
    used = printed_sidecar(cached)
    assert used["config"]["optimization"]["mag_ratios"] == measured["mag_ratios"]
    [call] = used["optimizations"]["calls"]
    config = call["kwargs"]["config"]["MagCacheConfig"]
    assert config["mag_ratios"] == measured["mag_ratios"] and config["num_inference_steps"] == 6
    # Plain diffusers with MagCacheConfig(**config) on its transformer, as the sidecar records it.
    assert_reproduces(ours, used)
    # The cache skipped work: the frames differ from the uncached run's, and another seed differs too.
    assert np.abs(ours.astype(int) - plain.astype(int)).max() > 1
    other = png_frames(cli(*FOX, "--seed", "3", "--cache", "magcache", "--mag-ratios", str(sidecar_path), "--format",
                        "png", "--out", "other/"))  # fmt: skip
    assert np.abs(ours.astype(int) - other.astype(int)).max() > 1


@pytest.mark.pipeline
def test_ratios_as_numbers_and_a_threshold(tmp_path: Path) -> None:
    result = cli(*FOX, "--seed", "1", "--cache", "magcache:0.2", "--mag-ratios", "1.0,1.02,0.99,1.0,1.01,1.0",
                 "--format", "png", "--out", "n/")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    config = printed_sidecar(result)["optimizations"]["calls"][0]["kwargs"]["config"]["MagCacheConfig"]
    assert config["threshold"] == 0.2 and config["mag_ratios"] == [1.0, 1.02, 0.99, 1.0, 1.01, 1.0]


@pytest.mark.parametrize(
    ("extra", "code", "needles"),
    [
        (("--cache", "magcache"), 3, ("--cache magcache", "none are published", "--cache magcache:calibrate")),
        (("--mag-ratios", "1,1.1"), 3, ("--mag-ratios", "--cache magcache")),
        (("--cache", "magcache:calibrate", "--mag-ratios", "1,1.1"), 3, ("calibrat",)),
        (("--cache", "magcache", "--mag-ratios", "1,-2"), 3, ("--mag-ratios", "between 0 and 10")),
        (("--cache", "magcache", "--mag-ratios", "missing.json"), 4, ("missing.json",)),
        (("--cache", "magcache", "--mag-ratios", "other.json"), 4, ("no MagCache ratios",)),
        (("--cache", "magcache:nope"), 3, ("magcache:calibrate",)),
    ],
)
def test_bad_magcache_input_is_one_line(tmp_path: Path, extra: tuple, code: int, needles: tuple) -> None:
    Path("other.json").write_text(json.dumps({"optimizations": {}}))
    before = files_under(tmp_path)
    one_line_error(cli(*FOX, *extra), code, *needles)
    assert files_under(tmp_path) == before


def test_two_stage_ltx_refuses_magcache(tmp_path: Path) -> None:
    one_line_error(cli("t2v", "a fox", "--preset", "tiny-ltx-upscale", "--cache", "magcache:calibrate"), 3, "two-stage")
