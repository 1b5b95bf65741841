"""Fixtures for the browser tests: a private JupyterLab and Debian's Chromium, driven by
``tools.jupyterlab_driver`` (see its docstrings for what is checked).

Chromium is taken from ``/usr/bin/chromium`` (``DECONVLAB_CHROMIUM`` overrides it). Without it the
tests skip, except in CI (``CI=true``), where they fail: ``.ci/run`` installs it.

Artifacts: one screenshot per notebook and the server log go to ``DECONVLAB_BROWSER_ARTIFACTS``
(default: a pytest temporary folder, printed in the summary). The timing table is printed at the
end of the session and written as JSON to ``DECONVLAB_BROWSER_REPORT`` when that is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from tools import jupyterlab_driver as jd

CHROMIUM = Path(os.environ.get("DECONVLAB_CHROMIUM", "/usr/bin/chromium"))
REPORTS: list[jd.NotebookReport] = []
VERSIONS: dict[str, str] = {}
ARTIFACTS: list[Path] = []


def _unavailable(reason: str) -> None:
    """Skip outside CI; fail loudly in CI, where the browser suite must always run."""
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    if not REPORTS:
        return
    terminalreporter.section("deconvlab notebooks in the browser")
    for line in jd.summary_lines(REPORTS):
        terminalreporter.write_line(line)
    for path in ARTIFACTS:
        terminalreporter.write_line(f"screenshots and server log: {path}")
    out = os.environ.get("DECONVLAB_BROWSER_REPORT")
    if out:
        jd.write_json(Path(out), REPORTS, VERSIONS, jd.SLIDER_MOVES)
        terminalreporter.write_line(f"timing report written to {out}")


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not CHROMIUM.exists():
        _unavailable(
            f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y "
            "chromium` (CI does this in .ci/run), or point DECONVLAB_CHROMIUM at one"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Python Playwright is not installed; `pip install -e .[test]`")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_artifacts(tmp_path_factory) -> Path:
    env = os.environ.get("DECONVLAB_BROWSER_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.append(path)
    return path


@pytest.fixture(scope="session")
def jupyter_lab(chromium_executable, tmp_path_factory, browser_artifacts):
    """A JupyterLab server on 127.0.0.1 with a copy of notebooks/ at ``notebooks/``."""
    lab = jd.JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        with contextlib.suppress(OSError):
            shutil.copy(lab.log_path, browser_artifacts / "jupyterlab.log")


@pytest.fixture(scope="session")
def chromium(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = jd.launch(pw, chromium_executable)
        VERSIONS.update(jd.versions(browser))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def notebook_driver(jupyter_lab, chromium, browser_artifacts) -> jd.NotebookDriver:
    return jd.NotebookDriver(jupyter_lab, chromium, browser_artifacts, REPORTS)


@pytest.fixture
def driver_without_widget_manager(chromium, tmp_path, browser_artifacts) -> jd.NotebookDriver:
    """A second server whose JupyterLab has the ipywidgets front end disabled (harness test)."""
    lab = jd.JupyterLab(tmp_path, disabled_extensions=("@jupyter-widgets/jupyterlab-manager",))
    try:
        lab.start()
        yield jd.NotebookDriver(lab, chromium, browser_artifacts)
    finally:
        lab.stop()
