"""The HTTP API of `vidgen serve --http HOST:PORT` (FastAPI on uvicorn: `pip install vidgen[serve]`).

Two ways in, one queue (vidgen/serve/server.py):
- vidgen's own jobs: `POST /v1/jobs` with a job JSON (one manifest line, as `vidgen batch`
  reads it), `GET /v1/jobs[/{id}]`, `GET /v1/jobs/{id}/file` and `/sidecar`, `GET
  /v1/jobs/{id}/events` (server-sent events of its progress), `DELETE /v1/jobs/{id}` (cancel);
- OpenAI-style videos: `POST /v1/videos` (`prompt`, `model`: a vidgen preset, `seconds`, `size`
  "WIDTHxHEIGHT", `input_reference`: an image in the served folder, and vidgen's `seed`), `GET
  /v1/videos[/{id}]`, `GET /v1/videos/{id}/content` (`?variant=sidecar` for the sidecar), `DELETE
  /v1/videos/{id}`. Such a request runs as the `vidgen t2v` (or i2v) command line it maps to.

Requests are data, never permission (DESIGN §7): a body is at most 4 MiB and validated like a
manifest line; inputs outside the served folder need the server's own --allow-inputs; outputs stay
in its output folder. Loopback addresses need no token; any other address needs the bearer token
kept in STATE/http-token (0600), made and shown once on first use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from vidgen.core.errors import ConfigError, ExitCode, VidgenError
from vidgen.serve import wire
from vidgen.serve.server import Job, Server, _write_private, check_line

log = logging.getLogger("vidgen.serve")

MAX_BODY_BYTES = wire.MAX_MESSAGE_BYTES
# What an OpenAI client asks for (`seconds`) becomes frames at this rate, plus the first frame.
SECONDS_FPS = 8
# Exit codes of a refused request -> HTTP status.
STATUS = {
    int(ExitCode.USAGE): 400,
    int(ExitCode.CONFIG): 400,
    int(ExitCode.INPUT): 400,
    int(ExitCode.MODEL): 400,
    int(ExitCode.OUT_OF_MEMORY): 507,
}


try:  # the `serve` extra; `vidgen serve --http` says how to install it (check_installed)
    from fastapi import Request
except ImportError:  # pragma: no cover - without the extra only check_installed is called
    Request = Any  # type: ignore[misc,assignment]


def check_installed() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("--http needs FastAPI and uvicorn: pip install 'vidgen[serve]'.") from None


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def token(state: Path) -> tuple[str, bool]:
    """The bearer token for a non-loopback address, and whether it was just made."""
    path = state / "http-token"
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    made = secrets.token_urlsafe(32)
    _write_private(path, made + "\n")
    return made, True


def start(server: Server, host: str, port: int) -> str:
    """Answer HTTP at host:port on a thread; returns the address. Any other address than a
    loopback one needs the token, printed once (on stderr) when it is made."""
    import uvicorn

    secret = None
    if not loopback(host):
        secret, made = token(server.state)
        where = server.state / "http-token"
        if made:
            log.info("HTTP token (shown once; it is kept in %s): %s", where, secret)
        else:
            log.info("HTTP clients need the token in %s", where)
    app = build(server, secret)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True, name="vidgen-http")
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"--http {host}:{port}: cannot listen there (in use, or not this machine's address).")
        time.sleep(0.05)
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def build(server: Server, secret: str | None) -> Any:
    """The FastAPI app: the guard (token, body size), vidgen's job routes, the OpenAI-style ones."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="vidgen serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> JSONResponse:
        body: dict[str, Any] = {"error": {"message": exc.message, "type": "invalid_request_error"}}
        if exc.code is not None:
            body["error"]["exit_code"] = exc.code
        return JSONResponse(body, status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if secret is not None:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {secret}".encode()):
                return JSONResponse({"error": {"message": "a valid bearer token is needed"}}, status_code=401)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"error": {"message": f"a body over {MAX_BODY_BYTES >> 20} MiB"}}, status_code=413)
        return await call_next(request)

    _job_routes(app, server)
    _video_routes(app, server)
    return app


