"""The recordings Asset and the helpers that read both shapes of its events' extra."""

from __future__ import annotations

import pytest

from telnyx_provider.assets import (
    recording_fields,
    recording_sid_of,
    recording_status_of,
    recordings_asset,
    recordings_asset_uri,
)
from telnyx_provider.errors import TelnyxValidationError

CALLBACK = {"AccountSid": "acc", "RecordingSid": "rec-1", "RecordingStatus": "completed", "CallSid": "v3:x"}
# What Airflow stores for an AssetWatcher's trigger event (airflow/models/trigger.py, submit_event).
POLLED = {"from_trigger": True, "payload": {"sid": "rec-2", "status": "absent", "call_sid": "v3:y"}}


def test_the_asset_is_named_after_the_account():
    asset = recordings_asset("61bf923e-5e4d-4595-a110-56190ea18a1b")
    assert asset.uri == asset.name == "telnyx://61bf923e-5e4d-4595-a110-56190ea18a1b/recordings"
    assert asset.watchers == []


@pytest.mark.parametrize("bad", ["", " ", "a/b", "a?b", "a#b", None])
def test_a_bad_account_sid_is_refused(bad):
    with pytest.raises(TelnyxValidationError, match="account_sid"):
        recordings_asset_uri(bad)


def test_both_shapes_of_extra_are_read():
    assert (recording_sid_of(CALLBACK), recording_status_of(CALLBACK)) == ("rec-1", "completed")
    assert (recording_sid_of(POLLED), recording_status_of(POLLED)) == ("rec-2", "absent")
    assert recording_fields(POLLED)["call_sid"] == "v3:y"
    assert recording_fields(CALLBACK) is CALLBACK


def test_an_extra_of_something_else_gives_none():
    assert recording_sid_of({}) is None
    assert recording_status_of({"from_trigger": True, "payload": "not a recording"}) is None
