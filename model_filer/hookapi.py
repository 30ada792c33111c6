"""What the git hooks use of the library, offered on purpose and in one place.

The hooks (``model_filer_hooks``) import only this module, so the library's inner layout can
change without breaking them. Nothing here imports boto3 or GitPython: the commit hook runs on
every commit and must feel instant; the hooks that transfer import them when they do.
"""

from __future__ import annotations

from .errors import ModelFilerError, UntrustedRemoteError
from .files import MODEL_SUFFIX, registry_filename, remote_type_of
from .gitops import (
    NULL_REF,
    Blob,
    Repo,
    changed_registries,
    open_repo,
    pin_work_tree,
    read_staged,
    rebase_in_progress,
    registries_at,
    staged_paths,
    toplevel,
)
from .install import ensure_merge_driver
from .progress import count_bar
from .registry import Entry, Registry, parse
from .remote_trust import fetch_address, override_of, trusted_filer
from .remotes import FAIL_FAST, Remote, available_types, get_remote
from .sizes import parse_size
from .trust import SERVED, TrustedSet, can_trust, never_reason, project_patterns

__all__ = [
    "FAIL_FAST",
    "MODEL_SUFFIX",
    "NULL_REF",
    "SERVED",
    "Blob",
    "Entry",
    "ModelFilerError",
    "Registry",
    "Remote",
    "Repo",
    "TrustedSet",
    "UntrustedRemoteError",
    "available_types",
    "can_trust",
    "changed_registries",
    "count_bar",
    "ensure_merge_driver",
    "fetch_address",
    "get_remote",
    "never_reason",
    "open_repo",
    "override_of",
    "parse",
    "parse_size",
    "pin_work_tree",
    "project_patterns",
    "read_staged",
    "rebase_in_progress",
    "registries_at",
    "registry_filename",
    "remote_type_of",
    "staged_paths",
    "toplevel",
    "trusted_filer",
]
