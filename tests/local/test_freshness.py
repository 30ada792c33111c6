"""The verified-hash cache's journal: saves append, reads replay, a crash costs a hash."""

from __future__ import annotations

import json

from model_filer.local.freshness import Freshness


def make_files(folder, n):
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"m{i}.pkl"
        path.write_bytes(b"x" * i)
        paths.append(path)
    return paths


def test_a_save_appends_and_a_new_instance_reads_it_back(tmp_path):
    (a, b) = make_files(tmp_path, 2)
    cache = Freshness(tmp_path)
    cache.record(a, "1" * 64)
    cache.save()
    journal = tmp_path / ".model_filer" / Freshness.JOURNAL
    assert journal.exists() and not (tmp_path / ".model_filer" / Freshness.FILENAME).exists()
    cache = Freshness(tmp_path)
    cache.record(b, "2" * 64)
    cache.forget(a)
    cache.save()
    fresh = Freshness(tmp_path)
    assert fresh.lookup(a) is None
    assert fresh.lookup(b) == "2" * 64
    assert fresh.lookup(tmp_path / "m1.pkl") == "2" * 64
    b.write_bytes(b"changed")  # another size: the stat no longer vouches for it
    assert Freshness(tmp_path).lookup(tmp_path / "m1.pkl") is None


def test_a_long_journal_is_folded_into_the_json(tmp_path, monkeypatch):
    monkeypatch.setattr(Freshness, "JOURNAL_MIN", 200)
    paths = make_files(tmp_path, 12)
    for i, path in enumerate(paths):
        cache = Freshness(tmp_path)
        cache.record(path, f"{i:064x}")
        cache.save()
    base = tmp_path / ".model_filer" / Freshness.FILENAME
    journal = tmp_path / ".model_filer" / Freshness.JOURNAL
    folded = json.loads(base.read_bytes())
    assert len(folded) >= 2  # the journal was folded in at least once
    journal_size = journal.stat().st_size if journal.exists() else 0
    assert journal_size <= max(200, base.stat().st_size // 2) + 100  # (one save's lines)
    fresh = Freshness(tmp_path)
    assert [fresh.lookup(p) for p in paths] == [f"{i:064x}" for i in range(12)]


def test_a_line_cut_short_by_a_crash_is_skipped_not_misread(tmp_path):
    (a, b) = make_files(tmp_path, 2)
    cache = Freshness(tmp_path)
    cache.record(a, "1" * 64)
    cache.save()
    journal = tmp_path / ".model_filer" / Freshness.JOURNAL
    with open(journal, "ab") as fh:
        fh.write(b'["m1.pkl",[1,2')  # a SIGKILL mid-append
    cache = Freshness(tmp_path)
    cache.record(b, "2" * 64)
    cache.save()
    fresh = Freshness(tmp_path)
    assert fresh.lookup(a) == "1" * 64
    assert fresh.lookup(b) == "2" * 64  # the next append starts on a line of its own
