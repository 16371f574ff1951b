"""`vidgen i2v` and `vidgen v2v` end to end on the tiny models: real images, real videos, real pipelines."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CountingProgress, cli, decode, files_under, one_line_error, sidecar
from PIL import Image

from vidgen.io import media


def _image(path: Path, width: int = 32, height: int = 32, seed: int = 0, mode: str = "RGB") -> Path:
    channels = len(mode)
    pixels = (np.random.RandomState(seed).rand(height, width, channels) * 255).astype(np.uint8)
    Image.fromarray(pixels if channels > 1 else pixels[..., 0], mode).save(path)
    return path


def _video(path: Path, frames: int, fps: int, size: int = 16) -> Path:
    """A real encoded clip: a bright square moving across a dark background."""
    clip = np.full((frames, size, size, 3), 30, dtype=np.uint8)
    for index in range(frames):
        x = index % (size - 4)
        clip[index, 4:10, x : x + 4] = 230
    fmt = path.suffix.lstrip(".")
    codec, crf = media.encoding(fmt, None, None)
    media.write(clip, path, fmt=fmt, fps=fps, codec=codec, crf=crf, metadata=None, overwrite=False)
    return path


def _frames_folder(path: Path, count: int, size: int = 16) -> Path:
    path.mkdir()
    for index in range(count):
        # Names that sort wrongly as text (f10 before f2), to prove natural ordering.
        _image(path / f"f{index}.png", size, size, seed=index)
    return path


# -- the first "done when" ------------------------------------------------------


@pytest.mark.pipeline
def test_svd_writes_the_frames_and_records_decode_chunk_and_conditioning(tmp_path: Path) -> None:
    _image(tmp_path / "img.png")
    result = cli("i2v", "img.png", "--preset", "tiny-svd", "--frames", "4", "--decode-chunk", "2", "--out", "x.mp4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "x.mp4\n"
    frames, meta = decode(tmp_path / "x.mp4")
    assert frames.shape == (4, 32, 32, 3)
    assert meta["fps"] == 7
    data = sidecar(tmp_path / "x.json")
    call = data["pipeline"]["call_kwargs"]
    assert data["pipeline"]["class"] == "StableVideoDiffusionPipeline"
    assert call["decode_chunk_size"] == 2 and call["num_frames"] == 4
    # The SVD conditioning actually passed: diffusers' reference values, written out.
    assert {k: call[k] for k in ("motion_bucket_id", "noise_aug_strength", "fps")} == {
        "motion_bucket_id": 127,
        "noise_aug_strength": 0.02,
        "fps": 7,
    }
    assert (call["min_guidance_scale"], call["max_guidance_scale"]) == (1.0, 3.0)
    assert "prompt" not in call and "guidance_scale" not in call
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.image"}
    image = data["inputs"]["image"]
    assert image["sha256"] == hashlib.sha256((tmp_path / "img.png").read_bytes()).hexdigest()
    assert (image["format"], image["size"], image["resize"]) == ("PNG", [32, 32], "crop")
    assert "decode_chunk_size=2" in data["optimizations"]["applied"]
    assert data["sources"]["optimization.decode_chunk_size"] == "cli:--decode-chunk"


@pytest.mark.pipeline
def test_svd_conditioning_flags_reach_the_pipeline_and_change_the_video(tmp_path: Path) -> None:
    _image(tmp_path / "img.png")
    base = ["i2v", "img.png", "--preset", "tiny-svd", "--seed", "3"]
    assert cli(*base, "--out", "a.mp4").exit_code == 0
    flags = ["--motion-bucket-id", "40", "--noise-aug-strength", "0.3", "--cond-fps", "12"]
    result = cli(*base, *flags, "--min-guidance", "1.5", "--max-guidance", "2.5", "--fps", "24", "--out", "b.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "b.json")
    call = data["pipeline"]["call_kwargs"]
    assert (call["motion_bucket_id"], call["noise_aug_strength"], call["fps"]) == (40, 0.3, 12)
    assert (call["min_guidance_scale"], call["max_guidance_scale"]) == (1.5, 2.5)
    # --cond-fps conditions the model; --fps is the file's frame rate. They stay separate.
    assert data["output"]["fps"] == 24 and decode(tmp_path / "b.mp4")[1]["fps"] == 24
    assert data["sources"]["sampling.fps"] == "cli:--cond-fps"
    assert not np.array_equal(decode(tmp_path / "a.mp4")[0], decode(tmp_path / "b.mp4")[0])


# The tiny i2v and v2v presets against plain diffusers: test_reproduce.py, for every tiny preset.


# -- video input --------------------------------------------------------------------------


@pytest.mark.pipeline
def test_v2v_resamples_a_video_file_to_the_output_fps_and_trims_to_the_grid(tmp_path: Path) -> None:
    _video(tmp_path / "clip.mp4", frames=48, fps=24)  # 2 s at 24 fps
    result = cli("v2v", "clip.mp4", "a cat", "--preset", "tiny-cogvideox-v2v", "--max-frames", "40", "--out", "v.mp4")
    assert result.exit_code == 0, result.stderr
    video = sidecar(tmp_path / "v.json")["inputs"]["video"]
    # Resampled to the output's 8 fps: 2 s gives 16 frames; CogVideoX takes 8k+1, so 9.
    assert (video["source_fps"], video["input_fps"], video["frames_read"], video["frames_used"]) == (24.0, 8, 16, 9)
    assert video["kind"] == "file"
    assert video["sha256"] == hashlib.sha256((tmp_path / "clip.mp4").read_bytes()).hexdigest()
    assert "using the first 9 of 16 input frames (CogVideoX takes 8k+1 frames)" in result.stderr
    assert decode(tmp_path / "v.mp4")[0].shape == (9, 16, 16, 3)


@pytest.mark.pipeline
def test_v2v_input_fps_and_max_frames(tmp_path: Path) -> None:
    _video(tmp_path / "clip.gif", frames=30, fps=10)
    result = cli(
        "v2v", "clip.gif", "a cat", "--preset", "tiny-cogvideox-v2v", "--input-fps", "10", "--max-frames", "17",
        "--out", "g.mp4", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["frames"] == 17
    video = sidecar(tmp_path / "g.json")["inputs"]["video"]
    assert (video["input_fps"], video["frames_read"], video["frames_used"]) == (10, 17, 17)


def test_v2v_frames_folder_is_read_in_natural_order(tmp_path: Path) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.io import inputs

    _frames_folder(tmp_path / "frames", 12)
    layer = Layer("cli", {"inputs": {"prompt": "x", "video": "frames"}})
    cfg = resolve("v2v", ["tiny-cogvideox-v2v"], [layer], families.defaults_layer).config
    prepared = inputs.prepare(cfg, families.check(cfg), fps=8)
    expected = [np.asarray(Image.open(tmp_path / "frames" / f"f{i}.png")) for i in range(9)]
    assert np.array_equal(np.stack([np.asarray(frame) for frame in prepared.media["video"]]), np.stack(expected))
    assert prepared.record["video"]["kind"] == "folder"


# -- image preparation ------------------------------------------------------------------


def _prepare_image(path: Path, **inputs_cfg):
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.io import inputs

    layer = Layer("cli", {"inputs": {"image": str(path), **inputs_cfg}})
    cfg = resolve("i2v", ["tiny-svd"], [layer], families.defaults_layer).config
    return inputs.prepare(cfg, families.check(cfg), fps=7)


def test_resize_modes_keep_or_change_the_aspect_as_documented(tmp_path: Path) -> None:
    # 64x32: left half black, right half white. The tiny SVD takes 32x32.
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    crop = np.asarray(_prepare_image(tmp_path / "wide.png").media["image"])  # the default
    fit = np.asarray(_prepare_image(tmp_path / "wide.png", resize="fit").media["image"])
    pad = np.asarray(_prepare_image(tmp_path / "wide.png", resize="pad", background="#ff0000").media["image"])
    assert crop.shape == fit.shape == pad.shape == (32, 32, 3)
    # crop keeps the centre (half black, half white), fit squeezes the whole, pad letterboxes in red.
    assert crop[:, 2].max() < 20 and crop[:, -3].min() > 235
    assert fit[:, 2].max() < 20 and fit[:, -3].min() > 235
    assert (pad[0, 16] == [255, 0, 0]).all() and (pad[-1, 16] == [255, 0, 0]).all()
    assert pad[16, 2].max() < 20 and pad[16, -3].min() > 235
    record = _prepare_image(tmp_path / "wide.png", resize="pad").record["image"]
    assert (record["size"], record["resize"], record["prepared"]["size"]) == ([64, 32], "pad", [32, 32])


@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP"), (".png", "PNG")])
def test_png_jpeg_and_webp_are_read(tmp_path: Path, suffix: str, fmt: str) -> None:
    _image(tmp_path / f"in{suffix}", 40, 24)
    record = _prepare_image(tmp_path / f"in{suffix}").record["image"]
    assert (record["format"], record["size"], record["prepared"]["size"]) == (fmt, [40, 24], [32, 32])
    assert record["resolved_path"] == str(tmp_path / f"in{suffix}")


def test_exif_orientation_is_applied_and_recorded(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    prepared = _prepare_image(tmp_path / "phone.jpg", resize="fit")
    record = prepared.record["image"]
    assert record["size"] == [20, 40] and record["exif_orientation"] == 6
    upright = np.asarray(prepared.media["image"])
    assert upright[2, 16].min() > 200 and upright[-3, 16].max() < 50  # the white half is on top now


def test_transparent_pixels_are_composited_on_the_background(tmp_path: Path) -> None:
    Image.new("RGBA", (32, 32), (0, 255, 0, 0)).save(tmp_path / "clear.png")
    prepared = _prepare_image(tmp_path / "clear.png", background="#202020")
    assert (np.asarray(prepared.media["image"]) == 32).all()
    assert prepared.record["image"]["alpha_composited"] is True
    default = _prepare_image(tmp_path / "clear.png")
    assert (np.asarray(default.media["image"]) == 255).all()  # white unless told otherwise


@pytest.mark.pipeline
def test_image_from_an_http_url(tmp_path: Path) -> None:
    served = tmp_path / "site"
    served.mkdir()
    _image(served / "rocket.png")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/rocket.png"
        result = cli("i2v", url, "--preset", "tiny-svd", "--seed", "1")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "outputs/i2v-rocket-1.mp4"  # named after the image
        image = sidecar(tmp_path / "outputs/i2v-rocket-1.json")["inputs"]["image"]
        assert image["path"] == url
        assert image["sha256"] == hashlib.sha256((served / "rocket.png").read_bytes()).hexdigest()
        missing = cli("i2v", url.replace("rocket", "nope"), "--preset", "tiny-svd")
        one_line_error(missing, 4, "HTTP 404")
    finally:
        server.shutdown()


# -- bad inputs: one line, exit 4, nothing written -----------------------------------------


def _bomb(path: Path) -> None:
    """A tiny PNG whose header declares 20000x20000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(png + chunk(b"IEND", b""))


