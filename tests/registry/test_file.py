"""The registry file: safe, deterministic, merge-friendly YAML that refuses anything odd."""

from __future__ import annotations

import contextlib
import copy
import difflib
import os

import pytest
import yaml

from model_filer.errors import ModelFilerError, RegistryError
from model_filer.registry import codec as registry_text
from model_filer.registry import file as registry
from model_filer.registry import yamlio
from model_filer.registry.file import (
    Entry,
    Registry,
    RegistryFile,
    dumps,
    parse,
)
from model_filer.registry.model import HEADER, MAX_MODEL_BYTES
from model_filer.registry.yamlio import PurePythonLoader
from tests.support.registries import pyyaml_bytes

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
LOADERS = [pytest.param(yamlio.Loader, id="libyaml"), pytest.param(PurePythonLoader, id="pure")]
# Every registry error must tell the user how to get out of it.
HINTS = ("git checkout", "Restore it from git", "pip install -U", "fix the", "Fix the")


def says_what_to_do(message: str) -> bool:
    return any(hint in message for hint in HINTS)


def make_entry(name: str, sha: str = SHA_A, state: str = "synced", **changes) -> Entry:
    entry = Entry(
        name=name,
        state=state,
        sha256=sha,
        size=1234,
        serializer="pickle-5",
        created="2024-05-01T12:00:00+00:00",
        python="3.11.7",
        key=f"{name}/{sha}.pkl" if state == "synced" else None,
        library={"name": "sklearn", "version": "1.4.2"},
    )
    return entry._replace(**changes)


def make_registry(*entries: Entry, remote_type: str = "s3") -> Registry:
    return Registry(remote_type, "s3://bucket/models", {e.name: e for e in entries})


def base_doc() -> dict:
    """A valid registry as plain data, to break one field at a time."""
    reg = make_registry(make_entry("m1"), make_entry("m2", SHA_B, state="local"))
    return yaml.safe_load(dumps(reg))


def dump_doc(doc: dict) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def reject(text: bytes, loader=None) -> str:
    with pytest.raises(RegistryError) as info:
        parse(text, "models/.s3_registry", loader=loader)
    message = str(info.value)
    assert message.startswith("models/.s3_registry"), message
    assert says_what_to_do(message), message
    return message


# -- round trip and determinism ---------------------------------------------------------------


def test_round_trip_preserves_every_field():
    reg = make_registry(
        make_entry("m1"),
        make_entry("m2", SHA_B, state="local", library=None),
        make_entry("m3", SHA_C, size=0, python="3.12.1"),
    )
    assert parse(dumps(reg), "w") == reg


@pytest.mark.parametrize(
    "name", ["true", "null", "yes", "on", "123", "1.5", "0x1F", "1e3", "1_000", "Off"]
)
def test_names_that_look_like_other_yaml_types_round_trip_as_strings(name):
    reg = make_registry(make_entry(name))
    assert parse(dumps(reg), "w") == reg
    assert parse(dumps(reg), "w", loader=PurePythonLoader) == reg


def test_versions_that_look_like_numbers_round_trip_as_strings():
    entry = make_entry("m", python="3.10", library={"name": "torch", "version": "2.0"})
    reg = make_registry(entry)
    assert parse(dumps(reg), "w").entries["m"] == entry


def test_serialisation_starts_with_the_header_and_records_the_remote():
    text = dumps(make_registry(make_entry("m"))).decode()
    assert text.startswith(HEADER)
    doc = yaml.safe_load(text)
    assert doc["format"] == 1  # no metadata, no aliases: readable by releases before them
    assert doc["remote"] == {"type": "s3", "address": "s3://bucket/models"}


def test_same_content_serialises_to_the_same_bytes_whatever_the_insertion_order():
    e1, e2, e3 = make_entry("b"), make_entry("a", SHA_B), make_entry("c", SHA_C)
    one = dumps(make_registry(e1, e2, e3))
    two = dumps(make_registry(e3, e2, e1))
    assert one == two
    assert dumps(parse(one, "w")) == one  # re-serialising a parsed file is a no-op


