"""``ridge``: closed-form ridge regression of one-hot targets on the frozen backbone's cached
features, the recipe of big_vision's few-shot evaluator (``evaluators/fewshot_lsr.py``). No
iterations and no learning rate: the cheapest probe there is, for evaluating many checkpoints.

* Design: features standardised per dimension with the training rows' mean and standard deviation
  (+1e-5), plus a constant column of 100 for the bias (so large that the bias is almost
  unregularised). Targets: one-hot rescaled to {-1, +1}.
* ``W(l2) = argmin ||Z W - T||^2 + l2 ||W||^2`` for every ``l2`` of ``l2_grid`` from one
  eigendecomposition: of ``Z^T Z`` when there are at least as many rows as columns
  (``W = Q diag(1 / (e + l2)) Q^T Z^T T``), else of ``Z Z^T`` (``W = Z^T Q diag(1 / (e + l2)) Q^T T``).
* ``l2`` is chosen on the runner's held-out part (fit on the fit part, best held-out top-1; ties:
  the larger ``l2``) from ``l2_grid`` = 2^-10 ... 2^19, the sweep of big_vision's few-shot configs
  (their fixed default, 2^10, is what a job without a held-out part uses); then the model is refit
  on the whole subset with that ``l2``; a test item's class is the argmax of its outputs. ``l2`` is
  absolute (not per sample), as big_vision's.
* float64 on the job's device (CPU for ``mps``, which has no float64); the rows are read in blocks,
  so the training matrix is neither copied nor moved to the device whole.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.plugins.adaptations.lib.feature_blocks import row_blocks
from gaia_bench.tasks.types.lib.calibration import not_calibrated

PLUGIN_ORDER = 304

if TYPE_CHECKING:
    import torch

HYPERPARAMS = {"l2_grid": [2.0 ** e for e in range(-10, 20)], "val_share": 0.2}
BIAS_FEATURE = 100.0  # the constant column standing for the bias
STD_EPS = 1e-5
DEFAULT_L2 = 2.0 ** 10  # big_vision's fixed l2_reg: used when nothing is held out
NOT_CALIBRATED = "n/a: ridge scores are least-squares fits to one-hot targets in {-1, +1}, not probabilities"
ROW_CHUNK = 32768  # rows per block moved to the device


class Ridge:
    """Ridge regressions of ``labels`` (one-hot, {-1, +1}) on ``features[rows]`` for any ``l2``,
    after one eigendecomposition (see the module docstring)."""

    def __init__(self, features: np.ndarray, rows: Sequence[int] | np.ndarray, labels: np.ndarray, num_classes: int,
                 device: str = "cpu") -> None:
        import torch

        self.device = "cpu" if device.startswith("mps") else device
        rows = np.asarray(rows, dtype=np.int64)
        n, dim = len(rows), features.shape[1]
        total = torch.zeros(dim, dtype=torch.float64, device=self.device)
        for _, block in row_blocks(features, rows, ROW_CHUNK):
            total += self._tensor(block).sum(dim=0)
        self.mean = total / n
        squares = torch.zeros_like(total)
        for _, block in row_blocks(features, rows, ROW_CHUNK):
            squares += ((self._tensor(block) - self.mean) ** 2).sum(dim=0)
        self.std = (squares / n).sqrt() + STD_EPS
        targets = 2.0 * torch.nn.functional.one_hot(
            torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self.device), num_classes).double() - 1.0
        if n >= dim + 1:  # more rows than columns: decompose Z^T Z, accumulated block by block
            gram = torch.zeros(dim + 1, dim + 1, dtype=torch.float64, device=self.device)
            projected = torch.zeros(dim + 1, num_classes, dtype=torch.float64, device=self.device)
            for start, block in row_blocks(features, rows, ROW_CHUNK):
                z = self.design(block)
                gram += z.T @ z
                projected += z.T @ targets[start:start + len(block)]
            eigs, q = torch.linalg.eigh(gram)
            self.left, self.right = q, q.T @ projected
        else:  # fewer rows than columns: decompose Z Z^T
            z = self.design(features[rows])
            eigs, q = torch.linalg.eigh(z @ z.T)
            self.left, self.right = z.T @ q, q.T @ targets
        self.eigs = eigs.clamp_min(0.0)  # a Gram matrix is positive semi-definite: negatives are rounding

    def _tensor(self, block: np.ndarray) -> "torch.Tensor":
        import torch

        return torch.as_tensor(block).to(self.device, torch.float64)

    def design(self, block: np.ndarray) -> "torch.Tensor":
        """The design rows of feature rows: standardised, with the bias column appended."""
        import torch

        z = (self._tensor(block) - self.mean) / self.std
        return torch.cat([z, torch.full((len(z), 1), BIAS_FEATURE, dtype=z.dtype, device=z.device)], dim=1)

    def weights(self, l2: float) -> "torch.Tensor":
        """``W(l2)``, ``(dim + 1, num_classes)``: the last row multiplies the bias column."""
        return (self.left / (self.eigs + l2)) @ self.right

    def top1(self, queries: np.ndarray, labels: np.ndarray, l2s: Sequence[float]) -> dict[float, float]:
        """``l2 -> top-1`` (%) of the argmax outputs on ``queries`` for every ``l2``, each query
        block projected once (``Z_q Q``) and then scaled per ``l2``."""
        import torch

        correct = dict.fromkeys(l2s, 0)
        rows = np.arange(len(queries))
        for start, block in row_blocks(queries, rows, ROW_CHUNK):
            projected = self.design(block) @ self.left
            truth = torch.as_tensor(np.asarray(labels[start:start + len(block)], dtype=np.int64), device=self.device)
            for l2 in l2s:
                outputs = projected @ (self.right / (self.eigs + l2)[:, None])
                correct[l2] += int((outputs.argmax(dim=1) == truth).sum())
        return {l2: 100.0 * correct[l2] / len(queries) for l2 in l2s}

    def scores(self, queries: np.ndarray, l2: float) -> np.ndarray:
        """The regression outputs ``(len(queries), num_classes)`` of ``W(l2)`` (float32)."""
        weights = self.weights(l2)
        rows = np.arange(len(queries))
        return np.concatenate([(self.design(block) @ weights).float().cpu().numpy()
                               for _, block in row_blocks(queries, rows, ROW_CHUNK)])


def select_l2(features: np.ndarray, indices: Sequence[int], labels: np.ndarray, num_classes: int, grid: Sequence[float],
              fit: Sequence[int], val: Sequence[int], device: str = "cpu") -> dict:
    """The ``l2`` of the grid with the best top-1 on the held-out positions ``val`` of the subset
    ``indices`` (rows of ``features``; ``labels`` the subset's classes) after fitting on ``fit``;
    ties prefer the larger ``l2``; an empty held-out part: :data:`DEFAULT_L2`."""
    indices, fit, val = np.asarray(indices, dtype=np.int64), np.asarray(fit, dtype=int), np.asarray(val, dtype=int)
    grid = sorted(float(l2) for l2 in grid)
    if len(val) == 0:
        return {"l2": DEFAULT_L2, "l2_grid": grid, "n_val": 0, "val_top1": None}
    top1 = Ridge(features, indices[fit], labels[fit], num_classes, device).top1(features[indices[val]], labels[val], grid)
    best = max(grid, key=lambda l2: (top1[l2], l2))
    return {"l2": best, "l2_grid": grid, "n_val": int(len(val)), "val_top1": top1[best],
            "val_top1_by_l2": {f"{l2:g}": top1[l2] for l2 in grid}}


def run_ridge(ctx) -> AdaptationResult:
    """Choose ``l2`` on the held-out part, refit on the whole subset, classify the test split."""
    hp = ctx.hyperparams
    data, dataset = ctx.data, ctx.job.dataset
    train = ctx.features(dataset.train_split)
    test = ctx.features(dataset.test_split)
    labels = data.subset_labels()
    start = time.perf_counter()
    selection = select_l2(train, data.indices, labels, data.num_classes, hp["l2_grid"], data.fit, data.val, ctx.device)
    ridge = Ridge(train, data.indices, labels, data.num_classes, ctx.device)
    fit_seconds = time.perf_counter() - start
    scores = ridge.scores(test, selection["l2"])
    return AdaptationResult(
        predictions=list(scores),
        details={"ridge": selection, **not_calibrated(NOT_CALIBRATED)},
        stage_seconds={"ridge_fit": fit_seconds},
        trainable_params=int((train.shape[1] + 1) * data.num_classes),
    )


RIDGE = AdaptationSpec(
    name="ridge",
    description="frozen backbone, cached features, closed-form ridge regression onto one-hot targets "
                "(big_vision's few-shot probe), l2 chosen on a hold-out from 2^-10 ... 2^19",
    task_types=("classification",),
    run=run_ridge,
    hyperparams=HYPERPARAMS,
)


@hookimpl
def register_adaptations(register):
    register(RIDGE)
