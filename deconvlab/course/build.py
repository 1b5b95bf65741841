r"""One source, two versions: the student's and the instructor's notebooks.

The course notebooks (``notebooks/``) hold the solutions between markers:

* in code cells, the lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` (the marker
  lines included) become one ``...`` at the marker's indentation in the student version;
* in Markdown cells, the text between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``
  becomes ``*Your answer here.*``.

The instructor version keeps the solutions and drops the marker lines. Both versions have
their outputs cleared (a solution's output would give it away) and are written as the
notebooks' file names under the output folders::

    python -m deconvlab.course build notebooks --student course/student --instructor course/instructor
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "build", "instructor_version", "main", "student_version"]

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
PLACEHOLDER_TEXT = "*Your answer here.*"


class MarkerError(ValueError):
    """Unbalanced or nested solution markers; the message names the notebook cell."""


def _split_code(source: str, where: str, keep: bool) -> str:
    lines, out, inside, indent = source.split("\n"), [], False, ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {number}: {BEGIN} inside another solution")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            if not keep:
                out.append(f"{indent}...")
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif keep or not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def _split_markdown(source: str, where: str, keep: bool) -> str:
    pattern = re.compile(re.escape(MD_BEGIN) + r"(.*?)" + re.escape(MD_END), re.S)
    if source.count(MD_BEGIN) != source.count(MD_END) or len(pattern.findall(source)) != source.count(
        MD_BEGIN
    ):
        raise MarkerError(f"{where}: unbalanced {MD_BEGIN} / {MD_END}")
    return pattern.sub((lambda m: m.group(1).strip("\n")) if keep else (lambda m: PLACEHOLDER_TEXT), source)


def _version(notebook: dict[str, Any], keep: bool, name: str) -> dict[str, Any]:
    result = copy.deepcopy(notebook)
    for index, cell in enumerate(result["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        where = f"{name}, cell {index}"
        if cell["cell_type"] == "code":
            cell["source"] = _split_code(source, where, keep)
            cell["outputs"], cell["execution_count"] = [], None
        elif cell["cell_type"] == "markdown":
            cell["source"] = _split_markdown(source, where, keep)
    return result


def student_version(notebook: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    """``notebook`` with every solution replaced by ``...`` (code) or a prompt (Markdown)."""
    return _version(notebook, keep=False, name=name)


def instructor_version(notebook: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    """``notebook`` with its solutions and without the marker lines."""
    return _version(notebook, keep=True, name=name)


def build(source: Path, student: Path, instructor: Path) -> list[Path]:
    """Write both versions of every ``*.ipynb`` in ``source``; return the files written."""
    import nbformat  # the lab and test extras bring it (nbval, JupyterLab)

    written = []
    for path in sorted(Path(source).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for folder, make in ((student, student_version), (instructor, instructor_version)):
            Path(folder).mkdir(parents=True, exist_ok=True)
            target = Path(folder) / path.name
            nbformat.write(nbformat.from_dict(make(notebook, path.name)), target)
            written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deconvlab.course", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write the student and instructor versions")
    make.add_argument("source", type=Path, help="folder of the course notebooks (with solutions)")
    make.add_argument("--student", type=Path, required=True, help="output folder of the student version")
    make.add_argument(
        "--instructor", type=Path, required=True, help="output folder of the instructor version"
    )
    args = parser.parse_args(argv)
    try:
        written = build(args.source, args.student, args.instructor)
    except MarkerError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {len(written)} notebooks to {args.student} and {args.instructor}")
    return 0
