"""Running one planned job (a grid *cell*) in another process: a worker of a process pool, a
submitit job on this machine or on a Slurm node.

Such a process cannot share the driver's in-memory session, so a :class:`Cell` carries only a
picklable description -- the job's :class:`~gaia_bench.jobs.JobConfig` and the run's
:class:`SessionSettings` -- and calling it rebuilds the rest there: the plugin registries (the
process must see the same plugins, e.g. the same installed distributions), the one job re-planned
from the config (its id must equal the driver's, or the cell fails saying why), and a session. The
record is written as a per-job result file (see :mod:`gaia_bench.store`) and returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gaia_bench.errors import GaiaBenchError
from gaia_bench.jobs import JobConfig
from gaia_bench.splits import SplitManifest
from gaia_bench.store import write_result_file


@dataclass(frozen=True)
class SessionSettings:
    """What a process needs to build a :class:`gaia_bench.runner.Session` like the driver's."""

    data_root: str
    device: str  # as requested: "auto" is resolved where the job runs
    batch_size: int
    workers: int
    feature_cache: str | None  # directory, or None for --no-cache
    plugin_versions: Mapping[str, str] = field(default_factory=dict)
    on_bad_sample: str = "fail"  # --on-bad-sample
    processes_per_job: int = 1  # data-parallel processes of a training job (--gpus-per-job)
    upstream: str | None = None  # the pool the inits pretrain on (--upstream, or the suite's)
    init_overrides: Mapping[str, Any] = field(default_factory=dict)  # --init-hp
    predictions_dir: str | None = None  # where test predictions are kept (beside the store)
    resamples: int = 1000  # bootstrap resamples of a record's interval (--resamples)
    channels_last: bool = False  # --channels-last
    compile: bool = False  # --compile


@dataclass(frozen=True)
class Cell:
    """A picklable zero-argument callable that runs one job where it is called and returns its record."""

    config: JobConfig
    settings: SessionSettings
    result_dir: str | None = None  # where the record is written as <job_id>.json
    model: str | None = None  # the backbone as looked up (``SOURCE:name``); default: the config's name
    split: SplitManifest | None = None  # --split: the manifest itself, so the cell needs not its file

    def __call__(self) -> dict:
        return run_cell(self)


def failure_record(config: JobConfig, error: str, extra: Mapping[str, Any] | None = None, job: Any = None) -> dict:
    """The record of a job that failed before or outside :func:`gaia_bench.runner.run_job` (its
    process died, or it could not be planned where it ran)."""
    from gaia_bench.runner import now, record_header

    return {**record_header(config, job), "status": "failed", "error": error, "finished_at": now(), **(extra or {})}


_SESSIONS: dict[str, Any] = {}  # one per process and settings: a pool worker reuses loaded data


def _session(settings: SessionSettings) -> Any:
    from gaia_bench.devices import resolve_device
    from gaia_bench.features import FeatureCache
    from gaia_bench.runner import Session

    key = repr(settings)  # the settings hold dicts: not hashable themselves
    if key not in _SESSIONS:
        _SESSIONS.clear()  # free the previous one's data and backbone
        _SESSIONS[key] = Session(
            data_root=Path(settings.data_root), device=resolve_device(settings.device),
            batch_size=settings.batch_size, workers=settings.workers,
            feature_cache=FeatureCache(Path(settings.feature_cache)) if settings.feature_cache else None,
            plugin_versions=dict(settings.plugin_versions), on_bad_sample=settings.on_bad_sample,
            processes_per_job=settings.processes_per_job, resamples=settings.resamples,
            predictions_dir=Path(settings.predictions_dir) if settings.predictions_dir else None,
            channels_last=settings.channels_last, compile=settings.compile)
    return _SESSIONS[key]


def replan(config: JobConfig, settings: SessionSettings | None = None, model: str | None = None,
           split: SplitManifest | None = None) -> Any:
    """The job of ``config``, planned again through this process's registries (with the driver's
    init context: pool, pretraining hyper-parameters, data root, and its --split manifest)."""
    from gaia_bench.api import InitContext
    from gaia_bench.init_context import upstream_pool
    from gaia_bench.jobs import plan
    from gaia_bench.manager import get_registries
    from gaia_bench.shots import parse_shot

    registries = get_registries()
    settings = settings or SessionSettings(data_root="", device="cpu", batch_size=1, workers=0, feature_cache=None)
    context = InitContext(upstream=upstream_pool(registries, settings.upstream, None),
                          **({"data_root": Path(settings.data_root)} if settings.data_root else {}))
    jobs = plan(registries, models=[model or config.model], inits=[config.init], adaptations=[config.adaptation],
                datasets=[config.dataset], shots=[parse_shot(config.shots)], seeds=[config.seed],
                image_size=config.image_size, overrides=dict(config.hyperparams), init_context=context,
                init_overrides=dict(settings.init_overrides), split=split, precision=config.precision)
    if len(jobs) != 1:
        raise GaiaBenchError(f"re-planning the cell gave {len(jobs)} jobs instead of 1",
                             "check that the job's process sees the same plugins as the driver")
    job = jobs[0]
    if job.job_id != config.job_id:
        here, there = job.config.as_dict(), config.as_dict()
        changed = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))
        raise GaiaBenchError(
            f"the job planned here has id {job.job_id}, the driver planned {config.job_id} "
            f"(differing: {', '.join(changed) or 'nothing visible'})",
            "run the jobs with the same gaia-bench, plugins and weights files as the driver (a shared environment)")
    return job


def run_cell(cell: Cell) -> dict:
    """Run ``cell`` in this process: re-plan, run, write the result file, return the record."""
    from gaia_bench.runner import run_job

    try:
        job = replan(cell.config, cell.settings, cell.model, cell.split)
    except GaiaBenchError as exc:
        record = failure_record(cell.config, f"cannot plan the job where it ran: {exc}", {"host": os.uname().nodename})
    else:
        record = run_job(job, _session(cell.settings))
    if cell.result_dir:
        write_result_file(cell.result_dir, record)
    return record
