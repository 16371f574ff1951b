"""`vidgen inspect SIDECAR|VIDEO`: how an output was made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vidgen.config.kinds import INPUT_KINDS, MEDIA_KINDS, OUTPUT_KINDS, input_fields
from vidgen.core.hashes import short
from vidgen.core.terminal import escape, shorten
from vidgen.io import sidecar

# A row shows at most this many characters of its value (a prompt may be 100 000, and a file from
# elsewhere may hold megabytes); the rest is counted, and --json prints it all.
VALUE_CHARS = 1000


def inspect(
    path: Annotated[Path, typer.Argument(help="A sidecar .json, or a video (its sidecar or embedded metadata).")],
    json_: Annotated[bool, typer.Option("--json", help="Print the whole sidecar as JSON.")] = False,
) -> None:
    """Print how an output was made: prompt, model, seed, settings, versions, timings.

    Also every risky field of a file from someone else: weights paths and their hashes, LoRAs,
    inputs and URLs, and whether it allows pickles. Control characters are shown escaped.

        vidgen inspect outputs/t2v-a-red-fox-running-through-fresh-snow-7.mp4
    """
    data = sidecar.read(path)
    if json_:
        # JSON escapes every control character itself (\u001b), so this stays terminal-safe.
        typer.echo(json.dumps(data, indent=2))
        return
    shortened = False
    for key, value in _rows(data):
        if value not in (None, "", "None"):
            text = str(value)
            # A value's start and end, so a path's file name stays in view.
            shown = shorten(text, VALUE_CHARS, tail=VALUE_CHARS // 5)
            shortened = shortened or shown is not text
            # Keys are vidgen's words, except component names, which a file chooses.
            typer.echo(f"{escape(key):<12} {escape(shown)}")
    if shortened:
        typer.echo(f"note: values over {VALUE_CHARS} characters are shortened; --json prints them whole.", err=True)


def _dict(value: object) -> dict:
    """A block of the sidecar, or {} when a file put something else there."""
    return value if isinstance(value, dict) else {}


def _stages(stages: object) -> str | None:
    """Two-stage runs (LTX): each call's pipeline, size, schedule length and guidance, in order."""
    if not isinstance(stages, list):
        return None
    shown = []
    for stage in map(_dict, stages):
        kwargs = _dict(stage.get("call_kwargs"))
        schedule = kwargs.get("sigmas") or kwargs.get("timesteps")
        parts = [str(stage.get("call"))]
        if "width" in kwargs:
            parts.append(f"{kwargs.get('width')}x{kwargs.get('height')}")
        steps = len(schedule) if isinstance(schedule, list) else kwargs.get("num_inference_steps")
        if steps is not None:
            parts.append(f"{steps} steps")
        if "denoise_strength" in kwargs:
            parts.append(f"at strength {kwargs['denoise_strength']}")
        if "guidance_scale" in kwargs:
            parts.append(f"guidance {kwargs['guidance_scale']}")
        shown.append(" ".join(parts))
    return " -> ".join(shown) or None


def _written_beside(output: dict) -> list[tuple[str, object]]:
    """A row per output kind the sidecar records beside the video (latents, control maps,
    preview), as config/kinds.py declares them."""
    rows: list[tuple[str, object]] = []
    for kind in OUTPUT_KINDS.values():
        value = output.get(kind.record) if kind.record else None
        if isinstance(value, dict) and value.get("path"):
            digest = f" (sha256 {str(value['sha256'])[:12]})" if value.get("sha256") else ""
            rows.append((kind.name, f"{value['path']}{digest}"))
        elif isinstance(value, str):
            rows.append((kind.name, value))
    return rows


