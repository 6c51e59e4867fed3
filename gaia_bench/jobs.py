"""Planning: the grid of jobs a command asks for, each with a stable id, and the context a job runs in."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from gaia_bench.api import AdaptationSpec, BackboneSpec, DatasetSpec, InitContext, InitSpec, Progress, TaskSpec
from gaia_bench import console
from gaia_bench.devices import PRECISIONS
from gaia_bench.errors import DataError, PluginError, UsageError
from gaia_bench.init_context import check_used, init_hyperparams, upstream_pool
from gaia_bench.overrides import apply_overrides
from gaia_bench.shots import ShotSpec
from gaia_bench.splits import SplitManifest, ids_sha256

PROTOCOL_VERSION = "gaia-bench-shots-v1"


@dataclass(frozen=True)
class JobConfig:
    """Everything that determines a job's result. Its hash is the job id; knobs that do not change
    the result (device, batch size, workers, paths) are deliberately not part of it."""

    model: str
    init: str
    weights_id: str
    adaptation: str
    hyperparams: dict[str, Any]
    dataset: str
    dataset_version: str
    task: str
    shots: str
    seed: int
    image_size: int
    protocol: str = PROTOCOL_VERSION
    split: str | None = None  # sha256 of a --split manifest's ids; None: the subset drawn from the seed
    precision: str | None = None  # --precision bf16 or fp16 (autocast); None: fp32

    @property
    def job_id(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def as_dict(self) -> dict:
        """The fields, ``split`` and ``precision`` only when set: the ids of drawn-subset fp32 jobs stay what they were."""
        return {k: v for k, v in asdict(self).items() if not (k in ("split", "precision") and v in (None, "fp32"))}


@dataclass
class Job:
    config: JobConfig
    shot: ShotSpec
    backbone: BackboneSpec
    init: InitSpec
    adaptation: AdaptationSpec
    dataset: DatasetSpec
    task: TaskSpec
    init_context: InitContext = field(default_factory=InitContext)  # what ``init.initialize`` is told
    registries: Any = None  # what the job was planned from: where an adaptation looks up a pool by name
    split: SplitManifest | None = None  # --split: the job trains on this manifest's subset

    @property
    def job_id(self) -> str:
        return self.config.job_id

    @property
    def primary_metric(self) -> str:
        return self.dataset.primary_metric or self.task.primary_metric


def split_names(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated names, in order, each once."""
    return list(dict.fromkeys(part.strip() for value in values for part in value.split(",") if part.strip()))


