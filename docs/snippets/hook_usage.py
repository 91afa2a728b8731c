"""The hook on its own, outside a task: start a recording, read it back, test the connection.

tests/docs/test_snippets.py runs :func:`record_call` against the sandbox.
"""

from __future__ import annotations

from typing import Any


def record_call(call_sid: str) -> dict[str, Any]:
    """Start a recording on a live call with every parameter the API takes, then read it back."""
    # [START hook_usage]
    from telnyx_provider.hooks.recording import RecordingHook

    hook = RecordingHook()  # telnyx_conn_id="telnyx_default"
    recording = hook.start_call_recording(
        call_sid,  # e.g. "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
        play_beep=False,
        recording_channels="single",  # single | dual
        recording_track="inbound",  # inbound | outbound | both
        recording_status_callback="https://example.com/telnyx",
        recording_status_callback_event=["in-progress", "completed", "absent"],
        recording_status_callback_method="POST",  # GET | POST
        send_recording_url=True,
    )
    fetched = hook.get_recording(recording["sid"])  # GET .../Recordings/{sid}.json
    ok, message = hook.test_connection()  # (True, "Connected to Telnyx at ...")
    # [END hook_usage]
    return {"started": recording, "fetched": fetched, "test_connection": (ok, message)}
