"""backward_rule: every ReLU spelling, in place stays in place, and it never leaks."""

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from reference_backprop import SPELLINGS, build, relu_star
from torch import nn

import deconvlab as dl
from deconvlab.context import NoReLUWarning, UnsupportedActivationWarning


def _one_relu_net(spelling):
    return build([("conv", 2, 3, 1, 1), ("relu", spelling)])


def _signal(net, x, rule=None):
    x = x.clone().requires_grad_(True)
    if rule is None:
        net(x * 1)[0, 1].backward()
    else:
        with dl.backward_rule(rule):
            net(x * 1)[0, 1].backward()
    return x.grad


def _function_stack_depth():
    return torch._C._len_torch_function_stack()


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("rule", ["deconvnet", "guided_backprop"])
def test_every_spelling_gets_the_rule(spelling, rule):
    torch.manual_seed(3)
    net = _one_relu_net(spelling)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    conv = net.blocks[0].conv
    z = conv(x)
    p = net.head.weight[1].view(z.shape)
    expected = torch.nn.grad.conv2d_input(x.shape, conv.weight, relu_star(rule, z, p), padding=1)
    torch.testing.assert_close(_signal(net, x, rule), expected)
    assert not torch.equal(_signal(net, x), expected)  # the rule really changed something


@pytest.mark.parametrize(
    "call",
    [
        lambda h: nn.ReLU(inplace=True)(h),
        lambda h: F.relu(h, inplace=True),
        lambda h: F.relu_(h),
        lambda h: torch.relu_(h),
        lambda h: h.relu_(),
    ],
)
def test_inplace_spellings_stay_in_place(call):
    x = torch.randn(20, requires_grad=True)
    h = x * 1
    with dl.backward_rule("deconvnet"):
        out = call(h)
    assert out.data_ptr() == h.data_ptr()
    torch.testing.assert_close(h, x.detach().clamp(min=0))  # the side effect happened
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(20))  # deconvnet: p · [p > 0] with p = 1


def test_an_inplace_relu_on_a_leaf_is_refused_before_it_writes():
    x = torch.randn(5, requires_grad=True)
    before = x.detach().clone()
    with pytest.raises(dl.context.InPlaceOnLeafError, match="leaf tensor that requires grad"):
        with dl.backward_rule("deconvnet"):
            x.relu_()
    assert torch.equal(x.detach(), before)


def test_nothing_is_patched():
    originals = (torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_)
    with dl.backward_rule("deconvnet"):
        assert (torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_) == originals


def test_the_rule_is_bound_at_forward_time(cnn, images):
    x = images.clone().requires_grad_(True)
    with dl.backward_rule("deconvnet"):
        y = cnn(x * 1)
    y[0, 1].backward()  # outside the block
    torch.testing.assert_close(x.grad, _signal(cnn, images, "deconvnet"))


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_exceptions_and_interrupts_restore_everything(cnn, images, error):
    depth = _function_stack_depth()
    plain = _signal(cnn, images)
    with pytest.raises(error):
        with dl.backward_rule("deconvnet"):
            cnn(images)
            raise error()
    assert dl.active_rule() is None and _function_stack_depth() == depth
    torch.testing.assert_close(_signal(cnn, images), plain)


def test_nesting_inner_wins_outer_comes_back(cnn, images):
    with dl.backward_rule("deconvnet"):
        with dl.backward_rule("guided"):
            assert dl.active_rule().name == "guided_backprop"
            inner = _signal(cnn, images)
        assert dl.active_rule().name == "deconvnet"
        outer = _signal(cnn, images)
    assert dl.active_rule() is None
    torch.testing.assert_close(inner, _signal(cnn, images, "guided_backprop"))
    torch.testing.assert_close(outer, _signal(cnn, images, "deconvnet"))


def test_one_context_object_reused_and_reentered(cnn, images):
    context = dl.backward_rule("deconvnet")
    expected = _signal(cnn, images, "deconvnet")
    for _ in range(3):
        with context:
            torch.testing.assert_close(_signal(cnn, images), expected)
    with context:
        with context:
            assert dl.active_rule().name == "deconvnet"
        assert dl.active_rule().name == "deconvnet"
    assert dl.active_rule() is None and _function_stack_depth() == 0


def test_out_of_order_exits(cnn, images):
    outer, inner = dl.backward_rule("deconvnet"), dl.backward_rule("guided")
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the outer one leaves first
    assert dl.active_rule().name == "guided_backprop"
    torch.testing.assert_close(_signal(cnn, images), _signal(cnn, images, "guided"))
    inner.__exit__(None, None, None)
    assert dl.active_rule() is None and _function_stack_depth() == 0
    with pytest.raises(RuntimeError, match="not entered"):
        inner.__exit__(None, None, None)