def plan(registries: Any, *, models: Sequence[str], inits: Sequence[str], adaptations: Sequence[str],
         datasets: Sequence[str], shots: Sequence[ShotSpec], seeds: Sequence[int], image_size: int | None = None,
         skip_unsupported: bool = False, notice: Callable[[str], None] = lambda msg: None,
         overrides: dict[str, Any] | None = None, init_context: InitContext | None = None,
         init_overrides: dict[str, Any] | None = None, split: SplitManifest | None = None,
         precision: str | None = None) -> list[Job]:
    """Resolve every name (failing early, with suggestions) and expand the grid into jobs.

    A dataset whose task an adaptation does not support is an error when asked for by name, and
    skipped with a notice when it came from a suite (``skip_unsupported``). ``overrides`` replace
    hyper-parameter defaults wherever a job has that key; a key no planned job has is an error.
    Each init is told ``init_context`` (pool, data root, progress) with its own pretraining
    hyper-parameters: its defaults with ``init_overrides`` applied (a key no planned init has is an
    error). ``split``: every job trains on this manifest's subset (`gaia-bench run` checks it fits the grid).
    ``precision``: the jobs' --precision (fp32, the default, stays out of their ids).
    """
    base_context = init_context or InitContext(upstream=upstream_pool(registries, None, None))
    init_overrides = dict(init_overrides or {})
    planned_inits: dict[str, InitSpec] = {}
    overrides = dict(overrides or {})
    used: set[str] = set()
    model_names = split_names(models)
    if not model_names:
        raise UsageError("no --model given", "e.g. --model test_resnet; see `gaia-bench models`")
    backbone_specs = [registries.backbones.get(m) for m in model_names]
    adaptation_specs = [registries.adaptations.get(a) for a in split_names(adaptations)]
    dataset_specs = [registries.datasets.get(d) for d in split_names(datasets)]
    explicit_inits = [registries.inits.get(i) for i in split_names(inits)]
    if (negative := next((seed for seed in seeds if seed < 0), None)) is not None:
        raise UsageError(f"--seed {negative} is negative", "seeds are integers >= 0")
    if image_size is not None and not 8 <= image_size <= 4096:
        raise UsageError(f"--image-size {image_size} is out of range", "use a size in pixels between 8 and 4096")
    if precision not in (None, *PRECISIONS):
        raise UsageError(f"--precision {precision} is not a choice", "use fp32, bf16 or fp16")
    shots_of = {a.name: [s for s in shots if s.fraction != 0] if a.trains else [ShotSpec(0.0)] for a in adaptation_specs}
    if idle := next((name for name, chosen in shots_of.items() if not chosen), None):
        raise UsageError(f"--shots 0% gives adaptation '{idle}' no training image",
                         "0% is for adaptations that train nothing (--adapt zero-shot); give a shots value above 0%")

    jobs: list[Job] = []
    skipped: set[tuple[str, str]] = set()
    for backbone in backbone_specs:
        init_specs = explicit_inits
        if not init_specs:
            default = backbone.resolve_default_init()
            init_specs = [registries.inits.get(default)]
            notice(f"{backbone.name}: init '{default}' (the backbone's default; choose with --init)")
        for init in init_specs:
            if not init.supports(backbone):
                raise UsageError(f"init '{init.name}' cannot initialize backbone '{backbone.name}'",
                                 "see `gaia-bench inits` for the backbones each init supports")
            planned_inits[init.name] = init
            context = replace(base_context, hyperparams=init_hyperparams(init, init_overrides))
            weights_id = init.weights_id(backbone, context)
            for adaptation, dataset in itertools.product(adaptation_specs, dataset_specs):
                adaptation.check(backbone, init)
                task = registries.tasks.get(dataset.task)
                if not adaptation.supports(task):
                    if skip_unsupported:
                        if (dataset.name, adaptation.name) not in skipped:
                            skipped.add((dataset.name, adaptation.name))
                            notice(f"skipping {dataset.name} ({dataset.task}) for {adaptation.name}, which "
                                   f"supports {', '.join(adaptation.task_types)}")
                        continue
                    raise UsageError(f"adaptation '{adaptation.name}' does not support {dataset.task} (dataset "
                                     f"'{dataset.name}')", f"it supports: {', '.join(adaptation.task_types)}")
                primary = dataset.primary_metric or task.primary_metric
                if primary not in {m.name for m in task.metrics}:
                    raise PluginError(f"dataset '{dataset.name}' declares primary metric '{primary}', "
                                      f"which task '{task.name}' does not compute",
                                      f"it computes: {', '.join(m.name for m in task.metrics)}")
                defaults = adaptation.hyperparams_for(dataset.task)
                hyperparams = apply_overrides(defaults, overrides)
                used.update(k for k in overrides if k in defaults)
                for shot, seed in itertools.product(shots_of[adaptation.name], seeds):
                    config = JobConfig(model=backbone.name, init=init.name, weights_id=weights_id,
                                       adaptation=adaptation.name, hyperparams=hyperparams, dataset=dataset.name,
                                       dataset_version=dataset.version, task=dataset.task, shots=shot.label,
                                       seed=seed, image_size=image_size or backbone.input_size,
                                       split=ids_sha256(split.keys()) if split and adaptation.trains else None,
                                       precision=None if precision in (None, "fp32") else precision)
                    jobs.append(Job(config, shot, backbone, init, adaptation, dataset, task, context, registries,
                                    split if adaptation.trains else None))
    check_used(list(planned_inits.values()), init_overrides)
    unknown = sorted(set(overrides) - used)
    if unknown and jobs:
        known = sorted({k for job in jobs for k in job.config.hyperparams})
        raise UsageError(f"--hp {', '.join(unknown)}: no planned job has such a hyper-parameter",
                         f"the planned jobs take: {', '.join(known)}")
    return jobs


def data_dir(root: Path, dataset: DatasetSpec) -> Path:
    return root / dataset.directory


PREPARED_MARKER = ".gaia-bench-prepared"  # written last: a folder without it was never finished
UNBUNDLED = ".gaia-bench-bundle.json"  # which bundle `gaia-bench datasets unbundle` made the folder from


def prepare_dataset(dataset: DatasetSpec, path: Path) -> None:
    """Make a plugin-made dataset at ``path`` atomically: in a sibling folder, marked complete, then
    renamed into place, so a killed prepare never leaves a folder that looks prepared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.preparing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dataset.prepare(tmp)
        (tmp / PREPARED_MARKER).write_text(f"{dataset.name} {dataset.version}\n")
        os.rename(tmp, path)
    except OSError:
        if not (path / PREPARED_MARKER).exists():  # else a concurrent prepare won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepared_data_dir(root: Path, dataset: DatasetSpec, progress: Progress | None = None) -> Path:
    """The dataset's directory under ``root``, made first when missing and the plugin can (one
    message naming the fix otherwise). A plugin-made folder without the completion marker (killed
    half-way, or an older version's) is kept when it verifies, else moved aside and made again."""
    path = data_dir(root, dataset)
    if dataset.prepare is not None and path.is_dir() and not (path / PREPARED_MARKER).exists():
        if not dataset.verify(path):
            (path / PREPARED_MARKER).write_text(f"{dataset.name} {dataset.version}\n")
        else:
            aside = path.with_name(f"{path.name}.incomplete")
            shutil.rmtree(aside, ignore_errors=True)
            path.rename(aside)
            console.notice(f"{path} was not completely prepared: moved to {aside}, preparing it again")
    if not path.exists():
        if dataset.prepare is None:
            raise DataError(f"dataset '{dataset.name}' is not under {path}",
                            dataset.prepare_hint or f"run `gaia-bench datasets prepare {dataset.name}`")
        advance = (progress := progress or Progress()).start(f"preparing dataset {dataset.name}", None)
        prepare_dataset(dataset, path)
        advance(1)
        progress.finish()
    return path
