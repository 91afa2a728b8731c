"""What the archive tests share: days, the sandbox's truth about each recording, stores that act like stores.

Real HTTP against the sandbox; the stores are real fsspec file systems (a local folder, or an in-memory one
standing in for S3) that copy what they store. ``CountingMemoryFileSystem`` counts every object moved into
place, so "nothing is stored twice" is a count, not a guess.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import requests
from fsspec.implementations.memory import MemoryFileSystem

from telnyx_provider.archive_plan import created_at
from telnyx_provider.sandbox.media import wav_bytes
from tests.transfers.test_recording_to_storage import attached as attached

#: Media served per recording, in seconds (the sandbox's cap): ~32-64 kB per recording, fast tests.
MEDIA_CAP = 2


def midnight(days_ago: int) -> datetime:
    """Midnight UTC ``days_ago`` days before today."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def day(days_ago: int) -> dict[str, datetime]:
    """The whole UTC day ``days_ago`` days before today, as ``date_from``/``date_to``."""
    return {"date_from": midnight(days_ago), "date_to": midnight(days_ago - 1)}


def listed(sandbox) -> dict[str, dict]:
    """Every recording the sandbox lists now, by SID (every page)."""
    url = f"{sandbox.base_url}/texml/Accounts/{sandbox.account_sid}/Recordings.json"
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    items, page = [], 0
    while True:
        reply = requests.get(url, params={"Page": page, "PageSize": 1000}, headers=headers, timeout=10).json()
        items += reply["recordings"]
        if not reply.get("next_page_uri"):  # a spec-shaped reply leaves a null link out
            return {item["sid"]: item for item in items}
        page += 1


def created(item: dict) -> datetime:
    """A listed recording's ``date_created`` (RFC 2822 or ISO 8601, as the sandbox is told to send it)."""
    moment = created_at(item)
    assert moment is not None, item
    return moment


def finals_of(sandbox, days_ago: int) -> dict[str, dict]:
    """The recordings with audio, final, created on that day: what an archive of it must hold."""
    bounds = day(days_ago)
    return {
        sid: item
        for sid, item in listed(sandbox).items()
        if item["status"] == "completed" and bounds["date_from"] <= created(item) < bounds["date_to"]
    }


def truth_sha256(sandbox, sid: str) -> str:
    """The SHA-256 of the audio the sandbox serves for a recording."""
    seconds, channels = sandbox.media(sid)
    return hashlib.sha256(wav_bytes(seconds, channels, cap=MEDIA_CAP)).hexdigest()


def media_gets(sandbox) -> int:
    return int(sandbox.stats()["media_requests"])


def route(sandbox, key: str) -> int:
    return int(sandbox.stats()["requests_by_route"].get(key, 0))


class DictStore:
    """Airflow's ``task_state_store`` accessor, in memory; JSON only, as the real store."""

    def __init__(self, values: dict | None = None) -> None:
        self.values: dict[str, object] = dict(values or {})
        self.sets = 0

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, *, retention=None):
        assert value is not None
        self.sets += 1
        self.values[key] = json.loads(json.dumps(value))


class CountingMemoryFileSystem(MemoryFileSystem):
    """An in-memory store (shared by instances, like fsspec's) that counts objects moved into place."""

    moved: ClassVar[Counter[str]] = Counter()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def mv(self, path1, path2, *args, **kwargs):
        result = super().mv(path1, path2, *args, **kwargs)
        with self._lock:
            self.moved[self._strip_protocol(path2).lstrip("/")] += 1
        return result


class RotOnReadFileSystem(MemoryFileSystem):
    """A store that flips one byte of whatever is read back (bit rot): what a verified delete must catch."""

    def _open(self, path, mode="rb", **kwargs):
        handle = super()._open(path, mode, **kwargs)
        if "r" not in mode or not path.endswith(".wav"):
            return handle
        data = bytearray(handle.read())
        data[len(data) // 2] ^= 0xFF
        return io.BytesIO(bytes(data))


def archive_operator(**kwargs):
    """The operator with fast retries (the sandbox's faults are seconds apart, not minutes)."""
    from telnyx_provider.transfers.recording import RecordingsArchiveOperator

    kwargs.setdefault("task_id", "archive")
    kwargs.setdefault("max_retries", 6)
    kwargs.setdefault("retry_max_wait", 0.05)
    kwargs.setdefault("max_active_downloads", 4)
    return RecordingsArchiveOperator(**kwargs)
