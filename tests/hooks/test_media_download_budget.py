"""A download's retry budget counts failures and waits, not the time spent receiving audio (fake clock)."""

from __future__ import annotations

import io

import pytest
from tenacity import RetryCallState, Retrying

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.hooks import media
from telnyx_provider.hooks.media import DownloadBudget
from telnyx_provider.hooks.recording import RecordingHook
from telnyx_provider.retry import RetryPolicy
from tests.hooks.test_recording_download import GET_URL, MEDIA_URL, RECORDING_SID, recording


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(upcoming_sleep: float = 0.0) -> RetryCallState:
    retry_state = RetryCallState(Retrying(), None, (), {})
    retry_state.upcoming_sleep = upcoming_sleep
    return retry_state


def test_time_spent_receiving_is_not_spent_from_the_budget():
    clock = FakeClock()
    budget = DownloadBudget(60, clock)

    clock.now += 10  # a failure before any audio: spent
    with budget.receiving():
        clock.now += 3600  # an hour of audio, then the transfer is cut
    clock.now += 5

    assert budget.spent() == 15
    assert not budget(state(upcoming_sleep=1))
    assert budget(state(upcoming_sleep=45))  # the wait would end past the budget


def test_a_transfer_that_raises_is_still_not_counted():
    clock = FakeClock()
    budget = DownloadBudget(60, clock)

    def cut_after_500_seconds() -> None:
        with budget.receiving():
            clock.now += 500
            raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        cut_after_500_seconds()
    assert budget.spent() == 0


def test_each_attempt_gets_what_the_earlier_ones_left_of_the_budget():
    clock = FakeClock()
    budget = DownloadBudget(60, clock)
    for _ in range(3):
        clock.now += 25  # three failures without audio: 75 s
        assert budget.spent() <= 75
    assert budget(state())


class SlowCutBody(io.RawIOBase):
    """A body that takes ``seconds`` of the fake clock, then breaks: a long transfer cut at its end."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        """As a socket's reply does: what is there, without waiting for more (urllib3 reads so)."""
        return self.read(size)

    def read(self, size: int = -1) -> bytes:
        from urllib3.exceptions import ProtocolError

        self.clock.now += self.seconds
        raise ProtocolError("Connection broken: IncompleteRead", ConnectionResetError(104, "reset"))


def test_a_download_cut_after_longer_than_the_budget_is_retried(
    telnyx_conn, requests_mock, tmp_path, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(media, "DownloadBudget", lambda budget: DownloadBudget(budget, clock))
    requests_mock.get(GET_URL, json=recording())
    whole = b"RIFF" + bytes(1000)
    media_replies = requests_mock.get(
        MEDIA_URL,
        [
            {"body": SlowCutBody(clock, 120), "headers": {"Content-Length": "5000"}},
            {"body": io.BytesIO(whole), "headers": {"Content-Length": str(len(whole))}},
        ],
    )
    hook = RecordingHook(
        retry_policy=RetryPolicy(max_retries=1, max_wait=0.01, budget=60, initial_wait=0.001)
    )

    stored = hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert media_replies.call_count == 2
    assert stored["size"] == len(whole)


def test_max_retries_still_caps_the_attempts(telnyx_conn, requests_mock, tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(media, "DownloadBudget", lambda budget: DownloadBudget(budget, clock))
    requests_mock.get(GET_URL, json=recording())
    cuts = [{"body": SlowCutBody(clock, 120), "headers": {"Content-Length": "5000"}} for _ in range(4)]
    media_replies = requests_mock.get(MEDIA_URL, cuts)
    hook = RecordingHook(
        retry_policy=RetryPolicy(max_retries=2, max_wait=0.01, budget=60, initial_wait=0.001)
    )

    with pytest.raises(TelnyxApiError, match="cut"):
        hook.download_recording(RECORDING_SID, f"{tmp_path}/")

    assert media_replies.call_count == 3
