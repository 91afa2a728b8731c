"""The reference pages list what the code has: every connection extra with its default, every ``[telnyx]``
option with its default, every make target.

These checks read the documentation site's pages (the README is a quick start and links to them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: How a table shows "no default" (an en dash).
NONE = "\N{EN DASH}"
DOCS = REPO / "docs"


def table(page: Path, header: str) -> dict[str, str]:
    """The rows of the Markdown table whose header row starts with ``header``: first cell (a backticked
    name) -> second cell."""
    lines = page.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{page.name}: no single table headed {header!r}"
    rows = {}
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.fullmatch(r"`([\w.-]+)`", cells[0])
        assert name, f"{page.name}: a row that names no key: {line}"
        rows[name.group(1)] = cells[1]
    return rows


def number(cell: str) -> float | None:
    return None if cell == NONE else float(cell.strip("`"))


def test_the_connection_page_lists_every_extra_with_its_default():
    from telnyx_provider.connection import TelnyxConnectionConfig
    from telnyx_provider.get_provider_info import CONN_FIELDS

    documented = table(DOCS / "connection.md", "| Key | Default |")
    # public_key has no form field (it goes into the Extra JSON); the receiver reads it.
    assert set(documented) == set(CONN_FIELDS) | {"public_key"}
    config = TelnyxConnectionConfig(conn_id="x", base_url="https://api.telnyx.com/v2", api_key="k")
    attribute = {"timeout": "read_timeout"}
    for key, cell in documented.items():
        if key == "shared_polls":
            assert cell == f"`{str(config.shared_polls).lower()}`"
        elif key in {"ca_bundle", "receiver_url", "public_key"}:
            assert cell == NONE, key  # no default
        else:
            assert number(cell) == getattr(config, attribute.get(key, key)), key
            assert number(cell) == CONN_FIELDS[key]["schema"]["default"], key


def test_the_connection_page_lists_every_telnyx_option_with_its_default():
    from telnyx_provider.get_provider_info import TELNYX_CONFIG

    documented = table(DOCS / "connection.md", "| Option | Default |")
    options = TELNYX_CONFIG["options"]
    assert documented == {name: option["default"] for name, option in options.items()}


def test_every_make_target_is_documented():
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)\n", makefile, re.S | re.M)
    assert phony
    targets = set(phony.group(1).replace("\\\n", " ").split())
    assert {"demo", "test", "docs"} <= targets
    pages = "\n".join(path.read_text() for path in DOCS.rglob("*.md"))
    undocumented = {target for target in targets if not re.search(rf"`make {target}\b", pages)}
    assert undocumented == set()


def test_the_table_reader_refuses_a_row_without_a_key(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("| Key | Default |\n| --- | --- |\n| `a` | 1 |\n| b | 2 |\n")
    with pytest.raises(AssertionError, match="names no key"):
        table(page, "| Key | Default |")
    page.write_text("| Key | Default |\n| --- | --- |\n| `a` | 1 |\n\ntext\n")
    assert table(page, "| Key | Default |") == {"a": "1"}
