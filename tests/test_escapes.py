"""Where a rule cannot reach, deconvlab gives the eager model's exact map or refuses, naming why.

One test per feature: torch.compile (each backend, one rule and a list), TorchScript
submodules, torch.func transforms, activation checkpointing (reentrant or not), ReLUs in
worker threads, user rules that write into p, and NaN/Inf.
"""

import re
import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from small_nets import small_cnn
from torch import nn
from torch.utils.checkpoint import checkpoint

import deconvlab as dl
from deconvlab.escapes import (
    NonFiniteError,
    NonFiniteOutputError,
    RuleNotAppliedError,
    check_rule_reached,
    node_kind,
)
from deconvlab.relu import RuleSlot
from deconvlab.rules import get_rule

# backward_rule tracks modules with global forward hooks, which torch.compile warns about
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `torch.compile\\(module\\)` when there are global hooks"
)
RULES = ["gradient", "deconvnet", "guided_backprop"]
BACKENDS = ["eager", "aot_eager", "inductor"]


def by_hand(model, x, rules, target=2):
    """Each rule's input signal from ONE forward pass under ``backward_rule`` (no deconvlab checks)."""
    slot = RuleSlot(*map(get_rule, rules))
    leaf = x.clone().requires_grad_(True)
    with dl.backward_rule(slot, warn=False):
        y = model(leaf)
    out = {}
    for i, rule in enumerate(rules):
        slot.rule = get_rule(rule)
        (out[rule],) = torch.autograd.grad(y[:, target].sum(), leaf, retain_graph=i < len(rules) - 1)
    return out


def assert_maps_equal(got, expected, **tolerance):
    assert got.keys() == expected.keys()
    for rule in expected:
        torch.testing.assert_close(got[rule], expected[rule], **tolerance)


def _tiny(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4),
        nn.ReLU(),
        nn.Linear(4, 3),
    ).to(dtype)


def _tiny_input(dtype=torch.float32):
    torch.manual_seed(1)
    return torch.randn(2, 2, 6, 6, dtype=dtype)


# --- torch.compile ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_attribute_on_a_compiled_model_gives_the_eager_maps(backend, cnn, images):
    compiled = torch.compile(cnn, backend=backend)
    assert_maps_equal(
        dl.attribute(compiled, images, 2, rules=RULES), dl.attribute(cnn, images, 2, rules=RULES)
    )
    for rule in RULES:
        torch.testing.assert_close(
            dl.attribute(compiled, images, 2, rule=rule), dl.attribute(cnn, images, 2, rule=rule)
        )
    torch.testing.assert_close(dl.project(compiled, images, "3", 1), dl.project(cnn, images, "3", 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_rule_on_a_compiled_model_is_exact_or_refused(backend):
    """Exact where TorchDynamo calls the interceptor (current PyTorch); refused, naming the fix, where it
    traces the ReLU instead (PyTorch 2.5, the lowest admitted): never a map with one rule baked in."""
    torch._dynamo.reset()
    model, x = _tiny(), _tiny_input()
    expected = by_hand(model, x, RULES)
    assert not torch.equal(expected["guided_backprop"], expected["deconvnet"])
    compiled = torch.compile(model, backend=backend)
    for rule in RULES:  # one rule per forward pass
        try:
            got = by_hand(compiled, x, [rule])
        except RuntimeError as error:
            assert rule != "gradient" and re.search(
                r"ReLU is being traced .*torch\.compile.*_orig_mod", str(error)
            )
            continue
        assert_maps_equal(got, {rule: expected[rule]}, atol=1e-5, rtol=1e-4)
    # Several rules from one forward pass: the ReLUs ran outside the compiled graphs. Unless
    # PyTorch itself refuses a second backward pass through them (donated buffers, 2.6+), or
    # the ReLUs were traced (refused as above).
    try:
        several = by_hand(compiled, x, RULES)
    except RuntimeError as error:
        assert ("donated buffers" in str(error) and backend != "eager") or "ReLU is being traced" in str(
            error
        )
    else:
        assert_maps_equal(several, expected, atol=1e-5, rtol=1e-4)


class _WithCompiledBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.compile(_tiny()[:3], backend="aot_eager")
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(27, 3))

    def forward(self, x):
        return self.head(self.block(x))


def test_a_compiled_submodule_is_refused_under_a_rule():
    torch._dynamo.reset()
    model, x = _WithCompiledBlock(), _tiny_input()
    with pytest.raises(RuntimeError, match=r"torch\.compile"):
        dl.attribute(model, x, 1, rule="guided_backprop")
    dl.attribute(model, x, 1, rule="gradient")  # autograd's own backward: nothing to refuse


def test_a_relu_traced_by_make_fx_is_refused():
    from torch.fx.experimental.proxy_tensor import make_fx

    x = torch.randn(3, requires_grad=True)
    with pytest.raises(RuleNotAppliedError, match="ReLU is being traced"):
        with dl.backward_rule("deconvnet"):
            make_fx(lambda v: torch.relu(v * 2), tracing_mode="fake")(x)


# --- TorchScript -------------------------------------------------------------------------------


class _WithScriptedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch 2.10+ deprecates TorchScript
            self.features = torch.jit.script(small_cnn()[:6])
        self.head = small_cnn()[6:]

    def forward(self, x):
        return self.head(self.features(x))


def test_a_model_with_a_torchscript_submodule_is_refused_under_a_rule(cnn, images):
    model = _WithScriptedBlock()
    for _ in range(3):  # the profiling executor records plain nodes first, a fused graph later
        with pytest.raises(RuleNotAppliedError, match=r"TorchScript .*'features'.*Python modules"):
            dl.attribute(model, images, 2, rule="guided_backprop")
        torch.testing.assert_close(
            dl.attribute(model, images, 2, rule="gradient"), dl.attribute(cnn, images, 2, rule="gradient")
        )


# --- torch.func ---------------------------------------------------------------------------------


def _linear_net(inplace):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 6), nn.ReLU(inplace), nn.Linear(6, 6), nn.ReLU(inplace), nn.Linear(6, 3)
    ).double()


