"""A real local SMTP server's inbox (aiosmtpd) and the ``smtp_default`` connection that reaches it."""

from __future__ import annotations

import email
import json
import threading
from email import policy
from email.message import EmailMessage

SENDER = "zuora-sync@example.test"


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def smtp_connection(port: int) -> str:
    # No TLS, no SSL, no login: a plain local server. retry_limit 0 so a failure shows at once.
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                       "extra": {"from_email": SENDER, "disable_tls": True, "disable_ssl": True,
                                 "timeout": 5, "retry_limit": 0}})
