r"""Backward rules for ReLU: the only place where the three methods differ.

Let :math:`x` be the forward input of a ReLU and :math:`p` the signal that
arrives from above during the backward pass. Each method replaces the
backward of ReLU by its own :math:`\operatorname{ReLU}^*(x, p)`:

============================  ===========================================
rule                          :math:`\operatorname{ReLU}^*(x, p)`
============================  ===========================================
``gradient``                  :math:`p \cdot [x > 0]`
``deconvnet``                 :math:`p \cdot [p > 0]` (:math:`x` is ignored)
``guided_backprop``           :math:`p \cdot [x > 0] \cdot [p > 0]`
============================  ===========================================

At :math:`x = 0` the gate is closed, as in autograd. Every other layer
backpropagates its plain gradient: a convolution's backward is the
transposed convolution ("deconvolution") and max-pooling's backward is
unpooling through the "switches".

Each rule describes itself once, in its :class:`Rule`: name, label, equation and
paper. Everything else (the CLI, widgets, figures, sanity checks, notebooks)
reads them from :data:`BUILTIN_RULES` or :func:`get_rule`. :func:`register_rule`
adds your own.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor

__all__ = [
    "BUILTIN_NAMES",
    "BUILTIN_RULES",
    "DECONVNET",
    "GRADIENT",
    "GUIDED_BACKPROP",
    "Rule",
    "RuleLike",
    "deconvnet",
    "gated",
    "get_rule",
    "gradient",
    "guided_backprop",
    "register_rule",
    "rule_names",
]

Backward = Callable[[Tensor, Tensor], Tensor]


def gated(p: Tensor, *by: Tensor) -> Tensor:
    """``p · [b > 0]`` for every ``b`` in ``by``, fused: no boolean mask is materialised.

    A gate on another tensor is autograd's own ReLU backward (``threshold_backward``);
    the gate on ``p`` itself is a clamp, applied in place to the fresh result.
    The same numbers as ``p * (b > 0)`` for each ``b`` up to the sign of zero: where a gate is
    closed it writes +0.0, where ``p * False`` gives -0.0 for a negative ``p`` (and NaN for an
    infinite one); notebook 01 shows both forms side by side.
    """
    out = p
    for gate in by:
        if gate is not p:
            out = torch.ops.aten.threshold_backward(out, gate, 0)
    if any(gate is p for gate in by):
        out = p.clamp(min=0) if out is p else out.clamp_(min=0)
    return out


@dataclass(frozen=True)
class Rule:
    r"""A backward rule for ReLU, and everything that is said about it.

    Parameters
    ----------
    name : str
        The name the rule is registered and selected under, e.g. ``"guided_backprop"``.
    backward : callable
        Elementwise ``backward(x, p) -> Tensor`` with ``x`` the ReLU's forward
        input and ``p`` the signal from above; returns a tensor shaped like ``p``.
    sign_only : bool
        True when ``backward`` looks at ``x`` only through ``[x > 0]``. Such a rule
        may be given ``relu(x)`` in place of ``x`` (same sign pattern), which
        autograd keeps anyway, so it costs no extra memory and works with
        in-place ReLUs. User rules default to False: they get the true ``x``.
    label : str
        How figures and widgets name it (``"guided backprop"``); defaults to ``name``.
    equation : str
        :math:`\operatorname{ReLU}^*(x, p)` in plain text with ``·`` for products,
        e.g. ``"p · [x > 0] · [p > 0]"``.
    reference : str
        The paper that introduced it.
    """

    name: str
    backward: Backward
    sign_only: bool = False
    label: str = ""
    equation: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def latex(self) -> str:
        """The equation as LaTeX maths, ``p \\cdot [x > 0]``."""
        return self.equation.replace(" · ", r" \cdot ").replace("·", r" \cdot ")

    def describe(self) -> str:
        """One line: ``guided backprop: ReLU*(x, p) = p · [x > 0] · [p > 0] (Springenberg et al., ...)``."""
        equation = f": ReLU*(x, p) = {self.equation}" if self.equation else ""
        reference = f" ({self.reference})" if self.reference else ""
        return f"{self.label}{equation}{reference}"

    def __call__(self, x: Tensor, p: Tensor) -> Tensor:
        """``ReLU*(x, p)``: the rule's backward."""
        return self.backward(x, p)

    def __repr__(self) -> str:
        return f"Rule({self.name!r})"


def builtin(name: str, label: str, equation: str, reference: str) -> Callable[[Backward], Rule]:
    """Make the decorated ``backward(x, p)`` a sign-only :class:`Rule`, described once, here.

    The function's docstring is written from the description, so ``help()`` states
    the equation and the paper.
    """

    def make(backward: Backward) -> Rule:
        backward.__doc__ = f"{label} ({reference}): ``ReLU*(x, p) = {equation}``."
        return Rule(name, backward, True, label, equation, reference)

    return make


SIMONYAN = "Simonyan, Vedaldi & Zisserman, ICLR Workshop 2014, https://arxiv.org/abs/1312.6034"
ZEILER_FERGUS = "Zeiler & Fergus, ECCV 2014, https://doi.org/10.1007/978-3-319-10590-1_53"
SPRINGENBERG = (
    "Springenberg, Dosovitskiy, Brox & Riedmiller, ICLR Workshop 2015, https://arxiv.org/abs/1412.6806"
)


@builtin("gradient", "gradient", "p · [x > 0]", SIMONYAN)
def gradient(x: Tensor, p: Tensor) -> Tensor:
    return gated(p, x)


@builtin("deconvnet", "DeConvNet", "p · [p > 0]", ZEILER_FERGUS)
def deconvnet(x: Tensor, p: Tensor) -> Tensor:
    return gated(p, p)


