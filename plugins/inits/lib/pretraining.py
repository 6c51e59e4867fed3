"""What every pretraining-method plugin shares: the upstream pool as tensors, one deterministic
training loop with rich progress, and the checkpoint cache.

A method supplies ``train(backbone, pool, hyperparams, loop) -> extra`` (its heads and its loss);
:func:`make_method` turns it into the :class:`~gaia_bench.plugins.inits.lib.pretrain_contract.PretrainMethod` its init carries.
A checkpoint is ``<cache home>/pretrained/<method>/<backbone>-<key>.pt``, where ``key`` hashes the
method, backbone, pool name and version, hyper-parameters and seed: the same request always maps
to the same file, and a second request reuses it (a file lock makes concurrent runs train once).

Asked to (``checkpoint(..., every=...)``), the loop also writes intermediate checkpoints into
:func:`snapshot_dir` (``<backbone>-<key>.steps/step-0000050.pt``): the same payload as the final
checkpoint plus ``step`` and ``total_steps``, written atomically, so `gaia-bench watch` can evaluate
each one as it appears. Writing them reads the weights only: the final checkpoint is the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from gaia_bench.api import BackboneSpec, DatasetSpec
from gaia_bench.errors import UsageError
from gaia_bench.paths import cache_home, data_root
from gaia_bench.plugins.inits.lib.pretrain_contract import PretrainMethod

if TYPE_CHECKING:
    import torch

    from gaia_bench.backbone import Backbone
    from gaia_bench.api import Progress
    from gaia_bench.tasks.datasets.upstream_pool import UpstreamPool

CHECKPOINT_FORMAT = 1
# Shared by every method: a few minutes on a 2-core CPU for timm's test_* backbones.
COMMON_HYPERPARAMS: dict[str, Any] = {
    "steps": 200,  # optimizer steps (``epochs`` > 0 overrides it)
    "epochs": 0.0,  # passes over the method's training items instead of ``steps``
    "batch_size": 64,
    "lr": 0.003,  # AdamW, 5% linear warm-up then cosine to 0
    "weight_decay": 0.05,
    "image_size": 32,  # pretraining resolution (the pool's photos are 28 px)
    "seed": 0,
}


# --------------------------------------------------------------------------- naming and caching
def resolve_hyperparams(defaults: Mapping[str, Any], overrides: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The defaults with the overrides cast to their types; an unknown key is an error."""
    from gaia_bench.overrides import apply_overrides

    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise UsageError(f"pretraining method '{method}' has no hyper-parameter {', '.join(unknown)}",
                         f"it takes: {', '.join(sorted(defaults))}")
    return apply_overrides(dict(defaults), dict(overrides))


