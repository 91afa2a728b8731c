"""A harsher world, off by default: clock skew, list lag, page cap, outages, several recordings per call."""

from __future__ import annotations

import datetime as dt
import threading
import time
from email.utils import parsedate_to_datetime

import pytest

CALL_LIST = "GET /Calls/{call_sid}/Recordings"


def epoch_of(rfc2822_date: str) -> float:
    return parsedate_to_datetime(rfc2822_date).timestamp()


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def listed_sids(client, url, **params) -> list[str]:
    reply = client.session.get(url, params=params, timeout=5)
    assert reply.status_code == 200, reply.text
    return [rec["sid"] for rec in reply.json()["recordings"]]


def walk(client, url, **params) -> tuple[list[str], list[dict]]:
    """Follow ``next_page_uri`` from the first page; return every sid seen and every page envelope."""
    sids, pages = [], []
    reply = client.session.get(url, params=params, timeout=5).json()
    while True:
        pages.append(reply)
        sids.extend(rec["sid"] for rec in reply["recordings"])
        if "next_page_uri" not in reply:  # the last page leaves it out (the schema has no null for it)
            return sids, pages
        assert len(pages) < 50, "next_page_uri never ends"
        reply = client.session.get(client.sandbox.origin + reply["next_page_uri"], timeout=5).json()


@pytest.mark.parametrize("skew", [3600.0, -5400.0])
def test_clock_skew_shifts_every_date_and_the_date_filter(sandbox_make, sandbox_receiver, sandbox_wait, skew):
    client = sandbox_make(clock_skew=skew, processing_delay=0.1)
    call = client.sandbox.create_call()
    before = time.time()
    reply = client.start(
        call,
        RecordingStatusCallback=f"{sandbox_receiver.url}/cb",
        RecordingStatusCallbackEvent="in-progress completed",
    )
    after = time.time()
    assert reply.status_code == 200
    started = reply.json()
    assert before + skew - 1 <= epoch_of(reply.headers["Date"]) <= after + skew + 1
    for name in ("date_created", "date_updated", "start_time"):
        assert before + skew - 1 <= epoch_of(started[name]) <= after + skew + 1, name
    client.update(call, started["sid"], "stopped")
    done = sandbox_wait(
        lambda: (reply := client.get(started["sid"])).json()["status"] == "completed" and reply
    )
    final = done.json()
    assert final["date_created"] == started["date_created"]
    assert before + skew - 1 <= epoch_of(final["date_updated"]) <= time.time() + skew + 1
    assert before + skew - 1 <= epoch_of(done.headers["Date"]) <= time.time() + skew + 1
    callbacks = sandbox_wait(lambda: len(sandbox_receiver.items()) >= 2 and sandbox_receiver.items())
    assert {item.form["RecordingStartTime"] for item in callbacks} == {started["start_time"]}

    # DateCreated is read in the service's clock: halfway between our time and the service's separates them.
    account_list = f"{client.account}/Recordings.json"
    halfway = iso(before + skew / 2)
    created = iso(epoch_of(started["date_created"]))
    later, earlier = ("DateCreated>", "DateCreated<") if skew > 0 else ("DateCreated<", "DateCreated>")
    assert listed_sids(client, account_list, **{later: halfway}) == [started["sid"]]
    assert listed_sids(client, account_list, **{earlier: halfway}) == []
    assert listed_sids(client, account_list, DateCreated=created) == [started["sid"]]
    assert listed_sids(client, account_list, DateCreated=iso(before)) == []  # our clock's second: no match
    day = dt.datetime.fromtimestamp(epoch_of(started["date_created"]), dt.timezone.utc).strftime("%Y-%m-%d")
    assert listed_sids(client, account_list, DateCreated=day) == [started["sid"]]


