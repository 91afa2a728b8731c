"""Which recordings of an account finished since the last look: the bookkeeping of the polling event trigger.

Pure: no I/O. :class:`RecordingFeed` is fed full listings of the account's recordings created since
:meth:`RecordingFeed.window_start` (the ``DateCreated`` filter) and answers, for each listing, the recordings
that became final (``completed`` with a duration, or ``absent``) and were not reported before. Its state is
small and JSON (:meth:`~telnyx_provider.recording_feed.RecordingFeed.to_json`), for the asset's state store:

- ``frontier``: the newest ``date_created`` seen. Dates are Telnyx's own, never our clock, so a skew between
  the two clocks cannot open a gap;
- ``pending``: recordings seen not final yet (they are reported when they become final; the listings start
  at the oldest of them). One still not final ``max_pending_age`` after its creation (Telnyx's dates: the
  frontier's) is given up: it leaves ``pending`` and the window, and :attr:`RecordingFeed.abandoned` names
  it, so a stuck recording cannot pin the window (and the cost of every listing) for ever;
- ``recent_final``: final recordings created within ``overlap`` of the frontier (reported, or already final
  when first seen), so a listing that shows them again does not report them twice;
- ``quiet_since``: while the feed has never seen a recording (no frontier yet), where its first listing
  started (our clock, as that listing's start was): later listings start there, not ``lookback`` before
  *now*, so a watcher down (or an API out) for longer than ``lookback`` before the account's first
  recording still finds the recordings made meanwhile.

A final recording that is neither pending nor created within ``overlap`` of the frontier was final before
the feed could see it finish: it is not reported. The first listing sets the baseline: what is final then
is not reported, unless it was created at or after ``since``.

:meth:`~telnyx_provider.recording_feed.RecordingFeed.to_json` returns a copy (a JSON round trip): a saved
state never shares a dict with the live one, so comparing the two tells whether anything changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from telnyx_provider.models import RecordingStatus, Verdict, assess_recording, parse_timestamp, status_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

STATE_VERSION = 1
#: Listings a pending recording may be missing from (deleted, say) before it is forgotten.
MISSES_BEFORE_FORGETTING = 3
#: Seconds the first listing reaches back for recordings in progress (TeXML calls last 4 h at most).
DEFAULT_LOOKBACK = 4 * 3600.0
#: Seconds after its creation a recording still not final is given up (a day: far past the longest call
#: plus Telnyx's processing).
DEFAULT_MAX_PENDING_AGE = 24 * 3600.0


def parse_moment(value: object) -> datetime | None:
    """A ``date_created`` (RFC 2822 or ISO 8601) as an aware UTC datetime, or ``None`` if unreadable."""
    if isinstance(value, str):
        # The two forms Telnyx sends, read by the standard library (microseconds each: a listing of
        # thousands is read every poll); anything else by the model's lenient parser (~0.1 ms each).
        try:
            quick = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                quick = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                quick = None
        if quick is not None and quick.tzinfo is not None:
            try:
                return quick.astimezone(timezone.utc)
            except OverflowError:  # no UTC datetime holds it
                return None
    text = parse_timestamp(value)
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(timezone.utc) if moment.tzinfo else None
    except (ValueError, OverflowError):
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def is_reportable(recording: Mapping[str, Any]) -> bool | None:
    """``True`` for a finished recording to report (``completed`` with a duration, ``absent``), ``False`` for
    one that ended otherwise (``failed``, ``deleted``: never reported), ``None`` while it may still finish."""
    verdict = assess_recording(recording).verdict
    if verdict is Verdict.DONE:
        return True
    if verdict is Verdict.FAIL:
        return status_of(recording) is RecordingStatus.ABSENT
    return None


@dataclass
class RecordingFeed:
    """The state of one watcher of an account's finished recordings (see the module docstring).

    :param account_sid: the account, kept in the state so a state of another account is not reused.
    :param overlap: seconds listings reach back before the oldest pending recording and the frontier.
    :param since: on the first listing, also report recordings already final that were created at or after
        this moment (``None``: report only what finishes from now on).
    :param lookback: seconds the first listing reaches back for recordings already in progress.
    :param max_pending_age: seconds after its creation (by the frontier: Telnyx's clock) a recording still
        not final is given up.
    """

    account_sid: str
    overlap: float = 120.0
    since: datetime | None = None
    lookback: float = DEFAULT_LOOKBACK
    max_pending_age: float = DEFAULT_MAX_PENDING_AGE
    started: bool = False
    frontier: datetime | None = None
    pending: dict[str, list[Any]] = field(default_factory=dict)  # sid -> [date_created ISO, misses]
    recent_final: dict[str, str] = field(default_factory=dict)  # sid -> date_created ISO
    quiet_since: datetime | None = None
    #: The recordings the last listing gave up on (still not final ``max_pending_age`` after their
    #: creation): ``(sid, date_created ISO)``, for the watcher to log.
    abandoned: list[tuple[str, str]] = field(default_factory=list)

    def window_start(self, now: datetime, lookback: float | None = None) -> datetime:
        """Where the next listing starts (``DateCreated>=``): at the oldest pending recording, and ``overlap``
        before the frontier (for recordings listed late), whichever is earlier.

        Before the first listing it is ``now - lookback``, or ``since`` if that is earlier: a recording in
        progress when the watcher starts is found if it began within ``lookback`` (the feed's own when
        ``None``). While nothing was ever listed, it stays where the first listing started.
        """
        lookback = self.lookback if lookback is None else lookback
        marks = [parse_moment(created) for created, _ in self.pending.values()]
        if self.frontier is not None:
            marks.append(self.frontier - timedelta(seconds=self.overlap))
        known = [mark for mark in marks if mark is not None]
        if not known and self.started and self.quiet_since is not None:
            return self.quiet_since
        if not known:
            start = now - timedelta(seconds=lookback)
            return min(start, self.since) if self.since is not None and not self.started else start
        return min(known)

    def observe(
        self, recordings: Iterable[Mapping[str, Any]], *, listed_from: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Take in one full listing; return the recordings to report, oldest first, and update the state.

        :param recordings: the listing.
        :param listed_from: where the listing started (``window_start`` when it was made): while the feed has
            seen no recording, the next listings start there too.
        """
        listed: dict[str, Mapping[str, Any]] = {}
        for recording in recordings:
            sid = recording.get("sid")
            if isinstance(sid, str) and sid:
                listed[sid] = recording  # a recording shifted across pages while listing counts once
        first = not self.started
        old_frontier = self.frontier
        self.abandoned = []
        report: list[tuple[datetime, dict[str, Any]]] = []
        for sid, recording in listed.items():
            created = parse_moment(recording.get("date_created")) or old_frontier
            verdict = is_reportable(recording)
            if verdict is None:
                self.pending[sid] = [_iso(created) if created else None, 0]
                continue
            was_pending = self.pending.pop(sid, None) is not None
            if not verdict or sid in self.recent_final:
                continue
            if was_pending or self._is_new(created, old_frontier, first):
                report.append((created or datetime.min.replace(tzinfo=timezone.utc), dict(recording)))
            self.recent_final[sid] = _iso(created) if created else ""  # "": no readable date, never pruned
        self._advance(listed)
        self.started = True
        if self.frontier is not None or self.pending:
            self.quiet_since = None
        elif self.quiet_since is None and listed_from is not None:
            self.quiet_since = listed_from.astimezone(timezone.utc)
        report.sort(key=lambda item: item[0])
        return [recording for _, recording in report]

    def _is_new(self, created: datetime | None, frontier: datetime | None, first: bool) -> bool:
        if first:  # the baseline: only what ``since`` asks for
            return self.since is not None and created is not None and created >= self.since
        if frontier is None or created is None:  # nothing was listed before: everything listed is new
            return True
        return created >= frontier - timedelta(seconds=self.overlap)

    def _advance(self, listed: Mapping[str, Mapping[str, Any]]) -> None:
        moments = [parse_moment(recording.get("date_created")) for recording in listed.values()]
        newest = max((moment for moment in moments if moment is not None), default=None)
        if newest is not None and (self.frontier is None or newest > self.frontier):
            self.frontier = newest
        for sid, entry in list(self.pending.items()):
            if sid not in listed:
                entry[1] += 1
                if entry[1] >= MISSES_BEFORE_FORGETTING:
                    del self.pending[sid]
        if self.frontier is not None:
            oldest = self.frontier - timedelta(seconds=self.max_pending_age)
            for sid, (created, _) in list(self.pending.items()):
                moment = parse_moment(created)
                if moment is not None and moment < oldest:
                    del self.pending[sid]
                    self.abandoned.append((sid, str(created)))
            horizon = self.frontier - timedelta(seconds=self.overlap)
            self.recent_final = {
                sid: created
                for sid, created in self.recent_final.items()
                if (moment := parse_moment(created)) is None or moment >= horizon
            }

    def unreport(self, recordings: Iterable[Mapping[str, Any]]) -> None:
        """Undo the report of ``recordings`` (they were never handed over): the next listing reports them."""
        for recording in recordings:
            sid = recording.get("sid")
            if isinstance(sid, str):
                self.recent_final.pop(sid, None)
                created = parse_moment(recording.get("date_created"))
                self.pending[sid] = [_iso(created) if created else None, 0]

    def to_json(self) -> dict[str, Any]:
        """The state, JSON-serialisable, for the asset's state store: a copy sharing nothing with the feed."""
        state = {
            "version": STATE_VERSION,
            "account_sid": self.account_sid,
            "started": self.started,
            "frontier": _iso(self.frontier) if self.frontier else None,
            "pending": self.pending,
            "recent_final": self.recent_final,
            "quiet_since": _iso(self.quiet_since) if self.quiet_since else None,
        }
        copy: dict[str, Any] = json.loads(json.dumps(state))
        return copy

    def restore(self, data: object) -> bool:
        """Load a state saved by :meth:`to_json` (of this account); ``False`` (and no change) otherwise."""
        if (
            not isinstance(data, dict)
            or data.get("version") != STATE_VERSION
            or data.get("account_sid") != self.account_sid
            or not isinstance(data.get("pending"), dict)
            or not isinstance(data.get("recent_final"), dict)
        ):
            return False
        self.started = bool(data.get("started"))
        self.frontier = parse_moment(data.get("frontier"))
        self.pending = {str(sid): [entry[0], int(entry[1])] for sid, entry in data["pending"].items()}
        self.recent_final = {str(sid): str(created) for sid, created in data["recent_final"].items()}
        self.quiet_since = parse_moment(data.get("quiet_since"))  # absent from states saved before it existed
        return True
