"""Run vidgen in a fresh process and measure its peak memory (for tests of hostile files, DESIGN §7).

The peak is the largest resident set of the vidgen process or any process it waited for (ffmpeg),
from `wait4`. It is measured by a small Python process in between: a child started straight from
the test process (hundreds of MB of torch by then) would inherit the test's high-water mark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss * 1024))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def vidgen(*args: str, cwd: Path) -> tuple[int, str, str, int]:
    """Exit code, stdout, stderr and peak RSS in bytes of `python -m vidgen ARGS` run in `cwd`."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp, "peak")
        with open(Path(tmp, "out"), "w+b") as out, open(Path(tmp, "err"), "w+b") as err:
            command = [sys.executable, "-c", _MEASURE, str(peak), sys.executable, "-m", "vidgen", *args]
            code = subprocess.run(command, cwd=cwd, stdout=out, stderr=err, env=os.environ.copy()).returncode
            out.seek(0)
            err.seek(0)
            return code, out.read().decode(), err.read().decode(), int(peak.read_text())