def _rows(data: dict) -> list[tuple[str, object]]:
    config = _dict(data.get("config"))
    model, pipeline, output = (_dict(data.get(key)) for key in ("model", "pipeline", "output"))
    sampling, inputs = _dict(config.get("sampling")), _dict(config.get("inputs"))
    rows: list[tuple[str, object]] = [
        ("output", output.get("path")),
        ("made", f"{data.get('created_at')} by vidgen {data.get('vidgen_version')}"),
        ("mode", config.get("mode")),
        ("prompt", inputs.get("prompt")),
    ]
    prompts = _dict(inputs.get("prompts"))
    if prompts:
        rows.append(("prompts", " | ".join(f"{frame}: {text}" for frame, text in prompts.items())))
    rows += _enhancement_rows(data)
    rows.append(("negative", inputs.get("negative_prompt")))
    rows += _input_rows(data)
    rows += [
        ("model", f"{model.get('id')} ({model.get('family')}, {model.get('dtype')})" if model else None),
        ("revision", model.get("revision")),
    ]
    rows += _weight_rows(data)
    scheduler = _dict(model.get("scheduler"))
    if scheduler:
        rows.append(("scheduler", f"{scheduler.get('class')} {_kwargs(_dict(scheduler.get('options')))}".strip()))
    setup = [_dict(call) for call in pipeline.get("setup") or []]
    rows += [
        ("pipeline", _pipeline_row(pipeline, model)),
        ("seed", data.get("seed")),
        ("frames", sampling.get("num_frames")),
        ("size", f"{sampling.get('width')}x{sampling.get('height')}"),
        ("steps", sampling.get("num_inference_steps")),
        ("guidance", sampling.get("guidance_scale")),
        ("call", _other_call_kwargs(_dict(pipeline.get("call_kwargs")))),
        ("windows", _dict(pipeline.get("windows")).get("summary")),
        ("stages", _stages(pipeline.get("stages"))),
        ("setup", ", ".join(f"{c.get('method')}({_kwargs(_dict(c.get('kwargs')))})" for c in setup)),
    ]
    rows += _file_rows(output)
    rows += _written_beside(output)
    rows += _finish_rows(data)
    optimizations, timings = _dict(data.get("optimizations")), _dict(data.get("timings"))
    if optimizations:
        rows.append(("optimized", ", ".join(map(str, optimizations.get("applied") or [])) or "none"))
    if timings:
        rows.append(
            ("seconds", ", ".join(f"{k} {v}" if isinstance(v, str) else f"{k} {v:.2f}" for k, v in timings.items()))
        )
    if isinstance(data.get("peak_memory_bytes"), (int, float)) and data["peak_memory_bytes"]:
        rows.append(("peak memory", f"{data['peak_memory_bytes'] / 2**30:.2f} GiB"))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in _dict(data.get("versions")).items() if v)))
    return rows


def _file_rows(output: dict) -> list[tuple[str, object]]:
    """The written file: format and size, its HDR encoding and its sound (or, for a bare video,
    the sound ffmpeg finds in it)."""
    rows: list[tuple[str, object]] = []
    if "format" in output:
        rows.append(
            (
                "file",
                f"{output['format']} {output.get('codec')}, {output.get('frames')} frames "
                f"{output.get('width')}x{output.get('height')} at {output.get('fps')} fps",
            )
        )
    hdr = _dict(output.get("hdr"))
    if hdr:
        rows.append(
            (
                "hdr",
                f"HDR10: {hdr.get('transfer')}, {hdr.get('primaries')}, {hdr.get('bit_depth')}-bit, 1.0 at "
                f"{hdr.get('reference_white_nits')} nits, peak {hdr.get('peak')} (linear sha256 "
                f"{str(hdr.get('raw_sha256'))[:16]})",
            )
        )
    audio = _dict(output.get("audio"))
    if audio:
        rows.append(
            (
                "audio",
                f"{audio.get('codec')}, {audio.get('sample_rate')} Hz, {audio.get('channels')} channels, "
                f"{audio.get('duration')} s (raw samples sha256 {str(audio.get('raw_sha256'))[:16]})",
            )
        )
    elif output.get("path") and "format" not in output:
        # A bare video (its sidecar not found): what ffmpeg sees in the file itself.
        from pathlib import Path

        from vidgen.io import media

        found = media.audio_stream(Path(str(output["path"])))
        if found:
            rows.append(("audio", f"{found} (read from the file)"))
    return rows


