"""What a plugin registers. Plain frozen dataclasses holding names, metadata and callables.

Nothing here imports torch: listing plugins must stay fast. Callables (``build``, ``run``, ...)
import what they need when they are called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from gaia_bench.backbone import Backbone
    from gaia_bench.jobs import JobContext, Progress


# --------------------------------------------------------------------------- backbones & inits
@dataclass(frozen=True)
class WeightsRef:
    """Published weights that an init can load, found only on local disk (never downloaded).

    ``locate()`` returns the local file or None; the other fields make the "missing" message exact.
    """

    tag: str  # the official tag, e.g. "resnet50.a1_in1k" or "ResNet50_Weights.IMAGENET1K_V2"
    locate: Callable[[], Path | None]
    expected: str  # file name expected on disk
    search_dirs: tuple[str, ...]  # directories searched, in order
    fetch_command: str  # what fetches it on a machine with internet


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone architecture.

    ``build(weights=None)`` returns a :class:`gaia_bench.backbone.Backbone`; ``weights`` is a local
    file whose state dict the backbone knows how to load (its own published format), or None for
    the architecture's own random initialization.
    """

    name: str
    build: Callable[..., Backbone]
    source: str = "third-party"  # the zoo or package that provides it
    description: str = ""
    # Evaluation input: square size in pixels and normalization (the weights' own, when published).
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Published weights by init name ("imagenet", "clip", ...): what the matching init loads.
    published_weights: Mapping[str, WeightsRef] = field(default_factory=dict)
    # The init used when --init is not given: a name, or a callable deciding from local state.
    default_init: str | Callable[[], str] = "random"

    def resolve_default_init(self) -> str:
        return self.default_init() if callable(self.default_init) else self.default_init


@dataclass(frozen=True)
class BackboneCatalog:
    """A whole model zoo registered lazily: names are enumerated (and the zoo imported) only
    when a backbone is looked up or listed. A name is looked up in every catalog: one that two
    catalogs have is ambiguous, an error listing ``SOURCE:name`` for each; ``SOURCE:name`` picks a
    catalog explicitly. ``get`` returns None for a name the zoo does not have."""

    source: str
    description: str
    names: Callable[[], Iterable[str]]
    get: Callable[[str], BackboneSpec | None]
    # Names with published weights (for ``gaia-bench models --pretrained``).
    pretrained_names: Callable[[], Iterable[str]] = lambda: ()
    # Which provider an unqualified name that several share means: the highest precedence wins,
    # a tie is an error listing ``SOURCE:name`` (declared, never load order).
    precedence: int = 0

    @property
    def name(self) -> str:
        return self.source


def _no_progress() -> Progress:
    from gaia_bench.jobs import Progress

    return Progress()


def _default_data_root() -> Path:
    from gaia_bench.paths import data_root

    return data_root()


@dataclass(frozen=True)
class InitContext:
    """What an init is told besides the backbone: ``gaia-bench run`` fills it for every job from
    its options, so an init never reads the environment or the global plugin host.

    ``upstream``: the upstream pool a pretraining method trains on (``--upstream NAME``; by default
    the suite's declared pool, the ``mini`` suite's for datasets named directly), None when no pool
    is registered. ``hyperparams``: the init's pretraining hyper-parameters, its defaults with the
    ``--init-hp KEY=VALUE`` overrides applied (empty for an init without a pretraining method).
    ``data_root``: where datasets, the pool included, live (``--data-root``). ``progress``: how a
    long step (preparing the pool, pretraining) reports itself.
    """

    upstream: DatasetSpec | None = None
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    data_root: Path = field(default_factory=_default_data_root)
    progress: Progress = field(default_factory=_no_progress, compare=False, repr=False)


@dataclass(frozen=True)
class InitSpec:
    """An initialization of a backbone: published weights, or a pretraining method of its own.

    ``initialize(spec, ctx)`` returns the backbone with the init's weights; ``weights_id(spec,
    ctx)`` names those exact weights (a content hash for files, a cache key for a pretraining
    checkpoint) without building the model: it keys the feature cache and the job id, and raises
    MissingWeightsError early. ``ctx`` is the job's :class:`InitContext` (pool, hyper-parameters,
    data root, progress); both callables must give the same answer for the same spec and context.
    """

    name: str
    description: str
    initialize: Callable[[BackboneSpec, InitContext], Backbone]
    weights_id: Callable[[BackboneSpec, InitContext], str]
    supports: Callable[[BackboneSpec], bool] = lambda spec: True
    weights_source: str = ""  # where the weights come from, in words
    applies_to: str = "any backbone"  # which backbones it can initialize, in words
    # The pretraining method behind the init (`gaia-bench pretrain --method NAME`), if it has one.
    pretrain: PretrainMethod | None = None


