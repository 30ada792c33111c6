"""Models through git history: load and list at a revision, ``log`` and ``diff``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_filer import Filer
from model_filer.cli import main
from model_filer.errors import (
    IntegrityError,
    LocalOnlyError,
    ModelFilerError,
    RegistryError,
    RemoteMismatchError,
    UnknownModelError,
    UnknownRevisionError,
)
from model_filer.local.store import ObjectStore
from tests.support.gitrepo import closed_port, commit, git, head, registry_bytes, sample_entry


class History:
    """A repository whose ``models`` folder went through five commits.

    ====  =========================================  ============
    rev   change                                     models after
    ====  =========================================  ============
    v1    a = [1] added                              a
    ~3    b = ones(3) added (numpy)                  a, b
    ~2    a replaced by [2]                          a, b
    ~1    c added                                    a, b, c
    HEAD  b removed                                  a, c
    ====  =========================================  ============
    """

    def __init__(self, repo: Path, remote: Path) -> None:
        self.repo, self.remote = repo, remote
        self.folder = repo / "models"
        self.filer = Filer(self.folder, str(remote), remote_type="local")
        self.filer.dump([1], "a", push=True)
        self.v1 = commit(repo, "a1")
        git(repo, "tag", "v1")
        self.filer.dump(np.ones(3), "b", push=True)
        self.b = commit(repo, "b")
        self.filer.remove("a")
        self.filer.dump([2], "a", push=True)
        commit(repo, "a2")
        self.filer.dump({"c": 3}, "c", push=True)
        commit(repo, "c")
        self.filer.remove("b")
        self.head = commit(repo, "rm b")


@pytest.fixture
def hist(repo: Path, remote: Path) -> History:
    return History(repo, remote)


def unreachable(remote: Path) -> None:
    """Take the local-folder remote away: any read from it now fails."""
    shutil.move(remote, remote.with_name("gone"))


def test_load_at_tag_relative_rev_and_sha(hist: History) -> None:
    assert hist.filer.load("a", rev="v1") == [1]
    assert hist.filer.load("a", rev="main~3") == [1]
    assert hist.filer.load("a", rev=hist.head) == [2]
    np.testing.assert_array_equal(hist.filer.load("b", rev=hist.b), np.ones(3))


def test_load_at_rev_leaves_the_working_tree_alone(hist: History) -> None:
    before = (hist.folder / "a.pkl").read_bytes()
    assert hist.filer.load("a", rev="v1") == [1]
    assert (hist.folder / "a.pkl").read_bytes() == before
    assert not (hist.folder / "b.pkl").exists()
    assert git(hist.repo, "status", "--porcelain").stdout == ""
    assert head(hist.repo) == hist.head
    assert hist.filer.load("a") == [2]


def test_a_version_once_fetched_loads_with_the_remote_gone(hist: History) -> None:
    hist.filer.load("a", rev="v1")
    hist.filer.load("b", rev="main~1")
    unreachable(hist.remote)
    assert hist.filer.load("a", rev="v1") == [1]
    assert hist.filer.load("a", rev="main~3") == [1]
    assert hist.filer.load("a", rev="HEAD") == [2]  # the working tree's own file
    np.testing.assert_array_equal(hist.filer.load("b", rev=hist.b), np.ones(3))


def test_a_version_never_fetched_needs_the_remote(hist: History, tmp_path: Path) -> None:
    # Another machine: its store never saw the versions dumped here.
    other = Filer(hist.folder, str(hist.remote), "local", store=ObjectStore(tmp_path / "s2"))
    unreachable(hist.remote)
    with pytest.raises(ModelFilerError, match="does not exist"):
        other.load("a", rev="v1")


def test_the_working_tree_file_serves_a_rev_with_the_same_bytes(hist: History) -> None:
    unreachable(hist.remote)
    assert hist.filer.load("c", rev="main~1") == {"c": 3}


def test_list_files_at_revs(hist: History) -> None:
    names = {rev: [e.name for e in hist.filer.list_files(rev=rev)] for rev in ("v1", "main~3")}
    assert names == {"v1": ["a"], "main~3": ["a", "b"]}
    assert [e.name for e in hist.filer.list_files(rev=hist.head)] == ["a", "c"]
    assert hist.filer.list_files(rev="main~5") == []  # before any model: no registry
    assert hist.filer.list_files(rev="v1")[0].sha256 != hist.filer.list_files()[0].sha256


def test_tampered_bytes_at_a_rev_are_refused_and_not_kept(hist: History, tmp_path: Path) -> None:
    entry = hist.filer.list_files(rev="v1")[0]
    assert entry.key is not None
    (hist.remote / entry.key).write_bytes(b"not the model")
    store = ObjectStore(tmp_path / "s2")  # another machine's: it never saw v1's bytes
    other = Filer(hist.folder, str(hist.remote), "local", store=store)
    with pytest.raises(IntegrityError, match=r"does not match the registry|is damaged"):
        other.load("a", rev="v1")
    assert not store.has(entry.sha256)


def test_a_local_entry_at_a_rev_loads_from_this_machines_store_only(
    hist: History, tmp_path: Path
) -> None:
    hist.filer.dump([9], "d")
    commit(hist.repo, "d local")
    hist.filer.remove("d")
    commit(hist.repo, "rm d")
    assert hist.filer.load("d", rev="HEAD~1") == [9]  # dumped here: its bytes are in the store
    elsewhere = Filer(hist.folder, str(hist.remote), "local", store=ObjectStore(tmp_path / "s2"))
    with pytest.raises(LocalOnlyError, match="at HEAD~1 is local"):
        elsewhere.load("d", rev="HEAD~1")


@pytest.mark.parametrize("rev", ["nope", "v9", "-n", "HEAD~99", "a" * 40])
def test_unknown_revision(hist: History, rev: str) -> None:
    with pytest.raises(UnknownRevisionError, match="names no commit"):
        hist.filer.load("a", rev=rev)
    with pytest.raises(UnknownRevisionError, match="names no commit"):
        hist.filer.list_files(rev=rev)


def test_revision_without_the_registry(hist: History) -> None:
    with pytest.raises(UnknownModelError, match=r"no registry models/.local_registry at main~5"):
        hist.filer.load("a", rev="main~5")


def test_model_missing_at_rev(hist: History) -> None:
    with pytest.raises(UnknownModelError, match=r"No model 'c' .*revision 'v1'.*Known there: a"):
        hist.filer.load("c", rev="v1")


def test_rev_outside_git(tmp_path: Path, remote: Path) -> None:
    filer = Filer(tmp_path / "plain", str(remote), remote_type="local")
    filer.dump([1], "a", push=True)
    with pytest.raises(ModelFilerError, match="not inside a git repository"):
        filer.load("a", rev="HEAD")
    with pytest.raises(ModelFilerError, match="not inside a git repository"):
        filer.list_files(rev="HEAD")
    assert main(["log", "--dir", str(tmp_path / "plain"), "a"]) == 2


def test_registry_at_rev_must_belong_to_the_filers_remote(repo: Path) -> None:
    folder = repo / "models"
    folder.mkdir()
    registry = folder / ".s3_registry"
    registry.write_bytes(registry_bytes("s3", "s3://other-bucket/p", sample_entry("a")))
    commit(repo, "other")
    registry.write_bytes(registry_bytes("s3", "s3://mine-bucket/p", sample_entry("a")))
    commit(repo, "mine")
    filer = Filer(folder, "s3://mine-bucket/p")
    assert [e.name for e in filer.list_files(rev="HEAD")] == ["a"]
    with pytest.raises(RemoteMismatchError, match="other-bucket"):
        filer.list_files(rev="HEAD~1")


def test_a_subfolder_registry_is_found_from_a_nested_repo_path(repo: Path, remote: Path) -> None:
    filer = Filer(repo / "deep" / "er" / "models", str(remote), remote_type="local")
    filer.dump([5], "x", push=True)
    commit(repo, "x")
    filer.remove("x")
    filer.dump([6], "x", push=True)
    commit(repo, "x2")
    assert filer.load("x", rev="HEAD~1") == [5]


# -- log ------------------------------------------------------------------------------------
def test_log_of_one_model_newest_first(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--dir", "models", "a"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    a_now = hist.filer.list_files()[0]
    fields = re.split(r"\s{2,}", lines[0])
    assert fields[2:6] == ["Model Filer Tests", "a", "replaced", a_now.sha256[:12]]
    assert lines[1].startswith(hist.v1[:10]) and "added" in lines[1]


def test_log_all_json(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--dir", "models", "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["change"]) for r in rows] == [
        ("b", "removed"),
        ("c", "added"),
        ("a", "replaced"),
        ("b", "added"),
        ("a", "added"),
    ]
    assert rows[-1]["commit"] == hist.v1
    assert rows[-1]["sha256"] == hist.filer.list_files(rev="v1")[0].sha256
    assert set(rows[0]) == {
        *("commit", "date", "author", "name", "change", "sha256", "size", "state"),
        *("metrics", "params", "tags", "description"),  # each version's metadata, or None
    }
    assert rows[0]["metrics"] is None
    assert rows[0]["author"] == "Model Filer Tests"


def test_log_shows_push_and_a_branch_change_once(
    hist: History, capsys: pytest.CaptureFixture[str]
) -> None:
    git(hist.repo, "checkout", "-q", "-b", "side")
    hist.filer.dump([4], "d")
    commit(hist.repo, "d local")
    hist.filer.push("d")
    commit(hist.repo, "d pushed")
    git(hist.repo, "checkout", "-q", "main")
    git(hist.repo, "merge", "-q", "--no-ff", "--no-edit", "side")
    assert main(["log", "--dir", "models", "d"]) == 0
    changes = [re.split(r"\s{2,}", line)[4] for line in capsys.readouterr().out.splitlines()]
    assert changes == ["pushed", "added"]


def test_log_needs_a_name_or_all(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--dir", "models"]) == 2
    assert "Pass one model NAME" in capsys.readouterr().err
    assert main(["log", "--dir", "models", "--all", "a"]) == 2


def test_log_of_a_name_never_seen(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--dir", "models", "zzz"]) == 0
    out = capsys.readouterr().out
    assert "No changes to zzz in the history of HEAD" in out
    assert "`model-filer status models` lists the models" in out  # what to type next


# -- diff -----------------------------------------------------------------------------------
def test_diff_between_two_revs(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--dir", "models", "v1", "main~1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["changed", "a"], ["added", "b"], ["added", "c"]]
    assert f"numpy {np.__version__}" in out[1]


def test_diff_against_the_working_tree_json(
    hist: History, capsys: pytest.CaptureFixture[str]
) -> None:
    hist.filer.dump([7], "e")  # not committed
    assert main(["diff", "--dir", "models", "main~2", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {n: r["change"] for n, r in rows.items()} == {
        "b": "removed",
        "c": "added",
        "e": "added",
    }
    b_then = hist.filer.list_files(rev="main~2")[1]
    assert rows["b"]["old"] == {
        "sha256": b_then.sha256,
        "size": b_then.size,
        "state": "synced",
        "library": f"numpy {np.__version__}",
    }
    assert rows["b"]["new"] is None
    assert rows["e"]["new"]["state"] == "local"


def test_diff_of_identical_revs(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--dir", "models", "HEAD"]) == 0
    assert "No model changed between HEAD and the working tree" in capsys.readouterr().out


def test_diff_unknown_rev(hist: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--dir", "models", "v1", "nope"]) == 2
    assert "'nope' names no commit" in capsys.readouterr().err


def test_s3_version_once_fetched_loads_with_the_endpoint_closed(
    repo: Path, s3_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    filer = Filer(repo / "models", s3_address)
    filer.dump([1], "a", push=True)
    commit(repo, "a1")
    filer.remove("a")
    filer.dump([2], "a", push=True)
    commit(repo, "a2")
    assert filer.load("a", rev="HEAD~1") == [1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    offline = Filer(repo / "models", s3_address)  # a new client: it could reach nothing
    assert offline.load("a", rev="HEAD~1") == [1]
    assert offline.load("a", rev="HEAD") == [2]
    with pytest.raises(ModelFilerError):
        Filer(repo / "models", s3_address).remote.size_of("a/" + "0" * 64 + ".pkl")


def test_conflict_markers_anywhere_in_a_revisions_registry_are_refused(hist: History) -> None:
    registry = hist.folder / ".local_registry"
    text = registry.read_text()
    registry.write_text(text.replace("\n  c:\n", "\n<<<<<<< HEAD\n  c:\n", 1))
    commit(hist.repo, "a bad merge")
    with pytest.raises(RegistryError, match="conflict markers"):
        hist.filer.load("a", rev="HEAD")  # the marker sits in another entry's block


def test_git_blobs_after_a_tree_or_a_missing_path_are_read_whole(repo):
    """cat-file prints a tree's bytes too: they are stepped over, not read as the next
    header."""
    from model_filer.git.gitops import blobs, read_at

    (repo / "d").mkdir()
    (repo / "d" / "f").write_bytes(b"inside\n")
    (repo / "top").write_bytes(b"top bytes\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "files")
    got = blobs(["HEAD:d", "HEAD:nope", "HEAD:top", "HEAD:d/f"], repo)
    assert got["HEAD:d"] is None and got["HEAD:nope"] is None
    assert got["HEAD:top"] is not None and got["HEAD:top"].data == b"top bytes\n"
    assert got["HEAD:d/f"] is not None and got["HEAD:d/f"].data == b"inside\n"
    sha, data = read_at("HEAD", "top", repo)
    assert sha is not None and len(sha) == 40 and data == b"top bytes\n"
    assert read_at("HEAD", "d", repo)[1] is None  # a tree is not a registry's bytes
    assert read_at("HEAD:top", "top", repo) == (None, None)  # names a blob, not a commit


# -- metrics, params and aliases through history (issue 22) --------------------------------
class Scores:
    """Two models with metrics and params, and an alias that moved.

    ====  ===================================================  ==============
    rev   change                                               @production
    ====  ===================================================  ==============
    ~4    v1 added (auc 0.8, lr 0.1)                           -
    ~3    @production set to v1                                v1
    ~2    v2 added (auc 0.85, loss 0.3, lr 0.05)               v1
    ~1    v1 annotated after the push (auc 0.79)               v1
    HEAD  @production moved to v2                              v2
    ====  ===================================================  ==============
    """

    def __init__(self, repo: Path, remote: Path) -> None:
        self.repo = repo
        self.filer = filer = Filer(repo / "models", str(remote), remote_type="local")
        filer.dump([1], "v1", push=True, metrics={"auc": 0.8}, params={"lr": 0.1})
        self.added = commit(repo, "v1")
        filer.set_alias("production", "v1")
        self.set = commit(repo, "production: v1")
        filer.dump([2], "v2", push=True, metrics={"auc": 0.85, "loss": 0.3}, params={"lr": 0.05})
        commit(repo, "v2")
        filer.annotate("v1", metrics={"auc": 0.79})
        self.annotated = commit(repo, "v1 re-evaluated")
        filer.set_alias("production", "v2")
        self.moved = commit(repo, "production: v2")
        self.sha = {e.name: e.sha256 for e in filer.list_files()}


@pytest.fixture
def scores(repo: Path, remote: Path) -> Scores:
    return Scores(repo, remote)


def test_filer_log_gives_each_versions_metrics_and_params(scores: Scores) -> None:
    rows = scores.filer.log("v1")
    assert [(r.commit, r.change) for r in rows] == [
        (scores.annotated, "annotated"),
        (scores.added, "added"),
    ]
    assert [r.entry.metrics for r in rows] == [{"auc": 0.79}, {"auc": 0.8}]
    assert rows[0].entry.params == {"lr": 0.1}
    assert rows[0].as_dict()["metrics"] == {"auc": 0.79}


def test_log_prints_metrics_and_params_beside_each_commit(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--dir", "models", "v1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(scores.annotated[:10])
    assert lines[0].endswith("metrics auc=0.79  params lr=0.1")
    assert lines[1].endswith("metrics auc=0.8  params lr=0.1")
    assert re.split(r"\s{2,}", lines[0])[2:5] == ["Model Filer Tests", "v1", "annotated"]


def test_log_metric_narrows_to_one_column(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--dir", "models", "--all", "--metric", "loss"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("  ", 1)[1] for line in lines] == ["loss=-", "loss=0.3", "loss=-"]
    assert "auc" not in "".join(lines) and "lr=" not in "".join(lines)


def test_log_json_carries_metrics_and_params(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--dir", "models", "v2", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["metrics"] == {"auc": 0.85, "loss": 0.3} and row["params"] == {"lr": 0.05}


def test_filer_log_of_an_alias_gives_every_move(scores: Scores) -> None:
    rows = scores.filer.log("@production")
    v1, v2 = ("v1", scores.sha["v1"]), ("v2", scores.sha["v2"])
    assert [(r.commit, r.change, r.old, r.new) for r in rows] == [
        (scores.moved, "moved", v1, v2),
        (scores.set, "set", None, v1),
    ]
    assert rows[0].author == "Model Filer Tests"
    assert rows[0].as_dict()["from"] == {"model": "v1", "sha256": scores.sha["v1"]}
    assert scores.filer.log("@production", rev=scores.annotated) == rows[1:]


def test_log_of_an_alias_prints_from_what_to_what(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--dir", "models", "@production"]) == 0
    lines = capsys.readouterr().out.splitlines()
    v1, v2 = (f"{n} ({scores.sha[n][:12]})" for n in ("v1", "v2"))
    assert lines[0].startswith(scores.moved[:10])
    assert re.split(r"\s{2,}", lines[0])[3:] == ["@production", "moved", v1, "->", v2]
    assert re.split(r"\s{2,}", lines[1])[3:] == ["@production", "set", "-", "->", v1]
    assert main(["log", "--dir", "models", "@production", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["change"] for r in rows] == ["moved", "set"]
    assert rows[1]["from"] is None and rows[1]["to"]["model"] == "v1"


def test_an_alias_moved_on_a_branch_is_shown_once(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    git(scores.repo, "checkout", "-q", "-b", "side")
    scores.filer.set_alias("production", "v1")
    back = commit(scores.repo, "roll back")
    git(scores.repo, "checkout", "-q", "main")
    git(scores.repo, "merge", "-q", "--no-ff", "--no-edit", "side")
    commits = [r.commit for r in scores.filer.log("@production")]  # (same-second commits:
    assert sorted(commits) == sorted([back, scores.moved, scores.set])  # git's order may vary)


def _merge_keeping(scores: Scores, side: str) -> str:
    """Merge branch ``side`` into main; on a conflict keep ``ours`` or ``theirs`` for the
    registry, then redo the other branch's alias (as a user who resolved it by hand does)."""
    repo = scores.repo
    done = git(repo, "merge", "-q", "--no-ff", "--no-edit", "side", check=False)
    if done.returncode != 0:
        git(repo, "checkout", f"--{side}", "--", "models/.local_registry")
        scores.filer.set_alias("canary", "v2")  # side's
        scores.filer.set_alias("staging", "v1")  # main's
        git(repo, "add", "models/.local_registry")
        git(repo, "commit", "-q", "--no-edit")
    return head(repo)


