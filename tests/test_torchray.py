"""deconvlab.torchray is TorchRay's API under TorchRay's module paths: TorchRay's own examples run
with one word of their imports changed, and every name, signature and side effect is compared with
TorchRay 1.0.0.2 itself (installed with ``pip install --no-deps torchray``; CC BY-NC 4.0, run here,
never copied). A missing TorchRay fails these tests; it never skips them. The argument grid of
``saliency`` is in ``test_torchray_grid.py``.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchray
import torchray.attribution.common as tr_common
import torchray.attribution.guided_backprop as tr_guided
import torchray.benchmark
import torchray.utils as tr_utils
from torch import nn

import deconvlab as dl
import deconvlab.torchray.attribution.common as dl_common
import deconvlab.torchray.utils as dl_utils
from deconvlab.torchray.attribution.deconvnet import DeConvNetContext, DeConvNetReLU, deconvnet
from deconvlab.torchray.attribution.gradient import gradient
from deconvlab.torchray.attribution.guided_backprop import (
    GuidedBackpropContext,
    GuidedBackpropReLU,
    guided_backprop,
)
from deconvlab.torchray.benchmark import get_example_data, plot_example

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchray.*")

# ------------------------------------------------------------------------------------------------
# TorchRay's six examples for these methods, verbatim: examples/{gradient,gradient_manual,deconvnet,
# deconvnet_manual,guided_backprop,guided_backprop_manual}.py of https://github.com/facebookresearch/
# TorchRay (commit 6a198ee), Copyright (c) Facebook, Inc. and its affiliates, licensed CC BY-NC 4.0.
# Quoted unchanged to check that they run here; not part of deconvlab.
# ------------------------------------------------------------------------------------------------
EXAMPLES = {
    "gradient.py": """\
from torchray.attribution.gradient import gradient
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# Gradient method.
saliency = gradient(model, x, category_id)

# Plots.
plot_example(x, saliency, 'gradient', category_id)
""",
    "gradient_manual.py": """\
from torchray.attribution.common import gradient_to_saliency
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# Gradient method.

x.requires_grad_(True)
y = model(x)
z = y[0, category_id]
z.backward()

saliency = gradient_to_saliency(x)

# Plots.
plot_example(x, saliency, 'gradient', category_id)
""",
    "deconvnet.py": """\
from torchray.attribution.deconvnet import deconvnet
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# DeConvNet method.
saliency = deconvnet(model, x, category_id)

# Plots.
plot_example(x, saliency, 'deconvnet', category_id)
""",
    "deconvnet_manual.py": """\
from torchray.attribution.common import gradient_to_saliency
from torchray.attribution.deconvnet import DeConvNetContext
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# DeConvNet method.
x.requires_grad_(True)

with DeConvNetContext():
    y = model(x)
    z = y[0, category_id]
    z.backward()

saliency = gradient_to_saliency(x)

# Plots.
plot_example(x, saliency, 'deconvnet', category_id)
""",
    "guided_backprop.py": """\
from torchray.attribution.guided_backprop import guided_backprop
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# Guided backprop.
saliency = guided_backprop(model, x, category_id)

# Plots.
plot_example(x, saliency, 'guided backprop', category_id)
""",
    "guided_backprop_manual.py": """\
from torchray.attribution.common import gradient_to_saliency
from torchray.attribution.guided_backprop import GuidedBackpropContext
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# Guided backprop.
x.requires_grad_(True)

with GuidedBackpropContext():
    y = model(x)
    z = y[0, category_id]
    z.backward()

saliency = gradient_to_saliency(x)

