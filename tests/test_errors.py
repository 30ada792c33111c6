"""Errors carry their fields, and a bulk failure keeps every cause as data in one message."""

from __future__ import annotations

import pytest

from model_filer import (
    BucketNotFoundError,
    Filer,
    LocalOnlyError,
    ModelFilerError,
    TransferError,
    UnknownModelError,
)


def test_unknown_model_error_knows_the_name_the_registry_and_the_known_names(tmp_path):
    filer = Filer(tmp_path / "models", str(tmp_path), remote_type="local")
    filer.dump(1, "alpha")
    filer.dump(2, "beta")
    with pytest.raises(UnknownModelError) as info:
        filer.load("gamma")
    error = info.value
    assert error.names == ["gamma"]
    assert error.registry == str(filer.registry_path)
    assert error.known == ["alpha", "beta"]
    assert str(error) == (
        f"No model 'gamma' in {filer.registry_path}. Known there: alpha, beta. "
        "Run filer.show_files() or `model-filer status` to list them."
    )
    assert isinstance(error, KeyError)  # dict-like lookups still catch it


def test_unknown_model_error_at_a_revision_says_which():
    error = UnknownModelError("m", "models/.s3_registry", [], rev="v1.2")
    assert "models/.s3_registry at revision 'v1.2'" in str(error)
    assert "Known there: none" in str(error)


def test_a_thousand_identical_failures_make_one_sentence(tmp_path):
    remote = tmp_path / "share"
    failures: dict[str, ModelFilerError] = {
        f"m{i:04d}": BucketNotFoundError(f"Remote folder {remote} does not exist.")
        for i in range(1000)
    }
    error = TransferError("push", failures)
    message = str(error)
    assert message.startswith(
        f"1000 models failed to push: Remote folder {remote} does not exist. "
        "(m0000, m0001, m0002, m0003, m0004 and 995 more)"
    )
    assert message.count("does not exist") == 1
    assert len(error.failures) == 1000
    assert error.causes() == {BucketNotFoundError}


def test_distinct_causes_are_grouped_most_common_first():
    failures: dict[str, ModelFilerError] = {
        "a": LocalOnlyError("a is gone."),
        "b": BucketNotFoundError("no share."),
        "c": BucketNotFoundError("no share."),
    }
    message = str(TransferError("pull", failures))
    assert message == "3 models failed to pull: no share. (b, c); a is gone. (a)"


def test_many_distinct_causes_are_counted_not_all_listed():
    failures: dict[str, ModelFilerError] = {
        f"m{i}": ModelFilerError(f"cause {i}.") for i in range(12)
    }
    message = str(TransferError("push", failures))
    assert message.endswith("and 7 other causes")
    assert message.count("cause") == 6  # five listed, plus "other causes"


def test_push_all_to_a_missing_remote_folder_raises_one_grouped_error(tmp_path):
    remote = tmp_path / "share"
    remote.mkdir()
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    for i in range(30):
        filer.dump(i, f"m{i:02d}")
    remote.rmdir()  # the share is unmounted
    with pytest.raises(TransferError) as info:
        filer.push_all(jobs=4)
    assert str(info.value).startswith(f"30 models failed to push: Remote folder {remote}")
    assert str(info.value).count("does not exist") == 1
    assert info.value.causes() == {BucketNotFoundError}
    assert all(e.state == "local" for e in filer.list_files())


def test_a_git_call_in_a_missing_folder_names_the_folder_not_git(tmp_path):
    from model_filer import gitops

    with pytest.raises(ModelFilerError, match=r"absent is not a folder"):
        gitops.run(["status"], tmp_path / "absent")
