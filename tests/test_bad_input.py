"""Bad input: every public function refuses it with a documented exception that names the argument.

The contract (:mod:`deconvlab.checks`): ``TypeError`` for the wrong kind of value, ``ValueError``
for a wrong value or shape, ``IndexError`` for an index out of range; each message names the
parameter and says what to pass. Part one checks the cases the issue lists, message by message;
part two throws random junk at one argument of one public function at a time (hypothesis).
"""

from __future__ import annotations

import re
import warnings
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import deconvlab as dl
from deconvlab import data, metrics, models, sanity, viz, zeiler_fergus
from deconvlab.widgets import (
    ClassSensitivityExplorer,
    CNNExplorer,
    CustomRuleExplorer,
    InputExplorer,
    ProjectionExplorer,
    RandomisationExplorer,
    RuleExplorer,
)

CONTRACT = (TypeError, ValueError, IndexError)


@pytest.fixture(scope="module")
def teaching():
    return dl.models.teaching_model()


@pytest.fixture(scope="module")
def shapes():
    return dl.data.shapes(2, seed=1)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# part one: the cases of the issue, message by message
# --------------------------------------------------------------------------------------------


def test_rule_none_means_the_default_and_elsewhere_names_rule(teaching, shapes):
    x = shapes.images
    torch.testing.assert_close(dl.attribute(teaching, x, 0, rule=None), dl.attribute(teaching, x, 0))
    torch.testing.assert_close(
        dl.project(teaching, x, "features.3", 0, rule=None),
        dl.project(teaching, x, "features.3", 0, rule="deconvnet"),
    )
    for call in (lambda: dl.backward_rule(None), lambda: dl.get_rule(None)):
        with pytest.raises(
            TypeError,
            match=r"^rule must be a rule name or a deconvlab\.Rule, not NoneType; "
            r"known rules: gradient, deconvnet",
        ):
            call()
    with pytest.raises(TypeError, match=r"^rules\[1\]: rule must be a rule name"):
        dl.attribute(teaching, x, 0, rules=["gradient", None])
    with pytest.raises(TypeError, match=r"^rules must be a list of rule names or Rules, got int 3"):
        dl.attribute(teaching, x, 0, rules=3)


def test_target_none_says_what_a_target_is(teaching, shapes):
    with pytest.raises(
        TypeError, match=r"^target is None: give the class to explain.*target=model\(x\)\.argmax\(1\)"
    ):
        dl.attribute(teaching, shapes.images, None)


def test_target_as_a_class_name_shows_how_to_get_its_index(teaching, shapes):
    with pytest.raises(
        TypeError,
        match=r"^target is the string 'ring', but targets are class indices: give its "
        r"index, e\.g\. target=data\.classes\.index\('ring'\)",
    ):
        dl.attribute(teaching, shapes.images, "ring")
    with pytest.raises(TypeError, match=r"^target\[1\] is the string 'star'"):
        dl.attribute(teaching, shapes.images, [0, "star"])
    assert shapes.classes.index("ring") == 5  # the fix the message gives works
    dl.attribute(teaching, shapes.images, shapes.classes.index("ring"))


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (1.5, TypeError, r"^target must be a class index \(an integer\), got the float 1\.5"),
        (2.0, TypeError, r"did you mean 2\?"),
        (float("nan"), TypeError, r"^target must be a class index"),
        (True, TypeError, r"^target must be .* got a bool"),
        ([[1, 2]], TypeError, r"^target\[0\] is list \[1, 2\], not a class index"),
        ([1, [2]], TypeError, r"^target\[1\] is list \[2\], not a class index"),
        ([1, 2.5], TypeError, r"^target\[1\] is float 2\.5"),
        ([], ValueError, r"^target is an empty list"),
        ([1, 2, 3], ValueError, r"^target has 3 entries but the batch has 2 examples"),
        (6, IndexError, r"^target 6 is out of range for an output with 6 classes \(valid: 0\.\.5\)"),
        (-1, IndexError, r"^target -1 is out of range"),
        (2**70, IndexError, r"^target 1180591620717411303424 is out of range"),
        ([0, 2**64], IndexError, r"^target\[1\] = 18446744073709551616 is out of range"),
        (
            torch.zeros(2, 3),
            TypeError,
            r"^target of dtype torch\.float32 and shape \(2, 3\) is neither class indices",
        ),
        (torch.ones(2, 2, dtype=torch.long), ValueError, r"^target has shape \(2, 2\)"),
        (torch.full((2, 6), float("nan")), ValueError, r"^target is a seed tensor with NaN"),
        (torch.zeros(2, dtype=torch.complex64), TypeError, r"^target has dtype torch\.complex64"),
        (np.array(["ring"]), TypeError, r"^target is an array of shape \(1,\) and dtype <U4"),
        ({"class": 1}, TypeError, r"^target must be a class index \(int\), a list of them"),
        (object(), TypeError, r"^target must be a class index \(int\), a list of them"),
    ],
)
def test_bad_targets(teaching, shapes, target, error, message):
    with pytest.raises(error, match=message):
        dl.attribute(teaching, shapes.images, target)


