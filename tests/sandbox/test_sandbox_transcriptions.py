"""The spec's transcription endpoints (list with PageToken paging, get, delete) for transcribe=True calls."""

from __future__ import annotations

import re

import pytest
import requests

from telnyx_provider.sandbox.params import parse_paging, parse_start_params
from telnyx_provider.sandbox.store import RecordingStore

ACCOUNT = "61bf923e-5e4d-4595-a110-56190ea18a1b"
# the properties of TexmlRecordingTranscription in texml-recordings-openapi.json
TRANSCRIPTION_KEYS = {
    "account_sid",
    "api_version",
    "call_sid",
    "date_created",
    "date_updated",
    "duration",
    "recording_sid",
    "sid",
    "status",
    "transcription_text",
    "uri",
}
LIST_KEYS = {
    "end",
    "first_page_uri",
    "next_page_uri",
    "page",
    "page_size",
    "previous_page_uri",
    "start",
    "transcriptions",
    "uri",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def transcriptions_url(client) -> str:
    return f"{client.account}/Transcriptions.json"


def transcription_url(client, sid: str) -> str:
    return f"{client.account}/Transcriptions/{sid}.json"


def finished(client, wait, call: str) -> dict:
    sid = client.start_ok(call)["sid"]
    client.update(call, sid, "stopped")
    return wait(lambda: (body := client.get(sid).json())["status"] in ("completed", "absent") and body)


def listed(client, **params) -> dict:
    reply = client.session.get(transcriptions_url(client), params=params, timeout=5)
    assert reply.status_code == 200, reply.text
    body: dict = reply.json()
    return body


def test_transcription_lifecycle_with_a_fake_clock():
    clock = FakeClock()
    store = RecordingStore(ACCOUNT, clock=clock, processing_delay=2.0, media_prefix="http://sandbox/media/")
    call = store.create_call(transcribe=True, audio_seconds=9)
    sid = store.start_recording(ACCOUNT, call, parse_start_params({}))["sid"]
    paging = parse_paging({})
    assert store.list_transcriptions(ACCOUNT, paging, None)["transcriptions"] == []
    clock.now += 4
    store.hangup(call)
    clock.now += 1.9
    assert store.list_transcriptions(ACCOUNT, paging, None)["transcriptions"] == []  # recording not final yet
    clock.now += 0.1
    (pending,) = store.list_transcriptions(ACCOUNT, paging, None)["transcriptions"]
    assert set(pending) == TRANSCRIPTION_KEYS
    assert (pending["status"], pending["transcription_text"]) == ("in-progress", "")
    assert (pending["recording_sid"], pending["call_sid"], pending["duration"]) == (sid, call, "9")
    assert pending["api_version"] == "2010-04-01"
    assert pending["uri"] == f"/v2/texml/Accounts/{ACCOUNT}/Transcriptions/{pending['sid']}.json"
    assert pending["date_created"] == "Tue, 14 Nov 2023 22:13:26 +0000"  # when the recording became final
    clock.now += 2.0
    done = store.get_transcription(ACCOUNT, pending["sid"])
    assert done["status"] == "completed"
    assert len(done["transcription_text"]) > 10
    assert done["date_updated"] == "Tue, 14 Nov 2023 22:13:28 +0000"
    assert store.get_transcription(ACCOUNT, pending["sid"]) == done  # stable text


def test_transcriptions_over_http(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    sandbox = client.sandbox
    transcribed = sandbox.create_call(transcribe=True)
    recording = finished(client, sandbox_wait, transcribed)
    finished(client, sandbox_wait, sandbox.create_call())  # not transcribed
    finished(
        client, sandbox_wait, sandbox.create_call(transcribe=True, silent=True)
    )  # absent: nothing to say

    page = sandbox_wait(lambda: (body := listed(client))["transcriptions"] and body)
    assert set(page) == LIST_KEYS - {"next_page_uri", "previous_page_uri"}  # no such pages: left out
    (item,) = page["transcriptions"]
    assert set(item) == TRANSCRIPTION_KEYS
    assert (item["recording_sid"], item["call_sid"]) == (recording["sid"], transcribed)
    assert item["duration"] == recording["duration"]
    assert re.fullmatch(r"[0-9a-f-]{36}", item["sid"])
    assert item["sid"] != recording["sid"]
    done = sandbox_wait(
        lambda: (
            (body := client.session.get(transcription_url(client, item["sid"]), timeout=5).json())["status"]
            == "completed"
            and body
        )
    )
    assert done["transcription_text"]
    assert {key: done[key] for key in ("sid", "recording_sid", "uri")} == {
        key: item[key] for key in ("sid", "recording_sid", "uri")
    }
    assert (page["page"], page["start"], page["end"], page.get("next_page_uri")) == (0, 0, 0, None)

    assert requests.get(transcriptions_url(client), timeout=5).status_code == 401
    deleted = client.session.delete(transcription_url(client, item["sid"]), timeout=5)
    assert deleted.status_code == 204
    gone = client.session.get(transcription_url(client, item["sid"]), timeout=5)
    assert (gone.status_code, gone.json()["errors"][0]["code"]) == (404, "10005")
    assert client.session.delete(transcription_url(client, item["sid"]), timeout=5).status_code == 404
    assert listed(client)["transcriptions"] == []
    assert client.get(recording["sid"]).status_code == 200  # the recording stays
    routes = sandbox.stats()["requests_by_route"]
    assert routes["DELETE /Transcriptions/{sid}"] == 2
    assert routes["GET /Transcriptions/{sid}"] >= 2


def test_transcription_list_pages_with_page_tokens(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.01)
    call = client.sandbox.create_call(transcribe=True)
    recordings = [finished(client, sandbox_wait, call)["sid"] for _ in range(3)]
    sandbox_wait(lambda: len(listed(client, PageSize=10)["transcriptions"]) == 3)
    first = listed(client, PageSize=2)
    assert [item["recording_sid"] for item in first["transcriptions"]] == recordings[:2]
    assert re.search(r"/Transcriptions\.json\?PageToken=\w+&PageSize=2$", first["next_page_uri"])
    assert "previous_page_uri" not in first
    second = client.session.get(client.sandbox.origin + first["next_page_uri"], timeout=5).json()
    assert [item["recording_sid"] for item in second["transcriptions"]] == recordings[2:]
    assert (second["page"], second["start"], second.get("next_page_uri")) == (1, 2, None)
    assert second["previous_page_uri"].endswith("/Transcriptions.json?PageSize=2")
    bad = client.session.get(transcriptions_url(client), params={"PageToken": "nope!"}, timeout=5)
    assert (bad.status_code, bad.json()["errors"][0]["code"]) == (422, "10026")


def test_deleting_a_recording_deletes_its_transcription(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.01)
    recording = finished(client, sandbox_wait, client.sandbox.create_call(transcribe=True))
    (item,) = sandbox_wait(lambda: listed(client)["transcriptions"])
    assert client.session.delete(client.recording_url(recording["sid"]), timeout=5).status_code == 204
    assert client.session.get(transcription_url(client, item["sid"]), timeout=5).status_code == 404


@pytest.mark.parametrize("as_json", [True, False])
def test_calls_control_route_takes_transcribe_and_audio_seconds(sandbox_make, sandbox_wait, as_json):
    client = sandbox_make(processing_delay=0.01)
    options = {"transcribe": "true", "audio_seconds": "7"}
    url = f"{client.sandbox.origin}/_sandbox/calls"
    created = (
        requests.post(url, json=options, timeout=5)
        if as_json
        else requests.post(url, data=options, timeout=5)
    )
    assert created.status_code == 201
    recording = finished(client, sandbox_wait, created.json()["call_sid"])
    assert recording["duration"] == "7"
    (item,) = sandbox_wait(lambda: listed(client)["transcriptions"])
    assert item["duration"] == "7"
    refused = requests.post(url, json={"audio_seconds": "long"}, timeout=5)
    assert refused.status_code == 400
