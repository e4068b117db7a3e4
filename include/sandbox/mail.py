"""A local mail catcher: an SMTP server that keeps every message, and a web page that shows them.

``make up`` points Airflow's ``smtp_default`` connection at it, so the sync's session emails can be
read without a mail server: ``zuora-sync-sandbox mail --port 1025 --web-port 8025 --data-dir D``.

- **SMTP** (aiosmtpd, plain, no login, no TLS) on ``--host``:``--port`` accepts mail for any
  recipient and delivers nowhere: each message is kept as ``<data-dir>/messages/<n>.eml`` (the raw
  message as it arrived, with ``X-Envelope-From`` and ``X-Envelope-To`` added in front; ``0600``, in a
  ``0700`` directory: session emails carry customer names).
- **Web** on ``--host``:``--web-port``: ``GET /`` lists the messages newest first, ``GET
  /messages/{n}`` shows one (headers, the plain text, the HTML part in a sandboxed frame that may run
  no script and load nothing), ``GET /messages/{n}.eml`` the raw message; ``GET /api/messages`` the
  list as JSON (``id``, ``from``, ``to``, ``subject``, ``date``, ``size``), ``DELETE /api/messages``
  empties it, ``GET /health``.

Both servers run on one asyncio loop (uvicorn's): the SMTP server is started by the web app's
lifespan on a socket bound before anything else, so a taken port fails at once (exit code 3), as
the other sandboxes do. No part of a message is ever served as this page's own HTML: every value is
escaped, and the HTML part is served with ``Content-Security-Policy: sandbox; default-src 'none'``.
"""

from __future__ import annotations

import asyncio
import email
import html
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sandbox.private import make_private_dir
from sandbox.serving import DataDirLock, bind_socket, run_server, write_env_file

#: Messages larger than this are refused (552), as a real server would.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
#: The list shows at most this many messages, newest first.
LIST_LIMIT = 500
_ID = re.compile(r"^[0-9]{1,12}$")
#: What a message's HTML part may do in the browser: nothing but show itself.
BODY_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; base-uri 'none'; form-action 'none'"


class Mailbox:
    """The messages kept in ``<data_dir>/messages``, one ``.eml`` file each, numbered in arrival order."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir) / "messages"
        make_private_dir(self.directory)
        self._next = max((int(p.stem) for p in self._files()), default=0) + 1

    def _files(self) -> list[Path]:
        return [p for p in self.directory.glob("*.eml") if _ID.match(p.stem)]

    def add(self, raw: bytes, sender: str, recipients: list[str]) -> int:
        """Keep one message (``0600``); its number."""
        number = self._next
        self._next += 1
        envelope = (f"X-Envelope-From: {_one_line(sender)}\r\n"
                    f"X-Envelope-To: {_one_line(', '.join(recipients))}\r\n").encode("utf-8")
        fd = os.open(self.directory / f"{number}.eml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(envelope + raw)
        return number

    def path(self, number: str) -> Path | None:
        """The file of message ``number`` (digits only), or None."""
        if not _ID.match(number):
            return None
        path = self.directory / f"{number}.eml"
        return path if path.is_file() else None

    def read(self, number: str) -> EmailMessage | None:
        path = self.path(number)
        if path is None:
            return None
        return email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]

    def summaries(self) -> list[dict[str, Any]]:
        """The newest :data:`LIST_LIMIT` messages: id, from, to, subject, date, size."""
        rows = []
        for path in sorted(self._files(), key=lambda p: int(p.stem), reverse=True)[:LIST_LIMIT]:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            rows.append({"id": int(path.stem), "from": str(message.get("From", "")),
                         "to": str(message.get("X-Envelope-To") or message.get("To", "")),
                         "subject": str(message.get("Subject", "")), "date": str(message.get("Date", "")),
                         "size": path.stat().st_size})
        return rows

    def clear(self) -> int:
        files = self._files()
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class CatchAll:
    """The aiosmtpd handler: accept every recipient, keep every message in the :class:`Mailbox`."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        number = self.mailbox.add(raw, envelope.mail_from or "", list(envelope.rcpt_tos))
        return f"250 Message accepted: kept as message {number}"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5rem;color:#1a202c}table{border-collapse:collapse}"
            "td,th{padding:4px 10px;border-bottom:1px solid #d5dbe3;text-align:left;vertical-align:top}"
            "iframe{width:100%;height:70vh;border:1px solid #d5dbe3}pre{white-space:pre-wrap}"
            "a:focus,button:focus{outline:3px solid #f59e0b}</style></head>"
            f"<body><main>{body}</main></body></html>")


