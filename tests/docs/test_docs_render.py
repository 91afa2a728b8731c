"""The built site renders in a real browser, and names no path of a developer's machine.

``make docs`` builds the site, then runs this module with ``TELNYX_DOCS_HTML`` set to the build: the pages
are served from 127.0.0.1 and opened in headless Chromium (Debian's package), which must show each page's
title, the navigation, its diagrams drawn (SVG) and no console error; screenshots go next to the build
(``build/docs/screenshots``). Without a build (the suite's own run) these tests are skipped; the README
check runs always.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.docs.browser import Chromium, chromium_path, static_server

REPO = Path(__file__).resolve().parents[2]
HTML = Path(os.environ["TELNYX_DOCS_HTML"]).resolve() if os.environ.get("TELNYX_DOCS_HTML") else None
needs_build = pytest.mark.skipif(
    HTML is None, reason="make docs runs these after building (TELNYX_DOCS_HTML)"
)

#: Where developers' and CI's files live (and the temporary folders of one machine): a published page must
#: name none of them.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users|private/var|var/folders)/")

#: The documentation's sources (the example DAGs they include are checked where they are included: the build).
DOC_SOURCES = (".md", ".rst", ".py", ".sh", ".dot", ".txt", ".css", ".js")

#: page, expected title (start), how many diagrams it draws, words its diagrams must show.
PAGES = [
    ("index.html", "airflow-provider-telnyx", 1, {"DAG file", "Pure core"}),
    ("guides/exactly-once.html", "Exactly one recording per start", 1, {"snapshot", "AmbiguousStartError"}),
    ("guides/event-driven.html", "Event-driven recordings", 1, {"signature", "consumer DAG"}),
]


def machine_paths(text: str) -> list[str]:
    return sorted({text[max(0, m.start() - 30) : m.end() + 30] for m in MACHINE_PATH.finditer(text)})


def test_readme_names_no_machine_path():
    assert machine_paths((REPO / "README.md").read_text()) == []


def test_docs_sources_name_no_machine_path():
    sources = [path for path in (REPO / "docs").rglob("*") if path.suffix in DOC_SOURCES]
    assert len(sources) > 20
    leaks = {
        str(path.relative_to(REPO)): found for path in sources if (found := machine_paths(path.read_text()))
    }
    assert leaks == {}


@pytest.mark.parametrize(
    "text",
    [
        "see /work/wt/branch/docs",
        "stored under file:///tmp/telnyx-recordings/",
        "HOME=/home/ci/",
        "a path (/root/.airflow/) here",
        "on a Mac: /Users/me/dags/",
    ],
)
def test_machine_path_check_catches_a_machine_path(text):
    assert machine_paths(text) != []


def test_machine_path_check_lets_urls_and_routes_through():
    assert machine_paths("POST /telnyx/recording-status, https://example.com/home/ and s3://b/tmp/") == []


@needs_build
def test_built_site_names_no_machine_path():
    assert HTML is not None
    leaks = {
        str(path.relative_to(HTML)): found
        for path in HTML.rglob("*")
        if path.is_file() and path.suffix in {".html", ".txt", ".js", ".svg", ".json"}
        for found in [machine_paths(path.read_text(errors="replace"))]
        if found
    }
    assert leaks == {}


@needs_build
def test_every_page_is_in_the_navigation():
    assert HTML is not None
    index = (HTML / "index.html").read_text()
    pages = {
        str(path.relative_to(HTML))
        for path in HTML.rglob("*.html")
        if not path.relative_to(HTML).parts[0].startswith("_")
        and path.name not in {"genindex.html", "search.html", "py-modindex.html"}
    }
    linked = set(re.findall(r'class="reference internal" href="([^"#]+\.html)"', index))
    assert pages - linked - {"index.html"} == set()


@needs_build
def test_pages_render_in_headless_chromium():
    assert HTML is not None
    assert chromium_path(), "chromium is not installed (make docs installs Debian's package)"
    browser = Chromium(screenshots=HTML.parent / "screenshots")
    try:
        with static_server(HTML) as base_url:
            reports = {
                page: browser.open(f"{base_url}/{page}", name=page.replace("/", "_")) for page, *_ in PAGES
            }
    finally:
        browser.close()
    for page, title, diagrams, words in PAGES:
        report = reports[page]
        assert report.title.startswith(title), report
        assert report.found["nav_links"] >= 10, report  # the sidebar lists the site
        assert report.found["diagrams"] == report.found["diagrams_rendered"] == diagrams, report
        for word in words:
            assert any(word in text for text in report.found["diagram_texts"]), (word, report)
        assert report.console_errors == [], report
    assert sorted(path.name for path in (HTML.parent / "screenshots").glob("*.png")) == sorted(
        page.replace("/", "_").replace(".html", ".html.png") for page, *_ in PAGES
    )
