"""The few samples written inline in the pages (not included from a file the suite runs) are checked here.

Every fenced block of README.md and docs/ is either a directive (``literalinclude`` of an example DAG or
a ``docs/snippets`` file, ``include``, ``graphviz``, ``toctree``) or one of :data:`INLINE`, each held to the
code by a test below (or in test_readme.py). A new inline sample fails
:func:`test_every_inline_sample_is_checked` until it is drawn from a tested file or given a test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.docs.test_readme import fences

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```$", re.S | re.M)
DIRECTIVES = ("{literalinclude}", "{include}", "{graphviz}", "{toctree}")

#: page -> the languages of its inline samples, in order (each checked by the test named in the comment).
INLINE = {
    "README.md": ["bash", "bash", "bash", "python", "bash"],  # test_readme.py
    "docs/index.md": ["bash"],  # test_index_commands_are_the_readmes
    "docs/getting-started.md": ["bash", "bash"],  # test_readme (install), test_make_samples_name_targets
    "docs/development.md": [""],  # test_module_map_names_every_module
    "docs/guides/archiving.md": ["json"],  # test_manifest_sample_is_what_the_manifest_writes
    "docs/guides/storing.md": ["json"],  # test_lifecycle_rule_sample_is_an_s3_lifecycle_configuration
}


def inline_samples(path: Path) -> list[tuple[str, str]]:
    """(language, body) of a page's fenced blocks that are not directives."""
    return [
        (match["info"].strip(), match["body"])
        for match in FENCE.finditer(path.read_text())
        if not match["info"].strip().startswith(DIRECTIVES)
    ]


def samples(path: Path, language: str) -> list[str]:
    return [body for lang, body in inline_samples(path) if lang == language]


def test_every_inline_sample_is_checked():
    pages = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
    found = {
        str(page.relative_to(REPO)): [language for language, _ in samples]
        for page in pages
        if (samples := inline_samples(page))
    }
    assert found == INLINE


def test_index_commands_are_the_readmes():
    (index,) = fences((DOCS / "index.md").read_text(), "bash")
    assert index == fences((REPO / "README.md").read_text(), "bash")[0]


def test_make_samples_name_targets():
    makefile = (REPO / "Makefile").read_text()
    pages = [REPO / "README.md", *DOCS.rglob("*.md")]
    commands = [
        line.split("#", 1)[0].split()
        for page in pages
        for language, body in inline_samples(page)
        if language == "bash"
        for line in body.splitlines()
        if line.startswith("make ")
    ]
    assert len(commands) >= 4
    missing = [command for command in commands if not re.search(rf"^{command[1]}:", makefile, re.M)]
    assert missing == []


def test_module_map_names_every_module():
    (tree,) = samples(DOCS / "development.md", "")
    package = REPO / "provider" / "telnyx_provider"
    named = set(re.findall(r"[\w/]+\.py", tree))
    modules = {
        path.relative_to(package)
        for path in package.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"} and path.relative_to(package).parts[0] != "sandbox"
    }
    # An entry names a module by its path, or by its file name on a continuation line of its folder's entry.
    unnamed = sorted(
        str(module) for module in modules if str(module) not in named and module.name not in named
    )
    assert unnamed == []
    existing = {str(module) for module in modules} | {module.name for module in modules}
    assert sorted(named - existing) == []


def test_manifest_sample_is_what_the_manifest_writes():
    from telnyx_provider.archive_manifest import Manifest

    (sample,) = [
        body for language, body in inline_samples(DOCS / "guides" / "archiving.md") if language == "json"
    ]
    documented = json.loads(sample)
    # The sample elides SIDs and the hash with "…"; give each entry its own, as a real manifest has.
    documented["recordings"][0].update(recording_sid="R1", sha256="0" * 64)
    documented["not_final"][0]["recording_sid"] = "R2"
    documented["no_audio"][0]["recording_sid"] = "R3"
    written = Manifest.loads(json.dumps(documented).encode(), account_sid=documented["account_sid"]).to_json()
    assert written == documented


def test_lifecycle_rule_sample_is_an_s3_lifecycle_configuration():
    (sample,) = [
        body for language, body in inline_samples(DOCS / "guides" / "storing.md") if language == "json"
    ]
    (rule,) = json.loads(sample)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {}  # the whole bucket
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1


def test_connection_page_quotes_the_error_the_code_raises(monkeypatch):
    from telnyx_provider.errors import TelnyxValidationError
    from telnyx_provider.hooks.recording import RecordingHook

    page = " ".join((DOCS / "connection.md").read_text().split())
    quoted = re.search(r"`TelnyxValidationError: ([^`]+)`", page)
    assert quoted
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT", "telnyx://SID:KEY_VALUE@api.telnyx.com/https?adoption_wait=10"
    )
    with pytest.raises(TelnyxValidationError) as raised:
        _ = RecordingHook().config
    assert str(raised.value) == quoted.group(1)
