"""The registry codec: its writer gives PyYAML's bytes, its fast reader PyYAML's data, and it
trusts nothing unchecked."""

from __future__ import annotations

import random
import re
import string

import pytest
import yaml

from model_filer.errors import ModelFilerError, RegistryError
from model_filer.registry import codec as registry_text
from model_filer.registry import yamlio
from model_filer.registry.file import Codec, Entry, Registry, RegistryFile, dumps, parse
from model_filer.registry.model import HEADER
from tests.support.gitrepo import registry_bytes, sample_entry
from tests.support.registries import pyyaml_bytes

SHA = "ab" * 32
# Strings PyYAML must quote or may write plain: numbers, dates, bools, nulls, indicators.
TRICKY = [
    "123",
    "0123",
    "1e5",
    "1.5",
    "3.11.7",
    "0x1F",
    "0o17",
    "1_000",
    "1:30",
    "true",
    "False",
    "yes",
    "on",
    "null",
    "~",
    "",
    "=",
    "<<",
    ".inf",
    "2024-05-01",
    "2024-05-01T12:00:00+00:00",
    "-",
    "-a",
    "a:",
    "a: b",
    "a #b",
    "#a",
    "'q'",
    '"q"',
    "a'b",
    " lead",
    "trail ",
    "multi\nline",
    "tab\there",
    "ünïcode",
    "emoji 🙂",
    "s3://bucket/pre/fix",
    "name/sha.pkl",
    "x" * 140,
    "k=v",
    "@at",
    "%pc",
    "!bang",
    "&amp",
    "*star",
    "[br]",
    "{cu}",
    "a,b",
    "?q",
]


def seeded(seed: int) -> random.Random:
    """Reproducible test data, not secrets."""
    return random.Random(seed)  # noqa: S311


def rand_str(rng: random.Random) -> str:
    if rng.random() < 0.35:
        return rng.choice(TRICKY)
    alphabet = string.ascii_letters + string.digits + "_.+-/:=' #\"é"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def rand_name(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "_.+-"
    first = rng.choice(string.ascii_letters + string.digits)
    if rng.random() < 0.2:
        return rng.choice(["123", "1e5", "true", "null", "yes", "1.5", "0x1F", "on", "x" * 128])
    return first + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))


FLOATS = [0.0, -0.0, 1.0, 0.1, 1e-05, 1e16, 1e20, -2.5e-300, 5e-324, 1.7976931348623157e308, 1 / 3]


def rand_value(rng: random.Random) -> object:
    kind = rng.random()
    if kind < 0.5:
        return rand_str(rng)
    if kind < 0.6:
        return rng.choice([0, 1, 7, 10**12, -3, 10**30])
    if kind < 0.65:
        return rng.choice([*FLOATS, True, False, None])
    if kind < 0.8:
        return {rand_str(rng) or "k": rand_str(rng) for _ in range(rng.randint(0, 3))}
    return sorted(rand_str(rng) for _ in range(rng.randint(0, 3)))


def rand_entry(rng: random.Random, name: str) -> Entry:
    """An entry with arbitrary (often invalid) values: the writer must match PyYAML anyway."""
    valid = rng.random() < 0.5
    return Entry(
        name=name,
        state=rng.choice(["local", "synced"]) if valid else rand_str(rng),
        sha256=SHA if valid else rand_str(rng),
        size=rng.choice([0, 5, 123456789]),
        serializer="pickle-5" if valid else rand_str(rng),
        created="2024-05-01T12:00:00+00:00" if valid else rand_str(rng),
        python="3.11.7" if valid else rand_str(rng),
        key=rng.choice([None, f"{name}/{SHA}.pkl", rand_str(rng)]),
        library=rng.choice([None, {"name": "sklearn", "version": "1.4.2"}, rand_value(rng)]),  # type: ignore[arg-type]
        imports=rng.choice(
            [
                None,
                [],
                ["numpy.dtype", "sklearn.tree._classes.DecisionTreeClassifier"],
                rand_value(rng),
            ]
        ),
        **rand_metadata(rng),
    )


