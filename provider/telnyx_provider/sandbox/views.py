"""JSON views of sandbox recordings, shaped like Telnyx's TeXML recording resources (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from email.utils import format_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from telnyx_provider.sandbox.state import Recording

ACCOUNTS_PREFIX = "/v2/texml/Accounts/"
#: How the sandbox can write dates: RFC 2822 as Telnyx's documented examples show
#: (``Fri, 11 Aug 2023 19:12:11 +0000``), or ISO 8601 as the spec's ``date-time`` format and its
#: examples say (``2023-08-11T19:12:11Z``).
DATE_FORMATS = ("rfc2822", "iso8601")


@lru_cache(maxsize=8192)
def _rfc2822_second(epoch_second: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_second, dt.timezone.utc)
    return format_datetime(moment, usegmt=False)


@lru_cache(maxsize=8192)
def _iso8601_second(epoch_second: int) -> str:
    return dt.datetime.fromtimestamp(epoch_second, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822(epoch: float) -> str:
    """Format an epoch time as Telnyx's examples do, e.g. ``Fri, 11 Aug 2023 19:12:11 +0000``.

    :param epoch: seconds since the epoch (fractions are dropped).
    """
    return _rfc2822_second(int(epoch))


def format_date(epoch: float, date_format: str = "rfc2822") -> str:
    """Format an epoch time in one of :data:`DATE_FORMATS` (fractions of a second are dropped).

    :param epoch: seconds since the epoch.
    :param date_format: ``rfc2822`` (``Fri, 11 Aug 2023 19:12:11 +0000``) or ``iso8601``
        (``2023-08-11T19:12:11Z``).
    """
    if date_format == "iso8601":
        return _iso8601_second(int(epoch))
    return _rfc2822_second(int(epoch))


def check_date_format(date_format: str) -> str:
    """Return ``date_format`` if it is one of :data:`DATE_FORMATS`.

    :raises ValueError: for any other value.
    """
    if date_format not in DATE_FORMATS:
        raise ValueError(f"date_format must be one of {', '.join(DATE_FORMATS)}, got {date_format!r}")
    return date_format


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a reader sees of a recording at one instant.

    :param status: ``in-progress``, ``paused``, ``stopped``, ``completed`` or ``absent``.
    :param duration: whole seconds recorded once final, else None.
    :param updated_at: epoch time of the last visible change.
    """

    status: str
    duration: int | None
    updated_at: float


def recording_uri(account_sid: str, recording_sid: str, call_sid: str | None = None) -> str:
    """Return a recording's relative URI: call-scoped when ``call_sid`` is given, else account-scoped.

    The call sid is left unencoded (``v3:...``), as in Telnyx's own examples.

    :param account_sid: the account the recording belongs to.
    :param recording_sid: the recording's sid.
    :param call_sid: the call's sid for the call-scoped form.
    """
    if call_sid is None:
        return f"{ACCOUNTS_PREFIX}{account_sid}/Recordings/{recording_sid}.json"
    return f"{ACCOUNTS_PREFIX}{account_sid}/Calls/{call_sid}/Recordings/{recording_sid}.json"


def price_of(duration: int) -> str:
    """Return a plausible price string for a recording of ``duration`` seconds (per started minute).

    :param duration: whole seconds recorded.
    """
    return f"{0.01 * math.ceil(duration / 60):.2f}" if duration > 0 else "0.00"


def recording_json(
    rec: Recording,
    snap: Snapshot,
    account_sid: str,
    media_url: str | None,
    call_scoped: bool,
    clock_skew: float = 0.0,
    date_format: str = "rfc2822",
) -> dict[str, Any]:
    """Build the JSON object of one recording: every field the sandbox knows (the API's replies take the
    fields of their response schema from it, see :mod:`telnyx_provider.sandbox.schema`).

    :param rec: the recording.
    :param snap: its state at the instant of the read.
    :param account_sid: the account sid to report.
    :param media_url: the (signed) media link to report once the recording is completed.
    :param call_scoped: whether ``uri`` takes the call-scoped form (start, update, call list replies).
    :param clock_skew: seconds added to every date (the service's clock is off from ours).
    :param date_format: how dates are written, one of :data:`DATE_FORMATS`.
    """
    final = snap.duration is not None
    transcriptions: dict[str, Any] = {"transcriptions": None}
    return {
        "account_sid": account_sid,
        "call_sid": rec.call.sid,
        "conference_sid": rec.conference_sid,
        "channels": 1 if rec.params.channels == "single" else 2,
        "date_created": format_date(rec.started_at + clock_skew, date_format),
        "date_updated": format_date(snap.updated_at + clock_skew, date_format),
        "start_time": format_date(rec.started_at + clock_skew, date_format),
        "duration": str(snap.duration) if final else None,
        "price": price_of(snap.duration or 0) if final else None,
        "price_unit": "USD",
        "sid": rec.sid,
        "source": rec.source,
        "error_code": None,
        "track": rec.params.track,
        "status": snap.status,
        "media_url": media_url if snap.status == "completed" else None,
        "subresource_uris": transcriptions,
        # The spec's GET schema spells this key with an extra 's'; serve both so either reading works.
        "subresources_uris": transcriptions,
        "uri": recording_uri(account_sid, rec.sid, rec.call.sid if call_scoped else None),
    }


def page_json(
    items: Sequence[dict[str, Any]],
    total: int,
    page: int,
    page_size: int,
    base_uri: str,
    extra_query: str = "",
) -> dict[str, Any]:
    """Wrap one page of recordings in Telnyx's list envelope (``TexmlGetCallRecordingsResponseBody``).

    :param items: the recordings on this page.
    :param total: number of matching recordings on all pages.
    :param page: zero-indexed page number.
    :param page_size: items per page.
    :param base_uri: path of the list, e.g. ``/v2/texml/Accounts/A/Recordings.json``.
    :param extra_query: further query parameters (already encoded) to keep in the page links.
    """
    start = page * page_size
    suffix = f"&{extra_query}" if extra_query else ""

    def link(number: int) -> str:
        return f"{base_uri}?Page={number}&PageSize={page_size}{suffix}"

    return {
        "recordings": list(items),
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": start + len(items) - 1 if items else start,
        "uri": link(page),
        "first_page_uri": link(0),
        "next_page_uri": link(page + 1) if start + len(items) < total else None,
        "previous_page_uri": link(page - 1) if page > 0 else None,
    }
