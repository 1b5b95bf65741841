"""The published numbers shipped in ``deconvlab/reference/``, and measured numbers as HTML tables."""

from __future__ import annotations

import csv
import html
import importlib.resources
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["REFERENCE_FILES", "ReferenceTable", "html_table", "reference_table"]

#: Short name -> CSV file in ``deconvlab/reference/``.
REFERENCE_FILES = {
    "adebayo2018": "sanity_checks_adebayo2018_mnist_cnn.csv",
    "torchray_pointing": "pointing_game_torchray.csv",
}


@dataclass
class ReferenceTable:
    """A published table shipped in ``deconvlab/reference/``, with the source it came from.

    Attributes
    ----------
    name : str
        File name.
    source : str
        The file's comment lines: where the numbers were published.
    columns : list of str
    rows : list of list of str
    """

    name: str
    source: str
    columns: list[str]
    rows: list[list[str]]

    def row(self, method: str) -> dict[str, float]:
        """The numeric cells of the row whose first cell is ``method``."""
        for r in self.rows:
            if r[0] == method:
                return {c: float(v) for c, v in zip(self.columns[1:], r[1:])}
        raise KeyError(f"no row {method!r} in {self.name}; rows: {[r[0] for r in self.rows]}")

    def to_html(self, highlight: Sequence[str] = ()) -> str:
        """A plain HTML table (bold rows for ``highlight``) with its source underneath."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for r in self.rows:
            cells = "".join(f"<td>{html.escape(v)}</td>" for v in r)
            style = ' style="font-weight:bold"' if r[0] in highlight else ""
            body.append(f"<tr{style}>{cells}</tr>")
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p style='font-size:smaller'>{html.escape(self.source)}</p>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def reference_table(name: str) -> ReferenceTable:
    """Load a published table: ``"adebayo2018"`` (cascading randomisation, MNIST CNN) or
    ``"torchray_pointing"`` (TorchRay's pointing game on VOC07 / COCO14).

    Read as package data (:mod:`importlib.resources`), so it works wherever deconvlab is installed.
    """
    file = REFERENCE_FILES.get(name, name)
    if file not in REFERENCE_FILES.values():
        raise ValueError(f"unknown reference table {name!r}; choose from {sorted(REFERENCE_FILES)}")
    text = (importlib.resources.files("deconvlab") / "reference" / file).read_text(encoding="utf-8")
    lines = text.splitlines()
    source = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
    data = "\n".join(line for line in lines if line and not line.startswith("#"))
    rows = list(csv.reader(io.StringIO(data)))
    return ReferenceTable(file, source, rows[0], rows[1:])


def html_table(rows: Mapping[str, Mapping[str, float]], fmt: str = ".2f", caption: str = "") -> str:
    """Measured numbers as a plain HTML table: one row per key of ``rows``, one column per inner key.

    ``fmt`` is the format specification of every number (e.g. ``".1f"``, ``".1e"``).
    """
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(
            f"<td style='text-align:right'>{row[c]:{fmt}}</td>" if c in row else "<td></td>" for c in columns
        )
        + "</tr>"
        for name, row in rows.items()
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
