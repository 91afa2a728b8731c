"""Exact mode's pure parts: when a start is exact, the token in its callback URL, and where it asks."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.exact_start import (
    exact_start_for,
    is_token,
    new_token,
    token_params,
    with_in_progress,
)
from telnyx_provider.params import StartRecordingParams

RECEIVER = "https://airflow.example.com/telnyx/recording-status?conn_id=telnyx_prod"


def params(**arguments):
    return StartRecordingParams.from_arguments(**arguments)


def test_a_start_is_exact_when_its_callback_goes_to_the_receiver():
    exact = exact_start_for(params(recording_status_callback=RECEIVER), None)
    assert exact is not None
    assert exact.receiver == "https://airflow.example.com/telnyx"
    assert exact_start_for(params(recording_status_callback="https://example.com/hook"), None) is None
    assert exact_start_for(params(), None) is None
    assert exact_start_for(params(recording_status_callback=RECEIVER), False) is None


def test_exact_start_required_without_the_receiver_is_refused_before_any_request():
    with pytest.raises(TelnyxValidationError, match="recording_status_callback"):
        exact_start_for(params(recording_status_callback="https://example.com/hook"), True)
    with pytest.raises(TelnyxValidationError):
        exact_start_for(params(), True)


def test_the_receiver_url_override_is_where_the_workers_ask():
    exact = exact_start_for(
        params(recording_status_callback=RECEIVER), None, "http://airflow-api:8080/telnyx"
    )
    assert exact is not None
    assert exact.receiver == "http://airflow-api:8080/telnyx"


def test_each_attempt_carries_its_own_token_and_subscribes_to_in_progress():
    first, second = new_token(), new_token()
    assert first != second
    assert is_token(first)
    assert len(first) == 43
    sent = token_params(
        params(recording_status_callback=RECEIVER, recording_status_callback_event="absent"), first
    )
    query = parse_qs(urlsplit(sent.recording_status_callback).query)
    assert query == {"conn_id": ["telnyx_prod"], "start_token": [first]}
    assert sent.recording_status_callback_event == "in-progress absent"
    again = token_params(sent, second)
    assert parse_qs(urlsplit(again.recording_status_callback).query)["start_token"] == [second]


def test_the_api_default_event_is_kept_when_in_progress_is_added():
    assert with_in_progress(None) == "in-progress completed"
    assert with_in_progress("in-progress completed") == "in-progress completed"


def test_adoption_wait_and_receiver_url_come_from_the_connection_extra():
    config = TelnyxConnectionConfig.from_fields(
        "c",
        host=None,
        login="acct",
        password="KEY",
        extra=json.dumps({"adoption_wait": 12, "receiver_url": "http://api:8080/telnyx/"}),
    )
    assert config.adoption_wait == 12.0
    assert config.receiver_url == "http://api:8080/telnyx"
    for bad in ({"adoption_wait": 0}, {"adoption_wait": "soon"}, {"receiver_url": "ftp://x"}):
        with pytest.raises(TelnyxValidationError):
            TelnyxConnectionConfig.from_fields(
                "c", host=None, login="a", password="KEY", extra=json.dumps(bad)
            )


def test_the_operator_and_the_connection_form_know_adoption_wait(monkeypatch):
    from telnyx_provider.get_provider_info import CONN_FIELDS
    from telnyx_provider.operators.recording import StartCallRecordingOperator

    assert "adoption" in CONN_FIELDS["adoption_wait"]["label"].lower()
    assert "receiver_url" in CONN_FIELDS
    conn = {"conn_type": "telnyx", "login": "acct", "password": "KEY", "extra": {"adoption_wait": 9}}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    assert StartCallRecordingOperator(task_id="t", call_sid="v3:x").hook.adoption_wait == 9.0
    assert StartCallRecordingOperator(task_id="t", call_sid="v3:x", adoption_wait=2).hook.adoption_wait == 2.0
    with pytest.raises(TelnyxValidationError):
        StartCallRecordingOperator(task_id="t", call_sid="v3:x", adoption_wait=-1)
