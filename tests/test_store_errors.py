"""A malformed export, a damaged store and a store that cannot be written each get one line that
names the real cause and the fix, never a traceback (#20 §5-7)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str, input: bytes | None = None):
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200"})


def one_error(result, exit_code: int = 2) -> str:
    """The single error line a failed command printed, whitespace-normalised."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.stderr.split())
    assert text.count("error:") == 1 and "Traceback" not in text, text
    return text


def record(i: int, **changes) -> dict:
    """A record shaped like gaia_bench.runner.run_job's."""
    config = {"model": "m", "init": "random", "weights_id": "random", "adaptation": "linear-probe",
              "hyperparams": {"max_iter": 1000}, "dataset": "digits-lt", "dataset_version": "1",
              "task": "classification", "shots": "10%", "seed": i, "image_size": 32,
              "protocol": "gaia-bench-shots-v1"}
    rec = {"schema_version": 1, "job_id": f"{i:020x}", "status": "done", "config": config,
           "metrics": {"top1": 50.0 + i, "mean_per_class_acc": 40.0}, "primary_metric": "top1",
           "primary_value": 50.0 + i, "higher_is_better": True, "n_train": 10, "n_test": 20,
           "timings": {"total_s": 1.5}, "memory": {"peak_rss_mb": 100.0}, "details": {},
           "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00"}
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = rec
        for name in parents:
            target = target[name]
        target[leaf] = value
    return rec


def export(records: list) -> dict:
    return {"schema_version": 1, "kind": "gaia-bench-results", "results": records}


# ============================================================================ §5 results import
GOOD = [record(0), record(1)]


def _with(i: int, **changes) -> dict:
    records = copy.deepcopy(GOOD) + [record(2)]
    records[i] = record(i, **changes)
    return export(records)


@pytest.mark.parametrize("content,needles", [
    (_with(1, config="m/random"), ["results[1].config is a string (\"m/random\"), expected an object"]),
    ({**export(GOOD), "results": None}, ["results is null, expected an array of result records"]),
    (_with(2, job_id=["a", "b"]), ["results[2].job_id is an array", "expected a job id"]),
    (_with(0, job_id="../x"), ["results[0].job_id is a string (\"../x\")"]),
    (_with(1, status="ok"), ["results[1].status is a string (\"ok\"), expected \"done\" or \"failed\""]),
    (_with(1, config__seed="0"), ["results[1].config.seed is a string (\"0\"), expected an integer"]),
    (_with(2, config__dataset=7), ["results[2].config.dataset is a number (7), expected a string"]),
    (_with(0, metrics__top1="high"), ["results[0].metrics.top1 is a string (\"high\"), expected a number"]),
    (_with(0, metrics=[1, 2]), ["results[0].metrics is an array ([1, 2]), expected an object of numbers"]),
    (_with(1, timings=None), ["results[1].timings is null, expected an object of numbers"]),
    (_with(2, higher_is_better="yes"), ["results[2].higher_is_better is a string"]),
    (export([record(0), 5]), ["results[1] is a number (5), expected an object (one result record)"]),
    ({**export(GOOD), "schema_version": 9}, ["has results schema 9", "upgrade gaia-bench"]),
    ({"kind": "gaia-bench-results"}, ["has no 'results'"]),
    ([record(0), {"job_id": "ab", "status": "done"}], ["[1] has no 'config'"]),
    (_with(1, config={"model": "m"}), ["results[1].config has no 'init'"]),
])
def test_a_malformed_export_names_the_first_bad_record_and_imports_nothing(content, needles, tmp_path):
    path, db = tmp_path / "bad.json", tmp_path / "r.db"
    path.write_text(json.dumps(content))
    text = one_error(invoke("results", "import", str(path), "--store", str(db)))
    assert f"error: {path}" in text and ("nothing was imported" in text or "upgrade" in text)
    for needle in needles:
        assert needle in text, text
    assert not db.exists()  # checked before the store is even opened


@pytest.mark.parametrize("data,needle", [
    (b"[" * 100_000 + b"]" * 100_000, "nests its JSON too deeply"),
    (bytes(range(256)) * 8, "is not a text file (byte 128 is not UTF-8)"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "is not a text file"),
    (b'{"kind": "gaia-bench-results", "results": [', "is not JSON"),
])
def test_a_file_that_is_not_json_text_is_refused_in_one_line(data, needle, tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(data)
    text = one_error(invoke("results", "import", str(path), "--store", str(tmp_path / "r.db")))
    assert needle in text, text
    text = one_error(invoke("results", "import", "-", "--store", str(tmp_path / "r.db"), input=data))
    assert "error: stdin" in text and needle in text, text


def test_one_bad_file_among_several_imports_none_of_them(tmp_path):
    good, bad, db = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "r.db"
    good.write_text(json.dumps(export(GOOD)))
    bad.write_text(json.dumps(_with(2, config="x")))
    one_error(invoke("results", "import", str(good), str(bad), "--store", str(db)))
    assert not db.exists()
    result = invoke("results", "import", str(good), "--store", str(db))
    assert result.exit_code == 0 and "2 imported" in result.stdout
    with ResultsStore(db) as s:
        assert s.count() == 2


def test_the_published_results_files_pass_the_schema():
    from gaia_bench.cli.exports import read_export_file

    for path in sorted((ROOT / "leaderboards").glob("*/results.json")):
        records, doc = read_export_file(path)
        assert records and doc["kind"] == "gaia-bench-results"


def test_leaderboard_import_checks_the_same_schema(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_with(1, metrics__top1=None)))
    text = one_error(invoke("leaderboard", "--suite", "mini", "--import", str(path), "--out", str(tmp_path / "o")))
    assert "results[1].metrics.top1 is null, expected a number" in text, text


