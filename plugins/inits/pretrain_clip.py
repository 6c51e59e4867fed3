"""``clip``: published CLIP visual towers when the backbone has them here, else CLIP-style
pretraining on the pool's captions — contrastive image-text InfoNCE in both directions with a
learnable temperature, the backbone as the image tower.

The text tower is deliberately small and deterministic: a word-level vocabulary built from the
captions (sorted, so it does not depend on file order), a mean embedding bag and a two-layer MLP.
Captions made from the same template repeat across images, so identical captions in a batch are
all positives of each other (a multi-positive InfoNCE target) rather than false negatives.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from gaia_bench import hookimpl
from gaia_bench.errors import UsageError
from gaia_bench.plugins.backbones.lib.text_tower import TextTower
from gaia_bench.plugins.inits.inits import pretrained_init
from gaia_bench.plugins.inits.lib.pretraining import PoolImages, make_method, run_loop

PLUGIN_ORDER = 230

WORD = re.compile(r"[a-z0-9]+")
MAX_LOGIT_SCALE = math.log(100.0)


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def build_vocabulary(captions: Sequence[str]) -> list[str]:
    """Every word of the captions, sorted; index 0 is reserved for padding."""
    return ["<pad>"] + sorted({word for caption in captions for word in tokenize(caption)})


def encode(captions: Sequence[str], vocabulary: Sequence[str]):
    """``[N, L]`` token ids (0-padded) of the captions."""
    import torch

    index = {w: i for i, w in enumerate(vocabulary)}
    ids = [[index[w] for w in tokenize(c) if w in index] or [0] for c in captions]
    out = torch.zeros(len(ids), max(len(x) for x in ids), dtype=torch.long)
    for row, tokens in enumerate(ids):
        out[row, : len(tokens)] = torch.tensor(tokens)
    return out


def text_tower_module(vocab_size: int, width: int, embed_dim: int):
    from torch import nn

    class TextTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.EmbeddingBag(vocab_size, width, mode="mean", padding_idx=0)
            self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))

        def forward(self, tokens):
            return self.mlp(self.embed(tokens))

    return TextTower()


def info_nce(image_emb, text_emb, logit_scale, caption_ids):
    """Symmetric InfoNCE; pairs whose captions are identical count as positives."""
    import torch.nn.functional as F

    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def train(backbone, pool, hyperparams: dict, spec) -> dict:
    import torch

    captions = [text for _, text in pool.captions]
    vocabulary = build_vocabulary(captions)
    tokens = encode(captions, vocabulary)
    unique = {c: i for i, c in enumerate(sorted(set(captions)))}
    caption_ids = torch.tensor([unique[c] for c in captions])
    images = PoolImages([sample.path for sample, _ in pool.captions], int(hyperparams["image_size"]), spec.mean, spec.std)
    dim = int(hyperparams["embed_dim"])
    image_proj = torch.nn.Linear(backbone.num_features, dim)
    text = text_tower_module(len(vocabulary), int(hyperparams["text_width"]), dim)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / float(hyperparams["init_temperature"]))))

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image_emb = image_proj(backbone(images.batch(indices, generator)))
        return info_nce(image_emb, text(tokens[indices]), logit_scale, caption_ids[indices])

    losses = run_loop([backbone, image_proj, text], len(images), step, hyperparams,
                      f"clip pretraining of {spec.name}: {len(captions)} image-caption pairs", extra_params=[logit_scale])
    # The text side is kept beside the backbone, so that `--adapt zero-shot` can use it (text_tower below).
    return {"losses": losses, "vocabulary": vocabulary, "temperature": float(1.0 / logit_scale.detach().exp()),
            "text_tower": text.state_dict(), "image_projection": image_proj.state_dict()}


def text_tower(path) -> TextTower:
    """The text side of a ``clip`` checkpoint pretrained on a pool: its text tower, the projection of the
    backbone's pooled features into the shared space, and the learnt temperature. A checkpoint written
    before the text side was kept names the command that pretrains it again (the same weights)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if "text_tower" not in state:
        raise UsageError(f"the clip checkpoint {path} predates keeping its text tower",
                         f"pretrain it again (same key, same weights): `gaia-bench pretrain --method clip --model "
                         f"{state.get('backbone')} --force` with the same --init-hp")
    hp, vocabulary = state["hyperparams"], list(state["vocabulary"])
    projection = torch.nn.Linear(*state["image_projection"]["weight"].shape[::-1])
    projection.load_state_dict(state["image_projection"])
    text = text_tower_module(len(vocabulary), int(hp["text_width"]), int(hp["embed_dim"]))
    text.load_state_dict(state["text_tower"])
    return TextTower(
        encode=lambda prompts, device: text.to(device)(encode(prompts, vocabulary).to(device)),
        project_image=lambda features: projection.to(features.device)(features),
        logit_scale=min(1.0 / float(state["temperature"]), math.exp(MAX_LOGIT_SCALE)),
        describe=f"clip pretraining on {state.get('pool')}: word vocabulary of {len(vocabulary) - 1}, mean embedding bag + MLP",
        vocabulary=frozenset(vocabulary[1:]))


METHOD = make_method("clip", {"embed_dim": 64, "text_width": 64, "init_temperature": 0.07}, train)

CLIP = pretrained_init(
    "clip",
    "CLIP-style image-text weights: the published visual towers (open_clip / transformers), else contrastive "
    "pretraining on the upstream pool's captions with a small text tower",
    METHOD,
    weights_source="backbones that publish CLIP weights (open_clip / Hugging Face caches, downloaded when missing); else "
                   "`gaia-bench pretrain --method clip` on the suite's upstream pool (cached)",
    applies_to="any backbone",
)


@hookimpl
def register_inits(register):
    register(CLIP)
