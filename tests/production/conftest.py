"""One run of docker-compose.yaml's production shape, as local processes, for this package's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .celery_stack import CeleryStack

#: The tenant: the compose file's sandboxes with SANDBOX_ACCOUNTS=2000 (their seed is the file's).
ACCOUNTS = 2000


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryStack]:
    """PostgreSQL, Redis, an S3-compatible server, both sandboxes and Airflow's API server,
    scheduler, dag-processor, triggerer and two Celery workers, stopped (process groups killed)
    after the module's last test, whatever happened."""
    stack = CeleryStack(tmp_path_factory.mktemp("compose") / "stack", workers=2, accounts=ACCOUNTS)
    stack.start()  # stops what it started when it fails
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = stack.salesforce.ca_bundle  # the Salesforce sandbox's CA
    try:
        yield stack
    finally:
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
        left = stack.stop()
        assert not left, f"processes still running after the stack stopped: {left}"
