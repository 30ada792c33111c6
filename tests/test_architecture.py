"""The package's arrows: no import cycle, function-level imports included; the hooks' path light.

The import graph is read from the source (``ast``), so an import hidden inside a function
counts as much as one at the top; only ``if TYPE_CHECKING:`` blocks, which never run, do not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import model_filer

PACKAGE = Path(model_filer.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _skipped(tree: ast.AST) -> set[int]:
    """Nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skip = _skipped(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs or [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "model_filer.registry.model" in graph  # the graph sees the sub-packages
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself can fail: a back-edge added to the real graph is reported."""
    graph = import_graph()
    graph["model_filer.registry.model"].add("model_filer.registry.file")
    assert _cycle(graph) is not None


def test_the_registry_model_imports_neither_its_codec_nor_its_file() -> None:
    imported = import_graph()["model_filer.registry.model"]
    assert not imported & {"model_filer.registry.codec", "model_filer.registry.file"}
    assert "model_filer.registry.file" not in import_graph()["model_filer.registry.codec"]


def test_the_commit_hook_imports_no_sdk_and_no_filer() -> None:
    """What the commit hook's process imports: no boto3, cloud SDK, GitPython or Filer."""
    code = (
        "import sys, model_filer_hooks.no_local_models\n"
        "heavy = ('boto3', 'botocore', 'google', 'azure', 'git', 'model_filer.filer',"
        " 'model_filer.transfer.transfers', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out


#: The sub-packages, lowest first: each imports only from packages before it (and errors).
LAYERS = ["fs", "registry", "storage", "pickles", "remotes", "local", "transfer", "git"]


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if b != "model_filer.errors" and _layer(b) > _layer(a)
    )


def test_the_sub_packages_import_only_downwards() -> None:
    graph = import_graph()
    assert not _upward(graph), _upward(graph)
    graph["model_filer.fs.layout"].add("model_filer.registry.model")  # the check can fail
    assert _upward(graph) == ["model_filer.fs.layout -> model_filer.registry.model"]
