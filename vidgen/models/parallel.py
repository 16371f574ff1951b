"""One video on several GPUs: context (sequence) parallelism through diffusers' ContextParallelConfig.

`--gpus N` either joins the world a launcher made (torchrun and `accelerate launch` set RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) or starts one: vidgen runs itself N times
with those variables, as `torchrun --standalone --nproc-per-node N` would, but keeps control of
what the user sees: rank 0's output, and when any rank fails, one line and one exit code for all.

Every rank loads the same pipeline, seeds the same generator (so all start from the same latents),
and runs each denoiser split along the sequence; only rank 0 encodes and writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vidgen.core.errors import ConfigError, ExitCode, VidgenError

# Backends diffusers lets run context parallel (registered with supports_context_parallel).
CP_BACKENDS = (
    "native",
    "_native_cudnn",
    "_native_flash",
    "_native_npu",
    "flash",
    "flash_hub",
    "flash_varlen_hub",
    "_flash_3_hub",
    "_flash_3_varlen_hub",
    "sage",
    "sage_hub",
)
# Of those, the ones whose kernels return the log-sum-exp that ring attention merges blocks with
# (native SDPA and NPU raise "does not support return_lse").
RING_BACKENDS = tuple(name for name in CP_BACKENDS if name not in ("native", "_native_npu"))
# Set by vidgen's own launcher in the processes it starts: errors go to this folder (one JSON file
# per failing rank) and the launcher prints the one line, instead of N ranks printing theirs.
ERRORS_ENV = "VIDGEN_CP_ERRORS"
# Test only: let --gpus run as gloo processes on a machine without CUDA (see `_cpu_device_count`).
CPU_TEST_ENV = "VIDGEN_TEST_CPU_CONTEXT_PARALLEL"


class RankError(VidgenError):
    """The error a rank of a --gpus run ended with, reported once by the launcher."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[assignment]


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from a launcher's environment; (0, 1, 0) alone."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    return world()[0]


def cpu_test() -> bool:
    return os.environ.get(CPU_TEST_ENV, "") not in ("", "0")


def degrees(opt: Any) -> tuple[int, int]:
    """(ulysses_degree, ring_degree) of the run's --context-parallel over --gpus."""
    if opt.context_parallel == "ring":
        return 1, opt.gpus
    if opt.context_parallel == "unified":
        return opt.gpus // (opt.ring_degree or 1), opt.ring_degree or 1
    return opt.gpus, 1


