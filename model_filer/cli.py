"""``model-filer``: status, push, pull, rm, verify, hooks and the merge driver from a shell.

The remote of each folder comes from its registry file. A user's mistake exits 2 with one
line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_filer import __version__
from model_filer.errors import ModelFilerError, UntrustedRemoteError
from model_filer.filer import Filer
from model_filer.fs.layout import registry_filename, remote_type_of
from model_filer.hookapi import approved_filer, filer_for, local_filer
from model_filer.registry.discovery import find_registries, read_registry, registries_in
from model_filer.registry.model import Entry, Registry, alias_fix, alias_problem
from model_filer.registry.names import check_alias

if TYPE_CHECKING:
    from model_filer.git.approvals import Action
    from model_filer.git.history import AliasMove

USER_ERROR = 2


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def _registry(folder: str, remote_type: str | None) -> Path:
    path = Path(folder)
    if remote_type_of(path.name):
        return path
    if path.exists() and not path.is_dir():
        from model_filer.remotes import available_types

        names = " or ".join(registry_filename(t) for t in available_types())
        raise ModelFilerError(
            f"{path} is neither a model folder nor a registry file ({names}). "
            "Pass the model folder with --dir."
        )
    found = [p for p in registries_in(path) if remote_type in (None, remote_type_of(p.name))]
    if not found:
        raise ModelFilerError(
            f"No registry in {path}. Pass the model folder with --dir, or dump a model first."
        )
    if len(found) > 1:
        raise ModelFilerError(
            f"{path} holds {len(found)} registries. Pass --remote-type to pick one "
            f"({', '.join(str(remote_type_of(p.name)) for p in found)})."
        )
    return found[0]


def _found(args: argparse.Namespace) -> list[Path]:
    """The registries a command acts on: --dir's, else every one under the current folder,
    found the way ``status`` finds them."""
    if args.dir is not None:
        return [_registry(args.dir, args.remote_type)]
    root = Path(".")
    found = [p for p in find_registries(root) if args.remote_type in (None, remote_type_of(p.name))]
    if not found:
        raise ModelFilerError(
            f"No registry under {root.resolve()}. Pass the model folder with --dir, or dump a "
            "model first."
        )
    if getattr(args, "remote_address", None) and len(found) > 1:
        raise ModelFilerError(
            f"--remote-address names one remote, but {len(found)} registries were found "
            f"({_listed(found)}). Pass the model folder with --dir."
        )
    return found


def _listed(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _dir_option(args: argparse.Namespace) -> str:
    """`` --dir D`` as the user passed it, for a command shown in a message; else nothing."""
    return f" --dir {shlex.quote(args.dir)}" if args.dir is not None else ""


def _label(args: argparse.Namespace, path: Path) -> str:
    """The folder as the user would type it after --dir."""
    return str(args.dir) if args.dir is not None else str(path.parent)


def _read(args: argparse.Namespace, path: Path) -> Registry:
    """The registry at ``path``, read once per command (each step is handed this one)."""
    read: dict[Path, Registry] = args.__dict__.setdefault("registries", {})
    if path not in read:
        read[path] = read_registry(path)
    return read[path]


def _filer(args: argparse.Namespace, path: Path, action: Action | None = "fetch") -> Filer:
    """A registry's Filer: at --remote-address, else at the address this clone approved for
    it (``action``: what is about to be done with the remote), or this machine's address
    (``action=None``: commands that never reach the remote)."""
    reg = _read(args, path)
    if args.remote_address:
        return filer_for(path, args.remote_address, typed=True, registry=reg)
    if action is None:
        return local_filer(path, reg)
    return approved_filer(path, _label(args, path), action=action, registry=reg)


def _each(paths: Sequence[Path], run: Callable[[Path], int], headed: bool = False) -> int:
    """Run a command for each registry; with several, a refusal of one does not stop the
    others (each is reported, and the exit status is the worst). ``headed``: print each
    registry's path before its output."""
    if len(paths) == 1:
        return run(paths[0])
    worst = 0
    for path in paths:
        if headed:
            print(f"== {path}")
        try:
            worst = max(worst, run(path))
        except ModelFilerError as exc:
            print(f"model-filer: error: {exc}", file=sys.stderr)
            worst = USER_ERROR
    return worst


def _holding(
    args: argparse.Namespace, paths: Sequence[Path], names: Sequence[str] | None
) -> dict[Path, list[str] | None]:
    """For each registry, the ``names`` it holds (``None``: all); names none holds refused."""
    if names is None or len(paths) == 1:
        return {p: None if names is None else list(names) for p in paths}
    held = {p: [n for n in names if n in _read(args, p).entries] for p in paths}
    missing = [n for n in names if not any(n in found for found in held.values())]
    if missing:
        raise ModelFilerError(
            f"No registry found under {Path('.').resolve()} holds {', '.join(missing)} "
            f"(searched: {_listed(paths)}). Check the names with `model-filer status`."
        )
    return {p: found for p, found in held.items() if found}


