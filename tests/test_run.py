"""End to end through the CLI: a run on the embedded dataset, skip-on-rerun, --force, the feature
cache shared by shots and seeds, results listing/export/import, a corrupt image, kill -9 and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaia_bench.store import ResultsStore
from tests.helpers import cli, fake_distribution

FAST = ["--model", "test_resnet", "--image-size", "32", "--dataset", "digits-lt"]


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    """A private cache home (data, features, default store) for one test."""
    return {"GAIA_BENCH_HOME": str(tmp_path / "home")}


def test_run_grid_then_skip_then_force(env, tmp_path):
    store = tmp_path / "results.db"
    args = ["run", *FAST, "--shots", "10%,100%", "--seed", "0", "--seed", "1", "--store", str(store)]
    first = cli(args, env=env)
    assert first.returncode == 0, first.stderr
    assert "4 job(s) planned; 0 already finished" in " ".join(first.stderr.split())
    assert "results (model test_resnet · " in first.stdout and "metric top1" in first.stdout  # constant: the title
    assert len([line for line in first.stdout.splitlines() if line.startswith(("10% ", "100% "))]) == 4
    with ResultsStore(store) as s:
        records = s.query()
    assert len(records) == 4 and {r["status"] for r in records} == {"done"}
    by_shot = {r["config"]["shots"]: r for r in records if r["config"]["seed"] == 0}
    assert by_shot["100%"]["n_train"] == 514 and by_shot["10%"]["n_train"] == 53
    sub = by_shot["10%"]["details"]["subset"]
    assert (sub["per_class_min"], sub["per_class_max"]) == (1, 13)  # the long tail survives
    rec = by_shot["10%"]
    assert rec["environment"]["versions"]["torch"] and "gaia_bench.plugins.adaptations.linear_probe" in rec["environment"]["plugins"]
    assert rec["config"]["weights_id"] == "random:torch.manual_seed(0)" and rec["memory"]["peak_rss_mb"] > 0
    numerics = rec["environment"]["numerics"]  # what decides the last bits (README "Reproducibility")
    assert {"cpu", "cpu_flags", "blas", "aten_capability", "threads", "interop_threads", "mkldnn", "deterministic",
            "variables"} <= numerics.keys()
    assert numerics["threads"] >= 1 and numerics["aten_capability"] and numerics["deterministic"] is False
    # the backbone ran once per split: one cache file each for train and test
    assert len(list((Path(env["GAIA_BENCH_HOME"]) / "features").glob("*.npz"))) == 2

    again = cli(args, env=env)
    assert again.returncode == 0 and "4 already finished" in " ".join(again.stderr.split())
    assert "0 to run" in again.stderr and again.stdout == first.stdout

    forced = cli(["run", *FAST, "--shots", "10%", "--seed", "0", "--store", str(store), "--force"], env=env)
    assert forced.returncode == 0 and "1 to run" in forced.stderr
    with ResultsStore(store) as s:
        assert s.count() == 4
        rerun = s.query(shots="10%", seed=0)[0]
    assert rerun["metrics"] == by_shot["10%"]["metrics"]  # deterministic given the seed


def test_results_list_filter_export_import(env, tmp_path):
    store = tmp_path / "a.db"
    assert cli(["run", *FAST, "--shots", "1%,10%", "--store", str(store)], env=env).returncode == 0
    listed = cli(["results", "--store", str(store), "--shots", "10%"], env=env)
    assert listed.returncode == 0 and listed.stdout.count("test_resnet") == 1 and "| top1" in listed.stdout
    csv_out = cli(["results", "--store", str(store), "--format", "csv"], env=env).stdout
    assert csv_out.splitlines()[0].startswith("model,init,adaptation") and len(csv_out.splitlines()) == 3

    exported = cli(["results", "export", "--json", "--store", str(store)], env=env)
    doc = json.loads(exported.stdout)
    assert doc["kind"] == "gaia-bench-results" and len(doc["results"]) == 2
    group_level = cli(["results", "--store", str(store), "export", "--json"], env=env)  # --store before the verb
    assert json.loads(group_level.stdout) == doc
    path = tmp_path / "export.json"
    assert cli(["results", "export", "--json", "--store", str(store), "--out", str(path)], env=env).returncode == 0

    other = tmp_path / "b.db"
    first = cli(["results", "import", str(path), "--store", str(other)], env=env)
    assert "2 imported, 0 already present" in first.stdout
    second = cli(["results", "import", str(path), "--store", str(other)], env=env)
    assert "0 imported, 2 already present" in second.stdout
    doc["results"][0]["metrics"]["top1"] = 1.0
    path.write_text(json.dumps(doc))
    third = cli(["results", "import", str(path), "--store", str(other)], env=env)
    assert "conflict:" in third.stdout and doc["results"][0]["job_id"] in third.stdout
    with ResultsStore(other) as s:
        assert s.get(doc["results"][0]["job_id"])["metrics"]["top1"] != 1.0


def test_an_image_changed_after_its_features_were_cached_is_extracted_again(env, tmp_path):
    """The feature cache is keyed by each file's size and modification time as well as the sample
    keys and labels: a replaced image is never scored with its old features."""
    from PIL import Image

    data = tmp_path / "data"

    def run(store: str) -> dict:
        result = cli(["run", *FAST, "--data-root", str(data), "--store", str(tmp_path / store)], env=env)
        assert result.returncode == 0, result.stderr
        with ResultsStore(tmp_path / store) as s:
            return s.query()[0]

    assert "features" in run("first.db")["timings"]  # extracted, then cached
    assert "features" not in run("second.db")["timings"]  # the cache answers
    image = sorted((data / "digits-lt" / "test" / "3").iterdir())[0]
    Image.new("L", (32, 32), 255).save(image)  # same name, new content
    assert "features" in run("third.db")["timings"]  # extracted again


def test_corrupt_image_fails_the_job_with_its_path(env, tmp_path):
    data = tmp_path / "data"
    assert cli(["datasets", "prepare", "digits-lt", "--data-root", str(data)], env=env).returncode == 0
    victim = data / "digits-lt" / "test" / "3"
    bad = sorted(victim.iterdir())[0]
    bad.write_bytes(b"not a png at all")
    verify = cli(["datasets", "verify", "digits-lt", "--data-root", str(data)], env=env)
    assert verify.returncode == 1 and f"altered file {bad}" in " ".join(verify.stdout.split())
    result = cli(["run", *FAST, "--data-root", str(data), "--store", str(tmp_path / "r.db"), "--no-cache"], env=env)
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1 and "Traceback" not in text
    assert f"cannot read image {bad}" in text and "1 job(s) failed" in text
    with ResultsStore(tmp_path / "r.db") as s:
        assert s.query()[0]["status"] == "failed"


SLOW_PLUGIN = """
import time
import numpy as np
import gaia_bench

