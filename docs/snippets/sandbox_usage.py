"""The sandbox from Python: a local TeXML API for tests and demos (tests/docs/test_snippets.py runs it)."""

from __future__ import annotations

from typing import Any


def sandbox_session() -> dict[str, Any]:
    """Start a sandbox, create a call that hangs up by itself, and read the sandbox's counters."""
    # [START sandbox_usage]
    from telnyx_provider.sandbox import Sandbox

    with Sandbox(port=0, recording_seconds=None, processing_delay=0.5, fault_rate=0.0) as sb:
        call_sid = sb.create_call(hangup_after=5)
        conn_json = sb.airflow_conn_json()  # a ready AIRFLOW_CONN_TELNYX_DEFAULT value
        # sb.base_url, sb.api_key, sb.account_sid, sb.public_key, sb.hangup(call_sid), sb.stats()
        sb.hangup(call_sid)
        stats = sb.stats()
    # [END sandbox_usage]
    return {"call_sid": call_sid, "conn_json": conn_json, "stats": stats}
