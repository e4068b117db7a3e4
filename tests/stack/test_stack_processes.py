"""The stack's process bookkeeping (``sandbox.stack``), without starting the stack."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _airflow_setting(env: dict[str, str], section: str, key: str) -> str:
    """What Airflow itself resolves for a setting in ``env`` (``airflow config get-value``)."""
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "config", "get-value", section, key],
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_make_up_binds_the_airflow_api_server_to_this_machine_unless_asked(tmp_path):
    """``airflow standalone``'s API server (UI, REST API, callouts) listens on 127.0.0.1 by default
    (Airflow's own default is every interface); ``--airflow-host`` (``make up AIRFLOW_HOST=...``) changes it."""
    sf_env = {"REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}
    env = stack.airflow_env(tmp_path, 18080, sf_env, {})
    assert _airflow_setting(env, "api", "host") == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert stack.build_parser().parse_args(["up", "--dir", str(tmp_path)]).airflow_host == "127.0.0.1"

    everywhere = stack.build_parser().parse_args(["up", "--dir", str(tmp_path), "--airflow-host", "0.0.0.0"])
    env = stack.airflow_env(tmp_path, 18080, sf_env, {}, everywhere.airflow_host)
    assert _airflow_setting(env, "api", "host") == "0.0.0.0"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"  # reached on loopback still
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "AIRFLOW_HOST ?= 127.0.0.1" in makefile and "--airflow-host $(AIRFLOW_HOST)" in makefile


def test_make_up_keeps_airflows_log_server_ports_unless_asked(tmp_path):
    """The scheduler's and the triggerer's log servers listen on Airflow's fixed 8793 and 8794; a
    second stack on the machine (the tests start theirs side by side) is given other ports."""
    sf_env = {"REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}
    defaults = stack.build_parser().parse_args(["up", "--dir", str(tmp_path)])
    env = stack.airflow_env(tmp_path, 18080, sf_env, {}, worker_log_port=defaults.worker_log_port,
                            trigger_log_port=defaults.trigger_log_port)
    assert _airflow_setting(env, "logging", "worker_log_server_port") == "8793"
    assert _airflow_setting(env, "logging", "trigger_log_server_port") == "8794"

    other = stack.build_parser().parse_args(["up", "--dir", str(tmp_path), "--worker-log-port", "18793",
                                             "--trigger-log-port", "18794"])
    env = stack.airflow_env(tmp_path, 18080, sf_env, {}, worker_log_port=other.worker_log_port,
                            trigger_log_port=other.trigger_log_port)
    assert _airflow_setting(env, "logging", "worker_log_server_port") == "18793"
    assert _airflow_setting(env, "logging", "trigger_log_server_port") == "18794"


def test_a_finished_task_frees_its_executor_slot_within_a_second(tmp_path):
    """Airflow's task supervisor notices that its task process exited only when its wait (at most
    ``[workers] min_heartbeat_interval``, by default 5 s) ends, if the process closed its sockets
    before exiting; the LocalExecutor slot is taken until then. ``make up`` bounds that wait to 1 s
    (real-time latency, docs/benchmarks.md): the setting must be one Airflow reads."""
    env = stack.airflow_env(tmp_path, 18080, {"REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}, {})
    assert float(_airflow_setting(env, "workers", "min_heartbeat_interval")) == 1


def test_the_scheduler_looks_again_within_a_quarter_second_when_idle(tmp_path):
    """Every step of a real-time session waits for the scheduler's next loop; ``make up`` shortens
    its idle sleep from Airflow's 1 s to 0.25 s (real-time latency, docs/benchmarks.md)."""
    env = stack.airflow_env(tmp_path, 18080, {"REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}, {})
    assert float(_airflow_setting(env, "scheduler", "scheduler_idle_sleep_time")) == 0.25


def _live(pid: int) -> bool:
    """Running, not a zombie (a reparented child may wait for PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_down_stops_a_child_that_outlives_its_service(tmp_path, monkeypatch):
    """``airflow standalone``'s scheduler once hung in its graceful shutdown after standalone had
    exited, and kept running: ``down`` must end every process of the service's group."""
    child_pid = tmp_path / "child.pid"
    script = ("import pathlib, signal, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
              f"pathlib.Path({str(child_pid)!r}).write_text(str(child.pid))\n"
              "time.sleep(120)\n")
    leader = stack._start("airflow", [sys.executable, "-c", script], tmp_path)
    deadline = time.monotonic() + 30
    while not child_pid.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_pid.read_text())
    time.sleep(0.5)  # the child has set its SIGTERM handler
    monkeypatch.setattr(stack, "STOP_GRACE_SECONDS", 2)
    try:
        stack.down(argparse.Namespace(dir=str(tmp_path)))
        assert not _live(child), "the service's child survived `down`"
        assert not _live(leader) and not (tmp_path / "airflow.pid").exists()
    finally:
        for pid in (child, leader):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_down_stops_what_is_left_of_a_service_whose_leader_is_gone(tmp_path):
    """A service that exited and left a child running: ``down`` still stops the child."""
    child_pid = tmp_path / "child.pid"
    script = ("import pathlib, subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              f"pathlib.Path({str(child_pid)!r}).write_text(str(child.pid))\n")  # and exit at once
    leader = stack._start("mail", [sys.executable, "-c", script], tmp_path)
    deadline = time.monotonic() + 30
    while (not child_pid.exists() or stack._running(tmp_path, "mail") is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_pid.read_text())
    try:
        assert stack._running(tmp_path, "mail") is None and _live(child)  # the leader is gone, its child is not
        stack.down(argparse.Namespace(dir=str(tmp_path)))
        assert not _live(child), "the exited service's child survived `down`"
        assert not (tmp_path / "mail.pid").exists()
    finally:
        for pid in (child, leader):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