def _ask_for_all(verb: str, touched: Sequence[str], again: str) -> None:
    """Refuse to act on registries the command found by itself, saying what it would touch
    (called only without --dir and --all)."""
    lines = "\n".join(f"  {line}" for line in touched)
    raise ModelFilerError(
        f"{verb} acts only on registries you name, and found these by itself:\n{lines}\n"
        f"Pass one folder with --dir, or run `model-filer {again} --all` for all of the above."
    )


def _names(args: argparse.Namespace, verb: str) -> list[str] | None:
    if args.all and args.names:
        raise ModelFilerError(f"Pass either model names or --all to {verb}, not both.")
    if not args.all and not args.names:
        raise ModelFilerError(f"Pass the names of the models to {verb}, or --all.")
    return None if args.all else list(args.names)


def cmd_status(args: argparse.Namespace) -> int:
    root = Path(args.path)
    is_registry = bool(remote_type_of(root.name))  # (a missing one is said when it is read)
    if not is_registry and not root.exists():
        raise ModelFilerError(f"{root} does not exist. Pass a folder that holds model folders.")
    paths = [root] if is_registry else list(find_registries(root))
    if not paths:
        print(f"No registries under {root}.")
    for path in paths:
        from model_filer.git.approvals import approved_address, override_of

        reg = read_registry(path)
        override = override_of(path, reg)
        filer = filer_for(path, override.address if override else None)
        where = f"  (this machine: {override.address})" if override else ""
        folder = shlex.quote(str(path.parent))
        try:  # the rule pull and push apply, asked here so status says why they refuse
            approved_address(path, reg, action="use")
        except UntrustedRemoteError:
            where += f"  (not trusted in this clone: `model-filer remote trust --dir {folder}`)"
        print(f"{path}  ->  {reg.remote_address}{where}")
        models = filer.status()
        for entry, held in models:
            meta = _metadata(entry.metrics, entry.params) if args.metrics else ""
            print(
                f"  {entry.name} ({entry.state})  {_human(entry.size)}  {_PRESENCE[held]}"
                + (f"  {meta}" if meta else "")
            )
        if not models:
            print("  [no files exist]")
        for alias in sorted(reg.aliases):
            print(f"  {_aliased(reg, alias, str(path.parent))}")
    return 0


_PRESENCE = {  # Filer.status()'s words, as the CLI says them
    "present": "present",
    "unverified": "present (unverified: run `model-filer verify`)",
    "not downloaded": "not downloaded",
    "missing": "FILE MISSING",
}


def cmd_push(args: argparse.Namespace) -> int:
    names = _names(args, "push")
    found = _found(args)
    if names is None and len(found) > 1:  # --all over found registries: those with a local one
        found = [p for p in found if _locals(args, p)]
        if not found:
            print("No local model to push: every model is synced.")
            return 0
    targets = _holding(args, found, names)

    def push(path: Path) -> int:
        filer = _filer(args, path, action="push")
        wanted = targets[path]
        before = path.read_bytes()
        there = 0  # named models already whole on the remote: nothing to upload
        try:
            if wanted is None:
                pushed = len(filer.push_all(jobs=args.jobs))
            else:
                uploaded = [filer.upload(name) for name in wanted]
                pushed, there = sum(uploaded), uploaded.count(False)
        except ModelFilerError:
            if path.read_bytes() != before:  # (the models pushed before the failure)
                print(f"Commit {path}: it records the models that were pushed.")
            raise
        # A synced model pushed again (its remote lost or damaged it) changes no entry.
        tail = f"Commit {path}." if path.read_bytes() != before else f"{path} is unchanged."
        already = f" {there} already on the remote." if there else ""
        print(f"Pushed {pushed} model(s).{already} {tail}")
        return 0

    return _each(list(targets), push)


def cmd_pull(args: argparse.Namespace) -> int:
    targets = _holding(args, _found(args), _names(args, "pull"))

    def pull(path: Path) -> int:
        filer = _filer(args, path)
        report = filer.pull(targets[path], jobs=args.jobs)
        linked = f"; {len(report.linked)} linked from the local store" if report.linked else ""
        where = f" into {path.parent}" if len(targets) > 1 else ""
        print(
            f"Fetched {len(report.done)} model(s){where}{linked}; {len(report.skipped)} "
            "already present."
        )
        report.raise_failures("pull")
        return 0

    return _each(list(targets), pull)


def cmd_rm(args: argparse.Namespace) -> int:
    if args.locals and (args.names or args.remote):
        raise ModelFilerError(
            f"rm --locals removes every local model: run `model-filer rm{_dir_option(args)} "
            "--locals` alone, without names or --remote."
        )
    if not args.locals and not args.names:
        raise ModelFilerError("Pass the names of the models to remove, or --locals.")
    if args.dir is not None:
        return _rm(args, _registry(args.dir, args.remote_type), args.names)
    paths = _found(args)
    found = (
        {p: _locals(args, p) for p in paths} if args.locals else _holding(args, paths, args.names)
    )
    targets = {p: names for p, names in found.items() if names}
    if not targets:
        print(f"No local models in the registries under {Path('.').resolve()}; none removed.")
        return 0
    if not args.all:
        what = "--locals" if args.locals else " ".join(args.names)
        touched = [f"{p}: {', '.join(n or [])}" for p, n in targets.items()]
        _ask_for_all("rm", touched, f"rm {what}{' --remote' if args.remote else ''}")
    return _each(list(targets), lambda p: _rm(args, p, targets[p]))


