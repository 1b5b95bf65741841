"""The course: exercises with checked answers, and the two versions of the notebooks.

Each notebook's exercises have checkers in a module named for the notebook
(``deconvlab.course.nb01`` ... ``nb05``). A checker takes the student's answer and returns a
:class:`~deconvlab.course.feedback.Feedback`: correct, not done yet (the student version's
``...``), or what is wrong, in a sentence. :mod:`deconvlab.course.build` makes the student
version (solutions removed) and the instructor version of the notebooks from one source.
"""

from __future__ import annotations

from .feedback import Feedback

__all__ = ["Feedback"]
