"""The sandbox's /v2 routes over real HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import wave
from urllib.parse import quote

import pytest
import requests

#: A start (or update) reply: Telnyx's ``TexmlCreateCallRecordingResponseBody`` (a track, a price; no status).
CREATED_FIELDS = {
    "account_sid",
    "call_sid",
    "conference_sid",
    "channels",
    "date_created",
    "date_updated",
    "start_time",
    "duration",
    "price",
    "price_unit",
    "sid",
    "source",
    "error_code",
    "track",
    "uri",
}
#: A fetched recording or a list item: ``TexmlGetCallRecordingResponseBody`` (a status; no track, no price).
FETCHED_FIELDS = (CREATED_FIELDS - {"track", "price", "price_unit"}) | {"status", "subresources_uris"}


def assert_error(reply: requests.Response, status: int, code: str) -> dict[str, str]:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    errors = reply.json()["errors"]
    assert len(errors) == 1
    assert errors[0]["code"] == code
    assert errors[0]["title"]
    assert errors[0]["detail"]
    return dict(errors[0])


def test_start_recording_reply(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    reply = sandbox_client.start(call, RecordingChannels="single", RecordingTrack="inbound")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    body = reply.json()
    assert body.keys() == CREATED_FIELDS
    assert body["account_sid"] == sandbox_client.sandbox.account_sid
    assert body["call_sid"] == call
    assert (body["channels"], body["track"]) == (1, "inbound")
    fetched = sandbox_client.get(body["sid"]).json()
    assert fetched.keys() == FETCHED_FIELDS  # no media_url while there is none (the schema has no null)
    assert fetched["status"] == "in-progress"
    assert body["uri"] == (
        f"/v2/texml/Accounts/{sandbox_client.sandbox.account_sid}/Calls/{call}/Recordings/{body['sid']}.json"
    )


def test_call_sid_arrives_percent_encoded(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    assert "%3A" in sandbox_client.call_recordings_url(call)
    raw = f"{sandbox_client.account}/Calls/{call}/Recordings.json"  # ':' left as is also works
    first = sandbox_client.start_ok(call)
    second = sandbox_client.session.post(raw, timeout=5).json()
    assert first["call_sid"] == second["call_sid"] == call


def test_get_uses_account_scoped_uri(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    sid = sandbox_client.start_ok(call)["sid"]
    body = sandbox_client.get(sid).json()
    assert body["uri"] == f"/v2/texml/Accounts/{sandbox_client.sandbox.account_sid}/Recordings/{sid}.json"
    assert body["sid"] == sid
    assert body["status"] == "in-progress"


def test_pause_resume_stop_then_completed_with_media(sandbox_client, sandbox_wait):
    call = sandbox_client.sandbox.create_call()
    sid = sandbox_client.start_ok(call)["sid"]
    paused = sandbox_client.update(call, sid, "paused")
    assert paused.status_code == 200
    assert paused.json().keys() == CREATED_FIELDS  # an update replies as a start does: no status
    assert "/Calls/" in paused.json()["uri"]
    assert sandbox_client.status(sid) == "paused"
    assert sandbox_client.update(call, sid, "in-progress").status_code == 200
    assert sandbox_client.status(sid) == "in-progress"
    stopped = sandbox_client.update(call, sid, "stopped")
    assert stopped.status_code == 200
    assert sandbox_client.status(sid) in ("stopped", "completed")
    done = sandbox_wait(lambda: (body := sandbox_client.get(sid).json())["status"] == "completed" and body)
    assert done["duration"] == "1"
    assert sandbox_client.update(call, sid, "stopped").status_code == 422  # it has ended
    media = requests.get(done["media_url"], timeout=5)
    assert media.status_code == 200
    assert media.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(media.content)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (2, 2, 8000)
        assert audio.getnframes() == 8000
    assert_error(sandbox_client.update(call, sid, "paused"), 422, "10015")


def test_hangup_completes_recordings(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.5)  # long enough to read the processing state reliably
    call = client.sandbox.create_call()
    sid = client.start_ok(call)["sid"]
    client.sandbox.hangup(call)
    processing = client.get(sid).json()
    assert processing["status"] == "in-progress"
    assert processing["duration"] is None
    assert "media_url" not in processing  # none yet: left out, the schema's media_url is never null
    sandbox_wait(lambda: client.status(sid) == "completed")
    reply = client.start(call)
    assert "not live" in assert_error(reply, 404, "10005")["detail"]


def test_recording_seconds_and_silent_call(sandbox_make, sandbox_wait):
    client = sandbox_make(recording_seconds=0.2, processing_delay=0.1)
    sandbox = client.sandbox
    loud = client.start_ok(sandbox.create_call())["sid"]
    silent = client.start_ok(sandbox.create_call(silent=True))["sid"]
    assert sandbox_wait(lambda: client.status(loud) == "completed")
    absent = sandbox_wait(lambda: (body := client.get(silent).json())["status"] == "absent" and body)
    assert absent["duration"] == "0"
    assert "media_url" not in absent
    # no link was handed out for it; an unsigned one is refused as a pre-signed store refuses it
    assert requests.get(f"{sandbox.origin}/media/{silent}.wav", timeout=5).status_code == 403


def test_automatic_hangup_over_http(sandbox_client, sandbox_wait):
    call = sandbox_client.sandbox.create_call(hangup_after=0.2)
    sid = sandbox_client.start_ok(call)["sid"]
    sandbox_wait(lambda: sandbox_client.status(sid) == "completed")


def test_multiple_recordings_per_call_and_call_list(sandbox_client):
    call, other = sandbox_client.sandbox.create_call(), sandbox_client.sandbox.create_call()
    sids = [sandbox_client.start_ok(call)["sid"] for _ in range(3)]
    sandbox_client.start_ok(other)
    listed = sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5).json()
    assert [item["sid"] for item in listed["recordings"]] == sids
    assert all(
        item["uri"].endswith(f"/Calls/{call}/Recordings/{item['sid']}.json") for item in listed["recordings"]
    )
    assert (listed["page"], listed["page_size"], listed["start"], listed["end"]) == (0, 20, 0, 2)
    assert "next_page_uri" not in listed  # no such page: left out, as the schema has no null for it
    assert "previous_page_uri" not in listed
    assert sandbox_client.sandbox.stats()["starts_per_call"] == {call: 3, other: 1}


def test_account_list_paging(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    sids = [sandbox_client.start_ok(call)["sid"] for _ in range(5)]
    url = f"{sandbox_client.account}/Recordings.json"
    pages, params = [], {"Page": "0", "PageSize": "2"}
    base = f"/v2/texml/Accounts/{sandbox_client.sandbox.account_sid}/Recordings.json"
    while True:
        body = sandbox_client.session.get(url, params=params, timeout=5).json()
        pages.append(body)
        if "next_page_uri" not in body:
            break
        assert body["next_page_uri"] == f"{base}?Page={body['page'] + 1}&PageSize=2"
        params = {"Page": str(body["page"] + 1), "PageSize": "2"}
    assert [len(page["recordings"]) for page in pages] == [2, 2, 1]
    assert [item["sid"] for page in pages for item in page["recordings"]] == sids
    assert all(
        item["uri"] == f"{base[:-5]}/{item['sid']}.json" for page in pages for item in page["recordings"]
    )
    last = pages[-1]
    assert (last["start"], last["end"], last["previous_page_uri"]) == (4, 4, f"{base}?Page=1&PageSize=2")
    assert last["first_page_uri"] == f"{base}?Page=0&PageSize=2"
    default = sandbox_client.session.get(url, timeout=5).json()
    assert default["page_size"] == 20
    assert len(default["recordings"]) == 5
    assert_error(sandbox_client.session.get(url, params={"PageSize": "0"}, timeout=5), 422, "10026")


def test_delete_recording(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    sid = sandbox_client.start_ok(call)["sid"]
    deleted = sandbox_client.session.delete(sandbox_client.recording_url(sid), timeout=5)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(sandbox_client.get(sid), 404, "10005")
    assert_error(sandbox_client.session.delete(sandbox_client.recording_url(sid), timeout=5), 404, "10005")
    # the keep-alive connection survived the body-less 204
    assert sandbox_client.sandbox.stats()["connections_accepted"] == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer"])
def test_authentication_failures(sandbox_server, header):
    headers = {} if header is None else {"Authorization": header}
    url = f"{sandbox_server.base_url}/texml/Accounts/{sandbox_server.account_sid}/Recordings.json"
    reply = requests.get(url, headers=headers, timeout=5)
    assert reply.status_code == 401
    assert reply.json()["errors"][0].keys() == {"code", "title", "detail"}
    assert reply.json()["errors"][0]["code"] == "10009"
    assert reply.json()["errors"][0]["title"] == "Authentication failed"


def test_a_rotated_key_revokes_the_old_one(sandbox_server):
    url = f"{sandbox_server.base_url}/texml/Accounts/{sandbox_server.account_sid}/Recordings.json"
    old = sandbox_server.api_key
    new = sandbox_server.rotate_api_key()
    assert new != old
    assert sandbox_server.api_key == new
    assert requests.get(url, headers={"Authorization": f"Bearer {old}"}, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {new}"}, timeout=5).status_code == 200


def test_unknown_account_call_recording(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    other_account = sandbox_client.account.replace(sandbox_client.sandbox.account_sid, "someone-else")
    assert_error(
        sandbox_client.session.post(f"{other_account}/Calls/{quote(call)}/Recordings.json", timeout=5),
        404,
        "10005",
    )
    assert_error(sandbox_client.session.get(f"{other_account}/Recordings.json", timeout=5), 404, "10005")
    assert_error(sandbox_client.start("v3:unknown"), 404, "10005")
    assert_error(
        sandbox_client.session.get(sandbox_client.call_recordings_url("v3:unknown"), timeout=5), 404, "10005"
    )
    assert_error(sandbox_client.get("00000000-0000-0000-0000-000000000000"), 404, "10005")
    assert_error(sandbox_client.update(call, "00000000-0000-0000-0000-000000000000", "stopped"), 404, "10005")


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("PlayBeep", "maybe", "10026"),
        ("SendRecordingUrl", "2", "10026"),
        ("RecordingStatusCallback", "nowhere", "10026"),
        ("RecordingStatusCallbackEvent", "done", "10032"),
        ("RecordingStatusCallbackMethod", "PATCH", "10032"),
        ("RecordingChannels", "mono", "10032"),
        ("RecordingTrack", "left", "10032"),
    ],
)
def test_start_rejects_bad_parameters(sandbox_client, name, value, code):
    call = sandbox_client.sandbox.create_call()
    error = assert_error(sandbox_client.start(call, **{name: value}), 422, code)
    assert name in error["detail"]
    assert sandbox_client.sandbox.stats()["starts_per_call"] == {}


def test_update_rejects_bad_status(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    sid = sandbox_client.start_ok(call)["sid"]
    assert "Status" in assert_error(sandbox_client.update(call, sid, "recording"), 422, "10032")["detail"]


def test_body_content_types(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    url = sandbox_client.call_recordings_url(call)
    as_json = sandbox_client.session.post(url, json={"RecordingTrack": "inbound"}, timeout=5)
    assert_error(as_json, 415, "10015")
    charset = sandbox_client.session.post(
        url,
        data="RecordingTrack=inbound",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        timeout=5,
    )
    assert charset.status_code == 200
    assert charset.json()["track"] == "inbound"
    empty = sandbox_client.session.post(
        url, data=b"", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert empty.status_code == 200
    assert empty.json()["track"] == "both"
    bare = sandbox_client.session.post(url, timeout=5)
    assert bare.status_code == 200
    assert bare.json()["channels"] == 2


def test_unknown_route_and_wrong_method(sandbox_client):
    assert_error(sandbox_client.session.get(f"{sandbox_client.account}/Calls.json", timeout=5), 404, "10005")
    wrong = sandbox_client.session.put(f"{sandbox_client.account}/Recordings.json", timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET"
    delete_list = sandbox_client.session.delete(sandbox_client.call_recordings_url("v3:x"), timeout=5)
    assert delete_list.status_code == 405
    assert delete_list.headers["Allow"] == "GET, POST"
    assert requests.get(f"{sandbox_client.sandbox.origin}/elsewhere", timeout=5).status_code == 404


def test_keep_alive_and_http_framing(sandbox_server):
    """Two requests on one raw socket: HTTP/1.1, Content-Length on every reply, connection kept open."""
    request = (
        f"GET /v2/texml/Accounts/{sandbox_server.account_sid}/Recordings.json HTTP/1.1\r\n"
        f"Host: x\r\nAuthorization: Bearer {sandbox_server.api_key}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sandbox_server.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        for _ in range(2):
            sock.sendall(request)
            status = stream.readline()
            headers = {}
            while line := stream.readline().strip():
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            assert status.startswith(b"HTTP/1.1 200")
            assert body.startswith(b"{")
    assert sandbox_server.stats()["connections_accepted"] == 1