def _finish_rows(data: dict) -> list[tuple[str, object]]:
    """The finishing chain after the generation (--interpolate, --upscale, `vidgen interpolate`
    and `upscale`): one row per step with its network, result and cost."""
    rows: list[tuple[str, object]] = []
    made_from = _dict(data.get("finished_from"))
    if made_from:
        rows.append(("finished from", f"{made_from.get('path')} (sha256 {str(made_from.get('sha256'))[:12]})"))
    steps = data.get("finish") if isinstance(data.get("finish"), list) else []
    for index, step in enumerate(_dict(step) for step in steps):
        model = _dict(step.get("model"))
        frames, size, fps = (step.get(key) if isinstance(step.get(key), list) else ["?", "?"] for key in
                             ("frames", "size", "fps"))  # fmt: skip
        peak = step.get("peak_memory_bytes")
        cost = f"{step.get('seconds')} s" + (f", peak {peak / 2**30:.2f} GiB" if isinstance(peak, (int, float)) else "")
        rows.append(
            (
                f"finish {index + 1}",
                f"{step.get('step')} {step.get('factor')} with {model.get('architecture')} {model.get('source')}: "
                f"{frames[0]} -> {frames[1]} frames, {size[0]} -> {size[1]}, {fps[0]} -> {fps[1]} fps ({cost})",
            )
        )
    return rows


def _enhancement_rows(data: dict) -> list[tuple[str, object]]:
    """--enhance-prompt: the prompt the pipeline got, and the LLM that wrote it (where its
    weights came from, its system prompt, seed and settings), or the config's enhancer when the
    sidecar has no record of a rewrite."""
    block = _dict(data.get("prompt_enhancement"))
    config = _dict(data.get("config"))
    if not block:
        wanted = _dict(config.get("inputs")).get("enhance_prompt") is True
        named = _dict(config.get("model")).get("enhancer")
        return [("enhancer", f"{named or 'the default'} (no record of its rewrite)")] if wanted else []
    model = _dict(block.get("enhancer"))
    facts = [_facts(model)] if _facts(model) else []
    if model.get("revision"):
        facts.insert(0, f"revision {model['revision']}")
    elif model.get("path"):
        facts.insert(0, f"from {model['path']}")
    elif model.get("method"):
        facts.insert(0, f"{model['method']} on its {model.get('component')}")
    if model.get("class"):
        facts.append(f"{model['class']} {model.get('dtype') or ''}".strip())
    generation = " ".join(f"{key}={value}" for key, value in _dict(block.get("generation")).items())
    system = _dict(block.get("system_prompt")).get("name")
    text = f"{model.get('id')} ({', '.join(facts)}); system prompt {system}; seed {block.get('seed')}; {generation}"
    if block.get("reused_from"):
        text += f"; reused from {block['reused_from']}"
    return [("enhanced", block.get("enhanced_prompt")), ("enhancer", text)]


def _weight_rows(data: dict) -> list[tuple[str, object]]:
    """Every weights file or repo a replay would load, and whether pickles are allowed: what a
    user must see before running a file someone else made. Each file recorded by hash gets a
    row of its own (see `_facts`)."""
    config_model = _dict(_dict(data.get("config")).get("model"))
    model = _dict(data.get("model"))
    rows: list[tuple[str, object]] = []
    recorded_path = model.get("path")
    weights = config_model.get("id")
    if recorded_path and recorded_path != weights:
        weights = f"{weights} (loaded from {recorded_path})"
    rows.append(("weights", weights))
    checkpoint = _dict(model.get("checkpoint"))
    if checkpoint.get("sha256"):
        rows.append(("checkpoint", _with_facts(str(recorded_path), checkpoint)))
    for key, label in (("motion_adapter", "adapter"), ("controlnet", "controlnet"), ("base_config", "base config")):
        ref = config_model.get(key)
        part = _dict(model.get(key))
        where = f" from {part['path']}" if part.get("path") and part["path"] != ref else ""
        rows.append((label, _with_facts(f"{ref}{where}", part) if ref else None))
    rows += _component_rows(_dict(model.get("files")))
    rows += _lora_rows(config_model, model)
    allowed = config_model.get("allow_pickle") is True
    rows.append(
        (
            "pickles",
            "ALLOWED (model.allow_pickle: true; pickle weights can run code; replay needs --allow-pickle)"
            if allowed
            else "refused",
        )
    )
    return rows


