"""`gaia-bench compare`: --a/--b parsing, pairing of records into cells, the test that decides each
row, Holm and verdicts, and the command's output in every format; a side compared with an identical
copy of itself is "not distinguishable" with difference 0."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import UsageError
from gaia_bench.plugins.reporters.lib.comparison import (
    A_BETTER,
    B_BETTER,
    SAME,
    TEST_ITEMS,
    TEST_MCNEMAR,
    TEST_NONE,
    TEST_SEEDS_BOTH,
    TEST_SEEDS_ITEMS,
    TEST_T,
    Group,
    ItemLevel,
    Pair,
    add_power,
    decide,
    pair_records,
    parse_side,
    row_statistics,
    split_sides,
)
from gaia_bench.plugins.reporters.lib.statistics import McNemar, bootstrap_counts, mcnemar_exact, paired_bootstrap, paired_t
from gaia_bench.store import ResultsStore

METRICS = {"cls": ("classification", "top1", True), "pets": ("classification", "mean_per_class_acc", True),
           "depth": ("depth", "rmse", False)}


def record(init: str, dataset: str, value: float, seed: int = 0, shots: str = "10%", model: str = "m1",
           adaptation: str = "linear-probe", hyperparams: dict | None = None) -> dict:
    task, metric, higher = METRICS[dataset]
    config = {"model": model, "init": init, "adaptation": adaptation, "dataset": dataset, "dataset_version": "1",
              "task": task, "shots": shots, "seed": seed, "protocol": "gaia-bench-shots-v1",
              "hyperparams": hyperparams or {"max_iter": 1000}}
    job_id = hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=10).hexdigest()
    return {"schema_version": 1, "job_id": job_id, "config": config, "status": "done", "primary_metric": metric,
            "higher_is_better": higher, "metrics": {metric: value}, "primary_value": value, "n_test": 100,
            "finished_at": "2026-01-01T00:00:01+00:00"}


def sides(a: str, b: str):
    return split_sides(parse_side([a], "--a"), parse_side([b], "--b"))


def invoke(*args: str, columns: int = 80):
    return CliRunner().invoke(app, ["compare", *args], env={"COLUMNS": str(columns)})


def store_with(path: Path, records: list[dict]) -> str:
    with ResultsStore(path) as s:
        for r in records:
            s.put(r)
    return str(path)


# ---------------------------------------------------------------- --a / --b


def test_sides_parse_repeated_and_comma_separated_filters():
    assert parse_side(["init=imagenet,adapt=finetune", "shots=0.1"], "--a") == {
        "init": "imagenet", "adaptation": "finetune", "shots": "10%"}
    s = split_sides(parse_side(["init=imagenet,seed=0"], "--a"), parse_side(["init=gaia,model=m1"], "--b"))
    assert s.differing == ("init",) and s.shared == {"seed": "0", "model": "m1"}  # one side's field filters both
    assert (s.label("a"), s.label("b")) == ("init=imagenet", "init=gaia")


@pytest.mark.parametrize("values,message", [(["init"], "is not FIELD=VALUE"), (["colour=red"], "cannot select by"),
                                             (["init=a", "init=b"], "sets init twice"), ([], "selects nothing")])
def test_bad_sides_are_one_line_usage_errors(values, message):
    with pytest.raises(UsageError, match=message):
        parse_side(values, "--a")


def test_sides_that_differ_in_nothing_are_refused():
    with pytest.raises(UsageError, match="select the same results"):
        sides("init=gaia", "init=gaia")


# ---------------------------------------------------------------- pairing


def test_records_pair_on_every_field_but_the_compared_one():
    records = [record(init, ds, 70.0 + seed, seed=seed) for init in ("imagenet", "gaia") for ds in ("cls", "depth")
               for seed in (0, 1, 2)]
    records += [record("imagenet", "cls", 60.0, shots="1%"),  # no gaia partner
                record("gaia", "cls", 60.0, model="m2"),  # no imagenet partner
                {**record("gaia", "depth", 1.0, seed=9), "status": "failed"},  # failed: never compared
                record("clip", "cls", 10.0)]  # neither side
    pairing = pair_records(records, sides("init=imagenet", "init=gaia"), {})
    assert [(g.key["dataset"], [p.seed for p in g.pairs]) for g in pairing.groups] == [("cls", [0, 1, 2]), ("depth", [0, 1, 2])]
    for group in pairing.groups:
        for pair in group.pairs:
            assert pair.a["config"]["init"] == "imagenet" and pair.b["config"]["init"] == "gaia"
            assert {k: v for k, v in pair.a["config"].items() if k != "init"} == {k: v for k, v in pair.b["config"].items() if k != "init"}
    assert (len(pairing.only_a), len(pairing.only_b)) == (1, 1)
    assert "init" not in pairing.paired_on and "seed" in pairing.paired_on
    narrowed = pair_records(records, sides("init=imagenet", "init=gaia"), {"dataset": ["dep*"]})
    assert [g.key["dataset"] for g in narrowed.groups] == ["depth"]


def test_comparing_seeds_pairs_one_seed_with_another():
    records = [record("gaia", "cls", 70.0, seed=0), record("gaia", "cls", 71.0, seed=1)]
    pairing = pair_records(records, sides("seed=0", "seed=1"), {})
    assert len(pairing.groups) == 1 and pairing.groups[0].pairs[0].b["config"]["seed"] == 1


def test_ambiguous_pairings_are_refused():
    twice = [record("imagenet", "cls", 70.0), record("imagenet", "cls", 71.0, hyperparams={"max_iter": 5}),
             record("gaia", "cls", 70.0)]
    with pytest.raises(UsageError, match="--a has two results for one cell"):
        pair_records(twice, sides("init=imagenet", "init=gaia"), {})
    with pytest.raises(UsageError, match="both match job"):
        pair_records([record("gaia", "cls", 1.0)], sides("init=g*", "init=gaia"), {})


def test_sides_select_by_hyper_parameter_and_one_sided_ones_select_one_side():
    """tsds's own control (hp.mode) and tsds against finetune at equal steps (hp.iters on both)."""
    top = [record("gaia", "cls", 70.0 + s, seed=s, adaptation="tsds", hyperparams={"mode": "top-k", "iters": 200})
           for s in (0, 1)]
    rand = [record("gaia", "cls", 60.0 + s, seed=s, adaptation="tsds", hyperparams={"mode": "random", "iters": 200})
            for s in (0, 1)]
    plain = [record("gaia", "cls", 50.0 + s, seed=s, adaptation="finetune", hyperparams={"iters": 200}) for s in (0, 1)]
    short = [record("gaia", "cls", 40.0, seed=s, adaptation="finetune", hyperparams={}) for s in (0, 1)]
    records = top + rand + plain + short
    control = sides("adapt=tsds,hp.mode=top-k", "adapt=tsds,hp.mode=random")
    assert control.differing == ("hp.mode",) and control.label("b") == "hp.mode=random"
    pairing = pair_records(records, control, {})
    assert [(p.a["config"]["hyperparams"]["mode"], p.b["config"]["hyperparams"]["mode"]) for p in pairing.groups[0].pairs] == [
        ("top-k", "random")] * 2
    equal_steps = sides("adapt=tsds,hp.mode=top-k,hp.iters=200", "adapt=finetune,hp.iters=200")
    assert equal_steps.differing == ("adaptation", "hp.mode") and equal_steps.shared == {"hp.iters": "200"}
    assert equal_steps.label("a") == "adaptation=tsds,hp.mode=top-k" and equal_steps.label("b") == "adaptation=finetune"
    pairs = pair_records(records, equal_steps, {}).groups[0].pairs
    assert [(p.a["primary_value"], p.b["primary_value"]) for p in pairs] == [(70.0, 50.0), (71.0, 51.0)]
    unset = pair_records(records, sides("adapt=finetune,hp.iters=200", "adapt=finetune,hp.iters=None"), {})
    assert [p.b["primary_value"] for p in unset.groups[0].pairs] == [40.0, 40.0]  # an unset optional one is None
    with pytest.raises(UsageError, match="cannot select by"):
        parse_side(["hp.=1"], "--a")