def _truncated_jpeg(path: Path) -> None:
    _image(path.with_suffix(".full.jpg"), 64, 64)
    data = path.with_suffix(".full.jpg").read_bytes()
    path.with_suffix(".full.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])


BAD_IMAGES = {
    "missing": (lambda p: None, "does not exist"),
    "text-named-png": (lambda p: p.write_text("hello, not an image\n"), "not an image vidgen can read"),
    "truncated-jpeg": (_truncated_jpeg, "truncated or corrupt"),
    "one-pixel": (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "only 1x1"),
    "decompression-bomb": (_bomb, "20000x20000"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_images_end_in_one_line_exit_4_and_write_nothing(tmp_path: Path, case: str) -> None:
    make, needle = BAD_IMAGES[case]
    name = "in.jpg" if case == "truncated-jpeg" else "in.png"
    make(tmp_path / name)
    before = files_under(tmp_path)
    one_line_error(cli("i2v", name, "--preset", "tiny-svd"), 4, name, needle)
    assert files_under(tmp_path) == before


def test_unreachable_url_exit_4(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: refused at once, no network needed.
    one_line_error(cli("i2v", "http://127.0.0.1:9/rocket.png", "--preset", "tiny-svd"), 4, "could not fetch")
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("empty", "has no frames"),
        ("mixed", "every frame in a folder must have the same size"),
        ("notvideo", "not a video ffmpeg can read"),
        ("short", "needs at least 9"),
    ],
)
def test_bad_videos_end_in_one_line_exit_4(tmp_path: Path, setup: str, needle: str) -> None:
    if setup == "empty":
        (tmp_path / "in").mkdir()
    elif setup == "mixed":
        (tmp_path / "in").mkdir()
        _image(tmp_path / "in" / "a.png", 16, 16)
        _image(tmp_path / "in" / "b.png", 32, 16)
    elif setup == "notvideo":
        (tmp_path / "in").write_text("not a video")
    else:
        _video(tmp_path / "in.mp4", frames=4, fps=8)
        (tmp_path / "in.mp4").rename(tmp_path / "in")
    before = files_under(tmp_path)
    one_line_error(cli("v2v", "in", "a cat", "--preset", "tiny-cogvideox-v2v"), 4, needle)
    assert files_under(tmp_path) == before


# -- options the family does not take: exit 3, naming who does -------------------------------


def test_motion_bucket_id_with_cogvideox_names_svd(tmp_path: Path) -> None:
    _image(tmp_path / "img.png")
    args = ["i2v", "img.png", "a cat", "--motion-bucket-id", "90"]
    for preset in ("tiny-cogvideox-i2v", "cogvideox-5b-i2v"):
        line = one_line_error(cli(*args, "--preset", preset), 3, "--motion-bucket-id", "CogVideoX")
        assert "it applies to: Stable Video Diffusion (i2v)." in line


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["i2v", "img.png", "a cat", "--preset", "tiny-svd"], ["takes no prompt", "I2VGen-XL (i2v)"]),
        (["i2v", "img.png", "--preset", "tiny-svd", "--guidance", "3"], ["--min-guidance and --max-guidance"]),
        (["i2v", "img.png", "--preset", "tiny-svd", "--vae-tiling"], ["--vae-tiling", "use --decode-chunk"]),
        (["i2v", "img.png", "--preset", "tiny-cogvideox-i2v"], ["needs a prompt"]),
        (["i2v", "img.png", "x", "--preset", "tiny-i2vgen-xl", "--cond-fps", "3"], ["Stable Video Diffusion"]),
        (["t2v", "x", "--preset", "tiny-cogvideox", "--decode-chunk", "2"], ["I2VGen-XL (i2v)", "--vae-tiling"]),
        (
            ["v2v", "clip.mp4", "x", "--preset", "tiny-cogvideox-v2v", "--set", "sampling.num_frames=9"],
            ["--max-frames"],
        ),
        (["v2v", "clip.mp4", "x", "--preset", "tiny-cogvideox-v2v", "--max-frames", "5"], ["8k+1", "at least 9"]),
        (["v2v", "clip.mp4", "x", "--preset", "tiny-svd"], ["for `vidgen i2v`", "tiny-cogvideox-v2v"]),
        (["i2v", "img.png", "--preset", "tiny-svd", "--min-guidance", "4"], ["above --max-guidance"]),
        (["i2v", "img.png", "--preset", "tiny-svd", "--background", "nope"], ["not a colour"]),
        (["i2v", "img.png", "--preset", "tiny-svd", "--width", "36"], ["multiples of 8", "32 or 40"]),
    ],
)
def test_family_rules_are_config_errors(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    _image(tmp_path / "img.png")
    _video(tmp_path / "clip.mp4", frames=9, fps=8)
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


def test_input_fps_on_a_frames_folder_is_refused(tmp_path: Path) -> None:
    _frames_folder(tmp_path / "frames", 9)
    result = cli("v2v", "frames", "x", "--preset", "tiny-cogvideox-v2v", "--input-fps", "4")
    one_line_error(result, 3, "--input-fps", "no frame rate")


def test_learned_position_embeddings_pin_the_size(tmp_path: Path) -> None:
    # Like CogVideoX-5b-I2V: a transformer with learned position embeddings only makes its
    # trained size, which is only known once the model's config is read.
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel

    from vidgen.models import tiny

    pipe = CogVideoXImageToVideoPipeline.from_pretrained(tiny.ensure("cogvideox-i2v"))
    config = dict(pipe.transformer.config)
    # As in CogVideoX-5b-I2V, learned embeddings come with rotary ones (which need head_dim 16+).
    config.update(use_learned_positional_embeddings=True, use_rotary_positional_embeddings=True, attention_head_dim=16)
    pipe.transformer = CogVideoXTransformer3DModel.from_config(config)
    pipe.save_pretrained(tmp_path / "learned")
    _image(tmp_path / "img.png")
    base = ["i2v", "img.png", "x", "--preset", "tiny-cogvideox-i2v", "--model", "learned"]
    one_line_error(cli(*base, "--width", "32", "--height", "32"), 3, "only makes 16x16 videos")
    assert not (tmp_path / "outputs").exists()
    assert cli(*base, "--seed", "1").exit_code == 0


# -- progress, defaults and listings --------------------------------------------------------


def test_i2vgen_steps_are_counted_without_a_pipeline_callback(tmp_path: Path) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.run import generate

    _image(tmp_path / "img.png")

    layer = Layer("cli", {"inputs": {"image": "img.png", "prompt": "a cat"}, "sampling": {"num_inference_steps": 3}})
    plan = generate.plan(resolve("i2v", ["tiny-i2vgen-xl"], [layer], families.defaults_layer))
    count = CountingProgress()
    results = generate.execute(plan, count)
    assert (count.totals, count.steps) == ([3], 3)
    assert results[0].record["pipeline"]["call_kwargs"]["clip_skip"] is None


def test_default_presets_per_mode(tmp_path: Path) -> None:
    _image(tmp_path / "img.png")
    _video(tmp_path / "clip.mp4", frames=9, fps=8)
    i2v = json.loads(cli("i2v", "img.png", "--dry-run", "--json").stdout)
    assert i2v["pipeline"]["class"] == "StableVideoDiffusionPipeline"
    assert i2v["config"]["model"]["id"] == "stabilityai/stable-video-diffusion-img2vid-xt"
    assert i2v["sources"]["model.id"] == "preset:svd-xt"
    assert i2v["inputs"]["image"]["prepared"]["size"] == [1024, 576]
    v2v = json.loads(cli("v2v", "clip.mp4", "a cat", "--dry-run", "--json").stdout)
    assert v2v["pipeline"]["class"] == "CogVideoXVideoToVideoPipeline"
    assert v2v["sources"]["model.id"] == "preset:cogvideox-5b-v2v"
    assert v2v["pipeline"]["call_kwargs"]["strength"] == 0.8
    assert not (tmp_path / "outputs").exists()


def test_models_lists_each_familys_modes() -> None:
    rows = {row["family"]: row for row in json.loads(cli("models", "--json").stdout)}
    assert set(rows["cogvideox"]["modes"]) == {"t2v", "i2v", "v2v"}
    assert rows["svd"]["modes"]["i2v"]["pipeline"] == "StableVideoDiffusionPipeline"
    assert rows["i2vgen-xl"]["deprecated"]
    assert "--decode-chunk" in rows["svd"]["optimizations"] and "--vae-tiling" not in rows["svd"]["optimizations"]
    assert "tiny-svd" in rows["svd"]["presets"]
