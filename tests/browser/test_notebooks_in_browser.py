"""Every notebook, run from JupyterLab in Chromium: cells executed, no errors, every widget
rendered (no error box), as many sliders rendered as the kernel built, and the first slider
redraws its view within 2 s (the driver is ``tools.jupyterlab_driver``)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools.colab_cell import COLAB_CELL

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))

SLIDER_NOTEBOOK = [
    COLAB_CELL,
    """\
import io

import ipywidgets as widgets
import numpy as np
from IPython.display import display
from PIL import Image


def png(level):
    pixels = np.zeros((48, 96, 3), dtype=np.uint8)
    pixels[:, : level * 8] = (255, 120, 0)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


slider = widgets.IntSlider(value=3, min=0, max=12, description="level")
image = widgets.Image(value=png(slider.value), format="png", width=192)
slider.observe(lambda change: setattr(image, "value", png(change["new"])), names="value")
display(widgets.VBox([slider, image]))
""",
    """\
import warnings

warnings.warn("stderr output is not an error", UserWarning, stacklevel=1)
print("done")
""",
]

TEXT_SLIDER_NOTEBOOK = [
    """\
import ipywidgets as widgets

widgets.interact(lambda n: print(f"n squared is {n * n}"), n=widgets.IntSlider(value=10, max=10));
""",
]

CALLBACK_ERROR_NOTEBOOK = [
    """\
import ipywidgets as widgets


def redraw(change):
    label.value = f"value {change['new']}"
    raise ValueError("the observer fails on purpose")


slider = widgets.IntSlider(value=1, max=5)
label = widgets.Label("value 1")
slider.observe(redraw, names="value")
widgets.VBox([slider, label])
""",
]

ERROR_NOTEBOOK = [
    "x = 1",
    "raise ValueError('this cell fails on purpose')",
    "y = 2",
]

# What an ipywidgets 7 kernel sends to JupyterLab 4's ipywidgets 8 front end: controls models
# at protocol version 1.5.0, which the front end cannot load. It shows an ErrorWidgetView box
# ("Click to show javascript error.") where the slider should be.
IPYWIDGETS7_SLIDER_NOTEBOOK = [
    """\
import ipywidgets as widgets
from traitlets import Unicode


class Ipywidgets7Slider(widgets.IntSlider):
    _model_module_version = Unicode("1.5.0").tag(sync=True)
    _view_module_version = Unicode("1.5.0").tag(sync=True)


slider = Ipywidgets7Slider(value=3, max=10, description="level")
label = widgets.Label("value 3")
slider.observe(lambda change: setattr(label, "value", f"value {change['new']}"), names="value")
widgets.VBox([slider, label])
""",
]

# An explorer that builds two sliders but lays out only one: the student never sees the second.
UNSHOWN_SLIDER_NOTEBOOK = [
    """\
import ipywidgets as widgets

controls = {"image": widgets.IntSlider(max=7, description="image"),
            "layer": widgets.IntSlider(max=3, description="layer")}
label = widgets.Label("image 0")
controls["image"].observe(lambda c: setattr(label, "value", f"image {c['new']}"), names="value")
widgets.VBox([controls["image"], label])
""",
]

BROKEN_WIDGET_NOTEBOOK = [
    """\
from IPython.display import display

# A widget view whose model does not exist: the front end shows "Error displaying widget".
display({"application/vnd.jupyter.widget-view+json":
         {"model_id": "0123456789abcdef", "version_major": 2, "version_minor": 0}}, raw=True)
