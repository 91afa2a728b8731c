"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Kept free of imports from the rest of the package, so Airflow can read it (and draw the connection
form) without importing any hook.
"""

from __future__ import annotations

from typing import Any

#: Labels of the connection form (``get_ui_field_behaviour`` on Airflow < 3.2, provider info on 3.2+).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": [],
    "relabeling": {
        "host": "Base URL or host",
        "schema": "Scheme (for a bare host)",
        "port": "Port (for a host without one)",
        "login": "Account SID",
        "password": "API key",
    },
    "placeholders": {
        "host": "https://api.telnyx.com/v2",
        "schema": "https (default) or http",
        "port": "empty, or 1-65535",
        "login": "your Telnyx organization id (TeXML account SID)",
        "password": "KEY0123...",
        "extra": '{"timeout": 30, "max_retries": 8}',
    },
}

_NUMBER = {"type": ["number", "null"]}
_INTEGER = {"type": ["integer", "null"]}

CONN_FIELDS: dict[str, Any] = {
    "timeout": {"label": "Read timeout (s)", "schema": {**_NUMBER, "default": 30}},
    "connect_timeout": {"label": "Connect timeout (s)", "schema": {**_NUMBER, "default": 10}},
    "max_retries": {"label": "Max retries per request", "schema": {**_INTEGER, "default": 8}},
    "retry_max_wait": {"label": "Longest backoff wait (s)", "schema": {**_NUMBER, "default": 30}},
    "retry_budget": {"label": "Retry budget per request (s)", "schema": {**_NUMBER, "default": 60}},
    "pool_size": {"label": "Async connection pool size", "schema": {**_INTEGER, "default": 10}},
    "adoption_wait": {
        "label": "Adoption wait after a lost start reply (s)",
        "schema": {**_NUMBER, "default": 5},
        "description": "How long a start whose reply was lost looks for its own recording before it gives "
        "up on it (default 5).",
    },
    "receiver_url": {
        "label": "Receiver URL for exact starts",
        "schema": {"type": ["string", "null"]},
        "description": "The status-callback receiver's /telnyx base as the workers reach it (e.g. "
        "http://airflow-api:8080/telnyx), when it differs from the callback URL Telnyx calls.",
    },
    "shared_polls": {
        "label": "Shared polls for deferred waits",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Deferred waits of one triggerer share their polls (one list of the account or one "
        "GET per recording, whichever costs fewer requests).",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Path of a CA bundle to verify TLS with (verification is always on).",
    },
}


#: ``[telnyx]`` options of the status-callback receiver (read by the API server).
TELNYX_CONFIG: dict[str, Any] = {
    "description": "Telnyx provider: the signed recording status-callback receiver on the API server.",
    "options": {
        "callback_tolerance_seconds": {
            "description": "Seconds a callback's telnyx-timestamp may differ from the API server's clock "
            "(older or newer callbacks are refused; replays are refused within this window).",
            "version_added": None,
            "type": "float",
            "example": None,
            "default": "300",
        },
        "callback_max_body_bytes": {
            "description": "Largest status-callback body (or GET query string) accepted, in bytes.",
            "version_added": None,
            "type": "integer",
            "example": None,
            "default": "8192",
        },
        "callback_body_timeout_seconds": {
            "description": "Seconds a status callback's body may take to arrive once its headers passed the "
            "checks that need no key (a slower body is refused with 408).",
            "version_added": None,
            "type": "float",
            "example": None,
            "default": "10",
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's providers manager."""
    from telnyx_provider import __version__

    return {
        "package-name": "airflow-provider-telnyx",
        "name": "Telnyx",
        "description": "Record phone calls with Telnyx's TeXML API and wait for the finished recording.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Telnyx",
                "external-doc-url": "https://developers.telnyx.com/api/call-scripting/start-te-xml-call-recording",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Telnyx", "python-modules": ["telnyx_provider.hooks.recording"]}],
        "operators": [
            {"integration-name": "Telnyx", "python-modules": ["telnyx_provider.operators.recording"]}
        ],
        "sensors": [{"integration-name": "Telnyx", "python-modules": ["telnyx_provider.sensors.recording"]}],
        "triggers": [
            {
                "integration-name": "Telnyx",
                "python-modules": ["telnyx_provider.triggers.recording", "telnyx_provider.triggers.archive"],
            }
        ],
        "plugins": [
            {
                "name": "telnyx_callbacks",
                "plugin-class": "telnyx_provider.plugins.callbacks.TelnyxCallbacksPlugin",
            },
            {
                "name": "telnyx_kills",
                "plugin-class": "telnyx_provider.plugins.kill_listener.TelnyxKillsPlugin",
            },
        ],
        "config": {"telnyx": TELNYX_CONFIG},
        "transfers": [
            {
                "source-integration-name": "Telnyx",
                "target-integration-name": "Common IO",
                "python-module": "telnyx_provider.transfers.recording",
            }
        ],
        "extra-links": ["telnyx_provider.links.TelnyxRecordingLink"],
        "connection-types": [
            {
                "hook-class-name": "telnyx_provider.hooks.recording.RecordingHook",
                "hook-name": "Telnyx",
                "connection-type": "telnyx",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
            }
        ],
    }
