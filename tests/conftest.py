"""Shared fixtures: every test runs offline, in its own folder, with a shared tiny-model cache."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidgen.cli import app
from vidgen.core.progress import NullProgress


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One cache for the session: each tiny model is built once, then loaded with from_pretrained.
    return tmp_path_factory.mktemp("vidgen-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIDGEN_CACHE", str(tiny_cache))
    monkeypatch.setenv("VIDGEN_PRESETS", str(tmp_path / "user-presets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VIDGEN_TRACEBACK", raising=False)
    # A `vidgen serve` of whoever runs the tests is not asked: runs stay in the test's process.
    monkeypatch.setenv("VIDGEN_SERVER_SOCKET", str(tmp_path / "no-server.sock"))
    monkeypatch.setenv("VIDGEN_SERVER_STATE", str(tmp_path / "no-server-state"))
    return tmp_path


def cli(*args: str):
    """Run vidgen in-process through the real Typer app; returns the result (stdout, stderr, exit_code)."""
    return CliRunner().invoke(app, list(args))


def cli_subprocess(*args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None):
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "vidgen", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def decode(path: Path):
    """Frames (uint8, F×H×W×3) and metadata of a video, decoded by the bundled ffmpeg."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    width, height = meta["size"]
    frames = [np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3) for chunk in reader]
    return np.stack(frames), meta


def full_presets(*family_names: str) -> list[str]:
    """The presets of these families that run a real model (not the tiny ones), sorted: what a
    family's offline plan tests go through."""
    from vidgen.config import available_presets
    from vidgen.config.layers import merged_preset

    return sorted(
        name
        for name, path in available_presets().items()
        if (merged_preset(str(path)).get("model") or {}).get("family") in family_names and not name.startswith("tiny-")
    )


def random_frames(name: str, count: int, size: int = 32, seed: int = 0) -> str:
    """A folder `name` of `count` random frames at `size` pixels a side (a clip to read)."""
    import numpy as np
    from PIL import Image

    folder = Path(name)
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"f{index}.png")
    return name


def sidecar(path: Path) -> dict:
    return json.loads(path.read_text())


def png_frames(result):
    """The frames (uint8, F×H×W×3) of the png folder a successful command printed."""
    import numpy as np
    from PIL import Image

    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def printed_sidecar(result) -> dict:
    """The sidecar of the output a command printed (FOLDER -> FOLDER.json, NAME.mp4 -> NAME.json)."""
    output = Path(result.stdout.strip())
    return sidecar(
        output.with_name(output.stem + ".json") if output.suffix else output.with_name(output.name + ".json")
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "user-presets" not in p.parts)


def one_line_error(result, code: int, *needles: str) -> str:
    """The single `Error:` line of a failed run, checked against the exit code and needles."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    # Status lines may come first; the error is the one and last line that says Error.
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0]
    return errors[0]


class CountingProgress(NullProgress):
    """A Progress that counts: the totals announced and the steps reported."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.steps = 0

    def start(self, total: int, description: str) -> None:
        self.totals.append(total)

    def advance(self) -> None:
        self.steps += 1


# -- the reproducer: plain diffusers from a sidecar -------------------------------------------
#
# One function repeats any tiny run with plain diffusers, from what its sidecar records and the
# media the test hands it; `assert_reproduces` compares it with vidgen's frames and shows the
# comparison is not vacuous: another seed, another prompt and another guidance each change them.

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
OTHER_PROMPT = "a blue rocket launching in space"  # words the tiny T5 vocabulary knows
GUIDANCE_KEYS = ("guidance_scale", "guidance_scale_2", "true_cfg_scale", "max_guidance_scale")
_SETUP_EACH_CALL = ("scheduler = ", "guider = ", "stage_2_scheduler = ", "latent_upsampler = ", "upsample_pipe = ")
_LORA_SETUP = ("load_lora_weights", "set_adapters")
_PIPES: dict[str, object] = {}  # the last pipeline loaded, by what it was loaded from


