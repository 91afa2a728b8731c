"""Checks that need no DAG run: the installed artifact, the provider's registration, the connection form
and its test button, and that the API key reached no log."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.system.checks import Checks
    from tests.system.clients import AirflowApi, SandboxClient

DISTRIBUTION = "airflow-provider-telnyx"
#: The connection form's extra fields, as docs/connection.md documents them.
EXTRA_FIELDS = {
    "timeout",
    "connect_timeout",
    "max_retries",
    "retry_max_wait",
    "retry_budget",
    "pool_size",
    "ca_bundle",
    "shared_polls",
    "adoption_wait",
    "receiver_url",
}


def verify_artifact(checks: Checks) -> str:
    """The provider here is the built wheel: not editable, with ``py.typed``, the sandbox and its entry point.

    :return: the installed version.
    """
    import telnyx_provider

    dist = metadata.distribution(DISTRIBUTION)
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    checks.check(
        not direct_url.get("dir_info", {}).get("editable", False)
        and direct_url.get("url", "").endswith(".whl"),
        "the provider is installed from its wheel, not editable",
        direct_url,
    )
    package = Path(telnyx_provider.__file__).resolve().parent
    checks.check(
        package.is_relative_to(Path(sys.prefix).resolve()),
        "telnyx_provider is imported from the venv's site-packages",
        str(package),
    )
    files = {str(f) for f in dist.files or ()}
    checks.check(
        "telnyx_provider/py.typed" in files and (package / "py.typed").is_file(), "the wheel ships py.typed"
    )
    checks.check(any(f.startswith("telnyx_provider/sandbox/") for f in files), "the wheel ships the sandbox")
    entry_points = [ep.value for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    checks.equal(
        entry_points,
        ["telnyx_provider.get_provider_info:get_provider_info"],
        "apache_airflow_provider entry point",
    )
    checks.equal(
        dist.version, telnyx_provider.__version__, "distribution version is the package's __version__"
    )
    return dist.version


def verify_registration(checks: Checks, api: AirflowApi, version: str) -> None:
    """``/api/v2/providers`` lists the provider; ``/ui/connections/hook_meta`` carries the Telnyx form."""
    providers = api.json("GET", "/api/v2/providers", params={"limit": 200})["providers"]
    ours = [p for p in providers if p["package_name"] == DISTRIBUTION]
    checks.check(
        len(ours) == 1 and ours[0]["version"] == version,
        f"/api/v2/providers lists {DISTRIBUTION} {version}",
        ours,
    )
    meta = [m for m in api.json("GET", "/ui/connections/hook_meta") if m.get("connection_type") == "telnyx"]
    if not checks.check(len(meta) == 1, "hook_meta has the telnyx connection type", meta):
        return
    form = meta[0]
    checks.equal(
        (form["hook_name"], form["hook_class_name"]),
        ("Telnyx", "telnyx_provider.hooks.recording.RecordingHook"),
        "hook_meta: hook name and class",
    )
    # The form Airflow serves must be the one the installed package declares (read through the entry
    # point by the API server); the labels users know the connection by are pinned here too.
    from telnyx_provider.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

    fields = {
        ("schema" if k == "url_schema" else k): v for k, v in (form.get("standard_fields") or {}).items()
    }
    relabeling, placeholders = UI_FIELD_BEHAVIOUR["relabeling"], UI_FIELD_BEHAVIOUR["placeholders"]
    served = {name: (fields.get(name) or {}).get("title") for name in relabeling}
    checks.equal(served, relabeling, "hook_meta: the field labels the provider declares")
    checks.equal(
        (served.get("login"), served.get("password")),
        ("Account SID", "API key"),
        "hook_meta: login and key labels",
    )
    shown = {name: (fields.get(name) or {}).get("placeholder") for name in placeholders if name != "extra"}
    checks.equal(
        shown, {k: v for k, v in placeholders.items() if k != "extra"}, "hook_meta: the placeholders"
    )
    checks.equal(shown.get("host"), "https://api.telnyx.com/v2", "hook_meta: base URL placeholder")
    hidden = {name for name, field in fields.items() if isinstance(field, dict) and field.get("hidden")}
    checks.equal(hidden, set(UI_FIELD_BEHAVIOUR["hidden_fields"]), "hook_meta: the hidden fields")
    extra = form.get("extra_fields") or {}
    checks.equal(set(extra), EXTRA_FIELDS, "hook_meta: the extra fields")
    labels = {name: json.dumps(extra.get(name)) for name in CONN_FIELDS}
    checks.check(
        all(spec["label"] in labels[name] for name, spec in CONN_FIELDS.items()),
        "hook_meta: the extra fields carry their labels",
        extra,
    )


def verify_connection(checks: Checks, api: AirflowApi, sandbox: SandboxClient) -> str:
    """The stored connection, and the test button with the right and with a wrong key.

    :return: the wrong key tried (no log may show it either).
    """
    stored = api.request("GET", "/api/v2/connections/telnyx_default")
    body = stored.json() if stored.ok else {}
    checks.equal(
        (body.get("conn_type"), body.get("host"), body.get("login")),
        ("telnyx", sandbox.base_url, sandbox.account_sid),
        "telnyx_default is stored in Airflow's database as a telnyx connection",
    )
    checks.check(sandbox.api_key not in stored.text, "the stored connection is served without its key")
    test = {
        "connection_id": "telnyx_system_test",
        "conn_type": "telnyx",
        "host": sandbox.base_url,
        "login": sandbox.account_sid,
    }
    good = api.json("POST", "/api/v2/connections/test", json={**test, "password": sandbox.api_key})
    checks.equal(good.get("status"), True, "connection test: true with the sandbox's key")
    wrong_key = "KEYwrong_" + sandbox.api_key[-12:][::-1]
    reply = api.request("POST", "/api/v2/connections/test", json={**test, "password": wrong_key})
    bad = reply.json() if reply.ok else {}
    checks.equal(bad.get("status"), False, "connection test: false with a wrong key")
    message = str(bad.get("message"))
    checks.check(
        "401" in message and "The API key is not valid" in message,
        "connection test: the message names 401 and Telnyx's detail",
        message,
    )
    checks.check(
        wrong_key not in reply.text and sandbox.api_key not in reply.text,
        "connection test: no key in the reply",
    )
    return wrong_key


def verify_connection_fetched(checks: Checks, api_server_log: Path) -> None:
    """Tasks read ``telnyx_default`` from the database through the execution API (no AIRFLOW_CONN_*)."""
    fetched = sum(
        1
        for line in api_server_log.read_text(errors="replace").splitlines()
        if "path=/execution/connections/telnyx_default" in line and "status_code=200" in line
    )
    checks.check(fetched > 0, f"tasks fetched telnyx_default through the execution API ({fetched} times)")


def verify_no_key_in_logs(checks: Checks, home: Path, keys: list[str]) -> None:
    """No key appears in any file of the throwaway home: component output, task and trigger logs."""
    scanned, leaks = 0, []
    for path in sorted(home.rglob("*")):
        if not path.is_file() or path.suffix in (".db", ".db-journal", ".db-wal", ".db-shm"):
            continue
        data = path.read_bytes()
        scanned += 1
        leaks += [f"{path.relative_to(home)}" for key in keys if key.encode() in data]
    task_logs = sum(1 for p in (home / "logs").rglob("*.log")) if (home / "logs").is_dir() else 0
    checks.check(task_logs > 0, f"task logs were written ({task_logs} files)")
    checks.check(not leaks, f"the API key is in none of the {scanned} log files of the run", leaks)
