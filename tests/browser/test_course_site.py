"""The course site: Sphinx + myst-nb builds it from the executed notebooks; Chromium reads it.

One build per session (the notebooks execute in it, a few minutes). Then every page is opened
from disk (``file://``: no server) and checked: each notebook page shows its figures (every
``<img>`` loaded, at least one per notebook) and every internal link points at a page and an anchor
that exist. (Typeset maths is not checked yet: the bundled MathJax 2 typesets only part of the maths
on the notebook pages, an open problem of issue 12.)
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
    assert (site / "_static" / "mathjax" / "MathJax.js").exists()  # maths offline


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


def test_every_page_shows_its_figures_and_has_no_broken_link(site, chromium):

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = []
    try:
        pages = [site / "index.html", site / "instructor_guide.html", site / "api.html"]
        pages += [site / "_notebooks" / f"{name}.html" for name in NOTEBOOKS]
        for path in pages:
            url = path.as_uri()
            page.goto(url, wait_until="load")
            images = _images(page)
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
    assert not problems, "\n".join(problems)
