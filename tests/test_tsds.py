"""``tsds``, GAIA's task-specific data selection: the selection finds the planted nearest upstream
class on hand-made features (both modes, within the budget, from 2 images per class); the adaptation
runs end to end through the CLI and records its class matching; `gaia-bench tsds select --show`
prints the same matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaia_bench.manager import get_registries
from gaia_bench.plugins.adaptations.tsds.lib.tsds_select import select
from tests.helpers import cli

# ------------------------------------------------------------------ selection on hand-made features
# Downstream classes 0, 1, 2 lie along axes e0, e1, e2 (2 images each). Upstream class 0 is planted
# next to downstream 1, upstream 2 next to downstream 0, upstream 3 next to downstream 2; upstream 1
# is a distractor between them all; upstream 4 points away from everything.
PLANTED = {0: 2, 1: 0, 2: 3}  # downstream class -> its nearest upstream class
UP_PER_CLASS = 6


def _features(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dims = 6
    axes = np.eye(dims)
    down_x = np.concatenate([axes[c] + 0.05 * rng.standard_normal((2, dims)) for c in range(3)])
    down_y = np.repeat(np.arange(3), 2)
    centres = [axes[1], (axes[0] + axes[1] + axes[2]) / 3, axes[0], axes[2], axes[5]]
    up_x = np.concatenate([c + 0.1 * rng.standard_normal((UP_PER_CLASS, dims)) for c in centres])
    up_y = np.repeat(np.arange(len(centres)), UP_PER_CLASS)
    return down_x, down_y, up_x, up_y


def test_top_k_matches_each_class_to_its_planted_neighbour_within_budget():
    down_x, down_y, up_x, up_y = _features()
    sel = select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=9, top_k=1)
    assert {(m.downstream, m.upstream) for m in sel.matches} == set(PLANTED.items())
    assert len(sel) == 9 and len(set(sel.indices.tolist())) == 9  # 3 per class, no image twice
    for index, p in zip(sel.indices, sel.assigned):
        assert up_y[index] == PLANTED[int(p)]
    assert np.bincount(sel.assigned, minlength=3).tolist() == [3, 3, 3]
    # the 3 images taken for a class are its closest of the planted class
    for p, q in PLANTED.items():
        members = np.flatnonzero(up_y == q)
        centre = down_x[down_y == p].mean(axis=0)
        cos = up_x[members] @ centre / np.linalg.norm(up_x[members], axis=1)
        assert set(sel.indices[sel.assigned == p].tolist()) == set(members[np.argsort(-cos)[:3]].tolist())


def test_top_k_two_adds_the_next_class_and_never_exceeds_budget():
    down_x, down_y, up_x, up_y = _features()
    sel = select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=1000, top_k=2)
    second = {(m.downstream, m.upstream) for m in sel.matches} - set(PLANTED.items())
    assert {q for _, q in second} == {1}  # the distractor is everyone's second choice
    assert 4 not in set(up_y[sel.indices].tolist())  # the far class is never taken
    assert len(sel) == 4 * UP_PER_CLASS  # 3 planted classes + the shared distractor, each image once
    assert len(select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=4, top_k=2)) == 4


def test_pairs_walk_the_most_similar_pairs_until_the_budget():
    down_x, down_y, up_x, up_y = _features()
    sel = select(down_x, down_y, 3, up_x, up_y, 5, mode="pairs", budget=2 * UP_PER_CLASS + 2)
    assert len(sel) == 2 * UP_PER_CLASS + 2
    pairs = [(m.downstream, m.upstream, m.n_selected) for m in sel.matches]
    assert all(PLANTED[p] == q for p, q, _ in pairs)  # only planted pairs: they are the most similar
    assert sorted(n for _, _, n in pairs) == [2, UP_PER_CLASS, UP_PER_CLASS]
    everything = select(down_x, down_y, 3, up_x, up_y, 5, mode="pairs", budget=10_000)
    assert len(everything) == len(up_y)  # every class joins exactly one downstream class
    assert len({m.upstream for m in everything.matches}) == 5
    assert select(down_x, down_y, 3, up_x, up_y, 5, mode="pairs", budget=0).indices.size == 0


def test_random_control_draws_the_same_budget_by_seed_and_labels_by_the_nearest_class():
    down_x, down_y, up_x, up_y = _features()
    sel = select(down_x, down_y, 3, up_x, up_y, 5, mode="random", budget=9, seed=0)
    assert len(sel) == 9 and len(set(sel.indices.tolist())) == 9  # the budget a real selection gets
    again = select(down_x, down_y, 3, up_x, up_y, 5, mode="random", budget=9, seed=0)
    other = select(down_x, down_y, 3, up_x, up_y, 5, mode="random", budget=9, seed=1)
    assert sel.indices.tolist() == again.indices.tolist() and sel.indices.tolist() != other.indices.tolist()
    chosen = select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=9, top_k=1)
    assert sel.indices.tolist() != chosen.indices.tolist()  # drawn, not matched
    means = np.stack([down_x[down_y == c].mean(axis=0) for c in range(3)])
    cos = (up_x[sel.indices] / np.linalg.norm(up_x[sel.indices], axis=1, keepdims=True)) @ \
        (means / np.linalg.norm(means, axis=1, keepdims=True)).T
    assert sel.assigned.tolist() == cos.argmax(axis=1).tolist()  # each stands for its nearest class
    assert sum(m.n_selected for m in sel.matches) == 9
    assert len(select(down_x, down_y, 3, up_x, up_y, 5, mode="random", budget=10_000)) == len(up_y)


def test_selection_is_deterministic_and_needs_only_one_image_per_class():
    down_x, down_y, up_x, up_y = _features(seed=3)
    a = select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=7, top_k=2)
    b = select(down_x, down_y, 3, up_x, up_y, 5, mode="top-k", budget=7, top_k=2)
    assert a.indices.tolist() == b.indices.tolist() and a.assigned.tolist() == b.assigned.tolist()
    one = select(down_x[::2], down_y[::2], 3, up_x, up_y, 5, mode="top-k", budget=3, top_k=1)
    assert {(m.downstream, m.upstream) for m in one.matches} == set(PLANTED.items())


# ------------------------------------------------------------------ through the CLI
# Runs in the test session's home (tests/conftest.py), so data and features are shared with other tests.
ARGS = ["--model", "test_resnet", "--init", "random", "--dataset", "digits-lt", "--shots", "10%", "--image-size", "32"]
HP = ["--hp", "budget=60", "--hp", "epochs=4", "--hp", "min_iters=8"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tsds")


@pytest.fixture(scope="module")
def record(root) -> dict:
    store = str(root / "r.db")
    result = cli(["run", *ARGS, "--adapt", "tsds", *HP, "--store", store])
    assert result.returncode == 0, result.stdout + result.stderr
    listed = cli(["results", "--store", store, "--format", "json"])
    records = json.loads(listed.stdout)["results"]
    assert len(records) == 1 and records[0]["status"] == "done", records
    return records[0]


def test_tsds_run_records_the_matching_and_its_costs(record):
    selection = record["details"]["selection"]
    assert selection["upstream"] == "mini-upstream" and selection["mode"] == "top-k"
    assert 0 < selection["n_selected"] <= 60 == selection["budget"]
    digits = [row["class"] for row in selection["per_downstream_class"]]
    assert len(digits) == 10 and sum(row["n_selected"] for row in selection["per_downstream_class"]) == selection["n_selected"]
    assert {m["downstream"] for m in selection["matches"]} == set(digits)
    assert len(selection["matches"]) == 10 * 2  # top_k=2 per class
    assert all(m["upstream"].split("/")[0] in ("wardrobe", "catalogue", "surfaces") for m in selection["matches"])
    assert sum(m["n_selected"] for m in selection["matches"]) == selection["n_selected"]
    assert {"tsds_upstream_features", "tsds_select", "tsds_train", "evaluate"} <= record["timings"].keys()
    details = record["details"]
    assert details["batch"]["upstream"] == details["batch"]["downstream"] > 0
    assert 0 < details["iterations_run"] <= details["schedule"]["iterations"]
    assert details["peak_memory_after_train"]["peak_rss_mb"] > 0 and record["memory"]["peak_rss_mb"] > 0
    assert record["n_train"] == 53 and record["n_test"] == 539 and {"top1", "mean_per_class_acc"} <= record["metrics"].keys()
    backbone = get_registries().backbones.get("test_resnet").build()
    # labels=matched: the whole backbone and the one downstream head are trained
    assert record["trainable_params"] == sum(p.numel() for p in backbone.parameters()) + backbone.num_features * 10 + 10


def test_select_show_names_the_same_matching(record):
    result = cli(["tsds", "select", *ARGS, "--budget", "60", "--upstream", "mini", "--show"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    selection = record["details"]["selection"]
    for match in selection["matches"]:
        assert match["upstream"] in out and f"{match['similarity']:.3f}" in out
    assert f"selected {selection['n_selected']} of 1680 upstream images" in out


def test_select_rejects_a_pool_that_is_not_upstream():
    result = cli(["tsds", "select", *ARGS, "--upstream", "textures-lt"])
    assert result.returncode == 2 and "not an upstream pool" in result.stderr and "mini-upstream" in result.stderr
