"""Hostile files (issue 17): sidecars, embedded metadata, latents files, presets and manifests
are data, never permission, and no small file can make vidgen write elsewhere, unpickle code,
fetch URLs, read forever or grow without bound.

Refusals run the real CLI in a subprocess under resource limits (see `hostile`): each must end
within 10 s, in one line on stderr, with the documented exit code, and stay under 1 GB.
"""

from __future__ import annotations

import http.server
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, files_under, one_line_error, sidecar
from PIL import Image

from vidgen.io import media

GIB = 1 << 30
# The address-space cap of every hostile run. RLIMIT_AS (virtual memory) rather than RSS,
# which Linux does not enforce: measured here, vidgen refusing a file peaks at 40 MB RSS without
# torch and a whole tiny run (torch imported, model loaded) fits in 1 GiB of address space, so
# the cap costs honest runs nothing, while the alias bombs, /dev/zero reads and million-job
# matrices it guards against grew to 1.6-6 GB before issue 17. Over the cap an allocation fails
# (MemoryError), which would show as a wrong exit code, not as a machine swapped to a halt.
MEMORY_CAP = GIB
SECONDS = 10


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int | None  # bytes, VmHWM of the vidgen process itself; None if it never exited normally


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


# Runs vidgen as `python -m vidgen` does and, at exit, writes the process's own VmHWM (peak RSS
# of its address space since exec) to the file named in argv[1]. Not wait4's ru_maxrss: Linux
# carries a forked child's pre-exec high-water mark, the pytest parent's RSS (over 1 GB late in
# the suite, with many tiny models loaded), across exec into the child's rusage, which made this
# check fail in CI for a run that never came near 1 GB.
_RUN_AND_REPORT = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def _hwm():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(kb)
atexit.register(_hwm)
sys.argv[0] = "vidgen"
runpy.run_module("vidgen", run_name="__main__", alter_sys=True)
"""


def hostile(*args: str, timeout: float = SECONDS, stdin: object = subprocess.DEVNULL) -> Ran:
    """`python -m vidgen ARGS` under MEMORY_CAP, killed after `timeout` seconds, with its own
    peak RSS (see _RUN_AND_REPORT)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "vmhwm"
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_AND_REPORT, str(report), *args],
            stdin=stdin,
            stdout=out,
            stderr=err,
            preexec_fn=_cap_memory,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        peak = int(report.read_text()) * 1024 if report.exists() and report.read_text() else None
        return Ran(proc.returncode, out.read().decode(), err.read().decode(), seconds, peak)


