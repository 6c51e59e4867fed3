"""Suites declared as TOML files in ``suites/`` beside this module (name, description, datasets)."""

from __future__ import annotations

import tomllib
from importlib import resources

from gaia_bench import hookimpl
from gaia_bench.api import SuiteSpec

PLUGIN_ORDER = 900


def load_suites() -> list[SuiteSpec]:
    suites = []
    for entry in sorted(resources.files("gaia_bench.tasks.datasets").joinpath("suites").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            doc = tomllib.loads(entry.read_text())
            suites.append(SuiteSpec(doc["name"], doc.get("description", ""), tuple(doc["datasets"]), doc.get("upstream")))
    return suites


def load_protocols(name: str) -> dict[str, dict]:
    """The ``[protocol.<dataset>]`` tables of suite ``name`` (task, splits, metrics, primary metric):
    what the suite declares; tests check the registered dataset plugins against it."""
    for entry in resources.files("gaia_bench.tasks.datasets").joinpath("suites").iterdir():
        if entry.name.endswith(".toml"):
            doc = tomllib.loads(entry.read_text())
            if doc["name"] == name:
                return dict(doc.get("protocol", {}))
    raise KeyError(name)


@hookimpl
def register_suites(register):
    for suite in load_suites():
        register(suite)
