"""ReceiverStore: expiring values in one table every process shares; insert-if-absent atomic across processes.

The atomicity tests race real processes on one database (SQLite file here; PostgreSQL where
``TELNYX_TEST_PG_URL`` names one, as the distributed deployment's does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from telnyx_provider.plugins.receiver_store import TABLE_NAME, ReceiverStore, receiver_store
from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path

PG_URL = os.environ.get("TELNYX_TEST_PG_URL")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def database_urls() -> list[object]:
    urls: list[object] = [pytest.param("sqlite", id="sqlite")]
    urls.append(
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="TELNYX_TEST_PG_URL names no PostgreSQL database"),
        )
    )
    return urls


@pytest.fixture(params=database_urls())
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    assert PG_URL
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE_NAME}"))
    engine.dispose()
    return PG_URL


def test_a_value_is_there_until_it_expires_and_then_counts_as_absent(db_url):
    clock = Clock()
    store = ReceiverStore(create_engine(db_url), clock=clock)
    assert store.get("replay", "a") is None
    assert store.add_if_absent("replay", "a", {"n": 1}, ttl_seconds=10)
    assert not store.add_if_absent("replay", "a", {"n": 2}, ttl_seconds=10)
    assert store.get("replay", "a") == {"n": 1}
    assert store.get("other", "a") is None  # namespaces are separate
    clock.now += 10
    assert store.get("replay", "a") is None
    assert store.list_prefix("replay", "") == []
    assert store.add_if_absent("replay", "a", {"n": 3}, ttl_seconds=10)  # an expired row is taken over
    assert store.get("replay", "a") == {"n": 3}


def test_values_come_back_as_copies(db_url):
    store = ReceiverStore(create_engine(db_url))
    value = {"nested": {"k": [1, 2]}}
    store.add_if_absent("ns", "k", value, ttl_seconds=60)
    value["nested"]["k"].append(3)
    first = store.get("ns", "k")
    assert first == {"nested": {"k": [1, 2]}}
    assert first is not None
    first["nested"]["k"].append(4)
    assert store.get("ns", "k") == {"nested": {"k": [1, 2]}}


def test_list_prefix_returns_unexpired_keys_by_prefix_with_like_characters_taken_literally(db_url):
    clock = Clock()
    store = ReceiverStore(create_engine(db_url), clock=clock)
    store.add_if_absent("tokens", "run1:a", {"v": 1}, ttl_seconds=100)
    store.add_if_absent("tokens", "run1:b", {"v": 2}, ttl_seconds=5)
    store.add_if_absent("tokens", "run10:a", {"v": 3}, ttl_seconds=100)
    store.add_if_absent("tokens", "run_1:a", {"v": 4}, ttl_seconds=100)
    store.add_if_absent("tokens", "run%:a", {"v": 5}, ttl_seconds=100)
    store.add_if_absent("other", "run1:c", {"v": 6}, ttl_seconds=100)
    assert store.list_prefix("tokens", "run1:") == [("run1:a", {"v": 1}), ("run1:b", {"v": 2})]
    assert store.list_prefix("tokens", "run_") == [("run_1:a", {"v": 4})]  # "_" is no wildcard
    assert store.list_prefix("tokens", "run%") == [("run%:a", {"v": 5})]
    clock.now += 5
    assert store.list_prefix("tokens", "run1:") == [("run1:a", {"v": 1})]


def test_purge_removes_expired_rows_only_and_delete_removes_one(db_url):
    clock = Clock()
    engine = create_engine(db_url)
    store = ReceiverStore(engine, clock=clock)
    for index in range(5):
        store.add_if_absent("ns", f"short{index}", {}, ttl_seconds=1)
    store.add_if_absent("ns", "long", {}, ttl_seconds=100)
    clock.now += 1
    assert store.purge_expired() == 5
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT key FROM {TABLE_NAME}")).scalars().all() == ["long"]
    assert store.delete("ns", "long")
    assert not store.delete("ns", "long")
    assert store.get("ns", "long") is None


def test_adding_purges_expired_rows_by_itself_now_and_then(db_url):
    clock = Clock()
    engine = create_engine(db_url)
    store = ReceiverStore(engine, clock=clock)
    for index in range(20):
        store.add_if_absent("replay", f"sig{index}", {}, ttl_seconds=30)
        clock.now += 10  # a steady flow of callbacks
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT COUNT(*) FROM {TABLE_NAME}")).scalar_one()
    assert rows < 10  # the table does not keep every signature ever seen


@pytest.mark.parametrize(
    ("namespace", "key", "value", "ttl"),
    [
        ("", "k", {}, 1),
        ("ns", "", {}, 1),
        ("ns", "k" * 256, {}, 1),
        ("n" * 65, "k", {}, 1),
        ("ns", "k", [1], 1),
        ("ns", "k", {"x": object()}, 1),
        ("ns", "k", {}, 0),
    ],
)
def test_bad_arguments_are_refused_before_the_database(tmp_path, namespace, key, value, ttl):
    store = ReceiverStore(create_engine(f"sqlite:///{tmp_path / 'never.db'}"))
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by argument
        store.add_if_absent(namespace, key, value, ttl)
    assert not (tmp_path / "never.db").exists()  # refused before any connection


def test_an_unreachable_database_is_a_receiver_store_error(tmp_path):
    from telnyx_provider.plugins.receiver_store import ReceiverStoreError

    store = ReceiverStore(create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"))
    with pytest.raises(ReceiverStoreError, match=TABLE_NAME):
        store.add_if_absent("ns", "k", {}, 1)


RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from sqlalchemy import create_engine
    from telnyx_provider.plugins.receiver_store import ReceiverStore

    url, go, keys, ttl = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
    store = ReceiverStore(create_engine(url))
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    won = [key for key in keys if store.add_if_absent("replay", key, {"by": sys.argv[5]}, ttl)]
    print(json.dumps(won), flush=True)
    """
)


