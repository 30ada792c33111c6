"""The registry merge driver: ``model_filer.registry.merge`` alone, then through ``git merge``."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_filer.errors import RegistryError
from model_filer.git.install import install_hooks
from model_filer.registry.file import Entry, Registry, dumps, parse
from model_filer.registry.merge import merge, merge_texts
from tests.support.gitrepo import commit, git, init_repo, model_filer, registry_bytes, sample_entry

ADDRESS = "/srv/models"
REGISTRY = "models/.local_registry"


def reg(*entries: Entry, address: str = ADDRESS, remote_type: str = "local") -> Registry:
    return Registry(remote_type, address, {e.name: e for e in entries})


A = sample_entry("a")
B = sample_entry("b")
C = sample_entry("c")


def changed(entry: Entry, digit: str) -> Entry:
    sha = digit * 64
    return entry._replace(sha256=sha, key=f"{entry.name}/{sha}.pkl")


def test_two_branches_adding_different_models_merge_cleanly():
    result = merge(reg(A), reg(A, B), reg(A, C))
    assert result.conflicts == []
    assert result.registry == reg(A, B, C)


def test_a_branch_naming_a_map_merges_with_one_of_format_3_into_format_4():
    """One branch pushed a big model in packs (format 4), the other a small one (format 3):
    the merged file is written in the format its content needs, in both directions."""
    from model_filer.registry.names import storage_key

    big = B._replace(key=storage_key("maps", B.sha256))
    small = C._replace(key=storage_key("objects", C.sha256))
    for ours, theirs in ((reg(A, big), reg(A, small)), (reg(A, small), reg(A, big))):
        text = [dumps(r) for r in (reg(A), ours, theirs)]
        assert sorted(t.split(b"\nformat: ")[1][:1] for t in text[1:]) == [b"3", b"4"]
        result = merge_texts(*text, REGISTRY)
        assert result.conflicts == [] and result.registry == reg(A, big, small)
        merged = dumps(result.registry)
        assert b"\nformat: 4\n" in merged and parse(merged, REGISTRY) == reg(A, big, small)


def test_the_result_keeps_the_remote():
    result = merge(reg(), reg(B, address="/x"), reg(C, address="/x"))
    assert (result.registry.remote_type, result.registry.remote_address) == ("local", "/x")


def test_the_same_model_changed_two_ways_conflicts():
    ours, theirs = changed(A, "1"), changed(A, "2")
    result = merge(reg(A, B), reg(ours, B), reg(theirs, B, C))
    assert result.conflicts == ["a"]
    assert result.registry.entries == {"a": ours, "b": B, "c": C}  # ours kept for "a"


def test_both_adding_the_same_name_with_other_bytes_conflicts():
    result = merge(reg(), reg(changed(A, "1")), reg(changed(A, "2")))
    assert result.conflicts == ["a"]


def test_both_making_the_same_change_is_no_conflict():
    new = changed(A, "3")
    result = merge(reg(A), reg(new), reg(new))
    assert result.conflicts == []
    assert result.registry == reg(new)


def test_one_side_changed_the_other_did_not():
    new = changed(A, "3")
    assert merge(reg(A), reg(new), reg(A)).registry == reg(new)
    assert merge(reg(A), reg(A), reg(new)).registry == reg(new)


@pytest.mark.parametrize("deleted_on", ["ours", "theirs"])
def test_one_side_deleted_the_other_unchanged(deleted_on):
    ours, theirs = (reg(B), reg(A, B)) if deleted_on == "ours" else (reg(A, B), reg(B))
    result = merge(reg(A, B), ours, theirs)
    assert result.conflicts == []
    assert result.registry == reg(B)


@pytest.mark.parametrize("deleted_on", ["ours", "theirs"])
def test_one_side_deleted_the_other_changed_conflicts(deleted_on):
    new = changed(A, "4")
    ours, theirs = (reg(), reg(new)) if deleted_on == "ours" else (reg(new), reg())
    result = merge(reg(A), ours, theirs)
    assert result.conflicts == ["a"]


def test_both_deleted():
    result = merge(reg(A, B), reg(B), reg(B))
    assert result.conflicts == []
    assert result.registry == reg(B)


@pytest.mark.parametrize("synced_on", ["ours", "theirs"])
def test_same_bytes_local_on_one_side_synced_on_the_other_takes_synced(synced_on):
    local = sample_entry("a", state="local")
    synced = local._replace(state="synced", key=f"a/{local.sha256}.pkl")
    ours, theirs = (synced, local) if synced_on == "ours" else (local, synced)
    result = merge(reg(), reg(ours), reg(theirs))
    assert result.conflicts == []
    assert result.registry.entries["a"] == synced


def test_no_common_ancestor():
    result = merge(None, reg(A, B), reg(A, C))
    assert result.conflicts == []
    assert result.registry == reg(A, B, C)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (reg(A, address="/one"), reg(A, address="/two")),
        (reg(A, remote_type="local"), reg(A, remote_type="s3", address="bucket")),
    ],
)
def test_a_remote_mismatch_is_a_registry_error(ours, theirs):
    with pytest.raises(RegistryError, match="different remotes") as exc:
        merge(reg(), ours, theirs)
    assert "merge by hand" in str(exc.value)


def test_merge_texts_round_trips_the_bytes():
    base = registry_bytes("local", ADDRESS, A)
    ours = registry_bytes("local", ADDRESS, A, B)
    theirs = registry_bytes("local", ADDRESS, A, C)
    result = merge_texts(base, ours, theirs, REGISTRY)
    assert dumps(result.registry) == registry_bytes("local", ADDRESS, A, B, C)
    assert parse(dumps(result.registry), "merged") == result.registry


def test_merge_texts_with_an_empty_ancestor():
    ours, theirs = registry_bytes("local", ADDRESS, B), registry_bytes("local", ADDRESS, C)
    result = merge_texts(b"", ours, theirs, REGISTRY)
    assert result.registry == reg(B, C)


@pytest.mark.parametrize("side", ["ancestor", "ours", "theirs"])
def test_merge_texts_names_the_unreadable_side(side):
    good = registry_bytes("local", ADDRESS, A)
    texts = {"ancestor": good, "ours": good, "theirs": good}
    texts[side] = b"format: 1\nremote: [\n"
    with pytest.raises(RegistryError, match=rf"{REGISTRY} \({side}\): not valid registry YAML"):
        merge_texts(texts["ancestor"], texts["ours"], texts["theirs"], REGISTRY)


def test_merge_texts_refuses_conflict_markers():
    good = registry_bytes("local", ADDRESS, A)
    with pytest.raises(RegistryError, match="conflict markers"):
        merge_texts(good, good, b"<<<<<<< HEAD\n" + good, REGISTRY)


# -- real git ---------------------------------------------------------------------------------
@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote"
    path.mkdir()
    return path


def two_branches(repo: Path, remote: Path, names: tuple[str, str]) -> None:
    """``left`` and ``right`` each dump and push one model from a common base."""
    filer = model_filer(repo / "models", remote)
    filer.dump({"base": 0}, "base_model", push=True)
    commit(repo, "base model")
    for branch, name in zip(("left", "right"), names, strict=True):
        git(repo, "checkout", "-q", "-b", branch, "main")
        model_filer(repo / "models", remote).dump({"model": name}, name, push=True)
        commit(repo, f"add {name}")
    git(repo, "checkout", "-q", "left")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = init_repo(tmp_path / "repo")
    monkeypatch.chdir(path)
    return path


def test_without_the_driver_adding_two_models_conflicts(repo, remote):
    """The control: a line merge of two neighbouring additions conflicts."""
    two_branches(repo, remote, ("model_b", "model_c"))
    assert git(repo, "merge", "-q", "--no-edit", "right", check=False).returncode != 0
    assert "<<<<<<<" in (repo / REGISTRY).read_text()


def test_with_the_driver_two_models_merge_cleanly(repo, remote):
    assert install_hooks(repo, hooks=False)
    commit(repo, "merge driver")
    two_branches(repo, remote, ("model_b", "model_c"))

    merged = git(repo, "merge", "--no-edit", "right", check=False)

    assert merged.returncode == 0, merged.stdout + merged.stderr
    text = (repo / REGISTRY).read_text()
    assert "<<<<<<<" not in text
    filer = model_filer(repo / "models", remote)
    assert {e.name: e.state for e in filer.list_files()} == {
        "base_model": "synced",
        "model_b": "synced",
        "model_c": "synced",
    }
    assert git(repo, "status", "--porcelain").stdout.strip() == ""
    (repo / "models" / "model_c.pkl").unlink()  # dumped on the other branch's checkout
    assert filer.load("model_c") == {"model": "model_c"}


def test_with_the_driver_a_real_conflict_is_reported(repo, remote):
    assert install_hooks(repo, hooks=False)
    commit(repo, "merge driver")
    filer = model_filer(repo / "models", remote)
    filer.dump({"base": 0}, "base_model", push=True)
    commit(repo, "base model")
    for branch, value in (("left", 1), ("right", 2)):
        git(repo, "checkout", "-q", "-b", branch, "main")
        (repo / "models" / "shared.pkl").unlink(missing_ok=True)
        model_filer(repo / "models", remote).dump({"v": value}, "shared", push=True)
        commit(repo, f"shared on {branch}")
    git(repo, "checkout", "-q", "left")

    merged = git(repo, "merge", "--no-edit", "right", check=False)

    assert merged.returncode != 0
    out = merged.stdout + merged.stderr
    assert f"{REGISTRY}: shared changed differently on both branches" in out
    assert "both versions are left between conflict markers" in out
    assert "CONFLICT" in out
    # Both versions of the one conflicting entry, whole, between markers; the rest merged.
    text = (repo / REGISTRY).read_text()
    head, _, rest = text.partition("<<<<<<< ours\n")
    mine, _, rest = rest.partition("=======\n")
    theirs, _, tail = rest.partition(">>>>>>> theirs\n")
    assert "  base_model:\n" in head and "<<<<<<<" not in tail
    assert mine.startswith("  shared:\n") and theirs.startswith("  shared:\n")
    assert mine != theirs
    # A plain `git add` cannot keep one side silently: the registry does not parse, and the
    # advice is the one step left (not to set up the driver that made these markers).
    with pytest.raises(RegistryError) as refused:
        parse((repo / REGISTRY).read_bytes(), REGISTRY, filename=REGISTRY)
    assert "the merge driver kept both versions" in str(refused.value)
    assert (
        f"Keep one of the two versions of each, delete the marker lines, then `git add {REGISTRY}`"
        in str(refused.value)
    )
    assert "checkout -m" not in str(refused.value)
    # Git's own line merge (HEAD and a branch name as labels) still gets the whole advice.
    text = (repo / REGISTRY).read_bytes().replace(b"<<<<<<< ours", b"<<<<<<< HEAD")
    with pytest.raises(RegistryError, match=f"git checkout -m -- {REGISTRY}"):
        parse(text.replace(b">>>>>>> theirs", b">>>>>>> right"), REGISTRY, filename=REGISTRY)


def test_the_cli_form_installs_only_the_driver(repo, remote):
    from model_filer.cli import main

    assert main(["install-hooks", "--merge-driver-only"]) == 0
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    commit(repo, "merge driver")
    two_branches(repo, remote, ("alpha", "beta"))
    git(repo, "merge", "-q", "--no-edit", "right")
    names = [e.name for e in model_filer(repo / "models", remote).list_files()]
    assert names == ["alpha", "base_model", "beta"]


def test_both_branches_creating_the_registry_merge_cleanly(repo, remote):
    """add/add: git gives the driver an empty ancestor."""
    assert install_hooks(repo, hooks=False)
    commit(repo, "merge driver")
    for branch, name in (("left", "model_b"), ("right", "model_c")):
        git(repo, "checkout", "-q", "-b", branch, "main")
        model_filer(repo / "models", remote).dump({"model": name}, name, push=True)
        commit(repo, f"add {name}")
    git(repo, "checkout", "-q", "left")

    merged = git(repo, "merge", "--no-edit", "right", check=False)

    assert merged.returncode == 0, merged.stdout + merged.stderr
    names = [e.name for e in model_filer(repo / "models", remote).list_files()]
    assert names == ["model_b", "model_c"]


def test_a_folder_with_spaces(repo, remote):
    assert install_hooks(repo, hooks=False)
    commit(repo, "merge driver")
    folder = repo / "my models"
    model_filer(folder, remote).dump({"base": 0}, "base_model", push=True)
    commit(repo, "base model")
    for branch, name in (("left", "model_b"), ("right", "model_c")):
        git(repo, "checkout", "-q", "-b", branch, "main")
        model_filer(folder, remote).dump({"model": name}, name, push=True)
        commit(repo, f"add {name}")
    git(repo, "checkout", "-q", "left")

    merged = git(repo, "merge", "--no-edit", "right", check=False)

    assert merged.returncode == 0, merged.stdout + merged.stderr
    names = [e.name for e in model_filer(folder, remote).list_files()]
    assert names == ["base_model", "model_b", "model_c"]


@pytest.mark.parametrize("deleted_on", ["ours", "theirs"])
def test_a_conflict_with_a_deletion_leaves_an_empty_side(deleted_on):
    new = changed(A, "4")
    ours, theirs = (reg(B), reg(new, B)) if deleted_on == "ours" else (reg(new, B), reg(B))
    text = merge(reg(A, B), ours, theirs).text().decode()
    mine, _, theirs_text = text.partition("<<<<<<< ours\n")[2].partition("=======\n")
    theirs_text = theirs_text.partition(">>>>>>> theirs\n")[0]
    assert (mine, theirs_text)[0 if deleted_on == "ours" else 1] == ""
    assert "  b:\n" in text.split(">>>>>>> theirs\n")[1]  # the rest stays merged


# -- metadata and aliases ---------------------------------------------------------------------
def aliased(*entries: Entry, **aliases: Entry) -> Registry:
    """A registry of ``entries`` whose aliases name the given entries' bytes."""
    result = reg(*entries)
    result.aliases = {a: (e.name, e.sha256) for a, e in aliases.items()}
    return result


