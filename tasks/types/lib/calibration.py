"""Calibration of a classifier's scores: how far its confidence can be trusted, beside its accuracy.

Definitions (every one on softmax probabilities ``p = softmax(z)`` of a test item's logits ``z``,
true class ``y``, averaged over the N test items; all lower-is-better):

* ``ece``: expected calibration error, %, with :data:`BINS` = 15 equal-width confidence bins
  ``((b-1)/15, b/15]`` of the top probability ``max_c p_c`` (Guo et al. 2017): the sum over bins of
  ``n_b / N * |accuracy_b - mean confidence_b|``.
* ``nll``: negative log-likelihood, nats: the mean of ``-log p_y``.
* ``brier``: multi-class Brier score (Brier 1950): the mean of ``sum_c (p_c - [c = y])^2``, from 0
  (certain and right) to 2 (certain and wrong).
* ``*_ts``: the same after temperature scaling (Guo et al. 2017), ``p = softmax(z / T)`` with the one
  ``T`` that minimises the NLL of the *held-out* part of the job's subset (never the test split):
  :func:`fit_temperature`. Dividing by ``T`` keeps every argmax, so accuracy is unchanged.

Only scores that are logits of a softmax model (linear-probe, finetune) are calibrated; the record
says so in ``details.calibration`` (:func:`calibration_report`), and scores that are not (k-NN
vote shares, ridge outputs) get the reason instead of numbers (:func:`not_calibrated`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

BINS = 15
T_RANGE = (0.01, 100.0)  # the temperatures searched (log scale)
METRICS = ("ece", "nll", "brier")
SCALED = tuple(f"{m}_ts" for m in METRICS)
RULE = (f"ece: expected calibration error, %, {BINS} equal-width bins of the top softmax probability; nll: mean "
        "-log p(true class), nats; brier: mean sum over classes of (p_c - [c = y])^2, 0..2; *_ts: the same after "
        "temperature scaling, softmax(z / T) with T fitted (min NLL) on the held-out part of the subset; lower is better")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def ece(logits: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error, % (module docstring)."""
    probs = softmax(logits)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    gap = sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).sum()
              for b in range(bins) if (which == b).any())
    return float(100.0 * gap / len(confidence))


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes, nats."""
    labels = np.asarray(labels, dtype=np.int64)
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def brier(logits: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score, 0..2 (module docstring)."""
    probs = softmax(logits)
    probs[np.arange(len(probs)), np.asarray(labels, dtype=np.int64)] -= 1.0
    return float((probs**2).sum(axis=1).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """The ``T`` in :data:`T_RANGE` minimising ``nll(logits / T)``: golden-section search on
    ``log T`` (the NLL is convex in ``1 / T``, so it has one minimum there), deterministic. None
    when the minimum is at an end of the range: the held-out part does not determine a temperature
    (every held-out item right: the NLL keeps falling as T -> 0; none right: as T grows)."""
    logits = np.asarray(logits, dtype=np.float64)

    def loss(log_t: float) -> float:
        return nll(logits / math.exp(log_t), labels)

    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-7:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    if lo - math.log(T_RANGE[0]) < 1e-4 or math.log(T_RANGE[1]) - hi < 1e-4:
        return None
    return float(math.exp((lo + hi) / 2))


def scores(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, suffix: str = "") -> dict[str, float]:
    """``ece``, ``nll`` and ``brier`` of ``logits / temperature``, each name with ``suffix``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return {f"ece{suffix}": ece(scaled, labels), f"nll{suffix}": nll(scaled, labels),
            f"brier{suffix}": brier(scaled, labels)}


def calibration_report(test_logits: np.ndarray, test_labels: np.ndarray, val_logits: np.ndarray | None,
                       val_labels: np.ndarray | None, fitted_on: str) -> tuple[dict[str, float], dict[str, Any]]:
    """``(metrics, details)`` of a job whose predictions are softmax logits: the three metrics
    before and (with a held-out part) after temperature scaling, and the record's
    ``details.calibration`` (what ``fitted_on`` names, the temperature, the bins), from which
    `gaia-bench results rescore` recomputes the same numbers."""
    test_logits = np.asarray(test_logits)
    metrics = scores(test_logits, test_labels)
    details: dict[str, Any] = {"scores": "softmax logits", "bins": BINS, "temperature": None,
                               "n_val": 0 if val_labels is None else int(len(val_labels))}
    if val_logits is not None and len(val_labels):
        val_logits = np.asarray(val_logits, dtype=np.float64)
        temperature = fit_temperature(val_logits, val_labels)
        details.update(temperature=temperature, fitted_on=fitted_on, val_nll_before=nll(val_logits, val_labels))
        if temperature is None:
            details["temperature_note"] = (f"not determined: the held-out NLL falls toward an end of {T_RANGE} "
                                           "(held-out items all right, or all wrong); no *_ts metrics")
        else:
            details["val_nll_after"] = nll(val_logits / temperature, val_labels)
            metrics.update(scores(test_logits, test_labels, temperature, "_ts"))
    return metrics, {"calibration": details}


def not_calibrated(reason: str) -> dict[str, Any]:
    """The ``details`` of a job whose scores are not probabilities: the reason, no numbers."""
    return {"calibration": {"scores": reason}}


def temperature_of(details: Mapping[str, Any] | None) -> float:
    """The temperature a record stored (``details.calibration``), for rescoring ``*_ts``."""
    from gaia_bench.errors import DataError

    block = (details or {}).get("calibration") or {}
    if block.get("scores", "softmax logits") != "softmax logits":
        raise DataError(f"this result has no calibration: {block['scores']}", "calibrate a probe with softmax "
                        "scores instead (linear-probe, finetune)")
    if not block.get("temperature"):
        raise DataError("this result stores no temperature (run before calibration was kept, or nothing was "
                        "held out)", "rerun it with `gaia-bench run ... --force`")
    return float(block["temperature"])
