"""Registries that name the chunked layout: format 3 (whole objects, manifests of format 1) or
4 (maps of packed chunks), read on the fast path, refused by older readers rather than
misread."""

from __future__ import annotations

import pytest

from model_filer.errors import RegistryError
from model_filer.registry import yamlio
from model_filer.registry.file import Codec, Registry, dumps, parse
from model_filer.storage import storage_key
from tests.support.gitrepo import sample_entry

SHA = "ab" * 32


def _registry(*keys: str) -> Registry:
    entries = {f"m{i}": sample_entry(f"m{i}", key=key) for i, key in enumerate(keys)}
    return Registry("local", "/srv/models", entries)


@pytest.mark.parametrize("kind", ["objects", "manifests"])
def test_a_registry_naming_the_chunked_layout_is_format_3_and_reads_back_fast(kind):
    reg = _registry(f"m0/{SHA}.pkl", storage_key(kind, SHA))
    text = dumps(reg)
    assert b"\nformat: 3\n" in text
    fast = Codec().parse_canonical(text)
    assert fast == reg == parse(text, "r", loader=yamlio.Loader)
    assert fast is not None and dumps(fast) == text


def test_a_registry_naming_a_map_is_format_4_and_reads_back_fast():
    reg = _registry(f"m0/{SHA}.pkl", storage_key("objects", SHA), storage_key("maps", SHA))
    text = dumps(reg)
    assert b"\nformat: 4\n" in text
    fast = Codec().parse_canonical(text)
    assert fast == reg == parse(text, "r", loader=yamlio.Loader)
    assert fast is not None and dumps(fast) == text
    del reg.entries["m2"]  # the last map gone: the oldest format that holds the rest
    assert b"\nformat: 3\n" in dumps(reg)


def test_a_registry_of_plain_keys_stays_format_1():
    text = dumps(_registry(f"m0/{SHA}.pkl"))
    assert b"\nformat: 1\n" in text


def test_a_format_that_does_not_match_the_content_is_still_read():
    """A hand merge may leave format 1 above a chunked key: read (slowly), then written as 3."""
    text = dumps(_registry(storage_key("objects", SHA))).replace(b"format: 3", b"format: 1")
    assert Codec().parse_canonical(text) is None
    reg = parse(text, "r")
    assert b"\nformat: 3\n" in dumps(reg)


def test_a_newer_format_is_refused_saying_to_upgrade():
    text = dumps(_registry(storage_key("objects", SHA))).replace(b"format: 3", b"format: 5")
    newer = r"written by a newer model_filer \(registry format 5;.*pip install -U"
    with pytest.raises(RegistryError, match=newer):
        parse(text, "r")


def test_an_entry_never_names_a_chunk():
    text = dumps(_registry(f"m0/{SHA}.pkl")).replace(
        f"m0/{SHA}.pkl".encode(), storage_key("chunks", SHA).encode()
    )
    with pytest.raises(RegistryError, match="is not a key model_filer writes"):
        parse(text, "r")
