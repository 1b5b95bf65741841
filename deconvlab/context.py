r"""The context manager that installs a backward rule on every ReLU.

``with backward_rule("deconvnet"):`` gives every ReLU evaluated inside the block
the rule's backward :math:`\operatorname{ReLU}^*(x, p)` (see :mod:`deconvlab.rules`),
whatever its spelling: ``nn.ReLU`` (in place or not, one instance reused),
``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu`` and
``Tensor.relu_``. In-place forms stay in place.

How: nothing is patched. A :class:`torch.overrides.TorchFunctionMode`, entered with its
public ``__enter__``, sees each call of those functions and routes it through
:class:`~deconvlab.relu.RuleReLU`. PyTorch keeps the mode stack per thread, and so does
this module, so a rule active in one thread never changes another thread's gradients.
The rule is bound to a ReLU when the forward pass evaluates it, so ``.backward()`` may
run inside or after the block.

Guarantees: on an exception or a ``KeyboardInterrupt`` (at any point, also inside
``__enter__`` and ``__exit__``) the rule is removed and the interrupt surfaces as it is: a
SIGINT that lands while the context changes PyTorch's mode stack is held until the change is
complete (:mod:`deconvlab.interrupts`);
the innermost active context wins and the outer one comes back when it exits; the same
context object may be entered again (also nested); contexts may exit in any order, also
around the user's own function modes, which end exactly as they would without
deconvlab. The state cannot drift: this thread's open contexts are one list, and
every entry and exit first makes PyTorch's mode stack agree with it (:func:`_heal`).
Calls of other nonlinearities (GELU, SiLU, Sigmoid, ...) keep their plain gradient; the
context warns about them by kind and place when it exits (:mod:`deconvlab.observations`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from itertools import repeat, starmap
from types import TracebackType
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .escapes import RuleNotAppliedError, compiling, refuse_traced
from .interrupts import Section, critical, deliver_held, held
from .observations import (
    NoReLUWarning,
    Observations,
    UnsupportedActivationWarning,
    activation_label,
    warn_untouched,
)
from .relu import RuleSlot, relu_with_rule
from .rule_maps import RuleMap, RuleSpec, Selection, SiteResolver, as_selection
from .rules import GRADIENT

__all__ = [
    "InPlaceOnLeafError",
    "NoReLUWarning",
    "UnsupportedActivationWarning",
    "active_rule",
    "backward_rule",
]


class InPlaceOnLeafError(RuntimeError):
    """An in-place ReLU was applied to a leaf tensor that requires grad (e.g. the model's input)."""


def _is_leaf_requiring_grad(x: torch.Tensor) -> bool:
    base = x if x._base is None else x._base
    return x.requires_grad and base.is_leaf


def _f_relu_inplace(args: tuple, kwargs: dict) -> bool:
    return bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))


# Each ReLU spelling -> whether this call is in place. ``F.relu_`` is ``torch.relu_``.
_RELU_SPELLINGS: dict[object, Callable[[tuple, dict], bool]] = {
    F.relu: _f_relu_inplace,
    torch.relu: lambda args, kwargs: False,
    torch.Tensor.relu: lambda args, kwargs: False,
    torch.relu_: lambda args, kwargs: True,
    torch.Tensor.relu_: lambda args, kwargs: True,
}


class _Entry:
    """One activation of a :class:`backward_rule` in one thread."""

    __slots__ = ("owner", "section", "seen", "sites", "slot")

    def __init__(self, owner: backward_rule) -> None:
        self.owner = owner
        self.slot = owner.slot
        self.seen = Observations(owner.module_names)
        # With rule maps: each ReLU's rule depends on where it runs (None: the slot decides alone).
        self.sites = SiteResolver(owner.slot, owner.map_tables, self.seen.sites) if owner.has_maps else None
        self.section = Section()  # open from enter to exit: the exit's first instruction is held too


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.entries: list[_Entry] = []  # this thread's open contexts, innermost last


_state = _ThreadState()


