"""`gaia-bench splits`: write a job's training subset as a manifest file, check one against the data,
and read one (for `gaia-bench run --split FILE`).

A manifest is JSON: dataset, version, split, shots label, seed, ``n_samples``, ``sha256`` and the
subset's sample keys under ``ids`` -- grouped by class name (by label set, names joined with "+",
for multi-label and detection data), or one list when the split's samples name no classes
(segmentation, depth) -- with ``per_class`` counts (an image counts once for each of its classes).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Iterable, Mapping, Sequence

import typer

from gaia_bench.cli import app
from gaia_bench.cli.common import DataRootOption, handle_errors, parse_seeds, parse_shots
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError
from gaia_bench.shots import SHOTS_HELP, ShotSpec, parse_shot
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.splits import SplitManifest, ids_sha256

KIND = "gaia-bench-split"
_FIX = "write it with `gaia-bench splits export DATASET --shots 10% --seed 0 --out FILE`"
_EXPORT = "`gaia-bench splits export DATASET --shots S --seed N --out FILE`"

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


def group_name(labels: Sequence[int], classes: Sequence[str]) -> str:
    return "+".join(str(classes[c]) for c in sorted(set(labels))) or "(no class)"


def class_counts(label_sets: Iterable[Sequence[int]], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(c for s in label_sets for c in set(s))
    return {str(name): counts.get(i, 0) for i, name in enumerate(classes)}


def read_manifest(path: Path) -> SplitManifest:
    """Parse a manifest file; a file that is not one is a UsageError naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read split manifest {path}: {exc.strerror or exc}", _FIX) from None
    except ValueError as exc:
        raise UsageError(f"split manifest {path} is not JSON ({exc})", _FIX) from None
    ids = doc.get("ids") if isinstance(doc, dict) else None
    groups = list(ids.values()) if isinstance(ids, dict) else [ids]
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not all(isinstance(g, list) for g in groups) \
            or not all(isinstance(k, str) for g in groups for k in g) \
            or not all(isinstance(doc.get(k), str) for k in ("dataset", "split", "shots", "sha256")) \
            or not isinstance(doc.get("n_samples"), int) or not isinstance(doc.get("per_class", {}), dict):
        raise UsageError(f"{path} is not a split manifest (it needs kind {KIND!r}, dataset, split, shots, "
                         "n_samples, sha256 and ids: lists of sample keys)", _FIX)
    try:
        parse_shot(doc["shots"])
    except UsageError:
        raise UsageError(f"split manifest {path}: shots {doc['shots']!r} is not a shots label",
                         "write it as '10%', '0.1' or '5/class'") from None
    return SplitManifest(path=str(path), dataset=doc["dataset"], dataset_version=str(doc.get("dataset_version")),
                         split=doc["split"], shots=doc["shots"], seed=doc.get("seed"), ids=ids,
                         per_class=doc.get("per_class") or {}, n_samples=doc["n_samples"], sha256=doc["sha256"])


def manifest_problems(m: SplitManifest) -> list[str]:
    """What is inconsistent inside the file itself: repeated ids, count and hash."""
    keys = m.keys()
    problems = [f"id {k!r} is listed {n} times" for k, n in Counter(keys).items() if n > 1]
    if m.n_samples != len(keys):
        problems.append(f"n_samples is {m.n_samples}, but {len(keys)} ids are listed")
    if m.sha256 != (actual := ids_sha256(keys)):
        problems.append(f"sha256 is {m.sha256}, but the listed ids hash to {actual}")
    return problems


def check_split(split: SplitManifest, datasets: Sequence[DatasetSpec], shots: Sequence[ShotSpec]) -> None:
    """A --split manifest is one dataset's subset at one shots value: the grid must be just that."""
    if others := [d.name for d in datasets if d.name != split.dataset]:
        raise UsageError(f"--split {split.path} is a subset of {split.dataset}, not of {', '.join(others)}",
                         f"run it with --dataset {split.dataset} only (one --split per dataset)")
    if [s.label for s in shots] != [parse_shot(split.shots).label]:
        raise UsageError(f"--shots {','.join(s.label for s in shots)} differs from --split {split.path}'s "
                         f"{split.shots}", "drop --shots: the manifest fixes the subset")
    if datasets and split.split != datasets[0].train_split:
        raise UsageError(f"--split {split.path} lists {split.dataset}:{split.split}, but its jobs train on "
                         f"{datasets[0].train_split}", f"export the manifest again: {_EXPORT}")
    if problems := manifest_problems(split):
        raise UsageError(f"--split {split.path}: {problems[0]}", f"check it with `gaia-bench splits verify "
                         f"{split.path}`, or export it again: {_EXPORT}")


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
    from gaia_bench.protocol import subset_positions

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
