r"""Notebook 05, *Under the hood: your own model*: the models its exercises use, and their checkers.

A researcher who brings a model meets four questions that the theory answers in advance:
which activations the rules leave alone, whether DeConvNet's map can depend on the input at all,
how to apply a rule to some layers only, and how to name one output unit of a dense output.
Throughout, :math:`\operatorname{ReLU}^*(x, p)` is the rule's backward of ReLU, ``x`` its forward
input and ``p`` the signal from above.

Exercises
---------
5.1 :func:`check_warned_names`: which nonlinearities of :class:`MixedActivationNet` the warning names.
5.2 :func:`check_input_independent`: which of :func:`candidate_models` give one DeConvNet map for every input.
5.3 :func:`check_far_below`: what the guided rule with threshold, ``p·[x > t]·[p > 0]``, becomes for t ≪ 0.
5.4 :func:`check_guided_above`: a rule map with guided backprop above ``features.6`` of the teaching model.
5.5 :func:`check_recovery_prediction`: which rule map's maps resemble the image's edges more.
5.6 :func:`check_dense_target`: the target of one pixel of one class of a dense (N, C, H, W) output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..rules import get_rule
from .feedback import checker, wrong

__all__ = [
    "DENSE_TARGET",
    "GUIDED_ABOVE",
    "INPUT_INDEPENDENT",
    "WARNED",
    "Candidate",
    "MixedActivationNet",
    "candidate_models",
    "check_dense_target",
    "check_far_below",
    "check_guided_above",
    "check_input_independent",
    "check_recovery_prediction",
    "check_warned_names",
    "deconvnet_same_for_all",
    "dense_model",
    "recovery_maps",
]


def _init(model: nn.Module, seed: int) -> nn.Module:
    """He-initialised weights and small biases drawn from ``seed``; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):  # running statistics as if trained
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


# --- 5.1 which nonlinearities the warning names --------------------------------------------------


class MixedActivationNet(nn.Module):
    """A CNN with six nonlinearities in six spellings, for 3-channel images (six classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(6))
        self.silu = nn.SiLU()
        self.leaky = nn.LeakyReLU(0.1)
        self.relu6 = nn.ReLU6()
        self.fc = nn.Linear(8, 6)

    def forward(self, h: Tensor) -> Tensor:
        h = self.silu(self.convs[0](h))  # nn.SiLU
        h = F.gelu(self.convs[1](h))  # GELU, a function call
        h = self.leaky(self.convs[2](h))  # nn.LeakyReLU(0.1)
        h = self.relu6(self.convs[3](h))  # nn.ReLU6
        h = self.convs[4](h).relu()  # Tensor.relu
        h = self.convs[5](h).clamp(min=0)  # max(h, 0) written as a clamp
        return self.fc(h.mean(dim=(2, 3)))


def mixed_activation_net(seed: int = 0) -> MixedActivationNet:
    """:class:`MixedActivationNet` with weights drawn from ``seed``, in eval mode."""
    model = MixedActivationNet()
    _init(model, seed)
    return model


#: The nonlinearities of :class:`MixedActivationNet` that deconvlab's warning names.
WARNED = ("SiLU", "GELU", "LeakyReLU", "ReLU6")

_SPELLINGS = {
    "silu": "SiLU",
    "swish": "SiLU",
    "gelu": "GELU",
    "leakyrelu": "LeakyReLU",
    "relu6": "ReLU6",
    "relu": "ReLU",
    "clamp": "clamp",
    "clampmin0": "clamp",
}

_WHY_WARNED = {
    "SiLU": "SiLU, x·sigmoid(x), is smooth and not a ReLU: no rule changes it, and the warning names it.",
    "GELU": (
        "F.gelu is a function call, not a module, but deconvlab watches calls, not modules: the warning "
        "names GELU too."
    ),
    "LeakyReLU": (
        "LeakyReLU keeps a slope of 0.1 at x < 0, so it is not a ReLU: the rules leave it alone and the "
        "warning names it."
    ),
    "ReLU6": (
        "ReLU6, min(max(x, 0), 6), is not a ReLU (its gradient is also 0 above 6): the rules leave it alone "
        "and the warning names it."
    ),
}


def _activation_name(item: object) -> str:
    text = str(item).strip().lower()
    for prefix in ("torch.nn.functional.", "torch.tensor.", "torch.nn.", "torch.", "nn.", "f.", "tensor."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = "".join(ch for ch in text if ch.isalnum())
    return _SPELLINGS.get(text, str(item))


@checker("5.1 Which nonlinearities does the warning name?")
def check_warned_names(names: object) -> None:
    """``names``: the nonlinearities of :class:`MixedActivationNet` that ``dl.attribute`` names in
    its :class:`~deconvlab.UnsupportedActivationWarning`, in any spelling (``"GELU"``, ``"F.gelu"``)."""
    if isinstance(names, str):
        names = {names}
    if not isinstance(names, (set, frozenset, list, tuple)):
        raise wrong("Give a set of names, such as {'GELU', 'SiLU'}.")
    said = {_activation_name(name) for name in names}
    if "ReLU" in said:
        raise wrong(
            "Not ReLU: h.relu() is a ReLU call, so the rule changes its backward; the warning names only "
            "what the rules leave alone."
        )
    if "clamp" in said:
        raise wrong(
            "Not clamp: deconvlab does not know h.clamp(min=0) as an activation at all, so it names "
            "nothing, and no rule changes its backward either. A ReLU written as a clamp silently keeps "
            "its plain gradient: write F.relu in your own models."
        )
    for name in ("ReLU6", "GELU", "LeakyReLU", "SiLU"):
        if name not in said:
            raise wrong(f"One is missing. {_WHY_WARNED[name]}")
    extra = sorted(said - set(WARNED))
    if extra:
        raise wrong(f"{extra[0]!r} does not run in this model: read its forward again.")


# --- 5.2 does DeConvNet see the input? -------------------------------------------------------------


class _Residual(nn.Module):
    """conv, batch norm, ReLU, conv, batch norm, plus the skip connection, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, h: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h)))))
        return F.relu(out + h)


