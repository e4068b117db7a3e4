"""Shared by both sandboxes: their data is readable by the user who runs them only.

A sandbox's SQLite file holds its credentials (passwords, security tokens, OAuth client secrets,
live session ids and bearer tokens) and its records; the data dir also holds Bulk job files, Data
Query results and the TLS key. The data dir is made ``0700`` (also one made by an earlier version)
and the SQLite files ``0600`` (SQLite gives its ``-wal`` and ``-shm`` files the database's mode).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its missing parents) if needed, and make ``path`` itself ``0700``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty ``0600`` if missing, or make it ``0600``; its SQLite ``-wal``/``-shm`` too."""
    path = Path(path)
    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if target is not path and not target.exists():
            continue
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        finally:
            os.close(fd)


__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "make_private_dir", "make_private_file"]
