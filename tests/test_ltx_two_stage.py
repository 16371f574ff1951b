"""LTX-2 two-stage runs and the LTX-Video upscale recipe on tiny models: a smaller stage 1, the
latent upsampler, a refinement at the larger size, in one command, each equal to plain diffusers
doing the same three calls as the docs write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, files_under, one_line_error, plain_diffusers, sidecar
from test_ltx2 import raw_sha256, streams

TWO_STAGE = ("t2v", "a drummer on a rooftop", "--preset", "tiny-ltx2-two-stage")


def _png_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_two_stage_equals_plain_diffusers_doing_the_three_calls(tmp_path: Path) -> None:
    result = cli(*TWO_STAGE, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    stages = data["pipeline"]["stages"]
    # Stage 1 at half size to latents, the upsampler, stage 2 at the full size with the docs' sigmas.
    assert [s["call"] for s in stages] == ["pipe", "upsample_pipe", "pipe"]
    assert (stages[0]["call_kwargs"]["height"], stages[0]["call_kwargs"]["width"]) == (32, 32)
    assert stages[0]["call_kwargs"]["output_type"] == "latent"
    assert stages[2]["call_kwargs"]["sigmas"] == [0.909375, 0.725, 0.421875]
    assert stages[2]["call_kwargs"]["noise_scale"] == 0.909375 and stages[2]["call_kwargs"]["guidance_scale"] == 1.0
    ours = _png_frames(folder)
    assert ours.shape[1:3] == (64, 64)  # the full size
    assert data["output"]["width"] == 64 and data["output"]["height"] == 64
    # Plain diffusers doing the docs' three calls; another seed, prompt and guidance each differ.
    made = assert_reproduces(ours, data)
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]
    assert raw_sha256(plain_diffusers(data, seed=6).audio) != data["output"]["audio"]["raw_sha256"]


@pytest.mark.pipeline
def test_two_stage_mp4_is_full_size_with_sound(tmp_path: Path) -> None:
    result = cli(*TWO_STAGE, "--seed", "2", "--out", "drum.mp4")
    assert result.exit_code == 0, result.stderr
    found = streams(tmp_path / "drum.mp4")
    assert found["video"]["codec"] == "h264" and found["video"]["frames"] == 9
    assert found["audio"]["codec"] == "aac"
    import av

    with av.open(str(tmp_path / "drum.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
    shown = cli("inspect", "drum.mp4")
    assert shown.exit_code == 0
    assert "pipe 32x32 2 steps guidance 3.0 -> upsample_pipe -> pipe 64x64 3 steps guidance 1.0" in shown.stdout


def test_two_stage_i2v_equals_plain_diffusers(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "a drummer", "--preset", "tiny-ltx2-two-stage", "--format", "png")
    result = cli(*args, "--seed", "3", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTX2ImageToVideoPipeline"
    made = assert_reproduces(_png_frames(folder), data, {"image": Image.open("first.png").convert("RGB")})
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]


def test_stage_2_lora_is_on_for_stage_2_only(tmp_path: Path) -> None:
    """A tiny LoRA switched on for the refinement alone equals the docs' order: load it after stage 1."""
    lora = _tiny_lora(tmp_path / "lora")
    args = (*TWO_STAGE, "--stage-2-lora", str(lora / "pytorch_lora_weights.safetensors"), "--format", "png")
    result = cli(*args, "--seed", "5", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["stages"][0]["before"] == ["pipe.disable_lora()"]
    ours = _png_frames(folder)
    # Plain diffusers loads the LoRA after stage 1, where the docs load it.
    made = assert_reproduces(ours, data)
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]
    # The LoRA changes the video: without it, plain diffusers makes another one.
    pipeline, stages = data["pipeline"], data["pipeline"]["stages"]
    setup = [step for step in pipeline["setup"] if step["method"] not in ("load_lora_weights", "set_adapters")]
    stages = [
        {**stage, "before": [b for b in stage.get("before", []) if "lora" not in b]} for stage in pipeline["stages"]
    ]
    without = plain_diffusers({**data, "pipeline": {**pipeline, "setup": setup, "stages": stages}}).frames
    assert np.abs(ours.astype(int) - without.astype(int)).max() > 1


