"""Results that travel: `gaia-bench track mlflow|wandb` (offline, read back through each tracker's
own API or files) and the leaderboard's Hugging Face model-index YAML."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.store import ResultsStore

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def record(init: str, value: float, seed: int, dataset: str = "digits-lt") -> dict:
    config = {"model": "test_resnet", "init": init, "adaptation": "ridge", "dataset": dataset, "dataset_version": "1",
              "task": "classification", "shots": "10%", "seed": seed, "image_size": 32,
              "protocol": "gaia-bench-shots-v1", "weights_id": f"{init}:test", "hyperparams": {"val_share": 0.2}}
    job_id = hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=10).hexdigest()
    return {
        "schema_version": 1, "job_id": job_id, "config": config, "status": "done",
        "shots": {"requested": "10%", "fraction": 0.1, "per_class": None},
        "primary_metric": "top1", "higher_is_better": True, "metrics": {"top1": value, "ece": float("nan")},
        "primary_value": value, "n_train": 50, "n_test": 100, "details": {}, "trainable_params": 10,
        "interval": {"level": 0.95, "method": "percentile bootstrap over test items", "resamples": 1000, "seed": 0,
                     "unit": "test item", "metrics": {"top1": [value - 5, value + 5]}},
        "timings": {"total_s": 1.5, "probe_fit": 0.5}, "memory": {"peak_rss_mb": 100.0},
        "environment": {"device": "cpu", "python": "3.11"}, "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
    }


RECORDS = [record("imagenet", 60.0, 0), record("imagenet", 64.0, 1), record("random", 40.0, 0)]


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as s:
        s.put_many(RECORDS)
    return path


@pytest.fixture()
def board(store, tmp_path):
    out = tmp_path / "board"
    result = runner.invoke(app, ["leaderboard", "--store", str(store), "--shots", "10%", "--out", str(out)], env=WIDE)
    assert result.exit_code == 0, result.output
    return out


def test_every_job_becomes_one_mlflow_run_once_with_the_leaderboard_as_artifacts(store, board, tmp_path):
    import mlflow

    uri = tmp_path / "mlruns"
    args = ["track", "mlflow", "--store", str(store), "--tracking-uri", str(uri), "--leaderboard", str(board)]
    first = runner.invoke(app, args, env=WIDE)
    assert first.exit_code == 0, first.output
    assert "3 job(s) logged" in first.output
    client = mlflow.tracking.MlflowClient(uri.resolve().as_uri())
    experiment = client.get_experiment_by_name("gaia-bench")
    runs = {r.data.tags.get("gaia_bench.job_id"): r for r in client.search_runs([experiment.experiment_id])}
    wanted = RECORDS[1]
    run = runs[wanted["job_id"]]
    assert run.info.run_name == "test_resnet/imagenet/ridge/digits-lt/10%/seed1"
    assert run.data.params["init"] == "imagenet" and run.data.params["hp.val_share"] == "0.2"
    assert run.data.metrics["top1"] == 64.0 and run.data.metrics["top1.ci_low"] == 59.0
    assert run.data.metrics["seconds.probe_fit"] == 0.5 and "ece" not in run.data.metrics  # NaN stays in the record
    stored = json.loads((uri.resolve() / experiment.experiment_id / run.info.run_id / "artifacts" / "record.json").read_text())
    assert stored["job_id"] == wanted["job_id"]
    boards = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("gaia_bench.kind") == "leaderboard"]
    assert len(boards) == 1
    assert {a.path for a in client.list_artifacts(boards[0].info.run_id, "leaderboard")} >= {"leaderboard/leaderboard.md"}

    again = runner.invoke(app, args[:-2], env=WIDE)
    assert again.exit_code == 0 and "0 job(s) logged" in again.output and "3 already there" in again.output


def test_every_job_becomes_one_offline_wandb_run_named_by_its_job_id(store, tmp_path):
    args = ["track", "wandb", "--store", str(store), "--dir", str(tmp_path / "wb"), "--init", "imagenet"]
    first = runner.invoke(app, args, env=WIDE)
    assert first.exit_code == 0, first.output
    assert "2 job(s) logged" in first.output
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert sorted(p.name.rsplit("-", 1)[-1] for p in runs) == sorted(r["job_id"] for r in RECORDS[:2])
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"top1.ci_high" in log and b"seconds.total_s" in log
    again = runner.invoke(app, args, env=WIDE)
    assert again.exit_code == 0 and "0 job(s) logged" in again.output and "2 already there" in again.output
    bad = runner.invoke(app, ["track", "wandb", "--store", str(store), "--mode", "cloud"], env=WIDE)
    assert bad.exit_code == 2 and "--mode offline" in bad.output


def test_a_missing_tracker_names_the_extra_that_installs_it(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    result = runner.invoke(app, ["track", "mlflow", "--store", str(store)], env=WIDE)
    assert result.exit_code == 2
    assert "mlflow is not installed" in result.output and "pip install 'gaia-bench[mlflow]'" in result.output


def test_the_leaderboard_writes_model_index_yaml_per_model_and_init(board):
    document = yaml.safe_load((board / "model-index" / "test_resnet--imagenet.yaml").read_text())
    (entry,) = document["model-index"]
    assert entry["name"] == "test_resnet (imagenet init)"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-classification" and result["dataset"]["name"] == "digits-lt"
    (metric,) = result["metrics"]
    assert metric["type"] == "accuracy" and metric["value"] == 62.0 and metric["verified"] is False
    assert metric["args"]["seeds"] == 2 and metric["args"]["shots"] == "10%" and metric["args"]["adaptation"] == "ridge"
    low, high = metric["args"]["interval_95"]
    assert low < 62.0 < high
    assert sorted(p.name for p in (board / "model-index").iterdir()) == ["test_resnet--imagenet.yaml",
                                                                          "test_resnet--random.yaml"]