@dataclass
class Made:
    frames: object  # np.ndarray, uint8, F x H x W x 3
    audio: object = None  # np.ndarray, float32, channels x samples (LTX-2), or None


def varied(data: dict, seed: int | None = None, prompt: str | None = None, guidance: float | None = None) -> dict:
    """A copy of sidecar `data` with another seed, prompt or guidance wherever the run uses it."""
    data = json.loads(json.dumps(data))
    pipeline = data["pipeline"]
    calls = [pipeline["call_kwargs"], *(stage["call_kwargs"] for stage in pipeline.get("stages", []))]
    if seed is not None:
        data["seed"] = seed
        if "torch_manual_seed" in pipeline["generator"]:
            pipeline["generator"]["torch_manual_seed"] = seed
        for call in calls:  # a pipeline that seeds its own noise (LTX-Video long's windows)
            if "seed" in call:
                call["seed"] = seed
    if prompt is not None:
        for call in calls:
            if "prompt" in call:
                call["prompt"] = prompt
        if (data.get("inputs") or {}).get("prompts"):  # prompt travel: every keyframe's prompt
            data["inputs"]["prompts"] = {frame: prompt for frame in data["inputs"]["prompts"]}
    if guidance is not None:
        # Every scale the run has: a two-stage run's refinement too, where 1 turns guidance off.
        for call in [*calls, *(step["kwargs"] for step in pipeline["setup"] if step["method"].startswith("guider"))]:
            for key in GUIDANCE_KEYS:
                if call.get(key) is not None:
                    call[key] = guidance
    return data


def variations(data: dict) -> list[list[dict]]:
    """The changes a run must answer to, each as the values to try (one must change the frames):
    another seed always; another prompt where it has one; another guidance where guidance is on.
    The tiny models answer to text and guidance unevenly (a few random layers), so two prompts
    and a much larger scale, a smaller one and 1 (guidance off) are tried."""
    changes: list[list[dict]] = [[{"seed": data["seed"] + 1}]]
    if varied(data, prompt=OTHER_PROMPT) != data:
        changes.append([{"prompt": OTHER_PROMPT}, {"prompt": ""}])
    scales = [v for v in _guidance_values(data) if v > 1]
    if scales:
        changes.append([{"guidance": 3 * max(scales)}, {"guidance": (1 + min(scales)) / 2}, {"guidance": 1.0}])
    return changes


def _guidance_values(data: dict) -> list[float]:
    pipeline = data["pipeline"]
    calls = [pipeline["call_kwargs"], *(stage["call_kwargs"] for stage in pipeline.get("stages", []))]
    calls += [step["kwargs"] for step in pipeline["setup"] if step["method"].startswith("guider")]
    return [float(call[key]) for call in calls for key in GUIDANCE_KEYS if call.get(key) is not None]


