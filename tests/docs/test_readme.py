"""The README is a quick start: short, every link resolving, its code drawn from files the suite runs.

Everything else lives in the documentation site (``docs/``); these checks keep the README from growing back
into a manual and from showing code that no test runs.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from tests.docs.test_docs_snippets import SNIPPETS, block, exported_connection

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FIRST_DAG = REPO / "dags_examples" / "example_telnyx_call_recording.py"
QUICKSTART_REGION = "quickstart_tasks"

#: ``[text](target)`` links of Markdown (images included), not inside code blocks.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"^\s*# \[(START|END) [\w-]+\]\s*$")


def fences(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def prose(text: str) -> str:
    """The Markdown without its fenced code blocks (links in code are not links)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MyST (``myst_heading_anchors``) make it."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", prose(markdown), re.M)
    return {slug(heading) for heading in headings}


def anchors_of(path: Path, text: str | None) -> set[str]:
    """The anchors of a Markdown file (or of ``text``, for a page's links to itself); none for other files."""
    if text is not None:
        return anchors(text)
    return anchors(path.read_text()) if path.suffix == ".md" else set()


def broken_links(text: str, page: Path) -> list[str]:
    """The relative links of a Markdown page whose file, or anchor in it, does not exist."""
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:...: not a file of the repository
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        missing = not path.is_relative_to(REPO) or not path.exists()
        if missing or (anchor and anchor not in anchors_of(path, text if not path_part else None)):
            broken.append(target)
    return broken


def quickstart_region(path: Path) -> str:
    """The example DAG's quick-start region as the README shows it: between its markers, without the
    nested markers of the guides' smaller regions, dedented."""
    text = path.read_text()
    start, end = f"# [START {QUICKSTART_REGION}]\n", f"# [END {QUICKSTART_REGION}]"
    assert text.count(start) == 1, f"{path.name}: no single [START {QUICKSTART_REGION}]"
    assert text.count(end) == 1, f"{path.name}: no single [END {QUICKSTART_REGION}]"
    region = text.split(start, 1)[1].split(end, 1)[0]
    lines = [line for line in region.splitlines(keepends=True) if not MARKER.match(line)]
    return textwrap.dedent("".join(lines)).rstrip("\n") + "\n"


def test_readme_is_a_quick_start_under_8000_characters():
    assert len(README.read_text()) < 8000


def test_readme_keeps_its_two_setup_commands_first():
    # .ci/run and the contract: `make demo` (the main job, on the sandbox) and `make test`.
    first_bash = fences(README.read_text(), "bash")[0]
    commands = [line.split("#", 1)[0].strip() for line in first_bash.splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)


def test_every_link_in_the_readme_resolves():
    links = LINK.findall(prose(README.read_text()))
    assert len([link for link in links if "docs/" in link]) >= 10, "the README links into the docs"
    assert broken_links(README.read_text(), README) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nowhere.md", ["nowhere.md"]),
        ("connection.md#no-such-heading", ["connection.md#no-such-heading"]),
        ("connection.md#host-schema-and-port", []),
        ("../README.md", []),
        ("../../outside.md", ["../../outside.md"]),
        ("#a-page", []),
        ("#another-page", ["#another-page"]),
        ("https://airflow.apache.org/", []),
    ],
)
def test_the_link_check_catches_a_missing_file_or_anchor(target, expected):
    page = REPO / "docs" / "index.md"  # links resolve from docs/, as a docs page's would
    assert broken_links(f"# A page\n\nSee [it]({target}).\n", page) == expected


def test_readme_first_dag_is_the_example_dag_the_suite_runs():
    (first_dag,) = fences(README.read_text(), "python")
    assert first_dag == quickstart_region(FIRST_DAG)
    assert "StartCallRecordingOperator(" in first_dag
    assert "RecordingToStorageOperator(" in first_dag


def test_readme_trigger_command_is_the_documented_one():
    (trigger,) = [body for body in fences(README.read_text(), "bash") if "airflow dags trigger" in body]
    assert trigger == block(SNIPPETS / "commands.sh", "trigger_example")  # parsed against the DAG there


def test_readme_connection_makes_a_telnyx_connection(monkeypatch):
    from telnyx_provider.hooks.recording import RecordingHook

    (export,) = [body for body in fences(README.read_text(), "bash") if "AIRFLOW_CONN_" in body]
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", exported_connection(export))
    config = RecordingHook().config
    assert (config.base_url, config.account_sid, config.api_key) == (
        "https://api.telnyx.com/v2",
        "YOUR_ACCOUNT_SID",
        "YOUR_API_KEY",
    )


def test_readme_install_command_is_the_getting_started_one():
    (install,) = [body for body in fences(README.read_text(), "bash") if "pip install" in body]
    guide = (REPO / "docs" / "getting-started.md").read_text()
    assert install in fences(guide, "bash")
    assert shlex.split(install, comments=True) == ["pip", "install", "airflow-provider-telnyx"]
