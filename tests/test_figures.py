"""Figures by the field's conventions, checked on every explorer's rendered picture at its default size.

Panels of one explorer at one size; a colour key on every map, stating its clipping percentile;
the ground-truth outline on the input only; an overlay that shows; text of 10 px or more; no text
cut or overlapping; the projection explorer opening on structure; and, displayed, a static PNG
of the current state next to the widget, which nbconvert's HTML shows when no widget runs.
"""

from __future__ import annotations

import base64

import figure_checks as fc
import numpy as np
import pytest

import deconvlab as dl
from deconvlab import sanity, toynets, viz
from deconvlab.sanity import plots
from deconvlab.widgets import (
    ClassSensitivityExplorer,
    CNNExplorer,
    CustomRuleExplorer,
    InputExplorer,
    ProjectionExplorer,
    RandomisationExplorer,
    RecoveryExplorer,
    RuleExplorer,
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def thresholded_guided(x, p, t):
    return p * (x > t) * (p > 0)


@pytest.fixture(scope="module")
def model():
    return dl.models.teaching_model()


@pytest.fixture(scope="module")
def data():
    return dl.data.shapes(6, seed=11)


@pytest.fixture(scope="module")
def explorers(model, data):
    """One explorer of each kind, as the notebooks build them (smaller data)."""
    pairs = dl.data.shapes(3, seed=12, objects=2)
    cascade = sanity.cascading_randomisation(model, data.images[:2], data.labels[:2], layers=["classifier.2"])
    return {
        "rule": RuleExplorer(),
        "input": InputExplorer({"no pool": toynets.no_pool_network(), "teaching": model}, data.images, 2),
        "custom": CustomRuleExplorer(
            model, data.images[:1], 0, thresholded_guided, name="thresholded", equation="p·[x>t]·[p>0]"
        ),
        "cnn": CNNExplorer(model, data.images, data.labels, data.masks),
        "projection": ProjectionExplorer(model, dl.data.shapes(128, seed=13).images),
        "class_sensitivity": ClassSensitivityExplorer(
            sanity.class_sensitivity(model, pairs.images, pairs.labels, pairs.masks)
        ),
        "randomisation": RandomisationExplorer(cascade),
        "recovery": RecoveryExplorer(sanity.recovery_by_depth(model, data.images[:2], data.labels[:2])),
    }


NAMES = ["rule", "input", "custom", "cnn", "projection", "class_sensitivity", "randomisation", "recovery"]


def keyed(name: str, rows) -> tuple[set, set]:
    """Panels that must carry a colour key, and panels that are pictures of the input (no key)."""
    cells = {(i, j) for i, row in enumerate(rows) for j, p in enumerate(row) if p is not None}
    if name == "rule":
        return cells, set()
    if name == "projection":  # one key per row of projections, under its first tile
        return {(i, 0) for i in range(1, len(rows))}, {(0, j) for j in range(len(rows[0]))}
    if name in ("class_sensitivity", "randomisation"):  # one key per column, under the bottom row
        return {(1, j) for j in range(1, len(rows[0]))}, {(i, 0) for i in range(len(rows))}
    return {(0, j) for j in range(1, len(rows[0]))}, {(0, 0)}


# ------------------------------------------------------------------------------------------
# the live picture and the static figure
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_panels_of_one_explorer_have_one_size(explorers, name):
    explorer = explorers[name]
    picture = fc.decode(explorer.view.value)
    assert picture.shape[1] <= viz.MAX_WIDTH, "wider pictures are shrunk by the notebook, text too"
    canvas = explorer.canvas
    boxes = [box for row in canvas.boxes for box in row if box is not None]
    assert len({(h, w) for _, _, h, w in boxes}) == 1, boxes
    # what is pasted in each box is that panel's picture
    (top, left, h, w), panel = canvas.boxes[0][-1], explorer.rows[0][-1]
    expected = viz._fit(np.asarray(panel.image), h, w)
    np.testing.assert_array_equal(picture[top : top + h, left : left + w], expected)
    sizes = fc.panel_sizes(explorer.figure())
    assert sizes == {(w, h)}, f"the static figure draws the panels {sizes}, the live view {(w, h)}"


@pytest.mark.parametrize("name", NAMES)
def test_every_map_has_a_colour_key_that_states_its_clipping(explorers, name):
    rows = explorers[name].rows
    must, inputs = keyed(name, rows)
    have = {(i, j) for i, row in enumerate(rows) for j, p in enumerate(row) if p is not None and p.key}
    assert must <= have and not (have & inputs), (must, have)
    for i, j in have:
        key = rows[i][j].key
        assert name == "rule" or ("99" in key.label and "percentile" in key.label), key.label
        assert len(key.ticks) == len(key.ticklabels) >= 2
    fig = explorers[name].figure()
    assert len(fc.axes_labelled(fig, "key")) == len(have)


@pytest.mark.parametrize("name", NAMES)
def test_text_is_large_enough_and_never_cut_or_overlapping(explorers, name):
    fig = explorers[name].figure()
    assert fc.smallest_text_px(fig) >= fc.MIN_TEXT_PX
    assert not fc.text_problems(fig), fc.text_problems(fig)
    assert fc.figure_width_px(fig) <= viz.MAX_WIDTH
    for control in explorers[name].controls.values():  # a slider's readout box holds ~7 characters
        if getattr(control, "readout", False) and hasattr(control, "options"):
            assert max(len(str(label)) for label in control.options) <= 7, control


def test_projection_readout_names_the_whole_layer(explorers):
    explorer = explorers["projection"]
    assert explorer.controls["layer"].readout is False
    for layer in explorer.layers:
        explorer.controls["layer"].value = layer
        assert f"<b>{layer}</b>" in explorer.layer_name.value
    explorer.controls["layer"].value = explorer.layers[-2]


def test_outline_on_the_input_only(model, data, explorers):
    with_mask = explorers["cnn"]
    without = CNNExplorer(model, data.images, data.labels)
    assert not np.array_equal(with_mask.rows[0][0].image, without.rows[0][0].image)
    for outlined, plain in zip(with_mask.rows[0][1:], without.rows[0][1:]):
        np.testing.assert_array_equal(outlined.image, plain.image)
    green, magenta = np.float32([0, 1, 0]), np.float32([1, 0, 1])
    for i, row in enumerate(explorers["class_sensitivity"].rows):
        colour = (green, magenta)[i]
        assert (row[0].image == colour).all(-1).any(), "object outlined on the input"
        for panel in row[1:]:
            assert not (np.repeat(panel.image[..., None], 3, -1) == colour).all(-1).any()


def test_overlay_is_visible(explorers):
    """Today's overlay: most pixels visibly differ from the input (the old one changed 1.8%)."""
    explorer = explorers["cnn"]
    image = viz.as_image(explorer.images[explorer.controls["image"].value])
    for index in range(len(explorer.images)):
        explorer.controls["image"].value = index
        image = viz.as_image(explorer.images[index])
        assert fc.visible_fraction(explorer.rows[0][-1].image, image) > 0.5
    explorer.controls["image"].value = 0


def test_projection_explorer_opens_on_structure(model):
    """Zoomed into the strongest channel of a deep layer, the projections fill their tiles;
    the old first view (layer 1, channel 0, no zoom) showed 3x3-px dots on grey."""
    images = dl.data.shapes(128, seed=13).images
    default = ProjectionExplorer(model, images)
    old = ProjectionExplorer(model, images, layer="features.1", channel=0, zoom=False)

    def structure(explorer):
        tiles = [p.image for row in explorer.rows[1:] for p in row]
        return np.mean([fc.visible_fraction(t, np.full_like(t, 0.5)) for t in tiles])

    assert structure(default) > 0.1 and structure(default) > 10 * structure(old)
    assert default.controls["layer"].value != default.layers[0] and default.controls["zoom"].value


# ------------------------------------------------------------------------------------------
# every figure comes from a library function with plain arguments
# ------------------------------------------------------------------------------------------


def _arrays(fig):
    return [ax.images[0].get_array() for ax in fc.axes_labelled(fig, "panel")]


def _shown(explorer):
    return [np.clip(p.image, 0, 1) for row in explorer.rows for p in row if p is not None]


def test_library_functions_draw_what_the_explorers_show(explorers, data):
    rule = explorers["rule"]
    point = (rule.controls["x"].value, rule.controls["p"].value)
    figures = {"rule": viz.plot_rule_planes(point=point)}
    cnn = explorers["cnn"]
    figures["cnn"] = viz.plot_maps(
        data.images[0], cnn.maps(), mask=data.masks[0], overlay="guided_backprop", highlight="guided_backprop"
    )
    projection = explorers["projection"]
    top, signals = projection.projections()
    layer = projection.controls["layer"].value
    boxes = projection.boxes(layer, top)
    figures["projection"] = viz.plot_projections(projection.images[top.indices], signals, boxes, zoom=True)
    figures["class_sensitivity"] = plots.plot_class_sensitivity_maps(explorers["class_sensitivity"].result, 0)
    figures["randomisation"] = plots.plot_cascade_maps(explorers["randomisation"].result, 0, 0)
    for name, fig in figures.items():
        drawn, shown = _arrays(fig), _shown(explorers[name])
        assert len(drawn) == len(shown), name
        for a, b in zip(drawn, shown):
            np.testing.assert_allclose(np.asarray(a), b, atol=1e-6, err_msg=name)
        fc.check_figure(fig, viz.MAX_WIDTH)


def test_figure_grid_and_sanity_plots_keep_the_conventions(model, data):
    maps = dl.attribute(model, data.images[:3], data.labels[:3], rules=list(dl.rules.BUILTIN_NAMES))
    for kind in ("signed", "heatmap", "overlay"):
        fc.check_figure(
            viz.figure_grid(data.images[:3], maps, kind=kind, masks=data.masks[:3]), viz.MAX_WIDTH
        )
    pairs = dl.data.shapes(4, seed=12, objects=2)
    fc.check_figure(
        sanity.plot_class_sensitivity(
            sanity.class_sensitivity(model, pairs.images, pairs.labels, pairs.masks)
        ),
        viz.MAX_WIDTH,
    )
    cascade = sanity.cascading_randomisation(
        model, data.images[:2], data.labels[:2], layers=["classifier.2", "features.11", "features.8"]
    )
    fig = sanity.plot_cascade(cascade, reference=sanity.reference_table("adebayo2018"))
    assert fc.smallest_text_px(fig) >= fc.MIN_TEXT_PX and fc.figure_width_px(fig) <= viz.MAX_WIDTH


# ------------------------------------------------------------------------------------------
# a static picture of the current state, where no widget front end runs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_display_bundle_holds_the_widget_and_a_picture(explorers, name):
    from IPython.core.formatters import DisplayFormatter

    explorer = explorers[name]
    data, _ = DisplayFormatter().format(explorer)
    assert data[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and fc.decode(png).shape[1] <= viz.MAX_WIDTH
    assert data["text/plain"].startswith(type(explorer).__name__)


def test_static_picture_follows_the_state(explorers):
    explorer = explorers["rule"]
    before = explorer.static_png()
    explorer.controls["x"].value = 0.8
    assert explorer.static_png() != before and "x = +0.80" in explorer.summary()
    explorer.controls["x"].value = -0.4


NOTEBOOK = [
    "import torch\nimport deconvlab as dl\nfrom deconvlab import sanity, toynets\nfrom deconvlab.widgets import *\n"
    "model = dl.models.teaching_model()\ndata = dl.data.shapes(3, seed=1)",
    "RuleExplorer()",
    "InputExplorer(toynets.no_pool_network(), data.images, 1)",
    "CustomRuleExplorer(model, data.images[:1], 0, lambda x, p, t: p * (x > t) * (p > 0))",
    "CNNExplorer(model, data.images, data.labels, data.masks)",
    "ProjectionExplorer(model, dl.data.shapes(32, seed=2).images, k=4)",
    "pairs = dl.data.shapes(2, seed=3, objects=2)\n"
    "ClassSensitivityExplorer(sanity.class_sensitivity(model, pairs.images, pairs.labels, pairs.masks))",
    "explorer = RandomisationExplorer(sanity.cascading_randomisation(model, data.images, data.labels,"
    " layers=['classifier.2']))\ndisplay(explorer)",
]


def test_executed_notebook_keeps_a_picture_of_every_explorer(tmp_path):
    """nbconvert's executor saves each explorer's PNG beside its widget; the HTML export shows the
    PNGs as <img> where no widget state is saved (and the widget state holds the live pictures)."""
    import nbclient  # the test extra brings them (nbval, JupyterLab): imported here, as they are slow
    import nbconvert
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    for cell in nb.cells[1:]:
        (output,) = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
        assert WIDGET_VIEW in output.data and output.data["image/png"], cell.source
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    images = [m for m in state.values() if m["model_name"] == "ImageModel"]
    assert len(images) >= len(NOTEBOOK) - 1, "the saved widget state holds each explorer's live picture"

    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert f'type="{WIDGET_VIEW}"' in html  # with widget state saved: the widgets, drawn from it
    del nb.metadata["widgets"]  # as GitHub's viewer, nbviewer without state, or a PDF sees it
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert html.count("<img") >= len(NOTEBOOK) - 1
    assert html.count("data:image/png;base64") >= len(NOTEBOOK) - 1
