"""What a plugin registers. Plain frozen dataclasses holding names, metadata and callables.

Nothing here imports torch: listing plugins must stay fast. Callables (``build``, ``run``, ...)
import what they need when they are called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

from gaia_bench.paths import data_root as default_data_root

if TYPE_CHECKING:
    from gaia_bench.backbone import Backbone


# --------------------------------------------------------------------------- backbones & inits
@dataclass(frozen=True)
class WeightsRef:
    """Published weights that an init can load: ``locate`` looks on local disk only, ``download``
    fetches them into the owning library's cache; the other fields make the "missing" message exact."""

    tag: str  # the official tag, e.g. "resnet50.a1_in1k" or "ResNet50_Weights.IMAGENET1K_V2"
    locate: Callable[[], Path | None]  # the local file, or None (looks only)
    expected: str  # file name expected on disk
    search_dirs: tuple[str, ...]  # directories searched, in order
    fetch_command: str  # what fetches it on a machine with internet
    download: Callable[[Progress], Path] | None = None  # None: the library cannot fetch it on demand


class BuildBackbone(Protocol):
    """How a backbone is built, the one thing an init calls to get a network: a new
    :class:`gaia_bench.backbone.Backbone` with the state dict of ``weights``, a local file in the
    backbone's own published format, or the architecture's own random initialization (under the
    caller's torch seed) when None."""

    def __call__(self, weights: str | None = None) -> Backbone: ...


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone architecture; ``build`` (:class:`BuildBackbone`) makes the network."""

    name: str  # what --model selects (``SOURCE:name`` when two zoos have it); part of the job id
    build: BuildBackbone
    source: str = "third-party"  # the zoo or package that provides it
    description: str = ""  # what it is, in one line
    # Evaluation input: square size in pixels and normalization (the weights' own, when published).
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # per RGB channel, of pixels in [0, 1]
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # per RGB channel, as ``mean``
    # Published weights by init name ("imagenet", "clip", ...): what the matching init loads.
    published_weights: Mapping[str, WeightsRef] = field(default_factory=dict)
    # The init used when --init is not given: a name, or a callable deciding from local state.
    default_init: str | Callable[[], str] = "random"

    def resolve_default_init(self) -> str:
        return self.default_init() if callable(self.default_init) else self.default_init


@dataclass(frozen=True)
class BackboneCatalog:
    """A whole model zoo registered lazily: names are enumerated (and the zoo imported) only
    when a backbone is looked up or listed; ``SOURCE:name`` picks a catalog explicitly."""

    source: str  # the zoo's name: what ``SOURCE:name`` and `gaia-bench models --source` select
    description: str  # what the zoo is, in one line
    names: Callable[[], Iterable[str]]  # every backbone name the zoo has (imports the zoo)
    get: Callable[[str], BackboneSpec | None]  # the spec of a name, None when the zoo lacks it
    # Names with published weights (for ``gaia-bench models --pretrained``).
    pretrained_names: Callable[[], Iterable[str]] = lambda: ()
    # Which provider an unqualified name that several share means: the highest precedence wins,
    # a tie is an error listing ``SOURCE:name`` (declared, never load order).
    precedence: int = 0


@dataclass
class Progress:
    """How a job or an init reports long steps; the CLI supplies a rich-backed one, the default shows nothing."""

    # ``start(description, total)`` opens a step (total None: unknown) and returns ``advance(n)``.
    start: Callable[[str, int | None], Callable[[int], None]] = lambda description, total: (lambda n: None)
    finish: Callable[[], None] = lambda: None  # closes the step ``start`` opened


@dataclass(frozen=True)
class InitContext:
    """What an init is told besides the backbone: ``gaia-bench run`` fills it for every job from
    its options, so an init never reads the environment or the global plugin host."""

    # The pool a pretraining method trains on (``--upstream NAME``; by default the suite's declared
    # pool, the ``mini`` suite's for datasets named directly), None when no pool is registered.
    upstream: DatasetSpec | None = None
    # The init's pretraining hyper-parameters: its defaults with the ``--init-hp KEY=VALUE``
    # overrides applied (empty for an init without a pretraining method).
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    data_root: Path = field(default_factory=default_data_root)  # where datasets and the pool live (--data-root)
    progress: Progress = field(default_factory=Progress, compare=False, repr=False)  # the pool, pretraining, downloads
    offline: bool = False  # --offline: published weights that are not here are an error, never downloaded


class Initialize(Protocol):
    """What an init does for a job: the backbone of ``spec`` with the weights that
    ``weights_id(spec, ctx)`` names (loading published weights, or pretraining on ``ctx.upstream``
    first when no checkpoint is cached)."""

    def __call__(self, spec: BackboneSpec, ctx: InitContext) -> Backbone: ...


@dataclass(frozen=True)
class InitSpec:
    """An initialization of a backbone: published weights, or a pretraining method of its own.

    ``weights_id(spec, ctx)`` names the exact weights that ``initialize(spec, ctx)`` loads (a
    content hash for files, a cache key for a pretraining checkpoint) without building the model:
    it keys the feature cache and the job id, and raises MissingWeightsError early. Both must give
    the same answer for the same spec and :class:`InitContext`."""

    name: str  # what --init selects; part of the job id
    description: str  # one line for `gaia-bench inits`
    initialize: Initialize  # called when a job first needs the backbone (features, training)
    weights_id: Callable[[BackboneSpec, InitContext], str]  # called when a job is planned (see above)
    supports: Callable[[BackboneSpec], bool] = lambda spec: True  # False: planning rejects the pair
    weights_source: str = ""  # where the weights come from, in words
    applies_to: str = "any backbone"  # which backbones it can initialize, in words
    # The pretraining method behind the init (`gaia-bench pretrain --method NAME`), if it has one: the
    # inits plugins' PretrainMethod (plugins/inits/lib/pretrain_contract.py), or any object with just
    # ``hyperparams`` (e.g. ``checkpoint``'s file), the only part the core reads (names -> defaults, for --init-hp).
    pretrain: Any = None
    provenance: Callable[[BackboneSpec, InitContext], dict] = lambda spec, ctx: {}  # record fields: where weights came from


# --------------------------------------------------------------------------- tasks & datasets
@dataclass(frozen=True)
class MetricInfo:
    """One metric a task's ``evaluate`` returns."""

    name: str  # the key in ``evaluate``'s dict and in a record's ``metrics``
    higher_is_better: bool = True  # its direction, stored in each record for summaries and leaderboards
    description: str = ""  # what it measures, in words