# Plots.
plot_example(x, saliency, 'guided backprop', category_id)
""",
}


def _with_deconvlab_imports(source):
    """The one-word change: ``torchray`` becomes ``deconvlab.torchray`` in the imports."""
    return source.replace("from torchray.", "from deconvlab.torchray.")


def _run_example(source):
    namespace = {}
    exec(compile(source, "example.py", "exec"), namespace)
    plt.close("all")
    return namespace


def test_torchray_is_installed_at_the_version_compared_against():
    assert torchray.__version__ == "1.0.0.2", "install it with: pip install --no-deps torchray==1.0.0.2"


@pytest.mark.parametrize("name", EXAMPLES)
def test_torchrays_examples_run_with_only_the_imports_changed_and_give_torchrays_maps(name, monkeypatch):
    source = EXAMPLES[name]
    changed = _with_deconvlab_imports(source)
    differing = [a for a, b in zip(source.splitlines(), changed.splitlines()) if a != b]
    assert differing == [line for line in source.splitlines() if line.startswith("from torchray")]
    ours = _run_example(changed)
    assert ours["saliency"].shape == (1, 1, *ours["x"].shape[2:]) and ours["saliency"].max() > 0
    # TorchRay's own run of the verbatim example, given the same offline model and image (its
    # get_example_data would download a VGG16).
    monkeypatch.setattr(torchray.benchmark, "get_example_data", get_example_data)
    theirs = _run_example(source)
    assert torch.equal(ours["saliency"], theirs["saliency"])
    assert torch.equal(ours["x"].grad, theirs["x"].grad)


def test_the_examples_automatic_and_manual_forms_agree():
    for method in ("gradient", "deconvnet", "guided_backprop"):
        automatic = _run_example(_with_deconvlab_imports(EXAMPLES[f"{method}.py"]))["saliency"]
        manual = _run_example(_with_deconvlab_imports(EXAMPLES[f"{method}_manual.py"]))["saliency"]
        assert torch.equal(automatic, manual)


# --- names and signatures -------------------------------------------------------------------------

PAIRS = {
    "attribution.common": tr_common.__all__,
    "attribution.deconvnet": ["DeConvNetContext", "DeConvNetReLU", "deconvnet"],
    "attribution.guided_backprop": ["GuidedBackpropContext", "GuidedBackpropReLU", "guided_backprop"],
    "attribution.gradient": ["gradient"],
    "benchmark": ["get_example_data", "plot_example"],
    "utils": ["imsmooth", "imsc", "get_device"],
}


def _signature(obj):
    """Parameters as (name, kind, default), a default function or class by its name."""
    parameters = inspect.signature(obj).parameters.values()
    return [(p.name, p.kind, getattr(p.default, "__name__", p.default)) for p in parameters]


@pytest.mark.parametrize("module", PAIRS)
def test_every_torchray_name_is_there_with_torchrays_signature(module):
    ours = importlib.import_module(f"deconvlab.torchray.{module}")
    theirs = importlib.import_module(f"torchray.{module}")
    assert set(getattr(theirs, "__all__", [])) <= set(getattr(ours, "__all__", []))
    for name in PAIRS[module]:
        assert _signature(getattr(ours, name)) == _signature(getattr(theirs, name)), name
    if module == "attribution.common":  # TorchRay users import it from there too
        assert ours.imsmooth is dl_utils.imsmooth


def test_contexts_and_functions_are_what_torchray_users_check_for():
    assert issubclass(DeConvNetContext, dl_common.ReLUContext)
    assert issubclass(GuidedBackpropContext, dl_common.ReLUContext)
    for relu in (DeConvNetReLU, GuidedBackpropReLU):
        assert isinstance(relu, torch.autograd.function.FunctionMeta)
    with DeConvNetContext() as context, dl_common.NullContext() as null:
        assert isinstance(context, DeConvNetContext) and isinstance(null, dl_common.NullContext)


def test_the_readmes_torchray_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### TorchRay code") : readme.index("## What it guarantees")]
    code = section.split("```python\n")[1].split("```")[0]
    namespace = _run_example(code)
    assert torch.equal(
        namespace["saliency"], _run_example(_with_deconvlab_imports(EXAMPLES["deconvnet.py"]))["saliency"]
    )


def test_errors_name_the_problem(cnn, images):
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        deconvnet(cnn, images, 1, saliency_layer="nope")
    with pytest.raises(ValueError, match="not a submodule"):
        deconvnet(cnn, images, 1, saliency_layer=nn.ReLU())
    with pytest.raises(ValueError, match="resize must be"):
        deconvnet(cnn, images, 1, resize=None)
    with pytest.raises(IndexError, match="out of range"):
        deconvnet(cnn, images, 9)


def test_gradient_takes_no_context_builder(cnn, images):
    with pytest.raises(ValueError, match="context_builder"):
        gradient(cnn, images, 1, context_builder=DeConvNetContext)


# --- the side effects TorchRay code relies on ----------------------------------------------------


def _pair(method_name):
    ours = {"gradient": gradient, "deconvnet": deconvnet, "guided_backprop": guided_backprop}[method_name]
    module = importlib.import_module(f"torchray.attribution.{method_name}")
    return ours, getattr(module, method_name)


@pytest.fixture
def example():
    model, x, first, second = get_example_data()
    return model, x, first, second


def _input_grads(run, model, x, category_id):
    """``input.grad`` after ``run`` on a fresh input and on one with a stale ``.grad``."""
    fresh = x.clone()
    run(model, fresh, category_id)
    assert fresh.requires_grad
    stale = x.clone().requires_grad_(True)
    stale.grad = kept = torch.full_like(stale, 7.0)
    run(model, stale, category_id)
    assert stale.grad is kept  # zeroed, then the signal accumulated into the same tensor
    at_layer = x.clone()
    run(model, at_layer, category_id, saliency_layer="features.5")
    assert not at_layer.requires_grad and at_layer.grad is None
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    return fresh.grad, stale.grad


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided_backprop"])
def test_input_grad_holds_the_signed_signal_as_after_torchrays_saliency(method, example):
    model, x, category_id, _ = example
    ours, theirs = (_input_grads(run, model, x, category_id) for run in _pair(method))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert torch.equal(ours[0], dl.attribute(model, x, category_id, rule=method))
    assert ours[0].lt(0).any()  # signed


@pytest.mark.filterwarnings(
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
)  # TorchRay's
def test_a_computed_input_passes_the_signal_on_as_in_torchray(example):
    model, x, category_id, _ = example
    grads = []
    for run in _pair("deconvnet"):
        scale = torch.ones(1, requires_grad=True)
        computed = x * scale
        run(model, computed, category_id)
        grads.append((computed.grad, scale.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-6, atol=0)


def test_a_0d_tensor_target_works_here_in_torchray_and_in_the_core(example):
    model, x, _, _ = example
    target = model(x).argmax()
    assert target.dim() == 0
    for ours, theirs in map(_pair, ["gradient", "deconvnet"]):
        assert torch.equal(ours(model, x.clone(), target), theirs(model, x.clone(), target))
    torch.testing.assert_close(
        dl.attribute(model, x, target), dl.attribute(model, x, int(target)), rtol=0, atol=0
    )
    with pytest.raises(TypeError, match="dtype"):
        dl.attribute(model, x, torch.tensor(1.0))


class SharedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))


def test_a_layer_that_runs_twice_is_taken_at_its_last_call_as_in_torchray():
    model = SharedReLU().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for ours, theirs in map(_pair, ["gradient", "deconvnet", "guided_backprop"]):
        torch.testing.assert_close(
            ours(model, x.clone(), 1, saliency_layer="relu"),
            theirs(model, x.clone(), 1, saliency_layer="relu"),
            rtol=0,
            atol=0,
        )
    last = model.relu(model.conv2(model.relu(model.conv1(x)))).detach().requires_grad_(True)
    model.head(last)[:, 1].sum().backward()
    signed = gradient(model, x, 1, saliency_layer=model.relu, gradient_to_saliency=lambda t: t.grad)
    torch.testing.assert_close(signed, last.grad, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="ran 2 times"):  # the core still refuses it
        dl.attribute(model, x, 1, layer="relu")


def test_gradient_to_saliency_gets_the_layers_own_output_under_an_inplace_relu(example):
    """features.11 is a conv followed by ReLU(inplace=True), as VGG16's features.28 is."""
    model, x, category_id, _ = example
    seen = {}

    def grad_times_activation(t):
        seen["value"], seen["grad"] = t.detach().clone(), t.grad.clone()
        return (t.grad * t).sum(1, keepdim=True)

    conv_out = model.features[:12](x)
    for ours, theirs in map(_pair, ["deconvnet", "guided_backprop"]):
        mine = ours(
            model,
            x.clone(),
            category_id,
            saliency_layer="features.11",
            gradient_to_saliency=grad_times_activation,
        )
        assert torch.equal(seen["value"], conv_out)
        torray = theirs(
            model,
            x.clone(),
            category_id,
            saliency_layer="features.11",
            gradient_to_saliency=grad_times_activation,
        )
        assert torch.equal(mine, torray.detach())
    # TorchRay's plain gradient there: it fails, or (input requiring grad) hands over the ReLU's
    # output and gradient; deconvlab hands over the conv's, as TorchRay does with debug probes on.
    ours, theirs = _pair("gradient")
    with pytest.raises(RuntimeError, match="leaf Variable"):
        theirs(model, x.clone(), category_id, saliency_layer="features.11")
    gc.collect()  # TorchRay leaves its probe on the model when it fails
    theirs(
        model,
        x.clone().requires_grad_(True),
        category_id,
        saliency_layer="features.11",
        gradient_to_saliency=grad_times_activation,
    )
    assert torch.equal(seen["value"], conv_out.relu())
    mine = ours(
        model,
        x.clone(),
        category_id,
        saliency_layer="features.11",
        gradient_to_saliency=grad_times_activation,
    )
    assert torch.equal(seen["value"], conv_out)
    reference, probes = theirs(
        model,
        x.clone(),
        category_id,
        saliency_layer="features.11",
        debug=True,
        gradient_to_saliency=grad_times_activation,
    )
    for probe in probes.values():
        probe.remove()
    assert torch.equal(mine, reference.detach())


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided_backprop"])
def test_debug_probes_carry_values_and_gradients_like_torchrays_and_leave_no_hook(method, example):
    model, x, category_id, _ = example
    ours, theirs = _pair(method)
    _, mine = ours(model, x.clone(), category_id, debug=True)
    _, torchrays = theirs(model, x.clone(), category_id, debug=True)
    assert list(mine) == list(torchrays) == [name for name, _ in model.named_modules()]
    for name, probe in mine.items():
        (value,), (other,) = probe.data, torchrays[name].data
        assert torch.equal(value, other) and torch.equal(value.grad, other.grad), name
        assert probe.target == torchrays[name].target
    assert any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # TorchRay's stay on
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))  # ... in-place ReLUs off
    for probe in torchrays.values():
        probe.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


