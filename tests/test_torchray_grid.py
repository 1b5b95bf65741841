"""deconvlab.torchray against TorchRay 1.0.0.2 itself, over the argument grid of ``saliency``.

TorchRay (CC BY-NC 4.0) is installed beside the project's torch with
``pip install --no-deps torchray`` and only run here, never copied. A missing TorchRay
fails these tests (the import below); it never skips them.

Both libraries get the same offline model and input: TorchRay's own ``get_example_data``
downloads a VGG16, so the teaching model (deconvlab's stand-in for it) and a small
residual net whose one ReLU module runs three times per forward pass are used instead.

The grid: every (model, layer) x method x target row (7 x 3 x 7 = 147), each with a
resize / resize_mode / smooth / gradient_to_saliency / get_backward_gradient / debug
setting chosen so that every pair of values of any two arguments occurs in some row.
Each row compares the map, the caller's input afterwards (``requires_grad``, ``.grad``)
and, with ``debug=True``, every probe's data and gradients. Run this file as a script
to print how many rows agree bit for bit, to float rounding, or differ as documented.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
import torchray  # noqa: F401  (a missing TorchRay must fail, not skip)
import torchray.attribution.common as tr_common
import torchray.attribution.deconvnet as tr_deconvnet
import torchray.attribution.gradient as tr_gradient
import torchray.attribution.guided_backprop as tr_guided
import torchray.utils as tr_utils
from torch import nn

import deconvlab.torchray.attribution.common as dl_common
import deconvlab.torchray.attribution.deconvnet as dl_deconvnet
import deconvlab.torchray.attribution.gradient as dl_gradient
import deconvlab.torchray.attribution.guided_backprop as dl_guided
from deconvlab.data import shapes
from deconvlab.torchray.benchmark import get_example_data

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchray.*")

#: ``torch.testing.assert_close``'s float32 tolerance, for what is not equal bit for bit.
RTOL, ATOL = 1.3e-6, 1e-5

METHODS = {
    "gradient": (dl_gradient.gradient, tr_gradient.gradient),
    "deconvnet": (dl_deconvnet.deconvnet, tr_deconvnet.deconvnet),
    "guided_backprop": (dl_guided.guided_backprop, tr_guided.guided_backprop),
}
#: The modes of F.interpolate that current PyTorch takes for 4-D tensors ("linear" and
#: "trilinear" are for 3-D and 5-D ones). TorchRay always passes align_corners=False, which
#: PyTorch refuses for the last three.
RESIZE_MODES = ["bilinear", "bicubic", "nearest", "nearest-exact", "area"]
REFUSED_BY_TORCHRAY = {"nearest", "nearest-exact", "area"}


class TinyResNet(nn.Module):
    """A residual net whose one ``ReLU(inplace=True)`` module runs three times per forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6))

    def forward(self, x):
        x = self.relu(self.stem(x))
        out = self.conv2(self.relu(self.conv1(x))) + x
        return self.head(self.relu(out))


def _models():
    teaching, x, first, second = get_example_data()
    other = shapes(1, seed=24, objects=2).images
    resnet = TinyResNet().eval().requires_grad_(False)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    return {
        "teaching": (teaching, torch.cat([x, other]), first, second),
        "resnet": (resnet, noise, 4, 1),
    }


MODELS = _models()

#: (model, saliency_layer): the input; a name and a module of layers that run once (a
#: max-pool; a conv followed by ReLU(inplace=True), as VGG16's features.28; that ReLU);
#: a ReLU module that runs three times, by name; a conv whose output is added to a skip path.
LAYERS = [
    ("teaching", ""),
    ("teaching", "features.10"),
    ("teaching", "module:features.10"),
    ("teaching", "features.11"),
    ("teaching", "module:features.12"),
    ("resnet", "relu"),
    ("resnet", "module:conv2"),
]
#: (kind, batch size)
TARGETS = [("int", 1), ("int", 2), ("list", 2), ("tensor", 2), ("0-d", 1), ("0-d", 2), ("seed", 2)]
RESIZES = [(False, "bilinear")] + [(size, mode) for size in (True, (20, 12)) for mode in RESIZE_MODES]
SMOOTHS = [0, 0.05]
TO_SALIENCY = ["default", "grad x activation"]
SEEDS = ["default", "custom"]
DEBUG = [False, True]


def _covering_rows():
    """The full product of layer x method x target, each row completed greedily with the
    setting of the other arguments that covers the most pairs of values not yet covered."""
    rest = list(itertools.product(range(len(RESIZES)), SMOOTHS, TO_SALIENCY, SEEDS, DEBUG))
    covered = set()
    rows = []
    for layer, method, target in itertools.product(range(len(LAYERS)), METHODS, range(len(TARGETS))):

        def pairs(extra, head=(layer, method, target)):
            values = list(enumerate((*head, *extra)))
            return set(itertools.combinations(values, 2))

        best = max(rest, key=lambda extra: len(pairs(extra) - covered))
        covered |= pairs(best)
        rows.append((layer, method, target, *best))
    return rows, covered


ROWS, COVERED = _covering_rows()


def _row_id(row):
    layer, method, target, resize, smooth, to_saliency, seed, debug = row
    model, name = LAYERS[layer]
    size, mode = RESIZES[resize]
    kind, batch = TARGETS[target]
    return (
        f"{model}[{name or 'input'}]-{method}-{kind}x{batch}-resize={size}/{mode}-smooth={smooth}"
        f"-{to_saliency.replace(' ', '')}-seed={seed}-debug={debug}"
    )


