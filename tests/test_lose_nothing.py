"""Lose nothing (issue 19): signals, leftovers of killed runs, second writers, full disks.

Real processes and real signals throughout: what is tested is what a Slurm preemption or a
second shell does to a running vidgen.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, one_line_error, sidecar

from vidgen.io import media

TINY = ["t2v", "a cat", "--preset", "tiny-cogvideox", "--seed", "1"]


def _vidgen(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc: the test needs no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (in a container, PID 1 may never reap an orphan that died)."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


@pytest.mark.parametrize("guarded", [True, False])
def test_a_child_dies_with_a_sigkilled_vidgen_because_of_pdeathsig(tmp_path: Path, guarded: bool) -> None:
    # ffmpeg also stops on its own when its stdin closes, so the SIGKILL test above cannot tell
    # whether PR_SET_PDEATHSIG works. `sleep` never reads stdin: only the death signal ends it.
    hook = "preexec_fn=media._die_with_parent" if guarded else "preexec_fn=None"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time\nfrom vidgen.io import media\n"
            f"child = subprocess.Popen(['sleep', '120'], {hook})\nprint(child.pid, flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _running(child) is not guarded
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_encode_stops_vidgen_and_ffmpeg_and_leaves_nothing(tmp_path: Path, signum: int) -> None:
    # VP9 at 128x128 takes long enough (about 3 s) to encode that the signal lands while ffmpeg runs.
    args = [*TINY, "--steps", "1", "--frames", "49", "--width", "128", "--height", "128", "--format", "webm"]
    process = _vidgen(*args, "--out", "out/clip.webm")
    ffmpeg: list[int] = []
    deadline = time.time() + 180
    while time.time() < deadline and not ffmpeg and process.poll() is None:
        ffmpeg = _children(process.pid)
        time.sleep(0.005)
    assert ffmpeg, "the encode must start before the signal"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == f"Error: stopped by {signal.Signals(signum).name}; no partial file was left under a final name."
    assert "Traceback" not in stderr
    time.sleep(0.2)
    assert not any(_running(pid) for pid in ffmpeg), "ffmpeg outlived vidgen"
    assert list((tmp_path / "out").iterdir()) == []


def test_sigterm_during_the_denoise_exits_143_with_one_line(tmp_path: Path) -> None:
    process = _vidgen(*TINY, "--steps", "400", "--out", "clip.mp4")
    seen = []
    while process.poll() is None:  # log lines: the denoise starts right after "loading ..."
        seen.append(process.stderr.readline())
        if "loading" in seen[-1]:
            break
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, "".join(seen) + stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: stopped by SIGTERM")
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "user-presets") == []


def test_the_next_run_sweeps_leftovers_of_dead_processes_only(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID that no longer runs
    host = media.owner_tag().split(".")[0]
    out = tmp_path / "out"
    out.mkdir()
    dead_part = out / f".clip.mp4.{host}.{dead.pid}.abc123.part"
    live_part = out / f".other.mp4.{host}.{os.getpid()}.def456.part"
    foreign_part = out / f".third.mp4.elsewhere.{dead.pid}.ghi789.part"
    dead_old = out / f".frames.old-{host}.{dead.pid}"
    lost_old = out / f".lost.old-{host}.{dead.pid}"
    for path in (dead_part, live_part, foreign_part):
        path.write_bytes(b"half a video")
    for folder in (dead_old, lost_old):
        folder.mkdir()
        (folder / "frame_00000.png").write_bytes(b"png")
    (out / "frames").mkdir()  # dead_old's output made it into place; lost_old's did not
    result = cli(*TINY, "--out", str(out / "new.mp4"))
    assert result.exit_code == 0, result.stderr
    assert not dead_part.exists() and not dead_old.exists()
    assert live_part.exists(), "a live process's temporary file must stay"
    assert foreign_part.exists(), "another host's files on a shared disk are not ours to judge"
    assert (out / "lost" / "frame_00000.png").exists(), "an old output whose replacement never came is put back"


def test_two_writers_racing_on_one_out_exactly_one_wins(tmp_path: Path) -> None:
    first, second = (_vidgen(*TINY, "--steps", "3", "--out", "same.mp4") for _ in range(2))
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 7], results
    loser = next(err for code, err in results if code == 7)
    assert "same.mp4 already exists" in loser.strip().splitlines()[-1]
    assert sidecar(tmp_path / "same.json")["output"]["sha256"] == media.sha256(tmp_path / "same.mp4")
    assert _hidden(tmp_path) == []


def test_publishing_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    # The exists-check in the plan passed; another writer's file then took the name.
    import numpy as np

    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"the other writer's video")
    with pytest.raises(media.WriteError, match="already exists"):
        media.write(frames, target, fmt="mp4", fps=8, codec="h264", crf=18, metadata=None, overwrite=False)
    assert target.read_bytes() == b"the other writer's video"
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame_00000.png").write_bytes(b"theirs")
    with pytest.raises(media.WriteError, match="already exists"):
        media.write(frames, folder, fmt="png", fps=8, codec=None, crf=None, metadata=None, overwrite=False)
    assert (folder / "frame_00000.png").read_bytes() == b"theirs" and _hidden(tmp_path) == []


def test_replacing_a_frames_folder_swaps_it_whole(tmp_path: Path) -> None:
    import numpy as np

    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame_00000.png").write_bytes(b"old")
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    media.write(frames, folder, fmt="png", fps=8, codec=None, crf=None, metadata=None, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert (folder / "frame_00000.png").read_bytes() != b"old" and _hidden(tmp_path) == []


def test_a_video_left_without_its_sidecar_is_replaced_by_a_rerun(tmp_path: Path) -> None:
    assert cli(*TINY, "--out", "clip.mp4").exit_code == 0
    # As if killed between the video and its sidecar: the video says a dead vidgen wrote it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = sidecar(tmp_path / "clip.json")
    (tmp_path / "clip.json").unlink()
    (tmp_path / "clip.mp4").unlink()
    from vidgen.io import sidecar as sidecars

    record["writer"]["pid"] = dead.pid
    import numpy as np

    frames = np.zeros((9, 16, 16, 3), dtype=np.uint8)
    media.write(
        frames, tmp_path / "clip.mp4", fmt="mp4", fps=8, codec="h264", crf=18,
        metadata=sidecars.compact(record), overwrite=False,
    )  # fmt: skip
    rerun = cli(*TINY, "--out", "clip.mp4")
    assert rerun.exit_code == 0, rerun.stderr
    assert sidecar(tmp_path / "clip.json")["output"]["sha256"] == media.sha256(tmp_path / "clip.mp4")
    # A video whose writer is alive (or that vidgen did not write) still needs --overwrite.
    (tmp_path / "clip.json").unlink()
    one_line_error(cli(*TINY, "--out", "clip.mp4"), 7, "already exists")


def test_a_png_folder_left_without_its_sidecar_is_replaced_by_a_rerun(tmp_path: Path) -> None:
    png = [*TINY, "--format", "png", "--out", "frames.png"]
    assert cli(*png).exit_code == 0
    folder, side = tmp_path / "frames", tmp_path / "frames.json"
    # The first frame carries the provenance, as a video's container does.
    assert media.embedded_metadata(folder)["config"]["inputs"]["prompt"] == "a cat"
    record = sidecar(side)
    side.unlink()
    # Alive writer (this test process): the folder is not an orphan and still needs --overwrite.
    one_line_error(cli(*png), 7, "already exists")
    # As if its writer was killed between the frames and the sidecar.
    dead = subprocess.Popen(["true"])
    dead.wait()
    record["writer"]["pid"] = dead.pid
    import numpy as np

    from vidgen.io import sidecar as sidecars

    frames = np.zeros((9, 16, 16, 3), dtype=np.uint8)
    media.write(
        frames, folder, fmt="png", fps=8, codec=None, crf=None,
        metadata=sidecars.compact(record), overwrite=True,
    )  # fmt: skip
    rerun = cli(*png)
    assert rerun.exit_code == 0, rerun.stderr
    assert sidecar(side)["output"]["sha256"] == media.sha256(folder)
    assert len(list(folder.glob("frame_*.png"))) == 9 and _hidden(tmp_path) == []
    # A folder vidgen did not write (no metadata in its first frame) is never replaced.
    side.unlink()
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "frame_00000.png").write_bytes((folder / "frame_00001.png").read_bytes())
    one_line_error(cli(*TINY, "--format", "png", "--out", "theirs.png"), 7, "already exists")


def test_a_100_kb_prompt_on_the_command_line_writes_its_video(tmp_path: Path) -> None:
    prompt = ("a red fox running through fresh snow " * 2800)[:100_000]
    result = subprocess.run(
        [sys.executable, "-m", "vidgen", "t2v", prompt, "--preset", "tiny-cogvideox", "--out", "long.mp4"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert decode(tmp_path / "long.mp4")[0].shape[0] == 9
    assert media.embedded_metadata(tmp_path / "long.mp4")["config"]["inputs"]["prompt"] == prompt


@pytest.mark.pipeline
def test_a_140_kb_prompt_from_a_prompts_file_writes_its_video(tmp_path: Path) -> None:
    prompt = ("a blue whale under a frozen sea " * 5000)[:99_999]
    # 140 KB of UTF-8 in under 100,000 characters: the limit counts characters.
    prompt = ("é" * 40_000 + prompt)[:99_999]
    assert len(prompt.encode()) > 139_000
    (tmp_path / "prompts.txt").write_text(prompt + "\n", encoding="utf-8")
    result = cli("t2v", "--prompts-file", "prompts.txt", "--preset", "tiny-cogvideox", "--out", "runs/")
    assert result.exit_code == 0, result.stderr
    videos = list((tmp_path / "runs").glob("*.mp4"))
    assert len(videos) == 1 and decode(videos[0])[0].shape[0] == 9


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_a_full_disk_says_so_and_a_rerun_completes(tmp_path: Path) -> None:
    # `ulimit -f` stands in for a full disk: no tmpfs can be mounted without root.
    args = [*TINY, "--frames", "17", "--width", "64", "--height", "64", "--out", "clip.mp4", "--save-latents"]
    assert cli(*TINY, "--out", "warm/").exit_code == 0  # the tiny model's cache is built without the limit
    limited = subprocess.run(
        [sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, preexec_fn=_limit_file_size(2048)
    )
    assert limited.returncode == 7, limited.stderr
    line = limited.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "clip" in line and ("no space left" in line or "file size limit" in line)
    assert not (tmp_path / "clip.mp4").exists() and _hidden(tmp_path) == []
    rerun = subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((tmp_path / "clip.json").read_text())["output"]["frames"] == 17


def test_an_encode_that_fails_keeps_the_latents_and_decode_finishes_the_video(tmp_path: Path) -> None:
    # `ulimit -f` between the latents' size (about 11 KB) and the video's (about 25 KB): the
    # denoising finishes, the encode fails, and the generation must not be lost.
    args = [*TINY, "--frames", "17", "--width", "64", "--height", "64"]
    assert cli(*args, "--out", "whole.mp4").exit_code == 0  # the reference, and the tiny model's cache
    limited = subprocess.run(
        [sys.executable, "-m", "vidgen", *args, "--out", "clip.mp4"],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(16_000),
    )
    assert limited.returncode == 7, limited.stderr
    line = limited.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "vidgen decode clip.latents.safetensors" in line, line
    assert not (tmp_path / "clip.mp4").exists() and not (tmp_path / "clip.json").exists()
    assert _hidden(tmp_path) == []
    finished = cli("decode", "clip.latents.safetensors")
    assert finished.exit_code == 0, finished.stderr
    whole, clip = decode(tmp_path / "whole.mp4")[0], decode(tmp_path / "clip.mp4")[0]
    assert clip.shape == whole.shape and np.abs(clip.astype(int) - whole.astype(int)).max() <= 1
    other = cli(*TINY, "--seed", "2", "--frames", "17", "--width", "64", "--height", "64", "--out", "other.mp4")
    assert other.exit_code == 0 and np.abs(decode(tmp_path / "other.mp4")[0].astype(int) - whole.astype(int)).max() > 8


def test_a_report_that_fails_late_keeps_exit_8_and_says_so(tmp_path: Path) -> None:
    # The report's folder turns into a file while the batch runs (as a disk unmounted or filled
    # under it would): the final report write fails, yet a batch with a failed job exits 8, not 7.
    jobs = [{"prompt": f"a cat {n}", "preset": "tiny-cogvideox", "id": f"cat{n}"} for n in range(4)]
    jobs.append({"mode": "i2v", "image": "missing.png", "preset": "tiny-svd", "id": "broken"})
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    (tmp_path / "rep").mkdir()
    report = tmp_path / "rep" / "report.jsonl"
    batch = _vidgen("batch", "jobs.jsonl", "--out", "runs", "--report", "rep/report.jsonl", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not (report.is_file() and report.read_text().strip()) and batch.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert batch.poll() is None, "the batch ended before its first report row could be seen"
    import shutil

    shutil.rmtree(tmp_path / "rep")
    (tmp_path / "rep").write_text("not a folder any more")
    _, stderr = batch.communicate(timeout=600)
    assert batch.returncode == 8, stderr
    assert "warning: cannot write rep: not a folder; choose another --report." in stderr, stderr
    assert "Traceback" not in stderr
    assert "4 done, 1 failed" in stderr
    assert len(list((tmp_path / "runs").glob("cat*.mp4"))) == 4


def test_no_space_message_names_the_place() -> None:
    import errno

    error = media.write_error(Path("/data/clip.mp4"), OSError(errno.ENOSPC, "No space left on device"))
    assert str(error) == "no space left on device at /data/clip.mp4; free some space or choose another --out."


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--out", "x-{seed.mp4"], 3, "--out x-{seed.mp4"),
        (["--out", "clip.avi"], 3, "not avi"),
        (["--out", ""], 3, "--out is empty"),
    ],
)
def test_bad_out_names_get_config_errors(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    one_line_error(cli(*TINY, *args), code, needle)
    assert not any(p.suffix in (".mp4", ".avi", ".json") for p in tmp_path.rglob("*"))


def test_a_whitespace_prompt_is_no_prompt() -> None:
    one_line_error(cli("t2v", "   ", "--preset", "tiny-cogvideox"), 3, "needs a prompt")


def test_a_cache_that_is_a_file_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path / "cache"))
    one_line_error(cli(*TINY), 7, "cannot use", "Not a directory")


@pytest.mark.pipeline
def test_latents_files_get_the_same_mode_as_videos(tmp_path: Path) -> None:
    assert cli(*TINY, "--out", "clip.mp4", "--save-latents").exit_code == 0
    video, saved = (tmp_path / "clip.mp4").stat().st_mode, (tmp_path / "clip.latents.safetensors").stat().st_mode
    assert saved & 0o777 == video & 0o777


@pytest.mark.pipeline
def test_clip_mp4_and_clip_webm_do_not_read_each_others_sidecar(tmp_path: Path) -> None:
    from vidgen.io import sidecar as sidecars

    assert cli(*TINY, "--out", "clip.mp4").exit_code == 0
    assert cli(*TINY, "--out", "clip.webm", "--steps", "3", "--overwrite").exit_code == 0  # clip.json is now webm's
    mp4, webm = sidecars.read(tmp_path / "clip.mp4"), sidecars.read(tmp_path / "clip.webm")
    assert webm["config"]["sampling"]["num_inference_steps"] == 3
    # The mp4's record comes from its own container, not from the webm's sidecar beside it.
    assert mp4["config"]["output"]["path"] == "clip.mp4" and mp4["config"]["sampling"]["num_inference_steps"] != 3


def test_an_empty_yaml_manifest_has_no_jobs(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("")
    one_line_error(cli("batch", "jobs.yaml"), 3, "has no jobs")


def test_a_set_value_nested_thousands_deep_is_a_config_error() -> None:
    one_line_error(cli(*TINY, "--set", "inputs.prompt=" + "[" * 3000 + "]" * 3000), 3, "nested too deeply")


def test_after_a_sigkill_no_ffmpeg_lingers_and_the_next_run_sweeps_its_part(tmp_path: Path) -> None:
    # Honest limit: with this small clip ffmpeg also stops soon on its own once its stdin closes,
    # so this does not single out the parent-death signal (a by-hand try with a longer encode did
    # not either): it shows only that nothing lingers and nothing is left.
    args = [*TINY, "--steps", "1", "--frames", "49", "--width", "128", "--height", "128", "--format", "webm"]
    process = _vidgen(*args, "--out", "clip.webm")
    ffmpeg: list[int] = []
    deadline = time.time() + 180
    while time.time() < deadline and not ffmpeg and process.poll() is None:
        ffmpeg = _children(process.pid)
        time.sleep(0.005)
    assert ffmpeg, "the encode must start before the kill"
    process.send_signal(signal.SIGKILL)  # no handler runs
    process.wait()
    time.sleep(0.1)
    assert not any(_running(pid) for pid in ffmpeg), "ffmpeg outlived vidgen"
    # Its .part is swept by the next run in the folder.
    assert cli(*TINY, "--out", "other.mp4").exit_code == 0
    assert _hidden(tmp_path) == []
