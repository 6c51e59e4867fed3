"""`gaia-bench select`: candidates timed once and reused from the store's profiles, scored by k-NN as
ordinary results, the Pareto front and the recommendation under a budget that keeps all, some or
none of them. Budgets are placed by the stored latencies (never by timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.plugins.reporters.lib.leaderboard import pareto_front
from gaia_bench.plugins.reporters.lib.profiles import load_profiles, time_until_stable
from gaia_bench.plugins.reporters.lib.statistics import median_interval
from gaia_bench.store import ResultsStore

GRID = ["--dataset", "digits-lt", "--shots", "10%", "--candidates", "test_resnet,test_efficientnet",
        "--input-sizes", "32,48", "--init", "random", "--adapt", "knn", "--repeats", "5", "--warmup", "1"]


def select(store: str, budget: float, *extra: str):
    return CliRunner().invoke(app, ["select", *GRID, "--budget-ms", f"{budget:.6g}", "--store", store, *extra],
                              env={"COLUMNS": "80"})


@pytest.fixture(scope="module")
def selected(tmp_path_factory) -> tuple[str, Path, object]:
    """One select over 2 tiny models × 2 input sizes with a budget every candidate meets."""
    root = tmp_path_factory.mktemp("select")
    store, out = str(root / "results.db"), root / "out"
    return store, out, select(store, 1e9, "--out", str(out))


@pytest.mark.slow
def test_every_candidate_is_timed_scored_and_placed_on_the_front(selected):
    store, out, result = selected
    assert result.exit_code == 0, result.output
    profiles = load_profiles(store)
    assert sorted((p["model"], p["input_size"]) for p in profiles) == [
        ("test_efficientnet", 32), ("test_efficientnet", 48), ("test_resnet", 32), ("test_resnet", 48)]
    assert all(p["precision"] == "float32" and p["threads"] >= 1 and p["device"] == "cpu" for p in profiles)
    with ResultsStore(store) as s:
        records = s.query(status="done")
    assert len(records) == 4 and {r["config"]["adaptation"] for r in records} == {"knn"}
    assert all(r["interval"]["metrics"]["top1"] and r["predictions"] for r in records)  # ordinary results
    report = json.loads((out / "select.json").read_text())
    by_name = {(c["model"], c["input_size"]): c for c in report["candidates"]}
    points = [(c["latency_ms"], c["score"]["mean"]) for c in report["candidates"]]
    assert [c["on_front"] for c in report["candidates"]] == pareto_front(points)
    best = max(report["candidates"], key=lambda c: c["score"]["mean"])
    assert best["score"]["mark"] == "best" and all(c["within_budget"] for c in report["candidates"])
    assert report["recommendation"][0].startswith(f"recommended: {best['model']} @{best['input_size']} px")
    assert by_name[("test_resnet", 32)]["score"]["job_ids"] == [
        r["job_id"] for r in records if (r["config"]["model"], r["config"]["image_size"]) == ("test_resnet", 32)]
    assert (out / "select.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


@pytest.mark.slow
def test_a_budget_between_the_stored_latencies_keeps_the_faster_ones(selected, tmp_path):
    store, _, first = selected
    assert first.exit_code == 0, first.output
    latencies = sorted(p["latency_ms"] for p in load_profiles(store))
    gap = max(range(len(latencies) - 1), key=lambda i: latencies[i + 1] - latencies[i])
    budget = (latencies[gap] + latencies[gap + 1]) / 2  # as far from both neighbours as the store allows
    result = select(store, budget, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "0 timed now, 4 reused" in result.output and "4 already in" in result.output
    assert len(load_profiles(store)) == 4
    report = json.loads((tmp_path / "select.json").read_text())
    inside = [c for c in report["candidates"] if c["within_budget"]]
    assert {c["latency_ms"] <= budget for c in report["candidates"]} == {True, False}
    assert [c["within_budget"] for c in report["candidates"]] == [c["latency_ms"] <= budget for c in report["candidates"]]
    best = max(inside, key=lambda c: c["score"]["mean"])
    assert best["score"]["mark"] == "best"
    assert all(c["score"]["mark"] == "" for c in report["candidates"] if not c["within_budget"])
    assert report["recommendation"][0].startswith(f"recommended: {best['model']} @{best['input_size']} px")


@pytest.mark.slow
def test_a_budget_no_candidate_meets_names_the_fastest(selected):
    store, _, first = selected
    assert first.exit_code == 0, first.output
    quickest = min(load_profiles(store), key=lambda p: p["latency_ms"])
    result = select(store, quickest["latency_ms"] / 2)
    assert result.exit_code == 2
    assert (f"the fastest, {quickest['model']} @{quickest['input_size']} px, takes "
            f"{quickest['latency_ms']:.2f} ms" in " ".join(result.output.split()))


def test_timing_stops_once_the_median_is_stable_or_at_the_cap():
    steady = iter([10.0, 10.1, 9.9, 10.0] * 100)
    times, stable = time_until_stable(lambda: next(steady), min_repeats=20, precision=0.02)
    assert stable and len(times) == 20
    noisy = iter([1.0, 10.0] * 1000)
    times, stable = time_until_stable(lambda: next(noisy), min_repeats=20, max_repeats=100, precision=0.02)
    assert not stable and len(times) == 100


def test_the_median_interval_is_the_order_statistics_one():
    assert median_interval(range(1, 101)) == (40.0, 61.0)  # ranks 40 and 61 of 100 (coverage 96.5%)
    assert median_interval(range(1, 21)) == (6.0, 15.0)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for 95%: the range


def test_patterns_keep_only_candidates_whose_weights_are_here():
    from gaia_bench.manager import get_registries
    from gaia_bench.plugins.reporters.lib.selection import resolve_candidates, weights_here

    regs = get_registries()
    chosen, skipped = resolve_candidates(regs, ["test_res*"], regs.inits.get("random"))
    assert [s.name for s in chosen] == ["test_resnet"] and skipped == []
    chosen, skipped = resolve_candidates(regs, ["test_res*"], regs.inits.get("imagenet"))
    assert chosen == [] and skipped == ["test_resnet"]  # would pretrain on the pool: not "here"
    imagenet = regs.inits.get("imagenet")
    chosen, skipped = resolve_candidates(regs, [], imagenet)  # the default families
    assert "tf_efficientnet_lite0" in [s.name for s in chosen]  # its weights ship as a pip package
    assert all(weights_here(s, imagenet) for s in chosen)
    assert not any(weights_here(regs.backbones.get(n), imagenet) for n in skipped)


def test_no_candidate_with_weights_here_says_how_to_name_some(tmp_path):
    result = CliRunner().invoke(app, ["select", "--dataset", "digits-lt", "--budget-ms", "20", "--candidates", "test_v*",
                                      "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 2 and "no candidate has imagenet weights" in result.output
    assert "--init random" in result.output


@pytest.mark.extended
def test_finetune_top_fine_tunes_the_best_within_the_budget_and_marks_them(selected, tmp_path):
    store, _, first = selected
    assert first.exit_code == 0, first.output
    result = select(store, 1e9, "--finetune-top", "2", "--finetune-hp", "max_iters=1,min_iters=1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "select.json").read_text())
    knn_best = sorted(report["candidates"], key=lambda c: -c["score"]["mean"])[:2]
    tuned = [c for c in report["candidates"] if c["finetuned"]]
    assert {(c["model"], c["input_size"]) for c in tuned} == {(c["model"], c["input_size"]) for c in knn_best}
    with ResultsStore(store) as s:
        records = s.query(adaptation="finetune", status="done")
    assert sorted(r["job_id"] for r in records) == sorted(i for c in tuned for i in c["finetuned"]["job_ids"])
    assert all(r["config"]["hyperparams"]["max_iters"] == 1 for r in records)
    assert sorted(c["finetuned"]["mark"] for c in tuned) in (["", "best"], ["best", "tied"])
    assert any(line.startswith("after fine-tuning: ") for line in report["recommendation"])
