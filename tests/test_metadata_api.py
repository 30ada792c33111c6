"""Metadata and aliases through the Filer: dump, annotate, set_alias, aliases, load("@...")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_filer import (
    Alias,
    AliasError,
    Filer,
    InvalidMetadataError,
    InvalidNameError,
    UnknownModelError,
)
from tests.support.gitrepo import commit, model_files
from tests.test_filer_s3 import bucket_and_key

METRICS = {"auc": 0.91, "val/loss": 0.25, "f1.macro": np.float64(0.5), "n": np.int64(3)}


@pytest.fixture
def filer(tmp_path: Path, remote: Path) -> Filer:
    return Filer(tmp_path / "models", str(remote), "local")


def test_dump_records_metadata_and_list_files_returns_it(filer, capsys):
    filer.dump(
        {"v": 1},
        "churn",
        metrics=METRICS,
        params={"lr": 0.01, "opt": "adam", "seed": None, "early": True},
        tags={"team": "growth"},
        description="first try",
    )
    [entry] = filer.list_files()
    assert entry.metrics == {"auc": 0.91, "f1.macro": 0.5, "n": 3, "val/loss": 0.25}
    assert type(entry.metrics["n"]) is int and type(entry.metrics["f1.macro"]) is float
    assert entry.params == {"early": True, "lr": 0.01, "opt": "adam", "seed": None}
    assert entry.tags == {"team": "growth"} and entry.description == "first try"
    filer.show_files()  # exactly the seed's format, metadata or not
    assert capsys.readouterr().out == "churn (local)\n"
    assert Filer(filer.local_dir, str(filer.remote.address), "local").list_files() == [entry]


@pytest.mark.parametrize(
    "metadata",
    [
        {"metrics": {"auc": float("nan")}},
        {"metrics": {"ok": True}},
        {"params": {"layers": [1, 2]}},
        {"tags": {"team": 1}},
        {"tags": {"bad name": "x"}},
        {"description": 3},
        {"tags": {f"t{i}": "x" for i in range(65)}},
    ],
)
def test_bad_metadata_is_refused_before_anything_is_written(filer, metadata):
    with pytest.raises(InvalidMetadataError):
        filer.dump({"v": 1}, "churn", **metadata)
    assert not filer.registry_path.exists()
    assert model_files(filer.local_dir) == []


def test_an_overwrite_starts_with_only_the_metadata_it_is_given(filer):
    filer.dump({"v": 1}, "churn", metrics={"auc": 0.8}, tags={"team": "growth"})
    filer.dump({"v": 2}, "churn", overwrite=True, metrics={"auc": 0.9})
    [entry] = filer.list_files()
    assert entry.metrics == {"auc": 0.9} and entry.tags is None


def test_annotate_merges_per_name_and_none_deletes(filer):
    filer.dump({"v": 1}, "churn", metrics={"auc": 0.8, "loss": 0.3}, description="d")
    entry = filer.annotate("churn", metrics={"auc": 0.9, "loss": None}, params={"lr": 0.1})
    assert entry.metrics == {"auc": 0.9} and entry.params == {"lr": 0.1}
    assert entry.description == "d"
    entry = filer.annotate("churn", params={"lr": None}, description="")
    assert entry.params is None and entry.description is None and entry.metrics == {"auc": 0.9}
    assert filer.list_files() == [entry]


def test_a_refused_annotation_writes_nothing(filer):
    filer.dump({"v": 1}, "churn", metrics={"auc": 0.8})
    before = filer.registry_path.read_bytes()
    with pytest.raises(InvalidMetadataError, match=r"metrics\['auc'\] is inf"):
        filer.annotate("churn", metrics={"auc": float("inf")})
    many = {f"m{i}": 1 for i in range(64)}  # 65 with auc: the merged whole is over the bound
    with pytest.raises(InvalidMetadataError, match="65 names"):
        filer.annotate("churn", metrics=many)
    with pytest.raises(UnknownModelError):
        filer.annotate("nope", metrics={"auc": 0.5})
    assert filer.registry_path.read_bytes() == before


def test_annotate_on_a_synced_entry_leaves_its_bytes(tmp_path, s3_address, s3_client):
    filer = Filer(tmp_path / "models", s3_address)
    filer.dump({"v": 1}, "churn", push=True)
    [before] = filer.list_files()
    bucket, key = bucket_and_key(s3_address, before.key)
    stored = s3_client.head_object(Bucket=bucket, Key=key)["ETag"]
    after = filer.annotate("churn", metrics={"auc": 0.93}, tags={"stage": "eval"})
    assert after == before._replace(metrics={"auc": 0.93}, tags={"stage": "eval"})
    assert after.state == "synced" and after.key == before.key
    assert s3_client.head_object(Bucket=bucket, Key=key)["ETag"] == stored
    (tmp_path / "models" / "churn.pkl").unlink()
    assert filer.load("churn") == {"v": 1}  # downloaded and verified as before


def test_an_alias_loads_what_it_names_until_the_bytes_change(filer):
    filer.dump({"v": 1}, "churn_v3")
    filer.dump({"v": 0}, "churn_v2")
    [v2, v3] = filer.list_files()
    assert filer.set_alias("production", "churn_v3") == Alias("production", "churn_v3", v3.sha256)
    assert filer.set_alias("@staging", "churn_v2") == Alias("staging", "churn_v2", v2.sha256)
    assert filer.aliases() == {
        "production": Alias("production", "churn_v3", v3.sha256),
        "staging": Alias("staging", "churn_v2", v2.sha256),
    }
    assert filer.load("@production") == {"v": 1}
    assert b"  production: churn_v3@" in filer.registry_path.read_bytes()
    filer.remove("churn_v3")
    filer.dump({"v": 2}, "churn_v3")  # the overwrite advice: remove, dump again
    with pytest.raises(AliasError) as info:
        filer.load("@production")
    message = str(info.value)
    assert "@production names 'churn_v3' as it was" in message
    assert "filer.set_alias('production', 'churn_v3')" in message
    assert "model-filer alias production churn_v3" in message
    filer.set_alias("production", "churn_v3")  # moved explicitly: it follows
    assert filer.load("@production") == {"v": 2}
    filer.remove("churn_v2")
    with pytest.raises(AliasError, match="@staging names 'churn_v2', which the registry no"):
        filer.load("@staging")
    assert filer.set_alias("staging", None) is None
    assert list(filer.aliases()) == ["production"]


def test_alias_mistakes_are_refused_with_what_to_type(filer):
    filer.dump({"v": 1}, "churn")
    with pytest.raises(AliasError, match=r"no alias '@prod' \(its aliases: none\)"):
        filer.load("@prod")
    with pytest.raises(AliasError, match="no alias @prod to drop"):
        filer.set_alias("prod", None)
    with pytest.raises(InvalidNameError, match=r"Invalid alias '\.\./x'"):
        filer.set_alias("../x", "churn")
    with pytest.raises(UnknownModelError):
        filer.set_alias("prod", "nope")
    with pytest.raises(InvalidNameError):
        filer.load("@../x")


def test_load_an_alias_at_a_revision(repo, remote):
    filer = Filer(repo / "models", str(remote), "local")
    filer.dump({"v": 1}, "a", push=True)
    filer.dump({"v": 2}, "b", push=True)
    filer.set_alias("production", "a")
    first = commit(repo, "production is a")
    filer.set_alias("production", "b")
    commit(repo, "production is b")
    assert filer.load("@production", rev=first) == {"v": 1}
    assert filer.load("@production", rev="HEAD") == {"v": 2}
    assert filer.load("@production") == {"v": 2}
    filer.remove("a")
    commit(repo, "a removed")
    with pytest.raises(AliasError, match="no alias '@staging'"):
        filer.load("@staging", rev=first)
    assert filer.load("@production", rev=first) == {"v": 1}  # still on the remote


def test_an_alias_to_a_removed_model_advises_a_fix_that_works(filer):
    """Pointing the alias "again" at a name the registry no longer has fails: the advice is
    another model, or dropping it."""
    filer.dump({"v": 1}, "churn_v2")
    filer.dump({"v": 2}, "churn_v3")
    filer.set_alias("staging", "churn_v2")
    filer.remove("churn_v2")
    with pytest.raises(AliasError) as info:
        filer.load("@staging")
    message = str(info.value)
    assert "set_alias('staging', 'churn_v2')" not in message
    assert "model-filer alias staging churn_v2" not in message
    assert "`filer.set_alias('staging', MODEL)` or `model-filer alias staging MODEL`" in message
    assert "filer.set_alias('staging', None)" in message
    with pytest.raises(UnknownModelError):  # (what the old advice led to)
        filer.set_alias("staging", "churn_v2")
