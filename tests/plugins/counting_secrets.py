"""A secrets backend that answers nothing and counts what it is asked: Airflow consults it first."""

from __future__ import annotations

from typing import ClassVar

from airflow.secrets import BaseSecretsBackend


class CountingSecretsBackend(BaseSecretsBackend):
    """Records every connection id looked up, then lets the next backend (env, metastore) answer."""

    lookups: ClassVar[list[str]] = []

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        self.lookups.append(conn_id)
        return None