def test_precision_is_a_side_and_fp32_cells_without_the_field_are_fp32():
    fp32 = [record("gaia", "cls", 70.0 + s, seed=s) for s in (0, 1)]  # fp32 configs carry no precision
    bf16 = [{**r, "job_id": r["job_id"] + "b", "config": {**r["config"], "precision": "bf16"}, "primary_value": 60.0}
            for r in fp32]
    pairing = pair_records(fp32 + bf16, sides("precision=bf16", "precision=fp32"), {})
    assert [(p.a["primary_value"], p.b["primary_value"]) for p in pairing.groups[0].pairs] == [(60.0, 70.0), (60.0, 71.0)]
    inits = pair_records(fp32 + bf16 + [record("imagenet", "cls", 1.0)], sides("init=gaia", "init=imagenet"), {})
    assert [p.a["primary_value"] for g in inits.groups for p in g.pairs] == [70.0]  # bf16 is another cell
    assert len(inits.only_a) == 3 and "precision" in inits.paired_on


# ---------------------------------------------------------------- the deciding test


def group_of(a_values, b_values, dataset="cls") -> Group:
    return Group({"dataset": dataset}, [Pair(s, record("imagenet", dataset, va, seed=s), record("gaia", dataset, vb, seed=s))
                                        for s, (va, vb) in enumerate(zip(a_values, b_values))])


