"""``[core] hostname_callable`` for the local processes that stand in for containers.

In Docker each container has its own hostname, in ``$HOSTNAME``; Airflow records it on every task
instance, job and log. The processes of ``celery_stack.py`` share one machine, so each is given the
hostname its container would have (``airflow-worker-1``, ...) in ``$HOSTNAME`` and Airflow reads it
from there: task instances then say which worker ran them, and the compose file's healthchecks
(``airflow jobs check --hostname "$HOSTNAME"``, ``celery inspect ping -d "celery@$HOSTNAME"``)
work unchanged.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """The container's hostname (``$HOSTNAME``), or this machine's name outside one."""
    return os.environ.get("HOSTNAME") or socket.getfqdn()
