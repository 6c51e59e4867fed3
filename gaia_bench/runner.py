"""Running one job: resolve data and features, call the adaptation, build the stored record."""

from __future__ import annotations

import resource
import sys
import time
import traceback
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.errors import DataError, GaiaBenchError
from gaia_bench.features import FeatureCache, cache_key, extract_features, samples_fingerprint
from gaia_bench.imagedata import transform_id
from gaia_bench.jobs import Job, JobContext, Progress, data_dir
from gaia_bench.provenance import environment
from gaia_bench.store import SCHEMA_VERSION


class Session:
    """State shared by the jobs of one command: loaded splits, the current backbone, features."""

    def __init__(
        self,
        *,
        data_root: Path,
        device: str,
        batch_size: int,
        workers: int,
        feature_cache: FeatureCache | None,
        plugin_versions: dict[str, str],
        progress: Progress | None = None,
    ) -> None:
        self.data_root = data_root
        self.device = device
        self.batch_size = batch_size
        self.workers = workers
        self.feature_cache = feature_cache
        self.plugin_versions = plugin_versions
        self.progress = progress or Progress()
        self._splits: dict[tuple[str, str], Samples] = {}
        self._backbone_key: tuple[str, str] | None = None
        self._backbone: Any = None
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        self.prepared: set[str] = set()

    # ------------------------------------------------------------------ data
    def ensure_prepared(self, dataset: DatasetSpec) -> Path:
        """The dataset's directory; materialized first when missing and the plugin can make it.
        (Full checks are `gaia-bench datasets verify`; a run reads what is there.)"""
        root = data_dir(self.data_root, dataset)
        if dataset.name not in self.prepared and not root.exists():
            if dataset.prepare is None:
                raise DataError(f"dataset '{dataset.name}' is not under {root}",
                                dataset.prepare_hint or f"run `gaia-bench datasets prepare {dataset.name}`")
            advance = self.progress.start(f"preparing dataset {dataset.name}", None)
            dataset.prepare(root)
            advance(1)
            self.progress.finish()
        self.prepared.add(dataset.name)
        return root

    def load_split(self, dataset: DatasetSpec, split: str) -> Samples:
        key = (dataset.name, split)
        if key not in self._splits:
            root = self.ensure_prepared(dataset)
            self._splits[key] = dataset.load(root, split)
        return self._splits[key]

    # ------------------------------------------------------------------ models
    def backbone(self, job: Job) -> Any:
        key = (job.config.model, job.config.weights_id)
        if self._backbone_key != key:
            self._backbone = None  # free the previous one first
            self._backbone = job.init.initialize(job.backbone)
            self._backbone_key = key
        return self._backbone

    def features(self, ctx: JobContext, split: str) -> np.ndarray:
        job = ctx.job
        samples = self.load_split(job.dataset, split).samples
        spec = job.backbone
        size = job.config.image_size
        key = cache_key({
            "backbone": spec.name, "weights": job.config.weights_id, "dataset": job.dataset.name,
            "dataset_version": job.dataset.version, "split": split, "samples": samples_fingerprint(samples),
            "transform": transform_id(size, spec.mean, spec.std),
        })
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        keys = [s.key for s in samples]
        feats = self.feature_cache.load(key, keys) if self.feature_cache else None
        if feats is None:
            backbone = self.backbone(job)
            advance = self.progress.start(f"features {spec.name} / {job.dataset.name}:{split}", len(samples))
            start = time.perf_counter()
            feats = extract_features(backbone, samples, image_size=size, mean=spec.mean, std=spec.std,
                                     device=self.device, batch_size=self.batch_size, workers=self.workers,
                                     on_batch=advance)
            ctx.stage_seconds["features"] = ctx.stage_seconds.get("features", 0.0) + time.perf_counter() - start
            self.progress.finish()
            if self.feature_cache:
                self.feature_cache.save(key, feats, keys, {"backbone": spec.name, "dataset": job.dataset.name, "split": split})
        self._features[key] = feats
        while len(self._features) > 4:
            self._features.popitem(last=False)
        return feats


def _peak_memory_mb(device: str) -> dict[str, float]:
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        import torch

        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_job(job: Job, session: Session) -> dict:
    """Run one job and return its record (status 'done' or 'failed'; never raises for job errors
    except KeyboardInterrupt, so one bad job does not stop a grid)."""
    ctx = JobContext(job=job, session=session, progress=session.progress)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "job_id": job.job_id,
        "config": job.config.as_dict(),
        "shots": {"requested": job.config.shots, "fraction": job.shot.fraction, "per_class": job.shot.per_class},
        "primary_metric": job.primary_metric,
        "higher_is_better": job.task.metric(job.primary_metric).higher_is_better,
        "started_at": _now(),
        "environment": environment(session.plugin_versions, session.device),
    }
    if session.device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        result = job.adaptation.run(ctx)
    except GaiaBenchError as exc:
        record.update(status="failed", error=str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded with its traceback, the grid goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(*sys.exc_info())))
    else:
        record.update(
            status="done",
            metrics={k: float(v) for k, v in result.metrics.items()},
            primary_value=float(result.metrics[job.primary_metric]),
            n_train=result.n_train,
            n_test=result.n_test,
            details=result.details,
            trainable_params=result.trainable_params,
        )
        ctx.stage_seconds.update(result.stage_seconds)
    record["timings"] = {"total_s": round(time.perf_counter() - start, 3),
                         **{k: round(v, 3) for k, v in ctx.stage_seconds.items()}}
    record["memory"] = _peak_memory_mb(session.device)
    record["finished_at"] = _now()
    return record
