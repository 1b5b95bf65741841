"""The course machinery: feedback, checkers, and the student/instructor versions of a notebook."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from deconvlab.course.build import MarkerError, build, instructor_version, student_version
from deconvlab.course.feedback import Feedback, call_answer, checker, not_done, wrong


def notebook(*cells):
    made = nbformat.v4.new_notebook()
    for kind, source in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        made.cells.append(cell)
    return made


SOURCE = notebook(
    ("markdown", "Why?\n\n<!-- BEGIN SOLUTION -->\nBecause the gate reads p.\n<!-- END SOLUTION -->\n"),
    (
        "code",
        "def relu_star(x, p):\n    # BEGIN SOLUTION\n    gate = x > 0\n    return p * gate\n    # END SOLUTION\n",
    ),
    ("code", "print(check(relu_star))\n# BEGIN SOLUTION\nassert check(relu_star).passed\n# END SOLUTION"),
)


def test_the_student_version_keeps_a_placeholder_where_each_solution_was():
    student = student_version(SOURCE)
    assert student.cells[0].source == "Why?\n\n*Your answer here.*\n"
    assert student.cells[1].source == "def relu_star(x, p):\n    ...\n"
    assert student.cells[2].source == "print(check(relu_star))\n..."
    assert all("SOLUTION" not in cell.source and "gate" not in cell.source for cell in student.cells)
    compile(student.cells[1].source, "cell", "exec")  # still valid Python


def test_the_instructor_version_keeps_the_solutions_without_markers():
    instructor = instructor_version(SOURCE)
    assert instructor.cells[0].source == "Why?\n\nBecause the gate reads p.\n"
    assert instructor.cells[1].source == "def relu_star(x, p):\n    gate = x > 0\n    return p * gate\n"
    assert all("SOLUTION" not in cell.source for cell in instructor.cells)


@pytest.mark.parametrize(
    "cell, message",
    [
        (("code", "# BEGIN SOLUTION\nx = 1\n"), "never closed"),
        (("code", "x = 1\n# END SOLUTION\n"), "without"),
        (("code", "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n"), "inside another"),
        (("markdown", "<!-- BEGIN SOLUTION -->\nanswer\n"), "unbalanced"),
    ],
)
def test_unbalanced_markers_are_refused_naming_the_cell(cell, message):
    with pytest.raises(MarkerError, match=rf"course.ipynb, cell 0.*{message}"):
        student_version(notebook(cell), name="course.ipynb")


def test_build_writes_both_versions_with_outputs_cleared(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    executed = nbformat.from_dict(SOURCE)
    executed.cells[1].outputs = [nbformat.v4.new_output("stream", text="a solution's output")]
    nbformat.write(executed, source / "01_demo.ipynb")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deconvlab.course",
            "build",
            str(source),
            "--student",
            str(tmp_path / "s"),
            "--instructor",
            str(tmp_path / "i"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 2 notebooks" in result.stdout
    for folder in ("s", "i"):
        written = nbformat.read(tmp_path / folder / "01_demo.ipynb", as_version=4)
        assert all(not cell.get("outputs") for cell in written.cells if cell.cell_type == "code")
    assert build(source, tmp_path / "s2", tmp_path / "i2")  # the function the command runs


@checker("0.1 Double a number")
def check_double(double):
    if call_answer(double, 2, what="double(2)") != 4:
        raise wrong("double(2) should be 4.")
    if call_answer(double, -1, what="double(-1)") != -2:
        raise wrong("double(-1) should be -2: does it work for negative numbers?")


def test_a_checker_says_correct_not_done_or_what_is_wrong_in_a_sentence():
    assert check_double(lambda v: 2 * v) == Feedback("0.1 Double a number", "correct", "Well done.")
    assert check_double(...).status == "not done"

    def stub(v): ...

    assert check_double(stub).status == "not done"
    assert "returns nothing yet" in check_double(stub).message
    assert check_double(lambda v: v + 1).message == "double(2) should be 4."
    assert (
        check_double(lambda v: v + 2).message == "double(-1) should be -2: does it work for negative numbers?"
    )
    raising = check_double(lambda v: v.upper())
    assert raising.status == "wrong"
    assert raising.message == "double(2) raised AttributeError: 'int' object has no attribute 'upper'"
    assert check_double(3).message == "double(2) should be a function, but it is a int."


def test_feedback_reads_as_one_line_and_as_html():
    said = Feedback("1.1 Write ReLU*", "wrong", "At x < 0 the gradient is 0 <b>.")
    assert str(said) == "✘ Exercise 1.1 Write ReLU*: wrong. At x < 0 the gradient is 0 <b>."
    assert "&lt;b&gt;" in said._repr_html_() and not said.passed
    assert str(not_done()).startswith("Replace the ...")
