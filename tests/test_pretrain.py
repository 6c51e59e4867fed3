"""Pretraining-method inits: each method trains on the upstream pool and lowers its own loss, the
checkpoint is cached by a deterministic key and reused by runs, GN+WS conversion is shape-preserving,
and the GAIA label space merges synonyms across sources. Tiny images and a few steps keep it fast."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gaia_bench.api import InitContext
from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from gaia_bench.store import ResultsStore
from tests.helpers import require_debian_sources



@pytest.fixture(scope="module", autouse=True)
def _debian_sources():
    require_debian_sources()

TINY = {"steps": 12, "batch_size": 32, "image_size": 16, "lr": 0.003}
TINY_HP = "steps=12,batch_size=32,image_size=16,lr=0.003"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: tiny models on a shared 2-core machine are many times faster without
    OpenMP's spinning; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pool():
    """The mini suite's upstream pool, prepared once under the session's data root."""
    from gaia_bench.plugins.inits.lib.pretraining import pool_root

    upstream = get_registries().upstream_pool("mini")
    pool_root(upstream)
    return upstream


def _model(name: str = "test_resnet"):
    return get_registries().backbones.get(name)


@pytest.mark.parametrize("method", ["imagenet", "gaia", "clip"])
def test_each_method_lowers_its_loss_and_writes_a_loadable_checkpoint(method, pool):
    import torch

    pretrain = get_registries().inits.get(method).pretrain
    spec = _model()
    path = pretrain.checkpoint(spec, pool, TINY)
    assert path == pretrain.path(spec, pool, TINY) and path.exists()
    state = torch.load(path, map_location="cpu", weights_only=True)
    losses = state["losses"]
    assert len(losses) == TINY["steps"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (state["method"], state["backbone"], state["pool"]) == (method, "test_resnet", "mini-upstream")

    loaded = pretrain.load(spec, path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state["state_dict"].items())
    random = get_registries().inits.get("random").initialize(spec, InitContext())
    assert not torch.equal(loaded.state_dict()["trunk.conv1.0.weight"], random.state_dict()["trunk.conv1.0.weight"])
    assert loaded(torch.zeros(2, 3, 16, 16)).shape == (2, spec.build().num_features)


def test_cache_key_names_every_input_and_a_second_call_reuses_the_file(pool):
    pretrain = get_registries().inits.get("imagenet").pretrain
    spec = _model()
    key = pretrain.key(spec, pool, TINY)
    assert key == pretrain.key(spec, pool, dict(TINY))
    for change in ({"seed": 1}, {"steps": 13}, {"source": "catalogue"}, {"lr": 0.004}):
        assert pretrain.key(spec, pool, {**TINY, **change}) != key
    assert pretrain.key(_model("test_convnext"), pool, TINY) != key
    first = pretrain.checkpoint(spec, pool, TINY)
    mtime = first.stat().st_mtime_ns
    assert pretrain.checkpoint(spec, pool, TINY) == first and first.stat().st_mtime_ns == mtime


def test_gn_ws_keeps_shapes_and_removes_every_batchnorm():
    import torch
    from timm.layers import StdConv2d
    from torch import nn

    from gaia_bench.plugins.inits.lib.gnws import convert_gn_ws

    for name in ("test_resnet", "test_efficientnet"):
        torch.manual_seed(0)
        model = _model(name).build().eval()
        x = torch.randn(2, 3, 32, 32)
        before = [t.shape for t in [model(x), *model.pyramid(x)]]
        counts = convert_gn_ws(model)
        assert counts.batchnorms > 0 and counts.convs > 0
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        assert not any(type(m) is nn.Conv2d for m in model.modules())
        assert [t.shape for t in [model(x), *model.pyramid(x)]] == before

    conv = next(m for m in model.modules() if isinstance(m, StdConv2d) and m.kernel_size == (3, 3) and m.groups == 1)
    inputs = torch.randn(1, conv.in_channels, 8, 8)
    out = conv(inputs)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(0.5)  # standardized in forward: scale and shift of the weights do not matter
    assert torch.allclose(conv(inputs), out, rtol=1e-3, atol=1e-3)

    vit = _model("test_vit").build()
    assert convert_gn_ws(vit).batchnorms == 0  # no BatchNorm: nothing to replace


def test_scratch_init_is_gn_ws_and_loads_from_its_checkpoint(pool):
    import torch
    from torch import nn

    init = get_registries().inits.get("scratch")
    context = InitContext(upstream=pool)
    model = init.initialize(_model(), context)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    again = init.initialize(_model(), context)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert init.weights_id(_model(), context).startswith("scratch:pretrained:mini-upstream@")


def test_label_space_merges_synonyms_across_sources_only():
    from gaia_bench.plugins.inits.pretrain_gaia import build_label_space, unified_index

    space = build_label_space({"a": ["car", "cat"], "b": ["automobile", "truck"]}, threshold=0.8)
    index = unified_index(space)
    assert index[("a", "car")] == index[("b", "automobile")]
    assert len({index[("a", "cat")], index[("b", "truck")], index[("a", "car")]}) == 3
    merged = next(u for u in space if u.name == "car")
    assert [m[:2] for m in merged.members] == [("a", "car"), ("b", "automobile")] and merged.members[1][2] > 0.8
    # the same names inside ONE source stay apart: a source's classes are distinct by definition
    assert len(build_label_space({"a": ["car", "automobile"]}, threshold=0.8)) == 2
    assert len(build_label_space({"a": ["car"], "b": ["automobile"]}, threshold=0.95)) == 2


def test_cli_show_label_space_prints_the_mapping(pool):
    result = CliRunner().invoke(app, ["pretrain", "--method", "gaia", "--model", "test_resnet", "--upstream", "mini",
                                      "--show-label-space"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    coat = next(i for i, line in enumerate(rows) if "wardrobe:coat" in line)
    assert "catalogue:jacket" in rows[coat + 1] and rows[coat + 1].split("│")[1].strip() == ""  # same unified class
    assert "unified classes from 18 source classes (threshold 0.7)" in result.stdout
    assert "surfaces:coins" in result.stdout

    wrong = CliRunner().invoke(app, ["pretrain", "--method", "clip", "--model", "test_resnet", "--show-label-space"])
    assert wrong.exit_code == 2 and "--method gaia" in " ".join(wrong.stderr.split())


def test_run_with_init_gaia_pretrains_once_then_uses_the_cached_checkpoint(pool, tmp_path):
    pretrain = get_registries().inits.get("gaia").pretrain
    path = pretrain.path(_model(), pool, TINY)
    if path.exists():
        path.unlink()
    data_root = tmp_path / "data"  # --data-root reaches the pool: it is prepared there
    args = ["run", "--model", "test_resnet", "--init", "gaia", "--dataset", "lfw-faces", "--image-size", "16",
            "--shots", "10%", "--store", str(tmp_path / "r.db"), "--data-root", str(data_root),
            "--init-hp", TINY_HP.split(",", 1)[0], "--init-hp", TINY_HP.split(",", 1)[1]]
    env = {"COLUMNS": "200"}
    first = CliRunner().invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "gaia pretraining of test_resnet" in first.stderr and path.exists()
    assert (data_root / "mini-upstream" / "MANIFEST.sha256").exists()
    mtime = path.stat().st_mtime_ns
    second = CliRunner().invoke(app, args + ["--force"], env=env)
    assert second.exit_code == 0, second.output
    assert "gaia pretraining of" not in second.stderr and path.stat().st_mtime_ns == mtime
    with ResultsStore(tmp_path / "r.db") as store:
        (record,) = store.query()
    assert record["config"]["weights_id"] == f"gaia:pretrained:mini-upstream@1:{pretrain.key(_model(), pool, TINY)}"


def test_cli_pretrain_caches_and_a_second_call_reuses(pool):
    args = ["pretrain", "--method", "scratch", "--model", "test_resnet", "--upstream", "mini"]
    first = CliRunner().invoke(app, args + ["--force"], env={"COLUMNS": "250"})
    assert first.exit_code == 0, first.output
    assert "is not cached: pretraining" in first.stderr and "nothing to train" in first.stdout
    second = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert second.exit_code == 0 and "is cached: reusing it" in second.stderr

    for bad, needle in ((["--method", "random"], "pretrain one of: clip, gaia, imagenet, scratch"),
                        (["--steps", "5"], "has no hyper-parameter steps"),
                        (["--upstream", "nope"], "neither a suite with an upstream pool nor an upstream pool")):
        result = CliRunner().invoke(app, args[:1] + ["--method", "scratch", "--model", "test_resnet"] + bad,
                                    env={"COLUMNS": "250"})
        assert result.exit_code == 2 and needle in " ".join(result.stderr.split()), result.output
