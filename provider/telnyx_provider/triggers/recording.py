"""RecordingCompletedTrigger: wait for a recording on the triggerer, polling asynchronously."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.models import Verdict, assess_recording
from telnyx_provider.params import require_positive_number

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


class RecordingCompletedTrigger(BaseTrigger):
    """Poll a recording until it is final (``completed`` with a duration), fails, or time runs out.

    It follows the sensor's rules: ``in-progress``, ``paused`` and ``stopped`` keep waiting; ``absent``,
    ``failed`` and ``deleted`` end with a ``failed`` event; a 404 is tolerated until
    ``not_found_deadline``. It fires exactly one event, a dict with ``status`` among ``success``
    (with ``recording``), ``failed`` (with ``recording``), ``timeout`` and ``error`` (with ``message``);
    an error never turns into a busy loop.

    :param recording_sid: the recording to wait for.
    :param account_sid: the account; the connection's login when ``None``.
    :param telnyx_conn_id: the Telnyx connection.
    :param poll_interval: seconds between two looks at the recording.
    :param deadline: Unix time after which the trigger gives up with a ``timeout`` event (``None``: never).
    :param not_found_deadline: Unix time until which a 404 means "not visible yet" (``None``: 404 fails).
    """

    def __init__(
        self,
        recording_sid: str,
        *,
        account_sid: str | None = None,
        telnyx_conn_id: str = "telnyx_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
        not_found_deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recording_sid = recording_sid
        self.account_sid = account_sid
        self.telnyx_conn_id = telnyx_conn_id
        self.poll_interval = require_positive_number("poll_interval", poll_interval)
        self.deadline = deadline
        self.not_found_deadline = not_found_deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and the JSON-safe keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "recording_sid": self.recording_sid,
                "account_sid": self.account_sid,
                "telnyx_conn_id": self.telnyx_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "not_found_deadline": self.not_found_deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the recording is final and fire one event."""
        # The shared client is released before the event is yielded: a caller that stops iterating after
        # the first event (as dag.test() does) must not leave a pooled client open.
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        # aiohttp and the client stay out of DAG-parse time: the triggerer alone imports them.
        from telnyx_provider.hooks.recording_async import shared_client

        try:
            async with shared_client(self.telnyx_conn_id) as client:
                while True:
                    event = await self._look(client)
                    if event is not None:
                        return event
                    now = time.time()
                    if self.deadline is not None and now >= self.deadline:
                        return self._event("timeout", message=self._timeout_message())
                    wait = self.poll_interval
                    if self.deadline is not None:
                        wait = min(wait, max(0.0, self.deadline - now))
                    await asyncio.sleep(wait)
        except Exception as error:  # any failure ends in one error event, never a retry loop here
            return self._event("error", message=f"{type(error).__name__}: {error}")

    async def _look(self, client: Any) -> dict[str, Any] | None:
        try:
            recording = await client.get_recording(self.recording_sid, account_sid=self.account_sid)
        except TelnyxApiError as error:
            if (
                error.status == 404
                and self.not_found_deadline is not None
                and time.time() < self.not_found_deadline
            ):
                log.info("Recording %s is not visible yet (HTTP 404); still waiting.", self.recording_sid)
                return None
            return self._event("error", message=str(error))
        assessment = assess_recording(recording)
        if assessment.verdict is Verdict.DONE:
            return self._event("success", recording=recording, message=assessment.reason)
        if assessment.verdict is Verdict.FAIL:
            return self._event("failed", recording=recording, message=assessment.reason)
        if assessment.unknown_status:
            log.warning("%s", assessment.reason)
        return None

    def _event(self, status: str, **payload: Any) -> dict[str, Any]:
        return {"status": status, "recording_sid": self.recording_sid, **payload}

    def _timeout_message(self) -> str:
        return f"Recording {self.recording_sid} was not final by the deadline; gave up waiting."