def _locals(args: argparse.Namespace, path: Path) -> list[str]:
    return sorted(n for n, e in _read(args, path).entries.items() if e.state == "local")


def _rm(args: argparse.Namespace, path: Path, names: list[str] | None) -> int:
    # Deleting remote objects reaches the remote: only one this clone trusts.
    filer = _filer(args, path, action="delete" if args.remote else None)
    if args.locals:
        removed = filer.remove_locals()
        print(f"Removed {len(removed)} local model(s): {', '.join(removed) or 'none'}.")
        return 0
    for name in names or []:
        filer.remove(name, remove_remote=args.remote)
    removed_remote = " and their remote objects" if args.remote else ""
    print(f"Removed {', '.join(names or [])}{removed_remote}.")
    # An alias that named a removed model would only be refused at commit: say so now.
    folder = str(path.parent)
    for alias in filer.aliases().values():
        if alias.model in (names or []):
            print(f"@{alias.name} still names {alias.model}. {alias_fix(alias.name, None, folder)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    found = _found(args)

    def verify(path: Path) -> int:
        where = f"{path.parent}: " if len(found) > 1 else ""  # which registry, as pull says
        return _verify(_filer(args, path, action=None), where)

    return _each(found, verify)


def _verify(filer: Filer, where: str = "") -> int:
    bad = filer.verify()
    for entry, path, sha in bad:
        print(f"{path}: sha256 {sha} does not match the registry ({entry.sha256})")
    done = f"{len(bad)} mismatch(es)." if bad else "all present model files match the registry."
    print(f"{where}{done}" if where else done.capitalize())
    return 1 if bad else 0


def _folder(text: str) -> Path:
    """``--dir`` of the cache commands: an existing folder, or a message that says so."""
    path = Path(text)
    if not path.is_dir():
        raise ModelFilerError(
            f"{path} is not a folder. Pass an existing model folder (or any folder of the "
            "repository) with --dir."
        )
    return path


def cmd_cache_info(args: argparse.Namespace) -> int:
    from model_filer.local.store import ObjectStore

    info = ObjectStore().info(_folder(args.dir))
    print(f"location:  {info.root}")
    print(f"objects:   {info.objects} ({info.linked} linked from a checkout)")
    print(f"bytes:     {_human(info.bytes)}")
    print(f"link type: {info.link}  (for models in {Path(args.dir).resolve()})")
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from model_filer.git.history import named_at_heads_and_tags
    from model_filer.local.store import ObjectStore

    keep = named_at_heads_and_tags(_folder(args.dir))
    done = ObjectStore().prune(args.max_size, keep)
    print(
        f"Evicted {done.evicted} object(s), freed {_human(done.freed)}; the store holds "
        f"{_human(done.remaining)} ({done.in_use} object(s) in use by checkouts are kept; "
        f"{len(keep)} named at this repository's branch heads and tags go last)."
    )
    return 0


def cmd_cache_verify(args: argparse.Namespace) -> int:
    from model_filer.local.store import ObjectStore

    store = ObjectStore()
    good, bad = store.verify()
    for sha in bad:
        print(f"{store.object_path(sha)}: its bytes do not hash to its name; removed")
    stray = store.verify_manifests()  # the chunk index of the chunked layout
    for sha in stray:
        print(f"manifest of {sha}: does not describe that object's bytes; removed")
    print(f"{good} object(s) verified, {len(bad)} bad one(s) removed (fetched again on use).")
    return 1 if bad or stray else 0


def cmd_install_hooks(args: argparse.Namespace) -> int:
    from model_filer.git.install import install_hooks

    if args.template_dir:
        from model_filer.git.install import write_hooks

        lines = write_hooks(Path(args.template_dir) / "hooks")
        lines.append(
            f"clone with `git clone --template={args.template_dir} URL`, or make it "
            f"the default: `git config --global init.templateDir {args.template_dir}`"
        )
        print("\n".join(lines))
        return 0
    for line in install_hooks(Path.cwd(), hooks=not args.merge_driver_only):
        print(line)
    return 0


def cmd_merge_registry(args: argparse.Namespace) -> int:
    from model_filer.registry.merge import merge_texts

    paths = [Path(args.base), Path(args.ours), Path(args.theirs)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelFilerError(
            f"merge-registry: no such file {', '.join(missing)}. Git runs this driver for "
            "registry files during a merge; set it up in this clone with "
            "`model-filer install-hooks --merge-driver-only`."
        )
    where = args.path or "registry"
    base, ours, theirs = (p.read_bytes() for p in paths)
    # Refused (unreadable side, other remotes): %A is left as it is, and the command git
    # runs (install.driver_command) makes a line merge with conflict markers of it.
    result = merge_texts(base, ours, theirs, where)
    # %A is git's own temp file: git reads the merge result from it.
    paths[1].write_bytes(result.text())
    if result.conflicts:
        quoted = shlex.quote(where)
        print(
            f"model-filer: {where}: {', '.join(result.conflicts)} changed differently on both "
            "branches: both versions are left between conflict markers. Keep one version of "
            f"each (delete the other and the marker lines), then `git add {quoted}`.",
            file=sys.stderr,
        )
        return 1
    return 0


# -- history (issue 10) -----------------------------------------------------------------------
def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def cmd_log(args: argparse.Namespace) -> int:
    if args.all and args.name:
        raise ModelFilerError("Pass one model NAME to `model-filer log`, or --all, not both.")
    if not args.all and not args.name:
        raise ModelFilerError(
            "Pass one model NAME to `model-filer log` (`model-filer log NAME` shows its "
            "history, `model-filer log @ALIAS` every move of an alias), or --all for every "
            "model."
        )
    args.alias = (args.name or "").startswith("@")
    if args.metric is not None and args.alias:
        raise ModelFilerError(
            f"--metric narrows a model's log; {args.name} is an alias, whose log shows its "
            f"moves. Run `model-filer log {args.name}` without --metric."
        )
    return _each(_found(args), lambda path: _log(args, path), headed=True)


def _log(args: argparse.Namespace, path: Path) -> int:
    import json

    from model_filer.git.history import AliasMove, iso_date

    rows = _filer(args, path, action=None).log(None if args.all else args.name)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    for r in rows:
        who = r.author if len(r.author) <= 20 else r.author[:19] + "~"
        when = f"{r.commit[:10]}  {iso_date(r.time)[:10]}  {who:<20}"
        if isinstance(r, AliasMove):
            print(f"{when}  @{r.alias}  {r.change:<7}  {_moved(r)}")
            continue
        e = r.entry
        shown = (
            f"{args.metric}={_shown((e.metrics or {}).get(args.metric), '-')}"
            if args.metric is not None
            else _metadata(e.metrics, e.params)
        )
        print(
            f"{when}  {r.name}  {r.change:<9}  {_short(e.sha256)}  {_human(e.size)}"
            + (f"  {shown}" if shown else "")
        )
    if not rows:
        folder = shlex.quote(_label(args, path))
        lists = (
            f"`model-filer alias --dir {folder}` lists the aliases"
            if args.alias
            else f"`model-filer status {folder}` lists the models"
        )
        what = "moves of" if args.alias else "changes to"
        name = args.name or "any model"  # (--all)
        print(f"No {what} {name} in the history of HEAD ({lists}; commit what is new).")
    return 0


def _moved(r: AliasMove) -> str:
    """``old (sha) -> new (sha)`` of an alias move, ``-`` for "unset"."""
    ends = ["-" if t is None else f"{t[0]} ({_short(t[1])})" for t in (r.old, r.new)]
    return "  ->  ".join(ends)


def _metadata(metrics: dict[str, Any] | None, params: dict[str, Any] | None) -> str:
    """``metrics auc=0.91 loss=0.2  params lr=0.1``: what a model's metadata says."""
    parts = [
        f"{label} " + " ".join(f"{k}={_shown(v)}" for k, v in sorted(values.items()))
        for label, values in (("metrics", metrics), ("params", params))
        if values
    ]
    return "  ".join(parts)


def cmd_diff(args: argparse.Namespace) -> int:
    return _each(_found(args), lambda path: _diff(args, path), headed=True)


def _diff(args: argparse.Namespace, path: Path) -> int:
    import json

    from model_filer.git.history import AliasMove, diff

    rows = diff(_filer(args, path, action=None), args.rev1, args.rev2)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    for r in rows:
        if isinstance(r, AliasMove):
            print(f"{r.change:<9} @{r.alias}  {_moved(r)}")
            continue
        as_dict = r.as_dict()
        parts = []
        for label in ("old", "new") if r.change != "annotated" else ():
            side = as_dict[label]
            if side is not None:
                lib = f", {side['library']}" if side["library"] else ""
                parts.append(f"{label} {_short(side['sha256'])} {_human(side['size'])}{lib}")
        print(f"{r.change:<9} {r.name}  {'  ->  '.join(parts)}".rstrip())
        changed = [
            f"{label} "
            + ", ".join(f"{k} {_shown(a, '-')} -> {_shown(b, '-')}" for k, (a, b) in kinds.items())
            for label in ("metrics", "params", "tags")
            if (kinds := as_dict[label])
        ]
        if as_dict["description"] is not None:
            changed.append("description changed")  # (a paragraph: --json has both)
        if changed:
            print(f"          {'; '.join(changed)}")
    if not rows:
        print(f"No model changed between {args.rev1} and {args.rev2 or 'the working tree'}.")
    return 0


# -- metadata and aliases (issue 22) ----------------------------------------------------------
def _scalar(text: str) -> Any:
    """``--param``'s rule: a JSON number, ``true``, ``false``, ``null`` or quoted string;
    anything else (``NaN`` and overflowing numbers included) is the text itself."""
    import json
    import math

    try:
        value = json.loads(text, parse_constant=str)  # NaN, Infinity: strings, not floats
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):  # 1e999
        return text
    return value if value is None or isinstance(value, (str, int, float)) else text


def _shown(value: Any, missing: str | None = None) -> str:
    """A metadata value as ``--param`` reads it back: a string that would read as another
    value is quoted (``"1.0"``); ``missing`` stands for an absent one."""
    import json

    if value is None and missing is not None:
        return missing
    return value if isinstance(value, str) and _scalar(value) == value else json.dumps(value)


def _pairs(
    items: Sequence[str] | None, option: str, parse: Callable[[str, str], Any]
) -> dict[str, Any] | None:
    """``--metric k=v ...`` as a mapping, each value parsed; ``null`` deletes the key."""
    if not items:
        return None
    found: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ModelFilerError(
                f"{option} {item!r} is not KEY=VALUE. Write it like `{option} auc=0.91`."
            )
        found[key] = None if text == "null" else parse(key, text)
    return found


def _metric(key: str, text: str) -> int | float:
    value = _scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelFilerError(
            f"--metric {key}={text}: a metric is a finite number, such as {key}=0.91 or "
            f"{key}=3 (`--metric {key}=null` deletes it). Record text with --tag or --param."
        )
    return value


def _one(args: argparse.Namespace, verb: str) -> Path:
    """The one registry a command changes: --dir's, or the only one under the current folder."""
    found = _found(args)
    if len(found) > 1:
        raise ModelFilerError(
            f"{verb} changes one registry, and {len(found)} were found ({_listed(found)}). "
            "Pass the model folder with --dir."
        )
    return found[0]


def cmd_annotate(args: argparse.Namespace) -> int:
    metrics = _pairs(args.metric, "--metric", _metric)
    params = _pairs(args.param, "--param", lambda _, text: _scalar(text))
    tags = _pairs(args.tag, "--tag", lambda _, text: text)
    if metrics is None and params is None and tags is None and args.description is None:
        raise ModelFilerError(
            f"Nothing to record on {args.name}: pass --metric, --param, --tag or "
            f"--description, e.g. `model-filer annotate {args.name} --metric auc=0.91`."
        )
    path = _one(args, "annotate")
    entry = _filer(args, path, action=None).annotate(
        args.name, metrics=metrics, params=params, tags=tags, description=args.description
    )
    print(f"{args.name}: {_recorded(entry, args.description)}. Commit {path}.")
    return 0


def _recorded(entry: Entry, description: str | None) -> str:
    """What an entry holds after ``annotate``: its metrics and params (:func:`_metadata`),
    its tags as ``--tag`` takes them back (shell-quoted), and whether this command set or
    removed the description (its text may be long: not repeated)."""
    parts = [_metadata(entry.metrics, entry.params)] if entry.metrics or entry.params else []
    if entry.tags:
        parts.append("tags " + " ".join(shlex.quote(f"{k}={v}") for k, v in entry.tags.items()))
    if description is not None:
        parts.append("description set" if description else "description removed")
    return "  ".join(parts) or "no metrics, params or tags"


def cmd_alias(args: argparse.Namespace) -> int:
    # (NAME given as "" or "@" is a name, and refused as one, as Filer.set_alias refuses it.)
    alias = args.alias.removeprefix("@") if args.alias is not None else None
    if args.remove and (alias is None or args.model):
        raise ModelFilerError(
            "--remove drops one alias: run `model-filer alias NAME --remove`, without MODEL."
        )
    if alias is not None:
        check_alias(alias)
    path = _one(args, "alias")
    filer = _filer(args, path, action=None)
    if alias is not None and (args.remove or args.model):  # (argparse fills NAME first)
        filer.set_alias(alias, args.model)  # (None with --remove: drops it)
        reg = filer.registry()
        done = f"@{alias} removed" if args.remove else _aliased(reg, alias, ".")
        entry = reg.entries.get(args.model or "")
        if entry is not None and entry.state == "local":  # the commit hook would refuse it
            done += (
                f". {args.model} is local: push it before you commit "
                f"(`model-filer push{_dir_option(args)} {args.model}`)"
            )
        print(f"{done}. Commit {path}.")
        return 0
    reg = filer.registry()
    if alias is not None and alias not in reg.aliases:
        raise ModelFilerError(
            f"{path} has no alias @{alias}. Set it with `model-filer alias{_dir_option(args)} "
            f"{alias} MODEL`."
        )
    for name in [alias] if alias is not None else sorted(reg.aliases):
        print(_aliased(reg, name, _label(args, path)))
    if not reg.aliases:
        print(
            f"No aliases in {path}. Set one with `model-filer alias{_dir_option(args)} NAME MODEL`."
        )
    return 0


def _aliased(reg: Registry, alias: str, folder: str) -> str:
    """``@alias ->  model (sha)``, and why it cannot be used when it cannot (its fix naming
    ``--dir folder``, the registry's folder as seen from here)."""
    model, sha = reg.aliases[alias]
    problem = alias_problem(reg, alias, folder)
    return f"@{alias}  ->  {model} ({_short(sha)})" + (f"  (STALE: {problem})" if problem else "")


def cmd_gc(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from model_filer.git import gc

    if not args.remote:
        raise ModelFilerError(
            "gc needs --remote: `model-filer gc --remote` lists remote objects no reachable "
            "registry names (add --delete to delete them)."
        )
    if args.grace < 0:
        raise ModelFilerError(f"--grace must be 0 or more days, got {args.grace:g}.")
    from model_filer.git.approvals import remote_key

    groups: dict[str, Path] = {}  # one plan per remote: it counts every registry naming it
    for path in _found(args):
        reg = _read(args, path)
        groups.setdefault(remote_key(reg.remote_type, reg.remote_address, reg.remote_id), path)
    print(f"model-filer: {gc.UNFETCHED_WARNING}", file=sys.stderr)
    asked = args.dir is not None or args.all
    pending: list[str] = []

    def one(path: Path) -> int:
        filer = _filer(args, path, action="delete" if args.delete and asked else "fetch")
        found = gc.plan(filer, timedelta(days=args.grace), current=_read(args, path))
        for obj in found.candidates:
            print(f"{obj.key}  {_human(obj.size)}  {obj.modified.isoformat(timespec='seconds')}")
        count = len(found.candidates)
        summary = (
            f"{count} unreferenced object(s), {_human(found.total)} ({found.total} bytes) on "
            f"{filer.remote.address}; kept {found.kept_named} named by {found.registries} "
            f"registry version(s) and {found.kept_young} younger than {args.grace:g} day(s)."
        )
        if found.shared and not args.shared_prefix_ok:
            print(f"model-filer: {gc.shared_warning(filer, found.foreign)}", file=sys.stderr)
        if not args.delete:
            print(summary + (" Run again with --delete to delete them." if count else ""))
            return 0
        if not asked:
            print(summary)
            if count:
                pending.append(f"{count} object(s) on {filer.remote.address} ({path})")
            return 0
        deleted = gc.collect(filer, found.candidates, shared_prefix_ok=args.shared_prefix_ok)
        print(summary + f" Deleted {len(deleted)}.")
        return 0

    code = _each(list(groups.values()), one)
    if pending:
        _ask_for_all("gc --delete", pending, f"gc --remote --delete --grace {args.grace:g}")
    return code


def cmd_remote(args: argparse.Namespace) -> int:
    from model_filer.git.approvals import approve, describe

    if args.action == "set":
        return _remote_set(args)
    if args.dir is not None:
        paths = [_registry(args.dir, args.remote_type)]
    else:
        paths = _found(args)
        if not args.all:
            touched = [f"{p}: {describe(_read(args, p))}" for p in paths]
            _ask_for_all("remote trust", touched, "remote trust")
    for path in paths:
        done = approve(path, _read(args, path))
        print(f"This clone now uses {done.address} ({done.key}) for {path}'s models.")
    return 0


def _remote_set(args: argparse.Namespace) -> int:
    from model_filer.git.approvals import require_per_machine, set_address
    from model_filer.remotes import get_remote

    if args.dir is None:
        local = [p for p in find_registries(Path(".")) if remote_type_of(p.name) == "local"]
        example = (
            f"`model-filer remote set --dir {shlex.quote(str(local[0].parent))} "
            f"{shlex.quote(args.address)}`"
            if local
            else "`model-filer status` lists the model folders (none with a local-folder "
            "remote here)"
        )
        raise ModelFilerError(
            f"remote set needs --dir: the model folder whose remote is at {args.address} on "
            f"this machine. E.g. {example}."
        )
    path = _registry(args.dir, args.remote_type)
    reg = _read(args, path)
    require_per_machine(reg)  # (before the folder is looked at: the right error first)
    if not Path(args.address).expanduser().is_dir():
        raise ModelFilerError(
            f"{args.address} does not exist (is the share mounted?). Mount it, then run this again."
        )
    remote = get_remote(reg.remote_type, args.address)
    remote.check_matches(reg.remote_address, str(path), reg.remote_id)  # the registry's remote
    done = set_address(path, reg, args.address)
    print(f"On this machine {path}'s remote is {done.address} (not committed; git config).")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from model_filer.demo import run_demo

    return run_demo(keep=args.keep)


def _folder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-d", "--dir", help="model folder or registry file (default: every registry under .)"
    )
    p.add_argument("--remote-type", help="which registry, when a folder holds several")
    p.add_argument("--remote-address", help="override the remote address the registry records")


def _metadata_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("annotate", help="record a model's metrics, params, tags, description")
    _folder_options(p)
    p.add_argument("name", metavar="NAME")
    deletes = "; repeatable; KEY=null deletes KEY"
    p.add_argument(
        "--metric",
        action="append",
        metavar="KEY=VALUE",
        help=f"a finite number, e.g. auc=0.91 or epochs=12{deletes}",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="read as an integer, a float, true or false, and anything else as text "
        f"(in double quotes, a number stays text: version='\"1.0\"'){deletes}",
    )
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help=f"text{deletes}")
    p.add_argument(
        "--description", metavar="TEXT", help='free text about the model ("" deletes it)'
    )
    p.set_defaults(func=cmd_annotate)
    p = sub.add_parser("alias", help="set, show or remove an alias such as @production")
    _folder_options(p)
    p.add_argument("alias", nargs="?", metavar="NAME", help="the alias (default: list them)")
    p.add_argument("model", nargs="?", metavar="MODEL", help="point NAME at this model")
    p.add_argument("--remove", action="store_true", help="drop the alias NAME")
    p.set_defaults(func=cmd_alias)