def _segmentation() -> nn.Module:
    """(N, 3, H, W) in, (N, 4, H, W) out."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))


@pytest.mark.parametrize(
    ("target", "batch", "error", "message"),
    [
        (
            (1, 2),
            2,
            ValueError,
            r"^target \(1, 2\) is a tuple, which indexes one unit of an output with more "
            r"than two dimensions.*shape \(2, 6\): pass an int .* or a list \[1, 2\] for one class per example",
        ),
        ((), 2, ValueError, r"^target is an empty tuple"),
        ((1, "a"), 2, TypeError, r"^target\[1\] is the string 'a'"),
        ((1, 2.5), 2, TypeError, r"^target\[1\] is float 2\.5, not an integer"),
        ([(1,), 2], 2, TypeError, r"^target mixes ints and tuples"),
        ([(1,), (1, "b")], 2, TypeError, r"^target\[1\]\[1\] is the string 'b'"),
    ],
)
def test_bad_tuple_targets_on_a_class_output(teaching, shapes, target, batch, error, message):
    with pytest.raises(error, match=message):
        dl.attribute(teaching, shapes.images[:batch], target)


@pytest.mark.parametrize(
    ("target", "batch", "error", "message"),
    [
        (
            [1, 2, 3],
            3,
            ValueError,
            r"^target \[1, 2, 3\] is ambiguous for an output of shape \(3, 4, 8, 8\): "
            r"a list is one class per example .* a tuple \(1, 2, 3\) one unit .* torch\.tensor\(\[1, 2, 3\]\)",
        ),
        (
            [1, 2, 3],
            2,
            ValueError,
            r"^target has 3 entries but the batch has 2 examples; to index one unit of "
            r"the output \(shape \(2, 4, 8, 8\)\) pass a tuple",
        ),
        (
            (1, 2),
            2,
            ValueError,
            r"^target \(1, 2\) has 2 entries, but the model's output has shape "
            r"\(2, 4, 8, 8\): a tuple indexes one unit, with one entry per dimension after the batch \(3 here\)",
        ),
        ((1, 2, 3, 0), 2, ValueError, r"^target \(1, 2, 3, 0\) has 4 entries"),
        (
            (4, 0, 0),
            2,
            IndexError,
            r"^target \(4, 0, 0\) is out of range: entry 0 is 4, but dimension 1 of the "
            r"model's output \(2, 4, 8, 8\) has size 4 \(valid: 0\.\.3\)",
        ),
        ((0, -1, 0), 2, IndexError, r"^target \(0, -1, 0\) is out of range: entry 1 is -1"),
        ([(0, 0, 0)], 2, ValueError, r"^target has 1 entries but the batch has 2 examples; a list of tuples"),
        ([(0, 0, 0), (0, 8, 0)], 2, IndexError, r"^target\[1\] \(0, 8, 0\) is out of range"),
        ([(0, 0, 0), (0, 0)], 2, ValueError, r"^target\[1\] \(0, 0\) has 2 entries"),
    ],
)
def test_bad_targets_on_a_spatial_output(target, batch, error, message):
    x = torch.randn(batch, 3, 8, 8)
    with pytest.raises(error, match=message):
        dl.attribute(_segmentation(), x, target)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(target=1, targets=[1, 2]), TypeError, r"^give either target= .* or targets= .*, not both"),
        (dict(targets=[]), ValueError, r"^targets is empty"),
        (dict(targets="top0"), ValueError, r"^targets must be a list of targets or 'topK' such as 'top5'"),
        (dict(targets="best5"), ValueError, r"^targets must be a list of targets or 'topK'.* got 'best5'"),
        (dict(targets=3), TypeError, r"^targets must be a list of targets .* got int 3"),
        (dict(targets=[1, None]), TypeError, r"^targets\[1\]: target is None"),
        (dict(targets=[1, "ring"]), TypeError, r"^targets\[1\]: target is the string 'ring'"),
        (dict(targets=[1, 9]), IndexError, r"^targets\[1\]: target 9 is out of range for an output with 6"),
        (
            dict(targets=[1, [0, 1, 2]]),
            ValueError,
            r"^targets\[1\]: target has 3 entries but the batch has 2",
        ),
        (dict(targets=[(1, 2)]), ValueError, r"^targets\[0\]: target \(1, 2\) is a tuple"),
        (dict(targets="top7"), ValueError, r"^targets='top7' asks for 7 classes, but the model has 6"),
    ],
)
def test_bad_targets_lists(teaching, shapes, kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.attribute(teaching, shapes.images, **kwargs)


def test_top_k_needs_a_class_output():
    with pytest.raises(
        ValueError,
        match=r"^targets='top2' ranks the classes of an \(N, C\) output, but the "
        r"model's output has shape \(2, 4, 8, 8\); pass the targets as a list",
    ):
        dl.attribute(_segmentation(), torch.randn(2, 3, 8, 8), targets="top2")


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, u, v, scale=1.0):
        return torch.relu(self.a(u) + self.b(v)) * scale


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "message"),
    [
        (
            (torch.randn(5, 4), torch.randn(3, 2)),
            {},
            ValueError,
            r"^the inputs in x have different batch sizes \(x\[0\] has 5, x\[1\] has 3\); every input needs",
        ),
        (
            (torch.randn(5, 4), torch.ones(5, 2, dtype=torch.long)),
            {},
            TypeError,
            r"^x\[1\] has dtype torch\.int64; the signal is a derivative",
        ),
        (
            (torch.randn(5, 4), torch.randn(5)),
            {},
            ValueError,
            r"^x\[1\] has shape \(5,\); it needs a leading",
        ),
        ((torch.randn(5, 4), np.zeros((5, 2))), {}, TypeError, r"^x\[1\] must be a torch\.Tensor"),
        ((torch.randn(5, 4), torch.full((5, 2), float("nan"))), {}, ValueError, r"^x\[1\] has 10 NaN"),
        ((), {}, ValueError, r"^x is an empty tuple"),
        ([torch.randn(5, 4), torch.randn(5, 2)], {}, TypeError, r"^x is a list of tensors; .* x=tuple\(x\)"),
        (
            torch.randn(5, 4),
            {},
            TypeError,
            r"^the model's forward\(u, v, scale=1\.0\) cannot take 1 input \(x\) \(missing a required argument: "
            r"'v'\); for several inputs pass x=\(a, b\), for other arguments additional_forward_args",
        ),
        (
            (torch.randn(5, 4), torch.randn(5, 2)),
            {"additional_forward_args": (1.0, 2.0)},
            TypeError,
            r"^the model's forward\(u, v, scale=1\.0\) cannot take 2 inputs \(x\) and 2 additional_forward_args "
            r"\(too many positional arguments\)",
        ),
        (
            (torch.randn(5, 4), torch.randn(5, 3)),
            {},
            ValueError,
            r"^x holds shapes the model cannot take \(x\[0\]: \(5, 4\), x\[1\]: \(5, 3\)\): ",
        ),
        (
            (torch.randn(5, 4), torch.randn(5, 2, dtype=torch.float64)),
            {},
            TypeError,
            r"^x holds dtypes the model cannot take \(x\[0\]: torch\.float32, x\[1\]: torch\.float64\)",
        ),
    ],
)
def test_bad_inputs_of_a_model_with_several(x, kwargs, error, message):
    model = _TwoInputs()  # in training mode: left so
    with pytest.raises(error, match=message):
        dl.attribute(model, x, 1, **kwargs)
    assert _no_hooks(model) and model.training


def test_an_image_without_batch_dimension_is_refused_before_the_model_runs(teaching, shapes):
    ran = []
    handle = teaching.features[0].register_forward_hook(lambda *args: ran.append(1))
    try:
        expected = (
            r"^x has shape \(3, 64, 64\): one example without its batch dimension, but the model's first "
            r"layer 'features\.0' \(Conv2d\) takes batches \(N, C, H, W\); add the batch dimension: "
            r"x\[None\]"
        )
        with pytest.raises(ValueError, match=expected):
            dl.attribute(teaching, shapes.images[0], 0)
        with pytest.raises(ValueError, match=expected):
            dl.project(teaching, shapes.images[0], "features.3", 0)  # before: silently "worked"
        with pytest.raises(ValueError, match=expected):
            dl.record(teaching, shapes.images[0], 0)
    finally:
        handle.remove()
    assert ran == [] and _no_hooks(teaching)
    dl.attribute(teaching, shapes.images[0][None], 0)  # the fix works
    with pytest.raises(
        ValueError,
        match=r"^images has shape \(3, 64, 64\): one image without its batch "
        r"dimension; add it: images\[None\]",
    ):
        zeiler_fergus.channel_maxima(teaching, shapes.images[0], ["features.1"])


def test_an_input_the_model_cannot_take_is_named(teaching, shapes):
    with pytest.raises(
        ValueError, match=r"^x has shape \(2, 1, 64, 64\), which the model cannot take: .*3 channels"
    ):
        dl.attribute(teaching, shapes.images[:, :1], 0)
    with pytest.raises(
        TypeError,
        match=r"^x has dtype torch\.float64, which the model cannot take .*"
        r"convert it, e\.g\. x\.to\(torch\.float32\)",
    ):
        dl.attribute(teaching, shapes.images.double(), 0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(
        ValueError,
        match=r"^x has shape \(3, 2, 2\), which the model cannot take: mat1 and mat2 "
        r".*; if it is one example, add the batch dimension: x\[None\]",
    ):
        dl.attribute(mlp, torch.zeros(3, 2, 2), 0)
    with pytest.raises(
        TypeError, match=r"^x must be a torch\.Tensor, got an array .* torch\.from_numpy\(x\)"
    ):
        dl.attribute(teaching, shapes.images.numpy(), 0)
    assert _no_hooks(teaching) and _no_hooks(mlp)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"layer": 3},
            TypeError,
            r"^layer must be a module path such as 'features\.3' or a module of the model, got int 3",
        ),
        (
            {"layer": "features.99"},
            ValueError,
            r"^unknown layer 'features\.99'; the model's layers are: features, ",
        ),
        ({"layer": None}, TypeError, r"^layer is None: project needs the layer"),
        ({"channel": 1.0}, TypeError, r"^channel must be an integer, got float 1\.0 \(did you mean 1\?\)"),
        ({"channel": "1"}, TypeError, r"^channel must be an integer, got the string '1'"),
        ({"channel": 32}, IndexError, r"^channel 32 is out of range for a layer with 32 channels"),
        ({"position": 5}, TypeError, r"^position must be None, 'max' or a pair of ints \(i, j\), got int 5"),
        ({"position": (1.5, 2)}, TypeError, r"^position must be a pair of ints"),
        (
            {"position": (1,)},
            ValueError,
            r"^position \(1,\) has 1 entries, but the feature map has 2 dimensions",
        ),
        (
            {"position": (40, 0)},
            IndexError,
            r"^position \(40, 0\) is outside the feature map of size \(32, 32\)",
        ),
        ({"position": "min"}, ValueError, r"^position must be None, 'max' or \(i, j\)"),
    ],
)
def test_bad_layer_channel_position(teaching, shapes, kwargs, error, message):
    args = {"layer": "features.3", "channel": 0, **kwargs}
    with pytest.raises(error, match=message):
        dl.project(teaching, shapes.images, **args)


def test_a_position_on_a_layer_without_feature_map_is_refused(teaching, shapes):
    with pytest.raises(ValueError, match=r"^position \(0, 0\) needs a feature map"):
        dl.project(teaching, shapes.images, "classifier.2", 0, position=(0, 0))


def test_register_rule_names_what_is_wrong():
    with pytest.raises(TypeError, match=r"^name must be a string"):
        dl.register_rule(None, lambda x, p: p)
    with pytest.raises(ValueError, match=r"^name 'deconvnet' is a built-in rule"):
        dl.register_rule("deconvnet", lambda x, p: p)
    with pytest.raises(
        TypeError, match=r"^backward must take two arguments, backward\(x, p\); its signature is \(p\)"
    ):
        dl.register_rule("mine", lambda p: p)
    with pytest.raises(TypeError, match=r"^sign_only must be True or False"):
        dl.register_rule("mine", lambda x, p: p, sign_only="yes")
    with pytest.raises(TypeError, match=r"^equation must be a string"):
        dl.register_rule("mine", lambda x, p: p, equation=None)


def test_metrics_name_mismatched_shapes():
    with pytest.raises(ValueError, match=r"^a and b have different shapes \(2, 4, 4\) and \(2, 5, 5\)"):
        metrics.spearman(np.zeros((2, 4, 4)), np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match=r"^masks holds 3 masks but maps holds 2 maps"):
        metrics.mask_energy_fraction(torch.zeros(2, 3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(
        ValueError, match=r"^maps has shape \(1, 3, 4, 4\) but images has shape \(1, 3, 5, 5\)"
    ):
        metrics.image_correlation(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"^points holds 1 points but masks holds 2 masks"):
        metrics.pointing_hits(np.zeros((1, 2)), np.zeros((2, 4, 4)), 1.0)
    with pytest.raises(ValueError, match=r"^maps has shape \(4, 4\); expected \(C, H, W\) or \(N, C, H, W\)"):
        metrics.abs_normalise(np.zeros((4, 4)))
    with pytest.raises(TypeError, match=r"^maps must hold bools or integers or floats, got dtype <U1"):
        metrics.energy_concentration(np.array([["a"]]))


def test_widgets_name_bad_arguments(teaching, shapes):
    with pytest.raises(ValueError, match=r"^k must be an integer at least 1, got 0"):
        ProjectionExplorer(teaching, shapes.images, k=0)
    with pytest.raises(ValueError, match=r"^scale must be an integer between 1 and 16, got 0"):
        CNNExplorer(teaching, shapes.images, scale=0)
    with pytest.raises(
        ValueError, match=r"^images has shape \(3, 64, 64\): one image without its batch dimension"
    ):
        CNNExplorer(teaching, shapes.images[0])
    with pytest.raises(
        IndexError, match=r"^targets holds the class 9, out of range for a model with 6 classes"
    ):
        CNNExplorer(teaching, shapes.images, targets=[1, 9])
    with pytest.raises(ValueError, match=r"^x must be between -1 and 1 \(extent\), got 5"):
        RuleExplorer(x=5)
    with pytest.raises(
        ValueError, match=r"^images: x has shape \(2, 1, 64, 64\), which the model cannot take"
    ):
        InputExplorer(teaching, shapes.images[:, :1], 0)
    with pytest.raises(TypeError, match=r"^backward must take three arguments, backward\(x, p, t\)"):
        CustomRuleExplorer(teaching, shapes.images[:1], 0, lambda x, p: p)


def test_teaching_data_and_models_name_bad_arguments():
    with pytest.raises(TypeError, match=r"^n must be an integer, got float 2\.5"):
        data.shapes(2.5)
    with pytest.raises(ValueError, match=r"^n=1000000000 images of size 64 would take more than 2 GiB"):
        data.shapes(10**9)
    with pytest.raises(TypeError, match=r"^label must be a class name or index, got bool"):
        data.shapes(1, label=True)
    with pytest.raises(ValueError, match=r"^device 'gpu' is not a device"):
        models.teaching_model(device="gpu")
    with pytest.raises(TypeError, match=r"^pretrained must be True or False, got the string 'no'"):
        models.teaching_model(pretrained="no")


def test_record_is_exported_and_documented():
    assert "record" in dl.__all__ and dl.record is dl.attribution.record
    for function in (dl.attribute, dl.project, dl.register_rule, dl.get_rule):
        assert "Raises\n    ------" in function.__doc__


# --------------------------------------------------------------------------------------------
# part two: random junk, one argument of one public function at a time
# --------------------------------------------------------------------------------------------


def _tensor(shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.zeros(shape, dtype=dtype)
    return (torch.arange(int(np.prod(shape))) % 7 - 3).reshape(shape).to(dtype)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, -1, -7, 2**31, 2**63, 2**70, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0, 0.5, -0.0, 1e300, float("nan"), float("inf"), 1 + 2j]),
    st.text(max_size=6),
    st.sampled_from(["", "ring", "max", "cpu", "gpu", "features.1", "gradient", "x", "None", "DEFAULT"]),
    st.just([]),
    st.lists(st.integers(-3, 9), min_size=1, max_size=4),
    st.lists(
        st.one_of(st.none(), st.text(max_size=2), st.floats(), st.lists(st.integers(), max_size=2)),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([[[1, 2], [3]], [[1], [2]], (1, "a"), ((0, 0),)]),
    st.builds(
        _tensor,
        st.lists(st.integers(0, 4), max_size=5),
        st.sampled_from(
            [
                torch.float32,
                torch.float64,
                torch.int64,
                torch.uint8,
                torch.bool,
                torch.complex64,
                torch.float16,
            ]
        ),
    ),
    st.sampled_from(
        [
            np.array(["a", "b"]),
            np.zeros((2, 2)),
            np.array([1.5]),
            np.array(None),
            np.zeros((0, 3)),
            np.ones((1, 2, 3, 4), np.int32),
        ]
    ),
    st.sampled_from(
        [
            object(),
            {},
            {"a": 1},
            {1, 2},
            b"bytes",
            nn.Linear(2, 2),
            nn.ReLU(),
            max,
            lambda: None,
            lambda x, p: p,
            range(3),
            Ellipsis,
        ]
    ),
)


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 6),
    ).eval()


@cache
def fixtures() -> dict:
    """Tiny models and inputs, built once; every call below uses them."""
    model = _cnn()
    two = data.shapes(2, seed=3, objects=2, size=16)
    images = two.images
    maps = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maxima = zeiler_fergus.channel_maxima(model, images, ["1"])["1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sensitivity = sanity.class_sensitivity(model, images, two.labels, two.masks)
        cascade = sanity.cascading_randomisation(model, images, [0, 1], layers=["7", "3"])
    return {
        "model": model,
        "images": images,
        "labels": two.labels[:, 0],
        "masks": two.masks[:, 0],
        "maps": maps,
        "maxima": maxima,
        "sensitivity": sensitivity,
        "cascade": cascade,
    }


@cache
def _table() -> dict[str, tuple]:
    """name -> (function, base arguments, the arguments to throw junk at[, other documented errors])."""
    f = fixtures()
    m, x, y, masks, maps = f["model"], f["images"], f["labels"], f["masks"], f["maps"]
    grey = maps[:, 0]
    return {
        "attribute": (
            dl.attribute,
            dict(model=m, x=x, target=1, rule=None, layer=None),
            ["model", "x", "target", "rule", "layer"],
        ),
        "attribute(rules=)": (dl.attribute, dict(model=m, x=x, target=1, rules=["gradient"]), ["rules"]),
        "attribute(targets=)": (dl.attribute, dict(model=m, x=x, targets=[0, 1]), ["targets"]),
        "attribute(additional_forward_args=)": (
            dl.attribute,
            dict(model=m, x=x, target=1, additional_forward_args=None),
            ["additional_forward_args"],
        ),
        "record": (dl.record, dict(model=m, x=x, target=y, layer="3"), ["model", "x", "target", "layer"]),
        "project": (
            dl.project,
            dict(model=m, x=x, layer="3", channel=1, position="max", rule=None),
            ["model", "x", "layer", "channel", "position", "rule"],
        ),
        "project(rules=)": (
            dl.project,
            dict(model=m, x=x, layer="3", channel=1, rules=["deconvnet"], additional_forward_args=None),
            ["rules", "additional_forward_args"],
        ),
        "backward_rule": (dl.backward_rule, dict(rule="deconvnet"), ["rule"]),
        "get_rule": (dl.get_rule, dict(rule="guided"), ["rule"]),
        "register_rule": (
            dl.register_rule,
            dict(
                name="my_rule", backward=lambda x, p: p, sign_only=False, label="", equation="", reference=""
            ),
            ["name", "backward", "sign_only", "label", "equation", "reference"],
        ),
        # research features
        "RuleMap": (
            dl.RuleMap,
            dict(entries={"3*": "guided_backprop"}, default="gradient", name=None),
            ["entries", "default", "name"],
        ),
        "attribute(rule=RuleMap)": (
            dl.attribute,
            dict(model=m, x=x, target=1, rule={"4": "guided_backprop"}),
            ["rule"],
        ),
        "explain_rules": (
            dl.explain_rules,
            dict(model=m, x=x, mapping={"4": "guided_backprop"}),
            ["model", "x", "mapping"],
        ),
        "grad_cam": (
            dl.grad_cam,
            dict(model=m, x=x, target=1, layer="3", relu=True, upsample="bilinear"),
            ["model", "x", "target", "layer", "relu", "upsample"],
        ),
        "guided_grad_cam": (
            dl.guided_grad_cam,
            dict(model=m, x=x, target=1, layer="3", upsample="bilinear"),
            ["model", "x", "target", "layer", "upsample"],
        ),
        "smoothgrad": (
            dl.smoothgrad,
            dict(
                model=m,
                x=x,
                target=1,
                rule="gradient",
                layer=None,
                samples=2,
                noise_level=0.1,
                squared=False,
                generator=None,
                memory_budget=2**20,
                batch_size=None,
            ),
            [
                "model",
                "x",
                "target",
                "rule",
                "layer",
                "samples",
                "noise_level",
                "squared",
                "generator",
                "memory_budget",
                "batch_size",
            ],
        ),
        "smoothgrad(targets=)": (
            dl.smoothgrad,
            dict(model=m, x=x, targets=[0, 1], samples=2, additional_forward_args=None),
            ["targets", "additional_forward_args"],
        ),
        "relu_layers": (sanity.relu_layers, dict(model=m), ["model"]),
        "guided_from_layer": (sanity.guided_from_layer, dict(model=m, k=2, below=False), ["model", "k"]),
        "guided_from_layer_maps": (
            sanity.guided_from_layer_maps,
            dict(model=m, x=x, target=y, ks=None, below=False),
            ["model", "x", "target", "ks"],
        ),
        "recovery_by_depth": (
            sanity.recovery_by_depth,
            dict(model=m, images=x, targets=y, against="image", chunk=16),
            ["model", "images", "targets", "against", "chunk"],
        ),
        # metrics
        "abs_normalise": (metrics.abs_normalise, dict(maps=maps, percentile=99.0), ["maps", "percentile"]),
        "diverging_normalise": (
            metrics.diverging_normalise,
            dict(maps=maps, percentile=99.0),
            ["maps", "percentile"],
        ),
        "spearman": (metrics.spearman, dict(a=grey, b=grey), ["a", "b"]),
        "pearson": (metrics.pearson, dict(a=grey, b=grey), ["a", "b"]),
        "ssim": (metrics.ssim, dict(a=grey.abs().clamp(0, 1), b=grey.abs().clamp(0, 1)), ["a", "b"]),
        "relative_difference": (metrics.relative_difference, dict(a=maps, b=maps), ["a", "b"]),
        "changed_fraction": (
            metrics.changed_fraction,
            dict(a=maps, b=maps, tolerance=1e-3),
            ["a", "b", "tolerance"],
        ),
        "image_correlation": (metrics.image_correlation, dict(maps=maps, images=x), ["maps", "images"]),
        "edge_map": (metrics.edge_map, dict(images=x), ["images"]),
        "edge_correlation": (metrics.edge_correlation, dict(maps=maps, images=x), ["maps", "images"]),
        "pixel_energy": (metrics.pixel_energy, dict(maps=maps, size=(16, 16)), ["maps", "size"]),
        "mask_energy_fraction": (
            metrics.mask_energy_fraction,
            dict(maps=maps, masks=masks),
            ["maps", "masks"],
        ),
        "energy_concentration": (metrics.energy_concentration, dict(maps=maps, top=0.05), ["maps", "top"]),
        "saliency_points": (metrics.saliency_points, dict(maps=maps, smooth=0.02), ["maps", "smooth"]),
        "pointing_hits": (
            metrics.pointing_hits,
            dict(points=np.zeros((2, 2)), masks=masks, tolerance=3.0),
            ["points", "masks", "tolerance"],
        ),
        "relu_star": (metrics.relu_star, dict(rule="deconvnet", x=0.5, p=-1.0), ["rule", "x", "p"]),
        "rule_plane": (
            metrics.rule_plane,
            dict(rule="gradient", extent=1.0, resolution=5),
            ["rule", "extent", "resolution"],
        ),
        # Zeiler and Fergus
        "receptive_field": (zeiler_fergus.receptive_field, dict(model=m, layer="3"), ["model", "layer"]),
        "channel_maxima": (
            zeiler_fergus.channel_maxima,
            dict(model=m, images=x, layers=["1", "4"], batch_size=1),
            ["model", "images", "layers", "batch_size"],
        ),
        "ChannelMaxima.top": (f["maxima"].top, dict(channel=1, k=2), ["channel", "k"]),
        "top_class_share": (
            zeiler_fergus.top_class_share,
            dict(maxima=f["maxima"], labels=y, k=2),
            ["maxima", "labels", "k"],
        ),
        "project_top": (
            zeiler_fergus.project_top,
            dict(model=m, images=x, layer="1", channel=1, k=1, rules=["deconvnet"], maxima=None),
            ["model", "images", "layer", "channel", "k", "rules", "maxima"],
        ),
        # teaching material
        "shapes": (
            data.shapes,
            dict(n=1, seed=0, objects=1, size=16, clutter=1.0, label=None, offset=0),
            ["n", "seed", "objects", "size", "clutter", "label", "offset"],
        ),
        "shape_sample": (data.shape_sample, dict(name="star", seed=0, size=16), ["name", "seed", "size"]),
        "sample_image": (
            data.sample_image,
            dict(name="coffee", size=16, normalize=True),
            ["name", "size", "normalize"],
        ),
        "sample_images": (data.sample_images, dict(size=16, names=["coffee"]), ["size", "names"]),
        "denormalize": (data.denormalize, dict(x=x), ["x"]),
        "teaching_model": (
            models.teaching_model,
            dict(device=None, pretrained=False),
            ["device", "pretrained"],
        ),
        "torchvision_model": (
            models.torchvision_model,
            dict(name="squeezenet1_1", weights=None, download=False, device=None, timeout=1.0),
            ["name", "weights", "download", "device", "timeout"],
            (models.WeightsUnavailableError,),
        ),  # a valid weights name, not cached here
        # pictures
        "rule_label": (viz.rule_label, dict(key="guided"), ["key"]),
        "rule_heading": (viz.rule_heading, dict(key="guided"), ["key"]),
        "as_image": (viz.as_image, dict(x=x[0], imagenet=False), ["x", "imagenet"]),
        "signed_image": (viz.signed_image, dict(signal=maps[0], percentile=99.0), ["signal", "percentile"]),
        "saliency": (viz.saliency, dict(signal=maps[0]), ["signal"]),
        "heatmap": (viz.heatmap, dict(signal=maps[0], cmap="inferno"), ["signal", "cmap"]),
        "overlay": (
            viz.overlay,
            dict(image=x[0], signal=maps[0], alpha=0.6, cmap="inferno", imagenet=False),
            ["image", "signal", "alpha", "cmap", "imagenet"],
        ),
        "outline_mask": (
            viz.outline_mask,
            dict(image=x[0], mask=masks[0], color=(0.0, 1.0, 0.0), imagenet=False, mode="inner"),
            ["image", "mask", "color", "imagenet", "mode"],
        ),
        "png_bytes": (
            viz.png_bytes,
            dict(array=np.zeros((4, 4, 3)), scale=1, compress_level=1),
            ["array", "scale", "compress_level"],
        ),
        "figure_grid": (
            viz.figure_grid,
            dict(
                images=x[:1],
                maps={"gradient": maps[:1]},
                titles=None,
                kind="signed",
                imagenet=False,
                masks=None,
                size=1.0,
            ),
            ["images", "maps", "titles", "kind", "imagenet", "masks", "size"],
        ),
        # widgets
        "RuleExplorer": (
            RuleExplorer,
            dict(rules=["gradient"], extent=1.0, resolution=9, scale=2, x=0.1, p=0.2),
            ["rules", "extent", "resolution", "scale", "x", "p"],
        ),
        "InputExplorer": (
            InputExplorer,
            dict(model=m, images=x, target=1, rules=["gradient"], scale=1, imagenet=False),
            ["model", "images", "target", "rules", "scale", "imagenet"],
        ),
        "CNNExplorer": (
            CNNExplorer,
            dict(
                model=m,
                images=x,
                labels=y,
                masks=masks,
                classes=None,
                layers=["1"],
                targets=[0, 1],
                imagenet=False,
                scale=1,
            ),
            ["model", "images", "labels", "masks", "classes", "layers", "targets", "imagenet", "scale"],
        ),
        "ProjectionExplorer": (
            ProjectionExplorer,
            dict(model=m, images=x, layers=["1"], k=1, rules=["deconvnet"], scale=1, cache_size=2),
            ["model", "images", "layers", "k", "rules", "scale", "cache_size"],
        ),
        "CustomRuleExplorer": (
            CustomRuleExplorer,
            dict(
                model=m,
                x=x[:1],
                target=1,
                backward=lambda x, p, t: p * (x > t),
                parameter="t",
                bounds=(-1.0, 1.0, 0.5),
                value=0.0,
                name="custom",
                equation="",
                builtins=["gradient"],
                scale=1,
                imagenet=False,
            ),
            [
                "model",
                "x",
                "target",
                "backward",
                "parameter",
                "bounds",
                "value",
                "name",
                "equation",
                "builtins",
                "scale",
                "imagenet",
            ],
        ),
        "ClassSensitivityExplorer": (
            ClassSensitivityExplorer,
            dict(result=f["sensitivity"], classes=None, scale=1),
            ["result", "classes", "scale"],
        ),
        "RandomisationExplorer": (
            RandomisationExplorer,
            dict(result=f["cascade"], stage_labels=None, scale=1),
            ["result", "stage_labels", "scale"],
        ),
    }


def _all_cases() -> list[tuple[str, str]]:
    return [(name, argument) for name, (_, _, arguments, *_) in _table().items() for argument in arguments]


def _names(argument: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])")


def pytest_generate_tests(metafunc):  # pragma: no cover - collection hook for this module only
    if "case" in metafunc.fixturenames:
        cases = _all_cases()
        metafunc.parametrize("case", cases, ids=[f"{name}-{argument}" for name, argument in cases])


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(junk=JUNK)
def test_junk_raises_only_documented_errors_naming_the_argument(case, junk):
    name, argument = case
    function, base, _, *documented = _table()[name]
    other = documented[0] if documented else ()
    model = fixtures()["model"]
    kwargs = {**base, argument: junk}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            function(**kwargs)
        except other:
            pass
        except CONTRACT as error:
            message = str(error)
            assert _names(argument).search(message), (
                f"{name}({argument}={junk!r:.80}) raised {type(error).__name__} without naming {argument!r}: "
                f"{message}"
            )
        except Exception as error:  # anything else breaks the contract
            raise AssertionError(
                f"{name}({argument}={junk!r:.80}) raised {type(error).__name__}, not TypeError, ValueError or "
                f"IndexError: {error}"
            ) from error
    assert _no_hooks(model) and not model.training


def test_what_the_property_test_found_in_the_research_features_stays_named():
    """Each case the junk test once found raising an unnamed or internal error (kept deterministic)."""
    f = fixtures()
    m, x, y = f["model"], f["images"], f["labels"]
    cases = [
        (lambda: dl.RuleMap(torch.tensor(1.0)), TypeError, "entries"),
        (lambda: dl.RuleMap([(np.zeros(2), "guided")]), TypeError, "entries"),
        (lambda: sanity.guided_from_layer_maps(m, x, y, ks=torch.tensor(2)), TypeError, "ks"),
        (lambda: sanity.guided_from_layer_maps(m, x, y, ks=[0]), ValueError, r"ks\[0\]"),
        (lambda: sanity.guided_from_layer_maps(m, x, y, ks=[]), ValueError, "ks is empty"),
        (lambda: sanity.recovery_by_depth(None, x, y), TypeError, "model"),
        (lambda: sanity.recovery_by_depth(nn.ReLU(), x, y), ValueError, "model is a single nn.ReLU"),
        (lambda: sanity.recovery_by_depth(m, x[:0], y), ValueError, "images is empty"),
        (lambda: sanity.recovery_by_depth(m, x, "ring"), TypeError, "targets"),
        (lambda: sanity.recovery_by_depth(m, x, [0, 1, 2]), ValueError, "targets"),
        (lambda: sanity.recovery_by_depth(m, x.long(), y), TypeError, "images"),
        (lambda: sanity.recovery_by_depth(m, x, y, chunk=0), ValueError, "chunk"),
        (lambda: dl.smoothgrad(m, torch.zeros(1, 0), 1), ValueError, r"\bx\b"),
    ]
    for call, error, named in cases:
        with pytest.raises(error, match=named):
            call()
