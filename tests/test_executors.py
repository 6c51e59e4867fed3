"""Beyond one process: the submitit executor (its local executor: there is no Slurm here) runs a
grid end to end in subprocesses, a cell killed mid-run is resubmitted and the store ends complete,
the local executor's process pool, `gaia-bench status`, --retry-failed, executor options, and
concurrent writers (8 processes) that leave exactly the expected rows."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gaia_bench.cli.run import result_files_dir
from gaia_bench.store import ResultsStore, write_result_file
from tests.helpers import cli, fake_distribution

CONST_PLUGIN = """
import os
import signal
import time
from pathlib import Path

import gaia_bench


def run(ctx):
    hp = ctx.hyperparams
    if hp["die"] and hp["die_seed"] in (-1, ctx.config.seed):
        marks = Path(os.environ["GB_TEST_MARKS"])
        marks.mkdir(parents=True, exist_ok=True)
        attempts = len(list(marks.glob(ctx.job.job_id + ".*")))
        (marks / f"{ctx.job.job_id}.{attempts}").touch()
        if attempts < hp["die"]:
            os.kill(os.getpid(), signal.SIGKILL)  # dies hard, mid-run, leaving no result
    if hp["fail"]:
        raise RuntimeError("the cell's own error")
    time.sleep(hp["sleep"])
    value = hp["value"] + ctx.config.seed
    return gaia_bench.AdaptationResult(metrics={m.name: value for m in ctx.job.task.metrics},
                                       details={"pid": os.getpid()})


def build(weights=None):
    raise RuntimeError("const-net has no weights: only const-test runs on it")


@gaia_bench.hookimpl
def register_backbones(register):  # a backbone name that resolves without importing a model zoo
    register(gaia_bench.BackboneSpec(name="const-net", build=build, source="tests", input_size=32))


@gaia_bench.hookimpl
def register_adaptations(register):
    register(gaia_bench.AdaptationSpec(name="const-test", description="a fixed score, no backbone (tests)",
             task_types=("classification",), run=run,
             hyperparams={"value": 50.0, "die": 0, "die_seed": -1, "fail": False, "sleep": 0.0}))
