"""The example third-party package in examples/: its entry point is declared, and registered the
way the entry point would register it, it runs end to end."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.store import ResultsStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gaia-bench-tinynets"


def test_example_plugin_end_to_end(register_plugin, tmp_path, monkeypatch):
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["gaia_bench"]["tinynets"]
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module(target)
    assert register_plugin(module, "tinynets", meta["project"]["name"], meta["project"]["version"]).ok
    store = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["run", "--model", "tinynet", "--dataset", "digits-lt", "--shots", "10%", "--store", str(store),
                                      "--data-root", str(tmp_path / "data")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        rec = s.query()[0]
    assert rec["status"] == "done" and rec["config"]["model"] == "tinynet"
    assert rec["environment"]["plugins"]["tinynets"] == "gaia-bench-tinynets==0.1.0"
    assert rec["metrics"]["top1"] > 20.0  # chance is 10%
    sys.modules.pop(target, None)
