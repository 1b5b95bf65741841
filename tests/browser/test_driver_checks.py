"""The browser driver's checks, without a browser: each one fails on the fault it is for.

The HTML below is what JupyterLab 4 with ipywidgets 8 rendered for the harness notebooks of
test_notebooks_in_browser.py (inner HTML of the output element; SVG paths and styles trimmed).
"""

from __future__ import annotations

import pytest

from tools.jupyterlab_driver import kernel_query, server_logs, widget_checks
from tools.jupyterlab_driver.widget_scan import WidgetScan

SLIDER = (
    '<div class="lm-Widget jupyter-widgets widget-inline-hbox widget-slider widget-hslider">'
    '<label class="widget-label" title="null">level</label><div class="slider-container">'
    '<div class="slider noUi-target noUi-ltr noUi-horizontal"><div class="noUi-base">'
    '<div class="noUi-origin"><div class="noUi-handle noUi-handle-lower" role="slider" '
    'aria-valuemin="0.0" aria-valuemax="12.0" aria-valuenow="3.0"><div class="noUi-touch-area">'
    '</div></div></div></div></div></div><div class="widget-readout" contenteditable="true">3</div>'
    "</div>"
)
LABEL = '<div class="lm-Widget jupyter-widgets widget-inline-hbox widget-label">value 3</div>'
# ipywidgets 8's ErrorWidgetView, shown where a model's module cannot be loaded (here: an
# ipywidgets 7 kernel's IntSlider, controls 1.5.0, under the ipywidgets 8 front end)
ERROR_BOX = (
    '<div class="lm-Widget jupyter-widgets"><div class="jupyter-widgets-error-widget icon-error">'
    '<svg role="img" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48"><g><path d="M 8 21">'
    '</path></g></svg><pre style="text-align: center;">Click to show javascript error.</pre>'
    "</div></div>"
)


def box(*children: str) -> str:
    return (
        '<div class="lm-Widget lm-Panel jupyter-widgets widget-container widget-box '
        f'widget-vbox">{"".join(children)}</div>'
    )


def output_widget(*outputs: str) -> str:
    inner = "".join(
        f'<div class="jp-OutputArea-child"><div class="jp-OutputArea-output" '
        f'data-mime-type="{mime}"><pre>{text}</pre></div></div>'
        for mime, text in outputs
    )
    return (
        f'<div class="lm-Widget jupyter-widgets widget-output"><div class="jp-OutputArea">{inner}</div></div>'
    )


STDERR = "application/vnd.jupyter.stderr"
TRACEBACK = (
    "-----\nValueError    Traceback (most recent call last)\nCell In[3], line 2\n"
    "ValueError: the observer fails on purpose"
)


# ---- error boxes and other outputs that are not a working widget ----------------------------


def test_a_rendered_slider_passes():
    html = box(SLIDER, '<img class="lm-Widget jupyter-widgets widget-image" src="">')
    assert widget_checks.output_problems(None, html) == []
    assert widget_checks.output_facts(html).sliders == 1
    assert not widget_checks.is_transient(None, html)


def test_the_error_box_fails_even_inside_a_rendered_box():
    # the lenient check counted this as a rendered widget: it is inside .jupyter-widgets
    problems = widget_checks.output_problems(None, box(ERROR_BOX, LABEL))
    assert len(problems) == 1 and problems[0].startswith("widget error box:"), problems
    assert "Click to show javascript error." in problems[0]
    assert widget_checks.output_facts(box(ERROR_BOX, LABEL)).sliders == 0


@pytest.mark.parametrize(
    "html",
    [
        "Error displaying widget: model not found",
        "Error displaying widget",
        '<div class="jupyter-widgets widget-error">Something failed</div>',
        box(LABEL, '<div class="jupyter-widgets">Click to show Javascript Error.</div>'),
    ],
)
def test_error_texts_and_classes_fail(html):
    problems = widget_checks.output_problems(None, html)
    assert [p.split(":")[0] for p in problems] == ["widget error box"], problems


def test_a_text_fallback_fails():
    problems = widget_checks.output_problems("text/plain", "<pre>VBox(children=(IntSlider(value=3),))</pre>")
    assert problems == ['shown as text/plain, not as a widget: "VBox(children=(IntSlider(value=3),))"']
    assert not widget_checks.is_transient("text/plain", "<pre>VBox()</pre>")


def test_loading_and_missing_views_fail_and_loading_is_transient():
    assert widget_checks.output_problems(None, "Loading widget...") == ['still "Loading widget..."']
    assert widget_checks.is_transient(None, "Loading widget...")
    assert widget_checks.is_transient(None, "")
    assert widget_checks.is_transient(None, None)
    assert widget_checks.output_problems(None, None) == ["no output element (the cell was never rendered)"]
    assert widget_checks.output_problems(None, "<div>plain html</div>")[0].startswith("no widget view")


