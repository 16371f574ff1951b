"""ConsisID: a face photo to video. The tiny model equals plain diffusers from its sidecar, given
the face embeddings its stand-in encoder makes; another seed, prompt and face differ. Wrong runs
are refused before loading with one line, nothing written: frame and size rules, the face
preprocessing's packages, pickles and files for a real model.

diffusers' face preprocessing cannot run here: its packages (insightface, facexlib,
consisid_eva_clip, a torchvision for this torch) cannot be installed, and its weights (antelopev2,
RetinaFace, BiSeNet, EVA02-CLIP) cannot be had offline. So the real path's glue (which models are
made from which folder, what goes in, what the pipeline gets, "no face found") runs on a stand-in
for diffusers' consisid_utils whose signatures are checked against diffusers' source."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, decode, files_under, one_line_error, plain_diffusers, sidecar

from vidgen.families import consisid

DEFAULT_TIER = "pipeline"
RUN = ("--preset", "tiny-consisid", "--seed", "5", "--format", "png")


def _face(name: str = "face.png", seed: int = 0) -> str:
    from PIL import Image

    # At the run's size, so the pipeline gets the file's own pixels; noise so the VAE sees detail.
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(name)
    return name


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def _run(*args: str) -> tuple[np.ndarray, dict, Path]:
    result = cli("i2v", _face(), "a red fox in snow", *RUN, *args, "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    return _frames(folder), sidecar(folder.with_name(folder.name + ".json")), folder


def _media(data: dict, image: str = "face.png", embeddings_of: str | None = None) -> dict:
    """What the pipeline got: the photo and the stand-in encoder's embeddings (of `embeddings_of`,
    if another photo's), with the tiny transformer's config as saved beside the model."""
    from PIL import Image

    config = json.loads((Path(data["model"]["path"]) / "transformer" / "config.json").read_text())
    encoder = consisid.StandInFaces(types.SimpleNamespace(**config))
    id_cond, hidden = encoder.encode(Image.open(embeddings_of or image).convert("RGB"))
    return {"image": Image.open(image).convert("RGB"), "id_cond": id_cond, "id_vit_hidden": hidden}


def _differs(ours: np.ndarray, data: dict, media: dict) -> None:
    theirs = plain_diffusers(data, media).frames
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() > 1


def test_a_face_equals_plain_diffusers_and_another_face_differs(tmp_path: Path) -> None:
    ours, data, _ = _run()
    pipeline = data["pipeline"]
    assert pipeline["class"] == "ConsisIDPipeline" and pipeline["media_kwargs"] == {"image": "inputs.image"}
    assert "StandInFaces" in pipeline["run"]
    # Another seed, prompt and guidance differ (assert_reproduces); so do another face (its photo
    # and embeddings), and the other face's embeddings alone: the face branch answers.
    assert_reproduces(ours, data, _media(data))
    _face("other.png", seed=1)
    _differs(ours, data, _media(data, "other.png"))
    _differs(ours, data, _media(data, embeddings_of="other.png"))


def test_replay_makes_the_same_video_from_the_face(tmp_path: Path) -> None:
    ours, _, folder = _run()
    replayed = cli("replay", str(folder.with_name(folder.name + ".json")), "--out", "again/", "--allow-inputs")
    assert replayed.exit_code == 0, replayed.stderr
    assert np.array_equal(_frames(Path(replayed.stdout.strip())), ours)


def test_saved_latents_decode_to_the_same_video(tmp_path: Path) -> None:
    result = cli("i2v", _face(), "a red fox", *RUN[:4], "--save-latents", "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    decoded = cli("decode", "a.latents.safetensors", "--out", "b.mp4")
    assert decoded.exit_code == 0, decoded.stderr
    assert np.array_equal(decode(Path("a.mp4"))[0], decode(Path("b.mp4"))[0])


@pytest.mark.parametrize("option", [["--vae-tiling"], ["--fp8-storage"]])
def test_declared_options_run_on_the_tiny_model(option: list[str], tmp_path: Path) -> None:
    result = cli("i2v", _face(), "a red fox", *RUN[:4], *option, "--out", "a.mp4")
    assert result.exit_code == 0, result.stderr
    assert decode(Path("a.mp4"))[0].shape[:3] == (9, 16, 16)
    assert sidecar(Path("a.json"))["optimizations"]["applied"]


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["--frames", "10"], 3, ["--frames 10", "4k+1", "9 or 13"]),
        (["--width", "24"], 3, ["--width 24", "multiples of 16"]),
        (["--cache", "first-block"], 3, ["--cache", "CacheMixin"]),
        (["--text-encoder", "t5.gguf"], 3, ["--text-encoder"]),
    ],
)
def test_wrong_runs_are_refused_before_loading(
    args: list[str], code: int, needles: list[str], nothing_loads: None, tmp_path: Path
) -> None:
    one_line_error(cli("i2v", _face(), "a man", "--preset", "tiny-consisid", *args), code, *needles)
    assert files_under(tmp_path) == [tmp_path / "face.png"]


def test_a_size_off_the_learned_positions_is_refused_before_loading(nothing_loads: None, tmp_path: Path) -> None:
    from vidgen.models import tiny

    tiny.ensure("consisid")  # built: its configs are on disk, read before loading
    one_line_error(cli("i2v", _face(), "a man", *RUN, "--width", "32"), 3, "only makes 16x16", "--width 16")
    full = cli("i2v", _face(), "a man", "--preset", "consisid", "--width", "1280", "--height", "720")
    one_line_error(full, 3, "BestWishYsh/ConsisID-preview only makes 720x480", "--width 720 --height 480")
    assert files_under(tmp_path) == [tmp_path / "face.png"]


def test_wrong_mode_refused(nothing_loads: None, tmp_path: Path) -> None:
    one_line_error(cli("t2v", "a man", "--preset", "tiny-consisid"), 3, "not `vidgen t2v`")


def test_the_full_preset_plans_offline(nothing_loads: None, tmp_path: Path) -> None:
    result = cli("i2v", _face(), "a man", "--preset", "consisid", "--dry-run", "--memory", "auto", "--vram", "24")
    assert result.exit_code == 0, result.stderr
    assert "ConsisIDPipeline" in result.stdout and "--vram 24" in result.stdout


@pytest.mark.skipif(not consisid._missing_packages(), reason="the face preprocessing's packages are installed here")
def test_a_real_model_without_the_face_packages_is_refused_before_loading(nothing_loads: None, tmp_path: Path) -> None:
    message = one_line_error(cli("i2v", _face(), "a man", "--preset", "consisid"), 3, "pip install", "tiny-consisid")
    assert all(package in message for package in consisid._missing_packages())
    assert files_under(tmp_path) == [tmp_path / "face.png"]


def _packages_present(monkeypatch: pytest.MonkeyPatch) -> None:
    # insightface, facexlib and consisid_eva_clip cannot be installed here (the last two pull a
    # CUDA torch), so the checks after the package check are reached by saying none is missing.
    monkeypatch.setattr(consisid, "_missing_packages", lambda: [])


def test_a_real_model_needs_allow_pickle_for_its_face_models(
    monkeypatch: pytest.MonkeyPatch, nothing_loads: None, tmp_path: Path
) -> None:
    _packages_present(monkeypatch)
    one_line_error(cli("i2v", _face(), "a man", "--preset", "consisid"), 5, "face_encoder", "--allow-pickle")
    assert files_under(tmp_path) == [tmp_path / "face.png"]


def test_a_model_folder_without_face_models_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vidgen.models import tiny

    shutil.copytree(tiny.ensure("consisid"), tmp_path / "model")
    _packages_present(monkeypatch)
    result = cli("i2v", _face(), "a man", *RUN[:4], "--model", "model", "--allow-pickle", "--out", "a.mp4")
    needles = ("model has no face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt", "4 more", "face_encoder folder")
    one_line_error(result, 5, *needles)
    assert not Path("a.mp4").exists() and not Path("a.json").exists()


@pytest.mark.unit
def test_no_face_found_is_one_input_error() -> None:
    """Where detection runs and finds no face, diffusers' consisid_utils raises RuntimeError
    with NO_FACE (checked against its source here, which cannot be imported without its
    packages); vidgen says it in one line."""
    import importlib.util

    from vidgen.core.errors import InputError

    source = Path(importlib.util.find_spec("diffusers").origin).parent / "pipelines" / "consisid" / "consisid_utils.py"
    assert f'raise RuntimeError("{consisid.NO_FACE}")' in source.read_text()
    with pytest.raises(InputError, match="no face found in the image") as raised:
        consisid.refuse_no_face(RuntimeError(consisid.NO_FACE))
    assert "\n" not in str(raised.value)
    consisid.refuse_no_face(RuntimeError("CUDA error"))  # anything else is not a face error


@pytest.mark.unit
def test_the_face_files_are_the_ones_diffusers_reads() -> None:
    import importlib.util

    source = Path(importlib.util.find_spec("diffusers").origin).parent / "pipelines" / "consisid" / "consisid_utils.py"
    text = source.read_text()
    assert "EVA02_CLIP_L_336_psz14_s6B.pt" in text and "models/antelopev2/glintr100.onnx" in text
    assert '"retinaface_resnet50"' in text and 'model_name="bisenet"' in text
    assert set(consisid.FACE_PACKAGES) >= {"insightface", "facexlib", "consisid_eva_clip", "cv2", "torchvision"}


# -- the real face path's glue, on a stand-in for diffusers' consisid_utils ------------------------


def _utils_signatures() -> dict[str, list[str]]:
    """The parameter names of diffusers' two face functions, read from its source: the module
    cannot be imported here (it imports insightface, facexlib and consisid_eva_clip at the top)."""
    import ast
    import importlib.util

    source = Path(importlib.util.find_spec("diffusers").origin).parent / "pipelines" / "consisid" / "consisid_utils.py"
    tree = ast.parse(source.read_text())
    wanted = ("prepare_face_models", "process_face_embeddings_infer")
    return {node.name: [a.arg for a in node.args.args] for node in tree.body if getattr(node, "name", "") in wanted}


def _stand_in_utils(calls: list) -> types.ModuleType:
    """consisid_utils' two functions with diffusers' signatures: the models are placeholders, and
    a face is "found" unless the photo is plain white (facexlib's own failure then)."""
    import torch
    from PIL import Image

    def prepare_face_models(model_path, device, dtype):
        calls.append(("prepare", model_path, str(device), dtype))
        return ("helper_1", "helper_2", "clip", "main", (0.5,) * 3, (0.5,) * 3)

    def process_face_embeddings_infer(
        face_helper_1, clip_vision_model, face_helper_2, eva_transform_mean, eva_transform_std,
        app, device, weight_dtype, img_file_path, is_align_face=True,
    ):  # fmt: skip
        calls.append(("process", face_helper_1, clip_vision_model, face_helper_2, app, is_align_face))
        if (img_file_path == 255).all():
            raise RuntimeError("facexlib align face fail")
        level = float(img_file_path.mean()) / 255
        id_cond = torch.full((1, 8), level, dtype=weight_dtype)
        hidden = [torch.linspace(-level, level, 32, dtype=weight_dtype).reshape(1, 4, 8)]
        return id_cond, hidden, Image.new("RGB", (12, 12), (255, 255, 255)), None

    module = types.ModuleType("diffusers.pipelines.consisid.consisid_utils")
    module.prepare_face_models = prepare_face_models
    module.process_face_embeddings_infer = process_face_embeddings_infer
    return module


def _real_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, calls: list) -> str:
    """A real-model run on the tiny weights: a model folder with (empty) face model files, the
    face packages taken as installed and consisid_utils replaced by the stand-in above, because
    neither the packages nor the face weights can be had here."""
    import sys

    import diffusers.pipelines.consisid as package

    from vidgen.models import tiny

    shutil.copytree(tiny.ensure("consisid"), tmp_path / "model")
    for name in consisid.FACE_FILES:
        (tmp_path / "model" / "face_encoder" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model" / "face_encoder" / name).write_bytes(b"")
    _packages_present(monkeypatch)
    fake = _stand_in_utils(calls)
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(package, "consisid_utils", fake, raising=False)
    return str(tmp_path / "model")


def test_the_stand_in_has_diffusers_signatures() -> None:
    calls: list = []
    fake = _stand_in_utils(calls)
    import inspect

    for name, params in _utils_signatures().items():
        assert list(inspect.signature(getattr(fake, name)).parameters) == params


def test_a_real_models_faces_go_through_diffusers_functions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch
    from PIL import Image

    calls: list = []
    model = _real_folder(monkeypatch, tmp_path, calls)
    result = cli("i2v", _face(), "a red fox", *RUN, "--model", model, "--allow-pickle", "--out", "frames/")
    assert result.exit_code == 0, result.stderr
    folder = Path(result.stdout.strip())
    data = sidecar(folder.with_name(folder.name + ".json"))
    assert "process_face_embeddings_infer(is_align_face=True)" in data["pipeline"]["run"]
    # The models were made once from the model's folder, and the photo went through them.
    assert calls[0] == ("prepare", model, "cpu", torch.float32)
    assert calls[1] == ("process", "helper_1", "clip", "helper_2", "main", True)
    # The pipeline got the aligned face (the stand-in's white square) instead of the photo.
    level = float(np.asarray(Image.open("face.png").convert("RGB")).mean()) / 255
    media = {
        "image": Image.new("RGB", (12, 12), (255, 255, 255)),
        "id_cond": torch.full((1, 8), level),
        "id_vit_hidden": [torch.linspace(-level, level, 32).reshape(1, 4, 8)],
    }
    assert_reproduces(_frames(folder), data, media)


def test_a_photo_without_a_face_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nothing_loads: None
) -> None:
    from PIL import Image

    model = _real_folder(monkeypatch, tmp_path, [])
    Image.new("RGB", (16, 16), (255, 255, 255)).save("wall.png")
    result = cli("i2v", "wall.png", "a man", *RUN[:4], "--model", model, "--allow-pickle", "--out", "a.mp4")
    one_line_error(result, 4, "no face found in the image")
    assert not Path("a.mp4").exists() and not Path("a.json").exists()