# --- the helpers of common ----------------------------------------------------------------------


def test_probe_records_tensors_and_gradients_like_torchrays(example):
    model, x, category_id, _ = example
    results = []
    for common in (dl_common, tr_common):
        relu, conv = model.features[4], model.features[3]
        probes = [common.Probe(relu, target="output"), common.Probe(conv, target="input")]
        assert relu.inplace is False
        probes[0].contrast = [torch.full((1, 32, 32, 32), 0.01)]
        probes[0].non_negative_contrast = True
        model(x.clone())[0, category_id].backward()
        results.append([(t.detach().clone(), t.grad.clone()) for p in probes for t in p.data])
        for probe in probes:
            probe.remove()
            probe.remove()
        assert relu.inplace is True and not relu._forward_hooks and not conv._forward_pre_hooks
    for (value, grad), (other_value, other_grad) in zip(*results):
        assert torch.equal(value, other_value) and torch.equal(grad, other_grad)
    probe = dl_common.Probe(model.features[0], target="output")
    del probe
    gc.collect()
    assert not model.features[0]._forward_hooks  # a probe that is garbage-collected removes itself


def test_attach_debug_probes_matches_torchrays(cnn):
    assert dl_common.attach_debug_probes(cnn) is None and tr_common.attach_debug_probes(cnn) is None
    ours, theirs = (
        dl_common.attach_debug_probes(cnn, debug=True),
        tr_common.attach_debug_probes(cnn, debug=True),
    )
    assert [(n, p.target) for n, p in ours.items()] == [(n, p.target) for n, p in theirs.items()]
    for probe in [*ours.values(), *theirs.values()]:
        probe.remove()