def create_app(mailbox: Mailbox, smtp_sock: socket.socket | None = None, hostname: str = "localhost") -> Any:
    """The web app; with ``smtp_sock``, its lifespan also serves SMTP on that socket."""
    from aiosmtpd.smtp import SMTP
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server = None
        if smtp_sock is not None:
            handler = CatchAll(mailbox)
            server = await asyncio.get_running_loop().create_server(
                lambda: SMTP(handler, hostname=hostname, data_size_limit=MAX_MESSAGE_BYTES,
                             ident="zuora-sync mail catcher"), sock=smtp_sock)
        try:
            yield
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()

    app = FastAPI(title="Mail catcher", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    headers = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}

    def found(number: str) -> EmailMessage:
        message = mailbox.read(number)
        if message is None:
            raise HTTPException(404, f"no message {number}")
        return message

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/messages")
    def list_messages() -> JSONResponse:
        return JSONResponse({"messages": mailbox.summaries()})

    @app.delete("/api/messages")
    def clear_messages() -> JSONResponse:
        return JSONResponse({"deleted": mailbox.clear()})

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        rows = mailbox.summaries()
        if rows:
            cells = "".join(
                f"<tr><td><a href=\"messages/{m['id']}\">{html.escape(m['subject'] or '(no subject)')}</a></td>"
                f"<td>{html.escape(m['from'])}</td><td>{html.escape(m['to'])}</td><td>{html.escape(m['date'])}</td></tr>"
                for m in rows)
            table = ("<table><caption>Messages, newest first</caption><thead><tr><th scope=\"col\">Subject</th>"
                     "<th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\">Date</th></tr></thead>"
                     f"<tbody>{cells}</tbody></table>")
        else:
            table = "<p>No messages yet. Session emails appear here once the sync sends one.</p>"
        return HTMLResponse(_page("Mail catcher", f"<h1>Mail catcher</h1>{table}"), headers=headers)

    @app.get("/messages/{number}.eml")
    def raw(number: str) -> Response:
        path = mailbox.path(number)
        if path is None:
            raise HTTPException(404, f"no message {number}")
        return Response(path.read_bytes(), media_type="message/rfc822", headers={
            **headers, "Content-Disposition": f"attachment; filename=\"message-{number}.eml\""})

    @app.get("/messages/{number}/body.html")
    def body_html(number: str) -> Response:
        part = found(number).get_body(("html",))
        if part is None:
            raise HTTPException(404, f"message {number} has no HTML part")
        return Response(part.get_content(), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": BODY_POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/messages/{number}", response_class=HTMLResponse)
    def show(number: str) -> HTMLResponse:
        message = found(number)
        facts = "".join(f"<tr><th scope=\"row\">{name}</th><td>{html.escape(str(message.get(key, '')))}</td></tr>"
                        for name, key in (("From", "From"), ("To", "X-Envelope-To"), ("Subject", "Subject"),
                                          ("Date", "Date")))
        parts = [f"<p><a href=\"../\">All messages</a> · <a href=\"{number}.eml\">Raw message</a></p>",
                 f"<h1>{html.escape(str(message.get('Subject', '(no subject)')))}</h1><table>{facts}</table>"]
        if message.get_body(("html",)) is not None:
            parts.append(f"<h2>HTML</h2><iframe title=\"The message's HTML part\" sandbox "
                         f"src=\"{number}/body.html\"></iframe>")
        text = message.get_body(("plain",))
        if text is not None:
            parts.append(f"<h2>Text</h2><pre>{html.escape(text.get_content())}</pre>")
        return HTMLResponse(_page(str(message.get("Subject", "Message")), "".join(parts)), headers=headers)

    return app


def connection_env(host: str, port: int, web_port: int) -> dict[str, str]:
    """What ``--env-file`` holds: ``AIRFLOW_CONN_SMTP_DEFAULT`` (a connection of the SMTP provider's
    type to this server: no TLS, no login) and ``MAIL_CATCHER_URL``, the page with the messages."""
    import json

    shown = f"[{host}]" if ":" in host else host
    connection = {"conn_type": "smtp", "host": host, "port": port,
                  "extra": {"from_email": "zuora-sync@sandbox.invalid", "disable_tls": True, "disable_ssl": True,
                            "timeout": 10, "retry_limit": 1}}
    return {"AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(connection), "MAIL_CATCHER_URL": f"http://{shown}:{web_port}/"}


def serve(*, host: str, port: int, web_port: int, data_dir: Path, env_file: Path | None = None,
          log_level: str = "warning") -> None:
    """Run the mail catcher in the foreground until SIGINT/SIGTERM.

    :param port: the SMTP port; ``web_port`` the page's.
    :param env_file: write :func:`connection_env` here.
    :raises StartupError: a port is taken (exit code 3) or the data dir is unusable (4).
    """
    smtp_sock = bind_socket(host, port)
    web_sock = bind_socket(host, web_port)
    lock = DataDirLock(data_dir)
    lock.acquire()
    mailbox = Mailbox(data_dir)
    shown = f"[{host}]" if ":" in host else host
    values = connection_env(host, port, web_port)
    if env_file is not None:
        write_env_file(env_file, values,
                       "the zuora-sync mail catcher: Airflow's smtp_default connection and the page with the messages")
    smtp_sock.listen(64)
    smtp_sock.setblocking(False)
    run_server(create_app(mailbox, smtp_sock, hostname=host), web_sock, ssl_certfile=None, ssl_keyfile=None,
               ready_message=f"Mail catcher ready: SMTP on {shown}:{port}, messages at {values['MAIL_CATCHER_URL']}", log_level=log_level)


__all__ = ["CatchAll", "Mailbox", "connection_env", "create_app", "serve"]
