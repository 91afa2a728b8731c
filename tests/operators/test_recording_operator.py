"""StartCallRecordingOperator: validation at parse and after rendering, and what execute sends."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.operators.recording import RECORDING_PARAMETERS, StartCallRecordingOperator
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL
from tests.hooks.test_recording_hook import CALL_SID, DOCS_REPLY, EMPTY_PAGE, START_URL


def test_template_fields_cover_the_call_and_every_parameter():
    assert set(StartCallRecordingOperator.template_fields) == {
        "call_sid",
        "account_sid",
        *RECORDING_PARAMETERS,
    }
    assert len(RECORDING_PARAMETERS) == 7


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("recording_channels", "stereo", "'single', 'dual'"),
        ("recording_track", "BOTH", "'inbound', 'outbound', 'both'"),
        ("recording_status_callback_method", "PUT", "'GET', 'POST'"),
        ("recording_status_callback_event", ["completed", "done"], "'in-progress', 'completed', 'absent'"),
        ("recording_status_callback", "ftp://example.com/cb", "http"),
        ("play_beep", "loud", "boolean"),
        ("call_sid", "  ", "non-empty"),
        ("account_sid", "", "non-empty"),
    ],
)
def test_literal_values_are_checked_when_the_dag_is_parsed(argument, value, allowed):
    kwargs = {"task_id": "start", "call_sid": CALL_SID, argument: value}
    with pytest.raises(TelnyxValidationError) as raised:
        StartCallRecordingOperator(**kwargs)
    message = str(raised.value)
    assert argument in message
    assert allowed in message


def test_poll_interval_and_timeout_must_be_positive():
    with pytest.raises(TelnyxValidationError, match="poll_interval"):
        StartCallRecordingOperator(task_id="t", call_sid=CALL_SID, poll_interval=0)
    with pytest.raises(TelnyxValidationError, match="timeout"):
        StartCallRecordingOperator(task_id="t", call_sid=CALL_SID, timeout=-5)


def test_templated_values_are_checked_after_rendering(telnyx_conn, requests_mock):
    op = StartCallRecordingOperator(
        task_id="start", call_sid="{{ params.call_sid }}", recording_channels="{{ params.channels }}"
    )
    op.render_template_fields({"params": {"call_sid": CALL_SID, "channels": "mono"}})
    assert op.recording_channels == "mono"
    with pytest.raises(TelnyxValidationError, match="recording_channels"):
        op.execute(context={})
    assert requests_mock.call_count == 0


def test_execute_sends_the_defaults_and_returns_the_recording(telnyx_conn, requests_mock):
    requests_mock.post(START_URL, json=DOCS_REPLY)
    requests_mock.get(START_URL, json=EMPTY_PAGE)
    op = StartCallRecordingOperator(task_id="start", call_sid="{{ params.call_sid }}")
    op.render_template_fields({"params": {"call_sid": CALL_SID}})
    recording = op.execute(context={})
    assert recording["sid"] == DOCS_REPLY["sid"]
    json.dumps(recording)
    form = parse_qs(requests_mock.last_request.text)
    assert form == {
        "PlayBeep": ["true"],
        "RecordingStatusCallbackMethod": ["POST"],
        "RecordingChannels": ["dual"],
        "RecordingTrack": ["both"],
        "SendRecordingUrl": ["true"],
    }


def test_rendered_string_booleans_and_event_lists_are_sent_in_api_form(telnyx_conn, requests_mock):
    requests_mock.post(START_URL, json=DOCS_REPLY)
    requests_mock.get(START_URL, json=EMPTY_PAGE)
    op = StartCallRecordingOperator(
        task_id="start",
        call_sid=CALL_SID,
        play_beep="{{ params.beep }}",
        recording_status_callback_event=["in-progress", "{{ params.event }}"],
        recording_status_callback="https://hooks.example.com/telnyx",
    )
    op.render_template_fields({"params": {"beep": False, "event": "completed"}})
    op.execute(context={})
    form = parse_qs(requests_mock.last_request.text)
    assert form["PlayBeep"] == ["false"]
    assert form["RecordingStatusCallbackEvent"] == ["in-progress completed"]
    assert form["RecordingStatusCallback"] == ["https://hooks.example.com/telnyx"]


def test_account_sid_argument_is_used_in_the_path(telnyx_conn, requests_mock):
    other = "11111111-2222-3333-4444-555555555555"
    url = START_URL.replace(ACCOUNT_SID, other)
    requests_mock.post(url, json=DOCS_REPLY)
    requests_mock.get(url, json=EMPTY_PAGE)
    StartCallRecordingOperator(task_id="start", call_sid=CALL_SID, account_sid=other).execute(context={})
    assert requests_mock.last_request.url.startswith(f"{MOCK_BASE_URL}/texml/Accounts/{other}/")


def _dag():
    import pendulum
    from airflow.sdk import DAG

    return DAG("taskflow_inputs", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))


def test_taskflow_inputs_are_not_checked_when_the_dag_is_parsed():
    from airflow.sdk import task

    with _dag():

        @task
        def call() -> str:
            return CALL_SID

        @task
        def channels() -> str:
            return "dual"

        start = StartCallRecordingOperator(task_id="start", call_sid=call(), recording_channels=channels())
        mapped = StartCallRecordingOperator.partial(task_id="many", recording_track="inbound").expand(
            call_sid=call().map(lambda sid: [sid])
        )
    assert start.upstream_task_ids == {"call", "channels"}
    assert mapped.partial_kwargs["recording_track"] == "inbound"


@pytest.mark.parametrize(
    ("argument", "value"), [("recording_channels", "DUAL"), ("call_sid", "a/b"), ("play_beep", "loud")]
)
def test_literal_partial_arguments_are_checked_when_the_dag_is_parsed(argument, value):
    from airflow.sdk import task

    with _dag():

        @task
        def calls() -> list[str]:
            return [CALL_SID]

        with pytest.raises(TelnyxValidationError, match=argument):
            StartCallRecordingOperator.partial(task_id="many", **{argument: value}).expand(
                account_sid=calls()
            )


def test_taskflow_values_are_checked_once_resolved_before_any_request(telnyx_conn, requests_mock):
    # What Airflow does with a mapped or XCom-fed operator at run time: the resolved value reaches the
    # operator's arguments; a bad one fails before anything is sent.
    with pytest.raises(TelnyxValidationError, match="recording_track"):
        StartCallRecordingOperator(task_id="start", call_sid=CALL_SID, recording_track="Inbound")
    op = StartCallRecordingOperator(task_id="start", call_sid=CALL_SID)
    op.call_sid = "  "  # as if an XComArg had resolved to a blank value
    with pytest.raises(TelnyxValidationError, match="call_sid"):
        op.execute(context={})
    assert requests_mock.call_count == 0
