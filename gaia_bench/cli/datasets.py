"""`gaia-bench datasets`: list, prepare, verify, bundle and unbundle; show percentage-shot statistics."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer
from rich.table import Table

from gaia_bench.cli import app
from gaia_bench.cli.common import DataRootOption, OfflineOption, handle_errors, parse_shots
from gaia_bench.console import console, err_console, notice
from gaia_bench.errors import UsageError
from gaia_bench.shots import SHOTS_HELP

datasets_app = typer.Typer(help="List, prepare and verify datasets; show subset statistics.")
app.add_typer(datasets_app, name="datasets")


def _expand(regs, name: str) -> list:
    """A dataset name, or a suite name standing for its datasets and its upstream pool."""
    if name in regs.suites and name not in regs.datasets:
        suite = regs.suites.get(name)
        names = list(suite.datasets) + ([suite.upstream] if suite.upstream else [])
        return [regs.datasets.get(d) for d in names]
    return [regs.datasets.get(name)]


@datasets_app.callback(invoke_without_command=True)
@handle_errors
def datasets(ctx: typer.Context, data_root: DataRootOption = None) -> None:
    """List datasets with task, classes, split sizes, metric and whether each is present."""
    if ctx.invoked_subcommand is not None:
        return
    from gaia_bench.jobs import data_dir
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries

    regs = get_registries()
    root = resolve(data_root)
    table = Table("dataset", "task", "classes", "splits", "primary metric", "present", title=f"data root: {root}")
    for _, spec in regs.datasets.items():
        task = regs.tasks.get(spec.task) if spec.task in regs.tasks else None
        metric = spec.primary_metric or (task.primary_metric if task else "-")
        splits = ", ".join(f"{k} {v}" for k, v in spec.splits.items()) or "varies"
        present = "yes" if data_dir(root, spec).exists() else "no"
        table.add_row(spec.name, spec.task, str(spec.num_classes or "-"), splits, metric, present)
    console.print(table)
    for _, suite in regs.suites.items():
        upstream = f" (upstream pool: {suite.upstream})" if suite.upstream else ""
        console.print(f"suite [bold]{suite.name}[/]: {', '.join(suite.datasets)}{upstream} — {suite.description}")


@datasets_app.command()
@handle_errors
def prepare(
    name: Annotated[str, typer.Argument(help="dataset or suite name")],
    data_root: DataRootOption = None,
    force: Annotated[bool, typer.Option("--force", help="delete and re-create what is there")] = False,
    download: Annotated[bool, typer.Option("--download", help="fetch the public archives (checksums checked, "
                                           "extracted safely) where the dataset has a public download")] = False,
    gvb_lists: Annotated[str | None, typer.Option("--gvb-lists", help="a GV-B dataset folder holding "
                                                  "train_meta.list / test_meta.list and their images: link it in")] = None,
    offline: OfflineOption = False,
) -> None:
    """Materialize a dataset (or every dataset of a suite) under the data root: generate it, fetch
    its public archives (--download), link GV-B's exported lists (--gvb-lists), or print the manual
    steps and the expected tree where access needs a login or a licence."""
    from pathlib import Path

    from gaia_bench.jobs import data_dir, prepare_dataset
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries

    root = resolve(data_root)
    specs = _expand(get_registries(), name)
    if gvb_lists is not None:
        if len(specs) != 1:
            raise UsageError("--gvb-lists takes one dataset, not a suite", "name the dataset the lists belong to")
        _link_gvb_lists(specs[0].name, data_dir(root, specs[0]), Path(gvb_lists).expanduser(), force)
        return
    for spec in specs:
        target = data_dir(root, spec)
        if spec.prepare is None:
            if download and spec.download is not None:
                if target.exists() and force:
                    target.unlink() if target.is_symlink() else shutil.rmtree(target)
                target.mkdir(parents=True, exist_ok=True)
                spec.download(target)
                notice(f"{spec.name}: laid out at {target} (`gaia-bench datasets verify {spec.name}` checks it)")
            elif target.exists():
                notice(f"{spec.name}: present at {target} (`gaia-bench datasets verify {spec.name}` checks it)")
            else:
                why = "has no public download" if download else "is not present"
                hint = spec.prepare_hint.replace("<data root>", str(root))  # the steps, with this machine's path
                err_console.print(f"[yellow]{spec.name}[/] {why} ({target}):\n{hint}", highlight=False, soft_wrap=True)
            continue
        if target.exists() and not force:
            notice(f"{spec.name}: already at {target} (--force re-creates it)")
            continue
        if target.exists():
            shutil.rmtree(target)
        with err_console.status(f"preparing {spec.name} …"):
            prepare_dataset(spec, target)
        notice(f"{spec.name}: prepared at {target}")


def _link_gvb_lists(name: str, target, source, force: bool) -> None:
    """Make ``target`` a link to a folder in GV-B's export layout (lists + images)."""
    missing = [n for n in ("train_meta.list", "test_meta.list") if not (source / n).is_file()]
    if missing:
        raise UsageError(f"{source} has no {' or '.join(missing)}",
                         "point --gvb-lists at the GV-B dataset folder holding train_meta.list and test_meta.list")
    if target.exists() or target.is_symlink():
        if not force:
            raise UsageError(f"{target} already exists", "add --force to replace it with the link")
        target.unlink() if target.is_symlink() else shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)
    notice(f"{name}: {target} -> {source.resolve()} (GV-B lists; if train_meta.list is GV-B's own 10% list, "
           f"run with --shots 100% to use exactly it). `gaia-bench datasets verify {name}` checks it.")


