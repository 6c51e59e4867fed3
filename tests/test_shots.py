"""The percentage-shot protocol: parsing, proportions, minimum one per class, determinism,
independence of file order, nesting, long tail, k-shot, multi-label sampling, statistics."""

from __future__ import annotations

import random

import pytest

from gaia_bench.cli.common import parse_shots
from gaia_bench.errors import UsageError
from gaia_bench.shots import ShotSpec, sample_images, sample_indices, subset_stats


def long_tailed(counts: list[int]) -> tuple[list[int], list[str]]:
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    keys = [f"class{c}/img{i:05d}.png" for i, c in enumerate(labels)]
    return labels, keys


@pytest.mark.parametrize("text,expected", [
    ("10%", ShotSpec(fraction=0.1)), ("0.1", ShotSpec(fraction=0.1)), ("1%", ShotSpec(fraction=0.01)),
    ("100%", ShotSpec(fraction=1.0)), ("1", ShotSpec(fraction=1.0)), ("0.5%", ShotSpec(fraction=0.005)),
    ("5/class", ShotSpec(per_class=5)), (" 20 % ", ShotSpec(fraction=0.2)), ("0%", ShotSpec(fraction=0.0)),
])
def test_parse_valid(text, expected):
    assert parse_shots([text]) == [expected]


def test_parse_list_keeps_order_and_drops_repeats():
    assert [s.label for s in parse_shots(["1%,10%,100%", "10%", "0.1", "5/class"])] == ["1%", "10%", "100%", "5/class"]


@pytest.mark.parametrize("text,needle", [
    ("150%", "[0%, 100%] (0%: zero-shot)"), ("0", "(0, 1]"), ("1.5", "(0, 1]"), ("abc", "5/class"),
    ("0/class", "at least 1"), ("10%,", "empty"), ("-5%", "5/class"),
])
def test_parse_invalid_names_the_valid_range(text, needle):
    with pytest.raises(UsageError) as err:
        parse_shots([text])
    assert needle in str(err.value)


def test_proportional_per_class_with_minimum_one():
    counts = [500, 200, 80, 30, 9, 3, 1]
    labels, keys = long_tailed(counts)
    idx = sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=0)
    per_class = [sum(1 for i in idx if labels[i] == c) for c in range(len(counts))]
    assert per_class == [50, 20, 8, 3, 1, 1, 1]  # round half up, never below one


def test_long_tail_is_kept():
    counts = [400, 100, 25]
    labels, keys = long_tailed(counts)
    idx = sample_indices(labels, keys, ShotSpec(fraction=0.2), seed=3)
    st = subset_stats([[labels[i]] for i in idx], 3)
    assert (st.per_class_max, st.per_class_min) == (80, 5)  # same 16:1 imbalance as the full set


def test_deterministic_and_seed_dependent():
    labels, keys = long_tailed([100, 100])
    a = sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=1)
    assert a == sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=1)
    assert a != sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=2)


def test_independent_of_file_order():
    labels, keys = long_tailed([60, 30, 10])
    chosen = {keys[i] for i in sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=7)}
    order = list(range(len(keys)))
    random.Random(0).shuffle(order)
    labels2, keys2 = [labels[i] for i in order], [keys[i] for i in order]
    assert {keys2[i] for i in sample_indices(labels2, keys2, ShotSpec(fraction=0.1), seed=7)} == chosen


def test_smaller_fraction_is_a_subset_of_larger():
    labels, keys = long_tailed([300, 120, 40])
    small = set(sample_indices(labels, keys, ShotSpec(fraction=0.01), seed=5))
    large = set(sample_indices(labels, keys, ShotSpec(fraction=0.1), seed=5))
    assert small < large


def test_k_shot_caps_at_class_size():
    labels, keys = long_tailed([50, 3])
    idx = sample_indices(labels, keys, ShotSpec(per_class=5), seed=0)
    assert [sum(1 for i in idx if labels[i] == c) for c in (0, 1)] == [5, 3]


def test_multilabel_samples_images_and_keeps_every_class():
    rng = random.Random(0)
    label_sets = [{0} if rng.random() < 0.9 else {0, 1} for _ in range(300)]
    label_sets[123] = {2}  # a class present in a single image
    keys = [f"img{i:04d}.jpg" for i in range(300)]
    idx = sample_images(label_sets, keys, ShotSpec(fraction=0.1), seed=0)
    assert len(idx) == 30
    assert set().union(*(label_sets[i] for i in idx)) == {0, 1, 2}
    assert idx == sample_images(label_sets, keys, ShotSpec(fraction=0.1), seed=0)


def test_stats_match_hand_count():
    st = subset_stats([[0], [0], [0], [1], [2], [2]], num_classes=4)
    assert st.as_dict() == {"n_samples": 6, "n_classes": 4, "per_class_avg": 1.5, "per_class_min": 0, "per_class_max": 3}
