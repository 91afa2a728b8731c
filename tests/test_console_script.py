"""The ``telnyx-sandbox`` console script is installed with the package and runs the sandbox CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_console_script_is_installed_and_answers_help():
    script = Path(sys.executable).parent / "telnyx-sandbox"
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--recording-seconds" in result.stdout
    assert "--fault-rate" in result.stdout
