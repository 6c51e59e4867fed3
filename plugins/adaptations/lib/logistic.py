"""The linear probe's solver: multinomial logistic regression, ``mean cross-entropy + wd/2 *
||W||^2`` on standardized features (bias unpenalized), minimized with L-BFGS from a given start.

On a CPU it is scipy's L-BFGS-B with the gradient written out in numpy. The probe's problems are
small (hundreds of rows, tens of dimensions and classes) and take hundreds of solver steps, so the
cost is the overhead per step: torch's L-BFGS (autograd, a line search in Python) took 4x longer
on the mini suite's cached features and about 30x on Gaussian clusters for the same 9-decay sweep
(README, *Performance*). On CUDA the data is on the device already, so torch's L-BFGS runs there.

torch's solver keeps the probe's former settings, ``LBFGS(tolerance_grad=1e-6,
tolerance_change=1e-10, history_size=20, max_iter)``; scipy's stops at least as tightly: the largest
gradient entry at most :data:`GTOL` = 1e-7 (at 1e-6 both land about as far from the optimum, up to
1e-3 in the weights of a weakly regularized 1000 x 128 x 100 problem, and a few test predictions
differ between them; at 1e-7 scipy lands 10x nearer for about 1.5x the steps), an objective change
per step at most :data:`TOLERANCE_CHANGE` (scipy's ``ftol`` is relative to ``max(|f|, 1)``; no
iterate's objective exceeds the zero start's ``log(classes)``, so dividing by that bound keeps the
change absolute), :data:`HISTORY` correction pairs, ``max_iter`` iterations.
"""

from __future__ import annotations

import math

import numpy as np

GTOL = 1e-7  # scipy's; torch's tolerance_grad stays TORCH_GTOL
TORCH_GTOL = 1e-6
TOLERANCE_CHANGE = 1e-10
HISTORY = 20


def objective_and_gradient(features: np.ndarray, labels: np.ndarray, wd: float, weight: np.ndarray,
                           bias: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(objective, d/dW, d/db)`` at ``(weight, bias)``: softmax probabilities minus the one-hot
    targets, averaged over the rows, give both gradients from one logits product."""
    n = features.shape[0]
    rows = np.arange(n)
    z = features @ weight + bias
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    total = p.sum(axis=1)
    loss = float(np.mean(np.log(total) - z[rows, labels])) + 0.5 * wd * float(np.vdot(weight, weight))
    p /= total[:, None]
    p[rows, labels] -= 1.0
    p /= n
    return loss, features.T @ p + wd * weight, p.sum(axis=0)


def fit_logistic(features: np.ndarray, labels: np.ndarray, num_classes: int, wd: float, max_iter: int,
                 start: tuple[np.ndarray, np.ndarray] | None = None,
                 device: str = "cpu") -> tuple[np.ndarray, np.ndarray, bool]:
    """``(weight (dims x classes), bias, converged)`` minimizing the objective from ``start``
    (zeros when None) on float64 ``features``; ``converged`` is False when ``max_iter`` ran out."""
    labels = np.asarray(labels, dtype=np.int64)
    d = features.shape[1]
    if start is None:
        start = (np.zeros((d, num_classes)), np.zeros(num_classes))
    if str(device).startswith("cuda"):
        return _fit_torch(features, labels, wd, max_iter, start, device)
    import scipy.optimize

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad_w, grad_b = objective_and_gradient(features, labels, wd, theta[:d * num_classes].reshape(d, num_classes),
                                                      theta[d * num_classes:])
        return loss, np.concatenate([grad_w.ravel(), grad_b])

    ftol = TOLERANCE_CHANGE / max(1.0, math.log(num_classes))
    theta0 = np.concatenate([np.asarray(start[0], dtype=np.float64).ravel(), np.asarray(start[1], dtype=np.float64)])
    result = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", options={
        "maxiter": max_iter, "maxfun": 2 * max_iter + 20, "gtol": GTOL, "ftol": ftol, "maxcor": HISTORY})
    weight = result.x[:d * num_classes].reshape(d, num_classes).copy()
    return weight, result.x[d * num_classes:].copy(), result.status != 1  # 1: iterations or evaluations ran out


def _fit_torch(features: np.ndarray, labels: np.ndarray, wd: float, max_iter: int,
               start: tuple[np.ndarray, np.ndarray], device: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """torch's L-BFGS with a strong-Wolfe line search, float64, on ``device``."""
    import torch

    x = torch.from_numpy(features).to(device)
    targets = torch.from_numpy(labels).to(device)
    weight = torch.from_numpy(np.array(start[0], dtype=np.float64)).to(device).requires_grad_(True)
    bias = torch.from_numpy(np.array(start[1], dtype=np.float64)).to(device).requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=TORCH_GTOL,
                                  tolerance_change=TOLERANCE_CHANGE, history_size=HISTORY, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, targets) + 0.5 * wd * (weight ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    converged = optimizer.state[optimizer._params[0]]["n_iter"] < max_iter
    return weight.detach().cpu().numpy(), bias.detach().cpu().numpy(), converged