# PyTorch calls a mode's __torch_function__ inside its generator context manager
# torch.overrides._pop_mode_temporarily, which pops the mode and pushes it back in a `finally`. An
# interrupt raised after its pop and before its `try` (or in contextlib's __enter__ just after it)
# leaves the generator suspended with our mode popped, and the garbage collector closes it later,
# pushing the mode back long after the block has ended. Its code counts as critical, so such an
# interrupt is held. Private API with no public equivalent; tests/test_pytorch_private_api.py fails
# loudly if it changes.
critical(torch.overrides._pop_mode_temporarily.__wrapped__)  # type: ignore[attr-defined]


class _ReLUInterceptor(TorchFunctionMode):
    """Routes ReLU calls to :class:`RuleReLU` with the innermost open rule of this thread."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if compiling():  # torch.compile traces this method: keep what it traces trivial
            if func in _RELU_SPELLINGS or activation_label(func) is not None:
                return _outside_the_compiler(self, func, types, args, kwargs)
            return func(*args, **kwargs)
        if held.pending:  # an interrupt held while a context was entered: raise it here
            deliver_held()
        entries = _state.entries
        if not entries:  # a context is being entered or left: nothing is active
            return func(*args, **kwargs)
        entry = entries[-1]
        seen = entry.seen
        seen.ran = True
        inplace_flag = _RELU_SPELLINGS.get(func)
        if inplace_flag is not None:
            x = args[0]
            # Inside RuleReLU.forward (and under no_grad) grad mode is off: such a call is not routed.
            # x need not require grad: inside torch.func.vmap it does not, though the tensor it
            # batches may (RuleReLU's vmap rule then records the rule there).
            if not (torch.is_grad_enabled() and isinstance(x, torch.Tensor)):
                return func(*args, **kwargs)
            if entry.owner.only_gradient:  # the gradient rule is autograd's own ReLU backward
                out = func(*args, **kwargs)
            else:
                inplace = inplace_flag(args, kwargs)
                if inplace and _is_leaf_requiring_grad(x):
                    # Refuse before writing: autograd would raise only after the data changed.
                    raise InPlaceOnLeafError(
                        "an in-place ReLU was applied to a leaf tensor that requires grad (the "
                        "model's input?); autograd cannot differentiate that: pass x * 1 instead"
                    )
                refuse_traced(x, entry.owner.rules_text)
                slot = entry.slot if entry.sites is None else entry.sites.slot_for(seen.modules)
                out = relu_with_rule(x, slot, inplace)
            for open_entry in entries:  # the enclosing contexts saw a ReLU evaluated too
                open_entry.seen.saw_relu(out)
            return out
        if entry.owner.only_gradient:
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        label = activation_label(func)
        # F.multi_head_attention_forward returns (output, weights)
        first = out[0] if isinstance(out, tuple) and out else out
        if label is not None and isinstance(first, torch.Tensor) and first.requires_grad:
            seen.saw_untouched(label, first)
        return out


@torch.compiler.disable
def _outside_the_compiler(mode: _ReLUInterceptor, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
    """Intercept ``func`` eagerly: torch.compile breaks its graph here (public API since PyTorch 2.1).

    So a ReLU becomes :class:`RuleReLU` outside any compiled graph, and its backward reads the
    rule when it runs, exactly as without compile; the compiled pieces between the ReLUs keep
    their plain backward. Nothing here is traced: no recompilation, no frame inspection.
    A rule map is refused: the module hooks that say where a ReLU runs do not run in compiled code.
    """
    entries = _state.entries
    if func in _RELU_SPELLINGS and entries and entries[-1].sites is not None:
        raise RuleNotAppliedError(
            f"deconvlab: {entries[-1].owner.rules_text} cannot see which module a ReLU runs in inside "
            "torch.compile; run the uncompiled module under the rule map (for m = torch.compile(model): "
            "m._orig_mod), or call dl.attribute, which does"
        )
    return mode.__torch_function__(func, types, args, kwargs)


def _function_modes() -> list[TorchFunctionMode]:
    """This thread's torch function-mode stack, innermost last.

    Private PyTorch API (``torch.overrides._get_current_function_mode_stack``): PyTorch has no
    public way to look at the stack; ``tests/test_pytorch_private_api.py`` fails loudly if it goes.
    """
    return torch.overrides._get_current_function_mode_stack()


def _remove_mode(mode: TorchFunctionMode) -> None:
    """Take ``mode`` off this thread's function-mode stack, keeping every other mode in order.

    On top, the public ``TorchFunctionMode.__exit__`` pops it. Below a user's mode (entered
    inside our block and still open) that would pop the user's mode instead, and PyTorch has
    no public call to remove another one, so :func:`_set_stack` uses the private pop/push.
    """
    modes = _function_modes()
    if modes and modes[-1] is mode:
        mode.__exit__(None, None, None)
        return
    target = [other for other in modes if other is not mode]
    try:
        _set_stack(target)
    except BaseException:  # interrupted between the pops and the pushes: finish, then go on
        _set_stack(target)
        raise


def _set_stack(target: list[TorchFunctionMode]) -> None:
    """Make this thread's function-mode stack ``target`` by popping above the shared prefix and pushing.

    Each of the two steps is one C-level call from here (``starmap``/``map`` over PyTorch's
    private pop and push, checked by ``tests/test_pytorch_private_api.py``), so an interrupt
    can only fall between them, where calling this again completes the change.
    """
    current = _function_modes()
    shared = 0
    while shared < min(len(current), len(target)) and current[shared] is target[shared]:
        shared += 1
    list(starmap(torch._C._pop_torch_function_stack, repeat((), len(current) - shared)))
    list(map(torch._C._push_on_torch_function_stack, target[shared:]))


def _heal() -> None:
    """Make PyTorch's mode stack agree with this thread's open contexts.

    One interceptor of ours is on the stack exactly when a context is open. Every entry and
    exit calls this first and last, so a state left half-changed by an interrupt (or by
    contexts exiting out of order) is repaired, never carried on.
    """
    ours = [mode for mode in _function_modes() if isinstance(mode, _ReLUInterceptor)]
    keep = ours[:1] if _state.entries else []
    for mode in ours:
        if mode not in keep:
            _remove_mode(mode)
    if _state.entries and not keep:
        _ReLUInterceptor().__enter__()  # public: pushes the mode on this thread's stack


def active_rule() -> Selection | None:
    """The rule (or :class:`~deconvlab.RuleMap`) this thread's ReLUs get now; None outside any context."""
    entries = _state.entries
    return entries[-1].slot.rule if entries else None


