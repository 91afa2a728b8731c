"""The retry policy end to end, through the sandbox's injected faults, for the sync hook and the async client.

Every injected fault must cost exactly one retry, logged once at WARNING with its status (or "no reply")
and its wait; a wait the service asked for (Retry-After) is honoured and logged as such; settings come from
the connection's extra and can be overridden per hook. Retries are counted from the outside: the warnings'
``telnyx_retry`` extra (reason, wait, asked) and the sandbox's own count of faults and requests.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig
from telnyx_provider.errors import TelnyxApiError, TelnyxValidationError
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.hooks.recording_async import AsyncRecordingClient
from telnyx_provider.retry import RetryPolicy, requested_wait

RETRY_LOGGER = "telnyx_provider.retry"
WARNING_RE = re.compile(r"failed \((HTTP \d{3}|no reply)\b.*\); retry \d+ of \d+ in (\d+\.\d\d) s")
FAULTS = ("429", "500", "503", "reset")
#: How each injected fault shows in the retry warning.
REASON_OF_FAULT = {"429": "HTTP 429", "500": "HTTP 500", "503": "HTTP 503", "reset": "no reply"}


def patient_policy(**changes):
    settings = {"max_retries": 40, "max_wait": 0.02, "budget": 30.0, "initial_wait": 0.005}
    return RetryPolicy(**{**settings, **changes})


def retry_warnings(caplog):
    return [record for record in caplog.records if record.name == RETRY_LOGGER]


def reasons_logged(records):
    reasons = Counter()
    for record in records:
        assert record.levelno == logging.WARNING
        match = WARNING_RE.search(record.getMessage())
        assert match, record.getMessage()
        reasons[match.group(1)] += 1
    return reasons


def reasons_extra(records):
    """Retries by the reason in their structured ``telnyx_retry`` extra."""
    return Counter(record.telnyx_retry["reason"] for record in records)


def seconds_waited(records):
    """``(asked, backoff)``: seconds waited as the service asked (Retry-After) and in backoff."""
    asked = sum(r.telnyx_retry["wait"] for r in records if r.telnyx_retry["asked"])
    backoff = sum(r.telnyx_retry["wait"] for r in records if not r.telnyx_retry["asked"])
    return asked, backoff


def reasons_injected(stats):
    return Counter(
        {REASON_OF_FAULT[kind]: count for kind, count in stats["faults_injected"].items() if count}
    )


def config_of(sandbox, **extra):
    return TelnyxConnectionConfig.from_fields(
        "telnyx_default",
        host=sandbox.base_url,
        login=sandbox.account_sid,
        password=sandbox.api_key,
        extra=extra or None,
    )


def test_sync_hook_logs_each_retry_once_with_status_and_wait(faulty_sandbox, receiver, caplog):
    # Exact starts: a start whose reply was lost is sent again only when its token proves nothing started.
    sandbox = faulty_sandbox(fault_rate=0.3, faults=FAULTS, retry_after=0, seed=5)
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    policy = patient_policy()
    hook = RecordingHook(retry_policy=policy, adoption_wait=1.0)
    recordings = [
        hook.start_call_recording(sandbox.create_call(), recording_status_callback=receiver.callback_url)
        for _ in range(8)
    ]
    for recording in recordings * 4:
        assert hook.get_recording(recording["sid"])["sid"] == recording["sid"]

    stats = sandbox.stats()
    injected = sum(stats["faults_injected"].values())
    assert injected >= 10  # the run really met faults of every kind
    assert all(stats["faults_injected"][kind] for kind in FAULTS)
    records = retry_warnings(caplog)
    assert len(records) == injected  # one retry, one warning, per fault
    assert reasons_logged(records) == reasons_injected(stats)
    assert reasons_extra(records) == {
        "no reply (connection)" if reason == "no reply" else reason: count
        for reason, count in reasons_injected(stats).items()
    }
    assert len(stats["starts_per_call"]) == 8
    assert set(stats["starts_per_call"].values()) == {1}


async def _async_gets_under_faults(sandbox, faults, caplog):
    """30 GETs through the async client while 30 % of requests get one of ``faults``.

    Returns the number of requests the sandbox received for them.
    """
    recording_sids = [RecordingHook().start_call_recording(sandbox.create_call())["sid"] for _ in range(5)]
    before = sandbox.stats()["requests_total"]
    sandbox.set_faults(0.3, faults)
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    policy = patient_policy()
    client = AsyncRecordingClient(config_of(sandbox), retry_policy=policy)
    try:
        for sid in recording_sids * 6:
            assert (await client.get_recording(sid))["sid"] == sid
    finally:
        await client.aclose()
    return sandbox.stats()["requests_total"] - before


async def test_async_client_logs_each_retry_once_with_status_and_wait(faulty_sandbox, caplog):
    sandbox = faulty_sandbox(seed=9, retry_after=0)
    requests = await _async_gets_under_faults(sandbox, ("429", "500", "503"), caplog)
    stats = sandbox.stats()
    injected = sum(stats["faults_injected"].values())
    assert injected >= 5
    records = retry_warnings(caplog)
    assert len(records) == injected
    assert reasons_logged(records) == reasons_injected(stats) == reasons_extra(records)
    assert requests == 30 + len(records)  # every request beyond the first of each GET is a logged retry


async def test_async_client_logs_each_retry_after_a_reset(faulty_sandbox, caplog):
    sandbox = faulty_sandbox(seed=9, retry_after=0)
    requests = await _async_gets_under_faults(sandbox, ("reset",), caplog)
    records = retry_warnings(caplog)
    injected = sandbox.stats()["faults_injected"]["reset"]
    assert injected >= 5
    assert requests == 30 + len(records)  # no request re-sent unseen
    assert len(records) == injected
    assert set(reasons_extra(records)) == {"no reply (connection)"}


def _one_rate_limit_then_fine(sandbox, when):
    when(lambda: sandbox.stats()["faults_injected"]["429"] >= 1, lambda: sandbox.set_faults(0.0))


def test_sync_hook_waits_what_retry_after_asks(faulty_sandbox, when, caplog):
    sandbox = faulty_sandbox(seed=1)
    sid = RecordingHook().start_call_recording(sandbox.create_call())["sid"]
    sandbox.set_faults(1.0, ("429",))
    _one_rate_limit_then_fine(sandbox, when)
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    policy = patient_policy(max_wait=0.01)  # a backoff could never wait this long: only Retry-After can

    began = time.monotonic()
    RecordingHook(retry_policy=policy).get_recording(sid)

    assert time.monotonic() - began >= 1.0
    [record] = retry_warnings(caplog)
    assert "HTTP 429" in record.getMessage()
    assert "in 1.00 s as the service asked" in record.getMessage()
    assert record.telnyx_retry == {"reason": "HTTP 429", "wait": 1.0, "asked": True}
    assert seconds_waited([record]) == (pytest.approx(1.0), pytest.approx(0.0))


async def test_async_client_waits_what_retry_after_asks(faulty_sandbox, when, caplog):
    sandbox = faulty_sandbox(seed=1)
    sid = RecordingHook().start_call_recording(sandbox.create_call())["sid"]
    sandbox.set_faults(1.0, ("429",))
    _one_rate_limit_then_fine(sandbox, when)
    caplog.set_level(logging.WARNING, logger="telnyx_provider")
    policy = patient_policy(max_wait=0.01)
    client = AsyncRecordingClient(config_of(sandbox), retry_policy=policy)
    began = time.monotonic()
    try:
        await client.get_recording(sid)
    finally:
        await client.aclose()
    assert time.monotonic() - began >= 1.0
    [record] = retry_warnings(caplog)
    assert "in 1.00 s as the service asked" in record.getMessage()
    assert seconds_waited([record]) == (pytest.approx(1.0), pytest.approx(0.0))


def test_a_retry_after_beyond_the_budget_is_not_waited_out(faulty_sandbox):
    sandbox = faulty_sandbox(extra={"retry_budget": 2}, fault_rate=1.0, faults=("429",), retry_after=5)
    began = time.monotonic()
    with pytest.raises(TelnyxApiError) as raised:
        RecordingHook().get_recording("00000000-0000-4000-8000-000000000000")
    assert time.monotonic() - began < 4.0  # the 5 s the service asked for were not waited out
    assert raised.value.status == 429
    assert requested_wait(raised.value) == 5.0
    assert sandbox.stats()["requests_total"] == 1


@pytest.mark.parametrize(
    ("extra", "hook_kwargs", "attempts"),
    [
        ({}, {"max_retries": 0}, 1),
        ({"max_retries": 2}, {}, 3),
        ({"max_retries": 5}, {"max_retries": 1}, 2),  # the hook's argument wins over the connection
        ({"max_retries": 0}, {"max_retries": 3}, 4),
    ],
)
def test_max_retries_from_the_connection_and_the_hook(faulty_sandbox, extra, hook_kwargs, attempts):
    sandbox = faulty_sandbox(extra={"retry_max_wait": 0.01, **extra}, fault_rate=1.0, faults=("503",))
    with pytest.raises(TelnyxApiError) as raised:
        RecordingHook(**hook_kwargs).get_recording("00000000-0000-4000-8000-000000000000")
    assert raised.value.status == 503
    assert sandbox.stats()["requests_total"] == attempts


def test_retry_budget_from_the_hook_bounds_the_time_spent(faulty_sandbox):
    sandbox = faulty_sandbox(
        extra={"retry_max_wait": 0.05, "max_retries": 1000}, fault_rate=1.0, faults=("500",)
    )
    began = time.monotonic()
    with pytest.raises(TelnyxApiError):
        RecordingHook(retry_budget=0.5).get_recording("00000000-0000-4000-8000-000000000000")
    took = time.monotonic() - began
    # 1,000 retries at up to 0.05 s each would take ~25 s: the 0.5 s budget stopped them. (The upper bound
    # is loose on purpose: a loaded machine is slow, not wrong.)
    assert 0.3 < took < 5
    assert sandbox.stats()["requests_total"] < 200


def test_defaults_allow_eight_retries_and_sixty_seconds(telnyx_conn):
    policy = RecordingHook().retry_policy
    assert (policy.max_retries, policy.budget, policy.max_wait) == (8, 60.0, 30.0)
    overridden = RecordingHook(max_retries=3, retry_max_wait=2, retry_budget=9).retry_policy
    assert (overridden.max_retries, overridden.max_wait, overridden.budget) == (3, 2, 9)


def test_overrides_apply_on_top_of_the_given_policy(telnyx_conn):
    given = RetryPolicy(max_wait=3, budget=7, initial_wait=0.1)
    hook = RecordingHook(retry_policy=given, max_retries=2)
    assert hook.retry_policy == RetryPolicy(max_retries=2, max_wait=3, budget=7, initial_wait=0.1)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"retry_max_wait": 0}, "retry_max_wait"),
        ({"retry_budget": -5}, "retry_budget"),
        ({"retry_budget": "60"}, "retry_budget"),
    ],
)
def test_bad_retry_overrides_are_refused_when_the_hook_is_built(kwargs, argument):
    with pytest.raises(TelnyxValidationError) as raised:
        RecordingHook(**kwargs)
    assert raised.value.argument == argument


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_refusals_are_never_retried(requests_mock, telnyx_conn, status):
    requests_mock.get(re.compile(".*"), status_code=status, json={"errors": [{}]})
    with pytest.raises(TelnyxApiError):
        RecordingHook(max_retries=5, retry_max_wait=0.01).get_recording("r1")
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("name", ["Retry-After", "RETRY-AFTER", "retry-after"])
def test_requested_wait_reads_headers_in_any_case(name):
    error = TelnyxApiError(status=429, method="GET", path="/x", headers={name: "3"})
    assert error.headers == {"retry-after": "3"}
    assert requested_wait(error) == 3.0


def test_an_error_built_with_mixed_case_headers_is_honoured_by_the_policy():
    from tenacity import Retrying

    slept = []
    errors = [TelnyxApiError(status=503, method="GET", path="/x", headers={"X-RateLimit-Reset": "4"})]

    def call():
        if errors:
            raise errors.pop()
        return "ok"

    assert Retrying(sleep=slept.append, **RetryPolicy().tenacity_kwargs("GET /x"))(call) == "ok"
    assert slept == [4.0]


async def test_connection_extra_retry_settings_reach_the_async_client(faulty_sandbox):
    sandbox = faulty_sandbox(fault_rate=1.0, faults=("503",))
    client = AsyncRecordingClient(config_of(sandbox, max_retries=2, retry_max_wait=0.01))
    try:
        with pytest.raises(TelnyxApiError) as raised:
            await client.get_recording("00000000-0000-4000-8000-000000000000")
    finally:
        await client.aclose()
    assert raised.value.status == 503
    assert sandbox.stats()["requests_total"] == 3
