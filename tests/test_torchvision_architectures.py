"""deconvlab's warnings on every torchvision classification architecture: true, complete, readable.

Each net is built with random weights (``weights=None``) and run at batch 1 on the smallest
input it accepts. What the warnings must say is worked out here from the architecture, not
from deconvlab: which kinds of non-ReLU nonlinearity the net runs and how often (its
activation modules, counted, and the softmax inside each attention module), and whether a
ReLU lies on the gradient path (a table per family, from torchvision's source).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

import deconvlab as dl
from deconvlab.observations import NoReLUWarning, UnsupportedActivationWarning

RULES = ["gradient", "deconvnet", "guided_backprop"]
OURS = (NoReLUWarning, UnsupportedActivationWarning)
MAX_CHARS = 600  # a warning longer than this is not read
MAX_EXAMPLES = 3  # example places named per kind

# Left out: only the two nets above 600M parameters. Each takes 2.5 GB and 14-23 s to build and
# run here, as much as ten mid-sized nets, and its blocks run in the smaller nets of its family.
EXCLUDED = {
    "regnet_y_128gf": "645M parameters, 2.6 GB; regnet_y_400mf ... regnet_y_32gf have the same blocks",
    "vit_h_14": "633M parameters, 2.5 GB; vit_b_16, vit_b_32, vit_l_16, vit_l_32 have the same encoder",
}
ARCHITECTURES = [
    name for name in torchvision.models.list_models(module=torchvision.models) if name not in EXCLUDED
]

# Whether a ReLU that the rules modify lies on the path from the output to the input.
RELU_ON_PATH = {
    "alexnet": True,
    "densenet": True,  # nn.ReLU and F.relu
    "googlenet": True,  # F.relu in BasicConv2d
    "inception": True,  # F.relu in BasicConv2d
    "mnasnet": True,
    "mobilenet_v3": True,  # nn.ReLU in the early blocks and in every squeeze-excitation, beside Hardswish
    "regnet": True,  # RegNetY adds squeeze-excitation with a Sigmoid gate
    "resnet": True,
    "resnext": True,
    "wide_resnet": True,
    "shufflenet": True,
    "squeezenet": True,
    "vgg": True,
    "convnext": False,  # GELU
    "efficientnet": False,  # SiLU, and Sigmoid gates (V2 as well)
    "maxvit": False,  # GELU, SiLU in squeeze-excitation, Tanh in the head
    "mobilenet_v2": False,  # ReLU6 is a clamp (nn.ReLU6 is an nn.Hardtanh), not a ReLU
    "swin_v2": False,  # its only ReLU is in the position-bias MLP, run on a constant coordinate table
    "swin": False,  # GELU
    "vit": False,  # GELU
}

# Non-ReLU activation modules -> the kind a reader expects named. Exact types: nn.ReLU6 is a subclass
# of nn.Hardtanh, and a model built of nn.ReLU6 says ReLU6.
MODULE_KINDS: dict[type, str] = {
    nn.GELU: "GELU",
    nn.SiLU: "SiLU",
    nn.Sigmoid: "Sigmoid",
    nn.Hardsigmoid: "Hardsigmoid",
    nn.Hardswish: "Hardswish",
    nn.ReLU6: "ReLU6",
    nn.Hardtanh: "Hardtanh",
    nn.Tanh: "Tanh",
    nn.Softmax: "Softmax",
    nn.Mish: "Mish",
    nn.ELU: "ELU",
    nn.LeakyReLU: "LeakyReLU",
    nn.PReLU: "PReLU",
    nn.Softplus: "Softplus",
}
# Modules whose forward applies a nonlinearity as a function, once per call: the attention softmax.
FUNCTIONAL_KINDS: dict[type, str] = {
    ShiftedWindowAttention: "Softmax",  # F.softmax in shifted_window_attention
    ShiftedWindowAttentionV2: "Softmax",  # the same; its torch.sigmoid is on the constant bias table
    RelativePositionalMultiHeadAttention: "Softmax",  # F.softmax (MaxViT)
    nn.MultiheadAttention: "Softmax",  # inside F.multi_head_attention_forward (ViT)
}

# Smallest input each net accepts, where 32 px is too small.
SIZES = {
    "alexnet": 64,  # 63 px at least: a stride-4 conv and three stride-2 max-pools
    "inception_v3": 75,  # its documented minimum
    "maxvit_t": 224,  # every stage's grid must split into 7 x 7 partitions after five halvings: 7 * 2**5
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These batch-1 nets gain nothing from a second thread; on a shared machine OpenMP's waiting
    threads made them 5-30x slower (resnet50: 0.15 s with one thread, 1-4 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def family(name: str) -> str:
    for prefix in sorted(RELU_ON_PATH, key=len, reverse=True):
        if name.startswith(prefix):
            return prefix
    raise AssertionError(f"new torchvision architecture {name!r}: add its family to RELU_ON_PATH")


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """``name`` with random weights in eval mode, and a float32 batch of one small image."""
    kwargs: dict[str, object] = {}
    size = SIZES.get(name, 32)
    if name.startswith("vit_"):  # a fixed input size, set by the builder: 2 x 2 patches
        size = 2 * int(name.rsplit("_", 1)[1])
        kwargs["image_size"] = size
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = True  # what weights=None does, without the FutureWarning saying so
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    return model, torch.randn(1, 3, size, size, dtype=torch.float32)


def expected_kinds(model: nn.Module) -> Counter:
    """``{kind: calls}`` of the non-ReLU nonlinearities ``model`` runs, from its modules."""
    kinds: Counter = Counter()
    for module in model.modules():
        kind = MODULE_KINDS.get(type(module)) or FUNCTIONAL_KINDS.get(type(module))
        if kind is not None:
            kinds[kind] += 1
        elif type(module).__module__ == nn.modules.activation.__name__:
            assert type(module) is nn.ReLU, (
                f"{type(module).__name__}: add it to MODULE_KINDS or FUNCTIONAL_KINDS"
            )
    return kinds


_GROUP = re.compile(r"(\w+) ×(\d+) calls? ")
_PLACE = re.compile(r"'([^']*)'(?: \((\w+)\))?")  # a module path, and its type if given


def named_kinds(message: str) -> dict[str, tuple[int, list[tuple[str, str]], bool]]:
    """``{kind: (calls, [(path, type or ""), ...], more places left out)}`` parsed from a warning."""
    heads = list(_GROUP.finditer(message))
    groups = {}
    for head, after in zip(heads, [*heads[1:], None]):
        body = message[head.end() : after.start() if after else len(message)]
        groups[head[1]] = (int(head[2]), _PLACE.findall(body), "..." in body or "…" in body)
    return groups


def check_places(model: nn.Module, kind: str, calls: int, places: list, more: bool) -> list[str]:
    """What is wrong with the example places named for ``kind``."""
    problems = []
    modules = dict(model.named_modules())
    if not 1 <= len(places) <= MAX_EXAMPLES:
        problems.append(f"{kind}: {len(places)} example places, expected 1 to {MAX_EXAMPLES}")
    if more != (len(places) < calls):
        problems.append(
            f"{kind}: '...' must say exactly that places were left out ({len(places)} of {calls} shown)"
        )
    for path, type_name in places:
        module = modules.get(path)
        if module is None or type_name not in ("", type(module).__name__):
            problems.append(f"{kind}: no {type_name or 'module'} at {path!r} in the model")
        elif MODULE_KINDS.get(type(module), FUNCTIONAL_KINDS.get(type(module))) != kind:
            problems.append(f"{kind}: the example {path!r} ({type(module).__name__}) does not run a {kind}")
    return problems


def differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` differ beyond rounding, relative to their size (random-init maps can be ~1e-13)."""
    return bool((a - b).norm() > 1e-3 * torch.max(a.norm(), b.norm()))


