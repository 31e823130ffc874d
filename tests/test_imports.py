"""Imports sit at the top of their module (issue #11): an import inside a function is kept
only for an optional or deliberately lazy module, and its line says why."""

from __future__ import annotations

import ast
from pathlib import Path

import noisyfit

SRC = Path(noisyfit.__file__).parent

#: Modules a function may import, and why (the line itself must carry a ``#`` comment).
LAZY = {
    "matplotlib": "pyplot is slow to import and needs the Agg backend chosen first",
    "cleanlab": "optional dependency",
    "torch.utils.tensorboard": "optional dependency (tensorboard)",
    "_mentor_pd_weights": "shipped MentorNet weights: slow to import, default mentor only",
}


def function_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, source line) of each import inside a function of ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    found = {}
    for f in ast.walk(ast.parse(text)):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(f):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or a.name for a in node.names]
                else:
                    continue
                for m in mods:
                    found[(node.lineno, m)] = lines[node.lineno - 1]
    return [(n, m, line) for (n, m), line in sorted(found.items())]


def allowed(module: str) -> bool:
    return any(module == k or module.startswith(k + ".") for k in LAZY)


def test_function_level_imports_are_only_the_lazy_ones_and_say_why():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for lineno, module, line in function_imports(path):
            where = f"{path.relative_to(SRC)}:{lineno}: {line.strip()}"
            if not allowed(module):
                bad.append(f"{where}  (move it to the top of the module)")
            elif "#" not in line:
                bad.append(f"{where}  (say why it stays lazy in a comment)")
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_function_level_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import json\n    from .x import y  # why\n    return json\n")
    found = function_imports(p)
    assert [(n, m) for n, m, _ in found] == [(2, "json"), (3, "x")]
    assert not allowed("json") and allowed("matplotlib.pyplot") and not allowed("matplotlibx")
