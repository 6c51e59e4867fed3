"""The classification metrics against scikit-learn and hand counts; the linear probe on separable
data through a real dataset plugin; the backbone plugins' contract (pooled features, pyramid)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from typer.testing import CliRunner

import gaia_bench
from gaia_bench.api import Sample, Samples
from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from gaia_bench.store import ResultsStore
from gaia_bench.tasks.types.classification import classification_metrics

runner = CliRunner()


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 0], num_classes=4)
    assert m["top1"] == pytest.approx(400 / 6)
    assert m["mean_per_class_acc"] == pytest.approx(100 * (3 / 4 + 1 + 0) / 3)  # class 3 absent: not averaged


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 7, 500))
    m = classification_metrics(y, p, 7)
    assert m["top1"] == pytest.approx(100 * accuracy_score(y, p))
    assert m["mean_per_class_acc"] == pytest.approx(100 * balanced_accuracy_score(y, p))


COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 40)]


def _colour_dataset(name: str) -> gaia_bench.DatasetSpec:
    """Four classes of noisy solid colours: linearly separable even from random features."""

    def prepare(root):
        rng = np.random.default_rng(0)
        for split, n in (("train", 40), ("test", 15)):
            for c, colour in enumerate(COLOURS):
                (root / split / str(c)).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    img = np.clip(np.array(colour) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(img).save(root / split / str(c) / f"{i}.png")

    def load(root, split):
        samples = [Sample(f"{split}/{c}/{i}.png", root / split / str(c) / f"{i}.png", c)
                   for c in range(4) for i in range(40 if split == "train" else 15)]
        return Samples(samples, [str(c) for c in range(4)])

    return gaia_bench.DatasetSpec(name=name, task="classification", description="colours", load=load,
                                  verify=lambda root: [] if root.exists() else ["missing"], prepare=prepare,
                                  splits={"train": 160, "test": 60}, num_classes=4)


class ColourPlugin:
    @gaia_bench.hookimpl
    def register_datasets(self, register):
        register(_colour_dataset("colours"))


def test_linear_probe_separates_separable_data(register_plugin, tmp_path):
    register_plugin(ColourPlugin(), "colour-plugin")
    store = tmp_path / "r.db"
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--dataset", "colours", "--shots", "25%",
                                 "--image-size", "32", "--store", str(store), "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        rec = s.query()[0]
    assert rec["n_train"] == 40 and rec["metrics"]["top1"] >= 95.0
    assert rec["details"]["probe"]["weight_decay"] is not None and rec["details"]["probe"]["n_val"] > 0


def test_timm_backbone_contract():
    import torch

    spec = get_registries().backbones.get("test_resnet")
    assert spec.source == "timm" and spec.input_size == 160 and "imagenet" in spec.published_weights
    backbone = spec.build()
    x = torch.randn(2, 3, 64, 64)
    assert backbone(x).shape == (2, backbone.num_features)
    maps = backbone.pyramid(x)
    assert [m.shape[1] for m in maps] == list(backbone.pyramid_channels)
    assert [64 // m.shape[-1] for m in maps] == list(backbone.pyramid_reductions)


def test_torchvision_backbone_contract():
    import torch

    regs = get_registries()
    spec = regs.backbones.get("torchvision:resnet18")
    assert spec.source == "torchvision" and regs.backbones.get("resnet18").source == "timm"
    backbone = spec.build()
    assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    assert [m.shape[1] for m in backbone.pyramid(torch.randn(1, 3, 64, 64))] == [64, 128, 256, 512]
    no_pyramid = regs.backbones.get("torchvision:mobilenet_v3_small").build()
    with pytest.raises(gaia_bench.errors.GaiaBenchError, match="gives no feature pyramid"):
        no_pyramid.pyramid(torch.randn(1, 3, 64, 64))


def test_models_listing_and_filters():
    out = runner.invoke(app, ["models", "test_*"], env={"COLUMNS": "200"}).output
    assert "test_resnet" in out and "test_vit" in out
    tv = runner.invoke(app, ["models", "resnet18", "--source", "torchvision"], env={"COLUMNS": "200"}).output
    assert "torchvision:resnet18" in tv
    pre = runner.invoke(app, ["models", "vgg1*", "--pretrained"], env={"COLUMNS": "200"}).output
    assert "vgg16" in pre and "published" in pre


def test_holdout_keeps_every_class_in_the_fit_part():
    from gaia_bench.protocol import stratified_holdout

    y = np.array([0] * 10 + [1] * 2 + [2])
    fit, val = stratified_holdout(y, 0.2, seed=0)
    assert sorted(fit + val) == list(range(13))
    assert set(y[fit]) == {0, 1, 2} and sorted(y[val]) == [0, 0, 1]  # round(0.2*10)=2, min 1, none from a singleton


def test_weight_decay_selection_prefers_regularization_on_noise():
    from gaia_bench.plugins.adaptations.linear_probe import HYPERPARAMS, select_weight_decay

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 50))
    y = (x[:, 0] > 0).astype(int)  # one informative feature among 50
    from gaia_bench.protocol import stratified_holdout

    fit, val = stratified_holdout(y, 0.2, seed=0)
    chosen = select_weight_decay(x, y, 2, HYPERPARAMS["wd_grid"], fit, val, 1000, patience=9)
    scores = chosen["val_top1_by_wd"]
    assert chosen["n_val"] == 40 and chosen["weight_decay"] >= 1e-2  # noise features: decay helps
    assert chosen["val_top1"] == max(scores.values()) > scores["1e-06"]
    assert set(chosen["val_top1_by_wd"]) == {f"{w:g}" for w in HYPERPARAMS["wd_grid"]}  # patience 9: full sweep


def test_weight_decay_grid_presets():
    from gaia_bench.errors import UsageError
    from gaia_bench.plugins.adaptations.linear_probe import HYPERPARAMS, resolve_wd_grid

    assert resolve_wd_grid(HYPERPARAMS["wd_grid"], 40, 2) == (HYPERPARAMS["wd_grid"], 2)  # the default, unchanged
    grid, patience = resolve_wd_grid("wide", 40, 2)  # dinov3's C = 1e-6 ... 1e5 over 40 fit items
    assert len(grid) == 45 == patience and grid == sorted(grid)
    assert grid[0] == pytest.approx(1 / (1e5 * 40)) and grid[-1] == pytest.approx(1 / (1e-6 * 40))
    assert grid[22] == pytest.approx(1 / (10**-0.5 * 40))  # the middle C: 10^-0.5
    for bad in ("wid", [], [0.1, -1.0]):
        with pytest.raises(UsageError, match="preset: wide"):
            resolve_wd_grid(bad, 40, 2)


def test_wide_weight_decay_preset_end_to_end(register_plugin, tmp_path):
    register_plugin(ColourPlugin(), "colour-plugin")
    store = tmp_path / "r.db"
    common = ["run", "--model", "test_resnet", "--dataset", "colours", "--shots", "25%", "--image-size", "32",
              "--store", str(store), "--data-root", str(tmp_path / "data")]
    assert runner.invoke(app, [*common, "--hp", "wd_grid=wide"]).exit_code == 0
    runner.invoke(app, [*common, "--hp", "wd_grid=wid"])
    with ResultsStore(store) as s:
        wide, typo = sorted(s.query(), key=lambda r: r["config"]["hyperparams"]["wd_grid"], reverse=True)
    assert len(wide["details"]["probe"]["val_top1_by_wd"]) == 45 and wide["metrics"]["top1"] >= 95.0
    assert typo["status"] == "failed" and "wd_grid='wid' is neither a list" in typo["error"]
