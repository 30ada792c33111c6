"""Entry metadata (metrics, params, tags, description) and aliases in the registry's text."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from model_filer import Filer
from model_filer.errors import InvalidMetadataError, RegistryError
from model_filer.registry import yamlio
from model_filer.registry.codec import Codec, dumps, parse
from model_filer.registry.model import (
    MAX_METADATA_BYTES,
    MAX_METADATA_NAMES,
    Entry,
    Registry,
    check_metadata,
    format_needed,
)
from tests.support.gitrepo import sample_entry
from tests.support.registries import pyyaml_bytes

FLOATS = [1e-05, 1.0, -0.0, 1e20, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 1e16, -2.5e-300]
LOOK_ALIKES = ["1.0", "2024-01-01", "yes", "null", "1e5", "0x1F", "1:30", "true", "~", "nan", "007"]


def annotated(name: str = "churn_v3", **metadata: object) -> Entry:
    return sample_entry(name)._replace(**metadata)


def every_kind() -> Entry:
    return annotated(
        metrics={
            **{f"f{i}": v for i, v in enumerate(FLOATS)},
            "big": 10**30,
            "neg": -7,
            "val/loss": 0.25,
            "f1.macro": 0.5,
        },
        params={
            **{f"s{i}": v for i, v in enumerate(LOOK_ALIKES)},
            "none": None,
            "yes_": True,
            "no_": False,
            "int": 3,
            "float": 2.5,
        },
        tags={f"t{i}": v for i, v in enumerate(LOOK_ALIKES)} | {"team": "growth"},
        description="2024-01-01",
    )


def test_every_kind_of_value_round_trips_through_pyyamls_safe_loader():
    entry = every_kind()
    reg = Registry("local", "/r", {entry.name: entry}, aliases={"prod": (entry.name, entry.sha256)})
    text = dumps(reg)
    assert text == pyyaml_bytes(reg)  # the writer's bytes are PyYAML's
    data = yaml.safe_load(text)["models"][entry.name]
    for field in ("metrics", "params", "tags"):
        got, want = data[field], getattr(entry, field)
        assert list(got) == sorted(want)  # sorted keys
        for name, value in want.items():
            assert type(got[name]) is type(value) and got[name] == value, (field, name)
            if type(value) is float:
                assert math.copysign(1, got[name]) == math.copysign(1, value)  # -0.0 stays
    assert data["description"] == "2024-01-01"
    assert Codec().parse_canonical(text) == reg  # the fast reader, no PyYAML
    assert parse(text, "r", loader=yamlio.PurePythonLoader) == reg


def test_floats_are_written_as_pyyaml_writes_them():
    entry = annotated(metrics={"a": 1e-05, "b": 1.0, "c": -0.0, "d": 1e20, "e": 10**20})
    text = dumps(Registry("local", "/r", {entry.name: entry})).decode()
    assert "      a: 1.0e-05\n      b: 1.0\n      c: -0.0\n      d: 1.0e+20\n" in text
    assert "      e: 100000000000000000000\n" in text


def test_a_registry_without_metadata_or_aliases_keeps_format_1():
    plain = Registry("local", "/r", {"m": sample_entry("m")})
    assert format_needed(plain) == 1
    assert b"\nformat: 1\n" in dumps(plain)
    with_metadata = Registry("local", "/r", {"m": annotated("m", tags={"a": "b"})})
    with_alias = Registry("local", "/r", {"m": sample_entry("m")}, aliases={"p": ("m", "a" * 64)})
    for reg in (with_metadata, with_alias):
        assert format_needed(reg) == 2
        assert b"\nformat: 2\n" in dumps(reg)
        assert Codec().parse_canonical(dumps(reg)) == reg


def test_a_format_that_does_not_match_the_content_is_read_by_pyyaml():
    reg = Registry("local", "/r", {"m": sample_entry("m")})
    text = dumps(reg).replace(b"format: 1", b"format: 2")  # readable, but not as written here
    assert Codec().parse_canonical(text) is None
    assert parse(text, "r") == reg


def test_an_alias_move_changes_one_line():
    a, b = sample_entry("a"), sample_entry("b")._replace(sha256="cd" * 32, key=f"b/{'cd' * 32}.pkl")
    before = Registry("local", "/r", {"a": a, "b": b}, aliases={"prod": ("a", a.sha256)})
    after = Registry("local", "/r", {"a": a, "b": b}, aliases={"prod": ("b", b.sha256)})
    old, new = dumps(before).splitlines(), dumps(after).splitlines()
    changed = [(x, y) for x, y in zip(old, new, strict=True) if x != y]
    assert changed == [(f"  prod: a@{a.sha256}".encode(), f"  prod: b@{b.sha256}".encode())]


def test_an_annotation_changes_only_its_entrys_lines():
    a, b = sample_entry("a"), sample_entry("b")
    before = dumps(Registry("local", "/r", {"a": a, "b": b}, aliases={"p": ("a", a.sha256)}))
    after = dumps(
        Registry(
            "local",
            "/r",
            {"a": a, "b": b._replace(metrics={"auc": 0.9})},
            aliases={"p": ("a", a.sha256)},
        )
    )
    assert after == before + b"    metrics:\n      auc: 0.9\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"auc": float("nan")}}, "metrics['auc'] is nan: a metric is a finite int"),
        ({"metrics": {"auc": float("inf")}}, "metrics['auc'] is inf: a metric is a finite"),
        ({"metrics": {"auc": -float("inf")}}, "metrics['auc'] is -inf"),
        (
            {"metrics": {"ok": True}},
            "metrics['ok'] is True: a metric is a finite int or float (not a bool",
        ),
        ({"metrics": {"auc": "0.9"}}, "metrics['auc'] is '0.9'"),
        ({"metrics": {"auc": np.float64("nan")}}, "metrics['auc'] is"),
        ({"metrics": {"auc": np.bool_(True)}}, "metrics['auc'] is"),
        ({"metrics": [0.9]}, "metrics must be a dict of name -> value"),
        (
            {"params": {"layers": [1, 2]}},
            "params['layers'] is [1, 2]: a param is a str of printable",
        ),
        ({"params": {"lr": float("nan")}}, "params['lr'] is nan"),
        ({"params": {"ctl": "a\x00b"}}, "params['ctl']"),
        ({"tags": {"team": 3}}, "tags['team'] is 3: a tag is a str of printable characters"),
        ({"tags": {"team": None}}, "tags['team'] is None"),
        ({"tags": {"bad name": "x"}}, "tags: invalid name 'bad name'. Use 1-64 characters"),
        ({"tags": {"": "x"}}, "tags: invalid name ''"),
        ({"tags": {"-x": "x"}}, "tags: invalid name '-x'"),
        ({"tags": {"k=v": "x"}}, "tags: invalid name 'k=v'"),
        ({"tags": {"x" * 65: "x"}}, "tags: invalid name"),
        ({"tags": {1: "x"}}, "tags: invalid name 1"),
        ({"description": 3}, "description must be a str of printable characters, got 3"),
        ({"description": "bell\x07"}, "description must be a str"),
        # Newlines and tabs too: one line a field, as the messages say (issue: team-path).
        ({"tags": {"t": "x\ny"}}, "tags['t'] is 'x\\ny': a tag is a str of printable"),
        ({"tags": {"t": "a\tb"}}, "tags['t'] is 'a\\tb': a tag is a str of printable"),
        ({"tags": {"t": "a\rb"}}, "tags['t'] is 'a\\rb'"),
        ({"tags": {"t": "a\u2028b"}}, "tags['t']"),
        ({"params": {"p": "a\nb"}}, "params['p'] is 'a\\nb': a param is a str of printable"),
        ({"params": {"p": "a\tb"}}, "params['p'] is 'a\\tb'"),
        ({"description": "esc\x1b[31m"}, "description must be a str"),
        (
            {"tags": {f"t{i}": "x" for i in range(MAX_METADATA_NAMES + 1)}},
            f"metadata of {MAX_METADATA_NAMES + 1} names",
        ),
        ({"description": "x" * (MAX_METADATA_BYTES + 1)}, f"{MAX_METADATA_BYTES + 1} bytes"),
    ],
)
def test_bad_metadata_is_refused_with_its_message(kwargs, message):
    with pytest.raises(InvalidMetadataError) as info:
        check_metadata(**kwargs)
    assert message in str(info.value), str(info.value)


def test_metadata_at_its_bounds_is_accepted():
    tags = {f"t{i:02d}": "x" for i in range(MAX_METADATA_NAMES)}
    assert check_metadata(tags=tags)[2] == tags
    assert check_metadata(description="x" * MAX_METADATA_BYTES)[3] == "x" * MAX_METADATA_BYTES


def test_numpy_scalars_are_stored_as_plain_numbers_and_mappings_sorted():
    metrics, params, tags, description = check_metadata(
        metrics={"b": np.float32(0.5), "a": np.int64(3)},
        params={"n": np.int32(2), "flag": np.bool_(True)},
        tags={},
        description="",
    )
    assert list(metrics) == ["a", "b"] and metrics == {"a": 3, "b": 0.5}
    assert type(metrics["a"]) is int and type(metrics["b"]) is float
    assert params == {"flag": True, "n": 2} and type(params["flag"]) is bool
    assert tags is None and description is None  # nothing given: nothing written


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((b"auc: 0.9", b"auc: .nan"), "metrics['auc'] is nan"),
        ((b"auc: 0.9", b"auc: yes"), "metrics['auc'] is True"),
        ((b"team: growth", b"team: 12"), "tags['team'] is 12"),
        ((b"team: growth", b"'a b': growth"), "tags: invalid name 'a b'"),
        ((b"  prod: m@", b"  prod: m@ab"), "alias 'prod' must be `<model>@<sha256>`"),
        ((b"  prod: m@", b"  'a b': m@"), "alias 'a b' must be"),
        ((b"  prod: m@", b"  prod: ../x@"), "alias 'prod' must be"),
        # Newlines and tabs: the fast reader never takes such a value (printable ASCII on one
        # line), and PyYAML's path, which then reads the block, refuses it by check_metadata.
        ((b"team: growth", b'team: "x\\ny"'), "tags['team'] is 'x\\ny': a tag is a str"),
        ((b"team: growth", b"team: 'x\n\n        y'"), "tags['team'] is 'x\\ny'"),
        ((b"team: growth", b'team: "a\\tb"'), "tags['team'] is 'a\\tb'"),
        ((b"team: growth", b"team: 'a\tb'"), "tags['team'] is 'a\\tb'"),
        ((b"lr: 0.1", b'lr: "a\\nb"'), "params['lr'] is 'a\\nb': a param is a str"),
    ],
)
def test_bad_metadata_or_aliases_in_a_registry_are_refused(tmp_path, edit, message):
    entry = annotated(
        "m", metrics={"auc": 0.9}, params={"lr": 0.1}, tags={"team": "growth"}, description="d"
    )
    text = dumps(Registry("local", "/r", {"m": entry}, aliases={"prod": ("m", entry.sha256)}))
    assert edit[0] in text
    edited = text.replace(*edit)
    assert yaml.safe_load(edited)  # (well-formed YAML: only the value is wrong)
    with pytest.raises(RegistryError) as info:
        parse(edited, "r")
    assert message in str(info.value), str(info.value)
    path = tmp_path / ".local_registry"  # and as every command reads it, from the file
    path.write_bytes(edited.replace(b"address: /r", f"address: {tmp_path}/remote".encode()))
    with pytest.raises(RegistryError) as from_disk:
        Filer(tmp_path, str(tmp_path / "remote"), remote_type="local").list_files()
    assert message in str(from_disk.value), str(from_disk.value)


def test_reading_metadata_and_aliases_imports_no_pyyaml(tmp_path):
    usual = annotated(
        metrics={"auc": 0.91, "val/loss": 1e-05, "n": 3, "f1.macro": -0.0},
        params={"lr": 0.01, "optimizer": "adam", "seed": 3, "none": None, "flag": True, "v": "1.0"},
        tags={"team": "growth team", "date": "2024-01-01"},
        description="v3 with 500 trees",  # (spaces: still plain, still no PyYAML)
    )
    entries = {f"m{i:03d}": usual._replace(name=f"m{i:03d}") for i in range(20)}
    reg = Registry("local", "/r", entries, aliases={"prod": ("m001", entries["m001"].sha256)})
    path = tmp_path / ".local_registry"
    path.write_bytes(dumps(reg))
    code = (
        "import sys\n"
        "from model_filer.registry.file import read\n"
        f"reg = read(__import__('pathlib').Path({str(path)!r}))\n"
        "assert len(reg.entries) == 20 and reg.aliases\n"
        "assert 'yaml' not in sys.modules, 'PyYAML imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_format_the_entries_need_keeps_in_step_with_changes():
    plain, rich = sample_entry("a"), annotated("a", tags={"t": "x"})
    reg = Registry("local", "/r", {"a": plain, "b": plain._replace(name="b")})
    entries = reg.entries
    assert format_needed(reg) == 1
    entries["a"] = rich
    assert format_needed(reg) == 2
    entries["c"] = rich._replace(name="c")
    entries["a"] = rich  # (replaced by the same kind: no change)
    copy = reg.copy()
    del entries["c"]
    entries["a"] = plain
    assert format_needed(reg) == 1
    assert format_needed(copy) == 2
    del copy.entries["a"], copy.entries["c"]
    assert format_needed(copy) == 1
    entries.update({"d": rich._replace(name="d")})  # a bulk change: counted again when asked
    assert format_needed(reg) == 2


def test_a_description_may_be_a_paragraph_but_a_tag_is_one_line():
    entry = annotated(
        "m", tags={"team": "growth"}, description="Trained on Q3.\n\tRetrain monthly."
    )
    text = dumps(Registry("local", "/r", {"m": entry}))
    assert parse(text, "r").entries["m"].description == "Trained on Q3.\n\tRetrain monthly."
    with pytest.raises(InvalidMetadataError, match="a tag is a str of printable"):
        check_metadata(tags={"team": "two\nlines"})