@builtin("guided_backprop", "guided backprop", "p · [x > 0] · [p > 0]", SPRINGENBERG)
def guided_backprop(x: Tensor, p: Tensor) -> Tensor:
    return gated(p, x, p)


GRADIENT, DECONVNET, GUIDED_BACKPROP = gradient, deconvnet, guided_backprop

#: The three classic rules, in the order every table, figure and widget lists them.
BUILTIN_RULES: tuple[Rule, ...] = (gradient, deconvnet, guided_backprop)
#: Their names: ``("gradient", "deconvnet", "guided_backprop")``.
BUILTIN_NAMES: tuple[str, ...] = tuple(rule.name for rule in BUILTIN_RULES)

_BUILTIN = {rule.name: rule for rule in BUILTIN_RULES}
_ALIASES = {"guided": "guided_backprop", "vanilla": "gradient", "saliency": "gradient"}
_REGISTRY: dict[str, Rule] = dict(_BUILTIN)

RuleLike = Union[str, Rule]


def rule_names() -> list[str]:
    """Names of all registered rules, built-in first."""
    return list(_REGISTRY)


def _known_rules_text() -> str:
    aliases = ", ".join(f"{alias} -> {name}" for alias, name in _ALIASES.items())
    return f"known rules: {', '.join(_REGISTRY)} (aliases: {aliases})"


def _folded(name: str) -> str:
    """``"Guided-Backprop"`` -> ``"guided_backprop"``: the key of names differing in case or separators."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _near_builtin(name: str) -> str | None:
    """The built-in name or alias that ``name`` spells differently only in case or separators."""
    for known in (*_BUILTIN, *_ALIASES):
        if name != known and _folded(name) == _folded(known):
            return known
    return None


def get_rule(rule: RuleLike) -> Rule:
    """Resolve a rule name (or alias) or a :class:`Rule` to a :class:`Rule`.

    Names are matched exactly as registered; ``"guided"``, ``"vanilla"`` and ``"saliency"``
    are aliases.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known rules), and for a name that
        differs from a built-in name or alias only in case or separators (the message
        names the spelling to use).
    TypeError
        For anything that is neither a string nor a :class:`Rule`.
    """
    if isinstance(rule, Rule):
        return rule
    if not isinstance(rule, str):
        raise TypeError(
            f"rule must be a rule name or a deconvlab.Rule, not {type(rule).__name__}; " + _known_rules_text()
        )
    key = _ALIASES.get(rule, rule)
    if key in _REGISTRY:
        return _REGISTRY[key]
    near = _near_builtin(rule)
    if near is not None:
        raise ValueError(f"unknown rule {rule!r}: rule names are matched exactly; did you mean {near!r}?")
    raise ValueError(f"unknown rule {rule!r}; {_known_rules_text()}")


def register_rule(
    name: str,
    backward: Backward,
    *,
    sign_only: bool = False,
    label: str = "",
    equation: str = "",
    reference: str = "",
) -> Rule:
    """Register a user-defined backward rule for ReLU.

    Parameters
    ----------
    name : str
        Name to select the rule with, exactly as written here, e.g. ``dl.backward_rule(name)``.
        Registering the same name again replaces the earlier rule (so a notebook
        cell can be re-run); the built-in rules and aliases cannot be replaced.
    backward : callable
        Elementwise ``backward(x, p) -> Tensor``, same shape as ``p``.
    sign_only : bool, optional
        Declare that ``backward`` uses ``x`` only through ``[x > 0]`` (saves
        memory; see :class:`Rule`).
    label, equation, reference : str, optional
        How figures name it, its equation and its source (see :class:`Rule`).

    Returns
    -------
    Rule

    Raises
    ------
    TypeError
        ``name`` is no string; ``backward`` is not callable with two arguments ``(x, p)``;
        ``sign_only`` is no bool; ``label``, ``equation`` or ``reference`` is no string.
    ValueError
        ``name`` is no Python identifier, is a built-in name or alias, or differs from one only
        in case or separators.

    Examples
    --------
    >>> import deconvlab as dl
    >>> rule = dl.register_rule("leaky_deconvnet", lambda x, p: p * (p > 0) + 0.1 * p * (p <= 0),
    ...                         equation="p · [p > 0] + 0.1 · p · [p ≤ 0]")
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a string, a Python identifier such as 'my_rule', got {type(name).__name__}"
        )
    if not name.isidentifier():
        raise ValueError(f"name must be a Python identifier such as 'my_rule', got {name[:40]!r}")
    if name in _BUILTIN or name in _ALIASES:
        raise ValueError(f"name {name!r} is a built-in rule of deconvlab and cannot be replaced")
    near = _near_builtin(name)
    if near is not None:
        raise ValueError(
            f"name {name!r} differs from the built-in {near!r} only in case or separators, which reads as "
            "the same rule; choose a distinct name such as 'my_" + _folded(name) + "'"
        )
    if not callable(backward):
        raise TypeError(f"backward must be callable as backward(x, p), got {type(backward).__name__}")
    try:
        inspect.signature(backward).bind(None, None)
    except TypeError:
        raise TypeError(
            "backward must take two arguments, backward(x, p); its signature is "
            f"{inspect.signature(backward)}"
        ) from None
    except ValueError:  # no signature to read (some builtins): it will tell when called
        pass
    if not isinstance(sign_only, bool):
        raise TypeError(f"sign_only must be True or False, got {type(sign_only).__name__}")
    for field, text in (("label", label), ("equation", equation), ("reference", reference)):
        if not isinstance(text, str):
            raise TypeError(f"{field} must be a string, got {type(text).__name__}")
    rule = Rule(name, backward, sign_only, label, equation, reference)
    _REGISTRY[name] = rule
    return rule