def plain_diffusers(data: dict, media: dict | None = None, **change) -> Made:
    """What plain diffusers makes from a sidecar alone: the pipeline class from the model path
    (folder or single file) with its dtypes, motion adapter, ControlNet, scheduler, LoRAs, setup
    calls and cache config; the recorded call kwargs, the media the test gives, the seed; the
    stages of a two-stage run as the docs write them. `change` (seed, prompt, guidance) varies
    the run (see `varied`); the sidecar's postprocess step follows. Pipelines are kept between
    calls, as loading is the slow part."""
    import diffusers
    import numpy as np
    import torch

    data = varied(data, **change)
    pipeline = data["pipeline"]
    media = sidecar_media(data) if media is None else dict(media)
    if "prompt" in pipeline["media_kwargs"]:  # prompt travel: {frame: prompt}
        media["prompt"] = {int(frame): text for frame, text in data["inputs"]["prompts"].items()}
    pipe = _pipe(data)
    for step in pipeline["setup"]:
        method, kwargs = step["method"], step["kwargs"]
        if method.startswith("scheduler = "):
            # `scheduler = UniPCMultistepScheduler.from_config` with the options it got.
            cls = getattr(diffusers, method.split(" = ")[1].split(".")[0])
            pipe.scheduler = cls.from_config(pipe.vidgen_test_scheduler.config, **kwargs)
        elif method == "guider = guider.new":
            # HunyuanVideo-1.5 carries its guidance on the guider, not in __call__.
            pipe.guider = pipe.vidgen_test_guider.new(**kwargs)
    generator = torch.Generator(pipeline["generator"]["device"]).manual_seed(data["seed"])
    if "torch_manual_seed" in pipeline["generator"]:
        torch.manual_seed(pipeline["generator"]["torch_manual_seed"])
    if pipeline.get("stages"):
        return _stages(pipe, data, media, generator)
    modular = data["model"].get("modular")
    if modular:  # a ModularPipeline returns the outputs it is asked for: one video here
        out = pipe(**pipeline["call_kwargs"], **media, generator=generator, output=modular["output"])
        if isinstance(out, dict):  # several outputs, by name: MiniMax-H3's video and its sound
            return Made(_uint8(out["videos"][0]), out["audio"][0].float().numpy())
        return Made(_uint8(out[0]), None)
    with _torchvision_resize(pipe):
        out = pipe(**pipeline["call_kwargs"], **media, generator=generator)
    # Text2Video-Zero returns its frames as `images`, the video pipelines as a batch of `frames`
    # (SANA-WM as one video: frames x height x width x 3).
    made = out.frames if hasattr(out, "frames") else None
    one = made is not None and getattr(made, "ndim", 0) == 4
    frames = _uint8(made if one else made[0] if made is not None else out.images)
    post = pipeline.get("postprocess")
    if post:
        # Wan VACE's keep_unmasked: the input where the mask is black, the generated pixels
        # where white, a linear blend between.
        assert post["step"] == "keep_unmasked", post
        given = np.stack([np.asarray(frame.convert("RGB")) for frame in media[post["video"]]]).astype(np.float32)
        weight = np.stack([np.asarray(frame.convert("L")) for frame in media[post["mask"]]]).astype(np.float32)
        frames = np.round(frames * weight[..., None] / 255 + given * (1 - weight[..., None] / 255)).astype(np.uint8)
    audio = getattr(out, "audio", None)
    if audio is not None:
        # LTX-2 returns a tensor (channels, samples) per video; Kandinsky 6 a numpy mono waveform
        # with output_type="np", shaped (1, samples) as vidgen records it.
        one = audio[0].float().numpy() if hasattr(audio[0], "float") else np.asarray(audio[0], dtype=np.float32)
        audio = one if one.ndim == 2 else one.reshape(1, -1)
    return Made(frames, audio)


@contextmanager
def _torchvision_resize(pipe):
    """diffusers' Cosmos ControlNet resizes its (all-zero) padding mask with torchvision's
    nearest resize, and no torchvision build fits this CPU torch: torch's nearest interpolation,
    which torchvision calls for it, stands in while the pipeline runs. With torchvision installed,
    or for any other pipeline, nothing changes."""
    import importlib.util

    if type(pipe).__name__ != "Cosmos2_5_TransferPipeline" or importlib.util.find_spec("torchvision"):
        yield
        return
    import torch.nn.functional as F
    from diffusers.models.controlnets import controlnet_cosmos

    def resize(tensor, size, interpolation=None):
        return F.interpolate(tensor, size=list(size), mode="nearest")

    controlnet_cosmos.transforms = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=resize), InterpolationMode=types.SimpleNamespace(NEAREST="nearest")
    )
    try:
        yield
    finally:
        del controlnet_cosmos.transforms


