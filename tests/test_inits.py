"""Initializations: published weights are found in the standard local caches (here a Hugging Face
cache laid out as the hub writes it), loaded, and identified by content hash; random is fixed."""

from __future__ import annotations

import pytest

import gaia_bench
from gaia_bench.api import InitContext
from gaia_bench.errors import UsageError
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.shots import ShotSpec
from gaia_bench.store import ResultsStore
from tests.helpers import cli


def _fake_hf_cache(root, repo_id: str, state_dict) -> None:
    from safetensors.torch import save_file

    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(snapshot / "model.safetensors"))


def test_imagenet_weights_come_from_the_local_hub_cache(tmp_path):
    import timm
    import torch

    torch.manual_seed(123)
    published = timm.create_model("test_resnet", num_classes=1000).state_dict()
    _fake_hf_cache(tmp_path / "hub", "timm/test_resnet.r160_in1k", published)
    env = {"GAIA_BENCH_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "hub")}
    store = tmp_path / "r.db"
    common = ["run", "--model", "test_resnet", "--image-size", "32", "--shots", "10%", "--dataset", "digits-lt", "--store", str(store)]
    default = cli(common, env=env)  # the backbone's default is imagenet once the weights are here
    assert default.returncode == 0, default.stderr
    assert "init 'imagenet' (the backbone's default" in " ".join(default.stderr.split())
    assert cli(common + ["--init", "random"], env=env).returncode == 0
    with ResultsStore(store) as s:
        records = {r["config"]["init"]: r for r in s.query()}
    assert records["imagenet"]["config"]["weights_id"].startswith("imagenet:test_resnet.r160_in1k:sha256=")
    assert records["imagenet"]["metrics"] != records["random"]["metrics"]

    from gaia_bench.plugins.timm_backbones import build_timm

    path = next((tmp_path / "hub").rglob("model.safetensors"))
    loaded = build_timm("test_resnet.r160_in1k", weights=str(path)).trunk.state_dict()
    assert torch.equal(loaded["conv1.0.weight"], published["conv1.0.weight"])


def test_random_init_is_fixed_across_builds():
    import torch

    init = get_registries().inits.get("random")
    spec = get_registries().backbones.get("test_convnext")
    a, b = init.initialize(spec, InitContext()), init.initialize(spec, InitContext())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class NoWeights:
    """A backbone with no published weights, and an init made only of published weights (no
    pretraining method to fall back on)."""

    @gaia_bench.hookimpl
    def register_backbones(self, register):
        register(gaia_bench.BackboneSpec(name="plain_net", build=lambda weights=None: None, source="tests"))

    @gaia_bench.hookimpl
    def register_inits(self, register):
        from gaia_bench.plugins.inits import pretrained_init

        register(pretrained_init("up-g", "published Up-G weights only", None, weights_source="published files"))


def test_init_that_cannot_apply_is_refused_at_planning(register_plugin):
    register_plugin(NoWeights(), "no-weights")
    with pytest.raises(UsageError, match="init 'up-g' cannot initialize backbone 'plain_net'"):
        plan(get_registries(), models=["plain_net"], inits=["up-g"], adaptations=["linear-probe"],
             datasets=["digits-lt"], shots=[ShotSpec(fraction=0.1)], seeds=[0])


def test_missing_published_weights_of_a_real_backbone_are_an_error_naming_both_fixes():
    from gaia_bench.errors import MissingWeightsError

    spec = get_registries().backbones.get("timm:resnet18")  # declares timm's ImageNet tag; no file in the test cache
    with pytest.raises(MissingWeightsError) as err:
        get_registries().inits.get("imagenet").weights_id(spec, InitContext(upstream=get_registries().upstream_pool("mini")))
    text = str(err.value)
    assert "timm.create_model('resnet18." in text and "gaia-bench pretrain --method imagenet --model timm:resnet18" in text
