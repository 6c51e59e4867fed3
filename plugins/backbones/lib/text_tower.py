"""The text half of a CLIP-style model, as `--adapt zero-shot` uses it next to the backbone's cached
image features. The plugins that know a family of image-text checkpoints build one (open_clip, transformers
CLIP / SigLIP, the ``clip`` init's own pretraining); the adaptation knows none of them.

Zero-shot scores are ``logit_scale * cos(project_image(features), class embedding) + logit_bias``: CLIP's
logits (SigLIP adds its learnt bias), so a softmax of them is the model's own class probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TextTower:
    """Prompts in, embeddings out, in the space the image tower's embeddings live in."""

    # ``encode(prompts, device)``: ``[len(prompts), D]`` text embeddings (not normalised), without gradients.
    encode: Callable[[Sequence[str], str], "torch.Tensor"]
    # The backbone's pooled features (what the feature cache holds) -> ``[N, D]`` image embeddings: CLIP's
    # visual projection where the backbone stops before it (transformers CLIP, the clip init), else identity.
    project_image: Callable[["torch.Tensor"], "torch.Tensor"]
    logit_scale: float  # CLIP's learnt 1 / temperature (already exponentiated)
    describe: str  # where it comes from, in words (stored in the record)
    logit_bias: float = 0.0  # SigLIP's learnt bias; 0 for CLIP
    vocabulary: frozenset[str] | None = None  # a word-level tower's known words (None: subword, knows all)