@datasets_app.command()
@handle_errors
def verify(
    name: Annotated[str, typer.Argument(help="dataset or suite name")],
    data_root: DataRootOption = None,
) -> None:
    """Check files, counts and checksums; one line per problem, with the fix."""
    from gaia_bench.jobs import data_dir
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries

    root = resolve(data_root)
    bad = 0
    for spec in _expand(get_registries(), name):
        problems = spec.verify(data_dir(root, spec))
        if problems:
            bad += 1
            for line in problems:
                console.print(f"[red]{spec.name}:[/] {line}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]{spec.name}: ok[/]")
    if bad:
        raise typer.Exit(1)


@datasets_app.command()
@handle_errors
def stats(
    name: Annotated[str, typer.Argument(help="dataset name")],
    shots: Annotated[list[str], typer.Option("--shots", "-s", help=SHOTS_HELP)] = ["10%"],  # noqa: B006
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data_root: DataRootOption = None,
) -> None:
    """Per-class sample counts (avg / min / max) of the training subset, as GV-B tabulates them."""
    from gaia_bench.jobs import data_dir, prepared_data_dir
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries
    from gaia_bench.shots import sample_subset, subset_stats

    specs = parse_shots(shots)
    spec = get_registries().datasets.get(name)
    target = data_dir(resolve(data_root), spec)
    if spec.prepare is not None:
        prepared_data_dir(resolve(data_root), spec)
    train = spec.load(target, spec.train_split)
    sets = train.label_sets()
    keys = [s.key for s in train.samples]
    n_classes = len(train.classes) or None
    unit = "per-class" if train.single_label else "images per class"
    table = Table("shots", "samples", "classes", f"{unit} avg", "min", "max", title=f"{spec.name} / {spec.train_split}, seed {seed}")

    def add(label: str, indices: list[int]) -> None:
        st = subset_stats([sets[i] for i in indices], n_classes)
        table.add_row(label, str(st.n_samples), str(st.n_classes), f"{st.per_class_avg:.1f}", str(st.per_class_min),
                      str(st.per_class_max))

    add("full", list(range(len(train))))
    for shot in specs:
        add(shot.label, sample_subset(sets, keys, shot, seed, train.single_label))
    console.print(table)


