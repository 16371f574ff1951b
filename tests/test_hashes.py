"""Weights files' provenance (issue 25): sha256 cached by path, size and mtime; `replay` refuses a
recorded weights file that changed or went missing; `inspect` shows each recorded file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, files_under, one_line_error, png_frames, printed_sidecar
from test_wan import _wan_lora

from vidgen.core import hashes
from vidgen.models import components

HOUR_NS = 3600 * 10**9


def _settled(path: Path) -> int:
    """Date `path` an hour back (a file just written is hashed but not remembered, see
    hashes.SETTLE_NS) and return that mtime in ns."""
    mtime = time.time_ns() - HOUR_NS
    os.utime(path, ns=(mtime, mtime))
    return mtime


def _cached(cache: Path) -> dict:
    return json.loads((cache / hashes.CACHE_FILE).read_text())["files"]


def _real(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the cache ----------------------------------------------------------------------------------


def test_a_file_is_read_once_then_known_by_path_size_and_mtime(tmp_path: Path) -> None:
    cache, weights = tmp_path / "cache", tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 4096)
    mtime = _settled(weights)
    first = hashes.sha256(weights, cache)
    assert first == _real(weights)
    assert _cached(cache)[str(weights.resolve())] == {"size": 4096, "mtime_ns": mtime, "sha256": first}
    # Other bytes of the same length under the old mtime: the cache answers, so nothing was read.
    weights.write_bytes(b"b" * 4096)
    os.utime(weights, ns=(mtime, mtime))
    assert hashes.sha256(weights, cache) == first != _real(weights)
    # Another mtime (what any real rewrite gives) is read again, and remembered anew.
    os.utime(weights, ns=(mtime + 10**9, mtime + 10**9))
    assert hashes.sha256(weights, cache) == _real(weights) != first
    assert _cached(cache)[str(weights.resolve())]["sha256"] == _real(weights)
    # Without a cache folder the file is always read.
    os.utime(weights, ns=(mtime, mtime))
    assert hashes.sha256(weights) == _real(weights)


def test_a_file_just_written_is_hashed_but_not_remembered(tmp_path: Path) -> None:
    # Within the same mtime tick a second write would go unnoticed; git refuses the same race.
    cache, weights = tmp_path / "cache", tmp_path / "w.safetensors"
    weights.write_bytes(b"fresh")
    assert hashes.sha256(weights, cache) == _real(weights)
    assert not (cache / hashes.CACHE_FILE).exists()
    _settled(weights)
    hashes.sha256(weights, cache)
    assert list(_cached(cache)) == [str(weights.resolve())]


@pytest.mark.parametrize(
    "contents",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"version": 2, "files": {}}',
        b'{"version": 1, "files": []}',
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser recurses
    ],
    ids=["not-json", "not-utf8", "a-list", "another-version", "files-not-a-mapping", "too-deep"],
)
def test_a_corrupt_cache_is_ignored_and_written_anew(tmp_path: Path, contents: bytes) -> None:
    cache, weights = tmp_path / "cache", tmp_path / "w.safetensors"
    cache.mkdir()
    (cache / hashes.CACHE_FILE).write_bytes(contents)
    weights.write_bytes(b"weights")
    _settled(weights)
    assert hashes.sha256(weights, cache) == _real(weights)
    assert _cached(cache)[str(weights.resolve())]["sha256"] == _real(weights)


@pytest.mark.parametrize(
    "entry",
    [
        {"sha256": "ab" * 32},  # no size or mtime
        {"size": 7, "mtime_ns": "MTIME", "sha256": "nothex" * 10 + "abcd"},
        {"size": 7, "mtime_ns": "MTIME", "sha256": 12345},
        {"size": 7, "mtime_ns": "MTIME", "sha256": "AB" * 32},  # not vidgen's lower-case hex
        "not an entry",
    ],
)
def test_a_malformed_entry_is_not_trusted(tmp_path: Path, entry: object) -> None:
    cache, weights = tmp_path / "cache", tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    mtime = _settled(weights)
    if isinstance(entry, dict) and entry.get("mtime_ns") == "MTIME":
        entry["mtime_ns"] = mtime
    cache.mkdir()
    (cache / hashes.CACHE_FILE).write_text(json.dumps({"version": 1, "files": {str(weights.resolve()): entry}}))
    assert hashes.sha256(weights, cache) == _real(weights)


def test_the_cache_keeps_the_newest_entries_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashes, "MAX_ENTRIES", 3)
    cache = tmp_path / "cache"
    files = []
    for index in range(5):
        files.append(tmp_path / f"w{index}.safetensors")
        files[-1].write_bytes(bytes([index]) * 10)
        _settled(files[-1])
        hashes.sha256(files[-1], cache)
    assert list(_cached(cache)) == [str(path.resolve()) for path in files[2:]]
    # Hashing one again moves it to the newest end rather than adding it twice.
    os.utime(files[2], ns=(time.time_ns() - HOUR_NS + 10**9,) * 2)
    hashes.sha256(files[2], cache)
    assert list(_cached(cache)) == [str(path.resolve()) for path in (files[3], files[4], files[2])]


def test_an_unwritable_cache_folder_only_means_nothing_is_remembered(tmp_path: Path) -> None:
    # The tests run as root, where chmod stops no write: a file where the folder should be does.
    blocked = tmp_path / "cache"
    blocked.write_text("a file, not a folder")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    _settled(weights)
    assert hashes.sha256(weights, blocked) == _real(weights)
    assert hashes.sha256(weights, blocked / "below") == _real(weights)
    assert blocked.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "w.safetensors"]  # no temporary file left


def test_concurrent_writers_leave_a_whole_cache(tmp_path: Path) -> None:
    # Each write is a whole new file moved into place: readers never see half of one, and racing
    # writers only lose entries (recomputed next time), never corrupt the file.
    cache = tmp_path / "cache"
    files = []
    for index in range(40):
        files.append(tmp_path / f"w{index}.safetensors")
        files[-1].write_bytes(os.urandom(64))
        _settled(files[-1])
    seen, errors = [], []

    def writer(part: list[Path]) -> None:
        for path in part:
            if hashes.sha256(path, cache) != _real(path):
                errors.append(path)

    def reader() -> None:
        while any(thread.is_alive() for thread in threads):
            if (cache / hashes.CACHE_FILE).exists():
                seen.append(json.loads((cache / hashes.CACHE_FILE).read_text())["version"])

    threads = [threading.Thread(target=writer, args=(files[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    reader()
    for thread in threads:
        thread.join()
    assert not errors and set(seen) <= {1}
    entries = {path: entry["sha256"] for path, entry in _cached(cache).items()}
    assert entries and all(entries.get(str(p.resolve()), _real(p)) == _real(p) for p in files)
    assert [p.name for p in cache.iterdir()] == [hashes.CACHE_FILE]


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # reading it would wait forever
    for path in (tmp_path / "pipe", tmp_path):
        with pytest.raises(OSError, match="not a regular file"):
            hashes.sha256(path, tmp_path / "cache")


def test_a_folder_hashes_each_weights_file_through_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "lora"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.safetensors").write_bytes(b"first")
    (folder / "sub" / "b.safetensors").write_bytes(b"second")
    (folder / "README.md").write_text("not weights")
    for path in (folder / "a.safetensors", folder / "sub" / "b.safetensors"):
        _settled(path)
    a, b = _real(folder / "a.safetensors"), _real(folder / "sub" / "b.safetensors")
    lines = f"a.safetensors {a}\nsub/b.safetensors {b}\n"
    expected = hashlib.sha256(lines.encode()).hexdigest()
    assert components.file_sha256(folder) == expected
    assert components.weights_record(folder) == {"sha256": expected, "bytes": 11}
    assert set(_cached(tmp_path / "cache")) == {str(p.resolve()) for p in folder.rglob("*.safetensors")}
    (folder / "README.md").write_text("other text")  # not a weights file: the same folder hash
    assert components.file_sha256(folder) == expected
    (folder / "sub" / "b.safetensors").write_bytes(b"SECOND")
    assert components.file_sha256(folder) != expected


# -- real runs: the LoRA hash in the sidecar comes from the cache --------------------------------


def _flip_signs(path: Path) -> None:
    """Rewrite a float32 safetensors file with every value negated: the same length and header,
    other bytes (and still a loadable LoRA)."""
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    assert {info["dtype"] for key, info in header.items() if key != "__metadata__"} == {"F32"}
    for index in range(8 + length + 3, len(data), 4):
        data[index] ^= 0x80
    path.write_bytes(bytes(data))


WAN = ("t2v", "a fox", "--preset", "tiny-wan", "--seed", "3", "--format", "png")


@pytest.mark.pipeline
def test_a_second_run_takes_the_lora_hash_from_the_cache(tmp_path: Path) -> None:
    lora = _wan_lora(tmp_path / "style", 1)
    mtime = _settled(lora)
    first = cli(*WAN, "--lora", str(lora), "--out", "one/")
    assert printed_sidecar(first)["model"]["loras"][0]["sha256"] == _real(lora)
    recorded = _real(lora)
    # Other bytes, same length, the old mtime restored: the second run does not read the file.
    _flip_signs(lora)
    os.utime(lora, ns=(mtime, mtime))
    second = cli(*WAN, "--lora", str(lora), "--out", "two/")
    assert printed_sidecar(second)["model"]["loras"][0]["sha256"] == recorded != _real(lora)
    # Another mtime: read again.
    os.utime(lora, ns=(mtime + 10**9, mtime + 10**9))
    third = cli(*WAN, "--lora", str(lora), "--out", "three/")
    assert printed_sidecar(third)["model"]["loras"][0]["sha256"] == _real(lora) != recorded


# -- replay checks what it recorded ---------------------------------------------------------------


@pytest.mark.pipeline
def test_replay_refuses_a_changed_or_missing_lora_and_reproduces_an_unchanged_one(tmp_path: Path) -> None:
    lora = _wan_lora(tmp_path / "style", 1)
    _settled(lora)
    made = cli(*WAN, "--lora", str(lora), "--out", "run/")
    frames, data = png_frames(made), printed_sidecar(made)
    recorded = data["model"]["loras"][0]
    side = tmp_path / "run" / "t2v-a-fox-3.json"
    # inspect: one line for the LoRA with its short hash and size.
    shown = cli("inspect", str(side)).stdout.splitlines()
    size = f"{lora.stat().st_size / 1024:.3g} KiB"
    fit = f"{recorded['layout']} layout, {recorded['matched']}/{recorded['modules']} layers"
    assert f"lora         {lora} x1.0 ({fit}, sha256 {recorded['sha256'][:12]}, {size})" in shown
    assert recorded["bytes"] == lora.stat().st_size
    # Unchanged: the replay says the hash matches and makes the same frames.
    again = cli("replay", str(side), "--out", "again/")
    assert f"sha256 {recorded['sha256'][:12]} as recorded" in again.stderr
    assert np.array_equal(png_frames(again), frames)
    # ... which another seed would not (so the comparison can fail).
    other = cli("replay", str(side), "--out", "other/", "--set", "sampling.seed=4")
    assert not np.array_equal(png_frames(other), frames)
    # Changed since: one line, exit 5, both short hashes, nothing written.
    _flip_signs(lora)
    before = files_under(tmp_path)
    changed = cli("replay", str(side), "--out", "changed/", "--quiet")
    line = one_line_error(changed, 5, f"LoRA file {lora} has changed since the run", "restore that file")
    assert f"(sha256 {_real(lora)[:12]}..., recorded {recorded['sha256'][:12]}...)" in line
    assert files_under(tmp_path) == before
    # Missing: the same, with the recorded hash.
    lora.unlink()
    before = files_under(tmp_path)
    missing = cli("replay", str(side), "--out", "missing/", "--quiet")
    one_line_error(missing, 5, f"LoRA file {lora} is missing (recorded sha256 {recorded['sha256'][:12]}...)")
    assert files_under(tmp_path) == before


def _gguf_record(path: Path, **changes: object) -> dict:
    """A `model.files` entry as the single-file loader writes it, for a local file."""
    record = {
        "source": path.name,
        "path": str(path.resolve()),
        "repo": None,
        "revision": None,
        "sha256": _real(path),
        "bytes": path.stat().st_size,
        "format": "gguf",
        "quant": "Q8_0",
        "layout": "comfyui",
        "tensors": 12,
    }
    return {**record, **changes}


@pytest.mark.pipeline
def test_replay_checks_single_file_components_it_recorded(tmp_path: Path) -> None:
    # A real tiny run, its sidecar given a transformer file as the single-file loader records it.
    made = cli(*WAN, "--out", "run/")
    frames, data = png_frames(made), printed_sidecar(made)
    gguf = tmp_path / "wan-q8.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    data["model"]["files"] = {"transformer": _gguf_record(gguf)}
    side = tmp_path / "run" / "t2v-a-fox-3.json"
    side.write_text(json.dumps(data))
    # The file is as recorded: the replay goes on (and lists it with its hash).
    again = cli("replay", str(side), "--out", "again/")
    assert f"transformer file wan-q8.gguf (local file {gguf}, sha256 {_real(gguf)[:12]} as recorded)" in again.stderr
    assert np.array_equal(png_frames(again), frames)
    recorded = _real(gguf)
    gguf.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 4)
    before = files_under(tmp_path)
    line = one_line_error(cli("replay", str(side), "--out", "x/"), 5, f"transformer file {gguf} has changed")
    assert f"(sha256 {_real(gguf)[:12]}..., recorded {recorded[:12]}...)" in line
    # Run from another folder, the relative source is found again by its recorded path.
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    one_line_error(cli("replay", str(side), "--out", "x/"), 5, f"transformer file {gguf} has changed")
    gguf.unlink()
    one_line_error(cli("replay", str(side), "--out", "x/"), 5, f"transformer file {gguf} is missing")
    assert files_under(tmp_path) == [path for path in before if path != gguf]


def _handmade(tmp_path: Path, mode: str, preset: str, config_model: dict, model: dict) -> Path:
    """A sidecar of a run that never happened: the config a dry run resolves, changed."""
    result = cli(mode, "a cat", "--preset", preset, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    config["model"].update(config_model)
    data = {"vidgen_version": "0.1.0", "created_at": "2026-01-01T00:00:00+00:00", "config": config, "seed": 1}
    data["model"] = {"family": config["model"]["family"], "id": config["model"]["id"], **model}
    path = tmp_path / "made.json"
    path.write_text(json.dumps(data))
    return path


def test_replay_refuses_each_kind_of_recorded_file_before_loading(tmp_path: Path) -> None:
    # Checked before the model is located: none of these could load, and none needs to.
    from safetensors.numpy import save_file

    weights = tmp_path / "w.safetensors"
    save_file({"w": np.arange(4, dtype=np.float32)}, weights)  # not what was recorded
    now, then = _real(weights)[:12], ("ab" * 32)[:12]
    record = {"source": "file", "path": str(weights), "sha256": "ab" * 32}
    cases = [
        ("t2v", "tiny-wan", {"id": "w.safetensors"}, {"source": "file", "path": str(weights), "checkpoint": record}),
        ("animate", "tiny-animatediff", {"motion_adapter": "w.safetensors"}, {"motion_adapter": record}),
        ("animate", "tiny-animatediff", {"controlnet": "w.safetensors"}, {"controlnet": record}),
        ("t2v", "tiny-wan", {}, {"files": {"text_encoder": _gguf_record(weights, sha256="ab" * 32)}}),
    ]
    for mode, preset, config_model, model in cases:
        made = _handmade(tmp_path, mode, preset, config_model, model)
        before = files_under(tmp_path)
        line = one_line_error(cli("replay", str(made), "--quiet"), 5, f"file {weights} has changed since the run")
        assert f"(sha256 {now}..., recorded {then}...)" in line
        assert files_under(tmp_path) == before
    # Chosen on the command line, a file is the user's pick, not the recording's.
    made = _handmade(tmp_path, *cases[1][:3], cases[1][3])
    chosen = cli("replay", str(made), "--set", "model.motion_adapter=w.safetensors", "--dry-run")
    assert chosen.exit_code == 0, chosen.stderr


def test_a_missing_hub_file_is_not_fetched(tmp_path: Path) -> None:
    gone = str(tmp_path / "hf" / "snapshots" / "abc" / "wan-q8.gguf")
    files = {"transformer": {"source": "city96/Wan-gguf:wan-q8.gguf", "path": gone, "repo": "city96/Wan-gguf",
                             "revision": "abc123", "sha256": "cd" * 32}}  # fmt: skip
    made = _handmade(tmp_path, "t2v", "tiny-wan", {}, {"files": files})
    one_line_error(
        cli("replay", str(made), "--quiet"),
        5,
        "transformer file city96/Wan-gguf:wan-q8.gguf from city96/Wan-gguf at revision abc123 is not on this machine",
        "recorded sha256 cdcdcdcdcdcd...",
        "download it at revision abc123 again",
    )


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_shows_each_recorded_file_on_one_line(tmp_path: Path) -> None:
    files = {
        "transformer": {
            "source": "city96/Wan2.1-T2V-14B-gguf:wan2.1-t2v-14b-Q8_0.gguf",
            "path": "/hf/snapshots/0123/wan2.1-t2v-14b-Q8_0.gguf",
            "repo": "city96/Wan2.1-T2V-14B-gguf",
            "revision": "0123456789abcdef0123",
            "sha256": "1a2b3c4d5e6f" + "0" * 52,
            "bytes": 15_400_000_000,
            "format": "gguf",
            "quant": "Q8_0",
            "layout": "comfyui",
            "tensors": 1095,
        },
        "text_encoder": {
            "source": "umt5-fp8.safetensors",
            "path": "/models/umt5-fp8.safetensors",
            "sha256": "9f8e7d6c5b4a" + "1" * 52,
            "format": "safetensors",
            "quant": "fp8_e4m3fn (scaled)",
        },
        "transformer_2": {"source": "low.gguf"},  # a record with nothing else: only what is there
        "\x1b[2Jvae": {"path": "/v.safetensors"},  # a name a file chose: shown escaped
    }
    loras = [{"source": "style.safetensors", "path": "/l/style.safetensors", "sha256": "77" * 32, "bytes": 4_412_000}]
    made = _handmade(
        tmp_path,
        "t2v",
        "tiny-wan",
        {"loras": [{"source": "style.safetensors", "scale": 0.8}]},
        {"files": files, "loras": loras},
    )
    rows = cli("inspect", str(made)).stdout.splitlines()
    assert (
        "transformer  city96/Wan2.1-T2V-14B-gguf:wan2.1-t2v-14b-Q8_0.gguf from city96/Wan2.1-T2V-14B-gguf at "
        "0123456789ab (gguf Q8_0, comfyui layout, sha256 1a2b3c4d5e6f, 14.3 GiB)" in rows
    )
    assert (
        "text_encoder umt5-fp8.safetensors from /models/umt5-fp8.safetensors "
        "(safetensors fp8_e4m3fn (scaled), sha256 9f8e7d6c5b4a)" in rows
    )
    assert "transformer_2 low.gguf" in rows
    assert "\\x1b[2Jvae   /v.safetensors" in rows and "\x1b" not in "".join(rows)
    assert "lora         style.safetensors x0.8 from /l/style.safetensors (sha256 777777777777, 4.21 MiB)" in rows
    # A sidecar whose hash is not text is refused whole, not half-shown (exit 4).
    files["transformer"]["sha256"] = 5
    made = _handmade(tmp_path, "t2v", "tiny-wan", {}, {"files": files})
    one_line_error(cli("inspect", str(made)), 4, "model.files.transformer.sha256 is a whole number, not text")