def test_other_torch_function_modes_survive_an_out_of_order_exit():
    class Counting(torch.overrides.TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counting.calls += 1
            return func(*args, **(kwargs or {}))

    context = dl.backward_rule("deconvnet")
    context.__enter__()
    counting = Counting()
    counting.__enter__()
    context.__exit__(None, None, None)  # ours leaves while the user's mode is above it
    _ = torch.ones(1) + 1
    assert Counting.calls > 0
    counting.__exit__(None, None, None)
    assert _function_stack_depth() == 0


def test_a_rule_in_one_thread_never_affects_another(cnn, images):
    plain = _signal(cnn, images)
    deconv = _signal(cnn, images, "deconvnet")
    barrier = threading.Barrier(2)
    results = {}

    def with_rule():
        with dl.backward_rule("deconvnet"):
            barrier.wait()
            results["rule"] = [_signal(cnn, images) for _ in range(20)]
            barrier.wait()

    def without_rule():
        barrier.wait()
        results["plain"] = [_signal(cnn, images) for _ in range(20)]
        barrier.wait()

    threads = [threading.Thread(target=with_rule), threading.Thread(target=without_rule)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(got, plain) for got in results["plain"])
    assert all(torch.equal(got, deconv) for got in results["rule"])


ACTIVATIONS = [
    (nn.GELU(), "GELU"),
    (nn.SiLU(), "SiLU"),
    (nn.LeakyReLU(), "LeakyReLU"),
    (nn.ReLU6(), "ReLU6"),
    (nn.ELU(), "ELU"),
    (nn.Hardswish(), "Hardswish"),
]


@pytest.mark.parametrize(("module", "label"), ACTIVATIONS)
def test_non_relu_modules_are_named_with_their_place(module, label):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), module, nn.Linear(4, 2))
    with pytest.warns(UnsupportedActivationWarning, match=rf"{label} ×1 call \('3'\)"):
        dl.attribute(model, torch.randn(2, 4), 1, rule="deconvnet")


@pytest.mark.parametrize(
    ("function", "label"),
    [
        (F.gelu, "GELU"),
        (F.silu, "SiLU"),
        (F.leaky_relu, "LeakyReLU"),
        (F.relu6, "ReLU6"),
        (F.elu, "ELU"),
        (F.hardswish, "Hardswish"),
    ],
)
def test_non_relu_functionals_are_named_with_their_place(function, label):
    class Head(nn.Module):
        def forward(self, h):
            return function(h)

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), Head(), nn.Linear(4, 2))
    with pytest.warns(UnsupportedActivationWarning, match=rf"{label} ×1 call \('2' \(Head\)\)"):
        dl.attribute(model, torch.randn(2, 4), 1, rule="guided_backprop")


def test_a_model_without_relu_warns_that_every_rule_is_the_gradient():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with (
        pytest.warns(NoReLUWarning, match="every rule equals the plain gradient"),
        pytest.warns(UnsupportedActivationWarning, match=r"Tanh ×1 call \('1'\)"),
    ):
        dl.attribute(model, torch.randn(1, 4), 0, rule="deconvnet")


def test_warnings_for_several_rules_name_the_modified_ones():
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2))
    with (
        pytest.warns(
            UnsupportedActivationWarning,
            match="untouched by the rules 'deconvnet', 'guided_backprop' and keep",
        ),
        pytest.warns(NoReLUWarning),
    ):
        dl.attribute(model, torch.randn(1, 4), 0, rules=["gradient", "deconvnet", "guided_backprop"])


class _ConstantTableReLU(nn.Module):
    """Swin-v2's position bias in miniature: an MLP with a ReLU on a constant table, added to the scores."""

    def __init__(self):
        super().__init__()
        self.table = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        bias = self.table(torch.ones(4, 2)).view(4)
        return self.head(torch.sigmoid(x + bias))


def test_a_relu_off_the_gradient_path_counts_as_no_relu():
    with (
        pytest.warns(NoReLUWarning, match="no ReLU on the path from the output to the input"),
        pytest.warns(UnsupportedActivationWarning, match=r"Sigmoid ×1 call"),
    ):
        dl.attribute(_ConstantTableReLU(), torch.randn(3, 4), 0, rule="deconvnet")


def test_many_nonlinearities_are_grouped_by_kind_with_a_count_and_a_few_places():
    blocks = [nn.Sequential(nn.Linear(4, 4), nn.GELU()) for _ in range(40)]
    model = nn.Sequential(*blocks, nn.Linear(4, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2))
    with pytest.warns(UnsupportedActivationWarning) as caught:
        dl.attribute(model, torch.randn(2, 4), 0, rule="guided")
    (message,) = [str(w.message) for w in caught]
    assert "GELU ×40 calls ('0.1', '1.1', '2.1', ...)" in message
    assert "Tanh ×1 call ('42')" in message and len(message) < 400


def test_the_warning_points_at_the_callers_line():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.GELU(), nn.Linear(3, 2))
    with pytest.warns(UnsupportedActivationWarning) as caught:
        dl.attribute(model, torch.randn(1, 4), 0, rule="deconvnet")  # this line
    assert caught[0].filename == __file__
    with pytest.warns(UnsupportedActivationWarning) as caught, dl.backward_rule("deconvnet"):
        model(torch.randn(1, 4, requires_grad=True))
    assert caught[0].filename == __file__


def test_no_warning_for_a_relu_model_inside_the_users_own_block(cnn, images):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dl.backward_rule("deconvnet"):
            maps = dl.attribute(cnn, images, 1, rule="guided_backprop")
            maps.sum()  # other tensor work in the user's block
        with dl.backward_rule("deconvnet"):
            dl.attribute(cnn, images, 1, rule="gradient")
            torch.ones(2) + 1


def test_the_gradient_rule_has_nothing_to_warn_about():
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dl.attribute(model, torch.randn(1, 4), 0, rule="gradient")


def test_the_warning_comes_only_after_a_clean_exit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ZeroDivisionError), dl.backward_rule("deconvnet"):
            F.gelu(torch.randn(3))
            raise ZeroDivisionError
