"""Ownership decisions read only fields Telnyx's schemas have: a guarantee never rests on a field the real
API does not send.

The spec-shaped sandbox (the suite's default) and Prism can only leave such a field out: code that starts
reading one (``track`` in a list item, say) would read ``None`` and pass every test that does not happen to
depend on it. Here every recording the hook parses is handed to the code as a :class:`FieldGuard` that notes
each field read which the reply's response schema in Telnyx's spec does not define (a fetch or list item:
``TexmlGetCallRecordingResponseBody``; a start or update reply: ``TexmlCreateCallRecordingResponseBody``).
The start's flows run against the sandbox (a lost reply adopted on the sole new match, one refused as
ambiguous, one adopted on its start token and settled, a task retry that reads the service, the wait);
no guarded read may name a field outside its schema.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from telnyx_provider import api
from telnyx_provider.errors import AmbiguousStartError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.operators.recording import StartCallRecordingOperator
from telnyx_provider.operators.start_memory import STATE_KEY
from telnyx_provider.retry import RetryPolicy
from tests.spec_conformance import load_spec

START_ROUTE = "POST /Calls/{call_sid}/Recordings"


def schema_fields(name: str) -> frozenset[str]:
    return frozenset(load_spec()["components"]["schemas"][name]["properties"])


GET_FIELDS = schema_fields("TexmlGetCallRecordingResponseBody")
CREATE_FIELDS = schema_fields("TexmlCreateCallRecordingResponseBody")


class FieldGuard(dict):  # type: ignore[type-arg]
    """A parsed recording that notes every read of a field its schema lacks (present or not)."""

    def __init__(self, value: dict[str, Any], allowed: frozenset[str], where: str, seen: list[str]) -> None:
        super().__init__(value)
        self._allowed, self._where, self._seen = allowed, where, seen

    def _note(self, key: object) -> None:
        if key not in self._allowed:
            self._seen.append(f"{key!r} read from the reply to {self._where}")

    def __getitem__(self, key: object) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: object, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


@pytest.fixture
def guarded(monkeypatch):
    """Every recording the hook parses is a :class:`FieldGuard`; yields the list of offending reads."""
    seen: list[str] = []
    lock = threading.Lock()
    original = api.read_reply

    def read_reply(parse, request, status, headers, body, *, api_key):
        result = original(parse, request, status, headers, body, api_key=api_key)
        allowed = GET_FIELDS if request.method == "GET" else CREATE_FIELDS
        where = f"{request.method} {request.path}"
        with lock:
            if isinstance(result, dict) and isinstance(result.get("recordings"), list):
                result["recordings"] = [
                    FieldGuard(item, allowed, where, seen) for item in result["recordings"]
                ]
            elif isinstance(result, dict) and "sid" in result and "transcription_text" not in result:
                result = FieldGuard(result, allowed, where, seen)
        return result

    monkeypatch.setattr(api, "read_reply", read_reply)
    return seen


def quick_hook(adoption_wait=1.0):
    policy = RetryPolicy(max_retries=20, max_wait=0.05, budget=10.0, initial_wait=0.01)
    return RecordingHook(retry_policy=policy, adoption_wait=adoption_wait)


def test_the_guard_catches_a_read_of_a_field_the_fetch_schema_lacks(guarded, faulty_sandbox):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    started = quick_hook().start_call_recording(call)
    fetched = quick_hook().get_recording(started["sid"])
    assert started.get("track") is None or started["track"]  # a create reply has a track: allowed
    assert guarded == []
    fetched.get("track")  # what an ownership rule reading "track" from a fetch would do
    assert guarded == [
        f"'track' read from the reply to GET {api.get_recording(sandbox.account_sid, started['sid']).path}"
    ]


def test_default_mode_decisions_read_only_schema_fields(guarded, faulty_sandbox):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")
    quick_hook().start_call_recording(call)  # a both-track start adopts the sole new match
    sandbox.inject(START_ROUTE, "reset_after")
    with pytest.raises(AmbiguousStartError):
        quick_hook().start_call_recording(call, recording_track="inbound", recording_channels="dual")
    assert guarded == []


def test_exact_mode_decisions_read_only_schema_fields(guarded, faulty_sandbox, receiver):
    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    sandbox.inject(START_ROUTE, "reset_after")  # adopted on its token
    quick_hook(adoption_wait=3.0).start_call_recording(
        call, recording_track="inbound", recording_status_callback=receiver.callback_url
    )
    sandbox.inject(START_ROUTE, "reset_after")  # sent again, then the late one is stopped as superseded
    sandbox.hold_callbacks()
    threading.Timer(1.0, sandbox.release_callbacks).start()
    quick_hook(adoption_wait=0.5).start_call_recording(
        call, recording_track="outbound", recording_status_callback=receiver.callback_url
    )
    late = sandbox.started_on(call)[1]["sid"]
    deadline = time.monotonic() + 20
    while quick_hook().get_recording(late)["status"] == "in-progress":  # stopped by the receiver
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert guarded == []


def test_task_retries_and_waits_read_only_schema_fields(guarded, faulty_sandbox):
    from tests.reliability.test_reliability_start_retries import DictStore, context

    sandbox = faulty_sandbox()
    call = sandbox.create_call()
    store = DictStore()
    first = StartCallRecordingOperator(task_id="t", call_sid=call).execute(context(store))
    StartCallRecordingOperator(task_id="t", call_sid=call).execute(context(store, try_number=2))  # resumed
    store.values[STATE_KEY] = {"call_sid": call, "state": "reply_lost", "snapshot": [first["sid"]]}
    StartCallRecordingOperator(task_id="t", call_sid=call).execute(context(store, try_number=3))
    sandbox.hangup(call)
    StartCallRecordingOperator(
        task_id="t", call_sid=call, wait_for_completion=True, poll_interval=0.1, timeout=20
    ).execute(context(store, try_number=4))
    assert guarded == []
