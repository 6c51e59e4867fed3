"""The example third-party package in examples/: installed as pip would install it, `gaia-bench
plugins` lists its backbone and its init; registered the way its entry point registers it, it runs
end to end; its README shows the whole package as it is."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.store import ResultsStore
from tests.helpers import cli, fake_distribution

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gaia-bench-tinynets"
META = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
ENTRY_POINTS = META["project"]["entry-points"]["gaia_bench"]


def test_installed_package_lists_its_backbone_and_init(tmp_path):
    (module,) = META["tool"]["setuptools"]["py-modules"]
    env = fake_distribution(tmp_path / "site", META["project"]["name"], META["project"]["version"],
                            {module: (EXAMPLE / f"{module}.py").read_text()}, ENTRY_POINTS)
    result = cli(["plugins"], env={**env, "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "tinynets" in line)
    assert "gaia-bench-tinynets" in row and "0.1.0" in row and "ok" in row
    assert "tinynet" in row and "orthogonal" in row and "backbone" in row and "init" in row


def test_example_plugin_end_to_end(host, register_plugin, tmp_path, monkeypatch):
    target = ENTRY_POINTS["tinynets"]
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module(target)
    record = register_plugin(module, "tinynets", META["project"]["name"], META["project"]["version"])
    assert record.ok
    host.registries()
    assert {("backbone", "tinynet"), ("init", "orthogonal"),
            ("adaptation", "nearest-centroid")} <= set(map(tuple, record.registered))
    store = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["run", "--model", "tinynet", "--init", "orthogonal", "--dataset", "digits-lt",
                                      "--shots", "10%", "--store", str(store), "--data-root", str(tmp_path / "data")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        rec = s.query()[0]
    assert rec["status"] == "done" and rec["config"]["model"] == "tinynet"
    assert rec["config"]["init"] == "orthogonal" and rec["config"]["weights_id"] == "orthogonal:relu-gain:seed=0"
    assert rec["environment"]["plugins"]["tinynets"] == "gaia-bench-tinynets==0.1.0"
    assert rec["metrics"]["top1"] > 20.0  # chance is 10%
    centroid = CliRunner().invoke(app, ["run", "--model", "tinynet", "--init", "orthogonal", "--dataset", "digits-lt",
                                        "--shots", "10%", "--adapt", "nearest-centroid", "--store", str(store),
                                        "--data-root", str(tmp_path / "data")], env={"COLUMNS": "200"})
    assert centroid.exit_code == 0, centroid.output
    with ResultsStore(store) as s:
        ncm = next(r for r in s.query() if r["config"]["adaptation"] == "nearest-centroid")
    assert ncm["status"] == "done" and ncm["n_train"] == rec["n_train"] == 53  # filled in by the core
    assert ncm["details"]["subset"] == rec["details"]["subset"] and ncm["metrics"]["top1"] > 20.0
    sys.modules.pop(target, None)


def test_readme_shows_the_whole_package():
    readme = (EXAMPLE / "README.md").read_text()
    blocks = {lang: body for lang, body in re.findall(r"```(toml|python)\n(.*?)```", readme, flags=re.S)}
    assert blocks["toml"].strip() == (EXAMPLE / "pyproject.toml").read_text().strip()
    assert blocks["python"].strip() == (EXAMPLE / "gaia_bench_tinynets.py").read_text().strip()
    assert sorted(p.name for p in EXAMPLE.iterdir() if p.is_file()) == ["README.md", "gaia_bench_tinynets.py", "pyproject.toml"]
