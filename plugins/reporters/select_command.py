"""`gaia-bench select`: the most accurate model for a dataset under a latency budget on this device
(GAIA's "your classes, a little data and your constraints in, the model that fits out"; SM-NAS's
latency measured on the target hardware and the speed/accuracy Pareto front). The logic without
I/O: :mod:`~gaia_bench.plugins.reporters.lib.selection`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from gaia_bench import hookimpl
from gaia_bench.cli.common import (DataRootOption, OfflineOption, StoreOption, default_store, feature_cache_dir,
                                   handle_errors, open_store, parse_overrides, parse_seeds, parse_shots)
from gaia_bench.console import console, err_console, notice
from gaia_bench.errors import UsageError

PLUGIN_ORDER = 650

FINETUNE = "finetune"


def _sizes(value: str | None) -> list[int]:
    sizes: list[int] = []
    for part in (p.strip() for p in (value or "").split(",") if p.strip()):
        if not part.isdigit() or not 8 <= int(part) <= 4096:
            raise UsageError(f"--input-sizes {part!r} is not a size in pixels", "e.g. --input-sizes 128,160,224")
        sizes.append(int(part))
    return list(dict.fromkeys(sizes))


def _plan(regs, candidates, adaptation: str, dataset: str, shot, seeds: list[int], context, overrides=None) -> dict:
    """The jobs scoring each candidate with ``adaptation``, as `gaia-bench run` plans them (same job
    ids), by candidate label; one plan per input size."""
    from gaia_bench.jobs import plan

    jobs: dict[str, list] = {}
    for size in dict.fromkeys(c.input_size for c in candidates):
        group = [c for c in candidates if c.input_size == size]
        planned = plan(regs, models=[c.model for c in group], inits=[group[0].init], adaptations=[adaptation],
                       datasets=[dataset], shots=[shot], seeds=seeds, image_size=size, notice=notice,
                       overrides=overrides, init_context=context)
        for job in planned:
            jobs.setdefault(f"{job.config.model} @{size}", []).append(job)
    return jobs


def _run(jobs: Sequence[Any], path: str, session_args: dict, progress, command: str) -> dict[str, dict | None]:
    """Run the jobs the store lacks through the runner (ordinary results: predictions, intervals),
    one after another in this process, sharing loaded data and features; every job's record."""
    from gaia_bench.runner import Session, run_job

    with open_store(path, write=True) as results:
        results.record_grid(command, [(j.job_id, j.config.model, j.config.init, j.config.adaptation, j.config.dataset,
                                       j.config.task, j.config.shots, j.config.seed) for j in jobs])
        stored = results.statuses(j.job_id for j in jobs)
        todo = [j for j in jobs if stored.get(j.job_id) != "done"]
        notice(f"{len(jobs)} {jobs[0].config.adaptation} job(s): {len(jobs) - len(todo)} already in {path}, "
               f"{len(todo)} to run")
        if todo:
            session = Session(progress=progress, **session_args)
            progress.start_jobs(len(todo))
            for job in todo:
                c = job.config
                progress.job_started(f"{c.model} @{c.image_size} / {c.adaptation} / seed {c.seed}")
                record = run_job(job, session)
                results.put(record)
                progress.job_finished()
                if record["status"] != "done":
                    progress.log(f"[red]job {record['job_id']} failed:[/] {record.get('error')}")
        return {j.job_id: results.get(j.job_id) for j in jobs}


