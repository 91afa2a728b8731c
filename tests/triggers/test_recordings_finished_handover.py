"""RecordingsFinishedTrigger cancelled by Airflow's own triggerer midway through a batch of events.

Airflow 3.3.2's ``TriggerRunner.run_trigger`` takes an event from the trigger, then awaits its log line
(structlog's ``ainfo`` runs in a thread) and only then queues the event. A trigger cancelled there (its
triggerer shutting down, the trigger moved to another triggerer or replaced) has handed the event over
but Airflow never queued it. These tests run the real ``run_trigger`` against the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from telnyx_provider.triggers.recording import RecordingsFinishedTrigger
from telnyx_provider.triggers.recordings_poll import STATE_KEY
from tests.triggers.test_recordings_finished_trigger import (
    StateStore,
    polls,
    start_recording,
    status_of,
    trigger,
    until,
)

MODES = [pytest.param("run", id="run-loop"), pytest.param("shared", id="shared-stream")]


class CancelledAfter(deque):
    """The runner's outbound event queue; once it holds ``count`` events, the runner's task is cancelled
    (the cancellation lands at the runner's next await: the log line of the event it takes next)."""

    def __init__(self, count: int | None) -> None:
        super().__init__()
        self.count = count
        self.task: asyncio.Task[Any] | None = None

    def append(self, entry: Any) -> None:
        super().append(entry)
        if len(self) == self.count and self.task is not None:
            self.task.cancel()


class Triggerer:
    """One triggerer process's runner (Airflow's ``TriggerRunner``) running one watcher."""

    def __init__(self, watcher: RecordingsFinishedTrigger, *, cancel_after: int | None = None) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.runner = TriggerRunner()
        self.runner.triggers[1] = {"task": None, "is_watcher": True, "name": "watcher", "events": 0}
        self.runner.events = CancelledAfter(cancel_after)
        if not hasattr(watcher, "timeout_after"):  # Airflow 3.1's run_trigger reads it off the trigger
            watcher.timeout_after = None
        self.task = asyncio.create_task(self.runner.run_trigger(1, watcher))
        self.runner.events.task = self.task

    def queued(self) -> list[str]:
        """The SIDs of the events Airflow queued for the metadata database."""
        # An entry with the event (3.3), or a (trigger id, event) pair (3.1).
        events = [entry.event if hasattr(entry, "event") else entry[1] for entry in self.runner.events]
        return [event.payload["sid"] for event in events]

    async def cancel(self) -> None:
        task, self.task, self.runner.events.task = self.task, None, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del task
        gc.collect()  # the trigger's generators are finalised (closed), as in a triggerer that runs on


@pytest.fixture(autouse=True)
def _no_greenback(monkeypatch):
    monkeypatch.setenv("AIRFLOW_DISABLE_GREENBACK_PORTAL", "true")


@pytest.mark.parametrize("mode", MODES)
async def test_an_event_taken_but_not_queued_when_the_triggerer_cancels_is_reported_again(sandbox, mode):
    if mode == "shared":
        pytest.importorskip("airflow.triggers.shared_stream", reason="shared polls are Airflow 3.3+")
    store = StateStore()
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    calls = [start_recording(sandbox) for _ in range(3)]
    for call_sid, _ in calls:
        sandbox.hangup(call_sid)
    await until(lambda: all(status_of(sandbox, sid) == "completed" for _, sid in calls))
    first = trigger(sandbox, since=since)  # its first listing reports all three: one batch of three
    if mode == "run":
        first.shared_stream_key = lambda: None
    first.asset_state_store = store
    # The first event is queued, and the runner is cancelled while it awaits the second one's log line.
    triggerer = Triggerer(first, cancel_after=1)
    await until(lambda: triggerer.task.done())
    await triggerer.cancel()
    first_run = triggerer.queued()
    assert len(first_run) == 1
    not_queued = {sid for _, sid in calls} - set(first_run)

    def stored_pending() -> set[str]:
        return set(json.loads(store.values[STATE_KEY])["pending"])

    # What Airflow did not queue is put back and saved (once the closed trigger is finalised).
    await until(lambda: not_queued <= stored_pending())

    second = RecordingsFinishedTrigger(**first.serialize()[1])
    if mode == "run":
        second.shared_stream_key = lambda: None
    second.asset_state_store = store
    restarted = Triggerer(second)
    count = polls(sandbox)
    await until(lambda: polls(sandbox) >= count + 5)
    await restarted.cancel()
    reported: list[Any] = first_run + restarted.queued()
    assert sorted(reported) == sorted(sid for _, sid in calls), "an event was lost or doubled"
