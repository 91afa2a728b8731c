"""Every code sample the docs include runs here: the snippets under docs/snippets, block by block.

The guides include these files between their ``[START name]``/``[END name]`` markers (``literalinclude``), as
they include the example DAGs (run by tests/dags), so no documented snippet can rot.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.test_example_dags import dag_from_folder, task_states

REPO = Path(__file__).resolve().parents[2]
SNIPPETS = REPO / "docs" / "snippets"
sys.path.insert(0, str(SNIPPETS))


def block(path: Path, name: str) -> str:
    """The text between ``[START name]`` and ``[END name]`` in a snippet file, as the docs show it."""
    text = path.read_text()
    start, end = f"# [START {name}]\n", f"# [END {name}]"
    assert text.count(start) == 1, f"{path.name}: no single [START {name}]"
    return text.split(start, 1)[1].split(end, 1)[0]


def exported_connection(snippet: str) -> str:
    """Run a shell block in bash and return the AIRFLOW_CONN_TELNYX_DEFAULT it exports."""
    script = f'{snippet}\nprintf %s "$AIRFLOW_CONN_TELNYX_DEFAULT"'
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout


def test_connection_json_form_makes_a_telnyx_connection(monkeypatch):
    from telnyx_provider.hooks.recording import RecordingHook

    value = exported_connection(block(SNIPPETS / "connection.sh", "connection_env_json"))
    assert json.loads(value)["conn_type"] == "telnyx"
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", value)
    config = RecordingHook().config
    assert (config.base_url, config.account_sid, config.api_key) == (
        "https://api.telnyx.com/v2",
        "YOUR_ACCOUNT_SID",
        "YOUR_API_KEY",
    )
    assert (config.read_timeout, config.max_retries, config.retry_budget) == (30, 8, 60)


def test_connection_uri_form_points_at_the_sandbox_over_http(monkeypatch):
    from telnyx_provider.hooks.recording import RecordingHook

    value = exported_connection(block(SNIPPETS / "connection.sh", "connection_env_uri"))
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", value)
    config = RecordingHook().config
    assert (config.base_url, config.account_sid, config.api_key) == (
        "http://127.0.0.1:8765/v2",
        "YOUR_ACCOUNT_SID",
        "YOUR_API_KEY",
    )


def test_connection_cli_form_is_what_airflow_cli_accepts():
    from airflow.cli.cli_parser import get_parser
    from airflow.models.connection import Connection

    from telnyx_provider.connection import config_from_connection

    argv = shlex.split(block(SNIPPETS / "connection.sh", "connection_cli").replace("\\\n", " "))
    assert argv[:3] == ["airflow", "connections", "add"]
    args = get_parser().parse_args(argv[1:])
    connection = Connection(
        conn_id=args.conn_id, conn_type=args.conn_type, login=args.conn_login, password=args.conn_password
    )
    config = config_from_connection(connection)
    assert (args.conn_id, args.conn_type) == ("telnyx_default", "telnyx")
    assert (config.base_url, config.account_sid) == ("https://api.telnyx.com/v2", "YOUR_ACCOUNT_SID")


def test_hook_usage_starts_and_reads_back_one_recording(sandbox):
    from hook_usage import record_call

    call_sid = sandbox.create_call()
    result = record_call(call_sid)
    assert result["fetched"]["status"] == "in-progress"  # the create reply has no status (Telnyx's schema)
    assert result["fetched"]["sid"] == result["started"]["sid"]
    assert result["fetched"]["channels"] == 1  # recording_channels="single"
    assert result["test_connection"][0] is True, result["test_connection"]
    assert sandbox.stats()["starts_per_call"] == {call_sid: 1}


def test_sandbox_usage_runs_and_hands_out_a_connection():
    from sandbox_usage import sandbox_session

    result = sandbox_session()
    conn = json.loads(result["conn_json"])
    assert conn["conn_type"] == "telnyx"
    assert conn["host"].startswith("http://127.0.0.1:")
    assert conn["host"].endswith("/v2")
    assert result["call_sid"]
    assert result["stats"]["starts_per_call"] == {}


def test_operator_waiting_in_its_task_returns_the_final_recording(airflow_db, sandbox_for_dags):
    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder("docs_operator_waits").test(run_conf={"call_sid": call_sid})
    assert task_states(run) == {"record_call": "success"}
    stats = sandbox_for_dags.stats()
    assert stats["starts_per_call"] == {call_sid: 1}
    assert len(stats["completed_at"]) == 1


def test_sensor_in_reschedule_mode_waits_for_the_recording(airflow_db, sandbox_for_dags):
    call_sid = sandbox_for_dags.create_call()
    dag = dag_from_folder("docs_sensor_reschedule")
    dag.get_task("wait_for_recording").poke_interval = 1  # the docs show 30 s; the test need not wait so long
    run = dag.test(run_conf={"call_sid": call_sid})
    assert task_states(run) == {"start_recording": "success", "wait_for_recording": "success"}
    (sid,) = sandbox_for_dags.stats()["completed_at"]
    assert sandbox_for_dags.stats()["gets_per_recording"][sid] >= 1


@pytest.mark.parametrize("sandbox_for_dags", [None], indirect=True)  # only a hang-up ends the recording
def test_pci_pause_and_resume_leave_the_recording_running(airflow_db, sandbox_for_dags):
    from telnyx_provider.hooks.recording import RecordingHook

    call_sid = sandbox_for_dags.create_call()
    run = dag_from_folder("docs_pci_pause_resume").test(run_conf={"call_sid": call_sid})
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    stats = sandbox_for_dags.stats()
    assert stats["requests_by_route"]["POST /Calls/{call_sid}/Recordings/{sid}"] == 2  # paused, resumed
    start = next(ti for ti in run.get_task_instances() if ti.task_id == "start_recording")
    sid = start.xcom_pull(task_ids="start_recording")["sid"]
    assert RecordingHook().get_recording(sid)["status"] == "in-progress"
