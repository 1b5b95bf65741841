"""The course: exercises with checked answers, and the two versions of the notebooks.

Each notebook's exercises have checkers in a module named for the notebook's subject:

* :mod:`~deconvlab.course.relu_rules`: notebook 01, *One equation, three rules* (and the rules
  written as readable code);
* :mod:`~deconvlab.course.cnn_maps`: notebook 02, *Three rules on a real CNN*;
* :mod:`~deconvlab.course.deconvnet`: notebook 03, *DeConvNet: looking inside*;
* :mod:`~deconvlab.course.sanity_checks`: notebook 04, *Sanity checks: do these maps explain the model?*;
* :mod:`~deconvlab.course.your_model`: notebook 05, *Under the hood: your own model*.

A checker takes the student's answer and returns a
:class:`~deconvlab.course.feedback.Feedback`: correct, not done yet (the student version's
``...``), or what is wrong, in a sentence. :mod:`deconvlab.course.build` makes the student
version (solutions removed) and the instructor version of the notebooks from one source.
"""

from __future__ import annotations

from .feedback import Feedback

__all__ = ["Feedback"]
