"""Several inputs, extra forward arguments, Captum's target conventions, many targets from one pass.

Checked against Captum (Saliency, Deconvolution, GuidedBackprop) on small sequential models
written here (Captum hooks ``nn.ReLU`` modules and is wrong on skip paths, which these avoid),
and against plain autograd for the gradient.
"""

import warnings

import captum.attr as captum_attr
import pytest
import torch
from torch import nn

import deconvlab as dl

RULES = ["gradient", "deconvnet", "guided_backprop"]
EXACT = {"rtol": 1e-10, "atol": 1e-12}  # float64 everywhere


class TwoInputs(nn.Module):
    """An image branch and a vector branch, joined before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.vector = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(4 * 4 * 4 + 8, 16), nn.ReLU(), nn.Linear(16, 6))

    def forward(self, image, vector):
        return self.head(torch.cat([self.image(image), self.vector(vector)], dim=1))


class ExtraArguments(nn.Module):
    """A CNN whose forward takes a float, a tensor mask and a flag after its input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 12), nn.ReLU(), nn.Linear(12, 5))

    def forward(self, x, scale, mask, negate):
        out = self.classifier(self.features(x) * mask) * scale
        return -out if negate else out


def segmentation() -> nn.Sequential:
    """(N, 3, H, W) in, (N, 4, H, W) out: a class score per pixel."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1)
    ).double()


def inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(batch, 3, 8, 8, generator=generator, dtype=torch.float64)
    return image, torch.randn(batch, 5, generator=generator, dtype=torch.float64)


def captum(rule, model, x, target, extra=None):
    """Captum's map of ``rule``, warnings (inputs without requires_grad) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rule == "gradient":
            return captum_attr.Saliency(model).attribute(
                x, target=target, abs=False, additional_forward_args=extra
            )
        method = {"deconvnet": captum_attr.Deconvolution, "guided_backprop": captum_attr.GuidedBackprop}[rule]
        return method(model).attribute(x, target=target, additional_forward_args=extra)


def plain_gradient(model, x, seed, extra=()):
    """The reference: plain autograd from ``seed`` (shaped like the output) to every input."""
    leaves = tuple(item.detach().clone().requires_grad_(True) for item in x)
    output = model(*leaves, *extra)
    return torch.autograd.grad(output, leaves, seed(output))


def one_hot(classes):
    """A seed builder: one class per example (an int for all, or a list)."""

    def seed(output):
        index = torch.as_tensor(classes).expand(len(output))
        return torch.zeros_like(output).scatter_(1, index[:, None], 1.0)

    return seed


# --------------------------------------------------------------------------------------------
# several inputs and extra arguments
# --------------------------------------------------------------------------------------------

TARGETS_2D = [2, torch.tensor(2), [0, 5, 3], torch.tensor([1, 2, 4])]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("target", TARGETS_2D, ids=["int", "0-d", "list", "1-d"])
def test_a_tuple_of_inputs_gives_one_map_per_input_as_captum(rule, target):
    model, x = TwoInputs().double().eval(), inputs()
    maps = dl.attribute(model, x, target, rule=rule)
    assert isinstance(maps, tuple) and [m.shape for m in maps] == [i.shape for i in x]
    for ours, theirs in zip(maps, captum(rule, model, x, target)):
        torch.testing.assert_close(ours, theirs, **EXACT)


def test_the_gradient_of_several_inputs_is_plain_autograd():
    model, x = TwoInputs().double().eval(), inputs()
    for ours, reference in zip(
        dl.attribute(model, x, [0, 5, 3], rule="gradient"), plain_gradient(model, x, one_hot([0, 5, 3]))
    ):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_a_one_tuple_gives_a_one_tuple():
    model = ExtraArguments().double().eval()
    x = inputs()[0]
    extra = (1.0, torch.ones(1, 4, 8, 8, dtype=torch.float64), False)
    (single,) = dl.attribute(model, (x,), 1, additional_forward_args=extra)
    torch.testing.assert_close(single, dl.attribute(model, x, 1, additional_forward_args=extra), **EXACT)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("target", [3, [0, 4, 2]], ids=["int", "list"])
