"""Memory and speed options: checked before loading, applied once after, reported honestly.

Which options a family can honour is declared on the family (`Family.optimizations`) and checked
by the registry; this module rejects combinations that cannot work (on this machine, or at
all), applies the options in an order that works, and records each diffusers call it made so
the sidecar says what took effect and a plain diffusers script can repeat it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

from vidgen.config.flags import flag
from vidgen.config.schema import OptimizationConfig
from vidgen.core.errors import ConfigError

# --quantize mode -> (the package it needs, the torchao config class or bitsandbytes kwargs).
# torchao's weight-only configs are what diffusers' CogVideoX guide uses and run on CPU too; nf4
# is bitsandbytes', which diffusers only loads on a GPU.
QUANTIZATION: dict[str, tuple[str, str]] = {
    "int8": ("torchao", "Int8WeightOnlyConfig"),
    "fp8": ("torchao", "Float8WeightOnlyConfig"),
    "nf4": ("bitsandbytes", "nf4"),
}
# Cache configs: --cache name -> diffusers config class.
CACHES = {
    "first-block": "FirstBlockCacheConfig",
    "pab": "PyramidAttentionBroadcastConfig",
    "faster": "FasterCacheConfig",
    "taylorseer": "TaylorSeerCacheConfig",
    "magcache": "MagCacheConfig",
}
FIRST_BLOCK_THRESHOLD = 0.05
# Backend name prefix -> the package it needs (diffusers raises at the first attention otherwise).
BACKEND_PACKAGES = (
    ("_flash_3", "flash_attn_interface"),
    ("_flash_varlen_3", "flash_attn_interface"),
    ("flash", "flash_attn"),
    ("sage", "sageattention"),
    ("_sage", "sageattention"),
    ("xformers", "xformers"),
)
# Attention backends that run without a CUDA device.
CPU_BACKENDS = {"native", "_native_math", "flex"}


def _needs(option: str, other: str, reason: str) -> ConfigError:
    return ConfigError(f"{option} cannot be combined with {other}: {reason}; drop one.")


def check(opt: OptimizationConfig, device: str) -> None:
    """Reject combinations that cannot work, before any weights load. `device` is where the
    run will happen (`cuda` when planning for another card with --vram)."""
    cuda = device.startswith("cuda")
    if opt.offload != "group":
        for name in ("offload_type", "offload_stream"):
            if getattr(opt, name) not in (None, False):
                raise ConfigError(
                    f"{flag(f'optimization.{name}')} tunes --offload group; add --offload group or drop it."
                )
    if opt.memory == "auto" and opt.offload != "none":
        raise ConfigError("--memory auto chooses --offload itself; drop --offload or --memory auto.")
    if opt.vram_gb is not None and opt.memory != "auto":
        raise ConfigError("--vram is the budget --memory auto plans for; add --memory auto or drop --vram.")
    if opt.offload == "sequential" and opt.compile:
        raise _needs("--compile", "--offload sequential", "weights move layer by layer, so nothing stays to compile")
    if opt.offload == "sequential" and opt.quantize:
        raise _needs("--quantize", "--offload sequential", "accelerate cannot move quantized layers one at a time")
    if opt.quantize and opt.fp8_storage:
        raise _needs("--fp8-storage", "--quantize", "both store the denoiser's weights in 8 bits or less")
    kind, _, how = (opt.cache or "").partition(":")
    if opt.mag_ratios is not None and kind != "magcache":
        raise ConfigError("--mag-ratios are MagCache's; add --cache magcache or drop --mag-ratios.")
    if opt.mag_ratios is not None and how == "calibrate":
        raise _needs("--mag-ratios", "--cache magcache:calibrate", "calibration measures the ratios itself")
    if opt.attention_slicing and opt.attention_backend:
        raise _needs("--attention-slicing", "--attention-backend", "slicing replaces the attention processors")
    # What this machine can run, once the combination itself makes sense.
    if opt.offload != "none" and not cuda:
        # accelerate's offload hooks move weights to an accelerator and raise without one.
        raise ConfigError(f"--offload {opt.offload} needs a CUDA device, but this run is on {device}; drop --offload.")
    if opt.quantize:
        package, _kind = QUANTIZATION[opt.quantize]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"--quantize {opt.quantize} needs the {package} package: pip install 'vidgen[quantize]' "
                f"(or pip install {package})."
            )
        if opt.quantize == "nf4" and not cuda:
            raise ConfigError("--quantize nf4 (bitsandbytes) needs a CUDA device; on CPU use --quantize int8.")
    if opt.attention_backend and not cuda and opt.attention_backend not in CPU_BACKENDS:
        raise ConfigError(
            f"--attention-backend {opt.attention_backend} needs a CUDA device; on CPU only "
            f"{', '.join(sorted(CPU_BACKENDS))} run."
        )


def check_backend(name: str) -> None:
    """An attention backend name diffusers knows (imports diffusers: call after the cheap checks)."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = [backend.value for backend in AttentionBackendName]
    if name not in names:
        public = ", ".join(n for n in names if not n.startswith("_"))
        raise ConfigError(f"--attention-backend {name} is not a diffusers attention backend; known: {public}.")
    if name.endswith("_hub") and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        # Hub-kernel backends download their kernel when the model first attends.
        raise ConfigError(f"--attention-backend {name} fetches its kernel from the Hugging Face Hub, which is offline.")
    package = "kernels" if name.endswith("_hub") else None
    package = package or next((pkg for prefix, pkg in BACKEND_PACKAGES if name.startswith(prefix)), None)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--attention-backend {name} needs the {package} package; pip install {package}.")


