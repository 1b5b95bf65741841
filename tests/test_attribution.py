"""attribute and project: shapes, targets, one forward pass, and leaving things as found."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deconvlab as dl

RULES = ["gradient", "deconvnet", "guided_backprop"]


class CountingForward(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.modes = model, 0, []

    def forward(self, x):
        self.calls += 1
        self.modes.append(self.training)
        return self.model(x)


def test_signal_is_shaped_like_the_input_and_detached(cnn, images):
    signal = dl.attribute(cnn, images, 1)
    assert signal.shape == images.shape and signal.dtype == images.dtype and not signal.requires_grad


@pytest.mark.parametrize("layer", ["3", "4"])
def test_layer_signal_is_shaped_like_its_output(cnn, images, layer):
    signal = dl.attribute(cnn, images, 1, layer=layer)
    assert signal.shape == cnn[: int(layer) + 1](images).shape
    torch.testing.assert_close(signal, dl.attribute(cnn, images, 1, layer=cnn[int(layer)]))


@pytest.mark.parametrize("rule", RULES)
def test_layer_signal_is_taken_before_a_following_inplace_relu(rule, images):
    """features.3 is a conv followed by ReLU(inplace=True): the signal is at the conv's output."""
    inplace = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)
    )
    inplace = inplace.double()
    conv_out = inplace[0](images)
    p = inplace[3].weight[2].view(1, 4, 14, 14).expand_as(conv_out)
    expected = dl.rules.get_rule(rule).backward(conv_out, p)
    torch.testing.assert_close(dl.attribute(inplace, images, 2, rule=rule, layer="0"), expected)


def test_target_forms_agree(cnn, images):
    by_int = dl.attribute(cnn, images, 3)
    by_list = dl.attribute(cnn, images, [3, 3])
    by_tensor = dl.attribute(cnn, images, torch.tensor([3, 3]))
    by_array = dl.attribute(cnn, images, np.array([3, 3]))
    seed = torch.zeros(2, 5, dtype=torch.float64)
    seed[:, 3] = 1
    by_seed = dl.attribute(cnn, images, seed)
    for other in (by_list, by_tensor, by_array, by_seed):
        torch.testing.assert_close(other, by_int)


def test_per_example_targets(cnn, images):
    both = dl.attribute(cnn, images, [0, 4])
    torch.testing.assert_close(both[0], dl.attribute(cnn, images[:1], 0)[0])
    torch.testing.assert_close(both[1], dl.attribute(cnn, images[1:], 4)[0])


def test_a_list_of_rules_uses_one_forward_pass_and_equals_separate_calls(cnn, images):
    counted = CountingForward(cnn)
    together = dl.attribute(counted, images, 2, rules=RULES)
    assert counted.calls == 1 and list(together) == RULES
    for rule in RULES:
        torch.testing.assert_close(together[rule], dl.attribute(cnn, images, 2, rule=rule))


def test_the_gradient_inside_another_rules_context_is_still_the_gradient(cnn, images):
    plain = images.clone().requires_grad_(True)
    cnn(plain)[:, 2].sum().backward()
    with dl.backward_rule("deconvnet"):  # attribute's own rule wins over the caller's
        torch.testing.assert_close(dl.attribute(cnn, images, 2, rule="gradient"), plain.grad)
        torch.testing.assert_close(dl.attribute(cnn, images, 2, rules=["gradient"])["gradient"], plain.grad)
    with dl.backward_rule("gradient"):  # and the gradient context leaves ReLUs native
        x = images.clone().requires_grad_(True)
        cnn(x * 1)[:, 2].sum().backward()
    torch.testing.assert_close(x.grad, plain.grad)


def test_dict_keys_are_the_rules_canonical_names(cnn, images):
    assert list(dl.attribute(cnn, images, 2, rules=["guided", dl.get_rule("deconvnet")])) == [
        "guided_backprop",
        "deconvnet",
    ]
    with pytest.raises(ValueError, match="listed twice"):
        dl.attribute(cnn, images, 2, rules=["gradient", "gradient"])
    with pytest.raises(ValueError, match="'guided_backprop' is listed twice"):
        dl.attribute(cnn, images, 2, rules=["guided", "guided_backprop"])  # one rule, two spellings
    with pytest.raises(ValueError, match="empty"):
        dl.attribute(cnn, images, 2, rules=[])


