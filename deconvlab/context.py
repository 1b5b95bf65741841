r"""The context manager that installs a backward rule on every ReLU.

``with backward_rule("deconvnet"):`` gives every ReLU evaluated inside the block
the rule's backward :math:`\operatorname{ReLU}^*(x, p)` (see :mod:`deconvlab.rules`),
whatever its spelling: ``nn.ReLU`` (in place or not, one instance reused),
``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu`` and
``Tensor.relu_``. In-place forms stay in place.

How: nothing is patched. A :class:`torch.overrides.TorchFunctionMode` sees each
call of those functions and routes it through :class:`~deconvlab.relu.RuleReLU`.
PyTorch keeps the mode stack per thread, and so does this module, so a rule
active in one thread never changes another thread's gradients. The rule is
bound to a ReLU when the forward pass evaluates it, so ``.backward()`` may run
inside or after the block.

Guarantees: on an exception or a ``KeyboardInterrupt`` the rule is removed; the
innermost active context wins and the outer one comes back when it exits; the
same context object may be entered again (also nested); contexts may exit in any
order. Calls of other activations (GELU, SiLU, LeakyReLU, ...) keep their plain
gradient; the context warns about them by name and place when it exits, and
warns when no ReLU was evaluated at all.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from types import TracebackType

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from .relu import RuleReLU, RuleSlot
from .rules import GRADIENT, Rule, RuleLike, get_rule

__all__ = [
    "InPlaceOnLeafError",
    "NoReLUWarning",
    "UnsupportedActivationWarning",
    "active_rule",
    "backward_rule",
]


class UnsupportedActivationWarning(UserWarning):
    """A non-ReLU activation ran under a rule: it keeps its plain gradient."""


class NoReLUWarning(UserWarning):
    """No ReLU ran under a rule: every rule then equals the plain gradient."""


class InPlaceOnLeafError(RuntimeError):
    """An in-place ReLU was applied to a leaf tensor that requires grad (e.g. the model's input)."""


def _is_leaf_requiring_grad(x: torch.Tensor) -> bool:
    base = x if x._base is None else x._base
    return x.requires_grad and base.is_leaf


def _f_relu_inplace(args, kwargs) -> bool:
    return bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))


# Each ReLU spelling -> whether this call is in place. ``F.relu_`` is ``torch.relu_``.
_RELU_SPELLINGS = {
    F.relu: _f_relu_inplace,
    torch.relu: lambda args, kwargs: False,
    torch.Tensor.relu: lambda args, kwargs: False,
    torch.relu_: lambda args, kwargs: True,
    torch.Tensor.relu_: lambda args, kwargs: True,
}

_OTHER_ACTIVATION_NAMES = {
    "gelu": "GELU", "silu": "SiLU", "mish": "Mish", "leaky_relu": "LeakyReLU",
    "leaky_relu_": "LeakyReLU", "relu6": "ReLU6", "elu": "ELU", "elu_": "ELU", "selu": "SELU",
    "selu_": "SELU", "celu": "CELU", "celu_": "CELU", "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid", "hardtanh": "Hardtanh", "hardtanh_": "Hardtanh",
    "softplus": "Softplus", "prelu": "PReLU", "rrelu": "RReLU", "rrelu_": "RReLU",
}
_OTHER_ACTIVATIONS: dict[object, str] = {}
# F's built-in activations live in torch._C._nn (F.gelu is torch._C._nn.gelu; F.hardswish calls
# torch._C._nn.hardswish); tests/test_pytorch_private_api.py fails loudly if that namespace goes.
for _namespace in (F, torch, torch.Tensor, torch._C._nn):
    for _name, _label in _OTHER_ACTIVATION_NAMES.items():
        if hasattr(_namespace, _name):
            _OTHER_ACTIVATIONS[getattr(_namespace, _name)] = _label


class _Entry:
    """One activation of a :class:`backward_rule` in one thread."""

    __slots__ = ("foreign", "module_names", "ops", "owner", "relus", "slot")

    def __init__(self, owner: backward_rule) -> None:
        self.owner = owner
        self.slot = owner.slot
        self.module_names = owner.module_names
        self.ops = 0
        self.relus = 0
        self.foreign: dict[str, None] = {}  # ordered set of "GELU in 'blocks.0.act' (GELU)"


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Entry] = []  # open entries, innermost last
        self.mode: _ReLUInterceptor | None = None  # on PyTorch's mode stack while entries are open
        self.modules: list[nn.Module] = []  # modules whose forward is running, innermost last