@datasets_app.command()
@handle_errors
def bundle(
    name: Annotated[str, typer.Argument(help="dataset or suite name")],
    out: Annotated[str, typer.Option("--out", "-o", help="the bundle: FILE.tar, .tar.gz, .tgz, .tar.xz or .tar.bz2")],
    data_root: DataRootOption = None,
) -> None:
    """Pack prepared datasets into one file, with every file's sha256, to carry to a machine
    without internet (`gaia-bench datasets unbundle FILE` there)."""
    from pathlib import Path

    from gaia_bench import __version__
    from gaia_bench.cli.bundles import BundledDataset, compression_of, write_bundle
    from gaia_bench.cli.progress import RichProgress
    from gaia_bench.errors import DataError
    from gaia_bench.jobs import data_dir, prepared_data_dir
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries

    root, target = resolve(data_root), Path(out).expanduser()
    compression_of(target)
    chosen = []
    for spec in _expand(get_registries(), name):
        path = prepared_data_dir(root, spec) if spec.prepare is not None else data_dir(root, spec)
        if not path.exists():
            raise DataError(f"dataset '{spec.name}' is not under {path}: nothing to bundle",
                            spec.prepare_hint.replace("<data root>", str(root)) or
                            f"run `gaia-bench datasets prepare {spec.name}` first")
        if problems := spec.verify(path):
            raise DataError(f"dataset '{spec.name}' at {path} does not verify: {problems[0]}",
                            f"fix it first (`gaia-bench datasets verify {spec.name}`), then bundle it")
        chosen.append(BundledDataset(spec.name, spec.version, spec.directory, path))
    with RichProgress() as progress:
        manifest = write_bundle(chosen, target, __version__, lambda total: progress.start(f"bundling {name}", total))
        progress.finish()
    files = sum(len(d["files"]) for d in manifest["datasets"])
    console.print(f"{target}: {len(chosen)} dataset(s) ({', '.join(d.name for d in chosen)}), {files} files, "
                  f"{target.stat().st_size / 1e6:.1f} MB; on the other machine: "
                  f"gaia-bench datasets unbundle {target.name}", highlight=False, soft_wrap=True)


@datasets_app.command()
@handle_errors
def unbundle(
    bundle_file: Annotated[str, typer.Argument(metavar="BUNDLE", help="a file written by `gaia-bench datasets bundle`")],
    data_root: DataRootOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace datasets already under the data root")] = False,
) -> None:
    """Unpack a dataset bundle under the data root: every file checked against the bundle's
    sha256 list before anything is put in place, then each dataset verified."""
    import os
    from pathlib import Path

    from gaia_bench.cli.bundles import move_into_place, note_bundle, read_bundle
    from gaia_bench.cli.progress import RichProgress
    from gaia_bench.errors import DataError
    from gaia_bench.jobs import data_dir
    from gaia_bench.paths import data_root as resolve
    from gaia_bench.manager import get_registries

    source, root = Path(bundle_file).expanduser(), resolve(data_root)
    if not source.is_file():
        raise UsageError(f"no bundle at {source}", "give the path of a file written by `gaia-bench datasets bundle`")
    staged: dict[str, Path] = {}

    def staging(directory: str) -> Path:
        return staged.setdefault(directory, root / f".{directory}.unbundling-{os.getpid()}")

    registries = get_registries()
    try:
        with RichProgress() as progress:
            manifest = read_bundle(source, staging, progress.start(f"unbundling {source.name}", source.stat().st_size))
            progress.finish()
        specs = []
        for entry in manifest["datasets"]:
            spec = registries.datasets.get(entry["name"])
            if (spec.version, spec.directory) != (entry["version"], entry["directory"]):
                raise DataError(f"the bundle holds {entry['name']} version {entry['version']} in "
                                f"'{entry['directory']}'; this gaia-bench expects version {spec.version} in "
                                f"'{spec.directory}'", "bundle it with the same gaia-bench version as here")
            specs.append(spec)
        if not force and (there := [data_dir(root, s) for s in specs if data_dir(root, s).exists()]):
            raise UsageError(f"{there[0]} already exists", "add --force to replace it with the bundle's copy")
        for spec in specs:
            note_bundle(staging(spec.directory), source, manifest)
            move_into_place(staging(spec.directory), data_dir(root, spec), force)
    finally:
        for path in staged.values():
            shutil.rmtree(path, ignore_errors=True)
    bad = 0
    for spec in specs:
        problems = spec.verify(data_dir(root, spec))
        bad += bool(problems)
        state = f"[red]does not verify: {problems[0]}[/]" if problems else "[green]ok[/]"
        console.print(f"{spec.name}: unbundled to {data_dir(root, spec)}, {state}", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)
