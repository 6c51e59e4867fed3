"""Stored results as experiment-tracker runs: one run per job, named after its cell, with the
job's config as parameters, its metrics, interval bounds and timings as metrics, and the full
record as an artifact (MLflow and Weights & Biases; the commands are in ``tracking_command``).

A job is logged once: its run carries the job id (MLflow: the tag ``gaia_bench.job_id``; W&B:
the run id), so logging a store again adds only the jobs that are new."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterable

from gaia_bench.errors import UsageError

JOB_TAG = "gaia_bench.job_id"
EXTRAS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}  # tracker -> (module, pip extra)


def require(tracker: str) -> Any:
    """The tracker's library, or one line naming the extra that installs it."""
    module, extra = EXTRAS[tracker]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{tracker} is not installed", f"pip install 'gaia-bench[{extra}]'") from None


def run_name(record: dict) -> str:
    cfg = record["config"]
    return "/".join(str(cfg.get(k)) for k in ("model", "init", "adaptation", "dataset", "shots")) + f"/seed{cfg.get('seed')}"


def params(record: dict) -> dict[str, str]:
    """The job config, flat: hyper-parameters as ``hp.NAME`` (values as JSON text)."""
    cfg = dict(record["config"])
    flat = {k: str(v) for k, v in cfg.items() if k != "hyperparams"}
    flat.update({f"hp.{k}": json.dumps(v, sort_keys=True) for k, v in (cfg.get("hyperparams") or {}).items()})
    flat["job_id"] = record["job_id"]
    return flat


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def metrics(record: dict) -> dict[str, float]:
    """Metrics, each metric's interval bounds (``NAME.ci_low`` / ``NAME.ci_high``), timings
    (``seconds.STAGE``), peak memory (``memory_mb.WHAT``) and the train / test sizes. NaN is left out:
    trackers disagree on it, the record artifact keeps it."""
    out: dict[str, float] = {}
    for name, value in (record.get("metrics") or {}).items():
        out[name] = _number(value)
    for name, bounds in ((record.get("interval") or {}).get("metrics") or {}).items():
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
            out[f"{name}.ci_low"], out[f"{name}.ci_high"] = _number(bounds[0]), _number(bounds[1])
    out.update({f"seconds.{k}": _number(v) for k, v in (record.get("timings") or {}).items()})
    out.update({f"memory_mb.{k}": _number(v) for k, v in (record.get("memory") or {}).items()})
    out.update({k: _number(record.get(k)) for k in ("n_train", "n_test", "trainable_params")})
    return {k: v for k, v in out.items() if v is not None}


def select(records: Iterable[dict], filters: dict[str, list[str]]) -> list[dict]:
    """Done records whose config matches every filter (a field's values are alternatives, * wildcards)."""
    return [r for r in records if r.get("status") == "done"
            and all(any(fnmatch(str(r["config"].get(k)), p) for p in patterns) for k, patterns in filters.items())]


def _record_file(record: dict, folder: Path) -> Path:
    path = folder / "record.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    return path


def log_mlflow(records: list[dict], tracking_uri: str, experiment: str, leaderboard: Path | None,
               advance: Callable[[int], None] = lambda n: None) -> tuple[int, int]:
    """Log each record not yet in ``experiment`` as one MLflow run; return (logged, already there).
    A local folder as ``tracking_uri`` uses MLflow's file store (allowed here explicitly: it needs
    no server and works offline)."""
    if "://" not in tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        tracking_uri = Path(tracking_uri).expanduser().resolve().as_uri()
    elif tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = require("mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    there = {run.data.tags.get(JOB_TAG) for run in client.search_runs([experiment_id], max_results=50_000)}
    logged = 0
    for record in records:
        if record["job_id"] not in there:
            run = client.create_run(experiment_id, run_name=run_name(record),
                                    tags={JOB_TAG: record["job_id"], "gaia_bench.status": record["status"]})
            run_id = run.info.run_id
            entities = mlflow.entities
            client.log_batch(run_id, params=[entities.Param(k, v[:6000]) for k, v in params(record).items()],
                             metrics=[entities.Metric(k, v, 0, 0) for k, v in metrics(record).items()])
            with tempfile.TemporaryDirectory() as folder:
                client.log_artifact(run_id, str(_record_file(record, Path(folder))))
            client.set_terminated(run_id)
            logged += 1
        advance(1)
    if leaderboard is not None:
        run = client.create_run(experiment_id, run_name=f"leaderboard {leaderboard.name}", tags={"gaia_bench.kind": "leaderboard"})
        client.log_artifacts(run.info.run_id, str(leaderboard), artifact_path="leaderboard")
        client.set_terminated(run.info.run_id)
    return logged, len(records) - logged


def _wandb_logged(directory: Path) -> set[str]:
    """Run ids of the offline and synced runs under ``directory/wandb`` (folders ``*-run-DATE-ID``)."""
    base = directory / "wandb"
    return {p.name.rsplit("-", 1)[-1] for p in base.glob("*run-*-*") if p.is_dir()} if base.is_dir() else set()


def log_wandb(records: list[dict], project: str, directory: Path, mode: str, leaderboard: Path | None,
              advance: Callable[[int], None] = lambda n: None) -> tuple[int, int]:
    """Log each record as one W&B run whose id is its job id (offline mode writes under
    ``directory/wandb``, for `wandb sync` later); return (logged, already there)."""
    wandb = require("wandb")
    directory.mkdir(parents=True, exist_ok=True)
    there = _wandb_logged(directory)
    logged = 0
    settings = wandb.Settings(silent=True, console="off", save_code=False)
    for record in records:
        if record["job_id"] not in there:
            run = wandb.init(project=project, id=record["job_id"], name=run_name(record), dir=str(directory), mode=mode,
                             config=params(record), tags=["gaia-bench"], reinit="create_new", settings=settings)
            run.summary.update(metrics(record))
            with tempfile.TemporaryDirectory() as folder:
                artifact = wandb.Artifact(f"record-{record['job_id']}", type="gaia-bench-record")
                artifact.add_file(str(_record_file(record, Path(folder))))
                run.log_artifact(artifact)
                run.finish()
            logged += 1
        advance(1)
    if leaderboard is not None:
        run = wandb.init(project=project, name=f"leaderboard {leaderboard.name}", dir=str(directory), mode=mode,
                         job_type="leaderboard", reinit="create_new", settings=settings)
        artifact = wandb.Artifact(f"leaderboard-{leaderboard.name}", type="leaderboard")
        artifact.add_dir(str(leaderboard))
        run.log_artifact(artifact)
        run.finish()
    return logged, len(records) - logged
