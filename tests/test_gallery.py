"""`vidgen gallery DIR`: the page's structure here, and the page itself in a real browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import cli

SWEEP = """\
defaults:
  preset: tiny-cogvideox
  steps: 2
jobs:
  - prompt: a red fox
matrix:
  seed: [1, 2]
  guidance: [4.0, 6.0, 8.0]
"""


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A 2x3 sweep (seed by guidance) and one more output with another prompt, in runs/."""
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    swept = cli("batch", "sweep.yaml", "--out", "runs", "--gallery")
    assert swept.exit_code == 0, swept.stderr
    other = cli("t2v", "a blue whale <b>", "--preset", "tiny-cogvideox", "--seed", "3", "--out", "runs/")
    assert other.exit_code == 0, other.stderr
    made = cli("gallery", "runs")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip() == "runs/index.html"
    return tmp_path / "runs"


@pytest.mark.pipeline
def test_gallery_page_lays_a_sweep_out_as_a_grid(runs: Path) -> None:
    page = (runs / "index.html").read_text()
    # Self-contained: nothing is fetched from anywhere but the folder itself.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script src" not in page and "<link" not in page
    # The prompt is text, never markup.
    assert "a blue whale &lt;b&gt;" in page and "a blue whale <b>" not in page
    grid = page.split('<table class="grid"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<th scope="col">([^<]*)</th>', grid) == ["guidance 4.0", "guidance 6.0", "guidance 8.0"]
    assert re.findall(r'<th scope="row">([^<]*)</th>', grid) == ["seed 1", "seed 2"]
    assert grid.count("<video") == 6 and page.count("<video") == 7
    assert 'href="t2v-a-red-fox-1-guidance4.0.json"' in grid
    # --axis picks the rows; the other swept field fills the columns.
    assert cli("gallery", "runs", "--axis", "guidance").exit_code == 0
    grid = (runs / "index.html").read_text().split('<table class="grid"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<th scope="col">([^<]*)</th>', grid) == ["seed 1", "seed 2"]
    assert re.findall(r'<th scope="row">([^<]*)</th>', grid) == ["guidance 4.0", "guidance 6.0", "guidance 8.0"]


@pytest.mark.pipeline
def test_batch_gallery_shows_done_and_failed_jobs(tmp_path: Path) -> None:
    manifest = SWEEP.replace("[1, 2]", "[1]").replace("[4.0, 6.0, 8.0]", "[4.0]")
    # CogVideoX takes 8k+1 frames: this job is invalid, and shows as a failed tile with why.
    manifest = manifest.replace("  - prompt: a red fox\n", "  - prompt: a red fox\n  - prompt: bad\n    frames: 10\n")
    (tmp_path / "jobs.yaml").write_text(manifest)
    result = cli("batch", "jobs.yaml", "--out", "runs", "--gallery", "--skip-invalid")
    assert result.exit_code == 8, result.stderr
    page = (tmp_path / "runs" / "index.html").read_text()
    assert page.count("<video") == 1
    failed = page.split('class="tile failed"', 1)[1].split("</figure>", 1)[0]
    assert "invalid" in failed and "frames" in failed


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_gallery_in_a_real_browser(runs: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        # Root in a container cannot use Chromium's sandbox; the page is our own local file.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((runs / "index.html").as_uri())
        page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 2)", timeout=20_000)
        states = page.eval_on_selector_all("video", "videos => videos.map(v => v.readyState)")
        assert len(states) == 7 and min(states) >= 2
        rows = page.eval_on_selector_all("table.grid tbody tr", "rows => rows.map(r => r.cells.length - 1)")
        assert rows == [3, 3]
        labels = page.eval_on_selector_all("table.grid th", "cells => cells.map(c => c.textContent)")
        assert labels == ["", "guidance 4.0", "guidance 6.0", "guidance 8.0", "seed 1", "seed 2"]
        screenshot = runs / "gallery.png"
        page.screenshot(path=str(screenshot), full_page=True)
        if os.environ.get("VIDGEN_TEST_ARTIFACTS"):
            shutil.copy(screenshot, Path(os.environ["VIDGEN_TEST_ARTIFACTS"]) / "gallery.png")

        page.fill("#filter", "whale")
        visible = page.eval_on_selector_all(".tile", "tiles => tiles.filter(t => t.offsetParent !== null).length")
        assert visible == 1
        page.fill("#filter", "")
        assert page.eval_on_selector_all(".tile", "t => t.filter(x => x.offsetParent !== null).length") == 7
        browser.close()
    assert errors == []
