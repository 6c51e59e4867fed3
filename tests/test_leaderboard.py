"""Leaderboards: known records -> known cells, stds, task means, error-rate reductions, data
efficiency order and Pareto front; merged stores report conflicts; every output format parses;
GV-B references carry provenance; `gaia-bench profile` counts parameters and FLOPs exactly."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

import gaia_bench
from gaia_bench.cli import app
from gaia_bench.plugins.reporters.lib.leaderboard import (
    build_leaderboard,
    data_efficiency,
    error_rate,
    merge_sources,
    pareto_front,
    shot_order,
)
from gaia_bench.plugins.reporters.lib.profiles import load_profiles
from gaia_bench.store import ResultsStore

SUITE = ("cls-a", "cls-b", "det-a", "depth-a")
TASKS = {"cls-a": ("classification", "top1", True), "cls-b": ("classification", "top1", True),
         "det-a": ("detection", "mAP", True), "depth-a": ("depth", "rmse", False)}


def record(model: str, init: str, dataset: str, value: float, seed: int = 0, shots: str = "10%",
           adaptation: str = "linear-probe") -> dict:
    """A record shaped like gaia_bench.runner.run_job's, for a dataset of the test suite."""
    task, metric, higher = TASKS[dataset]
    config = {"model": model, "init": init, "adaptation": adaptation, "dataset": dataset, "dataset_version": "1",
              "task": task, "shots": shots, "seed": seed, "image_size": 32, "protocol": "gaia-bench-shots-v1",
              "weights_id": f"{init}:test", "hyperparams": {"max_iter": 1000}}
    job_id = hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=10).hexdigest()
    fraction, per_class = (None, int(shots.split("/")[0])) if "/class" in shots else (float(shots[:-1]) / 100, None)
    return {
        "schema_version": 1, "job_id": job_id, "config": config, "status": "done",
        "shots": {"requested": shots, "fraction": fraction, "per_class": per_class},
        "primary_metric": metric, "higher_is_better": higher, "metrics": {metric: value}, "primary_value": value,
        "n_train": 50, "n_test": 100, "details": {}, "trainable_params": 10,
        "timings": {"total_s": 1.0}, "memory": {"peak_rss_mb": 100.0},
        "environment": {"device": "cpu", "python": "3.11"}, "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
    }


# imagenet -> gaia, model m1: CLS errors 20 -> 10 (50%) and 40 -> 30 (25%); DET 50 -> 40 (20%); DEPTH 0.5 -> 0.4 (20%)
RECORDS = [
    record("m1", "imagenet", "cls-a", 80.0), record("m1", "imagenet", "cls-b", 60.0),
    record("m1", "imagenet", "det-a", 50.0), record("m1", "imagenet", "depth-a", 0.5),
    record("m1", "gaia", "cls-a", 89.0, seed=0), record("m1", "gaia", "cls-a", 91.0, seed=1),
    record("m1", "gaia", "cls-b", 70.0), record("m1", "gaia", "det-a", 60.0), record("m1", "gaia", "depth-a", 0.4),
    record("m2", "gaia", "cls-a", 95.0),  # no imagenet row of m2: nothing to pair with
    record("m1", "gaia", "cls-a", 70.0, shots="1%"), record("m1", "gaia", "cls-a", 99.0, shots="100%"),
]


class Suite:
    @gaia_bench.hookimpl
    def register_suites(self, register):
        register(gaia_bench.SuiteSpec("lbtest", "leaderboard test suite", SUITE))


@pytest.fixture()
def suite(register_plugin):
    register_plugin(Suite(), "lbtest-suite")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def store_with(path: Path, records: list[dict]) -> Path:
    with ResultsStore(path) as s:
        for r in records:
            s.put(r)
    return path


def board_of(records: list[dict], **kwargs):
    return build_leaderboard(merge_sources([("test", records)]), suite="lbtest", dataset_order=SUITE, **kwargs)


# --------------------------------------------------------------------------- aggregation
def test_cells_hold_mean_sample_std_and_n_and_task_means_respect_direction():
    board = board_of(RECORDS)
    rows = {r.key: r for r in board.measured.table.rows}
    assert board.shots == "10%"  # 10 of the 12 records
    cell = next(c for col, c in rows[("m1", "gaia", "linear-probe")].cells.items() if col.dataset == "cls-a")
    assert cell.values == [89.0, 91.0] and cell.n == 2 and cell.mean == 90.0
    assert cell.std == pytest.approx(math.sqrt(2.0))  # ddof=1: ((-1)² + 1²) / (2 - 1)
    assert len(cell.record_ids) == 2 and {c["seed"] for c in cell.configs} == {0, 1}
    means = rows[("m1", "gaia", "linear-probe")].task_means
    assert means["classification"].value == pytest.approx(80.0) and means["classification"].n_datasets == 2
    assert means["depth"].value == pytest.approx(0.4) and not means["depth"].higher_is_better
    m2 = rows[("m2", "gaia", "linear-probe")].task_means["classification"]
    assert (m2.value, m2.n_datasets, m2.of) == (95.0, 1, 2)
    assert [c.dataset for c in board.measured.table.columns] == ["cls-a", "cls-b", "det-a", "depth-a"]


def _with(rec: dict, **config) -> dict:
    cfg = {**rec["config"], **config}
    return {**rec, "config": cfg, "job_id": hashlib.blake2b(json.dumps(cfg, sort_keys=True).encode(), digest_size=10).hexdigest()}


def test_different_settings_are_rows_of_their_own_never_averaged_as_seeds():
    default = [record("m1", "gaia", "cls-a", 80.0, seed=0), record("m1", "gaia", "cls-a", 82.0, seed=1)]
    budget0 = _with(record("m1", "gaia", "cls-a", 50.0, seed=0), hyperparams={"max_iter": 1000, "budget": 0})
    small = _with(record("m1", "gaia", "cls-b", 40.0), image_size=64)
    other = record("m1", "gaia", "cls-b", 60.0)  # same setting as `default`, another dataset: same row
    board = board_of([*default, budget0, small, other])
    rows = {r.key[2]: r for r in board.measured.table.rows}
    cls_a = {label: {col.dataset: c for col, c in row.cells.items()} for label, row in rows.items()}
    assert cls_a["linear-probe [budget=-, image_size=32]"]["cls-a"].values == [80.0, 82.0]
    assert cls_a["linear-probe [budget=0, image_size=32]"]["cls-a"].values == [50.0]
    assert cls_a["linear-probe [budget=-, image_size=64]"]["cls-b"].values == [40.0]
    assert cls_a["linear-probe [budget=-, image_size=32]"]["cls-b"].values == [60.0]
    # one setting only: no label at all
    assert [r.key for r in board_of(default).measured.table.rows] == [("m1", "gaia", "linear-probe")]


