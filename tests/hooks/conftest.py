"""Fixtures shared by the hook tests."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def memory_s3() -> Iterator[tuple[str, object, str]]:
    """An in-memory file system attached as ``s3`` for a fresh connection id; the bucket is emptied after."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    conn_id = f"mem_s3_{uuid.uuid4().hex[:8]}"
    fs = MemoryFileSystem()
    attach(protocol="s3", conn_id=conn_id, fs=fs)
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    yield conn_id, fs, bucket
    if fs.exists(f"/{bucket}"):
        fs.rm(f"/{bucket}", recursive=True)
