"""Session emails: Zuora 360's four email notification options, sent through Airflow's SMTP provider.

After each session the End task calls :func:`notify_session_end`, which decides from the
``email_notifications`` setting whether this session deserves an email (:func:`should_notify`),
writes it (:func:`compose`: type, status, window, counts per object, API requests, the first
errors) and sends it to ``email_recipients`` through the ``smtp_default`` connection.

The options, as decided here (``docs/operations.md``, "Email"; Zuora 360's own):

``none``
    Never.
``errors_only``
    Sessions that ended Finished with Errors, Failure or Stopped. Stopped (the Salesforce API
    budget ran out) is not an error in Zuora's sense, but the session did not sync everything it
    was asked to: Salesforce stays behind Zuora until a later session catches up, and a user who
    asked to hear about problems needs to know (raise the API allowance, lower the reserve).
``all_excluding_zero_records``
    Every session that synced at least one record (upserted + deleted > 0), *and* every session
    that ended with errors. Zuora words it "when at least one record is successfully synchronized";
    read literally, a Failure that synced nothing would send no email, so choosing "All" would
    tell a user less than "Errors Only" does. The options are levels of verbosity: what this one
    leaves out is only the quiet "Finished, nothing to do" sessions.
``all_including_zero_records``
    Every session that ended.

Which setting applies (Zuora 360: the Email Notifications setting "is available only to Recurring
Sync jobs", and All (Including Zero Records) "is the default option for all other types of Zuora
360 syncs, such as On-demand or Manual Syncs"): ``email_notifications`` for recurring sessions —
scheduled runs (real-time runs are scheduled runs of their continuous DAG) and backfill runs, which
re-run scheduled intervals — and ``manual_email_notifications`` (default
``all_including_zero_records``) for sessions someone started: on-demand syncs and every manually
triggered run, cleanups included (:func:`setting_for`).

A session still Running never sends. Sending is best effort: a mail problem is logged and never
raised, because an email must not turn a finished sync into a failed task.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import logging
import re
from collections.abc import Iterable
from typing import Any

from zuora_sync.settings import EMAIL_CHOICES

__all__ = ["ERROR_STATUSES", "compose", "is_manual", "notify_session_end", "records_written", "setting_for",
           "should_notify"]

_log = logging.getLogger(__name__)

#: Session outcomes a user who chose "Errors Only" is told about (see the module docstring for Stopped).
ERROR_STATUSES = ("Finished with Errors", "Failure", "Stopped")
#: Statuses of a session that has ended (Running has not).
ENDED_STATUSES = ("Finished", *ERROR_STATUSES)
COUNT_FIELDS = ("extracted", "upserted", "deleted", "failed")
#: Long Salesforce messages are cut: the email is a summary, the full text is in the rejected-records CSV.
MAX_MESSAGE_CHARS = 500

# Free text in an email (rejection messages, a failure's reason) can carry what an exception
# picked up on its way: tokens, passwords, credentials in URLs. Mask the usual shapes.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic|oauth)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2***"),
    (re.compile(r"(?i)\b((?:client_|api_|security_|access_|refresh_|private_)?(?:password|passwd|pwd|secret|"
                r"token|sid|session_?id|authorization|api_?key|private_key))(\"?'?\s*[=:]\s*\"?'?)(?!(?:bearer|basic|oauth)\s)([^\s\"'&,;]+)"),
     r"\1\2***"),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
)


def should_notify(setting: str, status: str, records_written: int) -> bool:
    """Whether a session that ended with ``status`` gets an email under ``setting``.

    :param setting: one of :data:`zuora_sync.settings.EMAIL_CHOICES`.
    :param status: the session's status (Finished, Finished with Errors, Failure, Stopped; Running → never).
    :param records_written: records the session upserted or deleted in Salesforce.
    :raises ValueError: an unknown setting (settings are validated, so this is a programming error).
    """
    if setting not in EMAIL_CHOICES:
        raise ValueError(f"email_notifications: {setting!r} is not one of {list(EMAIL_CHOICES)}")
    if status not in ENDED_STATUSES or setting == "none":
        return False
    is_error = status in ERROR_STATUSES
    if setting == "errors_only":
        return is_error
    if setting == "all_excluding_zero_records":
        # Errors always count: "All" must never tell a user less than "Errors Only".
        return is_error or records_written > 0
    return True  # all_including_zero_records


def is_manual(session: dict[str, Any]) -> bool:
    """Whether someone started the session: an on-demand sync, or a manually triggered run (its
    trigger is the run type, ``manual`` or ``DagRunType.MANUAL``); not a scheduled or backfill run."""
    trigger = str(session.get("trigger") or "").lower()
    return session.get("session_type") == "On-demand" or trigger.endswith("manual")


def setting_for(session: dict[str, Any], settings: Any) -> tuple[str, str]:
    """``(setting name, its value)`` that decides the session's email: ``manual_email_notifications``
    for a manual or on-demand session (:func:`is_manual`), ``email_notifications`` otherwise."""
    name = "manual_email_notifications" if is_manual(session) else "email_notifications"
    return name, getattr(settings, name)


def records_written(session: dict[str, Any]) -> int:
    """Records the session upserted or deleted in Salesforce (what "synchronized" means for the options)."""
    totals = session.get("totals") or {}
    return int(totals.get("upserted", 0) or 0) + int(totals.get("deleted", 0) or 0)


def _redact(value: Any) -> str:
    """``value`` as text with secrets masked: Airflow's masker (values it knows) and the usual shapes."""
    text = "" if value is None else str(value)
    try:  # Airflow's secrets masker knows the connection passwords fetched in this task.
        from airflow.sdk._shared.secrets_masker import redact

        text = str(redact(text))
    except Exception as exc:  # noqa: BLE001 - best effort; the patterns below still apply
        _log.debug("Airflow's secrets masker is not available (%s); masking by pattern only", exc)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _one_line(value: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(_redact(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: dt.datetime | None, tz: dt.tzinfo | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:  # the store returns aware UTC; be safe with hand-built dicts
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(tz or dt.UTC).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(int((end - start).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def compose(session: dict[str, Any], rejected: Iterable[dict[str, Any]], *, limit: int = 10,
            tz: dt.tzinfo | None = None) -> tuple[str, str, str]:
    """The email for a session: ``(subject, plain text, HTML)``.

    It gives the session's type, status, window, start and end, counts per object (extracted,
    upserted, deleted, failed), API requests used, the failure's reason, and the first ``limit``
    rejected records (object, external id, code, message) with how many more there are. Only these
    fields are used: never the rejected rows' data, connection details or anything else that could
    carry secrets or personal data; free text is masked for secrets too. Every value in the HTML
    is escaped.

    :param session: a session as :meth:`StateStore.get_session` returns it.
    :param rejected: the session's rejected records (:meth:`StateStore.rejected_for_session`); only
        the first ``limit`` are read when the session says how many there are.
    :param limit: how many errors to list.
    :param tz: the time zone for times (e.g. the Zuora tenant's); default UTC.
    """
    sid = session.get("id")
    session_type = _one_line(session.get("session_type") or "Sync", 40)
    status = _one_line(session.get("status") or "unknown", 40)
    dry_run = bool(session.get("dry_run"))
    objects: dict[str, dict[str, int]] = session.get("objects") or {}
    totals = session.get("totals") or {f: sum(int(c.get(f, 0)) for c in objects.values()) for f in COUNT_FIELDS}
    api = session.get("api_calls") or {}
    written = records_written({"totals": totals})

    rows = iter(rejected)
    first = [{"object": _one_line(r.get("object"), 80), "external_id": _one_line(r.get("external_id") or "—", 120),
              "code": _one_line(r.get("error_code") or "UNKNOWN", 80), "message": _one_line(r.get("message"))}
             for r in itertools.islice(rows, max(limit, 0))]
    total_rejected = session.get("rejected")
    if not isinstance(total_rejected, int):
        total_rejected = len(first) + sum(1 for _ in rows)
    more = max(total_rejected - len(first), 0)

    errors = totals.get("failed", 0) or total_rejected
    subject = (f"Zuora sync: {session_type} session {sid} {status}{' (dry run)' if dry_run else ''}"
               f" — {written} record{'' if written == 1 else 's'} synced"
               + (f", {errors} error{'' if errors == 1 else 's'}" if errors else ""))

    if session.get("window_start") or session.get("window_end"):
        window = f"{_when(session.get('window_start'), tz)} to {_when(session.get('window_end'), tz)}"
    else:
        window = "all records (full sync)" if session_type in ("Full", "Product Catalog") else "—"
    started, ended = session.get("started_at"), session.get("ended_at")
    ended_text = _when(ended, tz) + (f" (took {_duration(started, ended)})" if _duration(started, ended) else "")
    facts = [
        ("Session", f"{sid} ({session_type}, {session.get('scope') or '—'})"),
        ("Status", status + (" — dry run, nothing was written to Salesforce" if dry_run else "")),
        ("Trigger", _one_line(session.get("trigger") or "—", 64)),
        ("Window", window),
        ("Started", _when(started, tz)),
        ("Ended", ended_text),
        ("API requests", f"Zuora {int(api.get('zuora', 0))}, Salesforce {int(api.get('salesforce', 0))}"),
    ]
    if session.get("error"):
        facts.append(("Reason", _one_line(session["error"], 1000)))
    more_line = (f"… and {more} more rejected record{'' if more == 1 else 's'}: download the session's rejected "
                 f"records (CSV) from the Zuora sync page." if more else "")

    # Plain text.
    width = max(len(label) for label, _ in facts)
    lines = [f"{label + ':':<{width + 1}} {value}" for label, value in facts]
    lines += ["", "Records per object (extracted / upserted / deleted / failed):"]
    if objects:
        name_width = max(len(o) for o in [*objects, "Total"])
        for name, counts in [*objects.items(), ("Total", totals)]:
            lines.append(f"  {name:<{name_width}}  " + " / ".join(str(int(counts.get(f, 0))) for f in COUNT_FIELDS))
    else:
        lines.append("  (no objects were processed)")
    if first:
        lines += ["", f"First {len(first)} of {total_rejected} rejected record{'' if total_rejected == 1 else 's'}:"]
        lines += [f"  {r['object']} {r['external_id']}: {r['code']} — {r['message']}" for r in first]
        if more_line:
            lines.append(more_line)
    text = "\n".join(lines) + "\n"

    # HTML: every dynamic value goes through esc().
    def esc(value: Any) -> str:
        return html.escape(str(value), quote=True)

    cell = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:{}"'
    left, right = cell.format("left"), cell.format("right")
    parts = ["<html><body style=\"font-family:sans-serif;font-size:14px\">",
             f"<h2 style=\"font-size:16px\">{esc(session_type)} sync session {esc(sid)}: {esc(status)}</h2>",
             "<table style=\"border-collapse:collapse\">"]
    parts += [f"<tr><th {left}>{esc(label)}</th><td {left}>{esc(value)}</td></tr>" for label, value in facts]
    parts.append("</table>")
    parts.append("<h3 style=\"font-size:15px\">Records per object</h3>")
    if objects:
        parts.append("<table style=\"border-collapse:collapse\"><tr>"
                     f"<th {left}>Object</th>" + "".join(f"<th {right}>{esc(f.capitalize())}</th>" for f in COUNT_FIELDS)
                     + "</tr>")
        for name, counts in [*objects.items(), ("Total", totals)]:
            tag = "th" if name == "Total" and counts is totals else "td"
            parts.append(f"<tr><{tag} {left}>{esc(name)}</{tag}>"
                         + "".join(f"<{tag} {right}>{int(counts.get(f, 0))}</{tag}>" for f in COUNT_FIELDS) + "</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No objects were processed.</p>")
    if first:
        parts.append(f"<h3 style=\"font-size:15px\">First {len(first)} of {total_rejected} rejected "
                     f"record{'' if total_rejected == 1 else 's'}</h3>")
        parts.append("<table style=\"border-collapse:collapse\"><tr>"
                     f"<th {left}>Object</th><th {left}>External id</th><th {left}>Code</th><th {left}>Message</th></tr>")
        parts += [f"<tr><td {left}>{esc(r['object'])}</td><td {left}>{esc(r['external_id'])}</td>"
                  f"<td {left}>{esc(r['code'])}</td><td {left}>{esc(r['message'])}</td></tr>" for r in first]
        parts.append("</table>")
        if more_line:
            parts.append(f"<p>{esc(more_line)}</p>")
    parts.append("</body></html>")
    return subject, text, "\n".join(parts)


def notify_session_end(store: Any, session_id: int, settings: Any, log: Any = None,
                       smtp_conn_id: str = "smtp_default") -> bool:
    """Email the session's summary if its setting asks for it; True when sent.

    The setting is ``email_notifications`` for a recurring session, ``manual_email_notifications``
    for a manual or on-demand one (:func:`setting_for`).

    One email to all of ``settings.email_recipients``, through the SMTP provider's ``SmtpHook``
    (the connection's ``from_email`` extra is the sender). Never raises: whatever goes wrong (no
    recipients, no connection, the server unreachable or refusing) is logged and the session's
    outcome stands.

    :param store: the :class:`~zuora_sync.state.StateStore` holding the session.
    :param session_id: the session that just ended.
    :param settings: the sync's :class:`~zuora_sync.settings.Settings`.
    :param log: where to log (the task's ``self.log``); this module's logger by default.
    :param smtp_conn_id: the Airflow SMTP connection.
    """
    log = log or _log
    try:
        session = store.get_session(session_id)
        (name, setting), status, written = setting_for(session, settings), session.get("status"), records_written(session)
        if not should_notify(setting, status, written):
            log.info("Session %s (%s, %d records synced): no email, the %s setting is %s",
                     session_id, status, written, name, setting)
            return False
        subject, text, body = compose(session, store.rejected_for_session(session_id), tz=getattr(settings, "tz", None))
        recipients = list(settings.email_recipients or ())
        if not recipients:
            log.warning("Session %s: %s is %s but no email_recipients are set in the "
                        "zuora_sync_settings Variable; no email sent. The summary:\n%s", session_id, name, setting, text)
            return False
    except Exception:  # never fail the task over an email (logged with its traceback)
        log.exception("Session %s: could not prepare the session email; no email sent", session_id)
        return False

    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        # The hook's public API sends one HTML part (it has no plain-text alternative).
        with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
            hook.send_email_smtp(to=recipients, subject=subject, html_content=body)
    except Exception as exc:  # noqa: BLE001 - an email problem must not fail a finished sync
        log.error("Session %s: the session email to %s could NOT be sent through the Airflow connection %r "
                  "(%s: %s). The sync's outcome is unaffected. Check the connection's host and port, its "
                  "disable_tls / disable_ssl extras and its from_email extra. The summary:\n%s",
                  session_id, ", ".join(recipients), smtp_conn_id, type(exc).__name__, _one_line(exc, 300), text)
        return False
    log.info("Session %s: emailed %r to %s", session_id, subject, ", ".join(recipients))
    return True
