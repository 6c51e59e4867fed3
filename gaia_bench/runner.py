"""Running one job: resolve data and features, call the adaptation, build the stored record; and
running one as a *cell* in another process (a pool worker, a submitit job here or on a Slurm node),
which cannot share the driver's session: a :class:`Cell` carries the job's JobConfig and the run's
:class:`SessionSettings` and rebuilds there the registries, the job re-planned from the config (its
id must equal the driver's, or the cell fails saying why) and a session; the record is written as a
per-job result file (:mod:`gaia_bench.store`) and returned."""

from __future__ import annotations

import copy
import json
import os
import resource
import sys
import time
import traceback
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaia_bench.api import DatasetSpec, InitContext, JobData, Progress, Samples
from gaia_bench.backbone import Backbone
from gaia_bench.console import notice
from gaia_bench.devices import autocast, resolve_device
from gaia_bench.errors import GaiaBenchError
from gaia_bench.features import FeatureCache, cache_key, extract_features, files_fingerprint, samples_fingerprint
from gaia_bench.imagedata import read_errors, transform_id, where
from gaia_bench.init_context import upstream_pool
from gaia_bench.jobs import Job, JobConfig, data_dir, plan, prepared_data_dir
from gaia_bench.manager import get_registries
from gaia_bench.paths import atomic_write
from gaia_bench.predictions import RESAMPLES, bootstrap_interval, save_predictions
from gaia_bench.protocol import draw
from gaia_bench.provenance import environment
from gaia_bench.shots import parse_shot
from gaia_bench.splits import SplitManifest, split_entry
from gaia_bench.store import SCHEMA_VERSION, write_result_file


def compiled(module: Any, example: torch.Tensor) -> Any:
    """``torch.compile(module)``, run once on ``example`` (compilation is lazy: a missing or failing
    compiler shows only there); on failure a notice says why and the eager module is returned."""
    try:
        with torch.inference_mode():
            (fast := torch.compile(module))(example)
        return fast
    except Exception as exc:  # noqa: BLE001 - any compiler failure: said, then eager
        notice(f"--compile failed here, running without it: {type(exc).__name__}: {str(exc).strip()[:200]}")
        return module


