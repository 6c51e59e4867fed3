"""GAIA / GV-B ResNet-50 checkpoints: key mapping on synthetic state dicts shaped like each
release (mmcls backbone, mmdet whole model, Up-G Central_Model, DDP wrapper), the catalog, the
missing-file message through the CLI, and the `gaia` init loading a file from the documented directory."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from gaia_bench.api import InitContext
from gaia_bench.cli import app
from gaia_bench.plugins.backbones import gaia_checkpoints as gaia


def registries():
    from gaia_bench.manager import get_host

    return get_host().registries()


@pytest.fixture(scope="module")
def resnet50():
    """timm's ResNet-50 backbone (the catalog's target) and random tensors for every backbone key."""
    backbone = registries().backbones.get("timm:resnet50").build()
    generator = torch.Generator().manual_seed(0)
    tensors = {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone())
               for k, v in backbone.trunk.state_dict().items()}
    return backbone, tensors


def mmdet_checkpoint(tensors):
    """An mmdet Faster R-CNN checkpoint: backbone.* beside neck / heads, inside state_dict."""
    state = {f"backbone.{k}": v for k, v in tensors.items()}
    state.update({"neck.lateral_convs.0.conv.weight": torch.zeros(256, 256, 1, 1), "rpn_head.rpn_conv.weight": torch.zeros(1),
                  "roi_head.bbox_head.fc_cls.weight": torch.zeros(1)})
    return {"meta": {"mmdet_version": "2.8.0"}, "state_dict": state, "optimizer": {"state": {}}}


def up_g_checkpoint(tensors):
    """gv-benchmark's Central_Model: main and patch ResNet branches plus transfer layers."""
    state = {f"model.backbone.gv_global.{k}": v for k, v in tensors.items()}
    state.update({f"model.backbone.gv_patch.{k}": torch.zeros_like(v) for k, v in tensors.items()})
    state["model.trans.gv_global.gv_patch.layer1.conv.weight"] = torch.zeros(64, 256, 1, 1)
    return {"state_dict": state}