def quantization_config(opt: OptimizationConfig, components: list[str], dtype: Any) -> tuple[Any, dict[str, Any]]:
    """(PipelineQuantizationConfig, its JSON-able description) for --quantize on `components`."""
    from diffusers import PipelineQuantizationConfig

    package, kind = QUANTIZATION[opt.quantize or ""]
    if package == "bitsandbytes":
        kwargs = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}
        config = PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit", quant_kwargs=kwargs, components_to_quantize=components
        )
        shown = {**kwargs, "bnb_4bit_compute_dtype": str(dtype).removeprefix("torch.")}
        return config, {
            "quant_backend": "bitsandbytes_4bit",
            "quant_kwargs": shown,
            "components_to_quantize": components,
        }
    # torchao goes through quant_mapping: diffusers refuses quant_backend="torchao" because its
    # TorchAoConfig and transformers' take different arguments (found with diffusers 0.42.1).
    import diffusers
    import torchao.quantization
    import transformers

    mapping = {}
    for name in components:
        # Text encoders are transformers models and take transformers' config class.
        library = transformers if name.startswith("text_encoder") else diffusers
        mapping[name] = library.TorchAoConfig(getattr(torchao.quantization, kind)())
    described = {name: f"{'transformers' if name.startswith('text_encoder') else 'diffusers'}.TorchAoConfig({kind}())"
                 for name in components}  # fmt: skip
    return PipelineQuantizationConfig(quant_mapping=mapping), {"quant_mapping": described}


def keep_calibration(module: Any) -> None:
    """MagCache's calibration (diffusers 0.42.1) prints the measured ratios to stdout, where
    vidgen prints the output path for scripts, and forgets them. Keep them on the denoiser
    instead (`vidgen_mag_ratios`, one list per run) and keep stdout clean."""
    import contextlib
    import io

    from diffusers.hooks.mag_cache import MagCacheBlockHook

    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        for hook in registry.hooks.values() if registry is not None else ():
            if not (isinstance(hook, MagCacheBlockHook) and hook.is_tail):
                continue
            measure, advance = hook._perform_calibration_step, hook._advance_step

            def measured(state: Any, residual: Any, measure: Any = measure) -> None:
                measure(state, residual)
                if len(state.calibration_ratios) == 1:  # the first step of a run
                    module.vidgen_mag_ratios = []
                module.vidgen_mag_ratios.append(float(state.calibration_ratios[-1]))

            def advanced(state: Any, advance: Any = advance) -> None:
                with contextlib.redirect_stdout(io.StringIO()):
                    advance(state)

            hook._perform_calibration_step, hook._advance_step = measured, advanced


