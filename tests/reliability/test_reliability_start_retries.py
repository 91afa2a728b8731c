"""Retries of StartCallRecordingOperator are exact: they resume their own recording or start a new one,
never someone else's; a worker killed between the POST and storing the SID is covered.

Real HTTP against the sandbox. Airflow's task state store (3.3+) is played by a dict (or, across a killed
process, a JSON file) with the same ``get``/``set`` interface; the code under test is the real operator.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from telnyx_provider._compat import AirflowSensorTimeout
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.operators.start_memory import STATE_KEY

# Starts and adoptions judge dates (start_time, DateCreated): both of the formats Telnyx writes.
pytestmark = pytest.mark.both_date_formats

REPO = Path(__file__).resolve().parents[2]


class DictStore:
    """Airflow's ``task_state_store`` accessor, kept in memory."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, *, retention=None):
        assert value is not None
        self.values[key] = json.loads(json.dumps(value))  # JSON only, as the real store


class FakeTI:
    def __init__(self, try_number=1, start_date=None) -> None:
        self.try_number = try_number
        self.start_date = start_date or datetime.now(timezone.utc)
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def context(store=None, try_number=1, **extra):
    ctx = {"ti": FakeTI(try_number), **extra}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def operator(**kwargs):
    kwargs.setdefault("task_id", "record")
    kwargs.setdefault("recording_channels", "single")
    kwargs.setdefault("recording_track", "inbound")
    kwargs.setdefault("max_retries", 3)
    kwargs.setdefault("retry_max_wait", 0.05)
    return StartCallRecordingOperator(**kwargs)


def starts(sandbox):
    return sum(sandbox.stats()["starts_per_call"].values())


def test_recording_sid_and_uri_reach_xcom_before_the_wait(sandbox):
    call = sandbox.create_call()  # never hangs up: the wait times out
    ctx = context(DictStore())
    with pytest.raises(AirflowSensorTimeout):
        operator(call_sid=call, wait_for_completion=True, poll_interval=0.2, timeout=0.5).execute(ctx)
    pushed = ctx["ti"].pushed
    assert pushed["recording_sid"] == ctx["task_state_store"].values[STATE_KEY]["recording_sid"]
    assert pushed["recording_uri"].endswith(f"/Recordings/{pushed['recording_sid']}.json")
    assert starts(sandbox) == 1


def test_retry_resumes_the_active_recording_of_the_earlier_try(sandbox):
    call = sandbox.create_call()
    store = DictStore()
    first = operator(call_sid=call).execute(context(store))
    second = operator(call_sid=call).execute(context(store, try_number=2))
    assert second["sid"] == first["sid"]
    assert starts(sandbox) == 1


def test_retry_returns_a_recording_that_completed_meanwhile(sandbox):
    call = sandbox.create_call()
    store = DictStore()
    first = operator(call_sid=call).execute(context(store))
    sandbox.hangup(call)
    final = wait_until_final(sandbox, first["sid"])
    again = operator(call_sid=call, wait_for_completion=True).execute(context(store, try_number=2))
    assert again["sid"] == first["sid"] == final
    assert again["status"] == "completed"
    assert starts(sandbox) == 1


def test_retry_after_the_own_timeout_stop_starts_a_new_recording(sandbox, when):
    call = sandbox.create_call()  # the caller is still talking
    store = DictStore()
    with pytest.raises(AirflowSensorTimeout):
        operator(call_sid=call, wait_for_completion=True, poll_interval=0.2, timeout=0.6).execute(
            context(store)
        )
    stopped_sid = store.values[STATE_KEY]["recording_sid"]
    assert store.values[STATE_KEY]["stopped_by"] == "timeout"

    when(lambda: starts(sandbox) >= 2, lambda: sandbox.hangup(call))
    final = operator(call_sid=call, wait_for_completion=True, poll_interval=0.2).execute(
        context(store, try_number=2)
    )

    assert final["sid"] != stopped_sid  # never the 1-second recording its own timeout stopped
    assert final["status"] == "completed"
    assert starts(sandbox) == 2


def test_retry_after_a_silent_recording_starts_again_on_the_live_call(sandbox):
    call = sandbox.create_call(silent=True)
    store = DictStore()
    first = operator(call_sid=call).execute(context(store))
    sandbox.hangup(call)
    wait_until_final(sandbox, first["sid"], status="absent")
    live = sandbox.create_call()
    store.values[STATE_KEY]["call_sid"] = live  # the same task, re-run on a call that is live
    store.values[STATE_KEY]["recording_sid"] = first["sid"]
    again = operator(call_sid=live).execute(context(store, try_number=2))
    assert again["sid"] != first["sid"]


def test_retry_never_adopts_another_tasks_recording_on_the_call(sandbox):
    call = sandbox.create_call()
    other = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context(DictStore()))
    # An earlier try of ours stored its snapshot (which includes the other task's recording) and died
    # before its start was sent.
    store = DictStore()
    store.values[STATE_KEY] = {"call_sid": call, "snapshot": [other["sid"]], "recording_sid": None}
    ours = operator(call_sid=call).execute(context(store, try_number=2))
    assert ours["sid"] != other["sid"]
    assert ours["track"] == "inbound"
    assert starts(sandbox) == 2


