"""The one training loop (:func:`gaia_bench.plugins.adaptations.lib.training.fit`) on toy models: it restores the best
held-out weights, stops on patience but never before the floor, trains on the extra stream's
batches, follows its lr schedule, and two gloo ranks train what one process trains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import pytest
import torch
from torch import nn

from gaia_bench.plugins.adaptations.lib.training import Batch, Recipe, fit, lr_factor


class Pull(nn.Module):
    """``w`` pulled towards the main batch's values; ``v`` towards the extra batch's (when given)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.v = nn.Parameter(torch.zeros(2))

    def parameter_groups(self):
        return {"head": [self.w], "backbone": [self.v]}

    def forward(self, inputs, extra=None):
        loss = ((self.w - inputs) ** 2).mean()
        if extra is None:
            return loss
        return loss + ((self.v - extra) ** 2).mean(), {"extra": ((self.v - extra) ** 2).mean()}


@dataclass
class Constant:
    """Every step the same batch of ``size`` rows of ``value``."""

    value: float
    size: int = 4

    @property
    def batch_size(self) -> int:
        return self.size

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        for _ in range(steps):
            yield Batch(torch.full((self.size, 2), self.value), self.size)


class Scripted:
    """A held-out set whose n-th check scores ``scores[n]``; remembers ``w`` at every check."""

    def __init__(self, scores: Sequence[float]) -> None:
        self.scores, self.checks, self.weights = list(scores), 0, []

    def __len__(self) -> int:
        return 3

    def statistics(self, model, part: slice) -> list[float]:
        self.weights.append(model.w.detach().clone())
        self.checks += 1
        return [self.scores[self.checks - 1]]

    def score(self, totals: Sequence[float]) -> float:
        return totals[0]


RECIPE = Recipe(iterations=20, lr=0.1, optimizer="sgd", decay="constant", eval_every=1, patience=2)


def test_the_best_held_out_weights_are_restored_and_patience_waits_for_the_floor():
    model, held_out = Pull(), Scripted([1, 5, 3, 2, 2, 2, 2, 2, 2, 2])
    result = fit(model, Recipe(**{**RECIPE.__dict__, "stop_floor": 8}), Constant(1.0), held_out=held_out)
    assert result.steps == 8 and result.stopped_early  # patience ran out at step 4; the floor held it to 8
    assert result.best_iteration == 2 and result.best_score == 5 and result.restored
    assert [step for step, _ in result.curve] == list(range(1, 9))
    assert torch.equal(model.w.detach(), held_out.weights[1])  # the weights of the best check, not the last
    assert not torch.equal(model.w.detach(), held_out.weights[-1])

    early = fit(Pull(), RECIPE, Constant(1.0), held_out=Scripted([1, 5, 3, 2, 2, 2]))
    assert early.steps == 4 and early.stopped_early  # no floor: two checks without improvement


def test_lower_is_better_ties_keep_the_earlier_and_nan_never_wins():
    recipe = Recipe(**{**RECIPE.__dict__, "higher_is_better": False, "iterations": 5, "patience": 10})
    result = fit(Pull(), recipe, Constant(1.0), held_out=Scripted([math.nan, 3, 1, 1, 2]))
    assert result.best_iteration == 3 and result.best_score == 1 and not result.stopped_early


def test_without_held_out_items_the_whole_schedule_runs_and_the_final_weights_stay():
    model = Pull()
    result = fit(model, RECIPE, Constant(1.0))
    assert result.steps == 20 and not result.restored and result.curve == []
    assert model.w.detach().tolist() == pytest.approx([1 - 0.9**20] * 2)  # 20 SGD steps of lr 0.1 towards 1


def test_the_extra_stream_is_trained_on_at_the_backbone_lr():
    model = Pull()
    recipe = Recipe(**{**RECIPE.__dict__, "iterations": 3, "backbone_lr_scale": 0.5})
    result = fit(model, recipe, Constant(1.0), extra=Constant(-2.0, size=3))
    assert result.seen == {"main": 12, "extra": 9} and set(result.last_parts) == {"extra"}
    # plain SGD on a quadratic: each step moves a parameter by lr x its gradient
    w, v = 0.0, 0.0
    for _ in range(3):
        w -= 0.1 * 2 * (w - 1.0) / 2
        v -= 0.05 * 2 * (v + 2.0) / 2
    assert model.w.detach().tolist() == pytest.approx([w, w]) and model.v.detach().tolist() == pytest.approx([v, v])
    assert v < -0.1  # the extra batches moved v, which the main batches never touch


def test_warm_up_then_cosine_and_step_decay():
    cosine = Recipe(iterations=100, lr=1.0, warmup=10)
    assert [lr_factor(cosine, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(cosine, 55) == pytest.approx(0.5) and lr_factor(cosine, 100) == pytest.approx(0.0)
    steps = Recipe(iterations=90, lr=1.0, warmup=10, warmup_start=0.1, decay="steps", milestones=(60, 80))
    assert lr_factor(steps, 0) == pytest.approx(0.19) and lr_factor(steps, 9) == pytest.approx(1.0)
    assert [lr_factor(steps, s) for s in (59, 60, 80)] == pytest.approx([1.0, 0.1, 0.01])


class Regression(nn.Module):
    """A linear regression: its loss is the batch mean, so the ranks' shards average to one batch's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 1)

    def parameter_groups(self):
        return {"head": list(self.linear.parameters())}

    def forward(self, inputs):
        x, y = inputs
        return ((self.linear(x).squeeze(1) - y) ** 2).mean()


@dataclass
class Rows:
    """Batches of 6 rows of a fixed random regression problem; rank r gets its shard of each."""

    @property
    def batch_size(self) -> int:
        return 6

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        from gaia_bench.plugins.adaptations.lib.distributed import shard

        generator = torch.Generator().manual_seed(1)
        x = torch.randn(60, 3, generator=generator)
        y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
        for step in range(steps):
            rows = torch.randperm(60, generator=generator)[:6][shard(6, rank, world_size)]
            yield Batch((x[rows], y[rows]), len(rows))


@pytest.mark.slow
def test_two_gloo_ranks_train_what_one_process_trains(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = Recipe(iterations=15, lr=0.05, optimizer="adamw", warmup=3, seed=0)
    one, two = Regression(), Regression()
    alone = fit(one, recipe, Rows())
    together = fit(two, recipe, Rows(), device="cpu", processes=2)
    assert together.distributed["world_size"] == 2 and together.distributed["batch_per_rank"] == [3, 3]
    assert together.steps == alone.steps == 15
    assert together.last_loss == pytest.approx(alone.last_loss, rel=1e-4)
    for a, b in zip(one.state_dict().values(), two.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)
