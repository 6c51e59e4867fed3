"""GV-B's own linear-probe search (``linear-probe --hp search=gvb``), so that numbers can be set
beside the published GV-B table: the maintainers disclosed (OpenGVLab/gv-benchmark#6) that those
come from SGD over 3 log-spaced learning rates in [1e-4, 0.1] x weight decay in [1e-6, 1e-4]
x momentum {0.9, 0.99}. The rest of their recipe was not published; what this module chooses:

* Features standardised with the training rows' mean and std (+1e-6), as the L-BFGS probe.
* A linear layer from zeros, softmax cross-entropy, float32; the 18 configurations of
  :data:`GVB_GRID` train *at once* as one batched tensor (``configs x features x classes``) on
  the job's device, every configuration seeing the same mini-batches, so the search costs about
  one probe's worth of passes over the cached features.
* :data:`EPOCHS` = 100 epochs of mini-batches of :data:`BATCH` = 256 (or the whole part when
  smaller), reshuffled every epoch from the job seed; the learning rate decays over the steps as
  a cosine to 0 (mmcls's linear-evaluation schedule, on which GV-B was built). SGD as torch's:
  ``buf = momentum * buf + grad``, ``w -= lr * buf``; weight decay on the weights, not the bias.
* Selection: the best held-out top-1 (the runner's hold-out; fit on the fit part); ties (common on
  a held-out part of a dozen items) go to the lower held-out NLL (the better-fit probe), then the
  stronger weight decay, the smaller learning rate, the smaller momentum. A
  configuration whose weights stop being finite (too large a step) is recorded as diverged and
  never chosen. Then the chosen one is refit on the whole subset with the same epochs and batch.
  Nothing held out: the grid's middle (lr 10^-2.5, wd 1e-5, momentum 0.9).

Changing any of these constants changes what ``search=gvb`` means: give the new recipe a new name.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from gaia_bench.tasks.types.lib.calibration import nll

GVB_GRID = {"lr": [1e-4, 10 ** -2.5, 0.1], "weight_decay": [1e-6, 1e-5, 1e-4], "momentum": [0.9, 0.99]}
EPOCHS = 100
BATCH = 256
DEFAULT = (10 ** -2.5, 1e-5, 0.9)  # (lr, weight decay, momentum) when nothing is held out
SEARCHES = {"gvb": "GV-B's SGD search: lr {1e-4, 10^-2.5, 0.1} x wd {1e-6, 1e-5, 1e-4} x momentum {0.9, 0.99}, "
                   f"{EPOCHS} epochs of batch {BATCH}, cosine decay, selected on the hold-out, refit on the subset"}

Config = tuple[float, float, float]  # (lr, weight decay, momentum)


def grid_configs() -> list[Config]:
    return [(lr, wd, m) for lr in GVB_GRID["lr"] for wd in GVB_GRID["weight_decay"] for m in GVB_GRID["momentum"]]


def config_name(config: Config) -> str:
    return f"lr={config[0]:.3g} wd={config[1]:g} m={config[2]:g}"


class SgdProbes:
    """Linear softmax probes, one per configuration, trained together with mini-batch SGD."""

    def __init__(self, configs: Sequence[Config], epochs: int = EPOCHS, batch: int = BATCH, seed: int = 0,
                 device: str = "cpu") -> None:
        self.configs, self.epochs, self.batch, self.seed, self.device = list(configs), epochs, batch, seed, device

    def _features(self, x: np.ndarray):
        import torch

        return torch.as_tensor(((x - self.mean) / self.scale).astype(np.float32), device=self.device)

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> "SgdProbes":
        import torch

        self.mean, self.scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        features, targets = self._features(x), torch.as_tensor(np.asarray(y, dtype=np.int64), device=self.device)
        k, n = len(self.configs), len(x)
        lr, wd, momentum = (torch.tensor([c[i] for c in self.configs], dtype=torch.float32, device=self.device)
                            for i in range(3))
        self.weight = torch.zeros(k, x.shape[1], num_classes, device=self.device)
        self.bias = torch.zeros(k, num_classes, device=self.device)
        buf_w, buf_b = torch.zeros_like(self.weight), torch.zeros_like(self.bias)
        batch = min(self.batch, n)
        steps_per_epoch = math.ceil(n / batch)
        total, step = self.epochs * steps_per_epoch, 0
        rng = np.random.default_rng([self.seed, n])
        for _ in range(self.epochs):
            order = torch.as_tensor(rng.permutation(n), device=self.device)
            for start in range(0, n, batch):
                rows = order[start:start + batch]
                xb, yb = features[rows], targets[rows]
                probs = torch.softmax(torch.einsum("bd,kdc->kbc", xb, self.weight) + self.bias[:, None, :], dim=2)
                probs[:, torch.arange(len(rows), device=self.device), yb] -= 1.0  # d(mean CE)/d(logits) x batch
                probs /= len(rows)
                grad_w = torch.einsum("bd,kbc->kdc", xb, probs) + wd[:, None, None] * self.weight
                buf_w.mul_(momentum[:, None, None]).add_(grad_w)
                buf_b.mul_(momentum[:, None]).add_(probs.sum(dim=1))
                scale = lr * (0.5 * (1.0 + math.cos(math.pi * step / total)))
                self.weight -= scale[:, None, None] * buf_w
                self.bias -= scale[:, None] * buf_b
                step += 1
        self.finite = [bool(torch.isfinite(self.weight[i]).all() and torch.isfinite(self.bias[i]).all())
                       for i in range(k)]
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(configs, len(x), classes)`` float32 logits."""
        import torch

        return (torch.einsum("nd,kdc->knc", self._features(x), self.weight) + self.bias[:, None, :]).cpu().numpy()


def gvb_search(x: np.ndarray, y: np.ndarray, num_classes: int, fit: Sequence[int], val: Sequence[int], seed: int,
               device: str = "cpu") -> tuple[dict, np.ndarray | None]:
    """Train the grid on the ``fit`` rows, choose on the ``val`` rows (module docstring): the
    record's selection details and the chosen configuration's held-out logits (None: no hold-out)."""
    fit, val = np.asarray(fit, dtype=int), np.asarray(val, dtype=int)
    details = {"search": "gvb", "grid": GVB_GRID, "epochs": EPOCHS, "batch": BATCH, "schedule": "cosine to 0",
               "n_val": int(len(val))}
    if len(val) == 0:
        return {**details, "chosen": dict(zip(("lr", "weight_decay", "momentum"), DEFAULT)), "val_top1": None}, None
    configs = grid_configs()
    probes = SgdProbes(configs, seed=seed, device=device).fit(x[fit], y[fit], num_classes)
    logits = probes.logits(x[val])
    top1 = {c: float((logits[i].argmax(axis=1) == y[val]).mean() * 100) if probes.finite[i] else None
            for i, c in enumerate(configs)}
    loss = {c: nll(logits[i].astype(np.float64), y[val]) for i, c in enumerate(configs) if top1[c] is not None}
    best = max(loss, key=lambda c: (top1[c], -loss[c], c[1], -c[0], -c[2]), default=None)
    chosen = best or DEFAULT
    held_out = logits[configs.index(best)] if best is not None else None
    return {**details, "chosen": dict(zip(("lr", "weight_decay", "momentum"), chosen)),
            "val_top1": top1.get(chosen), "val_top1_by_config": {config_name(c): top1[c] for c in configs},
            "val_nll_by_config": {config_name(c): loss.get(c) for c in configs},
            "diverged": [config_name(c) for c in configs if top1[c] is None]}, held_out