def test_metadata_merges_name_by_name():
    base = A._replace(metrics={"auc": 0.8, "loss": 0.3}, tags={"team": "x"})
    ours = base._replace(metrics={"auc": 0.9, "loss": 0.3}, description="ours")
    theirs = base._replace(metrics={"auc": 0.8}, tags={"team": "x", "stage": "eval"})
    result = merge(reg(base), reg(ours), reg(theirs))
    assert result.conflicts == []
    assert result.registry.entries["a"] == A._replace(
        metrics={"auc": 0.9}, tags={"stage": "eval", "team": "x"}, description="ours"
    )


def test_a_push_on_one_side_and_an_annotation_on_the_other_merge():
    local = A._replace(state="local", key=None)
    result = merge(reg(local), reg(A), reg(local._replace(params={"lr": 0.1})))
    assert result.conflicts == []
    assert result.registry.entries["a"] == A._replace(params={"lr": 0.1})


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        pytest.param({"metrics": {"auc": 0.9}}, {"metrics": {"auc": 0.7}}, id="same-metric"),
        pytest.param({"description": "x"}, {"description": "y"}, id="description"),
        pytest.param({"tags": {"t": "x"}}, {"tags": None, "sha256": "c" * 64}, id="re-dump"),
    ],
)
def test_the_same_metadata_name_changed_two_ways_conflicts(ours, theirs):
    base = A._replace(metrics={"auc": 0.8}, tags={"t": "a"})
    if "sha256" in theirs:
        theirs = {**theirs, "key": f"a/{theirs['sha256']}.pkl"}
    result = merge(reg(base), reg(base._replace(**ours)), reg(base._replace(**theirs)))
    assert result.conflicts == ["a"]
    assert b"<<<<<<< ours\n  a:\n" in result.text()


