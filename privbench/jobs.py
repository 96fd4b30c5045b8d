"""The suite runner: jobs as pure functions of their configuration, cached by its hash.

A suite expands into jobs: one ``distill`` job per (dataset, release, seed), then
``utility`` jobs (one per model) and ``audit`` jobs (one per attack) that read
the release their distill job made. A job's key is the hash of everything its
result depends on (dataset fingerprint, plugin and version, options, seed), and
its output lives in ``OUT/jobs/<key>/``, written in a staging folder and renamed
into place when complete. So a run that is interrupted (Ctrl-C, a kill, a power
cut) and started again recomputes only what had not finished, and no result
file is ever torn. A job that fails leaves a failure record in its folder
instead (``status: error`` and the reason), which a rerun retries.
``results.parquet`` and ``runs.parquet`` are then assembled from the finished
and failed jobs. Where the jobs run is the executor's business
(:mod:`privbench.executors`): the store, the keys and resuming are the same
for every executor.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from privbench.config import build_config, canonical_json, config_hash, config_to_dict, json_safe
from privbench.errors import UserError
from privbench.plugins import Registry
from privbench.schema import Field, check_fields, int_between, is_number, is_str, is_table, one_of, read_json
from privbench.suites import ReleaseSpec, Suite, attack_options, utility_options

JOB_FILE = "job.json"
JOB_KINDS = ("distill", "utility", "audit")
JOB_STATUSES = ("ok", "error")
JOB_FIELDS = (
    Field("kind", one_of(*JOB_KINDS), " or ".join(JOB_KINDS), required=True),
    Field("status", one_of(*JOB_STATUSES), " or ".join(JOB_STATUSES)),
    Field("reason", is_str, "a string"),
    Field("label", is_str, "a string"),
    Field("identity", is_table, "an object (what the job's key hashes)"),
    Field("images", int_between(0), "a non-negative integer"),
    Field("rows", int_between(0), "a non-negative integer"),
    Field("wall_time_s", is_number, "a number of seconds"),
)


def read_job_file(path: Path) -> dict[str, Any]:
    """A finished job's ``job.json``, checked; a damaged one is one :class:`UserError` line naming it."""
    path = Path(path)
    try:
        return check_fields(read_json(path, "job record"), JOB_FIELDS, f"job record {path}", expected="a JSON object")
    except UserError as exc:
        raise UserError(f"{exc} (delete {path.parent} to recompute that job)") from exc


@dataclass
class Job:
    kind: str  # distill | utility | audit
    dataset: str
    release: ReleaseSpec
    seed: int
    key: str = ""
    label: str = ""
    evaluator: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)


def release_labels(releases: list[ReleaseSpec]) -> list[str]:
    """Method and ipc; releases that share both also get the config values that tell them apart."""
    base = [rel.method if rel.ipc is None else f"{rel.method} ipc={rel.ipc}" for rel in releases]
    labels = []
    for label, rel in zip(base, releases):
        twins = [other for b, other in zip(base, releases) if b == label]
        keys = sorted(k for k in set().union(*(other.config for other in twins))
                      if len({repr(other.config.get(k)) for other in twins}) > 1)
        labels.append(" ".join([label] + [f"{k}={rel.config.get(k, 'default')}" for k in keys]))
    return labels


