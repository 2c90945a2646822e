"""The import graph's rules that import-linter (pyproject's contracts, run by .ci/run) does not state:
an import inside a function says why it is there, and the one reason that counts is measured."""

from __future__ import annotations

import ast
from pathlib import Path

import kdlight

SOURCE = Path(kdlight.__file__).parent
REASONS = (
    "# lazy: off the config check's import path (tests/test_train.py)",  # measured by test_train's importtime tests
    "# lazy: threads are exported before torch is imported (export_threads)",
    "# lazy: an optional extra",
    "# lazy: plugins load in the command's error handling (tests/test_trust.py)",
)


def function_level_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    found.append(child)
            else:
                walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return found


def unexplained_imports(source_root: Path) -> list[str]:
    problems = []
    for path in sorted(source_root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in function_level_imports(ast.parse("\n".join(lines))):
            if not any(reason in lines[node.end_lineno - 1] for reason in REASONS):
                problems.append(f"{path.relative_to(source_root.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return problems


def test_every_import_inside_a_function_says_why():
    assert unexplained_imports(SOURCE) == []


def test_an_unexplained_import_inside_a_function_is_named(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        "import os\n\n\ndef f():\n    import json\n    return json, os\n\n\n"
        "def g():\n    import torch  # lazy: an optional extra\n    return torch\n"
    )
    assert unexplained_imports(package) == ["pkg/mod.py:5: import json"]