@dataclass(kw_only=True, eq=False)
class Session:
    """State shared by the jobs of one command: loaded splits, the current backbone, features."""

    data_root: Path
    device: str
    batch_size: int
    workers: int
    feature_cache: FeatureCache | None
    plugin_versions: dict[str, str]
    progress: Progress | None = None  # None: report nothing
    on_bad_sample: str = "fail"  # "fail": a job stops at an unreadable image; "skip": left out
    processes_per_job: int = 1  # data-parallel processes of a training job (--gpus-per-job)
    predictions_dir: Path | None = None  # where test predictions are kept (None: not kept)
    resamples: int = RESAMPLES  # bootstrap resamples of a record's interval (0: no interval)
    channels_last: bool = False  # --channels-last: the backbone's weights so (its convolutions follow)
    compile: bool = False  # --compile: extraction runs torch.compile's backbone forward

    def __post_init__(self) -> None:
        self.progress = self.progress or Progress()
        self.skipped: dict[tuple[str, str], list[dict]] = {}  # (dataset, split) -> samples left out
        self._splits: dict[tuple[str, str], Samples] = {}
        self._backbone_key: tuple[str, str] | None = None
        self._backbone: Any = None
        self._extractor: Any = None  # the backbone as extraction runs it (compiled with --compile)
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        self._fingerprints: dict[tuple[str, str], dict[str, str]] = {}  # a loaded split's keys/labels and files

    # ------------------------------------------------------------------ data
    def load_split(self, dataset: DatasetSpec, split: str) -> Samples:
        """A split, read once per session as it is on disk (full checks: `gaia-bench datasets verify`)."""
        key = (dataset.name, split)
        if key not in self._splits:
            samples = dataset.load(prepared_data_dir(self.data_root, dataset, self.progress), split)
            if self.on_bad_sample == "skip":
                samples = self._drop_unreadable(dataset, split, samples)
            self._splits[key] = samples
        return self._splits[key]

    def _drop_unreadable(self, dataset: DatasetSpec, split: str, samples: Samples) -> Samples:
        """``samples`` without those whose image does not decode, each reported with its path and
        remembered in ``skipped`` (the job's record counts them)."""
        bad = self._unreadable(dataset, split, samples)
        self.skipped[(dataset.name, split)] = [
            {"split": split, "path": where(samples.samples[i]), "error": error} for i, error in sorted(bad.items())]
        for entry in self.skipped[(dataset.name, split)]:
            notice(f"skipping unreadable image {entry['path']} ({dataset.name}:{split}): {entry['error']}")
        return samples.subset([i for i in range(len(samples)) if i not in bad]) if bad else samples

    def _unreadable(self, dataset: DatasetSpec, split: str, samples: Samples) -> dict[int, str]:
        """Index -> error of every sample that does not decode. The answer is kept beside the
        feature cache, keyed by the split and its files' sizes and times, so a later run reads it
        instead of decoding every image again."""
        key = cache_key({"scan": dataset.name, "dataset_version": dataset.version, "split": split,
                         "samples": samples_fingerprint(samples.samples),
                         "files": files_fingerprint(samples.samples)})
        cached = self.feature_cache.directory / "unreadable" / f"{key}.json" if self.feature_cache else None
        if cached is not None:
            with suppress(OSError, ValueError):  # missing or damaged: scan again
                return {int(k): v for k, v in json.loads(cached.read_text()).items()}
        bad: dict[int, str] = {}
        advance = self.progress.start(f"checking images {dataset.name}:{split}", len(samples))
        loader = DataLoader(samples.samples, batch_size=256, num_workers=self.workers, collate_fn=read_errors)
        for start, errors in zip(range(0, len(samples), 256), loader):
            bad.update((start + i, e) for i, e in enumerate(errors) if e)
            advance(len(errors))
        self.progress.finish()
        if cached is not None:
            with suppress(OSError), atomic_write(cached, "w") as f:  # only a cache
                json.dump({str(k): v for k, v in bad.items()}, f)
        return bad

    # ------------------------------------------------------------------ models
    def backbone(self, job: Job, extraction: bool = False) -> Any:
        """The job's backbone, built once per model and weights; ``extraction``: as feature extraction
        runs it, torch.compile'd (on first use) with ``compile``."""
        key = (job.config.model, job.config.weights_id)
        if self._backbone_key != key:
            self._backbone = self._extractor = None  # free the previous one first
            self._backbone = job.init.initialize(job.backbone, job.init_context)
            if self.channels_last:  # a trainable copy inherits the layout
                self._backbone = self._backbone.to(memory_format=torch.channels_last)
            self._backbone_key = key
        if extraction and self._extractor is None:
            size = job.config.image_size
            with autocast(self.device, job.config.precision):
                self._extractor = compiled(self._backbone.eval().to(self.device), torch.zeros(
                    2, 3, size, size, device=self.device)) if self.compile else self._backbone
        return self._extractor if extraction else self._backbone

    def weights_report(self, job: Job) -> dict | None:
        """The loader's report on the job's weights (missing and unexpected keys), when this session
        built its backbone and the loader wrote one (e.g. GAIA checkpoints)."""
        same = self._backbone_key == (job.config.model, job.config.weights_id)
        return getattr(self._backbone, "weights_report", None) if same else None

    def _fingerprint(self, dataset: DatasetSpec, split: str, samples) -> dict[str, str]:
        """The loaded split's fingerprints, hashed and stat-ed once per session, not once per job."""
        key = (dataset.name, split)
        if key not in self._fingerprints:
            self._fingerprints[key] = {"samples": samples_fingerprint(samples), "files": files_fingerprint(samples)}
        return self._fingerprints[key]

    def features(self, ctx: SessionJobContext, split: str) -> np.ndarray:
        job = ctx.job
        samples = self.load_split(job.dataset, split).samples
        spec = job.backbone
        size = job.config.image_size
        key = cache_key({
            "backbone": spec.name, "weights": job.config.weights_id, "dataset": job.dataset.name,
            "dataset_version": job.dataset.version, "split": split, **self._fingerprint(job.dataset, split, samples),
            "transform": transform_id(size, spec.mean, spec.std),
        }, job.config.precision)
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        keys = [s.key for s in samples]
        feats = self.feature_cache.load(key, keys) if self.feature_cache else None
        if feats is None:
            backbone = self.backbone(job, extraction=True)
            advance = self.progress.start(f"features {spec.name} / {job.dataset.name}:{split}", len(samples))
            start = time.perf_counter()
            feats = extract_features(backbone, samples, image_size=size, mean=spec.mean, std=spec.std,
                                     device=self.device, batch_size=self.batch_size, workers=self.workers,
                                     on_batch=advance, precision=job.config.precision)
            ctx.stage_seconds["features"] = ctx.stage_seconds.get("features", 0.0) + time.perf_counter() - start
            self.progress.finish()
            if self.feature_cache:
                self.feature_cache.save(key, feats, keys, {"backbone": spec.name, "dataset": job.dataset.name, "split": split})
        self._features[key] = feats
        while len(self._features) > 4:
            self._features.popitem(last=False)
        return feats


