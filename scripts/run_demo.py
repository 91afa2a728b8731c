"""`make demo`: run example_telnyx_call_recording end to end against the local TeXML sandbox.

Starts the sandbox on a free loopback port, creates a live call that hangs up after a few seconds,
points ``telnyx_default`` at the sandbox, runs ``airflow dags test`` on the call, prints the final
recording and stops the sandbox. Exits non-zero unless the recording completed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telnyx_provider.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_telnyx_call_recording"
HANGUP_AFTER_SECONDS = 4


def _airflow_env(conn_json: str) -> dict[str, str]:
    home = REPO / ".demo-airflow"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_TELNYX_DEFAULT": conn_json,
    }


def _hang_up_once_recorded(sandbox: Sandbox, call_sid: str, limit: float = 120.0) -> None:
    """Play the caller: hang up a few seconds after the DAG started recording (or give up after ``limit``)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not sandbox.stats()["starts_per_call"].get(call_sid):
        time.sleep(0.2)
    time.sleep(HANGUP_AFTER_SECONDS)
    sandbox.hangup(call_sid)
    print(f"\n*** caller hung up call {call_sid} ***\n", flush=True)


def main() -> int:
    """Run the demo; the exit code says whether the recording completed."""
    from telnyx_provider.sandbox import Sandbox

    airflow = [sys.executable, "-m", "airflow"]
    with Sandbox(port=0, processing_delay=1.0) as sandbox:
        env = _airflow_env(sandbox.airflow_conn_json())
        os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = env["AIRFLOW_CONN_TELNYX_DEFAULT"]
        print(f"TeXML sandbox at {sandbox.base_url} (account {sandbox.account_sid})", flush=True)
        migrated = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True)
        if migrated.returncode != 0:
            print(migrated.stdout[-2000:], migrated.stderr[-2000:], sep="\n")
            return migrated.returncode
        call_sid = sandbox.create_call()
        threading.Thread(target=_hang_up_once_recorded, args=(sandbox, call_sid), daemon=True).start()
        print(
            f"Live call {call_sid}; it hangs up {HANGUP_AFTER_SECONDS} s after the recording starts.",
            flush=True,
        )
        print(f"Running `airflow dags test {DAG_ID}`...", flush=True)
        started = time.monotonic()
        run = subprocess.run(
            [*airflow, "dags", "test", DAG_ID, "-c", json.dumps({"call_sid": call_sid})], env=env, check=False
        )
        elapsed = time.monotonic() - started

        from telnyx_provider.hooks.recording import RecordingHook

        recordings = RecordingHook().list_call_recordings(call_sid)
    print(f"\n`airflow dags test` exited {run.returncode} after {elapsed:.1f} s. Recordings on the call:")
    print(json.dumps(recordings, indent=2))
    completed = [r for r in recordings if r.get("status") == "completed" and r.get("duration") is not None]
    if run.returncode == 0 and len(recordings) == 1 and completed:
        print(f"OK: recording {completed[0]['sid']} completed, {completed[0]['duration']} s.")
        return 0
    print("FAILED: the recording did not complete (see the log above).")
    return 1


if __name__ == "__main__":
    sys.exit(main())
