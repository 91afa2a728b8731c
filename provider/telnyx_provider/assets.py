"""The Airflow Asset that finished Telnyx recordings update, for event-driven DAGs.

Both event sources update the same Asset, ``telnyx://{account_sid}/recordings``:

- the signed status-callback receiver (:mod:`telnyx_provider.plugins.callbacks`): the event's extra holds
  the callback's fields (``RecordingSid``, ``CallSid``, ``RecordingStatus``, ``RecordingDuration``...);
- an ``AssetWatcher`` with :class:`~telnyx_provider.triggers.recording.RecordingsFinishedTrigger`: Airflow
  stores the trigger's event as ``{"from_trigger": true, "payload": <recording>}``, the recording as the API
  lists it (``sid``, ``call_sid``, ``status``, ``duration``...).

:func:`recording_sid_of` and :func:`recording_status_of` read either shape, so one consuming DAG works
with both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telnyx_provider.params import require_identifier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Asset, AssetWatcher

ASSET_SCHEME = "telnyx"


def recordings_asset_uri(account_sid: str) -> str:
    """``telnyx://{account_sid}/recordings``: the URI (and name) of an account's recordings Asset.

    :param account_sid: the Telnyx account (organization) id, as Telnyx sends it in ``AccountSid``.
    :raises TelnyxValidationError: if ``account_sid`` is blank or holds ``/``, ``?``, ``#`` or spaces.
    """
    return f"{ASSET_SCHEME}://{require_identifier('account_sid', account_sid)}/recordings"


def recordings_asset(account_sid: str, *, watchers: list[AssetWatcher] | None = None) -> Asset:
    """The Asset ``telnyx://{account_sid}/recordings``, which gets an event for every finished recording.

    Schedule a DAG on it (``schedule=[recordings_asset(ACCOUNT_SID)]``) to run when recordings finish::

        from telnyx_provider.assets import recordings_asset

    :param account_sid: the Telnyx account (organization) id, exactly as Telnyx sends it in ``AccountSid``.
    :param watchers: ``AssetWatcher`` objects that update this Asset (the polling variant).
    """
    from airflow.sdk import Asset

    uri = recordings_asset_uri(account_sid)
    return Asset(name=uri, uri=uri, watchers=list(watchers or []))


def recording_fields(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """The recording's fields in an event's extra: the callback's fields, or the watcher's ``payload``."""
    payload = extra.get("payload")
    return payload if extra.get("from_trigger") and isinstance(payload, dict) else extra


def recording_sid_of(extra: Mapping[str, Any]) -> str | None:
    """The recording SID of an event of the recordings Asset, from a callback (``RecordingSid``) or a poll."""
    fields = recording_fields(extra)
    value = fields.get("RecordingSid", fields.get("sid"))
    return value if isinstance(value, str) and value else None


def recording_status_of(extra: Mapping[str, Any]) -> str | None:
    """The final status (``completed`` or ``absent``) of a recordings Asset event, from either source."""
    fields = recording_fields(extra)
    value = fields.get("RecordingStatus", fields.get("status"))
    return value if isinstance(value, str) and value else None


def archive_manifests_uri(account_sid: str) -> str:
    """``telnyx://{account_sid}/archive-manifests``: the URI (and name) of an account's manifests Asset.

    :param account_sid: the Telnyx account (organization) id.
    :raises TelnyxValidationError: if ``account_sid`` is blank or holds ``/``, ``?``, ``#`` or spaces.
    """
    return f"{ASSET_SCHEME}://{require_identifier('account_sid', account_sid)}/archive-manifests"


def archive_manifests_asset(account_sid: str) -> Asset:
    """The Asset ``telnyx://{account_sid}/archive-manifests``: give it as an outlet of
    :class:`~telnyx_provider.transfers.archive.RecordingsArchiveOperator` and each archived interval adds
    one event, whose extra is the run's result (``manifest``, ``date_from``, ``date_to``, ``recordings``,
    ``bytes``...); schedule a DAG on it to act on each interval's manifest.

    :param account_sid: the Telnyx account (organization) id.
    """
    from airflow.sdk import Asset

    uri = archive_manifests_uri(account_sid)
    return Asset(name=uri, uri=uri)
