"""SmoothGrad over any rule: attribute itself without noise, an unbatched loop with the same noise,
the noise's scale in closed form, reproducibility, batching by budget, Captum's NoiseTunnel without noise,
and errors that name the problem."""

import warnings

import captum.attr as captum_attr
import numpy as np
import pytest
import torch
from small_nets import small_cnn
from test_inputs_targets import ExtraArguments, TwoInputs, inputs
from torch import nn

import deconvlab as dl
from deconvlab.smoothing import noise_scale

RULES = ["gradient", "deconvnet", "guided_backprop"]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_smooth_grad(model, x, target, rule, samples, noise_level, seed, squared=False, **kwargs):
    """One attribute call per sample, the noise drawn as documented: per example of each input,
    sigma = noise_level * (max - min); sample s is x_i + sigma_i * randn(x_i.shape) for each input
    in turn, in order. ``kwargs`` go to attribute as they are (targets=, additional_forward_args=)."""
    g = generator(seed)
    inputs = x if isinstance(x, tuple) else (x,)
    sigmas = [noise_level * (i.flatten(1).max(1).values - i.flatten(1).min(1).values) for i in inputs]
    maps = []
    for _ in range(samples):
        noisy = tuple(
            i + sigma.view(-1, *[1] * (i.dim() - 1)) * torch.randn(i.shape, generator=g, dtype=i.dtype)
            for i, sigma in zip(inputs, sigmas)
        )
        signal = dl.attribute(model, noisy if isinstance(x, tuple) else noisy[0], target, rule, **kwargs)
        maps.append(signal)
    parts = [maps] if not isinstance(maps[0], tuple) else list(zip(*maps))
    means = tuple(torch.stack([m**2 if squared else m for m in part]).mean(dim=0) for part in parts)
    return means if isinstance(maps[0], tuple) else means[0]


@pytest.mark.parametrize("rule", RULES)
def test_without_noise_one_sample_is_attribute_exactly(cnn, images, rule):
    expected = dl.attribute(cnn, images, [1, 3], rule=rule)
    assert torch.equal(dl.smoothgrad(cnn, images, [1, 3], rule, samples=1, noise_level=0), expected)
    at_layer = dl.attribute(cnn, images, 2, rule=rule, layer="3")
    assert torch.equal(dl.smoothgrad(cnn, images, 2, rule, layer="3", samples=1, noise_level=0), at_layer)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("target", [2, [1, 3], torch.tensor([4, 0])])
def test_equals_an_unbatched_loop_with_the_same_noise(cnn, images, rule, squared, target):
    expected = reference_smooth_grad(cnn, images, target, rule, 5, 0.2, seed=7, squared=squared)
    ours = dl.smoothgrad(
        cnn, images, target, rule, samples=5, noise_level=0.2, squared=squared, generator=generator(7)
    )
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ours, dl.attribute(cnn, images, target, rule=rule))  # the noise matters


def test_a_rule_object_and_a_registered_rule_pass_through(cnn, images):
    rule = dl.register_rule("absolute", lambda x, p: p.abs() * (x > 0))
    expected = reference_smooth_grad(cnn, images, 1, "absolute", 3, 0.1, seed=1)
    ours = dl.smoothgrad(cnn, images, 1, rule, samples=3, noise_level=0.1, generator=generator(1))
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


class HalfSquare(nn.Module):
    """Output 0 is sum(x^2) / 2 for each example, so its gradient is x itself."""

    def forward(self, x):
        return torch.stack([(x**2).flatten(1).sum(1) / 2, x.flatten(1).sum(1)], dim=1)