def rand_meta_name(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(["val/loss", "f1.macro", "1e5", "true", "null", "1.5", "_x", "a-b"])
    alphabet = string.ascii_letters + string.digits + "_./-"
    return rng.choice(string.ascii_letters) + "".join(rng.choice(alphabet) for _ in range(5))


def rand_metadata(rng: random.Random) -> dict[str, object]:
    """Metrics, params, tags and description, often absent, sometimes of odd values."""

    def mapping(value: object) -> dict[str, object] | None:
        if rng.random() < 0.5:
            return None
        return {rand_meta_name(rng): value() for _ in range(rng.randint(1, 4))}  # type: ignore[operator]

    number = lambda: rng.choice([*FLOATS, 0, 3, -7, 10**30])  # noqa: E731
    return {
        "metrics": mapping(number),
        "params": mapping(lambda: rand_value(rng) if rng.random() < 0.3 else number()),
        "tags": mapping(lambda: rand_str(rng)),
        "description": rng.choice(
            [None, rand_str(rng), "a model", "multi\nline", "caf\u00e9 \u2014 v2"]
        ),
    }


def rand_registry(rng: random.Random) -> Registry:
    names = {rand_name(rng) for _ in range(rng.randint(0, 12))}
    address = rng.choice(["s3://bucket/models", "/tmp/remote dir", rand_str(rng) or "x"])
    remote_id = rng.choice([None, "0123456789abcdef" * 2])
    entries = {n: rand_entry(rng, n) for n in names}
    aliases = {}
    for name in rng.sample(sorted(names), min(len(names), rng.randint(0, 3))):
        alias = rng.choice(["production", "staging", "1e5", "true", rand_name(rng)])
        aliases[alias] = (name, rng.choice([SHA, entries[name].sha256]))
    return Registry("s3", address, entries, remote_id, aliases)


def full_yaml(reg: Registry) -> bytes:
    """What the registry's bytes were before the fast path: PyYAML over the whole document."""
    return pyyaml_bytes(reg)


@pytest.mark.parametrize("seed", range(300))
def test_fast_writer_gives_pyyaml_bytes_and_data(seed):
    reg = rand_registry(seeded(seed))
    fast = dumps(reg)
    assert fast == full_yaml(reg)
    data = yaml.safe_load(fast)
    assert data["models"] == {n: reg.entries[n].to_yaml_dict() for n in reg.entries}
    assert fast == dumps(reg)  # cached texts give the same bytes again


@pytest.mark.parametrize("seed", range(300))
def test_block_writer_matches_pyyaml_for_any_fields(seed):
    """A new field (a list, a mapping, a scalar) needs nothing but its name in the field list."""
    rng = seeded(10_000 + seed)
    fields = {rand_str(rng) or "f": rand_value(rng) for _ in range(rng.randint(1, 6))}
    name = rand_name(rng)
    expected = yamlio.dump({"models": {name: fields}}).partition("\n")[2]
    text = registry_text.block(name, fields, 2, registry_text.scalar)
    assert text is None or text == expected


def canonical(text: bytes) -> Registry | None:
    """What the fast reader alone makes of ``text``, with a codec that has seen nothing."""
    return Codec().parse_canonical(text)


def assert_pyyamls_answer(text: bytes) -> Registry | None:
    """parse() gives PyYAML's answer: the same registry, or a refusal in the same words."""
    try:
        expected = parse(text, "r", loader=yamlio.Loader)
    except RegistryError as exc:
        with pytest.raises(RegistryError) as info:
            parse(text, "r")
        assert str(info.value) == str(exc)
        return None
    assert parse(text, "r") == expected
    return expected


@pytest.mark.parametrize("seed", range(300))
def test_fast_reader_agrees_with_the_full_parser(seed):
    reg = rand_registry(seeded(20_000 + seed))
    text = full_yaml(reg)
    full = assert_pyyamls_answer(text)
    fast = canonical(text)
    if full is None:
        assert fast is None  # a refused registry never takes the fast path
    else:
        assert fast is None or fast == full


def valid_registry(n: int) -> Registry:
    entries = {}
    for i in range(n):
        name = f"m{i:05d}"
        entries[name] = Entry(
            name=name,
            state="synced" if i % 3 else "local",
            sha256=f"{i:063x}a",
            size=i,
            serializer="pickle-5",
            created="2024-05-01T12:00:00+00:00",
            python="3.11.7",
            key=f"{name}/{i:063x}a.pkl" if i % 3 else None,
            library={"name": "numpy", "version": "2.0.1"} if i % 2 else None,
            imports=[[], ["builtins.dict"], ["numpy.dtype", "numpy.ndarray"], None][i % 4],
        )
    return Registry("local", "/srv/models", entries, "fedcba9876543210" * 2)


def test_a_canonical_registry_takes_the_fast_path_and_gives_the_same_registry():
    reg = valid_registry(50)
    text = dumps(reg)
    fast = canonical(text)
    assert fast == reg == parse(text, "r", loader=yamlio.Loader)
    assert fast is not None and dumps(fast) == text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    size: 7\n", "    size: 7 # comment\n"),  # comments are YAML, not canonical
        ("    size: 7\n", "    size:   7\n"),  # other spacing
        ("    size: 7\n", "    size: '7'\n"),  # a string where an int belongs
        ("    size: 7\n", "    size: 0x7\n"),  # another spelling of 7
        ("    python: 3.11.7\n", "    python: '3.11.7'\n"),  # quotes PyYAML would not write
        ("    state: synced\n", '    state: "synced"\n'),
    ],
)
def test_a_hand_edited_registry_is_read_by_the_full_parser(old, new):
    reg = valid_registry(10)
    text = dumps(reg).decode()
    assert old in text
    edited = text.replace(old, new, 1).encode()
    assert canonical(edited) is None
    assert_pyyamls_answer(edited)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    state: local\n", "    state: lost\n", "state must be 'local' or 'synced'"),
        ("    sha256: " + "0" * 63 + "a", "    sha256: " + "0" * 63 + "g", "sha256 must be 64"),
        ("  m00001:\n", "  m00000:\n", "duplicate key"),
        ("  m00001:\n", "  m..1:\n", "Invalid model name"),
        ("    size: 1\n", "    size: -1\n", "out of range"),
        ("  m00001:\n", "  con.m1:\n", "reserved device name"),
        ("  m00001:\n", "  m00001.:\n", "Invalid model name"),
    ],
)
def test_an_invalid_canonical_registry_is_refused_with_the_full_parsers_words(old, new, message):
    text = dumps(valid_registry(10)).decode()
    assert old in text
    bad = text.replace(old, new, 1).encode()
    assert canonical(bad) is None
    with pytest.raises(RegistryError) as slow:
        parse(bad, "r", loader=yamlio.Loader)
    with pytest.raises(RegistryError, match=message) as fast:
        parse(bad, "r")
    assert str(fast.value) == str(slow.value)