def test_libyaml_and_pure_python_dumpers_give_identical_bytes():
    reg = make_registry(
        make_entry("m1"),
        make_entry("m2", SHA_B, state="local", library=None),
        make_entry("true", SHA_C, python="3.10"),
    )
    assert pyyaml_bytes(reg, yaml.CSafeDumper) == pyyaml_bytes(reg, yaml.SafeDumper)
    assert dumps(reg) == pyyaml_bytes(reg, yaml.SafeDumper)


def test_libyaml_and_pure_python_loaders_give_equal_results():
    text = dumps(make_registry(make_entry("m1"), make_entry("m2", SHA_B, state="local")))
    assert parse(text, "w") == parse(text, "w", loader=PurePythonLoader)


def test_default_loader_is_a_safe_loader_never_the_full_one():
    assert issubclass(yamlio.Loader, (yaml.CSafeLoader, yaml.SafeLoader))
    assert not issubclass(yamlio.Loader, (yaml.CLoader, yaml.CFullLoader, yaml.CUnsafeLoader))
    assert not issubclass(PurePythonLoader, (yaml.Loader, yaml.FullLoader, yaml.UnsafeLoader))


# -- merge friendliness -----------------------------------------------------------------------


def changed_lines(before: bytes, after: bytes) -> tuple[list[str], list[str]]:
    diff = list(
        difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines(), n=0)
    )
    removed = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
    return removed, added


def entry_lines(entry: Entry) -> list[str]:
    """The lines one entry takes in a serialised registry."""
    text = dumps(make_registry(entry)).decode().splitlines()
    return text[text.index("models:") + 1 :]


def test_adding_an_entry_adds_only_that_entrys_lines():
    a, c = make_entry("alpha"), make_entry("gamma", SHA_C)
    middle = make_entry("beta", SHA_B, state="local")
    removed, added = changed_lines(dumps(make_registry(a, c)), dumps(make_registry(a, middle, c)))
    assert removed == []
    assert added == entry_lines(middle)


def test_changing_an_entry_touches_only_that_entrys_lines():
    a, b, c = make_entry("alpha"), make_entry("beta", SHA_B, state="local"), make_entry("gamma")
    synced = b._replace(state="synced", key=f"beta/{SHA_B}.pkl")
    before = dumps(make_registry(a, b, c))
    after = dumps(make_registry(a, synced, c))
    removed, added = changed_lines(before, after)
    assert set(removed) <= set(entry_lines(b))
    assert set(added) <= set(entry_lines(synced))
    assert removed and added


def test_removing_an_entry_removes_only_that_entrys_lines():
    a, b, c = make_entry("alpha"), make_entry("beta", SHA_B), make_entry("gamma", SHA_C)
    removed, added = changed_lines(dumps(make_registry(a, b, c)), dumps(make_registry(a, c)))
    assert added == []
    assert removed == entry_lines(b)


# -- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", LOADERS)
def test_python_object_tags_are_refused_and_never_executed(tmp_path, loader):
    marker = tmp_path / "pwned"
    text = (
        HEADER + f"format: 1\nremote: !!python/object/apply:os.system ['touch {marker}']\n"
        "models: {}\n"
    ).encode()
    message = reject(text, loader)
    assert "not valid registry YAML" in message
    assert not marker.exists()


@pytest.mark.parametrize("loader", LOADERS)
def test_python_name_tags_are_refused(loader):
    reject(b"format: 1\nremote: !!python/name:os.system ''\nmodels: {}\n", loader)


@pytest.mark.parametrize("loader", LOADERS)
def test_duplicate_model_names_are_refused(loader):
    text = dumps(make_registry(make_entry("m1"))).decode()
    entry_text = "\n".join(entry_lines(make_entry("m1", SHA_B))) + "\n"
    message = reject((text + entry_text).encode(), loader)
    assert "duplicate key 'm1'" in message


@pytest.mark.parametrize("loader", LOADERS)
def test_duplicate_fields_are_refused(loader):
    text = dumps(make_registry(make_entry("m1"))).decode()
    text = text.replace(f"    sha256: {SHA_A}\n", f"    sha256: {SHA_A}\n    sha256: {SHA_B}\n")
    assert "duplicate key 'sha256'" in reject(text.encode(), loader)


@pytest.mark.parametrize("loader", LOADERS)
def test_duplicate_top_level_keys_are_refused(loader):
    text = dumps(make_registry(make_entry("m1"))) + b"models: {}\n"
    assert "duplicate key 'models'" in reject(text, loader)


