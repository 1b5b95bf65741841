"""IPython startup file for the browser tests' kernels (copied into their private IPYTHONDIR).

Exceptions in widget callbacks reach no cell: ipykernel logs exceptions in comm handlers, and
ipywidgets reports an exception in a callback with ``shell.showtraceback()``, whose output goes
to JupyterLab's log console. This file appends both to the file named by the environment
variable ``DECONVLAB_KERNEL_ERROR_LOG``, where the driver reads them (``server_logs``).
"""

import os as _os


def _install_error_log(path):
    """Copy comm-handler errors and every traceback the shell shows to ``path``."""
    import logging as _logging

    class ErrorsToFile(_logging.Handler):
        def emit(self, record):
            with open(path, "a", encoding="utf-8") as f:
                f.write(self.format(record).replace("\n", "\n    ") + "\n")

    handler = ErrorsToFile(level=_logging.ERROR)
    handler.setFormatter(_logging.Formatter("%(name)s: %(message)s"))
    for name in ("Comm", "ipykernel.comm"):  # where exceptions in comm handlers are logged
        _logging.getLogger(name).addHandler(handler)
        _logging.getLogger(name).addHandler(_logging.lastResort)  # and still to stderr

    shell = get_ipython()  # noqa: F821 (defined in IPython startup files)
    show = shell.showtraceback

    def showtraceback(*args, **kwargs):
        import sys

        etype, value = sys.exc_info()[:2]
        if value is None:
            etype, value = getattr(sys, "last_type", None), getattr(sys, "last_value", None)
        if value is not None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"traceback shown: {etype.__name__}: {value}\n")
        return show(*args, **kwargs)

    shell.showtraceback = showtraceback


if _os.environ.get("DECONVLAB_KERNEL_ERROR_LOG"):
    _install_error_log(_os.environ["DECONVLAB_KERNEL_ERROR_LOG"])
del _install_error_log, _os
