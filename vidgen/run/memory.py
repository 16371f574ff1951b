"""The memory planner: estimate a run's peak GPU memory before anything loads, pick the fastest
plan that fits (`--memory auto`), and name the next cheaper plan after an out-of-memory.

Plans form a ladder, fastest first: everything on the GPU -> model offload -> model offload with
cheaper decoding (tiling, slicing, chunks) -> group offload with streams -> sequential offload.
Only the options a family honours appear in its ladder. Estimates come from parameter counts
(read from the safetensors headers when the weights are on disk, from the published sizes when
not), the dtype, and the latent grid of the requested frames and size; the constants are
calibrated against diffusers' published measurements (see benchmarks/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.config.flags import flag
from vidgen.config.layers import Resolved
from vidgen.config.schema import OptimizationConfig, RunConfig
from vidgen.families.base import Family, component_dtypes, denoisers, quantized_components, workflow_components
from vidgen.models.components import CONTROLNETS, INDEX_FILES, hub_revision, safetensors_header
from vidgen.run import warm

GIB = 1024**3
BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0}
# Bytes per parameter of a quantized denoiser (nf4 keeps a few scales: ~0.55).
QUANTIZED = {"int8": 1.0, "fp8": 1.0, "nf4": 0.55}
# Share of the planning budget a plan may use: the allocator fragments, kernels need workspace.
HEADROOM = 0.9
# The fields a plan sets; anything else in `optimization` is the user's and left alone.
PLAN_FIELDS = (
    "offload",
    "offload_type",
    "offload_stream",
    "vae_tiling",
    "vae_slicing",
    "forward_chunking",
    "decode_chunk_size",
)
_NO_GROUP = {"offload_type": None, "offload_stream": False}
# --enhance-prompt's LLM, among the weights; and what writing a rewrite takes beside them (the
# KV cache and activations of a system prompt and reply: a few thousand tokens).
ENHANCER = "enhancer"
ENHANCE_WORKING = 0.5 * GIB


@dataclass
class Rung:
    name: str
    settings: dict[str, Any]

    def flags(self) -> str:
        """The options that select this plan, as typed on the command line."""
        parts = []
        for key, value in self.settings.items():
            name = flag(f"optimization.{key}")
            if value is True:
                parts.append(name)
            elif value not in (None, False):
                parts.append(f"{name} {value}")
        if len(parts) > 1 and parts[0] == "--offload none":
            parts.pop(0)  # the savers alone say it
        return " ".join(parts) or "--offload none"


@dataclass
class Estimate:
    peak: float  # bytes
    weights: dict[str, float]  # component -> bytes
    phases: dict[str, float]  # encode / denoise / decode -> bytes at that phase's peak


@dataclass
class Sizes:
    params: dict[str, float]  # component -> parameter count
    source: str  # where the counts came from
    notes: list[str] = field(default_factory=list)
    # component -> bytes it holds whatever the dtype: a GGUF file's weights stay quantized.
    fixed: dict[str, float] = field(default_factory=dict)
    # Bytes a denoising step needs beyond activations: GGUF weights dequantized as they run.
    working: float = 0.0


def decode_savers(family: Family, cfg: RunConfig) -> dict[str, Any]:
    """The decode/activation savers this family honours that change its memory."""
    opts = family.takes.optimizations
    frames = cfg.sampling.num_frames or 16
    settings: dict[str, Any] = {}
    if "vae_tiling" in opts:
        settings["vae_tiling"] = True
    sliced = cfg.model_copy(update={"optimization": cfg.optimization.model_copy(update={"vae_slicing": True})})
    if "vae_slicing" in opts and family.memory.decode_frames(sliced, frames) < family.memory.decode_frames(cfg, frames):
        settings["vae_slicing"] = True
    elif "decode_chunk_size" in opts:
        settings["decode_chunk_size"] = 2
    if "forward_chunking" in opts:
        settings["forward_chunking"] = True
    return settings


def decode_only_savers(family: Family, cfg: RunConfig) -> Rung:
    """The VAE savers of decode_savers, as `vidgen decode` takes them (no denoiser options)."""
    savers = {key: value for key, value in decode_savers(family, cfg).items() if key != "forward_chunking"}
    return Rung("decode", savers)


def ladder(family: Family, cfg: RunConfig, cuda: bool = True) -> list[Rung]:
    """The plans for this family, fastest first. On a CPU nothing can be offloaded, so only
    cheaper decoding is left."""
    cheaper = decode_savers(family, cfg)
    if not cuda or cfg.optimization.gpus > 1:
        # --gpus: every rank keeps the whole model on its GPU (offload is refused with it).
        rungs = [Rung("none", {"offload": "none"})]
        return rungs + ([Rung("cheaper-decode", {"offload": "none", **cheaper})] if cheaper else [])
    rungs = [Rung("none", {"offload": "none", **_NO_GROUP})]
    if family.modes[cfg.mode].model_offload:
        rungs.append(Rung("model", {"offload": "model", **_NO_GROUP}))
        if cheaper:
            rungs.append(Rung("model+cheaper-decode", {"offload": "model", **_NO_GROUP, **cheaper}))
    rungs.append(Rung("group", {"offload": "group", "offload_type": "block", "offload_stream": True, **cheaper}))
    if family.modes[cfg.mode].sequential_offload:
        rungs.append(Rung("sequential", {"offload": "sequential", **_NO_GROUP, **cheaper}))
    return rungs


def apply(opt: OptimizationConfig, rung: Rung) -> OptimizationConfig:
    """`opt` with the rung's settings; savers the user turned on stay on."""
    update = dict(rung.settings)
    for key, value in rung.settings.items():
        current = getattr(opt, key)
        if value is None or value is False:
            continue
        if key == "decode_chunk_size" and current is not None:
            update[key] = min(current, value)
    for key in ("vae_tiling", "vae_slicing", "forward_chunking"):
        if getattr(opt, key):
            update[key] = True
    return opt.model_copy(update=update)