def test_one_return_type_per_call(cnn, images):
    assert isinstance(dl.attribute(cnn, images, 2), torch.Tensor)
    assert isinstance(dl.attribute(cnn, images, 2, rule="deconvnet"), torch.Tensor)
    assert isinstance(dl.attribute(cnn, images, 2, rules=["deconvnet"]), dict)
    assert isinstance(dl.project(cnn, images, "3", 1), torch.Tensor)
    assert isinstance(dl.project(cnn, images, "3", 1, rules=["deconvnet"]), dict)
    with pytest.raises(TypeError, match=r"rule= takes one rule .* pass rules=\[\.\.\.\]"):
        dl.attribute(cnn, images, 2, rule=["gradient", "deconvnet"])
    with pytest.raises(TypeError, match="for one rule pass rule='deconvnet'"):
        dl.attribute(cnn, images, 2, rules="deconvnet")
    with pytest.raises(TypeError, match=r"either rule= .* or rules="):
        dl.project(cnn, images, "0", 1, rule="gradient", rules=["deconvnet"])


def _hook_count(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_leaves_model_and_input_as_found(cnn, images):
    model = nn.Sequential(nn.Dropout(0.5), cnn)
    counted = CountingForward(model).train()
    model[1][0].eval()  # mixed flags must come back exactly
    flags = [m.training for m in model.modules()]
    x = images.clone()
    dl.attribute(counted, x, 1, rules=RULES, layer=model[1][3])
    assert counted.modes == [False]  # ran in eval mode: dropout off
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert _hook_count(counted) == 0
    assert torch.equal(x, images) and not x.requires_grad and x.grad is None


def test_restores_everything_when_the_model_fails(images):
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3).double()

        def forward(self, x):
            torch.relu(self.conv(x))
            raise KeyboardInterrupt  # a student interrupting the cell

    model = Failing().train()
    with pytest.raises(KeyboardInterrupt):
        dl.attribute(model, images, 0, layer="conv")
    assert model.training and model.conv.training
    assert _hook_count(model) == 0 and dl.active_rule() is None
    assert torch._C._len_torch_function_stack() == 0


def test_a_model_that_relus_its_input_in_place_does_not_touch_the_callers_tensor(images):
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).double()
    x = images.clone()
    signal = dl.attribute(model, x, 1, rule="gradient")
    assert torch.equal(x, images)
    torch.testing.assert_close(signal[0], (model[2].weight[1] * (images[0].flatten() > 0)).view(3, 16, 16))


def test_a_model_that_relus_its_input_in_place_still_gives_layer_signals(images):
    class Late(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3).double()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 14 * 14, 2)).double()

        def forward(self, x):
            z = self.conv(x)  # the layer runs before the in-place ReLU on the input
            x.relu_()
            return self.head(z) + x.sum()

    model, x = Late(), images.clone()
    with pytest.warns(dl.NoReLUWarning, match="no ReLU on the path"):  # the ReLU runs after the layer
        signal = dl.attribute(model, x, 1, layer="conv")
    assert signal.shape == (2, 2, 14, 14) and torch.equal(x, images)


def test_works_under_no_grad_and_refuses_inference_mode(cnn, images):
    with torch.no_grad():
        assert dl.attribute(cnn, images, 1).abs().sum() > 0
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        dl.attribute(cnn, images, 1)
    with torch.inference_mode():
        frozen = images.clone()
    assert dl.attribute(cnn, frozen, 1).shape == images.shape


@pytest.mark.parametrize(
    ("make_x", "target", "kwargs", "error", "message"),
    [
        (lambda x: x, 5, {}, IndexError, r"target 5 is out of range .* 5 classes \(valid: 0..4\)"),
        (lambda x: x, -1, {}, IndexError, "target -1 is out of range"),
        (lambda x: x, [1, 2, 3], {}, ValueError, "target has 3 entries but the batch has 2 examples"),
        (lambda x: x, [1, 9], {}, IndexError, "target 9 is out of range"),
        (lambda x: x, torch.tensor([0.5, 1.0]), {}, TypeError, "neither class indices"),
        (lambda x: x, torch.ones(2, 2, dtype=torch.long), {}, ValueError, "target has shape"),
        (lambda x: x, True, {}, TypeError, "bool"),
        (lambda x: (x * 255).to(torch.uint8), 1, {}, TypeError, "dtype torch.uint8.*floating-point"),
        (lambda x: x[0, 0, 0], 1, {}, ValueError, "batch dimension"),
        (lambda x: x, 1, {"rule": "guided-bp"}, ValueError, "unknown rule 'guided-bp'; known rules"),
        (
            lambda x: x,
            1,
            {"layer": "features.10"},
            ValueError,
            "unknown layer 'features.10'; the model's layers are: 0, 1",
        ),
        (lambda x: x, 1, {"layer": nn.Conv2d(1, 1, 1)}, ValueError, "not a submodule"),
    ],
)
def test_bad_input_raises_an_error_that_names_the_problem(
    cnn, images, make_x, target, kwargs, error, message
):
    with pytest.raises(error, match=message):
        dl.attribute(cnn, make_x(images), target, **kwargs)


