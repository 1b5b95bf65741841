"""Launch Debian's Chromium through Playwright, and the versions worth reporting."""

from __future__ import annotations

import contextlib
from importlib.metadata import version
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
REPORTED_DISTRIBUTIONS = ("jupyterlab", "ipywidgets", "jupyterlab_widgets", "playwright")


def launch(playwright, executable: Path):
    """A headless Chromium from ``executable``, without network chatter of its own."""
    return playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)


def versions(browser) -> dict[str, str]:
    """Chromium's version and those of the front-end distributions installed."""
    found = {"chromium": browser.version}
    for dist in REPORTED_DISTRIBUTIONS:
        with contextlib.suppress(Exception):
            found[dist] = version(dist)
    return found
