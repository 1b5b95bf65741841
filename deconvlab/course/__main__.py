"""``python -m deconvlab.course build ...``: see :mod:`deconvlab.course.build`."""

import sys

from .build import main

sys.exit(main())