def _shifted(x, p):  # a user rule that reads x itself, not only its sign
    return p * (x > 0.1)


# vmap over the backward pass (jacrev, vmap of grad) runs rules.gated's clamp_ without a batching rule
@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented")
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("rule", ["guided_backprop", "shifted"])
@pytest.mark.parametrize("transform", ["vmap", "grad", "vmap_grad", "jacrev", "vjp"])
def test_torch_func_transforms_give_the_eager_map(transform, rule, inplace):
    if rule == "shifted":
        dl.register_rule("shifted", _shifted)
    model = _linear_net(inplace)
    torch.manual_seed(2)
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = by_hand(model, x, [rule], target=0)[rule]
    assert not torch.allclose(expected, by_hand(model, x, ["gradient"], target=0)["gradient"])
    one = lambda v: model(v[None])[0, 0]  # noqa: E731
    with dl.backward_rule(rule):
        if transform == "vmap":  # the forward pass under vmap, the backward pass outside
            leaf = x.clone().requires_grad_(True)
            torch.func.vmap(model)(leaf)[:, 0].sum().backward()
            got = leaf.grad
        elif transform == "grad":
            got = torch.stack([torch.func.grad(one)(row) for row in x])
        elif transform == "vmap_grad":
            got = torch.func.vmap(torch.func.grad(one))(x)
        elif transform == "jacrev":
            jacobian = torch.func.jacrev(model)(x)  # (3, 3, 3, 4): output row, class, input row, feature
            got = torch.stack([jacobian[i, 0, i] for i in range(len(x))])
        else:
            _, pullback = torch.func.vjp(model, x)
            (got,) = pullback(F.one_hot(torch.zeros(3, dtype=torch.long), 3).double())
    torch.testing.assert_close(got, expected)


# --- activation checkpointing ----------------------------------------------------------------


class _Checkpointed(nn.Module):
    def __init__(self, use_reentrant):
        super().__init__()
        net = small_cnn()
        self.features, self.head = net[:6], net[6:]
        self.use_reentrant = use_reentrant

    def forward(self, x):
        if self.use_reentrant is None:
            return self.head(self.features(x))
        return self.head(checkpoint(self.features, x, use_reentrant=self.use_reentrant))


