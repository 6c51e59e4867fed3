"""``linear-probe``: frozen backbone (eval mode), cached pooled features, then a multinomial
logistic-regression probe whose weight decay is chosen on a held-out part of the training subset
and refit on the whole subset (the protocol of CLIP / CLIP_benchmark, on GV-B's shots).

Weight decay ``wd`` means the objective ``mean cross-entropy + wd/2 * ||W||^2`` on standardized
features (scikit-learn's ``C = 1 / (wd * n)``). Hold-out: ``val_share`` of each class that has at
least 2 samples (at least 1 of them), chosen by the job seed; ties prefer the larger ``wd``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec

HYPERPARAMS = {"wd_grid": [10.0 ** e for e in range(-6, 3)], "val_share": 0.2, "max_iter": 1000}


def holdout_split(y: np.ndarray, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, val): per class with 2+ samples, ``max(1, round(val_share*n))`` go to val,
    always leaving at least one to fit."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_val = min(len(members) - 1, max(1, round(val_share * len(members)))) if len(members) >= 2 else 0
        val.extend(members[:n_val])
        fit.extend(members[n_val:])
    return np.sort(np.asarray(fit, dtype=int)), np.sort(np.asarray(val, dtype=int))


class Probe:
    """Standardize, then logistic regression; handles a single-class subset by constant prediction."""

    def __init__(self, wd: float, max_iter: int) -> None:
        self.wd = wd
        self.max_iter = max_iter
        self.converged = True

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Probe":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0) + 1e-6
        self.classes = np.unique(y)
        if len(self.classes) == 1:
            self.model = None
            return self
        self.model = LogisticRegression(C=1.0 / (self.wd * len(y)), max_iter=self.max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self.model.fit((x - self.mean) / self.scale, y)
        self.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(x), self.classes[0])
        return self.model.predict((x - self.mean) / self.scale)


def select_weight_decay(x: np.ndarray, y: np.ndarray, grid: list[float], val_share: float, max_iter: int,
                        seed: int) -> dict:
    """The grid point with the best held-out accuracy (None when no class can spare a sample)."""
    fit, val = holdout_split(y, val_share, seed)
    if len(val) == 0:
        return {"weight_decay": None, "n_val": 0, "val_top1": None}
    scores = []
    for wd in grid:
        pred = Probe(wd, max_iter).fit(x[fit], y[fit]).predict(x[val])
        scores.append(float((pred == y[val]).mean() * 100))
    best = max(range(len(grid)), key=lambda i: (scores[i], grid[i]))
    return {"weight_decay": grid[best], "n_val": int(len(val)), "val_top1": scores[best],
            "val_top1_by_wd": dict(zip([f"{w:g}" for w in grid], scores))}


def run(ctx) -> AdaptationResult:
    hp = ctx.hyperparams
    dataset = ctx.job.dataset
    train, indices = ctx.train_subset()
    test = ctx.load(dataset.test_split)
    x_train = ctx.features(dataset.train_split)[indices]
    y_train = np.asarray(train.labels())[indices]
    x_test = ctx.features(dataset.test_split)
    y_test = np.asarray(test.labels())

    start = time.perf_counter()
    selection = select_weight_decay(x_train, y_train, hp["wd_grid"], hp["val_share"], hp["max_iter"], ctx.config.seed)
    wd = selection["weight_decay"] if selection["weight_decay"] is not None else float(np.median(hp["wd_grid"]))
    probe = Probe(wd, hp["max_iter"]).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    metrics = ctx.job.task.compute_metrics(y_test, probe.predict(x_test), len(train.classes))
    return AdaptationResult(
        metrics=metrics,
        n_train=len(indices),
        n_test=len(y_test),
        details={"subset": ctx.subset_stats(train, indices), "probe": {**selection, "weight_decay_used": wd,
                                                                      "converged": probe.converged}},
        stage_seconds={"probe_fit": fit_seconds},
        trainable_params=int(x_train.shape[1] * len(train.classes) + len(train.classes)),
    )


LINEAR_PROBE = AdaptationSpec(
    name="linear-probe",
    description="frozen backbone, cached features, logistic-regression probe with weight decay chosen on a hold-out",
    task_types=("classification",),
    run=run,
    hyperparams=HYPERPARAMS,
)


@hookimpl
def register_adaptations(register):
    register(LINEAR_PROBE)
