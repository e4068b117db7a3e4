"""The CPU seconds of the loads' producer threads in a full sync, per object, and where they go.

    python -m benchmarks.producer_cpu --accounts 10000            # CPU seconds per producer thread
    python -m benchmarks.producer_cpu --accounts 10000 --profile  # and cProfile's top functions

Starts both sandboxes with the generated tenant of ``benchmarks.sync_full`` (seed 3), runs
``zuora_full_sync`` with ``dag.test()`` in a child process whose ``ChunkStream`` producer threads
(:mod:`zuora_sync.pipeline`: the extract's row loop — Data Query download, JSON parsing, keep
rule, conversion, hash filter, staged CSV) are measured with ``time.thread_time()`` and, with
``--profile``, each under its own ``cProfile`` (which makes them slower: read its seconds as
shares, the plain run's as the cost). Also prints the CPU seconds both sandboxes spent during the
sync (they share the machine's cores with the producer in the benchmarks).
"""

from __future__ import annotations

import argparse
import json
import pstats
import shutil
import tempfile
from pathlib import Path

import psutil

from benchmarks.sync_full import SEED, run_dag_child, sync_env
from conftest import start_salesforce_sandbox, start_zuora_sandbox

_PRELUDE = """
import cProfile, json, threading, time
from zuora_sync import pipeline
_OUT = {out!r}
_PROFILE = {profile!r}
_lock = threading.Lock()
_original = pipeline.ChunkStream._run
def _measured(self):
    profiler = cProfile.Profile() if _PROFILE else None
    started = time.thread_time()
    wall = time.perf_counter()
    try:
        if profiler is not None:
            profiler.runcall(_original, self)
        else:
            _original(self)
    finally:
        cpu = time.thread_time() - started
        name = self._thread.name
        with _lock:
            with open(_OUT + "/threads.jsonl", "a") as handle:
                handle.write(json.dumps({{"thread": name, "cpu": cpu, "wall": time.perf_counter() - wall}}) + "\\n")
            if profiler is not None:
                profiler.dump_stats(f"{{_OUT}}/{{name}}.prof")
pipeline.ChunkStream._run = _measured
"""


def cpu_seconds(process) -> float:
    times = psutil.Process(process.pid).cpu_times()
    own = times.user + times.system
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            child_times = child.cpu_times()
            own += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            pass
    return own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--profile", action="store_true", help="cProfile each producer thread")
    parser.add_argument("--top", type=int, default=35, help="functions to print (by own time)")
    parser.add_argument("--out", type=Path, help="keep the log, threads.jsonl and .prof files here")
    parser.add_argument("--keep-results", action="store_true",
                        help="also keep the Data Query result files and the staged files in --out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="producer-cpu-") as tmp:
        work = Path(tmp)
        out = args.out or work / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "threads.jsonl").unlink(missing_ok=True)
        zuora = start_zuora_sandbox(work / "zuora", accounts=args.accounts, seed=SEED)
        salesforce = start_salesforce_sandbox(work / "salesforce", accounts=args.accounts, seed=SEED)
        try:
            env = sync_env(zuora, salesforce, work)
            zuora_before, salesforce_before = cpu_seconds(zuora.process), cpu_seconds(salesforce.process)
            seconds, peak = run_dag_child("zuora_full_sync", env, out / "sync.log",
                                          prelude=_PRELUDE.format(out=str(out), profile=args.profile))
            zuora_cpu = cpu_seconds(zuora.process) - zuora_before
            salesforce_cpu = cpu_seconds(salesforce.process) - salesforce_before
            if args.keep_results:
                # The Data Query result files the loads read (for replaying the row loop offline).
                target = out / "dataquery"
                target.mkdir(exist_ok=True)
                for result in (work / "zuora").rglob("dataquery/*.gz"):
                    shutil.copy(result, target / result.name)
                for staged in (work / "staging").rglob("*"):
                    if staged.is_file():
                        copy = out / "staging" / staged.relative_to(work / "staging")
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(staged, copy)
        finally:
            zuora.stop()
            salesforce.stop()
        threads = [json.loads(line) for line in (out / "threads.jsonl").read_text().splitlines()]
        print(f"accounts {args.accounts:,}: dag.test() {seconds:.1f} s, peak RSS {peak:.0f} MB"
              f"{' (under cProfile)' if args.profile else ''}")
        for t in threads:
            print(f"  {t['thread']:40s} cpu {t['cpu']:6.2f} s  wall {t['wall']:6.2f} s")
        print(f"  producers in all: cpu {sum(t['cpu'] for t in threads):.2f} s")
        print(f"  Zuora sandbox cpu {zuora_cpu:.2f} s, Salesforce sandbox cpu {salesforce_cpu:.2f} s (during the sync)")
        if args.profile:
            files = sorted(str(p) for p in out.glob("*.prof"))
            stats = pstats.Stats(*files)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