def items_of(a_correct: np.ndarray, b_correct: np.ndarray, resamples: int = 500) -> ItemLevel:
    """Top-1 per seed on shared item resamples, and McNemar per seed."""
    counts = bootstrap_counts(a_correct.shape[1], resamples, seed=0)
    a = np.stack([100 * counts @ c / c.size for c in a_correct.astype(float)])
    b = np.stack([100 * counts @ c / c.size for c in b_correct.astype(float)])
    return ItemLevel(a, b, [mcnemar_exact(x, y) for x, y in zip(a_correct, b_correct)])


def test_one_seed_top1_is_decided_by_mcnemar():
    rng = np.random.default_rng(0)
    a_ok = rng.random((1, 400)) < 0.8
    b_ok = a_ok & (rng.random((1, 400)) < 0.9)  # B loses about 10% of A's hits
    row = row_statistics(group_of([100 * a_ok.mean()], [100 * b_ok.mean()]), items_of(a_ok, b_ok))
    assert row.test == TEST_MCNEMAR and row.p == row.mcnemar[0].p_value < 1e-6
    assert row.mcnemar[0].b01 == 0 and row.mcnemar[0].b10 == int(np.sum(a_ok & ~b_ok))
    assert row.difference == pytest.approx(100 * (a_ok.mean() - b_ok.mean())) and row.low > 0
    assert row.interval == TEST_ITEMS
    decide([row], alpha=0.05)
    assert row.verdict == A_BETTER and row.p_holm == row.p


def test_other_metrics_and_several_seeds_are_decided_by_the_bootstrap():
    rng = np.random.default_rng(1)
    a_ok, b_ok = rng.random((1, 300)) < 0.7, rng.random((1, 300)) < 0.7
    one = row_statistics(group_of([70.0], [69.0], dataset="pets"), items_of(a_ok, b_ok))
    assert one.test == TEST_ITEMS  # mean per-class accuracy: McNemar tests top-1, not this metric
    a3, b3 = rng.random((3, 300)) < 0.7, rng.random((3, 300)) < 0.7
    three = row_statistics(group_of([70.0, 71.0, 69.0], [69.0, 70.5, 68.0]), items_of(a3, b3))
    assert three.interval == TEST_SEEDS_ITEMS and len(three.mcnemar) == 3
    assert three.t == paired_t([70.0, 71.0, 69.0], [69.0, 70.5, 68.0])
    boot = paired_bootstrap(items_of(a3, b3).a, items_of(a3, b3).b, observed=three.difference)
    assert three.test == TEST_SEEDS_BOTH and three.p == max(boot.p_value, three.t.p_value)
    assert (three.low, three.high) == (boot.low, boot.high)


def test_several_seeds_that_agree_exactly_are_decided_by_the_bootstrap_alone():
    rng = np.random.default_rng(4)
    a_ok, b_ok = rng.random((1, 300)) < 0.8, rng.random((1, 300)) < 0.6
    same_each_seed = ItemLevel(*[np.repeat(x, 2, axis=0) for x in (items_of(a_ok, b_ok).a, items_of(a_ok, b_ok).b)])
    row = row_statistics(group_of([80.0, 80.0], [60.0, 60.0]), same_each_seed)
    assert math.isnan(row.t.p_value) and row.test == TEST_SEEDS_ITEMS and row.p < 0.01


def test_without_predictions_seeds_decide_and_one_seed_decides_nothing():
    many = row_statistics(group_of([70.0, 72.0, 71.0, 73.0], [68.0, 69.5, 69.0, 70.0]), None)
    reference = paired_t([70.0, 72.0, 71.0, 73.0], [68.0, 69.5, 69.0, 70.0])
    assert many.test == TEST_T and many.p == reference.p_value and (many.low, many.high) == reference[4:]
    one = row_statistics(group_of([70.0], [60.0]), None)
    assert one.test == TEST_NONE and math.isnan(one.p) and math.isnan(one.low)
    decide([many, one], alpha=0.05)
    assert many.verdict == A_BETTER and one.verdict == SAME and math.isnan(one.p_holm)


