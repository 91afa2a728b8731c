"""Fixtures for the callback receiver: a signing key, a connection holding its public key, an active Asset."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ACCOUNT_SID
from tests.signing import Signer

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def recordings_asset_in_db(airflow_db: Path) -> str:
    """The test account's recordings Asset, active in the database (a test DAG is scheduled on it)."""
    from argparse import Namespace

    from airflow.cli.commands.dag_command import dag_reserialize

    from telnyx_provider.assets import recordings_asset_uri

    dag_reserialize(Namespace(bundle_name=None))
    return recordings_asset_uri(ACCOUNT_SID)


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Signer:
    """A key pair whose public key is in the extra of ``telnyx_default``."""
    signer = Signer()
    conn = {
        "conn_type": "telnyx",
        "login": ACCOUNT_SID,
        "password": "KEY",
        "extra": {"public_key": signer.public_key},
    }
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps(conn))
    return signer