def check(opt: Any, device: str, planning: bool = False) -> None:
    """What --gpus and --context-parallel need, checked before anything loads. `planning`: a
    --vram plan for a GPU machine (a --dry-run), so this machine's devices do not count."""
    if opt.gpus <= 1:
        if opt.context_parallel != "ulysses" or opt.ring_degree is not None:
            raise ConfigError("--context-parallel and --ring-degree split one video over --gpus N; add --gpus N.")
        return
    if opt.ring_degree is not None and opt.context_parallel != "unified":
        raise ConfigError("--ring-degree sets the ring part of --context-parallel unified; drop it or add that.")
    if opt.context_parallel == "unified":
        ring = opt.ring_degree
        if ring is None or ring < 2 or opt.gpus % ring or opt.gpus // ring < 2:
            splits = [r for r in range(2, opt.gpus) if opt.gpus % r == 0 and opt.gpus // r >= 2]
            choices = ", ".join(f"--ring-degree {r} (ulysses {opt.gpus // r})" for r in splits)
            raise ConfigError(
                f"--context-parallel unified over --gpus {opt.gpus} needs --ring-degree R with R and {opt.gpus}/R "
                f"both at least 2; " + (f"choose {choices}." if choices else "use ulysses or ring for this count.")
            )
    backend = opt.attention_backend or "native"
    if opt.context_parallel in ("ring", "unified") and backend not in RING_BACKENDS:
        raise ConfigError(
            f"--context-parallel {opt.context_parallel} merges attention blocks by their log-sum-exp, which the "
            f"{backend} attention backend does not return; add --attention-backend flash, _native_cudnn (cudnn) "
            "or sage (or flash_hub, sage_hub...), or use --context-parallel ulysses."
        )
    if backend not in CP_BACKENDS:
        raise ConfigError(
            f"--attention-backend {backend} cannot run context parallel; use one of {', '.join(CP_BACKENDS)}."
        )
    if opt.compile:
        # diffusers' own CLI (diffusers-cli run) skips compile with context parallelism: its
        # hooks split and gather tensors around the blocks that compile would trace.
        raise ConfigError(
            "--compile cannot be combined with --gpus: diffusers does not compile context-parallel models; drop one."
        )
    if opt.offload != "none":
        raise ConfigError(
            f"--offload {opt.offload} cannot be combined with --gpus: every rank keeps the whole model "
            "on its GPU; drop --offload."
        )
    # What this machine can run, once the combination itself makes sense.
    if not device.startswith("cuda") and not cpu_test():
        raise ConfigError(
            f"--gpus {opt.gpus} splits one video over {opt.gpus} CUDA devices, but this run is on {device}; "
            "drop --gpus (context parallelism needs one GPU per process)."
        )
    size = world()[1]
    if size > 1 and size != opt.gpus:
        raise ConfigError(
            f"--gpus {opt.gpus} was asked for inside a launcher world of {size} processes; "
            f"pass --gpus {size} or launch {opt.gpus}."
        )
    if size <= 1 and device.startswith("cuda") and not planning:
        import torch

        count = torch.cuda.device_count()
        if opt.gpus > count:
            raise ConfigError(
                f"--gpus {opt.gpus}: this machine has {count} CUDA device(s); use --gpus {count} "
                "or start one process per GPU on several machines with torchrun."
            )


def device(base: str) -> str:
    """This rank's device: its own GPU (LOCAL_RANK), or the CPU in the test setting."""
    if base.startswith("cuda"):
        return f"cuda:{world()[2]}"
    return base


def init(device_name: str) -> None:
    """Join the process group (nccl on GPUs, gloo on CPU) once per process."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device_name.startswith("cuda"):
        torch.cuda.set_device(torch.device(device_name))
        dist.init_process_group("nccl", device_id=torch.device(device_name))
    else:
        dist.init_process_group("gloo")


def finish() -> None:
    with contextlib.suppress(Exception):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _cpu_device_count() -> Any:
    """diffusers 0.42.1 places a context-parallel model on `rank % torch.accelerator.device_count()`,
    which divides by zero without an accelerator. Only the CPU test setting gets here (production
    refuses --gpus without CUDA): it counts the CPU as one device while diffusers builds the mesh."""
    import torch

    real = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.accelerator.device_count = real  # type: ignore[assignment]


def apply(models: dict[str, Any], opt: Any, call: Any) -> dict[str, Any]:
    """enable_parallelism with ContextParallelConfig on every denoiser (Wan 2.2 has two);
    returns what the sidecar records."""
    import warnings

    from diffusers import ContextParallelConfig

    # diffusers' hooks call a torch collective that torch has renamed; nothing for a user to do.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"diffusers\.hooks\.context_parallel")

    ulysses, ring = degrees(opt)
    for name, model in models.items():
        heads = getattr(model.config, "num_attention_heads", None)
        if ulysses > 1 and isinstance(heads, int) and heads % ulysses:
            good = [d for d in range(2, heads + 1) if heads % d == 0]
            raise ConfigError(
                f"--context-parallel ulysses splits attention heads over the GPUs, and {name} has {heads} heads, "
                f"which {ulysses} does not divide; use --gpus {' or '.join(map(str, good)) or 1}, "
                "or --context-parallel ring."
            )
        config = ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring)
        guard = _cpu_device_count() if cpu_test() and not _has_accelerator() else contextlib.nullcontext()
        shown = {"ContextParallelConfig": {"ulysses_degree": ulysses, "ring_degree": ring}}
        with guard:
            call(
                f"context_parallel={opt.context_parallel}",
                f"{name}.enable_parallelism",
                lambda config, model=model, real=config: model.enable_parallelism(config=real),
                config=shown,
            )
    return {
        "world_size": world()[1],
        "context_parallel": opt.context_parallel,
        "ulysses_degree": ulysses,
        "ring_degree": ring,
        "attention_backend": opt.attention_backend or "native",
        "denoisers": list(models),
    }


def _has_accelerator() -> bool:
    import torch

    return torch.accelerator.device_count() > 0


# -- the launcher -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def report_error(message: str, code: int) -> bool:
    """In a rank vidgen started: leave the error for the launcher (True: it prints it)."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder:
        return False
    body = {"rank": rank(), "code": int(code), "message": message, "time": time.time()}
    with contextlib.suppress(OSError):
        Path(folder, f"rank{rank()}.json").write_text(json.dumps(body), encoding="utf-8")
    return True


def launch(count: int, argv: list[str] | None = None) -> None:
    """Run this vidgen command as `count` ranks on this machine and wait for them. Rank 0's
    stdout and stderr are the user's; the others' stderr is kept aside. When one rank fails,
    the rest are stopped (they would wait forever in a collective) and the first error is
    raised here, so the user sees one line and one exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="vidgen-cp-") as folder:
        base = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(count),
            "LOCAL_WORLD_SIZE": str(count),
            ERRORS_ENV: folder,
        }
        procs, logs = [], []
        for index in range(count):
            env = {**base, "RANK": str(index), "LOCAL_RANK": str(index)}
            log = open(Path(folder, f"rank{index}.log"), "wb")  # noqa: SIM115 (closed below)
            logs.append(log)
            out = None if index == 0 else subprocess.DEVNULL
            err = None if index == 0 else log
            procs.append(subprocess.Popen([sys.executable, "-m", "vidgen", *argv], env=env, stdout=out, stderr=err))
        try:
            failed = _wait(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for log in logs:
                log.close()
        if failed is None:
            return
        errors = {}
        for path in Path(folder).glob("rank*.json"):
            with contextlib.suppress(OSError, ValueError):
                error = json.loads(path.read_text(encoding="utf-8"))
                errors[int(error["rank"])] = error
        # A rank killed by a signal (the OOM killer, a kill) cannot say why; the others then fail
        # on the broken connection. The killed one is the cause, and the line names it.
        for index, code in failed:
            if code < 0 and index not in errors:
                name = _signal_name(-code)
                raise RankError(
                    f"rank {index} of {count} was killed by {name}; the other ranks were stopped (out of host "
                    "memory, or a kill from outside, is the usual cause).",
                    ExitCode.ERROR,
                )
        if errors:
            first = min(errors.values(), key=lambda error: error["time"])
            raise RankError(first["message"], first["code"])
        index, code = failed[0]
        tail = Path(folder, f"rank{index}.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        detail = f": {tail[-1]}" if tail else ""
        raise RankError(f"rank {index} of {count} ended with exit code {code}{detail}", code if code > 0 else 1)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _wait(procs: list[subprocess.Popen]) -> list[tuple[int, int]] | None:
    """None when every rank succeeded; else (rank, exit code) of each that failed on its own
    (before the launcher stopped the rest), in rank order."""
    while True:
        codes = [proc.poll() for proc in procs]
        bad = [index for index, code in enumerate(codes) if code not in (None, 0)]
        if bad:
            # The others may still be writing their own error (the same check fails everywhere):
            # a moment for that, then they are stopped.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
                time.sleep(0.05)
            own = [(index, proc.returncode) for index, proc in enumerate(procs) if proc.poll() not in (None, 0)]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
                time.sleep(0.05)
            return own
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.05)
