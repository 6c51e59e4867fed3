"""Initializations: published weights are found in the standard local caches (here a Hugging Face
cache laid out as the hub writes it), loaded, and identified by content hash; random is fixed."""

from __future__ import annotations

import hashlib

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

    from gaia_bench.plugins.backbones.timm_backbones import build_timm

    path = next((tmp_path / "hub").rglob("model.safetensors"))
    assert records["imagenet"]["weights"] == {"tag": "test_resnet.r160_in1k", "file": str(path), "bytes": path.stat().st_size,
                                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert "weights" not in records["random"]
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
        from gaia_bench.plugins.inits.inits import pretrained_init

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


class ContextProbe:
    """An init that names its weights after the InitContext it is told, a second upstream pool, and
    a suite declaring that pool: what `gaia-bench run` hands an init, seen from a plugin."""

    @gaia_bench.hookimpl
    def register_inits(self, register):
        import json

        from gaia_bench.plugins.inits.lib.pretrain_contract import PretrainMethod
        from gaia_bench.errors import GaiaBenchError

        def seen(ctx):
            pool = ctx.upstream.name if ctx.upstream is not None else None
            return f"probe:{pool}:{json.dumps(dict(ctx.hyperparams), sort_keys=True)}:{ctx.data_root.name}"

        def initialize(spec, ctx):
            raise GaiaBenchError(f"initialize saw {seen(ctx)}", "a probe has no weights")

        method = PretrainMethod(hyperparams={"steps": 200, "seed": 0}, key=lambda *a: "", path=lambda *a: None,
                                checkpoint=lambda *a, **k: None, load=lambda *a: None)
        register(gaia_bench.InitSpec(name="ctx-probe", description="names the context it gets", initialize=initialize,
                                     weights_id=lambda spec, ctx: seen(ctx), pretrain=method))

    @gaia_bench.hookimpl
    def register_datasets(self, register):
        register(gaia_bench.DatasetSpec(name="probe-pool", task="upstream", description="a second pool",
                                        load=lambda root, split: None, verify=lambda root: []))

    @gaia_bench.hookimpl
    def register_suites(self, register):
        register(gaia_bench.SuiteSpec(name="probe-suite", description="digits with its own pool",
                                      datasets=["digits-lt"], upstream="probe-pool"))


def test_upstream_and_init_hp_reach_the_init_through_its_context(register_plugin, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gaia_bench.cli import app

    register_plugin(ContextProbe(), "ctx-probe")
    monkeypatch.setenv("GAIA_BENCH_UPSTREAM", "probe-pool")  # the old variables are not read any more
    monkeypatch.setenv("GAIA_BENCH_PRETRAIN_HP", "steps=1")
    store = tmp_path / "r.db"
    base = ["run", "--model", "test_resnet", "--init", "ctx-probe", "--image-size", "16", "--store", str(store),
            "--data-root", str(tmp_path / "data")]
    runs = {
        "default": (base + ["--dataset", "digits-lt"], 'probe:mini-upstream:{"seed": 0, "steps": 200}:data'),
        "options": (base + ["--dataset", "digits-lt", "--upstream", "probe-pool", "--init-hp", "steps=5,seed=1"],
                    'probe:probe-pool:{"seed": 1, "steps": 5}:data'),
        "suite": (base + ["--suite", "probe-suite", "--init-hp", "steps=7"], 'probe:probe-pool:{"seed": 0, "steps": 7}:data'),
    }
    for name, (args, expected) in runs.items():
        result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 1, (name, result.output)  # planned with the context, then initialize raises
        with ResultsStore(store) as s:
            (record,) = [r for r in s.query() if r["config"]["weights_id"] == expected]
        assert record["error"].startswith(f"initialize saw {expected}"), (name, record["error"])
