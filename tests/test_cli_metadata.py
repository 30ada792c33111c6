"""``model-filer annotate``, ``alias`` and ``status``'s aliases and metrics (issue 22)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer, ModelFilerError
from model_filer.cli import main
from tests.support.gitrepo import model_filer

REGISTRY = "models/.local_registry"


@pytest.fixture
def filer(repo: Path, remote: Path) -> Filer:
    """churn (synced) and draft (local)."""
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 3}, "draft")
    return filer


def entry(filer: Filer, name: str) -> Any:
    return next(e for e in filer.list_files() if e.name == name)


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> None:
    """A user's mistake: exit 2, one line on stderr saying it, no traceback."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("model-filer: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert all(w in lines[0] for w in words), lines[0]


# -- annotate ---------------------------------------------------------------------------------
def test_annotate_records_metrics_params_tags_and_a_description(
    filer: Filer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = entry(filer, "churn")
    argv = ["annotate", "--dir", "models", "churn", "--metric", "auc=0.91", "--metric", "n=3"]
    argv += ["--param", "lr=1e-05", "--param", "solver=lbfgs", "--tag", "team=risk"]
    assert main([*argv, "--description", "weekly retrain"]) == 0
    assert capsys.readouterr().out == (
        "churn: metrics auc=0.91 n=3  params lr=1e-05 solver=lbfgs  tags team=risk  "
        f"description set. Commit {REGISTRY}.\n"
    )
    after = entry(filer, "churn")
    assert after.metrics == {"auc": 0.91, "n": 3} and type(after.metrics["n"]) is int
    assert after.params == {"lr": 1e-05, "solver": "lbfgs"}
    assert (after.tags, after.description) == ({"team": "risk"}, "weekly retrain")
    assert (after.state, after.sha256, after.key) == ("synced", before.sha256, before.key)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-0.5", -0.5),
        ("1e-05", 1e-05),
        ("true", True),
        ("false", False),
        ("lbfgs", "lbfgs"),
        ("1.0.0", "1.0.0"),
        ('"1.0"', "1.0"),
        ("2024-01-01", "2024-01-01"),
        ("NaN", "NaN"),
        ("1e999", "1e999"),
        ("[1, 2]", "[1, 2]"),
        ("", ""),
    ],
)
def test_a_param_reads_as_a_number_or_bool_else_as_text(
    filer: Filer, capsys: pytest.CaptureFixture[str], text: str, value: object
) -> None:
    assert main(["annotate", "--dir", "models", "draft", "--param", f"p={text}"]) == 0
    got = entry(filer, "draft").params["p"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--tag", "t=x"], "churn: tags t=x."),
        (["--tag", "team=growth team", "--tag", "a=1"], "churn: tags a=1 'team=growth team'."),
        (["--description", "weekly retrain"], "churn: description set."),
        (["--metric", "auc=0.5", "--tag", "t=x"], "churn: metrics auc=0.5  tags t=x."),
        (["--param", "lr=0.1", "--description", "d"], "churn: params lr=0.1  description set."),
    ],
)
def test_annotate_says_what_it_recorded_tags_and_description_too(
    filer: Filer, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    capsys.readouterr()
    assert main(["annotate", "--dir", "models", "churn", *args]) == 0
    assert capsys.readouterr().out == f"{said} Commit {REGISTRY}.\n"


def test_annotate_says_what_it_removed(filer: Filer, capsys: pytest.CaptureFixture[str]) -> None:
    filer.annotate("draft", tags={"a": "b"}, description="x")
    capsys.readouterr()
    assert main(["annotate", "--dir", "models", "draft", "--description", ""]) == 0
    assert capsys.readouterr().out == f"draft: tags a=b  description removed. Commit {REGISTRY}.\n"
    assert main(["annotate", "--dir", "models", "draft", "--tag", "a=null"]) == 0
    assert capsys.readouterr().out == f"draft: no metrics, params or tags. Commit {REGISTRY}.\n"


def test_null_deletes_a_key_and_the_rest_is_merged(
    filer: Filer, capsys: pytest.CaptureFixture[str]
) -> None:
    filer.annotate("draft", metrics={"auc": 0.5, "loss": 1.0}, tags={"a": "b"}, description="x")
    assert main(["annotate", "--dir", "models", "draft", "--metric", "auc=null"]) == 0
    assert main(["annotate", "--dir", "models", "draft", "--tag", "a=null"]) == 0
    assert main(["annotate", "--dir", "models", "draft", "--description", ""]) == 0
    after = entry(filer, "draft")
    assert (after.metrics, after.tags, after.description) == ({"loss": 1.0}, None, None)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--metric", "auc"], ["--metric 'auc' is not KEY=VALUE"]),
        (["--tag", "=x"], ["--tag '=x' is not KEY=VALUE"]),
        (["--metric", "auc=high"], ["auc=high", "a metric is a finite number"]),
        (["--metric", "auc=NaN"], ["a metric is a finite number"]),
        (["--metric", "auc=1e999"], ["a metric is a finite number"]),
        (["--metric", "auc=true"], ["a metric is a finite number"]),
        (["--metric", "bad name=1"], ["bad name"]),
        ([], ["Nothing to record on churn", "--metric"]),
        (["--tag", "t=x\ny"], ["tags['t'] is 'x\\ny': a tag is a str of printable"]),
        (["--tag", "t=a\tb"], ["tags['t'] is 'a\\tb'"]),
        (["--param", "p=a\nb"], ["params['p'] is 'a\\nb'"]),
    ],
)
def test_annotate_refuses_bad_input_before_writing(
    filer: Filer, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    before = (filer.registry_path.read_bytes(), capsys.readouterr())
    refused(capsys, ["annotate", "--dir", "models", "churn", *args], *words)
    assert filer.registry_path.read_bytes() == before[0]


def test_annotate_an_unknown_model(filer: Filer, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["annotate", "--dir", "models", "chrun", "--metric", "a=1"], "chrun")


# -- alias ------------------------------------------------------------------------------------
def test_alias_set_show_list_and_remove(filer: Filer, capsys: pytest.CaptureFixture[str]) -> None:
    sha = entry(filer, "churn").sha256
    assert main(["alias", "--dir", "models", "production", "churn"]) == 0
    assert capsys.readouterr().out == f"@production  ->  churn ({sha[:12]}). Commit {REGISTRY}.\n"
    assert filer.aliases()["production"].model == "churn"
    assert main(["alias", "--dir", "models", "@production"]) == 0
    assert capsys.readouterr().out == f"@production  ->  churn ({sha[:12]})\n"
    assert main(["alias", "--dir", "models"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"@production  ->  churn ({sha[:12]})"]
    assert main(["alias", "--dir", "models", "production", "--remove"]) == 0
    assert capsys.readouterr().out == f"@production removed. Commit {REGISTRY}.\n"
    assert filer.aliases() == {}
    assert main(["alias", "--dir", "models"]) == 0
    assert capsys.readouterr().out == (
        f"No aliases in {REGISTRY}. Set one with `model-filer alias --dir models NAME MODEL`.\n"
    )


def test_an_alias_set_to_a_local_model_says_to_push_it(
    filer: Filer, capsys: pytest.CaptureFixture[str]
) -> None:
    filer.dump([1], "fresh")  # local: the commit hook would refuse the alias
    assert main(["alias", "--dir", "models", "staging", "fresh"]) == 0
    out = capsys.readouterr().out
    assert (
        "fresh is local: push it before you commit (`model-filer push --dir models fresh`)" in out
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["staging"], ["no alias @staging", "model-filer alias --dir models staging MODEL"]),
        (["--remove"], ["--remove drops one alias"]),
        (["production", "churn", "--remove"], ["without MODEL"]),
        (["production", "chrun"], ["chrun"]),
        (["bad name", "churn"], ["bad name"]),
        (["", "churn"], ["Invalid alias '': an alias follows the model-name rule"]),
        (["@", "churn"], ["Invalid alias ''"]),
        (["", "--remove"], ["Invalid alias ''"]),
        ([""], ["Invalid alias ''"]),
    ],
)
def test_alias_refusals(
    filer: Filer, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    capsys.readouterr()
    refused(capsys, ["alias", "--dir", "models", *args], *words)
    assert filer.aliases() == {}


def test_alias_and_annotate_need_one_registry(
    filer: Filer, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    model_filer(repo / "other", remote).dump([1], "x")
    monkeypatch.chdir(repo)
    refused(capsys, ["alias", "production", "churn"], "2 were found", "--dir")
    refused(capsys, ["annotate", "x", "--tag", "a=b"], "2 were found", "--dir")


# -- status -----------------------------------------------------------------------------------
def test_status_shows_aliases_and_metrics_on_request(
    filer: Filer, capsys: pytest.CaptureFixture[str], monkeypatch: Any, repo: Path
) -> None:
    filer.annotate("churn", metrics={"auc": 0.91}, params={"lr": 0.1})
    filer.set_alias("production", "churn")
    monkeypatch.chdir(repo)
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert (
        f"  @production  ->  churn ({entry(filer, 'churn').sha256[:12]})\n" in out
        and "auc" not in out
        and "STALE" not in out
    )
    assert main(["status", "--metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(x for x in lines if "churn (synced)" in x).endswith(
        "  metrics auc=0.91  params lr=0.1"
    )
    assert next(x for x in lines if "draft (local)" in x).endswith("present")


def test_a_stale_alias_is_flagged_with_its_fix(
    filer: Filer, capsys: pytest.CaptureFixture[str], monkeypatch: Any, repo: Path
) -> None:
    filer.set_alias("nightly", "draft")
    filer.dump({"w": 4}, "draft", overwrite=True)  # other bytes: the alias does not follow
    monkeypatch.chdir(repo)
    capsys.readouterr()
    assert main(["status"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "@nightly" in x)
    assert line.startswith("  @nightly  ->  draft (")
    assert "  (STALE: @nightly names 'draft' as it was" in line
    assert "`model-filer alias --dir models nightly draft`" in line  # (pasted here, it works)
    assert main(["alias", "nightly"]) == 0
    assert "(STALE: " in capsys.readouterr().out
    monkeypatch.chdir(repo / "models")
    assert main(["alias", "nightly"]) == 0
    assert "`model-filer alias nightly draft`" in capsys.readouterr().out


def test_an_empty_alias_is_refused_as_the_library_refuses_it(
    filer: Filer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelFilerError) as raised:
        filer.set_alias("", "churn")
    capsys.readouterr()
    refused(capsys, ["alias", "--dir", "models", "", "churn"], str(raised.value))