"""

GRID = ["--model", "const-net", "--init", "random", "--dataset", "digits-lt"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, str]:
    """The test adaptation installed as a distribution (subprocesses load it from its entry point),
    and one prepared data root for the module."""
    root = tmp_path_factory.mktemp("executors")
    env = fake_distribution(root / "site", "gaia-bench-const", "0.1", {"const_plugin": CONST_PLUGIN},
                            {"const": "const_plugin"})
    data = root / "data"
    prepared = cli(["datasets", "prepare", "digits-lt", "--data-root", str(data)])
    assert prepared.returncode == 0, prepared.stderr
    return {**env, "GB_DATA": str(data), "GB_MARKS": str(root / "marks")}


def run_cli(site: dict, tmp_path: Path, args: list[str], marks: str = "marks"):
    env = {k: v for k, v in site.items() if not k.startswith("GB_")}
    env.update(GAIA_BENCH_HOME=str(tmp_path / "home"), GB_TEST_MARKS=str(tmp_path / marks))
    return cli([*args, "--data-root", site["GB_DATA"]] if args[0] == "run" else args, env=env, timeout=300)


def stored(store: Path) -> list[dict]:
    with ResultsStore(store) as s:
        assert s.integrity_ok()
        return s.query()


def flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- submitit
def test_submitit_local_runs_a_grid_in_subprocesses(site, tmp_path):
    """A trivial cell and a real one (test_resnet linear probe, 10% of digits-lt at 32 px), each
    in a process of its own, both at once; then `status`."""
    store = tmp_path / "r.db"
    args = ["run", "--model", "test_resnet", "--init", "random", "--image-size", "32", "--dataset", "digits-lt",
            "--adapt", "const-test,linear-probe", "--store", str(store), "--executor", "submitit", "--max-parallel", "2"]
    first = run_cli(site, tmp_path, args)
    err = flat(first.stderr)
    assert first.returncode == 0, first.stderr
    assert "no Slurm here (srun is not on PATH): submitit's local executor runs the jobs on this machine, 2 at a time" in err
    assert "2 job(s) planned; 0 already finished" in err and "2 cell(s) · executor submitit" in err  # the live table
    records = stored(store)
    assert len(records) == 2 and {r["status"] for r in records} == {"done"}
    from gaia_bench.jobs import JobConfig

    for rec in records:
        assert JobConfig(**rec["config"]).job_id == rec["job_id"]  # what the child ran is the driver's job
        assert rec["execution"]["executor"] == "submitit" and rec["execution"]["cluster"] == "local"
        assert Path(rec["log"]).is_file()
    by_adapt = {r["config"]["adaptation"]: r for r in records}
    assert by_adapt["const-test"]["primary_value"] == 50.0 and by_adapt["const-test"]["details"]["pid"] != os.getpid()
    real = by_adapt["linear-probe"]
    assert real["n_train"] == 53 and real["metrics"]["top1"] > 20  # a real probe, above chance (10 classes)
    assert not list(result_files_dir(tmp_path / "r.jobs").glob("*.json"))  # merged, then removed

    status = run_cli(site, tmp_path, ["status", "--store", str(store), "--by", "adaptation"])
    assert status.returncode == 0, status.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:6]]
            for line in status.stdout.splitlines() if line.startswith("│")}
    assert rows["const-test"] == ["0", "1", "0", "1"] and rows["linear-probe"] == ["0", "1", "0", "1"]


def test_killed_cell_is_resubmitted_and_the_store_ends_complete(site, tmp_path):
    store = tmp_path / "r.db"
    args = ["run", *GRID, "--adapt", "const-test", "--hp", "die=1", "--store", str(store), "--executor", "submitit"]
    result = run_cli(site, tmp_path, args)
    assert result.returncode == 0, result.stderr
    assert "died without a result; resubmitting it (attempt 2 of 2)" in flat(result.stderr)
    (rec,) = stored(store)
    assert rec["status"] == "done" and rec["execution"]["attempt"] == 2
    assert len(list((tmp_path / "marks").iterdir())) == 2  # the cell started twice


@pytest.mark.extended  # `make test-all`: the suite's 10-minute budget (README)
def test_failed_cell_is_recorded_with_its_log_then_retried(site, tmp_path):
    """Without resubmission (retries=0) the killed cell is recorded as failed with its log path;
    `status` shows it, a rerun skips it, and a rerun with --retry-failed completes the store."""
    store = tmp_path / "r.db"
    args = ["run", *GRID, "--adapt", "const-test", "--hp", "die=1", "--store", str(store),
            "--executor", "submitit", "-X", "retries=0", "-X", "poll_s=0.2"]
    first = run_cli(site, tmp_path, args)
    assert first.returncode == 1
    assert "1 job(s) failed" in first.stderr and "rerun with --retry-failed" in flat(first.stderr)
    (rec,) = stored(store)
    assert rec["status"] == "failed" and "died without a result" in rec["error"]
    log = Path(rec["log"])
    assert log.is_file() and rec["execution"]["cluster"] == "local"

    status = run_cli(site, tmp_path, ["status", "--store", str(store)])
    assert status.returncode == 0
    assert f"job {rec['job_id']}" in status.stdout and f"log: {log}" in status.stdout
    assert "died without a result" in status.stdout and "add --retry-failed to rerun them" in status.stdout

    skipped = run_cli(site, tmp_path, args)
    err = flat(skipped.stderr)
    assert skipped.returncode == 0 and "1 failed earlier (skipped; --retry-failed reruns them); 0 to run" in err
    assert "failed in an earlier run and were skipped" in err

    retried = run_cli(site, tmp_path, [*args, "--retry-failed"])
    assert retried.returncode == 0, retried.stderr
    assert "1 failed earlier (retried); 1 to run" in flat(retried.stderr)
    (rec,) = stored(store)
    assert rec["status"] == "done"


# --------------------------------------------------------------------------- local process pool
def test_local_pool_runs_cells_in_workers_and_isolates_a_dying_one(site, tmp_path):
    """--max-parallel 2 runs cells in worker processes; the cell that kills its worker breaks the
    pool, the cells then running are rerun one at a time, and every cell ends done."""
    store = tmp_path / "r.db"
    result = run_cli(site, tmp_path, ["run", *GRID, "--adapt", "const-test", "--hp", "die=1", "--hp", "die_seed=1",
                                      "--seed", "0", "--seed", "1", "--seed", "2", "--store", str(store),
                                      "--max-parallel", "2"])
    assert result.returncode == 0, result.stderr
    assert "a worker process died" in result.stderr
    records = stored(store)
    assert len(records) == 3 and {r["status"] for r in records} == {"done"}
    assert len(list((tmp_path / "marks").iterdir())) == 2  # only seed 1 died, once


@pytest.fixture()
def const_hooks() -> dict:
    """The test plugin's hook functions, for registering it in this process."""
    namespace: dict = {}
    exec(CONST_PLUGIN.replace("@gaia_bench.hookimpl", ""), namespace)  # noqa: S102
    return namespace


