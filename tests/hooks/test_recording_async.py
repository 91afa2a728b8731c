"""AsyncRecordingClient over loopback HTTP: what one request costs the triggerer's process."""

from __future__ import annotations

import gc

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from tests.conftest import ACCOUNT_SID, SECRET_KEY
from tests.hooks.test_recording_hook import DOCS_REPLY, RECORDING_SID
from tests.scripted_api import Reply

PATH = f"/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json"


async def test_a_request_that_succeeds_leaves_no_reference_cycles(scripted_api):
    """A thousand waits poll: garbage that only the cyclic collector frees piles up between its passes
    (issue 17: tenacity's per-call state, built for every request, kept ~6 MB alive for 1,000 waits)."""
    scripted_api.script("GET", PATH, Reply(200, {**DOCS_REPLY, "status": "in-progress"}))
    config = TelnyxConnectionConfig(
        conn_id="t", base_url=scripted_api.base_url, api_key=SECRET_KEY, account_sid=ACCOUNT_SID
    )
    client = AsyncRecordingClient(config)
    try:
        await client.get_recording(RECORDING_SID)  # the pooled connection is open before counting
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                await client.get_recording(RECORDING_SID)
            unreachable = gc.collect()
        finally:
            gc.enable()
    finally:
        await client.aclose()
    assert unreachable == 0
