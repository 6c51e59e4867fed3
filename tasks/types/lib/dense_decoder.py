"""The head of the dense tasks (segmentation, depth): a light FPN decoder over the backbone's
pyramid, its loss and its per-image predictions. Trained by :mod:`gaia_bench.plugins.adaptations.lib.dense_probe`.

Decoder (a small FPN, as in semantic-FPN heads): 1x1 lateral convolutions to ``WIDTH`` (64)
channels on the pyramid maps it is given (fine to coarse); from the coarsest map, upsample
(bilinear) and add the next finer lateral, down to the finest; then a 3x3 conv + ReLU and a 1x1
predictor; the output is upsampled bilinearly to the input size (training) or to the ground
truth's resolution (prediction).

* segmentation: one logit per class, cross-entropy with ``ignore_index`` 255 (VOC's void); an
  image's prediction is its confusion counts (argmax at the mask's resolution), which the task sums
  over the split into ONE confusion matrix.
* depth: the predictor outputs log-depth (its bias starts at the mean log ground-truth depth of the
  training samples); trained with BTS's scale-invariant log loss
  ``10 * sqrt(mean(d^2) - 0.85 * mean(d)^2)``, ``d = log pred - log gt`` over valid pixels
  (``gt > 0``) of the batch; an image's prediction is its metric terms in metres (``exp``, clipped
  to [1e-3, max_depth]) at the ground truth's resolution on its valid pixels, with the dataset's
  crop (KITTI: Garg, 80 m).

Training targets are the ground truth resized to the input size with nearest-neighbour, only when
their size differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench.api import DatasetSpec, HeadInput, Sample, Samples

WIDTH = 64
SILOG_LAMBDA = 0.85
MIN_DEPTH = 1e-3
IGNORE_INDEX = 255


def _decoder_class():
    import torch.nn.functional as F
    from torch import nn

    class FPNDecoder(nn.Module):
        """Laterals to ``width`` channels, top-down upsample-and-sum, 3x3 conv + ReLU, 1x1 predictor."""

        def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = WIDTH) -> None:
            super().__init__()
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
            self.fuse = nn.Conv2d(width, width, 3, padding=1)
            self.predict = nn.Conv2d(width, out_channels, 1)

        def forward(self, feats: Sequence[Any], size: tuple[int, int]):
            x = self.lateral[-1](feats[-1])
            for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
                x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False) + lateral(f)
            x = self.predict(F.relu(self.fuse(x)))
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return FPNDecoder


def build_decoder(in_channels: Sequence[int], out_channels: int, seed: int, width: int = WIDTH):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _decoder_class()(in_channels, out_channels, width)


def read_target(target) -> np.ndarray:
    """Segmentation: class indices (uint8, 255 void); depth: float32 metres, 0 = invalid."""
    from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget, SegmentationTarget

    if isinstance(target, SegmentationTarget):
        from gaia_bench.tasks.datasets.lib.voc_format import read_segmentation

        return read_segmentation(target.mask_path)
    if isinstance(target, DepthTarget):
        from gaia_bench.tasks.datasets.lib.kitti_depth_format import read_kitti_depth, read_nyu_depth

        return (read_kitti_depth if target.kind == "kitti" else read_nyu_depth)(target.depth_path)
    raise TypeError(f"no dense reader for a {type(target).__name__} target")


def resize_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if values.shape == size:
        return values
    rows = (np.arange(size[0]) * values.shape[0] // size[0]).clip(0, values.shape[0] - 1)
    cols = (np.arange(size[1]) * values.shape[1] // size[1]).clip(0, values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def _training_map(sample: Sample, size: tuple[int, int], mirrored: bool) -> np.ndarray:
    values = resize_nearest(read_target(sample.target), size)
    return np.ascontiguousarray(values[:, ::-1]) if mirrored else values


def silog_loss(log_pred, gt, lam: float = SILOG_LAMBDA):
    """BTS's scale-invariant log loss over pixels with ``gt > 0`` (``log_pred`` and ``gt``: [B,1,H,W])."""
    import torch

    valid = gt > MIN_DEPTH
    if not valid.any():
        return log_pred.sum() * 0.0
    d = log_pred[valid] - torch.log(gt[valid])
    return 10.0 * torch.sqrt(torch.clamp((d ** 2).mean() - lam * d.mean() ** 2, min=1e-12))