def test_executor_options_are_checked(register_plugin, const_hooks, tmp_path, monkeypatch):
    import gaia_bench
    from gaia_bench.cli import app

    class Const:
        register_backbones = staticmethod(gaia_bench.hookimpl(const_hooks["register_backbones"]))
        register_adaptations = staticmethod(gaia_bench.hookimpl(const_hooks["register_adaptations"]))

    register_plugin(Const(), "const-options-test")
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    real = ["run", *GRID, "--adapt", "const-test", "--store", str(tmp_path / "x.db")]
    cases = [
        (["--slurm-partition", "gpu"], "--slurm-partition does not apply to executor 'local'", "use --executor submitit"),
        (["--executor", "submitit", "-X", "bogus=1"], "--executor-option bogus does not apply to executor 'submitit'",
         "executor 'submitit' takes: array_size"),
        (["--executor", "submitit", "-X", "retries=lots"], "submitit option retries='lots' is not a whole number",
         "e.g. --executor-option retries=1"),
        (["--max-parallel", "0"], "--max-parallel 0 is out of range", "use 1 or more"),
        (["--executor", "submitit", "-X", "cluster=slurm"], "cluster=slurm, but Slurm's srun is not on PATH here",
         "drop cluster=slurm"),
    ]
    for extra, message, hint in cases:
        result = CliRunner().invoke(app, [*real, *extra], env={"COLUMNS": "200"})
        text = flat(result.output)
        assert result.exit_code == 2 and message in text and hint in text and "Traceback" not in text, text


