"""The runner owns the protocol: it draws each job's subset, held-out part and test split once
and records ``n_train``, ``n_test`` and the subset statistics itself; adaptations only read
``ctx.data``. Exercised through a real adaptation plugin registered for the test."""

from __future__ import annotations

import collections
import sys
import types

import numpy as np
import pytest

import gaia_bench
from gaia_bench.cli.common import parse_shots
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.paths import data_root
from gaia_bench.runner import Session, run_job

SEEN: dict[str, dict] = {}


def _spy(name: str) -> gaia_bench.AdaptationSpec:
    def run(ctx):
        data = ctx.data
        SEEN[name] = {"subset": [s.key for s in data.subset.samples], "fit": list(data.fit), "val": list(data.val),
                      "test": len(data.test), "fit_keys": [s.key for s in data.fit_samples.samples],
                      "val_keys": [s.key for s in data.val_samples.samples]}
        return gaia_bench.AdaptationResult(metrics={m.name: 1.0 for m in ctx.job.task.metrics},
                                           details={"n_train": -1})  # a plugin cannot set the core's fields

    return gaia_bench.AdaptationSpec(name=name, description="records the data it is handed",
                                     task_types=("classification", "segmentation", "detection"), run=run,
                                     hyperparams={"val_share": 0.2})


@pytest.fixture()
def spies(register_plugin):
    module = types.ModuleType("protocol_spies")
    module.register_adaptations = gaia_bench.hookimpl(lambda register: [register(_spy("spy-a")), register(_spy("spy-b")),
                                                                      register(_no_holdout())])
    sys.modules[module.__name__] = module
    record = register_plugin(module, "protocol_spies")
    assert record.ok, record.error
    SEEN.clear()
    yield


def _no_holdout() -> gaia_bench.AdaptationSpec:
    spec = _spy("spy-plain")
    return gaia_bench.AdaptationSpec(name="spy-plain", description=spec.description, task_types=spec.task_types,
                                     run=spec.run)


def _run(adaptation: str, dataset: str, seed: int = 0) -> dict:
    registries = get_registries()
    (job,) = plan(registries, models=["test_resnet"], inits=["random"], adaptations=[adaptation], datasets=[dataset],
                  shots=parse_shots(["10%"]), seeds=[seed])
    session = Session(data_root=data_root(), device="cpu", batch_size=32, workers=0, feature_cache=None,
                      plugin_versions={})
    record = run_job(job, session)
    assert record["status"] == "done", record.get("error")
    return record


def test_every_adaptation_of_a_cell_gets_the_same_draw_and_the_core_records_it(spies):
    a = _run("spy-a", "digits-lt")
    b = _run("spy-b", "digits-lt")
    assert SEEN["spy-a"] == SEEN["spy-b"]
    seen = SEEN["spy-a"]
    assert a["n_train"] == b["n_train"] == len(seen["subset"]) == 53  # 10% of digits-lt, long tail kept
    assert a["n_test"] == seen["test"] == 539
    assert a["details"]["subset"] == {**a["details"]["subset"], "n_samples": 53, "per_class_min": 1}
    assert a["details"]["n_train"] == -1  # the plugin's own entry, not the record's field
    assert "data" in a["timings"]


def test_classification_holds_out_per_class_and_keeps_one_to_fit(spies):
    _run("spy-a", "digits-lt", seed=3)
    seen = SEEN["spy-a"]
    assert sorted(seen["fit"] + seen["val"]) == list(range(len(seen["subset"])))
    spec = get_registries().datasets.get("digits-lt")
    train = spec.load(data_root() / spec.directory, spec.train_split)
    label = {s.key: s.target for s in train.samples}
    per_class = collections.Counter(label[k] for k in seen["subset"])
    held = collections.Counter(label[k] for k in seen["val_keys"])
    for c, n in per_class.items():  # max(1, round(0.2 n)) per class with 2+ samples, never all of it
        assert held[c] == (min(n - 1, max(1, round(0.2 * n))) if n >= 2 else 0)


def test_a_job_without_val_share_fits_on_the_whole_subset(spies):
    _run("spy-plain", "digits-lt")
    assert SEEN["spy-plain"]["val"] == [] and len(SEEN["spy-plain"]["fit"]) == 53


def test_dense_tasks_hold_out_by_their_own_rule(spies):
    _run("spy-a", "mini-voc-seg")
    seg = SEEN["spy-a"]
    n = len(seg["subset"])
    assert len(seg["val"]) == max(1, round(0.2 * n))  # no strata: a share of the images
    _run("spy-a", "mini-voc-det")
    det = SEEN["spy-a"]
    assert det["val"] and set(det["val"]).isdisjoint(det["fit"])  # per each image's first class


def test_the_draw_is_a_function_of_the_seed(spies):
    _run("spy-a", "digits-lt", seed=1)
    first = SEEN["spy-a"]
    _run("spy-a", "digits-lt", seed=1)
    assert SEEN["spy-a"] == first
    _run("spy-a", "digits-lt", seed=2)
    assert SEEN["spy-a"]["subset"] != first["subset"] or SEEN["spy-a"]["val"] != first["val"]
    assert np.unique(first["subset"]).size == len(first["subset"])