def _strided(activation: Callable[[], nn.Module] = nn.ReLU) -> list[nn.Module]:
    return [
        nn.Conv2d(3, 16, 3, padding=1),
        activation(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        activation(),
    ]


class Candidate(NamedTuple):
    """One model of exercise 5.2: what it is, and how to build it."""

    description: str
    build: Callable[[], nn.Module]


def candidate_models() -> dict[str, Candidate]:
    """The six models of exercise 5.2, by letter; each takes ``(N, 3, H, W)`` images, six classes."""
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 6)]

    def build(*layers: nn.Module) -> Callable[[], nn.Module]:
        return lambda: _init(nn.Sequential(*layers), 0)

    return {
        "a": Candidate(
            "convolution, ReLU, strided convolution, ReLU; average over positions; linear",
            build(*_strided(), *head),
        ),
        "b": Candidate(
            "as (a), with a 2 × 2 max-pooling after the first ReLU",
            build(*_strided()[:2], nn.MaxPool2d(2), *_strided()[2:], *head),
        ),
        "c": Candidate(
            "as (a), then a residual block: convolution, batch norm (eval mode), ReLU, convolution, "
            "batch norm, plus the skip connection, ReLU",
            build(*_strided(), _Residual(32), *head),
        ),
        "d": Candidate("as (a), with GELU in place of every ReLU", build(*_strided(nn.GELU), *head)),
        "e": Candidate(
            "as (a), with a ReLU on the class scores at the end", build(*_strided(), *head, nn.ReLU())
        ),
        "f": Candidate(
            "as (a), with the maximum over positions (global max-pooling) in place of the average",
            build(*_strided(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 6)),
        ),
    }


#: The letters of :func:`candidate_models` whose DeConvNet map is the same for every input.
INPUT_INDEPENDENT = frozenset({"a", "c", "e"})


def deconvnet_same_for_all(model: nn.Module, images: Tensor, target: int = 0) -> bool:
    """Whether DeConvNet's map of ``target`` is the same, bit for bit, for every image of ``images``."""
    import warnings

    from ..attribution import attribute

    with warnings.catch_warnings():  # GELU's warning is exercise 5.1's subject, not this one's
        warnings.simplefilter("ignore")
        maps = attribute(model, images, target, rule="deconvnet")
    return all(torch.equal(single, maps[0]) for single in maps[1:])


_WHY_DEPENDS = {
    "b": "(b) has max-pooling: its backward sends the signal back through the switches, the positions of the "
    "maxima, and they change with the image.",
    "d": "(d) uses GELU, which no rule changes: its plain gradient reads x, so the map changes with the "
    "image.",
    "f": "(f): global max-pooling is max-pooling too; the position of each channel's maximum (its switch) "
    "changes with the image.",
}
_WHY_SAME = {
    "a": "(a) is a pool-free ReLU network: DeConvNet's p·[p > 0] never reads x, and the backward of a "
    "convolution, an average and a linear layer uses only the weights.",
    "c": "(c): a skip connection adds two paths, each backward is fixed, and batch norm in eval mode is a "
    "fixed affine map; nothing in DeConvNet's backward reads the input.",
    "e": "(e): DeConvNet ignores x at every ReLU, the one on the class scores included (there p = 1 > 0 "
    "passes, whatever the score).",
}