def test_the_noise_is_a_fraction_of_each_examples_range():
    """With gradient = x, SmoothGrad is the mean noisy input and SmoothGrad-Squared its second
    moment: their difference is the noise's variance, sigma^2 = (noise_level * range)^2 per example."""
    x = torch.stack([torch.linspace(0, 1, 64), torch.linspace(-5, 15, 64)]).view(2, 1, 8, 8).double()
    kwargs = {"samples": 1000, "noise_level": 0.1, "batch_size": 500}
    mean = dl.smoothgrad(HalfSquare(), x, 0, **kwargs, generator=generator(3))
    second = dl.smoothgrad(HalfSquare(), x, 0, **kwargs, squared=True, generator=generator(3))
    sigma = (second - mean**2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(sigma, torch.tensor([0.1 * 1, 0.1 * 20], dtype=x.dtype), rtol=0.02, atol=0)
    torch.testing.assert_close(mean, x, rtol=0, atol=0.01 * 20)  # the noise has mean zero
    assert noise_scale(x, 0.1).flatten().tolist() == pytest.approx([0.1, 2.0])


def test_a_generator_makes_it_reproducible_and_leaves_the_global_one_alone(cnn, images):
    torch.manual_seed(0)
    first = dl.smoothgrad(cnn, images, 1, samples=4, generator=generator(5))
    after = torch.rand(3)
    torch.manual_seed(0)
    again = dl.smoothgrad(cnn, images, 1, samples=4, generator=generator(5))
    assert torch.equal(first, again)
    assert torch.equal(torch.rand(3), after)  # the global generator was not drawn from
    assert not torch.equal(first, dl.smoothgrad(cnn, images, 1, samples=4, generator=generator(6)))
    torch.manual_seed(11)
    global_one = dl.smoothgrad(cnn, images, 1, samples=4)
    torch.manual_seed(11)
    assert torch.equal(global_one, dl.smoothgrad(cnn, images, 1, samples=4))


def forward_batches(model, *args, **kwargs):
    """``dl.smoothgrad(model, *args, **kwargs)`` and the batch size of each forward pass of ``model``."""
    sizes = []
    handle = model.register_forward_hook(lambda module, inputs, output: sizes.append(len(inputs[0])))
    try:
        result = dl.smoothgrad(model, *args, **kwargs)
    finally:
        handle.remove()
    return result, sizes


@pytest.mark.parametrize("batch_size", [1, 3, 7, 10, 100])
def test_any_batching_gives_the_same_map(cnn, images, batch_size):
    def run(size):
        return forward_batches(
            cnn, images, [0, 2], "guided", samples=5, generator=generator(2), batch_size=size
        )

    whole, sizes = run(10)
    assert sizes == [10]  # samples x N noisy copies in one call
    chunked, sizes = run(batch_size)
    assert sizes == [min(batch_size, 10 - i) for i in range(0, 10, batch_size)]
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-14)


def test_the_memory_budget_bounds_the_batches(cnn, images):
    def sizes(budget):
        return forward_batches(cnn, images, 1, samples=8, memory_budget=budget, generator=generator())

    small_map, small = sizes(1)
    assert small == [2] + [1] * 14  # one copy of each example first, to measure; then one per call
    large_map, large = sizes(2**30)
    assert large == [2, 14]
    assert forward_batches(cnn, images, 1, samples=8)[1] == [2, 14]  # the default budget: at once
    torch.testing.assert_close(small_map, large_map, rtol=1e-12, atol=1e-14)
    # a budget for about three examples of this network: the estimate from the first call decides
    middle = sizes(int(3 * 3.0 * _leaf_output_bytes(cnn, images[:1])))[1]
    assert middle[0] == 2 and set(middle[1:-1]) == {3}


