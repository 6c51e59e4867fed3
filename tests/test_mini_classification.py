"""The embedded classification datasets: deterministic bytes, official layouts, long tails, and
real (learnable, not trivial) problems — a probe on a random-init tiny net beats chance clearly."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from gaia_bench.shots import ShotSpec, sample_indices, subset_stats
from gaia_bench.store import ResultsStore
from tests.helpers import require_debian_sources, tree_digest

runner = CliRunner()
DATASETS = ["digits-lt", "fashion-mnist-lt", "lfw-faces", "textures-lt"]


def _needs_sources(name: str) -> None:
    if name == "fashion-mnist-lt":
        require_debian_sources()


def test_mini_suite_lists_the_classification_sets():
    assert list(get_registries().suites.get("mini").datasets)[:4] == DATASETS


@pytest.mark.parametrize("name", DATASETS)
def test_prepare_is_deterministic_and_verifies(name, tmp_path):
    _needs_sources(name)
    spec = get_registries().datasets.get(name)
    spec.prepare(tmp_path / "a")
    spec.prepare(tmp_path / "b")
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert spec.verify(tmp_path / "a") == []
    for split, size in spec.splits.items():
        samples = spec.load(tmp_path / "a", split)
        assert len(samples) == size and len(samples.classes) == spec.num_classes
        assert {s.key.split("/")[0] for s in samples.samples} == {split}


@pytest.mark.parametrize("name,tail", [("digits-lt", 10), ("fashion-mnist-lt", 10), ("textures-lt", 10)])
def test_long_tail_shows_in_ten_percent_subsets(name, tail, tmp_path):
    _needs_sources(name)
    spec = get_registries().datasets.get(name)
    spec.prepare(tmp_path)
    train = spec.load(tmp_path, "train")
    labels = train.labels()
    full = subset_stats([[y] for y in labels], spec.num_classes)
    assert full.per_class_max / full.per_class_min >= 0.9 * tail  # imbalance ratio ~10
    idx = sample_indices(labels, [s.key for s in train.samples], ShotSpec(fraction=0.1), seed=0)
    sub = subset_stats([[labels[i]] for i in idx], spec.num_classes)
    assert sub.per_class_min >= 1 and sub.per_class_max >= 5 * sub.per_class_min


@pytest.mark.parametrize("name,chance,margin", [
    ("digits-lt", 10.0, 30.0), ("fashion-mnist-lt", 10.0, 30.0), ("lfw-faces", 50.0, 25.0), ("textures-lt", 20.0, 30.0),
])
def test_learnable_by_a_probe_on_a_random_tiny_net(name, chance, margin, tmp_path):
    _needs_sources(name)
    store = tmp_path / "r.db"
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--init", "random", "--image-size", "32",
                                 "--dataset", name, "--shots", "100%", "--store", str(store),
                                 "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        top1 = s.query()[0]["metrics"]["top1"]
    assert chance + margin <= top1 < 100.0