def sidecar_media(data: dict) -> dict:
    """The media a run's pipeline got, read again from the images and frame folders its sidecar
    names and checked against the pixels vidgen recorded (so they are exactly what it passed).
    Inputs at the run's size only: a test that made vidgen resize passes its media itself."""
    import hashlib

    from PIL import Image

    media = {}
    for kwarg, source in data["pipeline"]["media_kwargs"].items():
        name = source.split(".")[1].split()[0]  # "inputs.prompts (frame index -> prompt; ...)"
        if name == "prompts":
            continue  # plain_diffusers makes the prompt map
        record = data["inputs"][name]
        digest = hashlib.sha256()
        if "frames_used" in record:
            files = sorted(
                Path(record["path"]).iterdir(),
                key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)],
            )
            media[kwarg] = [Image.open(p).convert("RGB") for p in files[: record["frames_used"]]]
        else:
            media[kwarg] = Image.open(record["path"]).convert("RGB")
        for image in media[kwarg] if isinstance(media[kwarg], list) else [media[kwarg]]:
            digest.update(image.tobytes())
        assert digest.hexdigest() == record["prepared"]["sha256"], f"{name} is not what the pipeline got"
    return media


def assert_reproduces(ours, data: dict, media: dict | None = None, then=None, unanswered: tuple = ()) -> Made:
    """vidgen's frames `ours` equal plain diffusers' from the sidecar (within 1 of 255), carry
    signal, and are not what another seed, prompt or guidance makes: a tiny model that ignored
    any of them would fail here rather than pass a vacuous comparison. `then` is what the run
    note says vidgen does to the pipeline's frames (e.g. drop a repeat), applied to plain's.
    `unanswered` names a change ("prompt", "guidance") a tiny run is known not to answer to;
    the caller says why, and another test must show that its model does answer to it."""
    import numpy as np

    then = then or (lambda frames: frames)
    theirs = plain_diffusers(data, media)
    assert ours.shape == then(theirs.frames).shape
    assert np.abs(ours.astype(int) - then(theirs.frames).astype(int)).max() <= 1
    assert ours.std() > 0
    for tries in variations(data):
        if set(tries[0]) <= set(unanswered):
            continue
        for change in tries:
            other = then(plain_diffusers(data, media, **change).frames)
            if np.abs(ours.astype(int) - other.astype(int)).max() > 1:
                break
        else:
            raise AssertionError(f"{' and '.join(map(str, tries))} made the same frames")
    return theirs


def _uint8(frames):
    import numpy as np

    if isinstance(frames, list) and frames and hasattr(frames[0], "mode"):  # PIL images
        return np.stack([np.asarray(frame) for frame in frames])
    return (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)


def _pipe(data: dict):
    """The pipeline with everything that is set once: components, LoRAs, setup calls, caches."""
    model, pipeline = data["model"], data["pipeline"]
    setup = [step for step in pipeline["setup"] if not step["method"].startswith(_SETUP_EACH_CALL)]
    calls = (data.get("optimizations") or {}).get("calls", [])
    key = json.dumps([pipeline["class"], model, setup, calls], sort_keys=True)
    if key not in _PIPES:
        _PIPES.clear()
        _PIPES[key] = _load(data, setup, calls)
    return _PIPES[key]


