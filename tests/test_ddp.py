"""``--gpus-per-job N``: finetune on classification trains data-parallel (torch DDP) in N processes.

Here, without GPUs, as N gloo processes (``--device cpu``), through the CLI: a BatchNorm-free
backbone (test_convnext) fine-tuned in 2 processes gives the 1-process result -- same job id, same
held-out curve, same test metrics -- because the ranks split the very global batches one process
draws. A rank that hits an unreadable image fails the job with that error within seconds (the
other rank, blocked in a collective, is stopped), and asking for more GPUs than exist is refused
with the fix.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import UsageError
from gaia_bench.store import ResultsStore
from tests.helpers import cli

pytestmark = pytest.mark.slow

# 10% of digits-lt (41 images fit, 12 held out), 12 steps (4 x 3 for a random init), 32 px.
RUN = ["run", "--model", "test_convnext", "--init", "random", "--adapt", "finetune", "--dataset", "digits-lt",
       "--shots", "10%", "--seed", "0", "--image-size", "32", "--hp", "min_iters=4", "--hp", "max_iters=4",
       "--hp", "epochs=1", "--hp", "lr=0.003"]
GLOO_2 = ["--gpus-per-job", "2", "--device", "cpu"]
ENV = {"OMP_NUM_THREADS": "1"}  # one thread per process: 2 cores, 2 ranks


def _run(root: Path, store: str, *extra: str, data: Path | None = None) -> tuple[int, dict, str]:
    env = {**ENV, "GAIA_BENCH_HOME": str(root / "home")}
    result = cli([*RUN, "--store", str(root / store), "--data-root", str(data or root / "data"), *extra], env=env)
    with ResultsStore(root / store) as stored:
        records = stored.query()
    assert len(records) == 1, result.stdout + result.stderr
    return result.returncode, records[0], result.stdout + result.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def one_process(root) -> dict:
    code, record, output = _run(root, "one.db")
    assert code == 0 and record["status"] == "done", output
    return record


def test_two_gloo_processes_give_the_one_process_result(root, one_process):
    code, record, output = _run(root, "two.db", *GLOO_2)
    assert code == 0 and record["status"] == "done", output
    assert record["job_id"] == one_process["job_id"]  # the world size is how a cell runs, not which cell
    assert one_process["details"]["distributed"] == {"world_size": 1, "backend": None}
    distributed = record["details"]["distributed"]
    assert distributed["world_size"] == 2 and distributed["backend"] == "gloo"
    assert distributed["devices"] == ["cpu", "cpu"] and distributed["batch_per_rank"] == [16, 16]

    # Measured: top1 26.35 both ways (chance 10), identical held-out curves. Floating-point sums in
    # another order may flip a test image or two (0.19 points each), no more.
    assert one_process["metrics"]["top1"] >= 20.0
    for name, value in one_process["metrics"].items():
        assert record["metrics"][name] == pytest.approx(value, abs=0.5), name
    one, two = one_process["details"], record["details"]
    assert two["iterations_run"] == one["iterations_run"] == 12
    assert np.allclose(np.asarray(two["val_curve"]), np.asarray(one["val_curve"]))
    assert two["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=1e-3)
    assert two["optimizer"]["batch"] == one["optimizer"]["batch"] == 32  # the global batch is kept


@pytest.mark.extended  # `make test-all`: the suite's 10-minute budget (README)
def test_a_crashing_rank_fails_the_job_with_its_error_not_a_hang(root, one_process):
    from gaia_bench.manager import get_registries
    from gaia_bench.protocol import stratified_holdout
    from gaia_bench.shots import parse_shot, sample_subset

    data = root / "broken-data"
    shutil.copytree(root / "data", data)
    spec = get_registries().datasets.get("digits-lt")
    train = spec.load(data / spec.directory, spec.train_split)
    keys = [s.key for s in train.samples]
    indices = sample_subset(train.label_sets(), keys, parse_shot("10%"), 0, train.single_label)
    fit, _ = stratified_holdout(np.asarray(train.labels())[indices], 0.2, 0)
    broken = train.samples[indices[fit[0]]].path  # an image the first epoch trains on, in one rank's shard
    broken.write_bytes(b"not an image")

    start = time.monotonic()
    code, record, output = _run(root, "broken.db", *GLOO_2, data=data)
    assert time.monotonic() - start < 300  # not the collective timeout (30 min)
    assert code == 1 and record["status"] == "failed", output
    assert f"cannot read image {broken}" in record["error"], record["error"]
    assert " of 2]" in record["error"] and "replace or delete the file" in record["error"], record["error"]
    assert "Traceback" not in output, output  # the failing rank reports through the job, not the terminal


def test_more_gpus_than_there_are_is_refused_with_the_fix(tmp_path, monkeypatch):
    import torch

    from gaia_bench.plugins.adaptations.lib.distributed import plan_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, [*RUN, "--store", str(tmp_path / "r.db"), "--gpus-per-job", "2",
                                      "--device", "cuda"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert "--gpus-per-job 2, but only 1 CUDA device(s) are usable from cuda" in text, text
    assert "use --gpus-per-job 1 or fewer, or --device cpu" in text, text
    # where the job runs (a submitit job on another node) the same check is made before starting ranks
    with pytest.raises(UsageError, match="only 1 CUDA device"):
        plan_launch("cuda", 2)
    assert plan_launch("cuda", 1).devices == ("cuda:0",) and plan_launch("cpu", 3).backend == "gloo"

    refused = CliRunner().invoke(app, [*RUN, "--store", str(tmp_path / "r.db"), "--gpus-per-job", "-1"],
                                 env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "--gpus-per-job -1 is out of range" in " ".join(refused.output.split())