def test_patch_replaces_and_restores_a_callable():
    assert dl_common.Patch.resolve("os.path.join") == tr_common.Patch.resolve("os.path.join")
    patch = dl_common.Patch("os.path.join", lambda *parts: "patched")
    assert os.path.join("a", "b") == "patched"
    patch.remove()
    patch.remove()
    assert os.path.join("a", "b") == f"a{os.sep}b"


class LeakyBackwardReLU(torch.autograd.Function):
    """A user's ReLU: forward max(x, 0), backward p · ([x > 0] + 0.1 · [x <= 0])."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, p):
        (x,) = ctx.saved_tensors
        return p * ((x > 0).to(p.dtype) + 0.1 * (x <= 0).to(p.dtype))


def test_relu_context_takes_a_users_relu_function_like_torchrays(example):
    model, x, category_id, _ = example
    maps = [
        common.saliency(
            model, x.clone(), category_id, context_builder=lambda c=common: c.ReLUContext(LeakyBackwardReLU)
        )
        for common in (dl_common, tr_common)
    ]
    assert torch.equal(maps[0], maps[1])
    assert not torch.equal(maps[0], gradient(model, x.clone(), category_id))
    with pytest.raises(TypeError, match=r"autograd\.Function"):
        dl_common.ReLUContext(torch.relu)


def test_get_module_matches_torchrays(cnn):
    for key in ["", "3", "missing", cnn[4]]:
        assert dl_common.get_module(cnn, key) is tr_common.get_module(cnn, key)


@pytest.mark.parametrize("shape", [(1, 5), (1, 5, 3, 4)])
@pytest.mark.parametrize("normalize", [True, False])
def test_get_pointing_gradient_matches_torchrays(shape, normalize):
    pred_y = torch.randn(shape, generator=torch.Generator().manual_seed(2), requires_grad=True)
    ours = dl_common.get_pointing_gradient(pred_y, 3, normalize)
    theirs = tr_common.get_pointing_gradient(pred_y, 3, normalize)
    assert torch.equal(ours, theirs) and ours.requires_grad == theirs.requires_grad


@pytest.mark.parametrize(
    "target",
    [2, [1, 3], torch.tensor([1, 3]), torch.tensor(2), torch.tensor([[1], [3]]), np.array([1, 3]), [2]],
    ids=repr,
)
@pytest.mark.parametrize("shape", [(2, 4), (2, 4, 3, 3)])
def test_get_backward_gradient_matches_torchrays(target, shape):
    pred_y = torch.zeros(shape)
    assert torch.equal(
        dl_common.get_backward_gradient(pred_y, target), tr_common.get_backward_gradient(pred_y, target)
    )
    seed = torch.rand(shape)
    assert dl_common.get_backward_gradient(pred_y, seed) is seed


@pytest.mark.parametrize("size", [True, (7, 5), [7, 5]], ids=repr)
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest", "nearest-exact", "area"])
def test_resize_saliency_matches_torchrays_and_also_takes_the_modes_it_cannot(size, mode):
    tensor, saliency = (
        torch.zeros(1, 3, 12, 10),
        torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)),
    )
    ours = dl_common.resize_saliency(tensor, saliency, size, mode)
    if mode in ("bilinear", "bicubic"):
        assert torch.equal(ours, tr_common.resize_saliency(tensor, saliency, size, mode))
    else:  # TorchRay passes align_corners=False, which current PyTorch refuses for these modes
        with pytest.raises(ValueError, match="align_corners"):
            tr_common.resize_saliency(tensor, saliency, size, mode)
        out = (12, 10) if size is True else (5, 7)
        assert torch.equal(ours, F.interpolate(saliency, out, mode=mode))
    assert dl_common.resize_saliency(tensor, saliency, False, mode) is saliency


# --- utils ----------------------------------------------------------------------------------------

IMSMOOTH_GRID = [
    (sigma, stride, padding, mode, value)
    for sigma in (0, 0.4, 1.3, 2)
    for stride in (1, 2, 3)
    for padding in (0, 2)
    for mode, value in (("constant", 0), ("constant", 0.5), ("reflect", 0), ("replicate", 0))
]


def test_imsmooth_gives_torchrays_numbers_on_its_whole_grid():
    """96 settings of sigma, stride, padding and padding mode: equal bit for bit."""
    tensor = torch.rand(2, 3, 13, 12, generator=torch.Generator().manual_seed(4))
    for sigma, stride, padding, mode, value in IMSMOOTH_GRID:
        ours = dl_utils.imsmooth(tensor, sigma, stride, padding, mode, value)
        theirs = tr_utils.imsmooth(tensor, sigma, stride, padding, mode, value)
        assert torch.equal(ours, theirs), (sigma, stride, padding, mode, value)


def test_imsmooth_also_runs_where_torchrays_cannot():
    tensor = torch.rand(1, 2, 9, 9, generator=torch.Generator().manual_seed(4))
    with pytest.raises(RuntimeError):  # a float32 kernel on a float64 tensor
        tr_utils.imsmooth(tensor.double(), 1.0)
    torch.testing.assert_close(
        dl_utils.imsmooth(tensor.double(), 1.0), dl_utils.imsmooth(tensor, 1.0).double()
    )
    with pytest.raises(RuntimeError, match="value"):  # current PyTorch takes no value for "replicate"
        tr_utils.imsmooth(tensor, 1.0, padding_mode="replicate", padding_value=1.0)
    assert torch.equal(
        dl_utils.imsmooth(tensor, 1.0, padding_mode="replicate", padding_value=1.0),
        dl_utils.imsmooth(tensor, 1.0, padding_mode="replicate"),
    )
    with pytest.raises(ValueError, match="sigma"):
        dl_utils.imsmooth(tensor, -1.0)


@pytest.mark.parametrize(
    "smooth, error, message",
    [
        (100, ValueError, r"smooth=100 is out of range.*\[0, 1\]"),
        (-0.1, ValueError, "out of range"),
        (float("nan"), ValueError, "out of range"),
        ("0.02", TypeError, "smooth must be a number"),
    ],
)
def test_absurd_smoothing_is_refused_before_the_model_runs(cnn, images, smooth, error, message):
    calls = []
    handle = cnn.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(error, match=message):
            guided_backprop(cnn, images, 1, smooth=smooth)
    finally:
        handle.remove()
    assert not calls  # refused at once: no forward pass, no 42 GB allocation


def test_imsmooth_refuses_a_gaussian_that_would_not_fit_in_memory():
    tensor = torch.rand(1, 3, 224, 224)
    with pytest.raises(ValueError, match=r"sigma=22400 px .* GB .* at most the image's size"):
        dl_utils.imsmooth(tensor, 22400.0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite non-negative"):
            dl_utils.imsmooth(tensor, bad)
    assert dl_utils.imsmooth(tensor, 224.0).shape == tensor.shape  # as wide as the image: allowed


def test_smoothing_keeps_the_mass_of_a_map(cnn, images):
    sharp, smooth = gradient(cnn, images, 1), gradient(cnn, images, 1, smooth=0.05)
    assert smooth.shape == sharp.shape and smooth.std() < sharp.std()
    torch.testing.assert_close(smooth.sum(), sharp.sum(), rtol=0.05, atol=0)


@pytest.mark.parametrize("lim", [None, [0.2, 0.6]])
def test_imsc_rescales_like_torchrays(lim):
    from PIL import Image

    image = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(1))
    ours, handle = dl_utils.imsc(image, quiet=True, lim=lim)
    theirs, _ = tr_utils.imsc(image, quiet=True, lim=lim)
    assert torch.equal(ours, theirs) and handle is None
    photo = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    assert torch.equal(dl_utils.imsc(photo, quiet=True)[0], tr_utils.imsc(photo, quiet=True)[0])
    _, handle = dl_utils.imsc(image[:1])
    assert handle.get_interpolation() == "lanczos" and not plt.gca().axison
    plt.close("all")


# --- benchmark ----------------------------------------------------------------------------------


def test_get_example_data_is_the_offline_teaching_model_and_a_two_object_image():
    model, x, first, second = get_example_data()
    assert isinstance(model, dl.models.TeachingCNN) and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert x.shape == (1, 3, 64, 64) and not x.requires_grad
    assert {first, second} == {3, 4} and model(x).topk(2).indices[0].tolist() == [first, second]
    assert get_example_data(shape=448)[1].shape == (1, 3, 128, 128)
    assert get_example_data(shape=(224, 112))[1].shape == (1, 3, 64, 32)


def test_get_example_data_gives_other_architectures_from_torchvision(monkeypatch):
    import torchvision

    calls = []

    def untrained(name, **kwargs):
        calls.append(name)
        return dl.models.ImageNetModel(torchvision.models.get_model(name, weights=None), None, [], None)

    monkeypatch.setattr(dl.models, "torchvision_model", untrained)
    model, x, first, second = get_example_data("resnet18", shape=64)
    assert calls == ["resnet18"] and x.shape == (1, 3, 64, 64) and (first, second) == (281, 285)
    assert not model.training and all(not p.requires_grad for p in model.parameters())


def test_plot_example_draws_image_and_map_per_row_like_torchrays(tmp_path, cnn, images):
    maps = gradient(cnn, images, [1, 2])
    path = tmp_path / "figures" / "maps.png"
    assert plot_example(images, maps, "gradient", [4, 281], save_path=str(path)) is None
    titles = [axis.get_title() for axis in plt.gcf().axes]
    assert titles == [
        "input image",
        "gradient for category star (4)",
        "input image",
        "gradient for category tabby (281)",
    ]
    assert path.stat().st_size > 0
    plt.close("all")


# --- documented differences -----------------------------------------------------------------------


def test_guided_backprop_closes_the_gate_at_zero_where_torchray_lets_the_signal_through():
    x = torch.tensor([-1.0, 0.0, 2.0, 3.0], requires_grad=True)
    p = torch.tensor([4.0, 4.0, 4.0, -4.0])
    GuidedBackpropReLU.apply(x).backward(p)
    assert x.grad.tolist() == [0.0, 0.0, 4.0, 0.0]
    x.grad = None
    tr_guided.GuidedBackpropReLU.apply(x).backward(p)
    assert x.grad.tolist() == [0.0, 4.0, 4.0, 0.0]
    x.grad = None
    DeConvNetReLU.apply(x).backward(p)
    assert x.grad.tolist() == [4.0, 4.0, 4.0, 0.0]
    # On a model: a conv whose channel 1 is exactly 0 before its ReLU.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight[1].zero_()
        model[0].bias[1] = 0
        model[3].weight.abs_()
    image = torch.rand(1, 1, 2, 2)
    ours = guided_backprop(model, image.clone(), 0, saliency_layer="0", gradient_to_saliency=lambda t: t.grad)
    theirs = tr_guided.guided_backprop(
        model, image.clone(), 0, saliency_layer="0", gradient_to_saliency=lambda t: t.grad
    )
    assert ours[0, 1].eq(0).all() and theirs[0, 1].gt(0).all()
    assert torch.equal(ours[0, 0], theirs[0, 0])


def test_each_modules_mode_is_restored_where_torchray_sets_them_all_to_training(cnn, images):
    cnn.train()
    cnn[3].eval()  # e.g. a frozen block
    deconvnet(cnn, images, 1)
    assert cnn.training and not cnn[3].training
    importlib.import_module("torchray.attribution.deconvnet").deconvnet(cnn, images, 1)
    assert cnn[3].training


def test_every_relu_spelling_gets_the_rule_where_torchray_patches_two():
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)).abs() + 0.1
    grads = []
    for context in (
        DeConvNetContext,
        importlib.import_module("torchray.attribution.deconvnet").DeConvNetContext,
    ):
        leaf = x.clone().requires_grad_(True)
        with context():
            y = leaf.relu() + F.relu(leaf) + torch.relu(leaf)
        (-y.sum()).backward()  # a negative signal: DeConvNet's backward stops it at every ReLU
        grads.append(leaf.grad)
    assert grads[0].eq(0).all()
    assert grads[1].eq(-1).all()  # TorchRay's patch misses Tensor.relu, which keeps its gradient
