"""What probing main found (issue 26, items 1, 2 and 7): internal errors and wrong successes.

Each bad invocation ends in one `Error:` line with DESIGN.md's exit code and writes nothing.
Every refusal here comes before any weights load (plans, inputs and files only), so these run in
process without a pipeline; the refusals that need a loaded model are in
test_probe_errors_pipeline.py, and real bytes from a shell in test_probe_errors_process.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, files_under, one_line_error
from PIL import Image
from typer.testing import CliRunner

from vidgen.cli import app

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "unit"

TINY = ["t2v", "a red fox", "--preset", "tiny-cogvideox"]


def _frames(folder: Path, count: int, size: int = 16, value: int | None = None) -> Path:
    """A folder of `count` PNG frames: a bright square moving over a dark ground (or all `value`)."""
    folder.mkdir()
    for index in range(count):
        pixels = np.full((size, size, 3), 20 if value is None else value, dtype=np.uint8)
        if value is None:
            pixels[4:10, index % 10 : index % 10 + 6] = 235
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return folder


def _video(path: Path, count: int, size: int = 16) -> Path:
    from vidgen.io import media

    clip = np.zeros((count, size, size, 3), dtype=np.uint8)
    clip[:, :, size // 2 :] = 255
    codec, crf = media.encoding("mp4", None, None)
    media.write(clip, path, fmt="mp4", fps=16, codec=codec, crf=crf, metadata=None, overwrite=False)
    return path


def _refused(tmp_path: Path, args: list[str], code: int, *needles: str) -> str:
    """Run `args`; one Error line with `code`, the needles in it, no file written or changed."""
    before = {path: path.read_bytes() for path in files_under(tmp_path)}
    line = one_line_error(cli(*args), code, *needles)
    assert {path: path.read_bytes() for path in files_under(tmp_path)} == before
    return line


def _jobs(path: Path, *jobs: dict) -> Path:
    path.write_text("".join(json.dumps({"preset": "tiny-cogvideox", "steps": 2, **job}) + "\n" for job in jobs))
    return path


# -- 1. internal errors ----------------------------------------------------------------------


def test_a_prompt_with_bytes_that_are_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # Python keeps the shell's byte 0xE9 in argv as U+DCE9 (PEP 383); it used to reach the slug
    # and end in "UnicodeEncodeError: surrogates not allowed", exit 1.
    line = _refused(tmp_path, ["t2v", "caf\udce9", "--preset", "tiny-cogvideox"], 3, "not UTF-8", "0xe9")
    assert "caf\\xe9" in line


def test_text_that_is_not_utf8_on_stdin_or_in_a_manifest_is_a_config_error(tmp_path: Path) -> None:
    before = files_under(tmp_path)
    piped = CliRunner().invoke(app, ["batch", "-", "--preset", "tiny-cogvideox"], input=b'{"prompt": "caf\xe9"}\n')
    one_line_error(piped, 3, "stdin is not UTF-8", "0xe9")
    # A JSON manifest can spell the same lone surrogate as an escape.
    (tmp_path / "jobs.jsonl").write_text('{"prompt": "caf\\udce9", "preset": "tiny-cogvideox"}\n')
    result = cli("batch", "jobs.jsonl", "--out", "runs")
    one_line_error(result, 3, "1 of 1 jobs are invalid")
    assert "inputs.prompt (from line 1) is not UTF-8 text" in result.stderr
    assert files_under(tmp_path) == [*before, tmp_path / "jobs.jsonl"]


def test_a_lora_that_is_not_safetensors_inside_is_a_model_error(tmp_path: Path) -> None:
    # Random bytes under a .safetensors name: "SafetensorError: header too small", exit 1.
    (tmp_path / "style.safetensors").write_bytes(np.random.default_rng(0).bytes(5))
    (tmp_path / "big.safetensors").write_bytes(np.random.default_rng(1).bytes(5000))
    for name in ("style.safetensors", "big.safetensors"):
        _refused(tmp_path, ["t2v", "a fox", "--preset", "tiny-wan", "--lora", name], 5, name, "not a safetensors file")


def test_batch_into_an_existing_file_is_refused_before_any_job(tmp_path: Path) -> None:
    # --out FILE ended in "UnboundLocalError: ... 'age'" when the first job was claimed.
    _jobs(tmp_path / "jobs.jsonl", {"prompt": "a cat"})
    (tmp_path / "FILE").write_text("mine")
    _refused(tmp_path, ["batch", "jobs.jsonl", "--out", "FILE"], 7, "--out FILE is a file", "a folder")
    _refused(tmp_path, ["batch", "jobs.jsonl", "--out", "FILE/sub"], 7, "under FILE, which is a file")


@pytest.mark.parametrize("preset", ["tiny-wan-v2v", "tiny-cogvideox-v2v", "tiny-animatediff-v2v"])
def test_steps_times_strength_rounding_to_zero_is_refused_before_loading(tmp_path: Path, preset: str) -> None:
    # 1 step x strength 0.8 is int(0.8) = 0 steps: "cannot reshape tensor of 0 elements" after
    # loading, exit 1, and outputs/v2v-claymation-SEED.latents.safetensors left behind.
    _frames(tmp_path / "clip", 9)
    args = ["v2v", "clip", "claymation", "--preset", preset, "--steps", "1", "--seed", "3"]
    line = _refused(tmp_path, args, 3, "--steps 1 x --strength 0.8 rounds down to 0", "--steps 2 or more")
    assert "--strength 1" in line
    assert not (tmp_path / "outputs").exists()
    # Any strength: 2 steps x 0.4 is none either; the nearest values that work are named.
    _refused(tmp_path, [*args[:5], "--steps", "2", "--strength", "0.4"], 3, "--steps 3 or more", "--strength 0.5")


def test_decode_refuses_a_latents_file_of_an_empty_run(tmp_path: Path) -> None:
    # The file such a run left (latents of shape [0, ...] and the run's config, as the failed
    # decode saved them); decoding it loaded the VAE and failed like the run, exit 1.
    import torch

    from vidgen.run import latents

    _frames(tmp_path / "clip", 9)
    shown = cli("v2v", "clip", "claymation", "--preset", "tiny-wan-v2v", "--steps", "2", "--dry-run", "--json")
    assert shown.exit_code == 0, shown.stderr
    config = json.loads(shown.stdout)["config"]
    config["sampling"]["num_inference_steps"] = 1
    meta = {"config": config, "seed": 3, "output": "outputs/v2v-claymation-3.mp4", "fps": 16, "why": "decode failed"}
    empty = latents.Captured(latents=torch.zeros(0, 16, 3, 2, 2))
    latents.save(tmp_path / "v2v-claymation-3.latents.safetensors", empty, meta)
    args = ["decode", "v2v-claymation-3.latents.safetensors"]
    _refused(tmp_path, args, 4, "holds empty latents", "[0, 16, 3, 2, 2]", "more --steps")


# -- 2. exit 0 where an error was due --------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "needles"),
    [
        # Empty: it used to mean "not set", so the run went on with the default guidance.
        ("sampling.guidance_scale=", ("gives no value", "--guidance")),
        ("sampling.guidance_scale=null", ("'null' is not a number", "--guidance")),
        # YAML read these as 1, 1.0 and 16, which --steps, --guidance and --seed refuse.
        ("sampling.num_inference_steps=true", ("'true' is not a whole number", "--steps")),
        ("sampling.guidance_scale=true", ("is not a number",)),
        ("sampling.seed=0x10", ("'0x10' is not a whole number", "--seed")),
        ("optimization.vae_tiling=maybe", ("'maybe' is not true or false", "--vae-tiling")),
        ("sampling.flow_shift=", ("gives no value", "--flow-shift")),  # a family's own option
        ("model.loras=", ("gives no value", "--lora")),
    ],
)
def test_every_set_value_is_validated_like_its_flag(tmp_path: Path, assignment: str, needles: tuple) -> None:
    _refused(tmp_path, ["t2v", "a fox", "--preset", "tiny-wan", "--set", assignment], 3, *needles)


def test_set_values_are_read_as_their_flags_read_them(tmp_path: Path) -> None:
    """Not vacuous: the same values typed after the flags are taken, with the same types."""
    args = ["--set", "sampling.guidance_scale=4", "--set", "inputs.negative_prompt=123", "--dry-run", "--json"]
    args += ["--set", "optimization.vae_tiling=on", "--set", "sampling.num_inference_steps=3"]
    result = cli(*TINY, *args)
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert config["sampling"]["guidance_scale"] == 4.0 and config["sampling"]["num_inference_steps"] == 3
    assert config["inputs"]["negative_prompt"] == "123" and config["optimization"]["vae_tiling"] is True


@pytest.mark.parametrize("out", ["x.txt", "clip.avi", "notes.v1"])
def test_an_out_extension_vidgen_does_not_write_is_refused(tmp_path: Path, out: str) -> None:
    # --out x.txt wrote an mp4 stream into x.txt, exit 0.
    _refused(tmp_path, [*TINY, "--out", out], 3, f"--out {out}", "mp4, webm, gif, webp, png")
    _refused(tmp_path, [*TINY, "--out", out, "--format", "png"], 3, f"--out {out}")


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_a_vace_mask_longer_than_the_control_frames_is_refused(tmp_path: Path, kind: str) -> None:
    # The mask was read only up to --max-frames (the preset's 9), so 17 frames looked like 9.
    _frames(tmp_path / "poses", 9)
    mask = _video(tmp_path / "mask.mp4", 17) if kind == "video" else _frames(tmp_path / "mask", 17, value=255)
    args = ["control", "a dancer", "--preset", "tiny-wan-vace", "--control", "poses/", "--mask", mask.name]
    _refused(tmp_path, args, 4, f"--mask {mask.name} gives more than 9 frame(s)", "--control poses/ 9")
    # Not vacuous: a mask of the control's length passes the reading (checked with --dry-run).
    same = _video(tmp_path / "same.mp4", 9) if kind == "video" else _frames(tmp_path / "same", 9, value=255)
    shown = cli(*args[:-1], same.name, "--dry-run")
    assert shown.exit_code == 0, shown.stderr
    assert f"# mask: {same.name} -> 9 frames 16x16" in shown.stdout


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"config": "x", "model": 5}, "config is text, not a mapping"),
        ({"vidgen_version": ["0.1"]}, "vidgen_version is a list, not text"),
        ({"seed": True}, "seed is true/false, not a whole number"),
        ({"config": {"sampling": {"width": "x"}}}, "config.sampling.width is text, not a whole number"),
        ({"timings": {"load": {}}}, "timings.load is a mapping"),
    ],
)
def test_inspect_of_a_sidecar_with_fields_of_the_wrong_type_is_an_input_error(
    tmp_path: Path, fields: dict, needle: str
) -> None:
    # It printed nothing (or half a page of "None") and exited 0.
    (tmp_path / "odd.json").write_text(json.dumps({"vidgen_version": "0.1.0", "created_at": "now", **fields}))
    result = cli("inspect", "odd.json")
    one_line_error(result, 4, "odd.json: " + needle)
    assert result.stdout == ""
    one_line_error(cli("replay", "odd.json"), 4, needle)


def test_batch_report_that_is_a_folder_is_refused_before_the_first_job(tmp_path: Path) -> None:
    # Every job ran, then writing the report failed with exit 7.
    _jobs(tmp_path / "m.jsonl", {"prompt": "a cat"}, {"prompt": "a dog"})
    (tmp_path / "DIR").mkdir()
    _refused(tmp_path, ["batch", "m.jsonl", "--out", "runs/", "--report", "DIR"], 7, "--report DIR is a folder")
    assert not (tmp_path / "runs").exists()


# -- 7. smaller ----------------------------------------------------------------------------


def test_a_job_id_longer_than_the_file_system_allows_is_invalid_up_front(tmp_path: Path) -> None:
    # It failed mid-run with exit 7 ("File name too long") after the jobs before it had run.
    _jobs(tmp_path / "m.jsonl", {"prompt": "a cat", "id": "short"}, {"prompt": "a dog", "id": "x" * 240})
    result = cli("batch", "m.jsonl", "--out", "runs")
    one_line_error(result, 3, "1 of 2 jobs are invalid")
    assert "job 2 (line 2): the output name xxxx" in result.stderr
    assert "Use a shorter --out name or job id" in result.stderr
    assert not (tmp_path / "runs").exists()
    # A single run's --out too, before anything is written.
    _refused(tmp_path, [*TINY, "--out", "z" * 252 + ".mp4"], 3, "is 256 bytes")


@pytest.mark.parametrize("given", ["a,b", "1.0,x"])
def test_mag_ratios_that_are_not_numbers_say_so(tmp_path: Path, given: str) -> None:
    # It said "cannot read --mag-ratios file a,b" (exit 4).
    args = ["t2v", "a fox", "--preset", "tiny-wan", "--cache", "magcache", "--mag-ratios", given]
    line = _refused(tmp_path, args, 3, f"--mag-ratios {given} is not a list of numbers")
    assert "cannot read" not in line


def test_a_ray_batch_that_loses_a_node_ends_in_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mock, said so: losing a node agent takes a Ray cluster of several nodes, which this 2-core
    machine cannot hold (test_ray_batch.py kills a worker on a real local Ray). Here the real
    Ray error a lost node raises (ActorDiedError with Ray's own context) comes out of the
    scheduler after one job is done, where it ended the batch with "internal error
    (ActorDiedError)", exit 1."""
    ray = pytest.importorskip("ray")
    from ray.core.generated.common_pb2 import ActorDiedErrorContext

    from vidgen.batch import jobs as core
    from vidgen.batch import ray as raybatch

    class LosingSchedule:
        def __init__(self, *args: object) -> None:
            self.rows: dict = {}
            self.pending: dict = {}
            self.actors = {0: (None, 4242, None), 1: (None, 4343, None)}

        def skip_done(self, runnable: list) -> None:
            self.runnable = runnable

        def run(self) -> None:
            first = self.runnable[0]
            self.rows[first.index] = core.report_row(first, "done", outputs=["runs/a.mp4"])
            context = ActorDiedErrorContext(
                class_name="Worker",
                pid=4343,
                node_ip_address="10.0.0.7",
                error_message="The actor died because its node has died. Node Id: 3f1c9a7b5e2d44",
                actor_id=b"\x01" * 16,
            )
            raise ray.exceptions.ActorDiedError(context)

        def abandon(self) -> None:
            pass

    monkeypatch.setattr(raybatch, "_connect", lambda *args: False)
    monkeypatch.setattr(raybatch, "_Schedule", LosingSchedule)
    _jobs(tmp_path / "m.jsonl", *({"prompt": f"scene {n}"} for n in range(3)))
    result = cli("batch", "m.jsonl", "--out", "runs", "--ray", "local", "--report", "r.jsonl")
    line = one_line_error(result, 8, "Ray lost worker 1 (pid 4343) on node 10.0.0.7", "its node has died")
    assert "1 of 3 jobs are done and 2 did not run: rerun the same command to resume" in line
    rows = [json.loads(text) for text in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["done", "not run", "not run"]
    # With --json the batch's own object carries the error; stdout holds that one object.
    again = cli("batch", "m.jsonl", "--out", "runs", "--ray", "local", "--json")
    assert again.exit_code == 8
    body = json.loads(again.stdout)
    assert body["exit_code"] == 8 and "rerun the same command to resume" in body["error"]
