"""Third-party task types and reporters: a plugin's ``register_tasks`` adds a task type with its own
metric, direction and ``evaluate`` that `gaia-bench run` scores jobs with; a plugin's
``register_reporters`` adds a format that `gaia-bench results --format` renders with."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import gaia_bench
from gaia_bench.cli import app
from gaia_bench.store import ResultsStore

runner = CliRunner()
AGES = {"train": [3.0, 5.0, 7.0, 9.0], "test": [4.0, 10.0]}  # the toy dataset's targets, per split


def mean_absolute_error(predictions, test, dataset) -> dict[str, float]:
    """The task's official metric: one number per test image, in test order."""
    return {"mae": sum(abs(p - s.target) for p, s in zip(predictions, test.samples)) / len(test)}


def load_ages(root: Path, split: str) -> gaia_bench.Samples:
    samples = [gaia_bench.Sample(key=f"{split}/{i}.png", path=root / split / f"{i}.png", target=age)
               for i, age in enumerate(AGES[split])]
    return gaia_bench.Samples(samples, classes=[])


def predict_mean(ctx) -> gaia_bench.AdaptationResult:
    """Predicts the mean target of the images it fits on, scored by the job's own task."""
    fit = ctx.data.fit_samples.samples
    mean = sum(s.target for s in fit) / len(fit)
    metrics = ctx.job.task.evaluate([mean] * len(ctx.data.test), ctx.data.test, ctx.job.dataset)
    return gaia_bench.AdaptationResult(metrics=metrics, details={"mean": mean})


def train_mean_head(ctx, train_backbone: bool) -> gaia_bench.AdaptationResult:
    """The task's own head: a constant, the mean target (what linear-probe and finetune run)."""
    result = predict_mean(ctx)
    result.details["backbone_trained"] = train_backbone
    return result


class RegressionToy:
    @gaia_bench.hookimpl
    def register_tasks(self, register):
        register(gaia_bench.TaskSpec(
            name="regression-toy", description="predict one number per image",
            metrics=[gaia_bench.MetricInfo("mae", higher_is_better=False, description="mean absolute error")],
            primary_metric="mae", evaluate=mean_absolute_error, train_head=train_mean_head))

    @gaia_bench.hookimpl
    def register_datasets(self, register):
        register(gaia_bench.DatasetSpec(name="toy-ages", task="regression-toy", description="ages of toy images",
                                        load=load_ages, verify=lambda root: [], splits={"train": 4, "test": 2}))

    @gaia_bench.hookimpl
    def register_adaptations(self, register):
        register(gaia_bench.AdaptationSpec(name="predict-mean", description="the mean of the fit targets",
                                           task_types=("regression-toy",), run=predict_mean))


def test_a_plugin_task_type_is_listed_and_scores_its_jobs_with_its_own_evaluate(register_plugin, tmp_path):
    assert register_plugin(RegressionToy(), "regression-toy-plugin").ok
    listing = runner.invoke(app, ["tasks"], env={"COLUMNS": "250"})
    line = next(l for l in listing.stdout.splitlines() if "regression-toy" in l)
    assert "mae (↓)" in line and "predict one number per image" in line
    assert "regression-toy" in runner.invoke(app, ["adaptations"], env={"COLUMNS": "250"}).stdout

    for split, ages in AGES.items():
        (tmp_path / "data" / "toy-ages" / split).mkdir(parents=True)
        for i in range(len(ages)):
            (tmp_path / "data" / "toy-ages" / split / f"{i}.png").touch()
    store = tmp_path / "r.db"
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--init", "random", "--adapt", "predict-mean",
                                 "--dataset", "toy-ages", "--shots", "100%", "--data-root", str(tmp_path / "data"),
                                 "--store", str(store), "--no-cache"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        (record,) = s.query(dataset="toy-ages")
    assert record["status"] == "done", record.get("error")
    assert record["config"]["task"] == "regression-toy"
    assert (record["primary_metric"], record["higher_is_better"]) == ("mae", False)
    assert record["n_train"] == 4 and record["details"]["mean"] == 6.0  # 100%, nothing held out
    assert record["metrics"] == {"mae": 3.0}  # (|4 - 6| + |10 - 6|) / 2, by the task's evaluate


