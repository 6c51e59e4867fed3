"""Grid-scale planning and storage, and what running cells out of process costs.

1. A 100,000-cell grid (10 backbones x 5 adaptations x 4 datasets x 5 shots x 100 seeds, plugins
   that need no model zoo): planning it (job ids included), recording the plan in the store,
   putting 100,000 finished records in one transaction, skip-finished (the stored status of every
   planned job id), `gaia-bench status`'s per-cell counts, and the leaderboard (reading every
   record back and building the tables).
2. Per-cell overhead of the executors on N trivial cells (a fixed score, no backbone) through the
   real CLI: in this process one after another (the baseline), the local executor's process pool
   (--max-parallel 2) and submitit's local executor (--max-parallel 2, one process per cell).
   Each command is also rerun with every cell finished, and that fixed cost (start-up, planning,
   the store) is subtracted: per cell = (wall - fixed) / N; ratios are against the baseline of
   this same run.

On 2 cores, other load changes the numbers a lot. Usage: python benchmarks/grid.py [--cells 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLUGIN = """
import os
import gaia_bench


def build(weights=None):
    raise RuntimeError("bench-net has no weights")


def run(ctx):
    value = 50.0 + ctx.config.seed % 7
    return gaia_bench.AdaptationResult(metrics={m.name: value for m in ctx.job.task.metrics})


@gaia_bench.hookimpl
def register_backbones(register):
    for i in range(10):
        register(gaia_bench.BackboneSpec(name=f"bench-net-{i}", build=build, source="bench", input_size=32))


@gaia_bench.hookimpl
def register_adaptations(register):
    for i in range(5):
        register(gaia_bench.AdaptationSpec(name=f"bench-a{i}", description="a fixed score", run=run,
                                           task_types=("classification",), hyperparams={"lr": 0.1 * (i + 1)}))
"""

DATASETS = ["digits-lt", "fashion-mnist-lt", "lfw-faces", "textures-lt"]
SHOTS = ["1%", "2%", "5%", "10%", "100%"]


def install_plugin(site: Path) -> dict[str, str]:
    """The bench plugin as an installed distribution, seen by this process and its children."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "bench_grid_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "gaia_bench_grid_bench-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gaia-bench-grid-bench\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gaia_bench]\nbench = bench_grid_plugin\n")
    sys.path.insert(0, str(site))
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
           "GAIA_BENCH_NO_ENTRYPOINTS": ""}
    os.environ.update(env)
    return env


def timed(label: str, fn, rows: list):
    start = time.perf_counter()
    out = fn()
    rows.append((label, time.perf_counter() - start))
    return out


def record_for(job, i: int) -> dict:
    """A record shaped like run_job's (same keys and sizes), without running anything."""
    c = job.config
    value = 40.0 + (i % 50) * 0.7
    return {
        "schema_version": 1, "job_id": job.job_id, "config": c.as_dict(),
        "shots": {"requested": c.shots, "fraction": job.shot.fraction, "per_class": job.shot.per_class},
        "primary_metric": "top1", "higher_is_better": True, "status": "done",
        "metrics": {"top1": value, "mean_per_class_acc": value - 3.0}, "primary_value": value,
        "n_train": 53, "n_test": 1283, "details": {"subset": {"per_class_min": 1, "per_class_max": 13}},
        "trainable_params": 5130, "timings": {"total_s": 0.8, "features": 0.5}, "memory": {"peak_rss_mb": 612.3},
        "started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:00:01+00:00",
        "environment": {"host": "bench", "python": "3.11.7", "device": "cpu",
                        "versions": {"torch": "2.x", "timm": "1.x", "numpy": "1.x"}, "plugins": {"bench": "0.1"}},
    }


