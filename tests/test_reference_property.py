"""Property-based check: deconvlab against the hand-written reference, on random networks.

Hypothesis builds small networks from convolutions (with strides and padding),
max-pooling, linear heads, residual blocks, pre-activations that also feed a skip
path, and every spelling of ReLU, in place or not, one module reused. For each,
all three rules must match :mod:`reference_backprop` in float64.
"""

import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_backprop import SPELLINGS, build, out_shape, reference_signal

import deconvlab as dl

RULES = ("gradient", "deconvnet", "guided_backprop")

spelling = st.sampled_from(SPELLINGS)
block = st.one_of(
    st.tuples(
        st.just("conv"),
        st.integers(1, 3),
        st.sampled_from([1, 3]),
        st.sampled_from([1, 2]),
        st.sampled_from([0, 1]),
    ),
    st.tuples(st.just("relu"), spelling),
    st.tuples(st.just("pool")),
    st.tuples(st.just("skip_pre"), spelling),
    st.tuples(st.just("residual"), spelling),
)


INPLACE = {"module_inplace", "shared_module", "F.relu_inplace", "F.relu_", "torch.relu_", "Tensor.relu_"}


def _valid(specs: list[tuple], channels: int = 2, size: int = 8) -> bool:
    for before, after in zip(specs, specs[1:]):
        # Plain autograd cannot differentiate an in-place ReLU that overwrites the
        # output a previous ReLU saved for its backward; no library can.
        if before[0] == "relu" and after[0] == "relu" and after[1] in INPLACE:
            return False
    for spec in specs:
        if spec[0] == "pool" and size < 2:
            return False
        if spec[0] == "conv" and size + 2 * spec[4] < spec[2]:
            return False
        channels, size = out_shape(spec, channels, size)
        if size < 1:
            return False
    return True


networks = st.lists(block, min_size=1, max_size=6).filter(_valid)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=networks, seed=st.integers(0, 2**16), targets=st.lists(st.integers(0, 2), min_size=2, max_size=2)
)
def test_every_rule_matches_the_reference(specs, seed, targets):
    torch.manual_seed(seed)
    net = build(specs)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    seed_tensor = torch.zeros(2, 3, dtype=torch.float64)
    seed_tensor[torch.arange(2), torch.tensor(targets)] = 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals = dl.attribute(net, x, targets, rules=list(RULES))
    if any(issubclass(w.category, dl.NoReLUWarning) for w in caught):  # then the warning is true:
        torch.testing.assert_close(signals["deconvnet"], signals["gradient"], rtol=0, atol=0)
        torch.testing.assert_close(signals["guided_backprop"], signals["gradient"], rtol=0, atol=0)
    for rule in RULES:
        expected = reference_signal(net, x, seed_tensor, rule)
        torch.testing.assert_close(signals[rule], expected, rtol=1e-9, atol=1e-10, msg=f"{rule}: {specs}")


@settings(max_examples=25, deadline=None)
@given(specs=networks, seed=st.integers(0, 2**16))
def test_context_manager_matches_the_reference(specs, seed):
    """The manual path (context + .backward()) gives the same signal as attribute."""
    torch.manual_seed(seed)
    net = build(specs)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    with dl.backward_rule("guided", warn=False):
        net(x * 1)[0, 1].backward()  # a model may ReLU its input in place; x is a leaf
    seed_tensor = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(x.grad, reference_signal(net, x.detach(), seed_tensor, "guided_backprop"))
