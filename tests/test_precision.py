"""Mixed precision and throughput (issue 18 §2): ``--precision`` is part of the cell (fp32 cells keep
their ids, a bf16 cell gets its own id, record and feature cache), fp16 is refused on a CPU,
``--channels-last`` gives the same features, ``--compile`` falls back aloud, the training loop runs
its forwards under autocast, and `gaia-bench profile` sweeps batch sizes and modes with peak memory,
its tables readable at 80 columns, the store's older profile rows still loading."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from rich.cells import cell_len
from torch import nn
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import UsageError
from gaia_bench.features import FeatureCache
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.plugins.reporters.lib.profiles import find_profile, load_profiles, save_profile
from gaia_bench.runner import Session, SessionJobContext, run_job
from gaia_bench.shots import parse_shot

DEFAULT_ID = "ca8557051a00cd431345"  # test_resnet / random / linear-probe / digits-lt / 10% / seed 0 / 32 px


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def job(precision: str | None = None):
    (planned,) = plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=["linear-probe"],
                      datasets=["digits-lt"], shots=[parse_shot("10%")], seeds=[0], image_size=32, precision=precision)
    return planned


def session(tmp_path, **options) -> Session:
    return Session(data_root=tmp_path / "data", device="cpu", batch_size=64, workers=0, plugin_versions={},
                   resamples=0, **{"feature_cache": None, **options})


def test_fp32_keeps_the_job_id_and_bf16_gets_its_own():
    default = job()
    assert default.job_id == job("fp32").job_id == DEFAULT_ID and "precision" not in default.config.as_dict()
    bf16 = job("bf16").config.as_dict()
    assert job("bf16").job_id != DEFAULT_ID and bf16.pop("precision") == "bf16" and bf16 == default.config.as_dict()
    from gaia_bench.runner import replan

    assert replan(job("bf16").config).job_id == job("bf16").job_id  # a cell run elsewhere plans the same id
    with pytest.raises(UsageError, match="use fp32, bf16 or fp16"):
        job("bf8")  # planned through the API: never a silent fp32 under another id


def test_a_bf16_cell_records_its_precision_and_caches_features_of_its_own(tmp_path):
    shared = session(tmp_path, feature_cache=FeatureCache(tmp_path / "features"))
    fp32, bf16 = (run_job(job(precision), shared) for precision in (None, "bf16"))
    assert fp32["status"] == bf16["status"] == "done", (fp32.get("error"), bf16.get("error"))
    assert "precision" not in fp32["config"] and bf16["config"]["precision"] == "bf16"
    assert bf16["job_id"] != fp32["job_id"] == DEFAULT_ID
    from gaia_bench.plugins.reporters.lib.leaderboard import row_key

    assert row_key(bf16) == ("test_resnet", "random", "linear-probe [bf16]") != row_key(fp32)  # its own row
    assert len(list((tmp_path / "features").glob("*.npz"))) == 4  # train and test, once per precision


def test_fp16_on_a_cpu_names_bf16_and_an_unknown_precision_names_the_choices():
    fp16 = invoke("run", "--model", "test_resnet", "--device", "cpu", "--precision", "fp16")
    assert fp16.exit_code == 2 and "--precision fp16 is for GPUs" in fp16.stderr and "use --precision bf16" in fp16.stderr
    fp8 = invoke("profile", "--model", "test_resnet", "--device", "cpu", "--precision", "fp8")
    assert fp8.exit_code == 2 and "use fp32, bf16 or fp16" in fp8.stderr


def test_channels_last_gives_the_same_features(tmp_path):
    planned = job()
    plain, last = (SessionJobContext(planned, session(tmp_path, channels_last=flag)).features("test")
                   for flag in (False, True))
    assert np.array_equal(plain, last)


def test_compile_that_fails_says_so_and_extracts_eagerly(tmp_path, monkeypatch):
    def broken(module):
        def forward(x):
            raise RuntimeError("no compiler here")
        return forward

    said: list[str] = []
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr("gaia_bench.runner.notice", said.append)
    shared, planned = session(tmp_path, compile=True), job()
    assert shared.backbone(planned, extraction=True) is shared.backbone(planned)
    assert said == ["--compile failed here, running without it: RuntimeError: no compiler here"]


class Square(nn.Module):
    """A TrainModel recording the dtype its forward computes in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.dtypes = nn.Linear(4, 2), set()

    def parameter_groups(self):
        return {"head": list(self.parameters())}

    def forward(self, inputs):
        out = self.linear(inputs)
        self.dtypes.add(out.dtype)
        return out.float().pow(2).mean()


