"""State machine and parameter validation of the sandbox, driven by a fake clock (no sleeping, no sockets)."""

from __future__ import annotations

import re

import pytest

from telnyx_provider.sandbox.errors import ApiError
from telnyx_provider.sandbox.params import StartParams, parse_paging, parse_start_params, parse_update_status
from telnyx_provider.sandbox.store import RecordingStore

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
T0 = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 +0000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store(
    clock: FakeClock, recording_seconds: float | None = None, delay: float = 2.0
) -> RecordingStore:
    return RecordingStore(
        ACCOUNT,
        clock=clock,
        recording_seconds=recording_seconds,
        processing_delay=delay,
        media_prefix="http://sandbox/media/",
    )


def start(store: RecordingStore, call_sid: str, **form: str) -> str:
    sid: str = store.start_recording(ACCOUNT, call_sid, parse_start_params(form))["sid"]
    return sid


def view(store: RecordingStore, sid: str) -> dict[str, object]:
    return store.get_recording(ACCOUNT, sid)


def test_call_sid_shape(clock):
    sid = make_store(clock).create_call()
    assert re.fullmatch(r"v3:[A-Za-z0-9_-]{54}", sid)


def test_started_recording_is_in_progress_without_duration(clock):
    store = make_store(clock)
    call = store.create_call()
    started = store.start_recording(ACCOUNT, call, StartParams())
    assert started["status"] == "in-progress"
    assert started["duration"] is None
    assert started["media_url"] is None
    assert started["price"] is None
    assert started["date_created"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert started["start_time"] == started["date_created"]
    assert started["uri"] == f"/v2/texml/Accounts/{ACCOUNT}/Calls/{call}/Recordings/{started['sid']}.json"
    assert started["channels"] == 2
    assert started["track"] == "both"
    assert started["source"] == "StartCallRecordingAPI"


def test_hangup_ends_then_completes_after_processing(clock):
    store = make_store(clock, delay=2.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(12.2)
    assert store.hangup(call) == [sid]
    clock.advance(1.9)
    during = view(store, sid)
    assert (during["status"], during["duration"], during["media_url"]) == ("in-progress", None, None)
    clock.advance(0.1)
    done = view(store, sid)
    assert done["status"] == "completed"
    assert done["duration"] == "12"
    assert done["price"] == "0.01"
    assert done["price_unit"] == "USD"
    # a link signed when served, valid for 600 s by default (rounded up to the second)
    expires = int(T0 + 14.2 + 600) + 1
    assert re.fullmatch(
        rf"http://sandbox/media/{sid}\.wav\?Expires={expires}&Signature=[0-9a-f]{{64}}", done["media_url"]
    )
    assert done["date_updated"] != done["date_created"]
    assert store.completed_at() == {sid: pytest.approx(T0 + 14.2)}


def test_stop_reports_stopped_while_processing(clock):
    store = make_store(clock, delay=1.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(3)
    stopped = store.update_recording(ACCOUNT, call, sid, "stopped")
    assert stopped["status"] == "stopped"
    assert stopped["duration"] is None
    clock.advance(0.5)
    assert view(store, sid)["status"] == "stopped"
    clock.advance(0.5)
    assert view(store, sid)["status"] == "completed"
    assert view(store, sid)["duration"] == "3"


def test_duration_excludes_paused_time(clock):
    store = make_store(clock, delay=0.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(4)
    assert store.update_recording(ACCOUNT, call, sid, "paused")["status"] == "paused"
    clock.advance(10)
    assert view(store, sid)["status"] == "paused"
    assert store.update_recording(ACCOUNT, call, sid, "in-progress")["status"] == "in-progress"
    clock.advance(3)
    store.update_recording(ACCOUNT, call, sid, "stopped")
    assert view(store, sid)["duration"] == "7"


def test_repeated_pause_and_resume_change_nothing(clock):
    store = make_store(clock, delay=0.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(2)
    store.update_recording(ACCOUNT, call, sid, "paused")
    clock.advance(5)
    store.update_recording(ACCOUNT, call, sid, "paused")
    store.update_recording(ACCOUNT, call, sid, "in-progress")
    clock.advance(1)
    store.update_recording(ACCOUNT, call, sid, "in-progress")
    clock.advance(1)
    store.hangup(call)
    assert view(store, sid)["duration"] == "4"


def test_recording_length_ends_it_by_itself(clock):
    store = make_store(clock, recording_seconds=5, delay=1.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(5.5)
    assert view(store, sid)["status"] == "in-progress"  # ended, processing
    clock.advance(0.5)
    done = view(store, sid)
    assert done["status"] == "completed"
    assert done["duration"] == "5"


def test_paused_time_counts_towards_length_but_not_duration(clock):
    store = make_store(clock, recording_seconds=10, delay=0.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(2)
    store.update_recording(ACCOUNT, call, sid, "paused")
    clock.advance(20)
    done = view(store, sid)
    assert done["status"] == "completed"
    assert done["duration"] == "2"


def test_automatic_hangup(clock):
    store = make_store(clock, delay=0.0)
    call = store.create_call(hangup_after=6)
    sid = start(store, call)
    clock.advance(5.9)
    assert view(store, sid)["status"] == "in-progress"
    clock.advance(0.1)
    assert view(store, sid)["status"] == "completed"
    with pytest.raises(ApiError) as refused:
        start(store, call)
    assert refused.value.status == 404
    assert "not live" in refused.value.detail


def test_silent_call_ends_absent(clock):
    store = make_store(clock, delay=1.0)
    call = store.create_call(silent=True)
    sid = start(store, call)
    clock.advance(3)
    store.hangup(call)
    clock.advance(1)
    absent = view(store, sid)
    assert (absent["status"], absent["duration"], absent["media_url"]) == ("absent", "0", None)
    assert store.media(sid) is None


def test_short_recording_reports_at_least_one_second(clock):
    store = make_store(clock, delay=0.0)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(0.2)
    store.hangup(call)
    assert view(store, sid)["duration"] == "1"
    assert store.media(sid) == (1, 2)


def test_updating_an_ended_recording_is_422(clock):
    store = make_store(clock)
    call = store.create_call()
    sid = start(store, call)
    clock.advance(1)
    store.hangup(call)
    with pytest.raises(ApiError) as refused:
        store.update_recording(ACCOUNT, call, sid, "paused")
    assert refused.value.status == 422


def test_update_through_another_call_is_404(clock):
    store = make_store(clock)
    call, other = store.create_call(), store.create_call()
    sid = start(store, call)
    with pytest.raises(ApiError) as refused:
        store.update_recording(ACCOUNT, other, sid, "stopped")
    assert refused.value.status == 404


def test_unknown_account_call_and_recording_are_404(clock):
    store = make_store(clock)
    call = store.create_call()
    for attempt in (
        lambda: store.start_recording("not-the-account", call, StartParams()),
        lambda: store.start_recording(ACCOUNT, "v3:nope", StartParams()),
        lambda: store.get_recording(ACCOUNT, "nope"),
        lambda: store.delete_recording(ACCOUNT, "nope"),
        lambda: store.hangup("v3:nope"),
    ):
        with pytest.raises(ApiError) as refused:
            attempt()
        assert (refused.value.status, refused.value.code) == (404, "10005")


def test_claim_final_waits_for_the_end_and_fires_once(clock):
    store = make_store(clock, delay=2.0)
    call = store.create_call()
    sid = start(store, call, RecordingStatusCallback="http://receiver/cb")
    assert store.final_due(sid) is None  # end not known yet
    assert store.claim_final(sid).due is None
    assert store.claim_final(sid).view is None
    clock.advance(1)
    store.hangup(call)
    assert store.final_due(sid) == pytest.approx(T0 + 3)
    early = store.claim_final(sid)
    assert early.view is None
    assert early.due == pytest.approx(T0 + 3)
    clock.advance(2)
    final = store.claim_final(sid)
    assert final.view is not None
    assert final.view["status"] == "completed"
    assert store.claim_final(sid).view is None


def test_final_due_ignores_recordings_without_callback(clock):
    store = make_store(clock)
    call = store.create_call()
    sid = start(store, call)
    store.hangup(call)
    assert store.final_due(sid) is None


def test_delete_removes_from_both_lists(clock):
    store = make_store(clock)
    call = store.create_call()
    keep, gone = start(store, call), start(store, call)
    store.delete_recording(ACCOUNT, gone)
    with pytest.raises(ApiError):
        view(store, gone)
    listed = store.list_call_recordings(ACCOUNT, call, parse_paging({}))
    assert [item["sid"] for item in listed["recordings"]] == [keep]
    assert [item["sid"] for item in store.list_recordings(ACCOUNT, parse_paging({}))["recordings"]] == [keep]
    assert store.starts_per_call() == {call: 2}


def test_date_created_filter(clock):
    store = make_store(clock)
    call = store.create_call()
    first = start(store, call)  # 2023-11-14
    clock.advance(86400)
    second = start(store, call)  # 2023-11-15

    def sids(**query: str) -> list[str]:
        return [item["sid"] for item in store.list_recordings(ACCOUNT, parse_paging(query))["recordings"]]

    assert sids() == [first, second]
    assert sids(DateCreated="2023-11-14") == [first]
    assert sids(**{"DateCreated>": "2023-11-15"}) == [second]
    assert sids(**{"DateCreated<": "2023-11-14"}) == [first]
    assert sids(DateCreated="2023-11-15T22:13:20Z") == [second]
    with pytest.raises(ApiError) as refused:
        sids(DateCreated="yesterday")
    assert refused.value.code == "10026"


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("PlayBeep", "maybe", "10026"),
        ("SendRecordingUrl", "yes", "10026"),
        ("RecordingStatusCallback", "not a url", "10026"),
        ("RecordingStatusCallback", "ftp://host/cb", "10026"),
        ("RecordingStatusCallbackEvent", "in-progress finished", "10032"),
        ("RecordingStatusCallbackMethod", "PUT", "10032"),
        ("RecordingChannels", "stereo", "10032"),
        ("RecordingTrack", "sideways", "10032"),
    ],
)
def test_start_parameter_validation(name, value, code):
    with pytest.raises(ApiError) as refused:
        parse_start_params({name: value})
    assert (refused.value.status, refused.value.code) == (422, code)
    assert name in refused.value.detail


def test_start_parameter_defaults_and_values():
    assert parse_start_params({}) == StartParams()
    parsed = parse_start_params(
        {
            "PlayBeep": "false",
            "RecordingStatusCallbackEvent": "in-progress completed absent",
            "RecordingStatusCallback": "https://example.com/cb?x=1",
            "RecordingStatusCallbackMethod": "GET",
            "RecordingChannels": "single",
            "RecordingTrack": "inbound",
            "SendRecordingUrl": "false",
            "Other": "x",
        }
    )
    assert parsed == StartParams(
        False,
        frozenset({"in-progress", "completed", "absent"}),
        "https://example.com/cb?x=1",
        "GET",
        "single",
        "inbound",
        False,
    )


def test_update_status_validation():
    assert parse_update_status({"Status": "paused"}) == "paused"
    with pytest.raises(ApiError) as bad:
        parse_update_status({"Status": "recording"})
    assert bad.value.code == "10032"
    with pytest.raises(ApiError) as missing:
        parse_update_status({})
    assert missing.value.status == 422


@pytest.mark.parametrize("query", [{"Page": "-1"}, {"Page": "x"}, {"PageSize": "0"}, {"PageSize": "1001"}])
def test_paging_validation(query):
    with pytest.raises(ApiError) as refused:
        parse_paging(query)
    assert (refused.value.status, refused.value.code) == (422, "10026")
