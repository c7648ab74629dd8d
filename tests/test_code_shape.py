"""The package stays readable: no function longer than a screen."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cifarlab"
LONGEST = 50  # lines, docstring included


def test_no_function_in_the_package_is_longer_than_fifty_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + "; ".join(long)
