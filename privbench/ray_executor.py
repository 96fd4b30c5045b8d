"""The Ray executor: a suite's jobs and an attack's independent pieces as Ray tasks.

Without ``--address`` a local Ray is started for the run (and stopped after
it); ``--address auto`` or ``ray://HOST:PORT`` joins a running cluster. The
driver alone writes the job store: a worker computes its job in a scratch
folder of its own and sends the files back, so a worker that dies mid-task
cannot leave a torn job folder, and the workers need no shared file system.
Each dataset is put into Ray's object store once per run; a worker fetches it
once and keeps it for its later tasks. Each task computes with as many torch
threads as the CPUs it holds, and asks for a GPU share on a cluster with GPUs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import ray

from privbench.errors import UserError
from privbench.allocator import tune_host_allocator
from privbench.executors import ExecutorOptions, SerialExecutor, failure_reason, set_threads

ENV_PASSED = ("PYTHONPATH", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "MEDMNIST_ROOT")
"""Environment variables the workers get from the driver, besides every ``PRIVBENCH_*`` one."""
RETRIES = 1
"""A failed task (an error, a worker that died) runs once more before its job is recorded as failed."""
_KEEP = 8  # objects a worker keeps fetched (datasets, shared inputs of a map)


class TaskFailed(Exception):
    """A task failed on each of its attempts; ``reason`` is one line."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@ray.remote(num_cpus=0)
