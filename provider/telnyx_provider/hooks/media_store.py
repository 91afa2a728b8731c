"""Where a recording's audio is stored: destinations, the partial object beside them, the move into place.

The audio is written to a partial object beside the destination and moved into place only once proven
whole; a failure that is caught removes it.

Local files: the partial file is ``.<name>.part``, the same on every attempt, so a retry reuses (overwrites)
what an interrupted attempt left, even one whose process was killed. It is created ``0600`` (owner only:
recordings are personal data) whatever the umask, in folders created ``0700``, and locked (``flock``) while
written: a second writer of the same destination is refused rather than mixed in, and a lock left by a
killed process is released with it.

Object stores (``s3://``, ``gs://``...) have no lock: each attempt writes its own partial object,
``.<name>.<random>.part``, so that no download can move another's half-written bytes into place. S3, GCS
and Azure show an upload only once it is complete, so a killed attempt leaves nothing visible there (an
unfinished multipart upload, which only the store's lifecycle rules remove; see the README); on a store
that shows objects while they are written, an attempt removes the partial objects of its destination that
earlier attempts left."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
from pathlib import PurePath
from typing import IO, TYPE_CHECKING

from telnyx_provider.errors import RecordingStorageError, TelnyxValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: Bytes read back at a time.
CHUNK_SIZE = 256 * 1024
#: Mode of local audio files: the owner reads and writes, nobody else.
FILE_MODE = 0o600
#: Mode of the local folders created on the way to a destination.
FOLDER_MODE = 0o700
_LOCAL_PROTOCOLS = ("", "file", "local")


def resolve_destination(dst: object, dest_conn_id: str | None) -> tuple[ObjectStoragePath, bool]:
    """The destination as an ``ObjectStoragePath``, and whether it is a folder (``dst`` ends with ``/``).

    A string or ``os.PathLike`` is a URL (``s3://bucket/key``) or a local path; ``dest_conn_id`` gives its
    credentials. An ``ObjectStoragePath`` is used as given (its own connection), as Airflow's
    ``FileTransferOperator`` does; as it drops a trailing ``/``, one naming an existing folder is a folder.
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(dst, ObjectStoragePath):
        return dst, dst.is_dir()
    if isinstance(dst, PurePath | os.PathLike):
        dst = os.fspath(dst)
    if not isinstance(dst, str) or not dst.strip() or dst != dst.strip():
        raise TelnyxValidationError(
            "dst", dst, "an ObjectStoragePath, a URL (file://, s3://, gs://...) or a local path"
        )
    is_folder = dst.endswith("/")
    if "://" not in dst:  # a local path: made absolute, as a file:// URL
        dst = "file://" + os.path.abspath(dst) + ("/" if is_folder else "")
    return ObjectStoragePath(dst, conn_id=dest_conn_id), is_folder


def is_local(path: ObjectStoragePath) -> bool:
    """Whether the path is on the local file system."""
    return (path.protocol or "file") in _LOCAL_PROTOCOLS


def path_url(path: ObjectStoragePath) -> str:
    """The object's URL without credentials: ``file:///abs/path``, ``s3://bucket/key``..."""
    if is_local(path):
        return "file://" + str(path.path)
    return f"{path.protocol}://{path.path}"


def storage_conn_id(path: ObjectStoragePath) -> str | None:
    """The connection of an ``ObjectStoragePath`` (a property from Airflow 3.2, a storage option on 3.1)."""
    conn_id = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = getattr(path, "storage_options", {}).get("conn_id")
    return conn_id if isinstance(conn_id, str) else None


def partial_path(target: ObjectStoragePath) -> ObjectStoragePath:
    """The partial file of a local ``target``: ``.<name>.part`` beside it, the same on every attempt (locked
    while written, so a retry reuses what a killed attempt left)."""
    return target.parent / f".{target.name}.part"


def refuse_existing(target: ObjectStoragePath, overwrite: bool) -> None:
    """Raise unless ``target`` is free (or may be overwritten)."""
    if not overwrite and target.exists():
        raise RecordingStorageError(
            f"{path_url(target)} already exists; pass overwrite=True to replace it. Nothing was written."
        )


@contextlib.contextmanager
def staged(target: ObjectStoragePath, overwrite: bool) -> Iterator[IO[bytes]]:
    """Write ``target`` through its partial object: moved into place when the block ends without error,
    removed when it raises.

    :param target: the destination object.
    :param overwrite: replace an existing ``target`` (checked again right before the move).
    :raises RecordingStorageError: ``target`` exists, or another download is writing it (local files).
    """
    if is_local(target):
        temporary = partial_path(target)
        with _local_partial(temporary) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
            refuse_existing(target, overwrite)
            os.replace(temporary.path, target.path)  # still locked: no other writer reopens it meanwhile
        return
    # Each attempt writes its own partial object: a shared one could be moved into place by one download
    # while another, cut or half-written, was writing it (object stores have no lock).
    temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.part"
    try:
        with temporary.open("wb") as out:
            if temporary.exists():  # the store shows objects while written: so it does a killed attempt's
                _remove_leftovers(target, temporary)
            yield out
        refuse_existing(target, overwrite)  # someone else may have stored it meanwhile
        try:
            temporary.fs.mv(temporary.path, target.path)
        except FileNotFoundError:
            raise RecordingStorageError(
                f"The partial object of {path_url(target)} was removed while this download wrote it: another "
                "download of the same destination started meanwhile. Nothing was stored by this one."
            ) from None
    except BaseException:
        remove_quietly(temporary)
        raise


def _remove_leftovers(target: ObjectStoragePath, own: ObjectStoragePath) -> None:
    """Remove the partial objects of ``target`` that earlier attempts left (killed: no clean-up ran).

    Only on stores that show an object while it is written (an upload to S3, GCS or Azure shows nothing until
    it is complete). A download of the same destination running now loses its partial object too, and fails
    when it would move it into place.
    """
    prefix = f".{target.name}."
    try:
        siblings = target.fs.ls(target.parent.path, detail=False)
    except FileNotFoundError:
        return
    for sibling in siblings:
        name = str(sibling).rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(prefix) and name.endswith(".part") and name != own.name:
            log.info("Removing %s, left by an interrupted download.", path_url(target.parent / name))
            remove_quietly(target.parent / name)


def make_private_folders(folder: str) -> None:
    """Create ``folder`` and its missing parents ``0700`` (owner only: they hold personal data; a umask can
    only take bits away); folders that exist are left as they are."""
    missing: list[str] = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for created in reversed(missing):
        try:
            os.mkdir(created, FOLDER_MODE)
        except FileExistsError:  # another download made it meanwhile
            if not os.path.isdir(created):
                raise


@contextlib.contextmanager
def _local_partial(temporary: ObjectStoragePath) -> Iterator[IO[bytes]]:
    """Open the local partial file ``0600``, locked, empty; unlink it if the block raises."""
    path = str(temporary.path)
    make_private_folders(os.path.dirname(path))
    while True:
        # No O_EXCL: a file left by a killed attempt is reused; O_NOFOLLOW: never write through a symlink.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise RecordingStorageError(
                    f"Another download is writing {path_url(temporary)}; nothing was written."
                ) from None
            raise
        # The file we locked may have been moved into place (or removed) by the writer we waited on.
        try:
            unchanged = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            unchanged = False
        if unchanged:
            break
        os.close(fd)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever mode a leftover had, and whatever the umask
        os.ftruncate(fd, 0)
        out = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
    with out:  # closing it releases the lock
        try:
            yield out
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise


def remove_quietly(path: ObjectStoragePath) -> None:
    """Remove ``path`` if it exists; a failure is logged (the original error is the one to raise)."""
    try:
        if path.exists():
            path.fs.rm_file(path.path)
    except Exception:
        log.warning("Could not remove the partial download %s.", path_url(path), exc_info=True)


def read_back(path: str, conn_id: str | None) -> tuple[int, str]:
    """Read a stored object back: its size in bytes and SHA-256 (hex), streamed."""
    target, _ = resolve_destination(path, conn_id)
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as stored:
        while chunk := stored.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
