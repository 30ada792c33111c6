"""Notebook display: ``list_files()`` and ``log()`` as a table and a pandas DataFrame."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

from model_filer import Filer
from model_filer.errors import ModelFilerError
from model_filer.registry.table import HTML_ROWS, Table


class Row(NamedTuple):
    name: str
    note: str | None
    scores: dict[str, float] | None


def test_a_table_is_still_the_list_it_was(tmp_path: Path) -> None:
    filer = Filer(tmp_path / "models", str(tmp_path / "remote"), remote_type="local")
    filer.dump([1], "b")
    filer.dump([2], "a")
    entries = filer.list_files()
    assert isinstance(entries, list) and entries == list(entries)
    assert [e.name for e in entries] == ["a", "b"]
    assert entries[0].size > 0 and entries[0] == filer.list_files()[0]


def test_html_is_escaped_and_mappings_spread_into_columns() -> None:
    table = Table([Row("a", "<script>x</script>", {"auc": 0.5}), Row("b", None, None)])
    html = table._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<th>scores.auc</th>" in html
    assert html.count("<tr>") == 3  # the header and two rows
    assert "<td></td>" in html  # b has no note and no score


def test_a_long_table_shows_its_head_and_says_how_many_more() -> None:
    html = Table(Row(f"m{i}", None, None) for i in range(HTML_ROWS + 5))._repr_html_()
    assert html.count("<tr>") == HTML_ROWS + 1
    assert "5 more rows" in html


def test_to_pandas_one_column_per_field() -> None:
    frame = Table([Row("a", "x", {"auc": 0.5}), Row("b", None, {"loss": 2.0})]).to_pandas()
    assert list(frame.columns) == ["name", "note", "scores.auc", "scores.loss"]
    assert frame["scores.auc"].tolist()[0] == 0.5
    assert frame["name"].tolist() == ["a", "b"]


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_pandas_is_never_imported_until_asked_for(repo: Path, remote: Path) -> None:
    done = _run(
        """
        import subprocess, sys
        from model_filer import Filer
        filer = Filer("models", sys.argv[1], remote_type="local")
        filer.dump([1], "a", metrics={"auc": 0.5})
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-qm", "a"], check=True)
        filer.list_files()._repr_html_()
        filer.log("a")._repr_html_()
        assert "pandas" not in sys.modules, "imported by list_files, log or _repr_html_"
        filer.log("a").to_pandas()
        assert "pandas" in sys.modules
        """,
        remote,
    )
    assert done.returncode == 0, done.stderr


def test_to_pandas_error_is_the_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModelFilerError, match=r"needs pandas.*`pip install pandas`"):
        Table([]).to_pandas()