def _leaf_output_bytes(model, x):
    """The bytes of every leaf module's output for ``x`` (in-place outputs counted once)."""
    storages = {}
    handles = [
        m.register_forward_hook(
            lambda module, args, out: storages.update(
                {out.untyped_storage().data_ptr(): out.untyped_storage().nbytes()}
            )
        )
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(x.clone())
    finally:
        for handle in handles:
            handle.remove()
    return sum(storages.values())


def test_per_example_targets_follow_their_examples(cnn, images):
    """Without noise every copy is its example: the mean is attribute's map, for every target spelling."""
    expected = dl.attribute(cnn, images, [4, 1], rule="guided")
    seed = torch.zeros(2, 5, dtype=images.dtype)
    seed[0, 4] = seed[1, 1] = 1
    for target in ([4, 1], torch.tensor([4, 1]), np.array([4, 1]), seed, [(4,), (1,)]):
        for batch_size in (3, None):
            smooth = dl.smoothgrad(
                cnn, images, target, "guided", samples=3, noise_level=0, batch_size=batch_size
            )
            torch.testing.assert_close(smooth, expected, rtol=1e-12, atol=1e-15)
    whole_batch = dl.attribute(cnn, images, 2, rule="guided")
    for target in (2, torch.tensor(2), (2,)):
        smooth = dl.smoothgrad(cnn, images, target, "guided", samples=3, noise_level=0, batch_size=4)
        torch.testing.assert_close(smooth, whole_batch, rtol=1e-12, atol=1e-15)


def test_an_empty_batch_gives_attributes_empty_map(cnn, images):
    empty = images[:0]
    assert dl.smoothgrad(cnn, empty, 1).shape == dl.attribute(cnn, empty, 1).shape == empty.shape


def test_the_model_and_the_input_are_left_as_found(images):
    model = small_cnn().train()
    x = images.clone()
    dl.smoothgrad(model, x, 1, samples=3)
    with pytest.raises(ValueError, match="unknown rule"):
        dl.smoothgrad(model, x, 1, "nonsense", samples=3)  # fails inside the measured first call
    assert torch.equal(x, images)
    assert all(module.training for module in model.modules())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert all(p.grad is None for p in module.parameters())


# ----------------------------------------------------------------------------------------------
# several inputs, extra forward arguments, many targets (as attribute takes them)
# ----------------------------------------------------------------------------------------------


def extra_arguments(batch: int = 3):
    """ExtraArguments' model and its arguments: a float, a per-example mask, a flag."""
    mask = torch.rand(batch, 4, 8, 8, generator=generator(4), dtype=torch.float64)
    return ExtraArguments().double(), (2.5, mask, False)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("batch_size", [2, None])
def test_a_tuple_of_inputs_equals_an_unbatched_loop_with_the_same_noise(rule, batch_size):
    model, x = TwoInputs().double(), inputs()
    expected = reference_smooth_grad(model, x, [5, 0, 2], rule, 4, 0.2, seed=8, squared=True)
    ours = dl.smoothgrad(
        model,
        x,
        [5, 0, 2],
        rule,
        samples=4,
        noise_level=0.2,
        squared=True,
        generator=generator(8),
        batch_size=batch_size,
    )
    assert isinstance(ours, tuple) and len(ours) == 2
    for mine, reference, given in zip(ours, expected, x):
        assert mine.shape == given.shape
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)


class TwoHalfSquares(nn.Module):
    """Output 0 is (sum(a^2) + sum(b^2)) / 2 for each example, so its gradients are a and b."""

    def forward(self, a, b):
        return HalfSquare()(a) + HalfSquare()(b)


def test_each_input_gets_noise_scaled_by_its_own_range():
    a = torch.linspace(0, 1, 64, dtype=torch.float64).view(1, 1, 8, 8)
    b = torch.linspace(-5, 15, 20, dtype=torch.float64).view(1, 20)
    kwargs = {"samples": 1000, "noise_level": 0.1, "batch_size": 500}
    mean = dl.smoothgrad(TwoHalfSquares(), (a, b), 0, **kwargs, generator=generator(3))
    second = dl.smoothgrad(TwoHalfSquares(), (a, b), 0, **kwargs, squared=True, generator=generator(3))
    for given, first, moment, spread in zip((a, b), mean, second, (1.0, 20.0)):
        sigma = (moment - first**2).mean().sqrt()
        assert sigma.item() == pytest.approx(0.1 * spread, rel=0.03)
        torch.testing.assert_close(first, given, rtol=0, atol=0.015 * spread)


@pytest.mark.parametrize("rule", RULES)
def test_per_example_extra_arguments_follow_their_examples(rule):
    model, extras = extra_arguments()
    x = inputs()[0]
    expected = reference_smooth_grad(model, x, 1, rule, 5, 0.1, seed=9, additional_forward_args=extras)
    for batch_size in (1, 4, None):  # batches that mix samples and split them
        ours = dl.smoothgrad(
            model,
            x,
            1,
            rule,
            samples=5,
            noise_level=0.1,
            generator=generator(9),
            additional_forward_args=extras,
            batch_size=batch_size,
        )
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    # the mask matters: another one gives another map
    other = (2.5, extras[1].flip(0), False)
    assert not torch.allclose(
        dl.smoothgrad(model, x, 1, rule, samples=5, generator=generator(9), additional_forward_args=other),
        expected,
    )