def _load(data: dict, setup: list[dict], calls: list[dict]):
    import diffusers
    import torch

    model = data["model"]
    cls = getattr(diffusers, data["pipeline"]["class"])
    dtypes = model.get("dtypes")
    kwargs: dict = {**model.get("from_pretrained", {})}
    for field, class_name in (("motion_adapter", "MotionAdapter"), ("controlnet", "ControlNetModel")):
        if field in model:
            # The class the sidecar names (SparseCtrl's SparseControlNetModel), else the usual one.
            part = getattr(diffusers, model.get("components", {}).get(field, class_name))
            where = model[field]["path"]
            from_file = model[field]["source"] == "file"
            kwargs[field] = part.from_single_file(where) if from_file else part.from_pretrained(where)
    for component, file in model.get("files", {}).items():
        kwargs[component] = _single_file(model, component, file)
    if model["source"] == "file":
        config = data["config"]["model"]["base_config"]
        pipe = cls.from_single_file(model["path"], config=config, local_files_only=True, **kwargs)
    elif model.get("modular"):
        # A ModularPipeline as diffusers' docs build one: the blocks, init_pipeline on the
        # model, load_components (every component from the model's own subfolders).
        modular = model["modular"]
        blocks = getattr(diffusers, modular["blocks"])()
        if modular["workflow"]:
            blocks = blocks.get_workflow(modular["workflow"])
        dtype = {k: getattr(torch, DTYPES[v]) for k, v in dtypes.items()} if dtypes else torch.float32
        pipe = blocks.init_pipeline(model["path"])
        pipe.load_components(**modular["load_components"], dtype=dtype)
    else:
        dtype = {k: getattr(torch, DTYPES[v]) for k, v in dtypes.items()} if dtypes else torch.float32
        pipe = cls.from_pretrained(model["path"], dtype=dtype, **kwargs)
    if model.get("scheduler"):
        cls, options = getattr(diffusers, model["scheduler"]["class"]), model["scheduler"]["options"]
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)
    for lora in model.get("loras", []):
        where = Path(lora["path"])
        pipe.load_lora_weights(str(where.parent), weight_name=where.name, adapter_name=lora["name"])
    if model.get("loras"):
        pipe.set_adapters([lora["name"] for lora in model["loras"]], [lora["scale"] for lora in model["loras"]])
    for step in setup:
        method, kwargs = step["method"], dict(step["kwargs"])
        if method in _LORA_SETUP and data["pipeline"].get("stages"):
            continue  # a stage-2 LoRA: loaded where the docs load it, after stage 1 (see _stages)
        if method == "unet.add_embedding.load_state_dict":
            # The SDXL repair: the base UNet's text-time embedding, which from_unet2d drops.
            unet2d = diffusers.UNet2DConditionModel.from_pretrained(kwargs["from"])
            pipe.unet.add_embedding.load_state_dict(unet2d.add_embedding.state_dict())
            continue
        if "processor" in kwargs:  # Text2Video-Zero's "CrossFrameAttnProcessor(batch_size=2)"
            kwargs["processor"] = _processor(kwargs["processor"])
        target = pipe
        *path, name = method.split(".")
        for part in path:
            target = getattr(target, part)
        getattr(target, name)(**kwargs)
    for call in calls:
        if call["method"] == "transformer.enable_cache":  # MagCache, PAB: they change the frames
            pipe.transformer.enable_cache(_cache_config(pipe, call["kwargs"]["config"]))
    pipe.set_progress_bar_config(disable=True)
    pipe.vidgen_test_scheduler = pipe.scheduler
    pipe.vidgen_test_guider = getattr(pipe, "guider", None)
    pipe.vidgen_test_lora = False
    return pipe


def _single_file(model: dict, component: str, file: dict):
    """A denoiser from one file as diffusers documents it: from_single_file with the base
    model's config (its folder and subfolder), GGUFQuantizationConfig for GGUF files; a text
    encoder as transformers documents it (see `_text_encoder_file`). (Neither library has a way
    for scaled fp8 files: their tests compare with the bf16 original instead.)"""
    import diffusers
    import torch

    assert "scaled" not in file["quant"], "plain diffusers drops fp8 scales: compare scaled files with bf16"
    if component.startswith("text_encoder"):
        return _text_encoder_file(model, component, file)
    dtype = getattr(torch, DTYPES[model["dtype"]])
    kwargs = {"config": model["path"], "subfolder": component, "torch_dtype": dtype}
    if file["format"] == "gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    cls = getattr(diffusers, model["components"][component])
    return cls.from_single_file(file["path"], **kwargs)