class backward_rule:
    r"""Give every ReLU evaluated in the block the backward of ``rule``.

    Parameters
    ----------
    rule : str, Rule, RuleMap, dict or RuleSlot
        ``"gradient"``, ``"deconvnet"``, ``"guided_backprop"`` (alias ``"guided"``),
        a name given to :func:`~deconvlab.register_rule`, or a :class:`~deconvlab.Rule`;
        a rule per layer: a :class:`~deconvlab.RuleMap` or a dict made into one,
        ``{"features.1*": "guided_backprop"}`` (see there for the matching);
        or a :class:`~deconvlab.relu.RuleSlot`, whose rule may be switched between
        backward passes (how :func:`~deconvlab.attribute` serves several rules).
    warn : bool, optional
        Warn on exit about non-ReLU nonlinearities and about a block where no ReLU was modified.
    module_names : mapping, optional
        ``id(module) -> path``, used to say where a non-ReLU nonlinearity sits.
    model : nn.Module, optional
        The model whose module paths a rule map names, matched now (an entry that matches
        none of its modules raises ``ValueError`` here). Without it, the outermost module
        called in the block is matched when it runs its first ReLU.

    Examples
    --------
    >>> with dl.backward_rule("deconvnet"):            # doctest: +SKIP
    ...     y = model(x.requires_grad_())
    ...     y[0, c].backward()                         # x.grad holds the DeConvNet signal
    """

    def __init__(
        self,
        rule: RuleSpec | RuleSlot,
        *,
        warn: bool = True,
        module_names: Mapping[int, str] | None = None,
        model: nn.Module | None = None,
    ) -> None:
        self.slot = rule if isinstance(rule, RuleSlot) else RuleSlot(as_selection(rule))
        modified = [candidate.name for candidate in self.slot.rules if candidate is not GRADIENT]
        self.only_gradient = not modified  # the ReLUs keep autograd's backward; nothing to warn about
        if len(self.slot.rules) > 1:
            self.rules_text = "the rules " + ", ".join(repr(name) for name in modified)
        elif isinstance(self.slot.rule, RuleMap):
            self.rules_text = f"the rule map {self.slot.rule.name!r}"
        else:  # what the warnings call it
            self.rules_text = f"the {self.slot.rule.name!r} rule"
        self.has_maps = any(isinstance(candidate, RuleMap) for candidate in self.slot.rules)
        self.map_tables = _map_tables(self.slot, model) if self.has_maps and model is not None else None
        self.warn = warn
        self.tracks_modules = not self.only_gradient  # to say where a nonlinearity sits
        self.module_names = module_names
        self.last_seen: Observations | None = None  # what the last exit in any thread saw

    @property
    def rule(self) -> Selection:
        """The rule (or rule map) this context installs."""
        return self.slot.rule

    def __repr__(self) -> str:
        return f"backward_rule({self.rule.name!r})"

    # Enter and exit are written for exceptions at any bytecode: every step either is one
    # C-level call or is undone by the except clause, which closes the entry and heals. A real
    # SIGINT is held from the moment the entry's section opens (deconvlab.interrupts).

    @critical
    def __enter__(self) -> backward_rule:
        try:
            entry = _Entry(self)
            entry.section.open()
            _heal()
            _state.entries.append(entry)
            _heal()
            if self.tracks_modules:
                entry.seen.track_modules()
            deliver_held()  # an interrupt held so far undoes the entry
            return self
        except BaseException:
            _undo(locals().get("entry"))
            raise

    @critical
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            entry = _entry_of(self)
            _discard(entry)
        except BaseException:
            _undo(locals().get("entry") or _innermost_entry_of(self, missing_ok=True))
            raise
        self.last_seen = entry.seen
        if exc_type is None and self.warn and not self.only_gradient:
            warn_untouched(entry.seen, self.rules_text)


