"""Every code sample the docs include runs here: the snippets under docs/snippets, block by block.

The guides include these files between their ``[START name]``/``[END name]`` markers (``literalinclude``), as
they include the example DAGs (run by tests/dags), so no documented snippet can rot.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def connection_from(monkeypatch: pytest.MonkeyPatch, block_name: str) -> tuple[Any, Any]:
    """The connection a shell block exports, as a task reads it, and the provider's settings from it."""
    from airflow.sdk.bases.hook import BaseHook

    from telnyx_provider.hooks.recording import RecordingHook

    value = exported_connection(block(SNIPPETS / "connection.sh", block_name))
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", value)
    return BaseHook.get_connection("telnyx_default"), RecordingHook().config


def test_connection_json_form_with_every_extra(monkeypatch):
    from telnyx_provider.connection import TelnyxConnectionConfig

    connection, config = connection_from(monkeypatch, "connection_env_json_extra")
    defaults = TelnyxConnectionConfig(conn_id="x", base_url="https://api.telnyx.com/v2", api_key="k")
    assert config.base_url == "https://api.telnyx.com/v2"  # no host: Telnyx's API
    settings = (
        "read_timeout",
        "connect_timeout",
        "max_retries",
        "retry_max_wait",
        "retry_budget",
        "pool_size",
    )
    assert [getattr(config, name) for name in settings] == [getattr(defaults, name) for name in settings]
    assert (config.adoption_wait, config.shared_polls) == (defaults.adoption_wait, defaults.shared_polls)
    assert config.receiver_url == "http://airflow-api:8080/telnyx"
    assert connection.extra_dejson["public_key"] == "YOUR_ED25519_PUBLIC_KEY_BASE64"


def test_connection_uri_form_carries_text_extras_as_query_parameters(monkeypatch):
    connection, config = connection_from(monkeypatch, "connection_env_uri_extra_text")
    assert config.base_url == "https://api.telnyx.com/v2"
    assert config.shared_polls is False
    assert config.receiver_url == "http://airflow-api:8080/telnyx"
    assert connection.extra_dejson["public_key"] == "YOUR_ED25519_PUBLIC_KEY_BASE64"


def test_connection_uri_form_carries_numbers_through_extra_json(monkeypatch):
    _, config = connection_from(monkeypatch, "connection_env_uri_extra_json")
    assert (config.adoption_wait, config.max_retries) == (10.0, 3)


def test_a_number_as_a_plain_uri_query_value_is_refused_as_the_docs_say(monkeypatch):
    from telnyx_provider.errors import TelnyxValidationError
    from telnyx_provider.hooks.recording import RecordingHook

    # The Task SDK keeps an AIRFLOW_CONN_* URI's query values as text (Airflow 3.3).
    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT", "telnyx://SID:KEY_VALUE@api.telnyx.com/https?adoption_wait=10"
    )
    with pytest.raises(TelnyxValidationError, match="adoption_wait"):
        _ = RecordingHook().config


def test_connection_cli_form_with_an_extra_is_what_airflow_cli_accepts():
    from airflow.cli.cli_parser import get_parser
    from airflow.models.connection import Connection

    from telnyx_provider.connection import config_from_connection

    argv = shlex.split(block(SNIPPETS / "connection.sh", "connection_cli_extra").replace("\\\n", " "))
    args = get_parser().parse_args(argv[1:])
    connection = Connection(
        conn_id=args.conn_id,
        conn_type=args.conn_type,
        login=args.conn_login,
        password=args.conn_password,
        extra=args.conn_extra,
    )
    assert config_from_connection(connection).adoption_wait == 10.0
    assert connection.extra_dejson["public_key"] == "YOUR_ED25519_PUBLIC_KEY_BASE64"


def command(name: str) -> list[str]:
    """The command of a block of commands.sh, as argv (comments dropped, continuation lines joined)."""
    text = block(SNIPPETS / "commands.sh", name).replace("\\\n", " ")
    lines = [line.split("  #", 1)[0] for line in text.splitlines() if not line.startswith("#")]
    return shlex.split(" ".join(lines))


def run_sandbox_command(argv: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start the documented sandbox command on a free port; return it and what it printed."""
    from tests.sandbox.test_sandbox_cli import PROVIDER_DIR, read_lines_until

    assert argv[:3] == ["python", "-m", "telnyx_provider.sandbox"]
    port = argv.index("--port") + 1
    argv = [sys.executable, *argv[1:port], "0", *argv[port + 1 :]]  # a free port, not 8765
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROVIDER_DIR), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        return process, read_lines_until(process, "export AIRFLOW_CONN_TELNYX_DEFAULT=", timeout=30)
    except BaseException:
        stop_process(process)
        raise


def stop_process(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def hook_for(lines: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    from telnyx_provider.hooks.recording import RecordingHook

    exported = shlex.split(lines[-1].removeprefix("export AIRFLOW_CONN_TELNYX_DEFAULT="))[0]
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", exported)
    return RecordingHook()


def test_sandbox_command_serves_what_it_prints(monkeypatch):
    process, lines = run_sandbox_command(command("sandbox_cli"))
    try:
        fields = dict(line.split(": ", 1) for line in lines[:-1])
        assert set(fields) == {"base_url", "api_key", "account_sid", "public_key"}
        assert hook_for(lines, monkeypatch).test_connection()[0] is True
    finally:
        stop_process(process)


def test_sandbox_command_seeds_a_week_of_history(monkeypatch):
    process, lines = run_sandbox_command(command("sandbox_seed_history"))
    try:
        recordings = list(hook_for(lines, monkeypatch).iter_recordings(page_size=1000))
        days = {recording["date_created"][:10] for recording in recordings}
        assert len(days) == 7, sorted(days)
    finally:
        stop_process(process)


def test_trigger_command_gives_the_example_dag_its_params(airflow_db):
    from airflow.cli.cli_parser import get_parser

    argv = command("trigger_example")
    args = get_parser().parse_args(argv[1:])
    dag = dag_from_folder("example_telnyx_call_recording")
    assert args.dag_id == dag.dag_id
    assert set(json.loads(args.conf)) == set(dag.params)


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