def test_lower_is_better_metrics_turn_the_verdict_around():
    row = row_statistics(group_of([0.40, 0.41, 0.39, 0.40], [0.50, 0.52, 0.49, 0.51], dataset="depth"), None)
    decide([row], alpha=0.05)
    assert row.difference < 0 and row.verdict == A_BETTER  # A's RMSE is lower
    flipped = row_statistics(group_of([0.50, 0.52, 0.49, 0.51], [0.40, 0.41, 0.39, 0.40], dataset="depth"), None)
    decide([flipped], alpha=0.05)
    assert flipped.verdict == B_BETTER


def test_holm_over_rows_can_undo_a_single_rows_significance():
    rows = [row_statistics(group_of([70.0, 72.0, 71.0], [69.0, 70.2, 69.6]), None) for _ in range(3)]
    assert 0.025 < rows[0].p < 0.05
    decide(rows, alpha=0.05)
    assert all(r.verdict == SAME and r.p_holm == pytest.approx(min(1.0, 3 * r.p)) for r in rows)


def test_a_side_against_an_identical_copy_differs_by_nothing():
    rng = np.random.default_rng(2)
    ok = rng.random((3, 200)) < 0.6
    row = row_statistics(group_of([60.0, 61.0, 59.0], [60.0, 61.0, 59.0]), items_of(ok, ok.copy()))
    decide([row], alpha=0.05)
    assert (row.difference, row.low, row.high, row.p, row.verdict) == (0.0, 0.0, 0.0, 1.0, SAME)
    assert row.mcnemar == [McNemar(0, 0, 1.0)] * 3 and row.t.p_value == 1.0


def test_power_needs_more_seeds_for_smaller_differences():
    row = row_statistics(group_of([70.0, 72.0, 71.0, 73.0], [68.0, 69.5, 69.0, 70.0]), None)
    add_power([row], 1.0, alpha=0.05)
    small = row.seeds_needed
    add_power([row], 0.2, alpha=0.05)
    assert row.power_checked and small < row.seeds_needed
    one = row_statistics(group_of([70.0], [60.0]), None)
    add_power([one], 1.0, alpha=0.05)
    assert not one.power_checked  # one seed: no sd to plan with


# ---------------------------------------------------------------- the command


@pytest.fixture()
def store(tmp_path) -> str:
    """imagenet beats gaia on cls by about 3 points over 5 seeds; the two tie on depth; clip is a copy
    of imagenet; one imagenet cell (1%) has no gaia partner."""
    rng = np.random.default_rng(3)
    records = []
    for seed, tie in enumerate([-0.02, 0.01, 0.02, -0.01, 0.0]):
        base, noise = 70.0 + rng.normal(0, 2), rng.normal(0, 0.5)
        depth = 0.5 + rng.normal(0, 0.05)
        records += [record("imagenet", "cls", base, seed), record("gaia", "cls", base - 3 + noise, seed),
                    record("clip", "cls", base, seed),
                    record("imagenet", "depth", depth, seed), record("gaia", "depth", depth + tie, seed),
                    record("clip", "depth", depth, seed)]
    records.append(record("imagenet", "cls", 50.0, shots="1%"))
    return store_with(tmp_path / "results.db", records)


