"""Issue 26 item 1 through a real process: a shell passes bytes that are not UTF-8 in argv
(`vidgen t2v $'caf\\xe9'`); Python keeps them as lone surrogates, which used to end in
"UnicodeEncodeError: surrogates not allowed", exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import files_under

# The tier of tests conftest does not place otherwise (a test starting processes is "process").
DEFAULT_TIER = "process"


@pytest.mark.parametrize("where", [[b"caf\xe9"], [b"a fox", b"--negative", b"blur\xff"]])
def test_argv_bytes_that_are_not_utf8_are_refused_in_one_line(tmp_path: Path, where: list[bytes]) -> None:
    before = files_under(tmp_path)
    command = [os.fsencode(sys.executable), b"-m", b"vidgen", b"t2v", *where, b"--preset", b"tiny-cogvideox"]
    root = str(Path(__file__).resolve().parents[1])  # this checkout's vidgen, as the in-process tests use
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, env={**os.environ, "PYTHONPATH": path}, cwd=tmp_path)
    err = done.stderr.decode("utf-8")  # the message itself is UTF-8 (the bytes shown escaped)
    assert done.returncode == 3, err
    assert err.count("Error:") == 1 and err.strip().startswith("Error: command-line argument")
    assert "is not UTF-8 text" in err and ("caf\\xe9" in err or "blur\\xff" in err)
    assert done.stdout == b""
    assert files_under(tmp_path) == before