@checker("5.2 Does DeConvNet see your input?")
def check_input_independent(letters: object) -> None:
    """``letters``: the models of :func:`candidate_models` whose DeConvNet map is the same for every input."""
    if isinstance(letters, str):
        letters = set(letters.replace(",", " ").split()) if len(letters) > 1 else {letters}
    if not isinstance(letters, (set, frozenset, list, tuple)):
        raise wrong("Give a set of letters, such as {'a', 'b'}, or set() for none.")
    said = {str(letter).strip("() ").lower() for letter in letters}
    unknown = sorted(said - set("abcdef"))
    if unknown:
        raise wrong(f"{unknown[0]!r} is none of the models: the letters are a to f.")
    for letter in sorted(said - INPUT_INDEPENDENT):
        raise wrong(f"Not {letter}. {_WHY_DEPENDS[letter]}")
    for letter in sorted(INPUT_INDEPENDENT - said):
        raise wrong(f"You missed one. {_WHY_SAME[letter]}")


# --- 5.3 negative thresholds ------------------------------------------------------------------------


@checker("5.3 What do negative values of t do?")
def check_far_below(rule: object) -> None:
    """``rule``: the built-in rule that ``p·[x > t]·[p > 0]`` equals once ``t`` is below every ReLU
    input (``"none"`` if it equals none of them)."""
    if not isinstance(rule, str):
        raise wrong(
            "Answer with a rule name as a string: 'gradient', 'deconvnet', 'guided_backprop' or 'none'."
        )
    if rule.strip().lower() == "none":
        raise wrong(
            "It does equal one of them. Below every ReLU input, [x > t] is 1 at every unit: what is left of "
            "p·[x > t]·[p > 0]?"
        )
    try:
        name = get_rule(rule.strip().lower().replace(" ", "_").replace("-", "_")).name
    except ValueError:
        raise wrong(
            f"{rule!r} is no rule: answer 'gradient', 'deconvnet', 'guided_backprop' or 'none'."
        ) from None
    if name == "guided_backprop":
        raise wrong(
            "That is t = 0. Lowering t below 0 opens the gate [x > t] also for units that were off "
            "(t < x ≤ 0): what is left once it is open everywhere?"
        )
    if name == "gradient":
        raise wrong(
            "The gate [p > 0] stays in the rule for every t, so a negative p never passes, while the "
            "gradient passes it wherever x > 0."
        )
    if name != "deconvnet":
        raise wrong(f"{rule!r} is a rule of your own; answer with a built-in rule or 'none'.")


# --- 5.4 and 5.5 rule maps -------------------------------------------------------------------------

#: For exercise 5.4: the rule each ReLU of the teaching model gets, by module path.
GUIDED_ABOVE = {
    "features.1": "gradient",
    "features.4": "gradient",
    "features.7": "guided_backprop",
    "features.9": "guided_backprop",
    "features.12": "guided_backprop",
}


def _teaching_image() -> Tensor:
    from ..data import shapes

    return shapes(1, seed=0).images


@checker("5.4 Guided backprop above features.6 only")
def check_guided_above(mapping: object, model: nn.Module | None = None) -> str:
    """``mapping``: a rule map (dict or ``dl.RuleMap``) that gives the teaching model's ReLUs after
    ``features.6`` guided backprop and the ReLUs before it the gradient (see :data:`GUIDED_ABOVE`)."""
    from ..attribution import explain_rules
    from ..models import teaching_model
    from ..rule_maps import RuleMap

    if isinstance(mapping, str):
        raise wrong(
            f"{mapping!r} is one rule for every ReLU: give a dict {{where: rule}} or a dl.RuleMap, so that "
            "the rule depends on the layer."
        )
    if not isinstance(mapping, (Mapping, RuleMap)):
        raise wrong(f"Give a dict {{where: rule}} or a dl.RuleMap, not a {type(mapping).__name__}.")
    model = teaching_model() if model is None else model
    try:
        table = explain_rules(model, _teaching_image(), mapping)
    except (TypeError, ValueError) as error:
        raise wrong(f"deconvlab refuses the map: {error}") from None
    for row in table:
        expected = GUIDED_ABOVE.get(row.module)
        if expected is None or row.rule == expected:
            continue
        source = "the default" if row.decided_by is None else f"the entry {row.entry!r}"
        side = "above" if expected == "guided_backprop" else "below"
        glob = ""
        if row.entry.endswith("*") and row.module == row.entry.rstrip("*"):
            glob = f" A glob such as {row.entry!r} also matches {row.module!r} itself."
        raise wrong(
            f"The ReLU in {row.module} gets {row.rule} from {source}, but it is {side} features.6: it "
            f"should get {expected}.{glob}"
        )
    return "Each ReLU gets its rule: " + ", ".join(f"{row.module} {row.rule}" for row in table) + "."