async def _body(request: Request) -> dict[str, Any]:
    """A request's JSON object, read up to MAX_BODY_BYTES (a chunked body has no length to check first)."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise _Refused(413, f"a body over {MAX_BODY_BYTES >> 20} MiB")
    if "multipart/form-data" in request.headers.get("content-type", ""):
        raise _Refused(415, "send JSON (input_reference as a path in the served folder), not a form")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise _Refused(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    return body


def _submit(server: Server, kind: str, request: dict[str, Any], source: str, job_id: str | None = None) -> Job:
    try:
        return server.submit(kind, request, source, job_id)
    except VidgenError as exc:
        raise _Refused(503, str(exc)) from None


def _find(server: Server, job_id: str) -> Job:
    job = server.get(job_id)
    if job is None:
        raise _Refused(404, f"no job {job_id}")
    return job


def _file(server: Server, job: Job, sidecar: bool) -> Any:
    """A finished job's video (or its sidecar)."""
    from fastapi.responses import FileResponse

    if job.status != "completed" or not job.outputs:
        raise _Refused(404, f"job {job.id} has no file yet (status {job.status})")
    path = Path(job.outputs[0])
    path = path if path.is_absolute() else Path(job.request.get("cwd") or server.root) / path
    if sidecar:
        path = path.with_suffix(".json")
    if not path.is_file():
        raise _Refused(404, f"{path.name} is gone")
    return FileResponse(path, filename=path.name)


def _job_routes(app: Any, server: Server) -> None:
    """vidgen's own jobs: a job JSON is one manifest line."""
    from fastapi.responses import StreamingResponse

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return server.status()

    @app.post("/v1/jobs", status_code=201)
    async def create_job(request: Request) -> dict[str, Any]:
        line = await _body(request)
        try:
            checked = check_line(line)
        except VidgenError as exc:
            raise _Refused(STATUS.get(int(exc.exit_code), 400), str(exc), int(exc.exit_code)) from None
        return _submit(server, "job", {"job": checked}, "http").public()

    @app.get("/v1/jobs")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": [job.public() for job in server.listing()]}

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return _find(server, job_id).public()

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        _find(server, job_id)
        job = server.cancel(job_id)
        assert job is not None
        return job.public()

    @app.get("/v1/jobs/{job_id}/file")
    async def job_file(job_id: str) -> Any:
        return _file(server, _find(server, job_id), sidecar=False)

    @app.get("/v1/jobs/{job_id}/sidecar")
    async def job_sidecar(job_id: str) -> Any:
        return _file(server, _find(server, job_id), sidecar=True)

    @app.get("/v1/jobs/{job_id}/events")
    async def job_events(job_id: str) -> StreamingResponse:
        job = _find(server, job_id)

        async def stream() -> Any:
            sent = 0
            while True:
                events = list(job.events)
                for event in events[sent:]:
                    yield f"data: {json.dumps(event)}\n\n"
                sent = len(events)
                if job.status in ("completed", "failed", "cancelled"):
                    yield f"event: end\ndata: {json.dumps(job.public())}\n\n"
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream")


def _video_routes(app: Any, server: Server) -> None:
    """OpenAI-style videos: each runs as the command line it maps to."""

    @app.post("/v1/videos")
    async def create_video(request: Request) -> dict[str, Any]:
        body = await _body(request)
        job_id = f"video_{secrets.token_hex(12)}"
        argv = openai_argv(body, server, job_id)
        asked = {"argv": argv, "cwd": str(server.root), "tty": False, "openai": body}
        return video(_submit(server, "run", asked, "openai", job_id))

    @app.get("/v1/videos")
    async def list_videos() -> dict[str, Any]:
        data = [video(job) for job in server.listing() if job.source == "openai"]
        return {"object": "list", "data": data, "has_more": False}

    @app.get("/v1/videos/{job_id}")
    async def get_video(job_id: str) -> dict[str, Any]:
        return video(_find(server, job_id))

    @app.get("/v1/videos/{job_id}/content")
    async def video_content(job_id: str, variant: str = "video") -> Any:
        if variant not in ("video", "sidecar"):
            raise _Refused(400, "variant: video or sidecar")
        return _file(server, _find(server, job_id), sidecar=variant == "sidecar")

    @app.delete("/v1/videos/{job_id}")
    async def delete_video(job_id: str) -> dict[str, Any]:
        _find(server, job_id)
        server.remove(job_id)
        return {"id": job_id, "object": "video.deleted", "deleted": True}


