"""open_clip visual towers and transformers vision models as backbones, on tiny random configs.

Weights are found the way a user's would be: open_clip / transformers files written into a
Hugging Face cache laid out like the real one (``models--org--name/refs/main`` +
``snapshots/<commit>/``), located by the plugins' own ``WeightsRef.locate``. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import GaiaBenchError
from gaia_bench.store import ResultsStore

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
TINY_OPEN_CLIP = {
    "gaia-test-RN": {"embed_dim": 24, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
                     "text_cfg": TEXT_CFG},
    "gaia-test-ViT": {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
                      "text_cfg": TEXT_CFG},
}
PRE = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"height": 32, "width": 32}}


def put_in_hf_cache(cache: Path, repo: str, files: dict[str, bytes] | None = None, model=None, preprocessor: dict | None = None) -> Path:
    """Lay a repo out the way huggingface_hub's cache does; return its snapshot directory."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    if model is not None:
        model.save_pretrained(snapshot)
    for name, data in (files or {}).items():
        (snapshot / name).write_bytes(data)
    if preprocessor is not None:
        (snapshot / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache for this test (and ~ for open_clip's URL cache)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """Register the tiny open_clip configs the way `open_clip.add_model_config` users do."""
    directory = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in TINY_OPEN_CLIP.items():
        (directory / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(directory)
    return TINY_OPEN_CLIP


@pytest.fixture(scope="module")
def tiny_hf_models():
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, num_labels=10))
    convnext = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32, num_labels=1000))
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                     "vocab_size": 64, "max_position_embeddings": 8, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 64},
        projection_dim=16))
    dinov2 = transformers.Dinov2Model(transformers.Dinov2Config(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2))
    plain_vit = transformers.ViTModel(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    return {m_name: m.eval() for m_name, m in
            {"vit": vit, "convnext": convnext, "clip": clip, "dinov2": dinov2, "plain_vit": plain_vit}.items()}


@pytest.fixture()
def hf_repos(hf_cache, tiny_hf_models):
    """Curated repo ids holding tiny models, one non-curated DINOv2 and one repo of unknown training."""
    m = tiny_hf_models
    put_in_hf_cache(hf_cache, "google/vit-base-patch16-224", model=m["vit"], preprocessor=PRE)
    put_in_hf_cache(hf_cache, "facebook/convnext-tiny-224", model=m["convnext"], preprocessor=PRE)
    put_in_hf_cache(hf_cache, "openai/clip-vit-base-patch32", model=m["clip"],
                    preprocessor={**PRE, "size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}})
    put_in_hf_cache(hf_cache, "someone/tiny-dinov2", model=m["dinov2"], preprocessor=PRE)
    put_in_hf_cache(hf_cache, "someone/unknown-vit", model=m["plain_vit"], preprocessor=PRE)
    return hf_cache


def registries():
    from gaia_bench.manager import get_host

    return get_host().registries()


# --------------------------------------------------------------------------- open_clip
def test_open_clip_names_tags_and_where_weights_are_looked_for(hf_cache):
    backbones = registries().backbones
    rn50 = backbones.get("RN50")
    assert rn50.source == "open_clip" and rn50.input_size == 224
    assert rn50.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    ref = rn50.published_weights["clip"]
    assert ref.tag == "RN50.openai"
    assert ref.expected.startswith("models--timm--resnet50_clip.openai/snapshots/*/open_clip_model.safetensors")
    assert ref.search_dirs == (str(hf_cache), str(Path.home() / ".cache" / "clip"))
    assert "open_clip.create_model('RN50', pretrained='openai')" in ref.fetch_command
    assert ref.locate() is None and rn50.resolve_default_init() == "random"
    assert backbones.get("ViT-B-32.laion2b_s34b_b79k").published_weights["clip"].expected.startswith(
        "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/")
    assert backbones.get("RN50x16").input_size == 384
    assert [source for source, _ in backbones.providers("resnet50")] == ["timm", "torchvision"]  # open_clip claims none
    with pytest.raises(GaiaBenchError, match="RN50.no-such-tag"):
        backbones.get("RN50.no-such-tag")

    # found where open_clip caches it: the Hugging Face cache first, then ~/.cache/clip (URL tags)
    snapshot = put_in_hf_cache(hf_cache, "timm/resnet50_clip.openai", files={"open_clip_model.safetensors": b"x"})
    assert ref.locate() == snapshot / "open_clip_model.safetensors"
    assert rn50.resolve_default_init() == "clip"
    yfcc = backbones.get("RN50.yfcc15m").published_weights["clip"]
    url_file = Path.home() / ".cache" / "clip" / "rn50-quickgelu-yfcc15m-455df137.pt"
    url_file.parent.mkdir(parents=True)
    url_file.write_bytes(b"x")
    assert yfcc.locate() == url_file


def test_open_clip_tiny_towers_pool_pyramid_and_load(tiny_open_clip, tmp_path):
    from safetensors.torch import save_file

    backbones = registries().backbones
    for name, size in (("gaia-test-RN", 64), ("gaia-test-ViT", 32)):
        spec = backbones.get(name)
        assert spec.source == "open_clip" and spec.input_size == size and spec.published_weights == {}
        torch.manual_seed(1)
        full = open_clip.create_model(name).eval()
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
        backbone = spec.build(weights=str(path)).eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            assert torch.allclose(backbone(x), full.encode_image(x), atol=1e-5)  # the image embedding CLIP trains
            maps = backbone.pyramid(torch.randn(1, 3, 96, 64))  # another size than the tower's own
        assert [m.shape[1] for m in maps] == list(backbone.pyramid_channels)
        assert [96 // m.shape[2] for m in maps] == list(backbone.pyramid_reductions)
    assert backbones.get("gaia-test-RN").build().pyramid_reductions == (4, 8, 16, 32)

    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model("gaia-test-ViT").state_dict().items()}, str(wrong))
    with pytest.raises(GaiaBenchError, match=r"does not fit this image tower: missing: bn1\.weight.*shape differs: conv1\.weight"):
        backbones.get("gaia-test-RN").build(weights=str(wrong))
    text_only = tmp_path / "text.safetensors"
    save_file({"token_embedding.weight": torch.zeros(4, 4)}, str(text_only))
    with pytest.raises(GaiaBenchError, match="no visual"):
        backbones.get("gaia-test-RN").build(weights=str(text_only))


# --------------------------------------------------------------------------- transformers
def test_transformers_catalog_finds_cached_repos_and_their_training(hf_repos):
    backbones = registries().backbones
    names = backbones.all_names()
    assert {"google/vit-base-patch16-224", "facebook/dinov2-small", "someone/tiny-dinov2"} <= set(names)
    assert "someone/unknown-vit" not in names  # supported type, but how it was trained is not known

    vit = backbones.get("hf:google/vit-base-patch16-224")
    assert vit.name == "google/vit-base-patch16-224" and vit.source == "transformers"
    assert (vit.input_size, vit.mean, vit.std) == (32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # its preprocessor_config
    assert set(vit.published_weights) == {"imagenet"} and vit.resolve_default_init() == "imagenet"
    assert backbones.get("openai/clip-vit-base-patch32").published_weights.keys() == {"clip"}
    assert backbones.get("openai/clip-vit-base-patch32").input_size == 32  # the centre crop, not the resize
    assert backbones.get("someone/tiny-dinov2").published_weights.keys() == {"dinov2"}
    dino_small = backbones.get("facebook/dinov2-small")  # curated, not cached
    assert dino_small.resolve_default_init() == "random" and dino_small.input_size == 224
    ref = vit.published_weights["imagenet"]
    assert ref.locate() == hf_repos / "models--google--vit-base-patch16-224" / "snapshots" / COMMIT / "model.safetensors"


def test_transformers_backbones_load_cached_weights(hf_repos, tiny_hf_models):
    backbones = registries().backbones
    x = torch.randn(2, 3, 32, 32)
    cases = {
        "google/vit-base-patch16-224": lambda: tiny_hf_models["vit"].vit(pixel_values=x).last_hidden_state[:, 0],
        "facebook/convnext-tiny-224": lambda: tiny_hf_models["convnext"].convnext(pixel_values=x).pooler_output,
        "openai/clip-vit-base-patch32": lambda: tiny_hf_models["clip"].vision_model(pixel_values=x).pooler_output,
        "someone/tiny-dinov2": lambda: tiny_hf_models["dinov2"](pixel_values=x).last_hidden_state[:, 0],
    }
    for repo, reference in cases.items():
        spec = backbones.get(repo)
        (init, ref), = spec.published_weights.items()
        backbone = spec.build(weights=str(ref.locate()))
        with torch.no_grad():
            assert torch.allclose(backbone(x), reference(), atol=1e-5), repo
            maps = backbone.pyramid(torch.randn(1, 3, 64, 48))  # interpolated position embeddings
        assert [m.shape[1] for m in maps] == list(backbone.pyramid_channels), repo
        assert [64 // m.shape[2] for m in maps] == list(backbone.pyramid_reductions), repo
        assert backbone.num_features == backbone(x).shape[1]
    assert backbones.get("facebook/convnext-tiny-224").build().pyramid_reductions == (4, 8, 16, 32)


def _run(args: list[str], tmp_path: Path):
    """`gaia-bench run` on the smallest dataset, with a one-point probe grid (the backbone is the point)."""
    return CliRunner().invoke(app, ["run", *args, "--dataset", "digits-lt", "--shots", "10%", "--store", str(tmp_path / "r.db"),
                                    "--hp", "wd_grid=[0.001]", "--hp", "max_iter=100"], env={"COLUMNS": "300"})


def test_missing_published_weights_say_file_directory_and_fetch_command(hf_cache, tmp_path):
    result = _run(["--model", "facebook/dinov2-small", "--init", "dinov2"], tmp_path)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "models--facebook--dinov2-small/snapshots/*/model.safetensors" in text
    assert str(hf_cache) in text and "hf download facebook/dinov2-small" in text

    result = _run(["--model", "RN50", "--init", "clip"], tmp_path)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "models--timm--resnet50_clip.openai/snapshots/*/open_clip_model.safetensors" in text
    assert "open_clip.create_model('RN50', pretrained='openai')" in text


def test_cached_transformers_model_runs_end_to_end(hf_repos, tmp_path):
    result = _run(["--model", "google/vit-base-patch16-224", "--init", "imagenet"], tmp_path)
    assert result.exit_code == 0, result.output
    with ResultsStore(tmp_path / "r.db") as store:
        record, = store.query()
    assert record["status"] == "done", record.get("error")
    assert record["config"]["weights_id"].startswith("imagenet:google/vit-base-patch16-224:sha256=")
    assert 0.0 <= record["metrics"]["top1"] <= 100.0


def test_a_missing_package_marks_its_plugin_broken_with_the_install_command(monkeypatch):
    import importlib.util

    from gaia_bench.manager import PluginHost

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("open_clip", "transformers") else real(name, *args))
    host = PluginHost()
    host.load_builtins()
    regs = host.registries()
    errors = {r.name.rsplit(".", 1)[-1]: r.error for r in host.plugins()}
    assert "pip install open_clip_torch" in errors["open_clip_backbones"]
    assert "pip install transformers" in errors["transformers_backbones"]
    assert regs.backbones.get("timm:resnet50").source == "timm"  # everything else keeps working
    assert "dinov2" not in regs.inits.names()


# --------------------------------------------------------------------------- text towers (zero-shot)
def _byte_level_tokenizer(directory: Path) -> None:
    """A CLIP BPE tokenizer with no merges (every byte a token; 514 ids) saved into ``directory``."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in bs] + [chr(256 + n) for n in range(256 - len(bs))]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(chars)},
             **{c + "</w>": 258 + i for i, c in enumerate(chars)}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    transformers.CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt")).save_pretrained(directory)


def test_text_towers_of_open_clip_and_transformers_give_their_models_embeddings(tiny_open_clip, hf_cache, tmp_path):
    """What zero-shot reads: the open_clip checkpoint's text half with open_clip's tokenizer, and
    a cached CLIP / SigLIP repo's text model, tokenizer and image projection; logit scale and bias."""
    from safetensors.torch import save_file

    from gaia_bench.plugins.adaptations.zero_shot import text_tower
    from gaia_bench.plugins.backbones import open_clip_backbones, transformers_backbones

    prompts = ["a photo of a cat.", "a dog"]
    directory = tmp_path / "configs"
    directory.mkdir()
    (directory / "gaia-test-text.json").write_text(json.dumps({**TINY_OPEN_CLIP["gaia-test-ViT"], "text_cfg": {
        "context_length": 12, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(directory)
    torch.manual_seed(2)
    full = open_clip.create_model("gaia-test-text").eval()
    path = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    spec = registries().backbones.get("gaia-test-text")
    tower = open_clip_backbones.text_tower(spec, path)
    with torch.no_grad():
        expected = full.encode_text(open_clip.get_tokenizer("gaia-test-text")(prompts))
    assert torch.allclose(tower.encode(prompts, "cpu"), expected, atol=1e-5)
    assert tower.logit_scale == pytest.approx(float(full.logit_scale.exp())) and tower.project_image(expected) is expected
    save_file({k: v.contiguous() for k, v in full.state_dict().items() if k.startswith("visual.")}, str(path))
    with pytest.raises(GaiaBenchError, match="has no text tower"):
        open_clip_backbones.text_tower(spec, path)

    text = {"vocab_size": 514, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64}
    torch.manual_seed(3)
    models = {"openai/clip-vit-base-patch32": transformers.CLIPModel(transformers.CLIPConfig(
                  text_config=text, vision_config=vision, projection_dim=16)),
              "google/siglip-base-patch16-224": transformers.SiglipModel(transformers.SiglipConfig(
                  text_config={**text, "projection_size": 32}, vision_config=vision))}
    for repo, model in models.items():
        snapshot = put_in_hf_cache(hf_cache, repo, model=model.eval(), preprocessor=PRE)
        _byte_level_tokenizer(snapshot)
        spec = registries().backbones.get(repo)
        tower = transformers_backbones.text_tower(spec, spec.published_weights["clip"].locate())
        padding = "max_length" if "siglip" in repo else True
        tokens = transformers.AutoTokenizer.from_pretrained(str(snapshot))(prompts, padding=padding, max_length=16,
                                                                             truncation=True, return_tensors="pt")
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            image = model.get_image_features(pixel_values=x)
            pooled = spec.build(weights=str(spec.published_weights["clip"].locate()))(x)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        assert torch.allclose(tower.encode(prompts, "cpu"), out, atol=1e-5), repo
        assert torch.allclose(tower.project_image(pooled), image, atol=1e-5), repo  # cached features -> CLIP's space
        assert tower.logit_bias == pytest.approx(float(getattr(model, "logit_bias", torch.zeros(1)))), repo

    # the same lookup a zero-shot job makes, from the job's backbone and weights
    job = SimpleNamespace(config=SimpleNamespace(weights_id="clip:x:sha256=0"), backbone=spec)
    assert text_tower(job).describe == f"transformers SiglipModel text model of {spec.name}"
