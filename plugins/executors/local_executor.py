"""``local``: runs the jobs on this machine.

With ``--max-parallel 1`` (the default) one after another in this process, sharing the loaded
data, the backbone and the feature cache: the fastest for small cells. With ``--max-parallel N``
(N > 1) in a pool of N worker processes, each started fresh (``spawn``: safe with CUDA and with
the driver's threads); a worker re-plans each cell it gets from its config (see
:class:`gaia_bench.runner.Cell`) and keeps its loaded data for the next cell. A worker that dies (killed,
out of memory) breaks the pool: the cells that were running then are rerun one at a time in a
new pool, so only the one that kills its worker again is recorded as failed.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Sequence

from gaia_bench import hookimpl
from gaia_bench.api import ExecutionOptions, ExecutorSpec

PLUGIN_ORDER = 500


def execute(jobs: Sequence[Any], run_job: Callable[[Any], dict], options: ExecutionOptions) -> Iterator[dict]:
    jobs = list(jobs)
    if options.max_parallel <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    yield from _pool(jobs, options)


def _ignore_sigint() -> None:
    """Pool workers ignore Ctrl-C: the driver stops them (and reports) itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: Any) -> None:
    for process in list(getattr(pool, "_processes", {}).values()):  # no public way before Python 3.14
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _pool(jobs: list, options: ExecutionOptions) -> Iterator[dict]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    width = min(options.max_parallel, len(jobs))
    queue = deque(jobs)
    suspects: deque = deque()  # running when a worker died: rerun alone
    in_flight: dict = {}  # future -> (job, ran alone)
    pool = None
    try:
        while queue or suspects or in_flight:
            if pool is None:
                pool = ProcessPoolExecutor(max_workers=width, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_ignore_sigint)
            if suspects:
                if not in_flight:
                    job = suspects.popleft()
                    in_flight[pool.submit(options.cell(job))] = (job, True)
                    options.on_state(job.job_id, "running")
            else:
                while queue and len(in_flight) < width:
                    job = queue.popleft()
                    in_flight[pool.submit(options.cell(job))] = (job, False)
                    options.on_state(job.job_id, "running")
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                job, alone = in_flight.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    if alone:
                        yield options.cell_failed(job, "its worker process died while running it (killed, or out of "
                                                       "memory?); it also died when run alone", {})
                    else:
                        suspects.append(job)
                        options.on_state(job.job_id, "pending")
                except Exception as exc:  # noqa: BLE001 - e.g. a record that cannot be pickled back
                    yield options.cell_failed(job, f"{type(exc).__name__}: {exc}", {})
            if broken:
                for future, (job, alone) in list(in_flight.items()):
                    suspects.append(job)
                    options.on_state(job.job_id, "pending")
                in_flight.clear()
                _stop(pool)
                pool = None
                options.notice(f"[yellow]a worker process died;[/] rerunning the {len(suspects)} cell(s) it may have "
                               "been running one at a time")
    finally:
        if pool is not None:
            _stop(pool)


LOCAL = ExecutorSpec(
    name="local",
    description="run jobs on this machine: one after another in this process, or with --max-parallel N in a "
                "pool of N worker processes",
    execute=execute,
    parallel=True,
)


@hookimpl
def register_executors(register):
    register(LOCAL)
