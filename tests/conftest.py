"""Test isolation: every test session gets its own cache home; tests never touch the network
or the developer's installed plugins (entry points are loaded only where a test asks for it)."""

from __future__ import annotations

import os
import tempfile

import pytest

_HOME = tempfile.mkdtemp(prefix="gaia-bench-tests-")
os.environ["GAIA_BENCH_HOME"] = _HOME
os.environ["GAIA_BENCH_NO_ENTRYPOINTS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (gaia_bench/cli/__init__.py)
os.environ.pop("GAIA_BENCH_STORE", None)
os.environ.pop("GAIA_BENCH_DATA", None)
os.environ.pop("GAIA_BENCH_FEATURES", None)


@pytest.fixture(scope="session")
def shared_home() -> str:
    return _HOME


@pytest.fixture()
def host():
    from gaia_bench.manager import get_host

    return get_host()


@pytest.fixture()
def register_plugin(host):
    """Register plugin objects for one test, and always unregister them afterwards."""
    names: list[str] = []

    def register(plugin: object, name: str, distribution: str = "test-plugin", version: str = "0.0.1"):
        names.append(name)
        return host.add_plugin(plugin, name, distribution, version)

    yield register
    for name in names:
        host.remove_plugin(name)

