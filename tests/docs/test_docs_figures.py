"""The figures the guides quote are the benchmarks' recorded output (``benchmarks/*.md``), not older runs.

A benchmark prints its figures; its record is committed next to it, and a guide's figure table must say what
the record says. When a re-run changes a figure, the record and the guide change together.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDES = REPO / "docs" / "guides"
BENCHMARKS = REPO / "benchmarks"
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def rows(text: str, header: str) -> list[list[str]]:
    """The body rows (cells, ``*`` stripped) of the one Markdown table whose header starts with ``header``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"no single table headed {header!r}"
    body = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        body.append([cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")])
    return body


def numbers(cells: list[str]) -> list[float]:
    return [float(n.replace(",", "")) for cell in cells for n in NUMBER.findall(cell)]


def test_event_driven_figures_are_the_recorded_run():
    guide = (GUIDES / "waiting-at-scale.md").read_text()
    record = (BENCHMARKS / "EVENTS.md").read_text()
    header = "| waiting by | scenario | finished |"
    documented = {(row[0][:3], row[1]): numbers(row[2:5]) for row in rows(guide, header)}
    recorded = {(row[0][:3], row[1]): numbers(row[2:5]) for row in rows(record, header)}
    assert documented == recorded


def test_stuck_week_figures_are_the_recorded_run():
    guide = (GUIDES / "waiting-at-scale.md").read_text()
    record = rows((BENCHMARKS / "EVENTS.md").read_text(), "| day | max_pending_age |")
    documented = rows(guide, "| day | 1 | 2 |")
    by_mode: dict[str, list[list[str]]] = {}
    for day, mode, listed, requests, _state, _pending in record:
        by_mode.setdefault("24 h" if mode.startswith("24 h") else "none", []).append([day, listed, requests])
    for label, values in ((documented[0][0], documented[0][1:]), (documented[2][0], documented[2][1:])):
        mode = "24 h" if "24 h" in label else "none"
        assert values == [listed for _, listed, _ in by_mode[mode]], label
    assert documented[1][1:] == [requests for *_, requests in by_mode["24 h"]]
    assert documented[3][1:] == [requests for *_, requests in by_mode["none"]]


def test_stuck_week_state_size_claim_holds():
    guide = (GUIDES / "waiting-at-scale.md").read_text()
    record = (BENCHMARKS / "EVENTS.md").read_text()
    states = [int(row[4]) for row in rows(record, "| day | max_pending_age |")]
    claim = re.search(r"state stays under (\d+) bytes either way \((\d+)\N{EN DASH}(\d+) bytes\)", guide)
    assert claim, "the guide no longer states the saved state's size"
    bound, low, high = (int(value) for value in claim.groups())
    assert max(states) < bound
    assert (low, high) == (min(states), max(states))


def test_soak_figures_are_the_recorded_run():
    guide = (GUIDES / "exactly-once.md").read_text()
    record = (BENCHMARKS / "SOAK.md").read_text()
    recorded = {tuple(row[1:]) for row in rows(record, "| | poke, exact |")}
    documented = rows(guide, "| | poke / exact |")
    assert len(documented) >= 10
    assert [row[0] for row in documented if tuple(row[1:]) not in recorded] == []
