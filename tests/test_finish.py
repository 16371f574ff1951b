"""Finishing a clip: RIFE interpolation and Real-ESRGAN upscaling, after a generation
(--interpolate, --upscale) or on a clip on disk (`vidgen interpolate`, `vidgen upscale`).

No RIFE or Real-ESRGAN weights can be downloaded here, so the tests write random ones of the
published architectures under the published key names (vidgen.models.finishers.save_tiny: the
same networks, narrower), as the tiny pipelines stand in for real models. "The library called
directly" is vidgen's own network module (vidgen.models.rife, vidgen.models.upscalers): vidgen
has no RIFE or ESRGAN dependency to compare against (see the README's "Finishing a clip").
Lossless PNG output is used where frames are compared exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, decode, files_under, one_line_error, png_frames, printed_sidecar, sidecar
from test_ltx2 import streams

DEFAULT_TIER = "pipeline"

FOX = ("t2v", "a fox in the snow", "--preset", "tiny-cogvideox")


def _weights(tmp_path: Path, step: str, name: str, arch=None, seed: int = 0) -> Path:
    from vidgen.models import finishers

    return finishers.save_tiny(step, tmp_path / "weights" / name, seed=seed, arch=arch)


@pytest.fixture
def rife(tmp_path: Path) -> Path:
    return _weights(tmp_path, "interpolate", "rife.safetensors")


@pytest.fixture
def srvgg(tmp_path: Path) -> Path:
    return _weights(tmp_path, "upscale", "srvgg-x2.safetensors")


def _direct_interpolate(weights: Path, frames: np.ndarray, factor: int) -> np.ndarray:
    """RIFE called directly: the originals, and factor-1 frames between each pair."""
    from vidgen.models import finishers, rife

    model = finishers.load(finishers.read("interpolate", str(weights), False), "cpu")
    out = []
    for first, second in zip(frames[:-1], frames[1:], strict=True):
        out.append(first)
        out += rife.interpolate_pair(model, first, second, [i / factor for i in range(1, factor)], "cpu")
    out.append(frames[-1])
    return np.stack(out)


def _direct_upscale(weights: Path, frames: np.ndarray, tile: int = 0) -> np.ndarray:
    from vidgen.models import finishers, upscalers

    found = finishers.read("upscale", str(weights), False)
    model = finishers.load(found, "cpu")
    return np.stack([upscalers.upscale_frame(model, found.arch, frame, "cpu", tile=tile) for frame in frames])


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_interpolate_x2_on_9_frames_gives_17_with_the_originals_kept(tmp_path: Path, rife: Path) -> None:
    plain = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "plain/"))
    assert plain.shape[0] == 9
    made = cli(*FOX, "--seed", "3", "--format", "png", "--out", "x2/", "--interpolate", "x2", "--interpolate-model",
               str(rife))  # fmt: skip
    ours = png_frames(made)
    assert ours.shape == (17, *plain.shape[1:])
    assert np.array_equal(ours[::2], plain)  # the 9 generated frames, untouched
    _close(ours, _direct_interpolate(rife, plain, 2))
    # The new frames are made, not copies of a neighbour.
    assert np.abs(ours[1].astype(int) - plain[0].astype(int)).max() > 1
    data = printed_sidecar(made)
    assert data["output"]["fps"] == 16 and data["config"]["output"]["fps"] == 8  # the generation's rate
    step = data["finish"][0]
    assert step["frames"] == [9, 17] and step["fps"] == [8, 16] and step["factor"] == "x2"
    # Not vacuous: another seed gives other frames through the same chain.
    other = png_frames(cli(*FOX, "--seed", "4", "--format", "png", "--out", "o/", "--interpolate", "2",
                           "--interpolate-model", str(rife)))  # fmt: skip
    assert np.abs(other.astype(int) - ours.astype(int)).max() > 1


def test_interpolate_to_a_frame_rate_places_frames_in_time(tmp_path: Path, rife: Path) -> None:
    ours = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "r/", "--interpolate", "12fps",
                          "--interpolate-model", str(rife)))  # fmt: skip
    plain = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "plain/"))
    # 8 -> 12 fps over the same 8 frame intervals: 13 frames, every third one an original.
    assert ours.shape[0] == 13
    assert np.array_equal(ours[::3], plain[::2])


def test_upscale_equals_the_network_called_directly(tmp_path: Path, srvgg: Path) -> None:
    plain = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "plain/"))
    made = cli(*FOX, "--seed", "3", "--format", "png", "--out", "up/", "--upscale", str(srvgg))
    ours = png_frames(made)
    assert ours.shape == (9, plain.shape[1] * 2, plain.shape[2] * 2, 3)
    _close(ours, _direct_upscale(srvgg, plain))
    data = printed_sidecar(made)
    assert (data["output"]["width"], data["output"]["frames"]) == (plain.shape[2] * 2, 9)
    step = data["finish"][0]
    assert step["model"]["architecture"] == "Real-ESRGAN SRVGGNetCompact" and step["factor"] == "x2"
    assert step["size"] == ["16x16", "32x32"] and step["model"]["sha256"] and step["seconds"] > 0
    # Tiles of 8 pixels (16 of overlap, wider than the network sees) join without a seam.
    tiled = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "tiled/", "--upscale", str(srvgg),
                           "--upscale-tile", "8"))  # fmt: skip
    _close(tiled, ours)


def test_upscale_with_an_rrdb_network(tmp_path: Path) -> None:
    from vidgen.models import upscalers

    weights = _weights(tmp_path, "upscale", "rrdb-x2.safetensors", arch=upscalers.TINY_RRDB)
    plain = png_frames(cli(*FOX, "--seed", "3", "--format", "png", "--out", "plain/"))
    made = cli(*FOX, "--seed", "3", "--format", "png", "--out", "up/", "--upscale", str(weights),
               "--upscale-tile", "0")  # fmt: skip
    _close(png_frames(made), _direct_upscale(weights, plain))
    assert printed_sidecar(made)["finish"][0]["model"]["architecture"] == "Real-ESRGAN RRDBNet"


def test_a_chain_writes_one_file_whose_sidecar_lists_it_and_replay_reproduces_it(
    tmp_path: Path, rife: Path, srvgg: Path
) -> None:
    args = (*FOX, "--seed", "3", "--interpolate", "2", "--interpolate-model", str(rife), "--upscale", str(srvgg))
    made = cli(*args, "--out", "clip.mp4")
    assert made.exit_code == 0, made.stderr
    assert [p.name for p in files_under(tmp_path) if "weights" not in p.parts] == ["clip.json", "clip.mp4"]
    data = sidecar(tmp_path / "clip.json")
    assert [step["step"] for step in data["finish"]] == ["interpolate", "upscale"]
    first, second = data["finish"]
    assert first["model"]["source"] == str(rife) and second["model"]["source"] == str(srvgg)
    assert first["frames"] == [9, 17] and second["size"] == ["16x16", "32x32"] and second["settings"]["tile"] == 512
    for step in data["finish"]:
        assert step["seconds"] > 0 and step["peak_memory_bytes"] > 0 and len(step["model"]["sha256"]) == 64
    assert data["timings"]["finish"] > 0
    assert set(data["model"]["files"]) == {"finish-1-interpolate", "finish-2-upscale"}
    frames, meta = decode(tmp_path / "clip.mp4")
    assert frames.shape == (17, 32, 32, 3) and meta["fps"] == 16
    shown = cli("inspect", "clip.mp4")
    assert "finish 1" in shown.stdout and "9 -> 17 frames" in shown.stdout and "16x16 -> 32x32" in shown.stdout
    again = cli("replay", "clip.json")
    assert again.exit_code == 0, again.stderr
    assert "finish-2-upscale" in again.stderr  # replay lists the chain's files before it runs
    assert np.array_equal(decode(tmp_path / "clip-replay.mp4")[0], frames)
    other = cli(*FOX, "--seed", "4", "--interpolate", "2", "--interpolate-model", str(rife), "--upscale", str(srvgg),
                "--out", "other.mp4")  # fmt: skip
    assert other.exit_code == 0, other.stderr
    assert np.abs(decode(tmp_path / "other.mp4")[0].astype(int) - frames.astype(int)).max() > 1


def test_replay_stops_when_a_chain_weights_file_changed(tmp_path: Path, rife: Path) -> None:
    assert (
        cli(*FOX, "--seed", "3", "--interpolate", "2", "--interpolate-model", str(rife), "--out", "c.mp4").exit_code
        == 0
    )
    _weights(tmp_path, "interpolate", "rife.safetensors", seed=9)  # same name, other tensors
    result = cli("replay", "c.json")
    one_line_error(result, 5, "has changed since the run")
    assert not (tmp_path / "c-replay.mp4").exists()


def test_dry_run_prices_each_step(tmp_path: Path, rife: Path, srvgg: Path) -> None:
    result = cli(*FOX, "--seed", "3", "--interpolate", "x4", "--interpolate-model", str(rife), "--upscale", str(srvgg),
                 "--dry-run", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    priced = json.loads(result.stdout)["finish"]
    assert [row["frames"] for row in priced] == [[9, 33], [33, 33]]
    assert [row["size"] for row in priced] == [["16x16", "16x16"], ["16x16", "32x32"]]
    assert priced[0]["fps"] == [8, 32] and priced[0]["network_runs"] == 24
    assert all(row["weights_bytes"] > 0 and row["working_bytes"] > 0 for row in priced)
    text = cli(*FOX, "--interpolate", "x4", "--interpolate-model", str(rife), "--dry-run")
    assert "finish 1: interpolate x4 (8 -> 32 fps)" in text.stdout
    assert files_under(tmp_path) == sorted([rife, srvgg])


def test_standalone_interpolate_and_upscale_carry_the_sidecar(tmp_path: Path, rife: Path, srvgg: Path) -> None:
    assert cli(*FOX, "--seed", "3", "--out", "clip.mp4").exit_code == 0
    source, _ = decode(tmp_path / "clip.mp4")
    done = cli("interpolate", "clip.mp4", "--model", str(rife), "--json")
    assert done.exit_code == 0, done.stderr
    row = json.loads(done.stdout)["outputs"][0]
    assert row["path"] == "clip-x2.mp4" and row["frames"] == 17 and row["fps"] == 16
    # Written losslessly, the frames are the decoded clip's, with RIFE's between them.
    lossless = cli("interpolate", "clip.mp4", "--model", str(rife), "--format", "png", "--out", "png/")
    assert lossless.stdout.strip() == "png/clip-x2", lossless.stderr
    ours = png_frames(lossless)
    assert np.array_equal(ours[::2], source)
    _close(ours, _direct_interpolate(rife, source, 2))
    data = sidecar(tmp_path / "clip-x2.json")
    assert data["finished_from"]["path"] == "clip.mp4"
    assert data["config"]["output"]["finish"] == [{"step": "interpolate", "model": str(rife), "by": "x2"}]
    up = cli("upscale", "clip-x2.mp4", "--model", str(srvgg))
    assert up.exit_code == 0 and up.stdout.strip() == "clip-x2-up2.mp4", up.stderr
    chain = sidecar(tmp_path / "clip-x2-up2.json")["finish"]
    assert [(s["step"], s["frames"], s["size"]) for s in chain] == [
        ("interpolate", [9, 17], ["16x16", "16x16"]),
        ("upscale", [17, 17], ["16x16", "32x32"]),
    ]
    # Replay redoes the generation and the whole chain (on the frames before encoding).
    again = cli("replay", "clip-x2-up2.json")
    assert again.exit_code == 0, again.stderr
    replayed, meta = decode(tmp_path / "clip-x2-up2-replay.mp4")
    assert replayed.shape == (17, 32, 32, 3) and meta["fps"] == 16


def test_a_clip_from_elsewhere_is_finished_with_a_fresh_sidecar(tmp_path: Path, srvgg: Path) -> None:
    from vidgen.io import media

    frames = (np.random.default_rng(0).random((5, 16, 24, 3)) * 255).astype(np.uint8)
    codec, crf = media.encoding("mp4", None, None)
    media.write(frames, tmp_path / "theirs.mp4", fmt="mp4", fps=12, codec=codec, crf=crf, metadata=None,
                overwrite=False)  # fmt: skip
    result = cli("upscale", "theirs.mp4", "--model", str(srvgg), "--out", "mine.mp4")
    assert result.exit_code == 0, result.stderr
    data = sidecar(tmp_path / "mine.json")
    assert "config" not in data and data["finished_from"]["sha256"] == media.sha256(tmp_path / "theirs.mp4")
    assert decode(tmp_path / "mine.mp4")[0].shape == (5, 32, 48, 3)


def test_sound_is_carried_through_the_chain(tmp_path: Path, rife: Path) -> None:
    made = cli("t2v", "a drummer", "--preset", "tiny-ltx2", "--seed", "3", "--out", "drum.mp4")
    assert made.exit_code == 0, made.stderr
    before = streams(tmp_path / "drum.mp4")
    assert "audio" in before
    result = cli("interpolate", "drum.mp4", "--model", str(rife))
    assert result.exit_code == 0, result.stderr
    after = streams(tmp_path / "drum-x2.mp4")
    assert after["audio"]["codec"] == "aac" and after["audio"]["rate"] == before["audio"]["rate"]
    assert after["audio"]["duration"] == pytest.approx(before["audio"]["duration"], abs=0.05)
    assert after["video"]["frames"] == 2 * before["video"]["frames"] - 1
    # In a generation's chain too: the family's sound goes into the finished file.
    chained = cli("t2v", "a drummer", "--preset", "tiny-ltx2", "--seed", "3", "--out", "chained.mp4",
                  "--interpolate", "2", "--interpolate-model", str(rife))  # fmt: skip
    assert chained.exit_code == 0, chained.stderr
    assert sidecar(tmp_path / "chained.json")["output"]["audio"] == sidecar(tmp_path / "drum.json")["output"]["audio"]


# -- bad input: one line, its exit code, nothing written ------------------------------------


def _only(tmp_path: Path, *names: str) -> None:
    left = [p.relative_to(tmp_path).as_posix() for p in files_under(tmp_path) if "weights" not in p.parts]
    assert sorted(left) == sorted(names)


def test_a_zero_frame_clip_and_an_image_are_refused(tmp_path: Path, rife: Path) -> None:
    from PIL import Image

    from vidgen.io import media

    subprocess.run(
        [media.ffmpeg(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=16x16:r=8", "-frames:v", "0",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / "empty.mp4")],
        check=True,
    )  # fmt: skip
    one_line_error(cli("interpolate", "empty.mp4", "--model", str(rife)), 4)
    Image.new("RGB", (16, 16)).save(tmp_path / "still.png")
    one_line_error(cli("interpolate", "still.png", "--model", str(rife)), 4, "is an image, not a clip")
    one_line_error(cli("upscale", "still.png", "--model", str(rife)), 4, "is an image, not a clip")
    one_line_error(cli("upscale", "nothere.mp4", "--model", str(rife)), 4, "does not exist")
    _only(tmp_path, "empty.mp4", "still.png")


def test_a_factor_the_model_cannot_do_is_refused(tmp_path: Path, rife: Path) -> None:
    assert cli(*FOX, "--seed", "3", "--out", "clip.mp4").exit_code == 0
    one_line_error(cli("interpolate", "clip.mp4", "--model", str(rife), "--by", "x1"), 3, "not a factor RIFE makes")
    one_line_error(cli("interpolate", "clip.mp4", "--model", str(rife), "--by", "6fps"), 3, "is not more frames")
    one_line_error(cli("interpolate", "clip.mp4", "--model", str(rife), "--by", "fast"), 3, "--by")
    # Checked before anything loads on a generation too.
    result = cli(*FOX, "--seed", "5", "--out", "g.mp4", "--interpolate", "x40", "--interpolate-model", str(rife))
    one_line_error(result, 3)
    _only(tmp_path, "clip.json", "clip.mp4")


def test_weights_of_the_wrong_architecture_are_refused_before_generating(
    tmp_path: Path, rife: Path, srvgg: Path, nothing_loads: None
) -> None:
    one_line_error(cli(*FOX, "--out", "a.mp4", "--upscale", str(rife)), 5, "is not weights of a network")
    one_line_error(cli(*FOX, "--out", "a.mp4", "--interpolate", "2", "--interpolate-model", str(srvgg)), 5,
                   "is not RIFE IFNet weights")  # fmt: skip
    one_line_error(cli(*FOX, "--out", "a.mp4", "--interpolate", "2"), 3, "needs --interpolate-model")
    _only(tmp_path)


def test_pickle_weights_need_allow_pickle_and_load_with_ddp_names(tmp_path: Path) -> None:
    import torch

    from vidgen.models import rife

    state = {f"module.{name}": value for name, value in rife.random_weights(rife.TINY).items()}
    torch.save(state, tmp_path / "flownet.pkl")  # as Practical-RIFE publishes it
    assert cli(*FOX, "--seed", "3", "--out", "clip.mp4").exit_code == 0
    one_line_error(cli("interpolate", "clip.mp4", "--model", "flownet.pkl"), 5, "pickle", "--allow-pickle")
    _only(tmp_path, "clip.json", "clip.mp4", "flownet.pkl")
    done = cli("interpolate", "clip.mp4", "--model", "flownet.pkl", "--allow-pickle")
    assert done.exit_code == 0, done.stderr
    assert sidecar(tmp_path / "clip-x2.json")["finish"][0]["model"]["format"] == "pickle"


# -- a chain stopped between steps --------------------------------------------------------


@pytest.mark.process
def test_a_killed_chain_reruns_without_redoing_finished_steps(tmp_path: Path, rife: Path, srvgg: Path) -> None:
    args = [*FOX, "--seed", "3", "--interpolate", "2", "--interpolate-model", str(rife), "--upscale", str(srvgg)]

    def vidgen(*more: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vidgen", *args, *more], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip

    killed = vidgen("--out", "clip.mp4", env={"VIDGEN_TEST_KILL_FINISH": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "finish 1/2" in killed.stderr and "finish 2/2" not in killed.stderr
    _only(tmp_path, "clip.finish.safetensors")
    rerun = vidgen("--out", "clip.mp4")
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming its finishing chain after step 1 of 2" in rerun.stderr
    # Neither the model nor the first step ran again.
    assert "loading" not in rerun.stderr and "finish 1/2" not in rerun.stderr and "finish 2/2" in rerun.stderr
    _only(tmp_path, "clip.json", "clip.mp4")
    data = sidecar(tmp_path / "clip.json")
    assert data["finish_resumed"] == {"after_step": 1} and len(data["finish"]) == 2
    whole = vidgen("--out", "whole.mp4")
    assert whole.returncode == 0, whole.stderr
    assert np.array_equal(decode(tmp_path / "clip.mp4")[0], decode(tmp_path / "whole.mp4")[0])


# -- LTX / LTX-2 latent upsampling on saved latents ------------------------------------------


def test_ltx_latents_upscaled_equal_the_upsample_pipeline(tmp_path: Path) -> None:
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXLatentUpsamplePipeline
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    from vidgen.models.loader import locate, locate_subfolder
    from vidgen.run import latents

    made = cli("t2v", "a fox", "--preset", "tiny-ltx", "--seed", "3", "--save-latents", "--format", "png",
               "--out", "run/")  # fmt: skip
    plain = png_frames(made)
    saved = Path(printed_sidecar(made)["output"]["latents"]["path"])
    result = cli("upscale", str(saved), "--model", "tiny:ltx-upsampler", "--format", "png", "--out", "up/")
    ours = png_frames(result)
    assert ours.shape == (plain.shape[0], plain.shape[1] * 2, plain.shape[2] * 2, 3)
    step = printed_sidecar(result)["finish"][0]
    assert step["model"]["architecture"] == "LTXLatentUpsamplerModel" and step["settings"]["second_pass"] is False
    # The library: diffusers' upsample pipeline on the same latents (it takes them normalized and
    # denormalizes them itself), decoding at the recorded timestep with no more noise.
    from safetensors import safe_open

    tensor, info = latents.load(saved)
    assert info["decode_args"] == [{"tensor": "latents.0"}]
    with safe_open(str(saved), framework="pt") as handle:
        timestep = float(handle.get_tensor("tensor.latents.0")[0])  # the recorded decode timestep
    vae = AutoencoderKLLTXVideo.from_pretrained(locate("tiny:ltx", True)[1], subfolder="vae")
    upsampler = LTXLatentUpsamplerModel.from_pretrained(locate_subfolder("tiny:ltx-upsampler", True, "upsampler")[0])
    pipe = LTXLatentUpsamplePipeline(vae=vae, latent_upsampler=upsampler)
    normalized = pipe._normalize_latents(tensor, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    with torch.inference_mode():
        frames = pipe(latents=normalized, decode_timestep=timestep, decode_noise_scale=0.0, output_type="np").frames[0]
    _close(ours, (np.clip(frames, 0, 1) * 255).round().astype(np.uint8))


def test_ltx2_latents_upscaled_keep_their_sound(tmp_path: Path) -> None:
    made = cli("t2v", "a drummer", "--preset", "tiny-ltx2", "--seed", "3", "--out", "drum.mp4", "--save-latents")
    assert made.exit_code == 0, made.stderr
    result = cli("upscale", "drum.latents.safetensors", "--model", "tiny:ltx2-upsampler")
    assert result.exit_code == 0 and result.stdout.strip() == "drum-up2.mp4", result.stderr
    before, after = sidecar(tmp_path / "drum.json"), sidecar(tmp_path / "drum-up2.json")
    assert (after["output"]["width"], after["output"]["height"]) == (2 * before["output"]["width"],
                                                                     2 * before["output"]["height"])  # fmt: skip
    assert after["output"]["frames"] == before["output"]["frames"]
    assert after["output"]["audio"] == before["output"]["audio"]  # the same raw samples
    assert streams(tmp_path / "drum-up2.mp4")["audio"]["codec"] == "aac"
    assert after["finish"][0]["model"]["architecture"] == "LTX2LatentUpsamplerModel"
    # A family without a latent upsampler is refused before anything decodes.
    assert cli(*FOX, "--seed", "3", "--out", "fox.mp4", "--save-latents").exit_code == 0
    one_line_error(
        cli("upscale", "fox.latents.safetensors", "--model", "tiny:ltx2-upsampler"), 3, "no latent upsampler"
    )
    assert not (tmp_path / "fox-up2.mp4").exists()


def test_batch_jobs_finish_too_and_ls_and_the_gallery_show_the_chain(tmp_path: Path, rife: Path, srvgg: Path) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "defaults:\n  preset: tiny-cogvideox\n  seed: 3\njobs:\n"
        f"  - {{id: fox, prompt: a fox, interpolate: x2, interpolate_model: {rife}, upscale: {srvgg}}}\n"
        "  - {id: whale, prompt: a whale}\n"
    )
    result = cli("batch", str(manifest), "--out", "runs")
    assert result.exit_code == 0, result.stderr
    fox, whale = sidecar(tmp_path / "runs" / "fox.json"), sidecar(tmp_path / "runs" / "whale.json")
    assert [step["step"] for step in fox["finish"]] == ["interpolate", "upscale"] and "finish" not in whale
    assert (fox["output"]["frames"], fox["output"]["width"]) == (17, 32)
    rows = {Path(row["path"]).stem: row for row in json.loads(cli("ls", "runs", "--json").stdout)["outputs"]}
    assert rows["fox"]["finish"] == "interpolate x2, upscale x2" and rows["whale"]["finish"] is None
    assert cli("gallery", "runs").exit_code == 0
    page = (tmp_path / "runs" / "index.html").read_text()
    assert page.count("finished: interpolate x2, upscale x2") == 1
    # Half a pair in a job is an invalid job, named before anything runs.
    manifest.write_text("jobs:\n  - {prompt: a fox, preset: tiny-cogvideox, interpolate: x2}\n")
    one_line_error(cli("batch", str(manifest), "--out", "bad"), 3)
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_out_of_memory_in_a_step_keeps_the_generation_for_the_rerun(
    tmp_path: Path, rife: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = (*FOX, "--seed", "3", "--out", "clip.mp4", "--interpolate", "2", "--interpolate-model", str(rife))
    monkeypatch.setenv("VIDGEN_TEST_OOM", "finish")  # CUDA's out-of-memory error, in the first step
    failed = cli(*args)
    one_line_error(failed, 6, "finish step 1 (interpolate x2", "clip.finish.safetensors", "rerunning resumes")
    _only(tmp_path, "clip.finish.safetensors")
    monkeypatch.delenv("VIDGEN_TEST_OOM")
    rerun = cli(*args)
    assert rerun.exit_code == 0, rerun.stderr
    assert "resuming its finishing chain after the generation" in rerun.stderr and "loading" not in rerun.stderr
    _only(tmp_path, "clip.json", "clip.mp4")
    assert sidecar(tmp_path / "clip.json")["finish"][0]["frames"] == [9, 17]


# -- diffusion super-resolution: Kandinsky6SRPipeline ----------------------------------------


def _clip_file(tmp_path: Path, name: str, frames: int, side: int) -> np.ndarray:
    from vidgen.io import media

    pixels = (np.random.default_rng(0).random((frames, side, side, 3)) * 255).astype(np.uint8)
    codec, crf = media.encoding("mp4", None, None)
    media.write(pixels, tmp_path / name, fmt="mp4", fps=8, codec=codec, crf=crf, metadata=None, overwrite=False)
    return decode(tmp_path / name)[0]  # what vidgen reads back


def test_kandinsky6_sr_equals_the_pipeline_called_directly(tmp_path: Path) -> None:
    import torch
    from diffusers import Kandinsky6SRPipeline

    from vidgen.models.loader import locate

    source = _clip_file(tmp_path, "c.mp4", 5, 64)
    made = cli("upscale", "c.mp4", "--model", "tiny:kandinsky6-sr", "--seed", "1", "--format", "png", "--out", "a/")
    ours = png_frames(made)
    assert ours.shape == (5, 128, 128, 3)
    step = printed_sidecar(made)["finish"][0]
    assert step["model"]["architecture"] == "Kandinsky6SRPipeline" and step["settings"] == {"scale": 2.0, "steps": 4,
                                                                                               "seed": 1}  # fmt: skip
    pipe = Kandinsky6SRPipeline.from_pretrained(locate("tiny:kandinsky6-sr")[1])
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        frames = pipe(video=[source.astype(np.float32) / 255], resolution_scale=2, num_inference_steps=4,
                      generator=torch.Generator().manual_seed(1), output_type="np").frames[0]  # fmt: skip
    _close(ours, (np.clip(frames, 0, 1) * 255).round().astype(np.uint8))
    # Stochastic: another seed is other frames.
    other = png_frames(cli("upscale", "c.mp4", "--model", "tiny:kandinsky6-sr", "--seed", "2", "--format", "png",
                           "--out", "b/"))  # fmt: skip
    assert np.abs(other.astype(int) - ours.astype(int)).max() > 1


def test_kandinsky6_sr_refuses_what_it_cannot_do(tmp_path: Path, srvgg: Path) -> None:
    _clip_file(tmp_path, "six.mp4", 6, 64)
    _clip_file(tmp_path, "odd.mp4", 5, 40)
    one_line_error(cli("upscale", "six.mp4", "--model", "tiny:kandinsky6-sr"), 3, "4k+1 frames")
    one_line_error(cli("upscale", "odd.mp4", "--model", "tiny:kandinsky6-sr"), 3, "divisible by 16")
    one_line_error(cli("upscale", "odd.mp4", "--model", "tiny:kandinsky6-sr", "--scale", "3"), 3, "--scale")
    one_line_error(cli("upscale", "odd.mp4", "--model", str(srvgg), "--seed", "3"), 3, "per-frame network")
    one_line_error(cli("upscale", "odd.mp4", "--model", "tiny:cogvideox"), 5, "not a video super-resolution")
    # Smaller than its tiles: refused before a generation loads anything too.
    result = cli(*FOX, "--seed", "3", "--out", "g.mp4", "--upscale", "tiny:kandinsky6-sr")
    one_line_error(result, 3, "needs frames of at least 64x64 for x2")
    assert "loading" not in result.stderr
    _only(tmp_path, "odd.mp4", "six.mp4")


# -- budgets, tiny weights, the generation commands' Kandinsky6SR options ----------------------


def _auto_tile(*extra: str) -> dict:
    result = cli(*FOX, "--height", "480", "--width", "832", "--upscale", "tiny:realesrgan-rrdb", "--memory", "auto",
                 "--dry-run", "--json", *extra)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_memory_auto_picks_the_upscale_tile_that_fits_beside_the_plan(tmp_path: Path) -> None:
    roomy, tight, tighter = (_auto_tile("--vram", vram) for vram in ("8", "0.2", "0.05"))
    tiles = [plan["finish"][0]["tile"] for plan in (roomy, tight, tighter)]
    assert tiles[0] == 0 and 0 < tiles[2] < tiles[1]  # whole frames when they fit, smaller as the card shrinks
    for plan, tile in zip((roomy, tight, tighter), tiles, strict=True):
        # Written into the config, so the sidecar and a replay run the same tiles.
        assert plan["config"]["output"]["finish"][0]["tile"] == tile
        assert plan["sources"]["output.finish"] == "memory:auto (upscale tile)"
        budget = plan["memory"]["budget_bytes"] * 0.9
        assert plan["finish"][0]["working_bytes"] + plan["finish"][0]["weights_bytes"] <= budget
    # What no tile fits is said; a tile the user gives is kept; without --memory auto it is 512.
    hopeless = _auto_tile("--vram", "0.01")
    assert any("finish step 1 (upscale)" in note for note in hopeless["memory"]["notes"])
    assert _auto_tile("--vram", "0.05", "--upscale-tile", "64")["finish"][0]["tile"] == 64
    manual = json.loads(cli(*FOX, "--upscale", "tiny:realesrgan", "--dry-run", "--json").stdout)
    assert manual["finish"][0]["tile"] == 512 and manual["config"]["output"]["finish"][0]["tile"] is None


def test_standalone_upscale_fits_its_tile_to_vram_and_joins_tiles_without_a_seam(tmp_path: Path) -> None:
    _clip_file(tmp_path, "c.mp4", 3, 256)
    planned = json.loads(cli("upscale", "c.mp4", "--model", "tiny:realesrgan", "--vram", "0.015", "--dry-run",
                             "--json").stdout)["finish"][0]  # fmt: skip
    assert 0 < planned["tile"] < 256
    small = cli("upscale", "c.mp4", "--model", "tiny:realesrgan", "--vram", "0.015", "--format", "png", "--out", "s/")
    whole = cli("upscale", "c.mp4", "--model", "tiny:realesrgan", "--tile", "0", "--format", "png", "--out", "w/")
    assert printed_sidecar(small)["finish"][0]["settings"]["tile"] == planned["tile"]
    _close(png_frames(small), png_frames(whole))
    assert png_frames(whole).shape == (3, 512, 512, 3)


def test_tiny_weights_try_the_chain_offline_and_wrong_names_are_refused(tmp_path: Path, srvgg: Path) -> None:
    made = cli(*FOX, "--seed", "3", "--out", "t.mp4", "--interpolate", "2", "--interpolate-model", "tiny:rife",
               "--upscale", "tiny:realesrgan")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    chain = sidecar(tmp_path / "t.json")["finish"]
    assert [(s["model"]["source"], s["model"]["architecture"]) for s in chain] == [
        ("tiny:rife", "RIFE IFNet (Practical-RIFE 4.25/4.26)"),
        ("tiny:realesrgan", "Real-ESRGAN SRVGGNetCompact"),
    ]
    assert decode(tmp_path / "t.mp4")[0].shape == (17, 32, 32, 3)
    one_line_error(cli(*FOX, "--upscale", "tiny:rife"), 5, "tiny interpolate model", "tiny:realesrgan")
    # The standalone command names its own option.
    one_line_error(cli("interpolate", "t.mp4", "--model", str(srvgg)), 5, "--model ", "is not RIFE IFNet weights")


def test_generation_commands_set_kandinsky6_sr_scale_and_steps(tmp_path: Path, srvgg: Path) -> None:
    args = [*FOX, "--height", "64", "--width", "64", "--seed", "5", "--upscale", "tiny:kandinsky6-sr"]
    made = cli(*args, "--upscale-steps", "2", "--upscale-scale", "2", "--out", "k.mp4")
    assert made.exit_code == 0, made.stderr
    data = sidecar(tmp_path / "k.json")
    assert data["finish"][0]["settings"] == {"scale": 2.0, "steps": 2, "seed": 5}
    recorded = data["config"]["output"]["finish"][0]
    assert (recorded["scale"], recorded["steps"], recorded["seed"]) == (2.0, 2, None)  # the seed: the run's
    assert decode(tmp_path / "k.mp4")[0].shape == (9, 128, 128, 3)
    one_line_error(cli(*FOX, "--upscale-steps", "2"), 3, "--upscale-steps needs --upscale")
    one_line_error(cli(*FOX, "--upscale", str(srvgg), "--upscale-steps", "2"), 3, "per-frame network")