def test_retry_after_a_try_killed_while_deferred_starts_again(sandbox):
    # The earlier try deferred and was marked failed; its trigger stopped the recording on kill.
    call = sandbox.create_call()
    store = DictStore()
    first = operator(call_sid=call).execute(context(store))
    from telnyx_provider.hooks.recording import RecordingHook

    RecordingHook().stop_call_recording(call, first["sid"])
    store.values[STATE_KEY]["deferred"] = True
    again = operator(call_sid=call).execute(context(store, try_number=2))
    assert again["sid"] != first["sid"]
    assert starts(sandbox) == 2


def test_without_a_state_store_a_retry_adopts_only_an_active_matching_recording(sandbox):
    # Airflow 3.1/3.2: no task state store. The weaker rule: an active recording matching the parameters,
    # started during this DAG run.
    call = sandbox.create_call()
    run_start = type("DagRun", (), {"start_date": datetime.now(timezone.utc)})()
    other_track = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context())
    ours = operator(call_sid=call).execute(context())
    again = operator(call_sid=call).execute(context(try_number=2, dag_run=run_start))
    assert again["sid"] == ours["sid"] != other_track["sid"]
    assert starts(sandbox) == 2
    # Once it has ended it is never adopted: the retry records the call again.
    from telnyx_provider.hooks.recording import RecordingHook

    RecordingHook().stop_call_recording(call, ours["sid"])
    fresh = operator(call_sid=call).execute(context(try_number=3, dag_run=run_start))
    assert fresh["sid"] not in (ours["sid"], other_track["sid"])


def test_a_worker_killed_between_the_start_and_storing_its_sid_is_resumed_exactly(sandbox, tmp_path):
    """A real process dies (os._exit) right after the start returned, before the SID reached the store."""
    call = sandbox.create_call()
    # Harsh: the call already has a recording with the same parameters (an earlier task) and another
    # track's recording: neither may be taken for the one the dead worker started.
    older = operator(task_id="older", call_sid=call).execute(context(DictStore()))
    other = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context(DictStore()))
    store_file = tmp_path / "store.json"
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO / "provider")!r})
        from telnyx_provider.operators.recording import StartCallRecordingOperator

        class FileStore:
            def get(self, key, default=None):
                try:
                    return json.load(open({str(store_file)!r})).get(key, default)
                except FileNotFoundError:
                    return default
            def set(self, key, value, *, retention=None):
                if value.get("recording_sid"):
                    os._exit(137)  # the worker dies: the start returned, the SID is not stored
                json.dump({{key: value}}, open({str(store_file)!r}, "w"))

        op = StartCallRecordingOperator(task_id="record", call_sid={call!r}, recording_channels="single",
                                        recording_track="inbound")
        op.execute({{"task_state_store": FileStore()}})
        """
    )
    env = {**os.environ, "AIRFLOW_CONN_TELNYX_DEFAULT": sandbox.airflow_conn_json()}
    died = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert died.returncode == 137, died.stderr[-2000:]
    stored = json.loads(store_file.read_text())[STATE_KEY]
    assert stored["recording_sid"] is None
    assert set(stored["snapshot"]) == {older["sid"], other["sid"]}
    assert starts(sandbox) == 3  # the dead worker's start was carried out

    store = DictStore()
    store.values[STATE_KEY] = stored
    resumed = operator(call_sid=call).execute(context(store, try_number=2))

    assert resumed["sid"] not in (older["sid"], other["sid"])
    assert starts(sandbox) == 3  # no second recording for this task
    assert store.values[STATE_KEY]["recording_sid"] == resumed["sid"]


def _waiting_operator(sandbox, call):
    """An operator waiting (poke mode) for its recording on a worker thread, and its context."""
    op = operator(call_sid=call, wait_for_completion=True, poll_interval=0.2, timeout=30)
    ctx = context(DictStore())
    threading.Thread(target=_swallow, args=(op.execute, ctx), daemon=True).start()
    wait_for(lambda: sandbox.stats()["gets_per_recording"])  # it is waiting
    return op, ctx


def test_on_kill_stops_the_recording_and_remembers_why(sandbox):
    call = sandbox.create_call()
    op, ctx = _waiting_operator(sandbox, call)
    op.on_kill()
    sid = ctx["ti"].pushed["recording_sid"]
    assert _get(sid)["status"] in ("stopped", "completed")
    assert ctx["task_state_store"].values[STATE_KEY]["stopped_by"] == "kill"


def test_on_kill_gives_up_within_its_own_short_budget_when_the_service_is_down(sandbox):
    call = sandbox.create_call()
    op, _ = _waiting_operator(sandbox, call)
    sandbox.set_faults(1.0, ["503"])  # the service is down when the kill comes
    op.on_kill()  # returns (the supervisor's SIGKILL follows SIGTERM within seconds), never raises
    updates = sandbox.stats()["requests_by_route"].get("POST /Calls/{call_sid}/Recordings/{sid}", 0)
    assert 1 <= updates <= 3  # a few tries, not a whole default retry budget (8 retries, 60 s)


def _swallow(function, *args):
    with contextlib.suppress(BaseException):  # the worker thread's wait ends however it ends
        function(*args)


def _get(sid):
    from telnyx_provider.hooks.recording import RecordingHook

    return RecordingHook().get_recording(sid)


def wait_for(condition, limit=20.0):
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def wait_until_final(sandbox, sid, status="completed"):
    wait_for(lambda: _get(sid)["status"] == status)
    return sid
