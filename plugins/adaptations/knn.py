"""``knn``: weighted k-nearest-neighbour classification on the frozen backbone's cached features,
the protocol of DINO and dinov3's ``eval/knn.py``. It trains nothing, so it costs one similarity
search: the cheapest reading of how well a representation clusters by class.

* Features are L2-normalised; similarity is the cosine (their dot product).
* A query's ``k`` most similar bank items vote for their classes with weights
  ``softmax(sim / T)`` over those ``k`` (dinov3's form; the same argmax as summing ``exp(sim / T)``,
  and the scores of a query sum to 1). ``T`` = ``temperature`` (0.07, dinov3's default). A tie
  between classes goes to the smaller class id.
* ``k`` is chosen from ``k_grid`` (dinov3's 10, 20, 100, 200), each capped by the number of items
  the held-out part is scored against (the runner's fit part; duplicates after capping dropped), as
  the value with the best held-out top-1 when the fit part is the bank (ties: the smaller ``k``;
  no held-out part: the smallest). The test split is then scored with the whole subset (fit and
  held-out items) as the bank. The record keeps every ``k``'s held-out top-1 and the chosen ``k``.
* Chunked, for any size of bank: the bank is read in blocks and each block's similarities with a
  block of queries are reduced to a running top-k at once, so only a ``query_chunk x bank_chunk``
  block of similarities exists at any time (a 1.2M x 2048 bank never needs a full similarity
  matrix, nor a second copy of itself). Equal similarities at the k-th place keep the earlier
  block's item (within a block, torch's topk order). Runs on the job's device (``--device``), float32;
  votes are added one neighbour rank at a time (no atomic adds), so reruns give the same scores.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.plugins.adaptations.lib.feature_blocks import row_blocks
from gaia_bench.tasks.types.lib.calibration import not_calibrated

PLUGIN_ORDER = 302

if TYPE_CHECKING:
    import torch

HYPERPARAMS = {"k_grid": [10, 20, 100, 200], "temperature": 0.07, "val_share": 0.2}
NOT_CALIBRATED = ("n/a: k-NN scores are vote shares of the k nearest neighbours (mostly exact zeros), not a "
                  "model's probabilities: calibrating them would rate the vote rule, not the features")
QUERY_CHUNK = 2048  # queries per similarity block
BANK_CHUNK = 16384  # bank items per similarity block (a block of float32 similarities: 128 MiB)


def _unit(x: "torch.Tensor") -> "torch.Tensor":
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest(queries: np.ndarray, bank: np.ndarray, rows: Sequence[int] | np.ndarray, k: int, device: str = "cpu",
            query_chunk: int = QUERY_CHUNK, bank_chunk: int = BANK_CHUNK) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The ``k`` bank items most similar (cosine) to every query, most similar first:
    ``(similarities, positions in rows)``, both ``(len(queries), k)`` on ``device``. The bank is
    ``bank[rows]``, read ``bank_chunk`` rows at a time; ``k`` must not exceed ``len(rows)``."""
    import torch

    if not 0 < k <= len(rows):
        raise ValueError(f"k={k} neighbours asked of a bank of {len(rows)}")
    q = _unit(torch.as_tensor(np.asarray(queries), dtype=torch.float32).to(device))
    top_sims = torch.full((len(q), k), -float("inf"), device=device)
    top_pos = torch.full((len(q), k), -1, dtype=torch.int64, device=device)
    for start, block in row_blocks(bank, rows, bank_chunk):
        b = _unit(torch.as_tensor(block, dtype=torch.float32).to(device))
        for q0 in range(0, len(q), query_chunk):
            sims, pos = (q[q0:q0 + query_chunk] @ b.T).topk(min(k, len(b)), dim=1)
            # Merge with the running top-k; the stable sort keeps earlier blocks first among equal values.
            sims = torch.cat([top_sims[q0:q0 + query_chunk], sims], dim=1)
            pos = torch.cat([top_pos[q0:q0 + query_chunk], pos + start], dim=1)
            order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]
            top_sims[q0:q0 + query_chunk] = sims.gather(1, order)
            top_pos[q0:q0 + query_chunk] = pos.gather(1, order)
    return top_sims, top_pos