def test_an_invalid_entry_built_in_code_is_not_remembered_as_verified():
    """dumps() caches text for any Entry; only validated ones may skip validation later."""
    bad = valid_registry(3)
    bad.entries["m00001"] = bad.entries["m00001"]._replace(state="lost")
    text = dumps(bad)  # writing is allowed: the bytes are what PyYAML would write
    with pytest.raises(RegistryError, match="state must be"):
        parse(text, "r")


def test_unsorted_entries_are_not_canonical_but_still_parse():
    text = dumps(valid_registry(3)).decode()
    head, _, body = text.partition("models:\n")
    blocks = re.split(r"(?<=\n)(?=  [^ ])", body)
    swapped = (head + "models:\n" + "".join(reversed(blocks))).encode()
    assert canonical(swapped) is None
    assert parse(swapped, "r") == valid_registry(3)


def test_header_and_filename_are_checked_on_the_fast_path():
    text = dumps(valid_registry(2))
    assert text.startswith(HEADER.encode())
    with pytest.raises(RegistryError, match="its name is for 's3'"):
        parse(text, "r", filename="models/.s3_registry")
    assert parse(text, "r", filename="models/.local_registry") == valid_registry(2)
    empty = dumps(Registry("local", "/srv/models"))
    assert empty.endswith(b"models: {}\n")
    assert canonical(empty) == Registry("local", "/srv/models")


