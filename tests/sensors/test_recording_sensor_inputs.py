"""TaskFlow, XCom and mapped inputs of RecordingCompletedSensor: DAG files that use them parse, literal
values (``.partial()`` ones too) are refused when parsed, resolved values are checked before any request."""

from __future__ import annotations

import textwrap

import pytest

from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.sensors.recording import RecordingCompletedSensor
from tests.conftest import ACCOUNT_SID

try:  # Airflow 3.2+
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.models.dagbag import DagBag

URI = f"/v2/texml/Accounts/{ACCOUNT_SID}/Recordings/b08f0fa1-a32c-4218-b3b5-9cf78941ccac.json"

HEADER = """
from airflow.sdk import dag, task
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.sensors.recording import RecordingCompletedSensor

@task
def recording_sid():
    return "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"

@task
def recording_uris():
    return ["URI"]
"""

TASKFLOW_DAG = """
@dag(schedule=None)
def telnyx_taskflow_inputs():
    start = StartCallRecordingOperator(task_id="start", call_sid="v3:abc")
    RecordingCompletedSensor(task_id="by_xcom_key", recording_uri=start.output["recording_uri"])
    RecordingCompletedSensor(task_id="by_taskflow", recording_sid=recording_sid(), deferrable=True)
    RecordingCompletedSensor(task_id="by_template", recording_uri="{{ ti.xcom_pull('start')['uri'] }}")
    RecordingCompletedSensor.partial(task_id="mapped", deferrable=True).expand(recording_uri=recording_uris())
    RecordingCompletedSensor.partial(task_id="mapped_account", recording_sid="r1").expand(
        account_sid=["a1", "a2"]
    )

telnyx_taskflow_inputs()
"""


def parse(tmp_path, body: str) -> DagBag:
    path = tmp_path / "telnyx_inputs_dag.py"
    path.write_text(textwrap.dedent(HEADER.replace("URI", URI) + body))
    return DagBag(dag_folder=str(path))  # LOAD_EXAMPLES is off (tests/conftest.py)


def test_a_dag_with_taskflow_xcom_and_mapped_inputs_parses(tmp_path):
    bag = parse(tmp_path, TASKFLOW_DAG)
    assert bag.import_errors == {}
    dag = bag.dags["telnyx_taskflow_inputs"]
    assert {"by_xcom_key", "by_taskflow", "by_template", "mapped", "mapped_account"} <= set(dag.task_ids)


@pytest.mark.parametrize(
    ("partial", "argument"),
    [
        ('recording_uri="/v2/texml/Accounts/a/Calls/c.json"', "recording_uri"),
        ('recording_sid="has space"', "recording_sid"),
        ('account_sid="a/b"', "account_sid"),
        ("not_found_grace_period=-1", "not_found_grace_period"),
        ("max_retries=-1", "max_retries"),
    ],
)
def test_a_bad_literal_in_partial_fails_when_the_dag_is_parsed(tmp_path, partial, argument):
    bag = parse(
        tmp_path,
        f"""
@dag(schedule=None)
def telnyx_bad_partial():
    RecordingCompletedSensor.partial(task_id="mapped", {partial}).expand(poke_interval=[1, 2])

telnyx_bad_partial()
""",
    )
    [error] = bag.import_errors.values()
    assert "TelnyxValidationError" in error or argument in error
    assert argument in error


def test_a_resolved_value_is_checked_before_any_request(sandbox):
    from airflow.sdk import DAG, XComArg
    from airflow.sdk.bases.operator import BaseOperator

    with DAG("telnyx_resolved_input", schedule=None):
        upstream = BaseOperator(task_id="start")
        sensor = RecordingCompletedSensor(task_id="wait", recording_uri=XComArg(upstream, "recording_uri"))
    sensor.recording_uri = "/v2/texml/Accounts/a/Calls/c.json"  # what the XCom resolved to: not a recording
    with pytest.raises(TelnyxValidationError, match="recording_uri"):
        sensor.execute(context={})
    assert sandbox.stats()["requests_total"] == 0