""",
]


def _write_notebook(lab, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    folder = lab.root / "_harness"
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / name)
    return f"_harness/{name}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_browser(name, notebook_driver):
    run = notebook_driver.run(f"notebooks/{name}")
    run.assert_ok()
    assert run.report.executed_cells == run.report.code_cells > 0
    assert run.report.sliders >= len(run.report.sliders_built)


# ---- the harness itself, on generated notebooks (so it is tested even without notebooks/) ----


def test_harness_image_slider(notebook_driver, jupyter_lab):
    run = notebook_driver.run(_write_notebook(jupyter_lab, "image_slider.ipynb", SLIDER_NOTEBOOK))
    run.assert_ok()
    assert run.report.executed_cells == run.report.code_cells == 3
    assert run.report.sliders == 1 and run.report.sliders_built == ["IntSlider"]
    assert run.report.slider_view.startswith("img")
    assert 0 < run.report.slider_round_trip_ms < 2000


def test_harness_text_slider(notebook_driver, jupyter_lab):
    run = notebook_driver.run(
        _write_notebook(jupyter_lab, "text_slider.ipynb", TEXT_SLIDER_NOTEBOOK), record=False
    )
    run.assert_ok()
    # the slider starts at its maximum, so the harness must move it left
    assert run.report.slider_view.startswith("text")
    assert 0 < run.report.slider_round_trip_ms < 2000


def test_harness_reports_errors(notebook_driver, jupyter_lab):
    run = notebook_driver.run(_write_notebook(jupyter_lab, "error.ipynb", ERROR_NOTEBOOK), record=False)
    problems = "\n".join(run.problems())
    assert "ValueError: this cell fails on purpose" in problems
    assert "not executed: [3]" in problems  # run-all stops at the failing cell


def test_harness_reports_broken_widgets(notebook_driver, jupyter_lab):
    run = notebook_driver.run(
        _write_notebook(jupyter_lab, "broken_widget.ipynb", BROKEN_WIDGET_NOTEBOOK),
        record=False,
        settle_timeout_s=5,
    )
    assert any("Error displaying widget" in p for p in run.problems()), run.problems()


def test_harness_reports_an_error_box(notebook_driver, jupyter_lab):
    """The ipywidgets 7 kernel / ipywidgets 8 front end mismatch: an error box, no slider."""
    run = notebook_driver.run(
        _write_notebook(jupyter_lab, "ipywidgets7_slider.ipynb", IPYWIDGETS7_SLIDER_NOTEBOOK),
        record=False,
        settle_timeout_s=5,
    )
    problems = run.problems()
    assert any("widget error box" in p and "javascript error" in p for p in problems), problems
    assert any("built 1 slider(s) (1 Ipywidgets7Slider) but 0 rendered" in p for p in problems), problems
    assert run.report.sliders == 0


def test_harness_reports_a_slider_never_shown(notebook_driver, jupyter_lab):
    run = notebook_driver.run(
        _write_notebook(jupyter_lab, "unshown_slider.ipynb", UNSHOWN_SLIDER_NOTEBOOK),
        record=False,
        settle_timeout_s=5,
    )
    assert run.report.sliders_built == ["IntSlider", "IntSlider"]
    assert run.report.sliders == 1
    assert run.report.slider_round_trip_ms is not None  # the shown slider works...
    assert any(
        "built 2 slider(s) (2 IntSlider) but 1 rendered" in p  # ...the other is missing
        for p in run.problems()
    ), run.problems()


def test_harness_reports_callback_errors(notebook_driver, jupyter_lab):
    run = notebook_driver.run(
        _write_notebook(jupyter_lab, "callback_error.ipynb", CALLBACK_ERROR_NOTEBOOK), record=False
    )
    assert run.report.slider_round_trip_ms is not None  # the label did change...
    # ...but the exception in the observer is reported
    assert any("the observer fails on purpose" in p for p in run.problems()), run.problems()


def test_harness_reports_a_missing_widget_front_end(driver_without_widget_manager):
    """What nbval cannot see: the same notebook, with JupyterLab's widget manager disabled."""
    driver = driver_without_widget_manager
    run = driver.run(
        _write_notebook(driver.lab, "no_widget_manager.ipynb", SLIDER_NOTEBOOK),
        record=False,
        settle_timeout_s=5,
    )
    problems = run.problems()
    assert any("text/plain" in p and "VBox(" in p for p in problems), problems
    assert run.report.sliders == 0  # nothing to move: the student sees only the repr
    assert any("built 1 slider(s) (1 IntSlider) but 0 rendered" in p for p in problems), problems
