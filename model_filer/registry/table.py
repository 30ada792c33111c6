"""Rows as a list that a notebook shows as a table and pandas takes in one call.

``list_files()`` and ``log()`` return a :class:`Table`: still a ``list`` of their rows (code
that indexes or compares it keeps working), with ``_repr_html_`` for Jupyter and
:meth:`Table.to_pandas`. pandas is imported by ``to_pandas`` only, never before.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from model_filer.errors import ModelFilerError

Row = TypeVar("Row")
HTML_ROWS = 200  # a notebook cell stays readable; to_pandas() has every row


def flat(row: Any) -> dict[str, Any]:
    """One row as flat columns: ``row.as_dict()`` (or a NamedTuple's fields), a mapping
    value spread into ``field.key`` columns as MLflow names them (``metrics.auc``), ``None``
    left out."""
    data = row.as_dict() if hasattr(row, "as_dict") else row._asdict()
    out: dict[str, Any] = {}
    for field, value in data.items():
        if isinstance(value, dict):
            out.update((f"{field}.{k}", v) for k, v in value.items())
        elif value is not None:
            out[field] = value
    return out


class Table(list[Row]):
    """A list of rows that displays as a table in a notebook.

    Each row's columns come from :func:`flat`; a column is listed in the order it first
    appears, and a row without it shows an empty cell (``NaN``/``None`` in pandas).
    """

    def records(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The column names and every row as flat columns."""
        rows = [flat(row) for row in self]
        return list(dict.fromkeys(c for row in rows for c in row)), rows

    def to_pandas(self) -> Any:  # a pandas.DataFrame (pandas ships no type stubs)
        """The rows as a pandas DataFrame, one column per field (``metrics.auc``, ...).

        Raises
        ------
        ModelFilerError
            pandas is not installed.
        """
        try:  # (by name: pandas is optional, and mypy has no stubs for it)
            pandas = importlib.import_module("pandas")
        except ImportError:
            raise ModelFilerError(
                "to_pandas() needs pandas, which is not installed: `pip install pandas`."
            ) from None
        columns, rows = self.records()
        return pandas.DataFrame(rows, columns=columns)

    def _repr_html_(self) -> str:
        from html import escape  # (here: the hooks' path, which imports this module, skips it)

        columns, rows = self.records()
        head = "".join(f"<th>{escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
            for row in rows[:HTML_ROWS]
        )
        more = len(rows) - HTML_ROWS
        note = (
            f"<p>{more} more rows: <code>.to_pandas()</code> has them all.</p>" if more > 0 else ""
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _cell(value: Any) -> str:
    """A value as a cell's text (escaped by the caller)."""
    if value is None:
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
