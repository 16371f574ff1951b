"""The shape of the code: layers, the family interface, and what families may import.

These hold the structure DESIGN.md §1 and the interface issue describe, so it does not drift:
the import-linter contracts in pyproject.toml (layers, no circles), a config schema that does not
depend on what was imported first, a Family interface of a few parts, and family modules that
share through public names and parts rather than deep sibling chains.
"""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "unit"

ROOT = Path(__file__).resolve().parent.parent
FAMILY_FILES = sorted((ROOT / "vidgen" / "families").glob("*.py"))


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_nothing_outside_the_cli_imports_it() -> None:
    for path in (ROOT / "vidgen").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "vidgen").parts or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not any(name == "vidgen.cli" or name.startswith("vidgen.cli.") for name in names), path


def test_the_schema_is_the_same_whatever_is_imported_first() -> None:
    # A fresh interpreter that imports only the schema still knows every family's own options
    # and input kinds, and refuses unknown keys.
    code = (
        "from vidgen.config.schema import SamplingConfig, InputsConfig\n"
        "assert SamplingConfig.model_validate({'flow_shift': 3}).get('flow_shift') == 3\n"
        "assert InputsConfig.model_validate({'mask': 'm.png'}).mask == 'm.png'\n"
        "try:\n    SamplingConfig.model_validate({'flow_shiftt': 3})\nexcept Exception:\n    pass\n"
        "else:\n    raise SystemExit('an unknown key was accepted')\n"
        "import sys\nassert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _family_classes() -> list[type]:
    from vidgen import families

    return [type(family) for family in families.FAMILIES.values()]


def _own_members(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("__")}


def test_the_family_interface_is_a_few_parts() -> None:
    from vidgen.families.base import Family

    # Declared members (annotated only, like `name`, or with a default) and methods.
    members = (_own_members(Family) | set(Family.__annotations__)) - {"_abc_impl"}
    # 29 after the reshape (83 before); a feature a family shapes adds one typed part, not hooks
    # (--enhance-prompt: `enhancing`, --live-preview: `previewing`).
    assert len(members) <= 32, sorted(members)
    # Hooks (methods of Family and of its parts) that only one family overrides: each is kept
    # only where data cannot say it, with a comment why (Loading.assemble and .repair count).
    hooks = [name for name in members if inspect.isfunction(vars(Family).get(name))]
    # Every class (family or shared base) that defines a hook itself, whatever registers it.
    defined = {klass for cls in _family_classes() for klass in cls.__mro__ if klass is not Family}
    single = [hook for hook in hooks if len([k for k in defined if hook in vars(k)]) == 1]
    # The loading hooks held as data count too.
    from vidgen import families

    for part in ("assemble", "repair", "prepare"):
        users = {getattr(f.loading, part) for f in families.FAMILIES.values()} - {None}
        single += [f"loading.{part}"] if len(users) == 1 else []
    # And the parts' methods a family overrides by subclassing a part beside itself.
    from vidgen.families.base import Memory, Postprocess

    for base in (Memory, Postprocess):
        parts = {type(p) for f in families.FAMILIES.values() for p in (f.memory, f.postprocess) if isinstance(p, base)}
        for name, value in vars(base).items():
            if inspect.isfunction(value) and not name.startswith("_") and base is Memory:
                owners = [p for p in parts if p is not base and name in vars(p)]
                single += [f"memory.{name}"] if len(owners) == 1 else []
        if base is Postprocess and len(parts - {Postprocess}) == 1:
            single.append("postprocess")
    assert len(single) <= 5, single


def test_no_family_overrides_defaults_or_hand_codes_frame_rules() -> None:
    for cls in _family_classes():
        for klass in cls.__mro__:
            if klass.__module__.startswith("vidgen.families.") and klass.__name__ != "Family":
                assert "defaults" not in vars(klass), f"{klass.__name__} overrides defaults(); declare data"
                for old in ("usable_frames", "frame_rule", "min_frames"):
                    assert old not in vars(klass), f"{klass.__name__}.{old}: use Grid"


def test_sibling_chains_are_at_most_two_deep() -> None:
    from vidgen.families.base import Family

    for cls in _family_classes():
        depth = cls.__mro__.index(Family)
        assert depth <= 2, [k.__name__ for k in cls.__mro__[: depth + 1]]


def test_families_import_no_private_name_of_another_family() -> None:
    for path in FAMILY_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vidgen.families."):
                module = node.module.rsplit(".", 1)[1]
                if module in ("base", "tiny_parts", path.stem):
                    continue
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_input_and_output_kinds_are_declared_once() -> None:
    from typer.testing import CliRunner

    from vidgen.cli import app
    from vidgen.cli.inspect import _written_beside
    from vidgen.config.flags import flag
    from vidgen.config.kinds import BUILTIN, INPUT_KINDS, OUTPUT_KINDS
    from vidgen.config.schema import KIND_FIELDS, InputsConfig, OutputConfig
    from vidgen.io.trust import input_refs

    # Every declared kind is a config field with its flag; input kinds are what the trust
    # boundary reads, output switches are options of the generation commands.
    # (Kinds a family module declares are validated as extra fields: schema.KIND_FIELDS.)
    assert {kind.field for kind in BUILTIN} <= set(InputsConfig.model_fields)
    assert all(KIND_FIELDS.get(name) is not None for name in INPUT_KINDS)
    assert [name for name, _ in input_refs({name: "x.png" for name in INPUT_KINDS})] == list(INPUT_KINDS)
    switches = [kind for kind in OUTPUT_KINDS.values() if kind.switch]
    assert {kind.switch for kind in switches} <= set(OutputConfig.model_fields)
    help_text = CliRunner().invoke(app, ["t2v", "--help"]).stdout
    for kind in switches:
        assert flag(f"output.{kind.switch}") == kind.flag
        if kind.name != "control":  # --save-control is vidgen control's
            assert kind.flag in help_text
    # inspect shows what the sidecar records of each, by the kinds' record keys.
    rows = dict(_written_beside({"latents": {"path": "a.latents.safetensors"}, "preview": "a.preview.png"}))
    assert rows == {"latents": "a.latents.safetensors", "preview": "a.preview.png"}
    assert OUTPUT_KINDS["latents"].path(Path("out/a.mp4")) == Path("out/a.latents.safetensors")
    assert OUTPUT_KINDS["control"].path(Path("out/frames")) == Path("out/frames-control")
