"""One triggerer run of a ``RecordingsFinishedTrigger`` watcher, in a process of its own, to be SIGKILLed.

``python -m tests.triggers.watcher_process PATH MODE KWARGS_JSON RUN`` (the Airflow environment and the
connection come from the parent's environment):

- ``PATH``: a SQLite file, the watcher's asset state store (kept across runs, like the metadata database);
  the events it fires are appended to the same file's ``events`` table as they arrive, the way the
  triggerer queues them (the consumer's side);
- ``MODE``: ``run`` (the trigger's own loop, ``run()``) or ``shared`` (Airflow 3.3's shared poll through
  the real ``SharedStreamManager``, ``filter_shared_stream()``);
- ``KWARGS_JSON``: the trigger's arguments (its ``serialize()`` kwargs);
- ``RUN``: the run's number, recorded with each of its events.

Every state write is gated: before writing, the process prints ``@@ STORE <n>`` and waits for a line on
its standard input (the parent answers ``go``, or kills it there: "between listing and storing"). It prints
``@@ STORED <n>`` once written, and ``@@ EVENT <sid>`` once an event is in the events table.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from typing import Any


class FileStateStore:
    """An asset state store double kept in a SQLite file: values go through JSON, as to the database."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (n INTEGER PRIMARY KEY, run INTEGER, sid TEXT)")
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    async def aset(self, key: str, value: Any) -> None:
        self.writes += 1
        print(f"@@ STORE {self.writes}", flush=True)
        answer = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if answer.strip() != "go":
            raise SystemExit("the parent went away")
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))
        print(f"@@ STORED {self.writes}", flush=True)

    async def adelete(self, key: str) -> None:
        self.db.execute("DELETE FROM state WHERE key = ?", (key,))

    async def aclear(self) -> None:
        self.db.execute("DELETE FROM state")

    def record_event(self, run: int, sid: str) -> None:
        self.db.execute("INSERT INTO events (run, sid) VALUES (?, ?)", (run, sid))
        print(f"@@ EVENT {sid}", flush=True)


async def main(path: str, mode: str, kwargs: dict[str, Any], run: int) -> None:
    from telnyx_provider.triggers.recording import RecordingsFinishedTrigger

    store = FileStateStore(path)
    trigger = RecordingsFinishedTrigger(**kwargs)
    trigger.asset_state_store = store
    if mode == "run":
        async for event in trigger.run():
            store.record_event(run, event.payload["sid"])
        return
    from airflow.triggers.shared_stream import SharedStreamManager

    manager = SharedStreamManager()
    key = trigger.shared_stream_key()
    stream = trigger.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=trigger, key=key))
    async for event in stream:
        store.record_event(run, event.payload["sid"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])))
