"""gaia-bench: a plugin-based benchmark harness for general vision models.

Plugins implement the hooks in :mod:`gaia_bench.hookspecs` with the :data:`hookimpl` marker and
register the specs defined in :mod:`gaia_bench.api`. Importing this package does not import torch.
"""

from __future__ import annotations

import importlib.metadata

from gaia_bench.api import (AdaptationResult, AdaptationSpec, BackboneCatalog, BackboneSpec, DatasetSpec, ExecutorSpec,
                            Head, HeadInput, InitSpec, MetricInfo, ReporterSpec, Sample, Samples, SuiteSpec, TaskSpec,
                            WeightsRef)
from gaia_bench.hookspecs import hookimpl

try:  # one version, pyproject's (pluggy's way), read from the installed metadata
    __version__ = importlib.metadata.version("gaia-bench")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = ["AdaptationResult", "AdaptationSpec", "BackboneCatalog", "BackboneSpec", "DatasetSpec", "ExecutorSpec",
           "Head", "HeadInput", "InitSpec", "MetricInfo", "ReporterSpec", "Sample", "Samples", "SuiteSpec", "TaskSpec",
           "WeightsRef", "__version__", "hookimpl"]