def _text_encoder_file(model: dict, component: str, file: dict):
    """The pipeline's own encoder class from one file: from_pretrained(the model, subfolder,
    gguf_file=FILE, config=the model's encoder config) for GGUF (transformers dequantizes it),
    from_pretrained(None, config=..., state_dict=the file's tensors) for safetensors; in the
    dtype the pipeline gives its text encoder."""
    import torch
    import transformers
    from safetensors.torch import load_file

    dtype = getattr(torch, DTYPES[(model.get("dtypes") or {}).get(component, model["dtype"])])
    cls = getattr(transformers, model["components"][component])
    config = transformers.AutoConfig.from_pretrained(model["path"], subfolder=component)
    if file["format"] == "gguf":
        where = {"subfolder": component, "gguf_file": file["path"]}
        return cls.from_pretrained(model["path"], **where, config=config, dtype=dtype)
    return cls.from_pretrained(None, config=config, state_dict=load_file(file["path"]), dtype=dtype)


def _processor(text: str):
    from diffusers.pipelines.text_to_video_synthesis.pipeline_text_to_video_zero import CrossFrameAttnProcessor

    name, _, arguments = text.rstrip(")").partition("(")
    assert name == "CrossFrameAttnProcessor", text
    kwargs = dict(pair.split("=") for pair in arguments.split(", ") if pair)
    return CrossFrameAttnProcessor(**{k: int(v) for k, v in kwargs.items()})


def _cache_config(pipe, recorded: dict):
    import diffusers

    ((name, settings),) = recorded.items()
    settings = dict(settings)
    for key, value in settings.items():
        if key.endswith("_range") and isinstance(value, list):
            settings[key] = tuple(value)
    if settings.get("current_timestep_callback") == "lambda: pipe.current_timestep":
        settings["current_timestep_callback"] = lambda: pipe.current_timestep
    return getattr(diffusers, name)(**settings)


def _stages(pipe, data: dict, media: dict, generator) -> Made:
    """A two-stage run as the docs write it: stage 1 to latents, the latent upsampler, stage 2
    from the upscaled latents (with the stage-2 scheduler, LoRA and a fresh generator where the
    sidecar says so), then the resize it names."""
    import diffusers
    import torch

    pipeline = data["pipeline"]
    setup = {step["method"]: dict(step["kwargs"]) for step in pipeline["setup"]}
    if not hasattr(pipe, "vidgen_test_upsample"):
        ((method, kwargs),) = [(m, k) for m, k in setup.items() if m.startswith("latent_upsampler = ")]
        upsampler_cls = _upsampler_class(method.split(" = ")[1].split(".")[0])
        where = kwargs.pop("pretrained_model_name_or_path")
        kwargs.pop("torch_dtype", None)
        upsampler = upsampler_cls.from_pretrained(where, torch_dtype=torch.float32, **kwargs)
        ((method,),) = [(m,) for m in setup if m.startswith("upsample_pipe = ")]
        upsample_cls = getattr(diffusers, method.split(" = ")[1])
        pipe.vidgen_test_upsample = upsample_cls(vae=pipe.vae, latent_upsampler=upsampler)
    stage_2_scheduler = setup.get("stage_2_scheduler = FlowMatchEulerDiscreteScheduler.from_config")
    lora = setup.get("load_lora_weights")
    seed = data["seed"]
    values: dict = {}
    out = None
    for stage in pipeline["stages"]:
        kwargs = {k: values.get(v, v) if isinstance(v, str) else v for k, v in stage["call_kwargs"].items()}
        before = stage.get("before", [])
        if stage["call"] == "upsample_pipe":
            out = pipe.vidgen_test_upsample(**kwargs)
        else:
            if "pipe.disable_lora()" in before and pipe.vidgen_test_lora:
                pipe.disable_lora()
            if "pipe.enable_lora()" in before:
                if not pipe.vidgen_test_lora:  # loaded here, after stage 1, as the docs do
                    pipe.load_lora_weights(**lora)
                    pipe.vidgen_test_lora = True
                pipe.enable_lora()
                pipe.set_adapters(**setup["set_adapters"])
            if "pipe.scheduler = stage_2_scheduler" in before:
                pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(
                    pipe.vidgen_test_scheduler.config, **stage_2_scheduler
                )
            if stage.get("generator") == "a new one, seeded with the seed":
                generator = torch.Generator().manual_seed(seed)
            out = pipe(**kwargs, **media, generator=generator)
            pipe.scheduler = pipe.vidgen_test_scheduler
        returned = stage.get("returns", "").split(" (")[0].split(", ")
        result = list(out) if isinstance(out, tuple) else [out.frames]
        values.update(zip(returned, result, strict=False))
    frames = out.frames[0]
    resize = (pipeline["stages"][-1].get("then") or {}).get("resize")
    if resize:
        frames = [frame.resize(tuple(resize)) for frame in frames]
    audio = getattr(out, "audio", None)
    return Made(_uint8(frames), None if audio is None else audio[0].float().numpy())


