"""The mail catcher of ``make up`` (``zuora-sync-sandbox mail``) as a real server process: the
session email path (Airflow's SMTP provider with the ``smtp_default`` its env file gives) reaches it,
its page and JSON list show the messages with every value escaped, the HTML part may run nothing,
and a taken port is exit code 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
from conftest import free_port, read_env_file


def start(tmp_path: Path, smtp_port: int, web_port: int) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "zuora-sync-sandbox"), "mail", "--port", str(smtp_port),
                             "--web-port", str(web_port), "--data-dir", str(tmp_path / "mail"), "--env-file",
                             str(tmp_path / "mail.env")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_session_emails_sent_through_smtp_default_are_kept_and_shown(tmp_path, monkeypatch):
    smtp_port, web_port = free_port(), free_port()
    server = start(tmp_path, smtp_port, web_port)
    try:
        assert "Mail catcher ready" in server.stdout.readline()
        env = read_env_file(tmp_path / "mail.env")
        base = env["MAIL_CATCHER_URL"]
        assert base == f"http://127.0.0.1:{web_port}/"
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", env["AIRFLOW_CONN_SMTP_DEFAULT"])
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id="smtp_default") as hook:
            hook.send_email_smtp(to=["ops@example.test"], subject="Zuora sync: <b>Full</b> session 7 Finished",
                                 html_content="<p>Counts <script>alert(1)</script></p>")
        [message] = requests.get(f"{base}api/messages", timeout=10).json()["messages"]
        assert message["to"] == "ops@example.test" and message["subject"].startswith("Zuora sync: <b>Full</b>")
        assert message["from"] == "zuora-sync@sandbox.invalid"
        index = requests.get(base, timeout=10)
        assert "Zuora sync: &lt;b&gt;Full&lt;/b&gt; session 7" in index.text and "<b>Full</b>" not in index.text
        shown = requests.get(f"{base}messages/{message['id']}", timeout=10)
        assert shown.status_code == 200 and "<iframe" in shown.text and " sandbox " in shown.text
        body = requests.get(f"{base}messages/{message['id']}/body.html", timeout=10)
        assert "<script>" in body.text and body.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
        raw = requests.get(f"{base}messages/{message['id']}.eml", timeout=10)
        assert raw.headers["content-type"].startswith("message/rfc822") and b"X-Envelope-To: ops@example.test" in raw.content
        assert requests.get(f"{base}messages/..%2fmail.env", timeout=10).status_code == 404
        kept = list((tmp_path / "mail" / "messages").glob("*.eml"))
        assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600  # customer names: owner only

        taken = subprocess.run([str(Path(sys.executable).parent / "zuora-sync-sandbox"), "mail", "--port",
                                str(smtp_port), "--web-port", str(free_port()), "--data-dir", str(tmp_path / "other")],
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode == 3 and f"port {smtp_port}" in taken.stderr
        assert requests.delete(f"{base}api/messages", timeout=10).json() == {"deleted": 1}
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
