"""Interrupt a piece of deconvlab code everywhere, and say what it left behind.

Two ways to deliver a ``KeyboardInterrupt`` (used by ``tests/test_interrupts.py``):

* :func:`sweep`: a ``sys.settrace`` tracer counts the opcodes executed in frames of the
  deconvlab package while a scenario runs; then the scenario runs again once per opcode,
  raising ``KeyboardInterrupt`` at exactly that opcode. Deterministic and exhaustive
  (every point of deconvlab's own code), but it cannot land inside C code or in other
  libraries' Python code.
* :class:`AlarmInterrupter`: a real SIGINT, sent by a SIGALRM handler after a random short
  delay, lands wherever the main thread happens to be (deconvlab, torch, contextlib).

After each trial :class:`Baseline.problems` lists every invariant that broke: the torch
function-mode stack, ``dl.active_rule()``, hooks on the model and the process-wide module
hooks, each module's ``training`` flag, the model's plain output and gradient, and whether the
same context objects can be entered again (in a daemon thread with a timeout, since a lock
left held would block forever).

Runs on Python 3.9+ (CPython: ``frame.f_trace_opcodes``).
"""

from __future__ import annotations

import dis
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
import torch.nn.modules.module as torch_module
from torch import nn

import deconvlab as dl
from deconvlab.interrupts import held

PACKAGE_DIR = os.path.dirname(os.path.abspath(dl.__file__)) + os.sep

#: How long re-entering a context may take before a lock is declared left held.
REENTRY_TIMEOUT = 5.0

# PyTorch's process-wide module hooks (``register_module_forward_hook`` and friends). Private
# names, only READ here: PyTorch has no public way to list them.
_GLOBAL_HOOK_NAMES = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
)
_MODULE_HOOK_NAMES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())


def in_package(filename: str) -> bool:
    """Whether code from ``filename`` is deconvlab's own (any module of the package)."""
    return os.path.abspath(filename).startswith(PACKAGE_DIR)


def where(frame) -> str:
    """``context.py:312 in __exit__ (lasti 40)``: a frame's place, without keeping the frame."""
    filename = frame.f_code.co_filename
    name = os.path.relpath(filename, PACKAGE_DIR) if in_package(filename) else os.path.basename(filename)
    return f"{name}:{frame.f_lineno} in {frame.f_code.co_name} (lasti {frame.f_lasti})"


def describe(error: BaseException) -> str:
    """``ValueError: list.remove(x): x not in list (raised at context.py:299 in _pop)``."""
    frames = traceback.extract_tb(error.__traceback__)
    place = ""
    if frames:
        last = frames[-1]
        place = f" (raised at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{type(error).__module__}.{type(error).__qualname__}: {error}{place}"


def function_modes() -> list:
    """This thread's torch function-mode stack, innermost last (private PyTorch API, read only)."""
    return list(torch.overrides._get_current_function_mode_stack())


def same_modes(now: list, before: list) -> bool:
    return len(now) == len(before) and all(a is b for a, b in zip(now, before))


def global_hooks() -> dict[str, tuple]:
    """The keys of PyTorch's process-wide module hook dicts (private, read only)."""
    return {
        name: tuple(getattr(torch_module, name)) for name in _GLOBAL_HOOK_NAMES if hasattr(torch_module, name)
    }


# --------------------------------------------------------------------------- invariants


