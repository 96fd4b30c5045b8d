"""Where work runs: in this process, one piece after another, or as Ray tasks on a cluster.

Two levels of privbench hand work to an executor: a suite's jobs (``privbench
run``) and the independent pieces inside one attack (shadow pipelines, the
method game's pipelines, canary runs), which a plugin submits through
:meth:`privbench.api.RunContext.map`. The serial executor is the default and
needs nothing; :mod:`privbench.ray_executor` needs the ``ray`` extra.

Both executors give the same results for the same jobs: every piece of work
draws its randomness from its own seed, never from the order in which pieces
run. What can change a float's last bits is the number of threads a piece
computes with (parallel reductions add in a different order), so
``cpus_per_task`` sets it for both executors alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from privbench.errors import UserError

EXECUTORS = ("local", "ray")
RAY_EXTRA = "pip install 'privbench[ray]'"


@dataclass(frozen=True)
class ExecutorOptions:
    """What ``--executor``, ``--address``, ``--max-workers`` and the per-task shares ask for."""

    kind: str = "local"
    address: str | None = None
    max_workers: int | None = None
    cpus_per_task: float | None = None  # None: all of this machine's threads (local), 1 (ray)
    gpus_per_task: float | None = None  # None: 1 on a cluster with GPUs when the device allows it, else 0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor {self.kind!r}; use {' or '.join(EXECUTORS)}")
        if self.kind == "local" and (self.address or self.max_workers not in (None, 1)):
            raise UserError("--address and --max-workers need --executor ray (the local executor runs one job at a time)")
        if self.max_workers is not None and self.max_workers < 1:
            raise UserError(f"--max-workers must be at least 1, got {self.max_workers}")
        for name, value in (("--cpus-per-task", self.cpus_per_task), ("--gpus-per-task", self.gpus_per_task)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UserError(f"{name} must be a non-negative number, got {value}")
        if self.cpus_per_task is not None and self.cpus_per_task <= 0:
            raise UserError(f"--cpus-per-task must be positive, got {self.cpus_per_task}")

    @property
    def threads(self) -> int | None:
        """Torch threads per task: the task's CPU share, at least one (None: leave torch's default)."""
        return None if self.cpus_per_task is None else max(1, int(self.cpus_per_task))


def set_threads(threads: int | None) -> None:
    """Compute with ``threads`` torch threads, so that tasks sharing a node never oversubscribe its cores."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class SerialExecutor:
    """Everything in this process, in order: the default, and what runs without Ray."""

    name = "local"
    capacity = 1  # jobs in flight at once

    def __init__(self, options: ExecutorOptions | None = None):
        self.options = options or ExecutorOptions()
        self._run: Any = None

    # ------------------------------------------------------------------ pieces of an attack
    def share(self, value: Any) -> None:
        """``value`` (a dataset) will be shared by many tasks: nothing to do in one process."""

    def map(self, fn: Callable[[dict, Any, Any], Any], items: Sequence[Any], *, shared: dict[str, Any], ctx: Any,
            label: str) -> list[Any]:
        """``[fn(shared, item, ctx) for item in items]`` under one progress bar."""
        out = []
        with ctx.progress.task(label, total=len(items)) as bar:
            for item in items:
                out.append(fn(shared, item, ctx))
                bar.advance(1)
        return out

    # ------------------------------------------------------------------ a suite's jobs
    def start(self, run: Any) -> None:
        """``run`` is a :class:`privbench.jobs.JobRun`: the registry, the datasets, the job settings."""
        self._run = run
        self._submitted: list[tuple[Any, Path | None]] = []
        set_threads(self.options.threads)

    def submit(self, job: Any, release_dir: Path | None) -> int:
        self._submitted.append((job, release_dir))
        return len(self._submitted) - 1

    def wait(self, handles: list[Any], tick: Callable[[], None] | None = None) -> tuple[Any, Callable[[Path], dict]]:
        """The next handle and the work that finishes its job into a staging folder (here: the job itself)."""
        from privbench.jobs import execute_job

        handle = handles[0]
        job, release_dir = self._submitted[handle]
        run = self._run
        return handle, lambda stage: execute_job(job, stage, registry=run.registry, dataset=run.datasets[job.dataset],
                                                 release_dir=release_dir, ctx_factory=run.ctx_factory)

    def workers_now(self) -> list[tuple[str, str, float]]:
        """(worker, what it runs, seconds) for the progress display: nothing beside the suite's own bar here."""
        return []

    def close(self) -> None:
        self._run = None


def require_backend(options: ExecutorOptions) -> None:
    """Ray missing (or broken) for ``--executor ray`` is one line naming the extra that installs it."""
    if options.kind != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed here: {RAY_EXTRA}") from None


def make_executor(options: ExecutorOptions) -> Any:
    """The executor ``options`` ask for (a Ray one starts or joins its cluster here)."""
    if options.kind == "local":
        executor = SerialExecutor(options)
        set_threads(options.threads)
        return executor
    require_backend(options)
    from privbench.ray_executor import RayExecutor

    return RayExecutor(options)


class JobsFailed(UserError):
    """Some jobs of a suite failed; the others finished and are in the tables (exit code 3)."""

    exit_code = 3


def failure_reason(exc: BaseException) -> str:
    """One line for a failed piece of work: a :class:`UserError` or a plugin's failure as it reads, anything else with its type.

    A plugin's failure reads as it does when a single command fails: the
    plugin, its package and version, the job and the exception.
    """
    from privbench.errors import PluginFailure

    cause = getattr(exc, "cause", None)  # a Ray task's error carries the exception the task raised
    if isinstance(cause, BaseException) and cause is not exc:
        return failure_reason(cause)
    reason = getattr(exc, "reason", None)  # already one line (a Ray task that failed on each attempt)
    if isinstance(reason, str) and reason and hasattr(exc, "attempts"):
        return reason[:500]
    text = " ".join(str(exc).split())
    if isinstance(exc, (UserError, PluginFailure)):
        return text[:500]
    return f"{type(exc).__name__}{': ' + text[:400] if text else ''}"