def _profile(candidates, specs: dict, path: str, device: str, batch: int, repeats: int | None, warmup: int,
             reprofile: bool, progress) -> tuple[int, int]:
    """Give every candidate its profile: the store's, measured under the same conditions, or a new
    measurement saved there. Returns (measured, reused)."""
    import torch

    from gaia_bench.plugins.reporters.lib.profiles import (device_name, find_profile, load_profiles, profile_backbone,
                                                           save_profile)

    stored = [] if reprofile else load_profiles(path)
    name, threads = device_name(device), torch.get_num_threads()
    measured = 0
    for c in candidates:
        c.profile = find_profile(stored, model=c.model, input_size=c.input_size, batch_size=batch, device=device,
                                 device_name=name, threads=threads)
        if c.profile is None:
            progress.start(f"timing {c.label} px on {device}", None)
            c.profile = profile_backbone(specs[c.model], input_size=c.input_size, batch_size=batch, device=device,
                                         repeats=repeats, warmup=warmup)
            progress.finish()
            save_profile(path, c.profile)
            stored.append(c.profile)
            measured += 1
    return measured, len(candidates) - measured


def _table(headers: Sequence[str], rows: list[list[str]], title: str = ""):
    """A rich table 80 columns can hold: names left, numbers right, only the last column may wrap."""
    from rich import box
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title or None,
                  title_justify="left")
    last = len(headers) - 1
    for i, column in enumerate(table.columns):
        column.justify = "left" if i in (0, last) else "right"
        column.no_wrap = i < last
    for row in rows:
        table.add_row(*row)
    return table