def _arguments(row, common):
    """The call's arguments, as TorchRay user code would write them with ``common``'s functions."""
    layer, _, target, resize, smooth, to_saliency, seed, debug = row
    model_name, name = LAYERS[layer]
    model, images, first, second = MODELS[model_name]
    kind, batch = TARGETS[target]
    x = images[:batch].clone()
    classes = [first, second][:batch]
    y = {
        "int": first,
        "list": classes,
        "tensor": torch.tensor(classes),
        "0-d": torch.tensor(first),
        "seed": torch.rand(batch, 6, generator=torch.Generator().manual_seed(5)),
    }[kind]
    saliency_layer = dict(model.named_modules())[name[7:]] if name.startswith("module:") else name
    size, mode = RESIZES[resize]
    kwargs = dict(saliency_layer=saliency_layer, resize=size, resize_mode=mode, smooth=smooth, debug=debug)
    if to_saliency == "grad x activation":
        kwargs["gradient_to_saliency"] = lambda t: (t.grad * t).sum(1, keepdim=True)
    if seed == "custom":

        def weighted(pred_y, y):
            return common.get_backward_gradient(pred_y, y) * (1 + pred_y.detach().softmax(1))

        kwargs["get_backward_gradient"] = weighted
    return model, x, y, kwargs


def _run(library, row, **override):
    """``(map, probes, x)`` after one call of ``library``'s method; TorchRay's probes are detached
    afterwards (TorchRay leaves them on the model, with its in-place ReLUs switched off)."""
    common = dl_common if library == "deconvlab" else tr_common
    model, x, y, kwargs = _arguments(row, common)
    kwargs.update(override)
    method = METHODS[row[1]][0 if library == "deconvlab" else 1]
    result = method(model, x, y, **kwargs)
    saliency, probes = result if kwargs["debug"] else (result, None)
    if library == "torchray" and probes is not None:
        for probe in probes.values():
            probe.remove()
    return saliency.detach(), probes, x


def _agreement(a, b):
    """ "bitwise", "rounding" (within RTOL/ATOL) or None, for tensors or None."""
    if a is None or b is None:
        return "bitwise" if a is None and b is None else None
    a, b = a.detach(), b.detach()
    if a.shape != b.shape or a.dtype != b.dtype:
        return None
    if torch.equal(a, b):
        return "bitwise"
    return "rounding" if torch.allclose(a, b, rtol=RTOL, atol=ATOL) else None


def _worst(*verdicts):
    if None in verdicts:
        return None
    return "rounding" if "rounding" in verdicts else "bitwise"


def _overwritten(row):
    """TorchRay's gradient fails at a layer whose output a ReLU(inplace=True) overwrites, unless
    debug probes (which switch in-place ReLUs off) are on."""
    return row[1] == "gradient" and LAYERS[row[0]][1] == "features.11" and not row[7]


def _compare(row):
    """The row's verdict: ``(agreement, reason)``; reason names a documented difference."""
    ours, our_probes, our_x = _run("deconvlab", row)
    size, mode = RESIZES[row[3]]
    try:
        theirs, their_probes, their_x = _run("torchray", row)
    except (ValueError, RuntimeError) as error:
        # A failed TorchRay call leaves its probe on the model until its frames go: drop them.
        refusal = error.with_traceback(None)
    else:
        refusal = None
    if refusal is not None:  # documented differences: compare with what TorchRay would give
        override, reasons = {}, []
        if _overwritten(row):  # its probe made the conv's output a leaf; the ReLU writes it
            assert isinstance(refusal, RuntimeError) and "leaf Variable that requires grad" in str(refusal)
            override["debug"] = True  # TorchRay switches in-place ReLUs off while debug probes are on
            reasons.append("TorchRay fails at a layer an in-place ReLU overwrites")
        if size is not False and mode in REFUSED_BY_TORCHRAY:
            assert reasons or "align_corners" in str(refusal)
            override.update(resize=False, smooth=0)
            reasons.append(f"TorchRay refuses resize_mode={mode!r}")
        assert reasons, f"TorchRay failed: {refusal}"
        theirs, _, _ = _run("torchray", row, **override)
        if "resize" in override:
            out = tuple(our_x.shape[2:]) if size is True else size[::-1]
            theirs = F.interpolate(theirs, out, mode=mode)
            if row[4] > 0:
                theirs = tr_utils.imsmooth(theirs, sigma=row[4] * max(out), padding_mode="replicate")
        return _agreement(ours, theirs), "; ".join(reasons)
    verdicts = [_agreement(ours, theirs), _agreement(our_x.grad, their_x.grad)]
    assert our_x.requires_grad == their_x.requires_grad
    if row[7]:
        assert list(our_probes) == list(their_probes)
        for name, probe in our_probes.items():
            other = their_probes[name]
            assert len(probe.data) == len(other.data), name
            for a, b in zip(probe.data, other.data):
                verdicts += [_agreement(a, b), _agreement(a.grad, b.grad)]
    return _worst(*verdicts), None


def test_the_grid_covers_every_pair_of_argument_values():
    sizes = [
        len(LAYERS),
        len(METHODS),
        len(TARGETS),
        len(RESIZES),
        len(SMOOTHS),
        len(TO_SALIENCY),
        len(SEEDS),
        len(DEBUG),
    ]
    expected = sum(a * b for a, b in itertools.combinations(sizes, 2))
    assert len(COVERED) == expected and len(ROWS) == 147


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(row) for row in ROWS])
def test_deconvlab_agrees_with_torchray(row):
    agreement, reason = _compare(row)
    assert agreement is not None, reason or "deconvlab differs from TorchRay"


if __name__ == "__main__":  # the counts the README and the report quote
    tally = Counter(_compare(row) for row in ROWS)
    for (agreement, reason), count in sorted(tally.items(), key=str):
        print(f"{count:4d}  {agreement:9s} {reason or 'same call in both'}")
    print(f"{len(ROWS):4d}  rows")
