"""Retries of StartCallRecordingOperator are exact: they read the service before acting on what an earlier
try stored, resume their own recording or start a new one, never someone else's; a worker killed between
the POST and storing the SID, or between sending a stop and storing its confirmation, is covered.

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

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred

from telnyx_provider._compat import AirflowFailException, AirflowSensorTimeout
from telnyx_provider.errors import AmbiguousStartError
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


def test_retry_after_a_refused_start_starts_afresh_and_never_takes_another_runs_recording(sandbox):
    # Point 3: the first try's start is refused (429s until its budget is spent: nothing started). Another
    # DAG run records the same call with the same parameters meanwhile. The retry starts afresh.
    call = sandbox.create_call()
    store = DictStore()
    sandbox.inject("POST /Calls/{call_sid}/Recordings", "429", count=4)
    with pytest.raises(Exception, match="HTTP 429"):
        operator(call_sid=call, recording_track="both", max_retries=3).execute(context(store))
    refused = store.values[STATE_KEY].get("state")
    other = operator(task_id="other_run", call_sid=call, recording_track="both").execute(context(DictStore()))

    ours = operator(call_sid=call, recording_track="both").execute(context(store, try_number=2))

    assert ours["sid"] != other["sid"]
    assert starts(sandbox) == 2
    assert refused == "refused"


def test_retry_returns_the_completed_recording_of_a_try_that_failed_after_its_trigger_fired(sandbox):
    # Point 4 (apache/airflow#71172): the trigger fired success, then the try was failed before
    # execute_complete ran; the caller has hung up. The retry reads the service: completed, so returned.
    call = sandbox.create_call()
    store = DictStore()
    with pytest.raises(TaskDeferred):
        operator(call_sid=call, wait_for_completion=True, deferrable=True, poll_interval=0.2).execute(
            context(store)
        )
    sid = store.values[STATE_KEY]["recording_sid"]
    sandbox.hangup(call)
    wait_until_final(sandbox, sid)

    again = operator(call_sid=call, wait_for_completion=True, deferrable=True).execute(
        context(store, try_number=2)
    )

    assert again["sid"] == sid
    assert again["status"] == "completed"
    assert starts(sandbox) == 1


def test_retry_after_a_try_killed_while_deferred_waits_for_the_recording_it_finds(sandbox):
    # The deferred try was killed (its trigger stopped the recording): the service cannot tell that stop
    # from a hang-up, so the retry carries on with the recording as it is rather than record twice.
    call = sandbox.create_call()
    store = DictStore()
    first = operator(call_sid=call).execute(context(store))
    from telnyx_provider.hooks.recording import RecordingHook

    RecordingHook().stop_call_recording(call, first["sid"])
    again = operator(call_sid=call, wait_for_completion=True, poll_interval=0.2).execute(
        context(store, try_number=2)
    )
    assert again["sid"] == first["sid"]
    assert again["status"] == "completed"
    assert starts(sandbox) == 1


def test_a_stop_that_failed_is_not_stored_as_done_and_is_sent_again_by_the_retry(sandbox):
    # Point 5: the wait times out, and the stop fails (an outage). The retry must not start a second
    # recording while the first is still in progress: it sends the stop again first.
    call = sandbox.create_call()
    store = DictStore()
    sandbox.inject("POST /Calls/{call_sid}/Recordings/{sid}", "503", count=50)
    with pytest.raises(AirflowSensorTimeout):
        operator(call_sid=call, wait_for_completion=True, poll_interval=0.2, timeout=0.6).execute(
            context(store)
        )
    stored = dict(store.values[STATE_KEY])
    first = stored["recording_sid"]
    assert _get(first)["status"] == "in-progress"  # the stop did not happen
    _drain_injections(sandbox)

    second = operator(call_sid=call).execute(context(store, try_number=2))

    assert second["sid"] != first
    assert _get(first)["status"] in ("stopped", "completed")  # stopped before the new one started
    assert store.values[STATE_KEY]["recording_sid"] == second["sid"]
    assert stored.get("stop_requested") == "timeout"  # written before the stop was sent...
    assert stored.get("stopped_by") is None  # ...and not as done, since it failed


def _drain_injections(sandbox):
    """Use up pending injected faults on the update route with harmless requests (a stop of nothing)."""
    from telnyx_provider.hooks.recording import RecordingHook

    hook = RecordingHook(max_retries=0)
    call = sandbox.create_call()
    while sandbox.stats()["injections_pending"]:
        with contextlib.suppress(Exception):
            hook.stop_call_recording(call, "00000000-0000-0000-0000-000000000000")


def test_without_a_state_store_a_retry_refuses_rather_than_guess(sandbox):
    # Point 6: no task state store (Airflow < 3.3): "an active matching recording of this DAG run" may be
    # another run's. The retry adopts nothing and starts nothing.
    call = sandbox.create_call()
    run_start = type("DagRun", (), {"start_date": datetime.now(timezone.utc)})()
    other_run = operator(task_id="other", call_sid=call).execute(context())
    with pytest.raises(AirflowFailException, match="no task state store"):
        operator(call_sid=call).execute(context(try_number=2, dag_run=run_start))
    assert starts(sandbox) == 1
    assert _get(other_run["sid"])["status"] == "in-progress"


def test_a_retry_without_a_token_never_adopts_a_one_track_recording_it_cannot_prove(sandbox):
    # An earlier try sent the start and lost its outcome; a one-track recording is new since its snapshot.
    call = sandbox.create_call()
    other = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context(DictStore()))
    store = DictStore()
    store.values[STATE_KEY] = {"call_sid": call, "state": "reply_lost", "snapshot": [], "recording_sid": None}
    with pytest.raises(AmbiguousStartError, match=other["sid"]):
        operator(call_sid=call).execute(context(store, try_number=2))
    assert starts(sandbox) == 1


def _die_when(store_file, condition):
    """The source of a task state store, kept in a JSON file, whose process dies (``os._exit``) the moment
    it is asked to store a value for which ``condition`` (Python source over ``value``) holds."""
    return textwrap.dedent(
        f"""
        import json, os

        class FileStore:
            def get(self, key, default=None):
                try:
                    return json.load(open({str(store_file)!r})).get(key, default)
                except FileNotFoundError:
                    return default
            def set(self, key, value, *, retention=None):
                if {condition}:
                    os._exit(137)  # the worker dies between two lines
                json.dump({{key: value}}, open({str(store_file)!r}, "w"))
        """
    )


def _run_dying_worker(sandbox, store_file, condition, body):
    script = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(REPO / 'provider')!r})",
            _die_when(store_file, condition),
            "from telnyx_provider.operators.recording import StartCallRecordingOperator",
            textwrap.dedent(body),
        ]
    )
    env = {**os.environ, "AIRFLOW_CONN_TELNYX_DEFAULT": sandbox.airflow_conn_json()}
    died = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert died.returncode == 137, died.stderr[-3000:]
    return json.loads(store_file.read_text())[STATE_KEY]


def test_a_worker_killed_between_the_post_and_storing_its_sid_is_resumed_by_its_token(
    sandbox, receiver, tmp_path
):
    """A real process dies right after the start returned, before the SID reached the store (exact mode)."""
    call = sandbox.create_call()
    # Harsh: the call already has a recording with the same parameters and another track's recording.
    older = operator(task_id="older", call_sid=call).execute(context(DictStore()))
    other = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context(DictStore()))
    stored = _run_dying_worker(
        sandbox,
        tmp_path / "store.json",
        'value.get("recording_sid")',
        f"""
        op = StartCallRecordingOperator(task_id="record", call_sid={call!r}, recording_channels="single",
                                        recording_track="inbound",
                                        recording_status_callback={receiver.callback_url!r})
        op.execute({{"task_state_store": FileStore()}})
        """,
    )
    assert stored["recording_sid"] is None
    assert stored["state"] == "sending"
    assert len(stored["tokens"]) == 1
    assert starts(sandbox) == 3  # the dead worker's start was carried out

    store = DictStore()
    store.values[STATE_KEY] = stored
    resumed = operator(call_sid=call, recording_status_callback=receiver.callback_url).execute(
        context(store, try_number=2)
    )

    assert resumed["sid"] not in (older["sid"], other["sid"])
    assert starts(sandbox) == 3  # no second recording for this task
    assert store.values[STATE_KEY]["recording_sid"] == resumed["sid"]


def test_a_worker_killed_between_the_post_and_storing_its_sid_without_a_token_is_never_guessed(
    sandbox, tmp_path
):
    call = sandbox.create_call()
    other = operator(task_id="other", call_sid=call, recording_track="outbound").execute(context(DictStore()))
    stored = _run_dying_worker(
        sandbox,
        tmp_path / "store.json",
        'value.get("recording_sid")',
        f"""
        op = StartCallRecordingOperator(task_id="record", call_sid={call!r}, recording_channels="single",
                                        recording_track="inbound")
        op.execute({{"task_state_store": FileStore()}})
        """,
    )
    assert stored["state"] == "sending"
    store = DictStore()
    store.values[STATE_KEY] = stored
    with pytest.raises(AmbiguousStartError) as raised:
        operator(call_sid=call).execute(context(store, try_number=2))
    assert other["sid"] not in str(raised.value)  # in the snapshot: never a candidate
    assert starts(sandbox) == 2


def test_a_worker_killed_between_sending_a_stop_and_storing_its_confirmation(sandbox, tmp_path):
    """The wait times out, the stop is sent and carried out, the worker dies before storing ``stopped_by``."""
    call = sandbox.create_call()
    stored = _run_dying_worker(
        sandbox,
        tmp_path / "store.json",
        'value.get("stopped_by")',
        f"""
        op = StartCallRecordingOperator(task_id="record", call_sid={call!r}, wait_for_completion=True,
                                        poll_interval=0.2, timeout=0.6)
        try:
            op.execute({{"task_state_store": FileStore()}})
        except Exception:
            pass
        """,
    )
    first = stored["recording_sid"]
    assert stored["stop_requested"] == "timeout"
    assert stored["stopped_by"] is None
    assert _get(first)["status"] in ("stopped", "completed")

    store = DictStore()
    store.values[STATE_KEY] = stored
    second = operator(call_sid=call).execute(context(store, try_number=2))

    assert second["sid"] != first
    assert store.values[STATE_KEY]["recording_sid"] == second["sid"]
    assert starts(sandbox) == 2


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
    stored = ctx["task_state_store"].values[STATE_KEY]
    assert stored["stopped_by"] == "kill"  # written once the service confirmed the stop
    assert stored["stop_requested"] is None


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
