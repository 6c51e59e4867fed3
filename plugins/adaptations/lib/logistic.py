"""The linear probe's solver: multinomial logistic regression, ``mean cross-entropy + wd/2 *
||W||^2`` on standardized features (bias unpenalized), minimized with L-BFGS from a given start.

On a CPU, :func:`fit_logistic_batch` fits one problem for each of several decays at once: one
L-BFGS per decay, run in lockstep, so that each step's logits of every decay are one matrix
product (``X @ [W_1 ... W_B]``) and the gradients another, and the Python work of a step is paid
once for the whole sweep. The probe's problems are small (tens to thousands of rows, about a
hundred dimensions, tens of classes), so that per-step work, not arithmetic, was their cost:
scipy's L-BFGS-B (one decay after another, warm-started) spent two thirds of each step in its
wrappers and its Fortran routine. Each decay keeps its own history, step and stopping test, and
leaves the batch when it stops; the inverse-Hessian product is the compact form of Byrd, Nocedal
and Schnabel (1994), a few batched products instead of the two-loop recursion's 40 small ones.
The line search backtracks from the unit step (the first step from ``1 / ||g||``) until the
objective falls by ``C1 * step * slope`` (Armijo); the objective is convex, so a pair with
``s.y <= 0`` only happens at rounding level and is left out of the history.

Stopping, per decay: the largest gradient entry at most :data:`GTOL` (1e-7, as scipy ran it), or
an objective change per step at most :data:`TOLERANCE_CHANGE` relative to ``max(|f|, 1)``
divided by ``log(classes)`` (no iterate's objective exceeds the zero start's ``log(classes)``,
so the change is absolute), or ``max_iter`` steps (then not converged). Weakly regularized fits
of separable data have nearly flat directions, so two solvers (or two starts) stopping within
these tolerances can differ by up to about 1 in single logits of such fits; selections and test
predictions agree (README, *Performance*).

On CUDA the data is on the device already, so torch's L-BFGS runs there with its former settings,
``LBFGS(tolerance_grad=1e-6, tolerance_change=1e-10, history_size=20, max_iter)``, one decay at a
time.
"""

from __future__ import annotations

import math

import numpy as np

GTOL = 1e-7
TORCH_GTOL = 1e-6
TOLERANCE_CHANGE = 1e-10
HISTORY = 20
C1 = 1e-4  # Armijo's sufficient decrease
MAX_BACKTRACKS = 30
HISTORY_BYTES = 256 * 2**20  # the decays fit together keep their S and Y under this; more go in turns