def test_error_rate_reduction_matches_a_hand_computation():
    board = board_of(RECORDS)
    assert board.measured.baseline == "imagenet"
    (err,) = board.measured.err  # m2 has no imagenet row, so only m1 pairs
    assert (err.init, err.model, err.baseline) == ("gaia", "m1", "imagenet")
    assert err.percent("classification") == pytest.approx((50.0 + 25.0) / 2)
    assert err.percent("detection") == pytest.approx(20.0)
    assert err.percent("depth") == pytest.approx(20.0)  # lower-is-better: the RMSE itself is the error
    assert error_rate(80.0, True) == 20.0 and error_rate(0.5, False) == 0.5
    against_gaia = board_of(RECORDS, baseline="gaia").measured.err[0]
    assert against_gaia.init == "imagenet"
    assert against_gaia.percent("classification") == pytest.approx(((10 - 20) / 10 + (30 - 40) / 30) / 2 * 100)


def test_data_efficiency_orders_fractions_then_k_shot():
    shots = ["100%", "5/class", "1%", "20%", "2/class", "10%"]
    eff = data_efficiency([record("m1", "gaia", "cls-a", 50.0 + i, shots=s) for i, s in enumerate(shots)])
    assert eff.shots == ["1%", "10%", "20%", "100%", "2/class", "5/class"]
    (row,) = eff.rows
    assert row.cells["5/class"].mean == 51.0
    assert shot_order("0.5%") < shot_order("1%") < shot_order("1/class")


def test_pareto_front_on_a_hand_made_set():
    points = [(10, 80), (5, 70), (20, 79), (5, 70), (1, 50), (30, 90), (30, 85)]
    assert pareto_front(points) == [True, True, False, True, True, True, False]
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.45)], higher_is_better=False) == [True, True, False]


# --------------------------------------------------------------------------- CLI and formats
@pytest.fixture()
def built(tmp_path, suite):
    """A leaderboard written by the CLI from a store with two profiled models."""
    from gaia_bench.plugins.reporters.lib.profiles import save_profile

    db = store_with(tmp_path / "a.db", RECORDS)
    for model, latency in (("m1", 10.0), ("m2", 30.0)):
        save_profile(db, {"model": model, "input_size": 32, "batch_size": 1, "device": "cpu", "device_name": "test",
                          "params": 1000, "gflops_per_image": 0.5, "latency_ms": latency,
                          "throughput_ips": 1000 / latency, "measured_at": "2026-01-01T00:00:00+00:00"})
    out = tmp_path / "out"
    result = invoke("leaderboard", "--suite", "lbtest", "--store", str(db), "--out", str(out), "--title", "Test board")
    assert result.exit_code == 0, result.output
    return out


