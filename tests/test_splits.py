"""Splits are files: `splits export` writes the subset a run draws, `splits verify` checks a manifest
against the data, `run --split FILE` trains on exactly the manifest's ids, and every done record
carries the sha256 of its subset (drawn or given), for every task type. Through the CLI, with a
spy adaptation (what the runner hands it) and one real test_resnet job."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import types
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gaia_bench
from gaia_bench.cli import app
from gaia_bench.cli.common import parse_shots
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.store import ResultsStore

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
SEEN: dict[str, dict] = {}


def _spy_run(ctx):
    data = ctx.data
    SEEN[ctx.config.split or "drawn"] = {"subset": [s.key for s in data.subset.samples], "fit": list(data.fit),
                                         "val": list(data.val)}
    return gaia_bench.AdaptationResult(metrics={m.name: 1.0 for m in ctx.job.task.metrics})


@pytest.fixture()
def spy(register_plugin):
    """An adaptation that trains nothing and keeps what the runner handed it, on every task type."""
    spec = gaia_bench.AdaptationSpec(name="split-spy", description="records its data", run=_spy_run,
                                     task_types=("classification", "detection", "segmentation", "depth"),
                                     hyperparams={"val_share": 0.2})
    module = types.ModuleType("split_spies")
    module.register_adaptations = gaia_bench.hookimpl(lambda register: register(spec))
    sys.modules[module.__name__] = module
    assert register_plugin(module, "split_spies").ok
    SEEN.clear()


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def _export(tmp_path: Path, dataset: str, shots: str = "10%", seed: int = 0) -> tuple[Path, dict]:
    out = tmp_path / f"{dataset}.split.json"
    result = _cli("splits", "export", dataset, "--shots", shots, "--seed", seed, "--out", out)
    assert result.exit_code == 0, result.output
    return out, json.loads(out.read_text())


def _ids(doc: dict) -> list[str]:
    return sorted(k for g in doc["ids"].values() for k in g) if isinstance(doc["ids"], dict) else sorted(doc["ids"])


def _records(store: Path) -> dict[str, dict]:
    with ResultsStore(store) as s:
        return {r["split"]["source"]: r for r in s.query()}


def test_a_manifest_run_trains_on_exactly_the_drawn_subset(spy, tmp_path):
    path, doc = _export(tmp_path, "digits-lt", seed=3)
    assert doc["n_samples"] == 53 and sum(len(g) for g in doc["ids"].values()) == 53
    assert doc["sha256"] == hashlib.sha256("\n".join(_ids(doc)).encode()).hexdigest()
    assert doc["per_class"] == {c: len(ids) for c, ids in doc["ids"].items()} and doc["per_class"]["9"] == 1
    store = tmp_path / "r.db"
    common = ["run", "--model", "test_resnet", "--init", "random", "--adapt", "split-spy", "--seed", "3", "--store", store]
    assert _cli(*common, "--dataset", "digits-lt").exit_code == 0
    given = _cli(*common, "--split", path)  # --dataset and --shots come from the manifest
    assert given.exit_code == 0, given.output
    assert SEEN["drawn"] == SEEN[doc["sha256"]]  # the same ids, and the same held-out part of them
    assert sorted(SEEN["drawn"]["subset"]) == _ids(doc)
    records = _records(store)
    drawn, split = records["drawn"], records[path.name]
    assert drawn["split"]["sha256"] == split["split"]["sha256"] == doc["sha256"]
    assert drawn["n_train"] == split["n_train"] == 53 and split["config"]["shots"] == "10%"
    assert "split" not in drawn["config"] and split["config"]["split"] == doc["sha256"]
    assert drawn["job_id"] != split["job_id"]


def test_export_and_run_on_detection_and_depth(spy, tmp_path):
    det_path, det = _export(tmp_path, "mini-voc-det")
    assert det["split"] == "trainval" and isinstance(det["ids"], dict)
    assert any("+" in group for group in det["ids"])  # grouped by each image's label set
    assert all(n >= 1 for n in det["per_class"].values()) and len(det["per_class"]) == 6  # every class kept
    depth_path, depth = _export(tmp_path, "mini-kitti-depth")
    assert isinstance(depth["ids"], list) and depth["per_class"] == {} and depth["n_samples"] == len(depth["ids"]) == 24
    for path, doc in ((det_path, det), (depth_path, depth)):
        verified = _cli("splits", "verify", path)
        assert verified.exit_code == 0 and f"{path}: ok" in " ".join(verified.output.split()), verified.output
        store = tmp_path / f"{doc['dataset']}.db"
        common = ["run", "--model", "test_resnet", "--init", "random", "--adapt", "split-spy", "--store", store]
        assert _cli(*common, "--dataset", doc["dataset"]).exit_code == 0
        assert _cli(*common, "--split", path).exit_code == 0
        records = _records(store)
        assert records["drawn"]["split"]["sha256"] == records[path.name]["split"]["sha256"] == doc["sha256"]
        assert sorted(SEEN[doc["sha256"]]["subset"]) == _ids(doc)


def test_a_real_job_on_a_manifest(tmp_path):
    path, doc = _export(tmp_path, "digits-lt", shots="1%")
    store = tmp_path / "r.db"
    result = _cli("run", "--model", "test_resnet", "--init", "random", "--image-size", "32", "--split", path,
                  "--store", store)
    assert result.exit_code == 0, result.output
    (record,) = _records(store).values()
    assert record["status"] == "done" and record["n_train"] == doc["n_samples"] == 10
    assert record["split"] == {"sha256": doc["sha256"], "source": path.name}


def test_verify_names_each_tampering(tmp_path):
    path, doc = _export(tmp_path, "digits-lt")

    def verify(changed: dict) -> list[str]:
        path.write_text(json.dumps(changed))
        result = _cli("splits", "verify", path)
        assert result.exit_code == 1, result.output
        return [line for line in result.output.splitlines() if line.startswith(str(path))]

    renamed = json.loads(json.dumps(doc))
    renamed["ids"]["0"][0] = "train/0/nope.png"
    lines = verify(renamed)
    assert any("'train/0/nope.png' is not in digits-lt:train" in line for line in lines), lines
    assert any("sha256 is" in line for line in lines) and any("class '0': the manifest counts 13" in line for line in lines)
    assert len(lines) == 3, lines
    moved = json.loads(json.dumps(doc))
    moved["ids"]["1"].append(moved["ids"]["0"].pop())
    assert any("is listed under '1', its labels on disk say '0'" in line for line in verify(moved))
    counted = {**doc, "per_class": {**doc["per_class"], "3": 7}}
    assert verify(counted) == [f"{path}: class '3': the manifest counts 7, its ids' labels on disk give 6"]
    hashed = {**doc, "sha256": "0" * 64}
    assert verify(hashed) == [f"{path}: sha256 is {'0' * 64}, but the listed ids hash to {doc['sha256']}"]
    counted_n = {**doc, "n_samples": 52}
    assert verify(counted_n) == [f"{path}: n_samples is 52, but 53 ids are listed"]


def test_user_errors_are_one_line_with_the_fix(tmp_path):
    path, doc = _export(tmp_path, "digits-lt")
    store = ["--store", tmp_path / "r.db", "--model", "test_resnet", "--init", "random"]
    wrong = _cli("run", *store, "--split", path, "--dataset", "mini-voc-det")
    assert wrong.exit_code == 2 and "is a subset of digits-lt, not of mini-voc-det" in wrong.output
    assert "run it with --dataset digits-lt only" in wrong.output
    suite = _cli("run", *store, "--split", path, "--suite", "mini")
    assert suite.exit_code == 2 and "not of fashion-mnist-lt" in suite.output
    shots = _cli("run", *store, "--split", path, "--shots", "1%")
    assert shots.exit_code == 2 and "differs from --split" in shots.output and "drop --shots" in shots.output
    for flag, values in (("--shots", "1%,10%"), ("--seed", "0,1")):
        several = _cli("splits", "export", "digits-lt", flag, values)
        assert several.exit_code == 2 and f"{flag} has several values" in several.output
    (tmp_path / "junk.json").write_text("{\"kind\": 1}")
    junk = _cli("splits", "verify", tmp_path / "junk.json")
    assert junk.exit_code == 2 and "is not a split manifest" in junk.output and "Traceback" not in junk.output

    missing = json.loads(json.dumps(doc))  # an id the data lacks, the file itself consistent
    missing["ids"]["0"][0] = "train/0/nope.png"
    missing["sha256"] = hashlib.sha256("\n".join(_ids(missing)).encode()).hexdigest()
    path.write_text(json.dumps(missing))
    failed = _cli("run", *store, "--split", path, "--image-size", "32")
    out = " ".join(failed.output.split())
    assert failed.exit_code == 1 and f"split manifest {path}: id 'train/0/nope.png' is not in digits-lt:train" in out


def test_job_ids_without_split_are_unchanged():
    (job,) = plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=["linear-probe"],
                  datasets=["digits-lt"], shots=parse_shots(["10%"]), seeds=[0])
    fields = asdict(job.config)
    assert fields.pop("split") is None and "split" not in job.config.as_dict()
    assert fields.pop("precision") is None and "precision" not in job.config.as_dict()  # fp32: as before --precision
    blob = json.dumps(fields, sort_keys=True, default=str)  # the id as it was computed before --split existed
    assert job.job_id == hashlib.sha256(blob.encode()).hexdigest()[:20]


def test_a_cell_run_in_another_process_carries_its_manifest(spy, tmp_path):
    from gaia_bench.runner import Cell, SessionSettings
    from gaia_bench.paths import data_root
    from gaia_bench.cli.splits import read_manifest

    path, doc = _export(tmp_path, "digits-lt")
    (job,) = plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=["split-spy"],
                  datasets=["digits-lt"], shots=parse_shots(["10%"]), seeds=[0], split=read_manifest(path))
    settings = SessionSettings(data_root=str(data_root()), device="cpu", batch_size=32, workers=0, feature_cache=None)
    cell = pickle.loads(pickle.dumps(Cell(job.config, settings, split=job.split)))  # what an executor ships
    record = cell()
    assert record["status"] == "done" and record["job_id"] == job.job_id, record.get("error")
    assert record["split"] == {"sha256": doc["sha256"], "source": path.name}
    alone = Cell(job.config, settings)()  # without the manifest it plans another job
    assert alone["status"] == "failed" and "differing: split" in alone["error"], alone["error"]
