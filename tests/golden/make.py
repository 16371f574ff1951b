"""The behaviour golden file: every preset's resolved config (from `--dry-run --json`, in every
mode its family runs) and, for tiny presets, the sidecar's `pipeline` section of a real run.

    python tests/golden/make.py            # write tests/golden/presets.json
    python tests/golden/make.py --check    # compare against it; prints the differences
    python tests/golden/make.py --check --families=wan,wan2.2   # only those families' presets

Written before a behaviour-preserving refactor and checked after it: any difference is either a
bug or a change the CHANGELOG names.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
# --families a,b: check only presets of those families (while a refactor has the rest apart).
ONLY = next((arg.split("=", 1)[1].split(",") for arg in sys.argv if arg.startswith("--families=")), None)
GOLDEN = HERE / "presets.json"


def _inputs(mode: str, preset: str, size: tuple[int, int], work: Path, frames: int = 17) -> list[str]:
    import numpy as np
    from PIL import Image

    if mode == "i2v":
        Image.new("RGB", size, (200, 80, 40)).save(work / "first.png")
        args = [str(work / "first.png")]
        if "flf2v" in preset:
            Image.new("RGB", size, (30, 90, 220)).save(work / "last.png")
            args += ["--last-image", str(work / "last.png")]
        return args
    if mode in ("v2v", "control"):
        clip = work / "clip"
        clip.mkdir(exist_ok=True)
        for old in clip.glob("*.png"):  # a longer clip made for another family
            old.unlink()
        rng = np.random.default_rng(0)
        for i in range(frames):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(clip / f"{i:03d}.png")
        return [str(clip)] if mode == "v2v" else ["--control", str(clip)]
    return []


def collect() -> dict:
    from typer.testing import CliRunner

    from vidgen import families
    from vidgen.cli import app
    from vidgen.config import available_presets
    from vidgen.config.layers import merged_preset

    runner = CliRunner()
    work = Path(tempfile.mkdtemp(prefix="vidgen-golden-"))
    os.chdir(work)
    out: dict = {}
    for name, path in sorted(available_presets().items()):
        data = merged_preset(str(path))
        if ONLY and data["model"]["family"] not in ONLY:
            continue
        family = families.get(data["model"]["family"])
        modes = [data["mode"]] if data.get("mode") else sorted(family.modes)
        tiny = str((data.get("model") or {}).get("id", "")).startswith("tiny:")
        for mode in modes:
            prompt = ["a red fox in snow"] if family.takes.text else []
            key = f"{name}/{mode}"
            # 17 frames, or the shortest clip the family takes (Helios: 33).
            clip = max(17, family.grid.min_frames)
            base = [mode, *_dry_inputs(mode, clip), *prompt, "--preset", name, "--seed", "5", "--dry-run", "--json"]
            dry = runner.invoke(app, base)
            entry: dict = {"dry_run_exit": dry.exit_code}
            if dry.exit_code == 0:
                shown = json.loads(dry.stdout)
                entry["config"] = _normalised(shown.pop("config"), work)
                entry["sources"] = _normalised(shown.pop("sources"), work)
                entry["dry_run"] = _normalised(shown, work)
                # The memory planner's choice on a 12 GB card.
                planned = runner.invoke(app, [*base, "--memory", "auto", "--vram", "12"])
                entry["plan_12gb"] = (
                    _normalised(json.loads(planned.stdout).get("memory"), work)
                    if planned.exit_code == 0
                    else planned.stderr.strip().splitlines()[-1:]
                )
            else:
                entry["dry_run_error"] = dry.stderr.strip().splitlines()[-1:]
            if tiny:
                cfg = entry.get("config") or {}
                size = ((cfg.get("sampling") or {}).get("width") or 64, (cfg.get("sampling") or {}).get("height") or 64)
                args = _inputs(mode, name, size, work, clip)
                run = runner.invoke(
                    app,
                    [
                        mode,
                        *args,
                        *prompt,
                        "--preset",
                        name,
                        "--seed",
                        "5",
                        "--format",
                        "png",
                        "--out",
                        str(work / f"{name}-{mode}/"),
                        "--overwrite",
                    ],
                )
                entry["run_exit"] = run.exit_code
                if run.exit_code == 0:
                    folder = Path(run.stdout.strip())
                    side = json.loads(folder.with_name(folder.name + ".json").read_text())
                    entry["pipeline"] = _normalised(side["pipeline"], work)
                    entry["run_config"] = _normalised(side["config"], work)
                    entry["run_model"] = _normalised(side["model"], work)
                    entry["run_optimizations"] = _normalised(side["optimizations"], work)
                else:
                    entry["run_error"] = run.stderr.strip().splitlines()[-1:]
            out[key] = entry
            print(key, entry.get("dry_run_exit"), entry.get("run_exit", "-"), file=sys.stderr)
    return out


def _dry_inputs(mode: str, frames: int = 17) -> list[str]:
    # A dry run checks that inputs exist; these are made once by _inputs in the work folder.
    work = Path.cwd()
    _inputs(mode, "", (64, 64), work, frames) if mode != "t2v" else None
    return {
        "i2v": [str(work / "first.png")],
        "v2v": [str(work / "clip")],
        "control": ["--control", str(work / "clip")],
    }.get(mode, [])


def _normalised(value, work: Path):
    """Paths under the temporary work folder or the tiny-model cache, written relative."""
    text = json.dumps(value, sort_keys=True)
    text = text.replace(str(work), "<work>").replace(os.environ.get("VIDGEN_CACHE", "<none>"), "<cache>")
    return json.loads(text)


def main() -> int:
    os.environ.setdefault("VIDGEN_CACHE", "/tmp/vidgen-golden-cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["VIDGEN_PRESETS"] = tempfile.mkdtemp()
    found = collect()
    if "--check" not in sys.argv:
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"wrote {GOLDEN} ({len(found)} entries)")
        return 0
    want = json.loads(GOLDEN.read_text())
    bad = 0
    if ONLY:
        want = {key: value for key, value in want.items() if key in found}
    for key in sorted(set(want) | set(found)):
        if want.get(key) != found.get(key):
            bad += 1
            print(f"DIFFERS: {key}")
            a, b = want.get(key) or {}, found.get(key) or {}
            for part in sorted(set(a) | set(b)):
                if a.get(part) != b.get(part):
                    print(
                        f"  {part}:\n    was {json.dumps(a.get(part))[:600]}\n    now {json.dumps(b.get(part))[:600]}"
                    )
    print(f"{bad} of {len(want)} entries differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
