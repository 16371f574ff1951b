"""Imported by Python at start-up when this folder is on PYTHONPATH (tests/test_spandrel.py):
imports spandrel with the torchvision stand-in in hidden/ (see README.md), then forgets the
stand-in, so that nothing else (transformers checks whether torchvision is installed) sees it."""

import sys
from pathlib import Path

_HIDDEN = str(Path(__file__).parent / "hidden")
sys.path.insert(0, _HIDDEN)
try:
    import spandrel  # noqa: F401  (kept in sys.modules, holding the two stand-in functions)
finally:
    sys.path.remove(_HIDDEN)
    for _name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[_name]
