"""Check that the floor environment holds exactly the pinned versions, and that they are our declared floors.

Run by ``make test-floor`` in ``.venv-floor``, after installing it: ``pip install`` with a constraints file
may leave a pin unmet without failing the target (its output is filtered), and a floor raised in
``pyproject.toml`` but not pinned here would never be proven. The declared floors are read from the
installed ``airflow-provider-telnyx`` metadata (its ``>=`` requirements). Fails (exit 1) naming each mismatch.

    .venv-floor/bin/python ci/check_floor.py ci/constraints-airflow-3.1.0.txt
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.version import Version  # Airflow depends on packaging

DISTRIBUTION = "airflow-provider-telnyx"
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][^,;\s]*)\s*$")


def pins(constraints: Path) -> dict[str, str]:
    """``{name: version}`` of the ``name==version`` lines of a constraints file."""
    found = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, pinned = line.partition("==")
            found[_canonical(name)] = pinned.strip()
    return found


def floors() -> dict[str, str]:
    """``{name: lowest version}`` of the provider's ``name>=version`` requirements (extras left out)."""
    found = {}
    for requirement in requires(DISTRIBUTION) or []:
        match = _FLOOR.match(requirement)
        if match:
            found[_canonical(match.group(1))] = match.group(2)
    return found


def _same(one: str | None, other: str | None) -> bool:
    """Whether two versions are equal as versions (``8.3`` and ``8.3.0`` are)."""
    return one is not None and other is not None and Version(one) == Version(other)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def main(constraints: str) -> int:
    pinned = pins(Path(constraints))
    problems = []
    declared = floors()
    if not declared:
        problems.append(f"no '>=' requirements found in the installed {DISTRIBUTION}")
    for name, lowest in declared.items():
        if not _same(pinned.get(name), lowest):
            problems.append(f"{name}: declared >={lowest}, but the floor constraints pin {pinned.get(name)}")
    for name, wanted in pinned.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if not _same(installed, wanted):
            problems.append(f"{name}: pinned {wanted}, installed {installed}")
    for problem in problems:
        print(f"floor check: {problem}", file=sys.stderr)
    if not problems:
        print("floor check: " + ", ".join(f"{name}=={v}" for name, v in sorted(pinned.items())))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