@pytest.mark.parametrize(
    "marker_line", ["<<<<<<< HEAD", "=======\n>>>>>>> feature", ">>>>>>> theirs"]
)
def test_conflict_markers_are_refused_with_the_merge_driver_hint(marker_line):
    lines = dumps(make_registry(make_entry("m1"), make_entry("m2", SHA_B))).decode().splitlines()
    lines.insert(8, marker_line)
    message = reject(("\n".join(lines) + "\n").encode())
    assert "merge conflict markers" in message
    assert "merge-registry" in message or "install-hooks" in message


def test_conflict_marker_on_the_first_line_is_refused():
    message = reject(b"<<<<<<< HEAD\n" + dumps(make_registry(make_entry("m1"))))
    assert "merge conflict markers" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "1234"),
        ("size", True),
        ("size", 12.5),
        ("state", 1),
        ("sha256", None),
        ("serializer", 5),
        ("created", None),
        ("python", 3.11),
        ("key", ["m1", "x.pkl"]),
        ("library", "sklearn"),
    ],
)
def test_wrong_field_types_are_refused(field, value):
    doc = base_doc()
    doc["models"]["m1"][field] = value
    message = reject(dump_doc(doc))
    assert "'m1'" in message


@pytest.mark.parametrize(
    "library",
    [
        {"name": "sklearn"},
        {"name": "sklearn", "version": 1.4},
        {"name": "sklearn", "version": "1.4", "extra": "x"},
    ],
)
def test_malformed_library_is_refused(library):
    doc = base_doc()
    doc["models"]["m1"]["library"] = library
    assert "library must be" in reject(dump_doc(doc))


def test_unknown_fields_are_refused_naming_them():
    doc = base_doc()
    doc["models"]["m1"]["url"] = "http://evil.example/x.pkl"
    message = reject(dump_doc(doc))
    assert "unknown fields ['url']" in message
    assert "pip install -U ds-model-filer" in message


@pytest.mark.parametrize("state", ["pushed", "SYNCED", "", "local "])
def test_bad_state_is_refused(state):
    doc = base_doc()
    doc["models"]["m1"]["state"] = state
    assert "state must be 'local' or 'synced'" in reject(dump_doc(doc))


@pytest.mark.parametrize("size", [-1, MAX_MODEL_BYTES + 1, 2**80])
def test_negative_or_absurd_size_is_refused(size):
    doc = base_doc()
    doc["models"]["m1"]["size"] = size
    assert "out of range" in reject(dump_doc(doc))


@pytest.mark.parametrize("sha", [SHA_A.upper(), SHA_A[:63], "z" * 64, ""])
def test_bad_sha256_is_refused(sha):
    doc = base_doc()
    doc["models"]["m1"]["sha256"] = sha
    assert "sha256 must be 64 lower-case hex digits" in reject(dump_doc(doc))


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "/abs/key.pkl", "s3://other-bucket/x.pkl", "a\\b.pkl", "a\x00b"]
)
def test_unsafe_keys_are_refused(key):
    doc = base_doc()
    doc["models"]["m1"]["key"] = key
    assert "unsafe object key" in reject(dump_doc(doc))


def test_synced_entry_without_key_is_refused():
    doc = base_doc()
    del doc["models"]["m1"]["key"]
    assert "field 'key' must be str" in reject(dump_doc(doc))


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "con", "x" * 129])
def test_bad_model_names_are_refused(name):
    doc = base_doc()
    doc["models"][name] = doc["models"].pop("m1")
    reject(dump_doc(doc))


def test_non_string_model_name_is_refused():
    doc = base_doc()
    doc["models"][17] = doc["models"].pop("m1")
    assert "must be a string" in reject(dump_doc(doc))


@pytest.mark.parametrize("entry", [None, "synced", ["state", "synced"]])
def test_entry_that_is_not_a_mapping_is_refused(entry):
    doc = base_doc()
    doc["models"]["m1"] = entry
    assert "must be a mapping of fields" in reject(dump_doc(doc))


@pytest.mark.parametrize(
    "text", [b"", b"just a string\n", b"- a\n- list\n", b"format: [1\n", b"\x00\x01\x02"]
)
def test_not_a_registry_at_all_is_refused(text):
    reject(text)


