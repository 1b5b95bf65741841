"""``python -m deconvlab ...`` runs the command line (:mod:`deconvlab.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