class Evaluate(Protocol):
    """A task's official metrics, the same signature for every task type: the metrics of
    ``predictions`` on ``test``, one prediction per test sample, in test order (classification: the
    predicted class id; detection: the image's
    :class:`~gaia_bench.tasks.types.lib.metrics_detection.ImageDetections`; segmentation: the image's
    confusion counts, a (C, C) int array; depth: the image's metric terms or predicted map)."""

    def __call__(self, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]: ...


class EncodePredictions(Protocol):
    """A task's predictions as named numpy arrays for the prediction store, with the test targets
    they are scored against (so that rescoring and comparing need no dataset on disk); no pickles."""

    def __call__(self, predictions: Sequence[Any], test: Samples) -> dict[str, Any]: ...


class DecodePredictions(Protocol):
    """The inverse of :class:`EncodePredictions`: ``(predictions, test)`` with ``test`` rebuilt from
    the stored keys (as paths), classes and targets, so that ``evaluate`` gives the stored metrics."""

    def __call__(self, arrays: Mapping[str, Any], keys: Sequence[str], classes: Sequence[str]) -> tuple[list, Samples]: ...


class Resample(Protocol):
    """Every metric of ``evaluate`` on B bootstrap resamples of the test items at once, faster than
    ``evaluate`` per resample on large test sets: ``counts[b, i]`` is how often resample b draws item i."""

    def __call__(self, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
                 counts: Any) -> dict[str, Any]: ...