def test_an_output_whose_batch_differs_from_the_input_is_refused(images):
    # no convolution: the batch check after the forward pass is what catches it (a convolution
    # refuses an input without batch dimension before it runs, tests/test_bad_input.py)
    model = nn.Sequential(nn.Flatten(0), nn.Linear(3 * 16 * 16, 4), nn.ReLU(), nn.Unflatten(0, (1, -1)))
    with pytest.raises(ValueError, match=r"output has batch size 1 but x has 3.*batch dimension"):
        dl.attribute(model.double(), images[0], 0)


def test_torchscript_models_are_refused(cnn, images):
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # newer torch deprecates torch.jit.script; older does not
        scripted = torch.jit.script(cnn)
    with pytest.raises(TypeError, match="TorchScript"):
        dl.attribute(scripted, images, 1)


def test_a_layer_that_runs_twice_or_never_is_refused(images):
    shared = nn.Conv2d(3, 3, 3, padding=1).double()
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).double()
    with pytest.raises(RuntimeError, match="ran 2 times"):
        dl.attribute(model, images, 1, layer="0")
    unused = nn.ModuleDict(
        {"used": nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)), "spare": nn.ReLU()}
    )

    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = unused.double()

        def forward(self, x):
            return self.parts["used"](torch.relu(x))

    with pytest.raises(RuntimeError, match="did not run"):
        dl.attribute(Partial(), images, 1, layer="parts.spare")


# --- project -------------------------------------------------------------------------------


def test_project_at_a_unit_is_the_activation_times_its_gradient(cnn, images):
    """With the gradient rule, projecting unit (c, i, j) = a_cij · ∂a_cij/∂x (plain autograd)."""
    x = images.clone().requires_grad_(True)
    activation = cnn[:4](x)
    activation[:, 2, 3, 5].sum().backward()
    expected = x.grad * activation[:, 2, 3, 5].detach().view(-1, 1, 1, 1)
    torch.testing.assert_close(dl.project(cnn, images, "3", 2, position=(3, 5), rule="gradient"), expected)


def test_project_max_uses_the_strongest_unit_of_each_example(cnn, images):
    activation = cnn[:5](images)[:, 1]
    for example in range(2):
        i, j = np.unravel_index(int(activation[example].argmax()), activation.shape[1:])
        expected = dl.project(cnn, images[example : example + 1], "4", 1, position=(int(i), int(j)))
        got = dl.project(cnn, images, "4", 1, position="max")[example : example + 1]
        torch.testing.assert_close(got, expected)


def test_project_whole_channel_is_seeded_with_the_feature_map(cnn, images):
    features = cnn[:5](images).detach()
    seed = torch.zeros_like(features)
    seed[:, 1] = features[:, 1]
    x = images.clone().requires_grad_(True)
    with dl.backward_rule("deconvnet"):
        out = cnn[:5](x)
    out.backward(seed)
    torch.testing.assert_close(dl.project(cnn, images, "4", 1), x.grad)


def test_project_stays_inside_the_receptive_field(cnn, images):
    with pytest.warns(dl.NoReLUWarning, match="no ReLU on the path"):  # layer 0 is before every ReLU
        signal = dl.project(cnn, images, "0", 1, position=(7, 7), rules=RULES)
    for rule in RULES:
        outside = signal[rule].clone()
        outside[:, :, 6:9, 6:9] = 0  # 3x3 conv, padding 1: the unit sees rows/cols 6..8
        assert outside.abs().sum() == 0 and signal[rule].abs().sum() > 0


def test_project_stops_the_forward_pass_at_the_layer(cnn, images):
    head = CountingForward(cnn[7])
    model = nn.Sequential(*cnn[:7], head)
    dl.project(model, images, "3", 0, position="max")
    assert head.calls == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"channel": 9}, IndexError, "channel 9 is out of range for a layer with 6 channels"),
        (
            {"channel": 1, "position": (8, 0)},
            IndexError,
            r"position \(8, 0\) is outside the feature map of size \(8, 8\)",
        ),
        ({"channel": 1, "position": "top"}, ValueError, "position must be None, 'max' or"),
    ],
)
def test_project_bad_input(cnn, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.project(cnn, images, "4", **kwargs)