@dataclass(frozen=True)
class PretrainMethod:
    """How an init makes its own weights by pretraining a backbone on an upstream pool.

    ``key(backbone, upstream, hyperparams)`` names the checkpoint without training (a hash of the
    method, backbone, pool name and version, hyper-parameters and seed) and ``path(...)`` says
    where it is cached; ``checkpoint(backbone,
    upstream, hyperparams, force=False)`` returns its cached file, pretraining it first (with
    progress) when it is not cached or ``force`` is set; ``load(backbone, path)`` builds the
    backbone with those weights. ``label_space(upstream, hyperparams)``, when the method has one,
    returns ``(unified class, [(source, class name, similarity), ...])`` rows.
    ``upstream`` is the pool's :class:`DatasetSpec`.
    """

    hyperparams: Mapping[str, Any]  # names -> defaults
    key: Callable[..., str]
    path: Callable[..., Path]  # where ``key``'s checkpoint is cached (same arguments)
    checkpoint: Callable[..., Path]
    load: Callable[..., Backbone]
    label_space: Callable[..., list] | None = None


# --------------------------------------------------------------------------- tasks & datasets
@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool = True
    description: str = ""


class Evaluate(Protocol):
    """A task's official metrics, the same signature for every task type."""

    def __call__(self, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
        """The metrics of ``predictions`` on ``test``: one prediction per test sample, in test order
        (classification: the predicted class id; detection: the image's
        :class:`~gaia_bench.tasks.types.lib.metrics_detection.ImageDetections`; segmentation: the image's
        confusion counts, a (C, C) int array; depth: the image's metric terms or predicted map)."""
        ...


class HoldoutStrata(Protocol):
    """How a task holds out part of a training subset (for early stopping, hyper-parameter choice)."""

    def __call__(self, subset: Samples) -> list[int] | None:
        """One stratum per sample (the hold-out takes its share of every stratum), or None for a
        random hold-out of whole samples."""
        ...


@dataclass(frozen=True)
class HeadInput:
    """What a head reads from the backbone: ``channels`` of its pooled features (one entry) or of
    the last maps of its pyramid (fine to coarse); ``size`` is the (height, width) of the images
    the backbone sees, which a dense head predicts at and a detector sizes its anchors by."""

    channels: tuple[int, ...]
    size: tuple[int, int]


class Head(Protocol):
    """A task's trainable head for one job, built by :class:`MakeHead`. The adaptation decides
    what trains (the head alone over a frozen backbone, or both) and runs the loop; the head says
    what it learns from, its loss and its predictions. ``inputs`` is what the backbone gives it:
    pooled features ``[B, C]`` or the list of pyramid maps that :class:`HeadInput` describes."""

    module: Any  # the torch.nn.Module holding the head's parameters (optimizer, state dict, train/eval)

    def target(self, sample: Sample, mirrored: bool = False) -> Any:
        """One sample's training target at the head's input size (mirrored left-right when the
        trainer flips the image)."""
        ...

    def loss(self, inputs: Any, targets: Sequence[Any]) -> Any:
        """The scalar training loss of a batch (module in training mode), from targets that
        :meth:`target` made; placed on the module's device here."""
        ...

    def predict(self, inputs: Any, samples: Sequence[Sample]) -> list[Any]:
        """Eval-mode predictions for a batch, one per sample, in the form :class:`Evaluate` takes."""
        ...

    def describe(self) -> dict[str, Any]:
        """The head's architecture and loss in words and numbers, for a result's details."""
        ...


class MakeHead(Protocol):
    """Builds a task's head for one job."""

    def __call__(self, inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
                 seed: int) -> Head:
        """A new head over ``inputs`` for ``dataset``, initialized from ``seed`` alone (the
        caller's random state is left alone); ``fit`` are the samples it will be trained on
        (their ``classes``; a depth head starts its output at their mean log depth);
        ``hyperparams`` are the job's."""
        ...


class TrainHead(Protocol):
    """Trains a task's head on a job and evaluates it: what ``linear-probe`` and ``finetune`` run."""

    def __call__(self, ctx: JobContext, train_backbone: bool) -> AdaptationResult:
        """The head over a frozen backbone (``train_backbone`` False) or the head and the backbone
        together, trained on the job's subset and scored on its test split with the task's
        :class:`Evaluate`."""
        ...


def random_holdout(subset: Samples) -> list[int] | None:
    """No strata: the hold-out is a random share of whole samples (dense tasks)."""
    return None


@dataclass(frozen=True)
class TaskSpec:
    """A task type: its metrics (official definitions), which one is primary, and the hooks the
    adaptations call instead of knowing the task: ``evaluate`` (ONE signature for every task),
    ``holdout_strata``, ``make_head`` and ``train_head`` (None: no adaptation can train a head for it)."""

    name: str
    description: str
    metrics: Sequence[MetricInfo]
    primary_metric: str
    evaluate: Evaluate
    holdout_strata: HoldoutStrata = random_holdout
    make_head: MakeHead | None = None
    train_head: TrainHead | None = None

    def metric(self, name: str) -> MetricInfo:
        for info in self.metrics:
            if info.name == name:
                return info
        raise KeyError(name)


@dataclass(frozen=True)
class Sample:
    """One item of a split. ``key`` is stable across machines and file orders (a relative path):
    the percentage-shot sampler ranks samples by it. ``target`` is a class index for
    classification, an annotation object for dense tasks."""

    key: str
    path: Path
    target: Any
    # For an image stored as a record inside a container file (a CIFAR pickle, an SVHN .mat, a
    # PCam HDF5, a FER2013 CSV): a picklable callable returning the PIL image; ``path`` is the container.
    decode: Callable[[], Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Samples:
    samples: Sequence[Sample]
    classes: Sequence[str]

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> list[int]:
        return [int(s.target) for s in self.samples]

    @property
    def single_label(self) -> bool:
        """Classification-style targets (one class index each)."""
        return all(isinstance(s.target, int) for s in self.samples)

    def label_sets(self) -> list[list[int]]:
        """The classes in each sample: ``[target]`` for class indices, ``target.labels`` for dense
        annotations that list them (detection), ``[]`` when the target names none (depth)."""
        if self.single_label:
            return [[int(s.target)] for s in self.samples]
        return [list(getattr(s.target, "labels", ()) or ()) for s in self.samples]

    def subset(self, indices: Sequence[int]) -> Samples:
        return Samples([self.samples[i] for i in indices], self.classes)


@dataclass(frozen=True)
class JobData:
    """A job's data, drawn once by the runner (:func:`gaia_bench.protocol.draw`) before the
    adaptation runs: adaptations never draw their own subset or held-out part, so every
    adaptation of a cell trains and is tested on the same items, and the core records them."""

    train: Samples  # the whole training split
    indices: tuple[int, ...]  # the percentage-shot subset: positions in ``train``
    fit: tuple[int, ...]  # positions in the subset to fit on (the whole subset without a held-out part)
    val: tuple[int, ...]  # positions in the subset held out for choices (early stopping, weight decay)
    test: Samples  # the test split, every sample
    stats: dict  # per-class counts of the subset (:class:`gaia_bench.shots.SubsetStats`)

    @property
    def subset(self) -> Samples:
        return self.train.subset(self.indices)

    @property
    def fit_samples(self) -> Samples:
        return self.train.subset([self.indices[i] for i in self.fit])

    @property
    def val_samples(self) -> Samples:
        return self.train.subset([self.indices[i] for i in self.val])

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    def subset_labels(self):
        """The subset's class indices (single-label data) as an int64 numpy array."""
        import numpy as np

        return np.asarray(self.train.labels(), dtype=np.int64)[list(self.indices)]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in its official on-disk layout under ``data_root / subdir``.

    ``load(root, split)`` reads a split; ``prepare(root)`` materializes or lays out the files
    (None when only manual steps exist, then ``prepare_hint`` says them); ``verify(root)`` returns
    one line per problem, each naming the fix (empty list = all good).
    """

    name: str
    task: str
    description: str
    load: Callable[[Path, str], Samples]
    verify: Callable[[Path], list[str]]
    prepare: Callable[[Path], None] | None = None
    prepare_hint: str = ""
    # Fetches the public archives into the directory, checks their checksums and lays them out;
    # called only by `gaia-bench datasets prepare NAME --download`, never by a run.
    download: Callable[[Path], None] | None = None
    splits: Mapping[str, int] = field(default_factory=dict)  # expected sizes
    num_classes: int | None = None
    train_split: str = "train"
    test_split: str = "test"
    primary_metric: str | None = None  # overrides the task's primary metric (GV-B's choice)
    version: str = "1"
    subdir: str = ""

    @property
    def directory(self) -> str:
        return self.subdir or self.name


@dataclass(frozen=True)
class SuiteSpec:
    """Datasets run together; ``upstream`` names the pool its pretraining methods train on."""

    name: str
    description: str
    datasets: Sequence[str]
    upstream: str | None = None


# --------------------------------------------------------------------------- adaptation
@dataclass
class AdaptationResult:
    """What an adaptation returns for one job. The runner adds what the protocol fixes (``n_train``,
    ``n_test``, the subset's statistics), timings, peak memory and provenance."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    trainable_params: int = 0


@dataclass(frozen=True)
class AdaptationSpec:
    """An adaptation method. ``run(ctx)`` trains what it trains on the job's subset and evaluates.

    A job's hyper-parameters are ``hyperparams`` plus ``task_hyperparams[task]`` (those of a head
    that only one task type uses), so a detection knob does not change a classification job's id."""

    name: str
    description: str
    task_types: Sequence[str]
    run: Callable[[JobContext], AdaptationResult]
    hyperparams: Mapping[str, Any] = field(default_factory=dict)  # names -> defaults
    task_hyperparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # task -> names -> defaults
    # Tasks whose training runs data-parallel in ``ctx.processes`` processes (--gpus-per-job N);
    # the others run in one process (the built-in adaptations use plugins/adaptations/lib/distributed.py).
    data_parallel_tasks: Sequence[str] = ()

    def hyperparams_for(self, task: str) -> dict[str, Any]:
        return {**self.hyperparams, **self.task_hyperparams.get(task, {})}


# --------------------------------------------------------------------------- executors & reporters
@dataclass(frozen=True)
class ExecutionOptions:
    """What `gaia-bench run` hands an executor besides the jobs (the third argument of
    ``execute(jobs, run_job, options)``).

    ``run_job(job)`` runs a job in this process, sharing the command's loaded data, backbone and
    features. To run a job anywhere else, submit ``cell(job)``: a picklable zero-argument callable
    that rebuilds the plugins and the session where it is called, re-plans that one job (checking
    that it gets the same job id), runs it, writes its record as a file under ``work_dir`` and
    returns it. ``cell_failed(job, error, extra)`` builds the failed record of a job whose process
    died without one (``extra`` is merged into it, e.g. ``{"log": path}``).
    """

    max_parallel: int = 1  # jobs running at once (--max-parallel)
    values: Mapping[str, Any] = field(default_factory=dict)  # executor-specific options given, by name
    work_dir: Path | None = None  # this store's directory for job logs and per-job result files
    cell: Callable[[Any], Callable[[], dict]] | None = None
    cell_failed: Callable[[Any, str, Mapping[str, Any]], dict] | None = None
    on_state: Callable[[str, str], None] = lambda job_id, state: None  # (job id, "pending" | "running")
    notice: Callable[[str], None] = lambda message: None


class Execute(Protocol):
    """``execute(jobs, run_job, options)``: run each planned job (``run_job(job)`` in this process,
    or ``options.cell(job)()`` anywhere else) and yield each job's record as it finishes."""

    def __call__(self, jobs: Sequence[Any], run_job: Callable[[Any], dict], options: ExecutionOptions) -> Iterable[dict]: ...


@dataclass(frozen=True)
class ExecutorSpec:
    """Runs planned jobs with ``execute`` (:class:`Execute`).

    ``options`` names the executor-specific options it accepts (name -> help), set on the command
    line with ``--executor-option NAME=VALUE`` or a dedicated flag such as ``--slurm-partition``;
    the core rejects any other. ``parallel``: it honours ``--max-parallel``. ``remote``: jobs may
    run on other machines, so ``--device`` is resolved where each job runs, not by the driver."""

    name: str  # what --executor selects
    description: str  # one line for `gaia-bench executors`
    execute: Execute
    options: Mapping[str, str] = field(default_factory=dict)
    parallel: bool = False
    remote: bool = False


@dataclass(frozen=True)
class ReporterSpec:
    """An output format. ``render(records)`` turns stored result records into one text (used by
    `gaia-bench results --format`); ``write_leaderboard(board, out_dir)`` writes a built leaderboard
    (:class:`gaia_bench.plugins.reporters.lib.leaderboard.Leaderboard`) into a directory and returns the files written."""

    name: str
    description: str
    extension: str = ""
    render: Callable[[list[dict]], str] | None = None
    write_leaderboard: Callable[[Any, Path], list[Path]] | None = None