class PerClass(Protocol):
    """The primary metric per class (classification: recall; others: what the task defines), NaN
    for a class without test items: what the long-tail buckets of a leaderboard are made from."""

    def __call__(self, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> list[float]: ...


class HoldoutStrata(Protocol):
    """How a task holds out part of a training subset (for early stopping, hyper-parameter choice):
    one stratum per sample (the hold-out takes its share of every stratum), or None for a random
    hold-out of whole samples."""

    def __call__(self, subset: Samples) -> list[int] | None: ...


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

    def loss(self, inputs: Any, targets: Sequence[Any]) -> Any:
        """The scalar training loss of a batch (module in training mode), from targets that
        :meth:`target` made; placed on the module's device here."""

    def predict(self, inputs: Any, samples: Sequence[Sample]) -> list[Any]:
        """Eval-mode predictions for a batch, one per sample, in the form :class:`Evaluate` takes."""

    def describe(self) -> dict[str, Any]:
        """The head's architecture and loss in words and numbers, for a result's details."""


class MakeHead(Protocol):
    """Builds a task's head for one job: a new head over ``inputs`` for ``dataset``, initialized from
    ``seed`` alone (the caller's random state is left alone); ``fit`` are the samples it will be
    trained on (their ``classes``; a depth head starts its output at their mean log depth);
    ``hyperparams`` are the job's."""

    def __call__(self, inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
                 seed: int) -> Head: ...


class TrainHead(Protocol):
    """Trains a task's head on a job and evaluates it (what ``linear-probe`` and ``finetune`` run):
    the head over a frozen backbone (``train_backbone`` False) or the head and the backbone together,
    trained on the job's subset and scored on its test split with the task's :class:`Evaluate`."""

    def __call__(self, ctx: JobContext, train_backbone: bool) -> AdaptationResult: ...


def random_holdout(subset: Samples) -> list[int] | None:
    """No strata: the hold-out is a random share of whole samples (dense tasks)."""
    return None


@dataclass(frozen=True)
class TaskSpec:
    """A task type: its metrics (official definitions), which one is primary, and the hooks the
    adaptations call instead of knowing the task: ``evaluate`` (ONE signature for every task),
    ``holdout_strata``, ``make_head`` and ``train_head`` (None: no adaptation can train a head for it)."""

    name: str  # what ``DatasetSpec.task`` names
    description: str  # one line for `gaia-bench tasks`
    metrics: Sequence[MetricInfo]  # every metric ``evaluate`` returns
    primary_metric: str  # the one a record's ``primary_value`` and leaderboards report
    evaluate: Evaluate
    holdout_strata: HoldoutStrata = random_holdout
    make_head: MakeHead | None = None
    train_head: TrainHead | None = None
    encode: EncodePredictions | None = None  # None: this task's predictions are not stored
    decode: DecodePredictions | None = None  # reads what ``encode`` stored (rescore, compare)
    resample: Resample | None = None  # None: bootstrap intervals call ``evaluate`` per resample
    per_class: PerClass | None = None  # None: no per-class breakdown in the record
    # Metrics beyond the official ones, computed from stored predictions on request (`results rescore
    # --metric NAME`): name -> an Evaluate returning {name: value} (opt-in keyword: the record's ``details``).
    extra_metrics: Mapping[str, Evaluate] = field(default_factory=dict)

    def metric(self, name: str) -> MetricInfo:
        return {info.name: info for info in self.metrics}[name]


@dataclass(frozen=True)
class Sample:
    """One item of a split. ``key`` is stable across machines and file orders (a relative path):
    the percentage-shot sampler ranks samples by it. ``target`` is a class index for
    classification, an annotation object for dense tasks."""

    key: str
    path: Path  # the image file (or the container, see ``decode``)
    target: Any
    # For an image stored as a record inside a container file (a CIFAR pickle, an SVHN .mat, a
    # PCam HDF5, a FER2013 CSV): a picklable callable returning the PIL image; ``path`` is the container.
    decode: Callable[[], Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Samples:
    """A split as a dataset reads it (``DatasetSpec.load``)."""

    samples: Sequence[Sample]  # in the reader's order (the subset draw ranks them by ``key``)
    classes: Sequence[str]  # class names, indexed by the class ids in targets

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

    subset = property(lambda self: self.train.subset(self.indices))  # Samples: the subset
    fit_samples = property(lambda self: self.train.subset([self.indices[i] for i in self.fit]))  # Samples
    val_samples = property(lambda self: self.train.subset([self.indices[i] for i in self.val]))  # Samples
    num_classes = property(lambda self: len(self.train.classes))  # int

    def subset_labels(self):
        """The subset's class indices (single-label data) as an int64 numpy array."""
        import numpy as np

        return np.asarray(self.train.labels(), dtype=np.int64)[list(self.indices)]


class JobContext(Protocol):
    """What an adaptation's ``run(ctx)`` (and a task's ``train_head(ctx, ...)``) gets: the planned job,
    the data the runner drew for it, and the command's shared backbone, features and settings."""

    job: Any  # the planned job: .config (JobConfig: its id's fields), .dataset, .task, .backbone, .init
    progress: Progress  # report long steps here (rich bars in the CLI)
    stage_seconds: dict[str, float]  # seconds per named stage, merged into the record's timings

    @property
    def config(self) -> Any: ...  # the job's JobConfig (model, init, seed, image_size, shots, ...)
    @property
    def hyperparams(self) -> dict[str, Any]: ...  # the job's hyper-parameters, overrides applied
    @property
    def device(self) -> str: ...  # where to compute: "cpu", "cuda:0", ...
    @property
    def processes(self) -> int: ...  # data-parallel processes the job may train in (--gpus-per-job)
    @property
    def batch_size(self) -> int: ...  # the command's inference batch size (--batch-size)
    @property
    def workers(self) -> int: ...  # data-loading worker processes (--workers)
    @property
    def session(self) -> Any: ...  # the command's shared caches (splits, backbone, features, data root)
    @property
    def data(self) -> JobData: ...  # subset, held-out part and test split, drawn by the runner

    def load(self, split: str) -> Samples: ...  # a whole split of the job's dataset
    def upstream_pool(self, name: str) -> DatasetSpec: ...  # a pool by suite or pool name
    def build_backbone(self) -> Backbone: ...  # the shared initialized backbone: use it frozen
    def trainable_backbone(self) -> Backbone: ...  # a private copy the adaptation may train
    def features(self, split: str) -> Any: ...  # pooled features of every sample of a split (cached)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in its official on-disk layout under ``data_root / subdir``.

    ``load(root, split)`` reads a split; ``prepare(root)`` materializes or lays out the files
    (None when only manual steps exist, then ``prepare_hint`` says them); ``verify(root)`` returns
    one line per problem, each naming the fix (empty list = all good)."""

    name: str  # what --dataset and suites name; part of the job id
    task: str  # the name of its task type (a registered :class:`TaskSpec`)
    description: str  # what it is, in one line
    load: Callable[[Path, str], Samples]  # see above; the runner loads each split once per session
    verify: Callable[[Path], list[str]]  # see above; `gaia-bench datasets verify`
    prepare: Callable[[Path], None] | None = None  # see above; run before a job when the directory is missing
    prepare_hint: str = ""
    # Fetches the public archives into the directory, checks their checksums and lays them out;
    # called only by `gaia-bench datasets prepare NAME --download`, never by a run.
    download: Callable[[Path], None] | None = None
    splits: Mapping[str, int] = field(default_factory=dict)  # expected sizes
    num_classes: int | None = None  # its class count when fixed (`gaia-bench datasets` shows it)
    train_split: str = "train"  # the split subsets are drawn from
    test_split: str = "test"  # the split every job is scored on
    primary_metric: str | None = None  # overrides the task's primary metric (GV-B's choice)
    version: str = "1"  # part of the job id and the cache keys: bump it when the data or its reading changes
    subdir: str = ""  # directory under the data root, when not ``name``
    provenance: Callable[[Path], dict] = lambda root: {}  # where its files came from: a record's ``data_source``

    @property
    def directory(self) -> str:
        return self.subdir or self.name


@dataclass(frozen=True)
class SuiteSpec:
    """Datasets run together; ``upstream`` names the pool its pretraining methods train on."""

    name: str  # what --suite selects
    description: str  # one line for `gaia-bench datasets`
    datasets: Sequence[str]  # dataset names, in the order tables show them
    upstream: str | None = None


# --------------------------------------------------------------------------- adaptation
@dataclass
class AdaptationResult:
    """What an adaptation returns for one job. The runner adds what the protocol fixes (``n_train``,
    ``n_test``, the subset's statistics), the metrics of ``predictions`` with their interval,
    timings, peak memory and provenance."""

    metrics: dict[str, float] = field(default_factory=dict)  # extra metrics; ``predictions`` gives the task's
    # One prediction per test sample, in test order, as the task's ``evaluate`` takes them. The runner
    # scores them (its metrics win over ``metrics``), stores them, and bootstraps the interval.
    # None: ``metrics`` must hold the primary metric, and the record has no interval.
    predictions: Sequence[Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able choices and diagnostics, stored in the record
    stage_seconds: dict[str, float] = field(default_factory=dict)  # time per stage, added to the record's timings
    trainable_params: int = 0  # parameters the adaptation trained (its cost), stored in the record


class RunAdaptation(Protocol):
    """What an adaptation does for one job: train on the job's subset (``ctx.data``, drawn by the
    runner) and score the test split with the task's :class:`Evaluate`; raise a GaiaBenchError for a
    failure the user can fix."""

    def __call__(self, ctx: JobContext) -> AdaptationResult: ...


@dataclass(frozen=True)
class AdaptationSpec:
    """An adaptation method. ``run(ctx)`` trains what it trains on the job's subset and evaluates.

    A job's hyper-parameters are ``hyperparams`` plus ``task_hyperparams[task]`` (those of a head
    that only one task type uses), so a detection knob does not change a classification job's id."""

    name: str  # what --adapt selects; part of the job id
    description: str  # one line for `gaia-bench adaptations`
    task_types: Sequence[str]  # the task types it can run; planning rejects a dataset of another
    run: RunAdaptation  # called once per job, after the runner drew ``ctx.data``
    hyperparams: Mapping[str, Any] = field(default_factory=dict)  # names -> defaults
    task_hyperparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # task -> names -> defaults
    # Tasks whose training runs data-parallel in ``ctx.processes`` processes (--gpus-per-job N);
    # the others run in one process (the built-in adaptations use plugins/adaptations/lib/distributed.py).
    data_parallel_tasks: Sequence[str] = ()
    # It runs through ``TaskSpec.train_head``, so it also runs on any task type (a third-party one
    # included) whose TaskSpec has a ``train_head``, not only on ``task_types``.
    trains_task_heads: bool = False
    # False: it learns from no training image (zero-shot): its jobs run at shots 0% only, which others refuse.
    trains: bool = True
    # Raises a UsageError naming what works when it cannot run on this (backbone, init) pair at all.
    check: Callable[[BackboneSpec, InitSpec], None] = lambda backbone, init: None

    def supports(self, task: TaskSpec) -> bool:
        """Whether jobs of ``task`` can run with this adaptation."""
        return task.name in self.task_types or (self.trains_task_heads and task.train_head is not None)

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
    died without one (``extra`` is merged into it, e.g. ``{"log": path}``)."""

    max_parallel: int = 1  # jobs running at once (--max-parallel)
    values: Mapping[str, Any] = field(default_factory=dict)  # executor-specific options given, by name
    work_dir: Path | None = None  # this store's directory for job logs and per-job result files
    cell: Callable[[Any], Callable[[], dict]] | None = None  # ``cell(job)`` above; `gaia-bench run` sets it
    cell_failed: Callable[[Any, str, Mapping[str, Any]], dict] | None = None  # see above; `gaia-bench run` sets it
    on_state: Callable[[str, str], None] = lambda job_id, state: None  # (job id, "pending" | "running")
    notice: Callable[[str], None] = lambda message: None  # one line for the user (rich markup), e.g. a rerun


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

    name: str  # what --format selects
    description: str  # what the format is, in one line
    render: Callable[[list[dict]], str] | None = None  # None: it renders no result lists
    write_leaderboard: Callable[[Any, Path], list[Path]] | None = None  # None: `gaia-bench leaderboard` skips it
