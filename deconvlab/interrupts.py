"""Critical sections: a Ctrl-C never cuts a change of global state in half.

deconvlab changes state that outlives a call in a few short steps: it pushes and pops its
torch function mode, adds and removes hooks, sets and restores each module's ``training``
flag and torch's thread count. Exception handling (``try``/``finally``, ``with``) restores all
of it when anything is *raised*, but a ``KeyboardInterrupt`` from a real SIGINT can land
between two instructions where no handler is in force yet: the first instruction of an
``__exit__``, the normal exit of a ``with`` block, a ``finally`` before its first call.

So while a section is open in the main thread (a :class:`~deconvlab.backward_rule` block,
a forward pass being recorded, a model in eval mode for a moment), deconvlab installs a
SIGINT handler of its own, and restores the previous one when the last section closes. A
SIGINT that lands in a **critical** function (marked :func:`critical`, or any code it calls,
up to a function marked :func:`interruptible` that runs the user's model or rule) is held;
anywhere else it goes to the previous handler at once (Python's raises ``KeyboardInterrupt``),
unless raising it there would lose it (in a garbage-collector callback or a ``__del__``, whose
exceptions Python drops): then it is held too. A held interrupt is raised at the next safe
point: when a section closes, when user code is about to run (a forward or backward pass, the
next torch call in a ``backward_rule`` block), or at once on the next Ctrl-C. Only the main
thread receives signals; sections opened in other threads hold nothing.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import gc
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import CodeType, FrameType, TracebackType
from typing import Any, TypeVar

__all__ = ["Section", "critical", "deliver_held", "held", "interruptible"]

F = TypeVar("F", bound=Callable[..., Any])

_CRITICAL: set[CodeType] = set()
_INTERRUPTIBLE: set[CodeType] = set()
_MAIN_THREAD = threading.main_thread().ident
# contextlib's generator-based context managers: their frames run our generators' clean-up.
_CONTEXTLIB_CODES = frozenset(
    getattr(contextlib._GeneratorContextManager, name).__code__ for name in ("__enter__", "__exit__")
)


def _codes(code: CodeType) -> Iterator[CodeType]:
    """``code`` and the code nested in it (comprehensions, lambdas, inner functions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _codes(constant)


def critical(func: F) -> F:
    """Mark ``func`` critical: a SIGINT landing in it (or in what it calls) is held."""
    _CRITICAL.update(_codes(func.__code__))
    return func


def interruptible(func: F) -> F:
    """Mark ``func`` as running user code (a model, a rule): a SIGINT there is raised at once,
    even when a critical function called it."""
    _INTERRUPTIBLE.update(_codes(func.__code__))
    return func


class _Held:
    """The main thread's open sections, the handler they replaced, and a held interrupt."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.previous: Any = None
        self.pending = False


held = _Held()


def _critical_frame(frame: FrameType) -> bool | None:
    """True/False for a frame that decides (critical / runs user code), None to look further out."""
    code = frame.f_code
    if code in _INTERRUPTIBLE:
        return False
    if code in _CRITICAL:
        return True
    if code in _CONTEXTLIB_CODES:  # entering or leaving one of our generator context managers?
        generator = getattr(frame.f_locals.get("self"), "gen", None)
        if getattr(generator, "gi_code", None) in _CRITICAL:
            return True
    return None


@functools.lru_cache(maxsize=4096)
def _with_exit_offsets(code: CodeType) -> frozenset[int]:
    """Python 3.9: the offsets from each ``POP_BLOCK`` that ends a ``with`` block to the call of
    its ``__exit__`` (``POP_BLOCK [ROT_TWO] LOAD_CONST None DUP_TOP DUP_TOP CALL_FUNCTION 3``)."""
    instructions = list(dis.get_instructions(code))
    names = [instruction.opname for instruction in instructions]
    offsets: set[int] = set()
    for start, name in enumerate(names):
        if name != "POP_BLOCK":
            continue
        after = start + 1 + (names[start + 1 : start + 2] == ["ROT_TWO"])
        call = after + 3
        if (
            names[after : call + 1] == ["LOAD_CONST", "DUP_TOP", "DUP_TOP", "CALL_FUNCTION"]
            and instructions[after].argval is None
            and instructions[call].arg == 3
        ):
            offsets.update(instruction.offset for instruction in instructions[start : call + 1])
    return frozenset(offsets)


def _leaving_a_with(frame: FrameType) -> bool:
    """Whether ``frame`` has ended a ``with`` block but not yet called its ``__exit__``.

    Python 3.9 checks for signals before almost every instruction, so a ``KeyboardInterrupt`` can
    be raised after the block is popped and before ``__exit__`` is called, which then never runs
    (bpo-29988). From 3.10 the interpreter checks only after calls and at backward jumps, and the
    window is gone. The ``CALL_FUNCTION`` itself is included: a signal check names the instruction
    last run, a tracer's opcode event the one about to run. The cost, on 3.9 only: a SIGINT inside
    a user's ``__exit__`` written in Python, while a section is open, is held to the next safe point.
    """
    return sys.version_info < (3, 10) and frame.f_lasti in _with_exit_offsets(frame.f_code)


def _in_critical_code(frame: FrameType | None) -> bool:
    """Whether the code interrupted at ``frame`` (or a caller it runs for) is critical, or is
    between a ``with`` block and its ``__exit__`` on Python 3.9 (any ``with``: the exit may be
    ours; a held interrupt is raised at the next safe point)."""
    while frame is not None:
        if _leaving_a_with(frame):
            return True
        decision = _critical_frame(frame)
        if decision is not None:
            return decision
        frame = frame.f_back
    return False


def _swallowed_at(frame: FrameType | None) -> bool:
    """Whether an exception raised at ``frame`` would be dropped: it runs in a garbage-collector
    callback or a finalizer (``__del__``), whose exceptions Python only reports as unraisable."""
    callbacks = {getattr(getattr(c, "__func__", c), "__code__", None) for c in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _pass_on(signum: int, frame: FrameType | None) -> None:
    previous = held.previous
    if callable(previous):
        previous(signum, frame)
    else:
        raise KeyboardInterrupt


@critical
def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGINT while a section is open: hold it in critical code, pass it on elsewhere."""
    # Also with no section listed: one is being opened (the handler is in, not yet the section)
    # or closed (the section is out, the handler about to go), and both must complete.
    # Held too where raising would lose it: a gc callback (e.g. Hypothesis' timer) or a __del__.
    if _in_critical_code(frame) or _swallowed_at(frame):
        held.pending = True
        return
    held.pending = False  # this interrupt stands for a held one too
    _pass_on(signum, frame)


@critical
def deliver_held() -> None:
    """Raise a held interrupt now (main thread; no-op when none is held)."""
    if held.pending and threading.get_ident() == _MAIN_THREAD:
        held.pending = False
        _pass_on(signal.SIGINT, None)


def _deferrable() -> bool:
    """Whether SIGINT raises KeyboardInterrupt through a Python handler we can stand in for."""
    return threading.get_ident() == _MAIN_THREAD and callable(signal.getsignal(signal.SIGINT))


class Section:
    """A critical section: the block's interrupts are held while it runs in critical code.

    Use ``with Section():`` inside a :func:`critical` function, or open and close it by hand
    (``open``/``close``, both idempotent) when its extent is not one block, as a
    :class:`~deconvlab.backward_rule` does.
    """

    __slots__ = ()

    @critical
    def open(self) -> None:
        if not _deferrable():
            return
        if not held.sections:
            held.pending = False  # a held interrupt left by an earlier section surfaced already
        if signal.getsignal(signal.SIGINT) is not _on_sigint:
            # One C-level call installs the handler; a SIGINT right after it is held by it.
            held.previous = signal.signal(signal.SIGINT, _on_sigint)
        held.sections.append(self)

    @critical
    def close(self) -> None:
        if threading.get_ident() != _MAIN_THREAD:
            return
        sections = held.sections
        for index in range(len(sections) - 1, -1, -1):
            if sections[index] is self:
                del sections[index]
                break
        if not sections and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, held.previous)  # from here a SIGINT is raised at once
        deliver_held()

    @critical
    def __enter__(self) -> Section:
        self.open()
        return self

    @critical
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
