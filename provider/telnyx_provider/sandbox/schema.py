"""Replies shaped exactly as Telnyx's published response schemas (``strict_schema=True``; pure, no I/O).

The sandbox keeps every field it knows about a recording (callbacks need them); a strict sandbox answers
each route with the fields of that route's response schema in Telnyx's OpenAPI spec for TeXML recordings,
and no others:

- start and update (pause, resume, stop): ``TexmlCreateCallRecordingResponseBody`` — it has ``track``,
  ``price`` and ``price_unit``, but neither ``status`` nor ``media_url``;
- fetch, and each item of both lists: ``TexmlGetCallRecordingResponseBody`` — ``status``, ``media_url`` and
  ``subresources_uris``, but no ``track`` and no price;
- the list envelopes: ``TexmlGetCallRecordingsResponseBody`` (and the transcriptions list's own);
- transcriptions: ``TexmlRecordingTranscription`` (the sandbox's transcription already has exactly those).

A field whose schema does not admit ``null`` (``media_url``, the page links) is left out when it has no value,
rather than sent as ``null``. Errors are ``{"errors": [{"code", "title", "detail"}]}`` in both modes. Without
``strict_schema`` the sandbox keeps its older, fuller replies (``track`` and ``status`` everywhere, both
spellings of ``subresources_uris``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

_COMMON = (
    "account_sid",
    "call_sid",
    "channels",
    "conference_sid",
    "date_created",
    "date_updated",
    "duration",
    "error_code",
    "sid",
    "source",
    "start_time",
    "uri",
)
#: The properties of ``TexmlCreateCallRecordingResponseBody`` (the start and update replies).
CREATE_FIELDS = frozenset((*_COMMON, "price", "price_unit", "track"))
#: The properties of ``TexmlGetCallRecordingResponseBody`` (a fetched recording, a list item).
GET_FIELDS = frozenset((*_COMMON, "media_url", "status", "subresources_uris"))
#: The properties of ``TexmlGetCallRecordingsResponseBody`` besides ``recordings``, and of the
#: transcriptions list besides ``transcriptions``.
PAGE_FIELDS = frozenset(
    ("end", "first_page_uri", "next_page_uri", "page", "page_size", "previous_page_uri", "start", "uri")
)
#: Fields whose schema is a string (or an object) without ``null``: left out when they have no value.
NOT_NULLABLE = frozenset(
    ("media_url", "first_page_uri", "next_page_uri", "previous_page_uri", "subresources_uris", "status")
)


def _only(view: Mapping[str, Any], fields: Collection[str]) -> dict[str, Any]:
    return {
        name: value
        for name, value in view.items()
        if name in fields and not (value is None and name in NOT_NULLABLE)
    }


def created_reply(view: Mapping[str, Any]) -> dict[str, Any]:
    """The reply to a start or an update: the fields of ``TexmlCreateCallRecordingResponseBody``.

    :param view: the sandbox's full JSON of the recording.
    """
    return _only(view, CREATE_FIELDS)


def fetched_reply(view: Mapping[str, Any]) -> dict[str, Any]:
    """A fetched recording, or an item of a list: the fields of ``TexmlGetCallRecordingResponseBody``.

    :param view: the sandbox's full JSON of the recording.
    """
    return _only(view, GET_FIELDS)


def page_reply(page: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A list page: the envelope's fields, its items (under ``key``) shaped as fetched recordings when
    ``key`` is ``recordings`` (transcriptions already have exactly their schema's fields).

    :param page: the sandbox's full list page.
    :param key: ``recordings`` or ``transcriptions``.
    """
    reply = _only(page, PAGE_FIELDS)
    items = page[key]
    reply[key] = [fetched_reply(item) for item in items] if key == "recordings" else list(items)
    return reply
