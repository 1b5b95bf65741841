"""What a checker says: correct, not done yet, or what is wrong, in one sentence.

A checker never shows the student a traceback: an answer that raises, returns nothing or
has the wrong type is reported in words (:func:`call_answer` runs the student's code).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Feedback", "NotDone", "Wrong", "call_answer", "checker", "not_done", "wrong"]

PROMPT = "Replace the ... with your answer, then run this cell again."
_MARKS = {"correct": "✔", "wrong": "✘", "not done": "…"}
_COLOURS = {"correct": "#1a7f37", "wrong": "#cf222e", "not done": "#6e7781"}


@dataclass(frozen=True)
class Feedback:
    """A checker's verdict on one exercise.

    Attributes
    ----------
    exercise : str
        The exercise's number and title, e.g. ``"1.1 Write ReLU* for each rule"``.
    status : {"correct", "wrong", "not done"}
    message : str
        One or two sentences for the student.
    """

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        """Whether the answer is correct."""
        return self.status == "correct"

    def __str__(self) -> str:
        return f"{_MARKS[self.status]} Exercise {self.exercise}: {self.status}. {self.message}"

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        return (
            f'<div style="border-left: 4px solid {colour}; padding: 4px 8px">'
            f"<b>{_MARKS[self.status]} Exercise {html.escape(self.exercise)}: {self.status}.</b> "
            f"{html.escape(self.message)}</div>"
        )

    def __repr__(self) -> str:
        return str(self)


class Wrong(Exception):
    """Raised inside a checker: the answer is wrong, and the message says why."""


class NotDone(Exception):
    """Raised inside a checker: the student has not answered yet."""


def wrong(message: str) -> Wrong:
    return Wrong(message)


def not_done(what: str = "") -> NotDone:
    return NotDone(what or PROMPT)


def is_placeholder(answer: object) -> bool:
    """Whether ``answer`` is what the student version leaves: ``...`` or None."""
    return answer is Ellipsis or answer is None


def call_answer(function: Callable[..., Any], *args: Any, what: str = "your function") -> Any:
    """Call the student's ``function``; an exception or a placeholder result becomes a sentence."""
    if is_placeholder(function):
        raise not_done()
    if not callable(function):
        raise wrong(f"{what} should be a function, but it is a {type(function).__name__}.")
    try:
        result = function(*args)
    except NotImplementedError:
        raise not_done() from None
    except Exception as error:  # the student's code: report it in a sentence, not a traceback
        raise wrong(f"{what} raised {type(error).__name__}: {error}") from None
    if is_placeholder(result):
        raise not_done(f"{what} returns nothing yet: replace the ... in its body with your answer.")
    return result


def checker(
    exercise: str, praise: str = "Well done."
) -> Callable[[Callable[..., Any]], Callable[..., Feedback]]:
    """Make a check function (which raises :class:`Wrong`/:class:`NotDone`, or returns) a checker.

    The checker returns a :class:`Feedback`, shown as a coloured line in a notebook; ``praise``
    (or the check's returned string) is the message for a correct answer.
    """

    def decorate(check: Callable[..., Any]) -> Callable[..., Feedback]:
        def run(*answers: Any, **options: Any) -> Feedback:
            if any(is_placeholder(answer) for answer in answers):
                return Feedback(exercise, "not done", PROMPT)
            try:
                said = check(*answers, **options)
            except NotDone as pending:
                return Feedback(exercise, "not done", str(pending))
            except Wrong as mistake:
                return Feedback(exercise, "wrong", str(mistake))
            return Feedback(exercise, "correct", said if isinstance(said, str) else praise)

        run.__name__ = check.__name__
        run.__qualname__ = check.__qualname__
        run.__doc__ = check.__doc__
        run.__module__ = check.__module__
        run.exercise = exercise  # type: ignore[attr-defined]
        return run

    return decorate