@pytest.mark.parametrize("kept", ["ours", "theirs"])
def test_a_merge_that_kept_one_of_two_changes_is_logged(scores: Scores, kept: str) -> None:
    # Both branches changed v1's metrics (and an alias each); the merge kept one version of
    # v1: the newest row must be the merge, with the version it kept, not the other one.
    git(scores.repo, "checkout", "-q", "-b", "side")
    scores.filer.annotate("v1", metrics={"auc": 0.7})
    scores.filer.set_alias("canary", "v2")
    commit(scores.repo, "side: auc 0.7")
    git(scores.repo, "checkout", "-q", "main")
    scores.filer.annotate("v1", metrics={"auc": 0.9})
    scores.filer.set_alias("staging", "v1")
    commit(scores.repo, "main: auc 0.9")
    merge = _merge_keeping(scores, kept)
    rows = scores.filer.log("v1")
    assert (rows[0].commit, rows[0].change) == (merge, "merged")
    assert rows[0].entry.metrics == {"auc": 0.9 if kept == "ours" else 0.7}
    assert [r.change for r in rows].count("merged") == 1
    assert scores.filer.log("v2")[0].change != "merged"  # changed on neither branch


def test_a_merge_that_kept_one_of_two_alias_moves_is_logged(scores: Scores) -> None:
    git(scores.repo, "checkout", "-q", "-b", "side")
    scores.filer.set_alias("production", "v1")
    scores.filer.set_alias("canary", "v2")
    commit(scores.repo, "side: back to v1")
    git(scores.repo, "checkout", "-q", "main")
    scores.filer.dump([3], "v3", push=True)
    scores.filer.set_alias("production", "v3")
    scores.filer.set_alias("staging", "v1")
    commit(scores.repo, "main: v3")
    merge = _merge_keeping(scores, "theirs")
    moves = scores.filer.log("@production")
    assert moves[0].commit == merge and moves[0].new == ("v1", scores.sha["v1"])
    assert scores.filer.log("@canary")[0].commit != merge  # set on one branch only


