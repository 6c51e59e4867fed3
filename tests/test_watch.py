"""`gaia-bench pretrain --checkpoint-every` and `gaia-bench watch`: each intermediate checkpoint of a
pretraining run is its own cell (``--init checkpoint``, named by the file's hash), evaluated once,
and transfer against step is plotted and tabulated. test_resnet, 2 tiny steps, lfw-faces with knn."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from gaia_bench.store import ResultsStore
from tests.helpers import require_debian_sources

ENV = {"COLUMNS": "200"}
TINY = {"steps": 2, "batch_size": 8, "image_size": 16, "seed": 7}


@pytest.fixture(scope="module", autouse=True)
def _debian_sources():
    require_debian_sources()


def _said(result) -> str:
    return " ".join(result.output.split())


def test_every_checkpoint_of_a_pretraining_run_is_evaluated_once_and_plotted(tmp_path):
    import torch

    from gaia_bench.plugins.inits.lib.pretraining import snapshot_dir
    from gaia_bench.plugins.reporters.lib.provenance import short_id

    pretrain = ["pretrain", "--method", "imagenet", "--model", "test_resnet", "--steps", "2", "--seed", "7",
                "--hp", "batch_size=8", "--hp", "image_size=16", "--checkpoint-every", "1"]
    trained = CliRunner().invoke(app, pretrain + ["--force"], env=ENV)
    assert trained.exit_code == 0, trained.output
    final = get_registries().inits.get("imagenet").pretrain.path(
        get_registries().backbones.get("test_resnet"), get_registries().upstream_pool("mini"), TINY)
    directory = snapshot_dir(final)
    assert f"gaia-bench watch {directory}" in _said(trained)
    files = sorted(directory.glob("*.pt"))
    assert [f.name for f in files] == ["step-0000001.pt", "step-0000002.pt"]
    last, whole = (torch.load(p, map_location="cpu", weights_only=True) for p in (files[-1], final))
    assert (last["step"], last["total_steps"], len(last["losses"])) == (2, 2, 2)
    assert all(torch.equal(last["state_dict"][k], v) for k, v in whole["state_dict"].items())  # the run is unchanged

    store, out = tmp_path / "r.db", tmp_path / "report"
    watch = ["watch", str(directory), "--dataset", "lfw-faces", "--image-size", "32", "--store", str(store),
             "--out", str(out), "--once"]
    first = CliRunner().invoke(app, watch, env=ENV)
    assert first.exit_code == 0, first.output
    assert _said(first).count("evaluating 1 of its 1 cell(s)") == 2
    with ResultsStore(store) as results:
        records = results.query()
    assert sorted(r["config"]["init"] for r in records) == ["checkpoint"] * 2
    ids = sorted(r["config"]["weights_id"] for r in records)
    assert [i.split(":sha256=")[0] for i in ids] == [f"checkpoint:imagenet:mini-upstream@1:step={n}" for n in (1, 2)]
    assert short_id(ids[0]).startswith("step 1 ")

    second = CliRunner().invoke(app, watch, env=ENV)
    assert second.exit_code == 0, second.output
    assert "evaluating" not in second.output and _said(second).count("its 1 cell(s) are in the store") == 2
    with ResultsStore(store) as results:
        assert sorted(r["finished_at"] for r in results.query()) == sorted(r["finished_at"] for r in records)

    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "transfer.csv").open()))
    assert [(r["step"], r["dataset"], r["adaptation"]) for r in rows] == [("1", "lfw-faces", "knn"), ("2", "lfw-faces", "knn")]
    assert all(float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]) for r in rows)
    markdown = (out / "transfer.md").read_text()
    assert "| 1 | step-0000001.pt |" in markdown and "| 2 | step-0000002.pt |" in markdown


@pytest.mark.parametrize("args, needle", [
    (["watch", "/nonexistent/run.steps", "--once"], "is not a folder"),
    (["pretrain", "--method", "imagenet", "--model", "test_resnet", "--checkpoint-every", "0"], "--checkpoint-every 0"),
    (["pretrain", "--method", "scratch", "--model", "test_resnet", "--checkpoint-every", "5"], "trains nothing"),
    (["run", "--model", "test_resnet", "--init", "checkpoint", "--dataset", "lfw-faces"], "--init-hp path=FILE"),
    # a JSON string keeps its commas: the path arrives whole (what watch passes for a folder with a comma)
    (["run", "--model", "test_resnet", "--init", "checkpoint", "--dataset", "lfw-faces", "--init-hp",
      'path="/nonexistent/a,b/step-1.pt",seed=1'], "--init-hp path=/nonexistent/a,b/step-1.pt: no such file"),
])
def test_user_errors_name_the_fix(args, needle, tmp_path):
    result = CliRunner().invoke(app, args + (["--store", str(tmp_path / "r.db")] if args[0] == "run" else []), env=ENV)
    assert result.exit_code == 2 and needle in _said(result), result.output


def test_a_folder_with_a_comma_in_its_path_is_watched(tmp_path):
    folder = tmp_path / "run,1.steps"
    folder.mkdir()
    result = CliRunner().invoke(app, ["watch", str(folder), "--once", "--store", str(tmp_path / "r.db")], env=ENV)
    assert result.exit_code == 2 and f"no pretraining checkpoints in {folder}" in _said(result), result.output