def test_aliases_merge_alias_by_alias():
    b2 = changed(B, "c")
    base = aliased(A, B, prod=A, old=B)
    ours = aliased(A, B, prod=B, old=B, staging=A)  # moved prod, added staging
    theirs = aliased(A, b2, prod=A, dev=b2)  # dropped old, added dev
    result = merge(base, ours, reg(A, b2))  # (theirs without aliases: all dropped)
    assert result.conflicts == ["@prod"]
    result = merge(base, ours, theirs)
    assert result.conflicts == []  # (b re-dumped on theirs only: theirs)
    assert result.registry.aliases == {
        "prod": ("b", B.sha256),
        "staging": ("a", A.sha256),
        "dev": ("b", b2.sha256),
    }


def test_an_alias_moved_two_ways_is_a_conflict_naming_it():
    base = aliased(A, B, C, prod=A, stable=A)
    result = merge(base, aliased(A, B, C, prod=B, stable=A), aliased(A, B, C, prod=C, stable=A))
    assert result.conflicts == ["@prod"]
    text = result.text()
    assert f"  stable: a@{A.sha256}\n".encode() in text
    assert (
        f"<<<<<<< ours\n  prod: b@{B.sha256}\n=======\n  prod: c@{C.sha256}\n>>>>>>> theirs\n"
    ).encode() in text
    with pytest.raises(RegistryError, match="conflict markers"):
        parse(text, REGISTRY)
    same = merge(base, aliased(A, B, C, prod=B), aliased(A, B, C, prod=B))
    assert same.conflicts == [] and same.registry.aliases == {"prod": ("b", B.sha256)}