def openai_argv(body: dict[str, Any], server: Server, job_id: str) -> list[str]:
    """The command line an OpenAI-style create request means; refused (400) when it asks for
    what vidgen cannot map, or for an input outside the served folder."""
    known = {"prompt", "model", "seconds", "size", "input_reference", "seed"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise _Refused(400, f"unknown field {unknown[0]!r}; vidgen takes {', '.join(sorted(known))}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Refused(400, "prompt: a non-empty string is needed")
    from vidgen.core.limits import MAX_PROMPT_CHARS

    if len(prompt) > MAX_PROMPT_CHARS:
        raise _Refused(400, f"prompt: {len(prompt):,} characters; vidgen takes at most {MAX_PROMPT_CHARS:,}", 3)
    mode, extra = "t2v", []
    reference = body.get("input_reference")
    if reference is not None:
        if not isinstance(reference, str):
            raise _Refused(400, "input_reference: a path in the served folder (uploads are not taken)")
        mode, extra = "i2v", [_inside(reference, server)]
    # Options first, then `--`: a prompt that begins with "-" stays a prompt.
    positional = [*extra, prompt]
    argv = [mode]
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str) or model.startswith("-") or not _is_preset(model):
            raise _Refused(400, f"model {model!r}: name a vidgen preset (`vidgen presets list`)")
        argv += ["--preset", model]
    seconds = body.get("seconds")
    if seconds is not None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            value = -1
        if not 0 < value <= 120:
            raise _Refused(400, 'seconds: a number of seconds, e.g. "4"')
        argv += ["--frames", str(round(value * SECONDS_FPS) + 1), "--fps", str(SECONDS_FPS)]
    size = body.get("size")
    if size is not None:
        parts = str(size).lower().split("x")
        if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise _Refused(400, 'size: WIDTHxHEIGHT, e.g. "1280x720"')
        argv += ["--width", parts[0], "--height", parts[1]]
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise _Refused(400, "seed: an integer from 0 to 2**32-1")
        argv += ["--seed", str(seed)]
    out = server.out / f"{job_id}.mp4"
    return [*argv, "--out", str(out), "--json", "--progress", "json", "--", *positional]


def _is_preset(name: str) -> bool:
    from vidgen.config.layers import merged_preset

    try:
        merged_preset(name)
    except (VidgenError, OSError):
        return False
    return "/" not in name and os.sep not in name


def _inside(reference: str, server: Server) -> str:
    """An input path a request names: inside the served folder, unless --allow-inputs."""
    if "://" in reference:
        if not server.allow_inputs:
            raise _Refused(400, "input_reference: URLs are read only with the server's --allow-inputs", 4)
        return reference
    path = (server.root / reference).resolve()
    if not server.allow_inputs and not path.is_relative_to(server.root):
        raise _Refused(
            400, f"input_reference {reference}: outside the served folder; the server needs --allow-inputs", 4
        )
    return str(path)


def video(job: Job) -> dict[str, Any]:
    """A job as the OpenAI video object."""
    asked = job.request.get("openai") or {}
    status = {"cancelled": "failed"}.get(job.status, job.status)
    step, total = job.progress.get("step"), job.progress.get("total")
    progress = 100 if job.status == "completed" else (int(100 * step / total) if step and total else 0)
    body: dict[str, Any] = {
        "id": job.id,
        "object": "video",
        "model": asked.get("model"),
        "status": status,
        "progress": progress,
        "created_at": int(job.created_at),
        "completed_at": int(job.finished_at) if job.finished_at and job.status == "completed" else None,
        "expires_at": None,
        "prompt": asked.get("prompt"),
        "seconds": str(asked["seconds"]) if asked.get("seconds") is not None else None,
        "size": asked.get("size"),
        "remixed_from_video_id": None,
        "error": None,
    }
    if job.status in ("failed", "cancelled"):
        body["error"] = {"code": f"exit_{job.exit_code}", "message": job.error or job.status}
    return body
