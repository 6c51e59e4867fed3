"""Hugging Face transformers vision models as backbones (lazy catalog ``transformers``).

Names are Hub repo ids (``facebook/dinov2-small``; ``hf:facebook/dinov2-small`` is accepted too):
a curated list of well-known vision repos, plus every repo already in the local Hugging Face cache
whose ``config.json`` is one of the supported model types and whose training is known (below).
Everything is read with ``local_files_only``: the config and weights come from the cache, where
an init whose published weights are missing downloads them first (config, preprocessor config and
weights: :func:`download`). A ``random`` init needs the config only: `gaia-bench weights fetch`.

* ``published_weights``: keyed by the init that matches how the repo was trained: ``imagenet``
  (ImageNet-supervised: ViT, DeiT, ConvNeXt, Swin, ResNet classifiers), ``clip`` (CLIP / SigLIP
  image towers, read out of the full image-text checkpoint), ``dinov2`` (self-supervised DINOv2;
  the ``dinov2`` init is registered here). A repo outside the curated list gets ``clip`` / ``dinov2``
  from its model type, ``imagenet`` when its classifier has ImageNet's 1000 or 21k classes.
* pooled features: the class token after the final norm (ViT, DeiT, DINOv2), the model's own
  pooled output (CLIP / SigLIP image embedding before projection, ConvNeXt / Swin / ResNet pooling);
* pyramid: stage outputs of ConvNeXt / Swin / ResNet (strides 4-32), and for the transformers the
  patch tokens of four evenly spaced blocks reshaped into maps (stride = patch size), with position
  embeddings interpolated so dense tasks may use any input size.

Without transformers installed the plugin is listed as broken with the ``pip install`` that fixes it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaia_bench import hookimpl
from gaia_bench.api import BackboneCatalog, BackboneSpec, InitSpec, WeightsRef
from gaia_bench.errors import GaiaBenchError, MissingWeightsError, PluginError
from gaia_bench.plugins.backbones.lib.text_tower import TextTower
from gaia_bench.plugins.backbones.lib.weights_download import hf_fetch
from gaia_bench.plugins.backbones.lib.weights_files import hf_cached_file, hf_hub_cache

PLUGIN_ORDER = 140

SOURCE = "transformers"
PREFIX = "hf:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # a Hub "org/name" (what the cache can hold)
INSTALL_HINT = "pip install transformers (or pip install 'gaia-bench[transformers]')"

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

TOKEN_TYPES = {"vit", "deit", "dinov2", "dinov2_with_registers", "clip", "clip_vision_model", "siglip", "siglip_vision_model"}
STAGE_TYPES = {"convnext", "convnextv2", "resnet", "swin", "swinv2"}
CLIP_TYPES = {"clip", "clip_vision_model", "siglip", "siglip_vision_model"}
IMAGENET_CLASS_COUNTS = {1000, 21841, 21843}


@dataclass(frozen=True)
class Curated:
    """A repo whose training is known, and its evaluation input when its files are not cached."""

    init: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


CURATED: dict[str, Curated] = {
    "google/vit-base-patch16-224": Curated("imagenet", mean=HALF, std=HALF),
    "google/vit-base-patch16-224-in21k": Curated("imagenet", mean=HALF, std=HALF),
    "google/vit-large-patch16-224": Curated("imagenet", mean=HALF, std=HALF),
    "facebook/deit-small-patch16-224": Curated("imagenet"),
    "facebook/deit-base-patch16-224": Curated("imagenet"),
    "facebook/convnext-tiny-224": Curated("imagenet"),
    "facebook/convnext-base-224": Curated("imagenet"),
    "facebook/convnextv2-tiny-1k-224": Curated("imagenet"),
    "microsoft/swin-tiny-patch4-window7-224": Curated("imagenet"),
    "microsoft/swin-base-patch4-window7-224": Curated("imagenet"),
    "microsoft/resnet-50": Curated("imagenet"),
    "facebook/dinov2-small": Curated("dinov2"),
    "facebook/dinov2-base": Curated("dinov2"),
    "facebook/dinov2-large": Curated("dinov2"),
    "openai/clip-vit-base-patch32": Curated("clip", mean=OPENAI_MEAN, std=OPENAI_STD),
    "openai/clip-vit-base-patch16": Curated("clip", mean=OPENAI_MEAN, std=OPENAI_STD),
    "openai/clip-vit-large-patch14": Curated("clip", mean=OPENAI_MEAN, std=OPENAI_STD),
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": Curated("clip", mean=OPENAI_MEAN, std=OPENAI_STD),
    "google/siglip-base-patch16-224": Curated("clip", mean=HALF, std=HALF),
}


class WeightsLoadError(GaiaBenchError):
    """A cached checkpoint that leaves part of the model uninitialized."""


# --------------------------------------------------------------------------- the local cache
def _cached_json(repo: str, filename: str) -> dict | None:
    path = hf_cached_file(repo, (filename,))
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_repos() -> list[str]:
    """Model repos present in the Hugging Face hub cache (``models--org--name`` directories)."""
    root = hf_hub_cache()
    if not root.is_dir():
        return []
    repos = (d.name[len("models--"):].replace("--", "/") for d in root.iterdir() if d.is_dir() and d.name.startswith("models--"))
    return sorted(r for r in repos if REPO_ID.fullmatch(r))


def init_for(repo: str, config: dict | None) -> str | None:
    """The init name matching how ``repo`` was trained, or None when that is not known."""
    if repo in CURATED:
        return CURATED[repo].init
    if not config:
        return None
    model_type = config.get("model_type", "")
    if model_type in CLIP_TYPES:
        return "clip"
    if model_type.startswith("dinov2"):
        return "dinov2"
    if len(config.get("id2label") or {}) in IMAGENET_CLASS_COUNTS:
        return "imagenet"
    return None


def _supported(config: dict | None) -> bool:
    return bool(config) and config.get("model_type") in TOKEN_TYPES | STAGE_TYPES


def download(repo: str, progress) -> Path:
    """What ``from_pretrained`` reads, fetched into the hub cache: the config, the preprocessor
    config when the repo has one, and the weights (every shard of a sharded checkpoint)."""
    hf_fetch(repo, ("config.json",), progress)
    hf_fetch(repo, ("preprocessor_config.json",), progress, required=False)
    path = hf_fetch(repo, WEIGHT_FILES, progress)
    assert path is not None
    if path.name.endswith(".index.json"):
        for shard in sorted(set(json.loads(path.read_text())["weight_map"].values())):
            hf_fetch(repo, (shard,), progress)
    return path


def weights_ref(repo: str) -> WeightsRef:
    return WeightsRef(
        tag=repo, locate=functools.partial(hf_cached_file, repo, WEIGHT_FILES),
        expected=f"models--{repo.replace('/', '--')}/snapshots/*/{WEIGHT_FILES[0]} (with its config.json)",
        search_dirs=(str(hf_hub_cache()),),
        fetch_command=f"hf download {repo}  (huggingface_hub < 1.0: huggingface-cli download {repo})",
        download=functools.partial(download, repo),
    )


# --------------------------------------------------------------------------- building
def _model_class(model_type: str):
    import transformers

    if model_type in ("clip", "clip_vision_model"):
        return transformers.CLIPVisionModel
    if model_type in ("siglip", "siglip_vision_model"):
        return transformers.SiglipVisionModel
    return transformers.AutoModel


def _vision_config(config: dict) -> dict:
    """The image tower's part of a config (a full CLIP / SigLIP config nests it)."""
    return config.get("vision_config", config) if config.get("model_type") in ("clip", "siglip") else config


