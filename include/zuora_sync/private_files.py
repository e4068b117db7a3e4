"""Files that hold customer data or secrets, kept readable by their owner only
(``docs/operations.md``, "Connections").

The state store's SQLite file (sessions, rejected records with their rows, events) and the staged
extracts (customer accounts, contacts, invoices as CSV) are created mode ``0600``, in directories
created ``0700``: on a shared machine another local user reads none of it, whatever the umask.
SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file.

Staging may be on object storage (``s3://``, ``gs://``: an ``ObjectStoragePath``), where files have
no modes: there access is the bucket's policy, and these helpers only create and open.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_LOCAL_PROTOCOLS = ("file", "local", "")


def local_path_of(path: Any) -> Path | None:
    """The path on this machine's disk of ``path`` (a ``Path``, a string, a local ``ObjectStoragePath``),
    or ``None`` when it is on object storage."""
    if isinstance(path, (str, os.PathLike)) and not hasattr(path, "protocol"):
        return Path(path)
    if getattr(path, "protocol", "file") in _LOCAL_PROTOCOLS:
        return Path(getattr(path, "path", str(path)))
    return None


def make_private_dir(path: Any) -> None:
    """``mkdir -p path``, each directory it creates ``0700`` (existing ones are left as they are:
    they may be shared, e.g. ``AIRFLOW_HOME``); on object storage, a plain ``mkdir``."""
    local = local_path_of(path)
    if local is None:
        path.mkdir(parents=True, exist_ok=True)
        return
    missing = []
    current = local.absolute()
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another task made it meanwhile
            continue
        os.chmod(directory, PRIVATE_DIR_MODE)  # whatever the umask


def make_private_file(path: Path) -> None:
    """Create the local file ``path`` ``0600`` if it is missing, or make it ``0600`` if it is not
    (a file written by an earlier version)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: Any, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``path.open(mode)`` for writing; a local file is created ``0600`` (before anything is written)."""
    local = local_path_of(path)
    if local is None:
        return path.open(mode, **kwargs)
    make_private_file(local)
    return open(local, mode, **kwargs)


__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "local_path_of", "make_private_dir", "make_private_file",
           "open_private"]
