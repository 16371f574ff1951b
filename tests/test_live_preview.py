"""--live-preview: NAME.preview.webp rewritten every N steps while a video denoises, announced in
`--progress json`, decoded by TAEHV weights (--preview-decoder) or the model's own VAE; never
half-written under its name, gone with a failed run, and the video the same with or without it.

No TAEHV weights can be downloaded here, so the tests write random ones of the published
architecture (vidgen.models.taehv.random_weights, the published key names and shapes) for the
tiny models' latent channels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, one_line_error, png_frames, sidecar
from PIL import Image

from vidgen.core.progress import NullProgress

DEFAULT_TIER = "pipeline"

TINY_WAN = ["t2v", "a fox", "--preset", "tiny-wan", "--seed", "3", "--steps", "4"]
# The published widths of TAEHV's decoder stages; the tests' files use them at the tiny models'
# channel counts (about 40 MB of random weights, a second to write).
WIDTHS = (256, 128, 64, 64)


def _tae(path: Path, channels: int = 16, widths: tuple[int, ...] = WIDTHS, patch: int = 1, **changes) -> Path:
    """A TAEHV weights file (random, published key names and shapes) for `channels` latent
    channels; `changes` replaces or adds tensors (None removes one)."""
    import torch
    from safetensors.torch import save_file

    from vidgen.models import taehv

    state = taehv.random_weights(taehv.Arch(channels, widths, (1, 2, 2), patch))  # type: ignore[arg-type]
    state["encoder.0.weight"] = torch.zeros(64, 3 * patch**2, 3, 3)  # encoders ship too; previews skip them
    for name, tensor in changes.items():
        name = name.replace("__", ".")
        if tensor is None:
            state.pop(name)
        else:
            state[name] = tensor
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tae16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tae(tmp_path_factory.mktemp("tae") / "taew_tiny.safetensors")


class Copying(NullProgress):
    """A Progress that keeps a copy of the preview each time it is announced, before the next
    one replaces it."""

    def __init__(self) -> None:
        self.previews: list[tuple[int, int, bytes]] = []
        self.steps = 0

    def advance(self) -> None:
        self.steps += 1

    def preview(self, path: str, step: int, total: int) -> None:
        self.previews.append((step, total, Path(path).read_bytes()))


def _frames(data: bytes) -> np.ndarray:
    """Every frame of an animated WebP, as uint8 RGB."""
    import io

    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(np.asarray(image.convert("RGB")))
    return np.stack(frames)


def _run(preset: str, layer: dict, progress) -> list:
    """A run in this process (as the CLI makes it), reporting to `progress`."""
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.run import generate

    plan = generate.plan(resolve("t2v", [preset], [Layer("cli", layer)], families.defaults_layer))
    return generate.execute(plan, progress)


def test_previews_every_two_steps_show_the_video_forming(tmp_path: Path, tae16: Path) -> None:
    copies = Copying()
    layer = {
        "inputs": {"prompt": "a fox"},
        "sampling": {"seed": 3, "num_inference_steps": 4},
        "model": {"preview_decoder": str(tae16)},
        "output": {"live_preview": 2, "path": "clip.mp4"},
    }
    results = _run("tiny-wan", layer, copies)
    assert [(step, total) for step, total, _ in copies.previews] == [(2, 4), (4, 4)]
    after_2, after_4 = (_frames(data) for _, _, data in copies.previews)
    # TAEHV decodes one frame per latent frame: 9 frames are 3 latent frames, each 16x16.
    assert after_2.shape == after_4.shape == (3, 16, 16, 3)
    assert np.abs(after_2.astype(int) - after_4.astype(int)).mean() > 1, "the preview did not change"
    assert (tmp_path / "clip.preview.webp").read_bytes() == copies.previews[-1][2]
    data = sidecar(tmp_path / "clip.json")
    shown = data["output"]["live_preview"]
    assert shown["path"] == "clip.preview.webp" and shown["written"] == 2 and shown["step"] == 4
    assert shown["decoder"] == "taehv" and shown["shows"] == "the scheduler's estimate of the clean video"
    assert data["model"]["files"]["preview_decoder"]["sha256"] == _sha256(tae16)
    assert data["timings"]["live_preview"] > 0
    # The scheduler is its own class again after the run (a batch reuses the pipeline).
    from diffusers import UniPCMultistepScheduler

    assert type(results[0].loaded.pipe.scheduler) is UniPCMultistepScheduler


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("decoder", ["taehv", "vae"])
def test_the_video_is_the_same_with_and_without_previews(tmp_path: Path, tae16: Path, decoder: str) -> None:
    plain = cli(*TINY_WAN, "--format", "png", "--out", "plain")
    extra = ["--preview-decoder", str(tae16)] if decoder == "taehv" else []
    previewed = cli(*TINY_WAN, "--format", "png", "--out", "previewed", "--live-preview-every", "1", *extra)
    assert np.array_equal(png_frames(plain), png_frames(previewed))
    assert _frames((tmp_path / "previewed.preview.webp").read_bytes()).shape[0] == (3 if decoder == "taehv" else 9)


def test_the_bare_flag_keeps_previews_within_a_tenth_of_the_run(tmp_path: Path, monkeypatch) -> None:
    """--live-preview alone is "auto": a preview falls due every 2 steps and is written only while
    previews take under a tenth of the run's time. On tiny Wan a VAE preview costs a few steps, so
    most due ones are held back; the video is the same."""
    from vidgen.run import live

    # The first preview waits for a second of denoising (AUTO_FIRST), longer than tiny Wan's whole run.
    monkeypatch.setattr(live, "AUTO_FIRST", 0.0)
    steps = ["--steps", "20"]
    plain = cli(*TINY_WAN[:-2], *steps, "--format", "png", "--out", "plain")
    auto = cli(*TINY_WAN[:-2], *steps, "--format", "png", "--out", "auto", "--live-preview")
    assert np.array_equal(png_frames(plain), png_frames(auto))
    data = sidecar(tmp_path / "auto.json")
    shown = data["output"]["live_preview"]
    assert shown["every"] == "auto" and shown["share"] == 0.1
    assert shown["written"] >= 1 and shown["held"] >= 1, shown
    assert shown["written"] + shown["held"] == 10, shown
    assert data["config"]["output"]["live_preview"] == "auto"
    assert (tmp_path / "auto.preview.webp").is_file()


def test_progress_json_names_each_preview(tmp_path: Path) -> None:
    result = cli(*TINY_WAN, "--live-preview-every", "2", "--progress", "json", "--out", "clip.mp4")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    previews = [event for event in events if event["event"] == "preview"]
    assert [(e["path"], e["step"], e["total"], e["id"]) for e in previews] == [
        ("clip.preview.webp", 2, 4, "clip.mp4"),
        ("clip.preview.webp", 4, 4, "clip.mp4"),
    ]
    # Each preview follows the step it shows (written beside the next steps, so not always at once).
    order = [(e["event"], e.get("step")) for e in events if e["event"] in ("step", "preview")]
    assert order.index(("step", 2)) < order.index(("preview", 2)) < order.index(("preview", 4))
    # The full VAE decodes every frame.
    assert _frames((tmp_path / "clip.preview.webp").read_bytes()).shape == (9, 16, 16, 3)
    assert sidecar(tmp_path / "clip.json")["output"]["live_preview"]["decoder"] == "vae"


def test_a_pickle_decoder_loads_with_allow_pickle(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(_tae(tmp_path / "tae.safetensors"))), tmp_path / "taew.pth")
    result = cli(*TINY_WAN, "--live-preview", "--preview-decoder", "taew.pth", "--allow-pickle", "--out", "clip.mp4")
    assert result.exit_code == 0, result.stderr
    assert sidecar(tmp_path / "clip.json")["model"]["files"]["preview_decoder"]["format"] == "pickle"


# -- refused before loading -------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--live-preview-every", "0"], 3, "output.live_preview: Value error, must be auto or a whole number"),
        (["--set", "output.live_preview=often"], 3, "must be auto or a whole number of steps from 1 to 1000"),
        (["--preview-decoder", "taew2_1.safetensors"], 3, "--preview-decoder is the decoder of --live-preview"),
        (["--live-preview", "--set", "output.live_preview=1001"], 3, "from 1 to 1000"),
    ],
)
def test_bad_intervals_and_a_lone_decoder_are_config_errors(args: list[str], code: int, needle: str) -> None:
    one_line_error(cli(*TINY_WAN, *args), code, needle)


@pytest.mark.unit
def test_a_pickle_decoder_without_allow_pickle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taew2_1.pth").write_bytes(b"not read: refused by its name")
    line = one_line_error(cli(*TINY_WAN, "--live-preview", "--preview-decoder", "taew2_1.pth"), 5, "taew2_1.pth")
    assert "--allow-pickle" in line


@pytest.mark.unit
@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"text_encoder__weight": "tensor"}, "not TAEHV weights: it holds text_encoder.weight"),
        ({"decoder__4__conv__2__weight": None}, "it lacks decoder.4.conv.2.weight"),
        ({"decoder__9__conv__0__weight": "bad shape"}, "the wrong shape for decoder.9.conv.0.weight"),
        ({"decoder__0__weight": "tensor"}, "a TAEHV 'super' decoder"),
    ],
)
def test_files_of_another_architecture_are_refused_in_one_line(tmp_path: Path, changes: dict, needle: str) -> None:
    import torch

    made = {
        k: (torch.zeros(3, 3) if v == "tensor" else torch.zeros(8, 8, 3, 3) if v else None) for k, v in changes.items()
    }
    _tae(tmp_path / "odd.safetensors", widths=(16, 16, 8, 8), **made)
    result = cli(*TINY_WAN, "--live-preview", "--preview-decoder", "odd.safetensors", "--progress", "json")
    one_line_error(result, 5, "--preview-decoder odd.safetensors", needle)


def test_a_decoder_for_other_latents_is_refused_before_loading(tmp_path: Path) -> None:
    from vidgen.models import tiny

    tiny.ensure("wan")  # its VAE config is on disk, so the channels are checked before loading
    _tae(tmp_path / "taew2_2.safetensors", channels=48, widths=(16, 16, 8, 8), patch=2)
    result = cli(*TINY_WAN, "--live-preview", "--preview-decoder", "taew2_2.safetensors", "--progress", "json")
    line = one_line_error(result, 5, "decodes 48-channel latents", "16-channel", "taew2_1.safetensors")
    assert '"event": "load"' not in result.stderr, line


@pytest.mark.unit
def test_families_without_previews_or_without_taehv_say_why() -> None:
    framepack = cli("i2v", "first.png", "x", "--preset", "tiny-framepack", "--live-preview")
    one_line_error(framepack, 3, "--live-preview is not available for FramePack")
    ltx = cli("t2v", "x", "--preset", "tiny-ltx", "--live-preview", "--preview-decoder", "taew2_1.safetensors")
    one_line_error(ltx, 3, "no TAEHV weights are published for LTX-Video's latents")


# -- stopped runs -----------------------------------------------------------------------------


def _vidgen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _complete_webp(path: Path) -> int:
    """The frame count of a WebP that decodes whole (a truncated one raises)."""
    return _frames(path.read_bytes()).shape[0]


def test_a_kill_while_a_preview_is_written_leaves_the_last_whole_one(tmp_path: Path) -> None:
    args = [*TINY_WAN[:-1], "6", "--live-preview-every", "1", "--out", "clip.mp4"]
    killed = _vidgen(*args, env={"VIDGEN_TEST_KILL_PREVIEW": "2"})
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, stderr
    # Preview 1 is whole under the final name; preview 2's half is only under a temporary name.
    assert _complete_webp(tmp_path / "clip.preview.webp") == 9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".clip.preview.webp.")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".part"), leftovers
    assert not (tmp_path / "clip.mp4").exists()
    # The next run replaces the dead run's preview without --overwrite, and sweeps its part file.
    rerun = _vidgen(*args)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "is left from a run that was stopped" in stderr
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "user-presets")
    assert names == ["clip.json", "clip.mp4", "clip.preview.webp"]


def test_sigterm_mid_run_leaves_no_preview(tmp_path: Path) -> None:
    args = [*TINY_WAN[:-1], "400", "--live-preview-every", "1", "--progress", "json", "--out", "clip.mp4"]
    process = _vidgen(*args)
    seen = []
    while process.poll() is None:
        seen.append(process.stderr.readline())
        if '"event": "preview"' in seen[-1] and '"step": 5' in seen[-1]:
            break
    time.sleep(0.3)  # a few more previews: the signal may come while one is written
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, "".join(seen) + stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: stopped by SIGTERM")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "user-presets") == []


@pytest.mark.process  # on a pseudo-terminal, through test_progress's helper
def test_the_terminal_shows_the_preview_on_the_denoising_line(tmp_path: Path) -> None:
    from test_progress import _on_a_terminal

    result, shown = _on_a_terminal(*TINY_WAN, "--live-preview-every", "2", "--out", "clip.mp4")
    assert result.returncode == 0, shown
    lines = [line.lstrip(" ✓⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏") for line in shown.splitlines()]
    assert any(line.startswith("denoising") and "preview at step 4: clip.preview.webp" in line for line in lines), shown
    assert not any(line.startswith("preview") for line in lines), shown  # no line of its own


# -- every family that can be previewed ---------------------------------------------------------

# (preset, mode arguments, frames of the VAE's preview): one per way the families lay out and
# decode their latents (frames-first, a batch of frames, tokens, scaled, a temporal VAE).
FAMILIES = [
    ("tiny-cogvideox", ["t2v", "x"], 9),
    ("tiny-modelscope", ["t2v", "x"], 8),
    ("tiny-ltx", ["t2v", "x"], 17),
    ("tiny-hunyuanvideo15", ["t2v", "x"], 9),
    ("tiny-svd", ["i2v", "image.png"], 4),
    ("tiny-animatediff", ["animate", "x"], 8),
    ("tiny-mochi", ["t2v", "x"], 7),  # latents brought to its VAE's statistics first
    ("tiny-latte", ["t2v", "x"], 16),  # an image VAE frame by frame, told the video's length
]


@pytest.mark.parametrize(("preset", "args", "frames"), FAMILIES, ids=[row[0] for row in FAMILIES])
def test_each_way_of_decoding_latents_gives_a_preview(
    tmp_path: Path, preset: str, args: list[str], frames: int
) -> None:
    Image.new("RGB", (32, 32), (200, 80, 40)).save(tmp_path / "image.png")
    result = cli(*args, "--preset", preset, "--seed", "1", "--live-preview-every", "1", "--out", "clip.mp4")
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr  # no preview failed
    shown = sidecar(tmp_path / "clip.json")["output"]["live_preview"]
    assert shown["decoder"] == "vae" and shown["frames"] == frames and "stopped" not in shown
    assert shown["shows"] == "the scheduler's estimate of the clean video"
    assert _complete_webp(tmp_path / "clip.preview.webp") >= 1


@pytest.mark.parametrize(("preset", "channels", "frames"), [("tiny-cogvideox", 4, 3), ("tiny-ltx2", 4, 5)])
def test_taehv_decodes_frames_first_and_token_latents(tmp_path: Path, preset: str, channels: int, frames: int) -> None:
    _tae(tmp_path / "tae.safetensors", channels=channels, widths=(16, 16, 8, 8))
    args = [
        "t2v",
        "x",
        "--preset",
        preset,
        "--seed",
        "1",
        "--live-preview-every",
        "2",
        "--preview-decoder",
        "tae.safetensors",
    ]
    result = cli(*args, "--out", "clip.mp4")
    assert result.exit_code == 0, result.stderr
    shown = sidecar(tmp_path / "clip.json")["output"]["live_preview"]
    assert (shown["decoder"], shown["frames"], shown["latent_channels"]) == ("taehv", frames, channels)


# -- the parts ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_published_layouts_are_read_from_their_shapes() -> None:
    from vidgen.models import taehv

    for arch in (
        taehv.Arch(16, WIDTHS, (1, 2, 2), 1),  # taew2_1, taehv, taecvx
        taehv.Arch(48, WIDTHS, (1, 2, 2), 2),  # taew2_2
        taehv.Arch(128, WIDTHS, (2, 2, 2), 4),  # taeltx_2: 8 frames per latent frame
    ):
        tensors = {name: (shape, "F16") for name, shape in taehv.expected(arch).items()}
        assert taehv.architecture(tensors, "f") == arch
    assert taehv.Arch(128, WIDTHS, (2, 2, 2), 4).temporal == 8


def test_the_decoder_gives_the_same_frames_chunk_by_chunk() -> None:
    import torch

    from vidgen.models import taehv

    arch = taehv.Arch(4, (8, 8, 8, 8), (1, 2, 2), 2)
    torch.set_default_dtype(torch.float64)  # exact arithmetic, so chunks must agree to the bit
    try:
        full = taehv.build(arch, taehv.random_weights(arch), upscale_time=True)
        latents = torch.randn(1, 4, 5, 3, 2)
        whole, chunked = full.decode(latents, chunk=8), full.decode(latents, chunk=2)
        preview = taehv.build(arch, taehv.random_weights(arch), upscale_time=False).decode(latents)
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.allclose(whole, chunked, atol=1e-12)
    # 5 latent frames -> 4 x 4 + 1 frames; 8x the size, then the 2x2 patches.
    assert whole.shape == (1, 17, 3, 48, 32) and preview.shape == (1, 5, 3, 48, 32)


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["flow-euler", "unipc-flow", "ddim"])
def test_the_estimate_is_the_clean_sample_and_the_step_is_unchanged(kind: str) -> None:
    import copy

    import torch
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from vidgen.run import live

    scheduler = {
        "flow-euler": FlowMatchEulerDiscreteScheduler(),
        "unipc-flow": UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
        "ddim": DDIMScheduler(clip_sample=False),
    }[kind]
    scheduler.set_timesteps(4)
    plain = copy.deepcopy(scheduler)
    clean, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    t = scheduler.timesteps[1]
    for each in (scheduler, plain):  # both at the second step
        each._step_index = 1 if kind != "ddim" else None
    if kind == "ddim":
        alpha = scheduler.alphas_cumprod[int(t)]
        sample, output = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise, noise
    else:
        sigma = scheduler.sigmas[1]
        sample, output = (1 - sigma) * clean + sigma * noise, noise - clean  # the true velocity
    kept = []
    with live._watched(scheduler, kept.append):
        stepped = scheduler.step(output, t, sample, return_dict=False)[0]
    assert type(scheduler) is type(plain)  # its own class again
    assert torch.equal(stepped, plain.step(output, t, sample, return_dict=False)[0])
    (make,) = kept  # made on demand: only a step that gets a preview pays for it
    estimate, is_clean = make()
    assert is_clean and torch.allclose(estimate.float(), clean, atol=1e-4)


def test_replay_names_the_decoder_and_refuses_a_changed_one(tmp_path: Path) -> None:
    import torch

    _tae(tmp_path / "tae.safetensors", widths=(16, 16, 8, 8))
    made = cli(*TINY_WAN, "--live-preview-every", "2", "--preview-decoder", "tae.safetensors", "--out", "clip.mp4")
    assert made.exit_code == 0, made.stderr
    again = cli("replay", "clip.json", "--out", "again.mp4")
    assert again.exit_code == 0, again.stderr
    assert f"preview decoder tae.safetensors (local file {tmp_path / 'tae.safetensors'})" in again.stderr
    assert "preview_decoder file tae.safetensors" in again.stderr and "as recorded" in again.stderr
    assert (tmp_path / "again.preview.webp").is_file()
    _tae(tmp_path / "tae.safetensors", widths=(16, 16, 8, 8), decoder__1__bias=torch.ones(16))
    one_line_error(cli("replay", "clip.json", "--out", "x.mp4"), 5, "preview_decoder file", "has changed")


@pytest.mark.unit
def test_a_dry_run_names_the_preview_it_would_write() -> None:
    result = cli(*TINY_WAN, "--live-preview-every", "3", "--out", "clip.mp4", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["outputs"][0]["live_preview"] == "clip.preview.webp"
    assert body["config"]["output"]["live_preview"] == 3
    assert body["sources"]["output.live_preview"] == "cli:--live-preview-every"
    shown = cli(*TINY_WAN, "--live-preview", "--out", "clip.mp4", "--dry-run").stdout
    assert 'live_preview: "auto"' in shown and "# cli:--live-preview" in shown
    assert "clip.preview.webp while" in shown


@pytest.mark.unit
def test_batch_jobs_with_other_decoders_share_a_pipeline() -> None:
    from vidgen import families
    from vidgen.batch.jobs import group_key
    from vidgen.config import resolve
    from vidgen.config.layers import Layer

    def key(decoder: str | None) -> str:
        layer = {"inputs": {"prompt": "x"}, "output": {"live_preview": 2}, "model": {"preview_decoder": decoder}}
        return group_key(resolve("t2v", ["tiny-wan"], [Layer("job", layer)], families.defaults_layer))

    assert key("a.safetensors") == key("b.safetensors") == key(None)


@pytest.mark.unit
def test_a_hub_decoder_that_cannot_be_fetched_fails_before_loading() -> None:
    source = "madebyollin/taehv:safetensors/taew2_1.safetensors"  # not cached, and the tests are offline
    result = cli(*TINY_WAN, "--live-preview", "--preview-decoder", source, "--progress", "json")
    one_line_error(result, 5, f"--preview-decoder {source} could not be downloaded from the Hub")
    assert '"event": "load"' not in result.stderr


@pytest.mark.unit
def test_families_whose_pipeline_decodes_inside_its_call_without_a_preview_decode_refuse_it(tmp_path: Path) -> None:
    from conftest import cli, one_line_error

    for preset, title in (("tiny-kandinsky5", "Kandinsky 5.0 Video"), ("tiny-sana-video", "SANA-Video")):
        result = cli("t2v", "a fox", "--preset", preset, "--live-preview", "--out", "x.mp4")
        one_line_error(result, 3, f"--live-preview is not available for {title}")
    assert not (tmp_path / "x.mp4").exists()