def test_a_transaction_writes_once_and_reads_back_without_parsing(tmp_path, monkeypatch):
    rf = RegistryFile(tmp_path, "local")
    writes = []
    real = RegistryFile.write

    def counting(self, reg):
        writes.append(1)
        real(self, reg)

    monkeypatch.setattr(RegistryFile, "write", counting)
    reg0 = valid_registry(5)
    with rf.transaction(Registry("local", "/srv/models", remote_id=reg0.remote_id)) as reg:
        reg.entries.update(reg0.entries)
        rf.write(reg)  # as Filer.dump does, before its rename
    assert len(writes) == 1
    found = rf.read()
    assert found == reg0
    assert all(found.entries[n] is reg0.entries[n] for n in reg0.entries)  # not parsed again
    assert (tmp_path / ".local_registry").read_bytes() == full_yaml(reg0)


def test_a_transaction_that_only_records_the_remote_id_writes_it(tmp_path):
    rf = RegistryFile(tmp_path, "local")
    with rf.transaction(Registry("local", "/srv/models")) as reg:
        reg.entries.update(valid_registry(2).entries)
    with rf.transaction(Registry("local", "/srv/models")) as reg:
        reg.remote_id = "ab" * 16
    found = rf.read()
    assert found is not None and found.remote_id == "ab" * 16


def test_the_sha256_plainness_rule_is_never_wrong_when_it_says_plain():
    rng = seeded(7)
    shas = ["0" * 64, "1" * 64, "0b" + "01" * 31, "0b" + "0" * 61 + "2", "0" + "7" * 63]
    shas += ["0" + "8" * 63, "e" * 64, "1e" + "0" * 62]
    shas += ["".join(rng.choice("0123456789abcdef") for _ in range(64)) for _ in range(2000)]
    shas += ["".join(rng.choice("0123456789") for _ in range(64)) for _ in range(50)]
    shas += ["0b" + "".join(rng.choice("01") for _ in range(62)) for _ in range(50)]
    for sha in shas:
        plain = registry_text.scalar(sha) == sha
        assert registry_text.plain_sha256(sha) <= plain, sha  # (unsure: the exact path)
        if any(c in "abcdef" for c in sha[2:]):
            assert registry_text.plain_sha256(sha) == plain, sha


@pytest.mark.parametrize("seed", range(100))
def test_entries_the_dump_path_writes_take_the_one_match_path(seed):
    """Names starting with digits or YAML words, shas of any shape: same data as PyYAML's."""
    rng = seeded(30_000 + seed)
    entries = {}
    for _ in range(20):
        name = rng.choice(["1", "t", "n", "o", "y", "F", "m", "0", "9"]) + rand_name(rng)[:20]
        if name.split(".")[0].lower() in ("con", "nul") or name.endswith("."):
            continue
        sha = "".join(rng.choice("0123456789abcdef"[: rng.choice([10, 16])]) for _ in range(64))
        state = rng.choice(["local", "synced"])
        entries[name] = Entry(
            name=name,
            state=state,
            sha256=sha,
            size=rng.randint(0, 10**9),
            serializer="pickle-5",
            created="2024-05-01T12:00:00+00:00",
            python=rng.choice(["3.11.7", "3.12.0rc1", "3.13"]),
            key=f"{name}/{sha}.pkl" if state == "synced" else None,
            library=rng.choice([None, {"name": "numpy", "version": rng.choice(["2.0", "1.26.4"])}]),
        )
    reg = Registry("s3", "s3://b/p", entries)
    text = dumps(reg)
    assert text == full_yaml(reg)
    try:
        expected = parse(text, "r", loader=yamlio.Loader)
    except RegistryError:
        assert canonical(text) is None
        return
    assert canonical(text) == expected == reg


