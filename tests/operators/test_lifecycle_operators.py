"""Pause, resume, stop and delete operators: validation at parse and after rendering, what execute sends."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from airflow.sdk import DAG, task

from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.operators.recording import (
    DeleteRecordingOperator,
    PauseCallRecordingOperator,
    ResumeCallRecordingOperator,
    StopCallRecordingOperator,
)
from tests.conftest import ACCOUNT_SID, MOCK_BASE_URL

CALL_SID = "v3:KBnLO0ZK3DhKM5s7bE9VluaSmKsOchKht_fUYvxcp8ysbmzCCtpkmA"
ENCODED_CALL = "v3%3A" + CALL_SID[3:]
RECORDING_SID = "b08f0fa1-a32c-4218-b3b5-9cf78941ccac"
OTHER_ACCOUNT = "0c6a2b43-2f6e-4b8e-9d55-2d9a3f0e7a11"


def update_url(account: str = ACCOUNT_SID) -> str:
    return f"{MOCK_BASE_URL}/texml/Accounts/{account}/Calls/{ENCODED_CALL}/Recordings/{RECORDING_SID}.json"


def delete_url(account: str = ACCOUNT_SID) -> str:
    return f"{MOCK_BASE_URL}/texml/Accounts/{account}/Recordings/{RECORDING_SID}.json"


UPDATERS = [
    (PauseCallRecordingOperator, "paused"),
    (ResumeCallRecordingOperator, "in-progress"),
    (StopCallRecordingOperator, "stopped"),
]


@pytest.mark.parametrize(("operator", "status"), UPDATERS)
def test_each_update_operator_sends_its_status_and_returns_the_recording(
    telnyx_conn, requests_mock, operator, status
):
    route = requests_mock.post(update_url(), json={"sid": RECORDING_SID, "status": status})
    op = operator(task_id="t", call_sid=CALL_SID, recording_sid=RECORDING_SID)

    result = op.execute(context={})

    assert result["status"] == status
    assert parse_qs(route.last_request.text) == {"Status": [status]}


@pytest.mark.parametrize(("operator", "status"), UPDATERS)
def test_account_sid_goes_in_the_path(telnyx_conn, requests_mock, operator, status):
    route = requests_mock.post(update_url(OTHER_ACCOUNT), json={"sid": RECORDING_SID, "status": status})
    operator(task_id="t", call_sid=CALL_SID, recording_sid=RECORDING_SID, account_sid=OTHER_ACCOUNT).execute(
        {}
    )
    assert route.call_count == 1


@pytest.mark.parametrize(("operator", "status"), UPDATERS)
@pytest.mark.parametrize(
    ("argument", "value"),
    [("call_sid", " "), ("recording_sid", "a/b"), ("account_sid", ""), ("call_sid", None)],
)
def test_literal_values_are_checked_when_the_dag_is_parsed(operator, status, argument, value):
    kwargs = {"task_id": "t", "call_sid": CALL_SID, "recording_sid": RECORDING_SID, argument: value}
    with pytest.raises(TelnyxValidationError, match=argument):
        operator(**kwargs)


@pytest.mark.parametrize(("operator", "status"), UPDATERS)
def test_templated_values_are_checked_after_rendering_before_any_request(
    telnyx_conn, requests_mock, operator, status
):
    op = operator(task_id="t", call_sid="{{ params.call }}", recording_sid="{{ params.rec }}")
    assert set(operator.template_fields) == {"call_sid", "recording_sid", "account_sid"}
    op.render_template_fields({"params": {"call": CALL_SID, "rec": "has space"}})
    with pytest.raises(TelnyxValidationError, match="recording_sid"):
        op.execute(context={})
    assert requests_mock.call_count == 0


def test_xcom_arguments_are_left_for_run_time():
    with DAG("lifecycle_xcom_args", schedule=None):

        @task
        def start() -> dict:
            return {}

        started = start()
        op = PauseCallRecordingOperator(
            task_id="pause", call_sid=started["call_sid"], recording_sid=started["sid"]
        )
    assert op.upstream_task_ids == {"start"}


def test_an_api_error_names_status_code_and_detail(telnyx_conn, requests_mock):
    requests_mock.post(
        update_url(),
        status_code=422,
        json={"errors": [{"code": "90018", "title": "Invalid status", "detail": "Recording is stopped"}]},
    )
    op = ResumeCallRecordingOperator(task_id="t", call_sid=CALL_SID, recording_sid=RECORDING_SID)
    with pytest.raises(TelnyxApiError) as caught:
        op.execute(context={})
    assert caught.value.status == 422
    assert "90018" in str(caught.value)
    assert "Recording is stopped" in str(caught.value)


def test_delete_by_sid(telnyx_conn, requests_mock):
    route = requests_mock.delete(delete_url(), status_code=204)
    assert DeleteRecordingOperator(task_id="d", recording_sid=RECORDING_SID).execute({}) == RECORDING_SID
    assert route.call_count == 1


def test_delete_by_uri_reads_the_account_from_it(telnyx_conn, requests_mock):
    route = requests_mock.delete(delete_url(OTHER_ACCOUNT), status_code=204)
    uri = f"/v2/texml/Accounts/{OTHER_ACCOUNT}/Calls/{CALL_SID}/Recordings/{RECORDING_SID}.json"
    DeleteRecordingOperator(task_id="d", recording_uri=uri).execute({})
    assert route.call_count == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"recording_sid": RECORDING_SID, "recording_uri": "/v2/texml/Accounts/a/Recordings/b.json"},
        {"recording_sid": "a b"},
        {"recording_uri": "/not/a/recording"},
        {"recording_sid": RECORDING_SID, "account_sid": " "},
    ],
)
def test_delete_refuses_bad_literals_at_parse_time(kwargs):
    with pytest.raises(TelnyxValidationError):
        DeleteRecordingOperator(task_id="d", **kwargs)


def test_delete_checks_a_rendered_uri_before_any_request(telnyx_conn, requests_mock):
    op = DeleteRecordingOperator(task_id="d", recording_uri="{{ params.uri }}")
    op.render_template_fields({"params": {"uri": "https://example.com/nothing"}})
    with pytest.raises(TelnyxValidationError, match="recording_uri"):
        op.execute(context={})
    assert requests_mock.call_count == 0


def test_delete_of_a_missing_recording_fails_with_the_404(telnyx_conn, requests_mock):
    requests_mock.delete(
        delete_url(), status_code=404, json={"errors": [{"code": "20404", "detail": "Recording not found"}]}
    )
    with pytest.raises(TelnyxApiError, match="HTTP 404"):
        DeleteRecordingOperator(task_id="d", recording_sid=RECORDING_SID).execute({})
