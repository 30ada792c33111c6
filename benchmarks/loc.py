"""Lines of code in the package and the hooks: blank lines, comments and docstrings not counted.

    python -m benchmarks.loc [REV]        # this tree, or REV's tree (through git) beside it

A line counts when it holds a token of code; a bare string statement (a docstring) does not.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = ("model_filer", "hooks")
_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_lines(source: str) -> int:
    """Lines of ``source`` that hold code, docstrings and comments left out."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Expr):
            continue
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docstrings.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _NOT_CODE:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def _files_at(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {
            str(p.relative_to(ROOT)): p.read_text()
            for tree in TREES
            for p in sorted((ROOT / tree).rglob("*.py"))
        }
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", *TREES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        n: subprocess.run(
            ["git", "show", f"{rev}:{n}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for n in names
        if n.endswith(".py")
    }


def main(argv: list[str]) -> None:
    now = {name: code_lines(text) for name, text in _files_at(None).items()}
    if argv:
        then = {name: code_lines(text) for name, text in _files_at(argv[0]).items()}
        for name in sorted(set(now) | set(then)):
            print(f"{then.get(name, 0):6d} {now.get(name, 0):6d}  {name}")
        before, after = sum(then.values()), sum(now.values())
        print(f"{before:6d} {after:6d}  total ({argv[0]} -> tree): {after / before - 1:+.1%}")
    else:
        for name, count in sorted(now.items()):
            print(f"{count:6d}  {name}")
        print(f"{sum(now.values()):6d}  total")


if __name__ == "__main__":
    main(sys.argv[1:])
