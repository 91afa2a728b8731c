"""Seeded history: recordings over past days from every source, some without audio, some not final yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from telnyx_provider.archive_plan import created_at
from telnyx_provider.sandbox import cli
from telnyx_provider.sandbox.history import SOURCES, plan_history
from tests.sandbox.test_sandbox_cli import read_lines_until
from tests.spec_conformance import SPEC_PATH as SPEC

DAY = 86400


def all_pages(client, **query) -> list[dict]:
    url, items, page = f"{client.account}/Recordings.json", [], 0
    while True:
        reply = client.session.get(url, params={**query, "Page": page, "PageSize": 7}, timeout=5).json()
        items += reply["recordings"]
        if not reply.get("next_page_uri"):
            return items
        page += 1


def test_history_covers_past_days_oldest_first_from_every_source(sandbox_client):
    sandbox = sandbox_client.sandbox
    live = sandbox.create_call()
    sandbox_client.start_ok(live)  # a recording of today, made before the history was seeded
    seeded = sandbox.seed_history(4, per_day=14, absent_rate=0.2, not_final=3, seed=5)

    listed = all_pages(sandbox_client)
    assert len(listed) == seeded["recordings"] + 1 == 4 * 14 + 1
    created = [created_at(item).timestamp() for item in listed]
    assert created == sorted(created)  # oldest first, the live one last
    today = time.time() // DAY * DAY
    assert today - 4 * DAY <= created[0]
    assert created[-2] < today
    by_day = {int((moment - today) // DAY) for moment in created[:-1]}
    assert by_day == {-4, -3, -2, -1}
    assert {item["source"] for item in listed} == set(SOURCES)
    statuses = [item["status"] for item in listed[:-1]]
    assert statuses.count("absent") == seeded["by_status"].get("absent", 0) > 0
    assert {statuses.count("in-progress"), statuses.count("paused")} == {1, 2}  # three not final
    assert sorted(seeded["not_final"]) == sorted(
        item["sid"] for item in listed[:-1] if item["status"] in ("in-progress", "paused")
    )
    conference = [item for item in listed if item["source"] in ("Conference", "StartConferenceRecordingAPI")]
    assert all(item["conference_sid"] for item in conference)
    calls = [item["call_sid"] for item in listed]
    assert len(set(calls)) < len(calls)  # some calls have two recordings
    assert sandbox.stats()["starts_per_call"] == {live: 1}  # nobody started the history


def test_history_recordings_serve_audio_and_the_date_filters_see_them(sandbox_client):
    sandbox = sandbox_client.sandbox
    sandbox.seed_history(3, per_day=5, absent_rate=0.0, not_final=0, audio_seconds=2, seed=1)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - DAY))
    one_day = all_pages(
        sandbox_client, **{"DateCreated>": yesterday, "DateCreated<": f"{yesterday}T23:59:59Z"}
    )
    assert len(one_day) == 5
    assert all_pages(sandbox_client, **{"DateCreated>": today}) == []
    recording = sandbox_client.get(one_day[0]["sid"]).json()
    assert (recording["status"], recording["duration"]) == ("completed", "2")
    audio = requests.get(recording["media_url"], timeout=5)
    assert audio.status_code == 200
    assert len(audio.content) == 44 + 2 * 16000 * recording["channels"]


def test_a_not_final_history_recording_completes_when_its_call_hangs_up(sandbox_client, sandbox_wait):
    sandbox = sandbox_client.sandbox
    seeded = sandbox.seed_history(1, per_day=3, not_final=2, audio_seconds=3, seed=2)
    for sid in seeded["not_final"]:
        sandbox.hangup(sandbox_client.get(sid).json()["call_sid"])
    for sid in seeded["not_final"]:
        assert sandbox_wait(lambda sid=sid: sandbox_client.status(sid) == "completed")
        assert sandbox_client.get(sid).json()["duration"] == "3"


def test_the_plan_is_reproducible_and_checks_its_arguments():
    now = 1_800_000_000.0
    assert plan_history(2, now=now, seed=3) == plan_history(2, now=now, seed=3)
    assert plan_history(2, now=now, seed=3) != plan_history(2, now=now, seed=4)
    for bad in ({"days": 0}, {"per_day": 0}, {"absent_rate": 2.0}, {"not_final": 30}, {"audio_seconds": 0}):
        arguments = {"days": 1, "now": now, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            plan_history(**arguments)


def test_every_source_is_one_the_spec_lists():
    spec = json.loads(SPEC.read_text())
    assert set(SOURCES) == set(spec["components"]["schemas"]["RecordingSource"]["enum"])


def test_the_control_route_seeds_history(sandbox_client):
    origin = sandbox_client.sandbox.origin
    reply = requests.post(f"{origin}/_sandbox/history", json={"days": 2, "per_day": 3, "seed": 9}, timeout=10)
    assert reply.status_code == 201
    assert reply.json()["recordings"] == 6
    assert len(all_pages(sandbox_client)) == 6
    assert requests.post(f"{origin}/_sandbox/history", json={"per_day": 3}, timeout=5).status_code == 400
    assert requests.post(f"{origin}/_sandbox/history", json={"days": "x"}, timeout=5).status_code == 400
    assert (
        requests.post(f"{origin}/_sandbox/history", json={"days": 1, "bogus": 1}, timeout=5).status_code
        == 400
    )
    assert requests.post(f"{origin}/_sandbox/history", json={"days": 0}, timeout=5).status_code == 422


def test_the_cli_flag_seeds_history_before_serving():
    provider = Path(__file__).resolve().parents[2] / "provider"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(provider), os.environ.get("PYTHONPATH", "")]))
    args = ["--port", "0", "--seed-history", "2", "--history-per-day", "4", "--seed", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "telnyx_provider.sandbox", *args], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = read_lines_until(process, "history: ")
        fields = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("export"))
        assert fields["history"].startswith("8 recordings")
        url = f"{fields['base_url']}/texml/Accounts/{fields['account_sid']}/Recordings.json"
        headers = {"Authorization": f"Bearer {fields['api_key']}"}
        assert len(requests.get(url, headers=headers, timeout=5).json()["recordings"]) == 8
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_cli_refuses_a_bad_history(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--port", "0", "--seed-history", "0"])
    assert "days" in capsys.readouterr().err
