"""``finetune`` on classification, end to end through the CLI: a random-init test_resnet fine-tuned on
10% of digits-lt learns well above chance, records its schedule (3x for an un-pretrained init) and
its held-out early stopping, trains every parameter, and gives the same numbers for the same job —
also with ``--workers 2``, which is not part of the job id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaia_bench.manager import get_registries
from gaia_bench.plugins.adaptations.lib.finetune_classification import CLASSIFICATION_HYPERPARAMS
from tests.helpers import cli

pytestmark = pytest.mark.slow

RUN = ["run", "--model", "test_resnet", "--init", "random", "--adapt", "finetune", "--dataset", "digits-lt",
       "--shots", "10%", "--seed", "0", "--image-size", "32"]
CHANCE = 10.0  # digits-lt: 10 classes


def _run(root: Path, store: str, *extra: str) -> dict:
    """One CLI run into ``store`` (data shared under ``root``), and its record as `results --format json` lists it."""
    env = {"GAIA_BENCH_HOME": str(root / "home")}
    result = cli([*RUN, "--store", str(root / store), "--data-root", str(root / "data"), *extra], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = cli(["results", "--store", str(root / store), "--format", "json"], env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)["results"]
    assert len(records) == 1 and records[0]["status"] == "done", records
    return records[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("finetune")


@pytest.fixture(scope="module")
def record(root) -> dict:
    return _run(root, "a.db")


def test_fine_tuning_from_scratch_learns_digits(record):
    # Measured: top1 45.3 (seed 0). A run stopped early on a chance plateau of the small hold-out scores ~15.
    assert record["metrics"]["top1"] >= CHANCE + 15.0
    assert record["metrics"]["mean_per_class_acc"] >= CHANCE + 15.0
    assert record["n_train"] == 53 and record["n_test"] == 539
    assert {"finetune_train", "evaluate"} <= record["timings"].keys()
    hyperparams = record["config"]["hyperparams"]
    assert {**CLASSIFICATION_HYPERPARAMS, "backbone_lr_scale": 0.1, "val_share": 0.2, "patience": 5}.items() \
        - {("iters", None)} <= hyperparams.items()
    assert "iters" not in hyperparams  # an unset optional hyper-parameter stays out of the job id


def test_schedule_is_tripled_for_random_init_and_recorded(record):
    details = record["details"]
    schedule = details["schedule"]
    assert schedule["scratch_factor"] == 3
    # 41 images fit (12 held out): clamp(3 * 30 * ceil(41 / 32), 3 * 60, 3 * 600) = 180
    assert (details["n_fit"], details["n_val"]) == (41, 12) and schedule["n_train"] == 41
    assert schedule["iterations"] == 180 and 0 < details["iterations_run"] <= 180
    assert details["subset"]["n_samples"] == 53 and details["subset"]["per_class_min"] == 1

    curve = details["val_curve"]
    assert curve and curve[-1][0] == details["iterations_run"]
    best = max(top1 for _, top1 in curve)
    assert details["best_val_top1"] == best
    assert details["best_iteration"] == min(it for it, top1 in curve if top1 == best)  # ties keep the earlier
    assert details["weights_tested"] == "best held-out" and details["early_stopping"]["enabled"]

    opt = details["optimizer"]
    assert opt["name"] == "AdamW" and opt["head_lr"] == 1e-3 and opt["backbone_lr"] == pytest.approx(1e-4)
    assert opt["weight_decay"] == 0.05 and opt["label_smoothing"] == 0.1 and opt["warmup_iterations"] == 9


def test_a_fixed_step_count_runs_every_step_and_is_its_own_cell(root, record):
    fixed = _run(root, "fixed.db", "--hp", "iters=7")
    details = fixed["details"]
    assert fixed["job_id"] != record["job_id"] and fixed["config"]["hyperparams"]["iters"] == 7
    assert details["schedule"]["iterations"] == details["iterations_run"] == 7  # no floor, no scratch factor
    assert details["early_stopping"]["not_before_iteration"] == 7 and not details["early_stopping"]["stopped_early"]
    bad = cli([*RUN, "--store", str(root / "bad.db"), "--data-root", str(root / "data"), "--hp", "iters=0"],
              env={"GAIA_BENCH_HOME": str(root / "home")})
    assert bad.returncode != 0 and "--hp iters=0 is not a number of steps" in bad.stdout + bad.stderr


def test_the_whole_model_is_trained(record):
    registries = get_registries()
    backbone = registries.backbones.get("test_resnet").build()
    classes = registries.datasets.get("digits-lt").num_classes
    whole = sum(p.numel() for p in backbone.parameters()) + backbone.num_features * classes + classes
    assert record["trainable_params"] == whole


@pytest.mark.extended  # `make test-all`: the suite's 10-minute budget (README)
def test_same_job_same_numbers_whatever_the_workers(root, record):
    again = _run(root, "b.db", "--workers", "2")  # a fresh store: the same job id is not skipped
    assert again["job_id"] == record["job_id"]
    assert again["metrics"] == record["metrics"]
    assert again["details"]["val_curve"] == record["details"]["val_curve"]