def calibrated(pipe: Any, denoisers: Any) -> dict[str, list[float]]:
    """Denoiser name -> the MagCache ratios its last run measured (--cache magcache:calibrate)."""
    found = {}
    for name in denoisers:
        ratios = getattr(getattr(pipe, name, None), "vidgen_mag_ratios", None)
        if ratios:
            found[name] = list(ratios)
    return found


def _cache_config(pipe: Any, spec: str) -> tuple[Any, dict[str, Any]]:
    """The diffusers cache config for --cache, and how the sidecar shows it. PAB and FasterCache
    skip work by timestep, which they read from the running pipeline."""
    import diffusers

    name, _, threshold = spec.partition(":")
    cls = getattr(diffusers, CACHES[name])
    if name == "first-block":
        kwargs: dict[str, Any] = {"threshold": float(threshold) if threshold else FIRST_BLOCK_THRESHOLD}
        return cls(**kwargs), kwargs
    if name == "taylorseer":
        # diffusers' defaults: full steps first, then one full step every 5 with first-order
        # Taylor predictions between.
        kwargs = {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1}
        return cls(**kwargs), kwargs
    if name == "pab":
        # diffusers' CogVideoX example: reuse spatial attention every second block mid-schedule.
        kwargs = {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)}
    else:
        # diffusers' CogVideoX FasterCache test settings (guided runs only: see CogVideoX.check).
        kwargs = {
            "spatial_attention_block_skip_range": 2,
            "spatial_attention_timestep_skip_range": (-1, 681),
            "low_frequency_weight_update_timestep_range": (99, 641),
            "high_frequency_weight_update_timestep_range": (-1, 301),
            "spatial_attention_block_identifiers": ["transformer_blocks"],
            "tensor_format": "BFCHW",
        }
    callbacks = {"current_timestep_callback": lambda: pipe.current_timestep}
    shown = {"current_timestep_callback": "lambda: pipe.current_timestep"}
    if name == "faster":
        callbacks["attention_weight_callback"] = lambda _: 0.3
        shown["attention_weight_callback"] = "lambda _: 0.3"
    return cls(**kwargs, **callbacks), {**kwargs, **shown}


def denoiser(pipe: Any) -> Any:
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def _default_attention() -> None:
    """diffusers' `set_attention_backend` also makes that backend the whole process's default,
    so a pipeline loaded later in the same process (the next batch group) silently used it: a
    Wan model compiled after a flex-attention job failed in inductor. Each pipeline starts from
    diffusers' own default (DIFFUSERS_ATTN_BACKEND) and sets its backend on its own modules."""
    from diffusers.models import attention_dispatch as dispatch

    dispatch._AttentionBackendRegistry.set_active_backend(
        dispatch.AttentionBackendName(dispatch.DIFFUSERS_ATTN_BACKEND)
    )


