"""Bootstrap resamples of the detection metrics, computed from ONE matching of the test set.

Every metric family here matches detections to ground truth within an image, so a copy of an
image matches exactly as the image does: each test image is matched once, and a resample only
says how often each image is drawn (``counts[b, i]``). The values equal the task's ``evaluate`` on
the explicitly resampled test set (copies of an image adjacent, in test order, which is what the
core's generic path builds), not an approximation of it:

* VOC AP and CityPersons MR⁻² rank all detections of the set by score (a stable sort, so equal
  scores keep test order). In a resample's ranking every run of equal scores from one image comes
  once per copy of that image, in place (:func:`repeated_runs`), and the curve is computed on that
  sequence as ``evaluate`` computes it;
* WIDER FACE counts proposals and recalled faces per image at 1000 fixed thresholds of the score
  normalised over the set, so a resample is a weighted sum over detections; only the
  normalisation (min and max over the drawn images) changes. Ranking by raw instead of normalised
  scores is exact too: whether a detection is a proposal, and which faces are recalled once all
  detections above a threshold are counted, do not depend on their order within the image.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from gaia_bench.tasks.types.lib.metrics_detection import ClassMatches, ap_area, ap_voc07_11pt, match_class


def tie_runs(scores: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of equal scores from one image in a ranked sequence."""
    if not len(scores):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, (scores[1:] != scores[:-1]) | (images[1:] != images[:-1])])
    return starts, np.diff(np.r_[starts, len(scores)])


def repeated_runs(starts: np.ndarray, lengths: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """Positions in the ranked sequence with run ``k`` repeated ``reps[k]`` times in place."""
    if not len(lengths) or (lengths == 1).all():
        return np.repeat(starts, reps)
    which = np.repeat(np.arange(len(starts)), reps)
    sizes = lengths[which]
    offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts[which], sizes) + offsets


def _nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without any class: NaN
        return np.nanmean(values, axis=1)


def voc_resample(detections: Sequence, targets: Sequence, class_names: Sequence[str],
                 counts: np.ndarray) -> dict[str, np.ndarray]:
    """The VOC metrics of ``detection_metrics`` (percent) on every row of ``counts``; a class
    whose drawn images hold no non-difficult object has NaN (``evaluate`` leaves it out)."""
    counts = np.asarray(counts, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for label, name in enumerate(class_names):
        positives = np.array([np.count_nonzero((np.asarray(t.labels, dtype=np.int64) == label)
                                               & ~np.asarray(t.difficult, dtype=bool)) for t in targets], dtype=np.int64)
        if not positives.any():
            continue  # never averaged, as in evaluate
        matches = match_class(detections, targets, label)
        starts, lengths = tie_runs(matches.scores, matches.images)
        run_images = matches.images[starts]
        npos = counts @ positives
        eleven, area = np.full(len(counts), np.nan), np.full(len(counts), np.nan)
        for b in np.flatnonzero(npos):
            at = repeated_runs(starts, lengths, counts[b, run_images])
            recall, precision = ClassMatches(matches.scores[at], matches.tp[at], matches.fp[at], int(npos[b]),
                                             matches.images[at]).pr_curve()
            eleven[b], area[b] = ap_voc07_11pt(recall, precision), ap_area(recall, precision)
        out[f"ap_voc07_11pt/{name}"], out[f"ap_area/{name}"] = 100.0 * eleven, 100.0 * area
    for variant in ("voc07_11pt", "area"):
        per_class = [v for k, v in out.items() if k.startswith(f"ap_{variant}/")]
        out[f"mAP_{variant}"] = _nanmean(np.stack(per_class, axis=1)) if per_class else np.full(len(counts), np.nan)
    out["mAP"] = out["mAP_voc07_11pt"]
    return out


def _class_zero(detections: Sequence) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4)[np.asarray(d.labels) == 0] for d in detections],
            [np.asarray(d.scores, dtype=np.float64).reshape(-1)[np.asarray(d.labels) == 0] for d in detections])