def _component_rows(files: dict) -> list[tuple[str, object]]:
    """A row per single-file component (`model.files`: a GGUF transformer, an fp8 text encoder),
    named after the component: its source as typed, where it was found, and `_facts`."""
    rows: list[tuple[str, object]] = []
    for component, record in files.items():
        record = _dict(record)
        source, path = record.get("source") or record.get("path"), record.get("path")
        where = ""
        if record.get("repo"):
            revision = record.get("revision")
            where = f" from {record['repo']}" + (f" at {str(revision)[:12]}" if revision else "")
        elif path and path != source:
            where = f" from {path}"
        rows.append((str(component), _with_facts(f"{source}{where}", record)))
    return rows


def _lora_rows(config_model: dict, model: dict) -> list[tuple[str, object]]:
    """A row per LoRA the config names: source, scale, where it was found, and `_facts`."""
    records = {_dict(r).get("source"): _dict(r) for r in model.get("loras") or []}
    rows: list[tuple[str, object]] = []
    for lora in config_model.get("loras") or []:
        lora = _dict(lora)
        record = records.get(lora.get("source"), {})
        where = f" from {record['path']}" if record.get("path") and record["path"] != lora.get("source") else ""
        rows.append(("lora", _with_facts(f"{lora.get('source')} x{lora.get('scale', 1.0)}{where}", record)))
    return rows


def _with_facts(text: str, record: dict) -> str:
    """`text (facts)`, or `text` alone when the record has none."""
    facts = _facts(record)
    return f"{text} ({facts})" if facts else text


def _facts(record: dict) -> str:
    """What a sidecar records of a weights file, those it has, compactly: format and quant type,
    key layout, short sha256 and size, e.g. `gguf Q8_0, comfyui layout, sha256 1a2b3c4d5e6f, 14.3 GiB`."""
    kind = " ".join(str(record[key]) for key in ("format", "quant") if record.get(key))
    facts = [kind, f"{record['layout']} layout" if record.get("layout") else ""]
    matched, modules = record.get("matched"), record.get("modules")
    if isinstance(matched, int) and isinstance(modules, int):  # a LoRA: the layers that took it
        facts.append(f"{matched}/{modules} layers")
    sha = record.get("sha256")
    facts.append(f"sha256 {short(sha)}" if isinstance(sha, str) else "")
    size = record.get("bytes")
    facts.append(_size(size) if isinstance(size, int) and not isinstance(size, bool) else "")
    return ", ".join(fact for fact in facts if fact)


def _size(count: int) -> str:
    """A file size in binary units, about three significant digits: 812 B, 4.21 MiB, 14.3 GiB."""
    if count < 1024:
        return f"{count} B"
    value, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"


# call kwargs that have rows of their own, or say nothing about how the video looks
_SHOWN = {"prompt", "negative_prompt", "num_frames", "height", "width", "num_inference_steps", "guidance_scale"}
_PLUMBING = {"output_type", "num_videos_per_prompt"}


def _other_call_kwargs(call: dict) -> str:
    """The family-specific arguments, e.g. motion_bucket_id=127 strength=0.8."""
    return " ".join(f"{key}={value}" for key, value in call.items() if key not in _SHOWN | _PLUMBING)