class _Record:
    """What `apply` did: the labels of the options that took effect, and each diffusers call
    with its arguments as the sidecar shows them (dtypes and devices by name), so a plain
    diffusers script can repeat them."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def __call__(self, label: str, method: str, fn: Any, **kwargs: Any) -> None:
        """Call `fn(**kwargs)` and record it as `method` under `label`."""
        import torch

        fn(**kwargs)
        self.took(label)
        shown = {k: (str(v).removeprefix("torch.") if isinstance(v, (torch.dtype, torch.device)) else v)
                 for k, v in kwargs.items()}  # fmt: skip
        self.calls.append({"method": method, "kwargs": shown})

    def took(self, label: str) -> None:
        if label not in self.applied:
            self.applied.append(label)


def apply(
    pipe: Any,
    opt: OptimizationConfig,
    device: str,
    dtype: str,
    denoisers: tuple[str, ...] = (),
    cache_config: Callable[[str], tuple[Any, dict[str, Any]] | None] | None = None,
) -> dict[str, Any]:
    """Apply the options to a freshly loaded pipeline, in an order that composes: weight storage
    and attention first (they swap hooks and processors), then VAE savers, then placement
    (offload hooks wrap whatever is there), then compile last. `denoisers` names the pipeline's
    denoising components (Wan 2.2 A14B has two); the denoiser options act on each of them.
    Returns what was requested, what was applied and the exact calls made."""
    record = _Record()
    if not denoisers:
        denoisers = tuple(name for name in ("transformer", "unet") if getattr(pipe, name, None) is not None)[:1]
    models = {part: getattr(pipe, part) for part in denoisers}
    _storage_and_attention(pipe, opt, dtype, models, record)
    for name, each in models.items():
        if not opt.cache:
            break
        _cache(pipe, opt.cache, name, each, cache_config, record)
    _savers(pipe, opt, models, record)
    _place(pipe, opt, device, record)
    parallel = None
    if opt.gpus > 1:
        # On the device, after the attention backend (diffusers checks it can run split).
        from vidgen.models import parallel as cp

        parallel = cp.apply(models, opt, record)
    for name, each in models.items():
        if not opt.compile:
            break
        # In place, so offload hooks keep pointing at the module they wrap (diffusers #4399);
        # only the repeated blocks where the model declares them: the same speed, compiled
        # many times faster.
        if getattr(each, "_repeated_blocks", None):
            record("compile=regional", f"{name}.compile_repeated_blocks", each.compile_repeated_blocks)
        else:
            record("compile", f"{name}.compile", each.compile)
    done = {"requested": opt.model_dump(), "applied": record.applied, "calls": record.calls, "device": device}
    if parallel is not None:
        done["parallel"] = parallel  # world size, degrees, attention backend
    return done


def _storage_and_attention(
    pipe: Any, opt: OptimizationConfig, dtype: str, models: dict[str, Any], record: _Record
) -> None:
    """fp8 weight storage and the attention options, first: they swap hooks and processors
    that the later options wrap."""
    import torch

    for name, each in models.items():
        if opt.fp8_storage:
            record(
                "fp8_storage",
                f"{name}.enable_layerwise_casting",
                each.enable_layerwise_casting,
                storage_dtype=torch.float8_e4m3fn,
                compute_dtype=getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype]),
            )
    if opt.attention_slicing:
        record("attention_slicing", "enable_attention_slicing", pipe.enable_attention_slicing)
    _default_attention()
    for name, each in models.items():
        if opt.attention_backend:
            record(
                f"attention_backend={opt.attention_backend}",
                f"{name}.set_attention_backend",
                each.set_attention_backend,
                backend=opt.attention_backend,
            )


def _cache(
    pipe: Any,
    spec: str,
    name: str,
    model: Any,
    cache_config: Callable[[str], tuple[Any, dict[str, Any]] | None] | None,
    record: _Record,
) -> None:
    """--cache on one denoiser: the family's config for it when it has one, else vidgen's."""
    blocks = getattr(model, "transformer_blocks", None) or getattr(model, "blocks", ())
    if spec.startswith("first-block") and len(blocks) < 2:
        raise ConfigError(
            "--cache first-block reuses the output when the first block's barely changes, and this model has "
            "a single block; use --cache pab or --cache faster."
        )
    # One config per denoiser: a cache keeps state, and two experts must not share it.
    config, shown = (cache_config(spec) if cache_config else None) or _cache_config(pipe, spec)
    model.enable_cache(config)
    if getattr(config, "calibrate", False):
        keep_calibration(model)
    record.took(f"cache={spec}")
    record.calls.append({"method": f"{name}.enable_cache", "kwargs": {"config": {type(config).__name__: shown}}})


def _savers(pipe: Any, opt: OptimizationConfig, models: dict[str, Any], record: _Record) -> None:
    """The memory savers that change how the model computes, not where it lives: forward
    chunking of the (first) denoiser, VAE tiling and slicing, the decode chunk."""
    if opt.forward_chunking:
        part = next(iter(models), "transformer")
        model = models.get(part)
        # chunk_size=1 over the frame axis, as diffusers' ModelScope guide does.
        record(
            "forward_chunking", f"{part}.enable_forward_chunking", model.enable_forward_chunking, chunk_size=1, dim=1
        )
    vae = getattr(pipe, "vae", None)
    if opt.vae_tiling:
        record("vae_tiling", "vae.enable_tiling", vae.enable_tiling)
    if opt.vae_slicing:
        record("vae_slicing", "vae.enable_slicing", vae.enable_slicing)
    if opt.decode_chunk_size is not None:
        # A __call__ argument: the family passes it (the registry checked that it takes it).
        record.applied.append(f"decode_chunk_size={opt.decode_chunk_size}")


def _place(pipe: Any, opt: OptimizationConfig, device: str, record: _Record) -> None:
    """Where the weights live: on the device, or offloaded to CPU RAM (whole models, layer by
    layer, or in groups). After the other options: offload hooks wrap whatever is there."""
    import torch

    if opt.offload == "model":
        record("offload=model", "enable_model_cpu_offload", pipe.enable_model_cpu_offload, device=device)
    elif opt.offload == "sequential":
        record("offload=sequential", "enable_sequential_cpu_offload", pipe.enable_sequential_cpu_offload, device=device)
    elif opt.offload == "group":
        level = f"{opt.offload_type or 'block'}_level"
        kwargs: dict[str, Any] = {
            "onload_device": torch.device(device),
            "offload_device": torch.device("cpu"),
            "offload_type": level,
            "use_stream": opt.offload_stream,
            # The VAE is small, and tiled decoding with streamed groups trips a device mismatch
            # (diffusers' group offloading docs); it stays on the GPU. So do the models diffusers
            # refuses to group-offload (`_supports_group_offloading = False`: MiniMax-H3's audio
            # VAE), which would otherwise fail the call, as they do DiffusionPipeline's own.
            "exclude_modules": ["vae", *_not_group_offloaded(pipe)],
        }
        if level == "block_level":
            # One block per group, as diffusers recommends with streams.
            kwargs["num_blocks_per_group"] = 1
        label = f"offload=group({level}{', stream' if opt.offload_stream else ''})"
        record(label, "enable_group_offload", getattr(pipe, "enable_group_offload", None) or _offloader(pipe), **kwargs)
    else:
        pipe.to(device)


def _not_group_offloaded(pipe: Any) -> list[str]:
    """The pipeline's models that diffusers does not group-offload (small audio VAEs)."""
    return sorted(
        name
        for name, part in _modules(pipe).items()
        if name != "vae" and getattr(type(part), "_supports_group_offloading", True) is False
    )


def _modules(pipe: Any) -> dict[str, Any]:
    import torch

    return {name: part for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}


def _offloader(pipe: Any) -> Callable[..., None]:
    """DiffusionPipeline.enable_group_offload for a ModularPipeline, which has none: the same
    steps over its components (group offload where a model has it, diffusers' hook on the rest;
    the excluded ones on the device), so the sidecar's call means the same on both."""

    def enable_group_offload(exclude_modules: list[str] | None = None, **kwargs: Any) -> None:
        from diffusers.hooks import apply_group_offloading

        for name, part in _modules(pipe).items():
            if name in (exclude_modules or []):
                part.to(kwargs["onload_device"])
            elif hasattr(part, "enable_group_offload"):
                part.enable_group_offload(**kwargs)
            else:
                apply_group_offloading(module=part, **kwargs)

    return enable_group_offload
