"""The stack's process bookkeeping (``sandbox.stack``), without starting the stack."""

from __future__ import annotations

import subprocess
import sys
import time

from sandbox import stack


def test_a_child_that_exited_is_not_running_even_before_it_is_reaped(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    (tmp_path / "svc.pid").write_text(str(child.pid))
    deadline = time.monotonic() + 10
    while stack._running(tmp_path, "svc") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack._running(tmp_path, "svc") is None  # a zombie until wait() below
    child.wait()


def test_a_live_process_is_running(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "svc.pid").write_text(str(child.pid))
        assert stack._running(tmp_path, "svc") == child.pid
    finally:
        child.kill()
        child.wait()


def test_a_webhook_secret_beginning_with_a_dash_reaches_the_zuora_sandbox(tmp_path, monkeypatch):
    from sandbox.cli import build_parser

    monkeypatch.setattr(stack.secrets, "token_urlsafe", lambda n: "-starts-with-a-dash")
    secret = stack._secret_file(tmp_path / "webhook.secret")
    assert stack._secret_file(tmp_path / "webhook.secret") == secret == "-starts-with-a-dash"  # kept
    assert (tmp_path / "webhook.secret").stat().st_mode & 0o777 == 0o600
    # How `up` passes it (token_urlsafe's alphabet includes "-"): argparse must not take it for an option.
    args = build_parser().parse_args(["zuora", "--port", "1", "--data-dir", str(tmp_path),
                                      f"--callout-secret={secret}"])
    assert args.callout_secret == secret