@pytest.mark.parametrize("seed", range(30))
def test_patched_text_equals_a_fresh_build_after_any_changes(seed):
    """dumps() patches only changed names into its sorted text; the bytes never differ."""
    rng = seeded(40_000 + seed)
    reg = valid_registry(30)
    for step in range(40):
        op = rng.random()
        names = sorted(reg.entries)
        if op < 0.4:
            name = f"n{rng.randint(0, 99):03d}"
            reg.entries[name] = valid_registry(1).entries["m00000"]._replace(name=name)
        elif op < 0.6 and names:
            del reg.entries[rng.choice(names)]
        elif op < 0.75 and names:
            name = rng.choice(names)
            reg.entries[name] = reg.entries[name]._replace(size=step)
        elif op < 0.8:
            reg.entries.update({"u": valid_registry(1).entries["m00000"]._replace(name="u")})
        elif op < 0.85 and names:
            reg.entries.pop(rng.choice(names))
        elif op < 0.9:
            reg = reg.copy()
        else:
            reg = parse(dumps(reg), "r")
        assert dumps(reg) == full_yaml(reg)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t + "  ",  # two spaces at the very end: no next line to look at
        lambda t: t + "  \n",
        lambda t: t.replace("    imports: []\n", "    imports: []\n    - builtins.dict\n", 1),
        lambda t: t.replace("    imports:\n    - builtins.dict\n", "    imports:\n", 1),
        lambda t: t.replace("    - builtins.dict\n", "    - 'builtins.dict'\n", 1),
        lambda t: t.replace("    python: 3.11.7\n", "    python: 3.11.7\n    extra: 1\n", 1),
    ],
)
def test_odd_shapes_at_entry_edges_take_the_full_parser_and_get_its_answer(edit):
    text = dumps(valid_registry(8)).decode()
    odd = edit(text).encode()
    assert odd != text.encode()
    assert canonical(odd) is None
    assert_pyyamls_answer(odd)


