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

import pytest
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
    assert "90.00 ± 1.41 (n=2)" in md and "depth-a rmse ↓" in md and "(err_base - err_init) / err_base" in md
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
    changed = dict(RECORDS[0], metrics={"top1": 70.0}, primary_value=70.0)
    a = store_with(tmp_path / "a.db", RECORDS)
    b = store_with(tmp_path / "b.db", [RECORDS[1], changed])
    result = invoke("leaderboard", "--suite", "lbtest", "--store", str(a), "--store", str(b), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert f"job {RECORDS[0]['job_id']} has different results" in warning and "not an average" in warning
    doc = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    (conflict,) = doc["conflicts"]
    assert conflict["job_id"] == RECORDS[0]["job_id"] and conflict["kept"] == str(a)
    assert sorted(v["primary_value"] for v in conflict["versions"]) == [70.0, 80.0]
    assert doc["identical_duplicates"] == 1
    imagenet = next(r for r in doc["main"]["rows"] if r["init"] == "imagenet")
    assert imagenet["cells"]["cls-a:top1"]["values"] == [80.0]  # the first store's, never averaged with 70
    merged = merge_sources([("a", RECORDS), ("b", [RECORDS[1], changed])])
    assert len(merged.records) == len(RECORDS)


@pytest.mark.parametrize("args,needle", [
    (["--baseline", "clip"], "--baseline clip: no result has that init"),
    (["--shots", "20%"], "--shots 20%: no result at that setting"),
    (["--suite", "lbtset"], "unknown suite 'lbtset'"),
    (["--references", "nope"], "no reference set named 'nope'"),
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
    ("", [4], [("m1", "gaia"), ("m1", "imagenet"), ("m2", "gaia")]),  # click "cls-b": best (highest) first, blank last
    ("", [4, 4], [("m1", "imagenet"), ("m1", "gaia"), ("m2", "gaia")]),  # again: reversed, blank still last
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