def level(family: Family, cfg: RunConfig, cuda: bool) -> int:
    """Where the config's own settings sit on the ladder: the last rung they already cover."""
    rungs = ladder(family, cfg, cuda)
    opt = cfg.optimization
    found = 0
    for index, rung in enumerate(rungs):
        if rung.settings["offload"] != opt.offload:
            continue
        savers = {key: value for key, value in rung.settings.items() if key not in ("offload", *_NO_GROUP)}
        if all(_covers(getattr(opt, key), value) for key, value in savers.items()):
            found = index
    return found


def _covers(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool):
        return bool(current) or not wanted
    return current is not None and current <= wanted


def next_rung(family: Family, cfg: RunConfig, cuda: bool) -> Rung | None:
    """The next cheaper plan after the config's own, or None at the bottom of the ladder."""
    rungs = ladder(family, cfg, cuda)
    index = level(family, cfg, cuda)
    return rungs[index + 1] if index + 1 < len(rungs) else None


# -- sizes --------------------------------------------------------------------------------


def _safetensors_params(files: list[Path]) -> float:
    """Parameters in safetensors files, from their JSON headers alone (no weights are read)."""
    total = 0.0
    for path in files:
        header = safetensors_header(path, "weights file")
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info["shape"])
    return total


def _weight_files(folder: Path, variant: str | None) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    tagged = [f for f in files if variant and f".{variant}." in f.name]
    # Without a variant, prefer the plain files over fp16/bf16 copies of the same weights.
    plain = [f for f in files if not any(f".{tag}." in f.name for tag in ("fp16", "bf16", "fp32"))]
    return tagged or plain or files


