"""Memory and speed options: checked before loading, applied once after, reported honestly.

Which options a family can honour is declared on the family (`Family.optimizations`) and checked
by the registry; this module checks what depends on the machine, applies the options in a safe
order and records what actually took effect.
"""

from __future__ import annotations

from typing import Any

from vidgen.config.schema import OptimizationConfig
from vidgen.errors import ConfigError


def check(opt: OptimizationConfig, device: str) -> None:
    """Reject combinations that cannot work on this machine, before any weights load."""
    if opt.offload != "none" and not device.startswith("cuda"):
        # accelerate's offload hooks move weights to an accelerator and raise without one.
        raise ConfigError(f"--offload {opt.offload} needs a CUDA device, but this run is on {device}; drop --offload.")
    if opt.offload == "sequential" and opt.compile:
        raise ConfigError("--compile cannot be combined with --offload sequential (weights move per layer); drop one.")


def apply(pipe: Any, opt: OptimizationConfig, device: str) -> dict[str, Any]:
    """Apply the options to a freshly loaded pipeline; returns what was requested and applied."""
    import torch

    applied: list[str] = []
    if opt.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
        applied.append("offload=model")
    elif opt.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        applied.append("offload=sequential")
    elif opt.offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
        )
        applied.append("offload=group")
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if opt.vae_tiling and getattr(vae, "use_tiling", None) is not None:
        vae.enable_tiling()
        applied.append("vae_tiling")
    if opt.vae_slicing and getattr(vae, "use_slicing", None) is not None:
        vae.enable_slicing()
        applied.append("vae_slicing")
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if opt.forward_chunking and hasattr(denoiser, "enable_forward_chunking"):
        # chunk_size=1 over the frame axis, as diffusers' ModelScope guide does.
        denoiser.enable_forward_chunking(chunk_size=1, dim=1)
        applied.append("forward_chunking")
    if opt.decode_chunk_size is not None:
        # A __call__ argument: the family passes it (the registry checked that it takes it).
        applied.append(f"decode_chunk_size={opt.decode_chunk_size}")
    if opt.compile and denoiser is not None:
        # In place, so offload hooks keep pointing at the module they wrap (diffusers #4399).
        denoiser.compile()
        applied.append("compile")
    return {"requested": opt.model_dump(), "applied": applied, "device": device}