def vit_blocks(depth: int) -> list[int]:
    """Four evenly spaced block indices ending with the last (fewer for very shallow models)."""
    return sorted({max(0, round(depth * k / 4) - 1) for k in range(1, 5)})


def _token_pyramid(blocks: list[int], patch: int, extra: dict):
    def pyramid(model, x):
        out = model(pixel_values=x, output_hidden_states=True, **extra)
        h, w = x.shape[-2] // patch, x.shape[-1] // patch
        maps = []
        for i in blocks:
            tokens = out.hidden_states[i + 1]
            tokens = tokens[:, tokens.shape[1] - h * w:]  # drop class / distillation / register tokens
            maps.append(tokens.reshape(tokens.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous())
        return maps

    return pyramid


def _stage_pyramid(extra: dict):
    def pyramid(model, x):
        out = model(pixel_values=x, output_hidden_states=True, **extra)
        maps = getattr(out, "reshaped_hidden_states", None) or out.hidden_states
        return list(maps[1:])

    return pyramid


def _pool(kind: str, extra: dict):
    def pool(model, x):
        out = model(pixel_values=x, **extra)
        if kind == "cls":
            return out.last_hidden_state[:, 0]
        return out.pooler_output.flatten(1)

    return pool


def _accepts(model, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(model.forward).parameters


def wrap(model, config: dict, name: str):
    """A :class:`Backbone` around a transformers vision model built from ``config``."""
    from gaia_bench.backbone import Backbone

    cfg = _vision_config(config)
    model_type = cfg.get("model_type", config.get("model_type", ""))
    interpolate = {"interpolate_pos_encoding": True} if _accepts(model, "interpolate_pos_encoding") else {}
    if model_type in STAGE_TYPES:
        extra = {"output_hidden_states_before_downsampling": True} if model_type.startswith("swin") else {}
        if model_type.startswith("swin"):
            embed = int(cfg["embed_dim"])
            channels = [embed * 2 ** i for i in range(len(cfg["depths"]))]
        else:
            channels = [int(c) for c in cfg["hidden_sizes"]]
        reductions = [4 * 2 ** i for i in range(len(channels))]
        return Backbone(model, channels[-1], name=name, pool=_pool("pooled", {}), pyramid=_stage_pyramid(extra),
                        pyramid_channels=channels, pyramid_reductions=reductions)
    blocks = vit_blocks(int(cfg["num_hidden_layers"]))
    width, patch = int(cfg["hidden_size"]), int(cfg["patch_size"])
    kind = "pooled" if model_type in CLIP_TYPES else "cls"
    return Backbone(model, width, name=name, pool=_pool(kind, interpolate), pyramid=_token_pyramid(blocks, patch, interpolate),
                    pyramid_channels=[width] * len(blocks), pyramid_reductions=[patch] * len(blocks))


@contextlib.contextmanager
def _quiet():
    """transformers' load report and progress bars off while loading (unexpected keys, e.g. a
    classifier head or a CLIP text tower, are dropped on purpose; missing ones raise below)."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _extra_kwargs(model_type: str) -> dict:
    return {"add_pooling_layer": False} if model_type in ("vit", "deit") else {}


def build_hf(repo: str, weights: str | None = None):
    """The backbone for ``repo``: random init from its cached config, or the cached weights
    ``weights`` (a file of the repo's snapshot; its directory holds the config)."""
    import torch
    import transformers

    if weights is None:
        config_path = hf_cached_file(repo, ("config.json",))
        if config_path is None:
            ref = weights_ref(repo)
            init = init_for(repo, None)
            raise MissingWeightsError(
                f"the config of '{repo}' is not in the Hugging Face cache: expected "
                f"models--{repo.replace('/', '--')}/snapshots/*/config.json in {ref.search_dirs[0]}",
                (f"run `gaia-bench weights fetch {repo} --init {init}` (its config and weights)" if init else
                 f"run `{ref.fetch_command}`") + " (without internet: on a machine with it, and copy the cache here)")
        directory = config_path.parent
    else:
        directory = Path(weights).parent
    config = json.loads((directory / "config.json").read_text())
    model_type = config.get("model_type", "")
    cls = _model_class(model_type)
    extra = _extra_kwargs(_vision_config(config).get("model_type", model_type))
    with _quiet():
        if weights is None:
            config_cls = transformers.AutoConfig if cls is transformers.AutoModel else cls.config_class
            hf_config = config_cls.from_pretrained(str(directory), local_files_only=True)
            model = (cls.from_config if cls is transformers.AutoModel else cls)(hf_config, **extra)
        else:
            model, info = cls.from_pretrained(str(directory), local_files_only=True, output_loading_info=True,
                                              dtype=torch.float32, **extra)
    if weights is not None:
        missing = list(info.get("missing_keys") or []) + [str(k) for k in info.get("mismatched_keys") or []]
        if missing:
            raise WeightsLoadError(
                f"{weights} leaves {len(missing)} tensor(s) of {type(model).__name__} uninitialized: "
                f"{', '.join(sorted(missing)[:5])}{' …' if len(missing) > 5 else ''}",
                "the cached files are incomplete or belong to another architecture; fetch the repo again")
    return wrap(model.float().eval(), config, repo)


def text_tower(spec: BackboneSpec, path: str | Path) -> TextTower:
    """The text half of a cached CLIP or SigLIP repo (``path``: its weights file), with the repo's own
    tokenizer. The backbone gives CLIP's pooled image features before ``visual_projection``, which is
    applied here; SigLIP's pooled output is already its image embedding. SigLIP's text is padded to
    its full length, as it was trained."""
    import torch
    import transformers

    directory = Path(path).parent
    model_type = json.loads((directory / "config.json").read_text()).get("model_type", "")
    if model_type not in ("clip", "siglip"):
        raise GaiaBenchError(f"'{spec.name}' holds a {model_type or 'vision'} model without a text tower",
                             "zero-shot needs a full CLIP / SigLIP repo (vision and text) in the cache")
    with _quiet():
        cls = transformers.CLIPModel if model_type == "clip" else transformers.SiglipModel
        model = cls.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MissingWeightsError(f"the tokenizer of '{spec.name}' is not in the Hugging Face cache ({exc})",
                                      f"on a machine with internet run `{weights_ref(spec.name).fetch_command}` "
                                      "and copy the cache here") from None
    length = int(model.config.text_config.max_position_embeddings)
    padding = {"padding": "max_length"} if model_type == "siglip" else {"padding": True}

    def encode(prompts, device):
        tokens = tokenizer(list(prompts), truncation=True, max_length=length, return_tensors="pt", **padding)
        with torch.no_grad():
            out = model.to(device).get_text_features(**{k: v.to(device) for k, v in tokens.items()
                                                         if k in ("input_ids", "attention_mask")})
        return (out if isinstance(out, torch.Tensor) else out.pooler_output).float()

    def project(features):
        if model_type == "siglip":
            return features
        with torch.no_grad():
            return model.visual_projection.to(features.device)(features)

    bias = getattr(model, "logit_bias", None)
    return TextTower(encode=encode, project_image=project, logit_scale=float(model.logit_scale.detach().exp()),
                     logit_bias=float(bias.detach()) if bias is not None else 0.0,
                     describe=f"transformers {type(model).__name__} text model of {spec.name}")


# --------------------------------------------------------------------------- the catalog
def _input(repo: str, curated: Curated | None) -> tuple[int, tuple, tuple]:
    """Evaluation size, mean and std: the cached preprocessor config, else the curated defaults."""
    default = curated or Curated("")
    pre = _cached_json(repo, "preprocessor_config.json")
    if not pre:
        return default.input_size, default.mean, default.std

    def edge(value: Any) -> int | None:
        if isinstance(value, dict):
            value = value.get("height", value.get("shortest_edge"))
        return int(value) if value else None

    crop = edge(pre.get("crop_size")) if pre.get("do_center_crop", True) else None
    size = crop or edge(pre.get("size")) or default.input_size
    return size, tuple(pre.get("image_mean", default.mean)), tuple(pre.get("image_std", default.std))


def get_spec(name: str) -> BackboneSpec | None:
    repo = name.removeprefix(PREFIX)
    if not REPO_ID.fullmatch(repo):
        return None
    config = _cached_json(repo, "config.json")
    curated = CURATED.get(repo)
    if curated is None and not _supported(config):
        return None
    init = init_for(repo, config)
    if init is None:
        return None
    size, mean, std = _input(repo, curated)
    refs = {init: weights_ref(repo)}
    return BackboneSpec(
        name=repo, build=functools.partial(build_hf, repo), source=SOURCE,
        description=f"transformers {repo} ({init} weights)", input_size=size, mean=mean, std=std,
        published_weights=refs, default_init=functools.partial(_published_if_cached, init, refs[init]),
    )


def _published_if_cached(init: str, ref: WeightsRef) -> str:
    return init if ref.locate() is not None else "random"


def _inits() -> dict[str, str]:
    """repo -> init name, for the curated repos and the supported ones in the cache."""
    inits = {repo: c.init for repo, c in CURATED.items()}
    for repo in cached_repos():
        config = _cached_json(repo, "config.json")
        init = init_for(repo, config) if _supported(config) else None
        if init:
            inits[repo] = init
    return inits


def _names() -> list[str]:
    return sorted(_inits())


CATALOG = BackboneCatalog(
    source=SOURCE,
    description="transformers vision models by Hub repo id (ViT, DeiT, DINOv2, ConvNeXt, Swin, ResNet, CLIP / SigLIP "
                "image towers): the curated list plus supported repos in the local Hugging Face cache",
    names=_names,
    get=get_spec,
    pretrained_names=lambda: sorted(r for r, init in _inits().items() if init == "imagenet"),
)


# --------------------------------------------------------------------------- the dinov2 init
def _dinov2_init() -> InitSpec:
    """``dinov2``: published self-supervised DINOv2 weights only (no pretraining method of its own)."""
    from gaia_bench.plugins.inits.inits import pretrained_init

    return pretrained_init("dinov2", "published self-supervised DINOv2 weights (Meta's facebook/dinov2-* repos)", None,
                           weights_source="the Hugging Face hub cache (downloaded there when missing, not with --offline)",
                           applies_to="DINOv2 repos of the transformers catalog")


@hookimpl
def register_backbones(register):
    if importlib.util.find_spec("transformers") is None:
        raise PluginError("transformers is not installed: the transformers backbones are unavailable", INSTALL_HINT)
    register(CATALOG)


@hookimpl
def register_inits(register):
    register(_dinov2_init())
