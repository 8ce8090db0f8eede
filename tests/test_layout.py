"""The code stays readable: dependencies run one way (import-linter's contracts in
pyproject.toml), functions stay short, and ruff's rules (complexity included) hold.
These run in `make test`, so CI refuses a change that breaks them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MAX_LINES = 60  # a function a reader sees on one screen


def function_lengths(folder: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(lines, "path:line name") of every function below ``folder``."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                out.append((node.end_lineno - node.lineno + 1, where))
    return out


def test_no_function_in_sweeps_or_trainables_is_longer_than_60_lines():
    lengths = function_lengths(REPO / "sweeps") + function_lengths(REPO / "trainables")
    assert len(lengths) > 200  # the walk found the code
    too_long = sorted((n, w) for n, w in lengths if n > MAX_LINES)
    assert too_long == [], f"functions over {MAX_LINES} lines: {too_long}"


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    assert function_lengths(tmp_path, root=tmp_path) == [(71, "long.py:1 long")]


def test_imports_keep_the_layers_and_have_no_cycles():
    run = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout and "Contracts: " in run.stdout, run.stdout


def test_ruff_lint_and_format_pass():
    check = subprocess.run(
        [str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
