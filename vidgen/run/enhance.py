"""--enhance-prompt for a run or a batch group: the request that decides what the LLM writes,
running it (an instruct LLM loaded once for many prompts and freed before the video model
loads, or the pipeline's own model for LTX-2), reusing a recorded rewrite, and the sidecar's
`prompt_enhancement` block.

A request is everything that decides the rewrite: the typed prompt, the enhancer, its system
prompt, seed and settings. A replay whose request equals the recorded one reuses the recorded
rewrite without loading the LLM; a batch runs each distinct request once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from vidgen.config import Resolved
from vidgen.config.kinds import input_fields
from vidgen.config.schema import RunConfig
from vidgen.core.errors import ConfigError, InputError, ModelError
from vidgen.core.limits import MAX_PROMPT_CHARS
from vidgen.core.progress import NullProgress, Progress
from vidgen.families import system_prompts
from vidgen.families.base import Family
from vidgen.models import enhancer

log = logging.getLogger("vidgen")

# The enhancer of a family whose pipeline rewrites prompts with its own text encoder (LTX-2).
PIPELINE = "pipeline"


@dataclass
class Enhanced:
    prompt: str  # what the video model gets
    record: dict[str, Any]  # the sidecar's prompt_enhancement block


def enhancer_id(cfg: RunConfig, family: Family) -> str:
    """The enhancer a run uses: --enhancer, else the family's default (its pipeline, or Qwen)."""
    if cfg.model.enhancer:
        return cfg.model.enhancer
    return PIPELINE if family.enhancing.pipeline is not None else enhancer.DEFAULT


def conditioned(cfg: RunConfig) -> bool:
    """Whether the video starts from input pictures or videos (not from the prompt alone)."""
    return bool(cfg.inputs.conditions) or any(cfg.inputs.get(name) for name in input_fields())


def request(cfg: RunConfig, family: Family, seed: int) -> dict[str, Any] | None:
    """What decides the rewrite (None without --enhance-prompt); `seed` is the run's first."""
    if not cfg.inputs.enhance_prompt:
        return None
    ref = enhancer_id(cfg, family)
    system = None
    if ref != PIPELINE:  # the pipeline picks its own prompts (it knows whether it looks at an image)
        system = system_prompts.choose(family.enhancing.prompts, conditioned(cfg), cfg.inputs.prompt or "").name
    return {
        "prompt": cfg.inputs.prompt,
        "enhancer": ref,
        "system_prompt": system,
        "seed": cfg.inputs.enhancer_seed if cfg.inputs.enhancer_seed is not None else seed,
        "temperature": cfg.inputs.enhancer_temperature,
        "max_new_tokens": cfg.inputs.enhancer_max_new_tokens,
    }


def key(asked: dict[str, Any], allow_pickle: bool) -> str:
    """A request as a dict key (a batch runs each once)."""
    return json.dumps([asked, allow_pickle], sort_keys=True)


def check(resolved: Resolved, family: Family) -> None:
    """The rules that need no weights: --enhancer goes with --enhance-prompt (a preset may name
    one for later), a family that takes text, one prompt to rewrite."""
    cfg = resolved.config
    if not cfg.inputs.enhance_prompt:
        source = str(resolved.sources.get("model.enhancer", ""))
        if cfg.model.enhancer and not source.startswith(("preset:", "replay:")):
            raise ConfigError(
                "--enhancer picks the LLM that --enhance-prompt runs; add --enhance-prompt (or drop --enhancer)."
            )
        return
    if cfg.inputs.prompts:
        raise ConfigError(
            "--enhance-prompt rewrites one prompt, and --prompt-at gives one per keyframe; drop one of them."
        )
    if not (cfg.inputs.prompt or "").strip():
        raise ConfigError(f"--enhance-prompt needs a prompt to rewrite; add one to `vidgen {cfg.mode}`.")
    if cfg.model.enhancer == PIPELINE and family.enhancing.pipeline is None:
        raise ConfigError(
            f"--enhancer {PIPELINE} names a pipeline's own prompt enhancer, and {family.title}'s has none; give an LLM "
            f"(a folder called {PIPELINE}: ./{PIPELINE})."
        )


def check_enhancer(cfg: RunConfig, family: Family) -> str | None:
    """The LLM a run will load, located and checked from its files (exit 5 for one that is not
    an instruct LLM), before the video model loads; None when the pipeline enhances itself."""
    ref = enhancer_id(cfg, family)
    if ref == PIPELINE:
        _check_pipeline_parts(cfg, family)
        return None
    kind, where = enhancer.locate(ref, build=False)
    if kind == "hub":
        enhancer.check_offline(ref)
    enhancer.check(ref, kind, where)
    return ref


