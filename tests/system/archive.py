"""The archive example on the real deployment (issue 18): a daily DAG whose catchup backfills past days.

Before the components start, the main sandbox gets three past days of recordings
(``POST /_sandbox/history``: every source, some without audio, the last day's latest one still in progress)
and the example's settings go into their environment: ``TELNYX_ARCHIVE_START`` three days ago (the
backfill), ``TELNYX_ARCHIVE_DST`` a folder of the throwaway home, ``TELNYX_ARCHIVE_KEEP_FOR`` two days.
After the other scenarios the DAG, created paused, is unpaused: the scheduler creates the three catchup
runs by itself; each archives its day on a worker (with Airflow's task state store), then the retention
task deletes what a manifest proves archived and is older than two days.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.system.clients import wait_for

if TYPE_CHECKING:
    from tests.system.checks import Checks
    from tests.system.clients import AirflowApi, SandboxClient
    from tests.system.deployment import Deployment

DAG_ID = "example_telnyx_archive"
DAG_IDS = (DAG_ID,)
ASSET_NAME = "telnyx_archive_manifests"
DAYS = 3


@dataclass
class ArchiveSetup:
    """What :func:`prepare` seeded and where the archive goes."""

    folder: Path
    start: datetime
    not_final: list[str] = field(default_factory=list)


def prepare(deployment: Deployment, sandbox: SandboxClient) -> ArchiveSetup:
    """Seed the sandbox's history and set the example's settings, before the components start."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=DAYS)
    folder = deployment.home / "archive"
    deployment.env["TELNYX_ARCHIVE_START"] = start.isoformat()
    deployment.env["TELNYX_ARCHIVE_DST"] = folder.as_uri() + "/"
    deployment.env["TELNYX_ARCHIVE_KEEP_FOR"] = "P2D"
    deployment.env["TELNYX_ARCHIVE_SETTLE"] = "0"  # from 00:00 to 00:10 UTC the last day would still settle
    seeded = sandbox.session.post(
        f"{sandbox.origin}/_sandbox/history",
        json={"days": DAYS, "per_day": 4, "absent_rate": 0.25, "not_final": 1, "seed": 18},
        timeout=60,
    )
    seeded.raise_for_status()
    return ArchiveSetup(folder, start, list(seeded.json()["not_final"]))


def _created(item: dict[str, Any]) -> datetime:
    """``date_created`` in either of Telnyx's formats (RFC 2822 or ISO 8601)."""
    from telnyx_provider.archive_plan import created_at  # the installed provider's reading

    moment = created_at(item)
    assert moment is not None, item
    return moment


def _listed(sandbox: SandboxClient) -> dict[str, dict[str, Any]]:
    reply = sandbox.session.get(
        f"{sandbox.base_url}/texml/Accounts/{sandbox.account_sid}/Recordings.json",
        params={"PageSize": 1000},
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=30,
    )
    reply.raise_for_status()
    return {item["sid"]: item for item in reply.json()["recordings"]}


def _history(sandbox: SandboxClient, setup: ArchiveSetup) -> dict[str, dict[str, Any]]:
    """The seeded recordings (created in the archived days), each with the SHA-256 of its audio if final."""
    end = setup.start + timedelta(days=DAYS)
    history = {sid: item for sid, item in _listed(sandbox).items() if setup.start <= _created(item) < end}
    for item in history.values():
        if item["status"] == "completed":
            audio = sandbox.session.get(item["media_url"], timeout=30)
            audio.raise_for_status()
            item["truth"] = hashlib.sha256(audio.content).hexdigest()
    return history


def run(checks: Checks, api: AirflowApi, sandbox: SandboxClient, setup: ArchiveSetup) -> None:
    """Unpause the DAG, let the scheduler backfill the days, check what the archive holds."""
    history = _history(sandbox, setup)
    finals = {sid for sid, item in history.items() if item["status"] == "completed"}
    wait_for(lambda: api.request("GET", f"/api/v2/dags/{DAG_ID}").ok, "the archive DAG to be parsed", 90)
    checks.check(api.json("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"], "the archive DAG is created paused")
    api.json("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})

    def finished() -> list[dict[str, Any]] | None:
        runs = api.json("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
        done = [run for run in runs if run["state"] in ("success", "failed")]
        return runs if len(done) >= DAYS else None

    runs = wait_for(finished, f"the {DAYS} catchup runs of {DAG_ID}", 300, interval=1.0)
    checks.equal(
        sorted((run["run_type"], run["state"]) for run in runs),
        [("scheduled", "success")] * DAYS,
        f"the scheduler backfilled {DAYS} days and each run succeeded",
    )
    starts = sorted(datetime.fromisoformat(run["data_interval_start"]) for run in runs)
    checks.equal(
        starts, [setup.start + timedelta(days=day) for day in range(DAYS)], "one run per day, a day each"
    )
    archived: dict[str, dict[str, Any]] = {}
    not_final: set[str] = set()
    for path in sorted((setup.folder / "_manifests").glob("*.json")):
        manifest = json.loads(path.read_text())
        not_final |= {item["recording_sid"] for item in manifest["not_final"]}
        for entry in manifest["recordings"]:
            stored = Path(entry["path"].removeprefix("file://"))
            entry["stored_sha256"] = (
                hashlib.sha256(stored.read_bytes()).hexdigest() if stored.exists() else None
            )
            archived[entry["recording_sid"]] = entry
    checks.equal(len(list((setup.folder / "_manifests").glob("*.json"))), DAYS, "one manifest per day")
    checks.equal(
        sorted(archived), sorted(finals), "the manifests hold every final recording of the days, once"
    )
    checks.check(
        all(
            entry["stored_sha256"] == entry["sha256"] == history[sid].get("truth")
            for sid, entry in archived.items()
        ),
        "each stored file has the SHA-256 of the audio the sandbox serves",
    )
    checks.equal(
        sorted(not_final), sorted(setup.not_final), "the recording still in progress is named, not stored"
    )
    gets = sandbox.stats()["gets_per_recording"]
    checks.check(
        all(gets.get(sid) == 1 for sid in archived), "one fetch (a fresh link) per archived recording"
    )
    remaining = set(_listed(sandbox))
    deleted = {sid for sid in history if sid not in remaining}
    checks.check(
        deleted <= set(archived), "retention deleted nothing unarchived", sorted(deleted - set(archived))
    )
    oldest_day = {sid for sid in archived if _created(history[sid]) < setup.start + timedelta(days=1)}
    checks.check(
        oldest_day <= deleted, "retention deleted the first day's archived recordings (older than P2D)"
    )
    marked = {sid for sid, entry in archived.items() if entry["deletion"] == "deleted"}
    checks.equal(sorted(marked), sorted(deleted), "the manifests record exactly the deletions")
    assets = api.json("GET", "/api/v2/assets", params={"uri_pattern": "archive-manifests"})["assets"]
    ids = [asset["id"] for asset in assets if asset["name"] == ASSET_NAME]  # Airflow adds a / to the URI
    count = (
        len(api.json("GET", "/api/v2/assets/events", params={"asset_id": ids[0]})["asset_events"])
        if ids
        else 0
    )
    checks.equal(count, DAYS, "one asset event per archived day")
