"""`gaia-bench run`: plan the grid, skip what the store has, run the rest, show the results."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Sequence

import typer

from gaia_bench.cli import app
from gaia_bench.cli.common import (DataRootOption, OfflineOption, StoreOption, feature_cache_dir, handle_errors,
                                   open_store, parse_overrides, parse_seeds, parse_shots)
from gaia_bench.cli.progress import RichProgress
from gaia_bench.console import console, err_console, notice
from gaia_bench.devices import resolve_device
from gaia_bench.errors import UsageError
from gaia_bench.shots import SHOTS_HELP
from gaia_bench.cli.summary import results_table


MAX_PARALLEL_HELP = (
    "cells run at once. --executor local: 1 (the default) runs them one after another in this process, "
    "sharing loaded data, the backbone and the feature cache (fastest for small cells); N > 1 runs them in a "
    "pool of N worker processes. --executor submitit: jobs queued or running at once (a Slurm array's parallelism)"
)


GPUS_PER_JOB_HELP = (
    "N > 1: a job that trains (finetune on classification) runs data-parallel in N processes (torch DDP): one per "
    "GPU with nccl on CUDA, or N gloo processes with --device cpu (for testing); its global batch stays the same, so "
    "its result is the same cell (same job id). Other jobs run in one process. --executor submitit also asks Slurm "
    "for N GPUs per job"
)


def _check_processes(device: str, processes: int) -> None:
    """Fail early, in the driver, when this machine cannot give each job ``processes`` ranks
    (jobs that run elsewhere check where they run)."""
    if processes <= 1:
        return
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"--gpus-per-job {processes} needs --device cuda or cpu "
                         f"({device} has no multi-process backend)",
                         "drop --gpus-per-job, or use --device cuda (nccl) or --device cpu (gloo, for testing)")
    if kind == "cuda":
        import torch

        usable = torch.cuda.device_count() - int(index or 0)
        if processes > usable:
            raise UsageError(f"--gpus-per-job {processes}, but only {usable} CUDA device(s) are usable from {device}",
                             f"use --gpus-per-job {max(usable, 1)} or fewer, or --device cpu for gloo processes")


def _option_values(executor_spec, regs, items: list[str], flags: dict[str, tuple[str, object]]) -> dict:
    """Executor-specific options from --executor-option NAME=VALUE and the dedicated flags, checked
    against what the executor declares."""

    values: dict[str, object] = {}
    given: dict[str, str] = {}
    for item in items:
        try:
            parsed = parse_overrides([item])
        except UsageError:
            raise UsageError(f"--executor-option {item!r} is not NAME=VALUE", "e.g. --executor-option timeout_min=120") from None
        for name, value in parsed.items():
            values[name.replace("-", "_")] = value
            given[name.replace("-", "_")] = f"--executor-option {name}"
    for name, (flag, value) in flags.items():
        if value is not None:
            values[name] = value
            given[name] = flag
    for name, flag in given.items():
        if name in executor_spec.options:
            continue
        takers = [n for n, spec in regs.executors.items() if name in spec.options]
        accepted = ", ".join(sorted(executor_spec.options)) or "no options"
        hint = (f"use --executor {' or '.join(takers)}, which takes it, or drop it" if takers
                else f"executor '{executor_spec.name}' takes: {accepted}")
        raise UsageError(f"{flag} does not apply to executor '{executor_spec.name}'", hint)
    return values


# One KEY=VALUE of --init-hp: up to a comma outside [...] and outside a JSON string ("a,b").
INIT_HP_PAIR = re.compile(r'(?:"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^,])+')


def _parse_init_hp(values: list[str]) -> dict:
    """``--init-hp`` values (repeated, comma-separated ``KEY=VALUE``, commas inside [] or a JSON
    string kept; VALUE read as JSON) to a dict: ``["steps=20,image_size=32"]`` -> ``{"steps": 20,
    "image_size": 32}``, ``['path="/runs/a,b/step-1.pt"']`` -> ``{"path": "/runs/a,b/step-1.pt"}``."""

    pairs = [p.strip() for value in values for p in INIT_HP_PAIR.findall(value) if p.strip()]
    return parse_overrides(pairs, "--init-hp", "steps=400,image_size=64")


def _check_device_syntax(device: str) -> str:
    kind, _, index = device.partition(":")
    if device != "auto" and (kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit())):
        raise UsageError(f"unknown --device '{device}'", "use auto, cpu, cuda, cuda:N or mps")
    return device


def _grid_command(model, init, adapt, dataset, suite, shots, seed, image_size, hp, upstream=None, init_hp=(),
                  split=None, precision="fp32") -> str:
    import shlex

    parts = ["gaia-bench", "run"]
    for flag, values in (("--model", model), ("--init", init), ("--adapt", adapt), ("--dataset", dataset),
                         ("--suite", [suite] if suite else []), ("--shots", shots), ("--seed", seed),
                         ("--image-size", [image_size] if image_size else []), ("--hp", hp),
                         ("--upstream", [upstream] if upstream else []), ("--init-hp", init_hp),
                         ("--split", [split] if split else []),
                         ("--precision", [precision] if precision != "fp32" else [])):
        for value in values:
            parts += [flag, str(value)]
    return shlex.join(parts)


def work_dir_for(store_path) -> Path:
    """The directory next to a store where its jobs keep logs and per-job result files."""
    path = Path(os.path.abspath(store_path))
    return path.with_name(path.stem + ".jobs")


def result_files_dir(work_dir: str | Path) -> Path:
    """Where jobs running outside the driver write their records (see :mod:`gaia_bench.store`)."""
    return Path(work_dir) / "results"


@app.command()
@handle_errors
def run(
    model: Annotated[list[str], typer.Option("--model", "-m", help="backbone(s): repeat or comma-separate; see `gaia-bench models`")],
    shots: Annotated[list[str], typer.Option("--shots", "-s", help=f"{SHOTS_HELP} (default 10%, or the --split "
                                             "manifest's)")] = [],  # noqa: B006
    init: Annotated[list[str], typer.Option("--init", help="initialization(s) (default: the backbone's own); see `gaia-bench inits`")] = [],  # noqa: B006
    adapt: Annotated[list[str], typer.Option("--adapt", help="adaptation(s); see `gaia-bench adaptations`")] = ["linear-probe"],  # noqa: B006
    seed: Annotated[list[str], typer.Option("--seed", help="seed(s) of the subset and the training: '0,1,2' "
                                            "or repeated")] = ["0"],  # noqa: B006
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help="dataset(s); see `gaia-bench datasets`")] = [],  # noqa: B006
    suite: Annotated[str | None, typer.Option("--suite", help="a named suite of datasets (default: mini)")] = None,
    store: StoreOption = None,
    data_root: DataRootOption = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward pass")] = 64,
    workers: Annotated[int, typer.Option("--workers", help="data-loading worker processes (0 = in process)")] = 0,
    image_size: Annotated[int | None, typer.Option("--image-size", help="input size in pixels (default: the backbone's)")] = None,
    executor: Annotated[str, typer.Option("--executor", help="how jobs run: local (this machine) or submitit (Slurm; "
                                          "submitit's local executor where there is no Slurm); see `gaia-bench executors`")] = "local",
    max_parallel: Annotated[int, typer.Option("--max-parallel", help=MAX_PARALLEL_HELP)] = 1,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", help="Slurm partition of the jobs (--executor submitit)")] = None,
    gpus_per_job: Annotated[int | None, typer.Option("--gpus-per-job", help=GPUS_PER_JOB_HELP)] = None,
    executor_option: Annotated[list[str], typer.Option("--executor-option", "-X", help="an executor-specific option, NAME=VALUE "
                                                       "(e.g. timeout_min=120, retries=1, cpus_per_job=8); see `gaia-bench executors`")] = [],  # noqa: B006
    force: Annotated[bool, typer.Option("--force", help="rerun jobs already finished in the store")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="rerun jobs that failed in an earlier run (skipped by default)")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the feature cache")] = False,
    resamples: Annotated[int, typer.Option("--resamples", min=0, help="bootstrap resamples of each result's "
                                           "interval over test items (0: none)")] = 1000,
    hp: Annotated[list[str], typer.Option("--hp", help="override an adaptation hyper-parameter, KEY=VALUE (JSON value); "
                                          "repeat for several; see `gaia-bench adaptations`")] = [],  # noqa: B006
    upstream: Annotated[str | None, typer.Option("--upstream", help="the upstream pool the inits pretrain on: a suite "
                                                 "(its pool) or a pool (default: the suite's pool, mini's for --dataset)")] = None,
    init_hp: Annotated[list[str], typer.Option("--init-hp", help="an init's pretraining hyper-parameter, KEY=VALUE "
                                               "(JSON value): repeat or comma-separate; see `gaia-bench inits`")] = [],  # noqa: B006
    on_bad_sample: Annotated[str, typer.Option("--on-bad-sample", help="an unreadable (corrupt, truncated) image: "
                                               "fail its job, naming the file, or skip it (left out of the split, "
                                               "reported, and counted in the result record)")] = "fail",
    split: Annotated[Path | None, typer.Option("--split", help="a split manifest (`gaia-bench splits export`): train "
                                               "on exactly its subset of its dataset (the default --dataset) "
                                               "instead of drawing one; the held-out part is still drawn from "
                                               "--seed")] = None,
    offline: OfflineOption = False,
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16 or fp16: autocast of the backbone's "
                                           "forward passes (features, training); not fp32: part of the cell, "
                                           "its own job id. fp16 is for GPUs; bf16 runs on CPUs too")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="the backbone's weights in channels-last "
                                                "memory layout, so its convolutions run channels-last (faster "
                                                "on recent GPUs; the same cell)")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the backbone's forward for feature "
                                           "extraction (the same cell; said and run without it where "
                                           "compiling fails)")] = False,
) -> None:
    """Run model × init × adaptation × dataset × shots × seed and store one result per job.

    Running the same command again resumes: finished jobs are skipped, and so are failed ones
    unless --retry-failed is given. `gaia-bench status` shows a grid's progress."""
    from gaia_bench.api import InitContext
    from gaia_bench.init_context import upstream_pool
    from gaia_bench.jobs import plan
    from gaia_bench.paths import data_root as resolve_data_root
    from gaia_bench.manager import get_host
    from gaia_bench.cli.splits import check_split, read_manifest
    from gaia_bench.cli.common import check_precision

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} is out of range", "use 1 or more")
    if workers < 0:
        raise UsageError(f"--workers {workers} is out of range", "use 0 or more")
    if max_parallel < 1:
        raise UsageError(f"--max-parallel {max_parallel} is out of range", "use 1 or more")
    if on_bad_sample not in ("fail", "skip"):
        raise UsageError(f"--on-bad-sample {on_bad_sample!r} is not a choice", "use fail or skip")
    manifest = read_manifest(split) if split is not None else None
    if manifest is not None:
        shots = shots or [manifest.shots]
        dataset = dataset or ([] if suite else [manifest.dataset])
    shots = shots or ["10%"]
    shot_specs = parse_shots(shots)
    seed = parse_seeds(seed)
    host = get_host()
    regs = host.registries()
    executor_spec = regs.executors.get(executor)
    if gpus_per_job is not None and gpus_per_job < 0:
        raise UsageError(f"--gpus-per-job {gpus_per_job} is out of range", "use 0 or more")
    processes = max(gpus_per_job or 1, 1)  # data-parallel processes per training job
    option_values = _option_values(executor_spec, regs, executor_option, {
        "slurm_partition": ("--slurm-partition", slurm_partition),
        "gpus_per_job": ("--gpus-per-job", gpus_per_job if "gpus_per_job" in executor_spec.options else None)})
    if max_parallel > 1 and not executor_spec.parallel:
        raise UsageError(f"executor '{executor}' runs one job at a time", "drop --max-parallel, or choose another --executor")
    resolved_device = _check_device_syntax(device) if executor_spec.remote else resolve_device(device)
    if not executor_spec.remote:
        _check_processes(resolved_device, processes)
    check_precision(precision, resolved_device)  # "auto" (resolved where each job runs) passes here
    datasets, from_suite = dataset_names_for(regs, dataset, suite)
    if from_suite:
        datasets = _present(regs, datasets, resolve_data_root(data_root), suite or "mini")
    if manifest is not None:
        check_split(manifest, [regs.datasets.get(d) for d in datasets], shot_specs)
    progress = RichProgress()
    pool = upstream_pool(regs, upstream, suite)
    init_overrides = _parse_init_hp(init_hp)
    from rich.live import Live

    with Live(progress.progress, console=err_console, transient=True):  # planning may download published weights
        jobs = plan(regs, models=model, inits=init, adaptations=adapt, datasets=datasets, shots=shot_specs,
                    seeds=seed, image_size=image_size, skip_unsupported=from_suite, notice=notice,
                    overrides=parse_overrides(hp), init_overrides=init_overrides, split=manifest, precision=precision,
                    init_context=InitContext(upstream=pool, data_root=resolve_data_root(data_root), progress=progress,
                                             offline=offline))
    if not jobs:
        raise UsageError(f"nothing to run: no dataset of suite '{suite or 'mini'}' has a task that "
                         f"{', '.join(adapt)} supports", "choose --adapt or --dataset; see `gaia-bench adaptations`")
    single = sorted({f"{j.config.adaptation} on {j.config.task}" for j in jobs
                     if j.config.task not in j.adaptation.data_parallel_tasks})
    if processes > 1 and single:
        notice(f"--gpus-per-job {processes}: not data-parallel, one process per job: {', '.join(single)}")

    from gaia_bench.api import ExecutionOptions
    from gaia_bench.runner import Cell, SessionSettings, failure_record
    from gaia_bench.cli.progress import GridMonitor
    from gaia_bench.predictions import predictions_dir

    with open_store(store, write=True) as results:
        work_dir = work_dir_for(results.path)
        spool = result_files_dir(work_dir)
        merged = results.merge_result_files(spool)
        if merged:
            notice(f"merged {merged} result(s) written by jobs after their run stopped (from {spool})")
        job_ids = [j.job_id for j in jobs]
        configs = [j.config for j in jobs]
        results.record_grid(_grid_command(model, init, adapt, dataset, suite, shots, seed, image_size, hp, upstream, init_hp,
                                          split and os.path.abspath(split), precision),
                            [(i, x.model, x.init, x.adaptation, x.dataset, x.task, x.shots, x.seed)
                             for i, x in zip(job_ids, configs)])
        stored = {} if force else results.statuses(job_ids)
        n_done = sum(s == "done" for s in stored.values())
        n_failed = sum(s == "failed" for s in stored.values())
        skip = {"done", "failed"} - ({"failed"} if retry_failed else set())
        todo = [j for j, i in zip(jobs, job_ids) if stored.get(i) not in skip]
        where = f"{resolved_device} (resolved where each job runs)" if executor_spec.remote and device == "auto" else resolved_device
        failed_note = ""
        if n_failed:
            failed_note = (f"{n_failed} failed earlier ({'retried' if retry_failed else 'skipped; --retry-failed reruns them'}); ")
        notice(f"{len(jobs)} job(s) planned; {n_done} already finished in {results.path} "
               f"(skipped{'' if not n_done else '; --force reruns them'}); {failed_note}{len(todo)} to run on {where}")
        plugin_versions = {r.name: f"{r.distribution}=={r.version}" for r in host.plugins() if r.ok}
        settings = SessionSettings(data_root=os.path.abspath(resolve_data_root(data_root)), device=resolved_device,
                                   batch_size=batch_size, workers=workers,
                                   feature_cache=None if no_cache else os.path.abspath(feature_cache_dir()),
                                   plugin_versions=plugin_versions, on_bad_sample=on_bad_sample,
                                   processes_per_job=processes, upstream=pool.name if pool else None,
                                   init_overrides=init_overrides, resamples=resamples,
                                   predictions_dir=str(predictions_dir(results.path)),
                                   channels_last=channels_last, compile=compile_)
        failed = 0
        interrupted = False
        monitor = GridMonitor(((j.job_id, j.config.dataset) for j in todo), progress,
                              f"{len(todo)} cell(s) · executor {executor}")
        progress.start_jobs(len(todo))
        shared: list = []  # the in-process session, made on first use (an executor running jobs elsewhere never imports torch here)

        def run_one(job):
            from gaia_bench.runner import Session, run_job

            if not shared:
                from gaia_bench.features import FeatureCache

                shared.append(Session(data_root=resolve_data_root(data_root), device=resolve_device(resolved_device),
                                      batch_size=batch_size, workers=workers,
                                      feature_cache=None if no_cache else FeatureCache(feature_cache_dir()),
                                      plugin_versions=plugin_versions, progress=progress,
                                      on_bad_sample=on_bad_sample, processes_per_job=processes,
                                      predictions_dir=predictions_dir(results.path), resamples=resamples,
                                      channels_last=channels_last, compile=compile_))
            c = job.config
            monitor.set(job.job_id, "running")
            progress.job_started(f"{c.model} / {c.init} / {c.adaptation} / {c.dataset} / {c.shots} / seed {c.seed}"
                                 + (f" / {c.precision}" if c.precision else ""))
            return run_job(job, shared[0])

        options = ExecutionOptions(
            max_parallel=max_parallel, values=option_values, work_dir=work_dir,
            cell=lambda job: Cell(job.config, settings, str(spool), model=f"{job.backbone.source}:{job.backbone.name}",
                                  split=job.split),
            cell_failed=lambda job, error, extra: failure_record(job.config, error, extra, job=job),
            on_state=monitor.set, notice=lambda message: progress.log(f"[cyan]›[/] {message}"))
        with monitor if todo else contextlib.nullcontext():
            if todo and (max_parallel > 1 or executor_spec.remote):
                _prepare_datasets(resolve_data_root(data_root), todo, progress)  # once, here: parallel jobs
                # must not prepare one dataset at the same time
            try:
                for record in executor_spec.execute(todo, run_one, options):
                    results.put(record)
                    monitor.finished(record)
                    progress.job_finished()
                    if record["status"] != "done":
                        failed += 1
                        log = f" (log: {record['log']})" if record.get("log") else ""
                        progress.log(f"[red]job {record['job_id']} failed:[/] {record.get('error')}{log}")
            except KeyboardInterrupt:
                interrupted = True
        results.merge_result_files(spool)  # records already put: only removes the files
        records = [r for i in job_ids if (r := results.get(i)) is not None]
        if records:
            console.print(results_table(records, console.width))
        if interrupted:
            n_finished = sum(r["status"] == "done" for r in records)
            err_console.print(f"[yellow]interrupted:[/] {n_finished} finished job(s) are saved in {results.path}; "
                              "run the same command again to resume")
            raise typer.Exit(130)
        if failed:
            err_console.print(f"[red]{failed} job(s) failed[/] (recorded in the store with their errors; "
                              "`gaia-bench status` lists them; rerun with --retry-failed to retry them)")
            raise typer.Exit(1)
        if n_failed and not retry_failed:
            err_console.print(f"[yellow]{n_failed} job(s) of this grid failed in an earlier run and were skipped[/] "
                              "(`gaia-bench status` shows why; --retry-failed reruns them)")


