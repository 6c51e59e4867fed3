"""``submitit``: one job per cell through submitit (https://github.com/facebookincubator/submitit).

On a Slurm cluster (``srun`` on PATH) the cells are submitted as job arrays (``array_size`` cells
each, one array after the other) whose parallelism is ``--max-parallel``; elsewhere submitit's local executor runs each cell as a subprocess of this
machine, ``--max-parallel`` at a time, and the run says so. Each job rebuilds the plugins and the
session from the cell's description, re-plans its one job (checking the job id) and writes its
record as a result file (see :class:`gaia_bench.runner.Cell` and :mod:`gaia_bench.store`); the driver polls
the jobs' states for the live table and stores each record as its job finishes.

A job that dies without a result (killed, preempted, out of memory, node failure) is resubmitted up
to ``retries`` times, then recorded as failed with its log path; a cell whose adaptation raised an
error is recorded as failed at once (rerunning it would fail the same way). Logs:
``<store>.jobs/submitit/<job id>/``. submitit is imported only when jobs are submitted.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gaia_bench import hookimpl
from gaia_bench.api import ExecutionOptions, ExecutorSpec
from gaia_bench.errors import UsageError

PLUGIN_ORDER = 510

# name -> (type, default, help)
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "slurm_partition": (str, None, "Slurm partition (--slurm-partition)"),
    "gpus_per_job": (int, 0, "GPUs per job (--gpus-per-job; default 0)"),
    "cpus_per_job": (int, None, "CPU cores per job"),
    "mem_gb": (float, None, "memory per job in GB"),
    "timeout_min": (int, 720, "minutes before a job is stopped (default 720)"),
    "retries": (int, 1, "resubmissions of a cell whose job died without a result (default 1)"),
    "cluster": (str, None, "slurm or local (default: slurm where srun is on PATH, else local)"),
    "slurm_account": (str, None, "Slurm account"),
    "slurm_qos": (str, None, "Slurm QOS"),
    "slurm_constraint": (str, None, "Slurm node constraint"),
    "array_size": (int, 1000, "most cells per Slurm job array (the cluster's MaxArraySize; default 1000)"),
    "poll_s": (float, None, "seconds between job-state polls (default 0.5 locally, 10 on Slurm)"),
}

_RUNNING = {"RUNNING", "COMPLETING"}
_PENDING = {"PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED", "RESIZING"}


def _values(given: dict) -> dict:
    out = {}
    for name, (kind, default, _help) in OPTIONS.items():
        value = given.get(name, default)
        if value is not None and kind is not str:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (kind is int and not float(value).is_integer()) or value < 0:
                raise UsageError(f"submitit option {name}={value!r} is not a {'whole ' if kind is int else ''}number >= 0",
                                 f"e.g. --executor-option {name}={1 if kind is int else 0.5}")
            value = kind(value)
        elif value is not None:
            value = str(value)
        out[name] = value
    if out["array_size"] < 1:
        raise UsageError(f"submitit option array_size={out['array_size']} is out of range", "use array_size=1 or more")
    if out["cluster"] not in (None, "slurm", "local"):
        raise UsageError(f"submitit option cluster={out['cluster']!r} is unknown", "use cluster=slurm or cluster=local")
    return out


def _make_executor(opts: dict, options: ExecutionOptions) -> tuple[Any, str]:
    import submitit

    have_slurm = shutil.which("srun") is not None
    cluster = opts["cluster"] or ("slurm" if have_slurm else "local")
    if cluster == "slurm" and not have_slurm:
        raise UsageError("--executor-option cluster=slurm, but Slurm's srun is not on PATH here",
                         "run gaia-bench on a Slurm login node, or drop cluster=slurm to run the jobs on this machine")
    if cluster == "local":
        ignored = [n for n in ("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint") if opts[n]]
        options.notice(("no Slurm here (srun is not on PATH): " if not opts["cluster"] else "")
                       + f"submitit's local executor runs the jobs on this machine, {options.max_parallel} at a time"
                       + (f"; ignoring {', '.join(ignored)}" if ignored else ""))
    folder = (options.work_dir or Path.cwd()) / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict[str, Any] = {"name": "gaia-bench", "timeout_min": opts["timeout_min"], "stderr_to_stdout": True,
                              "gpus_per_node": opts["gpus_per_job"], "cpus_per_task": opts["cpus_per_job"],
                              "mem_gb": opts["mem_gb"]}
    if cluster == "slurm":
        params.update(slurm_array_parallelism=options.max_parallel, slurm_partition=opts["slurm_partition"],
                      slurm_account=opts["slurm_account"], slurm_qos=opts["slurm_qos"],
                      slurm_constraint=opts["slurm_constraint"])
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor, cluster


def execute(jobs: Sequence[Any], run_job: Callable[[Any], dict], options: ExecutionOptions) -> Iterator[dict]:
    opts = _values(dict(options.values))
    jobs = list(jobs)
    if not jobs:
        return
    from submitit.core.utils import FailedJobError, UncompletedJobError

    executor, cluster = _make_executor(opts, options)
    poll_s = opts["poll_s"] if opts["poll_s"] is not None else (0.5 if cluster == "local" else 10.0)
    queue: deque = deque((job, 1) for job in jobs)  # (cell, attempt): first attempts
    retries: deque = deque()  # resubmissions, which go first
    in_flight: dict[Any, tuple[Any, int]] = {}  # submitit job -> (cell, attempt)

    def submit(batch: list[tuple[Any, int]]) -> None:
        if not batch:
            return
        if len(batch) == 1:
            handles = [executor.submit(options.cell(batch[0][0]))]
        else:
            with executor.batch():
                handles = [executor.submit(options.cell(job)) for job, _ in batch]
        for handle, (job, attempt) in zip(handles, batch):
            if cluster == "local":
                handle._results_timeout_s = 0  # a local result file needs no wait for a shared filesystem
            in_flight[handle] = (job, attempt)
            options.on_state(job.job_id, "pending")

    def outcome(handle: Any, job: Any, attempt: int) -> dict | None:
        """The cell's record, or None when it is resubmitted."""
        info = {"log": str(handle.paths.stdout),
                "execution": {"executor": "submitit", "cluster": cluster, "job": str(handle.job_id), "attempt": attempt}}
        try:
            record = handle.result()
        except FailedJobError as exc:  # the function raised: rerunning would fail the same way
            return options.cell_failed(job, f"its job raised an error (see the log): {_last_line(str(exc))}",
                                       {**info, "traceback": _tail(str(exc))})
        except UncompletedJobError as exc:  # the process died without a result
            if attempt <= opts["retries"]:
                options.notice(f"[yellow]job {handle.job_id} of cell {job.job_id} died without a result;[/] "
                               f"resubmitting it (attempt {attempt + 1} of {opts['retries'] + 1}); log: {info['log']}")
                retries.append((job, attempt + 1))
                return None
            return options.cell_failed(
                job, f"its job died without a result ({cluster} job {handle.job_id}, {attempt} attempt(s): killed, "
                     "out of memory or timed out?)", {**info, "traceback": _tail(str(exc))})
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable result file: the grid goes on
            return options.cell_failed(job, f"cannot read its job's result: {type(exc).__name__}: {exc}", info)
        return {**record, **info}

    try:
        while queue or retries or in_flight:
            if cluster == "slurm":
                # Slurm limits each array to --max-parallel running tasks: the next array goes in when
                # the previous one is done, so arrays never add up past it; resubmissions go at once.
                while retries:
                    submit([retries.popleft()])
                if queue and not any(attempt == 1 for _, attempt in in_flight.values()):
                    submit([queue.popleft() for _ in range(min(len(queue), opts["array_size"]))])
            else:  # submitit's local executor starts whatever it gets: keep --max-parallel in flight
                free = options.max_parallel - len(in_flight)
                batch = [(retries or queue).popleft() for _ in range(min(free, len(retries) + len(queue)))]
                if batch:
                    submit(batch)
            progressed = False
            for handle, (job, attempt) in list(in_flight.items()):
                if handle.done():
                    del in_flight[handle]
                    progressed = True
                    record = outcome(handle, job, attempt)
                    if record is not None:
                        yield record
                    continue
                state = str(handle.state).split()[0].upper()
                if state in _RUNNING:
                    options.on_state(job.job_id, "running")
                elif state in _PENDING:
                    options.on_state(job.job_id, "pending")
            if not progressed and in_flight:
                time.sleep(poll_s)
    finally:
        for handle in in_flight:  # interrupted: stop what is still queued or running
            try:
                if cluster != "local" or not _kill_local(handle):
                    handle.cancel(check=False)
            except Exception:  # noqa: BLE001
                pass
        try:  # submitit's local controller makes the unexpanded folder (…/%j) too
            Path(executor.folder).rmdir()
        except OSError:
            pass


def _kill_local(handle: Any) -> bool:
    """Stop a local job at once: its task processes, then its controller (SIGKILL: submitit's own
    cancel interrupts the controller, which prints a traceback onto this run's stderr). False
    where the task processes cannot be found (no /proc)."""
    import os
    import signal

    pid = int(handle.job_id)
    try:
        tasks = [int(t) for t in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return False
    for task in tasks:
        try:
            os.kill(task, signal.SIGKILL)
        except OSError:
            pass
    os.kill(pid, signal.SIGKILL)
    process = getattr(handle, "_process", None)
    if process is not None:
        process.wait(timeout=10)
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----")]
    return next((line for line in reversed(lines) if "Error" in line or "Exception" in line), lines[-1] if lines else "")[:300]


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


SUBMITIT = ExecutorSpec(
    name="submitit",
    description="one job per cell through submitit: Slurm job arrays on a cluster, submitit's local executor elsewhere",
    execute=execute,
    options={name: help_ for name, (_kind, _default, help_) in OPTIONS.items()},
    parallel=True,
    remote=True,
)


@hookimpl
def register_executors(register):
    register(SUBMITIT)
