"""The code stays in small pieces: no function in src/engram is over 60 lines (migrations excepted:
they are data, and are never edited once applied)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "engram"
MAX_LINES = 60


def _is_migration(path: Path, node: ast.AST) -> bool:
    return path.name == "schema.py" or (isinstance(node, ast.FunctionDef) and node.name.startswith("_m0"))


def test_no_function_is_over_60_lines() -> None:
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_migration(path, node):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