def test_the_implicit_type_table_is_pyyamls():
    """yamltext copies PyYAML's YAML 1.1 resolver table so reads need no PyYAML: same
    patterns (text and flags), same tags, under the same first characters."""
    theirs = {
        first: [(tag, regexp.pattern, regexp.flags) for tag, regexp in resolvers]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    ours: dict[str, list] = {}
    for tag, regexp, firsts in registry_text.IMPLICIT:
        for first in [*firsts, *([""] if tag.endswith(":null") else [])]:
            ours.setdefault(first, []).append((tag, regexp.pattern, regexp.flags))
    assert ours == theirs


@pytest.mark.parametrize("seed", range(200))
def test_scalars_are_quoted_exactly_when_pyyaml_quotes_them(seed):
    rng = seeded(40_000 + seed)
    alphabet = "0123456789._-+:eExXbo" + string.ascii_letters[:6] + "nNyYtT~<=/"
    value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
    ours = registry_text.scalar(value)
    if ours is not None:
        assert yamlio.dump({"k": value}) == f"k: {ours}\n"


@pytest.mark.parametrize(
    "address",
    [
        "s3://bucket/models",
        "/srv/models",
        "/tmp/remote dir",
        "C:/models",
        "1.5",
        "true",
        "~",
        "x" * 1001,
        "/ünïcode/models",
        "a: b",
        "#models",
    ],
)
@pytest.mark.parametrize("remote_id", [None, "fedcba9876543210" * 2])
@pytest.mark.parametrize("has_entries", [True, False])
def test_the_header_is_pyyamls_for_any_address(address, remote_id, has_entries):
    reg = Registry("s3", address, remote_id=remote_id)
    remote = reg.remote_fields()
    expected = HEADER + yamlio.dump({"format": 1, "remote": remote, "models": {}})
    if has_entries:
        expected = expected[: -len("models: {}\n")] + "models:\n"
    assert Codec().header(reg, has_entries) == expected


def test_reading_a_canonical_registry_imports_no_pyyaml(tmp_path):
    path = tmp_path / ".local_registry"
    path.write_bytes(dumps(valid_registry(20)))
    code = (
        "import sys\n"
        "from model_filer.registry.file import read\n"
        f"reg = read(__import__('pathlib').Path({str(path)!r}))\n"
        "assert len(reg.entries) == 20\n"
        "assert 'yaml' not in sys.modules, 'PyYAML imported'\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True)


# -- versions read one after another (history, gc, merge) --------------------------------
def _registry_text(*entries: object) -> bytes:
    return registry_bytes("local", "/r", *entries)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        _registry_text(sample_entry("a"), sample_entry("b", state="local")),
        _registry_text(sample_entry("true"), sample_entry("1e5")),  # names YAML would retype
        _registry_text(),
        _registry_text(sample_entry("a")).replace(b"  a:\n", b"  a:\n  a:\n"),  # duplicate
        _registry_text(sample_entry("a")) + b"  a:\n    state: local\n",  # duplicate entry
        _registry_text(sample_entry("a")).replace(b"    size: 10", b"    size: -1"),
        _registry_text(sample_entry("a")).replace(b"    size", b"<<<<<<< ours\n    size"),
        _registry_text(sample_entry("a"), sample_entry("b")).replace(b"\n  b:", b"\n# c\n  b:"),
        _registry_text(sample_entry("a")).replace(b"state: synced", b"state: &x synced"),
        _registry_text(sample_entry("a")).replace(b"address: /r", b"address: /r\n  x: 1"),
        registry_bytes("s3", "s3://bucket/p", sample_entry("a")),  # not what its name says
    ],
)
def test_a_codec_reading_versions_gives_the_full_parsers_answer(text: bytes) -> None:
    def outcome(fn: object) -> object:
        try:
            return fn(text)  # type: ignore[operator]
        except ModelFilerError as exc:
            return type(exc)

    full = outcome(lambda t: parse(t, "r", filename="m/.local_registry"))
    codec = Codec()
    codec.parse(_registry_text(sample_entry("a"), sample_entry("b")), "r")  # blocks it knows
    fast = outcome(lambda t: codec.parse(t, "r", filename="m/.local_registry"))
    assert fast == full
    pyyaml = outcome(lambda t: parse(t, "r", yamlio.Loader, filename="m/.local_registry"))
    assert fast == pyyaml


def test_a_codec_checks_each_distinct_entry_block_once() -> None:
    codec = Codec()
    one = _registry_text(sample_entry("a"), sample_entry("b"))
    two = _registry_text(sample_entry("a"), sample_entry("b", size=11))
    regs = [codec.parse(t, "r", filename="m/.local_registry") for t in (one, two)]
    assert regs == [parse(t, "r") for t in (one, two)]
    # The block of 'a' is recognised by its text: the entry verified from it the first time.
    assert regs[1].entries["a"] is regs[0].entries["a"]
    assert Codec().parse(two, "r").entries["a"] is not regs[0].entries["a"]


def test_unusual_but_canonical_entries_stay_on_the_fast_reader():
    """A time written by another tool, a local entry with a key, a long library version: the
    fast reader reads them (the last two a block at a time through PyYAML), as PyYAML would."""
    base = valid_registry(6)
    entries = dict(base.entries)
    entries["m00001"] = entries["m00001"]._replace(created="2024-01-01T00:05:00")
    entries["m00002"] = entries["m00002"]._replace(created="yesterday")
    local = entries["m00000"]
    assert local.state == "local"
    entries["m00000"] = local._replace(key=f"m00000/{local.sha256}.pkl")
    entries["m00004"] = entries["m00004"]._replace(library={"name": "x", "version": "1" * 120})
    reg = Registry("local", "/srv/models", entries, base.remote_id)
    text = dumps(reg)
    assert text == pyyaml_bytes(reg)
    assert canonical(text) == reg == parse(text, "r", loader=yamlio.Loader)


