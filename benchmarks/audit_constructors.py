#!/usr/bin/env python
"""First filter of the audit behind the default exclusions and the never-list (issue 23 review).

A glob admits every class defined under it, and loading a pickle may call any admitted class
(``REDUCE``, ``NEWOBJ``, ``BUILD`` through ``__setstate__``). This walks the installed
packages' modules, takes each class defined there (its own ``__module__``) and the glob that
would admit it, and lists the classes whose ``__init__``, ``__new__``, ``__setstate__``,
``__reduce__``/``__reduce_ex__`` or ``__call__`` source, or a method of the same class those
call on ``self`` (one level), calls something that evaluates strings, compiles, imports by
name, opens or writes files, runs processes, opens sockets or calls native pointers. It is a
first filter: each hit is then judged by reading its source. Run from the repository root::

    .venv/bin/python -m benchmarks.audit_constructors numpy scipy sklearn pandas
    .venv/bin/python -m benchmarks.audit_constructors torch

Modules already left out by the defaults or the never-list are skipped (``--all`` keeps them).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import sys
import textwrap
import warnings
from types import ModuleType
from typing import Any

# Calls worth reading: by the called name (a bare name or the last attribute).
SUSPECT = {
    "eval", "exec", "compile", "__import__", "import_module", "locate", "resolve_name",
    "open", "fdopen", "FileIO", "memmap", "fromfile", "tofile", "save", "savez", "load",
    "loads", "mkstemp", "NamedTemporaryFile", "TemporaryDirectory", "write_text",
    "write_bytes", "unlink", "remove", "rmtree", "makedirs", "mkdir",
    "system", "popen", "Popen", "run", "call", "check_call", "check_output", "spawn",
    "fork", "execv", "execve", "spawnv", "start_new_thread", "Thread", "Process", "Pool",
    "socket", "create_connection", "urlopen", "connect", "bind", "listen",
    "CDLL", "PyDLL", "dlopen", "from_address", "c_void_p", "CFUNCTYPE",
    "_getframe", "getattr", "setattr", "visit", "LowLevelCallable", "from_cython",
    "evaluate", "numexpr", "cffi", "ffi", "jit", "njit", "script", "trace",
}  # fmt: skip
METHODS = ("__init__", "__new__", "__setstate__", "__reduce__", "__reduce_ex__", "__call__")


def _called(node: ast.AST) -> set[tuple[str, int]]:
    """Names called in ``node``: ``f(...)`` gives ``f``, ``a.b.f(...)`` gives ``f``."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if name:
                out.add((name, sub.lineno))
    return out


def _self_calls(node: ast.AST) -> set[str]:
    """Methods called on ``self`` in ``node``."""
    return {
        sub.func.attr
        for sub in ast.walk(node)
        if isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and isinstance(sub.func.value, ast.Name)
        and sub.func.value.id == "self"
    }


def _tree(fn: Any) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None  # C or Cython: no source here, judged by name and documentation


def _bodies(cls: type, fn: Any, where: str, depth: int, seen: set[int]) -> list[tuple[str, Any]]:
    """``fn``'s tree and those of what it calls: methods on ``self`` and functions of its
    own package (by the name its module's globals give), ``depth`` levels down."""
    if id(fn) in seen or not inspect.isfunction(fn):
        return []
    seen.add(id(fn))
    tree = _tree(fn)
    if tree is None:
        return []
    out = [(where, tree)]
    if depth == 0:
        return out
    top = (getattr(cls, "__module__", "") or "").partition(".")[0]
    for helper in sorted(_self_calls(tree)):
        h = getattr(cls, helper, None)
        out += _bodies(cls, getattr(h, "__func__", h), f"{where}->{helper}", depth - 1, seen)
    for name, _ in sorted(_called(tree)):
        g = fn.__globals__.get(name)
        if inspect.isclass(g):
            g = g.__dict__.get("__init__")
        if inspect.isfunction(g) and (g.__module__ or "").partition(".")[0] == top:
            out += _bodies(cls, g, f"{where}->{name}", depth - 1, seen)
    return out


def _calls_a_parameter(fn: Any) -> list[str]:
    """Parameters of ``fn`` it calls, as given or kept on ``self`` (``self.f = f; self.f()``):
    a class that calls what it is given would call any trusted function with a pickle's
    arguments."""
    tree = _tree(fn)
    if tree is None:
        return []
    params = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} - {"self", "cls"}
    out = []
    for sub in ast.walk(tree):
        if not isinstance(sub, ast.Call):
            continue
        f = sub.func
        if isinstance(f, ast.Name) and f.id in params:
            out.append(f.id)
        elif (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id == "self"
            and f.attr in params
        ):
            out.append(f"self.{f.attr}")
    return out


def hits_of(cls: type, depth: int = 3) -> list[str]:
    """``method: name`` for each suspect call reached from the load-time methods of ``cls``."""
    found = []
    seen: set[int] = set()
    for method in METHODS:
        fn = cls.__dict__.get(method)
        for where, body in _bodies(cls, getattr(fn, "__func__", fn), method, depth, seen):
            for name, _ in sorted(_called(body)):
                if name in SUSPECT:
                    found.append(f"{where}: {name}()")
        if fn is not None and method in ("__init__", "__new__", "__setstate__"):
            found += [
                f"{method}: calls its parameter {p}()"
                for p in _calls_a_parameter(getattr(fn, "__func__", fn))
            ]
    return sorted(set(found))


def walk(package: str, skip: tuple[str, ...], excluded: frozenset[str]) -> dict[str, list[str]]:
    """``module.qualname``: hits, for the classes defined under ``package`` (but ``skip``
    modules and ``excluded`` classes or subclasses of ``module:qualname`` bases)."""
    out: dict[str, list[str]] = {}
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, package + ".", onerror=lambda _: None):
        names.append(info.name)
    for name in names:
        if any(name == s or name.startswith(s + ".") for s in skip) or ".tests" in name:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module: ModuleType = importlib.import_module(name)
        except BaseException:  # noqa: S112  # optional dependencies missing
            continue
        for obj in list(vars(module).values()):
            own = getattr(obj, "__module__", None)
            if not isinstance(obj, type) or not isinstance(own, str):
                continue
            if not (own == package or own.startswith(package + ".")):
                continue
            if any(own == s or own.startswith(s + ".") for s in skip):
                continue
            full = f"{own}.{obj.__qualname__}"
            if full in excluded or any(
                f"{b.__module__}:{b.__qualname__}" in excluded for b in obj.__mro__
            ):
                continue
            if full not in out:
                out[full] = hits_of(obj)
    return out


def main() -> int:
    from model_filer.pickles import trust

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--all", action="store_true", help="keep the modules already left out")
    args = parser.parse_args()
    skip: tuple[str, ...] = ()
    excluded: frozenset[str] = frozenset()
    if not args.all:
        excluded = trust.DEFAULT_EXCLUDED_CLASSES | set(trust.NEVER_BASES_BY_SPEC)
        skip = trust.DEFAULT_EXCLUDED + tuple(
            p for row in trust.NEVER_MODULES for p in row[0].split()
        )
    total = 0
    for package in args.packages:
        classes = walk(package, skip, excluded)
        total += len(classes)
        for full, hits in sorted(classes.items()):
            if hits:
                print(f"{full}: {'; '.join(hits)}")
    print(f"# {total} classes walked", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