def plan_jobs(suite: Suite, registry: Registry, fingerprints: dict[str, str]) -> list[Job]:
    """Every job of the suite in dependency order, each with its cache key."""
    import privbench

    jobs: list[Job] = []
    labels = release_labels(suite.releases)
    for spec in suite.datasets:
        for rel, release_label in zip(suite.releases, labels):
            record = registry.record("distiller", rel.method)
            config = config_to_dict(build_config(record.cls.Config, rel.config, owner=f"distiller {rel.method}"))
            for seed in suite.seeds:
                identity = {
                    "kind": "distill",
                    "dataset": fingerprints[spec],
                    "method": rel.method,
                    "ipc": rel.ipc,
                    "config": config,
                    "seed": seed,
                    "plugin": [record.distribution, record.version],
                    "privbench": privbench.__version__,
                }
                distill = Job("distill", spec, rel, seed, config_hash(identity),
                              f"{spec}: distill {release_label} seed={seed}", rel.method, config, None, identity)
                jobs.append(distill)
                for model in suite.utility_models:
                    from privbench.utility import UtilityConfig

                    ucfg = config_to_dict(build_config(UtilityConfig, utility_options(suite, rel), owner="utility"))
                    ident = {"kind": "utility", "release": distill.key, "model": model, "config": ucfg,
                             "seeds": suite.utility_seeds}
                    jobs.append(Job("utility", spec, rel, seed, config_hash(ident),
                                    f"{spec}: utility {model} on {release_label} seed={seed}", model,
                                    {"config": ucfg, "seeds": suite.utility_seeds}, distill.key, ident))
                for attack in suite.attacks if rel.attacks is None else rel.attacks:
                    arec = registry.record("attack", attack)
                    options = attack_options(suite, rel, attack, arec.cls.Config)
                    acfg = config_to_dict(build_config(arec.cls.Config, options, owner=attack))
                    metrics = suite.metrics or registry.names("metric")
                    mcfg = {m: suite.metric_config.get(m, {}) for m in metrics}
                    ident = {"kind": "audit", "release": distill.key, "attack": attack, "config": acfg,
                             "metrics": mcfg, "plugin": [arec.distribution, arec.version],
                             "show_private_images": suite.show_private_images}
                    jobs.append(Job("audit", spec, rel, seed, config_hash(ident),
                                    f"{spec}: audit {attack} on {release_label} seed={seed}", attack,
                                    {"config": acfg, "metrics": metrics, "metric_config": mcfg}, distill.key, ident))
    return jobs