def recovery_maps(model: nn.Module, images: Tensor, labels: Any) -> dict[str, Tensor]:
    """Guided backprop's map, the gradient's, and the two halves of exercise 5.5, from one forward pass.

    ``"A: guided on top"`` gives guided backprop to the teaching model's three upper ReLUs (after
    ``features.6``) and the gradient to the two lower ones; ``"B: guided below"`` the reverse.
    """
    from ..attribution import attribute
    from ..rule_maps import RuleMap

    guided = "guided_backprop"
    top = RuleMap(
        {"features.7": guided, "features.9": guided, "features.12": guided}, name="A: guided on top"
    )
    bottom = RuleMap({"features.1": guided, "features.4": guided}, name="B: guided below")
    return attribute(model, images, labels, rules=["gradient", "guided_backprop", top, bottom])


@checker("5.5 Where does image recovery come from?")
def check_recovery_prediction(answer: object) -> None:
    """``answer``: ``"A"`` (guided on top), ``"B"`` (guided below) or ``"same"``: whose maps follow the
    image's edges more (a higher edge correlation), in most images."""
    text = str(answer).strip().strip("()").lower() if isinstance(answer, str) else None
    if text not in {"a", "b", "same"}:
        raise wrong("Answer 'A', 'B' or 'same'.")
    if text == "a":
        raise wrong(
            "Not A. Think of what the upper layers' gates can select: a few coarse positions. Which gates "
            "sit at the full resolution of the image, next to the max-pooling switches?"
        )
    if text == "same":
        raise wrong(
            "They differ in most images, and by a lot: the two halves of the network do not contribute "
            "equally to the edges in guided backprop's map."
        )


# --- 5.6 a dense output ------------------------------------------------------------------------------


def dense_model(seed: int = 0) -> nn.Sequential:
    """A fully convolutional net: ``(N, 3, 64, 64)`` images to ``(N, 6, 32, 32)`` scores, per position."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 6, 1),
    )
    _init(model, seed)
    return model


#: Exercise 5.6: class 4 ("star" in :data:`deconvlab.data.CLASSES`) at output row 10, column 20.
DENSE_TARGET = (4, 10, 20)


def _dense_batch() -> Tensor:
    from ..data import shapes

    return shapes(3, seed=0).images


@checker("5.6 Name one output unit of a dense output")
def check_dense_target(target: object) -> None:
    """``target``: what to pass as ``dl.attribute(dense_model(), x, target)`` to explain class 4 at output
    row 10, column 20 of every image in the batch (:data:`DENSE_TARGET`)."""
    from ..attribution import attribute

    c, i, j = DENSE_TARGET
    if isinstance(target, bool) or isinstance(target, int):
        raise wrong(
            "An int names a class, and on a dense output deconvlab seeds that class at every position: the "
            "map explains the whole class map, not one pixel. Add the row and column."
        )
    per_example = isinstance(target, list) and not all(isinstance(item, tuple) for item in target)
    if per_example or (isinstance(target, Tensor) and target.dim() == 1):
        raise wrong(
            "A list (or 1-D tensor) gives one class per example of the batch, not one position: a unit of "
            "an output with more than two dimensions is a tuple (Captum's convention)."
        )
    if isinstance(target, tuple):
        if len(target) == 2:
            raise wrong(
                "Two numbers name a position but not a class: the output has three dimensions after the "
                "batch, (class, row, column)."
            )
        if len(target) == 4:
            raise wrong("Leave out the batch index: the tuple names the same unit in every example.")
        if len(target) == 3 and sorted(map(int, target)) == sorted(DENSE_TARGET) and target != DENSE_TARGET:
            if tuple(target) == (c, j, i):
                raise wrong("Row and column are swapped: the output is (N, class, row, column).")
            raise wrong("The order is (class, row, column), as the output's dimensions after the batch.")
    model, x = dense_model(), _dense_batch()
    seed = torch.zeros(len(x), 6, 32, 32)
    seed[:, c, i, j] = 1.0
    expected = attribute(model, x, seed)
    try:
        got = attribute(model, x, target)  # type: ignore[call-overload]
    except (TypeError, ValueError, IndexError) as error:
        raise wrong(f"dl.attribute refuses this target: {error}") from None
    if not torch.allclose(got, expected, rtol=1e-5, atol=1e-7):
        raise wrong(
            f"That explains another unit: the question asks for class {c} at row {i}, column {j}, "
            "the same in every image."
        )