def checkpoint_key(method: str, backbone: BackboneSpec, upstream: DatasetSpec, hyperparams: Mapping[str, Any]) -> str:
    blob = json.dumps({"method": method, "backbone": backbone.name, "pool": upstream.name,
                       "pool_version": upstream.version, "hyperparams": dict(hyperparams),
                       "format": CHECKPOINT_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_path(method: str, backbone: BackboneSpec, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone.name)
    return cache_home() / "pretrained" / method / f"{safe}-{key}.pt"


def snapshot_dir(final: Path) -> Path:
    """Where the intermediate checkpoints of the run that writes ``final`` go."""
    return final.with_name(final.stem + ".steps")


def snapshot_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def parse_every(text: str) -> tuple[float, str]:
    """``--checkpoint-every``: ``50`` (steps) or ``0.5ep`` (epochs) -> (50.0, "steps") or (0.5, "epochs")."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ep|epochs?)?\s*", str(text).lower())
    unit = "epochs" if match and match.group(2) else "steps"
    try:
        value = float(match.group(1)) if match else -1.0
    except ValueError:
        value = -1.0
    if value <= 0 or (unit == "steps" and not value.is_integer()):
        raise UsageError(f"--checkpoint-every {text!r} is not a number of steps or epochs",
                         "e.g. --checkpoint-every 50 (steps) or --checkpoint-every 0.5ep (epochs)")
    return value, unit


# Set by ``checkpoint(..., every=...)`` around a method's ``train``: called by :func:`run_loop`
# after every step with (steps done, total steps, items, batch size, losses so far).
_AFTER_STEP: ContextVar[Callable[[int, int, int, int, list[float]], None] | None] = ContextVar("after_step", default=None)


def pool_root(upstream: DatasetSpec, root: Path | None = None, progress: Progress | None = None) -> Path:
    """The pool's directory under ``root`` (default: the default data root), prepared first when missing."""
    from gaia_bench.jobs import prepared_data_dir

    return prepared_data_dir(root or data_root(), upstream, progress)


def load_pool(upstream: DatasetSpec, root: Path | None = None, progress: Progress | None = None) -> UpstreamPool:
    """Sources, captions and unlabelled images of a pool laid out as ``mini-upstream`` is."""
    from gaia_bench.tasks.datasets.upstream_pool import load_pool as read

    return read(pool_root(upstream, root, progress))


# --------------------------------------------------------------------------- images as tensors
class PoolImages:
    """A list of pool images decoded once to ``uint8 [N, 3, S, S]`` at the pretraining size (the
    evaluation transform's bilinear resize), with cheap per-sample augmentation on batches."""

    def __init__(self, paths: Sequence[Path], size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        import numpy as np
        import torch
        from PIL import Image

        arrays = []
        for path in paths:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((size, size), Image.BILINEAR)
                arrays.append(np.asarray(img))
        self.pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, indices: torch.Tensor, generator: torch.Generator, augment: bool = True) -> torch.Tensor:
        """Normalized images; with ``augment``: a random shift of up to 1/8 of the side
        (reflection padding) and a horizontal flip, per sample."""
        import torch
        import torch.nn.functional as F

        x = self.pixels[indices].float() / 255.0
        if augment:
            pad = max(1, self.size // 8)
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator)
            flips = torch.rand(len(x), generator=generator) < 0.5
            x = torch.stack([padded[i, :, t : t + self.size, s : s + self.size] for i, (t, s) in enumerate(offsets.tolist())])
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        return (x - self.mean) / self.std


# --------------------------------------------------------------------------- the training loop
def total_steps(hyperparams: Mapping[str, Any], n_items: int) -> int:
    epochs = float(hyperparams["epochs"])
    if epochs > 0:
        return max(1, math.ceil(epochs * n_items / int(hyperparams["batch_size"])))
    return max(1, int(hyperparams["steps"]))


def run_loop(
    modules: Sequence[torch.nn.Module],
    n_items: int,
    step_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    hyperparams: Mapping[str, Any],
    description: str,
    extra_params: Sequence[torch.nn.Parameter] = (),
) -> list[float]:
    """Train ``modules`` for the schedule's steps on shuffled batches of item indices; returns the
    loss of every step. Deterministic: one generator seeded from ``seed`` draws batches and
    augmentation, AdamW with warm-up and cosine decay."""
    import torch

    from gaia_bench.console import err_console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    steps = total_steps(hyperparams, n_items)
    batch = min(int(hyperparams["batch_size"]), n_items)
    generator = torch.Generator().manual_seed(int(hyperparams["seed"]))
    params = [p for m in modules for p in m.parameters() if p.requires_grad] + list(extra_params)
    optimizer = torch.optim.AdamW(params, lr=float(hyperparams["lr"]), weight_decay=float(hyperparams["weight_decay"]))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    for m in modules:
        m.train()
    losses: list[float] = []
    after_step = _AFTER_STEP.get()
    order = torch.randperm(n_items, generator=generator)
    cursor = 0
    columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=steps, loss="-")
        for _ in range(steps):
            if cursor + batch > n_items:
                order, cursor = torch.randperm(n_items, generator=generator), 0
            indices = order[cursor : cursor + batch]
            cursor += batch
            loss = step_loss(indices, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            progress.update(task, advance=1, loss=f"{losses[-1]:.3f}")
            if after_step is not None:
                after_step(len(losses), steps, n_items, batch, losses)
    for m in modules:
        m.eval()
    return losses


# --------------------------------------------------------------------------- checkpoints
def build_random(backbone: BackboneSpec, seed: int) -> Backbone:
    import torch

    torch.manual_seed(seed)
    return backbone.build(weights=None)


def load_checkpoint(backbone: BackboneSpec, path: Path | str, convert: Callable[[Backbone], Any] | None = None) -> Backbone:
    """The backbone with a pretraining checkpoint's weights (strict: every tensor must match);
    ``convert`` rebuilds the method's architecture changes (e.g. GN+WS) before loading."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("backbone") != backbone.name:
        raise UsageError(f"checkpoint {path} was pretrained for '{state.get('backbone')}', not '{backbone.name}'",
                         f"pretrain one for it: `gaia-bench pretrain --method {state.get('method')} --model {backbone.name}`")
    model = build_random(backbone, 0)
    if convert is not None:
        convert(model)
    model.load_state_dict(state["state_dict"])
    return model.eval()


def _save(path: Path, payload: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _snapshots(directory: Path, interval: tuple[float, str], model: Backbone, header: dict) -> Callable:
    """What :func:`run_loop` calls after each step: save the model every ``interval`` (steps, or
    epochs turned into steps) and after the last step."""
    every, unit = interval

    def after_step(step: int, total: int, n_items: int, batch: int, losses: list[float]) -> None:
        period = max(1, math.ceil(every * n_items / batch)) if unit == "epochs" else int(every)
        if step % period == 0 or step == total:
            _save(directory / snapshot_name(step), {**header, "step": step, "total_steps": total,
                                                   "state_dict": model.state_dict(), "losses": list(losses)})

    return after_step


def make_method(
    name: str,
    hyperparams: Mapping[str, Any],
    train: Callable[[Backbone, UpstreamPool | None, dict, BackboneSpec], dict],
    label_space: Callable[[UpstreamPool, dict], list] | None = None,
    *,
    convert: Callable[[Backbone], Any] | None = None,
    trains: bool = True,
) -> PretrainMethod:
    """A :class:`PretrainMethod` around ``train(backbone, pool, hyperparams, spec)``, which trains
    the backbone in place and returns ``{"losses": [...], ...}`` (stored in the checkpoint).
    ``convert`` changes the freshly built backbone first (and again before loading); a method
    that ``trains`` nothing takes neither the pool nor the common training hyper-parameters."""
    defaults = {**(COMMON_HYPERPARAMS if trains else {"seed": 0}), **hyperparams}

    def key(backbone: BackboneSpec, upstream: DatasetSpec, hp: Mapping[str, Any] | None = None) -> str:
        return checkpoint_key(name, backbone, upstream, resolve_hyperparams(defaults, hp or {}, name))

    def path(backbone: BackboneSpec, upstream: DatasetSpec, hp: Mapping[str, Any] | None = None) -> Path:
        return checkpoint_path(name, backbone, key(backbone, upstream, hp))

    def checkpoint(backbone: BackboneSpec, upstream: DatasetSpec, hp: Mapping[str, Any] | None = None,
                   force: bool = False, root: Path | None = None, progress: Progress | None = None,
                   every: str | None = None) -> Path:
        from filelock import FileLock

        import torch

        resolved = resolve_hyperparams(defaults, hp or {}, name)
        if every is not None and not trains:
            raise UsageError(f"pretraining method '{name}' trains nothing: it has no intermediate checkpoints",
                             "drop --checkpoint-every, or pretrain with a method that trains (e.g. --method imagenet)")
        interval = parse_every(every) if every is not None else None
        digest = checkpoint_key(name, backbone, upstream, resolved)
        target = checkpoint_path(name, backbone, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if target.exists() and not force:
                return target
            pool = load_pool(upstream, root, progress) if trains else None
            model = build_random(backbone, int(resolved["seed"]))
            extra = convert(model) if convert is not None else None
            header = {"format": CHECKPOINT_FORMAT, "method": name, "backbone": backbone.name, "pool": upstream.name,
                      "pool_version": upstream.version, "hyperparams": resolved, "key": digest}
            torch.manual_seed(int(resolved["seed"]))
            token = _AFTER_STEP.set(_snapshots(snapshot_dir(target), interval, model, header) if interval else None)
            try:
                log = train(model, pool, resolved, backbone)
            finally:
                _AFTER_STEP.reset(token)
            if extra is not None:
                log["converted"] = extra
            _save(target, {**header, "state_dict": model.state_dict(), **log})
        return target

    def labels(upstream: DatasetSpec, hp: Mapping[str, Any] | None = None, root: Path | None = None) -> list:
        assert label_space is not None
        return label_space(load_pool(upstream, root), resolve_hyperparams(defaults, hp or {}, name))

    def load(backbone: BackboneSpec, path: Path | str) -> Backbone:
        return load_checkpoint(backbone, path, convert)

    return PretrainMethod(hyperparams=defaults, key=key, path=path, checkpoint=checkpoint, load=load,
                          label_space=labels if label_space else None)


def train_supervised(backbone: Backbone, paths: Sequence[Path], labels: Sequence[int], num_classes: int,
                     hyperparams: Mapping[str, Any], spec: BackboneSpec, description: str) -> list[float]:
    """Cross-entropy of a linear head over the backbone's pooled features (the head is dropped)."""
    import torch
    import torch.nn.functional as F

    images = PoolImages(paths, int(hyperparams["image_size"]), spec.mean, spec.std)
    targets = torch.tensor(list(labels), dtype=torch.long)
    head = torch.nn.Linear(backbone.num_features, num_classes)

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(head(backbone(images.batch(indices, generator))), targets[indices])

    return run_loop([backbone, head], len(images), step, hyperparams, description)