def test_compare_prints_a_table_and_one_verdict_per_dataset_in_80_columns(store):
    result = invoke("--a", "init=imagenet", "--b", "init=gaia", "--store", store, "--power", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "cls: A better (Holm p < 0.001; paired t over seeds)" in result.output
    assert "depth ↓: not distinguishable" in result.output
    assert "not compared: 1 cells only in A, 0 only in B" in result.output
    assert "2 of 2 rows: results without stored predictions" in result.output
    assert "seeds Δ1" in result.output


def test_compare_of_a_copy_finds_no_difference_in_json(store):
    result = invoke("--a", "init=imagenet", "--b", "init=clip", "--store", store, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(r["dataset"], r["difference"], r["p_holm"], r["verdict"]) for r in doc["rows"]] == [
        ("cls", 0.0, 1.0, SAME), ("depth", 0.0, 1.0, SAME)]
    assert doc["a"] == {"init": "imagenet"} and doc["only_a"] == 1


def test_compare_csv_and_markdown_hold_the_same_rows(store):
    args = ("--a", "init=imagenet", "--b", "init=gaia", "--store", store, "--shots", "0.1")
    rows = list(csv.DictReader(io.StringIO(invoke(*args, "--format", "csv").stdout)))
    assert [(r["dataset"], r["verdict"]) for r in rows] == [("cls", A_BETTER), ("depth", SAME)]
    assert float(rows[0]["ci_low"]) > 0 and rows[0]["test"] == TEST_T
    markdown = invoke(*args, "--format", "markdown").stdout
    assert "| dataset" in markdown and "- cls: A better" in markdown
    assert "not compared" not in markdown  # --shots 10% leaves the 1% cell out of both sides


@pytest.mark.parametrize("args,message", [
    (["--a", "init=imagenet", "--b", "init=nothing"], "no cell has results of both A"),
    (["--a", "init=imagenet", "--b", "init=gaia", "--level", "95"], "out of range"),
    (["--a", "init=imagenet", "--b", "init=gaia", "--format", "xml"], "use table, markdown, csv, json"),
    (["--a", "init=imagenet", "--b", "init=gaia", "--power", "-1"], "must be positive"),
])
def test_compare_usage_errors_exit_2_with_one_line(store, args, message):
    result = invoke(*args, "--store", store, columns=200)
    assert result.exit_code == 2 and message in result.output



# ---------------------------------------------------------------- from stored predictions


@pytest.fixture(scope="module")
def predicted_store(tmp_path_factory, shared_home) -> str:
    """Two seeds of a real job with stored predictions, and a copy of both under another init name
    (the same predictions: an init compared with itself)."""
    from tests.helpers import cli

    path = tmp_path_factory.mktemp("compare") / "results.db"
    done = cli(["run", "--model", "test_resnet", "--init", "random", "--image-size", "32", "--dataset", "digits-lt",
                "--shots", "10%", "--seed", "0,1", "--store", str(path)], env={"GAIA_BENCH_HOME": shared_home})
    assert done.returncode == 0, done.stderr
    with ResultsStore(path) as s:
        for r in s.query():
            s.put({**r, "job_id": r["job_id"] + "-copy", "config": {**r["config"], "init": "copy"}})
    return str(path)


@pytest.mark.slow
def test_an_init_against_itself_from_stored_predictions(predicted_store):
    result = invoke("--a", "init=random", "--b", "init=copy", "--store", predicted_store, "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["difference"], row["ci_low"], row["ci_high"], row["p_holm"], row["verdict"]) == (0.0, 0.0, 0.0, 1.0, SAME)
    assert row["interval"] == TEST_SEEDS_ITEMS and [(m["b01"], m["b10"], m["p"]) for m in row["mcnemar"]] == [(0, 0, 1.0)] * 2


@pytest.mark.slow
def test_one_seed_against_another_from_stored_predictions(predicted_store):
    from gaia_bench.manager import get_registries
    from gaia_bench.predictions import load_predictions

    result = invoke("--a", "init=random,seed=0", "--b", "seed=1", "--store", predicted_store, "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    with ResultsStore(predicted_store) as s:
        a, b = (s.query(init="random", seed=seed)[0] for seed in (0, 1))
    task = get_registries().tasks.get("classification")
    (pa, test), (pb, _) = load_predictions(predicted_store, a, task), load_predictions(predicted_store, b, task)
    right = [np.array([int(np.argmax(p)) for p in preds]) == np.array(test.labels()) for preds in (pa, pb)]
    reference = stats.binomtest(int(np.sum(right[0] & ~right[1])), int(np.sum(right[0] != right[1]))).pvalue
    assert row["test"] == TEST_MCNEMAR and row["p"] == pytest.approx(reference, rel=1e-9)
    assert row["difference"] == pytest.approx(a["primary_value"] - b["primary_value"])
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]


@pytest.mark.slow
def test_records_without_predictions_fall_back_to_seeds(predicted_store, tmp_path):
    with ResultsStore(predicted_store) as s:
        records = [{k: v for k, v in r.items() if k != "predictions"} for r in s.query()]
    old = store_with(tmp_path / "old.db", records)
    result = invoke("--a", "init=random", "--b", "init=copy", "--store", old)
    assert result.exit_code == 0, result.output
    assert "1 of 1 rows: results without stored predictions" in result.output
    assert "(Holm p = 1; paired t over seeds)" in result.output