def test_an_argument_without_a_batch_dimension_is_passed_as_it_is():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def forward(self, x, weights):  # weights: one per class, not per example
            return self.net(x) * weights

    x = torch.randn(2, 3, 16, 16, generator=generator(5), dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    model = Scaled()
    ours = dl.smoothgrad(
        model, x, 3, "guided", samples=3, generator=generator(1), additional_forward_args=weights
    )
    expected = reference_smooth_grad(
        model, x, 3, "guided", 3, 0.15, seed=1, additional_forward_args=(weights,)
    )
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_many_targets_equal_one_smoothgrad_per_target_with_the_same_noise(cnn, images, rule):
    targets = [0, [4, 1], torch.tensor([2, 2])]
    ours = dl.smoothgrad(
        cnn, images, targets=targets, rule=rule, samples=3, generator=generator(6), batch_size=4
    )
    assert ours.shape == (3, *images.shape)
    for k, target in enumerate(targets):
        one = dl.smoothgrad(cnn, images, target, rule, samples=3, generator=generator(6))
        torch.testing.assert_close(ours[k], one, rtol=1e-10, atol=1e-12)


def test_top_k_explains_the_classes_of_the_noise_free_input(cnn, images):
    top = cnn(images).topk(3, dim=1).indices.T
    ours = dl.smoothgrad(
        cnn, images, targets="top3", rule="guided", samples=4, noise_level=0.5, generator=generator(2)
    )
    listed = dl.smoothgrad(
        cnn, images, targets=list(top), rule="guided", samples=4, noise_level=0.5, generator=generator(2)
    )
    assert torch.equal(ours, listed)


def test_without_noise_one_sample_is_attribute_exactly_for_every_calling_convention(cnn, images):
    two_inputs, x = TwoInputs().double(), inputs()
    with_extras, extras = extra_arguments()
    cases = [
        (two_inputs, x, {"target": [1, 2, 3]}),
        (two_inputs, x, {"targets": "top2"}),
        (two_inputs, x, {"target": 4, "layer": "head.1"}),  # one map at a layer
        (cnn, (images,), {"target": 1}),  # a one-tuple gives a one-tuple
        (with_extras, x[0], {"target": 2, "additional_forward_args": extras}),
        (cnn, images, {"targets": [0, (3,)]}),
    ]
    for model, given, kwargs in cases:
        expected = dl.attribute(model, given, rule="guided", **kwargs)
        smooth = dl.smoothgrad(model, given, rule="guided", samples=1, noise_level=0, **kwargs)
        assert type(smooth) is type(expected), kwargs
        pairs = zip(smooth, expected) if isinstance(expected, tuple) else [(smooth, expected)]
        for mine, reference in pairs:
            assert torch.equal(mine, reference), kwargs


# ----------------------------------------------------------------------------------------------
# bad input: each error names the argument
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"samples": 0}, ValueError, "samples must be an integer between 1 and 100000, got 0"),
        ({"samples": -3}, ValueError, "samples must be an integer between 1 and 100000"),
        ({"samples": 2**31}, ValueError, "samples must be an integer between 1 and 100000, got 2147483648"),
        ({"samples": 2.0}, TypeError, r"samples must be an integer.*did you mean 2"),
        ({"noise_level": -1}, ValueError, "noise_level must be between 0 and 10"),
        ({"noise_level": 1e300}, ValueError, "noise_level must be between 0 and 10"),
        ({"noise_level": float("nan")}, ValueError, "noise_level must be a finite number"),
        ({"noise_level": float("inf")}, ValueError, "noise_level must be a finite number"),
        ({"noise_level": "15%"}, TypeError, "noise_level must be a number"),
        ({"squared": "yes"}, TypeError, "squared must be True or False"),
        ({"generator": 0}, TypeError, r"generator must be a torch.Generator.*manual_seed"),
        ({"memory_budget": 0}, ValueError, "memory_budget must be an integer at least 1"),
        ({"memory_budget": 1e9}, TypeError, "memory_budget must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer at least 1"),
    ],
)
def test_bad_arguments_are_named(cnn, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.smoothgrad(cnn, images, 1, **kwargs)


def test_bad_models_inputs_targets_and_rules_are_named(cnn, images):
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        dl.smoothgrad(lambda x: x, images, 1)
    with pytest.raises(TypeError, match=r"x has dtype torch.int64"):
        dl.smoothgrad(cnn, images.long(), 1)
    bad = images.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x .*NaN"):
        dl.smoothgrad(cnn, bad, 1)
    with pytest.raises(TypeError, match="target is None"):
        dl.smoothgrad(cnn, images, None)
    with pytest.raises(ValueError, match=r"target has 3 entries .* x has 2 examples"):
        dl.smoothgrad(cnn, images, [1, 2, 3])
    with pytest.raises(ValueError, match=r"target has 1 entries .* x has 2 examples"):
        dl.smoothgrad(cnn, images, torch.zeros(1, 5, dtype=images.dtype))
    with pytest.raises(IndexError, match="target 9 is out of range"):
        dl.smoothgrad(cnn, images, 9)
    with pytest.raises(ValueError, match="unknown rule"):
        dl.smoothgrad(cnn, images, 1, "guidedd")


def test_bad_inputs_targets_and_extra_arguments_are_named_as_attribute_names_them(cnn, images):
    model, x = TwoInputs().double(), inputs()
    with pytest.raises(TypeError, match=r"x is a list of tensors.*x=tuple\(x\)"):
        dl.smoothgrad(model, list(x), 1)
    with pytest.raises(ValueError, match=r"x\[0\] has 3, x\[1\] has 2"):
        dl.smoothgrad(model, (x[0], x[1][:2]), 1)
    bad = x[1].clone()
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"x\[1\] has"):
        dl.smoothgrad(model, (x[0], bad), 1)
    with pytest.raises(TypeError, match=r"cannot take 2 inputs \(x\) and 1 additional_forward_args"):
        dl.smoothgrad(model, x, 1, additional_forward_args=torch.ones(3))
    with pytest.raises(TypeError, match=r"either target= .* or targets="):
        dl.smoothgrad(cnn, images, 1, targets=[1, 2])
    with pytest.raises(ValueError, match=r"targets\[1\]: target has 3 entries .* x has 2 examples"):
        dl.smoothgrad(cnn, images, targets=[0, [1, 2, 3]])
    with pytest.raises(ValueError, match=r"top9.* asks for 9 classes, but the model has 5"):
        dl.smoothgrad(cnn, images, targets="top9")
    with pytest.raises(ValueError, match="targets must be a list of targets or 'topK'"):
        dl.smoothgrad(cnn, images, targets="best")


