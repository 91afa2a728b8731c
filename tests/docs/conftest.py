"""Fixtures for the documentation tests: the DAG tests' sandbox, reused for the DAGs the docs include."""

from __future__ import annotations

from tests.dags.conftest import sandbox_for_dags

__all__ = ["sandbox_for_dags"]