# ============================================================================ §6 a damaged store
def _store_with(db: Path, n: int, tmp_path: Path) -> None:
    """A real store of ``n`` records of about 3 KB each (one per page, as the mini suite's are)."""
    path = tmp_path / "many.json"
    path.write_text(json.dumps(export([record(i, details={"note": "x" * 3000}) for i in range(n)])))
    assert invoke("results", "import", str(path), "--store", str(db)).exit_code == 0


def _damage_a_page(db: Path) -> int:
    """Write garbage over a leaf page of the results table in the middle of the file; its number."""
    import random
    import sqlite3

    with sqlite3.connect(db) as conn:
        try:
            leaves = [p for (p,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'results' AND pagetype = 'leaf' ORDER BY pageno")]
        except sqlite3.Error:  # SQLite built without the dbstat table: the middle page is one of them
            leaves = [db.stat().st_size // 4096 // 2]
    page = leaves[len(leaves) // 2]
    with db.open("r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(random.Random(0).randbytes(4096))
    return page


def test_a_damaged_store_is_named_with_how_to_salvage_it_and_never_written(tmp_path):
    import hashlib

    db = tmp_path / "r.db"
    _store_with(db, 300, tmp_path)
    _damage_a_page(db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for args in (["results"], ["results", "export"], ["status"],
                 ["leaderboard", "--suite", "mini", "--out", str(tmp_path / "board")],
                 ["run", "--model", "test_resnet", "--shots", "10%", "--dataset", "digits-lt"],
                 ["results", "import", str(tmp_path / "many.json")]):
        text = one_error(invoke(*args, "--store", str(db)), exit_code=1)
        assert f"results store {db} is damaged (database disk image is malformed)" in text, (args, text)
        assert "never write to it" in text and "results export --salvage" in text and ".recover" in text
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "board").exists()

    saved, fresh = tmp_path / "saved.json", tmp_path / "fresh.db"
    salvaged = invoke("results", "export", "--salvage", "--store", str(db), "-o", str(saved))
    assert salvaged.exit_code == 0, salvaged.output
    kept = len(json.loads(saved.read_text())["results"])
    assert 290 <= kept < 300 and f"salvaged {kept} record(s) from {db}; {300 - kept} did not read" in salvaged.stderr
    assert invoke("results", "import", str(saved), "--store", str(fresh)).exit_code == 0
    with ResultsStore(fresh) as s:
        assert s.count() == kept and s.integrity_ok()


def test_a_file_that_is_no_database_is_not_called_damaged(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export(GOOD)))
    text = one_error(invoke("results", "--store", str(path)))
    assert f"{path} is not an SQLite database (not a results store" in text
    assert "never write to it" not in text  # not the damaged store's advice


# ============================================================================ §7 the real cause
def test_a_directory_given_as_store_is_named(tmp_path):
    text = one_error(invoke("results", "--store", str(tmp_path)))
    assert f"--store {tmp_path} is a directory" in text and f"--store {tmp_path / 'results.db'}" in text
    assert "damaged" not in text


def _unshare_available() -> bool:
    import shutil
    import subprocess

    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_available(), reason="needs `unshare` (a user and mount namespace) "
                                  "to mount a small or read-only tmpfs")


def in_own_mount(tmp_path: Path, script: str) -> list[str]:
    """Run ``script`` (sh) where $DIR is a fresh 512 KiB tmpfs seen by nothing else; ``$GB`` runs
    the CLI and prints its exit code and stderr, one '@@'-separated section per call."""
    import subprocess
    import sys

    mount = tmp_path / "mnt"
    mount.mkdir()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(export(GOOD)))
    gb = f"{sys.executable} -m gaia_bench"
    prologue = (f'DIR={mount}; GOOD={good}; gb() {{ COLUMNS=200 {gb} "$@" 2>&1 >/dev/null; echo "rc=$?@@"; }}; '
                f"mount -t tmpfs -o size=512k tmpfs $DIR && ")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", prologue + script],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [" ".join(part.split()) for part in done.stdout.split("@@")[:-1]]


@needs_mounts
def test_a_store_on_a_read_only_file_system_says_so(tmp_path):
    read, write = in_own_mount(tmp_path, "gb results import $GOOD --store $DIR/r.db >/dev/null && "
                                         "mount -o remount,ro $DIR && gb results --store $DIR/r.db && "
                                         "gb results import $GOOD --store $DIR/r.db")
    for text in (read, write):
        assert text.startswith("error: results store") and text.endswith("rc=1"), text
        assert "r.db is on a read-only file system" in text and "writable disk" in text and "damaged" not in text


@needs_mounts
def test_a_full_disk_says_so(tmp_path):
    existing, new = in_own_mount(tmp_path, "gb results import $GOOD --store $DIR/r.db >/dev/null && "
                                           "(dd if=/dev/zero of=$DIR/filler bs=4k 2>/dev/null; true) && "
                                           "gb results import $GOOD --store $DIR/r.db && gb results --store $DIR/new.db")
    for text, name in ((existing, "r.db"), (new, "new.db")):
        assert text.startswith("error: disk full: no space left in") and f"for results store {name}" in text, text
        assert "free some space" in text and "damaged" not in text and text.endswith("rc=1")
