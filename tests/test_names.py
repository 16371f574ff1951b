"""Output names: prompts in any script keep different names."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

from vidgen.io.outputs import slug


@pytest.mark.pipeline
def test_non_latin_prompts_with_one_seed_write_different_files(tmp_path: Path) -> None:
    paths = []
    for prompt in ("夕阳下的猫", "雨中的狗"):
        result = cli("t2v", prompt, "--preset", "tiny-cogvideox", "--seed", "1")
        assert result.exit_code == 0, result.stderr
        paths.append(Path(result.stdout.strip()))
    assert paths[0] != paths[1]
    assert all((tmp_path / path).is_file() for path in paths)
    assert [path.name for path in paths] == [f"t2v-{slug(p)}-1.mp4" for p in ("夕阳下的猫", "雨中的狗")]


def test_slug_keeps_readable_words_and_hashes_what_ascii_cannot_spell() -> None:
    assert slug("a red fox running through fresh snow") == "a-red-fox-running-through-fresh-snow"
    assert slug("café au lait") == "cafe-au-lait"  # accents fold to ASCII: nothing lost, no hash
    assert slug("夕阳下的猫").startswith("p-") and len(slug("夕阳下的猫")) == 10
    assert slug("夕阳下的猫") == slug("夕阳下的猫")  # stable, so reruns and resumes find the same name
    assert slug("🐱") != slug("🐶")
    mixed = slug("a cat 夕阳")
    assert mixed.startswith("a-cat-") and mixed != slug("a cat 雨")
    assert slug("") == slug(None) == "video"
    assert len(slug("word " * 40)) <= 48