def test_a_traceback_in_an_output_widget_fails_but_a_warning_does_not():
    warning = (STDERR, "UserWarning: stderr output is not an error")
    assert widget_checks.output_problems(None, box(SLIDER, output_widget(warning))) == []
    problems = widget_checks.output_problems(None, box(SLIDER, output_widget(warning, (STDERR, TRACEBACK))))
    assert len(problems) == 1 and problems[0].startswith("traceback in an Output widget")
    assert "the observer fails on purpose" in problems[0]
    # the same text as a plain stdout print inside the Output widget is not a traceback
    printed = output_widget(("application/vnd.jupyter.stdout", TRACEBACK))
    assert widget_checks.output_problems(None, box(SLIDER, printed)) == []


# ---- sliders built by the kernel vs sliders rendered ------------------------------------------


def test_slider_shortfall():
    assert widget_checks.slider_shortfall([], 0) is None
    assert widget_checks.slider_shortfall(["IntSlider"], 1) is None
    assert widget_checks.slider_shortfall(["IntSlider"], 2) is None  # one slider shown twice
    message = widget_checks.slider_shortfall(["IntSlider", "SelectionSlider", "IntSlider"], 2)
    assert message.startswith(
        "the kernel built 3 slider(s) (2 IntSlider, 1 SelectionSlider) but 2 rendered"
    ), message


def test_scan_counts_sliders_across_outputs_and_ignores_broken_ones():
    scan = WidgetScan(
        [
            (2, {"index": 0, "mime": None, "html": box(LABEL)}),
            (4, {"index": 0, "mime": None, "html": box(SLIDER, SLIDER, LABEL)}),
            (4, {"index": 1, "mime": None, "html": box(ERROR_BOX)}),
            (6, {"index": 0, "mime": "text/plain", "html": SLIDER}),  # not a widget view
        ]
    )
    assert scan.sliders == 2
    assert scan.first_slider_cell == 4
    assert not scan.transient
    assert [p.split(":")[0] for p in scan.problems()] == [
        "widget in cell 4, output 1",
        "widget in cell 6, output 0",
    ]
    assert widget_checks.slider_shortfall(["IntSlider"] * 3, scan.sliders)


def test_the_kernel_expression_lists_live_sliders_only():
    widgets = pytest.importorskip("ipywidgets")
    built = [
        widgets.IntSlider(),
        widgets.FloatLogSlider(),
        widgets.SelectionSlider(options=[1, 2]),
        widgets.IntRangeSlider(),
        widgets.Play(),
        widgets.Label("x"),
    ]
    closed = widgets.FloatSlider()
    closed.close()
    try:
        found = eval(kernel_query.SLIDER_EXPRESSION)
        for name in ("IntSlider", "FloatLogSlider", "SelectionSlider", "IntRangeSlider"):
            assert name in found
        assert "Play" not in found and "Label" not in found
        reply = {"status": "ok", "data": {"text/plain": repr(found)}}
        assert kernel_query.sliders_from_reply(reply) == found
    finally:
        for w in built:
            w.close()


def test_a_kernel_that_cannot_answer_is_a_problem():
    with pytest.raises(RuntimeError, match="NameError: name 'm' is not defined"):
        kernel_query.sliders_from_reply(
            {"status": "error", "ename": "NameError", "evalue": "name 'm' is not defined"}
        )
    with pytest.raises(RuntimeError, match="no reply"):
        kernel_query.sliders_from_reply(None)


# ---- the logs ----------------------------------------------------------------------------------


def test_server_log_tracebacks_and_restarts():
    text = (
        '[I 12:00] Kernel started\nTraceback (most recent call last):\n  File "x.py"\n'
        "ValueError: boom\n[W 12:01] AsyncIOLoopKernelRestarter: restarting kernel (1/5)\n"
    )
    found = server_logs.server_log_problems(text)
    assert found[0] == "Traceback (most recent call last): ... ValueError: boom"
    assert found[1].startswith("the kernel died and was restarted")
    assert server_logs.server_log_problems("[I 12:00] Kernel started\n") == []


def test_kernel_error_entries_skip_the_benign_one():
    text = (
        "Comm: No such comm target registered: jupyter.widget\n"
        "Comm: Exception in comm_msg\n    Traceback\n    ValueError: boom\n"
        "traceback shown: ValueError: the observer fails on purpose\n"
    )
    assert server_logs.kernel_error_entries(text) == [
        "Comm: Exception in comm_msg ... ValueError: boom",
        "traceback shown: ValueError: the observer fails on purpose",
    ]
