"""The course site: Sphinx + myst-nb builds it from the executed notebooks; Chromium reads it.

One build per session (the notebooks execute in it, a few minutes). Then every page is opened
from disk (``file://``: no server, and the browser blocks every other network request) and
checked: each notebook page shows its figures (every ``<img>`` loaded, at least one per notebook),
every formula is typeset by the site's own MathJax without a TeX error, and every internal link
points at a page and an anchor that exist.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    started = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "docs", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    pages = sorted(out.rglob("*.html"))
    print(f"course site: {len(pages)} pages built in {time.perf_counter() - started:.0f} s at {out}")
    return out


def test_the_site_has_every_notebook_the_instructor_guide_and_the_api(site):
    for name in NOTEBOOKS:
        assert (site / "_notebooks" / f"{name}.html").exists(), name
    for page in ("index", "instructor_guide", "api"):
        assert (site / f"{page}.html").exists(), page
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()  # maths offline


def _links(page) -> list[str]:
    return page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")


def _broken_links(site: Path, page, url: str) -> list[str]:
    broken = []
    for link in _links(page):
        target, anchor = urldefrag(link)
        if urlparse(target).scheme != "file":
            continue  # the papers and the source: not the site's own links
        path = Path(unquote(urlparse(target).path))
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            broken.append(f"{link} (no such page)")
        elif anchor and f'id="{anchor}"' not in path.read_text(encoding="utf-8"):
            broken.append(f"{link} (no such anchor)")
    return broken


def _images(page) -> list[tuple[str, bool, int]]:
    return page.eval_on_selector_all(
        "article img", "els => els.map(e => [e.currentSrc, e.complete, e.naturalWidth])"
    )


# Sphinx wraps each formula in span.math / div.math; MathJax 3 puts an mjx-container inside it once
# typeset, and an mjx-merror for TeX it cannot read. Resolves after MathJax's first typeset pass.
_MATHS = """async () => {
    const all = [...document.querySelectorAll('span.math, div.math')];
    if (!all.length) return [0, [], 0];  // Sphinx loads MathJax only on pages with maths
    if (!window.MathJax || !MathJax.startup) return null;
    await MathJax.startup.promise;
    return [all.length,
            all.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
            document.querySelectorAll('mjx-merror').length];
}"""


def _maths(page, name: str) -> tuple[int, list[str]]:
    """The page's formulas: how many, and what is wrong with them."""
    found = page.evaluate(_MATHS)
    if found is None:
        return 0, [f"{name}: MathJax did not load"]
    count, raw, errors = found
    problems = [f"{name}: {len(raw)} of {count} formulas left as TeX, e.g. {raw[:3]}"] if raw else []
    return count, problems + ([f"{name}: {errors} TeX error(s)"] if errors else [])


def test_every_page_shows_its_figures_and_maths_and_has_no_broken_link(site, chromium):

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.route(lambda url: not url.startswith("file:"), lambda route: route.abort())  # offline
    page = context.new_page()
    problems: list[str] = []
    formulas = 0
    try:
        pages = [site / "index.html", site / "instructor_guide.html", site / "api.html"]
        pages += [site / "_notebooks" / f"{name}.html" for name in NOTEBOOKS]
        for path in pages:
            url = path.as_uri()
            page.goto(url, wait_until="load")
            images = _images(page)
            count, maths_problems = _maths(page, path.name)
            formulas += count
            problems += maths_problems
            if "_notebooks" in path.parts:
                if not images:
                    problems.append(f"{path.name}: no figure")
                problems += [
                    f"{path.name}: figure {src} did not load"
                    for src, done, width in images
                    if not (done and width)
                ]
            problems += [f"{path.name}: {link}" for link in _broken_links(site, page, url)]
    finally:
        context.close()
    print(f"course site: {len(pages)} pages, {formulas} formulas")
    assert formulas > 100, formulas  # the notebooks' maths is on the pages, not dropped
    assert not problems, "\n".join(problems)
