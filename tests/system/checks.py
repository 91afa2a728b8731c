"""The system test's checks: each prints one line, failures are collected and fail the run at the end."""

from __future__ import annotations

from typing import Any


class Checks:
    """Counts passed checks and keeps the failed ones (a failed check does not stop the run)."""

    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str, detail: Any = None) -> bool:
        """Record one check; ``detail`` is printed when it fails.

        :return: ``ok``, so a caller can skip checks that depend on this one.
        """
        if ok:
            self.passed += 1
            print(f"  ok    {what}", flush=True)
        else:
            message = what if detail is None else f"{what}: {detail!r}"
            self.failures.append(message)
            print(f"  FAIL  {message}", flush=True)
        return ok

    def equal(self, actual: Any, expected: Any, what: str) -> bool:
        """Check ``actual == expected``."""
        return self.check(
            actual == expected, what, None if actual == expected else {"got": actual, "expected": expected}
        )

    def final_recording(self, recording: Any, what: str) -> bool:
        """Check that an XCom value is a final recording: a sid, ``completed`` and a positive duration."""
        ok = (
            isinstance(recording, dict)
            and isinstance(recording.get("sid"), str)
            and recording.get("status") == "completed"
            and isinstance(recording.get("duration"), int)
            and recording["duration"] > 0
        )
        return self.check(ok, f"{what}: final recording in XCom (completed, with a duration)", recording)