# ----------------------------------------------------------------------------------------------
# against Captum's NoiseTunnel, noise-free (its noise cannot be drawn as ours is): the calling
# conventions, the squared variant and the repeated extra arguments must agree exactly
# ----------------------------------------------------------------------------------------------

CAPTUM_METHODS = {
    "gradient": (captum_attr.Saliency, {"abs": False}),
    "deconvnet": (captum_attr.Deconvolution, {}),
    "guided_backprop": (captum_attr.GuidedBackprop, {}),
}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("squared", [False, True])
def test_noise_free_it_equals_captums_noise_tunnel_with_tuples_and_extra_arguments(rule, squared):
    method, options = CAPTUM_METHODS[rule]
    nt_type = "smoothgrad_sq" if squared else "smoothgrad"
    with_extras, extras = extra_arguments()
    cases = [
        (TwoInputs().double(), inputs(), {"target": [5, 0, 2]}),
        (with_extras, inputs()[0], {"target": [1, 4, 0], "additional_forward_args": extras}),
    ]
    for model, x, kwargs in cases:
        tunnel = captum_attr.NoiseTunnel(method(model))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Captum's notes on hooks and in-place ReLUs
            theirs = tunnel.attribute(
                x, nt_type=nt_type, nt_samples=4, nt_samples_batch_size=3, stdevs=0.0, **kwargs, **options
            )
        ours = dl.smoothgrad(
            model, x, rule=rule, samples=4, noise_level=0, squared=squared, batch_size=5, **kwargs
        )
        for mine, reference in zip(*(m if isinstance(m, tuple) else (m,) for m in (ours, theirs))):
            torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)