def _map_tables(slot: RuleSlot, model: object) -> list[dict[int, int]]:
    """The rule maps of ``slot`` matched on ``model``; errors name the argument (``rule``, ``rules[i]``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be the torch.nn.Module the rule map names, got {type(model).__name__}")
    tables = []
    for index, item in enumerate(slot.rules):
        if isinstance(item, RuleMap):
            try:
                tables.append(item.match(model))
            except ValueError as error:
                argument = "rule" if len(slot.rules) == 1 else f"rules[{index}]"
                raise ValueError(f"{argument}: {error}") from None
    return tables


def _innermost_entry_of(owner: backward_rule, missing_ok: bool = False) -> _Entry | None:
    """The innermost open entry of ``owner`` in this thread (None if there is none and ``missing_ok``)."""
    for entry in reversed(_state.entries):
        if entry.owner is owner:
            return entry
    if missing_ok:
        return None
    raise RuntimeError(f"{owner!r} exited in a thread where it was not entered (or exited twice)")


def _entry_of(owner: backward_rule) -> _Entry:
    """The entry ``owner`` exits: its innermost open one in this thread; RuntimeError if none."""
    entry = _innermost_entry_of(owner)
    assert entry is not None
    return entry


def _undo(entry: _Entry | None) -> None:
    """After an interrupt: close ``entry`` if there is one, and heal."""
    if entry is not None:
        _discard(entry)
    _heal()


def _discard(entry: _Entry) -> None:
    """Close ``entry`` (idempotent) and bring PyTorch's mode stack in line."""
    entries = _state.entries
    for index in range(len(entries) - 1, -1, -1):  # not necessarily the top: exits may be out of order
        if entries[index] is entry:
            del entries[index]
            break
    entry.seen.stop_tracking()
    _heal()
    entry.section.close()  # last: it raises an interrupt held until now
