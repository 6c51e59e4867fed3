"""``local``: runs the jobs one after another in this process (sharing loaded data and features)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from gaia_bench import hookimpl
from gaia_bench.api import ExecutorSpec


def execute(jobs: Iterable, run_job: Callable[[object], dict]) -> Iterator[dict]:
    for job in jobs:
        yield run_job(job)


LOCAL = ExecutorSpec(name="local", description="run jobs sequentially in this process", execute=execute)


@hookimpl
def register_executors(register):
    register(LOCAL)