def run(ctx):
    data = ctx.data
    time.sleep(float(ctx.hyperparams["sleep"]))
    majority = np.bincount(data.subset_labels()).argmax()
    metrics = ctx.job.task.evaluate([int(majority)] * len(data.test), data.test, ctx.job.dataset)
    return gaia_bench.AdaptationResult(metrics=metrics)

@gaia_bench.hookimpl
def register_adaptations(register):
    register(gaia_bench.AdaptationSpec(name="slow-majority", description="majority class after a pause",
             task_types=("classification",), run=run, hyperparams={"sleep": 1.5}))
"""


def _wait_for_done(store: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if store.exists():
            try:
                with sqlite3.connect(store) as con:
                    if con.execute("SELECT COUNT(*) FROM results WHERE status='done'").fetchone()[0] >= n:
                        return
            except sqlite3.OperationalError:
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("no job finished in time")


@pytest.mark.parametrize("how", ["kill -9", pytest.param("ctrl-c", marks=pytest.mark.extended)])
def test_killed_run_loses_nothing_and_resumes(env, tmp_path, how):
    plugin_env = fake_distribution(tmp_path / "site", "gaia-bench-slow", "0.1", {"slow_plugin": SLOW_PLUGIN},
                                   {"slow": "slow_plugin"})
    full_env = {**os.environ, **env, **plugin_env, "COLUMNS": "200"}
    store = tmp_path / "r.db"
    args = [sys.executable, "-m", "gaia_bench", "run", *FAST, "--adapt", "slow-majority", "--shots", "10%",
            "--seed", "0", "--seed", "1", "--seed", "2", "--seed", "3",
            "--store", str(store)]
    proc = subprocess.Popen(args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_done(store, 1, proc)
    proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if how == "ctrl-c":
        assert proc.returncode == 130 and "interrupted:" in err and "run the same command again" in " ".join(err.split())
    else:
        assert proc.returncode == -signal.SIGKILL
    with ResultsStore(store) as s:
        assert s.integrity_ok()
        finished = [r for r in s.query() if r["status"] == "done"]
    assert 1 <= len(finished) < 4
    resumed = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} already finished" in " ".join(resumed.stderr.split())
    with ResultsStore(store) as s:
        assert s.count() == 4 and all(r["status"] == "done" for r in s.query())