@dataclass
class SessionJobContext:
    """The :class:`gaia_bench.api.JobContext` an adaptation gets: its job, and the session's data,
    backbone and feature cache, shared with the command's other jobs."""

    job: Job
    session: Session
    progress: Progress = field(default_factory=Progress)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _data: JobData | None = field(default=None, repr=False)

    # What api.JobContext documents, read from the job and the session.
    config = property(lambda self: self.job.config)
    hyperparams = property(lambda self: self.job.config.hyperparams)
    device = property(lambda self: self.session.device)
    processes = property(lambda self: int(getattr(self.session, "processes_per_job", 1)))
    batch_size = property(lambda self: int(self.session.batch_size))
    workers = property(lambda self: int(self.session.workers))

    def load(self, split: str) -> Samples:
        return self.session.load_split(self.job.dataset, split)

    def upstream_pool(self, name: str) -> DatasetSpec:
        return self.job.registries.upstream_pool(name)  # from the registries the job was planned with

    @property
    def data(self) -> JobData:
        if self._data is None:  # drawn once, by run_job before the adaptation runs (gaia_bench.protocol)
            job = self.job
            self._data = draw(job.task, job.shot, self.config.seed, self.hyperparams, self.load,
                              job.dataset.train_split, job.dataset.test_split, job.split)
        return self._data

    def build_backbone(self) -> Backbone:
        return self.session.backbone(self.job)

    def trainable_backbone(self) -> Backbone:
        # a deep copy with every parameter trainable: the shared backbone stays untouched
        return copy.deepcopy(self.session.backbone(self.job)).requires_grad_(True)

    def features(self, split: str) -> np.ndarray:
        return self.session.features(self, split)


def peak_memory_mb(device: str) -> dict[str, float]:
    """This process's peak resident memory and, on CUDA, peak allocated GPU memory, in MiB."""
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def now() -> str:
    """A record's time stamp: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_header(config: JobConfig, job: Job | None = None) -> dict[str, Any]:
    """What every record of a job starts with (a finished one, a failed one, one whose process died)."""
    header: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "job_id": config.job_id, "config": config.as_dict()}
    if job is not None:
        header["shots"] = {"requested": config.shots, "fraction": job.shot.fraction, "per_class": job.shot.per_class}
        header["primary_metric"] = job.primary_metric
        header["higher_is_better"] = job.task.metric(job.primary_metric).higher_is_better
    return header


def score_record(job: Job, session: Session, predictions, data: JobData) -> dict[str, Any]:
    """What a job's test predictions add to its record: the stored file's reference, the bootstrap
    interval of every metric, and the per-class breakdown with the training split's class counts."""
    task, test = job.task, data.test
    extra: dict[str, Any] = {}
    if session.predictions_dir is not None:
        try:
            if saved := save_predictions(session.predictions_dir, job.job_id, task, predictions, test):
                extra["predictions"] = saved
        except OSError as exc:  # the metrics stand; only rescoring this job later is lost
            extra["predictions_error"] = f"not kept: {exc.strerror or exc} ({session.predictions_dir})"
    if session.resamples > 0 and len(test):
        extra["interval"] = bootstrap_interval(task, predictions, test, job.dataset, session.resamples)
    if task.per_class is not None and test.classes:
        def counts(samples: Samples) -> list[int]:
            return np.bincount([c for s in samples.label_sets() for c in set(s)],
                               minlength=len(samples.classes)).tolist()

        values = task.per_class(predictions, test, job.dataset)
        extra["per_class"] = {"values": [None if np.isnan(v) else round(float(v), 6) for v in values],
                              "train_count": counts(data.train), "test_count": counts(test)}
    return extra


