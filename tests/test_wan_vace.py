"""Wan VACE (`vidgen control` with --mask and --ref) and Wan 2.1 video-to-video on tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, plain_diffusers, sidecar
from PIL import Image

VACE = ["control", "a dancer", "--preset", "tiny-wan-vace"]


def _poses(folder: Path, frames: int, size: int = 16) -> Path:
    """A control video the tests make themselves: a bright square moving over a dark ground."""
    folder.mkdir()
    for index in range(frames):
        pixels = np.full((size, size, 3), 20, dtype=np.uint8)
        x = index % (size - 6)
        pixels[4:10, x : x + 6] = 235
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return folder


def _mask(path: Path, size: tuple[int, int] = (16, 16), value: int | None = None) -> Path:
    """Right half white (generate), left half black (keep); or all `value`."""
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    if value is None:
        pixels[:, size[0] // 2 :] = 255
    else:
        pixels[:] = value
    Image.fromarray(pixels, "L").save(path)
    return path


def _face(path: Path, size: tuple[int, int] = (16, 16)) -> Path:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = 200, np.arange(size[0], dtype=np.uint8) * 12
    Image.fromarray(pixels).save(path)
    return path


def _raw(data: dict) -> dict:
    """The sidecar without its postprocess step: what the model itself made."""
    return {**data, "pipeline": {k: v for k, v in data["pipeline"].items() if k != "postprocess"}}


def _png_frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def _run(*args: str, out: str = "out/") -> tuple[np.ndarray, dict]:
    result = cli(*args, "--format", "png", "--out", out)
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _png_frames(folder), sidecar(folder.with_name(folder.name + ".json"))


# -- VACE equals plain diffusers ----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny-wan-vace", "tiny-wan22-vace"])
def test_done_when_vace_equals_plain_diffusers_from_its_sidecar(tmp_path: Path, preset: str) -> None:
    # Inputs at the run's size (16x16), so the pipeline gets the files' own pixels.
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "mask.png")
    _face(tmp_path / "face.png")
    args = ["control", "a dancer", "--preset", preset, "--control", "poses/", "--mask", "mask.png"]
    ours, data = _run(*args, "--ref", "face.png", "--seed", "5")
    assert ours.shape == (9, 16, 16, 3)
    assert data["pipeline"]["class"] == "WanVACEPipeline"
    assert data["pipeline"]["media_kwargs"] == {
        "video": "inputs.control",
        "mask": "inputs.mask",
        "reference_images": "inputs.reference_images",
    }
    call = data["pipeline"]["call_kwargs"]
    # --control-scale is diffusers' conditioning_scale; the length is the control video's.
    assert call["conditioning_scale"] == 1.0 and call["num_frames"] == 9
    assert data["inputs"]["mask"]["kind"] == "image" and data["inputs"]["mask"]["repeated"] == 9
    assert data["inputs"]["reference_images"]["path"] == ["face.png"]
    media = {
        "video": [Image.open(p).convert("RGB") for p in sorted((tmp_path / "poses").glob("*.png"))],
        "mask": [Image.open(tmp_path / "mask.png").convert("L")] * 9,
        "reference_images": [Image.open(tmp_path / "face.png").convert("RGB")],
    }
    # The left half (black) is the control video pasted back after decoding, and the sidecar
    # says so: plain diffusers plus that step repeats the run.
    post = data["pipeline"]["postprocess"]
    assert (post["step"], post["video"], post["mask"]) == ("keep_unmasked", "video", "mask")
    assert "keep_unmasked" not in call
    # Not vacuous: another seed, prompt and guidance give other frames (in the half that is
    # generated; the kept half is the input whatever the seed). The two tiny Wan 2.2 experts with
    # a mask and a reference barely read the prompt (other prompts move a pixel by 1 to 4 of 255);
    # test_reproduce.py shows that the same model answers to its prompt without them.
    assert_reproduces(ours, data, media, unanswered=("prompt",) if preset == "tiny-wan22-vace" else ())
    other = plain_diffusers(data, media, seed=6).frames
    assert np.abs(ours.astype(int) - other.astype(int))[:, :, 8:].max() > 1
    assert np.abs(ours.astype(int) - other.astype(int))[:, :, :8].max() <= 1
    if preset == "tiny-wan22-vace":
        assert call["guidance_scale_2"] == 3.0  # the low-noise expert's


@pytest.mark.pipeline
def test_vace_with_canny_mp4_and_save_control(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from vidgen.io import media

    clip = np.stack([np.asarray(Image.open(p)) for p in sorted(_poses(tmp_path / "p", 10).glob("*.png"))])
    codec, crf = media.encoding("mp4", None, None)
    media.write(clip, tmp_path / "clip.mp4", fmt="mp4", fps=16, codec=codec, crf=crf, metadata=None, overwrite=False)
    # A mask video with one frame per control frame: generate the right half.
    masks = np.zeros_like(clip)
    masks[:, :, 8:] = 255
    media.write(masks, tmp_path / "mask.mp4", fmt="mp4", fps=16, codec=codec, crf=crf, metadata=None, overwrite=False)
    args = ["--control", "clip.mp4", "--preprocess", "canny", "--mask", "mask.mp4", "--max-frames", "10"]
    result = cli(*VACE, *args, "--save-control", "--out", "c.mp4")
    assert result.exit_code == 0, result.stderr
    mask = sidecar(tmp_path / "c.json")["inputs"]["mask"]
    assert (mask["kind"], mask["frames_read"], mask["frames_used"]) == ("file", 10, 9)
    # 10 frames read; Wan takes 4k+1, so 9, said on stderr.
    assert "using the first 9 of 10 input frames (Wan VACE takes 4k+1 frames)" in result.stderr
    assert decode(tmp_path / "c.mp4")[0].shape == (9, 16, 16, 3)
    edges, _ = decode(tmp_path / "c-control.mp4")
    assert edges.shape == (9, 16, 16, 3) and (edges < 40).mean() > 0.5


# -- mask semantics -------------------------------------------------------------------------------


@pytest.mark.pipeline
def test_mask_reaches_the_model_and_pad_outpaints(tmp_path: Path) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.io import inputs

    _poses(tmp_path / "poses", 9, size=32)
    _mask(tmp_path / "black.png", (32, 32), value=0)
    _mask(tmp_path / "white.png", (32, 32), value=255)
    base = [*VACE, "--control", "poses/", "--seed", "2"]
    keep, _ = _run(*base, "--mask", "black.png", "--no-keep-unmasked", out="keep/")
    generate, _ = _run(*base, "--mask", "white.png", out="gen/")
    # The mask changes what the model is given (black: the control pixels as context; white:
    # nothing kept), so the videos differ even with nothing pasted back.
    assert np.abs(keep.astype(int) - generate.astype(int)).max() > 8
    # No mask means generate everywhere: the same as an all-white mask.
    unmasked, _ = _run(*base, out="none/")
    assert np.abs(unmasked.astype(int) - generate.astype(int)).max() <= 1
    # --resize pad fits 32x16 control frames inside 16x16 and pads: the mask there is white, so
    # the padded border is generated (outpainting), while the frames themselves keep black.
    wide = tmp_path / "wide"
    wide.mkdir()
    for index in range(9):
        Image.new("RGB", (32, 16), (90, 90, 90)).save(wide / f"{index}.png")
    _mask(tmp_path / "wide-black.png", (32, 16), value=0)
    layer = Layer("cli", {"inputs": {"prompt": "x", "control": "wide", "mask": "wide-black.png", "resize": "pad"}})
    cfg = resolve("control", ["tiny-wan-vace"], [layer], families.defaults_layer).config
    prepared = inputs.prepare(cfg, families.check(cfg), fps=16)
    mask = np.asarray(prepared.media["mask"][0])
    assert mask.shape == (16, 16) and len(prepared.media["mask"]) == 9
    assert (mask[:4] == 255).all() and (mask[-4:] == 255).all() and (mask[6:10] == 0).all()


def test_mask_semantics_black_keeps_the_input_white_and_off_are_plain_diffusers(tmp_path: Path) -> None:
    # WanVACEPipeline regenerates every pixel (a trained VACE reproduces the kept region
    # closely, the random tiny one not at all); vidgen pastes the kept pixels back after
    # decoding unless --no-keep-unmasked. 32x32 so the model has 2x2 latent patches to vary.
    from vidgen.io import media as vmedia

    _poses(tmp_path / "poses", 9, size=32)
    small = ["--height", "32", "--width", "32"]
    base = [*VACE, "--control", "poses", *small, "--seed", "3"]
    video = [Image.open(p).convert("RGB") for p in sorted((tmp_path / "poses").glob("*.png"))]
    given = np.stack([np.asarray(frame) for frame in video]).astype(int)
    masks = {value: _mask(tmp_path / f"m{value}.png", (32, 32), value=value) for value in (0, 128, 255)}

    # All black: the output is the input (png: exactly, up to rounding; mp4: codec noise).
    kept, data = _run(*base, "--mask", str(masks[0]), out="black/")
    assert np.abs(kept.astype(int) - given).max() <= 1
    codec, crf = vmedia.encoding("mp4", None, None)
    assert cli(*base, "--mask", str(masks[0]), "--out", "black.mp4").exit_code == 0
    given_mp4 = tmp_path / "given.mp4"
    clip = given.astype(np.uint8)
    vmedia.write(clip, given_mp4, fmt="mp4", fps=16, codec=codec, crf=crf, metadata=None, overwrite=False)
    # Within what h264 itself does to the same frames.
    noise = np.abs(decode(given_mp4)[0].astype(int) - given).mean()
    assert np.abs(decode(tmp_path / "black.mp4")[0].astype(int) - given).mean() <= noise + 1

    # What the model made under that black mask, which the paste-back replaced: far from the input.
    black = [Image.open(masks[0]).convert("L")] * 9
    theirs_black = plain_diffusers(_raw(data), {"video": video, "mask": black}).frames
    assert np.abs(theirs_black.astype(int) - given).mean() > 20

    # Off: plain diffusers' frames, nothing pasted back, and the sidecar records no step.
    off, data_off = _run(*base, "--mask", str(masks[0]), "--no-keep-unmasked", out="off/")
    assert "postprocess" not in data_off["pipeline"] and data_off["config"]["sampling"]["keep_unmasked"] is False
    assert np.abs(off.astype(int) - theirs_black.astype(int)).max() <= 1

    # All white: everything generated, so plain diffusers' frames again.
    white, data_white = _run(*base, "--mask", str(masks[255]), out="white/")
    assert_reproduces(white, data_white, {"video": video, "mask": [Image.open(masks[255]).convert("L")] * 9})
    assert np.abs(white.astype(int) - given).mean() > 20

    # Grey: a linear blend of the input and what the model made (the model itself reads the
    # mask as on/off at half grey: 128 is "generate" to it).
    grey, data_grey = _run(*base, "--mask", str(masks[128]), out="grey/")
    grey_masks = [Image.open(masks[128]).convert("L")] * 9
    assert_reproduces(grey, data_grey, {"video": video, "mask": grey_masks})
    made = plain_diffusers(_raw(data_grey), {"video": video, "mask": grey_masks}).frames.astype(int)
    assert np.abs(grey.astype(int) - (given * 127 + made * 128) / 255).max() <= 1


@pytest.mark.pipeline
def test_vidgen_decode_pastes_the_kept_pixels_back_too(tmp_path: Path) -> None:
    # --save-latents keeps the control frames and the mask beside the latents, so `vidgen decode`
    # finishes the video as the run did, without reading the input files again.
    import json

    from safetensors import safe_open

    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "mask.png")
    ours, _ = _run(*VACE, "--control", "poses", "--mask", "mask.png", "--save-latents", "--seed", "4")
    latents = next(Path("out").glob("*.latents.safetensors"))
    with safe_open(str(latents), framework="pt") as handle:
        assert json.loads(handle.metadata()["vidgen"])["kept"] == ["mask", "video"]
    shutil.rmtree(tmp_path / "poses")
    (tmp_path / "mask.png").unlink()
    result = cli("decode", str(latents), "--format", "png", "--out", "dec/")
    assert result.exit_code == 0, result.stderr
    decoded = _png_frames(Path(result.stdout.strip()))
    assert np.abs(decoded.astype(int) - ours.astype(int)).max() <= 1
    assert sidecar(Path(result.stdout.strip() + ".json"))["pipeline"]["postprocess"]["step"] == "keep_unmasked"
    # The left half is the control video: black ground, the bright square where it passes.
    assert np.abs(decoded[:, :, :8].astype(int) - 20).min() <= 1
    # A latents file without the kept pixels (an older vidgen's): decode says it cannot paste
    # them back, writes VACE's own frames, and the sidecar records the step as skipped.
    from safetensors.torch import load_file, save_file

    with safe_open(str(latents), framework="pt") as handle:
        meta = json.loads(handle.metadata()["vidgen"])
    meta.pop("kept")
    old = tmp_path / "old.latents.safetensors"
    save_file({"latents": load_file(str(latents))["latents"]}, str(old), metadata={"vidgen": json.dumps(meta)})
    result = cli("decode", str(old), "--format", "png", "--out", "old/")
    assert result.exit_code == 0, result.stderr
    assert "holds no kept input pixels" in result.stderr
    raw = _png_frames(Path(result.stdout.strip()))
    assert np.abs(raw[:, :, 8:].astype(int) - ours[:, :, 8:].astype(int)).max() <= 1
    assert np.abs(raw[:, :, :8].astype(int) - ours[:, :, :8].astype(int)).mean() > 20
    assert "skipped" in sidecar(Path(result.stdout.strip() + ".json"))["pipeline"]["postprocess"]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "args", "code", "needles"),
    [
        ("big-mask", ["--mask", "big.png"], 4, ["--mask big.png is 24x24", "16x16"]),
        ("short-mask", ["--mask", "short"], 4, ["gives 5 frame(s)", "9", "one image for every frame"]),
        ("text-ref", ["--ref", "notes.png"], 4, ["--ref notes.png is not an image"]),
        ("dir-ref", ["--ref", "poses"], 4, ["is a folder"]),
        ("few", ["--control", "three"], 4, ["gives 3 frame(s)", "at least 5"]),
        ("none", ["--mask", "missing.png"], 4, ["missing.png does not exist"]),
    ],
)
def test_bad_vace_inputs_exit_4_one_line_nothing_written(
    tmp_path: Path, setup: str, args: list[str], code: int, needles: list[str]
) -> None:
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "big.png", (24, 24))
    short = tmp_path / "short"
    short.mkdir()
    for index in range(5):
        shutil.copy(tmp_path / "big.png", short / f"{index}.png")
    _poses(tmp_path / "three", 3)
    (tmp_path / "notes.png").write_text("not a picture")
    control = [] if "--control" in args else ["--control", "poses"]
    before = files_under(tmp_path)
    one_line_error(cli(*VACE, *control, *args, "--out", "o.mp4"), code, *needles)
    assert files_under(tmp_path) == before


def test_mask_and_ref_on_other_families_are_config_errors(tmp_path: Path) -> None:
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "m.png")
    before = files_under(tmp_path)
    t2vz = ["control", "x", "--preset", "tiny-text2video-zero-controlnet", "--control", "poses"]
    one_line_error(cli(*t2vz, "--mask", "m.png"), 3, "--mask is not used by Text2Video-Zero", "Wan VACE")
    one_line_error(cli(*t2vz, "--ref", "m.png"), 3, "--ref is not used", "Wan VACE")
    one_line_error(cli(*VACE, "--control", "poses", "--controlnet", "canny"), 3, "--controlnet", "VACE")
    assert files_under(tmp_path) == before


@pytest.mark.pipeline
def test_a_preset_cannot_name_a_mask_or_ref_outside_its_folder(tmp_path: Path) -> None:
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "m.png")
    (tmp_path / "presets").mkdir()
    mask = tmp_path / "m.png"
    for name, inputs in (("m", f"  mask: {mask}\n"), ("r", f"  reference_images: [{mask}]\n")):
        (tmp_path / "presets" / f"{name}.yaml").write_text(f"extends: tiny-wan-vace\ninputs:\n{inputs}")
        line = one_line_error(cli(*VACE[:2], "--preset", f"presets/{name}.yaml", "--control", "poses"), 4, str(mask))
        assert "--allow-inputs" in line
    result = cli(*VACE[:2], "--preset", "presets/r.yaml", "--control", "poses", "--allow-inputs", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr


# -- replay and inspect ---------------------------------------------------------------------------


@pytest.mark.pipeline
def test_replay_reads_the_mask_and_refs_again_and_gives_the_same_frames(tmp_path: Path) -> None:
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "mask.png")
    _face(tmp_path / "face.png")
    _face(tmp_path / "style.png", (32, 16))
    ours, _ = _run(*VACE, "--control", "poses", "--mask", "mask.png", "--ref", "face.png", "--ref", "style.png")
    side = next(Path("out").glob("*.json"))
    # The inputs lie outside the sidecar's folder: named by a file, so read only when allowed.
    line = one_line_error(cli("replay", str(side)), 4, "mask.png", "face.png", "style.png", "--allow-inputs")
    assert "poses" in line
    replayed = cli("replay", str(side), "--allow-inputs")
    assert replayed.exit_code == 0, replayed.stderr
    assert "mask mask.png (local" in replayed.stderr and "reference_images style.png (local" in replayed.stderr
    again = _png_frames(Path(replayed.stdout.strip()))
    assert np.abs(ours.astype(int) - again.astype(int)).max() <= 1
    shown = cli("inspect", str(side))
    assert shown.exit_code == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith(("mask", "reference_images"))]
    assert len(rows) == 3 and "mask.png" in rows[0] and "crop to 16x16" in rows[0]
    assert "face.png" in rows[1] and "style.png" in rows[2] and "pad to 16x16" in rows[2] and "None" not in rows[2]
    # A changed reference image is noticed before anything loads.
    _face(tmp_path / "style.png", (16, 32))
    changed = cli("replay", str(side), "--allow-inputs")
    one_line_error(changed, 4, "style.png")


# -- Wan 2.1 video-to-video -----------------------------------------------------------------------


def test_wan_v2v_equals_plain_diffusers_and_trims_to_4k_plus_1(tmp_path: Path) -> None:
    _poses(tmp_path / "clip", 10)
    args = ["v2v", "clip", "claymation", "--preset", "tiny-wan-v2v", "--seed", "4", "--max-frames", "10"]
    result = cli(*args, "--format", "png", "--out", "out/")
    assert result.exit_code == 0, result.stderr
    assert "using the first 9 of 10 input frames (Wan 2.1 video-to-video takes 4k+1 frames)" in result.stderr
    folder = Path(result.stdout.strip())
    ours = _png_frames(folder)
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert ours.shape == (9, 16, 16, 3)
    assert data["pipeline"]["class"] == "WanVideoToVideoPipeline"
    assert data["pipeline"]["call_kwargs"]["strength"] == 0.8 and "num_frames" not in data["pipeline"]["call_kwargs"]
    media = {"video": [Image.open(p).convert("RGB") for p in sorted((tmp_path / "clip").glob("*.png"))[:9]]}
    assert_reproduces(ours, data, media)
    # --strength reaches the pipeline and changes the video.
    weaker, other = _run(*args, "--strength", "0.5", out="weak/")
    assert other["pipeline"]["call_kwargs"]["strength"] == 0.5
    assert np.abs(ours.astype(int) - weaker.astype(int)).max() > 1


def test_wan_v2v_refusals(tmp_path: Path) -> None:
    _poses(tmp_path / "clip", 9)
    before = files_under(tmp_path)
    base = ["v2v", "clip", "x", "--preset", "tiny-wan-v2v"]
    one_line_error(cli(*base, "--height", "24"), 3, "--height 24", "multiples of 16")
    one_line_error(cli(*base, "--max-frames", "3"), 3, "--max-frames 3 is too few", "4k+1")
    one_line_error(cli(*base, "--set", "sampling.num_frames=9"), 3, "input video sets the length")
    assert files_under(tmp_path) == before


def test_wan_v2v_is_found_from_a_wan_text_to_video_model(tmp_path: Path) -> None:
    # WanVideoToVideoPipeline runs the Wan 2.1 T2V weights: `--model` with such a folder picks
    # this family for v2v (the model_index.json says WanPipeline), also beside a v2v preset.
    from vidgen.models import tiny

    folder = str(tiny.ensure("wan"))
    _poses(tmp_path / "clip", 9)
    small = ["--height", "16", "--width", "16", "--steps", "3", "--set", "sampling.max_sequence_length=16"]
    result = cli("v2v", "clip", "x", "--model", folder, *small, "--max-frames", "9", "--out", "m.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "m.json")
    assert data["config"]["model"]["family"] == "wan-v2v"
    assert data["pipeline"]["class"] == "WanVideoToVideoPipeline"
    assert decode(tmp_path / "m.mp4")[0].shape == (9, 16, 16, 3)
    planned = cli("v2v", "clip", "x", "--preset", "wan2.1-v2v-1.3b", "--model", folder, "--dry-run")
    assert planned.exit_code == 0, planned.stderr


@pytest.mark.pipeline
def test_batch_jobs_take_mask_and_refs_and_a_changed_ref_reruns(tmp_path: Path) -> None:
    import json

    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "mask.png")
    _face(tmp_path / "face.png")
    _face(tmp_path / "coat.png", (16, 32))
    lines = [
        {"mode": "control", "prompt": "a dancer", "preset": "tiny-wan-vace", "control": "poses", "id": "one",
         "mask": "mask.png", "ref": "face.png"},
        {"mode": "control", "prompt": "a dancer", "preset": "tiny-wan-vace", "control": "poses", "id": "two",
         "ref": ["face.png", "coat.png"]},
    ]  # fmt: skip
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("batch", "jobs.jsonl", "--out", "runs")
    assert result.exit_code == 0, result.stderr
    one, two = sidecar(tmp_path / "runs" / "one.json"), sidecar(tmp_path / "runs" / "two.json")
    assert one["config"]["inputs"]["reference_images"] == ["face.png"] and one["inputs"]["mask"]["kind"] == "image"
    assert two["inputs"]["reference_images"]["prepared"]["count"] == 2
    # A batch is resumable by content: unchanged jobs are skipped; a changed reference image
    # under the same name is a new job.
    _face(tmp_path / "coat.png", (32, 16))
    again = cli("batch", "jobs.jsonl", "--out", "runs", "--report", "r.jsonl", "--quiet")
    assert again.exit_code == 0, again.stderr
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert {row["id"]: row["status"] for row in rows} == {"one": "skipped", "two": "done"}


@pytest.mark.pipeline
def test_saved_latents_leave_out_the_reference_frames_and_decode_to_the_video(tmp_path: Path) -> None:
    # The pipeline's latent output carries one frame per reference image in front; vidgen drops
    # them where the pipeline would, so `vidgen decode` gives the same 9 frames.
    _poses(tmp_path / "poses", 9)
    _face(tmp_path / "face.png")
    ours, _ = _run(
        *VACE, "--control", "poses", "--ref", "face.png", "--ref", "face.png", "--save-latents", "--seed", "1"
    )
    latents = next(Path("out").glob("*.latents.safetensors"))
    result = cli("decode", str(latents), "--format", "png", "--out", "dec/")
    assert result.exit_code == 0, result.stderr
    decoded = _png_frames(Path(result.stdout.strip()))
    assert decoded.shape == ours.shape == (9, 16, 16, 3)
    assert np.abs(decoded.astype(int) - ours.astype(int)).max() <= 1


def test_memory_auto_plans_the_real_presets_offline(tmp_path: Path) -> None:
    # Published (estimated) sizes, no download: --dry-run plans each real preset for a 24 GiB card.
    _poses(tmp_path / "poses", 9)
    runs = [
        ["control", "x", "--control", "poses", "--preset", preset]
        for preset in ("wan2.1-vace-1.3b", "wan2.1-vace-14b", "wan2.2-vace-fun-a14b")
    ]
    runs += [["v2v", "poses", "x", "--preset", preset] for preset in ("wan2.1-v2v-1.3b", "wan2.1-v2v-14b")]
    for args in runs:
        result = cli(*args, "--memory", "auto", "--vram", "24", "--dry-run")
        assert result.exit_code == 0, (args, result.stderr)
        assert "# memory auto:" in result.stdout and "published sizes" in result.stdout


def test_references_alone_make_a_video_of_frames_frames(tmp_path: Path) -> None:
    # Reference-to-video: no --control; --frames sets the length (4k+1, checked before loading).
    _face(tmp_path / "face.png")
    ours, data = _run(*VACE, "--ref", "face.png", "--frames", "5", "--seed", "7")
    assert ours.shape == (5, 16, 16, 3)
    assert data["pipeline"]["call_kwargs"]["num_frames"] == 5
    assert data["pipeline"]["media_kwargs"] == {"reference_images": "inputs.reference_images"}
    media = {"reference_images": [Image.open(tmp_path / "face.png").convert("RGB")]}
    assert_reproduces(ours, data, media)


def test_vace_frames_and_control_rules_are_config_errors(tmp_path: Path) -> None:
    _poses(tmp_path / "poses", 9)
    _mask(tmp_path / "m.png")
    before = files_under(tmp_path)
    one_line_error(cli(*VACE, "--frames", "6"), 3, "--frames 6", "4k+1", "5 or 9")
    one_line_error(cli(*VACE, "--control", "poses", "--frames", "5"), 3, "--max-frames")
    one_line_error(cli(*VACE, "--mask", "m.png"), 3, "--mask works on the --control video")
    one_line_error(cli(*VACE, "--save-control"), 3, "--save-control works on the --control video")
    for flag in ("--keep-unmasked", "--no-keep-unmasked"):
        one_line_error(cli(*VACE, "--control", "poses", flag), 3, flag, "give --mask too")
    # Other control families still need --control, and do not take --frames.
    t2vz = ["control", "x", "--preset", "tiny-text2video-zero-controlnet"]
    one_line_error(cli(*t2vz), 3, "needs --control")
    one_line_error(cli(*t2vz, "--control", "poses", "--frames", "5"), 3, "--frames is not used", "Wan VACE")
    assert files_under(tmp_path) == before
