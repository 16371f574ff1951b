"""`vidgen control`, Text2Video-Zero (t2v, ControlNet, InstructPix2Pix) and AnimateDiff ControlNet on tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, sidecar
from PIL import Image

from vidgen.io import media

T2VZ_CONTROL = ["control", "a robot", "--preset", "tiny-text2video-zero-controlnet"]


def _shapes(path: Path, frames: int, fps: int = 4, size: int = 32) -> Path:
    """A control video the tests make themselves: a bright square moving over a dark ground."""
    clip = np.full((frames, size, size, 3), 20, dtype=np.uint8)
    for index in range(frames):
        x = 2 + index * 2 % (size - 12)
        clip[index, 10:20, x : x + 10] = 235
    fmt = path.suffix.lstrip(".")
    codec, crf = media.encoding(fmt, None, None)
    media.write(clip, path, fmt=fmt, fps=fps, codec=codec, crf=crf, metadata=None, overwrite=False)
    return path


@pytest.mark.pipeline
def test_done_when_one_frame_per_control_frame_and_the_edge_video(tmp_path: Path) -> None:
    _shapes(tmp_path / "shapes.mp4", frames=6)
    args = [*T2VZ_CONTROL, "--control", "shapes.mp4", "--preprocess", "canny"]
    result = cli(*args, "--out", "c.mp4", "--save-control", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    frames, meta = decode(tmp_path / "c.mp4")
    assert frames.shape == (6, 32, 32, 3) and meta["fps"] == 4
    edges, _ = decode(tmp_path / "c-control.mp4")
    assert edges.shape == (6, 32, 32, 3)
    # Edge maps: mostly black, with white outlines where the square is.
    assert (edges < 40).mean() > 0.6 and (edges > 200).any()
    data = sidecar(tmp_path / "c.json")
    assert data["pipeline"]["class"] == "StableDiffusionControlNetPipeline"
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.control"}
    assert data["output"]["control"]["path"] == "c-control.mp4" and data["output"]["control"]["frames"] == 6
    assert data["inputs"]["control"]["frames_used"] == 6
    assert data["config"]["inputs"]["preprocess"] == "canny"
    assert [call["method"] for call in data["pipeline"]["setup"]] == [
        "unet.set_attn_processor",
        "controlnet.set_attn_processor",
    ]
    assert "one randn_tensor" in data["pipeline"]["run"]
    capped = cli(*args, "--out", "d.mp4", "--max-frames", "4")
    assert capped.exit_code == 0, capped.stderr
    assert decode(tmp_path / "d.mp4")[0].shape[0] == 4


@pytest.mark.pipeline
def test_chunks_keep_the_first_frame_as_anchor(tmp_path: Path) -> None:
    # Cross-frame attention makes every frame depend only on itself and frame 0, and all frames
    # share one latent: so running in chunks that each start with frame 0 again must give the
    # same video as one run over all frames.
    _shapes(tmp_path / "shapes.mp4", frames=7)
    base = [*T2VZ_CONTROL, "--control", "shapes.mp4", "--preprocess", "canny", "--seed", "3", "--format", "png"]
    assert cli(*base, "--out", "whole/").exit_code == 0
    result = cli(*base, "--chunk", "3", "--out", "chunked/")
    assert result.exit_code == 0, result.stderr

    def frames(folder: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(p)) for p in sorted(Path(folder).rglob("*.png"))]).astype(int)

    whole, chunked = frames("whole"), frames("chunked")
    assert whole.shape == chunked.shape == (7, 32, 32, 3)
    assert np.abs(whole - chunked).max() <= 1
    assert "chunks of 3 frames" in sidecar(next(Path("chunked").glob("*.json")))["pipeline"]["run"]


@pytest.mark.pipeline
def test_controlnet_path_uses_cross_frame_attention(tmp_path: Path) -> None:
    import torch
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor,
    )

    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.models import loader

    layer = Layer("cli", {"inputs": {"prompt": "x", "control": "c.mp4"}})
    cfg = resolve("control", ["tiny-text2video-zero-controlnet"], [layer], families.defaults_layer).config
    loaded = loader.load(cfg, families.check(cfg), "cpu")
    pipe = loaded.pipe
    for model in (pipe.unet, pipe.controlnet):
        processors = model.attn_processors.values()
        assert processors and all(isinstance(p, CrossFrameAttnProcessor) and p.batch_size == 2 for p in processors)
    # One self-attention layer, fed 2 guidance branches x 4 frames: each frame's output must
    # depend on its own query and frame 0's keys/values only.
    attn = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    torch.manual_seed(0)
    hidden = torch.randn(2 * 4, 16, attn.to_q.in_features)
    with torch.no_grad():
        out = attn(hidden)
        changed = hidden.clone()
        changed[[2, 6]] += 1.0  # frame 2 in both branches
        out_frame2 = attn(changed)
        anchor = hidden.clone()
        anchor[[0, 4]] += 1.0  # frame 0, the anchor
        out_frame0 = attn(anchor)
        # Frame 3's output computed by hand: its query against frame 0's keys and values.
        q = attn.to_q(hidden[3:4])
        k, v = attn.to_k(hidden[0:1]), attn.to_v(hidden[0:1])
        heads = attn.heads
        split = lambda t: t.view(1, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # noqa: E731
        expected = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        expected = attn.to_out[0](expected.transpose(1, 2).reshape(1, -1, q.shape[-1]))
    unchanged = [i for i in range(8) if i not in (2, 6)]
    assert torch.allclose(out[unchanged], out_frame2[unchanged], atol=1e-6)  # others ignore frame 2
    assert not torch.allclose(out[2], out_frame2[2])
    assert not torch.allclose(out[[1, 3, 5, 7]], out_frame0[[1, 3, 5, 7]])  # everyone follows frame 0
    assert torch.allclose(out[3:4], expected, atol=1e-5)


def test_plain_text2video_zero_matches_plain_diffusers(tmp_path: Path) -> None:
    result = cli("t2v", "a horse galloping", "--preset", "tiny-text2video-zero", "--seed", "5", "--format", "png")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    ours = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "TextToVideoZeroPipeline"
    call = data["pipeline"]["call_kwargs"]
    assert (call["video_length"], call["t0"], call["t1"], call["motion_field_strength_x"]) == (4, 2, 3, 12)
    assert ours.shape == (4, 32, 32, 3)
    assert_reproduces(ours, data)
    still = ["t2v", "a horse galloping", "--preset", "tiny-text2video-zero", "--seed", "5", "--motion-field-x", "0"]
    moved = cli(*still, "--motion-field-y", "0", "--format", "png", "--out", "still/")
    assert moved.exit_code == 0, moved.stderr
    # No motion field: the frames no longer drift apart as much as with the default 12 px.
    without = np.stack([np.asarray(Image.open(p)) for p in sorted(Path("still").rglob("*.png"))]).astype(int)
    assert np.abs(without[-1] - without[0]).mean() < np.abs(ours[-1].astype(int) - ours[0].astype(int)).mean()


@pytest.mark.pipeline
def test_pix2pix_and_animatediff_controlnet_presets_run(tmp_path: Path) -> None:
    _shapes(tmp_path / "clip.mp4", frames=5)
    result = cli(
        "v2v", "clip.mp4", "make it Van Gogh style", "--preset", "tiny-text2video-zero-pix2pix", "--out", "p.mp4"
    )
    assert result.exit_code == 0, result.stderr
    assert decode(tmp_path / "p.mp4")[0].shape == (5, 32, 32, 3)
    data = sidecar(tmp_path / "p.json")
    assert data["pipeline"]["class"] == "StableDiffusionInstructPix2PixPipeline"
    assert data["pipeline"]["setup"][0]["kwargs"]["processor"] == "CrossFrameAttnProcessor(batch_size=3)"
    assert data["pipeline"]["call_kwargs"]["image_guidance_scale"] == 1.5

    args = ["control", "a robot", "--preset", "tiny-animatediff-controlnet", "--control", "clip.mp4"]
    result = cli(*args, "--preprocess", "canny", "--out", "a.mp4", "--input-fps", "4")
    assert result.exit_code == 0, result.stderr
    assert decode(tmp_path / "a.mp4")[0].shape[0] == 5
    data = sidecar(tmp_path / "a.json")
    assert data["pipeline"]["class"] == "AnimateDiffControlNetPipeline"
    assert data["pipeline"]["media_kwargs"] == {"conditioning_frames": "inputs.control"}
    assert data["pipeline"]["call_kwargs"]["num_frames"] == 5
    assert data["model"]["controlnet"]["id"] == "tiny:controlnet"


# -- errors: one line, documented exit code, nothing written ---------------------------------


def test_control_frames_of_different_sizes_and_empty_folder_exit_4(tmp_path: Path) -> None:
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "mixed" / "f1.png")
    Image.new("RGB", (48, 32)).save(tmp_path / "mixed" / "f2.png")
    (tmp_path / "empty").mkdir()
    before = files_under(tmp_path)
    one_line_error(cli(*T2VZ_CONTROL, "--control", "mixed"), 4, "must have the same size")
    one_line_error(cli(*T2VZ_CONTROL, "--control", "empty"), 4, "has no frames")
    assert files_under(tmp_path) == before


def test_pose_without_a_detector_exit_4(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    try:
        import controlnet_aux  # noqa: F401

        pytest.skip("controlnet_aux is installed here; this checks the message when it is not")
    except ImportError:
        pass
    _shapes(tmp_path / "shapes.mp4", frames=4)
    before = files_under(tmp_path)
    line = one_line_error(cli(*T2VZ_CONTROL, "--control", "shapes.mp4", "--preprocess", "pose"), 4, "controlnet-aux")
    assert "--preprocess none" in line
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["t2v", "x", "--preset", "tiny-text2video-zero", "--steps", "10", "--t0", "44", "--t1", "47"], ["t1 < steps"]),
        (["t2v", "x", "--preset", "text2video-zero", "--steps", "10"], ["--steps 10", "--t1 47", "--steps 48"]),
        (
            [*T2VZ_CONTROL, "--control", "s.mp4", "--preprocess", "canny", "--canny-low", "200", "--canny-high", "100"],
            ["--canny-low 200"],
        ),
        (["t2v", "x", "--preset", "tiny-cogvideox", "--set", "output.save_control=true"], ["--save-control"]),
        ([*T2VZ_CONTROL], ["needs --control"]),
        (["control", "x", "--preset", "tiny-cogvideox"], ["for `vidgen t2v`", "tiny-text2video-zero-controlnet"]),
    ],
)
def test_config_errors_exit_3(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    _shapes(tmp_path / "s.mp4", frames=4)
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before
