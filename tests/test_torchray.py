"""The TorchRay-compatible layer: TorchRay's examples run with only their imports changed."""

import inspect

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

import deconvlab as dl
from deconvlab.torchray.attribution.common import (
    get_backward_gradient,
    gradient_to_saliency,
    saliency,
)
from deconvlab.torchray.attribution.deconvnet import DeConvNetContext, DeConvNetReLU, deconvnet
from deconvlab.torchray.attribution.gradient import gradient
from deconvlab.torchray.attribution.guided_backprop import (
    GuidedBackpropContext,
    GuidedBackpropReLU,
    guided_backprop,
)

# TorchRay's examples/deconvnet.py and examples/deconvnet_manual.py, verbatim.
DECONVNET_PY = """\
from torchray.attribution.deconvnet import deconvnet
from torchray.benchmark import get_example_data, plot_example

# Obtain example data.
model, x, category_id, _ = get_example_data()

# DeConvNet method.
saliency = deconvnet(model, x, category_id)

# Plots.
plot_example(x, saliency, 'deconvnet', category_id)
"""

DECONVNET_MANUAL_PY = """\
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
"""


def _with_deconvlab_imports(source):
    """The one-word change: ``torchray`` becomes ``deconvlab.torchray`` in the imports."""
    return source.replace("from torchray.", "from deconvlab.torchray.")


@pytest.mark.parametrize("source", [DECONVNET_PY, DECONVNET_MANUAL_PY], ids=["deconvnet.py", "deconvnet_manual.py"])
def test_torchray_examples_run_with_only_the_imports_changed(source):
    changed = _with_deconvlab_imports(source)
    assert [a for a, b in zip(source.splitlines(), changed.splitlines()) if a != b] == [
        line for line in source.splitlines() if line.startswith("from torchray")
    ]
    namespace = {}
    exec(compile(changed, "example.py", "exec"), namespace)
    saliency, x = namespace["saliency"], namespace["x"]
    assert saliency.shape == (1, 1, *x.shape[2:]) and saliency.min() >= 0 and saliency.max() > 0
    plt.close("all")


def test_both_examples_compute_the_same_map():
    results = []
    for source in (DECONVNET_PY, DECONVNET_MANUAL_PY):
        namespace = {}
        exec(_with_deconvlab_imports(source), namespace)
        results.append(namespace["saliency"])
    torch.testing.assert_close(results[0], results[1])
    plt.close("all")


@pytest.mark.parametrize("name", ["saliency", "gradient", "deconvnet", "guided_backprop"])
def test_signatures_match_torchray(name):
    expected = ["model", "input", "target", "saliency_layer", "resize", "resize_mode", "smooth",
                "context_builder", "gradient_to_saliency", "get_backward_gradient", "debug"]
    parameters = inspect.signature(saliency).parameters
    assert list(parameters) == expected
    assert parameters["saliency_layer"].default == "" and parameters["resize"].default is False
    assert parameters["resize_mode"].default == "bilinear" and parameters["smooth"].default == 0
    assert parameters["debug"].default is False
    method = {"saliency": saliency, "gradient": gradient, "deconvnet": deconvnet,
              "guided_backprop": guided_backprop}[name]
    assert "context_builder" in inspect.signature(method).parameters


def test_default_output_is_the_channel_max_of_the_absolute_signal(cnn, images):
    signal = dl.attribute(cnn, images, 2, rule="deconvnet")
    torch.testing.assert_close(deconvnet(cnn, images, 2), signal.abs().amax(dim=1, keepdim=True))
    torch.testing.assert_close(guided_backprop(cnn, images, 2),
                               dl.attribute(cnn, images, 2).abs().amax(dim=1, keepdim=True))
    torch.testing.assert_close(gradient(cnn, images, 2),
                               dl.attribute(cnn, images, 2, rule="gradient").abs().amax(dim=1, keepdim=True))