class JobStore:
    """Jobs on disk: ``root/<key>/`` exists only when the job finished or failed, never half-written."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def record(self, key: str) -> dict[str, Any] | None:
        """The job's checked record, or None; a damaged record is a :class:`UserError` naming it."""
        path = self.path(key) / JOB_FILE
        return read_job_file(path) if path.is_file() else None

    def done(self, key: str) -> bool:
        """Whether the job finished (a failure record is not finished: a rerun retries it)."""
        record = self.record(key)
        return record is not None and record.get("status", "ok") == "ok"

    def clean_partials(self) -> int:
        """Remove staging folders that an interrupted run left behind (not those of a run still going)."""
        from privbench.outputs import remove_stale_staging

        return remove_stale_staging(self.root, all_ours=True) if self.root.is_dir() else 0

    def complete(self, job: Job, work: Callable[[Path], dict[str, Any]]) -> None:
        """Run ``work(staging_dir)`` and rename the folder into place once it returns."""
        self._publish(job, lambda stage: {"status": "ok", **work(stage)})

    def record_failure(self, job: Job, reason: str, dataset: str, attempts: int = 1, trace: str = "") -> None:
        """A failure record in the job's folder, with one ``runs.parquet`` row saying why and ``error.log``.

        ``error.log`` holds the one-line reason and the traceback (``trace``),
        as a single command's ``privbench-error.log`` does.
        """
        from privbench.failures import JOB_ERROR_LOG, log_text, write_log
        from privbench.results import RunInfo, run_record, write_runs

        def work(stage: Path) -> dict[str, Any]:
            info = RunInfo(job=job.label, task=job.kind, dataset=dataset, evaluator=job.evaluator,
                           config=job.identity, seed=job.seed, status="error", error=reason, run_id=job.key,
                           release_method=job.release.method, release_ipc=job.release.ipc, release_seed=job.seed)
            write_runs(stage / "runs.parquet", [run_record(info)])
            write_log(stage / JOB_ERROR_LOG, log_text(reason, trace or "(no traceback)", f"suite job {job.label}"))
            return {"status": "error", "reason": reason, "attempts": attempts}

        self._publish(job, work)

    def _publish(self, job: Job, work: Callable[[Path], dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        from privbench.outputs import staging_name

        staging = self.root / staging_name(self.path(job.key))
        staging.mkdir()
        try:
            summary = work(staging)
            (staging / JOB_FILE).write_text(
                json.dumps(json_safe({"kind": job.kind, "label": job.label, "identity": job.identity, **summary}),
                           indent=2, sort_keys=True, default=str)
            )
            final = self.path(job.key)
            if final.exists():
                if self.done(job.key):  # a finished copy from a concurrent run: keep it
                    shutil.rmtree(staging)
                    return
                shutil.rmtree(final)  # this store's own failure record, replaced by the new outcome
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _stamp(records: list[dict[str, Any]], job: Job) -> None:
    for r in records:
        r["run_id"] = job.key


def execute_job(job: Job, stage: Path, *, registry: Registry, dataset: Any, release_dir: Path | None,
                ctx_factory: Callable[..., Any]) -> dict[str, Any]:
    """Run one job into ``stage``; return a small summary for job.json.

    ``release_dir`` is the finished distill job's folder that a utility or audit job reads.
    """
    from privbench.results import result_records, run_record, write_results, write_runs

    if job.kind == "distill":
        from privbench.engine import dataset_columns, release_columns, run_distiller
        from privbench.imaging import release_preview
        from privbench.releases import save_release
        from privbench.results import RunInfo

        ctx = ctx_factory(seed=job.seed, out_dir=stage, public=dataset.public)
        release = run_distiller(registry, job.release.method, dataset, job.release.ipc, job.release.config, ctx)
        save_release(release, stage)
        release_preview(release.images, release.labels, dataset.num_classes, stage / "preview.png")
        m = release.manifest
        info = RunInfo(job=job.label, task="distill", evaluator=job.release.method,
                       plugin_package=m["plugin_package"], plugin_version=m["plugin_version"],
                       config=job.identity, seed=job.seed, device=ctx.device,
                       warnings=list((release.provenance or {}).get("warnings", [])), elapsed_s=float(m["wall_time_s"]), run_id=job.key,
                       **dataset_columns(dataset), **release_columns(release))
        write_runs(stage / "runs.parquet", [run_record(info)])
        return {"images": len(release), "wall_time_s": m["wall_time_s"]}

    from privbench.releases import load_release

    release = load_release(release_dir)
    ctx = ctx_factory(seed=job.seed, out_dir=stage, public=dataset.public)
    if job.kind == "utility":
        from privbench.utility import UtilityConfig, evaluate_release

        config = build_config(UtilityConfig, job.options["config"], owner="utility")
        runs = evaluate_release(release, dataset, models=[job.evaluator], seeds=job.options["seeds"],
                                config=config, ctx=ctx)
    else:
        from privbench.api import AuditTarget
        from privbench.engine import make_rebuild, metric_instances, run_attack

        target = AuditTarget(
            dataset=dataset,
            release=release,
            metrics=metric_instances(registry, ctx.device, job.options["metrics"], job.options["metric_config"]),
            rebuild=make_rebuild(registry, release.manifest),
        )
        cls = registry.get("attack", job.evaluator)
        config = build_config(cls.Config, job.options["config"], owner=f"attack {job.evaluator}")
        runs = [run_attack(registry, job.evaluator, target, config, ctx)]
    records, run_rows = [], []
    for info, rows in runs:
        info.run_id = job.key
        info.job = job.label
        records += result_records(info, rows)
        run_rows.append(run_record(info))
    _stamp(records, job)
    write_results(stage / "results.parquet", records)
    write_runs(stage / "runs.parquet", run_rows)
    return {"rows": len(records)}


def collect_tables(store: JobStore, jobs: list[Job], out_dir: Path, reproduces: str | None = None) -> tuple[Path, Path]:
    """Assemble results.parquet and runs.parquet from the finished jobs, in plan order.

    ``reproduces`` (a paper's name) goes into the results table's metadata, for the report.
    """
    import pyarrow as pa

    from privbench.results import RESULTS_SCHEMA, RUNS_SCHEMA, read_table, write_table

    results, runs = [], []
    for job in jobs:
        d = store.path(job.key)
        if (d / "results.parquet").is_file():
            results.append(read_table(d / "results.parquet", RESULTS_SCHEMA, what="job results table"))
        if (d / "runs.parquet").is_file():
            runs.append(read_table(d / "runs.parquet", RUNS_SCHEMA, what="job runs table"))
    res_path, runs_path = out_dir / "results.parquet", out_dir / "runs.parquet"
    table = pa.concat_tables(results) if results else RESULTS_SCHEMA.empty_table()
    if reproduces:
        from privbench.report.paper import METADATA_KEY

        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: reproduces.encode()})
    write_table(res_path, table)
    write_table(runs_path, pa.concat_tables(runs) if runs else RUNS_SCHEMA.empty_table())
    return res_path, runs_path


