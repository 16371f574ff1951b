"""SANA-WM: a camera path from a named move, the model card's keys or a file (JSON, NPZ), each
equal to plain diffusers from the sidecar, where another seed, prompt and camera path differ;
wrong cameras and camera files refused before loading with one line, nothing written; the full
preset plans offline; replay, inspect and a batch job's identity follow the camera file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, plain_diffusers, sidecar

DEFAULT_TIER = "pipeline"
RUN = ("--preset", "tiny-sana-wm", "--seed", "5", "--format", "png")


def _image(size: tuple[int, int] = (64, 32)) -> str:
    from PIL import Image

    # At the run's size, so the pipeline gets the file's own pixels; noise so the VAE sees detail.
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save("first.png")
    return "first.png"


def _path(keys: str = "w-4,l-4") -> np.ndarray:
    from diffusers.pipelines.sana_wm.cam_utils import action_string_to_c2w

    return action_string_to_c2w(keys)


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _run(*args: str) -> tuple[np.ndarray, dict, Path]:
    result = cli("i2v", _image(), "a red car on a desert road", *RUN, *args, "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _frames(folder), sidecar(folder.with_name(folder.name + ".json")), folder


def _first() -> dict:
    from PIL import Image

    return {"image": Image.open("first.png").convert("RGB")}


def _differs(ours: np.ndarray, data: dict, media: dict, **call: object) -> None:
    other = json.loads(json.dumps(data))
    other["pipeline"]["call_kwargs"].update(call)
    theirs = plain_diffusers(other, media).frames
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() > 1, call


@pytest.mark.parametrize(("camera", "keys"), [("orbit-left", "al-8"), ("w-4,jw-4", "w-4,jw-4")])
def test_a_move_equals_plain_diffusers_and_another_move_differs(camera: str, keys: str, tmp_path: Path) -> None:
    ours, data, _ = _run("--camera", camera)
    call = data["pipeline"]["call_kwargs"]
    assert call["action"] == keys and call["intrinsics"] == [41.6, 41.6, 32.0, 16.0]
    assert data["pipeline"]["media_kwargs"] == {"image": "inputs.image"}
    # Another seed and another prompt differ (assert_reproduces), and so do another camera path
    # and other intrinsics: the tiny model answers to its camera branch.
    assert_reproduces(ours, data, _first())
    _differs(ours, data, _first(), action="dj-8")
    _differs(ours, data, _first(), intrinsics=[20.0, 20.0, 32.0, 16.0])


@pytest.mark.parametrize("form", ["json", "npz"])
def test_a_camera_file_equals_plain_diffusers_with_its_poses(form: str, tmp_path: Path) -> None:
    c2w = _path()
    k = np.array([[30.0, 0, 30], [0, 30, 15], [0, 0, 1]])
    if form == "json":
        Path("path.json").write_text(json.dumps({"c2w": c2w.tolist(), "intrinsics": [30, 30, 30, 15]}))
    else:
        np.savez("path.npz", c2w=c2w, intrinsics=np.tile(k, (len(c2w), 1, 1)))
    ours, data, _ = _run("--camera-path", f"path.{form}")
    record = data["inputs"]["camera_path"]
    assert (record["poses"], record["poses_used"], record["intrinsics"]) == (9, 9, "from the file")
    assert data["pipeline"]["media_kwargs"] == {
        "image": "inputs.image",
        "c2w": "inputs.camera_path",
        "intrinsics": "inputs.camera_path",
    }
    assert "action" not in data["pipeline"]["call_kwargs"]
    media = {**_first(), "c2w": c2w[:9], "intrinsics": [30.0, 30.0, 30.0, 15.0]}
    assert_reproduces(ours, data, media)
    _differs(ours, data, {**media, "c2w": _path("s-4,j-4")})


def test_a_file_without_intrinsics_gets_the_default_and_says_so(tmp_path: Path) -> None:
    Path("path.json").write_text(json.dumps({"c2w": _path("w-12").tolist()}))
    ours, data, _ = _run("--camera-path", "path.json")
    assert data["inputs"]["camera_path"]["poses"] == 13 and data["inputs"]["camera_path"]["poses_used"] == 9
    # The preset's --camera dolly-in gives way to the file, and the sidecar says so.
    assert "[41.6, 41.6, 32.0, 16.0]" in data["pipeline"]["camera"]
    assert "--camera dolly-in not used" in data["pipeline"]["camera"]
    media = {**_first(), "c2w": _path("w-12")[:9], "intrinsics": [41.6, 41.6, 32.0, 16.0]}
    assert_reproduces(ours, data, media)


def test_typed_intrinsics_win_over_the_files(tmp_path: Path) -> None:
    Path("path.json").write_text(json.dumps({"c2w": _path().tolist(), "intrinsics": [30, 30, 30, 15]}))
    ours, data, _ = _run("--camera-path", "path.json", "--intrinsics", "50,50,32,16")
    assert data["pipeline"]["call_kwargs"]["intrinsics"] == [50.0, 50.0, 32.0, 16.0]
    assert "intrinsics" not in data["pipeline"]["media_kwargs"]
    assert data["inputs"]["camera_path"]["intrinsics"].startswith("from --intrinsics")
    assert_reproduces(ours, data, {**_first(), "c2w": _path()})


def test_replay_reads_the_camera_file_and_sees_it_change(tmp_path: Path) -> None:
    Path("path.json").write_text(json.dumps({"c2w": _path().tolist()}))
    ours, data, folder = _run("--camera-path", "path.json")
    replayed = cli("replay", str(folder.with_name(folder.name + ".json")), "--out", "again/", "--allow-inputs")
    assert replayed.exit_code == 0, replayed.stderr
    assert np.array_equal(_frames(Path(replayed.stdout.strip())), ours)
    shown = cli("inspect", str(folder.with_name(folder.name + ".json")))
    assert shown.exit_code == 0 and "camera_path" in shown.stdout and "path.json" in shown.stdout
    assert "poses 9, poses_used 9" in shown.stdout, shown.stdout
    # The same name with other poses is another path: replay says the file changed.
    Path("path.json").write_text(json.dumps({"c2w": _path("s-8").tolist()}))
    changed = cli("replay", str(folder.with_name(folder.name + ".json")), "--out", "third/", "--allow-inputs")
    assert "path.json" in changed.stderr and "changed" in changed.stderr, changed.stderr


@pytest.mark.unit
def test_a_batch_jobs_identity_follows_the_camera_files_content(tmp_path: Path) -> None:
    from vidgen import families
    from vidgen.batch.jobs import config_hash
    from vidgen.config import resolve
    from vidgen.config.layers import Layer

    Path("path.json").write_text(json.dumps({"c2w": np.eye(4)[None].repeat(9, 0).tolist()}))
    asked = Layer("job", {"inputs": {"prompt": "a car", "image": "first.png", "camera_path": "path.json"}})
    before = config_hash(resolve("i2v", ["tiny-sana-wm"], [asked], families.defaults_layer))
    Path("path.json").write_text(json.dumps({"c2w": np.eye(4)[None].repeat(10, 0).tolist()}))
    assert config_hash(resolve("i2v", ["tiny-sana-wm"], [asked], families.defaults_layer)) != before


def _write(name: str, content: object) -> str:
    if isinstance(content, bytes):
        Path(name).write_bytes(content)
    else:
        Path(name).write_text(json.dumps(content))
    return name


def _pickled_npz() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, c2w=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["--camera", "spin"], 3, ["--camera spin", "orbit-left"]),
        (["--camera", "w-3"], 3, ["--camera w-3", "4 poses", "--frames 9"]),
        (["--camera", "x-9"], 3, ["--camera x-9", "w a s d"]),
        (["--camera", "w-0,w-9"], 3, ["--camera w-0,w-9"]),
        (["--camera", "static", "--intrinsics", "1,2,3"], 3, ["--intrinsics 1,2,3", "41.6,41.6,32,16"]),
        (["--camera", "static", "--intrinsics", "0,40,32,16"], 3, ["--intrinsics 0,40,32,16", "positive"]),
        (["--camera", "static", "--frames", "10"], 3, ["--frames 10", "8k+1", "9 or 17"]),
        (["--camera", "static", "--width", "48"], 3, ["--width 48", "multiples of 32"]),
        (["--camera", "static", "--cache", "first-block"], 3, ["--cache", "CacheMixin"]),
        (["--camera", "static", "--attention-backend", "native"], 3, ["--attention-backend", "its own"]),
        (["--camera-path", "missing.json"], 4, ["--camera-path missing.json does not exist"]),
        (["--camera-path", "/dev/zero"], 4, ["/dev/zero", "not a regular file"]),
        (["--camera-path", "."], 4, ["is a folder", "one file"]),
        (["--camera-path", "https://example.com/p.json"], 4, ["is a URL", "local file"]),
        (["--camera-path", "file:///etc/hosts"], 4, ["is a URL", "local file"]),
    ],
)
def test_wrong_cameras_are_refused_before_loading(
    args: list[str], code: int, needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    _write("p.json", {"c2w": _path().tolist()})
    one_line_error(cli("i2v", _image(), "a car", "--preset", "tiny-sana-wm", *args), code, *needles)
    assert files_under(tmp_path) == sorted([tmp_path / "first.png", tmp_path / "p.json"])


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (b"\x89PNG\r\n", ["neither JSON nor NPZ"]),
        ([1, 2], ["JSON object"]),
        ({"poses": []}, ["no c2w"]),
        ({"c2w": [[1, 0], [0, 1]]}, ["F x 4 x 4", "(2, 2)"]),
        ({"c2w": "abc"}, ["4x4 matrices of numbers"]),
        ({"c2w": [np.eye(4).tolist()] * 5}, ["5 camera poses", "--frames 9", "longer path"]),
        ({"c2w": [np.eye(4).tolist()] * 8 + [(np.eye(4) * 2).tolist()]}, ["row 0 0 0 1"]),
        ({"c2w": [np.eye(4).tolist()] * 8 + [np.diag([2.0, 1, 1, 1]).tolist()]}, ["rotation"]),
        ({"c2w": [np.eye(4).tolist()] * 8 + [[[float("nan")] * 4] * 4]}, ["NaN"]),
        ({"c2w": [np.eye(4).tolist()] * 9, "intrinsics": [1, 2]}, ["intrinsics", "fx,fy,cx,cy"]),
        ({"c2w": [np.eye(4).tolist()] * 9, "intrinsics": [[40, 40, 32, 16]] * 3}, ["3 intrinsics rows"]),
        (_pickled_npz(), ["NPZ"]),
    ],
)
def test_malformed_camera_files_are_refused_before_loading(
    content: object, needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    name = _write("p.json", content)
    one_line_error(cli("i2v", _image(), "a car", "--preset", "tiny-sana-wm", "--camera-path", name), 4, *needles)
    assert files_under(tmp_path) == sorted([tmp_path / "first.png", tmp_path / "p.json"])


@pytest.mark.unit
def test_no_camera_at_all_is_refused(nothing_loads: None) -> None:
    from vidgen import families
    from vidgen.config import resolve
    from vidgen.config.layers import Layer
    from vidgen.core.errors import ConfigError

    asked = Layer("cli", {"inputs": {"prompt": "a car", "image": "x.png"}, "sampling": {"camera": None}})
    with pytest.raises(ConfigError, match="--camera MOVE .* or --camera-path FILE"):
        families.check(resolve("i2v", ["tiny-sana-wm"], [asked], families.defaults_layer).config)


def test_an_oversized_camera_file_is_refused_by_the_bytes_read(nothing_loads: None, tmp_path: Path) -> None:
    with open("big.json", "wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: 65 MiB of zeros, over the 64 MiB a camera file may have
    one_line_error(
        cli("i2v", _image(), "a car", "--preset", "tiny-sana-wm", "--camera-path", "big.json"), 4, "larger than 64 MiB"
    )


def test_wrong_mode_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("t2v", "a car", "--preset", "tiny-sana-wm"), 3, "not `vidgen t2v`")


def test_the_full_preset_plans_offline(nothing_loads: None, tmp_path: Path) -> None:
    result = cli(
        "i2v", _image(), "a car", "--preset", "sana-wm", "--camera", "orbit-left",
        "--dry-run", "--memory", "auto", "--vram", "24",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "SanaWMPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.parametrize("option", [["--vae-tiling"], ["--fp8-storage"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli("i2v", _image(), "a car", *RUN[:2], "--camera", "pan-left", *option, "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    assert decode(Path("a.mp4"))[0].shape[:3] == (9, 32, 64)
    assert sidecar(Path("a.json"))["optimizations"]["applied"]


@pytest.mark.unit
def test_a_data_kind_and_only_a_data_kind_has_a_parser() -> None:
    from vidgen.config.kinds import InputKind, register_input

    with pytest.raises(ValueError, match="parse function"):
        register_input(InputKind("track", "--track", "data", "A track."))
    with pytest.raises(ValueError, match="parse function"):
        register_input(InputKind("still", "--still", "image", "A still.", parse=lambda data, ref, cfg: ({}, {})))
