"""The provider is registered with Airflow: entry point, providers list, connection type and form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from importlib.metadata import entry_points, version
from typing import TYPE_CHECKING

import pytest

from telnyx_provider.get_provider_info import get_provider_info

if TYPE_CHECKING:
    from pathlib import Path


def _json_lines(output: str) -> list[dict[str, object]]:
    """The JSON table an ``airflow ... -o json`` command printed (log lines may come before it)."""
    return json.loads(
        next(line for line in output.splitlines() if line.startswith("[") and line.endswith("]"))
    )


def _airflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=_cli_env(home),
    )


def _cli_env(home: Path) -> dict[str, str]:
    """A user's environment: its own AIRFLOW_HOME and database, no unit-test mode (another Fernet key)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    return env


def test_entry_point_names_the_distribution():
    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("telnyx_provider")
    ]
    info = entry.load()()
    assert info["package-name"] == "airflow-provider-telnyx"
    assert info["versions"][0] == version("airflow-provider-telnyx")


def test_provider_info_modules_import_without_deprecation_warnings():
    info = get_provider_info()
    modules = [
        m for kind in ("hooks", "operators", "sensors", "triggers") for m in info[kind][0]["python-modules"]
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)  # Airflow's DeprecatedImportWarning is one
        for module in modules:
            __import__(module)
    connection = info["connection-types"][0]
    assert connection["connection-type"] == "telnyx"
    module, _, name = connection["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name).conn_type == "telnyx"


def test_providers_manager_knows_the_connection_type_and_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-telnyx" in manager.providers
    with warnings.catch_warnings():  # Airflow 3.3 points this API at the task SDK; 3.1 has only this one
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        hook = manager.hooks["telnyx"]
    assert hook is not None
    assert hook.hook_class_name == "telnyx_provider.hooks.recording.RecordingHook"
    assert hook.connection_id_attribute_name == "telnyx_conn_id"
    if _reads_form_from_provider_info():
        behaviour = manager.field_behaviours.get("telnyx")
        assert behaviour is not None
        assert behaviour["relabeling"]["password"] == "API key"
        assert "extra__telnyx__timeout" in manager.connection_form_widgets
    else:
        # Airflow 3.1 draws forms only from the hook's classmethods, and only with wtforms installed.
        from telnyx_provider.hooks.recording import RecordingHook

        assert RecordingHook.get_ui_field_behaviour()["relabeling"]["password"] == "API key"


def _reads_form_from_provider_info() -> bool:
    import airflow
    from packaging.version import Version

    return Version(airflow.__version__) >= Version("3.2")


def test_airflow_cli_lists_the_provider_and_keeps_the_connection_type(tmp_path):
    migrated = _airflow(tmp_path, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    listed = _airflow(tmp_path, "providers", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    packages = {p["package_name"]: p for p in _json_lines(listed.stdout)}
    assert "airflow-provider-telnyx" in packages

    added = _airflow(
        tmp_path, "connections", "add", "telnyx_cli_check", "--conn-type", "telnyx", "--conn-password", "k"
    )
    assert added.returncode == 0, added.stderr
    shown = _airflow(tmp_path, "connections", "list", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    (connection,) = [c for c in _json_lines(shown.stdout) if c["conn_id"] == "telnyx_cli_check"]
    assert connection["conn_type"] == "telnyx"  # an unregistered type would have become "generic"


@pytest.mark.parametrize("field", ["timeout", "max_retries", "ca_bundle"])
def test_connection_form_declares_extra_fields(field):
    conn_fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert "label" in conn_fields[field]
    assert "type" in conn_fields[field]["schema"]
