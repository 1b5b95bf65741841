r"""Notebook 01, *One equation, three rules*: the rules as readable code, and the exercises' checkers.

The library's rules (:mod:`deconvlab.rules`) are fused: autograd's own ReLU backward
(``threshold_backward``) and a clamp, with no boolean mask in memory. Here they are written
as the table reads, :math:`\operatorname{ReLU}^*(x, p)` with ``x`` the ReLU's forward input and
``p`` the signal from above:

============================  ===============================
rule                          readable form
============================  ===============================
``gradient``                  ``p * (x > 0)``
``deconvnet``                 ``p * (p > 0)``
``guided_backprop``           ``p * (x > 0) * (p > 0)``
============================  ===============================

For finite ``x`` and ``p`` both forms give the same numbers (``torch.equal``); their bits differ
only in the sign of some zeros (``-1.0 * False`` is ``-0.0``, the fused form writes ``0.0``).

Exercises
---------
1.1 :func:`check_quadrants`: which quadrants of the ``(x, p)`` plane each rule passes.
1.2 :func:`check_relu_star`: ReLU* for each rule, written by the student.
1.3 :func:`check_guided_function`: guided backprop as the student's own ``torch.autograd.Function``.
1.4 :func:`check_hand_maps`: the three maps of the tiny network, predicted by hand.
1.5 :func:`check_same_for_every_input`: which rules give one map for every input of a pool-free network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..rules import BUILTIN_NAMES, get_rule
from .feedback import NotDone, call_answer, checker, not_done, wrong

__all__ = [
    "QUADRANTS",
    "READABLE",
    "check_guided_function",
    "check_hand_maps",
    "check_quadrants",
    "check_relu_star",
    "check_same_for_every_input",
    "deconvnet",
    "edge_cases",
    "gradient",
    "guided_backprop",
    "guided_check_network",
    "new_tensors",
]


# --- the rules as the table reads them -------------------------------------------------------


def gradient(x: Tensor, p: Tensor) -> Tensor:
    return p * (x > 0)


def deconvnet(x: Tensor, p: Tensor) -> Tensor:
    return p * (p > 0)


def guided_backprop(x: Tensor, p: Tensor) -> Tensor:
    return p * (x > 0) * (p > 0)


#: The readable form of each built-in rule, by name.
READABLE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gradient": gradient,
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
}

#: Values where a rule can go wrong: zeros of both signs, the smallest subnormals, the largest floats.
SPECIAL_VALUES = (-3.0e38, -1.0, -1.0e-45, -0.0, 0.0, 1.0e-45, 1.0, 3.0e38)


def edge_cases(seed: int = 0, n: int = 4096) -> tuple[Tensor, Tensor]:
    """Pairs ``(x, p)`` (float32, 1-D) that test a rule at its edges, and random ones.

    Every pair of :data:`SPECIAL_VALUES` (``x == 0``, ``p == 0``, ``-0.0``, subnormals,
    the largest floats), then ``n`` random normal pairs of which about one in eight has
    ``x == 0`` and one in eight ``p == 0``, drawn from ``seed``.
    """
    special = torch.tensor(SPECIAL_VALUES, dtype=torch.float32)
    grid_x, grid_p = torch.meshgrid(special, special, indexing="ij")
    generator = torch.Generator().manual_seed(seed)
    x, p = torch.randn(2, n, generator=generator)
    x[torch.rand(n, generator=generator) < 0.125] = 0.0
    p[torch.rand(n, generator=generator) < 0.125] = 0.0
    return torch.cat([grid_x.flatten(), x]), torch.cat([grid_p.flatten(), p])


class _NewTensors(TorchFunctionMode):
    """Records each torch call that returns a tensor other than one of its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, Tensor) and not any(out is arg for arg in args):
            name = getattr(func, "__name__", str(func))
            self.made.append(f"{name} -> {str(out.dtype).replace('torch.', '')}")
        return out


def new_tensors(backward: Callable[[Tensor, Tensor], Tensor], x: Tensor, p: Tensor) -> list[str]:
    """The tensors ``backward(x, p)`` allocates, one ``"op -> dtype"`` per new tensor.

    An in-place operation (``clamp_``) allocates nothing and is not listed.
    """
    with _NewTensors() as mode:
        backward(x, p)
    return mode.made


