"""The selection math of GAIA's task-specific data selection (TSDS), on plain feature arrays.

GAIA represents every class, downstream and upstream, by the mean of its images' penultimate
features and compares classes by cosine similarity. Upstream images are then collected until a
budget is met, by one of two rules:

* ``top-k``: every downstream class takes its ``top_k`` most similar upstream classes; the budget is
  split evenly over the downstream classes, and each fills its share with the images of its matched
  classes that lie closest (cosine) to its own mean;
* ``pairs``: the P x Q (downstream class, upstream class) pairs are walked from the most similar
  down; each upstream class joins the downstream class of its best pair, and its images (closest to
  that class's mean first) are taken until the budget is spent;
* ``random``, the control (issue "the seed methods against their controls"): the same number of
  images drawn uniformly from the pool by ``seed``, each standing for the downstream class whose
  mean it lies closest to, so that only the choice of images differs from a real selection.

An image is selected at most once, and only from the classes a downstream class was matched to, so
the result says which downstream class every selected image stands for. Ties are broken by index:
the same features always give the same selection. Nothing here needs more than one image per
class; a class with no image gets no match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("top-k", "pairs", "random")


@dataclass(frozen=True)
class ClassMatch:
    """One matched (downstream class, upstream class) pair and the images it contributed."""

    downstream: int
    upstream: int
    similarity: float
    n_selected: int


@dataclass(frozen=True)
class Selection:
    """Selected upstream images (``indices`` into the pool), the downstream class each was matched
    to (``assigned``), the class pairs behind them, and the full P x Q class similarity."""

    indices: np.ndarray
    assigned: np.ndarray
    matches: list[ClassMatch]
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(means [C, D], present [C])``: the mean feature of each class; absent classes get zeros."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((num_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    sums[present] /= counts[present, None]
    return sums, present


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    return _unit(np.asarray(a, dtype=np.float64)) @ _unit(np.asarray(b, dtype=np.float64)).T


def _even_quotas(budget: int, members: np.ndarray) -> dict[int, int]:
    """``budget`` split over ``members`` as evenly as possible (the first ones get the remainder)."""
    base, extra = divmod(budget, max(len(members), 1))
    return {int(p): base + (1 if i < extra else 0) for i, p in enumerate(members)}


def _select_top_k(sim: np.ndarray, image_sim: np.ndarray, up_labels: np.ndarray, down_present: np.ndarray,
                  up_present: np.ndarray, budget: int, top_k: int) -> tuple[list[int], list[int], dict]:
    downs = np.flatnonzero(down_present)
    ups = np.flatnonzero(up_present)
    k = min(top_k, len(ups))
    matched: dict[int, list[int]] = {}
    for p in downs:
        order = ups[np.lexsort((ups, -sim[p, ups]))]  # most similar first, ties by index
        matched[int(p)] = [int(q) for q in order[:k]]
    quotas = _even_quotas(budget, downs)
    # Candidate (downstream class, image) pairs: images of the classes that class was matched to,
    # taken greedily from the closest pair down, within each class's share, each image once.
    cand_p, cand_i = [], []
    for p, qs in matched.items():
        images = np.flatnonzero(np.isin(up_labels, qs))
        cand_p.append(np.full(len(images), p))
        cand_i.append(images)
    if not cand_p:
        return [], [], {}
    cand_p_arr, cand_i_arr = np.concatenate(cand_p), np.concatenate(cand_i)
    order = np.lexsort((cand_i_arr, cand_p_arr, -image_sim[cand_p_arr, cand_i_arr]))
    taken: set[int] = set()
    indices, assigned = [], []
    for j in order:
        p, i = int(cand_p_arr[j]), int(cand_i_arr[j])
        if quotas[p] == 0 or i in taken:
            continue
        taken.add(i)
        quotas[p] -= 1
        indices.append(i)
        assigned.append(p)
        if len(indices) == budget:
            break
    return indices, assigned, matched


def _select_pairs(sim: np.ndarray, image_sim: np.ndarray, up_labels: np.ndarray, down_present: np.ndarray,
                  up_present: np.ndarray, budget: int) -> tuple[list[int], list[int], dict]:
    downs, ups = np.flatnonzero(down_present), np.flatnonzero(up_present)
    pp, qq = np.meshgrid(downs, ups, indexing="ij")
    pp, qq = pp.ravel(), qq.ravel()
    order = np.lexsort((qq, pp, -sim[pp, qq]))
    used: set[int] = set()
    matched: dict[int, list[int]] = {}
    indices, assigned = [], []
    for j in order:
        if len(indices) >= budget:
            break
        p, q = int(pp[j]), int(qq[j])
        if q in used:
            continue  # an upstream class joins only its best downstream class
        used.add(q)
        matched.setdefault(p, []).append(q)
        images = np.flatnonzero(up_labels == q)
        images = images[np.lexsort((images, -image_sim[p, images]))][: budget - len(indices)]
        indices.extend(int(i) for i in images)
        assigned.extend([p] * len(images))
    return indices, assigned, matched


def _select_random(image_sim: np.ndarray, down_present: np.ndarray, up_present: np.ndarray, up_labels: np.ndarray,
                   budget: int, seed: int) -> tuple[list[int], list[int], dict]:
    downs = np.flatnonzero(down_present)
    pool = np.flatnonzero(np.isin(up_labels, np.flatnonzero(up_present)))
    if not len(downs) or not len(pool):
        return [], [], {}
    indices = np.sort(np.random.default_rng(seed).choice(pool, size=min(budget, len(pool)), replace=False))
    assigned = downs[np.argmax(image_sim[downs][:, indices], axis=0)]  # ties: the first class
    matched: dict[int, list[int]] = {}
    for p, q in sorted({(int(p), int(q)) for p, q in zip(assigned, up_labels[indices])}):
        matched.setdefault(p, []).append(q)
    return [int(i) for i in indices], [int(p) for p in assigned], matched


def select(down_features: np.ndarray, down_labels: np.ndarray, num_down: int,
           up_features: np.ndarray, up_labels: np.ndarray, num_up: int,
           *, mode: str = "top-k", budget: int = 500, top_k: int = 2, seed: int = 0) -> Selection:
    """Select at most ``budget`` upstream images for the downstream classes (see the module doc)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if budget < 0 or top_k < 1:
        raise ValueError("budget must be >= 0 and top_k >= 1")
    up_labels = np.asarray(up_labels, dtype=np.int64)
    down_means, down_present = class_means(down_features, down_labels, num_down)
    up_means, up_present = class_means(up_features, up_labels, num_up)
    sim = cosine(down_means, up_means)
    sim[~down_present, :] = np.nan
    sim[:, ~up_present] = np.nan
    image_sim = cosine(down_means, up_features)  # [P, N]: how close each pool image is to each class
    if mode == "top-k":
        indices, assigned, matched = _select_top_k(sim, image_sim, up_labels, down_present, up_present, budget, top_k)
    elif mode == "random":
        indices, assigned, matched = _select_random(image_sim, down_present, up_present, up_labels, budget, seed)
    else:
        indices, assigned, matched = _select_pairs(sim, image_sim, up_labels, down_present, up_present, budget)
    idx, asg = np.asarray(indices, dtype=np.int64), np.asarray(assigned, dtype=np.int64)
    matches = []
    for p in sorted(matched):
        for q in matched[p]:
            n = int(np.sum((asg == p) & (up_labels[idx] == q))) if len(idx) else 0
            matches.append(ClassMatch(p, q, float(sim[p, q]), n))
    return Selection(idx, asg, matches, sim)