class _Hub:
    """What each worker is running, for the driver's progress display."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, float]] = {}

    def begin(self, key: str, worker: str, label: str) -> None:
        self.rows[key] = (worker, label, time.time())

    def end(self, key: str) -> None:
        for k in [k for k in self.rows if k == key or k.startswith(key + "/")]:
            del self.rows[k]

    def snapshot(self) -> list[tuple[str, str, float]]:
        now = time.time()
        return [(worker, label, now - t0) for worker, label, t0 in self.rows.values()]


_FETCHED: "OrderedDict[str, Any]" = OrderedDict()


def _writable(obj: Any) -> Any:
    """``obj`` with every read-only NumPy array (Ray hands arrays over zero-copy, read-only) replaced by a copy.

    Containers and dataclasses are rebuilt only where something was copied, so
    the work the plugins do on their inputs behaves as it does in one process.
    """
    import dataclasses

    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj if obj.flags.writeable else obj.copy()
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        items = [_writable(x) for x in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    if isinstance(obj, dict):
        items = {k: _writable(v) for k, v in obj.items()}
        return obj if all(items[k] is obj[k] for k in obj) else items
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changed = {}
        for f in dataclasses.fields(obj):
            if f.init:
                value = getattr(obj, f.name)
                new = _writable(value)
                if new is not value:
                    changed[f.name] = new
        return dataclasses.replace(obj, **changed) if changed else obj
    return obj


def _fetch(box: list) -> Any:
    """The object behind a boxed reference, fetched once per worker process."""
    ref = box[0]
    key = ref.hex()
    if key not in _FETCHED:
        _FETCHED[key] = _writable(ray.get(ref))
        while len(_FETCHED) > _KEEP:
            _FETCHED.popitem(last=False)
    _FETCHED.move_to_end(key)
    return _FETCHED[key]


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _scratch() -> Path:
    """A private folder for one task; folders of workers that died are removed first."""
    from privbench.outputs import remove_stale_staging, staging_name

    parent = Path(tempfile.gettempdir()) / "privbench-tasks"
    parent.mkdir(exist_ok=True)
    remove_stale_staging(parent)
    path = parent / staging_name(parent / "task")
    path.mkdir()
    return path


def _pack(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _unpack(files: dict[str, bytes], folder: Path) -> None:
    for name, data in files.items():
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise UserError(f"a worker sent back a file outside its job folder: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _job_task(job: Any, dataset_box: list, release_box: list | None, settings: Any, options: ExecutorOptions,
              hub: Any) -> dict[str, Any]:
    """One suite job on a worker: computed in a scratch folder whose files go back to the driver."""
    from privbench.jobs import execute_job, job_run
    from privbench.plugins import get_registry

    tune_host_allocator()
    set_threads(settings.threads)
    dataset = _fetch(dataset_box)
    executor = RayExecutor(options, worker_of=(hub, {id(dataset): dataset_box[0]}, job.key))
    run = job_run(get_registry(), {job.dataset: dataset}, replace(settings, quiet=True), executor)
    made = []

    def ctx_factory(**kwargs: Any) -> Any:
        made.append(run.ctx_factory(**kwargs))
        return made[-1]

    hub.begin.remote(job.key, _worker_name(), job.label)
    scratch = _scratch()
    try:
        release_dir = None
        if release_box is not None:
            release_dir = scratch / "release"
            _unpack(_fetch(release_box), release_dir)
        stage = scratch / "stage"
        stage.mkdir()
        summary = execute_job(job, stage, registry=run.registry, dataset=dataset, release_dir=release_dir,
                              ctx_factory=ctx_factory)
        return {"summary": summary, "files": _pack(stage), "warnings": [w for c in made for w in c.warnings]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        hub.end.remote(job.key)


def _map_task(fn: Callable, boxes: dict[str, list], item: Any, fields: dict[str, Any], threads: int | None,
              hub: Any, key: str, label: str) -> tuple[Any, list[str]]:
    """One piece of an attack on a worker; returns its value and the warnings it gave."""
    from privbench.engine import make_run_context

    tune_host_allocator()
    set_threads(threads)
    hub.begin.remote(key, _worker_name(), label)
    try:
        shared = {name: _fetch(box) for name, box in boxes.items()}
        ctx = make_run_context(fields.pop("device"), fields.pop("seed"), True, **fields)
        return fn(shared, _writable(item), ctx), list(ctx.warnings)
    finally:
        hub.end.remote(key)


_job_remote = ray.remote(_job_task)
_map_remote = ray.remote(_map_task)


PROBE_TIMEOUT_S = 5.0


def probe_address(address: str) -> None:
    """Refuse an address no Ray head answers at, at once: ``ray.init`` would retry it for minutes.

    ``auto`` is left to Ray (it reads the address of the cluster started on
    this machine and fails fast when there is none).
    """
    if address == "auto":
        return
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"no Ray cluster answers at {address} ({reason}); start one with 'ray start --head' "
                        "or give the head's address") from None


class RayExecutor:
    """Jobs and pieces of attacks as Ray tasks; on the driver it owns the local Ray it started."""

    name = "ray"

    def __init__(self, options: ExecutorOptions, worker_of: tuple[Any, dict[int, Any], str] | None = None):
        self.options = replace(options, cpus_per_task=options.cpus_per_task or 1.0)
        self._owns = False
        self._maps = 0
        self._run: Any = None
        if worker_of is None:
            self._connect()
            self.hub = _Hub.remote()
            self._known: dict[int, Any] = {}
            self._scope = "driver"
        else:
            self.hub, self._known, self._scope = worker_of
        self.gpus = self._gpu_share()
        self.capacity = self._capacity()
        self._releases: "OrderedDict[str, Any]" = OrderedDict()
        self._rows: list[tuple[str, str, float]] = []
        self._rows_at = 0.0

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> None:
        if self.options.address:
            probe_address(self.options.address)
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}
        if self.options.address:
            kwargs.pop("include_dashboard")
            kwargs["address"] = self.options.address
        else:
            cpus = os.cpu_count() or 1
            if self.options.max_workers:
                cpus = max(1, int(self.options.max_workers * self.options.cpus_per_task + 0.999))
            kwargs["num_cpus"] = cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = self.options.address or "a local Ray"
            raise UserError(f"cannot start or join {where}: {' '.join(str(exc).split())[:300]}") from exc
        self._owns = True

    def _gpu_share(self) -> float:
        if self.options.gpus_per_task is not None:
            return float(self.options.gpus_per_task)
        device = (self._run.settings.device if self._run else "auto").lower()
        return 1.0 if device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def _capacity(self) -> int:
        if self.options.max_workers:
            return self.options.max_workers
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.options.cpus_per_task)
        if self.gpus > 0:
            slots = min(slots, int(resources.get("GPU", 0) // self.gpus))
        return max(1, slots)

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k.startswith("PRIVBENCH_") or k in ENV_PASSED}

    def _task_options(self, retry_errors: bool) -> dict[str, Any]:
        return {"num_cpus": self.options.cpus_per_task, "num_gpus": self.gpus, "max_retries": RETRIES,
                "retry_exceptions": retry_errors, "runtime_env": {"env_vars": self._env()}}

    # ------------------------------------------------------------------ a suite's jobs (driver)
    def start(self, run: Any) -> None:
        self._run = run
        if self.options.gpus_per_task is None:
            self.gpus = self._gpu_share()
            self.capacity = self._capacity()
        self.options = replace(self.options, gpus_per_task=self.gpus)  # what the workers' own fan-out asks for
        settings = replace(run.settings, threads=self.options.threads,
                           cache_dir=None if run.settings.cache_dir is None else Path(run.settings.cache_dir).resolve())
        self._settings = settings
        self._datasets = {spec: [ray.put(ds)] for spec, ds in run.datasets.items()}  # once per run

    def submit(self, job: Any, release_dir: Path | None) -> Any:
        release_box = None
        if release_dir is not None:
            key = str(release_dir)
            if key not in self._releases:
                self._releases[key] = [ray.put(_pack(release_dir))]
                while len(self._releases) > 64:
                    self._releases.popitem(last=False)
            release_box = self._releases[key]
        remote = _job_remote.options(**self._task_options(retry_errors=True))
        return remote.remote(job, self._datasets[job.dataset], release_box, self._settings, self.options, self.hub)

    def wait(self, handles: list[Any], tick: Callable[[], None] | None = None) -> tuple[Any, Callable[[Path], dict]]:
        while True:
            done, _ = ray.wait(handles, num_returns=1, timeout=0.5)
            if tick is not None:
                tick()
            if done:
                break
        ref = done[0]

        def work(stage: Path) -> dict[str, Any]:
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise TaskFailed(failure_reason(exc), attempts=1 + RETRIES) from exc
            _unpack(result["files"], stage)
            for message in result["warnings"]:
                self._run.base_ctx.progress.warn(message)
            return result["summary"]

        return ref, work

    def workers_now(self) -> list[tuple[str, str, float]]:
        if time.monotonic() - self._rows_at > 1.0:
            self._rows_at = time.monotonic()
            try:
                self._rows = ray.get(self.hub.snapshot.remote(), timeout=5)
            except ray.exceptions.RayError:
                pass
        return self._rows

    def close(self) -> None:
        self._run = None
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    # ------------------------------------------------------------------ pieces of an attack (driver or worker)
    def share(self, value: Any) -> None:
        """Put ``value`` (a dataset) into the object store once; every map that sends it sends the reference."""
        if id(value) not in self._known:
            self._known[id(value)] = ray.put(value)

    def map(self, fn: Callable[[dict, Any, Any], Any], items: Sequence[Any], *, shared: dict[str, Any], ctx: Any,
            label: str) -> list[Any]:
        """Each item as a Ray task, at most ``capacity`` at once; results in the items' order."""
        if not items:
            return []
        if self.gpus > 0 and self._scope != "driver" and ray.cluster_resources().get("GPU", 0) < 2 * self.gpus:
            # This job's task holds the only GPU share: pieces that wait for one would never start.
            return SerialExecutor().map(fn, items, shared=shared, ctx=ctx, label=label)
        boxes = {name: [self._known.get(id(value)) or ray.put(value)] for name, value in shared.items()}
        fields = {"device": ctx.device, "seed": ctx.seed, "cache_dir": ctx.cache_dir,
                  "allow_private_images": ctx.allow_private_images}
        remote = _map_remote.options(**self._task_options(retry_errors=False))
        self._maps += 1
        prefix = f"{self._scope}/map{self._maps}"
        results: list[Any] = [None] * len(items)
        in_flight: dict[Any, int] = {}
        submitted = 0
        with ctx.progress.task(f"{label} ({len(items)} Ray tasks)", total=len(items)) as bar:
            try:
                while submitted < len(items) or in_flight:
                    while submitted < len(items) and len(in_flight) < self.capacity:
                        tag = f"{label} {submitted + 1}/{len(items)}"
                        ref = remote.remote(fn, boxes, items[submitted], dict(fields), self.options.threads,
                                            self.hub, f"{prefix}/{submitted}", tag)
                        in_flight[ref] = submitted
                        submitted += 1
                    done, _ = ray.wait(list(in_flight), num_returns=1)
                    for ref in done:
                        index = in_flight.pop(ref)
                        results[index], warnings = _get(ref)
                        for message in warnings:
                            ctx.warn(message)
                        bar.advance(1)
            except BaseException:
                for ref in in_flight:
                    ray.cancel(ref, force=True)
                raise
        return results


def _get(ref: Any) -> Any:
    """A task's value; its own exception re-raised as it was (so callers catch what they would locally)."""
    try:
        return _writable(ray.get(ref))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise TaskFailed(failure_reason(exc), attempts=1 + RETRIES) from exc
    except ray.exceptions.RayError as exc:
        raise TaskFailed(failure_reason(exc), attempts=1 + RETRIES) from exc

