"""`gaia-bench datasets`: listing, deterministic preparation, verification and subset statistics."""

from __future__ import annotations

from typer.testing import CliRunner

from gaia_bench.cli import app
from tests.helpers import tree_digest

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def test_prepare_is_deterministic_and_verifies(tmp_path):
    for name in ("a", "b"):
        result = runner.invoke(app, ["datasets", "prepare", "digits-lt", "--data-root", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert tree_digest(tmp_path / "a" / "digits-lt") == tree_digest(tmp_path / "b" / "digits-lt")
    ok = runner.invoke(app, ["datasets", "verify", "digits-lt", "--data-root", str(tmp_path / "a")])
    assert ok.exit_code == 0 and "digits-lt: ok" in ok.output
    listing = runner.invoke(app, ["datasets", "--data-root", str(tmp_path / "a")], env=WIDE).output
    row = next(l for l in listing.splitlines() if "digits-lt" in l and "classification" in l)
    assert "train 514" in row and "test 539" in row and "top1" in row and "yes" in row


def test_verify_names_each_problem(tmp_path):
    runner.invoke(app, ["datasets", "prepare", "digits-lt", "--data-root", str(tmp_path)])
    root = tmp_path / "digits-lt"
    (root / "train" / "0" / sorted(p.name for p in (root / "train" / "0").iterdir())[0]).unlink()
    (root / "stray.txt").write_text("x")
    lines = (root / "test_meta.list").read_text().splitlines()
    (root / "test_meta.list").write_text("\n".join(lines[:-1]) + "\n")
    result = runner.invoke(app, ["datasets", "verify", "digits-lt", "--data-root", str(tmp_path)], env=WIDE)
    out = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "missing file" in out and "unexpected file" in out and "test split has 538 images, expected 539" in out and "test_meta.list has sha256" in out
    assert "gaia-bench datasets prepare digits-lt --force" in out
    missing = runner.invoke(app, ["datasets", "verify", "digits-lt", "--data-root", str(tmp_path / "nowhere")], env=WIDE)
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_stats_show_per_class_counts(tmp_path):
    result = runner.invoke(app, ["datasets", "stats", "digits-lt", "--shots", "1%,10%,100%", "--data-root", str(tmp_path)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = {l.split("│")[1].strip(): [c.strip() for c in l.split("│")[2:-1]] for l in result.output.splitlines()
            if l.startswith("│")}
    assert rows["full"] == ["514", "10", "51.4", "13", "125"]
    assert rows["10%"] == ["53", "10", "5.3", "1", "13"]
    assert rows["1%"][3] == "1" and rows["100%"] == rows["full"]


def test_a_half_prepared_folder_is_redone_not_trusted(tmp_path):
    """A prepare killed half-way (no completion marker, files missing) must not poison the next
    run: the folder is moved aside and prepared again; a complete one without a marker (an older
    version's) is kept."""
    from gaia_bench.jobs import PREPARED_MARKER, prepared_data_dir
    from gaia_bench.manager import get_registries

    spec = get_registries().datasets.get("digits-lt")
    root = tmp_path / "data"
    path = prepared_data_dir(root, spec)
    assert (path / PREPARED_MARKER).exists() and not spec.verify(path)
    assert not list(root.glob(".*preparing*"))  # prepared beside, renamed into place
    (path / PREPARED_MARKER).unlink()
    assert prepared_data_dir(root, spec) == path and (path / PREPARED_MARKER).exists()  # complete: kept
    (path / PREPARED_MARKER).unlink()
    (path / "train_meta.list").unlink()  # what a kill -9 during prepare left behind
    assert prepared_data_dir(root, spec) == path
    assert not spec.verify(path) and (path / "train_meta.list").exists()
    assert (root / "digits-lt.incomplete").is_dir()  # kept for a look, out of the way