def widerface_resample(detections: Sequence, targets: Sequence, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``ap_easy`` / ``ap_medium`` / ``ap_hard`` (percent) on every row of ``counts``."""
    from gaia_bench.tasks.types.lib import metrics_widerface as wf

    counts = np.asarray(counts, dtype=np.int64)
    boxes, scores = _class_zero(detections)
    gts = [np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4) for t in targets]
    keep = {name: [np.asarray(getattr(t, name), dtype=bool).reshape(-1) for t in targets] for name in wf.SETTINGS}
    faces = {name: np.array([m.sum() for m in masks], dtype=np.int64) for name, masks in keep.items()}
    scored = np.array([len(s) > 0 for s in scores])
    lows = np.array([s.min() if len(s) else np.inf for s in scores])
    highs = np.array([s.max() if len(s) else -np.inf for s in scores])
    # Each image with faces and detections, matched once per setting, its detections in rank order.
    image, raw = [], []
    proposal: dict[str, list] = {name: [] for name in wf.SETTINGS}
    gain: dict[str, list] = {name: [] for name in wf.SETTINGS}
    for i, (b, s, g) in enumerate(zip(boxes, scores, gts)):
        if not len(b) or not len(g):
            continue  # adds nothing to the curve (its faces still count in the recall)
        for name in wf.SETTINGS:
            ranked, is_proposal, recalled = wf.image_matches(b, s, g, keep[name][i])
            proposal[name].append(is_proposal)
            gain[name].append(np.diff(recalled, prepend=0))
        image.append(np.full(len(ranked), i))
        raw.append(ranked)
    image_ids = np.concatenate(image) if image else np.zeros(0, dtype=np.int64)
    raw_scores = np.concatenate(raw) if raw else np.zeros(0)
    weights = {name: (np.concatenate(proposal[name]).astype(np.float64) if proposal[name] else np.zeros(0),
                      np.concatenate(gain[name]).astype(np.float64) if gain[name] else np.zeros(0))
               for name in wf.SETTINGS}
    thresholds = 1.0 - np.arange(1, wf.NUM_THRESHOLDS + 1) / wf.NUM_THRESHOLDS
    out = {f"ap_{name}": np.full(len(counts), np.nan) for name in wf.SETTINGS}
    for row, w in enumerate(counts):
        drawn = (w > 0) & scored
        low, high = (float(lows[drawn].min()), float(highs[drawn].max())) if drawn.any() else (0.0, 1.0)
        normalised = np.ones_like(raw_scores) if high == low else (raw_scores - low) / (high - low)
        first = np.searchsorted(-thresholds, -normalised, side="left")  # the first threshold counting it
        image_weight = w[image_ids].astype(np.float64)
        for name in wf.SETTINGS:
            total_faces = int(w @ faces[name])
            if total_faces == 0:
                continue
            is_proposal, gains = weights[name]
            proposals = np.cumsum(np.bincount(first, image_weight * is_proposal, wf.NUM_THRESHOLDS + 1))[:-1]
            tps = np.cumsum(np.bincount(first, image_weight * gains, wf.NUM_THRESHOLDS + 1))[:-1]
            precision = np.divide(tps, proposals, out=np.zeros(wf.NUM_THRESHOLDS), where=proposals > 0)
            out[f"ap_{name}"][row] = 100.0 * ap_area(tps / total_faces, precision)
    return out


def citypersons_resample(detections: Sequence, targets: Sequence, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``mr`` and the MR⁻² of every setup (percent) on every row of ``counts``."""
    from gaia_bench.tasks.types.lib import metrics_citypersons as cp

    counts = np.asarray(counts, dtype=np.int64)
    boxes, scores = _class_zero(detections)
    gts = [np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4) for t in targets]
    out: dict[str, np.ndarray] = {}
    for setup, key in cp.METRIC_KEYS.items():
        spec = cp.SETUPS[setup]
        positives = np.zeros(len(targets), dtype=np.int64)
        kept_scores, kept_hits, kept_images = [], [], []
        for i, (target, gt) in enumerate(zip(targets, gts)):
            ignore = cp.setup_ignore(gt, np.asarray(target.visibility), np.asarray(target.ignore, dtype=bool), spec)
            positives[i] = np.count_nonzero(~ignore)
            ranked, tp, swallowed = cp.match_image(boxes[i], scores[i], gt, ignore, spec)
            kept_scores.append(ranked[~swallowed])
            kept_hits.append(tp[~swallowed])
            kept_images.append(np.full(int(np.count_nonzero(~swallowed)), i))
        all_scores = np.concatenate(kept_scores) if kept_scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="stable")
        ranked_scores = all_scores[order]
        hits = (np.concatenate(kept_hits) if kept_hits else np.zeros(0, dtype=bool))[order]
        images = (np.concatenate(kept_images) if kept_images else np.zeros(0, dtype=np.int64))[order]
        starts, lengths = tie_runs(ranked_scores, images)
        run_images = images[starts]
        values = np.full(len(counts), np.nan)
        for b, w in enumerate(counts):
            drawn_positives = int(w @ positives)
            if drawn_positives:
                at = repeated_runs(starts, lengths, w[run_images])
                values[b] = 100.0 * cp.log_average_miss_rate(cp.ranked_miss_rates(hits[at], int(w.sum()),
                                                                                   drawn_positives))
        out[key] = values
    return {"mr": out["mr_Reasonable"], **out}
