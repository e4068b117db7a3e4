"""One ``airflow standalone`` stack for every test of this package (see ``standalone.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .standalone import Standalone, start, stop


@pytest.fixture(scope="package")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """Both sandboxes and ``airflow standalone``, started once for the package and stopped after
    its last test (``make down``'s command; every pid file must be gone then)."""
    directory = tmp_path_factory.mktemp("standalone") / "stack"
    stack = start(directory)
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = stack.salesforce_env["REQUESTS_CA_BUNDLE"]  # the Salesforce sandbox's CA
    try:
        yield stack
    finally:
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
        down = stop(directory)
        assert down.returncode == 0, down.stdout + down.stderr
        for name in ("salesforce", "zuora", "mail", "airflow"):
            assert not (directory / f"{name}.pid").exists(), f"{name} still running after `down`"
