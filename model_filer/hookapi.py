"""What the git hooks and the CLI use of the library, offered on purpose and in one place.

The hooks (``model_filer_hooks``) and :mod:`model_filer.cli` import this module, never a
Filer's parts: it is the one place that knows them, so the library's inner layout can change
without breaking its callers. The commit hook runs on every commit and must feel instant:
nothing here imports boto3, a cloud SDK or the Filer until a function that transfers runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from model_filer.errors import IntegrityError, ModelFilerError, UntrustedRemoteError
from model_filer.fs.layout import MODEL_SUFFIX, registry_filename, remote_type_of
from model_filer.git import gitops
from model_filer.git.approvals import (
    CONFIG_KEYS,
    Action,
    Clone,
    approved_address,
    bootstrap,
    read_clone,
)
from model_filer.git.gitops import (
    NULL_REF,
    Blob,
    Repo,
    blob_id,
    changed_registries,
    locate,
    open_repo,
    pin_work_tree,
    read_staged,
    rebase_in_progress,
    registries_at,
    staged_paths,
)
from model_filer.git.install import DRIVER_CONFIG, ensure_merge_driver
from model_filer.local.store_root import default_root
from model_filer.pickles.trust import SERVED, TrustedSet, can_trust, never_reason, project_patterns
from model_filer.registry.codec import parse
from model_filer.registry.discovery import read_registry
from model_filer.registry.model import Entry, Registry, alias_problems
from model_filer.registry.names import MANIFEST_KINDS, STORAGE_DIR, storage_key_kind
from model_filer.remotes import FAIL_FAST, PATIENT, Network, Remote, available_types, get_remote
from model_filer.sizes import parse_size
from model_filer.transfer.progress import count_bar

if TYPE_CHECKING:
    from model_filer.filer import Filer
    from model_filer.transfer.transfers import TransferReport

__all__ = [
    "FAIL_FAST",
    "MANIFEST_KINDS",
    "MODEL_SUFFIX",
    "NULL_REF",
    "SERVED",
    "STORAGE_DIR",
    "Blob",
    "Entry",
    "HookGit",
    "IntegrityError",
    "ModelFilerError",
    "Registry",
    "Remote",
    "Repo",
    "TrustedSet",
    "UntrustedRemoteError",
    "alias_problems",
    "approved_address",
    "approved_filer",
    "available_types",
    "can_trust",
    "changed_registries",
    "count_bar",
    "default_root",
    "filer_for",
    "get_remote",
    "hook_git",
    "local_filer",
    "locate",
    "manifest_needs",
    "may_hold",
    "never_reason",
    "parse",
    "parse_size",
    "pin_work_tree",
    "project_patterns",
    "pull_entries",
    "read_registry_once",
    "read_staged",
    "rebase_in_progress",
    "registries_at",
    "registry_filename",
    "remote_type_of",
    "staged_paths",
    "storage_key_kind",
    "under_pre_commit",
]


def under_pre_commit() -> bool:
    """Whether the pre-commit framework runs this hook (it names the refs, and read git's
    stdin lines itself)."""
    names = ("PRE_COMMIT", "PRE_COMMIT_TO_REF", "PRE_COMMIT_LOCAL_BRANCH", "PRE_COMMIT_FROM_REF")
    return any(os.environ.get(v) for v in names)


# -- a hook's view of git, read once a run --------------------------------------------------
class HookGit:
    """The repository a hook runs in and this clone's config (merge driver and remote
    approvals), read with one ``git rev-parse`` and one ``git config`` for the whole run."""

    def __init__(self, repo: Repo, config: Mapping[str, str]) -> None:
        self.repo = repo
        self.config = config
        self._clone: Clone | None = None

    def merge_driver(self) -> str | None:
        """Set up the registry merge driver when the clone lacks it; say so."""
        return ensure_merge_driver(self.repo, self.config)

    def clone(
        self,
        listed: tuple[str, Mapping[str, str]] | None = None,
        read: Mapping[str, tuple[str, Registry]] | None = None,
    ) -> Clone:
        """This clone's remote approvals, the clone's own registries recorded once (see
        :func:`model_filer.git.approvals.bootstrap` for ``listed`` and ``read``)."""
        if self._clone is None:
            found = read_clone(self.repo, self.config)
            assert found is not None  # noqa: S101 - read_clone is None only without a repo
            self._clone = bootstrap(found, listed, read)
        return self._clone


def hook_git(folder: Path | None = None) -> HookGit:
    """The hook's :class:`HookGit`; :class:`ModelFilerError` outside git."""
    repo = open_repo(folder)
    config = gitops.config_read(rf"^({DRIVER_CONFIG}|{CONFIG_KEYS})\.", repo.top)
    return HookGit(repo, config or {})