# --- 1.1 quadrants -----------------------------------------------------------------------------

#: The four open quadrants of the (x, p) plane: sign of x, then sign of p.
QUADRANTS = {"++": "x > 0, p > 0", "-+": "x < 0, p > 0", "+-": "x > 0, p < 0", "--": "x < 0, p < 0"}
_GATES = {"gradient": ("x",), "deconvnet": ("p",), "guided_backprop": ("x", "p")}
_LABELS = {"gradient": "the gradient", "deconvnet": "DeConvNet", "guided_backprop": "guided backprop"}


def _label(rule: str, start: bool = False) -> str:
    """How a sentence names the rule (``start``: at the beginning of the sentence)."""
    label = _LABELS[rule]
    return label[0].upper() + label[1:] if start else label


def _gate_text(gates: tuple[str, ...]) -> str:
    return " and ".join(f"[{gate} > 0]" for gate in gates)


def _gates_are(gates: tuple[str, ...] | list[str], state: str) -> str:
    """``"its gate [x > 0] is closed"``, ``"its gates [x > 0] and [p > 0] are open"``."""
    if len(gates) == 1:
        return f"its gate {_gate_text(tuple(gates))} is {state}"
    return f"its gates {_gate_text(tuple(gates))} are {state}"


def _rule_key(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise wrong(f"{what} should name a rule by a string such as 'deconvnet', not {name!r}.")
    try:
        return get_rule(name).name
    except ValueError:
        raise wrong(
            f"{what}: {name!r} is no rule; use 'gradient', 'deconvnet' or 'guided_backprop'."
        ) from None


def _by_rule(answer: object, what: str) -> dict[str, Any]:
    """The student's ``{rule: value}`` dict, keyed by canonical rule names, all three present."""
    if not isinstance(answer, Mapping):
        raise wrong(
            f"{what} should be a dict with one entry per rule, "
            f"{{'gradient': ..., 'deconvnet': ..., 'guided_backprop': ...}}, not a {type(answer).__name__}."
        )
    found = {_rule_key(name, what): value for name, value in answer.items()}
    missing = [name for name in BUILTIN_NAMES if name not in found]
    if missing:
        raise wrong(f"{what} has no entry for {', '.join(map(repr, missing))}: give all three rules.")
    return found


def _quadrant_set(value: object, rule: str) -> set[str]:
    if value is Ellipsis or value is None:
        raise not_done(f"Fill in the quadrants of {rule!r}: replace its ... with a set such as {{'++'}}.")
    if isinstance(value, str):
        value = {value}
    if not isinstance(value, (set, frozenset, list, tuple)):
        raise wrong(f"The quadrants of {rule!r} should be a set of strings such as {{'++', '-+'}}.")
    quadrants = set()
    for item in value:
        text = str(item).replace(" ", "").replace(",", "")
        if text not in QUADRANTS:
            raise wrong(
                f"{item!r} is no quadrant: write the sign of x then the sign of p, one of "
                f"{', '.join(map(repr, QUADRANTS))}."
            )
        quadrants.add(text)
    return quadrants


def _passes(rule: str, quadrant: str) -> bool:
    x, p = (0.5 if sign == "+" else -0.5 for sign in quadrant)
    return bool(get_rule(rule).backward(torch.tensor(x), torch.tensor(p)) != 0)


@checker("1.1 Which quadrants does each rule pass?")
def check_quadrants(passes: object) -> None:
    """``passes``: ``{rule: set of quadrants}`` where ReLU* is non-zero, e.g. ``{"++", "+-"}``.

    A quadrant is the sign of x then the sign of p (see :data:`QUADRANTS`).
    """
    answer = _by_rule(passes, "passes")
    for rule in BUILTIN_NAMES:
        said = _quadrant_set(answer[rule], rule)
        gates = _GATES[rule]
        for quadrant, where in QUADRANTS.items():
            truth = _passes(rule, quadrant)
            if quadrant in said and not truth:
                closed = [gate for gate, sign in zip(("x", "p"), quadrant) if gate in gates and sign == "-"]
                raise wrong(
                    f"{_label(rule, True)} does not pass p at {where}: {_gates_are(closed, 'closed')} there."
                )
            if quadrant not in said and truth:
                extra = " It never reads x." if rule == "deconvnet" and quadrant[0] == "-" else ""
                opened = _gates_are(gates, "open")
                raise wrong(f"{_label(rule, True)} also passes p at {where}: {opened} there.{extra}")


# --- 1.2 ReLU* by the student ---------------------------------------------------------------


def _grid() -> tuple[Tensor, Tensor]:
    """x and p on a 9 × 9 grid of [-1, 1]² with both axes on it (x == 0 and p == 0 exactly)."""
    axis = torch.tensor([-1.0, -0.5, -0.25, -0.001, 0.0, 0.001, 0.25, 0.5, 1.0])
    x, p = torch.meshgrid(axis, axis, indexing="ij")
    return x.contiguous(), p.contiguous()


def _sign_word(value: float, name: str) -> str:
    return f"{name} < 0" if value < 0 else f"{name} = 0" if value == 0 else f"{name} > 0"


# Regions of the (x, p) plane in the order a mistake is reported: the open quadrants, then the axes.
_REGIONS = [(1, 1), (-1, 1), (1, -1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0), (0, 0)]


def _value_text(value: float, p: float) -> str:
    if value == p and p != 0:
        return "p"
    if value == 0:
        return "0"
    if value == -p:
        return "-p"
    return f"{value:g}"


def _mismatch(rule: str, got: Tensor, x: Tensor, p: Tensor, whose: str) -> str | None:
    """The first region where ``got`` differs from the rule, in a sentence; None when it agrees."""
    expected = get_rule(rule).backward(x, p)
    differs = ~torch.isclose(got.to(expected.dtype), expected, rtol=1e-6, atol=0.0)
    if not differs.any():
        return None
    for sx, sp in _REGIONS:
        region = (torch.sign(x) == sx) & (torch.sign(p) == sp) & differs
        if region.any():  # report the point nearest (0.5·sx, 0.25·sp): |x| ≠ |p| tells x from p
            distance = (x - 0.5 * sx).abs() + (p - 0.25 * sp).abs()
            index = int(torch.where(region, distance, torch.inf).flatten().argmin())
            xv, pv = float(x.flatten()[index]), float(p.flatten()[index])
            gv = float(got.flatten()[index])
            break
    gates = _GATES[rule]
    closed = [gate for gate in gates if (xv if gate == "x" else pv) <= 0]
    if closed:
        says = f"gives 0 ({_gates_are(closed, 'closed')} there)"
    else:
        says = f"passes p ({_gates_are(gates, 'open')} there)"
    where = f"{_sign_word(xv, 'x')} and {_sign_word(pv, 'p')}"
    hint = ""
    if xv == 0 and "x" in closed:
        hint = " The gate is closed at x = 0, as in autograd: compare with x > 0, not x >= 0."
    elif pv == 0 and gv != 0:
        hint = " At p = 0 every rule gives 0."
    elif rule == "deconvnet" and xv <= 0 < pv:
        hint = " DeConvNet's gate reads only p."
    return (
        f"At {where} {_label(rule)} {says}, but {whose} gave "
        f"{_value_text(gv, pv)} (at x = {xv:g}, p = {pv:g}).{hint}"
    )


def _run_rule(function: object, rule: str) -> Tensor:
    """The student's ``function(x, p)`` on the grid, checked for type, shape and side effects."""
    x, p = _grid()
    x_in, p_in = x.clone(), p.clone()
    what = f"Your {rule}(x, p)"
    try:
        got = call_answer(function, x_in, p_in, what=what)  # type: ignore[arg-type]
    except Exception as error:
        if "ambiguous" in str(error):
            raise wrong(
                f"{what} uses `if` on a tensor: x and p are whole tensors here, so compare them "
                "elementwise (x > 0 is a tensor of booleans) and multiply."
            ) from None
        raise
    if not isinstance(got, Tensor):
        raise wrong(f"{what} should return a tensor, but it returned a {type(got).__name__}.")
    if not (torch.equal(x_in, x) and torch.equal(p_in, p)):
        raise wrong(f"{what} changed x or p in place: return a new tensor and leave the inputs alone.")
    if got.dtype == torch.bool:
        raise wrong(f"{what} returns booleans, the gate alone: multiply the gate by p.")
    if got.shape != p.shape:
        raise wrong(f"{what} returned shape {tuple(got.shape)} for x and p of shape {tuple(p.shape)}.")
    return got


@checker("1.2 Write ReLU* for each rule")
def check_relu_star(mine: object) -> str:
    """``mine``: ``{rule: function(x, p) -> Tensor}``, checked on a 9 × 9 grid of the (x, p) plane."""
    functions = _by_rule(mine, "mine")
    waiting = []
    for rule in BUILTIN_NAMES:
        try:
            got = _run_rule(functions[rule], rule)
        except NotDone:
            waiting.append(rule)
            continue
        x, p = _grid()
        said = _mismatch(rule, got, x, p, "yours")
        if said:
            raise wrong(said)
    if waiting:
        names = waiting[0] if len(waiting) == 1 else f"{', '.join(waiting[:-1])} and {waiting[-1]}"
        verb, where = ("returns", "its body") if len(waiting) == 1 else ("return", "their bodies")
        raise not_done(f"Your {names} {verb} nothing yet: replace the ... in {where}.")
    return "All three agree with the library's rules on the whole grid, the axes x = 0 and p = 0 included."


# --- 1.3 guided backprop as the student's own autograd Function ---------------------------------


class _FunctionReLU(nn.Module):
    """Calls ``function.apply`` where an ``nn.ReLU`` would be."""

    def __init__(self, function: Any) -> None:
        super().__init__()
        self.function = function

    def forward(self, h: Tensor) -> Tensor:
        return self.function.apply(h)


def guided_check_network(relu: Callable[[], nn.Module] = nn.ReLU, seed: int = 0) -> nn.Sequential:
    """The small CNN the checker of 1.3 uses: conv, ReLU, max-pool, conv, ReLU, average, linear.

    ``relu()`` makes each ReLU module; the weights are drawn from ``seed`` (the same for any ``relu``).
    """
    generator = torch.Generator().manual_seed(seed)
    layers = [
        nn.Conv2d(3, 8, 3, padding=1),
        relu(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        relu(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 6),
    ]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.weight.normal_(0.0, (2.0 / layer.weight[0].numel()) ** 0.5, generator=generator)
                assert layer.bias is not None
                layer.bias.uniform_(-0.1, 0.1, generator=generator)
    return nn.Sequential(*layers).eval()


def _function_backward(function: Any, x: Tensor, p: Tensor) -> Tensor | None:
    leaf = x.clone().requires_grad_(True)
    out = function.apply(leaf)
    out.backward(p)
    return leaf.grad


@checker("1.3 Guided backprop with your own autograd Function")
def check_guided_function(function: object) -> str:
    """``function``: a ``torch.autograd.Function`` subclass whose backward is guided backprop's.

    Checked on the (x, p) grid of 1.2, then in :func:`guided_check_network` against
    ``dl.attribute(..., rule="guided_backprop")``.
    """
    from ..attribution import attribute
    from ..data import shapes

    if not (isinstance(function, type) and issubclass(function, torch.autograd.Function)):
        raise wrong("Give the class itself, a subclass of torch.autograd.Function (not an instance).")
    x, p = _grid()
    out = call_answer(function.apply, x.clone(), what="Your forward")
    if not isinstance(out, Tensor) or not torch.equal(out, x.clamp(min=0)):
        raise wrong(
            "Your forward should compute ReLU, max(x, 0), unchanged: the rules change only the backward."
        )
    try:
        grad = _function_backward(function, x, p)
    except Exception as error:  # the student's backward: say it in a sentence
        raise wrong(f"Your backward raised {type(error).__name__}: {error}") from None
    if grad is None:
        raise not_done("Your backward returns nothing yet: replace the ... in its body.")
    said = _mismatch("guided_backprop", grad, x, p, "your backward")
    if said:
        raise wrong(said)
    images = shapes(2, seed=0, size=32).images
    reference = guided_check_network()
    yours = guided_check_network(lambda: _FunctionReLU(function))
    leaf = images.clone().requires_grad_(True)
    try:
        yours(leaf)[:, 2].sum().backward()
    except Exception as error:
        raise wrong(f"In a network, your Function raised {type(error).__name__}: {error}") from None
    expected = attribute(reference, images, 2, rule="guided_backprop")
    if leaf.grad is None or not torch.allclose(leaf.grad, expected, rtol=1e-5, atol=1e-7):
        raise wrong(
            "On the (x, p) grid your backward is right, but in a small CNN the map differs from "
            "dl.attribute's: does your forward keep x (ctx.save_for_backward) without changing it in place?"
        )
    return "Your Function gives dl.attribute's guided backprop map in a small CNN (conv, ReLU, max-pool)."


# --- 1.4 the tiny network's maps by hand ------------------------------------------------------


def _tiny_maps() -> dict[str, np.ndarray]:
    from ..attribution import attribute
    from ..toynets import tiny_input, tiny_network

    maps = attribute(tiny_network(), tiny_input(), 0, rules=list(BUILTIN_NAMES))
    return {rule: maps[rule][0, 0].numpy() for rule in BUILTIN_NAMES}


_CORNERS = {(0, 0): "top-left", (0, 1): "top-right", (1, 0): "bottom-left", (1, 1): "bottom-right"}


def _windows(row: int, col: int) -> list[str]:
    """The 3 × 3 windows (conv units) of the 4 × 4 image that contain pixel ``(row, col)``."""
    return [name for (i, j), name in _CORNERS.items() if i <= row <= i + 2 and j <= col <= j + 2]


@checker("1.4 Predict the three maps of the tiny network")
def check_hand_maps(predicted: object) -> None:
    """``predicted``: ``{rule: 4 × 4 nested list}``, the map at the input pixels for each rule."""
    answer = _by_rule(predicted, "predicted")
    truth = _tiny_maps()
    arrays = {}
    for rule in BUILTIN_NAMES:
        value = answer[rule]
        if value is Ellipsis or value is None:
            raise not_done(f"Fill in predicted[{rule!r}]: replace its ... with four rows of four numbers.")
        try:
            arrays[rule] = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise wrong(f"predicted[{rule!r}] should be four rows of four numbers.") from None
        shape = arrays[rule].shape
        if shape == (2, 2):
            raise wrong(
                f"predicted[{rule!r}] is 2 × 2, the size of the conv's output: spread it back onto the "
                "4 × 4 image through the 3 × 3 windows."
            )
        if shape != (4, 4):
            raise wrong(f"predicted[{rule!r}] should be 4 × 4 (rows of the image), got shape {shape}.")
    for rule in BUILTIN_NAMES:
        mine = arrays[rule]
        if np.array_equal(mine, truth[rule]):
            continue
        for other in BUILTIN_NAMES:
            if other != rule and np.array_equal(mine, truth[other]):
                raise wrong(
                    f"Your {rule} map is the map of {other}: check which gates {rule} applies at relu1."
                )
        if np.array_equal(mine.T, truth[rule]):
            raise wrong(f"Your {rule} map is transposed: the first index is the row.")
        row, col = (int(i) for i in np.argwhere(mine != truth[rule])[0])
        windows = _windows(row, col)
        raise wrong(
            f"{rule}: pixel (row {row}, column {col}) should be {truth[rule][row, col]:g}, you have "
            f"{mine[row, col]:g}. It lies in {len(windows)} window{'s' if len(windows) > 1 else ''} "
            f"({', '.join(windows)}): add S over {'it' if len(windows) == 1 else 'them'}."
        )


# --- 1.5 one map for every input ----------------------------------------------------------------


_READS_X = {
    "gradient": "the gradient reads x at every ReLU ([x > 0]), and x changes with the image",
    "guided_backprop": "guided backprop reads x at every ReLU ([x > 0]), and x changes with the image",
}


@checker("1.5 Which rules give one map for every input?")
def check_same_for_every_input(same_for_all: object) -> None:
    """``same_for_all``: the set of rules whose map, on a ReLU network without max-pooling, is the
    same for every input image."""
    if isinstance(same_for_all, str):
        same_for_all = {same_for_all}
    if not isinstance(same_for_all, (set, frozenset, list, tuple)):
        raise wrong("same_for_all should be a set of rule names, such as {'gradient'}, or set() for none.")
    said = {_rule_key(name, "same_for_all") for name in same_for_all}
    for rule in ("gradient", "guided_backprop"):
        if rule in said:
            raise wrong(f"Not {rule}: {_READS_X[rule]}.")
    if "deconvnet" not in said:
        raise wrong(
            "One rule never reads x: DeConvNet's p·[p > 0]. And a convolution's, a linear layer's and "
            "average pooling's backward use only the weights. Which maps can then change with the input?"
        )
