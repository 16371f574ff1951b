"""Every bad input ends in one line on stderr, the documented exit code, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import cli, cli_subprocess, files_under, one_line_error

from vidgen.core.errors import ExitCode, WriteError
from vidgen.io import media

TINY = ["t2v", "a cat", "--preset", "tiny-cogvideox", "--seed", "1"]


def test_unknown_preset(tmp_path: Path) -> None:
    one_line_error(cli("t2v", "x", "--preset", "tiny-cogvidex"), 3, "unknown preset", "tiny-cogvideox")
    assert files_under(tmp_path) == []


def test_misspelled_key_in_a_preset_names_key_and_file(tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("extends: tiny-cogvideox\nsampling:\n  num_frame: 9\n")
    line = one_line_error(cli("t2v", "x", "--preset", str(preset)), 3)
    assert line == f"Error: sampling.num_frame: unknown key (from {preset})"
    assert files_under(tmp_path) == [preset]


def test_frames_off_the_cogvideox_grid_names_nearest_values(tmp_path: Path) -> None:
    one_line_error(cli(*TINY, "--frames", "10"), 3, "--frames 10", "8k+1", "9 or 17")
    assert files_under(tmp_path) == []


def test_size_off_the_grid() -> None:
    one_line_error(cli(*TINY, "--width", "20"), 3, "--width 20", "16 or 32")


def test_unknown_set_key() -> None:
    line = one_line_error(cli(*TINY, "--set", "sampling.nope=1"), 3)
    assert line == "Error: sampling.nope: unknown key (from --set)"


def test_bad_value_names_the_flag() -> None:
    one_line_error(cli(*TINY, "--steps", "0"), 3, "sampling.num_inference_steps", "(from --steps)")


def test_field_the_family_does_not_take_names_the_ones_that_do() -> None:
    modelscope = ["t2v", "a cat", "--preset", "tiny-modelscope"]
    one_line_error(cli(*modelscope, "--set", "sampling.use_dynamic_cfg=true"), 3, "use_dynamic_cfg", "CogVideoX")
    one_line_error(cli(*TINY, "--forward-chunking"), 3, "--forward-chunking", "ModelScope T2V")


def test_offload_needs_cuda() -> None:
    one_line_error(cli(*TINY, "--offload", "model", "--device", "cpu"), 3, "--offload model", "CUDA")


def test_preset_for_another_mode_is_refused(tmp_path: Path) -> None:
    preset = tmp_path / "i2v.yaml"
    preset.write_text("mode: i2v\nmodel: {family: cogvideox}\n")
    one_line_error(cli("t2v", "x", "--preset", str(preset)), 3, "vidgen i2v")


@pytest.mark.pipeline
def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"precious")
    one_line_error(cli(*TINY, "--out", "a.mp4"), 7, "a.mp4 already exists", "--overwrite")
    assert (tmp_path / "a.mp4").read_bytes() == b"precious"
    assert not (tmp_path / "a.json").exists()
    assert cli(*TINY, "--out", "a.mp4", "--overwrite").exit_code == 0
    assert (tmp_path / "a.mp4").read_bytes() != b"precious"


def test_read_only_output_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    # root ignores directory permissions; drop the capability that lets it, so the folder is
    # really read-only for the vidgen process (needs util-linux's setpriv, as on Debian).
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    result = cli_subprocess(*TINY, "--out", "locked/a.mp4", "--quiet", prefix=prefix)
    assert result.returncode == 7, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "cannot write to" in result.stderr and "locked" in result.stderr
    assert list(folder.iterdir()) == []


def test_hub_model_not_cached_while_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = cli_subprocess(
        "t2v",
        "a cat",
        "--seed",
        "1",
        "--frames",
        "9",
        "--json",
        "--quiet",
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "THUDM/CogVideoX-5b is not in the Hugging Face cache" in result.stderr
    assert "--preset tiny-cogvideox" in result.stderr
    assert json.loads(result.stdout) == {"outputs": [], "exit_code": 5, "error": result.stderr.strip()[7:]}
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("offline", ["1", "0"])
def test_an_uncached_component_offline_fails_at_once_in_one_line(tmp_path: Path, offline: str) -> None:
    # The motion adapter, not the base model, is what is missing. HF_ENDPOINT points at a closed
    # local port, so "the Hub cannot be reached" holds on any machine; before, huggingface_hub
    # retried each file for about 30 s and printed a warning per retry.
    result = cli_subprocess(
        "animate",
        "a cat",
        "--preset",
        "tiny-animatediff",
        "--set",
        "model.motion_adapter=guoyww/animatediff-motion-adapter-v1-5-2",
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": offline, "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert result.returncode == 5, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("loading ")]
    assert lines == [
        "Error: guoyww/animatediff-motion-adapter-v1-5-2 is not in the Hugging Face cache and the Hub cannot be "
        "reached; connect to the network to download it, or try --preset tiny-animatediff, which needs no download."
    ], result.stderr
    assert not (tmp_path / "outputs").exists()


def test_missing_model_folder() -> None:
    one_line_error(cli(*TINY, "--model", "./no-such-model"), 5, "./no-such-model")


def test_usage_error_is_exit_2() -> None:
    assert cli("t2v", "--frames", "many").exit_code == ExitCode.USAGE


def test_interrupted_encode_leaves_no_file(tmp_path: Path) -> None:
    import numpy as np

    # Ctrl-C lands while the real ffmpeg runs and frames are being fed to it: raised from the
    # frame callback, the one instant a test can choose.
    def interrupted(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    frames = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(KeyboardInterrupt):
        media.write(
            frames, tmp_path / "v.mp4", fmt="mp4", fps=8, codec="h264", crf=18, metadata=None, overwrite=False,
            on_frame=interrupted,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    # An encoder this ffmpeg lacks makes the real ffmpeg fail, as a broken build would.
    monkeypatch.setitem(media.CODECS["mp4"], "nope", ("libnope", 18, 51))
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(WriteError, match="ffmpeg could not write"):
        media.write(frames, tmp_path / "v.mp4", fmt="mp4", fps=8, codec="nope", crf=18, metadata=None, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_closed_stdout_pipe_is_quiet() -> None:
    import subprocess
    import sys

    # `vidgen doctor | head -0`: the reader is gone before doctor (which imports torch first,
    # taking a second or more) writes its first line.
    producer = subprocess.Popen(
        [sys.executable, "-m", "vidgen", "doctor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    producer.stdout.close()
    stderr = producer.stderr.read().decode()
    assert producer.wait() == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("i2v", "bad.png", "x", "--preset", "tiny-ltx"), "IMAGE bad.png is not an image"),
        (("i2v", "nope.png", "x", "--preset", "tiny-ltx"), "IMAGE nope.png does not exist"),
        (("i2v", "ok.png", "x", "--preset", "tiny-ltx", "--keyframe", "8:bad.png"), "--keyframe bad.png is not an"),
        (
            ("t2v", "x", "--preset", "tiny-ltx", "--condition-video", "ok.png"),
            "--condition-video ok.png is not a video",
        ),
        (("v2v", "nope.mp4", "x", "--preset", "tiny-wan-v2v"), "VIDEO nope.mp4 does not exist"),
        (("control", "x", "--preset", "tiny-wan-vace", "--ref", "nope.png"), "--ref nope.png does not exist"),
        (("control", "x", "--preset", "tiny-wan-vace", "--control", "ok.png"), "--control ok.png is not a video"),
        (("control", "x", "--preset", "tiny-wan-vace", "--control", "clip", "--mask", "bad.png"), "--mask bad.png"),
        (("i2v", "ok.png", "x", "--preset", "tiny-wan-flf2v", "--last-image", "bad.png"), "--last-image bad.png"),
    ],
)
def test_input_errors_name_the_flag_that_gave_the_file(tmp_path: Path, args: tuple, named: str) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32)).save("ok.png")
    Path("bad.png").write_text("not an image")
    Path("clip").mkdir()
    for index in range(9):
        Image.new("RGB", (32, 32)).save(f"clip/{index:03d}.png")
    before = files_under(tmp_path)
    one_line_error(cli(*args), 4, named)
    assert files_under(tmp_path) == before


@pytest.mark.unit
def test_a_clip_of_any_length_still_needs_the_shortest() -> None:
    from vidgen.families.base import Grid

    # Helios and Cosmos continue from clips of any length from a whole chunk on; SkyReels DF and
    # LTX-2 from a single frame.
    chunked = Grid(frames=4, size=16, shortest=33, any_clip=True)
    assert [chunked.usable(n) for n in (1, 32, 33, 40)] == [0, 0, 33, 40] and chunked.min_frames == 33
    single = Grid(frames=8, size=32, shortest=1, any_clip=True)
    assert [single.usable(n) for n in (1, 2, 10)] == [1, 2, 10] and single.min_frames == 1