_state = _ThreadState()


class _ModuleTracker:
    """Knows which ``nn.Module`` runs, through PyTorch's public global forward hooks.

    The hooks are process-wide, so they are registered only while some context that
    may warn is open (counted under a lock); each thread keeps its own module stack.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._handles: list[RemovableHandle] = []

    @staticmethod
    def _enter(module: nn.Module, args: object) -> None:
        _state.modules.append(module)

    @staticmethod
    def _leave(module: nn.Module, args: object, output: object) -> None:
        modules = _state.modules
        if modules and modules[-1] is module:
            modules.pop()

    def acquire(self) -> None:
        with self._lock:
            if self._users == 0:
                self._handles = [
                    register_module_forward_pre_hook(self._enter),
                    register_module_forward_hook(self._leave, always_call=True),
                ]
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for handle in self._handles:
                    handle.remove()
                self._handles = []


_modules = _ModuleTracker()


def _describe_activation(label: str, module_names: Mapping[int, str] | None) -> str:
    """``"GELU in 'blocks.0.act' (GELU)"``: the activation and where it sits."""
    module = _state.modules[-1] if _state.modules else None
    if module is None:
        return f"{label} in code outside any nn.Module"
    if type(module).__module__ == nn.modules.activation.__name__:
        label = type(module).__name__  # nn.ReLU6 runs F.hardtanh: call it ReLU6
    if module_names is not None and id(module) in module_names:
        return f"{label} in '{module_names[id(module)] or '<model>'}' ({type(module).__name__})"
    return f"{label} in a {type(module).__name__} module"


class _ReLUInterceptor(TorchFunctionMode):
    """Routes ReLU calls to :class:`RuleReLU` with the innermost active rule of this thread."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        stack = _state.stack
        if not stack:  # pragma: no cover - the mode is only on the stack with entries
            return func(*args, **kwargs)
        entry = stack[-1]
        entry.ops += 1
        inplace_flag = _RELU_SPELLINGS.get(func)
        if inplace_flag is not None:
            entry.relus += 1
            x = args[0]
            if entry.owner.only_gradient:  # the gradient rule is autograd's own ReLU backward
                return func(*args, **kwargs)
            if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
                inplace = inplace_flag(args, kwargs)
                if inplace and _is_leaf_requiring_grad(x):
                    # Refuse before writing: autograd would raise only after the data changed.
                    raise InPlaceOnLeafError(
                        "an in-place ReLU was applied to a leaf tensor that requires grad (the "
                        "model's input?); autograd cannot differentiate that: pass x * 1 instead"
                    )
                return RuleReLU.apply(x, entry.slot, inplace)
            return func(*args, **kwargs)
        label = _OTHER_ACTIVATIONS.get(func)
        if label is not None and not entry.owner.only_gradient:
            entry.foreign[_describe_activation(label, entry.module_names)] = None
        return func(*args, **kwargs)


def _function_modes() -> list[TorchFunctionMode]:
    """This thread's torch function-mode stack, innermost last.

    Private PyTorch API (``torch.overrides._get_current_function_mode_stack``): PyTorch has no
    public way to look at the stack; ``tests/test_pytorch_private_api.py`` fails loudly if it goes.
    """
    return torch.overrides._get_current_function_mode_stack()


def _remove_mode_below_top(mode: TorchFunctionMode) -> None:
    """Take ``mode`` off the function-mode stack while another mode sits above it.

    Needed when a user's mode was entered inside our block and is still open: the public
    ``TorchFunctionMode.__exit__`` pops the top, which would end the user's mode instead of
    ours. PyTorch has no public call for this, so it uses the private push/pop of the stack
    (checked by ``tests/test_pytorch_private_api.py``).
    """
    above = []
    while torch._C._len_torch_function_stack() > 0:
        top = torch._C._pop_torch_function_stack()
        if top is mode:
            break
        above.append(top)
    for other in reversed(above):
        torch._C._push_on_torch_function_stack(other)


def _push(entry: _Entry) -> None:
    if _state.mode is None:
        mode = _ReLUInterceptor()
        mode.__enter__()  # public: pushes the mode on this thread's stack
        _state.mode = mode
    _state.stack.append(entry)