@pytest.mark.parametrize("version", [0, "1", None, 1.5, 1.0, True])
def test_wrong_format_version_is_refused(version):
    doc = base_doc()
    doc["format"] = version
    message = reject(dump_doc(doc))
    assert "unsupported registry format" in message


NEWER = "written by a newer model_filer ({}); upgrade: `pip install -U ds-model-filer`; "
BUMP_REV = "pre-commit users: bump `rev:` for model_filer in .pre-commit-config.yaml."


@pytest.mark.parametrize(
    ("change", "found"),
    [
        pytest.param({"format": 5}, "registry format 5; this one reads 1 to 4", id="format"),
        pytest.param({"stages": {"x": 1}}, "unknown top-level keys ['stages']", id="top-level"),
    ],
)
def test_what_a_newer_release_writes_is_refused_with_the_upgrade(change, found):
    # An unknown top-level key used to be dropped silently on the next write.
    message = reject(dump_doc({**base_doc(), **change}))
    assert message.endswith(NEWER.format(found) + BUMP_REV), message


def test_an_unknown_entry_field_is_refused_with_the_upgrade():
    doc = base_doc()
    doc["models"]["m1"]["lineage"] = "x"
    message = reject(dump_doc(doc))
    assert message.endswith(NEWER.format("unknown fields ['lineage']") + BUMP_REV), message


def test_missing_remote_is_refused():
    doc = base_doc()
    del doc["remote"]
    assert "field 'remote' must be dict" in reject(dump_doc(doc))


def test_models_that_is_not_a_mapping_is_refused():
    doc = base_doc()
    doc["models"] = ["m1"]
    assert "'models' must be a mapping" in reject(dump_doc(doc))


def test_empty_models_is_an_empty_registry():
    doc = base_doc()
    doc["models"] = None
    assert parse(dump_doc(doc), "w").entries == {}


def test_oversize_registry_is_refused_before_parsing(monkeypatch, tmp_path):
    text = dumps(make_registry(make_entry("m1"), make_entry("m2", SHA_B)))
    for module in (registry, registry_text):  # the file's read and the codec's parse
        monkeypatch.setattr(module, "MAX_REGISTRY_BYTES", len(text) - 1)
    message = reject(text)
    assert "too large for a registry" in message
    # read() of such a file refuses it too, without reading it whole
    path = tmp_path / ".s3_registry"
    path.write_bytes(text)
    with pytest.raises(RegistryError, match="too large for a registry"):
        registry.read(path)


def test_registry_error_is_a_model_filer_error():
    with pytest.raises(ModelFilerError):
        parse(b"<<<<<<< HEAD\n", "w")


# -- the file ---------------------------------------------------------------------------------


