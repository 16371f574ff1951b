"""The instruct LLM behind --enhance-prompt: where it is (tiny:llm, a local transformers folder,
a Hub id), whether it is one (checked from its files before anything loads), loading it under
the run's weights rules, writing one rewrite with a fixed seed, and freeing it.

The default is Qwen/Qwen2.5-7B-Instruct: Wan's own prompt extender runs Qwen2.5-Instruct models
locally (Wan-Video/Wan2.1, wan/utils/prompt_extend.py `QwenPromptExpander`; its README lists the
3B, 7B and 14B ones for text-to-video), and the 7B one fits a 24 GiB card in bf16 on its own.
"""

from __future__ import annotations

import copy
import gc
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.core.errors import ModelError, is_oom, out_of_memory
from vidgen.models import components, tiny

DEFAULT = "Qwen/Qwen2.5-7B-Instruct"
TINY = "tiny:llm"
# Parameter counts from the model cards, for the memory planner before a download.
PUBLISHED = {
    "Qwen/Qwen2.5-3B-Instruct": 3.09e9,
    "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
    "Qwen/Qwen2.5-14B-Instruct": 14.7e9,
}
# Qwen2.5-Instruct's own generation_config.json: the sampling Wan's extender ends up with (it
# calls generate() with the model's defaults), and 512 new tokens as it asks for.
TEMPERATURE = 0.7
SAMPLING = {"top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
MAX_NEW_TOKENS = 512
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def locate(ref: str, build: bool = True) -> tuple[str, str]:
    """(kind, where) of an enhancer: tiny (its folder, built on first use unless `build` is
    False), dir (an absolute folder) or hub (the id). Files and other folders are refused."""
    if ref == TINY:
        return "tiny", str(tiny.ensure("llm")) if build else ref
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            raise ModelError(
                f"--enhancer {ref} is a diffusers pipeline folder, not a text-generation LLM; give an instruct LLM "
                f"(a transformers folder with config.json and a chat template, or a Hub id such as {DEFAULT})."
            )
        if not (path / "config.json").is_file():
            raise ModelError(f"--enhancer {ref} is a folder without config.json; it is not a transformers model.")
        return "dir", str(path.resolve())
    if path.is_file() or path.suffix.lower() in components.PICKLE_SUFFIXES + components.SAFE_SUFFIXES:
        raise ModelError(f"--enhancer {ref} is a single file; give the LLM's folder or its Hub id.")
    if ref.startswith((".", "/", "~")) or not _HUB_ID.match(ref):
        raise ModelError(f"--enhancer {ref} is neither an existing folder, tiny:llm, nor a Hub repo id (owner/name).")
    return "hub", ref


def folder(kind: str, where: str) -> Path | None:
    """The local folder of a located enhancer (a Hub id's cached snapshot), without network
    access; None where it is not on disk yet."""
    if kind == "tiny":
        path = tiny.folder("llm")
        return path if path.is_dir() else None
    if kind == "dir":
        return Path(where)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(where, "config.json")
    except Exception:  # an odd id or a broken cache: loading it says why
        return None
    return Path(found).parent if isinstance(found, str) else None


def check(ref: str, kind: str, where: str) -> None:
    """Refuse what is not an instruct LLM transformers can run without remote code, from the
    files on disk (a Hub model not downloaded yet is checked when it loads): its config.json
    must name a causal language model, and its tokenizer must have a chat template."""
    local = folder(kind, where)
    if local is None:
        return
    config = _json(local / "config.json", ref)
    _check_architecture(ref, config)
    tokenizer = _json(local / "tokenizer_config.json", ref) if (local / "tokenizer_config.json").is_file() else None
    if tokenizer is None and not (local / "tokenizer.json").is_file():
        raise ModelError(f"--enhancer {ref} has no tokenizer files; it cannot read a prompt.")
    templated = any((local / name).is_file() for name in ("chat_template.jinja", "chat_template.json"))
    if not templated and not (tokenizer or {}).get("chat_template"):
        raise ModelError(
            f"--enhancer {ref} has no chat template, so it is not an instruct (chat) model; pick an -Instruct one."
        )


def _json(path: Path, ref: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"--enhancer {ref}: {path.name} cannot be read ({exc}).") from None
    if not isinstance(data, dict):
        raise ModelError(f"--enhancer {ref}: {path.name} is not a JSON object.")
    return data


def _check_architecture(ref: str, config: dict[str, Any]) -> None:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    if config.get("_class_name") or config.get("_diffusers_version"):
        what = f"a diffusers model ({config.get('_class_name')})"
    elif model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        # Qwen2.5-VL and the like: they write text, but only through their image processor.
        what = f"a vision-language model ({model_type}), and vidgen's enhancer runs text-only LLMs"
    elif isinstance(model_type, str):
        names = config.get("architectures") or [model_type]
        what = f"a {model_type} model ({', '.join(map(str, names))}) that does not generate text"
        if config.get("auto_map"):
            what = f"a {model_type} model that needs its own code (remote code, which vidgen never runs)"
    else:
        what = "no transformers model (its config.json names no model_type)"
    raise ModelError(f"--enhancer {ref} is {what}; --enhancer takes a text-generation instruct LLM such as {DEFAULT}.")


def generation(temperature: float | None, max_new_tokens: int | None) -> dict[str, Any]:
    """The generate() settings a run records: Qwen2.5-Instruct's sampling at `temperature`
    (None: 0.7), greedy at 0, and at most `max_new_tokens` (None: 512) new tokens."""
    temperature = TEMPERATURE if temperature is None else temperature
    settings: dict[str, Any] = {"do_sample": temperature > 0}
    if temperature > 0:
        settings.update(temperature=temperature, top_p=SAMPLING["top_p"], top_k=SAMPLING["top_k"])
    settings["repetition_penalty"] = SAMPLING["repetition_penalty"]
    settings["max_new_tokens"] = max_new_tokens or MAX_NEW_TOKENS
    return settings


def dtype_for(device: str) -> str:
    """bf16 on a CUDA card that has it (fp16 on older ones), fp32 on the CPU."""
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass
class LLM:
    model: Any
    tokenizer: Any
    device: str
    record: dict[str, Any]  # what the sidecar says of it: id, source, path, revision or hash


def load(ref: str, device: str, allow_pickle: bool) -> LLM:
    """The LLM and its tokenizer on `device`: safetensors weights only unless pickles are
    allowed, never remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vidgen.core.libs import quiet

    quiet()
    kind, where = locate(ref)
    if kind == "hub":
        _check_hub(ref)
    check(ref, kind, where)
    dtype = dtype_for(device)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=torch_dtype, use_safetensors=True if not allow_pickle else None
        )
        model.to(device).eval()
    except components.load_failures() as exc:
        raise _load_error(ref, exc) from None
    if tokenizer.chat_template is None:
        raise ModelError(f"--enhancer {ref} has no chat template, so it is not an instruct (chat) model.")
    record = {"id": ref, "source": kind, **_provenance(kind, where), "class": type(model).__name__, "dtype": dtype}
    return LLM(model, tokenizer, device, record)


def check_offline(ref: str) -> None:
    """With HF_HUB_OFFLINE set, a Hub LLM that is not cached fails while planning (exit 5)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        _check_hub(ref)


def _check_hub(ref: str) -> None:
    """A Hub LLM neither cached nor reachable fails in one line, before huggingface_hub retries."""
    from huggingface_hub import constants, get_session, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(ref, "config.json"), str):
            return
    except Exception:  # an odd id or cache: loading it says why
        return
    if not constants.HF_HUB_OFFLINE:
        try:
            get_session().head(constants.ENDPOINT, timeout=5)
            return
        except Exception:  # no route, no DNS, a proxy that refuses: the Hub cannot be reached
            pass
    raise ModelError(
        f"prompt enhancer {ref} is not in the Hugging Face cache and the Hub cannot be reached; connect to download "
        f"it, or pick a local one with --enhancer DIR (--enhancer {TINY} runs offline)."
    )