def read_registry_once(path: Path) -> tuple[str, Registry]:
    """A working tree registry's git blob id and content, reading the file once."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        read_registry(path)  # raises: no registry there
        raise
    return blob_id(data), parse(data, str(path), filename=str(path))


# -- Filers for registry files --------------------------------------------------------------
def filer_for(
    path: Path,
    remote_address: str | None = None,
    network: Network = PATIENT,
    typed: bool = False,
    registry: Registry | None = None,
) -> Filer:
    """The Filer of a registry file, with the remote it records (or ``remote_address``).

    Its writes vouch for the registry's remote only when ``typed``: the user typed the
    address (``--remote-address``). An address read from the registry, or from this clone's
    approvals, is not the user's word. ``registry``: the file's content, just read (the
    Filer does not read it again).
    """
    from model_filer.filer import Filer

    rtype = remote_type_of(path)
    if rtype is None:
        raise ModelFilerError(f"{path} is not a registry file (expected .<type>_registry).")
    if remote_address is None:
        registry = read_registry(path) if registry is None else registry
        remote_address = registry.remote_address
    elif registry is None and not path.is_file():  # the Filer reads (and checks) it itself
        read_registry(path)
    return Filer(
        path.parent,
        remote_address,
        remote_type=rtype,
        network=network,
        _vouch=typed,
        _registry=registry,
    )


def approved_filer(
    path: Path,
    folder: str | None = None,
    network: Network = PATIENT,
    action: Action = "fetch",
    registry: Registry | None = None,
) -> Filer:
    """The Filer of a registry file, at the address this clone approved for it (or refuse);
    ``registry``: its content when the caller has read it."""
    reg = read_registry(path) if registry is None else registry
    return filer_for(path, approved_address(path, reg, folder, action), network, registry=reg)


def local_filer(path: Path, registry: Registry | None = None) -> Filer:
    """The Filer of a registry file for work that fetches nothing: this machine's address."""
    from model_filer.git.approvals import override_of

    reg = read_registry(path) if registry is None else registry
    override = override_of(path, reg)
    return filer_for(path, override.address if override else None, registry=reg)


def manifest_needs(remote: Remote, key: str, sha256: str, size: int) -> dict[str, tuple[int, int]]:
    """The packs or chunks a synced entry's manifest names, each with the lengths it may have, read
    from its remote and checked (:func:`model_filer.storage.manifest.manifest_needs`,
    imported only when a manifest is read)."""
    from model_filer.storage.manifest import manifest_needs as read

    return read(remote, key, sha256, size)


def may_hold(stored: int, size: int) -> bool:
    """Whether a stored object (chunked layout) of ``stored`` bytes may hold ``size`` bytes,
    as a push judges it (imported only when the hook meets one: the commit hook never does)."""
    from model_filer.storage.stored import may_hold as judge

    return judge(stored, size)


def pull_entries(
    filer: Filer, entries: Sequence[Entry], jobs: int | None, on_done: Callable[[int], None]
) -> TransferReport:
    """Fetch ``entries`` (from a registry the caller read) into the Filer's folder."""
    return filer.transfers.pull(list(entries), jobs, on_done=on_done)