def _count_folder(folder: Path, variant: str | None) -> dict[str, float]:
    """component -> parameters for a diffusers pipeline folder (or one model folder)."""
    counts = {}
    if (folder / "config.json").is_file() and not (folder / "model_index.json").is_file():
        params = _safetensors_params(_weight_files(folder, variant))
        return {"": params} if params else {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _weight_files(sub, variant)
        if files:
            counts[sub.name] = _safetensors_params(files)
    return counts


def _local_folder(kind: str, where: str, revision: str | None) -> Path | None:
    """The folder holding a model's weights, without any network access."""
    if kind in ("dir", "tiny"):
        path = Path(where)
        if kind == "tiny":
            from vidgen.models import tiny

            path = tiny.folder(where.removeprefix(tiny.PREFIX))
        return path if path.is_dir() else None
    if kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            for marker in (*INDEX_FILES, "config.json"):
                found = try_to_load_from_cache(where, marker, revision=revision)
                if isinstance(found, str):
                    return Path(found).parent
        except Exception:  # a broken cache only costs the exact counts; the table remains
            return None
    return None


def sizes(family: Family, cfg: RunConfig, found: dict[str, tuple[str, str]]) -> Sizes:
    """Parameter counts of every component the run loads: exact from the weight files when
    they are on disk, else the published sizes."""
    table = family.memory.footprint.sizes
    params: dict[str, float] = {}
    sources: set[str] = set()
    notes: list[str] = []
    for name, (kind, where) in found.items():
        if name == "base_config":
            continue
        whole = name == "model"
        model_id = str((cfg.model.id or family.modes[cfg.mode].repo) if whole else getattr(cfg.model, name))
        if name == "controlnet":
            model_id = CONTROLNETS.get(model_id, model_id)
        local = _local_folder(kind, where, cfg.model.revision if whole else hub_revision(model_id)[1])
        counts = _count_folder(local, cfg.model.variant if whole else None) if local else {}
        if not whole:
            counts = {name: counts[""]} if "" in counts else {}
        elif "" in counts:
            # A denoiser-only checkpoint (FramePack's transformer): the rest is the published sizes.
            counts = {**table.get(model_id, {}), family.memory.footprint.denoiser: counts[""]}
        if counts:
            params.update(counts)
            sources.add("safetensors headers")
            continue
        if kind == "tiny":
            # Not built yet: a tiny model's weights are kilobytes, not its real namesake's gigabytes.
            sources.add("tiny model")
            continue
        published = table.get(model_id)
        if published is None:
            # Unknown id: plan with the family's reference checkpoint, and say so.
            reference = family.modes[cfg.mode].repo if whole else next((r for r, v in table.items() if name in v), "")
            published = table.get(reference, {})
            notes.append(f"the size of {model_id} is unknown until it is downloaded; planned with {reference}'s")
        params.update(published if whole else {name: published.get(name, 0.0)})
        sources.add("published sizes")
    loaded = workflow_components(family, cfg)
    if loaded is not None:
        # A modular model may hold components this run's workflow never loads.
        params = {name: count for name, count in params.items() if name in loaded}
    fixed, working = _files(family, cfg, params, sources, notes)
    for name, (source, published) in family.memory.extra_models(cfg).items():
        local = _extra_folder(source)
        counts = _count_folder(local, None) if local else {}
        if "" in counts:
            params[name] = counts[""]
            sources.add("safetensors headers")
        elif published:
            params[name] = published
            sources.add("published sizes")
        elif not source.startswith("tiny:"):
            notes.append(f"the size of {source} is unknown until it is downloaded; not counted")
    return Sizes(params, " + ".join(sorted(sources)), notes, fixed, working)


def _files(
    family: Family, cfg: RunConfig, params: dict[str, float], sources: set[str], notes: list[str]
) -> tuple[dict[str, float], float]:
    """Components from one file (--transformer FILE, --text-encoder FILE): their parameters
    from the file's header, a denoiser GGUF file's own bytes as what it holds, and its
    dequantization working set. A text encoder's GGUF is dequantized whole as it loads, so it
    holds its parameters in the run's dtype like a full-precision one."""
    from vidgen.models import checkpoints

    fixed, working = {}, 0.0
    for name, source in checkpoints.requested(cfg, family).items():
        checkpoint = checkpoints.read(source, checkpoints.flag(name), cfg.model.allow_pickle, download=False)
        if checkpoint is None:
            # A text encoder's GGUF is dequantized as it loads: its name says nothing of its memory.
            bits = checkpoints.bits_from_name(source) if checkpoints.stays_quantized(name) else None
            if bits is None or not params.get(name):
                notes.append(f"the size of {source} is unknown until it is downloaded; planned with the model's own")
                continue
            # Not downloaded yet: the quant type its name says, over the model's parameters.
            fixed[name] = params[name] * bits / 8
            notes.append(
                f"{Path(source).name} is priced at {bits:g} bits a weight (its name's quant type) until downloaded"
            )
            continue
        params[name] = float(checkpoints.parameters(checkpoint))
        if checkpoint.format == "gguf" and checkpoints.stays_quantized(name):
            fixed[name] = checkpoints.resident_bytes(checkpoint, 1.0)
            working = max(working, checkpoints.dequantize_bytes(checkpoint, 4.0))
        sources.add(f"{checkpoint.format} header")
    return fixed, working


def _extra_folder(source: str) -> Path | None:
    """The folder of a model loaded beside the pipeline: tiny:NAME, a local folder, or a Hub
    repo with a subfolder after it (owner/name/sub), from the cache only."""
    from vidgen.models import tiny

    if source.startswith(tiny.PREFIX):
        folder = tiny.folder(source.removeprefix(tiny.PREFIX))
        return folder if folder.is_dir() else None
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    parts = source.split("/")
    if len(parts) < 2:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache("/".join(parts[:2]), "/".join([*parts[2:], "config.json"]))
    except Exception:  # a broken cache or an odd id only costs the exact count
        return None
    return Path(found).parent if isinstance(found, str) else None


# -- the estimate -------------------------------------------------------------------------


def _bytes_per_param(component: str, family: Family, cfg: RunConfig, dtype: str) -> float:
    opt = cfg.optimization
    denoiser = component in (*denoisers(family), "motion_adapter", "controlnet")
    if opt.quantize and component in quantized_components(family):
        return QUANTIZED[opt.quantize]
    if denoiser and opt.fp8_storage:
        return 1.0
    # Components the family pins to their own precision (Wan's fp32 VAE).
    return BYTES[component_dtypes(family, dtype).get(component, dtype)]


def estimate(
    family: Family,
    cfg: RunConfig,
    params: dict[str, float],
    dtype: str,
    frames: int | None = None,
    fixed: dict[str, float] | None = None,
    working: float = 0.0,
) -> Estimate:
    """Peak memory of one video with the config's optimization settings. `fixed`: components
    whose bytes do not follow the dtype (GGUF files); `working`: their dequantization bytes."""
    fp = family.memory.sized(cfg)
    opt, s = cfg.optimization, cfg.sampling
    frames = frames or s.num_frames or 16
    height, width = family.memory.working_size(cfg)
    size = BYTES[dtype]
    weights = {name: count * _bytes_per_param(name, family, cfg, dtype) for name, count in params.items()}
    weights.update(fixed or {})
    llm = weights.pop(ENHANCER, 0.0)
    names = (*denoisers(family), "motion_adapter", "controlnet")
    experts = [v for k, v in weights.items() if k in denoisers(family)]
    # Two experts (Wan 2.2 A14B) take turns: offloaded, only the running one is on the GPU.
    denoising = max(experts, default=0.0) + sum(v for k, v in weights.items() if k in ("motion_adapter", "controlnet"))
    vae = weights.get("vae", 0.0)
    encoders = [v for k, v in weights.items() if k not in (*names, "vae")]
    guided = family.memory.guided(cfg)
    # FramePack prices one section, SkyReels DF one window: a long video never sees its whole length.
    tokens = (
        family.memory.latent_frames(cfg, frames)
        * (height // fp.spatial // fp.patch)
        * (width // fp.spatial // fp.patch)
    )
    denoise = fp.live * (2 if guided else 1) * tokens * fp.width * size
    # GGUF layers dequantize their weight in the compute dtype as they run (4 bytes counted above).
    denoise += working * size / 4
    if opt.forward_chunking:
        denoise *= 0.6
    if opt.gpus > 1:
        # Context parallelism: each GPU holds its share of the sequence (ulysses x ring = gpus).
        denoise /= opt.gpus
    decode = fp.decode * family.memory.decode_frames(cfg, frames) * height * width * size
    if opt.vae_tiling:
        decode *= fp.tiled
    encode = 0.05 * max(encoders, default=0.0) + 0.25 * GIB
    phases = {"encode": encode, "denoise": denoise, "decode": decode}
    biggest = max(weights.values(), default=0.0)
    if opt.offload == "none":
        peak = sum(weights.values()) + max(phases.values())
    elif opt.offload == "model":
        peak = max(max(encoders, default=0.0) + encode, denoising + denoise, vae + decode)
    elif opt.offload == "group":
        # Block groups move in turn; a stream prefetches the next while one runs. Leaf level
        # holds a layer at a time.
        per_group = biggest / fp.blocks / (8 if opt.offload_type == "leaf" else 1)
        peak = max(phases.values()) + per_group * (2 if opt.offload_stream else 1) + vae
    else:  # sequential: one layer at a time
        peak = max(phases.values()) + biggest / fp.blocks / 8
    if llm:
        # The enhancer runs alone and is freed before the video model loads: its weights and
        # working set are the encode phase's, beside none of the video model's.
        phases["encode"] = max(encode, llm + ENHANCE_WORKING)
        peak = max(peak, llm + ENHANCE_WORKING)
        weights[ENHANCER] = llm
    return Estimate(peak=peak, weights=weights, phases=phases)


def count_enhancer(counted: Sizes, ref: str, device: str) -> None:
    """Add the enhancer LLM `ref` to `counted` as bytes in the dtype it loads in on `device`
    (bf16 on CUDA, fp32 on the CPU): exact from its safetensors headers when it is on disk, else
    its published size."""
    from vidgen.models import enhancer

    kind, where = enhancer.locate(ref, build=False)
    local = enhancer.folder(kind, where)
    params = _count_folder(local, None).get("") if local is not None else None
    source = "safetensors headers"
    if not params and ref in enhancer.PUBLISHED:
        params, source = enhancer.PUBLISHED[ref], "published sizes"
    if not params:
        if kind != "tiny":  # a tiny one not built yet weighs kilobytes
            counted.notes.append(
                f"the size of the prompt enhancer {ref} is unknown until it is downloaded; not counted"
            )
        return
    counted.fixed[ENHANCER] = params * (2.0 if device.startswith("cuda") else 4.0)
    counted.source = " + ".join(sorted({*counted.source.split(" + "), source} - {""}))


@dataclass
class MemoryPlan:
    """What --memory auto chose (or, for manual settings, what they are estimated to need)."""

    rung: Rung | None  # None: the user's own settings
    estimate: Estimate
    budget: float | None  # bytes the plan had to fit in
    budget_source: str  # "--vram 8", "free memory on cuda:0"
    sizes: Sizes
    ladder: list[tuple[Rung, float]]
    notes: list[str] = field(default_factory=list)

    def room_after(self) -> float | None:
        """Bytes left for the finishing steps once the generation is done: the budget (less
        headroom) less the weights the chosen plan keeps on the GPU (all of them without
        offload; none with it: offloaded components go back to the CPU at the end of a call)."""
        if self.budget is None or self.rung is None:
            return None
        offloaded = self.rung.settings.get("offload") not in (None, "none")
        return self.budget * HEADROOM - (0.0 if offloaded else sum(self.estimate.weights.values()))

    def record(self) -> dict[str, Any]:
        """The sidecar's / --json's view."""
        return {
            "plan": self.rung.name if self.rung else "manual",
            "flags": self.rung.flags() if self.rung else None,
            "estimated_peak_bytes": int(self.estimate.peak),
            "budget_bytes": int(self.budget) if self.budget else None,
            "budget_source": self.budget_source,
            "sizes_from": self.sizes.source,
            "weights_bytes": {k: int(v) for k, v in self.estimate.weights.items()},
            "phases_bytes": {k: int(v) for k, v in self.estimate.phases.items()},
            "ladder": [{"plan": r.name, "flags": r.flags(), "estimated_peak_bytes": int(p)} for r, p in self.ladder],
            "notes": self.notes,
        }


def free_memory(device: str) -> float:
    """Free bytes on a CUDA device right now."""
    import torch

    index = int(device.partition(":")[2] or 0)
    free, _total = torch.cuda.mem_get_info(index)
    # Pipelines `vidgen serve` keeps loaded are freed when a run needs their memory: the plan is
    # the one a fresh process would make.
    return float(free) + warm.held(device)


def plan(
    family: Family,
    cfg: RunConfig,
    dtype: str,
    found: dict[str, tuple[str, str]],
    device: str,
    frames: int | None = None,
    enhancer: str | None = None,
) -> MemoryPlan:
    """Estimate the config's peak; with --memory auto, choose the fastest rung that fits.
    `enhancer`: the LLM --enhance-prompt loads first, counted in the encode phase."""
    opt = cfg.optimization
    cuda = device.startswith("cuda") or opt.vram_gb is not None
    counted = sizes(family, cfg, found)
    if enhancer is not None:
        count_enhancer(counted, enhancer, "cuda" if cuda else device)
    rungs = ladder(family, cfg, cuda)

    # The enhancer runs alone, before any plan's video model loads: plans are chosen by the video's
    # own peak, and an enhancer too large for the budget is said apart.
    video_only = {name: size for name, size in counted.fixed.items() if name != ENHANCER}

    def peak_of(o: OptimizationConfig, fixed: dict[str, float]) -> float:
        return estimate(
            family, cfg.model_copy(update={"optimization": o}), counted.params, dtype, frames, fixed, counted.working
        ).peak

    # Each plan as it would run (the user's own savers included), without repeats.
    priced: list[tuple[Rung, float]] = []
    video: list[tuple[Rung, float]] = []
    for rung in rungs:
        effective = apply(opt, rung)
        shown = Rung(rung.name, {key: getattr(effective, key) for key in PLAN_FIELDS})
        if all(shown.settings != seen.settings for seen, _ in priced):
            priced.append((shown, peak_of(effective, counted.fixed)))
            video.append((shown, peak_of(effective, video_only)))
    if opt.vram_gb is not None:
        budget, source = opt.vram_gb * GIB, f"--vram {opt.vram_gb:g}"
    elif device.startswith("cuda"):
        budget, source = free_memory(device), f"free memory on {device}"
    else:
        budget, source = None, "no GPU: nothing to plan for"
    notes = list(counted.notes)
    llm = counted.fixed.get(ENHANCER)
    if budget is not None and llm is not None and llm + ENHANCE_WORKING > budget * HEADROOM:
        notes.append(
            f"the prompt enhancer alone needs {(llm + ENHANCE_WORKING) / GIB:.1f} GiB of {budget / GIB:.1f}; "
            "pick a smaller --enhancer"
        )
    if opt.memory != "auto":
        current = estimate(family, cfg, counted.params, dtype, frames, counted.fixed, counted.working)
        return MemoryPlan(None, current, budget, source, counted, priced, notes)
    if budget is None:
        chosen = rungs[0]
        notes.append("on a CPU nothing is offloaded; pass --vram GiB to plan for a GPU")
    else:
        chosen = _fitting(video, budget, notes)
    final = estimate(
        family,
        cfg.model_copy(update={"optimization": apply(opt, chosen)}),
        counted.params,
        dtype,
        frames,
        counted.fixed,
        counted.working,
    )
    return MemoryPlan(chosen, final, budget, source, counted, priced, notes)


def _fitting(priced: list[tuple[Rung, float]], budget: float, notes: list[str]) -> Rung:
    """The fastest plan whose peak fits the budget, else the cheapest (and a note saying so)."""
    fitting = [rung for rung, peak in priced if peak <= budget * HEADROOM]
    if fitting:
        return fitting[0]
    chosen = priced[-1][0]
    notes.append(
        f"even {chosen.flags()} is estimated above {budget / GIB:.1f} GiB; "
        "fewer --frames or a smaller --height/--width will be needed"
    )
    return chosen


def planned(before: Resolved, rung: Rung) -> Resolved:
    """The run with the chosen plan's settings. They become plain manual settings, so a replay
    of the sidecar runs the same plan."""
    opt = apply(before.config.optimization, rung).model_copy(update={"memory": "manual", "vram_gb": None})
    return before.with_optimization(opt, f"memory:auto ({rung.name})")


@dataclass
class Ladder:
    """The out-of-memory step-down for one run: each `after` is the next cheaper plan."""

    family: Family
    cuda: bool

    def after(self, resolved: Resolved) -> tuple[Resolved, Rung] | None:
        """The run one rung down from its current settings, or None on the cheapest."""
        rung = next_rung(self.family, resolved.config, self.cuda)
        if rung is None:
            return None
        return resolved.with_optimization(apply(resolved.config.optimization, rung), f"oom-retry ({rung.name})"), rung

    def next(self, cfg: RunConfig) -> Rung | None:
        return next_rung(self.family, cfg, self.cuda)

    @staticmethod
    def flags(cfg: RunConfig) -> str:
        """The plan a config runs, as flags: `--offload model --vae-tiling`."""
        opt = cfg.optimization
        return Rung("current", {key: getattr(opt, key) for key in PLAN_FIELDS}).flags()