def _check_pipeline_parts(cfg: RunConfig, family: Family) -> None:
    """The components the pipeline's own enhancer needs, found in the model's model_index.json
    where it is on disk (a folder, a cached Hub model, a tiny model built before)."""
    from vidgen.models import loader, tiny

    model_id = cfg.model.id or family.modes[cfg.mode].repo
    if model_id.startswith(tiny.PREFIX):
        model_id = str(tiny.folder(model_id.removeprefix(tiny.PREFIX)))
    index = loader.model_index(model_id, cfg.model.revision)
    missing = [name for name in sorted(family.enhancing.requires) if index and not _present(index.get(name))]
    if missing:
        raise ModelError(
            f"{cfg.model.id or model_id} has no `{missing[0]}` component, which {family.title}'s own prompt enhancer "
            f"needs; pick an LLM with --enhancer (e.g. {enhancer.DEFAULT}, or {enhancer.TINY} offline)."
        )


def _present(entry: Any) -> bool:
    """Whether a model_index.json entry names a component ([library, class], not [null, null])."""
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)


def reuse(recorded: Any, asked: dict[str, Any] | None, source: str) -> Enhanced | None:
    """A recorded rewrite (a sidecar's prompt_enhancement block) when it answers this request."""
    if asked is None or not isinstance(recorded, dict) or recorded.get("request") != asked:
        return None
    text = recorded.get("enhanced_prompt")
    if not isinstance(text, str):
        return None
    if len(text) > MAX_PROMPT_CHARS:  # a file's text, bound like any prompt before a tokenizer sees it
        raise InputError(
            f"{source}: its enhanced prompt is {len(text):,} characters; vidgen takes at most {MAX_PROMPT_CHARS:,}."
        )
    return Enhanced(text, {**recorded, "reused_from": source, "seconds": 0.0})


def with_llm(
    asks: list[dict[str, Any]], device: str, allow_pickle: bool, progress: Progress | None = None
) -> dict[str, Enhanced]:
    """Each distinct request rewritten by its LLM, each LLM loaded once and freed before this
    returns (so the video model gets its memory); keyed by `key`."""
    progress = progress or NullProgress()
    done: dict[str, Enhanced] = {}
    for ref in dict.fromkeys(asked["enhancer"] for asked in asks):
        mine = [asked for asked in asks if asked["enhancer"] == ref and key(asked, allow_pickle) not in done]
        if not mine:
            continue
        progress.phase("enhance")
        log.info("loading prompt enhancer %s on %s", ref, device)
        started = time.perf_counter()
        llm = enhancer.load(ref, device, allow_pickle)
        try:
            for asked in mine:
                done[key(asked, allow_pickle)] = _write(llm, asked, started)
                started = time.perf_counter()
        finally:
            enhancer.release(llm)
    return done


def _write(llm: enhancer.LLM, asked: dict[str, Any], started: float) -> Enhanced:
    system = system_prompts.named(asked["system_prompt"])
    settings = enhancer.generation(asked["temperature"], asked["max_new_tokens"])
    text, chat = enhancer.write(llm, system.text, asked["prompt"], asked["seed"], settings)
    record = {
        "enhancer": {**llm.record, "device": llm.device},
        "system_prompt": system.record(),
        "chat": chat,
        "generation": settings,
    }
    return _enhanced(asked, text, record, started)


def with_pipeline(
    family: Family, pipe: Any, asked: dict[str, Any], media: dict[str, Any], progress: Progress
) -> Enhanced:
    """The rewrite by the loaded pipeline's own model (LTX-2's Gemma)."""
    progress.phase("enhance")
    log.info("enhancing the prompt with the pipeline's own model")
    started = time.perf_counter()
    assert family.enhancing.pipeline is not None
    text, record = family.enhancing.pipeline(pipe, asked["prompt"], asked, media)
    return _enhanced(asked, text.strip(), record, started)


def _enhanced(asked: dict[str, Any], text: str, record: dict[str, Any], started: float) -> Enhanced:
    """The block the sidecar keeps; an empty rewrite falls back to the typed prompt, said so."""
    block: dict[str, Any] = {"prompt": asked["prompt"], "enhanced_prompt": text or asked["prompt"]}
    block.update(record)
    block.update(request=asked, seed=asked["seed"], seconds=round(time.perf_counter() - started, 4))
    if not text:
        block["fallback"] = "the enhancer wrote nothing; the typed prompt was used"
        log.warning("the prompt enhancer wrote nothing; the typed prompt is used.")
    else:
        log.info("enhanced prompt: %s", text)
    return Enhanced(block["enhanced_prompt"], block)


def applied(cfg: RunConfig, enhanced: Enhanced | None) -> RunConfig:
    """The config the pipeline call is made from: the rewrite as its prompt (the sidecar's
    config keeps the typed one)."""
    if enhanced is None:
        return cfg
    return cfg.model_copy(update={"inputs": cfg.inputs.model_copy(update={"prompt": enhanced.prompt})})