def test_the_chunked_layouts_keys_are_written_and_read_without_pyyaml(tmp_path):
    """The default layout's keys (``.model_filer/objects/<sha256>``, plain in PyYAML's
    output) stay on the fast writer and reader: the commit hook reads every staged registry."""
    base = valid_registry(20)
    entries = {
        n: e._replace(key=f".model_filer/{('objects', 'manifests')[i % 2]}/{e.sha256}")
        for i, (n, e) in enumerate(base.entries.items())
        if e.key is not None
    }
    reg = Registry("local", "/srv/models", entries, base.remote_id)
    text = dumps(reg)
    assert text == pyyaml_bytes(reg)
    assert canonical(text) == reg == parse(text, "r", loader=yamlio.Loader)
    path = tmp_path / ".local_registry"
    code = (
        "import pathlib, sys\n"
        "from model_filer.registry.file import dumps, read\n"
        f"path = pathlib.Path({str(path)!r})\n"
        f"path.write_bytes({text!r})\n"
        "reg = read(path)\n"
        f"assert len(reg.entries) == {len(entries)} and dumps(reg) == path.read_bytes()\n"
        "assert 'yaml' not in sys.modules, 'PyYAML imported'\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_value_starting_with_a_dot_is_quoted_exactly_when_pyyaml_quotes_it():
    values = [".", "..", "...", ".../x", "....", ".5", ".inf", ".NaN", ".a: b", ".x", ".a b"]
    for value in [*values, ".model_filer/objects/" + SHA]:
        ours = registry_text.scalar(value)
        if ours is not None:
            assert yamlio.dump({"k": value}) == f"k: {ours}\n"
    assert registry_text.scalar(".model_filer/objects/" + SHA) is not None


@pytest.mark.parametrize("seed", range(20))
def test_any_one_line_printable_value_is_written_as_pyyaml_writes_it(seed):
    """Descriptions and tags hold punctuation ('#', ',', ': ', quotes, leading '-'): plain
    or single-quoted exactly as PyYAML's emitter chooses, and read back to the same str."""
    rng = seeded(50_000 + seed)
    alphabet = string.printable[:95] + " :#-?.'\",[]{}" * 3
    for _ in range(50):
        value = rng.choice(["", "- ", "? ", "---", "...", "#", " "]) + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(1, 12))
        )
        ours = registry_text.scalar(value)
        assert ours is not None
        assert yamlio.dump({"description": value}) == f"description: {ours}\n"
        assert yaml.safe_load(f"k: {ours}\n")["k"] == value


def test_free_text_metadata_is_read_without_pyyaml(tmp_path):
    """A description like people write one, and tags with punctuation: the commit hook
    reads 10,000 of them, so they stay on the fast reader."""
    base = valid_registry(3)
    entries = {
        n: e._replace(
            description="Gradient boosting, 500 trees (tuned). See PR #42: it's 'v3'.",
            tags={"dataset": "churn: 2026-q1", "note": "- first, then #2"},
            params={"loss": "log_loss", "note": "[a, b]"},
        )
        for n, e in base.entries.items()
    }
    reg = Registry("local", "/srv/models", entries, base.remote_id)
    text = dumps(reg)
    assert text == pyyaml_bytes(reg)
    path = tmp_path / ".local_registry"
    path.write_bytes(text)
    code = (
        "import pathlib, sys\n"
        "from model_filer.registry.file import read\n"
        f"reg = read(pathlib.Path({str(path)!r}))\n"
        "assert 'yaml' not in sys.modules, 'PyYAML imported'\n"
        "print(repr(reg))\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == repr(parse(text, "r", loader=yamlio.Loader))
