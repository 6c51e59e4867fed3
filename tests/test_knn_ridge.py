"""The probes on cached features: ``knn`` (weighted votes and the choice of k worked out by hand,
against scikit-learn's KNeighborsClassifier, a chunked search equal to an unchunked one) and
``ridge`` (against numpy.linalg.solve in both regimes and scikit-learn's RidgeClassifier), then
both end to end through the CLI on the mini suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier

from gaia_bench.plugins.adaptations.knn import capped_ks, nearest, neighbours, select_k, vote
from gaia_bench.plugins.adaptations.ridge import BIAS_FEATURE, DEFAULT_L2, STD_EPS, Ridge, select_l2
from gaia_bench.store import ResultsStore
from tests.helpers import cli

S = math.sqrt(1 - 0.9**2)
# Six bank items in 2-D (lengths differ: only directions count). Seen from the query (1, 0): one
# class-0 item at cosine 1, two class-1 items at cosine 0.9, two at 0 (one per class), one at -1.
BANK = np.array([[3, 0], [0.9 * 2, S * 2], [0.9 * 5, -S * 5], [0, 4], [0, -1], [-2, 0]], dtype=np.float32)
BANK_LABELS = np.array([0, 1, 1, 0, 1, 0])
QUERY = np.array([[7, 0]], dtype=np.float32)


def _scores(k: int, temperature: float) -> np.ndarray:
    sims, labels = neighbours(QUERY, BANK, np.arange(6), BANK_LABELS, k)
    return vote(sims, labels, 2, k, temperature).numpy()[0]


def test_weighted_vote_by_hand():
    # k = 3 at T = 0.07: exp(1/T) against 2 exp(0.9/T): the single closest item outvotes the pair.
    share = 1 / (1 + 2 * math.exp(-0.1 / 0.07))
    assert _scores(3, 0.07) == pytest.approx([share, 1 - share], rel=1e-5)
    # At T = 1 the pair wins: e against 2 e^0.9.
    assert _scores(3, 1.0).argmax() == 1
    # k = 5 at T = 1: class 0 has e^1 + e^0, class 1 has 2 e^0.9 + e^0.
    c0, c1 = math.e + 1, 2 * math.exp(0.9) + 1
    assert _scores(5, 1.0) == pytest.approx([c0 / (c0 + c1), c1 / (c0 + c1)], rel=1e-5)
    assert _scores(1, 1.0) == pytest.approx([1.0, 0.0])


def test_k_is_chosen_on_the_held_out_part_by_hand():
    # Subset = the six bank items (fit) + the query twice (held out). The grid is capped by the 6
    # fit items: 1, 3, 5, 6. At T = 1 the nearest item says class 0, 3, 5 and 6 neighbours say 1.
    features = np.concatenate([BANK, QUERY, QUERY])
    fit, val = list(range(6)), [6, 7]
    assert capped_ks([1, 3, 5, 200], 6) == [1, 3, 5, 6] and capped_ks([10, 20], 6) == [6]
    labels = np.array([*BANK_LABELS, 1, 1])
    chosen = select_k(features, range(8), labels, 2, [1, 3, 5, 200], fit, val, temperature=1.0)
    assert chosen["val_top1_by_k"] == {"1": 0.0, "3": 100.0, "5": 100.0, "6": 100.0}
    assert chosen["k"] == 3 and chosen["k_grid"] == [1, 3, 5, 6]  # ties: the smaller k
    labels[6:] = 0
    assert select_k(features, range(8), labels, 2, [1, 3, 5, 200], fit, val, temperature=1.0)["k"] == 1
    assert select_k(features, range(8), labels, 2, [1, 3, 5, 200], fit, [], temperature=1.0)["k"] == 1


def test_chunked_search_equals_the_unchunked_one_and_brute_force():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    rows = rng.permutation(300)[:250]
    whole_sims, whole_pos = nearest(queries, bank, rows, 20)
    # Blocks smaller than k, and a last block that is partial, in both directions.
    sims, pos = nearest(queries, bank, rows, 20, query_chunk=7, bank_chunk=13)
    assert torch.equal(pos, whole_pos) and torch.allclose(sims, whole_sims)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    expected = np.argsort(-(unit(queries) @ unit(bank[rows]).T), axis=1, kind="stable")[:, :20]
    assert np.array_equal(pos.numpy(), expected)


def test_knn_matches_scikit_learn_with_the_same_weighting():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 8))
    y = rng.integers(0, 5, 200)
    x = (centres[y] + rng.normal(scale=1.5, size=(200, 8))).astype(np.float32)
    queries = (centres[rng.integers(0, 5, 80)] + rng.normal(scale=1.5, size=(80, 8))).astype(np.float32)
    for k, temperature in ((10, 0.07), (20, 0.5)):
        sims, labels = neighbours(queries, x, np.arange(200), y, k)
        ours = vote(sims, labels, 5, k, temperature).numpy().argmax(axis=1)
        # cosine distance d = 1 - sim, each neighbour weighted exp(sim / T)
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                  weights=lambda d, t=temperature: np.exp((1 - d) / t)).fit(x, y)
        assert np.array_equal(ours, sk.predict(queries))


def _design(x: np.ndarray) -> np.ndarray:
    """The documented design: standardised columns (population std + eps) and a bias column of 100."""
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + STD_EPS)
    return np.hstack([z, np.full((len(z), 1), BIAS_FEATURE)])


@pytest.mark.parametrize("n, dim", [(120, 10), (15, 40)])  # more rows than columns, and fewer
def test_ridge_solves_the_normal_equations_for_every_l2(n, dim):
    rng = np.random.default_rng(2)
    x = rng.normal(loc=3.0, scale=2.0, size=(n, dim)).astype(np.float32)
    y = rng.integers(0, 4, n)
    ridge = Ridge(x, np.arange(n), y, 4)
    z = _design(x.astype(np.float64))
    t = 2.0 * np.eye(4)[y] - 1.0
    for l2 in (2.0**-5, 1.0, 2.0**10):
        expected = np.linalg.solve(z.T @ z + l2 * np.eye(dim + 1), z.T @ t)
        assert np.allclose(ridge.weights(l2).numpy(), expected, rtol=1e-6, atol=1e-9)
        queries = rng.normal(loc=3.0, scale=2.0, size=(9, dim)).astype(np.float32)
        zq = np.hstack([(queries - x.mean(axis=0)) / (x.std(axis=0) + STD_EPS), np.full((9, 1), BIAS_FEATURE)])
        assert np.allclose(ridge.scores(queries, l2), zq @ expected, rtol=1e-4, atol=1e-5)


def test_ridge_agrees_with_scikit_learn_ridge_classifier():
    # RidgeClassifier centres and leaves the intercept unpenalised; the bias column of 100 makes
    # its penalty 1e-4 of the weights': the outputs agree to rounding.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    y = (x[:, :3].argmax(axis=1) + (rng.random(200) < 0.1)) % 3
    z = _design(x.astype(np.float64))[:, :-1]
    sk = RidgeClassifier(alpha=4.0).fit(z, y)
    ours = Ridge(x, np.arange(200), y, 3).scores(x, 4.0)
    assert np.allclose(ours, sk.decision_function(z), atol=1e-4)


def test_ridge_chooses_l2_on_the_held_out_part():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 30)).astype(np.float32)  # noise: every l2 scores about the same
    y = rng.integers(0, 3, 60)
    chosen = select_l2(x, range(60), y, 3, [2.0**-3, 1.0, 2.0**3], list(range(45)), list(range(45, 60)))
    top1 = chosen["val_top1_by_l2"]
    assert set(top1) == {"0.125", "1", "8"} and chosen["val_top1"] == max(top1.values())
    assert chosen["l2"] == max(l2 for l2 in (0.125, 1.0, 8.0) if top1[f"{l2:g}"] == chosen["val_top1"])
    assert select_l2(x, range(60), y, 3, [1.0], list(range(60)), [])["l2"] == DEFAULT_L2


def test_knn_and_ridge_end_to_end_on_the_mini_suite(tmp_path):
    store = tmp_path / "r.db"
    done = cli(["run", "--model", "test_resnet", "--init", "random", "--adapt", "knn,ridge,linear-probe", "--dataset",
                "digits-lt", "--shots", "10%", "--image-size", "32", "--hp", "search=gvb", "--store", str(store)])
    assert done.returncode == 0, done.stderr
    with ResultsStore(store) as s:
        records = {r["config"]["adaptation"]: r for r in s.query()}
    assert {r["status"] for r in records.values()} == {"done"} and set(records) == {"knn", "ridge", "linear-probe"}
    # GV-B's search (linear-probe only: knn and ridge have no `search`, their ids stay), calibrated;
    # k-NN votes and ridge outputs are not probabilities: no calibration, and the reason
    probe = records.pop("linear-probe")
    assert probe["config"]["hyperparams"]["search"] == "gvb" and "search" not in records["knn"]["config"]["hyperparams"]
    assert len(probe["details"]["probe"]["val_top1_by_config"]) == 18 and probe["details"]["calibration"]["temperature"]
    assert {"ece", "nll", "brier", "ece_ts", "nll_ts", "brier_ts"} <= set(probe["metrics"])
    assert all(r["details"]["calibration"]["scores"].startswith("n/a: ") and "nll" not in r["metrics"]
               for r in records.values())
    knn, ridge = records["knn"]["details"]["knn"], records["ridge"]["details"]["ridge"]
    # 53 subset items, 12 held out: k is capped by the 41 fit items
    assert knn["k_grid"] == [10, 20, 41] and set(knn["val_top1_by_k"]) == {"10", "20", "41"}
    assert knn["k"] in knn["k_grid"] and knn["n_bank"] == 53 and knn["n_val"] == 12
    assert len(ridge["val_top1_by_l2"]) == 30 and ridge["l2"] in ridge["l2_grid"]
    for record in records.values():  # ten classes: chance is 10%
        assert record["metrics"]["top1"] > 25.0
    assert records["ridge"]["trainable_params"] > 0 and records["knn"]["trainable_params"] == 0

    wrong = cli(["run", "--model", "test_resnet", "--adapt", "knn", "--dataset", "mini-voc-det",
                 "--store", str(store)])
    assert wrong.returncode == 2 and "'knn' does not support detection" in wrong.stderr
