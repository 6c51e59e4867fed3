"""How `gaia-bench run` builds each init's :class:`~gaia_bench.api.InitContext`: which upstream pool
(``--upstream``, else the suite's declared pool, else the ``mini`` suite's) and which pretraining
hyper-parameters (``--init-hp KEY=VALUE``, applied to every planned init that has the key)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gaia_bench.api import DatasetSpec, InitSpec
from gaia_bench.errors import UsageError

DEFAULT_SUITE = "mini"


def upstream_pool(registries: Any, upstream: str | None, suite: str | None) -> DatasetSpec | None:
    """The pool the inits pretrain on: ``upstream`` when given (an unknown name is an error), else
    the suite's declared pool, else the default suite's; None when neither declares one that is
    registered (an init that needs a pool then says to pass ``--upstream``)."""
    if upstream:
        return registries.upstream_pool(upstream)
    for name in (suite, DEFAULT_SUITE):
        pool = registries.suites.get(name).upstream if name and name in registries.suites else None
        if pool and pool in registries.datasets:
            return registries.datasets.get(pool)
    return None


def init_hyperparams(init: InitSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The init's pretraining hyper-parameters: its method's defaults with the overrides of the keys
    it has, cast to their defaults' types (empty for an init without a pretraining method)."""
    from gaia_bench.overrides import apply_overrides

    if init.pretrain is None:
        return {}
    return apply_overrides(dict(init.pretrain.hyperparams), dict(overrides))


def check_used(inits: Sequence[InitSpec], overrides: Mapping[str, Any]) -> None:
    """An ``--init-hp`` key that no planned init takes is an error naming those they take."""
    known = {k for init in inits if init.pretrain is not None for k in init.pretrain.hyperparams}
    if unknown := sorted(set(overrides) - known):
        names = ", ".join(init.name for init in inits)
        raise UsageError(f"--init-hp {', '.join(unknown)}: no planned init ({names}) has such a pretraining hyper-parameter",
                         f"they take: {', '.join(sorted(known))}" if known else
                         "these inits do not pretrain; see `gaia-bench inits`")
