"""Hyper-parameters through the planner: each task gets only its head's knobs, ``--hp`` overrides
are cast to the default's type (so equal values give one job id), and they change the job id."""

from __future__ import annotations

import pytest

from gaia_bench.cli.common import parse_overrides, parse_shots
from gaia_bench.errors import UsageError
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries


def _jobs(dataset: str, adaptation: str = "linear-probe", **overrides) -> list:
    return plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=[adaptation],
                datasets=[dataset], shots=parse_shots(["10%"]), seeds=[0], overrides=overrides)


def test_each_task_gets_its_own_heads_knobs():
    cls = _jobs("digits-lt")[0].config.hyperparams
    det = _jobs("mini-voc-det")[0].config.hyperparams
    seg = _jobs("mini-voc-seg")[0].config.hyperparams
    assert "wd_grid" in cls and not any(k.startswith(("det_", "dense_")) for k in cls)
    assert "det_lr" in det and "wd_grid" not in det and not any(k.startswith("dense_") for k in det)
    assert "dense_lr" in seg and "det_lr" not in seg
    tuned = _jobs("mini-voc-seg", "finetune")[0].config.hyperparams
    assert {"backbone_lr_scale", "val_share", "patience", "dense_eval_every"} <= set(tuned)


def test_overrides_are_cast_and_enter_the_job_id():
    default = _jobs("mini-voc-det")[0]
    as_int = _jobs("mini-voc-det", **parse_overrides(["det_lr=1"]))[0]
    as_float = _jobs("mini-voc-det", **parse_overrides(["det_lr=1.0"]))[0]
    assert as_int.config.hyperparams["det_lr"] == 1.0 and isinstance(as_int.config.hyperparams["det_lr"], float)
    assert as_int.job_id == as_float.job_id != default.job_id
    assert _jobs("mini-voc-det", det_max_iters=20.0)[0].config.hyperparams["det_max_iters"] == 20


@pytest.mark.parametrize("overrides,needle", [
    ({"det_max_iters": 2.5}, "does not fit its default 1500"),
    ({"det_lr": "fast"}, "give a value of type float"),
    ({"det_lr": True}, "does not fit"),
    ({"wd_grid": [1.0]}, "no planned job has such a hyper-parameter"),
])
def test_bad_overrides_are_usage_errors(overrides, needle):
    with pytest.raises(UsageError, match=needle):
        _jobs("mini-voc-det", **overrides)


def test_parse_overrides_reads_json_and_keeps_plain_strings():
    assert parse_overrides(["a=1", "b=[1, 2]", "c=true", "d=adam", "e=x=y"]) == \
        {"a": 1, "b": [1, 2], "c": True, "d": "adam", "e": "x=y"}
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        parse_overrides(["novalue"])