def test_additional_forward_args_as_captum(rule, target):
    model, x = ExtraArguments().double().eval(), inputs()[0]
    mask = (torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.3).double()
    extra = (2.5, mask, True)
    ours = dl.attribute(model, x, target, rule=rule, additional_forward_args=extra)
    torch.testing.assert_close(ours, captum(rule, model, x, target, extra), **EXACT)
    if rule == "gradient":
        (reference,) = plain_gradient(model, (x,), one_hot(target), extra)
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_one_extra_argument_need_not_be_a_tuple():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), nn.ReLU(), nn.Linear(4, 3))

        def forward(self, x, scale):
            return self.net(x) * scale

    model, x = Scaled().double(), inputs()[0]
    once = dl.attribute(model, x, 1, additional_forward_args=3.0)
    torch.testing.assert_close(once, dl.attribute(model, x, 1, additional_forward_args=(3.0,)), **EXACT)
    torch.testing.assert_close(once, 3 * dl.attribute(model, x, 1, additional_forward_args=1.0), **EXACT)


def test_extra_arguments_and_inputs_are_left_untouched_and_not_differentiated():
    model = ExtraArguments().double().eval()
    x = inputs()[0]
    mask = torch.ones(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    before = x.clone()
    dl.attribute(model, x, 1, additional_forward_args=(1.0, mask, False))
    assert mask.grad is None and x.grad is None and torch.equal(x, before) and not x.requires_grad


def test_an_input_that_does_not_reach_the_output_gets_a_zero_map():
    class FirstOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), nn.ReLU(), nn.Linear(4, 3))

        def forward(self, x, unused):
            return self.net(x)

    model, (x, other) = FirstOnly().double(), inputs()
    used, unused = dl.attribute(model, (x, other), 1)
    torch.testing.assert_close(used, dl.attribute(model, x, 1, additional_forward_args=(other,)), **EXACT)
    assert torch.equal(unused, torch.zeros_like(other))
    many = dl.attribute(model, (x, other), targets=[0, 1])
    assert torch.equal(many[1], torch.zeros(2, *other.shape, dtype=other.dtype))


def test_a_layer_signal_of_several_inputs_is_one_tensor():
    model, x = TwoInputs().double().eval(), inputs()
    signal = dl.attribute(model, x, 1, layer="head.0")
    assert isinstance(signal, torch.Tensor) and signal.shape == (3, 16)


def test_rules_with_several_inputs_give_a_dict_of_tuples():
    model, x = TwoInputs().double().eval(), inputs()
    maps = dl.attribute(model, x, 1, rules=RULES)
    for rule in RULES:
        for ours, alone in zip(maps[rule], dl.attribute(model, x, 1, rule=rule)):
            torch.testing.assert_close(ours, alone, rtol=0, atol=0)


def test_project_takes_additional_forward_args():
    model, x = ExtraArguments().double().eval(), inputs()[0]
    mask = torch.ones(1, 4, 8, 8, dtype=torch.float64)
    projected = dl.project(model, x, "features.1", 2, "max", additional_forward_args=(1.0, mask, False))
    plain = dl.project(model.features, x, "1", 2, "max")
    torch.testing.assert_close(projected, plain, **EXACT)


# --------------------------------------------------------------------------------------------
# Captum's target conventions on an output with more than two dimensions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "target",
    [(1, 2, 3), (3, 0, 7), [(0, 1, 1), (3, 7, 0), (2, 4, 5)]],
    ids=["tuple", "edge", "list of tuples"],
)
def test_tuple_targets_index_one_unit_as_captum(rule, target):
    model, x = segmentation(), inputs()[0]
    torch.testing.assert_close(
        dl.attribute(model, x, target, rule=rule), captum(rule, model, x, target), **EXACT
    )


def test_a_tuple_target_with_a_batch_of_three_is_one_unit_not_three_classes():
    """Regression: (c, i, j) with a batch of 3 was read as one class per example."""
    model, x = segmentation(), inputs(3)[0]
    ours = dl.attribute(model, x, (1, 2, 3), rule="gradient")

    def seed(output):
        chosen = torch.zeros_like(output)
        chosen[:, 1, 2, 3] = 1
        return chosen

    (reference,) = plain_gradient(model, (x,), seed)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    torch.testing.assert_close(ours, captum("gradient", model, x, (1, 2, 3)), **EXACT)
    per_class = dl.attribute(model, x, torch.tensor([1, 2, 3]), rule="gradient")  # the old reading
    assert not torch.allclose(ours, per_class)


def test_a_class_of_a_spatial_output_covers_every_position():
    model, x = segmentation(), inputs(2)[0]
    ours = dl.attribute(model, x, [1, 3], rule="gradient")

    def seed(output):
        chosen = torch.zeros_like(output)
        chosen[0, 1], chosen[1, 3] = 1, 1
        return chosen

    (reference,) = plain_gradient(model, (x,), seed)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    torch.testing.assert_close(ours, dl.attribute(model, x, torch.tensor([1, 3]), rule="gradient"), **EXACT)