def grid_scale(work: Path) -> None:
    from gaia_bench.jobs import plan
    from gaia_bench.plugins.reporters.lib.leaderboard import build_leaderboard, merge_sources
    from gaia_bench.manager import get_registries
    from gaia_bench.cli.common import parse_shots
    from gaia_bench.store import ResultsStore

    regs = get_registries()
    rows: list[tuple[str, float]] = []
    seeds = range(100)

    def planned():
        jobs = plan(regs, models=[f"bench-net-{i}" for i in range(10)], inits=["random"],
                    adaptations=[f"bench-a{i}" for i in range(5)], datasets=DATASETS, shots=parse_shots(SHOTS),
                    seeds=seeds)
        return jobs, [j.job_id for j in jobs]

    jobs, ids = timed("plan (job ids included)", planned, rows)
    assert len(jobs) == 100_000 and len(set(ids)) == 100_000, len(jobs)
    records = [record_for(job, i) for i, job in enumerate(jobs)]  # not timed: what 100,000 runs would return
    store = ResultsStore(work / "grid.db")
    cells = [(i, j.config.model, j.config.init, j.config.adaptation, j.config.dataset, j.config.task, j.config.shots,
              j.config.seed) for i, j in zip(ids, jobs)]
    timed("record the plan in the store", lambda: store.record_grid("gaia-bench run … (benchmark)", cells), rows)
    timed("skip-finished, empty store", lambda: store.statuses(ids), rows)
    timed("put 100,000 finished records (one transaction)", lambda: store.put_many(records), rows)

    def skip_finished():
        statuses = store.statuses(ids)
        return [i for i in ids if statuses.get(i) != "done"]

    todo = timed("skip-finished, 100,000 finished", skip_finished, rows)
    assert todo == []
    counts = timed("status: per-cell counts of the grid", lambda: store.grid_counts(None, ("model", "init", "adaptation", "dataset")), rows)
    assert sum(n for *_, n in counts) == 100_000
    stored = timed("leaderboard: read every record back", store.query, rows)
    board = timed("leaderboard: merge + build the tables",
                  lambda: build_leaderboard(merge_sources([("grid.db", stored)]), suite="mini", dataset_order=DATASETS), rows)
    assert board.measured is not None and len(board.measured.table.rows) == 50
    store.close()
    size_mb = (work / "grid.db").stat().st_size / 2**20
    print(f"\n1. a {len(jobs):,}-cell grid ({size_mb:.0f} MB store)")
    for label, seconds in rows:
        print(f"   {label:<48} {seconds:7.2f} s")


def cli(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gaia_bench", *args], env={**os.environ, **env, "COLUMNS": "120"},
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`gaia-bench {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
    return elapsed


def executor_overhead(work: Path, n: int, env: dict[str, str]) -> None:
    env = {**env, "GAIA_BENCH_HOME": str(work / "home")}
    data = str(work / "data")
    cli(["datasets", "prepare", "digits-lt", "--data-root", data], env)
    base = ["run", "--model", "bench-net-0", "--init", "random", "--adapt", "bench-a0", "--dataset", "digits-lt",
            "--data-root", data, *[a for s in range(n) for a in ("--seed", str(s))]]
    cases = [("local, in this process (baseline)", []), ("local, --max-parallel 2 (process pool)", ["--max-parallel", "2"]),
             ("submitit local executor, --max-parallel 2", ["--executor", "submitit", "--max-parallel", "2"])]
    results = []
    for k, (label, extra) in enumerate(cases):
        args = [*base, *extra, "--store", str(work / f"exec{k}.db")]
        wall = cli(args, env)
        fixed = cli(args, env)  # every cell finished: start-up, planning and the store only
        results.append((label, wall, fixed, (wall - fixed) / n))
    baseline = results[0][3]
    print(f"\n2. per-cell overhead on {n} trivial cells (a fixed score, no backbone), 2 at a time where parallel")
    print(f"   {'executor':<44} {'wall s':>7} {'fixed s':>8} {'per cell ms':>12} {'x baseline':>11}")
    for label, wall, fixed, per_cell in results:
        print(f"   {label:<44} {wall:7.2f} {fixed:8.2f} {per_cell * 1000:12.0f} {per_cell / baseline:11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20, help="trivial cells per executor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gaia-grid-bench-") as tmp:
        work = Path(tmp)
        os.environ["GAIA_BENCH_HOME"] = str(work / "home")
        env = install_plugin(work / "site")
        grid_scale(work)
        executor_overhead(work, args.cells, env)


if __name__ == "__main__":
    main()