def render_tsv(records: list[dict]) -> str:
    lines = ["job_id\tdataset\tmetric\tvalue"]
    lines += [f"{r['job_id']}\t{r['config']['dataset']}\t{r['primary_metric']}\t{r['primary_value']}" for r in records]
    return "\n".join(lines) + "\n"


class TsvReporter:
    @gaia_bench.hookimpl
    def register_reporters(self, register):
        register(gaia_bench.ReporterSpec("tsv", "tab-separated: job, dataset, primary metric, value", render=render_tsv))


def _record(job_id: str, dataset: str, value: float) -> dict:
    config = {"model": "m", "init": "random", "adaptation": "linear-probe", "dataset": dataset,
              "task": "classification", "shots": "10%", "seed": 0}
    return {"schema_version": 1, "job_id": job_id, "status": "done", "config": config, "primary_metric": "top1",
            "higher_is_better": True, "metrics": {"top1": value}, "primary_value": value, "n_train": 5,
            "timings": {"total_s": 1.0}, "finished_at": "2026-01-01T00:00:01+00:00"}


def test_a_plugin_reporter_renders_results_for_the_results_command(register_plugin, tmp_path):
    store = tmp_path / "r.db"
    with ResultsStore(store) as s:
        s.put(_record("a1", "digits-lt", 47.31))
        s.put(_record("b2", "lfw-faces", 80.0))
    unknown = runner.invoke(app, ["results", "--store", str(store), "--format", "tsv"])
    assert unknown.exit_code != 0 and "tsv" in unknown.output  # not a format before the plugin is

    assert register_plugin(TsvReporter(), "tsv-reporter").ok
    out = runner.invoke(app, ["results", "--store", str(store), "--format", "tsv"])
    assert out.exit_code == 0, out.output
    assert out.stdout == "job_id\tdataset\tmetric\tvalue\na1\tdigits-lt\ttop1\t47.31\nb2\tlfw-faces\ttop1\t80.0\n"
    only = runner.invoke(app, ["results", "--store", str(store), "--format", "tsv", "--dataset", "lfw*"])
    assert only.stdout.splitlines()[1:] == ["b2\tlfw-faces\ttop1\t80.0"]
    listing = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"}).stdout
    assert "tsv" in next(l for l in listing.splitlines() if "tsv-reporter" in l)


def test_linear_probe_and_finetune_run_a_plugin_task_through_its_train_head(register_plugin, tmp_path):
    """Adaptations that train the task's head do not list task types: a new task type with a
    ``train_head`` runs under them; one without is refused with the reason."""
    assert register_plugin(RegressionToy(), "regression-toy-plugin").ok
    for split, ages in AGES.items():
        (tmp_path / "data" / "toy-ages" / split).mkdir(parents=True)
    store = tmp_path / "r.db"
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--init", "random", "--adapt", "linear-probe,finetune",
                                 "--dataset", "toy-ages", "--shots", "100%", "--data-root", str(tmp_path / "data"),
                                 "--store", str(store), "--no-cache"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        records = {r["config"]["adaptation"]: r for r in s.query(dataset="toy-ages")}
    assert records["linear-probe"]["details"]["backbone_trained"] is False
    assert records["finetune"]["details"]["backbone_trained"] is True
    assert records["finetune"]["n_train"] == 4 and records["finetune"]["metrics"]["mae"] > 0
    refused = runner.invoke(app, ["run", "--model", "test_resnet", "--adapt", "tsds", "--dataset", "toy-ages",
                                  "--data-root", str(tmp_path / "data"), "--store", str(store)], env={"COLUMNS": "250"})
    assert refused.exit_code == 2 and "does not support regression-toy" in refused.output
