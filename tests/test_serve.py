"""`vidgen serve` (issue 31): a real server process on a private socket, real `vidgen` callers.

What a user of a warm server checks: the caller prints what a direct run prints and the files
are the same; Ctrl-C stops that caller's job alone and leaves no file; a killed server loses no
job; two callers get their own videos; bad requests are answered and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import decode, files_under, one_line_error, sidecar

DEFAULT_TIER = "process"

TINY = ["--preset", "tiny-cogvideox"]
# Fields of a sidecar that differ between any two runs (a rerun in the same process too).
RUN_BOUND = ("created_at", "timings", "peak_memory_bytes", "writer")
# Enough steps of the tiny model (each a few milliseconds) to stop a run in the middle of it.
LONG = ["--steps", "400"]


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


class Served:
    """A `vidgen serve` subprocess with its own socket and state folder, and callers of it."""

    def __init__(self, folder: Path, *options: str) -> None:
        # A unix socket path must be short (108 bytes): pytest's folders can be longer.
        self.short = Path(tempfile.mkdtemp(prefix="vs", dir="/tmp"))
        self.folder = folder
        self.env = {
            **os.environ,
            "VIDGEN_SERVER_SOCKET": str(self.short / "s.sock"),
            "VIDGEN_SERVER_STATE": str(folder / "state"),
        }
        self.env.pop("VIDGEN_NO_SERVER", None)
        self.options = options
        self.log = folder / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Served:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vidgen", "serve", *self.options],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 120
        while self.status() is None:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.short, ignore_errors=True)

    def status(self) -> dict | None:
        ran = self.vidgen("serve", "--status", "--json")
        return json.loads(ran.stdout) if ran.exit_code == 0 else None

    def caller(self, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "vidgen", *args],
            cwd=cwd or self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def vidgen(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> Ran:
        done = subprocess.run(
            [sys.executable, "-m", "vidgen", *args],
            cwd=cwd or self.folder,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def ask(self, message: bytes) -> dict | None:
        """Raw bytes on the socket, as any program of this user could send them."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(self.env["VIDGEN_SERVER_SOCKET"])
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(message)  # it may stop reading: the answer is still there
            data = b""
            while not data.endswith(b"\n"):
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        return json.loads(data) if data else None

    def wait_running(self, timeout: float = 120) -> str:
        """The id of the job the server runs, once it is denoising."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status() or {}
            if status.get("current_job"):
                time.sleep(1.5)  # past loading, into the steps
                return status["current_job"]
            time.sleep(0.1)
        raise AssertionError(self.log.read_text())

    def job(self, job_id: str) -> dict:
        return self.ask(json.dumps({"op": "get", "id": job_id}).encode() + b"\n")["job"]


@pytest.fixture
def served(tmp_path: Path):
    made: list[Served] = []

    def start(*options: str) -> Served:
        server = Served(tmp_path, *options).start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


def _without(record: dict, *keys: str) -> dict:
    return {key: value for key, value in record.items() if key not in keys}


def _same_run(a: dict, b: dict) -> None:
    """Two sidecars of one run made twice: equal apart from timings and where they were written."""
    a, b = copy.deepcopy(_without(a, *RUN_BOUND)), copy.deepcopy(_without(b, *RUN_BOUND))
    for record in (a, b):
        record["config"]["output"].pop("path")
        record["output"].pop("path")
        record["output"].pop("sha256")  # the file embeds its sidecar, path included (same length here)
    assert a == b


def test_a_served_run_prints_and_writes_what_a_direct_run_does(served, tmp_path: Path) -> None:
    server = served()
    args = ["t2v", "a red fox", *TINY, "--seed", "5"]
    # Built before either run: a run that builds the tiny model plans from its published sizes,
    # any later one from the files' headers.
    assert server.vidgen(*args, "--out", "built/").exit_code == 0
    direct = server.vidgen(*args, "--out", "direct/", "--no-server")
    first = server.vidgen(*args, "--out", "served/", "--json")
    assert direct.exit_code == 0 and first.exit_code == 0, (direct.stderr, first.stderr)
    assert direct.stdout == "direct/t2v-a-red-fox-5.mp4\n"
    answer = json.loads(first.stdout)
    assert answer["outputs"][0]["path"] == "served/t2v-a-red-fox-5.mp4"
    assert answer["exit_code"] == 0
    # The server ran it (the job is in its record), and the caller imported no torch.
    status = server.status()
    assert status["jobs"]["completed"] == 2
    assert [m["model"] for m in status["loaded"]] == ["tiny:cogvideox"]
    timed = server.vidgen(*args, "--out", "second/", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert timed.exit_code == 0 and timed.stdout == "second/t2v-a-red-fox-5.mp4\n"
    imported = [line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if line.startswith("import time")]
    assert "vidgen.serve.client" in imported
    assert not [name for name in imported if name.split(".")[0] in ("torch", "diffusers", "numpy")]
    assert server.status()["jobs"]["completed"] == 3
    doctor = json.loads(server.vidgen("doctor", "--json").stdout)["server"]
    assert doctor["running"] and doctor["pid"] == server.process.pid
    assert [m["model"] for m in doctor["loaded"]] == ["tiny:cogvideox"]
    # Frames and sidecar: those of the direct run.
    made = {name: tmp_path / name / "t2v-a-red-fox-5.mp4" for name in ("direct", "served", "second")}
    sides = {name: sidecar(path.with_suffix(".json")) for name, path in made.items()}
    frames = {name: decode(path)[0] for name, path in made.items()}
    assert np.array_equal(frames["direct"], frames["served"]) and np.array_equal(frames["direct"], frames["second"])
    assert sides["served"]["sources"] == sides["direct"]["sources"]
    _same_run(sides["direct"], sides["served"])
    _same_run(sides["direct"], sides["second"])
    # Another seed is another video, served too.
    other = server.vidgen("t2v", "a red fox", *TINY, "--seed", "6", "--out", "served/")
    assert other.exit_code == 0
    assert not np.array_equal(decode(tmp_path / "served" / "t2v-a-red-fox-6.mp4")[0], frames["served"])


def test_errors_come_back_as_a_direct_run_says_them_and_the_server_goes_on(served, tmp_path: Path) -> None:
    server = served()
    for args in (
        ["t2v", "a fox", *TINY, "--frames", "10"],  # CogVideoX takes 8k+1 frames: exit 3
        ["i2v", "missing.png", "a fox", "--preset", "tiny-svd"],  # exit 4
        ["t2v", "a fox", *TINY, "--steps", "abc"],  # Click's usage error, before anything is sent: exit 2
    ):
        direct = server.vidgen(*args, "--no-server")
        via = server.vidgen(*args)
        assert (via.exit_code, via.stderr, via.stdout) == (direct.exit_code, direct.stderr, direct.stdout)
        assert via.exit_code in (2, 3, 4)
    one_line_error(server.vidgen("t2v", "a fox", *TINY, "--frames", "10", "--json"), 3, "8k+1")
    assert server.status()["jobs"]["failed"] == 3
    assert server.vidgen("t2v", "a fox", *TINY, "--seed", "1").exit_code == 0
    assert [p.name for p in files_under(tmp_path / "outputs")] == ["t2v-a-fox-1.json", "t2v-a-fox-1.mp4"]


def test_ctrl_c_of_a_caller_stops_its_job_alone_and_leaves_no_file(served, tmp_path: Path) -> None:
    server = served()
    waiting = server.caller("t2v", "a long one", *TINY, *LONG, "--seed", "1", "--out", "long/")
    job = server.wait_running()
    queued = server.caller("t2v", "the next one", *TINY, "--seed", "2", "--out", "next/")
    time.sleep(1.0)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted; no partial file was left under a final name."
    assert out == ""
    assert not (tmp_path / "long").exists() or files_under(tmp_path / "long") == []
    cancelled = server.job(job)
    assert (cancelled["status"], cancelled["exit_code"]) == ("cancelled", 130)
    assert cancelled["error"] == "interrupted; no partial file was left under a final name."
    # The other caller's job was not touched.
    out, err = queued.communicate(timeout=120)
    assert queued.returncode == 0, err
    assert out == "next/t2v-the-next-one-2.mp4\n"
    assert (tmp_path / "next" / "t2v-the-next-one-2.mp4").exists()


def test_a_killed_server_loses_no_job_and_the_next_one_runs_it_once(served, tmp_path: Path) -> None:
    server = served()
    waiting = server.caller("t2v", "a long one", *TINY, *LONG, "--seed", "3", "--out", "long/")
    job = server.wait_running()
    server.process.kill()
    server.process.wait()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: the vidgen server stopped before the run ended; job {job} stays queued and runs when the "
        "server starts again."
    )
    assert not (tmp_path / "long").exists() or [p for p in files_under(tmp_path / "long") if p.suffix == ".mp4"] == []
    again = served()
    deadline = time.monotonic() + 300
    while again.job(job)["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline, again.log.read_text()
        time.sleep(0.5)
    record = again.job(job)
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert record["outputs"] == ["long/t2v-a-long-one-3.mp4"]
    visible = [p.name for p in files_under(tmp_path / "long") if not p.name.startswith(".")]
    assert visible == ["t2v-a-long-one-3.json", "t2v-a-long-one-3.mp4"]
    assert sidecar(tmp_path / "long" / "t2v-a-long-one-3.json")["config"]["sampling"]["num_inference_steps"] == 400
    # Run once: one start of it in the new server's log, and nothing runs after it.
    assert again.log.read_text().count(f"job {job}: vidgen t2v") == 2  # the killed server's, then this one's
    assert again.status()["jobs"] == {"queued": 0, "in_progress": 0, "completed": 1, "failed": 0, "cancelled": 0}


def test_sigterm_interrupts_the_running_job_and_keeps_it_and_the_queue(served, tmp_path: Path) -> None:
    server = served()
    first = server.caller("t2v", "first", *TINY, *LONG, "--seed", "1", "--out", "a/")
    job = server.wait_running()
    second = server.caller("t2v", "second", *TINY, "--seed", "2", "--out", "b/")
    time.sleep(1.0)
    stopped = server.vidgen("serve", "--stop")
    assert stopped.exit_code == 0
    assert server.process.wait(60) == 0
    for caller in (first, second):
        _out, err = caller.communicate(timeout=60)
        assert caller.returncode in (1, 143), err
        assert "stays queued" in err.strip().splitlines()[-1]
    assert not (tmp_path / "a").exists() or files_under(tmp_path / "a") == []
    again = served()
    deadline = time.monotonic() + 300
    while again.status()["jobs"]["completed"] < 2:
        assert time.monotonic() < deadline, again.log.read_text()
        time.sleep(0.5)
    assert again.job(job)["outputs"] == ["a/t2v-first-1.mp4"]
    assert (tmp_path / "a" / "t2v-first-1.mp4").exists() and (tmp_path / "b" / "t2v-second-2.mp4").exists()


def test_two_callers_at_once_get_their_own_videos(served, tmp_path: Path) -> None:
    server = served()
    (tmp_path / "elsewhere").mkdir()
    one = server.caller("t2v", "a fox", *TINY, "--seed", "1", "--progress", "json")
    two = server.caller("t2v", "a cat", *TINY, "--seed", "2", "--json", cwd=tmp_path / "elsewhere")
    out_one, err_one = one.communicate(timeout=300)
    out_two, err_two = two.communicate(timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (err_one, err_two)
    # Progress streams to the caller that asked for it, and only there.
    events = [json.loads(line) for line in err_one.splitlines() if line.startswith("{")]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    assert events[-1] == {**events[-1], "event": "done", "outputs": ["outputs/t2v-a-fox-1.mp4"]}
    assert '"event"' not in err_two
    assert out_one == "outputs/t2v-a-fox-1.mp4\n"
    assert json.loads(out_two)["outputs"][0]["path"] == "outputs/t2v-a-cat-2.mp4"
    # Each in its caller's own folder, made from its own prompt.
    assert sidecar(tmp_path / "outputs" / "t2v-a-fox-1.json")["config"]["inputs"]["prompt"] == "a fox"
    assert sidecar(tmp_path / "elsewhere" / "outputs" / "t2v-a-cat-2.json")["config"]["inputs"]["prompt"] == "a cat"


def test_bad_requests_are_answered_and_the_server_keeps_serving(served, tmp_path: Path) -> None:
    server = served()
    assert server.ask(b"{not json\n") == {"error": "not a request: a message that is not JSON", "exit": 3}
    assert server.ask(b"[1, 2]\n")["exit"] == 3
    huge = json.dumps({"op": "run", "argv": ["t2v", "x" * (50 << 20)], "cwd": str(tmp_path)}).encode() + b"\n"
    assert server.ask(huge) == {"error": "not a request: a message over 4 MiB", "exit": 3}
    assert server.ask(b'{"op": "nothing"}\n')["exit"] == 3
    assert server.ask(b'{"op": "run", "argv": "t2v", "cwd": "/"}\n')["fallback"]  # another environment
    # A manifest line that reads outside the served folder fails alone (exit 4), as in a batch.
    (tmp_path.parent / "outside.png").write_bytes(b"")
    line = {"mode": "i2v", "image": str(tmp_path.parent / "outside.png"), "preset": "tiny-svd", "id": "x"}
    job = server.ask(json.dumps({"op": "submit", "job": line}).encode() + b"\n")["job"]
    deadline = time.monotonic() + 120
    while server.job(job["id"])["status"] == "queued" or server.job(job["id"])["status"] == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    record = server.job(job["id"])
    assert (record["status"], record["exit_code"]) == ("failed", 4)
    assert "outside.png" in record["error"] and "--allow-inputs" in record["error"]
    # A 50 MB prompt cannot even be a command line; a manifest line with one is refused on arrival.
    long_line = json.dumps({"op": "submit", "job": {"prompt": "x" * 200_000}}).encode() + b"\n"
    answer = server.ask(long_line)
    assert answer["exit"] == 3 and "200,000 characters" in answer["error"]
    assert server.vidgen("t2v", "still here", *TINY, "--seed", "1").exit_code == 0


def test_a_model_that_does_not_fit_is_refused_and_a_second_evicts_the_first(served, tmp_path: Path) -> None:
    # The tiny CogVideoX plans an estimated 256 MiB peak at 16x16 and its weights 0.4 MB: a
    # budget that holds one run but not a run beside a kept pipeline.
    server = served("--max-memory", "0.2506")
    assert server.vidgen("t2v", "a", *TINY, "--seed", "1").exit_code == 0
    status = server.status()
    assert [m["model"] for m in status["loaded"]] == ["tiny:cogvideox"] and status["evicted"] == 0
    # Another pipeline (another option set): the kept one is freed first.
    assert server.vidgen("t2v", "b", *TINY, "--seed", "1", "--vae-tiling").exit_code == 0
    status = server.status()
    assert len(status["loaded"]) == 1 and status["evicted"] == 1
    # A run whose estimate alone is over the budget: exit 6, one line, nothing written.
    big = server.vidgen("t2v", "c", *TINY, "--seed", "1", "--height", "256", "--width", "256")
    one_line_error(big, 6, "--max-memory")
    assert not (tmp_path / "outputs" / "t2v-c-1.mp4").exists()
    assert server.vidgen("t2v", "d", *TINY, "--seed", "1").exit_code == 0


def test_status_and_stop_without_a_server(tmp_path: Path) -> None:
    env = {**os.environ, "VIDGEN_SERVER_SOCKET": str(tmp_path / "none.sock")}
    for flag in ("--status", "--stop"):
        ran = subprocess.run([sys.executable, "-m", "vidgen", "serve", flag], env=env, capture_output=True, text=True)
        assert ran.returncode == 1
        assert ran.stderr == f"no vidgen server answers at {tmp_path / 'none.sock'}\n"
    doctor = subprocess.run([sys.executable, "-m", "vidgen", "doctor", "--json"], env=env, capture_output=True)
    assert json.loads(doctor.stdout)["server"] == {"running": False, "socket": str(tmp_path / "none.sock")}


# -- HTTP ------------------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(method: str, url: str, body: bytes | dict | None = None, token: str | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _oversized(port: int, chunked: bool) -> int:
    """The status of a 50 MB POST, sent as far as the server reads it."""
    head = "POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {50 << 20}\r\n\r\n"
    chunk = b'{"prompt": "' + b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(50):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def _finished(base: str, path: str, token: str | None = None, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = _http("GET", f"{base}{path}", token=token)
        assert code == 200, body
        record = json.loads(body)
        if record["status"] in ("completed", "failed", "cancelled"):
            return record
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_the_openai_style_endpoint_makes_the_video_the_cli_makes(served, tmp_path: Path) -> None:
    port = _port()
    server = served("--http", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    # Shaped like OpenAI's videos.create; `seed` is vidgen's own field (a video is random without it).
    asked = {"model": "tiny-cogvideox", "prompt": "a fox in snow", "seconds": "1", "size": "16x16", "seed": 3}
    code, body = _http("POST", f"{base}/v1/videos", asked)
    assert code == 200, body
    created = json.loads(body)
    assert created["object"] == "video" and created["status"] in ("queued", "in_progress")
    assert (created["model"], created["seconds"], created["size"]) == ("tiny-cogvideox", "1", "16x16")
    done = _finished(base, f"/v1/videos/{created['id']}")
    assert done["status"] == "completed" and done["progress"] == 100 and done["error"] is None
    code, content = _http("GET", f"{base}/v1/videos/{created['id']}/content")
    assert code == 200
    (tmp_path / "api.mp4").write_bytes(content)
    code, side = _http("GET", f"{base}/v1/videos/{created['id']}/content?variant=sidecar")
    assert code == 200
    # The CLI's run of the command line the request maps to: the same video.
    cli_args = ["t2v", "a fox in snow", *TINY, "--frames", "9", "--fps", "8", "--width", "16", "--height", "16"]
    assert server.vidgen(*cli_args, "--seed", "3", "--out", "cli.mp4", "--no-server").exit_code == 0
    assert np.array_equal(decode(tmp_path / "api.mp4")[0], decode(tmp_path / "cli.mp4")[0])
    ours, theirs = json.loads(side), sidecar(tmp_path / "cli.json")
    assert ours["config"]["inputs"] == theirs["config"]["inputs"]
    assert ours["config"]["sampling"] == theirs["config"]["sampling"]
    assert ours["pipeline"] == theirs["pipeline"]
    # Another seed and another prompt are other videos.
    for change in (["--seed", "4"], ["--seed", "3", "--set", "inputs.prompt=a cat in snow"]):
        out = f"other{len(change)}.mp4"
        assert server.vidgen(*cli_args, *change, "--out", out, "--no-server").exit_code == 0
        assert not np.array_equal(decode(tmp_path / out)[0], decode(tmp_path / "api.mp4")[0])
    code, listed = _http("GET", f"{base}/v1/videos")
    assert [v["id"] for v in json.loads(listed)["data"]] == [created["id"]]
    code, gone = _http("DELETE", f"{base}/v1/videos/{created['id']}")
    assert (code, json.loads(gone)["deleted"]) == (200, True)
    assert _http("GET", f"{base}/v1/videos/{created['id']}")[0] == 404


def test_http_jobs_progress_and_refusals(served, tmp_path: Path) -> None:
    port = _port()
    server = served("--http", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    # vidgen's own job JSON: a manifest line, run by the batch code into the served outputs/.
    code, body = _http("POST", f"{base}/v1/jobs", {"prompt": "a fox", "preset": "tiny-cogvideox", "id": "fox"})
    assert code == 201, body
    job = json.loads(body)
    import urllib.request

    with urllib.request.urlopen(f"{base}/v1/jobs/{job['id']}/events", timeout=300) as stream:
        text = stream.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith('data: {"event"')]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps and steps == list(range(1, len(steps) + 1))
    assert "event: end" in text and any(e["event"] == "done" for e in events)
    record = _finished(base, f"/v1/jobs/{job['id']}")
    assert (record["status"], record["outputs"]) == ("completed", [str(tmp_path / "outputs" / "fox.mp4")])
    code, sidecar_body = _http("GET", f"{base}/v1/jobs/{job['id']}/sidecar")
    assert code == 200 and json.loads(sidecar_body)["batch"]["id"] == "fox"
    assert _http("GET", f"{base}/v1/jobs/{job['id']}/file")[1] == (tmp_path / "outputs" / "fox.mp4").read_bytes()
    # Refused, each with its status, and the server goes on.
    assert _http("POST", f"{base}/v1/jobs", b"{not json")[0] == 400
    # 50 MB, declared or chunked: refused once over the cap, without reading the rest.
    assert _oversized(port, chunked=False) == 413
    assert _oversized(port, chunked=True) == 413
    code, body = _http("POST", f"{base}/v1/jobs", {"prompt": "x" * 200_000})
    assert code == 400 and json.loads(body)["error"]["exit_code"] == 3
    (tmp_path.parent / "outside.png").write_bytes(b"")
    code, body = _http("POST", f"{base}/v1/videos", {"prompt": "a", "input_reference": "../outside.png"})
    assert code == 400 and "--allow-inputs" in json.loads(body)["error"]["message"]
    code, body = _http("POST", f"{base}/v1/videos", {"prompt": "a", "model": "sora-2"})
    assert code == 400 and "vidgen preset" in json.loads(body)["error"]["message"]
    # A prompt that looks like an option stays a prompt.
    code, body = _http("POST", f"{base}/v1/videos", {"prompt": "--allow-pickle", "model": "tiny-cogvideox", "seed": 1})
    done = _finished(base, f"/v1/videos/{json.loads(body)['id']}")
    assert done["status"] == "completed"
    assert _http("GET", f"{base}/v1/status")[0] == 200
    assert server.status()["jobs"]["completed"] == 2


def test_http_off_loopback_needs_the_token(served, tmp_path: Path) -> None:
    port = _port()
    server = served("--http", f"0.0.0.0:{port}")
    token_file = tmp_path / "state" / "http-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    secret = token_file.read_text().strip()
    assert server.log.read_text().count(secret) == 1  # shown once, when made
    base = f"http://127.0.0.1:{port}"
    assert _http("GET", f"{base}/v1/status")[0] == 401
    assert _http("GET", f"{base}/v1/status", token="wrong")[0] == 401
    assert _http("POST", f"{base}/v1/jobs", {"prompt": "a"}, token="wrong")[0] == 401
    code, body = _http("GET", f"{base}/v1/status", token=secret)
    assert code == 200 and json.loads(body)["http"] == f"0.0.0.0:{port}"
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