def _cache_parsers(cache: argparse.ArgumentParser) -> None:
    from model_filer.sizes import parse_size

    sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = sub.add_parser("info", help="location, objects, bytes and the link type in use")
    p.add_argument("-d", "--dir", default=".", help="model folder to tell the link type for")
    p.set_defaults(func=cmd_cache_info)
    p = sub.add_parser("prune", help="evict least recently used objects no checkout uses")
    p.add_argument(
        "--max-size", required=True, type=parse_size, metavar="SIZE", help="e.g. 20GB, 500MiB"
    )
    p.add_argument(
        "-d",
        "--dir",
        default=".",
        help="a folder in the git repository whose branch heads' and tags' models go last",
    )
    p.set_defaults(func=cmd_cache_prune)
    p = sub.add_parser("verify", help="re-hash every object; remove bad ones")
    p.set_defaults(func=cmd_cache_verify)


#: What ``model-filer [COMMAND] --help`` says first and last: one line, and an example.
_DESCRIBED: dict[str, tuple[str, str]] = {
    "": (
        "Keep pickled models out of git: a registry in the repository, the bytes in S3 or a "
        "shared folder.",
        "model-filer status",
    ),
    "status": (
        "List every registry under PATH, each model's state and whether its file is here.",
        "model-filer status models",
    ),
    "push": (
        "Upload local models to the remote their registry names and mark them synced.",
        "model-filer push --dir models --all",
    ),
    "pull": (
        "Download the synced models that are missing here or stale.",
        "model-filer pull --dir models churn_model",
    ),
    "rm": (
        "Remove models from the registry with their local files; the remote objects stay "
        "unless --remote.",
        "model-filer rm --dir models --locals",
    ),
    "verify": (
        "Hash the local model files again and compare them with the registry.",
        "model-filer verify --dir models",
    ),
    "cache": (
        "Inspect, prune or check the local object store that checkouts share.",
        "model-filer cache info",
    ),
    "cache info": (
        "Show the local object store's location, objects, bytes and link type.",
        "model-filer cache info --dir models",
    ),
    "cache prune": (
        "Evict the least recently used objects that no checkout uses, down to a size.",
        "model-filer cache prune --max-size 10GB",
    ),
    "cache verify": (
        "Hash every object of the local store again and remove the bad ones.",
        "model-filer cache verify",
    ),
    "install-hooks": (
        "Install plain git hooks and the registry merge driver in this repository.",
        "model-filer install-hooks --merge-driver-only",
    ),
    "merge-registry": (
        "Merge two versions of a registry entry by entry; git runs it as a merge driver.",
        "model-filer merge-registry %O %A %B %P",
    ),
    "log": (
        "Show a model's changes, metrics and params, or an alias's moves, through git history.",
        "model-filer log --dir models churn_model --metric auc",
    ),
    "diff": (
        "Show the models added, removed, changed or annotated, and the aliases moved, since REV1.",
        "model-filer diff --dir models v1.0 HEAD",
    ),
    "annotate": (
        "Add or replace a model's metrics, params, tags or description; its bytes stay untouched.",
        "model-filer annotate --dir models churn_v3 --metric auc=0.91 --param lr=0.1",
    ),
    "alias": (
        "Point an alias such as production at a model, show it, or remove it.",
        "model-filer alias --dir models production churn_v3",
    ),
    "gc": (
        "List, or delete with --delete, the remote objects no reachable registry names.",
        "model-filer gc --remote --dir models",
    ),
    "remote": (
        "Trust the remote a registry names, or set where this machine mounts it.",
        "model-filer remote trust --dir models",
    ),
    "remote trust": (
        "Fetch from the remote the registry names now (recorded in this clone's git config).",
        "model-filer remote trust --dir models",
    ),
    "remote set": (
        "Set where this machine mounts a registry's local-folder remote (not committed).",
        "model-filer remote set --dir models /Volumes/models",
    ),
    "demo": (
        "Run the whole workflow in a temp folder, with a local-folder remote.",
        "model-filer demo",
    ),
}