def _load_error(ref: str, exc: Exception) -> ModelError:
    if is_oom(exc):
        out_of_memory(f"the process ran out of memory while loading the prompt enhancer {ref}.", "enhance")
    text = str(exc)
    if "safetensors" in text.lower():
        return ModelError(
            f"prompt enhancer {ref} has no safetensors weights and pickle files are refused; "
            "pass --allow-pickle only if you trust its source."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ModelError(f"could not load the prompt enhancer {ref}: {first}")


def _provenance(kind: str, where: str) -> dict[str, Any]:
    """Where the weights came from: the Hub snapshot and its commit, or a folder and the sha256
    of its safetensors files (and the tiny builder's version)."""
    if kind == "hub":
        try:
            from huggingface_hub import snapshot_download

            snapshot = snapshot_download(where, local_files_only=True)
            return {"path": snapshot, "revision": Path(snapshot).name}
        except Exception:  # the load worked; provenance is best effort
            return {"path": None, "revision": None}
    extra = {"tiny_version": tiny.TINY_VERSION} if kind == "tiny" else {}
    return {"path": where, **components.weights_record(Path(where)), **extra}


def write(llm: LLM, system: str, prompt: str, seed: int, settings: dict[str, Any]) -> tuple[str, str]:
    """(the LLM's rewrite of `prompt`, how the chat was put) with `system` as its instructions,
    sampled with `seed` (the global RNG is restored afterwards)."""
    import torch

    messages, chat = _messages(llm.tokenizer, system, prompt)
    text = llm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The template already holds the special tokens the model expects.
    inputs = llm.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(llm.device)
    config = copy.deepcopy(llm.model.generation_config)
    sampled = {"temperature": None, "top_p": None, "top_k": None}  # the model's own, dropped for greedy
    config.update(**{**sampled, **settings})
    if config.pad_token_id is None:
        config.pad_token_id = llm.tokenizer.pad_token_id or llm.tokenizer.eos_token_id
    devices = [llm.device] if llm.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        output = llm.model.generate(**inputs, generation_config=config)
    new = output[0, inputs["input_ids"].shape[1] :]
    return llm.tokenizer.decode(new, skip_special_tokens=True).strip(), chat


def _messages(tokenizer: Any, system: str, prompt: str) -> tuple[list[dict[str, str]], str]:
    """The chat: a system and a user message, or, for templates that take no system role
    (Gemma's), one user message holding both."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return messages, "system and user messages"
    except Exception:  # jinja2's TemplateError from a template that raises on a system role
        merged = [{"role": "user", "content": f"{system}\n\n{prompt}"}]
        return merged, "one user message (the chat template takes no system role)"


def release(llm: LLM | None) -> None:
    """Free the LLM's memory before the video model loads: drop it, collect, empty CUDA's cache."""
    if llm is None:
        return
    device = llm.device
    llm.model = None
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
