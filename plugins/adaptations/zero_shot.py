"""``zero-shot``: CLIP-style classification with no training image, CLIP_benchmark's
``zeroshot_classification``: every class is the mean of its prompts' text embeddings, and a test
image goes to the class whose embedding is most similar to its own.

* Text: the init's own text tower (:class:`~gaia_bench.plugins.backbones.lib.text_tower.TextTower`):
  open_clip's or transformers' CLIP / SigLIP text half of the published checkpoint the image tower
  came from, or the ``clip`` init's text tower pretrained with it on the upstream pool. Any other
  init has no text tower: planning stops with what works.
* Prompts (:mod:`~gaia_bench.plugins.adaptations.lib.zero_shot_prompts`): curated class names ×
  the dataset's templates. A class embedding is CLIP's: every prompt's embedding normalised, their
  mean normalised again.
* Images: the test split's pooled features from the feature cache (the backbone is the image
  tower), projected into the shared space where the backbone stops before it, normalised.
* Scores: ``logit_scale * cosine + logit_bias`` (the model's own logits), so intervals, rescoring
  and top-5 read them as any classifier's.

It trains nothing, so its jobs run at shots ``0%`` alone (``n_train`` 0), whatever ``--shots``
says: the data-efficiency table shows them as its ``0%`` column.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec, BackboneSpec, InitSpec
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.zero_shot_prompts import ClassPrompts, class_prompts

if TYPE_CHECKING:
    import torch

    from gaia_bench.plugins.backbones.lib.text_tower import TextTower

PLUGIN_ORDER = 306

INIT = "clip"
HYPERPARAMS = {"templates": "dataset", "class_names": "curated"}
READERS = ("open_clip", "transformers")  # backbone sources whose published CLIP weights carry a text tower
WORKS = ("use --init clip: open_clip or transformers CLIP / SigLIP weights in the local cache, or the clip init "
         "pretrained on the upstream pool (any backbone)")
PROMPT_BATCH = 256  # prompts encoded at once
ROW_CHUNK = 65536  # image features scored at once


def check(backbone: BackboneSpec, init: InitSpec) -> None:
    """Planning: only a ``clip`` init has a text tower, read from published weights of the
    ``READERS`` sources or from its own pretraining."""
    if init.name != INIT:
        raise UsageError(f"zero-shot needs an init with a text tower, and init '{init.name}' has none", WORKS)
    if INIT in backbone.published_weights and backbone.source not in READERS:
        raise UsageError(f"zero-shot cannot read a text tower from the {backbone.source} backbone "
                         f"'{backbone.name}''s CLIP weights", f"it reads {' and '.join(READERS)} ones; {WORKS}")


def text_tower(job) -> TextTower:
    """The text half of the weights the job's backbone was initialized with (its ``weights_id``)."""
    if ":pretrained:" in job.config.weights_id:
        from gaia_bench.plugins.inits.pretrain_clip import text_tower as pretrained

        ctx = job.init_context
        return pretrained(job.init.pretrain.path(job.backbone, ctx.upstream, ctx.hyperparams))
    if job.backbone.source == "open_clip":
        from gaia_bench.plugins.backbones.open_clip_backbones import text_tower as read
    else:
        from gaia_bench.plugins.backbones.transformers_backbones import text_tower as read
    return read(job.backbone, job.backbone.published_weights[INIT].locate())


def _unit(x: "torch.Tensor") -> "torch.Tensor":
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def class_embeddings(tower: TextTower, prompts: ClassPrompts, device: str = "cpu",
                     advance=lambda n: None) -> "torch.Tensor":
    """``[classes, D]`` unit class embeddings: per class the normalised mean of its prompts'
    normalised embeddings, prompts encoded ``PROMPT_BATCH`` at a time."""
    import torch

    out, pending, owners = [], [], []

    def flush() -> None:
        if pending:
            embedded = _unit(tower.encode(pending, device).float())
            for c in dict.fromkeys(owners):
                rows = [i for i, owner in enumerate(owners) if owner == c]
                out.append(_unit(embedded[rows].mean(dim=0)))
            advance(len(dict.fromkeys(owners)))
            pending.clear()
            owners.clear()

    for c in range(len(prompts.names)):
        texts = prompts.prompts(c)
        if pending and len(pending) + len(texts) > PROMPT_BATCH:
            flush()
        pending.extend(texts)
        owners.extend([c] * len(texts))
    flush()
    return torch.stack(out)


def scores(features: np.ndarray, tower: TextTower, classes: "torch.Tensor", device: str = "cpu") -> np.ndarray:
    """``[N, classes]`` float32 logits of the cached pooled ``features``, ``ROW_CHUNK`` rows at a time."""
    import torch

    blocks = []
    with torch.no_grad():
        for start in range(0, len(features), ROW_CHUNK):
            x = torch.as_tensor(np.asarray(features[start:start + ROW_CHUNK]), dtype=torch.float32, device=device)
            logits = tower.logit_scale * _unit(tower.project_image(x).float()) @ classes.T + tower.logit_bias
            blocks.append(logits.cpu().numpy().astype(np.float32))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(classes)), np.float32)


def run_zero_shot(ctx) -> AdaptationResult:
    """Embed the classes' prompts with the init's text tower, score the cached test features."""
    job, hp, test = ctx.job, ctx.hyperparams, ctx.data.test
    prompts = class_prompts(job.dataset.name, list(test.classes), hp["class_names"], hp["templates"])
    features = ctx.features(job.dataset.test_split)  # first: builds (pretrains) the init's weights if needed
    start = time.perf_counter()
    tower = text_tower(job)
    advance = ctx.progress.start(f"zero-shot prompts {job.dataset.name}", len(prompts.names))
    classes = class_embeddings(tower, prompts, ctx.device, advance)
    ctx.progress.finish()
    encode_seconds = time.perf_counter() - start
    logits = scores(features, tower, classes, ctx.device)
    details = {"text_tower": tower.describe, "prompts": prompts.source, "templates": len(prompts.templates),
               "n_prompts": sum(len(prompts.prompts(c)) for c in range(len(prompts.names))),
               "logit_scale": tower.logit_scale, "logit_bias": tower.logit_bias, "example": prompts.prompts(0)[0]}
    if tower.vocabulary is not None:  # a word-level tower drops what it never read: say which names it cannot see
        from gaia_bench.plugins.inits.pretrain_clip import tokenize

        details["unknown_words"] = sorted({w for names in prompts.names for n in names for w in tokenize(n)}
                                          - tower.vocabulary)
    return AdaptationResult(predictions=list(logits), details={"zero_shot": details},
                            stage_seconds={"zero_shot_text": encode_seconds,
                                           "zero_shot_score": time.perf_counter() - start - encode_seconds})


ZERO_SHOT = AdaptationSpec(
    name="zero-shot",
    description="no training image: CLIP-style inits' text tower embeds curated class names × prompt "
                "templates; cached test features scored by cosine (runs at shots 0%)",
    task_types=("classification",),
    run=run_zero_shot,
    hyperparams=HYPERPARAMS,
    trains=False,
    check=check,
)


@hookimpl
def register_adaptations(register):
    register(ZERO_SHOT)
