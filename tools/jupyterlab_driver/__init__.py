"""Drive JupyterLab in Chromium: a private server, notebooks run from the front end, checks.

nbval executes notebooks in a kernel but never renders a widget. This package starts a real
JupyterLab (``server``, ``server_setup``), opens each notebook in Chromium through Playwright
(``chromium``, ``driver``), runs all cells from the front end and checks what a student would
see (``widget_scan``, ``widget_checks``, ``kernel_query``, ``slider_timing``, ``server_logs``).
"""

from tools.jupyterlab_driver.chromium import launch, versions
from tools.jupyterlab_driver.driver import NotebookDriver, NotebookRun
from tools.jupyterlab_driver.report import NotebookReport, summary_lines, write_json
from tools.jupyterlab_driver.server import JupyterLab
from tools.jupyterlab_driver.slider_timing import SLIDER_MOVES

__all__ = [
    "SLIDER_MOVES",
    "JupyterLab",
    "NotebookDriver",
    "NotebookReport",
    "NotebookRun",
    "launch",
    "summary_lines",
    "versions",
    "write_json",
]
