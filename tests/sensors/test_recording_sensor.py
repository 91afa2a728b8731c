"""RecordingCompletedSensor decisions for every status, 404 grace, targets, over a mocked transport."""

from __future__ import annotations

import pytest
from airflow.sdk import PokeReturnValue

from telnyx_provider.errors import RecordingFailedError, TelnyxApiError, TelnyxValidationError
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL
from tests.hooks.test_recording_hook import CALL_SID, DOCS_REPLY, GET_URL, RECORDING_SID


def _sensor(**kwargs):
    kwargs.setdefault("recording_sid", RECORDING_SID)
    return RecordingCompletedSensor(task_id="wait", poke_interval=0.01, deferrable=False, **kwargs)


@pytest.mark.parametrize(
    ("status", "duration", "done"),
    [
        ("in-progress", None, False),
        ("paused", None, False),
        ("stopped", None, False),
        ("completed", None, False),  # processing: status can come before the duration
        ("completed", "12", True),
        ("something-new", "3", False),
    ],
)
def test_poke_waits_until_completed_with_a_duration(telnyx_conn, requests_mock, status, duration, done):
    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": status, "duration": duration})
    result = _sensor().poke(context={})
    assert isinstance(result, PokeReturnValue)
    assert result.is_done is done
    assert (result.xcom_value is not None) is done
    if done:
        assert result.xcom_value["duration"] == 12


def test_unknown_status_warns(telnyx_conn, requests_mock, capsys):
    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": "transcoding", "duration": None})
    assert not _sensor().poke(context={}).is_done
    # Task loggers are structlog loggers writing to stdout in Airflow 3.
    lines = [line for line in capsys.readouterr().out.splitlines() if "unknown status 'transcoding'" in line]
    assert len(lines) == 1
    assert "warning" in lines[0].lower()


@pytest.mark.parametrize("status", ["absent", "failed", "deleted"])
def test_failure_statuses_fail_without_retry(telnyx_conn, requests_mock, status):
    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": status, "duration": "0"})
    with pytest.raises(RecordingFailedError, match=status):
        _sensor().poke(context={})


def test_404_is_tolerated_within_the_grace_period_then_fails(telnyx_conn, requests_mock):
    requests_mock.get(GET_URL, status_code=404, json={"errors": [{"code": "10005", "detail": "not found"}]})
    sensor = _sensor(not_found_grace_period=3600)
    sensor._not_found_until = 1e12  # far in the future: still in grace
    assert not sensor.poke(context={}).is_done
    sensor._not_found_until = 0  # grace is over
    with pytest.raises(TelnyxApiError) as raised:
        sensor.poke(context={})
    assert raised.value.status == 404


def test_execute_in_poke_mode_returns_the_final_recording(telnyx_conn, requests_mock):
    requests_mock.get(
        GET_URL,
        [
            {"status_code": 404, "json": {"errors": [{"detail": "not yet"}]}},
            {"json": {**DOCS_REPLY, "status": "in-progress", "duration": None}},
            {"json": {**DOCS_REPLY, "status": "completed", "duration": "7"}},
        ],
    )
    recording = _sensor(timeout=30).execute(context={})
    assert recording["duration"] == 7
    assert requests_mock.call_count == 3


@pytest.mark.parametrize(
    "uri",
    [
        f"/v2/texml/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}/Recordings/{RECORDING_SID}.json",
        f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json",
        f"{MOCK_BASE_URL}/texml/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json",
    ],
)
def test_recording_uri_in_either_form(telnyx_conn, requests_mock, uri):
    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": "completed"})
    sensor = RecordingCompletedSensor(task_id="wait", recording_uri=uri, deferrable=False)
    assert sensor.poke(context={}).is_done
    assert requests_mock.last_request.url == GET_URL


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"recording_sid": RECORDING_SID, "recording_uri": "/v2/texml/Accounts/a/Recordings/b.json"},
        {"recording_uri": "/v2/texml/Accounts/a/Calls/c.json"},
        {"recording_sid": ""},
        {"recording_sid": RECORDING_SID, "poke_interval": 0},
        {"recording_sid": RECORDING_SID, "not_found_grace_period": -1},
    ],
)
def test_bad_targets_are_refused_at_parse_time(kwargs):
    with pytest.raises((TelnyxValidationError, ValueError)):
        RecordingCompletedSensor(task_id="wait", deferrable=False, **kwargs)


def test_templated_uri_is_resolved_after_rendering(telnyx_conn, requests_mock):
    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": "completed"})
    sensor = RecordingCompletedSensor(task_id="wait", recording_uri="{{ params.uri }}", deferrable=False)
    sensor.render_template_fields({"params": {"uri": DOCS_REPLY["uri"]}})
    assert sensor.poke(context={}).xcom_value["sid"] == RECORDING_SID


def test_soft_fail_skips_on_a_failed_recording(telnyx_conn, requests_mock):
    from telnyx_provider._compat import AirflowSkipException

    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": "absent", "duration": "0"})
    with pytest.raises(AirflowSkipException):
        _sensor(soft_fail=True, timeout=5).execute(context={})
    assert requests_mock.call_count == 1


def test_timeout_with_soft_fail_skips(telnyx_conn, requests_mock):
    from telnyx_provider._compat import AirflowSkipException

    requests_mock.get(GET_URL, json={**DOCS_REPLY, "status": "in-progress", "duration": None})
    with pytest.raises(AirflowSkipException):
        _sensor(soft_fail=True, timeout=1).execute(context={})
    assert requests_mock.call_count >= 2


@pytest.mark.parametrize(("setting", "expected"), [("True", True), ("False", False)])
def test_deferrable_defaults_to_the_operators_setting(monkeypatch, setting, expected):
    from telnyx_provider.operators.recording import StartCallRecordingOperator

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    assert RecordingCompletedSensor(task_id="w", recording_sid=RECORDING_SID).deferrable is expected
    assert StartCallRecordingOperator(task_id="s", call_sid=CALL_SID).deferrable is expected