def _tiny_lora(folder: Path) -> Path:
    """A random LoRA on the tiny LTX-2 transformer's attention, saved as diffusers saves one."""
    import torch
    from diffusers import LTX2Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from vidgen.models import tiny

    pipe = LTX2Pipeline.from_pretrained(tiny.ensure("ltx2"), dtype=torch.float32)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for name, param in pipe.transformer.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    LTX2Pipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return folder


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((*TWO_STAGE, "--width", "96"), ("--width 96", "two-stage", "multiples of 64", "64 or 128")),
        ((*TWO_STAGE, "--height", "32"), ("--height 32", "multiples of 64")),
        (("t2v", "a drummer", "--preset", "tiny-ltx2", "--stage-2-sigma", "0.5"), ("--stage-2-sigma", "two-stage")),
        (
            ("t2v", "a drummer", "--preset", "tiny-ltx2", "--stage-2-lora", "x.safetensors"),
            ("--stage-2-lora", "--latent-upsampler"),
        ),
        # Keyframes go to both stages now; one past the last frame is still refused.
        ((*TWO_STAGE, "--keyframe", "99:last.png"), ("--keyframe", "99")),
        ((*TWO_STAGE, "--stage-2-lora", "a/b:x.safetensors", "--lora", "c/d"), ("--lora", "--stage-2-lora")),
    ],
)
def test_two_stage_bad_input_is_refused_before_loading(tmp_path: Path, args: tuple, needles: tuple) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save("last.png")
    before = files_under(tmp_path)
    one_line_error(cli(*args), 3, *needles)
    assert files_under(tmp_path) == before


# -- LTX-Video 0.9.x: the upscale recipe (diffusers ltx_video.md) ---------------------------------

UPSCALE = ("t2v", "a fox in snow", "--preset", "tiny-ltx-upscale")


def test_ltx_upscale_equals_plain_diffusers_doing_the_docs_calls(tmp_path: Path) -> None:
    result = cli(*UPSCALE, "--seed", "5", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTXConditionPipeline"
    first, upsample, second = (stage["call_kwargs"] for stage in data["pipeline"]["stages"])
    # 2/3 of 96 is 64; twice that is refined, then resized to the 96x96 asked for.
    assert (first["height"], first["width"], first["output_type"]) == (64, 64, "latent")
    assert upsample["adain_factor"] == 1.0
    assert (second["height"], second["width"]) == (128, 128)
    assert second["timesteps"] == [1000, 909, 725, 421, 0] and second["denoise_strength"] == 0.999
    ours = _png_frames(folder)
    assert ours.shape == (9, 96, 96, 3)
    assert_reproduces(ours, data)


def test_ltx_upscale_i2v_conditions_both_stages_on_the_image(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (96, 96), (200, 80, 40)).save("first.png")
    args = ("i2v", "first.png", "it melts", "--preset", "tiny-ltx-upscale", "--format", "png")
    result = cli(*args, "--seed", "3", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    first = data["pipeline"]["stages"][0]["call_kwargs"]
    assert first["frame_index"] == [0] and first["strength"] == [1.0]
    media = {"image": [Image.open("first.png").convert("RGB")], "video": [None]}
    assert_reproduces(_png_frames(folder), data, media)


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        ((*UPSCALE, "--width", "32"), 3, ("--width 32", "too small", "48")),
        ((*UPSCALE, "--width", "100"), 3, ("--width 100", "multiples of 32")),
        (("t2v", "a fox", "--preset", "tiny-ltx", "--adain-factor", "1"), 3, ("--adain-factor", "--latent-upsampler")),
        # A model that is not there: exit 5 (DESIGN.md section 5), before anything loads.
        ((*UPSCALE, "--latent-upsampler", "tiny:nothing"), 5, ("no tiny model 'nothing'", "ltx-upsampler")),
        ((*TWO_STAGE, "--latent-upsampler", "https://x/y"), 5, ("https://x/y", "Hub repo id")),
        ((*TWO_STAGE, "--latent-upsampler", "a/b/../c"), 5, ("a/b/../c", "inside the repo")),
    ],
)
def test_ltx_upscale_bad_input_is_refused_before_loading(
    tmp_path: Path, args: tuple, code: int, needles: tuple
) -> None:
    before = files_under(tmp_path)
    one_line_error(cli(*args), code, *needles)
    assert files_under(tmp_path) == before


def test_two_stage_keyframes_condition_both_stages_equal_to_plain_diffusers(tmp_path: Path) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 80, 40)).save("first.png")
    Image.new("RGB", (64, 64), (30, 90, 220)).save("last.png")
    args = ("i2v", "first.png", "a drummer", "--preset", "tiny-ltx2-two-stage", "--keyframe", "8:last.png:0.9")
    result = cli(*args, "--image-crf", "0", "--seed", "3", "--format", "png", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert data["pipeline"]["class"] == "LTX2ConditionPipeline" and len(data["pipeline"]["stages"]) == 3
    assert "the same to both stages" in data["pipeline"]["run"]

    def conditions() -> dict:
        return {
            "conditions": [
                LTX2VideoCondition(frames=Image.open("first.png").convert("RGB"), index=0, strength=1.0, crf=0),
                LTX2VideoCondition(frames=Image.open("last.png").convert("RGB"), index=8, strength=0.9, crf=0),
            ]
        }

    made = assert_reproduces(_png_frames(folder), data, conditions())
    assert raw_sha256(made.audio) == data["output"]["audio"]["raw_sha256"]
