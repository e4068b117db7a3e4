"""Where a task's start-up parse of a sync DAG file goes (issue 14 item 6).

    python -m benchmarks.dag_parse --runs 5 dags/zuora_realtime_sync.py

Every task start parses its DAG file in a fresh process ("Worker startup parse complete …
dag_file_parse_ms" in the task log). Each run here is such a fresh interpreter, which first imports
what the worker has loaded before it parses (``airflow.sdk``, the task runner), then times three
steps one after another:

* **asset URI handlers**: Airflow's discovery of every installed provider's asset URI handlers,
  which the first ``Asset`` made by a DAG file sets off (the Amazon provider's imports ``boto3``);
* **zuora_sync imports**: ``zuora_sync.dag_factory`` and the real-time sensor, with what they import;
* **DAG file**: the file itself (the mapping loaded and checked, the tasks built).

Prints each run and the median of each step, in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, sys, time
import airflow.sdk
from airflow.sdk.execution_time import task_runner  # noqa: F401 - loaded before the worker parses
t0 = time.perf_counter()
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
ProvidersManagerTaskRuntime().asset_uri_handlers
t1 = time.perf_counter()
import zuora_sync.dag_factory, zuora_sync.operators.realtime  # noqa: E401,F401
t2 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}")
"""

STEPS = ("asset URI handlers", "zuora_sync imports", "DAG file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_file", nargs="?", default="dags/zuora_realtime_sync.py")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / args.dag_file)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
        rows.append([float(v) for v in out[-3:]])
        print("  ".join(f"{name} {value:.3f}" for name, value in zip(STEPS, rows[-1])))
    medians = [statistics.median(column) for column in zip(*rows)]
    print("median: " + ", ".join(f"{name} {value:.3f} s" for name, value in zip(STEPS, medians))
          + f"; total {sum(medians):.3f} s")


if __name__ == "__main__":
    main()