def objective_and_gradient(features: np.ndarray, labels: np.ndarray, wd: float, weight: np.ndarray,
                           bias: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(objective, d/dW, d/db)`` of one problem at ``(weight, bias)``."""
    x1 = np.hstack([np.asarray(features, dtype=np.float64), np.ones((features.shape[0], 1))])
    theta = np.vstack([weight, bias[None]])[None]
    loss, grad = _objectives(x1, np.asarray(labels, dtype=np.int64), np.array([float(wd)]), theta)
    return float(loss[0]), grad[0, :-1], grad[0, -1]


def _objectives(x1: np.ndarray, labels: np.ndarray, decays: np.ndarray,
                theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Objectives ``(B,)`` and gradients ``(B, d+1, K)`` of ``B`` problems at ``theta (B, d+1, K)``
    (the last row the bias; ``x1`` ends in a column of ones): softmax probabilities minus the
    one-hot targets, averaged over the rows, give every gradient from one product."""
    b, d1, k = theta.shape
    n = x1.shape[0]
    rows = np.arange(n)
    z = (x1 @ theta.transpose(1, 0, 2).reshape(d1, b * k)).reshape(n, b, k)
    z -= z.max(axis=2, keepdims=True)
    p = np.exp(z)
    total = p.sum(axis=2)
    weight = theta[:, :-1]
    loss = (np.log(total) - z[rows, :, labels]).mean(axis=0) + 0.5 * decays * np.einsum("bdk,bdk->b", weight, weight)
    p /= total[:, :, None]
    p[rows, :, labels] -= 1.0
    p /= n
    grad = np.ascontiguousarray((x1.T @ p.reshape(n, b * k)).reshape(d1, b, k).transpose(1, 0, 2))
    grad[:, :-1] += decays[:, None, None] * weight
    return loss, grad


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
    weights, biases, converged = fit_logistic_batch(features, labels, num_classes, [wd], max_iter, start)
    return weights[0], biases[0], bool(converged[0])


def fit_logistic_batch(features: np.ndarray, labels: np.ndarray, num_classes: int, decays: list[float],
                       max_iter: int, start: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights (B, dims, classes), biases (B, classes), converged (B,))``: the problem of each of
    the ``B`` decays, fit together on the CPU from ``start`` (zeros when None), in turns of as many
    decays as :data:`HISTORY_BYTES` allows.

    With fewer rows than dimensions (a 1-10% subset) the fit runs in the span of the rows: with
    ``X = U S V^T``, ``W = V B``. The penalty's gradient keeps any part of ``W`` outside that span
    at zero from a start inside it, and L-BFGS commutes with the rotation, so the steps are those
    of the full problem (up to rounding) on ``rank x classes`` instead of ``dims x classes``
    parameters. A ``start`` outside the span is projected onto it: the optimum has nothing there."""
    features = np.asarray(features, dtype=np.float64)
    basis = _row_span(features)
    if basis is not None:
        features = features @ basis
    x1 = np.hstack([features, np.ones((features.shape[0], 1))])
    labels = np.asarray(labels, dtype=np.int64)
    d1 = x1.shape[1]
    theta0 = np.zeros((d1, num_classes))
    if start is not None:
        theta0[:-1] = start[0] if basis is None else basis.T @ start[0]
        theta0[-1] = start[1]
    per_turn = max(1, HISTORY_BYTES // (2 * HISTORY * theta0.size * 8))
    decays = np.asarray(decays, dtype=np.float64)
    thetas, converged = np.empty((len(decays), d1, num_classes)), np.zeros(len(decays), dtype=bool)
    for i in range(0, len(decays), per_turn):
        turn = slice(i, i + per_turn)
        thetas[turn], converged[turn] = _lbfgs(x1, labels, decays[turn], max_iter, theta0,
                                               TOLERANCE_CHANGE / max(1.0, math.log(num_classes)))
    weights = thetas[:, :-1] if basis is None else basis @ thetas[:, :-1]
    return np.ascontiguousarray(weights), thetas[:, -1].copy(), converged


def _row_span(features: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis ``(dims, rank)`` of the rows' span when it is smaller than the space,
    else None."""
    n, d = features.shape
    if n >= d:
        return None
    _, singular, vt = np.linalg.svd(features, full_matrices=False)
    keep = singular > singular[:1] * max(n, d) * np.finfo(float).eps
    return vt[keep].T


def _lbfgs(x1: np.ndarray, labels: np.ndarray, decays: np.ndarray, max_iter: int, theta0: np.ndarray,
           ftol: float) -> tuple[np.ndarray, np.ndarray]:
    """Lockstep L-BFGS of ``len(decays)`` problems from ``theta0``: ``(thetas, converged)``."""
    shape = theta0.shape
    n_all, size, m = len(decays), theta0.size, HISTORY
    result, converged = np.repeat(theta0[None], n_all, axis=0), np.zeros(n_all, dtype=bool)

    def evaluate(theta: np.ndarray, wd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loss, grad = _objectives(x1, labels, wd, theta.reshape(-1, *shape))
        return loss, grad.reshape(len(wd), size)

    ids = np.arange(n_all)
    theta = result.reshape(n_all, size).copy()
    f, g = evaluate(theta, decays)
    s_hist, y_hist = np.zeros((n_all, m, size)), np.zeros((n_all, m, size))
    sty, yty = np.zeros((n_all, m, m)), np.zeros((n_all, m, m))
    filled, gamma = np.zeros((n_all, m), dtype=bool), np.ones(n_all)
    done = np.abs(g).max(axis=1) <= GTOL  # already at an optimum: converged in no steps
    converged[done] = True
    for step in range(max_iter + 1):
        if done.any():  # the stopped ones leave the batch
            result.reshape(n_all, size)[ids[done]] = theta[done]
            keep = ~done
            ids, theta, f, g, decays, gamma = ids[keep], theta[keep], f[keep], g[keep], decays[keep], gamma[keep]
            s_hist, y_hist, sty, yty, filled = s_hist[keep], y_hist[keep], sty[keep], yty[keep], filled[keep]
        if not len(ids) or step == max_iter:
            break
        order = [(step + i) % m for i in range(m)]  # oldest first; unused slots are all zeros
        direction = -_inverse_hessian_times(g, s_hist, y_hist, sty, yty, filled, gamma, order)
        slope = np.vecdot(g, direction)
        fresh = ~filled.any(axis=1) | (slope >= 0)  # no history (or, at rounding level, no descent): steepest descent
        if fresh.any():
            direction[fresh], slope[fresh] = -g[fresh], -np.vecdot(g[fresh], g[fresh])
            filled[fresh], s_hist[fresh], y_hist[fresh], sty[fresh], yty[fresh] = False, 0.0, 0.0, 0.0, 0.0
        t = np.where(fresh, np.minimum(1.0, 1.0 / np.sqrt(-slope)), 1.0)
        theta_new = theta + t[:, None] * direction
        f_new, g_new = evaluate(theta_new, decays)
        short = f_new > f + C1 * t * slope
        for _ in range(MAX_BACKTRACKS):
            if not short.any():
                break
            j = np.flatnonzero(short)  # the minimum of the quadratic through f, slope and f_new, within [0.1t, 0.5t]
            curve = f_new[j] - f[j] - slope[j] * t[j]
            t[j] = np.clip(-slope[j] * t[j] ** 2 / (2 * np.maximum(curve, 1e-300)), 0.1 * t[j], 0.5 * t[j])
            theta_new[j] = theta[j] + t[j, None] * direction[j]
            f_new[j], g_new[j] = evaluate(theta_new[j], decays[j])
            short[j] = f_new[j] > f[j] + C1 * t[j] * slope[j]
        stalled = short  # no decrease found within rounding: stop where it is
        theta_new[stalled], f_new[stalled], g_new[stalled] = theta[stalled], f[stalled], g[stalled]
        s, y = theta_new - theta, g_new - g
        sy, yy = np.vecdot(s, y), np.vecdot(y, y)
        ok = sy > np.finfo(float).eps * yy
        s[~ok], y[~ok] = 0.0, 0.0
        slot = step % m
        s_hist[:, slot], y_hist[:, slot], filled[:, slot] = s, y, ok
        sty[:, slot, :] = _times(y_hist, s)
        sty[:, :, slot] = _times(s_hist, y)
        yty[:, slot, :] = yty[:, :, slot] = _times(y_hist, y)
        gamma = np.where(ok, sy / np.where(ok, yy, 1.0), gamma)
        change = f - f_new
        theta, f, g = theta_new, f_new, g_new
        done = stalled | (np.abs(g).max(axis=1) <= GTOL) | (change <= ftol * np.maximum(np.maximum(np.abs(f), np.abs(f + change)), 1.0))
        converged[ids[done]] = True
    result.reshape(n_all, size)[ids] = theta  # those that ran out of steps
    return result, converged


def _inverse_hessian_times(g: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, sty: np.ndarray, yty: np.ndarray,
                           filled: np.ndarray, gamma: np.ndarray, order: list[int]) -> np.ndarray:
    """``H g`` for the L-BFGS inverse-Hessian estimate ``H`` of each problem, in the compact form
    ``gamma g + [S gamma Y] M [S gamma Y]^T g`` (Byrd, Nocedal and Schnabel 1994, eq. 3.1) with
    ``M = [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]]``, ``R`` the upper triangle of ``S^T Y``
    (oldest pair first) and ``D`` its diagonal. An unused slot has zero ``s`` and ``y`` and a unit
    diagonal in ``R``, which leaves it out."""
    idx = np.ix_(range(len(g)), order, order)
    used = filled[:, order]
    r = np.triu(sty[idx])
    diag = np.einsum("bii->bi", r).copy()
    r[:, range(len(order)), range(len(order))] = np.where(used, diag, 1.0)
    r_inv = np.linalg.inv(r)
    u = _times(s_hist, g)[:, order]
    v = gamma[:, None] * _times(y_hist, g)[:, order]
    x = _times(r_inv, u)
    w = diag * x + gamma[:, None] * _times(yty[idx], x)
    p = _times(r_inv.transpose(0, 2, 1), w - v)
    coef_s, coef_y = np.empty_like(p), np.empty_like(p)
    coef_s[:, order], coef_y[:, order] = p, -gamma[:, None] * x
    return gamma[:, None] * g + (coef_s[:, None] @ s_hist)[:, 0] + (coef_y[:, None] @ y_hist)[:, 0]


def _times(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrices[b] @ vectors[b]`` for every ``b``."""
    return (matrices @ vectors[:, :, None])[:, :, 0]


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