class _DecoderHead(ABC):
    """What both dense heads share: the decoder, batching targets on its device, running it per
    image at the ground truth's resolution."""

    def __init__(self, inputs: HeadInput, out_channels: int, seed: int) -> None:
        self.size = inputs.size
        self.out_channels = out_channels
        self.module = build_decoder(list(inputs.channels), out_channels, seed)

    def _device(self):
        return next(self.module.parameters()).device

    def loss(self, inputs, targets: Sequence[Any]):
        import torch

        return self._loss(self.module(inputs, self.size), torch.stack(list(targets)).to(self._device()))

    def predict(self, inputs, samples: Sequence[Sample]) -> list[Any]:
        import torch

        self.module.eval()
        out = []
        with torch.no_grad():
            for i, sample in enumerate(samples):
                gt = read_target(sample.target)
                logits = self.module([f[i:i + 1] for f in inputs], tuple(gt.shape))
                out.append(self._prediction(logits[0], gt, sample))
        return out

    @abstractmethod
    def _loss(self, out, target):
        """The loss of the decoder's output at the input size against the stacked targets."""

    @abstractmethod
    def _prediction(self, out, gt: np.ndarray, sample: Sample) -> Any:
        """One image's prediction from the decoder's output at its ground truth's resolution."""


class SegmentationHead(_DecoderHead):
    """One logit per class; cross-entropy ignoring void; predictions are confusion counts."""

    def target(self, sample: Sample, mirrored: bool = False):
        import torch

        return torch.from_numpy(_training_map(sample, self.size, mirrored).astype(np.int64))

    def _loss(self, out, target):
        import torch.nn.functional as F

        if not (target != IGNORE_INDEX).any():
            return out.sum() * 0.0
        return F.cross_entropy(out, target, ignore_index=IGNORE_INDEX)

    def _prediction(self, out, gt: np.ndarray, sample: Sample) -> np.ndarray:
        from gaia_bench.tasks.types.lib.metrics_segmentation import confusion_matrix

        pred = out.argmax(dim=0).cpu().numpy()
        return confusion_matrix(gt, pred, self.out_channels, getattr(sample.target, "ignore_index", IGNORE_INDEX))

    def describe(self) -> dict[str, Any]:
        return {"kind": "fpn", "width": WIDTH, "output": f"{self.out_channels} class logits",
                "loss": f"cross-entropy (ignore {IGNORE_INDEX})"}


class DepthHead(_DecoderHead):
    """Log-depth starting at the training samples' mean log depth; SILog loss; predictions are an
    image's metric terms (:func:`gaia_bench.tasks.types.depth.depth_terms`)."""

    def __init__(self, inputs: HeadInput, fit: Samples, seed: int) -> None:
        import torch

        super().__init__(inputs, 1, seed)
        depths = torch.from_numpy(np.stack([_training_map(s, self.size, False) for s in fit.samples]).astype(np.float32))
        valid = depths > MIN_DEPTH
        log_init = float(torch.log(depths[valid]).mean()) if valid.any() else 0.0
        with torch.no_grad():
            self.module.predict.bias.fill_(log_init)

    def target(self, sample: Sample, mirrored: bool = False):
        import torch

        return torch.from_numpy(_training_map(sample, self.size, mirrored).astype(np.float32))[None]

    def _loss(self, out, target):
        return silog_loss(out, target)

    def _prediction(self, out, gt: np.ndarray, sample: Sample):
        import torch

        from gaia_bench.tasks.types.depth import depth_terms

        cap = float(getattr(sample.target, "max_depth", 80.0))
        pred = torch.exp(out[0]).clamp(MIN_DEPTH, cap).cpu().numpy().astype(np.float64)
        return depth_terms(gt, pred, getattr(sample.target, "kind", "kitti"))

    def describe(self) -> dict[str, Any]:
        return {"kind": "fpn", "width": WIDTH, "output": "log-depth", "loss": f"silog (lambda {SILOG_LAMBDA})"}


def make_segmentation_head(inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
                           seed: int) -> SegmentationHead:
    return SegmentationHead(inputs, len(fit.classes) or int(dataset.num_classes or 0), seed)


def make_depth_head(inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
                    seed: int) -> DepthHead:
    return DepthHead(inputs, fit, seed)