def test_seeds_take_comma_lists_like_every_other_multi_value_option(register_plugin, const_hooks, tmp_path,
                                                                    monkeypatch):
    import gaia_bench
    from gaia_bench.cli import app

    class Plugin:
        register_backbones = staticmethod(gaia_bench.hookimpl(const_hooks["register_backbones"]))
        register_adaptations = staticmethod(gaia_bench.hookimpl(const_hooks["register_adaptations"]))

    register_plugin(Plugin(), "comma-seeds-test")
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    args = ["run", *GRID, "--adapt", "const-test", "--store", str(tmp_path / "r.db"), "--seed", "0,1", "--seed", "2"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert sorted(r["config"]["seed"] for r in stored(tmp_path / "r.db")) == [0, 1, 2]


def test_a_sequential_executor_runs_jobs_here_and_refuses_max_parallel(register_plugin, const_hooks, tmp_path,
                                                                       monkeypatch):
    """A third-party executor gets ``execute(jobs, run_job, options)``; one that does not declare
    ``parallel`` is told --max-parallel does not apply to it."""
    import gaia_bench
    from gaia_bench.cli import app

    calls = []

    class SequentialPlugin:
        @gaia_bench.hookimpl
        def register_executors(self, register):
            def execute(jobs, run_job, options):
                for job in jobs:
                    calls.append(job.job_id)
                    yield run_job(job)

            register(gaia_bench.ExecutorSpec(name="seq-test", description="one job at a time", execute=execute))

        register_backbones = staticmethod(gaia_bench.hookimpl(const_hooks["register_backbones"]))
        register_adaptations = staticmethod(gaia_bench.hookimpl(const_hooks["register_adaptations"]))

    register_plugin(SequentialPlugin(), "seq-executor-test")
    monkeypatch.setenv("GAIA_BENCH_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    args = ["run", *GRID, "--adapt", "const-test", "--store", str(tmp_path / "r.db"), "--executor", "seq-test"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and stored(tmp_path / "r.db")[0]["job_id"] == calls[0]
    refused = runner.invoke(app, [*args, "--max-parallel", "2"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "executor 'seq-test' runs one job at a time" in flat(refused.output)


def test_a_cell_replanned_elsewhere_must_keep_its_job_id():
    from dataclasses import replace

    from gaia_bench.runner import Cell, SessionSettings, replan, run_cell
    from gaia_bench.errors import GaiaBenchError
    from gaia_bench.jobs import plan
    from gaia_bench.manager import get_registries
    from gaia_bench.cli.common import parse_shots

    (job,) = plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=["linear-probe"],
                  datasets=["digits-lt"], shots=parse_shots(["10%"]), seeds=[3], image_size=32)
    assert replan(job.config).job_id == job.job_id
    other = replace(job.config, weights_id="random:some-other-weights")
    with pytest.raises(GaiaBenchError, match="differing: weights_id"):
        replan(other)
    settings = SessionSettings(data_root="/nonexistent", device="cpu", batch_size=8, workers=0, feature_cache=None)
    record = run_cell(Cell(other, settings))
    assert record["status"] == "failed" and record["job_id"] == other.job_id
    assert "cannot plan the job where it ran" in record["error"]


# --------------------------------------------------------------------------- the store under concurrent writers
def _record(job_id: str, status: str = "done", finished_at: str = "2025-01-01T00:00:00+00:00") -> dict:
    return {"job_id": job_id, "status": status, "finished_at": finished_at, "primary_metric": "top1",
            "primary_value": 1.0, "metrics": {"top1": 1.0},
            "config": {"model": "m", "init": "i", "adaptation": "a", "dataset": "d", "task": "classification",
                       "shots": "10%", "seed": 0}}


N_WRITERS, PER_WRITER = 8, 40


def _file_writer(directory: str, worker: int) -> None:
    for i in range(PER_WRITER):
        write_result_file(directory, _record(f"w{worker}-{i}"))


def _db_writer(path: str, worker: int) -> None:
    with ResultsStore(path) as store:
        for i in range(PER_WRITER):
            store.put(_record(f"w{worker}-{i}"))


def _spawn(target, arg) -> list:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=(arg, w)) for w in range(N_WRITERS)]
    for p in procs:
        p.start()
    return procs


def test_eight_concurrent_job_writers_lose_nothing(tmp_path):
    """8 processes write per-job result files while the driver merges them as they come."""
    spool = tmp_path / "r.jobs" / "results"
    store = ResultsStore(tmp_path / "r.db")
    procs = _spawn(_file_writer, str(spool))
    merged = 0
    while any(p.is_alive() for p in procs):
        merged += store.merge_result_files(spool)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    merged += store.merge_result_files(spool)
    expected = {f"w{w}-{i}" for w in range(N_WRITERS) for i in range(PER_WRITER)}
    assert merged == len(expected) == store.count()
    assert {r["job_id"] for r in store.query()} == expected and store.integrity_ok()
    assert not list(spool.iterdir())  # nothing left behind, no temporary file either
    store.close()


def test_eight_concurrent_store_writers_lose_nothing(tmp_path):
    """8 processes put records into one SQLite store at once (WAL, busy timeout, retries)."""
    path = tmp_path / "r.db"
    ResultsStore(path).close()
    procs = _spawn(_db_writer, str(path))
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT job_id, status FROM results").fetchall()
    assert sorted(rows) == sorted((f"w{w}-{i}", "done") for w in range(N_WRITERS) for i in range(PER_WRITER))


def test_merging_result_files_keeps_the_best_and_newest(tmp_path):
    spool = tmp_path / "spool"
    with ResultsStore(tmp_path / "r.db") as store:
        store.put(_record("a", "done", "2025-01-02T00:00:00+00:00"))
        store.put(_record("b", "failed", "2025-01-02T00:00:00+00:00"))
        write_result_file(spool, _record("a", "failed", "2025-01-03T00:00:00+00:00"))  # never replaces done
        write_result_file(spool, _record("b", "failed", "2025-01-01T00:00:00+00:00"))  # older: kept out
        write_result_file(spool, _record("c", "done"))
        (spool / "broken.json").write_text("{not json")
        assert store.merge_result_files(spool) == 1
        assert store.get("a")["status"] == "done" and store.get("b")["finished_at"].startswith("2025-01-02")
        assert store.get("c")["status"] == "done"
        assert sorted(p.name for p in spool.iterdir()) == ["broken.bad"]
        write_result_file(spool, _record("b", "done", "2025-01-01T00:00:00+00:00"))  # done beats failed
        assert store.merge_result_files(spool) == 1 and store.get("b")["status"] == "done"