def test_a_one_tuple_on_a_two_dimensional_output_is_its_class():
    model, x = TwoInputs().double().eval(), inputs()
    for ours, by_int in zip(dl.attribute(model, x, (4,)), dl.attribute(model, x, 4)):
        torch.testing.assert_close(ours, by_int, rtol=0, atol=0)


def test_a_one_element_index_tensor_is_one_class_for_the_batch_as_in_captum():
    model, x = TwoInputs().double().eval(), inputs()
    for ours, by_int in zip(dl.attribute(model, x, torch.tensor([4])), dl.attribute(model, x, 4)):
        torch.testing.assert_close(ours, by_int, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# many targets from one forward pass
# --------------------------------------------------------------------------------------------


class CountingForward(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, *args):
        self.calls += 1
        return self.model(*args)


def separate(model, x, targets, **kwargs):
    return torch.stack([dl.attribute(model, x, target, **kwargs) for target in targets])


@pytest.mark.parametrize("rule", RULES)
def test_many_targets_equal_separate_calls_from_one_forward_pass(cnn, images, rule):
    targets = [0, 3, [1, 4], torch.tensor([2, 2])]
    counted = CountingForward(cnn)
    maps = dl.attribute(counted, images, targets=targets, rule=rule)
    assert counted.calls == 1 and maps.shape == (4, *images.shape)
    torch.testing.assert_close(maps, separate(cnn, images, targets, rule=rule), rtol=0, atol=0)


@pytest.mark.parametrize("rule", RULES)
def test_top5_equals_separate_calls_for_the_five_best_classes(cnn, images, rule):
    recorded = dl.record(cnn, images, targets="top5", rule=rule)
    classes = torch.stack(recorded.targets)
    assert torch.equal(classes, cnn(images).topk(5, dim=1).indices.T)
    maps = recorded.signal(dl.get_rule(rule).name, keep_graph=False)
    torch.testing.assert_close(maps, separate(cnn, images, list(classes), rule=rule), rtol=0, atol=0)
    torch.testing.assert_close(dl.attribute(cnn, images, targets="top5", rule=rule), maps, rtol=0, atol=0)


@pytest.mark.parametrize("rule", RULES)
def test_a_batched_backward_pass_through_the_rules_gives_the_same_maps(cnn, images, rule):
    """is_grads_batched runs the backward pass under vmap: the rule's ReLU supports it (measured
    no faster than one backward pass per target, benchmarks/bench_targets.py, so not the default)."""
    recorded = dl.record(cnn, images, targets=range(5), rule=rule)
    (batched,) = torch.autograd.grad(
        recorded.output, recorded.wrt, recorded.seed, retain_graph=True, is_grads_batched=True
    )
    torch.testing.assert_close(batched, recorded.signal(rule), **EXACT)
    torch.testing.assert_close(batched, separate(cnn, images, range(5), rule=rule), **EXACT)


def test_many_targets_with_rules_inputs_and_layers():
    model, x = TwoInputs().double().eval(), inputs()
    targets = [1, [0, 5, 3]]
    maps = dl.attribute(model, x, targets=targets, rules=RULES)
    for rule in RULES:
        for i, per_input in enumerate(maps[rule]):
            expected = torch.stack([dl.attribute(model, x, t, rule=rule)[i] for t in targets])
            torch.testing.assert_close(per_input, expected, rtol=0, atol=0)
    at_layer = dl.attribute(model, x, targets=targets, layer="head.0")
    torch.testing.assert_close(at_layer, separate(model, x, targets, layer="head.0"), rtol=0, atol=0)


def test_many_tuple_targets_on_a_spatial_output():
    model, x = segmentation(), inputs()[0]
    targets = [(1, 2, 3), [(0, 1, 1), (3, 7, 0), (2, 4, 5)], 2]
    maps = dl.attribute(model, x, targets=targets, rule="guided_backprop")
    torch.testing.assert_close(maps, separate(model, x, targets, rule="guided_backprop"), rtol=0, atol=0)


def test_targets_as_a_tensor_and_the_recorded_targets(cnn, images):
    recorded = dl.record(cnn, images, targets=torch.tensor([[0, 1], [4, 4]]))
    assert [t.tolist() for t in recorded.targets] == [[0, 1], [4, 4]]
    torch.testing.assert_close(
        recorded.signal("guided_backprop"), separate(cnn, images, [[0, 1], [4, 4]]), rtol=0, atol=0
    )
