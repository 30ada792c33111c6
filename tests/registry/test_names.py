"""Model names, object keys and hashes: what may reach a filesystem path or a bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.errors import InvalidNameError, ModelExistsError, ModelFilerError
from model_filer.registry.names import (
    NAME_RULE,
    check_key,
    check_name,
    check_sha256,
    object_key,
    show,
)

GOOD_SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    ["m", "my_model", "model-1.2", "A+B", "x" * 128, "0day", "v1.0.3_final", "comic", "con_x"],
)
def test_valid_names_are_returned_unchanged(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        ".",
        "a..b",
        "../escape",
        "a/b",
        "/abs",
        "/etc/passwd",
        "a\\b",
        "a\x00b",
        "x" * 129,
        ".hidden",
        "-flag",
        "_under",
        "trailing.",
        "with space",
        "tab\t",
        "new\nline",
        "ümlaut",
        "s3://bucket/x",
        "a:b",
        "a*b",
    ],
)
def test_invalid_names_are_rejected_with_the_rule(name):
    with pytest.raises(InvalidNameError) as info:
        check_name(name)
    assert NAME_RULE in str(info.value)
    assert show(name) in str(info.value)  # shown, but bounded: registries are untrusted


@pytest.mark.parametrize("name", ["con", "CON", "nul.txt", "aux", "prn", "com1", "LPT9", "Com0.x"])
def test_windows_reserved_names_are_rejected(name):
    with pytest.raises(InvalidNameError, match=r"reserved device name on Windows\. Use another"):
        check_name(name)


@pytest.mark.parametrize("name", [None, 1, b"model", ["m"], 1.5])
def test_non_string_names_are_rejected(name):
    with pytest.raises(InvalidNameError) as info:
        check_name(name)
    message = str(info.value)
    assert "must be a string" in message
    assert type(name).__name__ in message
    assert NAME_RULE in message


def test_invalid_name_error_is_a_model_filer_error_and_value_error():
    with pytest.raises(ModelFilerError):
        check_name("..")
    with pytest.raises(ValueError):
        check_name("..")


@pytest.mark.parametrize(
    "key",
    ["m/" + GOOD_SHA + ".pkl", "prefix/sub/m/x.pkl", "a", "a=b+c-d_e.f"],
)
def test_safe_keys_are_returned_unchanged(key):
    assert check_key(key, "here") == key


@pytest.mark.parametrize(
    "key",
    [
        "..",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "/abs/key",
        "/",
        "s3://other/x",
        "a\\b",
        "..\\x",
        "a\x00b",
        "a//b",
        "a/",
        "a\nb",
        "a b",
        "x" * 256,
    ],
)
def test_unsafe_keys_are_rejected(key):
    with pytest.raises(InvalidNameError) as info:
        check_key(key, "reg.yaml entry 'm'")
    message = str(info.value)
    assert message.startswith("reg.yaml entry 'm': ")
    assert "unsafe object key" in message
    assert "git checkout" in message  # says how to recover


@pytest.mark.parametrize("key", ["", None, 3, "a/" * 600])
def test_empty_non_string_or_overlong_keys_are_rejected(key):
    with pytest.raises(InvalidNameError, match="object key must be a non-empty string"):
        check_key(key, "where")


def test_check_sha256_accepts_lowercase_hex():
    assert check_sha256(GOOD_SHA, "w") == GOOD_SHA


@pytest.mark.parametrize(
    "value",
    [GOOD_SHA.upper(), GOOD_SHA[:-1], GOOD_SHA + "0", "g" * 64, "", None, 12, GOOD_SHA + "\n"],
)
def test_check_sha256_rejects_anything_else(value):
    with pytest.raises(InvalidNameError) as info:
        check_sha256(value, "entry 'm'")
    assert str(info.value).startswith("entry 'm': sha256 must be 64 lower-case hex digits")


def test_object_key_is_name_then_sha_and_passes_check_key():
    key = object_key("my_model", GOOD_SHA)
    assert key == f"my_model/{GOOD_SHA}.pkl"
    assert check_key(key, "w") == key


def test_a_name_differing_only_in_case_is_refused(tmp_path: Path, remote: Path) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump(1, "Model")
    for overwrite in (False, True):
        with pytest.raises(ModelExistsError, match="differs only in case from 'Model'"):
            filer.dump(2, "model", overwrite=overwrite)
    assert [e.name for e in filer.list_files()] == ["Model"]
    filer.dump(3, "Model", overwrite=True)  # the same name is still an overwrite


def test_case_twins_are_found_among_many_and_in_a_registry_that_already_has_them() -> None:
    from model_filer.registry.file import Entry, Registry

    def entry(name: str) -> Entry:
        return Entry(name, "local", "a" * 64, 1, "pickle-5", "2024-05-01T12:00:00+00:00", "3.11.7")

    reg = Registry("local", "/srv", {f"m{i}": entry(f"m{i}") for i in range(1000)})
    assert reg.case_twin("M500") == "m500"
    assert reg.case_twin("m500") is None
    reg.entries["Zed"] = entry("Zed")  # the index follows changes
    assert reg.case_twin("zed") == "Zed"
    legacy = Registry("local", "/srv", {"A": entry("A"), "a": entry("a")})
    assert legacy.case_twin("a") == "A" and legacy.case_twin("A") == "a"
