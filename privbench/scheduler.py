"""A suite's jobs on an executor: each job once its release is ready, failures recorded, the rest going on.

The same loop drives every executor. A job is submitted once the distill job
it reads has finished; up to ``executor.capacity`` jobs are in flight. A job
that fails (a plugin's error, a worker that died and died again on its retry)
gets a failure record in its folder (with its traceback in ``error.log``) and
a row in ``runs.parquet``; the jobs
that read its release are not run, and every other job still is. The job
store alone writes ``OUT/jobs/``, so a job folder is always complete or absent.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.markup import escape

from privbench.executors import failure_reason
from privbench.failures import JOB_ERROR_LOG, debug_enabled, failure_trace


def run_jobs(jobs: list[Any], store: Any, executor: Any, run: Any, suite_name: str, console: Any) -> dict[str, Any]:
    """Run every job of ``jobs`` that ``store`` has not finished; return the run's statistics."""
    stats: dict[str, Any] = {"jobs": len(jobs), "cached": 0, "ran": 0, "failed": [], "not_run": [],
                             "executor": executor.name}
    quiet = run.settings.quiet
    pending, in_flight, failed_keys = [], {}, set()
    progress = run.base_ctx.progress
    with progress.task(f"suite {suite_name} ({executor.name})", total=len(jobs)) as bar:
        for job in jobs:
            if store.done(job.key):
                stats["cached"] += 1
                bar.advance(1, job="cached")
            else:
                pending.append(job)
        with _worker_rows(progress) as rows:
            while pending or in_flight:
                for job in list(pending):
                    if len(in_flight) >= executor.capacity:
                        break
                    if job.depends_on in failed_keys:
                        pending.remove(job)
                        stats["not_run"].append(job.label)
                        bar.advance(1, job="not run")
                        continue
                    if job.depends_on is not None and not store.done(job.depends_on):
                        continue  # its release is still being made
                    release_dir = store.path(job.depends_on) if job.depends_on is not None else None
                    in_flight[executor.submit(job, release_dir)] = (job, time.perf_counter())
                    pending.remove(job)
                if not in_flight:
                    break  # nothing can start: what is left reads releases that will not come
                handle, work = executor.wait(list(in_flight), tick=lambda: rows(executor.workers_now()))
                job, t0 = in_flight.pop(handle)
                try:
                    store.complete(job, work)
                except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the others
                    reason = failure_reason(exc)
                    trace = failure_trace(exc)
                    store.record_failure(job, reason, dataset=_dataset_name(run, job),
                                         attempts=getattr(exc, "attempts", 1), trace=trace)
                    failed_keys.add(job.key)
                    stats["failed"].append((job.label, reason))
                    if debug_enabled():
                        print(trace.rstrip(), file=sys.stderr, flush=True)
                    log = store.path(job.key) / JOB_ERROR_LOG
                    console.print(f"[red]failed[/] {escape(job.label)}: {escape(reason)} (traceback in "
                                  f"{escape(str(log))})", soft_wrap=True)
                    bar.advance(1, job="failed")
                    continue
                stats["ran"] += 1
                if not quiet:
                    console.print(f"[green]done[/] {job.label} ({time.perf_counter() - t0:.1f} s)")
                bar.advance(1)
        if stats["failed"]:
            _mark_failed(bar, f"{len(stats['failed'])} of {len(jobs)} jobs failed")
    stats["not_run"] += [job.label for job in pending]
    return stats


def _mark_failed(bar: Any, message: str) -> None:
    """The suite's bar ends marked failed, not complete, where the display can mark it."""
    fail = getattr(bar, "fail", None)
    if callable(fail):
        fail(message)


def _dataset_name(run: Any, job: Any) -> str:
    dataset = run.datasets.get(job.dataset)
    return getattr(dataset, "name", None) or job.dataset


class _NoRows:
    def __call__(self, rows: list[tuple[str, str, float]]) -> None:
        pass

    def __enter__(self) -> "_NoRows":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _worker_rows(progress: Any) -> Any:
    """One line per busy worker under the suite's bar (what it runs, for how long), where the display has room."""
    rows = getattr(progress, "worker_rows", None)
    return rows() if callable(rows) else _NoRows()
