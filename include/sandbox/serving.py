"""Running a sandbox as a server process: the port, the data dir, the env file, uvicorn.

Both sandboxes start the same way and fail the same way: a taken port or an unusable data dir ends
the process at once with one clear line and its own exit code, before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import uvicorn

from sandbox.private import make_private_dir

EXIT_PORT_UNAVAILABLE = 3
EXIT_DATA_DIR_UNUSABLE = 4


class StartupError(Exception):
    """The sandbox cannot start; ``exit_code`` says why (see the EXIT_* constants)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or :class:`StartupError` if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (is another sandbox running?); "
                "stop it or choose another --port",
                EXIT_PORT_UNAVAILABLE,
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}", EXIT_PORT_UNAVAILABLE) from None
    sock.set_inheritable(True)
    return sock


class DataDirLock:
    """Exclusive use of a data dir by one sandbox process (an flock on ``.lock``)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._handle = None

    def acquire(self) -> None:
        try:
            make_private_dir(self.data_dir)  # credentials and records: its owner's only
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            self._handle = open(self.data_dir / ".lock", "a+")
        except OSError as exc:
            raise StartupError(
                f"cannot use data dir {self.data_dir}: {exc.strerror or exc}; choose a writable directory with --data-dir",
                EXIT_DATA_DIR_UNUSABLE,
            ) from None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.seek(0)
            owner = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise StartupError(
                f"data dir {self.data_dir} is in use by another sandbox process (pid {owner}); "
                "stop it or choose another --data-dir",
                EXIT_DATA_DIR_UNUSABLE,
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()


def write_env_file(path: Path, lines: dict[str, str], comment: str) -> None:
    """Shell- and dotenv-compatible ``KEY='value'`` lines, readable by the owner only (they hold secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [f"# {comment}"] + [f"{key}={shlex.quote(value)}" for key, value in lines.items()]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(body) + "\n")
    try:
        os.replace(tmp, path)
    except OSError:
        # Leave no half-written secrets behind (e.g. when ``path`` is a directory).
        tmp.unlink(missing_ok=True)
        raise


# How long idle keep-alive connections get to close on their own once a stop is asked for.
_IDLE_CLOSE_GRACE_SECONDS = 0.5


class _Server(uvicorn.Server):
    """uvicorn's server, announcing readiness once it accepts connections and stopping promptly."""

    def __init__(self, config: uvicorn.Config, ready_message: str):
        super().__init__(config)
        self._ready_message = ready_message

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(self._ready_message, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes idle connections gracefully, but closing TLS waits up to 30 s for the
        # client's close_notify, which a pooled client (requests.Session) never sends: abort them.
        reaper = asyncio.create_task(self._abort_idle_connections())
        try:
            await super().shutdown(sockets=sockets)
        finally:
            reaper.cancel()

    async def _abort_idle_connections(self) -> None:
        await asyncio.sleep(_IDLE_CLOSE_GRACE_SECONDS)
        while True:
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                transport = getattr(connection, "transport", None)
                # A request still being answered is left to finish.
                if transport is not None and (cycle is None or cycle.response_complete):
                    transport.abort()
            await asyncio.sleep(0.1)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises SIGTERM/SIGINT after a graceful stop, so the process would die of
            # the signal; a clean stop exits 0, as the CLI documents.
            getattr(self, "_captured_signals", []).clear()


def run_server(
    app: Any, sock: socket.socket, *, ssl_certfile: Path | None, ssl_keyfile: Path | None, ready_message: str,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` on the pre-bound ``sock`` until SIGINT/SIGTERM."""
    config = uvicorn.Config(
        app,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    _Server(config, ready_message).run(sockets=[sock])


def fail(message: str, exit_code: int) -> NoReturn:
    """Print one error line and exit with ``exit_code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(exit_code)
