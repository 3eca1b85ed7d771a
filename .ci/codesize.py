"""Check the code-size limits of issue 19 over `hub/`, `actors/` and `web/` (run by `.ci/run`).

- no file over 500 lines;
- no function or method over 80 lines;
- no function, method or class of cyclomatic complexity over 15 (radon's measure);
- the average maintainability index (radon's, comments counted as in `radon mi`) of each
  folder's files at least 55.

`python .ci/codesize.py` prints each folder's figures and every breach, one line each, and exits 1
if there is any. Needs `radon` (the `lint` extra).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from radon.complexity import cc_visit
from radon.metrics import mi_visit

FOLDERS = ("hub", "actors", "web")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_COMPLEXITY = 15
MIN_AVERAGE_MI = 55.0


def _function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function and method in `tree`."""
    return [
        (node.name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def check_file(path: Path) -> tuple[float, list[str]]:
    """The maintainability index of `path` and its breaches of the limits."""
    text = path.read_text(encoding="utf-8")
    breaches = []
    lines = len(text.splitlines())
    if lines > MAX_FILE_LINES:
        breaches.append(f"{path}: {lines} lines (limit {MAX_FILE_LINES})")
    for name, line, length in _function_lengths(ast.parse(text)):
        if length > MAX_FUNCTION_LINES:
            breaches.append(f"{path}:{line}: {name} is {length} lines (limit {MAX_FUNCTION_LINES})")
    for block in cc_visit(text):
        if block.complexity > MAX_COMPLEXITY:
            breaches.append(
                f"{path}:{block.lineno}: {block.fullname} has complexity {block.complexity} "
                f"(limit {MAX_COMPLEXITY})"
            )
    return mi_visit(text, multi=True), breaches


def main(root: Path) -> int:
    breaches: list[str] = []
    for folder in FOLDERS:
        indexes = []
        for path in sorted((root / folder).rglob("*.py")):
            index, found = check_file(path.relative_to(root))
            indexes.append(index)
            breaches.extend(found)
        average = sum(indexes) / len(indexes)
        print(f"{folder}/: {len(indexes)} files, average maintainability index {average:.1f}")
        if average < MIN_AVERAGE_MI:
            breaches.append(
                f"{folder}/: average maintainability index {average:.1f} (at least {MIN_AVERAGE_MI:.0f})"
            )
    for breach in breaches:
        print(breach)
    print(f"{len(breaches)} breach(es) of the code-size limits" if breaches else "code-size limits hold")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent.parent))
