"""StartCallRecordingOperator and RecordingCompletedSensor against the TeXML sandbox over real HTTP."""

from __future__ import annotations

import json

import pytest

from telnyx_provider._compat import AirflowSensorTimeout
from telnyx_provider.errors import RecordingFailedError, TelnyxApiError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from tests.conftest import hang_up_once_recorded
from tests.sandbox.conftest import wait_for


def _sensor(**kwargs) -> RecordingCompletedSensor:
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 20)
    return RecordingCompletedSensor(task_id="wait", deferrable=False, **kwargs)


def test_operator_then_sensor_on_the_operators_uri(sandbox):
    call_sid = sandbox.create_call()
    hang_up_once_recorded(sandbox, call_sid)
    started = StartCallRecordingOperator(task_id="start", call_sid=call_sid).execute(context={})
    assert RecordingHook().get_recording(started["sid"])["status"] == "in-progress"
    final = _sensor(recording_uri=started["uri"]).execute(context={})
    assert final["sid"] == started["sid"]
    assert final["status"] == "completed"
    assert final["duration"] >= 0
    assert final["media_url"]
    assert sandbox.stats()["starts_per_call"] == {call_sid: 1}


def test_sensor_on_the_account_scoped_uri_and_sid(sandbox):
    call_sid = sandbox.create_call()
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)
    account_uri = f"/v2/texml/Accounts/{sandbox.account_sid}/Recordings/{sid}.json"
    assert _sensor(recording_uri=account_uri).execute(context={})["status"] == "completed"
    assert _sensor(recording_sid=sid).execute(context={})["sid"] == sid


def test_sensor_fails_at_once_on_an_absent_recording(sandbox):
    call_sid = sandbox.create_call(silent=True)
    sid = RecordingHook().start_call_recording(call_sid)["sid"]
    sandbox.hangup(call_sid)
    with pytest.raises(RecordingFailedError, match="absent"):
        _sensor(recording_sid=sid).execute(context={})


def test_sensor_tolerates_404_for_its_grace_period_then_fails(sandbox):
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(TelnyxApiError) as raised:
        _sensor(recording_sid=missing, not_found_grace_period=1.0).execute(context={})
    assert raised.value.status == 404
    assert sandbox.stats()["gets_per_recording"][missing] >= 2  # waited through the grace period


def test_sensor_times_out_in_poke_mode(sandbox):
    sid = RecordingHook().start_call_recording(sandbox.create_call())["sid"]
    with pytest.raises(AirflowSensorTimeout):
        _sensor(recording_sid=sid, timeout=0.3).execute(context={})


def test_operator_waits_for_completion_in_poke_mode(sandbox):
    call_sid = sandbox.create_call()
    hang_up_once_recorded(sandbox, call_sid)
    op = StartCallRecordingOperator(
        task_id="start", call_sid=call_sid, wait_for_completion=True, deferrable=False, poll_interval=0.05
    )
    final = op.execute(context={})
    assert final["status"] == "completed"
    assert final["duration"] is not None


def test_operator_timeout_stops_the_recording(sandbox, capsys):
    call_sid = sandbox.create_call()  # never hangs up: only the timeout can end the wait
    op = StartCallRecordingOperator(
        task_id="start",
        call_sid=call_sid,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.05,
        timeout=0.3,
    )
    with pytest.raises(AirflowSensorTimeout, match="stopped"):
        op.execute(context={})
    (recording,) = RecordingHook().list_call_recordings(call_sid)
    assert recording["status"] in ("stopped", "completed")  # stopped, then processed
    assert wait_for(lambda: RecordingHook().get_recording(recording["sid"])["status"] == "completed")
    assert sandbox.stats()["requests_by_route"]["POST /Calls/{call_sid}/Recordings/{sid}"] == 1
    assert "Stopped recording" in capsys.readouterr().out


def test_operator_on_kill_stops_the_recording_it_waits_for(sandbox):
    call_sid = sandbox.create_call()
    op = StartCallRecordingOperator(task_id="start", call_sid=call_sid, wait_for_completion=True)
    op._recording = RecordingHook().start_call_recording(call_sid)
    op.on_kill()
    (recording,) = RecordingHook().list_call_recordings(call_sid)
    assert recording["status"] in ("stopped", "completed")


def test_task_retry_resumes_the_recording_an_earlier_try_started(sandbox, caplog):
    from types import SimpleNamespace

    class TaskStateStore:  # Airflow 3.3's context["task_state_store"]: JSON values that outlive the tries
        def __init__(self):
            self.values = {}

        def get(self, key, default=None):
            return self.values.get(key, default)

        def set(self, key, value, *, retention=None):
            self.values[key] = json.loads(json.dumps(value))

    store = TaskStateStore()
    call_sid = sandbox.create_call()
    first = StartCallRecordingOperator(task_id="start", call_sid=call_sid).execute(
        context={"task_state_store": store}
    )
    retry_context = {
        "ti": SimpleNamespace(try_number=2, xcom_push=lambda key, value: None),
        "task_state_store": store,
    }
    again = StartCallRecordingOperator(task_id="start", call_sid=call_sid).execute(context=retry_context)
    assert again["sid"] == first["sid"]
    assert sandbox.stats()["starts_per_call"] == {call_sid: 1}
    assert any("Resuming recording" in record.getMessage() for record in caplog.records)


def test_retry_settings_reach_the_hook_and_bad_ones_are_refused_at_parse_time():
    from telnyx_provider.errors import TelnyxValidationError

    op = StartCallRecordingOperator(
        task_id="s", call_sid="v3:x", max_retries=2, retry_budget=5, retry_max_wait=1
    )
    sensor = RecordingCompletedSensor(task_id="w", recording_sid="r", max_retries=0, deferrable=False)
    assert op.retry_overrides == {"max_retries": 2, "retry_max_wait": 1, "retry_budget": 5}
    assert sensor.retry_overrides["max_retries"] == 0
    with pytest.raises((TelnyxValidationError, ValueError)):
        StartCallRecordingOperator(task_id="s", call_sid="v3:x", max_retries=-1)
    with pytest.raises((TelnyxValidationError, ValueError)):
        RecordingCompletedSensor(task_id="w", recording_sid="r", retry_budget=0)


def test_operator_retry_settings_govern_its_requests(sandbox):
    call_sid = sandbox.create_call()
    # A 429 started nothing: the start is simply sent again.
    sandbox.inject("POST /Calls/{call_sid}/Recordings", "429", count=10)
    op = StartCallRecordingOperator(task_id="s", call_sid=call_sid, max_retries=2, retry_max_wait=0.01)
    with pytest.raises(TelnyxApiError) as raised:
        op.execute(context={})
    assert raised.value.status == 429
    assert sandbox.stats()["requests_by_route"]["POST /Calls/{call_sid}/Recordings"] == 3  # 1 + 2 retries
