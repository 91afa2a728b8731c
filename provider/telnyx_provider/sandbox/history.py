"""Seeded history: an account with recordings over past days, from every source the spec lists (pure, no I/O).

:func:`plan_history` decides, reproducibly from a seed, what an account recorded over the last ``days`` whole
UTC days: calls spread over each day, recordings from every ``RecordingSource`` of the spec
(``StartCallRecordingAPI``, ``StartConferenceRecordingAPI``, ``OutboundAPI``, ``DialVerb``, ``Conference``,
``RecordVerb``, ``Trunking``), some calls with two recordings, some silent (their recordings end ``absent``),
and a few recordings of the last day that are not final yet (``in-progress`` or ``paused``: their call is
still live, as a call across midnight is). :func:`build_history` turns the plan into the sandbox's calls and
recordings, created at those past dates; the archive operator and the example DAG have history to archive.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telnyx_provider.sandbox.params import StartParams
from telnyx_provider.sandbox.state import Call, Recording, new_call_sid

if TYPE_CHECKING:
    from collections.abc import Callable

#: ``RecordingSource`` of the spec (``texml-recordings-openapi.json``): how a recording was created.
SOURCES = (
    "StartCallRecordingAPI",
    "StartConferenceRecordingAPI",
    "OutboundAPI",
    "DialVerb",
    "Conference",
    "RecordVerb",
    "Trunking",
)
CONFERENCE_SOURCES = frozenset({"StartConferenceRecordingAPI", "Conference"})
DAY = 86400.0
#: Every how many calls one has two recordings (say the ``<Dial record>`` leg and a ``<Record>`` after it).
TWO_RECORDINGS_EVERY = 7


@dataclass(frozen=True, slots=True)
class PastRecording:
    """One recording of the seeded history.

    :param started_at: epoch time it was created (our clock).
    :param seconds: its duration once final (and the audio's length, up to the media cap).
    :param source: its ``RecordingSource``.
    :param channels: ``single`` or ``dual``.
    :param state: ``final``, ``in-progress`` or ``paused`` (the last two: its call is still live).
    :param silent: its call recorded nothing: it ends ``absent``.
    :param call: index of its call in the plan (two recordings may share one).
    """

    started_at: float
    seconds: int
    source: str
    channels: str
    state: str = "final"
    silent: bool = False
    call: int = 0


def _check(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def plan_history(
    days: int,
    *,
    now: float,
    per_day: int = 20,
    audio_seconds: int = 60,
    absent_rate: float = 0.05,
    not_final: int = 2,
    seed: int | None = None,
) -> list[PastRecording]:
    """What the account recorded over the ``days`` whole UTC days before today, oldest first.

    :param days: how many past days (today excluded).
    :param now: the current epoch time; days are whole UTC days before the one holding ``now``.
    :param per_day: recordings created on each day.
    :param audio_seconds: duration of every recording (the media served is capped by the sandbox's cap).
    :param absent_rate: fraction of calls that recorded nothing (their recordings end ``absent``).
    :param not_final: recordings of the last day that are still ``in-progress`` or ``paused``.
    :param seed: seed of the draw (None: unseeded).
    :raises ValueError: for a value out of range.
    """
    _check("days", days, 1)
    _check("per_day", per_day, 1)
    _check("audio_seconds", audio_seconds, 1)
    _check("not_final", not_final, 0)
    if not 0.0 <= absent_rate <= 1.0:
        raise ValueError(f"absent_rate must be between 0 and 1, got {absent_rate!r}")
    if not_final > per_day:
        raise ValueError(f"not_final ({not_final}) cannot exceed per_day ({per_day})")
    draw = random.Random(seed)
    today = math.floor(now / DAY) * DAY
    plan: list[PastRecording] = []
    call = 0
    for day in range(days, 0, -1):
        start = today - day * DAY
        # Whole seconds (dates are reported to the second), and room for the call before midnight.
        moments = sorted(draw.uniform(start, start + DAY - audio_seconds - 2) // 1 for _ in range(per_day))
        index = 0
        while index < len(moments):
            source = SOURCES[(call + index) % len(SOURCES)]
            silent = draw.random() < absent_rate
            channels = draw.choice(("single", "dual"))
            pair = call % TWO_RECORDINGS_EVERY == TWO_RECORDINGS_EVERY - 1 and index + 1 < len(moments)
            # A pair starts at the same second (both legs of a <Dial record>): a harsh, normal case.
            for _ in range(2 if pair else 1):
                plan.append(
                    PastRecording(moments[index], audio_seconds, source, channels, silent=silent, call=call)
                )
            index += 2 if pair else 1
            call += 1
    # The last day's latest recordings are still going: their calls are live (they began before midnight).
    for position, place in enumerate(range(len(plan) - not_final, len(plan))):
        last = plan[place]
        state = "in-progress" if position % 2 == 0 else "paused"
        plan[place] = PastRecording(
            last.started_at, last.seconds, last.source, last.channels, state, False, call
        )
        call += 1
    return plan


def build_history(
    plan: list[PastRecording], *, now: float, new_sid: Callable[[], str]
) -> tuple[list[Call], list[Recording]]:
    """The sandbox's calls and recordings for ``plan``, created at their past dates.

    A final recording's call hung up when it ended, long ago; a recording not final yet has a live call.

    :param plan: from :func:`plan_history`.
    :param now: the current epoch time (a paused recording was paused a minute ago).
    :param new_sid: makes a recording SID.
    """
    calls: dict[int, Call] = {}
    recordings: list[Recording] = []
    for item in plan:
        call = calls.get(item.call)
        if call is None:
            live = item.state != "final"
            hangup_at = math.inf if live else item.started_at + item.seconds
            call = Call(new_call_sid(), hangup_at, item.silent, audio_seconds=item.seconds)
            calls[item.call] = call
        params = StartParams(channels=item.channels, track="both")
        rec = Recording(
            new_sid(),
            call,
            params,
            item.started_at,
            math.inf,
            running_since=item.started_at if item.state != "paused" else None,
            updated_at=item.started_at,
            final_notified=True,  # history: no status callback is owed
            source=item.source,
            conference_sid=_conference_sid(new_sid) if item.source in CONFERENCE_SOURCES else None,
        )
        if item.state == "paused":
            rec.recorded = min(float(item.seconds), max(0.0, now - item.started_at - 60.0))
            rec.updated_at = max(item.started_at, now - 60.0)
        recordings.append(rec)
        call.recording_sids.append(rec.sid)
    return list(calls.values()), recordings


def _conference_sid(new_sid: Callable[[], str]) -> str:
    return f"conf-{new_sid()}"


def summary(recordings: list[Recording], now: float, processing_delay: float) -> dict[str, Any]:
    """What was seeded, as JSON: counts by source and by status, the first and last creation and the SIDs of
    the recordings not final yet.

    :param recordings: the seeded recordings.
    :param now: the current epoch time.
    :param processing_delay: the sandbox's processing delay.
    """
    by_source: dict[str, int] = {}
    by_status: dict[str, int] = {}
    not_final: list[str] = []
    for rec in recordings:
        status = rec.snapshot(now, processing_delay).status
        by_source[rec.source] = by_source.get(rec.source, 0) + 1
        by_status[status] = by_status.get(status, 0) + 1
        if status not in ("completed", "absent"):
            not_final.append(rec.sid)
    started = [rec.started_at for rec in recordings]
    return {
        "recordings": len(recordings),
        "calls": len({rec.call.sid for rec in recordings}),
        "by_source": by_source,
        "by_status": by_status,
        "first_created": min(started) if started else None,
        "last_created": max(started) if started else None,
        "not_final": not_final,
    }
