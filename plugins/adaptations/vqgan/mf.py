"""``mf``: INTERN's multi-stage fine-tuning for low-data transfer, on classification.

1. ``vqgan``: a VQ-GAN trained on the upstream pool (:mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train`, cached
   per config + pool + seed, trained here when missing);
2. ``re-represent``: the VQ-GAN reconstructs the job's downstream training images (the fit part of
   the subset; the held-out part stays real, it chooses the weights in stage 4);
3. ``head``: only the new task head is trained, on the re-represented images, the backbone frozen
   (eval mode: not even BatchNorm statistics move). The frozen backbone's features are computed once;
4. ``finetune``: the whole model, starting from stage 3's head, fine-tuned on the real subset with
   ``finetune``'s recipe (:mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan_finetune`, on the one training loop).

Every stage is logged (``stages.log``) and checkpointed in the job's work directory,
``<cache home>/jobs/<job id>/mf/``; ``state.json`` lists the finished stages, so a killed run
resumes at the stage it was in (the result records which stages came from checkpoints).
Dense tasks are not offered: stage 3 would need each dense head's own training loop.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.paths import cache_home
from gaia_bench.plugins.adaptations.lib.finetune_classification import CLASSIFICATION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGAN_HYPERPARAMS

PLUGIN_ORDER = 330

STAGES = ("vqgan", "re-represent", "head", "finetune")
# Stage 4 is finetune's recipe with its defaults; stage 3 trains the head alone for head_iters steps.
HYPERPARAMS = {**FINETUNE_DEFAULTS, **CLASSIFICATION_HYPERPARAMS, "head_iters": 100, "head_lr": 0.01,
               **VQGAN_HYPERPARAMS}


def job_work_dir(job_id: str, adaptation: str) -> Path:
    """Where a job keeps its stage checkpoints: ``<cache home>/jobs/<job id>/<adaptation>``."""
    return cache_home() / "jobs" / job_id / adaptation


class StageDir:
    """The stage files of one job: ``state.json`` (finished stages and what they measured) and a
    plain-text log; every write goes through a temporary file, so a kill never leaves half a state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        state_file = path / "state.json"
        self.state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {"done": {}}
        if self.state.get("evaluated"):
            # The job finished before, so this is a rerun (--force): the stages are trained anew,
            # not resumed; resuming is for a job killed before its result was written.
            self.log("the job finished before: starting over")
            for stale in [*path.glob("*.pt"), state_file]:
                stale.unlink()
            shutil.rmtree(path / "re-represented", ignore_errors=True)
            self.state = {"done": {}}

    def evaluated(self) -> None:
        """Mark the job finished: a later run of the same job starts over."""
        self.state["evaluated"] = True
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.path / "state.json")

    def done(self, stage: str) -> bool:
        return stage in self.state["done"]

    def finish(self, stage: str, record: dict[str, Any]) -> None:
        self.state["done"][stage] = record
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.path / "state.json")
        self.log(f"stage {STAGES.index(stage) + 1}/4 {stage}: done in {record['seconds']:.1f}s")

    def log(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (self.path / "stages.log").open("a") as fh:
            fh.write(f"{stamp} {message}\n")

    def save(self, name: str, obj: Any) -> Path:
        import torch

        tmp = self.path / f"{name}.tmp"
        torch.save(obj, tmp)
        tmp.replace(self.path / name)
        return self.path / name

    def load(self, name: str) -> Any:
        import torch

        return torch.load(self.path / name, weights_only=True)


def _re_represent(ctx, trained, split, stages: StageDir) -> dict[str, Any]:
    """Stage 2: the VQ-GAN's reconstruction of every fit image, saved as PNG beside the state."""
    import numpy as np
    import torch
    from PIL import Image

    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan import to_model_range, to_unit_range
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_finetune import sample_images

    out = stages.path / "re-represented"
    out.mkdir(exist_ok=True)
    size = trained.model.config.image_size
    advance = ctx.progress.start(f"mf stage 2/4 re-represent {ctx.job.dataset.name}", len(split.fit))
    l1_total, chunk = 0.0, 64
    for start in range(0, len(split.fit), chunk):
        originals = sample_images(split.fit[start : start + chunk], size).float().div(255.0)
        recon = to_unit_range(trained.model.reconstruct(to_model_range(originals)))
        l1_total += (recon - originals).abs().mean(dim=(1, 2, 3)).sum().item()
        pixels = (recon * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for offset, image in enumerate(pixels):
            Image.fromarray(np.ascontiguousarray(image)).save(out / f"{start + offset:05d}.png")
        advance(len(pixels))
    ctx.progress.finish()
    return {"n_images": len(split.fit), "image_size": size, "mean_l1_vs_original": round(l1_total / max(len(split.fit), 1), 5)}


def _train_head(ctx, hp: dict[str, Any], split, backbone, head, stages: StageDir) -> dict[str, Any]:
    """Stage 3: the head alone on frozen-backbone features of the re-represented images."""
    import numpy as np
    import torch
    from torch import nn

    from gaia_bench.api import Sample
    from gaia_bench.devices import autocast
    from gaia_bench.imagedata import ImageSamples, eval_transform
    from gaia_bench.plugins.adaptations.lib.training import check_errors

    spec, size, device = ctx.job.backbone, int(ctx.config.image_size), ctx.device
    rerep = [Sample(s.key, stages.path / "re-represented" / f"{i:05d}.png", s.target) for i, s in enumerate(split.fit)]
    backbone.eval().requires_grad_(False)
    loader = torch.utils.data.DataLoader(ImageSamples(rerep, eval_transform(size, spec.mean, spec.std), size),
                                         batch_size=int(ctx.batch_size), num_workers=0)
    iters = int(hp["head_iters"])
    advance = ctx.progress.start(f"mf stage 3/4 head {spec.name} / {ctx.job.dataset.name}", iters)
    features = torch.zeros(len(rerep), backbone.num_features)
    with torch.no_grad(), autocast(device, ctx.config.precision):  # the head below trains in fp32
        for images, indices, errors in loader:
            check_errors(rerep, indices, errors)
            features[indices] = backbone(images.to(device)).float().cpu()
    targets = torch.as_tensor(np.asarray(split.y_fit), dtype=torch.long)
    optimizer = torch.optim.AdamW(head.parameters(), lr=float(hp["head_lr"]), weight_decay=float(hp["weight_decay"]))
    criterion = nn.CrossEntropyLoss(label_smoothing=float(hp["label_smoothing"]))
    generator = torch.Generator().manual_seed(int(ctx.config.seed))
    batch, losses = min(int(hp["batch"]), len(rerep)), []
    head.train()
    for step in range(iters):
        picks = torch.randperm(len(rerep), generator=generator)[:batch]
        loss = criterion(head(features[picks].to(device)), targets[picks].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, iters // 10) == 0 or step == iters - 1:
            losses.append([step + 1, round(float(loss.detach()), 5)])
        advance(1)
    ctx.progress.finish()
    with torch.no_grad():
        fit_top1 = float((head(features.to(device)).argmax(1).cpu() == targets).float().mean() * 100)
    return {"iterations": iters, "lr": float(hp["head_lr"]), "loss_curve": losses,
            "top1_on_re_represented": round(fit_top1, 2), "trainable_params": sum(p.numel() for p in head.parameters())}


def run(ctx) -> AdaptationResult:
    import torch
    from torch import nn

    from gaia_bench.plugins.adaptations.lib.training import rng_devices
    from gaia_bench.runner import peak_memory_mb
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_finetune import evaluate_test, fine_tune, job_split
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import vqgan_for_job

    hp: dict[str, Any] = {**HYPERPARAMS, **ctx.hyperparams}
    stages = StageDir(job_work_dir(ctx.job.job_id, "mf"))
    resumed = [s for s in STAGES if stages.done(s)]
    first = next((i for i, s in enumerate(STAGES) if s not in resumed), len(STAGES))
    stages.log(f"job {ctx.job.job_id}: " + (f"resuming at stage {first + 1}/4 ({', '.join(resumed)} from checkpoints)"
                                            if resumed else "starting at stage 1/4"))
    seed = int(ctx.config.seed)
    split = job_split(ctx, hp)
    memory: dict[str, float] = {}

    def mark(stage: str, seconds: float, **record: Any) -> None:
        memory[stage] = peak_memory_mb("cpu")["peak_rss_mb"]
        stages.finish(stage, {"seconds": round(seconds, 3), "peak_rss_mb": memory[stage], **record})

    with torch.random.fork_rng(devices=rng_devices(ctx.device)):
        # stage 1: always loaded (later stages need the model); trained only when not cached
        stages.log("stage 1/4 vqgan: loading or training")
        trained, seconds = vqgan_for_job(ctx, hp)
        if not stages.done("vqgan"):
            mark("vqgan", seconds, directory=str(trained.directory), steps=trained.summary["config"]["steps"],
                 trained_seconds=trained.summary["train_seconds"], pool_l1=trained.summary["pool_l1"],
                 pool_codes_used=trained.summary["pool_codes_used"])

        if not stages.done("re-represent"):
            stages.log("stage 2/4 re-represent: running")
            start = time.perf_counter()
            record = _re_represent(ctx, trained, split, stages)
            mark("re-represent", time.perf_counter() - start, **record)

        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, split.num_classes)
        model = nn.Sequential(backbone, head).to(ctx.device)
        if not stages.done("head"):
            stages.log("stage 3/4 head: running")
            start = time.perf_counter()
            head_before = {k: v.detach().clone() for k, v in head.state_dict().items()}
            record = _train_head(ctx, hp, split, backbone, head, stages)
            stages.save("head.pt", {"model": model.state_dict(), "head_before": head_before})
            mark("head", time.perf_counter() - start, **record)
        else:
            model.load_state_dict(stages.load("head.pt")["model"])

        if not stages.done("finetune"):
            stages.log("stage 4/4 finetune: running")
            start = time.perf_counter()
            backbone.requires_grad_(True)
            model, record, trainable = fine_tune(ctx, hp, split, backbone, head, label="mf stage 4/4 finetune")
            stages.save("finetune.pt", model.state_dict())
            mark("finetune", time.perf_counter() - start, trainable_params=trainable, **record)
        else:
            model.load_state_dict(stages.load("finetune.pt"))

        start = time.perf_counter()
        metrics, predictions, calibration = evaluate_test(ctx, model, "mf", split)
        eval_seconds = time.perf_counter() - start

    done = stages.state["done"]
    stages.evaluated()
    stages.log(f"evaluated: {json.dumps({k: round(v, 3) for k, v in metrics.items()})}")
    details = {
        "work_dir": str(stages.path),
        "resumed_stages": resumed,
        "started_at_stage": first + 1,
        "stages": done,
        "steps_per_stage": {"vqgan": done["vqgan"]["steps"], "re-represent": done["re-represent"]["n_images"],
                            "head": done["head"]["iterations"], "finetune": done["finetune"]["iterations_run"]},
        "trainable_params_per_stage": {"vqgan": trained.summary["parameters"],
                                       "head": done["head"]["trainable_params"],
                                       "finetune": done["finetune"]["trainable_params"]},
        "peak_rss_mb_per_stage": {s: done[s]["peak_rss_mb"] for s in STAGES},
        "vqgan": {k: trained.summary[k] for k in ("pool_l1", "pool_psnr_db", "pool_codes_used", "pool_perplexity",
                                                 "train_seconds", "parameters")} | {"directory": str(trained.directory)},
        **calibration,
    }
    return AdaptationResult(
        metrics=metrics, predictions=predictions, details=details,
        stage_seconds={**{f"mf_{s.replace('-', '_')}": done[s]["seconds"] for s in STAGES}, "evaluate": eval_seconds},
        trainable_params=int(done["finetune"]["trainable_params"]),
    )


MF = AdaptationSpec(
    name="mf",
    description="INTERN's multi-stage fine-tuning: VQ-GAN on the upstream pool, re-represented subset, "
                "head-only training on it (backbone frozen), then the whole model on the real subset",
    task_types=("classification",),
    run=run,
    hyperparams=HYPERPARAMS,
)


@hookimpl
def register_adaptations(register):
    register(MF)
