"""The test tiers of conftest.py: every test has exactly one, and a test in the wrong one fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest
from conftest import TIER, TIERS, VIOLATIONS, TierViolation, _guarded, _raise_violations


class _Item:
    """What the guard reads of a pytest item."""

    def __init__(self, tier: str) -> None:
        self.nodeid = f"tests/test_x.py::a_{tier}_test"
        self.stash = pytest.Stash()
        self.stash[TIER] = tier


def test_every_collected_test_has_exactly_one_tier(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    assert request.node in items
    for item in items:
        assert [mark.name for mark in item.iter_markers() if mark.name in TIERS] == [item.stash[TIER]], item.nodeid


def test_a_unit_test_that_builds_a_model_fails_and_says_which_mark_to_use() -> None:
    import torch

    item = _Item("unit")
    with _guarded(item), pytest.raises(TierViolation, match=r"a_unit_test is in the unit tier but built a torch"):
        torch.nn.Linear(2, 2)
    # Raised again after the test, for code that caught it (the CLI turns errors into exit codes).
    assert len(item.stash[VIOLATIONS]) == 1
    with pytest.raises(TierViolation, match="Linear.*: mark it pipeline"):
        _raise_violations(item)


def test_a_unit_test_may_import_a_library_that_builds_a_module_as_it_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers builds small modules while importing some model files; that is no model load.
    (tmp_path / "builds_on_import.py").write_text("import torch\nLAYER = torch.nn.Identity()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    item = _Item("unit")
    with _guarded(item):
        import builds_on_import  # noqa: F401
    assert item.stash[VIOLATIONS] == []


@pytest.mark.parametrize("tier", ["unit", "pipeline"])
def test_unit_and_pipeline_tests_may_not_start_vidgen(tier: str) -> None:
    item = _Item(tier)
    with _guarded(item), pytest.raises(TierViolation, match=r"started a process \(.*-m vidgen.*: mark it process"):
        subprocess.run([sys.executable, "-m", "vidgen", "--version"], check=False)


def test_a_unit_test_starts_no_python_and_may_run_ffmpeg() -> None:
    item = _Item("unit")
    with _guarded(item):
        with pytest.raises(TierViolation, match="started a process"):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
        item.stash[VIOLATIONS].clear()
        done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-version"], capture_output=True, check=False)
    assert done.returncode == 0 and item.stash[VIOLATIONS] == []


def test_the_guard_is_undone_after_the_test() -> None:
    import torch

    init, popen = torch.nn.Module.__init__, subprocess.Popen.__init__
    with _guarded(_Item("unit")):
        assert torch.nn.Module.__init__ is not init and subprocess.Popen.__init__ is not popen
    assert torch.nn.Module.__init__ is init and subprocess.Popen.__init__ is popen