def _commands(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``p`` and every subcommand's parser under it, each with its command words."""
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _describe(top: argparse.ArgumentParser) -> None:
    for path, p in _commands(top):
        described = _DESCRIBED.get(" ".join(path))
        if described is not None:
            p.description, example = described
            p.epilog = f"example:\n  {example}"
            p.formatter_class = argparse.RawDescriptionHelpFormatter


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="model-filer")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="models of every registry under PATH and their state")
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--metrics", action="store_true", help="each model's metrics and params too")
    p.set_defaults(func=cmd_status)
    for verb, helptext, func in (
        ("push", "upload local models", cmd_push),
        ("pull", "download synced models", cmd_pull),
    ):
        p = sub.add_parser(verb, help=helptext)
        _folder_options(p)
        p.add_argument("names", nargs="*", metavar="NAME")
        p.add_argument("--all", action="store_true", help=f"{verb} every model that needs it")
        p.add_argument("-j", "--jobs", type=int, default=None, help="parallel transfers")
        p.set_defaults(func=func)
    p = sub.add_parser("rm", help="remove models from the registry (and their files)")
    _folder_options(p)
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument(
        "--remote",
        dest="remote",
        action="store_true",
        help="also delete the remote object (breaks older commits!)",
    )
    p.add_argument("--locals", action="store_true", help="remove every local model")
    p.add_argument("--all", action="store_true", help="without --dir: in every registry found")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("verify", help="re-hash local model files against the registry")
    _folder_options(p)
    p.set_defaults(func=cmd_verify)
    _cache_parsers(sub.add_parser("cache", help="the local object store shared by checkouts"))
    p = sub.add_parser("install-hooks", help="plain git hooks + registry merge driver")
    p.add_argument(
        "--merge-driver-only",
        action="store_true",
        help="only the merge driver (for pre-commit framework users)",
    )
    p.add_argument(
        "--template-dir",
        metavar="DIR",
        help="write the hooks into DIR/hooks for git clone --template=DIR (they then run "
        "during the clone itself) instead of into this repository",
    )
    p.set_defaults(func=cmd_install_hooks)
    p = sub.add_parser("merge-registry", help="git merge driver: %%O %%A %%B %%P")
    for name in ("base", "ours", "theirs"):
        p.add_argument(name)
    p.add_argument("path", nargs="?")
    p.set_defaults(func=cmd_merge_registry)
    p = sub.add_parser("log", help="changes of a model through git history, newest first")
    _folder_options(p)
    p.add_argument("name", nargs="?", metavar="NAME", help="a model, or @ALIAS for its moves")
    p.add_argument("--all", action="store_true", help="every model's changes")
    p.add_argument("--metric", metavar="KEY", help="show this metric only (e.g. auc)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_log)
    p = sub.add_parser("diff", help="models added, removed and changed between revisions")
    _folder_options(p)
    p.add_argument("rev1", metavar="REV1")
    p.add_argument("rev2", nargs="?", metavar="REV2", help="default: the working tree")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_diff)
    _metadata_parsers(sub)
    p = sub.add_parser("gc", help="remote objects no reachable registry names")
    _folder_options(p)
    p.add_argument("--remote", action="store_true", help="collect on the remote (required)")
    p.add_argument("--grace", type=float, default=14.0, metavar="DAYS", help="default 14")
    p.add_argument("--delete", action="store_true", help="delete them (default: list only)")
    p.add_argument("--all", action="store_true", help="without --dir: every remote found")
    p.add_argument(
        "--shared-prefix-ok",
        action="store_true",
        help="delete shared chunks although other repositories push to the prefix",
    )
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("remote", help="trust a registry's remote, or set its path here")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, helptext in (
        ("trust", "fetch from the remote the registry names now (recorded in git config)"),
        ("set", "where this machine reaches the remote (git config, not committed)"),
    ):
        a = actions.add_parser(action, help=helptext)
        if action == "set":
            a.add_argument("address", metavar="ADDRESS", help="e.g. /Volumes/models")
        a.add_argument("-d", "--dir", help="model folder or registry file")
        a.add_argument("--remote-type", help="which registry, when a folder holds several")
        if action == "trust":
            a.add_argument("--all", action="store_true", help="without --dir: every registry")
        a.set_defaults(func=cmd_remote)
    p = sub.add_parser("demo", help="the whole workflow in a temp folder, local remote")
    p.add_argument("--keep", action="store_true", help="keep the temp folder to look at")
    p.set_defaults(func=cmd_demo)
    _describe(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `model-filer log --json | head`: the reader had enough
        # Python's own recipe: stdout to devnull, so the flush at exit does not fail again.
        with contextlib.suppress(OSError):  # (a stdout without a descriptor: nothing to do)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModelFilerError as exc:
        print(f"model-filer: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"model-filer: error: {exc.strerror or exc}{where}. Check the path and its "
            "permissions, then run the command again.",
            file=sys.stderr,
        )
        return USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