@handle_errors
def select(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="the user's dataset (classification); see `gaia-bench datasets`")],
    budget_ms: Annotated[float, typer.Option("--budget-ms", help="latency budget: median ms per forward of a batch of --batch on --device")],
    shots: Annotated[str, typer.Option("--shots", "-s", help="the labelled data: '10%', '5/class', ...")] = "10%",
    device: Annotated[str, typer.Option("--device", help="the target device: auto, cpu, cuda, cuda:N, mps")] = "auto",
    candidates: Annotated[list[str], typer.Option("--candidates", help="backbones to try: names or patterns (repeat or "
                                                  "comma-separate; default: efficientnet, efficientnet-lite, mobilenetv3 "
                                                  "and resnet widths and depths whose weights are here)")] = [],  # noqa: B006
    input_sizes: Annotated[str | None, typer.Option("--input-sizes", help="input sizes to try, e.g. 128,160,224 "
                                                    "(default: each backbone's own)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="images per forward when timing")] = 1,
    init: Annotated[str, typer.Option("--init", help="initialization of every candidate; see `gaia-bench inits`")] = "imagenet",
    adapt: Annotated[str, typer.Option("--adapt", help="the cheap transfer score on cached features: knn or linear-probe")] = "knn",
    seed: Annotated[list[str], typer.Option("--seed", help="seed(s) of the subset: '0,1,2' or repeated")] = ["0"],  # noqa: B006
    finetune_top: Annotated[int, typer.Option("--finetune-top", help="fine-tune the best N within the budget and report them too")] = 0,
    finetune_hp: Annotated[list[str], typer.Option("--finetune-hp", help="finetune hyper-parameters, KEY=VALUE (as run's --hp): repeat or comma-separate")] = [],  # noqa: B006
    repeats: Annotated[int | None, typer.Option("--repeats", help="timed forwards per candidate (default: until the "
                                                "median's 95% interval is within ±2%, at most 1000 or 15 s)")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed forwards first")] = 5,
    reprofile: Annotated[bool, typer.Option("--reprofile", help="time every candidate again instead of reusing the store's profiles")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="also write the Pareto plot (select.png) and the report (select.json) here")] = None,
    store: StoreOption = None,
    data_root: DataRootOption = None,
    offline: OfflineOption = False,
) -> None:
    """Recommend the most accurate backbone × init × input size whose latency on this device meets the
    budget: every candidate timed here (cached in the store's profiles), scored by a cheap probe
    through the runner (ordinary results with intervals), the speed/accuracy Pareto front, and the
    runner-up when it is not distinguishable from the best (compare's paired test)."""
    from gaia_bench.api import InitContext
    from gaia_bench.cli.progress import RichProgress
    from gaia_bench.devices import resolve_device
    from gaia_bench.features import FeatureCache
    from gaia_bench.init_context import upstream_pool
    from gaia_bench.manager import get_host
    from gaia_bench.paths import data_root as resolve_data_root
    from gaia_bench.plugins.reporters.lib.resampling import StoredDraws
    from gaia_bench.plugins.reporters.lib.selection import (Candidate, fastest, fill_cells, finetune_rows, mark_front,
                                                            metric_of, plot, rank, recommendation_lines, report_json,
                                                            resolve_candidates, table_rows)
    from gaia_bench.predictions import predictions_dir

    if not budget_ms > 0:
        raise UsageError(f"--budget-ms {budget_ms:g} is not a latency", "give the budget in milliseconds, e.g. --budget-ms 20")
    for flag, value, low in (("--batch", batch, 1), ("--warmup", warmup, 0), ("--finetune-top", finetune_top, 0),
                             ("--repeats", 1 if repeats is None else repeats, 1)):
        if value < low:
            raise UsageError(f"{flag} {value} is too small", f"use {flag} {low} or more")
    (shot, *more) = parse_shots([shots])
    if more:
        raise UsageError(f"--shots {shots} names {len(more) + 1} settings", "give one, e.g. --shots 10%")
    seeds, sizes = parse_seeds(seed), _sizes(input_sizes)
    host = get_host()
    regs = host.registries()
    regs.datasets.get(dataset)
    init_spec, adaptation = regs.inits.get(init), regs.adaptations.get(adapt)
    if finetune_top:
        regs.adaptations.get(FINETUNE)
    specs, skipped = resolve_candidates(regs, candidates, init_spec)
    if skipped:
        notice(f"left out {len(skipped)} candidate(s) whose {init} weights are not on this machine: "
               f"{', '.join(skipped[:8])}{' …' if len(skipped) > 8 else ''} (name one in --candidates to use it anyway)")
    if not specs:
        raise UsageError(f"no candidate has {init} weights on this machine",
                         "name backbones with --candidates (e.g. test_resnet,test_efficientnet), or use --init random")
    resolved = resolve_device(device)
    root = resolve_data_root(data_root)
    path = store or str(default_store())
    pool = [Candidate(s.name, init_spec.name, size) for s in specs for size in (sizes or [s.input_size])]
    command = " ".join(["gaia-bench select", f"--dataset {dataset}", f"--budget-ms {budget_ms:g}", f"--shots {shot.label}",
                        f"--adapt {adaptation.name}", f"--init {init}"])
    with RichProgress() as progress:
        context = InitContext(upstream=upstream_pool(regs, None, None), data_root=root, progress=progress,
                              offline=offline)
        scoring = _plan(regs, pool, adaptation.name, dataset, shot, seeds, context)  # unknown names fail before timing
        measured, reused = _profile(pool, {s.name: s for s in specs}, path, resolved, batch, repeats, warmup,
                                    reprofile, progress)
        for c in pool:
            c.within_budget = c.latency <= budget_ms
        if not any(c.within_budget for c in pool):
            quick = fastest(pool)
            raise UsageError(f"no candidate meets --budget-ms {budget_ms:g} on {resolved}: the fastest, {quick.label} px, "
                             f"takes {quick.latency:.2f} ms per batch of {batch}",
                             f"raise the budget to --budget-ms {quick.latency * 1.05:.3g} or more, or try smaller "
                             "--candidates or --input-sizes")
        plugin_versions = {r.name: f"{r.distribution}=={r.version}" for r in host.plugins() if r.ok}
        session_args = dict(data_root=root, device=resolved, batch_size=64, workers=0,
                            feature_cache=FeatureCache(feature_cache_dir()), plugin_versions=plugin_versions,
                            predictions_dir=predictions_dir(path))
        for c in pool:
            c.job_ids = [j.job_id for j in scoring[c.label]]
        records = _run([j for c in pool for j in scoring[c.label]], path, session_args, progress, command)
        fill_cells(pool, records)
        mark_front(pool)
        draws = StoredDraws({i: path for i in records})
        draws.prepare([r for r in records.values() if r])
        ranked = rank(pool, "cell", draws)
        top, tuned = ranked[:finetune_top], []
        if top:
            pairs = [p.strip() for v in finetune_hp for p in re.split(r",(?![^\[]*\])", v) if p.strip()]
            overrides = parse_overrides(pairs, "--finetune-hp", "max_iters=300")
            tuning = _plan(regs, top, FINETUNE, dataset, shot, seeds, context, overrides)
            tuned_records = _run([j for c in top for j in tuning[c.label]], path, session_args, progress,
                                 command + f" --finetune-top {finetune_top}")
            fill_cells(top, tuned_records, "finetuned", lambda c: [j.job_id for j in tuning[c.label]])
            draws = StoredDraws({**{i: path for i in records}, **{i: path for i in tuned_records}})
            draws.prepare([r for r in tuned_records.values() if r])
            tuned = rank(top, "finetuned", draws)

    column = metric_of(pool)
    metric = column.metric if column else "score"
    where = pool[0].profile
    console.print(f"select on {dataset} ({shot.label}, {adaptation.name}, init {init}, seed{'s' * (len(seeds) > 1)} "
                  f"{','.join(map(str, seeds))}) · budget {budget_ms:g} ms per batch of {batch} on {resolved} "
                  f"({where['device_name']}, {where['threads']} threads, {where.get('precision', 'float32')})",
                  highlight=False)
    console.print(_table(("model", "px", "ms", "GFLOPs", "M params", metric, ""), table_rows(pool)))
    lines = recommendation_lines(ranked, "cell", metric, batch)
    for line in lines:
        console.print(line, highlight=False)
    if top:
        console.print(_table(("model", "px", "ms", f"{adaptation.name} {metric}", f"{FINETUNE} {metric}", ""),
                             finetune_rows(tuned), f"the best {len(top)} within the budget, fine-tuned"))
        tuned_lines = recommendation_lines(tuned, "finetuned", metric, batch, "after fine-tuning")
        lines += tuned_lines
        for line in tuned_lines:
            console.print(line, highlight=False)
    notes = [f"ms: median latency of a forward of a batch of {batch} ({measured} timed now, {reused} reused from the "
             "store; --reprofile times them again); GFLOPs per image (FlopCounterMode, a multiply-add is 2).",
             f"{metric}: mean over seeds ± half its 95% CI; best: most accurate within the budget; ≈best: not "
             "distinguishable from it (compare's paired test, Holm over the candidates within the budget); "
             "★: on the speed/accuracy Pareto front of all candidates; over: over the budget."]
    unsteady = [c.label for c in pool if c.profile.get("latency_stable") is False]
    if unsteady:
        notes.append(f"{len(unsteady)} latencies (e.g. {unsteady[0]} px) did not settle within ±2% before the cap: "
                     "a busy machine; time them again on a quiet one with --reprofile.")
    for note in notes:
        console.print(f"[dim]{note}[/]", highlight=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        settings = {"dataset": dataset, "shots": shot.label, "adaptation": adaptation.name, "init": init, "seeds": seeds,
                    "budget_ms": budget_ms, "batch": batch, "device": resolved, "store": str(path)}
        (out / "select.json").write_text(report_json(pool, settings, lines))
        image = plot(pool, budget_ms, metric, f"{dataset} ({shot.label}, {adaptation.name}): {metric} vs latency on {resolved}")
        if image:
            (out / "select.png").write_bytes(image)
        notice(f"wrote {out / 'select.json'}" + (f" and {out / 'select.png'}" if image else ""))
    failed = [c for c in pool if c.errors]
    if failed:
        err_console.print(f"[yellow]{len(failed)} candidate(s) had failed jobs[/] ({failed[0].label}: "
                          f"{failed[0].errors[0]}); `gaia-bench status` lists them", highlight=False, soft_wrap=True)
    if not ranked:
        raise typer.Exit(1)


@hookimpl
def register_commands(cli):
    cli.command()(select)