def neighbours(queries: np.ndarray, bank: np.ndarray, rows: Sequence[int] | np.ndarray, bank_labels: np.ndarray,
               k: int, device: str = "cpu", **chunks: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """:func:`nearest`'s similarities with the classes of those neighbours instead of their
    positions (``bank_labels[i]`` is the class of ``bank[rows[i]]``); ``chunks`` passes
    ``query_chunk`` / ``bank_chunk`` on."""
    import torch

    sims, pos = nearest(queries, bank, rows, k, device, **chunks)
    return sims, torch.as_tensor(np.asarray(bank_labels, dtype=np.int64), device=device)[pos]


def vote(sims: "torch.Tensor", labels: "torch.Tensor", num_classes: int, k: int, temperature: float) -> "torch.Tensor":
    """Class scores ``(queries, num_classes)`` from the first ``k`` neighbours (``sims`` sorted,
    most similar first; ``labels`` their classes): each adds its ``softmax(sim / T)`` weight."""
    import torch

    weights = torch.softmax(sims[:, :k] / temperature, dim=1)
    scores = torch.zeros(len(sims), num_classes, dtype=weights.dtype, device=weights.device)
    rows = torch.arange(len(sims), device=weights.device)
    for j in range(k):  # one neighbour rank at a time, never two writes to one cell: same sums on every device
        scores[rows, labels[:, j]] += weights[:, j]
    return scores


def capped_ks(grid: Sequence[int], n: int) -> list[int]:
    """The grid's ``k`` values capped by a bank of ``n`` items, each once, ascending."""
    return sorted({min(int(k), n) for k in grid})


def select_k(features: np.ndarray, indices: Sequence[int], labels: np.ndarray, num_classes: int, grid: Sequence[int],
             fit: Sequence[int], val: Sequence[int], temperature: float, device: str = "cpu") -> dict:
    """The ``k`` of the grid (capped by the fit part's size) with the best top-1 on the held-out
    positions ``val`` of the subset ``indices`` (rows of ``features``; ``labels`` the subset's
    classes) when the fit positions are the bank, from one search of ``max(k)`` neighbours (a
    smaller ``k`` reads the first ones); ties and an empty held-out part: the smaller ``k``."""
    import torch

    indices, fit, val = np.asarray(indices, dtype=np.int64), np.asarray(fit, dtype=int), np.asarray(val, dtype=int)
    ks = capped_ks(grid, len(fit))
    if len(val) == 0:
        return {"k": ks[0], "k_grid": ks, "n_val": 0, "val_top1": None}
    sims, votes = neighbours(features[indices[val]], features, indices[fit], labels[fit], max(ks), device)
    truth = torch.as_tensor(labels[val], device=device)
    top1 = {k: float((vote(sims, votes, num_classes, k, temperature).argmax(dim=1) == truth).double().mean() * 100)
            for k in ks}
    best = max(ks, key=lambda k: (top1[k], -k))
    return {"k": best, "k_grid": ks, "n_val": int(len(val)), "val_top1": top1[best],
            "val_top1_by_k": {str(k): top1[k] for k in ks}}


def run_knn(ctx) -> AdaptationResult:
    """Choose ``k`` on the held-out part, then score the test split against the whole subset."""
    hp = ctx.hyperparams
    data, dataset = ctx.data, ctx.job.dataset
    train = ctx.features(dataset.train_split)
    test = ctx.features(dataset.test_split)
    labels = data.subset_labels()
    start = time.perf_counter()
    selection = select_k(train, data.indices, labels, data.num_classes, hp["k_grid"], data.fit, data.val,
                         hp["temperature"], ctx.device)
    select_seconds = time.perf_counter() - start
    sims, votes = neighbours(test, train, data.indices, labels, selection["k"], ctx.device)
    scores = vote(sims, votes, data.num_classes, selection["k"], hp["temperature"]).cpu().numpy()
    return AdaptationResult(
        predictions=list(scores),
        details={"knn": {**selection, "temperature": hp["temperature"], "n_bank": len(data.indices)},
                 **not_calibrated(NOT_CALIBRATED)},
        stage_seconds={"knn_select": select_seconds, "knn_test": time.perf_counter() - start - select_seconds},
        trainable_params=0,
    )


KNN = AdaptationSpec(
    name="knn",
    description="frozen backbone, cached features, weighted k-NN (cosine, softmax(sim/0.07) votes), "
                "k chosen on a hold-out from 10, 20, 100, 200",
    task_types=("classification",),
    run=run_knn,
    hyperparams=HYPERPARAMS,
)


@hookimpl
def register_adaptations(register):
    register(KNN)