def refused(ran: Ran, code: int, *needles: str) -> str:
    """The run ended in time, within memory, with `code` and one `Error:` line holding `needles`."""
    assert ran.seconds < SECONDS, f"took {ran.seconds:.1f} s: {ran.stderr[-500:]}"
    assert ran.code == code, ran.stderr[-2000:]
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), ran.stderr[-2000:]
    assert ran.peak_rss is not None and ran.peak_rss < GIB, ran.peak_rss
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def dry_config(*args: str) -> dict:
    """The full resolved config of a command, as a sidecar records it (nothing loads)."""
    result = cli(*args, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["config"]


def recording(config: dict, seed: int = 1, **blocks: object) -> dict:
    """A minimal sidecar around `config`."""
    return {
        "vidgen_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00+00:00",
        "config": config,
        "seed": seed,
        **blocks,
    }


def video_with_metadata(path: Path, data: dict) -> None:
    """An mp4 carrying `data` as vidgen's embedded metadata, as a bare shared video would."""
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    media.write(frames, path, fmt="mp4", fps=8, codec="h264", crf=18, metadata=json.dumps(data), overwrite=True)


def new_files(before: list[Path], root: Path) -> list[Path]:
    return [path for path in files_under(root) if path not in before]


# -- where vidgen writes ----------------------------------------------------------------------


@pytest.mark.pipeline
def test_replay_writes_beside_the_replayed_file_never_where_the_file_says(tmp_path: Path) -> None:
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    victim.mkdir()
    made = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "shared/clip.mp4")
    assert made.exit_code == 0, made.stderr
    data = sidecar(shared / "clip.json")
    outside = tmp_path.parent / f"{tmp_path.name}-evil.mp4"  # ../NAME-evil.mp4: outside the test folder
    for target in (str(victim / "evil.mp4"), f"../{outside.name}", str(victim / "new" / "folder" / "x.mp4")):
        data["output"]["path"] = data["config"]["output"]["path"] = target
        (shared / "clip.json").write_text(json.dumps(data))
        before = files_under(tmp_path)
        result = cli("replay", "shared/clip.json", "--quiet")
        assert result.exit_code == 0, result.stderr
        written = new_files(before, tmp_path)
        assert written and all(path.parent == shared for path in written), written
    assert sorted(p.name for p in shared.iterdir()) == [
        "clip-replay.json",
        "clip-replay.mp4",
        "clip-replay2.json",
        "clip-replay2.mp4",
        "clip-replay3.json",
        "clip-replay3.mp4",
        "clip.json",
        "clip.mp4",
    ]
    assert list(victim.rglob("*")) == [] and not outside.exists()
    # A bare video's embedded config is no different; --out typed now is the only other place.
    (shared / "clip.json").unlink()
    video_with_metadata(shared / "bare.mp4", data)
    before = files_under(tmp_path)
    result = cli("replay", "shared/bare.mp4", "--out", "chosen/", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert {path.parent for path in new_files(before, tmp_path)} == {tmp_path / "chosen"}
    assert list(victim.rglob("*")) == [] and not outside.exists()


def _rewrite_latents(source: Path, target: Path, change: dict) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        tensor = handle.get_tensor("latents")
        info = json.loads(handle.metadata()["vidgen"])
    info.update(change.pop("info", {}))
    info["config"]["model"].update(change)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": tensor}, str(target), metadata={"vidgen": json.dumps(info)})


def test_decode_writes_beside_the_latents_and_takes_no_permission_from_them(tmp_path: Path) -> None:
    made = cli("t2v", "a fox", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "run/a.mp4", "--save-latents")
    assert made.exit_code == 0, made.stderr
    cron = tmp_path / "victim" / "cron.d" / "vidgen"  # extensionless, as in the report
    evil = {"info": {"output": str(cron)}, "allow_pickle": True}
    _rewrite_latents(tmp_path / "run" / "a.latents.safetensors", tmp_path / "shared" / "got.latents.safetensors", evil)
    refused(hostile("decode", "shared/got.latents.safetensors"), 5, "model.allow_pickle", "--allow-pickle")
    _rewrite_latents(
        tmp_path / "run" / "a.latents.safetensors",
        tmp_path / "shared" / "got.latents.safetensors",
        {"info": {"output": str(cron)}},
    )
    before = files_under(tmp_path)
    result = cli("decode", "shared/got.latents.safetensors", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "shared/got.mp4"
    assert new_files(before, tmp_path) == [tmp_path / "shared" / "got.json", tmp_path / "shared" / "got.mp4"]
    assert not (tmp_path / "victim").exists()


# -- pickles ----------------------------------------------------------------------------------


class _Payload:
    """Unpickled with weights_only=False, this creates the marker file (builtins.open(..., "w"))."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _pickle_weights(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"lora_unet.weight": _Payload(marker)}, path)


def test_the_pickle_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    # Proof that the files below are dangerous: torch.load(weights_only=False) creates the marker.
    marker = tmp_path / "PWNED"
    _pickle_weights(tmp_path / "style.bin", marker)
    code = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "style.bin")], check=True, capture_output=True)
    assert marker.exists()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("loras", [{"source": "shared/style.bin", "scale": 1.0}], "shared/style.bin"),
        ("motion_adapter", "shared/style.bin", "shared/style.bin"),
        ("id", "shared/base.ckpt", "shared/base.ckpt"),
    ],
)
def test_a_replayed_file_cannot_allow_pickles(tmp_path: Path, field: str, value: object, named: str) -> None:
    marker = tmp_path / "PWNED"
    for name in ("style.bin", "base.ckpt"):
        _pickle_weights(tmp_path / "shared" / name, marker)
    config = dry_config("animate", "a cat", "--preset", "tiny-animatediff")
    config["model"][field] = value
    config["model"]["allow_pickle"] = True
    video_with_metadata(tmp_path / "shared" / "clip.mp4", recording(config))
    refused(hostile("replay", "shared/clip.mp4"), 5, "model.allow_pickle: true", named, "--allow-pickle")
    # Without the flag in the file, the pickle path itself is refused by name.
    config["model"]["allow_pickle"] = False
    video_with_metadata(tmp_path / "shared" / "clip.mp4", recording(config))
    refused(hostile("replay", "shared/clip.mp4"), 5, named, "pickle", "--allow-pickle")
    assert not marker.exists()
    # inspect shows the risk before anyone runs it.
    config["model"]["allow_pickle"] = True
    video_with_metadata(tmp_path / "shared" / "clip.mp4", recording(config))
    shown = cli("inspect", "shared/clip.mp4").stdout
    assert "pickles      ALLOWED" in shown and named in shown


def test_presets_and_manifests_cannot_allow_pickles(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("extends: tiny-cogvideox\nmodel:\n  allow_pickle: true\n")
    refused(hostile("t2v", "a cat", "--preset", "p.yaml"), 5, "preset p", "--allow-pickle")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "a cat", "preset": "tiny-cogvideox", "model.allow_pickle": True}) + "\n")
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--dry-run")
    assert result.exit_code == 3 and "line 1 of the manifest asks for pickle weights" in result.stderr
    jobs.write_text(json.dumps({"prompt": "a cat", "preset": "tiny-cogvideox", "set": {"model.allow_pickle": True}}))
    result = cli("batch", "jobs.jsonl", "--out", "runs", "--dry-run")
    assert result.exit_code == 3 and "asks for pickle weights" in result.stderr
    # Typed now, the same flag is the user's: allowed.
    assert cli("t2v", "a cat", "--preset", "p.yaml", "--allow-pickle", "--dry-run").exit_code == 0


def test_a_weights_file_of_any_name_is_checked(tmp_path: Path) -> None:
    # `shared/style.dat` looks like a Hub id (owner/name), but it is a local pickle that
    # diffusers would open as a file: it is checked as one.
    _pickle_weights(tmp_path / "shared" / "style.dat", tmp_path / "PWNED")
    result = cli("animate", "a cat", "--preset", "tiny-animatediff", "--lora", "shared/style.dat", "--dry-run")
    one_line_error(result, 5, "LoRA shared/style.dat is not a weights file")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("path", ["/tmp/evil.mp4", "../evil.mp4", "~/evil.mp4", "runs/../../evil.mp4"])
def test_a_preset_cannot_write_outside_the_working_folder(tmp_path: Path, path: str) -> None:
    (tmp_path / "out.yaml").write_text(f"extends: tiny-cogvideox\noutput:\n  path: {path}\n")
    refused(hostile("t2v", "a cat", "--preset", "out.yaml"), 3, f"output.path {path}", "--out")
    (tmp_path / "out.yaml").write_text("extends: tiny-cogvideox\noutput:\n  path: renders/{slug}.mp4\n")
    assert cli("t2v", "a cat", "--preset", "out.yaml", "--dry-run").exit_code == 0


# -- inputs -----------------------------------------------------------------------------------


class _Beacon(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a small PNG and records the path, so a test sees each request."""

    requests: list[str] = []
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def beacon(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server in a thread: (base URL, the paths requested so far)."""
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "served.png")
    requests: list[str] = []
    handler = type("Beacon", (_Beacon,), {"requests": requests, "body": (tmp_path / "served.png").read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_replay_reads_no_private_file_and_fetches_no_url_without_the_flag(
    tmp_path: Path, beacon: tuple[str, list[str]]
) -> None:
    base, requests = beacon
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir()
    shared.mkdir()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(private / "secret.png")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(shared / "ok.png")
    config = dry_config("i2v", "shared/ok.png", "--preset", "tiny-svd")
    url = f"{base}/beacon.png?who=you"
    for ref in (str(private / "secret.png"), url):
        config["inputs"]["image"] = ref
        (shared / "clip.json").write_text(json.dumps(recording(config)))
        refused(hostile("replay", "shared/clip.json"), 4, ref, "--allow-inputs")
    assert requests == []
    # The same batch, from a manifest in shared/: the URL job is refused, nothing is fetched.
    job = {"mode": "i2v", "image": url, "preset": "tiny-svd", "id": "beacon"}
    (shared / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    result = cli("batch", "shared/jobs.jsonl", "--out", "runs", "--dry-run")
    assert result.exit_code == 3 and url in result.stderr and "--allow-inputs" in result.stderr
    assert requests == []
    # An input inside the replayed file's folder needs no flag; with the flag, the URL is
    # fetched, so the server above would have seen any request.
    config["inputs"]["image"] = "shared/ok.png"
    (shared / "clip.json").write_text(json.dumps(recording(config)))
    assert cli("replay", "shared/clip.json", "--dry-run").exit_code == 0
    config["inputs"]["image"] = url
    (shared / "clip.json").write_text(json.dumps(recording(config)))
    allowed = cli("replay", "shared/clip.json", "--dry-run", "--allow-inputs")
    assert allowed.exit_code == 0, allowed.stderr
    assert f"image {url} (URL)" in allowed.stderr  # listed before anything is read
    assert requests == ["/beacon.png?who=you"]


def test_devices_pipes_and_proc_are_never_read(tmp_path: Path) -> None:
    refused(hostile("i2v", "/dev/zero", "--preset", "tiny-svd"), 4, "/dev/zero", "not a regular file")
    refused(hostile("v2v", "/dev/zero", "a cat", "--preset", "tiny-cogvideox-v2v"), 4, "not a regular file")
    refused(hostile("i2v", "/proc/self/environ", "--preset", "tiny-svd"), 4, "not a regular file")
    os.mkfifo(tmp_path / "pipe.png")
    refused(hostile("i2v", "pipe.png", "--preset", "tiny-svd"), 4, "pipe.png", "not a regular file")
    os.mkfifo(tmp_path / "pipe.json")
    refused(hostile("replay", "pipe.json"), 4, "not a regular file")
    os.mkfifo(tmp_path / "jobs.jsonl")
    refused(hostile("batch", "jobs.jsonl"), 4, "not a regular file")
    # A sidecar naming /dev/zero: still refused with --allow-inputs (which allows places, not devices).
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    config = dry_config("i2v", "x.png", "--preset", "tiny-svd")
    config["inputs"]["image"] = "/dev/zero"
    (tmp_path / "zero.json").write_text(json.dumps(recording(config)))
    refused(hostile("replay", "zero.json", "--allow-inputs", "--quiet"), 4, "/dev/zero", "not a regular file")
    # stdin is read within the manifest cap, not until it ends.
    with open("/dev/zero", "rb") as zeros:
        refused(hostile("batch", "-", stdin=zeros), 4, "larger than 64 MiB")
    # A frames folder whose frame is a link to /dev/zero.
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "frames" / "f1.png")
    (tmp_path / "frames" / "f2.png").symlink_to("/dev/zero")
    result = cli("v2v", "frames", "a cat", "--preset", "tiny-cogvideox-v2v", "--max-frames", "9")
    one_line_error(result, 4, "not a regular file")


# -- parsing limits -----------------------------------------------------------------------------


def _laughs(indent: str) -> str:
    """Nine levels of nine aliases: 9^9 (387 million) leaves from about 400 bytes."""
    return "".join(
        f"{indent}{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
        for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
    )


def test_yaml_alias_bombs_are_refused(tmp_path: Path) -> None:
    # Inside scheduler_options, which takes any mapping: unprotected, the 387 million leaves are
    # walked when the layers are merged and the config is dumped, and grow to gigabytes.
    preset = "extends: tiny-cogvideox\nmodel:\n  scheduler_options:\n" + _laughs("    ")
    assert len(preset) < 600
    (tmp_path / "bomb.yaml").write_text(preset)
    refused(hostile("t2v", "a cat", "--preset", "bomb.yaml"), 3, "bomb.yaml", "aliases (*a)")
    manifest = "jobs:\n  - prompt: a cat\n    preset: tiny-cogvideox\n    model:\n      scheduler_options:\n"
    (tmp_path / "jobs.yaml").write_text(manifest + _laughs("        "))
    refused(hostile("batch", "jobs.yaml"), 3, "jobs.yaml", "aliases (*a)")
    # A single anchor without aliases is plain YAML and still fine.
    (tmp_path / "ok.yaml").write_text("extends: tiny-cogvideox\nsampling: &s\n  num_inference_steps: 2\n")
    assert cli("t2v", "a cat", "--preset", "ok.yaml", "--dry-run").exit_code == 0


def _nested(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text(f"extends: tiny-cogvideox\nsampling:\n  num_frames: {_nested(500)}\n")
    refused(hostile("t2v", "a cat", "--preset", "deep.yaml"), 3, "nested deeper than 32 levels")
    (tmp_path / "deep-jobs.yaml").write_text(f"jobs:\n  - prompt: {_nested(500)}\n")
    refused(hostile("batch", "deep-jobs.yaml"), 3, "nested deeper than 32 levels")
    (tmp_path / "deep.jsonl").write_text(json.dumps({"prompt": "x", "set": {"a": json.loads(_nested(500))}}) + "\n")
    refused(hostile("batch", "deep.jsonl"), 3, "line 1: nested deeper than 32 levels")
    (tmp_path / "deeper.jsonl").write_text('{"prompt": ' + _nested(100_000) + "}\n")
    refused(hostile("batch", "deeper.jsonl"), 3, "nested deeper")
    (tmp_path / "deep.json").write_text('{"vidgen_version": "1", "config": ' + _nested(100_000) + "}")
    refused(hostile("replay", "deep.json"), 4, "nests deeper than 32 levels")


def test_a_million_job_matrix_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    values = ", ".join(str(v) for v in range(10))
    matrix = "".join(f"  {key}: [{values}]\n" for key in ("seed", "steps", "guidance", "frames", "width", "height"))
    (tmp_path / "jobs.yaml").write_text(
        f"defaults:\n  preset: tiny-cogvideox\njobs:\n  - prompt: a cat\nmatrix:\n{matrix}"
    )
    refused(hostile("batch", "jobs.yaml"), 3, "1,000,000 jobs", "at most 100,000")
    (tmp_path / "many.txt").write_text("a cat\n" * 100_001)
    refused(hostile("batch", "many.txt"), 3, "100,001 jobs")


def test_a_50_mb_prompt_is_refused_before_any_model_or_tokenizer(tmp_path: Path) -> None:
    prompt = ("a cat " * (9 << 20))[: 50 << 20]  # 50 MiB
    config = dry_config("t2v", "x", "--preset", "tiny-cogvideox")
    config["inputs"]["prompt"] = prompt
    (tmp_path / "big.json").write_text(json.dumps(recording(config)))
    refused(hostile("replay", "big.json"), 3, "52,428,800 characters", "at most 100,000")
    (tmp_path / "big.jsonl").write_text(json.dumps({"prompt": prompt}) + "\n")
    refused(hostile("batch", "big.jsonl"), 3, "line 1", "at most 100,000")
    (tmp_path / "big.txt").write_text(prompt + "\n")
    refused(hostile("t2v", "--prompts-file", "big.txt", "--preset", "tiny-cogvideox"), 3, "at most 100,000")
    # A long but sane prompt is taken (100 000 characters, far beyond any model's 77-226 tokens).
    config["inputs"]["prompt"] = "a cat " * 16_000
    (tmp_path / "long.json").write_text(json.dumps(recording(config)))
    assert cli("replay", "long.json", "--dry-run").exit_code == 0


# -- batch outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "jobs",
    [
        [{"id": "x"}, {"id": "x.mp4", "format": "png"}],  # x.mp4 (file) and x.mp4 (folder), x.json twice
        [{"id": "clip"}, {"id": "CLIP"}],  # one file on macOS and Windows
        [{"id": "a", "format": "webm"}, {"id": "a", "format": "gif"}],  # a.json twice
    ],
)
def test_jobs_writing_the_same_path_are_refused_before_anything_runs(tmp_path: Path, jobs: list[dict]) -> None:
    lines = [{"prompt": "a cat", "preset": "tiny-cogvideox", **job} for job in jobs]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("batch", "jobs.jsonl", "--out", "runs")
    assert result.exit_code == 3, result.stderr
    assert "invalid: job 2 (line 2): writes the same output as line 1" in result.stderr
    assert not (tmp_path / "runs").exists()
    # Ids that differ in more than case and format do not collide.
    distinct = [{**lines[0], "id": "one"}, {**lines[1], "id": "two"}]
    (tmp_path / "ok.jsonl").write_text("".join(json.dumps(line) + "\n" for line in distinct))
    assert cli("batch", "ok.jsonl", "--out", "runs", "--dry-run").exit_code == 0


# -- cost ---------------------------------------------------------------------------------------


def test_frames_sizes_and_steps_beyond_any_model_are_refused(tmp_path: Path) -> None:
    tiny = ["t2v", "a cat", "--preset", "tiny-cogvideox"]
    refused(hostile(*tiny, "--frames", "9993"), 3, "--frames 9993", "1,024 frames")
    refused(hostile(*tiny, "--width", "8192", "--height", "8192"), 3, "--height 8192", "4,096 pixels")
    refused(hostile(*tiny, "--steps", "1001"), 3, "sampling.num_inference_steps", "1000")
    assert files_under(tmp_path) == []


def test_a_plan_far_above_the_machines_memory_is_exit_6(tmp_path: Path) -> None:
    big = ["t2v", "a cat", "--preset", "tiny-cogvideox", "--frames", "1017", "--height", "4096", "--width", "4096"]
    one_line_error(cli(*big), 6, "planned peak memory", "GiB", "--memory manual --skip-memory-check")
    one_line_error(cli(*big, "--memory", "auto", "--skip-memory-check"), 3, "--skip-memory-check", "--memory manual")
    assert cli(*big, "--dry-run").exit_code == 0  # a plan is only shown
    assert files_under(tmp_path) == []


def test_an_allocation_failure_is_exit_6_with_the_phase(tmp_path: Path) -> None:
    # torch's CPU allocator raises RuntimeError("DefaultCPUAllocator: can't allocate memory"),
    # which was exit 1. Under the 1 GiB cap the initial noise of 1017 frames at 4096x4096 (4 GB
    # of latents) cannot be allocated: a certain failure at the start of denoising. (Smaller
    # runs fail at varying places, or in oneDNN with "could not create a primitive".)
    big = ["--frames", "1017", "--height", "4096", "--width", "4096", "--seed", "1"]
    ran = hostile("t2v", "a cat", "--preset", "tiny-cogvideox", *big, "--skip-memory-check", "--quiet", timeout=120)
    assert ran.code == 6, ran.stderr[-2000:]
    assert ran.stderr.strip().splitlines() == [ran.stderr.strip()]
    assert "ran out of memory during denoise" in ran.stderr
    assert not list(tmp_path.rglob("*.mp4"))


# -- the terminal -------------------------------------------------------------------------------

ANSI = "\x1b[2J\x1b]0;pwned\x07\x1b[1A\nmodel        evil/fake \u202eexe.mp4"


@pytest.mark.pipeline
def test_control_characters_are_shown_escaped(tmp_path: Path) -> None:
    made = cli("t2v", f"a cat {ANSI}", "--preset", "tiny-cogvideox", "--seed", "2", "--out", "v.mp4")
    assert made.exit_code == 0, made.stderr
    (tmp_path / "v.json").unlink()  # inspect the bare video, as a downloaded one would be
    shown = cli("inspect", "v.mp4")
    assert shown.exit_code == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    assert "a cat \\x1b[2J\\x1b]0;pwned\\x07\\x1b[1A\\x0amodel        evil/fake \\u202eexe.mp4" in shown.stdout
    assert not any(line.startswith("model        evil") for line in shown.stdout.splitlines())
    assert "\x1b" not in cli("inspect", "v.mp4", "--json").stdout
    # Errors quoting a path or preset name, and a batch's invalid lines, are one escaped line.
    line = one_line_error(cli("i2v", f"{ANSI}.png", "--preset", "tiny-svd"), 4, "\\x1b[2J")
    assert "\x1b" not in line
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"prompt": "a cat", "preset": f"{ANSI}"}) + "\n")
    result = cli("batch", "jobs.jsonl")
    assert result.exit_code == 3 and "\x1b" not in result.stderr and "\\x1b]0;pwned" in result.stderr


def test_inspect_shows_every_risky_field_of_a_crafted_sidecar(tmp_path: Path) -> None:
    config = dry_config("animate", "a cat", "--preset", "tiny-animatediff")
    config["model"].update(
        allow_pickle=True,
        id="/models/\x1b[31mbase.ckpt",
        motion_adapter="shared/adapter.bin",
        loras=[{"source": "shared/\x1b[2Jstyle.bin", "scale": 0.7, "name": None}],
    )
    config["inputs"]["prompt"] = f"a cat {ANSI}"
    data = recording(config, model={"loras": [{"source": "shared/\x1b[2Jstyle.bin", "sha256": "ab" * 32}]})
    (tmp_path / "crafted.json").write_text(json.dumps(data))
    shown = cli("inspect", "crafted.json")
    assert shown.exit_code == 0, shown.stderr
    rows = shown.stdout.splitlines()
    assert "\x1b" not in shown.stdout
    assert "weights      /models/\\x1b[31mbase.ckpt" in rows
    assert "adapter      shared/adapter.bin" in rows
    assert "lora         shared/\\x1b[2Jstyle.bin x0.7 (sha256 abababababab)" in rows
    assert any(row.startswith("pickles      ALLOWED") for row in rows)
    # A recording that allows nothing says so.
    config["model"]["allow_pickle"] = False
    (tmp_path / "plain.json").write_text(json.dumps(recording(config)))
    assert "pickles      refused" in cli("inspect", "plain.json").stdout.splitlines()