def _upsampler_class(name: str):
    if name == "LTX2LatentUpsamplerModel":
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

        return LTX2LatentUpsamplerModel
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    return LTXLatentUpsamplerModel


# -- tiers -----------------------------------------------------------------------------------
#
# Every test is in exactly one tier, marked `unit`, `pipeline` or `process` (pyproject.toml says
# what each means): `pytest -m unit` is the quick loop, `pytest` runs all three. The tier of a
# test, first match:
#
#   1. its own mark (`@pytest.mark.pipeline`, or a `pytest.param(..., marks=...)`);
#   2. process: it uses a name in PROCESS_NAMES (in its body, in the helpers of this folder it
#      calls, at any depth, or in its fixtures), or it is marked `ray`;
#   3. its module's DEFAULT_TIER, for a module whose tests mostly run pipelines;
#   4. pipeline: it uses a name in PIPELINE_NAMES, or it is marked `gpu`;
#   5. unit.
#
# Tests that run a pipeline only through `cli(...)` cannot be told apart by name, so they carry
# the mark (1) or live in a module that says so (3). The tiers are guarded while a test runs: a
# `unit` test that builds a torch module (a model: loading a pipeline builds hundreds) fails, and
# a `unit` or `pipeline` test that starts a process other than the few in SMALL_PROGRAMS fails,
# each naming the mark to use instead. So a test in the wrong tier is caught, never silently slow.

TIERS = ("unit", "pipeline", "process")
PROCESS_NAMES = frozenset({"subprocess", "Popen", "cli_subprocess", "hostile", "pty", "sync_playwright", "ray"})
PIPELINE_NAMES = frozenset(
    {"plain_diffusers", "assert_reproduces", "from_pretrained", "from_single_file", "ensure", "execute"}
)
TIER = pytest.StashKey[str]()
VIOLATIONS = pytest.StashKey[list]()
TESTS = Path(__file__).resolve().parent


def _ours(code: types.CodeType) -> bool:
    return Path(code.co_filename).resolve().parent == TESTS


def _names(code: types.CodeType, namespace: dict, found: set, seen: set) -> None:
    """Add the names `code` uses to `found`, with those of the functions of this folder it names."""
    if code in seen:
        return
    seen.add(code)
    found.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _names(const, namespace, found, seen)
    for name in code.co_names:
        helper = namespace.get(name)
        if isinstance(helper, types.FunctionType) and _ours(helper.__code__):
            _names(helper.__code__, helper.__globals__, found, seen)


def _names_used(item: pytest.Function) -> set:
    found: set = set()
    seen: set = set()
    functions = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions += [getattr(d.func, "__wrapped__", d.func) for d in defs]
    for function in functions:
        function = getattr(function, "__func__", function)
        code = getattr(function, "__code__", None)
        if code is not None and _ours(code):
            _names(code, function.__globals__, found, seen)
    return found


