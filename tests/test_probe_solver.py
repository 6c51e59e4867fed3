"""The linear probe's L-BFGS solver against scikit-learn's LogisticRegression on the same objective
(``C = 1 / (wd * n)``), its warm starts, and the thread limits it runs under."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from gaia_bench.plugins.adaptations.lib.logistic import objective_and_gradient
from gaia_bench.plugins.adaptations.linear_probe import SINGLE_THREAD_BELOW, Probe, solver_threads


def three_blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian classes in 6 dimensions on unequal scales (float32, as features)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 6)) + 1.5 * np.eye(3, 6)[y]
    return (x * [1, 10, 0.1, 3, 1, 50] + 7).astype(np.float32), y


def sklearn_optimum(probe: Probe, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    features = ((x - probe.mean) / probe.scale).astype(np.float64)  # float32 in: sklearn fits in float32
    return LogisticRegression(C=1.0 / (probe.wd * len(y)), tol=1e-12, max_iter=10_000).fit(features, y)


def objective(probe: Probe, x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    return objective_and_gradient(((x - probe.mean) / probe.scale).astype(np.float64), y, probe.wd, weight, bias)[0]


@pytest.mark.parametrize("wd", [1e-3, 0.1])
def test_probe_matches_sklearn_logistic_regression(wd):
    x, y = three_blobs()
    probe = Probe(wd, 1000).fit(x, y, 3)
    reference = sklearn_optimum(probe, x, y)
    assert probe.converged
    # The same minimum (to the solver's 1e-6 gradient tolerance), the same weights and probabilities.
    ours, theirs = objective(probe, x, y, probe.weight, probe.bias), objective(probe, x, y, reference.coef_.T, reference.intercept_)
    assert abs(ours - theirs) < 1e-9
    np.testing.assert_allclose(probe.weight, reference.coef_.T, atol=1e-4)
    features = (x - probe.mean) / probe.scale
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(probe.logits(x)), 1).numpy(),
                               reference.predict_proba(features), atol=1e-4)


def test_warm_start_starts_from_the_given_probe():
    x, y = three_blobs()
    strong = Probe(1.0, 1000).fit(x, y, 3)
    warm = Probe(1e-2, 1000).fit(x, y, 3, warm_from=strong)
    cold = Probe(1e-2, 1000).fit(x, y, 3)
    np.testing.assert_allclose(warm.weight, cold.weight, atol=1e-5)  # one optimum, whichever start
    reference = sklearn_optimum(warm, x, y)
    assert abs(objective(warm, x, y, warm.weight, warm.bias) - objective(warm, x, y, reference.coef_.T, reference.intercept_)) < 1e-9
    # One iteration from the optimum stays there and has converged; from zeros it has not.
    again = Probe(1e-2, 1).fit(x, y, 3, warm_from=warm)
    assert again.converged and np.abs(again.weight - warm.weight).max() < 1e-6
    assert not Probe(1e-2, 1).fit(x, y, 3).converged


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_small_probes_run_on_one_thread_and_large_ones_on_all():
    before_torch, before_blas = torch.get_num_threads(), blas_threads()
    with solver_threads(SINGLE_THREAD_BELOW - 1):
        assert torch.get_num_threads() == 1 and set(blas_threads()) == {1}
    with solver_threads(SINGLE_THREAD_BELOW):
        assert torch.get_num_threads() == before_torch and blas_threads()[:len(before_blas)] == before_blas
    assert torch.get_num_threads() == before_torch and blas_threads()[:len(before_blas)] == before_blas


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the probe fits with torch on the device")
def test_cuda_probe_agrees_with_the_cpu_one():
    x, y = three_blobs()
    cpu = Probe(1e-2, 1000).fit(x, y, 3)
    cuda = Probe(1e-2, 1000, "cuda").fit(x, y, 3, warm_from=Probe(1.0, 1000, "cuda").fit(x, y, 3))
    assert cuda.converged and isinstance(cuda.weight, np.ndarray)
    np.testing.assert_allclose(cuda.weight, cpu.weight, atol=1e-4)