def test_log_of_an_alias_never_set(scores: Scores, capsys: pytest.CaptureFixture[str]) -> None:
    assert scores.filer.log("@staging") == []
    assert main(["log", "--dir", "models", "@staging"]) == 0
    out = capsys.readouterr().out
    assert "No moves of @staging in the history of HEAD" in out
    assert "`model-filer alias --dir models` lists the aliases" in out  # what to type next


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["@production", "--metric", "auc"], ["an alias", "without --metric"]),
        (["@no way"], ["no way"]),
    ],
)
def test_log_refusals(
    scores: Scores, capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    assert main(["log", "--dir", "models", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("model-filer: error: ") and "Traceback" not in err
    assert all(w in err for w in words), err


def test_diff_shows_metric_and_param_changes_and_alias_moves(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "--dir", "models", scores.set]) == 0
    lines = capsys.readouterr().out.splitlines()
    v1, v2 = (f"{n} ({scores.sha[n][:12]})" for n in ("v1", "v2"))
    assert lines[0] == "annotated v1"
    assert lines[1].split() == ["metrics", "auc", "0.8", "->", "0.79"]
    assert lines[2].split()[:2] == ["added", "v2"]
    assert lines[3].strip() == "metrics auc - -> 0.85, loss - -> 0.3; params lr - -> 0.05"
    assert lines[4] == f"moved     @production  {v1}  ->  {v2}"
    assert len(lines) == 5


def test_diff_json_of_metadata_and_aliases(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "--dir", "models", scores.added, scores.annotated, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "v1" and rows[0]["change"] == "annotated"
    assert rows[0]["metrics"] == {"auc": [0.8, 0.79]} and rows[0]["params"] == {}
    assert rows[1]["name"] == "v2" and rows[1]["params"] == {"lr": [None, 0.05]}
    assert rows[2] == {
        "alias": "production",
        "change": "set",
        "from": None,
        "to": {"model": "v1", "sha256": scores.sha["v1"]},
    }


def test_diff_and_log_show_tag_and_description_changes(
    scores: Scores, capsys: pytest.CaptureFixture[str]
) -> None:
    scores.filer.annotate("v2", tags={"owner": "bo"}, description="nightly\nretrain")
    tagged = commit(scores.repo, "v2: owner and description")
    assert main(["diff", "--dir", "models", scores.moved, tagged]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["annotated v2", "          tags owner - -> bo; description changed"]
    assert main(["diff", "--dir", "models", scores.moved, tagged, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["tags"] == {"owner": [None, "bo"]}
    assert row["description"] == [None, "nightly\nretrain"]
    assert main(["log", "--dir", "models", "v2", "--json"]) == 0
    newest = json.loads(capsys.readouterr().out)[0]
    assert (newest["change"], newest["tags"]) == ("annotated", {"owner": "bo"})
    assert newest["description"] == "nightly\nretrain"
    frame = scores.filer.log("v2").to_pandas()
    assert frame["tags.owner"].tolist()[0] == "bo"


def test_log_results_display_as_a_table(scores: Scores) -> None:
    html = scores.filer.log("v1")._repr_html_()
    assert "<th>metrics.auc</th>" in html and "<th>params.lr</th>" in html
    frame = scores.filer.log("@production").to_pandas()
    assert frame["to.model"].tolist() == ["v2", "v1"]
    assert list(scores.filer.list_files().to_pandas()["metrics.auc"]) == [0.79, 0.85]
