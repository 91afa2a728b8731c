"""Stores that misbehave as real ones do, for the archive's adversarial tests.

Each is a real fsspec in-memory file system (all instances share one store, as fsspec's does), attached under
its own connection id: two connections may see the same objects through different behaviours.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import ClassVar

from fsspec.implementations.memory import MemoryFileSystem


class TruncatingFileSystem(MemoryFileSystem):
    """A store that silently keeps only part of each recording moved into place (a broken gateway, a full
    disk that does not say so): what the stream wrote is not what the store holds."""

    lost_bytes = 1000

    def mv(self, path1, path2, *args, **kwargs):
        result = super().mv(path1, path2, *args, **kwargs)
        target = self._strip_protocol(path2)
        if target.endswith(".wav"):
            stored = self.store[target]
            data = stored.getvalue()[: -self.lost_bytes]
            stored.seek(0)
            stored.truncate()
            stored.write(data)
        return result


class ManifestReadCountingFileSystem(MemoryFileSystem):
    """A store that counts each manifest opened for reading."""

    reads: ClassVar[Counter[str]] = Counter()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def _open(self, path, mode="rb", *args, **kwargs):
        stripped = self._strip_protocol(path)
        if "r" in mode and "/_manifests/" in stripped and stripped.endswith(".json"):
            with self._lock:
                self.reads[stripped.rsplit("/", 1)[1]] += 1
        return super()._open(path, mode, *args, **kwargs)


class GatedFileSystem(MemoryFileSystem):
    """A store whose first recording write waits until :attr:`gate` opens: a run held between its listing
    and its copies while another run of the same interval goes through. :attr:`held` is set once a write
    is waiting."""

    gate: ClassVar[threading.Event] = threading.Event()
    held: ClassVar[threading.Event] = threading.Event()

    def _open(self, path, mode="rb", *args, **kwargs):
        if "w" in mode and ".wav." in self._strip_protocol(path) and not self.gate.is_set():
            self.held.set()
            assert self.gate.wait(60), "the gate never opened"
        return super()._open(path, mode, *args, **kwargs)


class ManifestWriteFailingFileSystem(MemoryFileSystem):
    """A store that refuses to move a manifest into place while :attr:`failing` is set (a permission
    revoked, a bucket policy, the worker killed right there)."""

    failing: ClassVar[threading.Event] = threading.Event()

    def mv(self, path1, path2, *args, **kwargs):
        if self.failing.is_set() and "/_manifests/" in self._strip_protocol(path2):
            raise PermissionError(f"refused: {path2}")
        return super().mv(path1, path2, *args, **kwargs)