def test_saliency_layer_resize_and_smooth(cnn, images):
    at_layer = deconvnet(cnn, images, 1, saliency_layer="3")
    expected = dl.attribute(cnn, images, 1, rule="deconvnet", layer="3").abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(at_layer, expected)
    assert deconvnet(cnn, images, 1, saliency_layer=cnn[3], resize=True).shape == (2, 1, 16, 16)
    assert deconvnet(cnn, images, 1, saliency_layer="3", resize=(12, 6)).shape == (2, 1, 6, 12)
    nearest = deconvnet(cnn, images, 1, saliency_layer="3", resize=True, resize_mode="nearest")
    torch.testing.assert_close(nearest, F.interpolate(at_layer, (16, 16), mode="nearest"))
    sharp = gradient(cnn, images, 1)
    smooth = gradient(cnn, images, 1, smooth=0.05)
    assert smooth.shape == sharp.shape and smooth.std() < sharp.std()
    torch.testing.assert_close(smooth.sum(), sharp.sum(), rtol=0.05, atol=0)  # mass roughly kept


def test_custom_callbacks_and_debug_probes(cnn, images):
    seed = torch.zeros(2, 5, dtype=torch.float64)
    seed[:, 4] = 1
    used = []

    def my_backward_gradient(output, target):
        used.append(target)
        return seed

    signed = saliency(cnn, images, "ignored", get_backward_gradient=my_backward_gradient,
                         gradient_to_saliency=lambda x: x.grad, context_builder=GuidedBackpropContext)
    assert used == ["ignored"]
    torch.testing.assert_close(signed, dl.attribute(cnn, images, 4))
    _, probes = deconvnet(cnn, images, 4, debug=True)
    assert set(probes) == {name for name, _ in cnn.named_modules()}
    torch.testing.assert_close(probes["3"].data[0], cnn[:4](images))


def test_get_backward_gradient_and_gradient_to_saliency():
    output = torch.zeros(2, 4, 3, 3)
    seed = get_backward_gradient(output, [1, 2])
    assert seed[0, 1].eq(1).all() and seed[1, 2].eq(1).all() and seed.sum() == 18
    x = torch.zeros(1, 3, 2, 2)
    x.grad = torch.tensor([[[[1.0, -5]], [[-2, 3]], [[0, 0]]]]).expand(1, 3, 2, 2).clone()
    assert gradient_to_saliency(x).tolist() == [[[[2.0, 5.0], [2.0, 5.0]]]]
    with pytest.raises(ValueError, match=r"\.grad"):
        gradient_to_saliency(torch.zeros(1, 3, 2, 2))


def test_relu_functions_follow_the_equations_including_at_zero():
    x = torch.tensor([-1.0, 0.0, 2.0, 3.0], requires_grad=True)
    p = torch.tensor([4.0, 4.0, 4.0, -4.0])
    DeConvNetReLU.apply(x).backward(p)
    assert x.grad.tolist() == [4.0, 4.0, 4.0, 0.0]
    x.grad = None
    GuidedBackpropReLU.apply(x).backward(p)
    assert x.grad.tolist() == [0.0, 0.0, 4.0, 0.0]  # closed at x == 0, unlike TorchRay's
    assert issubclass(DeConvNetReLU, torch.autograd.Function)
    assert issubclass(GuidedBackpropReLU, torch.autograd.Function)


def test_contexts_equal_the_named_rules(cnn, images):
    for context, rule in ((DeConvNetContext, "deconvnet"), (GuidedBackpropContext, "guided_backprop")):
        x = images.clone().requires_grad_(True)
        with context():
            cnn(x * 1)[:, 1].sum().backward()
        torch.testing.assert_close(x.grad, dl.attribute(cnn, images, 1, rule=rule))


def test_saliency_leaves_the_callers_tensor_and_parameters_alone(cnn, images):
    x = images.clone().requires_grad_(True)
    x.grad = torch.full_like(x, 7.0)
    guided_backprop(cnn, x, 1)
    assert x.grad.eq(7).all() and all(p.grad is None for p in cnn.parameters())
