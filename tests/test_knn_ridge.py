"""The probes on cached features: ``knn`` (weighted votes and the choice of k worked out by hand,
against scikit-learn's KNeighborsClassifier, a chunked search equal to an unchunked one), end to
end through the CLI on the mini suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from gaia_bench.plugins.adaptations.knn import capped_ks, nearest, neighbours, select_k, vote
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


def test_knn_end_to_end_on_the_mini_suite(tmp_path):
    store = tmp_path / "r.db"
    done = cli(["run", "--model", "test_resnet", "--init", "random", "--adapt", "knn", "--dataset", "digits-lt",
                "--shots", "10%", "--image-size", "32", "--store", str(store)])
    assert done.returncode == 0, done.stderr
    with ResultsStore(store) as s:
        records = {r["config"]["adaptation"]: r for r in s.query()}
    assert {r["status"] for r in records.values()} == {"done"} and set(records) == {"knn"}
    knn = records["knn"]["details"]["knn"]
    # 53 subset items, 12 held out: k is capped by the 41 fit items
    assert knn["k_grid"] == [10, 20, 41] and set(knn["val_top1_by_k"]) == {"10", "20", "41"}
    assert knn["k"] in knn["k_grid"] and knn["n_bank"] == 53 and knn["n_val"] == 12
    for record in records.values():  # ten classes: chance is 10%
        assert record["metrics"]["top1"] > 25.0
    assert records["knn"]["trainable_params"] == 0

    wrong = cli(["run", "--model", "test_resnet", "--adapt", "knn", "--dataset", "mini-voc-det",
                 "--store", str(store)])
    assert wrong.returncode == 2 and "'knn' does not support detection" in wrong.stderr