def race(
    url: str, tmp_path: Path, keys: list[str], *, processes: int = 4, ttl: float = 60
) -> list[list[str]]:
    """Start ``processes`` processes that each add every key at the same moment; what each one won."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "provider")}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, str(go), json.dumps(keys), str(ttl), str(index)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(processes)
    ]
    try:
        for racer in racers:  # every process has its engine and its table check done: then all at once
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for racer in racers:
            out, _ = racer.communicate(timeout=120)
            assert racer.returncode == 0
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()


def test_of_processes_adding_the_same_keys_at_once_exactly_one_wins_each(db_url, tmp_path):
    keys = [f"sig{index}" for index in range(60)]
    won = race(db_url, tmp_path, keys)
    assert sorted(key for each in won for key in each) == sorted(keys)  # each key won once, none twice
    assert sum(1 for each in won if each) >= 1


def test_of_processes_taking_over_the_same_expired_rows_exactly_one_wins_each(db_url, tmp_path):
    keys = [f"old{index}" for index in range(60)]
    past = Clock()
    past.now = time.time() - 3600
    stale = ReceiverStore(create_engine(db_url), clock=past)
    for key in keys:
        assert stale.add_if_absent("replay", key, {"by": "an hour ago"}, ttl_seconds=60)
    won = race(db_url, tmp_path, keys)
    assert sorted(key for each in won for key in each) == sorted(keys)


def test_processes_creating_the_table_at_once_all_succeed(db_url, tmp_path):
    # Each racer checks and creates the table on its first use; a fresh database has none.
    won = race(db_url, tmp_path, ["only"], processes=4)
    assert sorted(key for each in won for key in each) == ["only"]


def test_the_process_store_is_airflow_s_metadata_database(airflow_db):
    from airflow import settings

    store = receiver_store()
    assert store is receiver_store()
    assert str(store.engine.url) == str(settings.engine.url)
    key = f"k{time.monotonic_ns()}"
    assert store.add_if_absent("replay", key, {"seen": True}, ttl_seconds=60)
    with settings.engine.connect() as conn:
        stored = conn.execute(
            text(f"SELECT value FROM {TABLE_NAME} WHERE namespace = 'replay' AND key = :key"), {"key": key}
        ).scalar_one()
    assert json.loads(stored) == {"seen": True}
