"""Config layering, presets and provenance, through the real resolver and shipped presets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

from vidgen import families
from vidgen.config import available_presets, resolve
from vidgen.config.layers import Layer, set_layer
from vidgen.core.errors import ConfigError


def _resolve(presets: list[str], *layers: Layer):
    return resolve("t2v", presets, list(layers), families.defaults_layer)


def test_precedence_schema_family_preset_cli() -> None:
    resolved = _resolve(
        ["tiny-cogvideox"],
        Layer("cli:--steps", {"sampling": {"num_inference_steps": 7}}),
        set_layer(["sampling.guidance_scale=2.5", "output.crf=20"]),
    )
    cfg, sources = resolved.config, resolved.sources
    assert (cfg.sampling.num_inference_steps, sources["sampling.num_inference_steps"]) == (7, "cli:--steps")
    assert (cfg.sampling.guidance_scale, sources["sampling.guidance_scale"]) == (2.5, "cli:--set")
    assert (cfg.sampling.num_frames, sources["sampling.num_frames"]) == (9, "preset:tiny-cogvideox")
    assert (cfg.output.fps, sources["output.fps"]) == (8, "family:cogvideox")
    assert (cfg.optimization.offload, sources["optimization.offload"]) == ("none", "default")
    assert isinstance(cfg.output.crf, int)  # --set values are parsed as YAML scalars


def test_extends_chain_and_stacked_presets(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("extends: tiny-cogvideox\nsampling:\n  num_inference_steps: 3\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nsampling:\n  guidance_scale: 1.5\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("optimization:\n  vae_slicing: true\n")
    resolved = _resolve([str(child), str(overlay)])
    assert [p["name"] for p in resolved.presets] == ["tiny-cogvideox", "base", "child", "overlay"]
    assert resolved.sources["sampling.num_inference_steps"] == "preset:base"
    assert resolved.sources["sampling.guidance_scale"] == "preset:child"
    assert resolved.sources["optimization.vae_slicing"] == "preset:overlay"
    assert resolved.config.sampling.height == 16


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        _resolve([str(tmp_path / "a.yaml")])


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  num_frames: [9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        _resolve([str(bad)])


def test_user_presets_shadow_shipped_ones(tmp_path: Path) -> None:
    folder = tmp_path / "user-presets"
    folder.mkdir()
    (folder / "tiny-cogvideox.yaml").write_text("description: mine\nmode: t2v\nmodel: {family: modelscope}\n")
    assert available_presets()["tiny-cogvideox"] == folder / "tiny-cogvideox.yaml"
    assert _resolve(["tiny-cogvideox"]).config.model.family == "modelscope"


@pytest.mark.parametrize("name", sorted(available_presets()))
def test_every_shipped_preset_validates_and_passes_its_family_rules(name: str) -> None:
    from vidgen.config.layers import merged_preset

    family = families.get(merged_preset(name)["model"]["family"])
    # A preset without a mode serves every mode of its family (Wan 2.2 TI2V-5B: t2v and i2v).
    modes = [merged_preset(name)["mode"]] if merged_preset(name).get("mode") else list(family.modes)
    for mode in modes:
        inputs = {"i2v": {"image": "x.png"}, "v2v": {"video": "x.mp4"}, "control": {"control": "x.mp4"}}.get(mode, {})
        # The family's own required inputs: files, or one keyframe (SparseCtrl).
        for field in family.modes[mode].requires:
            inputs[field] = [{"image": "x.png"}] if field == "conditions" else "x.mp4"
        if family.takes.text:
            inputs["prompt"] = "x"
        resolved = resolve(mode, [name], [Layer("cli:inputs", {"inputs": inputs})], families.defaults_layer)
        # The check itself is the assertion: it raises on any rule the preset breaks.
        assert families.check(resolved.config) is family
        assert resolved.config.model.id


def test_presets_list_and_show() -> None:
    listing = cli("presets", "list")
    assert listing.exit_code == 0
    for name in (
        "cogvideox-5b",
        "cogvideox-2b",
        "cogvideox1.5-5b",
        "modelscope-1.7b",
        "tiny-cogvideox",
        "tiny-modelscope",
    ):
        assert name in listing.stdout
    shown = cli("presets", "show", "cogvideox-5b")
    assert shown.exit_code == 0
    assert 'dtype: "bf16"' in shown.stdout and "# preset:cogvideox-5b" in shown.stdout
    assert "num_frames: 49" in shown.stdout and "# family:cogvideox" in shown.stdout
    assert cli("presets", "show", "nope").exit_code == 3


def test_models_lists_families_and_flags_deprecation() -> None:
    result = cli("models")
    assert result.exit_code == 0
    assert "CogVideoXPipeline" in result.stdout and "TextToVideoSDPipeline" in result.stdout
    block = result.stdout.split("modelscope:")[1]
    assert "deprecated in diffusers" in block
    assert "tiny-modelscope" in block


def test_an_overlay_preset_stacks_on_the_default_model(tmp_path: Path) -> None:
    overlay = tmp_path / "slow.yaml"
    overlay.write_text("sampling:\n  num_inference_steps: 80\n")
    result = cli("t2v", "x", "--preset", str(overlay), "--dry-run", "--json", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    import json

    body = json.loads(result.stdout)
    assert body["config"]["model"]["id"] == "THUDM/CogVideoX-5b"
    assert body["sources"]["sampling.num_inference_steps"] == "preset:slow"
    assert body["sources"]["model.id"] == "preset:cogvideox-5b"


@pytest.mark.unit
def test_a_family_set_for_a_mode_it_does_not_do_is_one_line_exit_3() -> None:
    from conftest import cli, one_line_error

    result = cli("t2v", "a fox", "--set", "model.family=svd", "--dry-run")
    one_line_error(result, 3, "Stable Video Diffusion does not do t2v; it does: i2v")
