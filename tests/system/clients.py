"""HTTP clients of the system test: Airflow's public REST API and the sandbox (its control routes and API).

The test talks to Airflow only through these routes, never through Airflow's Python objects.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable


def wait_for(condition: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    :raises TimeoutError: naming ``what`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class AirflowApi:
    """The API server's ``/api/v2`` (and the ``/ui`` route the connection form reads).

    :param base_url: ``http://127.0.0.1:<port>``.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; ``path`` starts with ``/api/v2`` or ``/ui``."""
        return self.session.request(method, self.base_url + path, timeout=60, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request whose reply must be 2xx; its JSON body."""
        reply = self.request(method, path, **kwargs)
        if not reply.ok:
            raise AssertionError(f"{method} {path} answered {reply.status_code}: {reply.text[:500]}")
        return reply.json()

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``."""
        return self.json("GET", "/api/v2/monitor/health")  # type: ignore[no-any-return]

    def all_healthy(self) -> bool:
        """Whether the database, scheduler, triggerer and DAG processor all report healthy."""
        health = self.health()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def processed_files(self) -> set[str]:
        """Names of the DAG files the DAG processor has processed: with a DAG, or with an import error."""
        dags = self.json("GET", "/api/v2/dags", params={"limit": 100})["dags"]
        errors = self.json("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]
        paths = [dag.get("fileloc") or "" for dag in dags] + [error["filename"] for error in errors]
        return {path.rsplit("/", 1)[-1] for path in paths}

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Start a DAG run with ``conf``; its run id."""
        body = {"logical_date": None, "conf": conf}
        return str(self.json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The DAG run."""
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}")  # type: ignore[no-any-return]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances"
        return self.json("GET", path, params={"limit": 100})["task_instances"]  # type: ignore[no-any-return]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The deserialised value of one XCom, or None when there is none."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
        reply = self.request("GET", path, params={"map_index": map_index, "deserialize": True})
        if reply.status_code == 404:
            return None
        if not reply.ok:
            raise AssertionError(f"GET {path} answered {reply.status_code}: {reply.text[:500]}")
        return reply.json().get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's task log (through the API server, as the UI shows it)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}/logs/{try_number}"
        reply = self.request(
            "GET", path, params={"map_index": map_index}, headers={"Accept": "application/json"}
        )
        if not reply.ok:
            return ""
        content = reply.json().get("content")
        if isinstance(content, list):
            return "\n".join(
                str(item.get("event", item)) if isinstance(item, dict) else str(item) for item in content
            )
        return str(content)

    def mark_failed(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """Mark a task instance failed, as a user does in the UI."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances/{task_id}"
        return self.json("PATCH", path, json={"new_state": "failed"})  # type: ignore[no-any-return]


class SandboxClient:
    """The sandbox started as its own process: its announce line, control routes and recording API.

    :param process: the ``python -m telnyx_provider.sandbox`` process, stdout piped.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        info: dict[str, str] = {}
        for raw in process.stdout:
            line = raw.decode().strip()
            if line.startswith("export "):
                break
            name, _, value = line.partition(": ")
            info[name] = value
        if "base_url" not in info:
            raise RuntimeError(f"the sandbox did not start (status {process.poll()})")
        process.stdout.close()
        self.base_url, self.api_key, self.account_sid = info["base_url"], info["api_key"], info["account_sid"]
        self.public_key = info.get("public_key", "")  # verifies the sandbox's signed status callbacks
        self.origin = self.base_url.removesuffix("/v2")
        self.session = requests.Session()

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.session.request(method, f"{self.origin}/_sandbox/{path}", timeout=30, **kwargs)
        reply.raise_for_status()
        return reply.json()

    def create_call(self, hangup_after: float | None = None) -> str:
        """A new live call; it hangs up by itself after ``hangup_after`` seconds, or never."""
        body = {} if hangup_after is None else {"hangup_after": hangup_after}
        return str(self._control("POST", "calls", json=body)["call_sid"])

    def hangup(self, call_sid: str) -> None:
        """Play the caller hanging up."""
        self._control("POST", f"calls/{quote(call_sid, safe='')}/hangup")

    def inject(self, route: str, kind: str, count: int = 1, call_sid: str | None = None) -> None:
        """Script a fault for the next ``count`` requests to ``route`` (only on ``call_sid``, if given)."""
        self._control(
            "POST", "inject", json={"route": route, "kind": kind, "count": count, "call_sid": call_sid}
        )

    def started_on(self, call_sid: str) -> list[dict[str, Any]]:
        """What the service started on the call, as it knows it: ``sid``, ``track``, ``channels`` and the
        ``callback_url`` each start asked for (a start token included), oldest first."""
        return self._control("GET", f"calls/{quote(call_sid, safe='')}/started")["started"]  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        """The sandbox's counters."""
        return self._control("GET", "stats")  # type: ignore[no-any-return]

    def recording(self, recording_sid: str) -> dict[str, Any]:
        """A recording as the API serves it to the provider."""
        path = f"/texml/Accounts/{self.account_sid}/Recordings/{quote(recording_sid, safe='')}.json"
        reply = self.session.get(
            self.base_url + path, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def call_recordings(self, call_sid: str) -> list[dict[str, Any]]:
        """Every recording started on the call."""
        path = f"/texml/Accounts/{self.account_sid}/Calls/{quote(call_sid, safe='')}/Recordings.json"
        reply = self.session.get(
            self.base_url + path, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )
        reply.raise_for_status()
        return reply.json()["recordings"]  # type: ignore[no-any-return]
