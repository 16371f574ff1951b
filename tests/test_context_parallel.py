"""`--gpus N`: one video split over N processes with diffusers' context parallelism.

There is no GPU here, so the real check runs the production launcher with two CPU processes
joined over gloo. diffusers 0.42.1 places a context-parallel model on
`rank % torch.accelerator.device_count()`, which divides by zero without an accelerator; the
test sets VIDGEN_TEST_CPU_CONTEXT_PARALLEL=1, which lets --gpus run on the CPU and counts the
CPU as one device while diffusers builds its mesh (vidgen/parallel.py `_cpu_device_count`).
Without that variable, --gpus on a CPU is refused (tested below).
"""

from __future__ import annotations

from pathlib import Path

from conftest import cli, cli_subprocess, decode, one_line_error, sidecar

CPU_CP = {"VIDGEN_TEST_CPU_CONTEXT_PARALLEL": "1"}
# 32x32 so the sequence (3 latent frames x 2x2 patches) divides by the degree.
WAN = ["--preset", "tiny-wan", "--height", "32", "--width", "32"]


def test_two_gloo_processes_make_the_frames_of_one(tmp_path: Path) -> None:
    split = cli_subprocess("t2v", "a red fox", *WAN, "--seed", "3", "--gpus", "2", "--out", "cp.mp4", env=CPU_CP)
    assert split.returncode == 0, split.stderr
    assert split.stdout.split() == ["cp.mp4"]  # rank 0 alone reports and writes
    assert sorted(p.name for p in tmp_path.glob("cp*")) == ["cp.json", "cp.mp4"]
    one = cli("t2v", "a red fox", *WAN, "--seed", "3", "--out", "one.mp4")
    other = cli("t2v", "a red fox", *WAN, "--seed", "4", "--out", "other.mp4")
    assert one.exit_code == 0 and other.exit_code == 0, (one.stderr, other.stderr)
    cp, single, different = (decode(tmp_path / name)[0].astype(int) for name in ("cp.mp4", "one.mp4", "other.mp4"))
    assert abs(cp - single).max() <= 1
    assert abs(different - single).max() > 10  # another seed is another video
    record = sidecar(tmp_path / "cp.json")["optimizations"]
    assert record["parallel"] == {
        "world_size": 2,
        "context_parallel": "ulysses",
        "ulysses_degree": 2,
        "ring_degree": 1,
        "attention_backend": "native",
        "denoisers": ["transformer"],
    }
    assert record["calls"][-1]["method"] == "transformer.enable_parallelism"


def test_an_error_on_the_ranks_is_one_line_and_one_exit_code(tmp_path: Path) -> None:
    # Out of memory at the first step, injected (there is no GPU to exhaust): both ranks stop.
    result = cli_subprocess(
        "t2v", "a red fox", *WAN, "--gpus", "2", "--out", "x.mp4", env={**CPU_CP, "VIDGEN_TEST_OOM": "denoise"}
    )
    assert result.returncode == 6, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "out of memory" in errors[0] and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("x*"))


def _children(parent: int) -> dict[int, dict[str, str]]:
    """pid -> environment of the processes whose parent is `parent` (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            raw = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        pairs = (item.decode(errors="replace").partition("=") for item in raw if b"=" in item)
        found[int(entry.name)] = {key: value for key, _, value in pairs}
    return found


def test_one_rank_killed_mid_run_stops_the_other_with_one_line(tmp_path: Path) -> None:
    """SIGKILL of rank 1 while both ranks run: rank 0 would wait forever in a collective; the
    launcher stops it, prints one line naming the rank, and leaves nothing under the final name."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["t2v", "a red fox", *WAN, "--gpus", "2", "--steps", "400", "--out", "x.mp4"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "vidgen", *args],
        env={**os.environ, **CPU_CP},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ranks: dict[int, dict[str, str]] = {}
        while time.monotonic() < deadline and len(ranks) < 2:
            ranks = _children(launcher.pid)
            time.sleep(0.2)
        assert len(ranks) == 2, "the launcher did not start two ranks"
        (rank1,) = [pid for pid, env in ranks.items() if env.get("RANK") == "1"]
        time.sleep(8)  # loading, then into the 400 steps
        assert launcher.poll() is None, launcher.communicate()
        os.kill(rank1, signal.SIGKILL)
        out, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode not in (0, None)
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "rank 1 of 2" in errors[0], err
    assert "Traceback" not in err and out == ""
    assert not _children(launcher.pid)  # no rank left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("x")]


def test_families_without_a_context_parallel_plan_refuse_gpus() -> None:
    result = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--gpus", "2")
    one_line_error(result, 3, "--gpus 2", "CogVideoX", "families that take --gpus", "Wan 2.1 (t2v, i2v)")


def test_ring_needs_a_backend_that_returns_the_log_sum_exp() -> None:
    result = cli("t2v", "a fox", *WAN, "--gpus", "2", "--context-parallel", "ring")
    one_line_error(result, 3, "log-sum-exp", "native", "flash", "_native_cudnn", "sage", "ulysses")


def test_unified_needs_both_degrees_and_compile_is_refused_with_gpus() -> None:
    result = cli("t2v", "a fox", *WAN, "--gpus", "4", "--context-parallel", "unified")
    one_line_error(result, 3, "--ring-degree 2 (ulysses 2)")
    result = cli("t2v", "a fox", *WAN, "--gpus", "2", "--compile")
    one_line_error(result, 3, "--compile", "--gpus")


def test_gpus_on_a_cpu_is_refused() -> None:
    result = cli("t2v", "a fox", *WAN, "--gpus", "2")
    one_line_error(result, 3, "CUDA", "drop --gpus")


def test_memory_auto_divides_the_activations_by_the_gpus() -> None:
    import json

    def denoise(*extra: str) -> int:
        # --vram plans for a GPU machine without one here (a dry run reads no weights).
        args = ["t2v", "a fox", "--preset", "wan2.1-t2v-14b", "--memory", "auto", "--vram", "80"]
        result = cli(*args, *extra, "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["memory"]["phases_bytes"]["denoise"]

    assert denoise("--gpus", "4") * 4 == denoise()
