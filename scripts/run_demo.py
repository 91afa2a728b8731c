"""`make demo`: run example_telnyx_call_recording end to end against the local TeXML sandbox.

Starts the sandbox on a free loopback port, creates a live call that hangs up after a few seconds,
points ``telnyx_default`` at the sandbox, runs ``airflow dags test`` on the call (start, wait, store the
audio in a local folder), prints the final recording and the stored file's path, size and SHA-256, checks
that the file is a valid WAV and stops the sandbox. Exits non-zero unless all of that holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telnyx_provider.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_telnyx_call_recording"
HANGUP_AFTER_SECONDS = 4
#: Where the demo stores the audio (the DAG's ``destination`` param, as a file:// folder URL).
RECORDINGS_FOLDER = REPO / ".demo-airflow" / "recordings"


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
        shutil.rmtree(RECORDINGS_FOLDER, ignore_errors=True)
        call_sid = sandbox.create_call()
        threading.Thread(target=_hang_up_once_recorded, args=(sandbox, call_sid), daemon=True).start()
        print(
            f"Live call {call_sid}; it hangs up {HANGUP_AFTER_SECONDS} s after the recording starts.",
            flush=True,
        )
        print(f"Running `airflow dags test {DAG_ID}`...", flush=True)
        started = time.monotonic()
        run = subprocess.run(
            [*airflow, "dags", "test", DAG_ID, "-c", json.dumps(_conf(call_sid))], env=env, check=False
        )
        elapsed = time.monotonic() - started

        from telnyx_provider.hooks.recording import RecordingHook

        recordings = RecordingHook().list_call_recordings(call_sid)
    print(f"\n`airflow dags test` exited {run.returncode} after {elapsed:.1f} s. Recordings on the call:")
    # media_url is a bearer link to the audio: not printed (the stored copy is what we show).
    shown = [{**r, "media_url": "<omitted>"} if r.get("media_url") else r for r in recordings]
    print(json.dumps(shown, indent=2))
    completed = [r for r in recordings if r.get("status") == "completed" and r.get("duration") is not None]
    if run.returncode != 0 or len(recordings) != 1 or not completed:
        print("FAILED: the recording did not complete (see the log above).")
        return 1
    print(f"OK: recording {completed[0]['sid']} completed, {completed[0]['duration']} s.")
    return 0 if _check_stored_audio(completed[0]) else 1


def _conf(call_sid: str) -> dict[str, Any]:
    return {"call_sid": call_sid, "destination": RECORDINGS_FOLDER.as_uri() + "/"}


def _check_stored_audio(recording: dict[str, Any]) -> bool:
    """Print the stored file's path, size and checksum; it must be a valid, non-empty WAV."""
    stored = sorted(RECORDINGS_FOLDER.glob(f"{recording['sid']}.*"))
    if len(stored) != 1:
        print(f"FAILED: expected one stored file for recording {recording['sid']} in {RECORDINGS_FOLDER}.")
        return False
    path = stored[0]
    data = path.read_bytes()
    print(f"Stored audio: {path.as_uri()}")
    print(f"  size   {len(data)} bytes")
    print(f"  sha256 {hashlib.sha256(data).hexdigest()}")
    try:
        with wave.open(str(path), "rb") as audio:
            frames, rate, channels = audio.getnframes(), audio.getframerate(), audio.getnchannels()
    except (wave.Error, EOFError) as error:
        print(f"FAILED: {path.name} is not a valid WAV file: {error}")
        return False
    if frames == 0 or rate == 0:
        print(f"FAILED: {path.name} holds no audio.")
        return False
    print(f"  WAV    {channels} channel(s), {rate} Hz, {frames / rate:.1f} s of audio: valid.")
    return True


if __name__ == "__main__":
    sys.exit(main())