@dataclass
class Baseline:
    """What must hold again after every trial; taken before the first one."""

    model: nn.Module | None = None
    x: torch.Tensor | None = None
    target: int = 0
    contexts: Sequence = ()
    modes: list = field(default_factory=function_modes)
    hooks: dict = field(default_factory=global_hooks)
    sigint: object = field(default_factory=lambda: signal.getsignal(signal.SIGINT))
    training: list = field(default_factory=list)
    output: torch.Tensor | None = None
    grad: torch.Tensor | None = None

    def __post_init__(self) -> None:
        problems = self.unpolluted()
        if problems:
            raise AssertionError("the state is already wrong before the first trial: " + "; ".join(problems))
        if self.model is not None:
            assert self.x is not None
            self.training = [(name, module.training) for name, module in self.model.named_modules()]
            self.output, self.grad = self.plain()

    def plain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output and plain gradient ``d model(x)[0, target] / dx``, outside any rule."""
        assert self.model is not None and self.x is not None
        x = self.x.detach().clone().requires_grad_(True)
        output = self.model(x)
        (grad,) = torch.autograd.grad(output[0, self.target], x)
        return output.detach(), grad

    def unpolluted(self) -> list[str]:
        """Problems a previous test or trial may have left (checked before a sweep starts)."""
        problems = []
        if dl.active_rule() is not None:
            problems.append(f"dl.active_rule() is {dl.active_rule()!r}")
        if any(type(mode).__module__.startswith("deconvlab") for mode in function_modes()):
            problems.append(f"a deconvlab mode is on the torch function-mode stack: {function_modes()}")
        return problems

    def problems(self, exception: BaseException | None, interrupted: bool) -> list[str]:
        """Every invariant that no longer holds after a trial."""
        problems = []
        if interrupted and not isinstance(exception, KeyboardInterrupt):
            surfaced = "no exception" if exception is None else describe(exception)
            problems.append(f"the interrupt surfaced as {surfaced}")
        if not interrupted and exception is not None:
            problems.append(f"no interrupt was delivered, yet it raised {describe(exception)}")
        modes = function_modes()
        if not same_modes(modes, self.modes):
            problems.append(f"torch function-mode stack is {modes}, was {self.modes}")
        rule = dl.active_rule()
        if rule is not None:
            problems.append(f"dl.active_rule() is {rule!r} after the trial")
        if signal.getsignal(signal.SIGINT) is not self.sigint:
            problems.append(f"the SIGINT handler is {signal.getsignal(signal.SIGINT)!r}, was {self.sigint!r}")
        if held.sections or held.pending:
            problems.append(f"deconvlab still holds {len(held.sections)} section(s), pending {held.pending}")
        hooks = global_hooks()
        if hooks != self.hooks:
            extra = {
                name: len(keys) - len(self.hooks.get(name, ()))
                for name, keys in hooks.items()
                if keys != self.hooks.get(name)
            }
            problems.append(f"process-wide module hooks changed (count difference {extra})")
        if self.model is not None:
            problems += self._model_problems()
        problems += reentry_problems(self.contexts, self.modes)
        return problems

    def _model_problems(self) -> list[str]:
        assert self.model is not None and self.output is not None and self.grad is not None
        problems = []
        for name, module in self.model.named_modules():
            for hooks in _MODULE_HOOK_NAMES:
                if getattr(module, hooks, None):
                    left = dict(getattr(module, hooks))
                    problems.append(f"module {name or '<model>'!r} still has {hooks}: {left}")
        training = [(name, module.training) for name, module in self.model.named_modules()]
        if training != self.training:
            changed = [
                name or "<model>" for (name, now), (_, was) in zip(training, self.training) if now != was
            ]
            problems.append(f"the training flag of {changed} was not restored")
        try:
            output, grad = self.plain()
        except Exception as error:  # e.g. a probe hook left behind raises StopForward
            problems.append(f"model(x) then fails with {describe(error)}")
        else:
            if not torch.equal(output, self.output):
                problems.append("model(x) differs from its output before the trial")
            if not torch.equal(grad, self.grad):
                problems.append("the plain gradient differs from the one before the trial")
        return problems


def _enter_all(targets: Sequence) -> list[str]:
    try:
        for context in targets:
            with context:
                torch.relu(torch.ones(2, requires_grad=True) * 1)
    except BaseException as error:
        return [f"{type(error).__name__}: {error}"]
    return []


class _Worker:
    """A daemon thread that enters contexts on request (cheaper than a thread per trial).

    A worker that blocks (on a lock left held) is abandoned; the next request starts another.
    """

    current: ClassVar[_Worker | None] = None
    blocked: ClassVar[list[_Worker]] = []

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="reentry-check", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self.replies.put(_enter_all(self.requests.get()))

    @classmethod
    def enter(cls, targets: Sequence, timeout: float) -> list[str] | None:
        """What went wrong entering ``targets`` in the worker thread; None if it blocked."""
        worker = cls.current = cls.current or cls()
        worker.requests.put(targets)
        try:
            return worker.replies.get(timeout=timeout)
        except queue.Empty:
            cls.current = None
            cls.blocked.append(worker)
            return None

    @classmethod
    def settle(cls, timeout: float) -> None:
        """Wait for blocked workers to finish (after their lock was released); reuse one."""
        for worker in list(cls.blocked):
            try:
                worker.replies.get(timeout=timeout)
            except queue.Empty:
                continue
            cls.blocked.remove(worker)
            cls.current = cls.current or worker


def reentry_problems(contexts: Sequence, modes: list, timeout: float = REENTRY_TIMEOUT) -> list[str]:
    """Enter ``contexts`` (and a fresh ``backward_rule``) again: first in a daemon thread with a
    timeout (a lock left held blocks it, and must not hang the suite), then in this thread."""
    targets = [*contexts, dl.backward_rule("deconvnet")]
    errors = _Worker.enter(targets, timeout)
    if errors is None:
        return [f"HANG: re-entering {targets} in another thread blocked for {timeout:g} s (a lock held?)"]
    if errors:
        return [f"re-entering {targets} in another thread raised {errors[0]}"]
    problems = []
    for context in targets:
        try:
            with context:
                if dl.active_rule() is not context.rule:
                    problems.append(f"inside {context!r} entered again, active rule {dl.active_rule()!r}")
                torch.relu(torch.ones(2, requires_grad=True) * 1)
        except BaseException as error:
            problems.append(f"re-entering {context!r} raised {type(error).__name__}: {error}")
    modes_now = function_modes()
    if dl.active_rule() is not None or not same_modes(modes_now, modes):
        problems.append(f"after re-entering, dl.active_rule() is {dl.active_rule()!r}, modes {modes_now}")
    return problems


class _CleanupBlocked(Exception):
    pass


def _raise_blocked(signum: int, frame) -> None:
    raise _CleanupBlocked


def _release_locks(holders: list) -> None:
    for holder in holders:
        for value in [holder, *getattr(holder, "__dict__", {}).values()]:
            if isinstance(value, _LOCK_TYPE) and value.locked():
                value.release()
            elif isinstance(value, _RLOCK_TYPE):
                while value._is_owned():
                    value.release()


def best_effort_cleanup(baseline: Baseline, timeout: float = 2.0) -> list[str]:
    """After a failed trial, undo what it left so the next trials (and tests) mean something.

    Test-only, generic, and allowed to touch private state: releases the plain locks (and this
    thread's re-entrant locks) found on the scenario's contexts and on deconvlab's module-level
    objects, exits the contexts until they refuse (under a SIGALRM timeout: lock acquisition is
    interruptible), puts the function-mode stack back, clears hooks, restores training flags and
    resets the per-thread state objects of deconvlab's modules. Returns what is still wrong
    afterwards (empty: the sweep may go on).
    """
    holders = [*baseline.contexts]
    for module_name, module in list(sys.modules.items()):
        if module_name == "deconvlab" or module_name.startswith("deconvlab."):
            holders += list(vars(module).values())
    _release_locks(holders)
    _Worker.settle(timeout)  # a worker blocked on one of them runs on now: let it finish first
    _release_locks(holders)
    blocked = []
    previous = signal.signal(signal.SIGALRM, _raise_blocked)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        for context in baseline.contexts:
            for _ in range(8):
                try:
                    context.__exit__(None, None, None)
                except _CleanupBlocked:
                    blocked.append(f"clean-up: {context!r}.__exit__ blocked for {timeout:g} s")
                    break
                except BaseException:
                    break
            if blocked:
                break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _release_locks(holders)
    held.sections.clear()
    held.pending = False
    signal.signal(signal.SIGINT, baseline.sigint)
    while torch._C._len_torch_function_stack() > 0:
        torch._C._pop_torch_function_stack()
    for mode in baseline.modes:
        torch._C._push_on_torch_function_stack(mode)
    for name, keys in global_hooks().items():
        hooks = getattr(torch_module, name)
        for key in set(keys) - set(baseline.hooks.get(name, ())):
            hooks.pop(key, None)
    if baseline.model is not None:
        flags = dict(baseline.training)
        for name, module in baseline.model.named_modules():
            for hooks_name in _MODULE_HOOK_NAMES:
                getattr(module, hooks_name, {}).clear()
            module.training = flags[name]
    for holder in holders:
        if isinstance(holder, threading.local):
            vars(holder).clear()
            if type(holder).__init__ is not threading.local.__init__:
                type(holder).__init__(holder)
    return blocked + baseline.unpolluted()


# --------------------------------------------------------------------------- watchdog


class TrialHung(BaseException):
    """Raised in the main thread by :class:`Watchdog` when a guarded block overruns.

    A BaseException, so that no ``except Exception`` in the code under test swallows it.
    """


class Watchdog:
    """Ends a trial that blocks (e.g. on a lock an earlier step of the same trial left held).

    A daemon thread watches the deadline of the current :meth:`guard` block and sends SIGUSR1
    to the main thread when it passes; the handler raises :class:`TrialHung` there (a blocked
    ``lock.acquire()`` is interruptible by signals). A context manager: installs the SIGUSR1
    handler on entry and restores the caller's on exit.
    """

    def __enter__(self) -> Watchdog:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the watchdog interrupts the main thread")
        self._deadline: float | None = None
        self._seconds = 0.0
        self._closed = False
        self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
        self._thread = threading.Thread(target=self._watch, name="trial-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._deadline, self._closed = None, True
        self._thread.join(1.0)
        signal.signal(signal.SIGUSR1, self._previous)

    def _watch(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        while not self._closed:
            deadline, now = self._deadline, time.monotonic()
            if deadline is not None and now >= deadline:
                signal.pthread_kill(main, signal.SIGUSR1)
            time.sleep(0.1)

    def _on_signal(self, signum: int, frame) -> None:
        deadline = self._deadline  # read here, in the main thread: no race with guard()
        if deadline is not None and time.monotonic() >= deadline:
            self._deadline = None
            raise TrialHung(f"blocked for {self._seconds:g} s at {where(frame) if frame else '?'}")

    @contextmanager
    def guard(self, seconds: float | None = None) -> Iterator[None]:
        """Raise :class:`TrialHung` in the block if it runs longer than ``seconds``
        (default: ``REENTRY_TIMEOUT``)."""
        seconds = REENTRY_TIMEOUT if seconds is None else seconds
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._deadline = None


def hang_problems(error: BaseException | None) -> list[str]:
    """``["HANG: ..."]`` when the trial itself was ended by the watchdog."""
    if isinstance(error, TrialHung):
        return [f"HANG: the trial itself {error} (a lock left held by an earlier step of it?)"]
    return []


# --------------------------------------------------------------------------- opcode sweep


_RETURNS = {dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap}
_POP_BLOCK = dis.opmap.get("POP_BLOCK", 256)  # a real instruction only before Python 3.11
# Before 3.11 the eval loop runs no signal handler right before these (ceval.c: "Few cases where
# we skip running signal handlers"); from 3.11 on they are pseudo-instructions.
_NO_SIGNAL_BEFORE = {
    dis.opmap[name]
    for name in ("SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH", "BEFORE_ASYNC_WITH")
    if dis.opmap.get(name, 256) < 256
}
_COVERED: dict = {}  # code -> offsets inside an exception-table range (Python 3.11+)


def _covered(code) -> set[int] | None:
    if code not in _COVERED:
        entries = getattr(dis.Bytecode(code), "exception_entries", None)  # Python 3.11+
        _COVERED[code] = (
            None
            if entries is None
            else {offset for entry in entries for offset in range(entry.start, entry.end, 2)}
        )
    return _COVERED[code]


def boundary(frame) -> str | None:
    """Why no interrupt can be undone at this instruction, if that is so; else None.

    The sweep raises before *every* instruction, which real interrupts cannot: CPython delivers
    a signal only at an eval-breaker check (3.11+: a function's RESUME, a backward jump, after a
    call). Three kinds of instruction are excused, since no code written in Python can protect
    them and (but for the last, before 3.11) no real interrupt arrives there:

    * a NOP outside every exception-table range (3.11+): the compiler leaves the ``try:`` line's
      NOP out, since a NOP cannot raise, so ``finally``/``except``/``__exit__`` do not run;
    * SETUP_FINALLY / SETUP_WITH (before 3.11), where the eval loop runs no signal handler;
    * the return of ``__enter__``: its work is done, yet the ``with`` statement sees it fail and
      never calls ``__exit__``.

    The RESUME of ``__exit__``, where a real SIGINT does arrive, is not an opcode event: the
    real-signal trials cover it, and excuse nothing.
    """
    code, at = frame.f_code, frame.f_lasti
    op = code.co_code[at]
    if op == dis.opmap["NOP"]:
        covered = _covered(code)
        if covered is not None and at not in covered:
            return "a NOP outside every exception handler"
    if op in _NO_SIGNAL_BEFORE:
        return f"{dis.opname[op]}, where no signal is delivered"
    if code.co_name == "__enter__" and (
        op in _RETURNS or (op == _POP_BLOCK and code.co_code[at + 2] in _RETURNS)
    ):
        return "the return of __enter__"
    return None


def scenario_code(scenario: Callable[[], object]) -> frozenset:
    """The scenario's own code, to interrupt too where a real SIGINT can land in it: on Python 3.9
    before almost every instruction (between a ``with`` block's end and its ``__exit__`` call
    too); from 3.10 only after calls and at backward jumps, where the sweep cannot place it."""
    code = getattr(scenario, "__code__", None)
    if code is None or sys.version_info >= (3, 10):
        return frozenset()
    found, stack = set(), [code]
    while stack:
        current = stack.pop()
        found.add(current)
        stack.extend(c for c in current.co_consts if isinstance(c, type(code)))
    return frozenset(found)


class OpcodeTracer:
    """Counts opcode events in deconvlab frames (and, on Python 3.9, the scenario's own frames);
    raises ``KeyboardInterrupt`` at event ``target``.

    ``fired_at`` says where it raised; ``boundary`` whether that was one of the two instructions
    of a context manager that no Python code can protect (see :func:`boundary`).
    """

    def __init__(self, target: int | None = None, user_code: frozenset = frozenset()) -> None:
        self.target = target
        self.events = 0
        self.fired_at: str | None = None
        self.boundary: str | None = None
        self._ours: dict = {}
        self._user_code = user_code

    def __call__(self, frame, event, arg):  # the global trace function: sees each new frame
        code = frame.f_code
        ours = self._ours.get(code)
        if ours is None:
            ours = self._ours[code] = in_package(code.co_filename) or code in self._user_code
        if not ours:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local

    def _local(self, frame, event, arg):
        if event == "opcode":
            index = self.events
            self.events += 1
            if index == self.target and self.fired_at is None:
                self.fired_at = where(frame)
                self.boundary = boundary(frame)
                # A real SIGINT, handled at once by whatever handler is installed: Python's raises
                # KeyboardInterrupt here, deconvlab's holds it while critical code runs.
                signal.raise_signal(signal.SIGINT)
        return self._local

    def run(self, scenario: Callable[[], object]) -> BaseException | None:
        """Run ``scenario`` under this tracer (SIGINT raising ``KeyboardInterrupt``); the exception
        it raised, or None."""
        previous, handler = sys.gettrace(), signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.settrace(self)
        try:
            scenario()
        except BaseException as error:
            return error
        finally:
            sys.settrace(previous)  # CPython also drops a trace function that raised
            signal.signal(signal.SIGINT, handler)
        return None


@dataclass
class Failure:
    trial: int | str
    where: str | None
    problems: list[str]

    @property
    def site(self) -> str:
        """Where the interrupt was injected, to the line: ``context.py:311 in __enter__``."""
        return re.sub(r" \(lasti \d+\)$", "", self.where or "-")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The problems without object ids and addresses, to group trials that broke alike."""
        return tuple(re.sub(r"\{\d+: <[^>]*>\}| at 0x[0-9a-f]+", "", problem) for problem in self.problems)


@dataclass
class SweepResult:
    name: str
    opcodes: int = 0
    trials: int = 0
    interrupted: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    excused: dict[str, list[int]] = field(default_factory=dict)  # boundary (site) -> trials
    note: str = ""

    def summary(self) -> str:
        """One line of counts, then one line per (site, problems) group: count and first trial."""
        text = (
            f"{self.name}: {self.opcodes} opcodes, {self.trials} trials, "
            f"{self.interrupted} interrupted, {len(self.failures)} failed, {self.seconds:.1f} s"
        )
        if self.note:
            text += f" ({self.note})"
        for place, trials in self.excused.items():
            text += f"\n  excused: {len(trials)} trial(s) at {place}, k={trials}"
        groups: dict[tuple, list[Failure]] = {}
        for failure in self.failures:
            groups.setdefault((failure.site, failure.kinds), []).append(failure)
        for (site, kinds), members in groups.items():
            text += f"\n  {len(members)} trial(s) at {site}, first k={members[0].trial}: " + " | ".join(kinds)
        return text


def sweep(
    name: str,
    scenario: Callable[[], object],
    baseline: Baseline,
    *,
    max_failures: int = 500,
    max_hangs: int = 1,
    strict_boundaries: bool = False,
    user_code: frozenset = frozenset(),
) -> SweepResult:
    """Interrupt ``scenario`` at each opcode of deconvlab code it runs, one trial per opcode.

    A trial whose injection point lies past the scenario's last opcode (the count may shift
    after a failure) must simply complete. After a failed trial the state is cleaned up and
    the sweep goes on, so the summary maps every failing place; it stops after ``max_hangs``
    hangs (each costs ``REENTRY_TIMEOUT``), when the clean-up cannot restore the state, or
    after ``max_failures`` failed trials.

    Unless ``strict_boundaries``, a trial interrupted at one of the two instructions of a
    context manager that no Python code can protect (:func:`boundary`) must only surface as
    ``KeyboardInterrupt``; the state it leaves is cleaned up and the trial counted as excused.
    ``user_code`` (see :func:`scenario_code`) is interrupted too, as deconvlab's own code is.
    """
    result = SweepResult(name)
    start = time.perf_counter()
    with Watchdog() as watchdog:
        counter = OpcodeTracer(user_code=user_code)
        with watchdog.guard():
            error = counter.run(scenario)
        problems = hang_problems(error) or checked(baseline, watchdog, error, interrupted=False)
        if problems:
            result.failures.append(Failure("count (no interrupt)", None, problems))
            result.note = "the scenario fails without any interrupt"
            best_effort_cleanup(baseline)
            return result
        result.opcodes = counter.events
        _sweep(
            result,
            scenario,
            baseline,
            watchdog,
            counter.events,
            max_failures,
            max_hangs,
            strict_boundaries,
            user_code,
        )
    result.seconds = time.perf_counter() - start
    return result


def checked(
    baseline: Baseline, watchdog: Watchdog, error: BaseException | None, interrupted: bool
) -> list[str]:
    """``baseline.problems(...)``, ended by the watchdog if the checks themselves block."""
    try:
        with watchdog.guard(2 * REENTRY_TIMEOUT + 1):
            return baseline.problems(error, interrupted)
    except TrialHung as hung:
        return [f"HANG: checking the state afterwards {hung}"]


def _sweep(
    result: SweepResult,
    scenario: Callable[[], object],
    baseline: Baseline,
    watchdog: Watchdog,
    opcodes: int,
    max_failures: int,
    max_hangs: int,
    strict_boundaries: bool,
    user_code: frozenset,
) -> None:
    hangs = 0
    for k in range(opcodes):
        tracer = OpcodeTracer(k, user_code)
        with watchdog.guard():
            error = tracer.run(scenario)
        result.trials += 1
        result.interrupted += tracer.fired_at is not None
        if tracer.boundary and not strict_boundaries and not isinstance(error, TrialHung):
            place = f"{tracer.boundary} ({Failure(k, tracer.fired_at, []).site})"
            result.excused.setdefault(place, []).append(k)
            problems = [] if isinstance(error, KeyboardInterrupt) else baseline.problems(error, True)[:1]
            del error
            left = best_effort_cleanup(baseline)
            if left and not problems:
                problems = ["clean-up after an excused trial could not restore " + "; ".join(left)]
        else:
            problems = hang_problems(error) or checked(baseline, watchdog, error, tracer.fired_at is not None)
            del error  # its traceback keeps the interrupted frames (and their tensors) alive
        if not problems:
            continue
        result.failures.append(Failure(k, tracer.fired_at, problems))
        left = best_effort_cleanup(baseline)
        hangs += any(problem.startswith("HANG") for problem in problems)
        if hangs >= max_hangs:
            result.note = f"stopped at hang {hangs}, trial {k}"
            break
        if left:
            result.note = "stopped: clean-up could not restore " + "; ".join(left)
            break
        if len(result.failures) >= max_failures:
            result.note = f"stopped after {max_failures} failed trials"
            break


# --------------------------------------------------------------------------- real signals


@dataclass
class SignalTrial:
    error: BaseException | None
    interrupted: bool  # the alarm fired while the scenario was running
    landed: str | None  # where the SIGINT landed: the innermost Python frame
    in_package: bool  # ... and that frame is deconvlab's own code
    in_call: bool  # some frame on the stack is deconvlab's (e.g. torch code called by deconvlab)


class AlarmInterrupter:
    """Deliver a real SIGINT after a delay: SIGALRM (``setitimer``) -> ``raise_signal(SIGINT)``
    -> Python's default SIGINT handler -> ``KeyboardInterrupt`` in the main thread.

    A context manager: installs the two handlers on entry and restores the caller's on exit.
    """

    def __enter__(self) -> AlarmInterrupter:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signals are delivered to the main thread only")
        self.armed = False
        self.landed: str | None = None
        self.in_package = self.in_call = False
        self._saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.armed = False
        signal.signal(signal.SIGALRM, self._saved[1])
        signal.signal(signal.SIGINT, self._saved[0])

    def _on_alarm(self, signum: int, frame) -> None:
        if not self.armed:  # fired after the scenario ended: drop it
            return
        self.armed = False
        self.landed = where(frame) if frame is not None else None
        self.in_package = frame is not None and in_package(frame.f_code.co_filename)
        caller, self.in_call = frame, False
        while caller is not None and not self.in_call:
            self.in_call = in_package(caller.f_code.co_filename)
            caller = caller.f_back
        signal.raise_signal(signal.SIGINT)  # the KeyboardInterrupt is raised from here

    def trial(self, scenario: Callable[[], object], delay: float) -> SignalTrial:
        """Run ``scenario`` with a SIGINT scheduled ``delay`` seconds after its start."""
        self.landed, self.in_package, self.in_call = None, False, False
        error: BaseException | None = None
        self.armed = True
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, max(delay, 1e-6))  # 0 would disarm it
                scenario()
            finally:
                self.armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as caught:
            error = caught
        return SignalTrial(error, self.landed is not None, self.landed, self.in_package, self.in_call)
