"""The code stays in small functions: none in vidgen/ is longer than 80 lines.

A function is counted from its `def` line to its last line (decorators excluded), methods and
nested functions included. Long functions hid several jobs each (the batch runner, the loader,
the optimizer) and were where the bugs and the merge conflicts gathered; a function that grows
past the limit should be split into functions with one job each.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vidgen

LIMIT = 80
PACKAGE = Path(vidgen.__file__).parent

# Tiny random-weight model recipes: one long list of small configs, read as data, not logic.
# Each entry is "path/relative/to/vidgen.py:qualified.name".
ALLOWED = {
    "families/ltx2.py:tiny_components",
}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function under `tree`."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            found.append((name, node.lineno, node.end_lineno - node.lineno + 1))
            found += _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, f"{prefix}{node.name}.")
        else:
            found += _functions(node, prefix)
    return found


def long_functions(limit: int = LIMIT) -> list[str]:
    """Every function over `limit` lines, as "path:name (N lines, line L)"."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for name, line, count in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            if count > limit and f"{where}:{name}" not in ALLOWED:
                long.append(f"{where}:{name} ({count} lines, line {line})")
    return long


def test_no_function_is_longer_than_80_lines() -> None:
    assert long_functions() == []


def test_the_counter_sees_long_functions_methods_and_nested_ones() -> None:
    lines = [f"x{n} = {n}" for n in range(LIMIT)]  # the def line + LIMIT lines: one too many
    top = "\n".join("    " + line for line in lines)
    inner = "\n".join(" " * 12 + line for line in lines)
    source = f"def top():\n{top}\n\nclass C:\n    def m(self):\n        def inner():\n{inner}\n"
    names = {name: count for name, _line, count in _functions(ast.parse(source))}
    assert names["top"] == LIMIT + 1
    assert names["C.m.inner"] == LIMIT + 1 and names["C.m"] == LIMIT + 2


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Every module `tree` imports, at any depth (function-level imports too), absolute."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_nothing_outside_the_cli_imports_it() -> None:
    # DESIGN.md §1: the CLI is the top layer. __main__ is the entry point that starts it.
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        if where.startswith("vidgen.cli") or where == "vidgen.__main__":
            continue
        names = _imports(ast.parse(path.read_text(encoding="utf-8")), where.removesuffix(".__init__"))
        upward += [f"{where} imports {name}" for name in sorted(names) if name.split(".")[:2] == ["vidgen", "cli"]]
    assert upward == []
