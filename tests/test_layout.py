"""The package's layout: the import layers of pyproject.toml's [tool.importlinter] hold, and no function is long."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_layers_hold() -> None:
    command = [sys.executable, "-c", LINT_IMPORTS, "--no-cache"]  # reads pyproject.toml in ROOT
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"


def function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """(line, name, lines from the first decorator to the last line) of each function and method in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            found.append((node.lineno, node.name, node.end_lineno - first + 1))
    return found


def test_no_function_is_over_60_lines() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {name}: {lines} lines"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for line, name, lines in function_lengths(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_benchmarks_keep_one_recipe_per_quoted_figure() -> None:
    """At most 15 YAML files under benchmarks/: recipes and few-line overrides, not copies of them."""
    recipes = sorted((ROOT / "benchmarks").rglob("*.yaml"))
    assert len(recipes) <= 15, [str(path.relative_to(ROOT)) for path in recipes]
