"""Both versions of the course ship, built from ``notebooks/``: the student's runs and waits for answers.

* ``course/student`` and ``course/instructor`` are what ``python -m deconvlab.course build`` makes
  from the notebooks now (rebuild them after editing a notebook);
* the student version hides every solution and keeps every exercise's checker call;
* run top to bottom in a fresh kernel, the student version raises nothing, and every checker
  says "not done" (none "correct", none "wrong").
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

from deconvlab.course.build import BEGIN, MD_BEGIN, instructor_version, student_version

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REBUILD = "python -m deconvlab.course build notebooks --student course/student --instructor course/instructor"


def _sources(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("version, make", [("student", student_version), ("instructor", instructor_version)])
def test_the_shipped_versions_are_built_from_the_notebooks(version, make):
    for path in NOTEBOOKS:
        shipped = nbformat.read(ROOT / "course" / version / path.name, as_version=4)
        built = make(nbformat.read(path, as_version=4), path.name)
        assert _sources(shipped) == _sources(built), f"course/{version}/{path.name} is stale: run {REBUILD}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_has_exercises_whose_solutions_the_student_version_hides(path):
    source = nbformat.read(path, as_version=4)
    solutions = sum(cell.source.count(BEGIN) + cell.source.count(MD_BEGIN) for cell in source.cells)
    assert solutions >= 3, f"{path.name} has {solutions} solutions; every notebook needs at least 3 exercises"
    student = student_version(source, path.name)
    assert not any(BEGIN in cell.source or MD_BEGIN in cell.source for cell in student.cells)
    checks = [cell for cell in source.cells if cell.cell_type == "code" and "check" in cell.source]
    assert len(checks) >= 3


def _feedback(notebook) -> list[str]:
    """The checkers' verdicts printed in the executed notebook ("✔ ...", "✘ ...", "… ...")."""
    said = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "") or output.get("text", "")
            said += [line for line in text.splitlines() if "Exercise " in line and ":" in line]
    return said


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_student_version_runs_and_every_checker_says_not_done(path):
    student = nbformat.from_dict(student_version(nbformat.read(path, as_version=4), path.name))
    nbclient.NotebookClient(
        student,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "course" / "student")}},
    ).execute()
    verdicts = _feedback(student)
    assert len(verdicts) >= 3, verdicts
    assert all(verdict.startswith("…") and "not done" in verdict for verdict in verdicts), verdicts
