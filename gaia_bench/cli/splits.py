"""`gaia-bench splits`: write a job's training subset as a manifest file, and check one against the data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Mapping, Sequence

import typer

from gaia_bench.cli import app
from gaia_bench.cli.common import DataRootOption, handle_errors
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError
from gaia_bench.shots import SHOTS_HELP
from gaia_bench.api import Samples
from gaia_bench.splits import KIND, SplitManifest, class_counts, group_name, ids_sha256

splits_app = typer.Typer(help="Training subsets as files: export a manifest, verify one (`gaia-bench run --split FILE` "
                              "trains on one).", no_args_is_help=True)
app.add_typer(splits_app, name="splits")


def _train_split(name: str, data_root: str | None):
    """(dataset spec, its training split as on disk), prepared first when a plugin can make it."""
    from gaia_bench.jobs import prepared_data_dir
    from gaia_bench.manager import get_registries
    from gaia_bench.paths import data_root as resolve

    spec = get_registries().datasets.get(name)
    return spec, spec.load(prepared_data_dir(resolve(data_root), spec), spec.train_split)


def build_manifest(dataset: str, version: str, split: str, shots: str, seed: int, train: Samples,
                   indices: Sequence[int]) -> dict:
    """The manifest document of the subset ``indices`` of ``train``."""
    sets = train.label_sets()
    keys = [train.samples[i].key for i in indices]
    if any(sets[i] for i in indices):
        groups: dict[str, list[str]] = {}
        for i, key in zip(indices, keys):
            groups.setdefault(group_name(sets[i], train.classes), []).append(key)
        ids: dict | list = {g: sorted(groups[g]) for g in sorted(groups)}
        per_class = class_counts((sets[i] for i in indices), train.classes)
    else:
        ids, per_class = sorted(keys), {}
    return {"kind": KIND, "dataset": dataset, "dataset_version": version, "split": split, "shots": shots,
            "seed": seed, "n_samples": len(keys), "sha256": ids_sha256(keys), "per_class": per_class, "ids": ids}


def data_problems(m: SplitManifest, train: Samples, version: str, limit: int = 20) -> list[str]:
    """What disagrees with the data on disk: ids absent from the split, ids under another class or
    label set than their labels, per-class counts, the dataset's version."""
    problems = [] if m.dataset_version == version else [
        f"made from {m.dataset} version {m.dataset_version}, the installed reader is version {version}"]
    where = {s.key: i for i, s in enumerate(train.samples)}
    sets = train.label_sets()
    listed = m.ids.items() if isinstance(m.ids, Mapping) else [(None, m.ids)]
    missing = [k for _, group in listed for k in group if k not in where]
    problems += [f"id {k!r} is not in {m.dataset}:{m.split} on disk" for k in missing[:limit]]
    moved = [(k, g, group_name(sets[where[k]], train.classes)) for g, group in listed for k in group if k in where]
    moved = [(k, g, actual) for k, g, actual in moved if g is not None and g != actual]
    problems += [f"id {k!r} is listed under {g!r}, its labels on disk say {actual!r}" for k, g, actual in moved[:limit]]
    if isinstance(m.ids, Mapping):
        counts = class_counts((sets[where[k]] for k in m.keys() if k in where), train.classes)
        for name in sorted(set(counts) | set(m.per_class)):
            if m.per_class.get(name) != counts.get(name):
                problems.append(f"class {name!r}: the manifest counts {m.per_class.get(name)}, "
                                f"its ids' labels on disk give {counts.get(name)}")
    if len(missing) > limit or len(moved) > limit:
        problems.append(f"… {max(len(missing) - limit, 0) + max(len(moved) - limit, 0)} more id problems not shown")
    return problems


@splits_app.command("export")
@handle_errors
def export(
    dataset: Annotated[str, typer.Argument(help="dataset name; see `gaia-bench datasets`")],
    shots: Annotated[list[str], typer.Option("--shots", "-s", help=f"one value: {SHOTS_HELP}")] = ["10%"],  # noqa: B006
    seed: Annotated[list[str], typer.Option("--seed", help="one seed: the subset `gaia-bench run --seed N` draws")] = ["0"],  # noqa: B006
    data_root: DataRootOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default: stdout)")] = None,
) -> None:
    """Write the subset a run with these --shots and --seed trains on: its sample ids per class,
    per-class counts and the sha256 of the sorted ids."""
    from gaia_bench.cli.run import parse_seeds
    from gaia_bench.protocol import subset_positions
    from gaia_bench.shots import parse_shots

    (shot, *more_shots), (seed_value, *more_seeds) = parse_shots(shots), parse_seeds(seed)
    if more_shots or more_seeds:
        flag = "--shots" if more_shots else "--seed"
        raise UsageError(f"splits export writes one subset, but {flag} has several values",
                         f"give one {flag} value and export once per value")
    spec, train = _train_split(dataset, data_root)
    doc = build_manifest(spec.name, spec.version, spec.train_split, shot.label, seed_value, train,
                         subset_positions(train, shot, seed_value))
    text = json.dumps(doc, indent=1) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    notice(f"wrote {out}: {doc['n_samples']} of {len(train)} {spec.name}:{spec.train_split} samples, "
           f"sha256 {doc['sha256'][:12]}… (`gaia-bench run --split {out}` trains on them)")


@splits_app.command("verify")
@handle_errors
def verify(
    file: Annotated[Path, typer.Argument(help="a manifest written by `gaia-bench splits export`")],
    data_root: DataRootOption = None,
) -> None:
    """Check a manifest against the data on disk: every id in the training split, listed under its
    labels, per-class counts, n_samples and the sha256 of the ids. One line per problem."""
    from gaia_bench.splits import manifest_problems, read_manifest

    manifest = read_manifest(file)
    spec, train = _train_split(manifest.dataset, data_root)
    problems = manifest_problems(manifest)
    if manifest.split != spec.train_split:
        problems.append(f"it lists {manifest.split}, but {spec.name} trains on {spec.train_split}")
    else:
        problems += data_problems(manifest, train, spec.version)
    for line in problems:
        console.print(f"[red]{file}:[/] {line}", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{len(problems)} problem(s); export the manifest again from the data it should describe "
                      f"(`gaia-bench splits export {manifest.dataset} --shots {manifest.shots} --seed "
                      f"{manifest.seed} --out FILE`)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]{file}: ok[/] — {manifest.n_samples} {spec.name}:{spec.train_split} samples, "
                  f"sha256 {manifest.sha256[:12]}…", highlight=False, soft_wrap=True)