def _pop(entry: _Entry) -> None:
    stack = _state.stack
    stack.remove(entry)  # not necessarily the top: contexts may exit out of order
    if not stack and _state.mode is not None:
        mode, _state.mode = _state.mode, None
        modes = _function_modes()
        if modes and modes[-1] is mode:
            mode.__exit__(None, None, None)  # public: pops the top, which is ours
        else:
            _remove_mode_below_top(mode)


def active_rule() -> Rule | None:
    """The rule the current thread's ReLUs get right now, or None outside any context."""
    return _state.stack[-1].slot.rule if _state.stack else None


class backward_rule:
    r"""Give every ReLU evaluated in the block the backward of ``rule``.

    Parameters
    ----------
    rule : str, Rule or RuleSlot
        ``"gradient"``, ``"deconvnet"``, ``"guided_backprop"`` (alias ``"guided"``),
        a name given to :func:`~deconvlab.register_rule`, or a :class:`~deconvlab.Rule`;
        or a :class:`~deconvlab.relu.RuleSlot`, whose rule may be switched between
        backward passes (how :func:`~deconvlab.attribute` serves several rules).
    warn : bool, optional
        Warn on exit about non-ReLU activations and about a block with no ReLU.
    module_names : mapping, optional
        ``id(module) -> path``, used to say where a non-ReLU activation sits.

    Examples
    --------
    >>> with dl.backward_rule("deconvnet"):            # doctest: +SKIP
    ...     y = model(x.requires_grad_())
    ...     y[0, c].backward()                         # x.grad holds the DeConvNet signal
    """

    def __init__(
        self,
        rule: RuleLike | RuleSlot,
        *,
        warn: bool = True,
        module_names: Mapping[int, str] | None = None,
    ) -> None:
        self.slot = rule if isinstance(rule, RuleSlot) else RuleSlot(get_rule(rule))
        modified = [candidate.name for candidate in self.slot.rules if candidate is not GRADIENT]
        self.only_gradient = not modified  # the ReLUs keep autograd's backward; nothing to warn about
        if len(self.slot.rules) > 1:
            self.rules_text = "the rules " + ", ".join(repr(name) for name in modified)
        else:  # what the warnings call it
            self.rules_text = f"the {self.slot.rule.name!r} rule"
        self.warn = warn
        self.tracks_modules = warn and not self.only_gradient  # to say where an activation sits
        self.module_names = module_names
        self._lock = threading.Lock()
        self._entries: dict[int, list[_Entry]] = {}  # thread id -> this object's open entries

    @property
    def rule(self) -> Rule:
        """The rule this context installs."""
        return self.slot.rule

    def __repr__(self) -> str:
        return f"backward_rule({self.rule.name!r})"

    def __enter__(self) -> backward_rule:
        entry = _Entry(self)
        with self._lock:
            self._entries.setdefault(threading.get_ident(), []).append(entry)
        try:
            _push(entry)
            if self.tracks_modules:
                _modules.acquire()
        except BaseException:
            self._forget(entry)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            open_entries = self._entries.get(threading.get_ident())
            if not open_entries:
                raise RuntimeError(f"{self!r} exited in a thread where it was not entered")
            entry = open_entries[-1]
        self._forget(entry)
        _pop(entry)
        if self.tracks_modules:
            _modules.release()
        if exc_type is None and self.warn:
            _warn_about(entry)

    def _forget(self, entry: _Entry) -> None:
        with self._lock:
            open_entries = self._entries[threading.get_ident()]
            open_entries.remove(entry)
            if not open_entries:
                del self._entries[threading.get_ident()]


def _warn_about(entry: _Entry) -> None:
    owner = entry.owner
    if owner.only_gradient:
        return
    if entry.foreign:
        warnings.warn(
            "deconvlab: these activations are not ReLU, so they are untouched by "
            f"{owner.rules_text} and keep their plain gradient: {'; '.join(entry.foreign)}",
            UnsupportedActivationWarning,
            stacklevel=3,
        )
    if entry.ops and not entry.relus:
        warnings.warn(
            f"deconvlab: no ReLU was evaluated under {owner.rules_text}, so every rule "
            "equals the plain gradient for this model",
            NoReLUWarning,
            stacklevel=3,
        )