def test_registry_file_round_trip(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    assert rf.path == tmp_path / ".s3_registry"
    assert rf.read() is None
    reg = make_registry(make_entry("m1"), make_entry("m2", SHA_B, state="local"))
    rf.write(reg)
    assert rf.read() == reg
    assert rf.path.read_bytes() == dumps(reg)


def test_unchanged_registry_is_not_rewritten(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    reg = make_registry(make_entry("m1"))
    rf.write(reg)
    os.utime(rf.path, ns=(1_000_000_000, 1_000_000_000))
    rf.write(copy.deepcopy(reg))
    assert rf.path.stat().st_mtime_ns == 1_000_000_000


def test_transaction_writes_only_on_change(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    with rf.transaction(make_registry()) as reg:
        pass
    assert not rf.path.exists()  # nothing changed: no file written
    with rf.transaction(make_registry()) as reg:
        reg.entries["m1"] = make_entry("m1")
    assert rf.read() == make_registry(make_entry("m1"))


def test_transaction_that_fails_leaves_the_file_as_it_was(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(make_entry("m1")))
    before = rf.path.read_bytes()
    with pytest.raises(RuntimeError), rf.transaction(make_registry()) as reg:
        reg.entries["m2"] = make_entry("m2", SHA_B)
        raise RuntimeError("boom")
    assert rf.path.read_bytes() == before


def test_remote_type_mismatch_between_file_name_and_content_is_refused(tmp_path):
    (tmp_path / ".s3_registry").write_bytes(
        dumps(make_registry(make_entry("m1"), remote_type="local"))
    )
    with pytest.raises(RegistryError) as info:
        RegistryFile(tmp_path, "s3").read()
    message = str(info.value)
    assert "'local'" in message and "'s3'" in message
    assert str(tmp_path / ".s3_registry") in message
    assert says_what_to_do(message)


def test_unreadable_registry_path_is_a_registry_error(tmp_path):
    (tmp_path / ".s3_registry").mkdir()
    with pytest.raises(RegistryError, match="cannot read the registry"):
        RegistryFile(tmp_path, "s3").read()


# -- the registry a RegistryFile last read or wrote: a transaction takes it over, never shares
# -- what it changes; a read of the same bytes is a copy of it, not a parse ------------------


def test_a_failed_transaction_leaves_no_trace_in_later_reads(tmp_path):
    """The registry a transaction took over from the memo was changed, then the block
    failed: later reads and transactions must see the file, not the half-changed object."""
    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(make_entry("m1")))
    with pytest.raises(RuntimeError), rf.transaction(make_registry()) as reg:
        reg.entries["m2"] = make_entry("m2", SHA_B)
        del reg.entries["m1"]
        raise RuntimeError("boom")
    assert rf.read() == make_registry(make_entry("m1"))
    with rf.transaction(make_registry()) as reg:
        assert set(reg.entries) == {"m1"}
        reg.entries["m3"] = make_entry("m3", SHA_C)
    assert set(rf.read().entries) == {"m1", "m3"}


def test_an_untouched_failed_transaction_keeps_the_registry_it_took(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    written = make_entry("m1")
    rf.write(make_registry(written))
    with pytest.raises(RuntimeError), rf.transaction(make_registry()):
        raise RuntimeError("refused before any change")
    assert rf.read().entries["m1"] is written  # the same object: not parsed again


def test_changing_a_registry_after_its_transaction_does_not_change_later_reads(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    with rf.transaction(make_registry()) as reg:
        reg.entries["m1"] = make_entry("m1")
    reg.entries["ghost"] = make_entry("ghost", SHA_B)  # the writer's object, not the file
    reg.remote_address = "s3://elsewhere"
    assert rf.read() == make_registry(make_entry("m1"))
    assert rf.peek() == make_registry(make_entry("m1"))


def test_a_read_copy_can_change_without_touching_the_memo(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(make_entry("m1")))
    mine = rf.read()
    mine.entries["m2"] = make_entry("m2", SHA_B)
    assert set(rf.read().entries) == {"m1"}
    with rf.transaction(make_registry()) as reg:
        assert set(reg.entries) == {"m1"}


def test_a_file_changed_behind_the_memo_is_read_again(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(make_entry("m1")))
    other = make_registry(make_entry("m1"), make_entry("m2", SHA_B))
    rf.path.write_bytes(dumps(other))  # another process (or git) replaced it
    with rf.transaction(make_registry()) as reg:
        assert reg == other


@pytest.mark.parametrize("where", ["start", "past the first piece", "last byte"])
def test_a_same_size_change_behind_the_memo_is_read_again(tmp_path, where):
    """The memo's bytes are checked against the file a piece at a time: a change of the same
    size anywhere (written in place, as an editor may) is seen."""
    many = [make_entry(f"m{i:04d}") for i in range(1500)]  # ~300 KB: more than one piece
    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(*many))
    data = rf.path.read_bytes()
    assert len(data) > 256 * 1024  # (the piece registry.py compares at a time)
    at = {"start": data.index(b"m0000"), "past the first piece": data.index(b"m1499")}
    if where == "last byte":  # the last entry's library version, 1.4.2 -> 1.4.3
        assert data.endswith(b"version: 1.4.2\n")
        changed = data[:-2] + b"3\n"
    else:
        changed = data[: at[where]] + b"n" + data[at[where] + 1 :]
    with open(rf.path, "r+b") as fh:  # in place: same inode, same size
        fh.write(changed)
    with rf.transaction(make_registry()) as reg:
        assert reg == parse(changed, "r") and len(reg.entries) == 1500


def test_the_bytes_last_written_are_recognised_and_any_others_parsed(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    written = make_entry("m1")
    rf.write(make_registry(written))
    assert rf.read().entries["m1"] is written  # recognised: no parse
    rf.path.write_bytes(rf.path.read_bytes() + b"# more\n")
    again = rf.read().entries["m1"]
    assert again == written and again is not written  # longer: parsed


def test_read_of_a_file_that_grows_while_read_gets_every_byte(tmp_path):
    """The read is sized by fstat; bytes appended after that are read too."""
    rf = RegistryFile(tmp_path, "s3")
    text = dumps(make_registry(make_entry("m1"), make_entry("m2", SHA_B)))
    head, tail = text[:100], text[100:]
    rf.path.write_bytes(head)
    real_fstat = os.fstat

    def fstat_then_append(fd):
        st = real_fstat(fd)
        with open(rf.path, "ab") as fh:
            fh.write(tail)
        return st

    import unittest.mock

    with unittest.mock.patch.object(registry.os, "fstat", fstat_then_append):
        got = registry.read(rf.path)
    assert got is not None and dumps(got) == text


def test_case_twins_follow_additions_and_removals():
    reg = make_registry(make_entry("Model"), make_entry("other"))
    assert reg.case_twin("model") == "Model"
    assert reg.case_twin("Model") is None
    del reg.entries["Model"]
    assert reg.case_twin("model") is None
    reg.entries["MODEL"] = make_entry("MODEL")
    reg.entries["model"] = make_entry("model")  # a legacy registry may hold both
    assert reg.case_twin("model") == "MODEL" and reg.case_twin("MODEL") == "model"
    del reg.entries["MODEL"]
    assert reg.case_twin("model") is None
    copied = reg.copy()
    copied.entries["mODEL"] = make_entry("mODEL")
    assert copied.case_twin("model") == "mODEL" and reg.case_twin("model") is None
    reg.entries.update({"OTHER": make_entry("OTHER")})  # a bulk change: counted again
    assert reg.case_twin("other") == "OTHER"


def test_threads_never_see_nor_keep_the_changes_of_a_failed_transaction(tmp_path):
    """Readers copy (and put back) the memo while transactions take it over and fail."""
    import threading

    rf = RegistryFile(tmp_path, "s3")
    rf.write(make_registry(make_entry("m1")))
    stop, seen = threading.Event(), []

    def failing() -> None:
        for i in range(150):
            with contextlib.suppress(RuntimeError), rf.transaction(make_registry()) as reg:
                reg.entries[f"ghost{i}"] = make_entry(f"ghost{i}", SHA_B)
                del reg.entries["m1"]
                raise RuntimeError("refused after changing it")

    def reading() -> None:
        while not stop.is_set():
            seen.append(set(rf.read().entries))
            peeked = rf.peek()
            assert peeked is not None and peeked.case_twin("M1") in ("m1", None)

    readers = [threading.Thread(target=reading) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        failing()
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert seen and all(names == {"m1"} for names in seen)
    with rf.transaction(make_registry()) as reg:
        reg.entries["m2"] = make_entry("m2", SHA_C)
    assert set(parse(rf.path.read_bytes(), "r").entries) == {"m1", "m2"}


def test_a_remote_change_after_the_blocks_own_write_is_written_too(tmp_path):
    rf = RegistryFile(tmp_path, "s3")
    with rf.transaction(make_registry()) as reg:
        reg.entries["m1"] = make_entry("m1")
        rf.write(reg)  # as commit_dump does, to order the write before a rename
        reg.remote_id = "f" * 32
    assert rf.read().remote_id == "f" * 32


# -- no process-wide state ---------------------------------------------------------------------


def test_two_registry_files_of_one_path_share_nothing(tmp_path):
    """What a RegistryFile keeps is its own: another object of the same path reads the file."""
    written = make_entry("m1")
    one, two = RegistryFile(tmp_path, "s3"), RegistryFile(tmp_path, "s3")
    one.write(make_registry(written))
    assert one.read().entries["m1"] is written
    read = two.read().entries["m1"]
    assert read == written and read is not written


def test_dumps_leave_no_thread_running(tmp_path):
    """A notebook that imports model_filer gets no hidden thread (nor atexit or fork hook)."""
    import threading

    from model_filer import Filer

    remote = tmp_path / "remote"
    remote.mkdir()
    before = set(threading.enumerate())
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    for i in range(3):
        filer.dump({"w": i}, f"m{i}")
    assert set(threading.enumerate()) == before