def split(caught: list) -> list:
    """deconvlab's warnings; any other one is emitted again, for pytest to report."""
    ours = []
    for w in caught:
        if issubclass(w.category, OURS):
            ours.append(w)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ours


def test_every_architecture_has_a_family():
    for name in ARCHITECTURES:
        family(name)
    assert set(EXCLUDED) <= set(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_warnings_are_true_complete_and_readable(name):
    model, x = build(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = dl.attribute(model, x, target=0, rules=RULES)  # the line the warnings must point at
    ours = split(caught)
    problems = []

    for w in ours:
        message = str(w.message)
        if w.filename != __file__:
            problems.append(f"{w.category.__name__} points at {w.filename}:{w.lineno}, not at the caller")
        if len(message) >= MAX_CHARS:
            problems.append(f"{w.category.__name__} has {len(message)} characters (< {MAX_CHARS}): {message}")

    relu = RELU_ON_PATH[family(name)]
    no_relu = [w for w in ours if w.category is NoReLUWarning]
    if len(no_relu) != (0 if relu else 1):
        problems.append(f"{len(no_relu)} NoReLUWarning(s), expected {0 if relu else 1} ({relu=})")
    if relu and not differ(maps["deconvnet"], maps["gradient"]):
        problems.append("a ReLU net whose DeConvNet map equals its gradient")
    if not relu and not all(torch.equal(maps[rule], maps["gradient"]) for rule in RULES):
        problems.append("no ReLU on the path, yet the rules' maps differ from the gradient")

    expected = expected_kinds(model)
    unsupported = [str(w.message) for w in ours if w.category is UnsupportedActivationWarning]
    if len(unsupported) != (1 if expected else 0):
        problems.append(
            f"{len(unsupported)} UnsupportedActivationWarning(s), expected {1 if expected else 0}"
        )
    groups = named_kinds(unsupported[0]) if unsupported else {}
    named = Counter({kind: calls for kind, (calls, _, _) in groups.items()})
    if named != expected:
        problems.append(f"kinds named {dict(named)}, expected {dict(expected)}")
    for kind, (calls, places, more) in groups.items():
        problems += check_places(model, kind, calls, places, more)

    assert not problems, (
        f"{name}:\n" + "\n".join(problems) + "\nwarnings:\n" + "\n".join(str(w.message) for w in ours)
    )


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])  # nn.ReLU in place; F.relu
def test_no_warning_for_a_relu_net_inside_the_users_own_block(name):
    model, x = build(name)
    outside = dl.attribute(model, x, target=0, rules=RULES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dl.backward_rule("deconvnet"):
            inside = dl.attribute(model, x, target=0, rules=RULES)
    assert split(caught) == []
    assert all(torch.equal(inside[rule], outside[rule]) for rule in RULES)