def _tier(item: pytest.Item) -> str:
    own = [mark.name for mark in item.own_markers if mark.name in TIERS]
    if own:
        return own[0]
    names = _names_used(item) if isinstance(item, pytest.Function) else set()
    if item.get_closest_marker("ray") or names & PROCESS_NAMES:
        return "process"
    default = getattr(getattr(item, "module", None), "DEFAULT_TIER", None)
    if default:
        assert default in TIERS, f"{item.module.__name__}.DEFAULT_TIER = {default!r}"
        return default
    if item.get_closest_marker("gpu") or names & PIPELINE_NAMES:
        return "pipeline"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets its tier's mark; `@pytest.mark.gpu` tests run only where torch sees CUDA."""
    for item in items:
        tier = _tier(item)
        item.stash[TIER] = tier
        marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        assert marked <= {tier}, f"{item.nodeid}: tier marks {sorted(marked)} disagree; mark the test itself"
        if not marked:
            item.add_marker(tier)
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class TierViolation(AssertionError):
    pass


# What a test outside the process tier may start: the bundled ffmpeg (every video is encoded by
# it) and uname (the platform module asks it once, for sidecars and `doctor`). A pipeline test
# may also let torch.compile run its compiler and workers; never vidgen, Ray or a browser.
SMALL_PROGRAMS = ("ffmpeg", "uname")
HEAVY_WORDS = ("vidgen", "/ray/", "chrom", "playwright", "accelerate", "torchrun", "torch.distributed")


def _allowed(tier: str, argv: list[str]) -> bool:
    if Path(argv[0]).name.startswith(SMALL_PROGRAMS):
        return True
    return tier == "pipeline" and not any(word in arg for arg in argv for word in HEAVY_WORDS)


def _importing() -> bool:
    """Whether an import is running: some libraries build a torch module when imported (the
    kernels decorator in transformers), which is not a model being loaded."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def _guarded(item: pytest.Item) -> Iterator[None]:
    """Patch what the item's tier may not do so that doing it records a violation and raises."""
    tier = item.stash.get(TIER, "process")
    if tier == "process":
        yield
        return
    found = item.stash[VIOLATIONS] = []

    def violation(what: str, instead: str) -> TierViolation:
        error = TierViolation(f"{item.nodeid} is in the {tier} tier but {what}: mark it {instead}")
        found.append(error)
        return error

    patches: list[tuple[object, str, object]] = []

    def patch(owner: object, name: str, value: object) -> None:
        patches.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    popen_init = subprocess.Popen.__init__

    def guarded_popen(self, args, *rest, **kwargs):
        argv = [os.fsdecode(args)] if isinstance(args, (str, bytes, os.PathLike)) else [os.fsdecode(a) for a in args]
        if not _allowed(tier, [os.fsdecode(kwargs.get("executable") or argv[0]), *argv[1:]]):
            raise violation(f"started a process ({' '.join(argv)[:200]})", "process")
        popen_init(self, args, *rest, **kwargs)

    patch(subprocess.Popen, "__init__", guarded_popen)
    if tier == "unit":
        import torch

        module_init = torch.nn.Module.__init__

        def guarded_module(self, *args, **kwargs):
            if not _importing():
                raise violation(f"built a torch module ({type(self).__name__})", "pipeline")
            module_init(self, *args, **kwargs)

        patch(torch.nn.Module, "__init__", guarded_module)
    try:
        yield
    finally:
        for owner, name, value in reversed(patches):
            setattr(owner, name, value)


def _raise_violations(item: pytest.Item) -> None:
    # Raised again after the phase, in case the code under test caught the first raise (the
    # CLI turns exceptions into exit codes) and the test passed anyway.
    found = item.stash.get(VIOLATIONS, [])
    if found:
        first = found[0]
        found.clear()
        raise first


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with _guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        _raise_violations(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        _raise_violations(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)
    finally:
        _raise_violations(item)


@pytest.fixture
def nothing_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any weights load or any socket connects (a test using this is `unit`)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may load or connect here")

    monkeypatch.setattr("vidgen.models.loader.load", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