def test_every_release_layout_maps_with_no_missing_backbone_key(resnet50):
    backbone, tensors = resnet50
    target = backbone.trunk.state_dict()
    layouts = {
        "mmcls backbone (Up-A / Up-E)": ({"state_dict": dict(tensors)}, "", set()),
        "mmdet whole model": (mmdet_checkpoint(tensors), "backbone.",
                              {"neck.lateral_convs.0.conv.weight", "rpn_head.rpn_conv.weight", "roi_head.bbox_head.fc_cls.weight"}),
        "Up-G Central_Model": (up_g_checkpoint(tensors), "model.backbone.gv_global.",
                               {f"model.backbone.gv_patch.{k}" for k in tensors} | {"model.trans.gv_global.gv_patch.layer1.conv.weight"}),
        "DDP in a model wrapper": ({"model": {f"module.{k}": v for k, v in tensors.items()}}, "", set()),
        "torchvision file with its classifier": ({**tensors, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, "", set()),
    }
    for name, (checkpoint, prefix, unexpected) in layouts.items():
        mapped = gaia.map_resnet_checkpoint(checkpoint, target)
        assert mapped.prefix == prefix, name
        assert mapped.missing == [], name
        assert set(mapped.unexpected) == unexpected, name
        assert mapped.loaded == sum(not k.endswith("num_batches_tracked") for k in target)
        assert torch.equal(mapped.state_dict["layer4.2.conv3.weight"], tensors["layer4.2.conv3.weight"]), name  # main branch


def test_torchvision_resnet50_takes_the_same_checkpoints(resnet50):
    _, tensors = resnet50
    torchvision_backbone = registries().backbones.get("torchvision:resnet50").build()
    mapped = gaia.map_resnet_checkpoint(mmdet_checkpoint(tensors), torchvision_backbone.trunk.state_dict())
    assert mapped.missing == [] and mapped.prefix == "backbone."
    torchvision_backbone.trunk.load_state_dict(mapped.state_dict, strict=True)


def test_missing_keys_are_reported_and_a_wrong_checkpoint_is_refused(resnet50, tmp_path, capsys):
    backbone, tensors = resnet50
    target = backbone.trunk.state_dict()
    partial = {k: v for k, v in tensors.items() if k != "layer4.2.bn3.running_var"}
    assert gaia.map_resnet_checkpoint(partial, target).missing == ["layer4.2.bn3.running_var"]

    path = tmp_path / "partial.pth"
    torch.save({"state_dict": partial}, path)
    built = registries().backbones.get("resnet50.up-e-c").build(weights=str(path))
    assert built.weights_report["missing"] == ["layer4.2.bn3.running_var"]
    assert "lacks 1 tensor(s)" in capsys.readouterr().err
    assert torch.equal(built.trunk.state_dict()["layer1.0.conv1.weight"], tensors["layer1.0.conv1.weight"])

    with pytest.raises(gaia.GaiaCheckpointError, match="no ResNet in this checkpoint"):
        gaia.map_resnet_checkpoint({"state_dict": {"backbone.stem.0.weight": torch.zeros(1)}}, target)  # a MetaNet
    supernet = dict(tensors, **{"layer1.0.conv1.weight": torch.zeros(80, 64, 1, 1)})  # GAIA-det AR50to101 widths
    with pytest.raises(gaia.GaiaCheckpointError, match="extract_subnet"):
        gaia.map_resnet_checkpoint(supernet, target)
    with pytest.raises(gaia.GaiaCheckpointError, match="none is branch"):
        gaia.map_resnet_checkpoint({f"{b}.{k}": v for b in ("a", "b") for k, v in tensors.items()}, target)


def test_catalog_names_directory_and_gaia_on_resnet50_is_the_default_release(resnet50, tmp_path, monkeypatch):
    from gaia_bench.errors import MissingWeightsError

    monkeypatch.setenv("GAIA_BENCH_WEIGHTS", str(tmp_path / "weights"))
    regs = registries()
    backbones, init = regs.backbones, regs.inits.get("gaia")
    spec = backbones.get("resnet50.up-g-cls")
    ref = spec.published_weights["gaia"]
    assert spec.source == "gaia" and ref.expected == "up-g/r50-cls-bn.pth"
    assert ref.search_dirs[0] == str(tmp_path / "weights" / "gaia") and ref.locate() is None
    assert "resnet50" not in regs.backbones._catalogs["gaia"].names()  # the plain name is timm's alone

    plain = backbones.get("timm:resnet50")  # what --init gaia means on it does not depend on the file being here
    assert plain.source == "timm" and set(plain.published_weights) == {"imagenet", "gaia"}
    assert plain.published_weights["gaia"].expected == "up-e/c-r50.pth"
    context = InitContext(upstream=regs.upstream_pool("mini"))
    with pytest.raises(MissingWeightsError, match="up-e/c-r50.pth"):  # missing: an error, not a silent pretraining
        init.weights_id(plain, context)

    _, tensors = resnet50
    target = tmp_path / "weights" / "gaia" / "up-e" / "c-r50.pth"
    target.parent.mkdir(parents=True)
    torch.save({"state_dict": tensors}, target)
    again = backbones.get("timm:resnet50")
    assert again.source == "timm" and again.published_weights["gaia"].locate() == target
    assert init.weights_id(again, context).startswith("gaia:resnet50.up-e-c:sha256=")
    loaded = init.initialize(again, context)
    assert loaded.weights_report["file"] == str(target)  # through the GAIA loader
    assert torch.equal(loaded.trunk.state_dict()["layer2.1.conv1.weight"], tensors["layer2.1.conv1.weight"])
    assert again.resolve_default_init() == plain.resolve_default_init()
    assert backbones.get("resnet50.up-e-c").resolve_default_init() == "gaia"


def _run(args, tmp_path):
    return CliRunner().invoke(app, ["run", *args, "--dataset", "digits-lt", "--shots", "10%", "--store", str(tmp_path / "r.db"),
                                    "--image-size", "32", "--hp", "wd_grid=[0.001]", "--hp", "max_iter=100"],
                              env={"COLUMNS": "300"})


def test_missing_gaia_checkpoint_message_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIA_BENCH_WEIGHTS", str(tmp_path / "weights"))
    result = _run(["--model", "resnet50.up-g-cls", "--init", "gaia"], tmp_path)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "up-g/r50-cls-bn.pth" in text and str(tmp_path / "weights" / "gaia") in text
    assert "gv-benchmark" in text


def test_gaia_init_loads_the_published_checkpoint(resnet50, tmp_path, monkeypatch):
    """The `gaia` init finds the file in the documented directory, names it by its hash and loads it
    through the backbone's build (the full CLI run is covered by the transformers backbone's test)."""
    monkeypatch.setenv("GAIA_BENCH_WEIGHTS", str(tmp_path / "weights"))
    _, tensors = resnet50
    target = tmp_path / "weights" / "gaia" / "up-g" / "r50-cls-bn.pth"
    target.parent.mkdir(parents=True)
    torch.save(up_g_checkpoint(tensors), target)
    regs = registries()
    spec, init = regs.backbones.get("resnet50.up-g-cls"), regs.inits.get("gaia")
    assert init.weights_id(spec, InitContext()).startswith("gaia:resnet50.up-g-cls:sha256=")
    backbone = init.initialize(spec, InitContext())
    assert backbone.weights_report["prefix"] == "model.backbone.gv_global." and backbone.weights_report["missing"] == []
    assert torch.equal(backbone.trunk.state_dict()["layer3.5.conv2.weight"], tensors["layer3.5.conv2.weight"])


def test_the_job_record_carries_the_loaders_report(resnet50, tmp_path, monkeypatch):
    """What loading left out reaches the stored result (``weights_report``), via the session that
    built the job's backbone."""
    from gaia_bench.jobs import plan
    from gaia_bench.paths import data_root
    from gaia_bench.runner import Session
    from gaia_bench.cli.common import parse_shots

    monkeypatch.setenv("GAIA_BENCH_WEIGHTS", str(tmp_path / "weights"))
    _, tensors = resnet50
    target = tmp_path / "weights" / "gaia" / "up-g" / "r50-cls-bn.pth"
    target.parent.mkdir(parents=True)
    torch.save(up_g_checkpoint(tensors), target)
    [job] = plan(registries(), models=["resnet50.up-g-cls"], inits=["gaia"], adaptations=["linear-probe"],
                 datasets=["lfw-faces"], shots=parse_shots(["10%"]), seeds=[0], image_size=32)
    session = Session(data_root=data_root(), device="cpu", batch_size=8, workers=0, feature_cache=None,
                      plugin_versions={})
    assert session.weights_report(job) is None  # nothing built yet
    session.backbone(job)
    report = session.weights_report(job)
    assert report["prefix"] == "model.backbone.gv_global." and report["missing"] == [] and report["file"] == str(target)