def _input_rows(data: dict) -> list[tuple[str, object]]:
    """One row per input image or video: what the config names (a replay reads that, whatever
    the record says) and, when the record describes it, what was found and done."""
    rows: list[tuple[str, object]] = []
    recorded = _dict(data.get("inputs"))
    config_inputs = _dict(_dict(data.get("config")).get("inputs"))
    for name in input_fields():  # every input field a replay would read
        ref = config_inputs.get(name)
        record = _dict(recorded.get(name))
        if isinstance(ref, list):  # reference_images: a row per image
            rows += _list_rows(name, ref, record)
            continue
        if not record or record.get("path") != ref:
            rows.append((name, ref))
            continue
        where = f" = {record['resolved_path']}" if record.get("resolved_path") not in (None, ref) else ""
        kind = INPUT_KINDS.get(name)
        if kind is not None and kind.reads == "data":
            # A data file (a camera path): what its family's parser found in it.
            found = {k: v for k, v in record.items() if k not in ("path", "resolved_path", "sha256", "prepared")}
            detail = ", ".join([f"sha256 {str(record.get('sha256'))[:12]}"] + [f"{k} {v}" for k, v in found.items()])
            rows.append((name, f"{ref}{where} ({detail})"))
            continue
        size = "x".join(map(str, _dict(record.get("prepared")).get("size") or []))
        frames = (
            f", {record.get('frames_used')} of {record.get('frames_read')} frames" if "frames_used" in record else ""
        )
        detail = f"sha256 {str(record.get('sha256'))[:12]}, {record.get('resize')} to {size}{frames}"
        rows.append((name, f"{ref}{where} ({detail})"))
    # Keyframes and conditioning clips (LTX): files a replay reads too.
    for condition in config_inputs.get("conditions") or []:
        condition = _dict(condition)
        ref = condition.get("image") or condition.get("video")
        kind = "keyframe" if condition.get("image") else "clip"
        rows.append((kind, f"{ref} at frame {condition.get('frame_index')}, strength {condition.get('strength')}"))
    return rows


def _list_rows(name: str, refs: list, record: dict) -> list[tuple[str, object]]:
    """One row per entry of a list input, with what the record says about it when it matches."""
    # Reference images (`images`, all brought to one size) or pictures, videos and sounds (`items`).
    entries = record.get("images") or record.get("items")
    entries = entries if isinstance(entries, list) else []
    size = "x".join(map(str, _dict(record.get("prepared")).get("size") or []))
    rows: list[tuple[str, object]] = []
    for index, ref in enumerate(refs):
        entry = _dict(entries[index]) if index < len(entries) else {}
        if entry.get("path") != ref:
            rows.append((name, ref))
            continue
        where = f" = {entry['resolved_path']}" if entry.get("resolved_path") not in (None, ref) else ""
        media = entry.get("kind") in MEDIA_KINDS
        detail = _medium_detail(entry) if media else f"{record.get('resize')} to {size}"
        rows.append((name, f"{ref}{where} (sha256 {str(entry.get('sha256'))[:12]}, {detail})"))
    return rows


def _pipeline_row(pipeline: dict, model: dict) -> object:
    """The pipeline class, and a modular pipeline's workflow (MiniMax-H3's t2va, ref2va)."""
    workflow = _dict(model.get("modular")).get("workflow")
    return f"{pipeline.get('class')} ({workflow} workflow)" if workflow else pipeline.get("class")


def _medium_detail(entry: dict) -> str:
    """What a picture, video or sound of a media input became: its size, frames, sound."""
    prepared = _dict(entry.get("prepared"))
    size = "x".join(map(str, prepared.get("size") or []))
    sound = _dict(prepared.get("sound")) if entry.get("kind") == "video" else prepared

    def heard(block: dict) -> str:
        seconds = block.get("samples", 0) / max(block.get("sample_rate") or 1, 1)
        return f"{block.get('channels')} channel(s) at {block.get('sample_rate')} Hz, {seconds:.2f} s"

    if entry.get("kind") == "image":
        return f"picture, {size}"
    if entry.get("kind") == "video":
        frames = f"video, {prepared.get('frames')} frames at {entry.get('input_fps')} fps, {size}"
        return f"{frames}, sound {heard(sound)}" if sound else f"{frames}, no sound"
    return f"sound, {heard(sound)}"


def _kwargs(kwargs: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in kwargs.items())