@dataclass
class PreparedSuite:
    """A suite whose data loaded and whose every request was accepted: only then is anything written."""

    suite: Suite
    datasets: dict[str, Any]
    jobs: list[Job]


def prepare_suite(suite: Suite, registry: Registry, cache_dir: Path | None) -> PreparedSuite:
    """Load the data and check each release against it (an ipc larger than a class), before any output."""
    from privbench.data import load_dataset
    from privbench.engine import check_distiller_request

    datasets = {spec: load_dataset(spec, cache_dir=cache_dir) for spec in suite.datasets}
    for dataset in datasets.values():
        for rel in suite.releases:
            check_distiller_request(registry, rel.method, dataset, rel.ipc, rel.config)
    jobs = plan_jobs(suite, registry, {spec: ds.fingerprint for spec, ds in datasets.items()})
    return PreparedSuite(suite, datasets, jobs)


@dataclass
class JobSettings:
    """What a job's run context is made from, on this machine or a worker (picklable)."""

    device: str = "auto"
    quiet: bool = False
    cache_dir: Path | None = None
    show_private_images: bool = False
    threads: int | None = None


@dataclass
class JobRun:
    """What every job of a run shares: the registry, the loaded datasets and how to make a job's context."""

    registry: Registry
    datasets: dict[str, Any]
    settings: JobSettings
    ctx_factory: Callable[..., Any]
    base_ctx: Any


def job_run(registry: Registry, datasets: dict[str, Any], settings: JobSettings, executor: Any = None) -> JobRun:
    """Contexts for jobs: the run's device and cache, private figures where the data or the user allow them."""
    from privbench.engine import make_run_context

    extra = {} if executor is None else {"executor": executor}
    base = make_run_context(settings.device, 0, settings.quiet, settings.cache_dir, **extra)

    def ctx_factory(seed: int, out_dir: Path, public: bool):
        allow = bool(public or settings.show_private_images)
        return base.derive(seed=seed, out_dir=out_dir, allow_private_images=allow, warnings=[])

    return JobRun(registry, datasets, settings, ctx_factory, base)


def run_suite(prepared: PreparedSuite, registry: Registry, out_dir: Path, *, device: str, fresh: bool, quiet: bool,
              cache_dir: Path | None, show_private_images: bool, console: Any,
              executor: Any = None) -> tuple[Path, Path, dict[str, Any]]:
    """Run what is not cached on ``executor`` (default: serial), assemble the tables.

    Returns the tables' paths and the run's statistics, ``failed`` among them:
    (label, reason) of every job that failed, whose folder holds its failure record.
    """
    from privbench.executors import SerialExecutor
    from privbench.scheduler import run_jobs

    suite, jobs = prepared.suite, prepared.jobs
    out_dir = Path(out_dir)
    store = JobStore(out_dir / "jobs")
    if fresh and store.root.exists():
        shutil.rmtree(store.root)
    store.clean_partials()
    executor = executor or SerialExecutor()
    settings = JobSettings(device=device, quiet=quiet, cache_dir=cache_dir,
                           show_private_images=bool(show_private_images or suite.show_private_images),
                           threads=executor.options.threads)
    run = job_run(registry, prepared.datasets, settings, executor if executor.name != "local" else None)
    started = time.perf_counter()
    try:
        executor.start(run)
        stats = run_jobs(jobs, store, executor, run, suite.name, console)
    finally:
        executor.close()
    stats["seconds"] = time.perf_counter() - started
    res_path, runs_path = collect_tables(store, jobs, out_dir, suite.reproduces)
    (out_dir / "suite.json").write_text(
        canonical_json({"suite": suite.name, "source": str(suite.source), "raw": suite.raw,
                        "jobs": [{"key": j.key, "kind": j.kind, "label": j.label} for j in jobs]})
    )
    return res_path, runs_path, stats