def run_job(job: Job, session: Session) -> dict:
    """Run one job and return its record (status 'done' or 'failed'; never raises for job errors
    except KeyboardInterrupt, so one bad job does not stop a grid)."""
    ctx = SessionJobContext(job=job, session=session, progress=session.progress)
    record: dict[str, Any] = {**record_header(job.config, job), "started_at": now(),
                              "environment": environment(session.plugin_versions, session.device)}
    record.update(job.init.provenance(job.backbone, job.init_context))  # "weights" (a file) or "pretraining"
    if session.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        data = ctx.data  # the protocol: subset, held-out part and test split, drawn once here
        record["data_source"] = job.dataset.provenance(data_dir(session.data_root, job.dataset))
        ctx.stage_seconds["data"] = time.perf_counter() - start
        result = job.adaptation.run(ctx)
    except GaiaBenchError as exc:
        record.update(status="failed", error=str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded with its traceback, the grid goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(*sys.exc_info())))
    else:
        metrics = dict(result.metrics)
        if result.predictions is not None:  # the task scores them: its metrics, its interval
            metrics.update(job.task.evaluate(result.predictions, data.test, job.dataset))
            record.update(score_record(job, session, result.predictions, data))
        record.update(status="done", metrics={k: float(v) for k, v in metrics.items()},
                      primary_value=float(metrics[job.primary_metric]), n_train=len(data.indices),
                      n_test=len(data.test), split=split_entry(data.subset, job.split),
                      details={"subset": data.stats, **result.details},
                      trainable_params=result.trainable_params)
        ctx.stage_seconds.update(result.stage_seconds)
    if report := session.weights_report(job):  # what loading published weights left out (missing / unexpected keys)
        record["weights_report"] = report
    skipped = [entry for (name, _), entries in session.skipped.items() if name == job.dataset.name for entry in entries]
    record["skipped_samples"] = len(skipped)  # unreadable images left out (--on-bad-sample skip)
    if skipped:
        record["skipped"] = skipped[:100]
    record["timings"] = {"total_s": round(time.perf_counter() - start, 3),
                         **{k: round(v, 3) for k, v in ctx.stage_seconds.items()}}
    record["memory"] = peak_memory_mb(session.device)
    record["finished_at"] = now()
    return record


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class SessionSettings:
    """What a process needs to build a :class:`Session` like the driver's."""

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
    """The record of a job that failed before or outside :func:`run_job` (its
    process died, or it could not be planned where it ran)."""
    return {**record_header(config, job), "status": "failed", "error": error, "finished_at": now(), **(extra or {})}


_SESSIONS: dict[str, Any] = {}  # one per process and settings: a pool worker reuses loaded data


def _session(settings: SessionSettings) -> Any:
    key = repr(settings)  # the settings hold dicts: not hashable themselves
    if key not in _SESSIONS:
        _SESSIONS.clear()  # free the previous one's data and backbone
        same = ("batch_size", "workers", "on_bad_sample", "processes_per_job", "resamples", "channels_last", "compile")
        _SESSIONS[key] = Session(
            data_root=Path(settings.data_root), device=resolve_device(settings.device),
            feature_cache=FeatureCache(Path(settings.feature_cache)) if settings.feature_cache else None,
            predictions_dir=Path(settings.predictions_dir) if settings.predictions_dir else None,
            plugin_versions=dict(settings.plugin_versions), **{name: getattr(settings, name) for name in same})
    return _SESSIONS[key]


def replan(config: JobConfig, settings: SessionSettings | None = None, model: str | None = None,
           split: SplitManifest | None = None) -> Any:
    """The job of ``config``, planned again through this process's registries (with the driver's
    init context: pool, pretraining hyper-parameters, data root, and its --split manifest)."""
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
    try:
        job = replan(cell.config, cell.settings, cell.model, cell.split)
    except GaiaBenchError as exc:
        record = failure_record(cell.config, f"cannot plan the job where it ran: {exc}", {"host": os.uname().nodename})
    else:
        record = run_job(job, _session(cell.settings))
    if cell.result_dir:
        write_result_file(cell.result_dir, record)
    return record
