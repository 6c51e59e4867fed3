"""Calibration (ECE, NLL, Brier, temperature scaling) worked out by hand; GV-B's SGD probe search
on hand-made features; the calibration table and the GV-B reference rows' search mark of the
leaderboard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.plugins.adaptations.lib.sgd_probe import GVB_GRID, SgdProbes, config_name, grid_configs, gvb_search
from gaia_bench.plugins.adaptations.linear_probe import solver_threads
from gaia_bench.tasks.types.classification import CLASSIFICATION
from gaia_bench.tasks.types.lib import calibration

# Item 1: p = (3/4, 1/4), true class 0 (right, confidence 0.75); item 2: p = (1/2, 1/2), true
# class 1 (argmax 0: wrong, confidence 0.5).
LOGITS = np.array([[math.log(3.0), 0.0], [0.0, 0.0]])
LABELS = np.array([0, 1])


def _test_split(labels) -> Samples:
    return Samples([Sample(f"k{i}", None, int(y)) for i, y in enumerate(labels)], ["a", "b"])


def test_ece_nll_and_brier_by_hand():
    assert calibration.nll(LOGITS, LABELS) == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2)
    # (0.75 - 1)^2 + 0.25^2 = 0.125 and 0.5^2 + 0.5^2 = 0.5
    assert calibration.brier(LOGITS, LABELS) == pytest.approx((0.125 + 0.5) / 2)
    # 15 bins: 0.75 falls in (11/15, 12/15], gap |1 - 0.75|; 0.5 in (7/15, 8/15], gap |0 - 0.5|
    assert calibration.ece(LOGITS, LABELS) == pytest.approx(100 * (0.25 + 0.5) / 2)
    assert calibration.ece(np.array([[math.log(3.0), 0.0]]), np.array([0]), bins=2) == pytest.approx(25.0)


def test_temperature_fit_by_hand():
    # Four items with logits (a, 0), three of class 0: the NLL of softmax(z / T) is least where
    # sigmoid(a / T) = 3/4, i.e. T = a / ln 3; there every item's confidence equals the accuracy.
    logits, labels = np.array([[4.0, 0.0]] * 4), np.array([0, 0, 0, 1])
    temperature = calibration.fit_temperature(logits, labels)
    assert temperature == pytest.approx(4.0 / math.log(3.0), rel=1e-6)
    scaled = calibration.scores(logits, labels, temperature, "_ts")
    assert scaled["ece_ts"] == pytest.approx(0.0, abs=1e-4) and scaled["nll_ts"] < calibration.nll(logits, labels)
    # every held-out item right (or every one wrong): the NLL falls toward an end, no temperature
    right, wrong = np.array([[1.0, 0.0]] * 3), np.array([[0.0, 1.0]] * 3)
    assert calibration.fit_temperature(right, np.zeros(3, int)) is None
    assert calibration.fit_temperature(wrong, np.zeros(3, int)) is None
    metrics, details = calibration.calibration_report(logits, labels, right, np.zeros(3, int), "held out")
    assert set(metrics) == set(calibration.METRICS) and details["calibration"]["temperature"] is None
    assert "not determined" in details["calibration"]["temperature_note"]


def test_report_and_rescoring_metrics_agree():
    rng = np.random.default_rng(0)
    test_logits, test_labels = rng.normal(size=(40, 3)) * 3, rng.integers(0, 3, 40)
    val_logits, val_labels = rng.normal(size=(12, 3)) * 3, rng.integers(0, 3, 12)
    metrics, details = calibration.calibration_report(test_logits, test_labels, val_logits, val_labels, "held out")
    block = details["calibration"]
    assert block["temperature"] == calibration.fit_temperature(val_logits, val_labels) and block["bins"] == 15
    assert block["val_nll_after"] <= block["val_nll_before"]
    test = Samples([Sample(f"k{i}", None, int(y)) for i, y in enumerate(test_labels)], ["a", "b", "c"])
    extra = CLASSIFICATION.extra_metrics
    for name in (*calibration.METRICS, *calibration.SCALED):  # what `results rescore` recomputes, exactly
        assert extra[name](list(test_logits), test, None, details=details) == {name: metrics[name]}
    assert set(calibration.calibration_report(test_logits, test_labels, None, None, "-")[0]) == set(calibration.METRICS)
    with pytest.raises(DataError, match="no temperature"):
        extra["ece_ts"](list(test_logits), test, None, details={})
    knn = {"calibration": {"scores": "n/a: vote shares"}}
    with pytest.raises(DataError, match="n/a: vote shares"):
        extra["nll"](list(test_logits), test, None, details=knn)
    # the ECE that `rescore --metric ece` gave before the others existed, unchanged
    assert extra["ece"](list(LOGITS), _test_split(LABELS), None) == {"ece": pytest.approx(37.5)}


def test_gvb_search_trains_the_grid_at_once_and_chooses_on_the_held_out_part():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    x = (np.eye(3, 8)[y] * 1.5 + rng.normal(size=(60, 8))).astype(np.float32)
    fit, val = np.arange(0, 60, 4).tolist() + np.arange(1, 60, 4).tolist() + np.arange(2, 60, 4).tolist(), \
        np.arange(3, 60, 4).tolist()
    with solver_threads(0):
        chosen, held_out = gvb_search(x, y, 3, fit, val, seed=0)
        again, _ = gvb_search(x, y, 3, fit, val, seed=0)
        configs = grid_configs()
        together = SgdProbes(configs[:3], epochs=5).fit(x, y, 3)
        alone = SgdProbes([configs[2]], epochs=5).fit(x, y, 3)
    assert len(configs) == 18 and chosen["grid"] == GVB_GRID and chosen == again
    by_config = chosen["val_top1_by_config"]
    assert set(by_config) == {config_name(c) for c in configs} and not chosen["diverged"]
    best = chosen["val_top1"]
    assert best == max(by_config.values())
    ties = [c for c in configs if by_config[config_name(c)] == best]
    loss = chosen["val_nll_by_config"]
    assert tuple(chosen["chosen"].values()) == max(ties, key=lambda c: (-loss[config_name(c)], c[1], -c[0], -c[2]))
    assert held_out.shape == (15, 3) and (held_out.argmax(axis=1) == y[val]).mean() * 100 == pytest.approx(best)
    # the 18 probes do not interact: one trained with others equals it trained alone
    assert np.allclose(together.weight[2].numpy(), alone.weight[0].numpy(), atol=1e-6)
    nothing_held_out, none = gvb_search(x, y, 3, list(range(60)), [], seed=0)
    assert none is None and nothing_held_out["chosen"] == {"lr": 10 ** -2.5, "weight_decay": 1e-5, "momentum": 0.9}


def _record(adaptation: str, metrics: dict, details: dict, seed: int = 0) -> dict:
    config = {"model": "m", "init": "i", "adaptation": adaptation, "dataset": "digits-lt", "task": "classification",
              "shots": "10%", "seed": seed, "image_size": 32, "weights_id": "i:x", "hyperparams": {}}
    return {"job_id": f"{adaptation}{seed}", "status": "done", "config": config, "primary_metric": "top1",
            "higher_is_better": True, "primary_value": metrics["top1"], "metrics": metrics, "details": details,
            "shots": {"requested": "10%", "fraction": 0.1, "per_class": None}}


def test_leaderboard_calibration_table_and_reference_search_mark():
    from gaia_bench.plugins.reporters.lib.calibration_table import calibration_grid, cell_calibration
    from gaia_bench.plugins.reporters.lib.leaderboard import build_leaderboard, merge_sources
    from gaia_bench.plugins.reporters.lib.references import as_records, load_reference_set, named_file
    from gaia_bench.plugins.reporters.lib.tables import leaderboard_grids

    probe = [_record("linear-probe", {"top1": 50.0 + s, "ece": 10.0 + 2 * s, "nll": 1.0, "brier": 0.5, "ece_ts": 4.0,
                                      "nll_ts": 0.9, "brier_ts": 0.4}, {"calibration": {"temperature": 2.0 + s}}, s)
             for s in (0, 1)]
    knn = _record("knn", {"top1": 40.0}, {"calibration": {"scores": "n/a: votes"}})
    old = _record("finetune", {"top1": 45.0}, {})
    gvb = load_reference_set(named_file("gvb"))
    board = build_leaderboard(merge_sources([("s", [*probe, knn, old])]), suite="mini", dataset_order=["digits-lt"],
                              references=as_records(gvb), reference_sets=[gvb], interval="std")
    rows = {row.key[2]: next(iter(row.cells.values())) for row in board.measured.table.rows}
    cal = cell_calibration(rows["linear-probe"])
    assert cal["ece"]["values"] == [10.0, 12.0] and cal["ece"]["mean"] == 11.0 and cal["temperature"]["mean"] == 2.5
    assert cell_calibration(rows["knn"]) == {"n/a": "n/a: votes"} and cell_calibration(rows["finetune"]) is None
    assert "calibration" not in [g.id for g in leaderboard_grids(board)]
    board.calibration = True
    grid = next(g for g in leaderboard_grids(board) if g.id == "calibration")
    assert grid is not None and calibration_grid(board).rows == grid.rows
    texts = {row[2].text: [c.text for c in row[4:]] for row in grid.rows}
    assert texts["linear-probe"] == ["11.0", "4.0", "1.000", "0.900", "0.500", "0.400", "2.50"]
    assert set(texts["knn"]) == {"n/a"} and set(texts["finetune"]) == {"-"}
    assert any("knn: n/a: votes" in n for n in grid.notes) and any("rescore --metric" in n for n in grid.notes)
    references = next(g for g in leaderboard_grids(board) if g.id == "references")
    assert all("CLS searched: LR × WD × momentum" in row[0].text for row in references.rows)
    assert any("gv-benchmark#6" in n and "search=gvb" in n for n in references.notes)