class Noise:
    batch_size = 8

    def batches(self, steps: int, rank: int = 0, world_size: int = 1):
        from gaia_bench.plugins.adaptations.lib.training import Batch

        generator = torch.Generator().manual_seed(0)
        for _ in range(steps):
            yield Batch(torch.randn(8, 4, generator=generator), 8)


@pytest.mark.filterwarnings("ignore:.*CUDA is not available.*")
def test_the_training_loop_runs_its_forwards_under_the_precision():
    from gaia_bench.plugins.adaptations.lib.training import Recipe, fit, grad_scaler

    for precision, dtype in ((None, torch.float32), ("bf16", torch.bfloat16)):
        model = Square()
        result = fit(model, Recipe(iterations=3, lr=0.1, precision=precision), Noise())
        assert model.dtypes == {dtype} and result.steps == 3 and np.isfinite(result.last_loss)
    assert grad_scaler("cpu", "bf16") is None and grad_scaler("cuda", "bf16") is None
    assert grad_scaler("cuda", "fp16") is not None  # fp16 on CUDA scales its loss


def test_profile_sweeps_batch_sizes_and_modes_in_80_columns(tmp_path):
    db = tmp_path / "p.db"
    result = invoke("profile", "--model", "test_resnet", "--input-size", "32", "--batch-sizes", "1,2",
                    "--batch-sizes", "3", "--precision", "fp32,bf16", "--channels-last", "--repeats", "2",
                    "--warmup", "0", "--device", "cpu", "--store", str(db))
    assert result.exit_code == 0, result.output
    profiles = load_profiles(db)
    assert [(p["precision"], p["batch_size"]) for p in profiles] == [
        (precision, batch) for precision in ("float32", "bfloat16") for batch in (1, 2, 3)]
    for p in profiles:
        assert p["channels_last"] is True and p["input_size"] == 32
        assert p["ms_per_sample"] == pytest.approx(p["latency_ms"] / p["batch_size"])
        assert p["throughput_ips"] == pytest.approx(1000 / p["ms_per_sample"])
        assert p["peak_memory_mb"] >= 0 and "VmHWM" in p["peak_memory_note"]
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert sum(line.strip().startswith("test_resnet ") for line in lines) == 1 + 6  # backbones + throughput rows
    assert sum("bf16+cl" in line for line in lines) == 3


def test_older_profile_rows_migrate_and_still_match(tmp_path):
    db = tmp_path / "old.db"
    old = {"model": "test_resnet", "input_size": 32, "batch_size": 4, "device": "cpu", "device_name": "cpu-x",
           "threads": 2, "measured_at": "2026-01-01T00:00:00+00:00", "latency_ms": 8.0, "throughput_ips": 500.0}
    with sqlite3.connect(db) as conn:  # the table as the first release made it, with one row
        conn.executescript("CREATE TABLE profiles (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, "
                           "input_size INTEGER, batch_size INTEGER, device TEXT, measured_at TEXT NOT NULL, "
                           "record TEXT NOT NULL)")
        conn.execute("INSERT INTO profiles (model, input_size, batch_size, device, measured_at, record) "
                     "VALUES (?,?,?,?,?,?)", ("test_resnet", 32, 4, "cpu", old["measured_at"], json.dumps(old)))
    new = {**old, "measured_at": "2026-12-01T00:00:00+00:00", "precision": "bfloat16", "channels_last": True,
           "peak_memory_mb": 12.5}
    save_profile(db, new)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT precision, channels_last, peak_memory_mb FROM profiles ORDER BY id").fetchall()
    assert rows == [("float32", 0, None), ("bfloat16", 1, 12.5)]
    before, after = load_profiles(db)
    assert (before["precision"], before["channels_last"], before["peak_memory_mb"]) == ("float32", False, None)
    assert before["ms_per_sample"] == 2.0 and after["peak_memory_mb"] == 12.5
    conditions = dict(model="test_resnet", input_size=32, batch_size=4, device="cpu", device_name="cpu-x", threads=2)
    assert find_profile([before, after], **conditions) == before
    assert find_profile([before, after], **conditions, precision="bfloat16", channels_last=True) == after

    from gaia_bench.plugins.reporters.lib.leaderboard import pick_profile

    assert pick_profile([before, after], "test_resnet", 32) == before  # the leaderboard's latency is fp32's