def test_with_the_driver_an_alias_moved_two_ways_is_reported_by_name(repo, remote):
    assert install_hooks(repo, hooks=False)
    commit(repo, "merge driver")
    two_branches(repo, remote, ("model_b", "model_c"))
    git(repo, "checkout", "-q", "-b", "aliases", "main")
    for branch, model in (("left", "model_b"), ("right", "model_c")):
        git(repo, "checkout", "-q", branch)
        model_filer(repo / "models", remote).set_alias("production", model)
        model_filer(repo / "models", remote).annotate(model, metrics={"auc": 0.5})
        commit(repo, f"production is {model}")
    git(repo, "checkout", "-q", "left")

    merged = git(repo, "merge", "--no-edit", "right", check=False)

    assert merged.returncode != 0
    assert f"{REGISTRY}: @production changed differently on both branches" in (
        merged.stdout + merged.stderr
    )
    text = (repo / REGISTRY).read_text()
    assert "<<<<<<< ours\n  production: model_b@" in text
    assert "  model_c:\n" in text and "      auc: 0.5\n" in text  # the rest merged


def _keep_theirs(text: bytes) -> bytes:
    """The conflict resolved as the README says: their version kept, ours and markers deleted."""
    head, _, rest = text.partition(b"<<<<<<< ours\n")
    theirs = rest.partition(b"=======\n")[2]
    kept, _, tail = theirs.partition(b">>>>>>> theirs\n")
    return head + kept + tail


@pytest.mark.parametrize("kind", ["metadata", "alias"])
def test_a_conflict_whose_other_side_holds_metadata_or_an_alias_is_written_in_their_format(kind):
    """Keeping their side must leave a registry the release before format 2 refuses: with
    ``format: 1``, that release reads it and drops ``aliases:`` on its next write."""
    if kind == "metadata":  # re-dumped without metadata on ours, annotated on theirs
        ours, theirs = reg(changed(A, "4")), reg(A._replace(metrics={"auc": 0.9}))
        base = reg(A)
    else:  # the alias dropped on ours, moved on theirs
        base, ours, theirs = aliased(A, B, prod=A), reg(A, B), aliased(A, B, prod=B)
    text = merge(base, ours, theirs).text()
    kept = parse(_keep_theirs(text), REGISTRY)
    assert kept == theirs
    assert _keep_theirs(text).count(b"\nformat: 2\n") == 1
