"""Duration and retry arguments of the start operator and the sensor: refused when the DAG is parsed,
``.partial()`` ones included, and a value from another task gives a clear error, not a bare TypeError."""

from __future__ import annotations

from datetime import timedelta

import pytest

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor

CALL_SID = "v3:abc"
RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"


def _dag():
    import pendulum
    from airflow.sdk import DAG

    return DAG("telnyx_durations", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))


def _upstream_value():
    """An XComArg: what ``task.output`` or a TaskFlow call's result is when the DAG is parsed."""
    from airflow.sdk import task

    @task
    def seconds() -> int:
        return 30

    return seconds()


BAD_OPERATOR_PARTIALS = [
    ("timeout", -1),
    ("timeout", timedelta(seconds=-1)),
    ("poll_interval", 0),
    ("poll_interval", "10"),
    ("not_found_grace_period", -5),
    ("max_retries", -1),
    ("retry_budget", 0),
    ("retry_max_wait", True),
]


@pytest.mark.parametrize(("argument", "value"), BAD_OPERATOR_PARTIALS)
def test_the_start_operator_checks_literal_partial_durations_when_parsed(argument, value):
    with _dag(), pytest.raises(TelnyxValidationError, match=argument):
        StartCallRecordingOperator.partial(task_id="many", **{argument: value})


@pytest.mark.parametrize(
    ("argument", "value"),
    [("poke_interval", 0), ("timeout", -1), ("not_found_grace_period", -1), ("retry_budget", -3)],
)
def test_the_sensor_checks_literal_partial_durations_when_parsed(argument, value):
    with _dag(), pytest.raises(TelnyxValidationError, match=argument):
        RecordingCompletedSensor.partial(task_id="many", **{argument: value})


@pytest.mark.parametrize("argument", ["timeout", "poll_interval", "not_found_grace_period", "max_retries"])
def test_a_value_from_another_task_is_a_clear_error_for_the_start_operator(argument):
    with _dag():
        value = _upstream_value()
        with pytest.raises(TelnyxValidationError, match=rf"{argument}.*not templated.*\.expand"):
            StartCallRecordingOperator(task_id="start", call_sid=CALL_SID, **{argument: value})
        with pytest.raises(TelnyxValidationError, match=argument):
            StartCallRecordingOperator.partial(task_id="many", **{argument: value})


@pytest.mark.parametrize("argument", ["timeout", "poke_interval"])
def test_a_value_from_another_task_is_a_clear_error_for_the_sensor(argument):
    with _dag():
        value = _upstream_value()
        with pytest.raises(TelnyxValidationError, match=rf"{argument}.*not templated"):
            RecordingCompletedSensor(task_id="wait", recording_sid=RECORDING_SID, **{argument: value})


def test_the_start_operator_refuses_a_negative_grace_period_as_the_sensor_does():
    with pytest.raises(TelnyxValidationError, match="not_found_grace_period"):
        StartCallRecordingOperator(task_id="start", call_sid=CALL_SID, not_found_grace_period=-5)
    with pytest.raises(TelnyxValidationError, match="not_found_grace_period"):
        RecordingCompletedSensor(task_id="wait", recording_sid=RECORDING_SID, not_found_grace_period=-5)


def test_good_durations_pass_and_expanded_ones_are_left_to_run_time():
    with _dag():
        op = StartCallRecordingOperator(
            task_id="start",
            call_sid=CALL_SID,
            poll_interval=timedelta(seconds=2),
            timeout=30,
            not_found_grace_period=0,
        )
        StartCallRecordingOperator.partial(task_id="many", call_sid=CALL_SID, timeout=None).expand(
            poll_interval=[1, 2]
        )
        RecordingCompletedSensor.partial(task_id="waits", poke_interval=5, timeout=60).expand(
            recording_sid=[RECORDING_SID]
        )
    assert (op.poll_interval, op.wait_timeout, op.not_found_grace_period) == (2.0, 30.0, 0.0)
