"""``linear-probe``: frozen backbone (eval mode), cached pooled features, then a multinomial
logistic-regression probe whose weight decay is chosen on a held-out part of the training subset
and refit on the whole subset (the protocol of CLIP / CLIP_benchmark, on GV-B's shots). The sweep
runs from strong to weak decay, warm-starting each fit, and stops after ``patience`` worse points.

Weight decay ``wd`` means the objective ``mean cross-entropy + wd/2 * ||W||^2`` on standardized
features (scikit-learn's ``C = 1 / (wd * n)``), minimized with L-BFGS. Hold-out: the runner's
(``val_share`` of each class that has at least 2 samples, at least 1 of them, chosen by the job
seed: :mod:`gaia_bench.protocol`); ties prefer the larger ``wd``.

``wd_grid``, the decays tried, is a JSON list (``--hp wd_grid=[0.001,0.01,0.1]``; default 1e-6 ...
1e2, one per decade) or the name of a preset in :data:`WD_PRESETS`:

* ``wide``: dinov3's sweep (``eval/log_regression.py``): 45 values of ``C`` log-spaced from 1e-6 to
  1e5, as ``wd = 1 / (C * n_fit)`` for the ``n_fit`` items the sweep fits on; every point is fit
  (no early stop: ``patience`` is for the one-per-decade grid; dinov3 scores all 45).

``search`` (optional, left out of the job id unless set) replaces the sweep by a named recipe:
``--hp search=gvb`` is GV-B's own SGD search over learning rate x weight decay x momentum
(:mod:`~gaia_bench.plugins.adaptations.lib.sgd_probe`; ``wd_grid``, ``max_iter`` and ``patience``
are then unused). Either way the record carries the calibration of the test logits (ECE, NLL,
Brier, and the same after temperature scaling fitted on the chosen probe's held-out logits:
:mod:`gaia_bench.tasks.types.lib.calibration`).

Every task trains its own head through its ``train_head`` hook with the backbone frozen: for
classification that is the probe above (:func:`run_classification`); the dense tasks train a light
decoder, detection a Faster R-CNN + FPN, over the frozen backbone's feature pyramid.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.dense_probe import DENSE_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.detection_head import DETECTION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.logistic import fit_logistic
from gaia_bench.plugins.adaptations.lib.sgd_probe import SEARCHES, SgdProbes, gvb_search
from gaia_bench.plugins.adaptations.lib.training import train_task_head

PLUGIN_ORDER = 300

HYPERPARAMS = {"wd_grid": [10.0 ** e for e in range(-6, 3)], "val_share": 0.2, "max_iter": 1000, "patience": 2,
               "search": None}  # optional (None: out of the job id); "gvb": GV-B's SGD search (lib/sgd_probe.py)
# The dense heads' knobs enter only their own tasks' job ids (held-out early stopping is finetune's).
_DENSE = {k: v for k, v in DENSE_HYPERPARAMS.items() if k != "dense_eval_every"}
_DETECTION = {k: v for k, v in DETECTION_HYPERPARAMS.items() if k != "det_eval_every"}
TASK_HYPERPARAMS = {"classification": HYPERPARAMS, "segmentation": _DENSE, "depth": _DENSE, "detection": _DETECTION}
# dinov3's 45 inverse regularisation strengths C = 10^linspace(-6, 5, 45) (``wd_grid=wide``).
DINOV3_C = [10.0 ** (-6 + 11 * i / 44) for i in range(45)]
WD_PRESETS = {"wide": "dinov3's 45 C values 1e-6 ... 1e5 (wd = 1 / (C * n_fit)), all fit"}


def resolve_wd_grid(value, n_fit: int, patience: int) -> tuple[list[float], int]:
    """``(decays, patience)`` of a ``wd_grid`` hyper-parameter: a list as given, or a preset
    (:data:`WD_PRESETS`) resolved for a sweep that fits on ``n_fit`` items."""
    if value == "wide":
        return sorted(1.0 / (c * max(n_fit, 1)) for c in DINOV3_C), len(DINOV3_C)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and v > 0 for v in value):
        return [float(v) for v in value], patience
    raise UsageError(f"--hp wd_grid={value!r} is neither a list of positive decays nor a preset",
                     f"give a JSON list such as [0.001,0.01,0.1], or a preset: {', '.join(WD_PRESETS)}")


class Probe:
    """Standardized features -> multinomial logistic regression, fit full-batch with L-BFGS
    (:mod:`~gaia_bench.plugins.adaptations.lib.logistic`: scipy's on a CPU, torch's on CUDA).

    ``warm_from`` starts from another probe's weights: the weight-decay sweep runs from strong to
    weak regularization, each fit starting where the previous one ended.
    """

    def __init__(self, wd: float, max_iter: int, device: str = "cpu") -> None:
        self.wd = wd
        self.max_iter = max_iter
        self.device = device
        self.converged = True

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int, warm_from: "Probe | None" = None) -> "Probe":
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0) + 1e-6
        start = (warm_from.weight, warm_from.bias) if warm_from is not None else None
        self.weight, self.bias, self.converged = fit_logistic(self._standardize(x), y, num_classes, self.wd,
                                                              self.max_iter, start, self.device)
        return self

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float64)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._standardize(x) @ self.weight + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1)


def select_weight_decay(x: np.ndarray, y: np.ndarray, num_classes: int, grid: list[float], fit: Sequence[int],
                        val: Sequence[int], max_iter: int, patience: int, fitted: dict | None = None,
                        device: str = "cpu") -> dict:
    """The grid point with the best accuracy on the held-out positions ``val`` after fitting on
    ``fit`` (the runner's hold-out, :mod:`gaia_bench.protocol`; None when it is empty).

    The sweep goes from the strongest to the weakest decay and stops once ``patience`` points in a
    row score below the best so far; ties prefer the stronger decay. ``fitted``, when given,
    receives the chosen probe, by its decay (its held-out logits calibrate the job). ``device``:
    CUDA fits with torch there, anything else on the CPU (:class:`Probe`)."""
    fit, val = np.asarray(fit, dtype=int), np.asarray(val, dtype=int)
    if len(val) == 0:
        return {"weight_decay": None, "n_val": 0, "val_top1": None}
    scores: dict[float, float] = {}
    previous = None
    worse = 0
    for wd in sorted(grid, reverse=True):
        previous = Probe(wd, max_iter, device).fit(x[fit], y[fit], num_classes, warm_from=previous)
        score = float((previous.predict(x[val]) == y[val]).mean() * 100)
        if fitted is not None and score > max(scores.values(), default=-1.0):  # the best so far (ties: the earlier)
            fitted.clear()
            fitted[wd] = previous
        scores[wd] = score
        worse = worse + 1 if scores[wd] < max(scores.values()) else 0
        if worse >= patience:
            break
    best = max(scores, key=lambda wd: (scores[wd], wd))
    return {"weight_decay": best, "n_val": int(len(val)), "val_top1": scores[best],
            "val_top1_by_wd": {f"{w:g}": scores[w] for w in sorted(scores)}}


SINGLE_THREAD_BELOW = 50_000_000  # samples x features x classes: one logits product, in multiply-adds


@contextmanager
def solver_threads(size: int) -> Iterator[None]:
    """Run a small probe on one thread, in torch and in numpy's / scipy's BLAS. L-BFGS takes
    thousands of tiny steps, and each one split over threads makes them meet at a barrier: on this
    project's 2-core machine under load, the 10% fashion-mnist-lt probe (123 x 64 x 10) took 60 s on
    2 torch threads and 1.7 s on one, and scipy's sweep on a 514 x 96 x 10 problem ran 20x slower
    on 2 BLAS threads, with identical numbers. Large problems (a resnet50 on CIFAR-100) keep every
    thread."""
    import scipy.optimize  # noqa: F401  (loads scipy's BLAS, so that the limit below reaches it)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    small = size < SINGLE_THREAD_BELOW
    if small:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1 if small else None, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def run_classification(ctx) -> AdaptationResult:
    """The probe of the job's ``search`` recipe (None: the L-BFGS weight-decay sweep; ``gvb``:
    :mod:`~gaia_bench.plugins.adaptations.lib.sgd_probe`), then the calibration of its test logits
    with the temperature fitted on the chosen probe's held-out logits (:mod:`...lib.calibration`)."""
    import scipy.optimize  # noqa: F401  (imported here, before the fit's timer: a cold import takes seconds)

    from gaia_bench.tasks.types.lib.calibration import calibration_report

    hp = ctx.hyperparams
    dataset = ctx.job.dataset
    data = ctx.data
    indices = list(data.indices)
    x_train = ctx.features(dataset.train_split)[indices]
    y_train = data.subset_labels()
    x_test = ctx.features(dataset.test_split)
    search = hp.get("search")
    if search not in (None, *SEARCHES):
        raise UsageError(f"--hp search={search!r} is not a known probe search",
                         f"choose one of: {', '.join(SEARCHES)} (or leave it out for the L-BFGS sweep)")

    start = time.perf_counter()
    num_classes = data.num_classes
    val = np.asarray(data.val, dtype=int)
    with solver_threads(x_train.shape[0] * x_train.shape[1] * num_classes):
        if search == "gvb":
            selection, val_logits = gvb_search(x_train, y_train, num_classes, data.fit, data.val,
                                               int(ctx.config.seed), ctx.device)
            chosen = tuple(selection["chosen"][k] for k in ("lr", "weight_decay", "momentum"))
            refit = SgdProbes([chosen], seed=int(ctx.config.seed), device=ctx.device).fit(x_train, y_train, num_classes)
            test_logits, converged = refit.logits(x_test)[0], refit.finite[0]
            details = {**selection, "converged": converged}
        else:
            grid, patience = resolve_wd_grid(hp["wd_grid"], len(data.fit), hp["patience"])
            fitted: dict[float, Probe] = {}
            selection = select_weight_decay(x_train, y_train, num_classes, grid, data.fit, data.val, hp["max_iter"],
                                            patience, fitted, ctx.device)
            wd = selection["weight_decay"] if selection["weight_decay"] is not None else float(np.median(grid))
            probe = Probe(wd, hp["max_iter"], ctx.device).fit(x_train, y_train, num_classes)
            test_logits = probe.logits(x_test)
            val_logits = fitted[wd].logits(x_train[val]) if selection["weight_decay"] is not None else None
            details = {**selection, "weight_decay_used": wd, "converged": probe.converged}
    fit_seconds = time.perf_counter() - start
    metrics, calibration = calibration_report(
        test_logits, np.asarray(data.test.labels()), val_logits, y_train[val],
        "held-out logits of the chosen probe, fit on the fit part (the test logits are the refit's)")
    return AdaptationResult(
        predictions=list(test_logits),
        metrics=metrics,
        details={"probe": details, **calibration},
        stage_seconds={"probe_fit": fit_seconds},
        trainable_params=int(x_train.shape[1] * num_classes + num_classes),
    )


LINEAR_PROBE = AdaptationSpec(
    name="linear-probe",
    description="frozen backbone, cached features, logistic-regression probe with weight decay chosen on a hold-out; "
                "segmentation / depth: a light FPN decoder, detection: Faster R-CNN + FPN, over the frozen pyramid",
    task_types=("classification", "detection", "segmentation", "depth"),
    run=train_task_head(train_backbone=False),  # the task's head over the frozen backbone
    task_hyperparams=TASK_HYPERPARAMS,
    trains_task_heads=True,
)


@hookimpl
def register_adaptations(register):
    register(LINEAR_PROBE)