def test_no_skew_by_default(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    before = time.time()
    reply = sandbox_client.start(call)
    assert before - 1 <= epoch_of(reply.json()["date_created"]) <= time.time() + 1
    assert before - 1 <= epoch_of(reply.headers["Date"]) <= time.time() + 1


def test_list_lag_hides_new_recordings_from_both_lists_then_shows_them(sandbox_make, sandbox_wait):
    lag = 0.6
    client = sandbox_make(list_lag=lag)
    call = client.sandbox.create_call()
    account_list, call_list = f"{client.account}/Recordings.json", client.call_recordings_url(call)
    began = time.time()
    sid = client.start_ok(call)["sid"]
    assert client.get(sid).status_code == 200  # the single GET sees it at once
    assert listed_sids(client, account_list) == []
    assert listed_sids(client, call_list) == []
    assert "next_page_uri" not in client.session.get(account_list, timeout=5).json()
    sandbox_wait(lambda: listed_sids(client, call_list) == [sid])
    shown = time.time()
    assert listed_sids(client, account_list) == [sid]
    assert shown - began >= lag - 0.05  # not before the lag has passed


def test_call_list_pages_like_the_account_list(sandbox_client):
    call = sandbox_client.sandbox.create_call()
    other = sandbox_client.sandbox.create_call()
    sandbox_client.start_ok(other)
    mine = [sandbox_client.start_ok(call)["sid"] for _ in range(5)]
    url = sandbox_client.call_recordings_url(call)
    first = sandbox_client.session.get(url, params={"PageSize": 2}, timeout=5).json()
    assert [rec["sid"] for rec in first["recordings"]] == mine[:2]
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["next_page_uri"].endswith("/Recordings.json?Page=1&PageSize=2")
    assert "previous_page_uri" not in first
    third = sandbox_client.session.get(url, params={"Page": 2, "PageSize": 2}, timeout=5).json()
    assert [rec["sid"] for rec in third["recordings"]] == mine[4:]
    assert "next_page_uri" not in third
    assert third["previous_page_uri"].endswith("?Page=1&PageSize=2")
    sids, pages = walk(sandbox_client, url, PageSize=2)
    assert sids == mine
    assert len(pages) == 3


def test_max_page_size_caps_both_lists_and_next_page_uri_walks_them(sandbox_make):
    client = sandbox_make(max_page_size=3)
    call, other = client.sandbox.create_call(), client.sandbox.create_call()
    on_call = [client.start_ok(call)["sid"] for _ in range(7)]
    elsewhere = client.start_ok(other)["sid"]

    account_list = f"{client.account}/Recordings.json"
    first = client.session.get(account_list, params={"PageSize": 50}, timeout=5).json()
    assert len(first["recordings"]) == 3
    assert first["page_size"] == 3
    assert "PageSize=3" in first["next_page_uri"]
    sids, pages = walk(client, account_list, PageSize=50, **{"DateCreated>": "2000-01-01"})
    assert sids == [*on_call, elsewhere]  # every recording once, in order
    assert [len(page["recordings"]) for page in pages] == [3, 3, 2]
    assert all("DateCreated%3E=2000-01-01" in page["uri"] for page in pages)

    sids, pages = walk(client, client.call_recordings_url(call), PageSize=1000)
    assert sids == on_call
    assert [len(page["recordings"]) for page in pages] == [3, 3, 1]
    small = client.session.get(client.call_recordings_url(call), params={"PageSize": 2}, timeout=5).json()
    assert len(small["recordings"]) == 2  # a smaller PageSize is honoured as asked


def test_outage_answers_503_to_every_api_request_but_spares_control_and_media(sandbox_make, sandbox_wait):
    client = sandbox_make(processing_delay=0.05)
    sandbox = client.sandbox
    call = sandbox.create_call()
    recording = client.start_ok(call)
    client.update(call, recording["sid"], "stopped")
    media_url = sandbox_wait(lambda: client.get(recording["sid"]).json().get("media_url"))

    sandbox.set_faults(1.0, ["503"])
    for reply in (
        client.get(recording["sid"]),
        client.start(call),
        client.session.get(client.call_recordings_url(call), timeout=5),
        client.session.get(f"{client.account}/Recordings.json", timeout=5),
    ):
        assert reply.status_code == 503
        assert reply.json()["errors"][0]["code"] == "10013"
    assert client.session.get(f"{sandbox.origin}/_sandbox/health", timeout=5).status_code == 200
    assert client.session.get(f"{sandbox.origin}/_sandbox/stats", timeout=5).status_code == 200
    assert client.session.post(f"{sandbox.origin}/_sandbox/calls", timeout=5).status_code == 201
    media = client.session.get(media_url, timeout=5)
    assert (media.status_code, media.headers["Content-Type"]) == (200, "audio/wav")
    assert sandbox.stats()["faults_injected"]["503"] == 4
    assert sandbox.stats()["starts_per_call"] == {call: 1}  # the refused start was not carried out

    sandbox.set_faults(0.0)
    assert client.get(recording["sid"]).status_code == 200


def test_several_recordings_on_one_call_started_at_the_same_moment(sandbox_client):
    sandbox = sandbox_client.sandbox
    call = sandbox.create_call()
    asked = {"inbound": "single", "outbound": "dual"}
    barrier = threading.Barrier(len(asked))
    replies: dict[str, dict] = {}

    def start(track: str) -> None:
        barrier.wait(5)
        replies[track] = sandbox_client.start_ok(call, RecordingTrack=track, RecordingChannels=asked[track])

    threads = [threading.Thread(target=start, args=(track,)) for track in asked]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert replies.keys() == asked.keys()
    assert replies["inbound"]["sid"] != replies["outbound"]["sid"]
    for track, channels in asked.items():
        assert replies[track]["track"] == track  # the start's reply has the track ...
        assert replies[track]["channels"] == (1 if channels == "single" else 2)
        assert sandbox_client.status(replies[track]["sid"]) == "in-progress"
    third = sandbox_client.start_ok(call, RecordingTrack="both")
    listed = sandbox_client.session.get(sandbox_client.call_recordings_url(call), timeout=5).json()[
        "recordings"
    ]
    assert all("track" not in rec for rec in listed)  # ... the list has none: the service's side says it
    track_of = {item["sid"]: item["track"] for item in sandbox.started_on(call)}
    by_sid = {rec["sid"]: (track_of[rec["sid"]], rec["channels"]) for rec in listed}
    assert by_sid == {
        replies["inbound"]["sid"]: ("inbound", 1),
        replies["outbound"]["sid"]: ("outbound", 2),
        third["sid"]: ("both", 2),
    }
    assert sandbox.stats()["starts_per_call"] == {call: 3}
    sandbox.hangup(call)
    for sid in by_sid:
        assert sandbox_client.get(sid).json()["status"] == "in-progress"  # ended, processing


def test_invalid_world_options_are_refused():
    from telnyx_provider.sandbox import Sandbox

    with pytest.raises(ValueError, match="list_lag"):
        Sandbox(list_lag=-1)
    with pytest.raises(ValueError, match="max_page_size"):
        Sandbox(max_page_size=0)
    with pytest.raises(ValueError, match="clock_skew"):
        Sandbox(clock_skew=float("nan"))