def dataset_names_for(registries: Any, datasets: Sequence[str], suite: str | None) -> tuple[list[str], bool]:
    """(names, whether they came from a suite): the --suite's datasets (default suite 'mini'), or the
    --dataset names. Both given: the named datasets, each of which must be in the suite (the suite
    still names the upstream pool)."""
    from gaia_bench.jobs import split_names

    names = split_names(datasets)
    if names and suite:
        members = registries.suites.get(suite).datasets
        outside = [n for n in names if n not in members]
        if outside:
            raise UsageError(f"--dataset {', '.join(outside)} is not in --suite {suite}",
                             f"drop --suite, or name datasets of it: {', '.join(members)}")
    return (names, False) if names else (list(registries.suites.get(suite or "mini").datasets), True)


def _present(regs, names: list[str], root: Path, suite: str) -> list[str]:
    """The suite's datasets that can run here: a dataset whose files are not under the data root
    (and that no plugin can make offline) is skipped with the command that prepares it."""
    from gaia_bench.errors import DataError
    from gaia_bench.jobs import data_dir

    present, absent = [], []
    for name in names:
        if name not in regs.datasets:
            notice(f"skipping {name}: no installed plugin provides it (see `gaia-bench plugins`)")
            continue
        spec = regs.datasets.get(name)
        target = data_dir(root, spec)
        if spec.prepare is None and not target.exists():
            command = f"gaia-bench datasets prepare {name}{' --download' if spec.download else ''}"
            notice(f"skipping {name}: not present at {target} (run `{command}`)")
            absent.append(name)
            continue
        present.append(name)
    if not present:
        raise DataError(f"no dataset of suite '{suite}' is present under {root}",
                        f"prepare one (e.g. `gaia-bench datasets prepare {absent[0] if absent else suite}`), "
                        "or point --data-root at where they are")
    if absent:
        notice(f"suite {suite}: running {len(present)} present dataset(s), {len(absent)} skipped as absent")
    return present


def _prepare_datasets(root: Path, jobs, progress) -> None:
    """Materialize the jobs' missing datasets that their plugins can make, as a job would
    (atomically, with the completion marker), once here before parallel jobs start."""
    from gaia_bench.errors import GaiaBenchError
    from gaia_bench.jobs import prepared_data_dir

    for dataset in {job.dataset.name: job.dataset for job in jobs}.values():
        if dataset.prepare is not None:
            with contextlib.suppress(GaiaBenchError):  # each job fails with the message
                prepared_data_dir(root, dataset, progress)
