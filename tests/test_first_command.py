"""The README's first command reads on an 80-column terminal: `gaia-bench run`'s results table over
several models and inits, and the leaderboard command that `make run` ends with (taken from the
Makefile itself) on a store shaped like the grid `make run` runs."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path

from gaia_bench.manager import get_registries
from gaia_bench.store import ResultsStore
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]


def _widest(text: str) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


def make_run_commands(**variables: str) -> dict[str, list[str]]:
    """The `gaia-bench` command lines of `make run` (``make -n``: printed, not run), by subcommand,
    as arguments after ``gaia-bench``."""
    printed = subprocess.run(["make", "-n", "run", *(f"{k}={v}" for k, v in variables.items())], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    commands = {}
    for line in printed.replace("\\\n", "\n").splitlines():
        words = shlex.split(line.strip().removesuffix("&&"))
        if words and words[0].endswith("/gaia-bench"):
            commands[words[1]] = words[1:]
    return commands


def _option(args: list[str], name: str) -> list[str]:
    return args[args.index(name) + 1].split(",")


def test_run_table_fits_80_columns_with_several_models_and_inits(tmp_path):
    store = tmp_path / "results.db"
    result = cli(["run", "--model", "test_resnet,test_convnext", "--init", "random,scratch", "--image-size", "32",
                  "--dataset", "lfw-faces,textures-lt", "--seed", "0,1", "--store", str(store)],
                 env={"GAIA_BENCH_HOME": str(tmp_path / "home"), "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert _widest(result.stdout) <= 80 and "…" not in result.stdout, result.stdout  # nothing cut short
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("test_")]
    assert len(rows) == 16 and {r[1] for r in rows} == {"random", "scratch"}  # model, init, dataset, seed, value
    with ResultsStore(store) as s:
        record = s.query(model="test_resnet", init="random", dataset="lfw-faces", seed=0)[0]
    low, high = record["interval"]["metrics"]["top1"]
    shown = next(r for r in rows if r[:4] == ["test_resnet", "random", "lfw-faces", "0"])
    assert shown[4] == f"{record['primary_value']:.2f}±{(high - low) / 2:.2f}"
    assert "results (adaptation linear-probe · shots 10% · metric top1)" in result.stdout


def _record(model: str, init: str, dataset: str, seed: int, value: float) -> dict:
    """A finished record of ``dataset`` (its task's primary metric) with a bootstrap interval."""
    regs = get_registries()
    spec = regs.datasets.get(dataset)
    task = regs.tasks.get(spec.task)
    metric = spec.primary_metric or task.primary_metric
    higher = next(m.higher_is_better for m in task.metrics if m.name == metric)
    config = {"model": model, "init": init, "adaptation": "linear-probe", "dataset": dataset, "dataset_version": "1",
              "task": spec.task, "shots": "10%", "seed": seed, "image_size": 96, "protocol": "gaia-bench-shots-v1",
              "weights_id": f"{init}:test", "hyperparams": {}}
    return {
        "schema_version": 1, "config": config, "status": "done",
        "job_id": hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=10).hexdigest(),
        "shots": {"requested": "10%", "fraction": 0.1, "per_class": None},
        "primary_metric": metric, "higher_is_better": higher, "metrics": {metric: value}, "primary_value": value,
        "interval": {"method": "percentile bootstrap over test items", "level": 0.95, "resamples": 1000, "seed": 0,
                     "unit": "test item", "metrics": {metric: [value - 4.5, value + 5.25]}},
        "n_train": 50, "n_test": 100, "details": {}, "timings": {"total_s": 1.0},
    }


def test_the_board_make_run_ends_with_fits_80_columns(tmp_path):
    store, out = tmp_path / "run.db", tmp_path / "board"
    commands = make_run_commands(RUN_STORE=str(store), RUN_BOARD=str(out))
    grid, board = commands["run"], commands["leaderboard"]
    datasets, inits, seeds = _option(grid, "--dataset"), _option(grid, "--init"), _option(grid, "--seed")
    assert len(datasets) >= 5 and len(inits) >= 2 and len(seeds) >= 2  # the shape the test is about
    with ResultsStore(store) as s:  # seeds differ: cells get a t interval over seeds, the widest kind
        for d, dataset in enumerate(datasets):
            for i, init in enumerate(inits):
                for seed in map(int, seeds):
                    s.put(_record("tf_efficientnet_lite0", init, dataset, seed, 40.0 + 7 * d + 11 * i + 1.37 * seed))
    result = cli(board, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert _widest(result.stdout) <= 80 and "…" not in result.stdout, result.stdout
    baseline = board[board.index("--baseline") + 1]
    lines = result.stdout.splitlines()
    for init in inits:
        main = next(line for line in lines if line.startswith(init + " "))
        assert main.count("±") == len(datasets), result.stdout  # every dataset's column, with its interval
    assert "Error-rate reduction vs " + baseline in result.stdout
    for init in (i for i in inits if i != baseline):
        reduction = [line for line in lines if line.startswith(init + " ")][-1]
        assert "[" in reduction and "(n=" in reduction, result.stdout
    assert (out / "leaderboard.md").is_file()
