"""The published leaderboards stay valid: every cell of leaderboards/*/results.json planned again
from its config (model, init, adaptation, dataset, shots, seed, image size, hyper-parameters)
gets the job id it was stored under, pretrained inits included (their checkpoint keys are part of
the id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.shots import parse_shot

BOARDS = sorted((Path(__file__).parent.parent / "leaderboards").glob("*/results.json"))


def _records(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else data["results"]


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.parent.name)
def test_published_cells_plan_to_their_stored_job_ids(board):
    records = _records(board)
    assert records
    registries = get_registries()
    for record in records:
        config = record["config"]
        (job,) = plan(registries, models=[config["model"]], inits=[config["init"]], adaptations=[config["adaptation"]],
                      datasets=[config["dataset"]], shots=[parse_shot(config["shots"])], seeds=[config["seed"]],
                      image_size=config["image_size"], overrides=dict(config["hyperparams"]))
        assert job.config.weights_id == config["weights_id"], config
        assert job.job_id == record["job_id"], config


def test_an_optional_hyper_parameter_enters_the_job_id_only_when_set():
    # linear-probe's `search` defaults to None: unset, a cell keeps the id it had before the knob
    # existed (its config has no such key); set, it is part of the config and of the id.
    registries = get_registries()

    def job(**overrides):
        (planned,) = plan(registries, models=["test_resnet"], inits=["random"], adaptations=["linear-probe"],
                          datasets=["digits-lt"], shots=[parse_shot("10%")], seeds=[0], image_size=32,
                          overrides=overrides)
        return planned.config

    default, gvb = job(), job(search="gvb")
    assert "search" not in default.hyperparams and gvb.hyperparams["search"] == "gvb"
    assert default.job_id != gvb.job_id and job(search=None).job_id == default.job_id
    assert {k: v for k, v in gvb.hyperparams.items() if k != "search"} == default.hyperparams
