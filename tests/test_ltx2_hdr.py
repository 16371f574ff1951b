"""LTX-2 HDR (LTX2HDRPipeline with an HDR IC-LoRA) on `vidgen v2v`, on the tiny model and the tiny
random IC-LoRA: the clip comes back as HDR10 (10-bit H.265, BT.2020, PQ; checked by decoding the
file), its linear frames equal plain diffusers' from the sidecar bit for bit (another seed, another
prompt and another clip differ); formats that cannot hold HDR, finishing steps and latents are
refused before loading; the full preset plans offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import _pipe, cli, files_under, one_line_error, printed_sidecar, random_frames, sidecar_media, varied

from vidgen.io import media as vmedia

DEFAULT_TIER = "pipeline"

TINY = ("--preset", "tiny-ltx2-hdr")


def _plain(data: dict, frames: list, **change) -> np.ndarray:
    """Plain diffusers' linear HDR frames from the sidecar: the pipeline with the IC-LoRA loaded
    as its setup records, the recorded call, the clip as an LTX2HDRReferenceCondition."""
    import torch
    from diffusers.pipelines.ltx2.pipeline_ltx2_hdr_lora import LTX2HDRReferenceCondition

    data = varied(data, **change)
    pipe = _pipe(data)
    generator = torch.Generator("cpu").manual_seed(data["seed"])
    reference = [LTX2HDRReferenceCondition(frames=frames, strength=1.0)]
    out = pipe(**data["pipeline"]["call_kwargs"], reference_conditions=reference, generator=generator)
    return out.frames[0].float().numpy()


def _sha(linear: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(linear, dtype="<f4").tobytes()).hexdigest()


def _decoded(path: Path) -> tuple[np.ndarray, dict]:
    """The file's frames as 16-bit RGB (PQ, BT.2020) and its colour tags, decoded by PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, tags = [], {}
        for frame in container.decode(stream):
            tags = {"codec": stream.codec_context.name, "pix_fmt": frame.format.name,
                    "primaries": int(frame.color_primaries), "transfer": int(frame.color_trc),
                    "matrix": int(frame.colorspace)}  # fmt: skip
            frames.append(frame.to_ndarray(format="rgb48le"))
    return np.stack(frames), tags


def test_hdr10_file_and_linear_frames_equal_plain_diffusers(tmp_path: Path) -> None:
    # --crf 0: x265 near lossless, so the tiny model's noise survives the encode to be compared.
    args = ("--seed", "3", "--crf", "0", "--out", "hdr.mp4")
    result = cli("v2v", random_frames("clip", 11), "a street at night", *TINY, *args)
    assert result.exit_code == 0, result.stderr
    data = printed_sidecar(result)
    pipeline, output = data["pipeline"], data["output"]
    assert pipeline["class"] == "LTX2HDRPipeline" and pipeline["media_kwargs"] == {
        "reference_conditions": "inputs.video"
    }
    call = pipeline["call_kwargs"]
    assert call["output_type"] == "pt" and call["num_frames"] == 9 and call["guidance_scale"] == 1.0
    assert [step["method"] for step in pipeline["setup"]] == ["load_lora_weights", "set_adapters"]
    assert output["codec"] == "h265" and output["hdr"]["transfer"] == "smpte2084 (PQ)" and "audio" not in output
    shown = cli("inspect", "hdr.mp4")
    assert shown.exit_code == 0 and "HDR10: smpte2084 (PQ), bt2020, 10-bit, 1.0 at 203.0 nits" in shown.stdout
    # The file is HDR10: 10-bit HEVC tagged BT.2020 (9), PQ (16), BT.2020 non-constant (9).
    pixels, tags = _decoded(tmp_path / "hdr.mp4")
    assert tags == {"codec": "hevc", "pix_fmt": "yuv420p10le", "primaries": 9, "transfer": 16, "matrix": 9}
    assert pixels.shape == (9, 32, 32, 3)
    # The linear frames equal plain diffusers' exactly (the sidecar hashes them) ...
    frames = sidecar_media(data)["reference_conditions"]
    theirs = _plain(data, frames)
    assert _sha(theirs) == output["hdr"]["raw_sha256"] and theirs.max() > 1  # light above SDR white

    # ... and the file holds them: decoded, each 2x2 block (the 4:2:0 chroma grid; the tiny model's
    # output is noise down to the pixel) is within a few code values of their HDR10 encoding, far
    # nearer than another seed's.
    def blocks(x: np.ndarray) -> np.ndarray:
        return x.astype(float).reshape(9, 16, 2, 16, 2, 3).mean(axis=(2, 4)) / 65535

    near = np.abs(blocks(pixels) - blocks(vmedia.hdr10(theirs))).mean()
    other = np.abs(blocks(pixels) - blocks(vmedia.hdr10(_plain(data, frames, seed=4)))).mean()
    assert near < 0.02 and other > 3 * near
    # Another prompt and another clip change the frames too.
    assert _sha(_plain(data, frames, prompt="a quiet forest lake")) != output["hdr"]["raw_sha256"]
    from PIL import Image

    clip = [Image.open(p).convert("RGB") for p in sorted(Path(random_frames("other", 9, seed=7)).iterdir())]
    assert _sha(_plain(data, clip)) != output["hdr"]["raw_sha256"]


@pytest.mark.unit
def test_pq_curve_and_primaries() -> None:
    # ST 2084: 10000 nits is the top code, 100 nits about 0.508, 0 is 0; reference white (linear 1.0)
    # lands at 203 nits, grey stays grey.
    assert vmedia.pq(10000.0) == pytest.approx(1.0)
    assert vmedia.pq(100.0) == pytest.approx(0.5081, abs=1e-3)
    assert vmedia.pq(0.0) == pytest.approx(0.0, abs=1e-6)
    white = vmedia.hdr10(np.ones((1, 1, 1, 3)))[0, 0, 0]
    assert len(set(white.tolist())) == 1 and white[0] == round(float(vmedia.pq(203.0)) * 65535)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--format", "png"], ["writes HDR10", "--format mp4"]),
        (["--format", "webm"], ["writes HDR10", "--format mp4"]),
        (["--codec", "h264"], ["10-bit H.265", "--codec h264"]),
        (["--interpolate", "2", "--interpolate-model", "tiny:rife"], ["--interpolate", "--upscale"]),
        (["--save-latents"], ["--save-latents", "decodes inside its own steps"]),
        (["--frames", "17"], ["--frames", "input clip sets the length"]),
        (["--steps", "4"], ["--steps", "--sigma"]),
        (["--ic-lora", ""], ["needs an IC-LoRA"]),
        (["--height", "48"], ["--height 48", "multiples of 32"]),
    ],
)
def test_refused_before_loading(args: list[str], needles: list[str], nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", random_frames("clip", 9), "a street", *TINY, *args), 3, *needles)
    assert [p for p in files_under(tmp_path) if p.parent.name != "clip"] == []


@pytest.mark.unit
def test_short_clip_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("v2v", random_frames("clip", 5), "a street", *TINY), 4, "at least 9")


@pytest.mark.unit
def test_full_preset_plans_offline(nothing_loads: None, tmp_path: Path) -> None:
    result = cli("v2v", random_frames("clip", 9), "a street at night", "--preset", "ltx2.3-hdr", "--dry-run",
                 "--memory", "auto", "--vram", "24")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "LTX2HDRPipeline" in result.stdout and "--vram 24" in result.stdout