class _Tables(HTMLParser):
    """Tables of a page (id, last header row's attributes, body cells with text and attributes) and its script."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.script = ""
        self._where: str | None = None  # "thead", "tbody" or "script"
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"id": attrs.get("id"), "heads": [], "rows": []})
        elif tag in ("thead", "tbody", "script"):
            self._where = tag
        elif tag == "tr" and self._where == "thead":
            self.tables[-1]["heads"] = []
        elif tag == "tr" and self._where == "tbody":
            self.tables[-1]["rows"].append([])
        elif tag == "th" and self._where == "thead":
            self.tables[-1]["heads"].append(attrs)
        elif tag == "td" and self._where == "tbody":
            self._cell = {"attrs": attrs, "text": ""}
            self.tables[-1]["rows"][-1].append(self._cell)

    def handle_endtag(self, tag):
        if tag in ("thead", "tbody", "script"):
            self._where = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        elif self._where == "script":
            self.script += data


def parse_page(html: str) -> _Tables:
    page = _Tables()
    page.feed(html)
    return page


def table_rows(html: str, table_id: str) -> list[list[str]]:
    table = next(t for t in parse_page(html).tables if t["id"] == table_id)
    return [[c["text"] for c in row] for row in table["rows"]]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def test_every_format_parses(built):
    names = {p.name for p in built.iterdir()}
    assert {"leaderboard.md", "leaderboard.html", "leaderboard.tex", "leaderboard.json", "results.json", "main.csv",
            "error_rate_reduction.csv", "data_efficiency.csv", "speed_accuracy.csv", "data_efficiency.png",
            "speed_accuracy.png"} <= names
    rows = list(csv.DictReader(io.StringIO((built / "main.csv").read_text())))
    gaia = next(r for r in rows if r["model"] == "m1" and r["init"] == "gaia")
    assert float(gaia["cls-a:top1"]) == 90.0 and float(gaia["cls-a:top1:std"]) == pytest.approx(math.sqrt(2))
    err = list(csv.DictReader(io.StringIO((built / "error_rate_reduction.csv").read_text())))
    assert {(r["task"], round(float(r["reduction_pct"]), 6)) for r in err} == {("CLS", 37.5), ("DET", 20.0), ("DEPTH", 20.0)}
    assert all("(err_base - err_init) / err_base" in r["formula"] for r in err)

    doc = json.loads((built / "leaderboard.json").read_text())
    assert {"main", "data_efficiency", "speed_accuracy", "conflicts", "references", "notes", "rebuild"} <= doc.keys()
    cell = next(r for r in doc["main"]["rows"] if r["init"] == "gaia" and r["model"] == "m1")["cells"]["cls-a:top1"]
    assert len(cell["record_ids"]) == 2 and cell["configs"][0]["dataset"] == "cls-a"
    assert doc["main"]["error_rate_reduction"]["formula"].startswith("error-rate reduction")

    md = (built / "leaderboard.md").read_text()
    # two seeds without stored predictions: ± half the t interval, t(0.975, 1) · sd / sqrt(2) = 12.706 · 1
    assert "90.00 ± 12.71ᵗ (n=2)" in md and "depth-a rmse ↓" in md and "(err_base - err_init) / err_base" in md
    assert "![data efficiency](data_efficiency.png)" in md

    tex = (built / "leaderboard.tex").read_text()
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", tex)
    stack = []
    for kind, name in envs:
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == tex.count(r"\midrule") >= 4
    assert r"10\%" in tex and r"err\_base" in tex and r"$\pm$" in tex
    assert not re.search(r"(?<!\\)[_#]", tex)  # specials in cell and note text are escaped
    assert len(re.findall(r"(?<!\\)%", tex)) == tex.count(r"\resizebox")  # the only comments: after \resizebox{..}{!}{

    page = _Page()
    html = (built / "leaderboard.html").read_text()
    page.feed(html)
    assert "table" in page.tags and "script" in page.tags and "img" in page.tags
    assert not [link for link in page.links if re.match(r"(https?:)?//", link)]
    assert "(err_base - err_init) / err_base" in html
    rows = table_rows(html, "main")
    assert [r[:2] for r in rows] == [["m2", "gaia"], ["m1", "gaia"], ["m1", "imagenet"]]  # ranked by CLS mean
    assert 'data-key="depth-a:rmse" data-better="lower"' in html


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(built, tmp_path):
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "leaderboard.tex"], cwd=built,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]


def test_speed_table_marks_the_pareto_front(built):
    rows = list(csv.DictReader(io.StringIO((built / "speed_accuracy.csv").read_text())))
    front = {(r["model"], r["init"]): r["pareto:CLS"] for r in rows}
    # m1/gaia (10 ms, CLS 80) and m2/gaia (30 ms, CLS 95) are on the front; m1/imagenet (10 ms, 70) is not
    assert front == {("m1", "gaia"): "True", ("m2", "gaia"): "True", ("m1", "imagenet"): "False"}


def test_results_json_rebuilds_the_same_tables(built, tmp_path):
    again = tmp_path / "again"
    result = invoke("leaderboard", "--suite", "lbtest", "--import", str(built / "results.json"), "--out", str(again),
                    "--title", "Test board")
    assert result.exit_code == 0, result.output
    first, second = (json.loads((d / "leaderboard.json").read_text()) for d in (built, again))
    for key in ("main", "data_efficiency", "speed_accuracy", "shots", "title"):
        assert first[key] == second[key], key
    assert (built / "main.csv").read_text() == (again / "main.csv").read_text()


def test_merged_stores_report_conflicts_and_count_identical_duplicates_once(tmp_path, suite):
    other_machine = {"cpu": "Other CPU", "aten_capability": "AVX2", "threads": 1,
                     "variables": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
    changed = dict(RECORDS[0], metrics={"top1": 70.0}, primary_value=70.0,
                   environment={**RECORDS[0]["environment"], "numerics": other_machine},
                   details={"numerics": {"threads": 2}})
    a = store_with(tmp_path / "a.db", RECORDS)
    b = store_with(tmp_path / "b.db", [RECORDS[1], changed])
    result = invoke("leaderboard", "--suite", "lbtest", "--store", str(a), "--store", str(b), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert f"job {RECORDS[0]['job_id']} has different results" in warning and "not an average" in warning
    assert "mark its cell ‡" in warning
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    (conflict,) = doc["conflicts"]
    assert conflict["job_id"] == RECORDS[0]["job_id"] and conflict["kept"] == str(a)
    assert sorted(v["primary_value"] for v in conflict["versions"]) == [70.0, 80.0]
    assert [v["numerics"] for v in conflict["versions"]] == [None,
                                                             "Other CPU, AVX2, 2 threads, ONEDNN_MAX_CPU_ISA=AVX2"]
    assert doc["identical_duplicates"] == 1
    imagenet = next(r for r in doc["main"]["rows"] if r["init"] == "imagenet")
    assert imagenet["cells"]["cls-a:top1"]["values"] == [80.0]  # the first store's, never averaged with 70
    # the cell built on the conflicting job says so, in every format; the others do not
    assert imagenet["cells"]["cls-a:top1"]["conflicts"] == [RECORDS[0]["job_id"]]
    assert "conflicts" not in imagenet["cells"]["cls-b:top1"]
    markdown = (tmp_path / "o" / "leaderboard.md").read_text()
    marked = [line for line in markdown.splitlines() if "‡" in line and line.startswith("|")]
    assert any("| imagenet |" in line for line in marked) and not any("| gaia |" in line for line in marked)
    assert "b.db: 70.00 (Other CPU, AVX2, 2 threads, ONEDNN_MAX_CPU_ISA=AVX2)" in markdown
    assert "‡" in result.stdout  # the terminal table too
    merged = merge_sources([("a", RECORDS), ("b", [RECORDS[1], changed])])
    assert len(merged.records) == len(RECORDS)


def test_a_rerun_that_only_adds_metrics_is_no_conflict_and_is_kept():
    """A newer run of the same job records more metrics (e.g. calibration) with the same values for the
    ones the older copy has: the same result, and the fuller record is kept, whichever came first."""
    fuller = dict(RECORDS[0], metrics={**RECORDS[0]["metrics"], "ece": 3.5})
    for sources in ([("old", RECORDS), ("new", [fuller])], [("new", [fuller]), ("old", RECORDS)]):
        merged = merge_sources(sources)
        assert merged.conflicts == [] and len(merged.records) == len(RECORDS)
        kept = next(r for r in merged.records if r["job_id"] == RECORDS[0]["job_id"])
        assert kept["metrics"]["ece"] == 3.5
    moved = dict(fuller, metrics={**fuller["metrics"], RECORDS[0]["primary_metric"]: -1.0})
    assert len(merge_sources([("old", RECORDS), ("new", [moved])]).conflicts) == 1


@pytest.mark.parametrize("args,needle", [
    (["--baseline", "clip"], "--baseline clip: no result has that init"),
    (["--shots", "20%"], "--shots 20%: no result at that setting"),
    (["--suite", "lbtset"], "unknown suite 'lbtset'"),
    (["--references", "nope"], "no reference set named 'nope'"),
    (["--interval", "sem"], "--interval sem is not one of ci, std"),
])
def test_bad_options_give_one_clear_error(tmp_path, suite, args, needle):
    db = store_with(tmp_path / "a.db", RECORDS)
    result = invoke("leaderboard", "--suite", "lbtest", "--store", str(db), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2 and needle in " ".join(result.stderr.split())
    missing = invoke("leaderboard", "--store", str(tmp_path / "none.db"))
    assert missing.exit_code == 2 and "no results store at" in missing.stderr


# --------------------------------------------------------------------------- references
def test_gvb_references_are_shown_apart_with_provenance(tmp_path, suite):
    db = store_with(tmp_path / "a.db", RECORDS)
    out = tmp_path / "o"
    result = invoke("leaderboard", "--suite", "lbtest", "--store", str(db), "--references", "gvb", "--baseline", "Up-A",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    refs = doc["references"]
    assert refs["sets"][0]["source"]["commit"] == "ffe1f7460b857c88276d52a1537cbc673002f1e4"
    row = next(r for r in refs["rows"] if (r["model"], r["init"]) == ("R50", "Up-G"))
    cifar = row["cells"]["cifar10:top1"]
    assert cifar["mean"] == 92.9 and cifar["provenance"][0]["row"] == "Up-G / R50"
    assert row["cells"]["kitti:rmse"]["mean"] == 2.835
    assert {r["source"] for r in doc["main"]["rows"]} == {"measured"} and {r["source"] for r in refs["rows"]} == {"reference"}
    # Up-G vs Up-A on R50, detection: VOC mAP 76.3->87.7, WIDER FACE easy 90.3->93.9, CityPersons MR 24.6->14.7 (lower is better)
    expected = ((23.7 - 12.3) / 23.7 + (9.7 - 6.1) / 9.7 + (24.6 - 14.7) / 24.6) / 3 * 100
    err = next(e for e in refs["error_rate_reduction"]["rows"] if (e["init"], e["model"]) == ("Up-G", "R50"))
    assert err["tasks"]["detection"]["reduction_pct"] == pytest.approx(expected)
    md = (out / "leaderboard.md").read_text()
    assert md.index("## Main table") < md.index("## Reference table") and "GV-B README @ffe1f74" in md
    assert doc["main"]["error_rate_reduction"]["baseline"] == "imagenet"  # Up-A is not among the measured inits
    rebuilt = json.loads((out / "results.json").read_text())
    assert rebuilt["reference_sets"][0]["name"] == "gvb" and len(rebuilt["results"]) == len(RECORDS)


def test_gvb_reference_file_matches_the_readme_table():
    doc = json.loads((Path(__file__).parent.parent / "leaderboards/references/gvb_readme.json").read_text())
    entries = doc["entries"]
    assert len(entries) == 14 * 26 and len({e["dataset"] for e in entries}) == 26
    by = {(e["init"], e["model"], e["dataset"]): e for e in entries}
    assert by[("Up-E(C)", "MN-B15", "aircraft")]["value"] == 91.8
    assert by[("Up-A", "R50", "widerface")]["metrics"] == {"ap_easy": 90.3, "ap_medium": 88.3, "ap_hard": 70.7}
    assert by[("Up-G", "MN-B15", "citypersons")]["higher_is_better"] is False
    assert all(e["shots"] == "10%" and e["provenance"]["file"] == "README.md" for e in entries)


# --------------------------------------------------------------------------- intervals, marks, long tail, data efficiency, weights
def _fields(rec: dict, **fields) -> dict:
    """A record with more top-level fields (interval, per_class, pretraining, ...)."""
    return {**rec, **fields}


def _interval(low: float, high: float, metric: str = "top1") -> dict:
    return {"method": "percentile bootstrap over test items", "level": 0.95, "resamples": 1000, "seed": 0,
            "unit": "test item", "metrics": {metric: [low, high]}}


def write_board(tmp_path: Path, records: list[dict], *args: str, columns: int = 200) -> Path:
    db = store_with(tmp_path / "board.db", records)
    out = tmp_path / "board"
    result = CliRunner().invoke(app, ["leaderboard", "--suite", "lbtest", "--store", str(db), "--out", str(out), *args],
                                env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    (out / "terminal.txt").write_text(result.output)
    return out


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_cells_show_their_interval_and_every_format_says_what_it_is(tmp_path, suite):
    records = [_fields(record("m1", "imagenet", "cls-a", 80.0), interval=_interval(76.0, 83.0)),
               record("m1", "imagenet", "cls-b", 60.0),  # an older record: no interval stored
               record("m1", "gaia", "cls-a", 89.0, seed=0), record("m1", "gaia", "cls-a", 91.0, seed=1)]
    out = write_board(tmp_path, records)
    md = (out / "leaderboard.md").read_text()
    assert "80.00 ± 3.50 (n=1)" in md  # half of the record's own [76, 83]
    assert "60.00 ± n/a (n=1)" in md
    assert "90.00 ± 12.71ᵗ (n=2)" in md  # no predictions: the t interval over the two seeds
    assert "percentile bootstrap over test items, 95%, 1000 resamples, seed 0" in md
    assert "Student t interval of the mean over seeds (95%)" in md and "n/a: one seed without a stored interval" in md
    main = {(r["init"]): r for r in csv_rows(out / "main.csv")}
    assert (float(main["imagenet"]["cls-a:top1:ci_low"]), float(main["imagenet"]["cls-a:top1:ci_high"])) == (76.0, 83.0)
    assert "1000 resamples" in main["imagenet"]["cls-a:top1:interval"] and main["imagenet"]["cls-b:top1:interval"] == "n/a"
    low, high = stats.t.interval(0.95, 1, loc=90.0, scale=stats.sem([89.0, 91.0]))
    assert float(main["gaia"]["cls-a:top1:ci_low"]) == pytest.approx(low)
    assert float(main["gaia"]["cls-a:top1:ci_high"]) == pytest.approx(high)
    doc = json.loads((out / "leaderboard.json").read_text())
    gaia = next(r for r in doc["main"]["rows"] if r["init"] == "gaia")["cells"]["cls-a:top1"]
    assert gaia["interval"]["kind"] == "t" and gaia["interval"]["low"] == pytest.approx(low)
    assert doc["interval"] == "ci" and any("95% confidence interval" in n for n in doc["notes"]["cells"])
    tex = (out / "leaderboard.tex").read_text()
    assert r"95\% confidence interval" in tex and r"$^{t}$" in tex and "1000 resamples" in tex
    html = (out / "leaderboard.html").read_text()
    assert "95% confidence interval" in html and "Student t interval" in html

    std = write_board(tmp_path / "std", records, "--interval", "std")
    md = (std / "leaderboard.md").read_text()
    assert "90.00 ± 1.41 (n=2)" in md and "sample standard deviation (ddof=1) over seeds" in md
    assert "confidence interval" not in md.split("## Error-rate")[0]
    assert "--interval std" in json.loads((std / "leaderboard.json").read_text())["rebuild"]
    assert float(csv_rows(std / "main.csv")[0]["cls-a:top1:ci_high"]) > 0  # the CSV keeps both


def test_rows_not_distinguishable_from_the_best_are_marked_with_compares_tests(tmp_path, suite):
    scores = {"imagenet": [80.0, 81.0, 82.0, 83.0], "gaia": [79.8, 81.2, 81.8, 83.0], "clip": [60.0, 62.0, 61.0, 64.0]}
    records = [record("m1", init, "cls-a", v, seed=s) for init, values in scores.items() for s, v in enumerate(values)]
    records += [record("m1", "imagenet", "cls-b", 60.0), record("m1", "gaia", "cls-b", 50.0)]  # one seed each: no test
    out = write_board(tmp_path, records, columns=80)
    doc = json.loads((out / "leaderboard.json").read_text())
    cells = {r["init"]: r["cells"] for r in doc["main"]["rows"]}
    assert cells["imagenet"]["cls-a:top1"]["mark"] == "best" and "mark" not in cells["clip"]["cls-a:top1"]
    assert cells["gaia"]["cls-a:top1"]["mark"] == "tied"
    # without stored predictions compare decides several seeds by the paired t-test; Holm over the 2 rows compared
    p_gaia = stats.ttest_rel(scores["imagenet"], scores["gaia"]).pvalue
    p_clip = stats.ttest_rel(scores["imagenet"], scores["clip"]).pvalue
    assert p_clip < p_gaia
    clip, gaia = cells["clip"]["cls-a:top1"]["versus_best"], cells["gaia"]["cls-a:top1"]["versus_best"]
    assert clip["p_holm"] == pytest.approx(2 * p_clip) and clip["verdict"] == "worse"
    assert gaia["p_holm"] == pytest.approx(max(2 * p_clip, p_gaia)) and gaia["verdict"] == "not distinguishable"
    assert clip["test"] == gaia["test"] == "paired t over seeds"
    assert cells["gaia"]["cls-b:top1"]["versus_best"]["test"] == "none" and cells["gaia"]["cls-b:top1"]["mark"] == "tied"
    md = (out / "leaderboard.md").read_text()
    assert "**81.50 ± " in md and re.search(r"81\.45 ± [\d.]+ᵗ \(n=4\) ≈", md) and not re.search(r"61\.75 ± [\d.]+ᵗ \(n=4\) ≈", md)
    assert "Holm over the rows compared in the column" in md and "1 of 3 comparisons had no test" in md
    assert r"\textbf{81.50" in (out / "leaderboard.tex").read_text()
    assert "<strong>81.50" in (out / "leaderboard.html").read_text()
    assert {r["init"]: r["cls-a:top1:mark"] for r in csv_rows(out / "main.csv")} == {"imagenet": "best", "gaia": "tied", "clip": ""}
    terminal = (out / "terminal.txt").read_text()
    tables = [line for line in terminal.splitlines() if not line.startswith("›")]  # the last line lists the files
    assert max(len(line) for line in tables) <= 80 and "81.45±" in terminal


def test_error_rate_reduction_interval_bootstraps_the_datasets(tmp_path, suite):
    # one seed each, no predictions: only the datasets vary; reductions 50% and 25%: resampled means 25, 37.5, 50
    records = [record("m1", "imagenet", "cls-a", 80.0), record("m1", "imagenet", "cls-b", 60.0),
               record("m1", "gaia", "cls-a", 90.0), record("m1", "gaia", "cls-b", 70.0)]
    out = write_board(tmp_path, records)
    (row,) = csv_rows(out / "error_rate_reduction.csv")
    assert float(row["reduction_pct"]) == pytest.approx(37.5)
    assert (float(row["ci_low"]), float(row["ci_high"])) == (25.0, 50.0)
    assert "percentile bootstrap over datasets" in row["ci_method"]
    assert "37.5 [25.0, 50.0] (n=2)" in (out / "leaderboard.md").read_text()


def test_long_tail_buckets_by_the_full_training_split(tmp_path, suite):
    from gaia_bench.plugins.reporters.lib.long_tail import buckets_of

    counts = [1000, 300, 100, 10]  # log10 range 1..3: tail < 10^(5/3) = 46.4, head >= 10^(7/3) = 215.4
    per_class = [{"values": [90.0, 80.0, 70.0, 20.0], "train_count": counts, "test_count": [5, 5, 5, 5]},
                 {"values": [92.0, 78.0, None, 30.0], "train_count": counts, "test_count": [5, 5, 0, 5]}]
    balanced = {"values": [50.0, 60.0, 70.0], "train_count": [100, 90, 80], "test_count": [5, 5, 5]}
    records = [_fields(record("m1", "imagenet", "cls-a", 65.0, seed=s), per_class=pc) for s, pc in enumerate(per_class)]
    records.append(_fields(record("m1", "imagenet", "cls-b", 60.0), per_class=balanced))
    out = write_board(tmp_path, records)
    (row,) = csv_rows(out / "long_tail.csv")  # cls-b (100/80 < 4) is not long-tailed
    assert (row["dataset"], row["head:classes"], row["medium:classes"], row["tail:classes"]) == ("cls-a", "0 1", "2", "3")
    assert float(row["head_from"]) == pytest.approx(10 ** (7 / 3)) and float(row["tail_below"]) == pytest.approx(10 ** (5 / 3))
    assert float(row["head:mean"]) == 85.0 and float(row["head:std"]) == 0.0  # (90+80)/2 and (92+78)/2
    assert float(row["medium:mean"]) == 70.0 and row["medium:std"] == ""  # seed 1 has no test item of class 2
    assert float(row["tail:mean"]) == 25.0 and float(row["tail:std"]) == pytest.approx(math.sqrt(50))
    assert float(row["worst_class:mean"]) == 25.0  # 20 and 30
    md = (out / "leaderboard.md").read_text()
    assert "## Long tail (10%)" in md and "head ≥ 215.4, tail < 46.4 training images" in md and "FULL training split" in md
    assert r"head $\geq$ 215.4" in (out / "leaderboard.tex").read_text()
    assert json.loads((out / "leaderboard.json").read_text())["long_tail"]["datasets"][0]["classes"]["tail"] == [3]
    assert buckets_of("two", [500, 5]) is None and buckets_of("flat", [100, 30, 26]) is None


def test_data_efficiency_area_reach_and_rank_agreement(tmp_path, suite):
    curves = {"imagenet": (40.0, 60.0, 90.0), "gaia": (70.0, 92.0, 95.0), "clip": (50.0, 50.0, 80.0)}
    records = [record("m1", init, "cls-a", v, shots=s) for init, values in curves.items()
               for s, v in zip(("1%", "10%", "100%"), values)]
    out = write_board(tmp_path, records)
    rows = {r["init"]: r for r in csv_rows(out / "data_efficiency_analysis.csv")}
    # trapezoids over log10 fraction (two decades of equal width), divided by the width: the curve's mean
    assert float(rows["imagenet"]["auc_log"]) == pytest.approx(((40 + 60) / 2 + (60 + 90) / 2) / 2)
    assert float(rows["gaia"]["auc_log"]) == pytest.approx(87.25) and float(rows["clip"]["auc_log"]) == pytest.approx(57.5)
    assert {k: r["reaches_baseline_100"] for k, r in rows.items()} == {"imagenet": "100%", "gaia": "10%", "clip": "not reached"}
    agree = {(r["shots_a"], r["shots_b"]): r for r in csv_rows(out / "rank_agreement.csv")}
    # 1%: gaia > clip > imagenet; 100%: gaia > imagenet > clip: one discordant pair of three
    assert float(agree[("1%", "100%")]["tau"]) == pytest.approx(1 / 3)
    assert agree[("1%", "100%")]["ci_low"] == "" and agree[("1%", "100%")]["resamples"] == "0"  # one seed, no predictions
    assert float(agree[("10%", "100%")]["tau"]) == pytest.approx(stats.kendalltau([60, 92, 50], [90, 95, 80]).statistic)
    md = (out / "leaderboard.md").read_text()
    assert "trapezoid rule over log10(shot fraction)" in md and "reaches imagenet@100%" in md and "+0.33" in md


def test_each_row_says_where_its_weights_came_from(tmp_path, suite):
    hp = {"steps": 400, "batch_size": 64, "image_size": 64, "lr": 0.003, "seed": 0}
    records = [
        _with(record("m1", "imagenet", "cls-a", 80.0), weights_id="imagenet:a1_in1k:sha256=0123456789abcdef"),
        _with(record("m1", "imagenet", "cls-a", 75.0), weights_id="imagenet:pretrained:mini-upstream@1:69f694cd4482aa"),
        _fields(_with(record("m1", "gaia", "cls-a", 78.0), weights_id="gaia:pretrained:mini-upstream@1:5673ace0cd3d68"),
                pretraining={"pool": "mini-upstream@1", "hyperparams": hp}),
        _fields(_with(record("m1", "gaia", "cls-a", 70.0), weights_id="gaia:pretrained:mini-upstream@1:5673ace0ffff00"),
                pretraining={"pool": "mini-upstream@1", "hyperparams": {**hp, "steps": 200}}),
        _fields(_with(record("m1", "random", "cls-a", 60.0), weights_id="random:torch.manual_seed(0)"),
                data_source={"kind": "embedded", "package": "gaia-bench"}),
        _with(record("m1", "scratch", "cls-a", 50.0), weights_id="scratch:pretrained:mini-upstream@1:7e5869e54359aa"),
        _fields(_with(record("m1", "scratch", "cls-a", 55.0, adaptation="finetune"),
                      weights_id="scratch:pretrained:mini-upstream@1:7e5869e54359aa"),
                data_source={"kind": "downloaded", "files": {}, "bundle": {"file": "cls.tar"}}),
    ]
    out = write_board(tmp_path, records)
    main = csv_rows(out / "main.csv")
    by = {(r["init"], r["adaptation"]): r for r in main}
    # published weights and an imitation of them are rows of their own, labelled by what they are
    published = by[("imagenet", "linear-probe [weights_id=published 01234567]")]
    imitation = by[("imagenet", "linear-probe [weights_id=imitation 69f694cd]")]
    assert published["weights"] == "published" and "'a1_in1k' (file sha256 0123456789abcdef" in published["weights_source"]
    assert imitation["weights"] == "imitation" and "steps and resolution not recorded" in imitation["weights_source"]
    # two pretraining budgets: two rows (their checkpoint keys share 8 characters, not 12)
    gaia = sorted(r["weights_source"] for k, r in by.items() if k[0] == "gaia")
    assert gaia == ["gaia imitation pretrained on mini-upstream@1: 200 steps of 64 images at 64 px (checkpoint 5673ace0ffff)",
                    "gaia imitation pretrained on mini-upstream@1: 400 steps of 64 images at 64 px (checkpoint 5673ace0cd3d)"]
    assert by[("random", "linear-probe")]["weights"] == "random"
    assert by[("scratch", "linear-probe")]["flag"] == "†" and by[("scratch", "finetune")]["flag"] == ""
    md = (out / "leaderboard.md").read_text()
    assert "| random GN+WS † |" in md and "Rethinking ImageNet Pre-training" in md
    assert "## Where each row's weights and data came from" in md and "+bundle = unpacked from" in md
    data = {(r[1], r[2]): r[4] for r in table_rows((out / "leaderboard.html").read_text(), "provenance")}
    assert (data[("random", "linear-probe")], data[("scratch", "finetune")]) == ("embedded", "downloaded+bundle")
    assert data[("scratch", "linear-probe")] == "-"  # records from before data sources were kept
    doc = json.loads((out / "leaderboard.json").read_text())
    assert {r["weights"]["kind"] for r in doc["main"]["rows"]} == {"published", "imitation", "random"}
    assert r"$\dagger$" in (out / "leaderboard.tex").read_text()
    assert any("400 steps of 64 images at 64 px" in r[-1] for r in table_rows((out / "leaderboard.html").read_text(), "provenance"))


# --------------------------------------------------------------------------- from a real store with predictions
@pytest.fixture(scope="module")
def predicted(tmp_path_factory, shared_home) -> Path:
    """Two inits, two seeds, 10% and 100% of digits-lt, ridge on 32 px features: every record keeps
    its predictions and its interval."""
    from tests.helpers import cli

    path = tmp_path_factory.mktemp("predicted") / "results.db"
    done = cli(["run", "--model", "test_resnet", "--init", "random,scratch", "--adapt", "ridge", "--image-size", "32",
                "--dataset", "digits-lt", "--shots", "10%,100%", "--seed", "0,1", "--store", str(path)],
               env={"GAIA_BENCH_HOME": shared_home})
    assert done.returncode == 0, done.stderr
    return path


def _real_board(store: Path, out: Path, *args: str) -> dict:
    result = invoke("leaderboard", "--suite", "mini", "--store", str(store), "--baseline", "random", "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "leaderboard.json").read_text())


@pytest.mark.slow
def test_several_seeds_take_the_bootstrap_over_seeds_and_items_of_the_stored_predictions(predicted, tmp_path, shared_home):
    from gaia_bench.manager import get_registries
    from gaia_bench.predictions import load_predictions, resample_counts

    doc = _real_board(predicted, tmp_path / "out")
    cell = next(r for r in doc["main"]["rows"] if r["init"] == "random")["cells"]["digits-lt:top1"]
    assert cell["interval"]["kind"] == "seeds×items" and cell["n"] == 2
    # by hand: each seed's top-1 on the core's item resamples, then each resample draws the 2 seeds
    with ResultsStore(predicted) as s:
        records = sorted(s.query(init="random", shots="10%", adaptation="ridge"), key=lambda r: r["config"]["seed"])
    source = records[0]["data_source"]  # each record says where its data came from: generated here, these files
    manifest = Path(shared_home) / "data" / "digits-lt" / "MANIFEST.sha256"
    assert source["kind"] == "embedded" and source["from"][0].startswith("handwritten digits, sklearn")
    assert source["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    task = get_registries().tasks.get("classification")
    per_seed = []
    for rec in records:
        predictions, test = load_predictions(predicted, rec, task)
        right = np.array([int(np.argmax(p)) for p in predictions]) == np.array(test.labels())
        (counts,) = list(resample_counts(len(test), 1000, 0))
        per_seed.append(100.0 * counts @ right / len(test))
    drawn = np.random.default_rng([0, 1]).integers(0, 2, size=(1000, 2))
    means = np.stack(per_seed)[drawn, np.arange(1000)[:, None]].mean(axis=1)
    assert (cell["interval"]["low"], cell["interval"]["high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    agreement = next(a for a in doc["data_efficiency"]["analysis"]["rank_agreement"] if a["dataset"] == "digits-lt")
    assert agreement["resamples"] > 0 and agreement["ci_low"] <= agreement["tau"] <= agreement["ci_high"]
    lt = csv_rows(tmp_path / "out" / "long_tail.csv")
    assert {r["init"] for r in lt} == {"random", "scratch"} and all(r["n_seeds"] == "2" for r in lt)
    # the init's pretraining is in the record (scratch trains nothing), and a frozen scratch row is flagged
    with ResultsStore(predicted) as s:
        scratch = s.query(init="scratch")[0]
    assert scratch["pretraining"] == {"pool": "mini-upstream@1", "hyperparams": {"seed": 0}} and "pretraining" not in records[0]
    flags = {r["init"]: (r["weights"], r["flag"]) for r in csv_rows(tmp_path / "out" / "main.csv")}
    assert flags == {"random": ("random", ""), "scratch": ("random", "†")}


@pytest.mark.slow
def test_marks_agree_with_compare_and_a_rebuild_draws_the_same(predicted, tmp_path):
    doc = _real_board(predicted, tmp_path / "out")
    rows = {r["init"]: r["cells"]["digits-lt:top1"] for r in doc["main"]["rows"]}
    best = next(init for init, c in rows.items() if c.get("mark") == "best")
    other = next(init for init in rows if init != best)
    result = CliRunner().invoke(app, ["compare", "--a", f"init={best}", "--b", f"init={other}", "--shots", "10%",
                                      "--store", str(predicted), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    versus = rows[other]["versus_best"]
    assert (versus["test"], versus["p_holm"]) == (row["test"], pytest.approx(row["p_holm"]))
    assert (rows[other].get("mark") == "tied") == (row["verdict"] == "not distinguishable")

    rebuilt = tmp_path / "rebuilt"
    again = invoke("leaderboard", "--import", str(tmp_path / "out" / "results.json"), "--suite", "mini",
                   "--baseline", "random", "--out", str(rebuilt))
    assert again.exit_code == 0, again.output
    second = json.loads((rebuilt / "leaderboard.json").read_text())
    for key in ("main", "data_efficiency", "long_tail"):
        assert second[key] == doc[key], key
    assert sorted(p.name for p in (tmp_path / "out" / "results.predictions").iterdir()) == sorted(
        r["predictions"]["file"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["results"])

    shutil.rmtree(tmp_path / "out" / "results.predictions")  # results without their predictions still render
    lost = invoke("leaderboard", "--import", str(tmp_path / "out" / "results.json"), "--suite", "mini",
                  "--baseline", "random", "--out", str(tmp_path / "lost"))
    assert lost.exit_code == 0, lost.output
    md = (tmp_path / "lost" / "leaderboard.md").read_text()
    assert "8 result(s) with stored predictions that could not be read" in md and "ᵗ" in md


# --------------------------------------------------------------------------- profile
def _tiny_conv(name: str, c_in: int, c_out: int, k: int) -> gaia_bench.BackboneSpec:
    def build(weights=None):
        import torch

        from gaia_bench.backbone import Backbone

        trunk = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        return Backbone(trunk, c_out, name=name)

    return gaia_bench.BackboneSpec(name=name, build=build, source="tests", input_size=16)


class TinyConv:
    @gaia_bench.hookimpl
    def register_backbones(self, register):
        register(_tiny_conv("tiny_conv", 3, 8, 3))


def test_profile_counts_params_and_flops_and_times_a_forward(tmp_path, register_plugin):
    from gaia_bench.manager import get_registries

    register_plugin(TinyConv(), "tiny-conv")
    db = tmp_path / "p.db"
    result = invoke("profile", "--model", "tiny_conv,test_resnet", "--input-size", "64", "--repeats", "3",
                    "--store", str(db))
    assert result.exit_code == 0, result.output
    assert "a multiply-add counts as 2 FLOPs" in " ".join(result.output.split())
    tiny, resnet = load_profiles(db)
    assert tiny["flops_per_image"] == 2 * 3 * 3 * 3 * 8 * 64 * 64  # 2·k·k·C_in·C_out·H·W (same padding)
    assert tiny["params"] == 3 * 8 * 3 * 3
    model = get_registries().backbones.get("test_resnet").build()
    assert resnet["params"] == sum(p.numel() for p in model.parameters())
    assert resnet["flops_per_image"] > 0 and resnet["input_size"] == 64
    assert resnet["latency_ms"] > 0 and resnet["throughput_ips"] == pytest.approx(1000 / resnet["latency_ms"])
    bad = invoke("profile", "--model", "test_resnt", "--store", str(db))
    assert bad.exit_code == 2 and "did you mean" in bad.stderr


# --------------------------------------------------------------------------- the page in a browser
CHROMIUM = Path("/usr/bin/chromium")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")
def test_page_renders_and_sorts_in_headless_chromium(built, tmp_path):
    page = built / "leaderboard.html"
    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    assert [r[:2] for r in table_rows(page.read_text(), "main")] == [["m2", "gaia"], ["m1", "gaia"], ["m1", "imagenet"]]
    # lower-is-better RMSE sorts ascending by default, rows without a value last
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "?sort=depth-a:rmse").stdout
    assert [r[:2] for r in table_rows(dom, "main")] == [["m1", "gaia"], ["m1", "imagenet"], ["m2", "gaia"]]
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "?sort=model&order=desc").stdout
    assert [r[0] for r in table_rows(dom, "main")] == ["m2", "m1", "m1"]


# The page's own script run in node against a minimal stand-in for the DOM calls it makes.
_NODE_DOM = r"""
const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'));
function el(attrs, text) {
  return { attrs: Object.assign({}, attrs), textContent: text || '', listeners: {},
    getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; },
    setAttribute(k, v) { this.attrs[k] = String(v); }, removeAttribute(k) { delete this.attrs[k]; },
    addEventListener(type, f) { this.listeners[type] = f; } };
}
const tables = spec.tables.map(t => {
  const heads = t.heads.map(h => el(h));
  const body = { rows: t.rows.map(r => ({ cells: r.map(c => el(c.attrs, c.text)) })),
    appendChild(r) { this.rows.splice(this.rows.indexOf(r), 1); this.rows.push(r); } };
  return { id: t.id, heads, tBodies: [body], tHead: { rows: [{ cells: heads }] } };
});
global.window = { location: { search: spec.search } };
global.document = { querySelectorAll: () => tables, getElementById: id => tables.find(t => t.id === id) || null };
eval(spec.script);
for (const [id, index] of spec.clicks) tables.find(t => t.id === id).heads[index].listeners.click();
const main = tables.find(t => t.id === 'main');
console.log(JSON.stringify(main.tBodies[0].rows.map(r => r.cells.map(c => c.textContent))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
@pytest.mark.parametrize("search,clicks,expected", [
    ("", [], [("m2", "gaia"), ("m1", "gaia"), ("m1", "imagenet")]),  # as written: ranked by CLS mean
    ("?sort=depth-a:rmse", [], [("m1", "gaia"), ("m1", "imagenet"), ("m2", "gaia")]),  # lower is better: ascending, blanks last
    ("?sort=cls-a:top1&order=asc", [], [("m1", "imagenet"), ("m1", "gaia"), ("m2", "gaia")]),
    ("", [0], [("m1", "gaia"), ("m1", "imagenet"), ("m2", "gaia")]),  # click "model": text ascending (stable)
    ("", [5], [("m1", "gaia"), ("m1", "imagenet"), ("m2", "gaia")]),  # click "cls-b": best (highest) first, blank last
    ("", [5, 5], [("m1", "imagenet"), ("m1", "gaia"), ("m2", "gaia")]),  # again: reversed, blank still last
])
def test_page_script_sorts_by_header_click_and_query(built, search, clicks, expected):
    page = parse_page((built / "leaderboard.html").read_text())
    spec = {"tables": page.tables, "script": page.script, "search": search, "clicks": [["main", i] for i in clicks]}
    run = subprocess.run(["node", "-e", _NODE_DOM], input=json.dumps(spec), capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert [tuple(r[:2]) for r in json.loads(run.stdout)] == expected


# --------------------------------------------------------------------------- a real click in a real browser
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("GAIA_BENCH_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="Debian's chromium and chromium-driver are not installed")
def test_header_click_sorts_in_chromium(built, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        driver.get((built / "leaderboard.html").as_uri())

        def models() -> list[str]:
            rows = driver.find_elements(By.CSS_SELECTOR, "table#main tbody tr")
            return [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows]

        assert driver.find_element(By.CSS_SELECTOR, "table#main")
        header = driver.find_element(By.CSS_SELECTOR, 'table#main th[data-key="model"]')
        header.click()
        first = models()
        header.click()
        second = models()
        assert sorted(first) in (first, first[::-1]) and second == first[::-1] and len(set(first)) > 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "leaderboard-sorted.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
