"""Imports that moved between the Airflow 3 releases this provider supports (3.1 to 3.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
    from airflow.sdk.log import mask_secret
else:
    try:  # Airflow 3.2+ moved the task-facing exceptions into the Task SDK.
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.sdk.execution_time.secrets_masker import mask_secret

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "mask_secret",
]