def test_non_reentrant_checkpointing_gives_the_eager_maps(images):
    dl.register_rule("shifted", _shifted)
    rules = [*RULES, "shifted"]
    expected = dl.attribute(_Checkpointed(None), images, 2, rules=rules)
    assert_maps_equal(dl.attribute(_Checkpointed(False), images, 2, rules=rules), expected)
    assert_maps_equal(
        by_hand(_Checkpointed(False), images, rules), by_hand(_Checkpointed(None), images, rules)
    )


def test_reentrant_checkpointing_is_refused_under_a_rule(images):
    with pytest.raises(RuleNotAppliedError, match=r"use_reentrant=True .*use_reentrant=False"):
        dl.attribute(_Checkpointed(True), images, 2, rule="deconvnet")


# --- worker threads ------------------------------------------------------------------------------


class _ReLUInAThread(nn.Module):
    def __init__(self):
        super().__init__()
        net = small_cnn(inplace=False)
        self.conv, self.rest = net[0], net[1:]

    def forward(self, x):
        result = {}
        worker = threading.Thread(target=lambda: result.update(h=self.rest[0](self.conv(x))))
        worker.start()
        worker.join()
        return self.rest[1:](result["h"])


def test_a_relu_run_by_a_worker_thread_inside_forward_is_refused(images):
    with pytest.raises(
        RuleNotAppliedError, match=r"1 ReLU\(s\) .*plain gradient.*thread started inside forward"
    ):
        dl.attribute(_ReLUInAThread(), images, 2, rule="guided_backprop")
    dl.attribute(_ReLUInAThread(), images, 2, rule="gradient")


def test_the_graph_check_names_each_kind_of_node():
    x = torch.randn(2, 3, requires_grad=True)
    assert node_kind(torch.relu(x * 1).grad_fn) == "relu"
    assert node_kind(torch.relu_(x * 1).grad_fn) == "relu"
    assert node_kind(checkpoint(torch.sin, x, use_reentrant=True).grad_fn) == "checkpoint"
    with dl.backward_rule("deconvnet"):
        assert node_kind(torch.relu(x * 1).grad_fn) is None
    assert node_kind(F.leaky_relu(x).grad_fn) is None
    check_rule_reached([(x * 1).grad_fn], "the 'deconvnet' rule")  # nothing to refuse


# --- user rules that write into p -------------------------------------------------------------


class _ResidualEndingInReLU(nn.Module):
    """A ReLU whose p is the seed itself (the last op) and one whose p is shared with a skip branch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1).double()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5)).double()

    def forward(self, x):
        h = self.conv(x)
        return F.relu(self.head(F.relu(h) + h))


def test_a_rule_that_writes_into_p_changes_only_its_own_map(images):
    model = _ResidualEndingInReLU()
    dl.register_rule("halving_in_place", lambda x, p: p.mul_(0.5))
    dl.register_rule("halving", lambda x, p: p * 0.5)
    got = dl.attribute(model, images, 2, rules=["halving_in_place", "gradient"])
    expected = dl.attribute(model, images, 2, rules=["halving", "gradient"])
    torch.testing.assert_close(got["gradient"], dl.attribute(model, images, 2, rule="gradient"))
    torch.testing.assert_close(got["halving_in_place"], expected["halving"])


# --- NaN and Inf ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_input_is_refused(cnn, images, bad):
    x = images.clone()
    x[1, 0, 3, 3] = bad
    with pytest.raises(NonFiniteError, match=r"^x has .* in example \[1\]: .*torch.nan_to_num"):
        dl.attribute(cnn, x, 2, rule="guided_backprop")
    with pytest.raises(NonFiniteError, match=r"in example \[1\]"):
        dl.project(cnn, x, "3", 1)


class _Overflowing(nn.Module):
    def forward(self, x):
        return x * 1e300 * 1e300


def test_a_non_finite_output_is_refused(images):
    model = nn.Sequential(small_cnn(), _Overflowing())
    with pytest.raises(
        NonFiniteOutputError,
        match=r"the model's output has 0 NaN and 10 infinite values, in examples \[0, 1\]",
    ):
        dl.attribute(model, images, 2, rule="gradient")
