"""open_clip's CLIP visual towers as backbones (lazy catalog ``open_clip``).

Names are open_clip's model names, optionally with a pretrained tag the way timm writes them:
``RN50``, ``RN50.openai``, ``ViT-B-32.laion2b_s34b_b79k``. Without a tag the architecture's
default tag (``openai`` where it exists) names the weights. Only the towers open_clip builds itself
are listed (``ModifiedResNet``: RN50, RN101, RN50x4, ...; its ``VisionTransformer``: ViT-B-32,
ViT-B-16, ViT-L-14, ...); towers that wrap a timm or Hugging Face model are left to those plugins.

* pooled features: the tower's own output, the image embedding CLIP is trained with
  (attention pool for the ResNets, class token + projection for the ViTs);
* pyramid: ModifiedResNet's ``layer1..4`` (strides 4-32); for a ViT the patch tokens of four evenly
  spaced blocks reshaped into maps (stride = patch size), with the position embedding resized to
  the input so dense tasks may use any size;
* ``published_weights["clip"]``: the checkpoint found where ``open_clip.create_model(name,
  pretrained=tag)`` caches it: the Hugging Face hub cache (``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin`` of the tag's ``hf_hub`` repo), else ``~/.cache/clip`` for tags
  published by URL (OpenAI's TorchScript files included); when missing, downloaded there the way
  open_clip would (hub first, else the URL, checked against the sha256 it carries). Only the
  ``visual.*`` tensors are read.

Nothing here imports open_clip until a name is looked up; without the package the plugin is listed
as broken with the ``pip install`` that fixes it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gaia_bench import hookimpl
from gaia_bench.api import BackboneCatalog, BackboneSpec, WeightsRef
from gaia_bench.errors import GaiaBenchError, PluginError
from gaia_bench.plugins.backbones.lib.text_tower import TextTower
from gaia_bench.plugins.backbones.lib.weights_download import hf_fetch, url_fetch
from gaia_bench.plugins.backbones.lib.weights_files import clip_cache_dir, hf_cached_file, hf_hub_cache

if TYPE_CHECKING:
    import torch

PLUGIN_ORDER = 130

SOURCE = "open_clip"
INIT = "clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
INSTALL_HINT = "pip install open_clip_torch (or pip install 'gaia-bench[clip]')"


class WeightsLoadError(GaiaBenchError):
    """A checkpoint whose tensors do not fit the tower they were meant for."""


# --------------------------------------------------------------------------- configs and tags
def _tower_kind(model_cfg: dict | None) -> str | None:
    """"resnet" or "vit" for towers open_clip builds itself, None for the others."""
    if not model_cfg or "multimodal_cfg" in model_cfg:
        return None
    vision = model_cfg.get("vision_cfg") or {}
    if vision.get("timm_model_name") or vision.get("hf_model_name"):
        return None
    if isinstance(vision.get("layers"), (list, tuple)):
        return "resnet"
    if vision.get("attentional_pool") or vision.get("pos_embed_type", "learnable") != "learnable":
        return None
    return "vit" if vision.get("patch_size") else None


@functools.lru_cache(maxsize=1)
def _bundled_configs() -> frozenset[str]:
    """The model names open_clip ships configs for, read from its package directory without
    importing it (the import takes seconds, and every backbone lookup asks this catalog)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return frozenset(p.stem for loc in locations for p in (Path(loc) / "model_configs").glob("*.json"))


def _model_cfg(arch: str) -> dict | None:
    import open_clip

    return open_clip.get_model_config(arch)


def _tags(arch: str) -> list[str]:
    import open_clip

    return list(open_clip.list_pretrained_tags_by_model(arch))


def _default_tag(arch: str) -> str:
    tags = _tags(arch)
    return "openai" if "openai" in tags else (tags[0] if tags else "")


def _tag_cfg(arch: str, tag: str) -> dict:
    import open_clip

    return open_clip.get_pretrained_cfg(arch, tag) if tag else {}


# --------------------------------------------------------------------------- locating the checkpoint
def _hf_target(tag_cfg: dict) -> tuple[str, tuple[str, ...]]:
    """(repo id, file names in open_clip's order of preference) of a tag's ``hf_hub`` entry."""
    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        return "", ()
    repo, filename = os.path.split(hub)  # "org/name/" names the repo only: open_clip's default files
    if not filename:
        return repo, HF_FILES
    stem, ext = os.path.splitext(filename)
    return repo, ((f"{stem}.safetensors",) if ext in (".bin", ".pth", ".pt") else ()) + (filename,)


def weights_ref(arch: str, tag: str) -> WeightsRef:
    cfg = _tag_cfg(arch, tag)
    repo, files = _hf_target(cfg)
    url = cfg.get("url", "")
    url_file = url.rsplit("/", 1)[-1] if url else ""

    def locate() -> Path | None:
        if repo:
            found = hf_cached_file(repo, files)
            if found is not None:
                return found
        if url_file and (clip_cache_dir() / url_file).is_file():
            return clip_cache_dir() / url_file
        return None

    expected = " or ".join(
        ([f"models--{repo.replace('/', '--')}/snapshots/*/{files[0]}"] if repo else []) + ([url_file] if url_file else []))
    dirs = tuple(str(d) for d in ([hf_hub_cache()] if repo else []) + ([clip_cache_dir()] if url_file else []))
    def download(progress) -> Path:  # open_clip's order: the hub when the tag has a repo, else its URL
        found = hf_fetch(repo, files, progress, required=not url) if repo else None
        return found or url_fetch(url, clip_cache_dir(), progress, hash_prefix=url_sha256(url))

    return WeightsRef(
        tag=f"{arch}.{tag}", locate=locate, expected=expected, search_dirs=dirs,
        fetch_command=f"python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\"",
        download=download if repo or url else None,
    )


def url_sha256(url: str) -> str:
    """The sha256 (or its prefix) a URL tag's file must have, by open_clip's own rule
    (``download_pretrained_from_url``): OpenAI's URLs carry it as a folder, mlfoundations' in the
    file name; "" for others (not checked)."""
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(url.rsplit("/", 1)[-1])[0].split("-")[-1]
    return ""


# --------------------------------------------------------------------------- reading a checkpoint
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an open_clip / OpenAI CLIP checkpoint: safetensors, plain state dicts
    (``state_dict`` wrapper and DDP ``module.`` prefix allowed) and OpenAI's TorchScript archives."""
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        checkpoint: Any = load_file(str(path))
    else:
        with warnings.catch_warnings():  # torch.load warns before it refuses a TorchScript archive
            warnings.simplefilter("ignore", UserWarning)
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            except RuntimeError:
                checkpoint = torch.jit.load(str(path), map_location="cpu")  # OpenAI's TorchScript files
    if isinstance(checkpoint, torch.jit.ScriptModule):
        checkpoint = checkpoint.state_dict()
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise WeightsLoadError(f"{path} holds no state dict", "is it an open_clip checkpoint?")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def read_visual_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of an open_clip / OpenAI CLIP checkpoint, prefix removed."""
    state = read_state_dict(path)
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise WeightsLoadError(f"{path} has no visual.* tensors (keys start with: {', '.join(list(state)[:4])})",
                               "it is not a CLIP checkpoint; open_clip checkpoints keep the image tower under visual.")
    return visual


def load_visual(tower, path: str | Path) -> None:
    """Load a checkpoint's image tower strictly; the error names what does not fit."""
    state = read_visual_state_dict(path)
    own = tower.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''} ({len(keys)})"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)) if keys]
    if problems:
        raise WeightsLoadError(f"{path} does not fit this image tower: " + "; ".join(problems),
                               "the checkpoint belongs to another open_clip architecture")
    tower.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- the backbone
def _resnet_pyramid(tower, x):
    return tower.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)["image_intermediates"]


def vit_blocks(depth: int) -> list[int]:
    """Four evenly spaced block indices ending with the last (fewer for very shallow towers)."""
    return sorted({max(0, round(depth * k / 4) - 1) for k in range(1, 5)})


def _vit_pyramid(blocks: list[int]):
    def pyramid(tower, x):
        import torch
        import torch.nn.functional as F

        ph, pw = tower.patch_size
        h, w = x.shape[-2] // ph, x.shape[-1] // pw
        tokens = tower.conv1(x).flatten(2).transpose(1, 2)
        pos = tower.positional_embedding.to(tokens.dtype)
        gh, gw = tower.grid_size
        if (h, w) != (gh, gw):
            grid = pos[1:].reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)])
        cls = tower.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = tower.ln_pre(torch.cat([cls, tokens], dim=1) + pos)
        _, outs = tower.transformer.forward_intermediates(tokens, indices=blocks)
        return [o[:, 1:].reshape(o.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous() for o in outs]

    return pyramid


def build_tower(model_cfg: dict, *, name: str, quick_gelu: bool = False, weights: str | None = None):
    """A :class:`Backbone` around the image tower of an open_clip model config."""
    from open_clip.model import _build_vision_tower  # open_clip's own tower factory (create_model uses it)

    from gaia_bench.backbone import Backbone

    kind = _tower_kind(model_cfg)
    if kind is None:
        raise GaiaBenchError(f"open_clip model '{name}' has an image tower this plugin does not wrap",
                             "use its timm or transformers counterpart")
    vision = dict(model_cfg["vision_cfg"])
    tower = _build_vision_tower(model_cfg["embed_dim"], vision, quick_gelu=bool(model_cfg.get("quick_gelu") or quick_gelu))
    if weights:
        load_visual(tower, weights)
    if kind == "resnet":
        width = int(vision.get("width", 64))
        channels, reductions = [width * 4 * 2 ** i for i in range(4)], [4, 8, 16, 32]
        pyramid = _resnet_pyramid
    else:
        blocks = vit_blocks(int(vision["layers"]))
        channels, reductions = [int(vision["width"])] * len(blocks), [int(vision["patch_size"])] * len(blocks)
        pyramid = _vit_pyramid(blocks)
    return Backbone(tower, int(model_cfg["embed_dim"]), name=name, pyramid=pyramid,
                    pyramid_channels=channels, pyramid_reductions=reductions)


def build(arch: str, tag: str, weights: str | None = None):
    quick_gelu = bool(_tag_cfg(arch, tag).get("quick_gelu"))
    return build_tower(_model_cfg(arch), name=f"{arch}.{tag}" if tag else arch, quick_gelu=quick_gelu, weights=weights)


def text_tower(spec: BackboneSpec, path: str | Path) -> TextTower:
    """The text half of the open_clip model behind ``spec`` (``arch.tag``), read from the same
    checkpoint as its image tower, with open_clip's own tokenizer for the architecture. The
    tower's pooled features are already CLIP's image embeddings: no projection to add."""
    import open_clip
    import torch

    arch, _, tag = spec.name.partition(".")
    tag = tag or _default_tag(arch)
    model = open_clip.create_model(arch, force_quick_gelu=bool(_tag_cfg(arch, tag).get("quick_gelu")))
    model.visual = torch.nn.Identity()  # the backbone is the image side
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("visual.")}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise WeightsLoadError(f"{path} has no text tower for {arch}: missing {', '.join(missing[:5])} ({len(missing)})",
                               "zero-shot needs the full open_clip checkpoint, not an image tower alone")
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    model.eval()
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # noqa: BLE001 - an HF tokenizer that is not cached: say so in one line
        raise WeightsLoadError(f"open_clip's tokenizer for {arch} is not available offline ({type(exc).__name__}: {exc})",
                               f"on a machine with internet run `python -c \"import open_clip; open_clip.get_tokenizer('{arch}')\"` "
                               "and copy the Hugging Face cache here") from None

    def encode(prompts, device):
        with torch.no_grad():
            return model.to(device).encode_text(tokenizer(list(prompts)).to(device)).float()

    bias = getattr(model, "logit_bias", None)
    return TextTower(encode=encode, project_image=lambda features: features,
                     logit_scale=float(model.logit_scale.detach().exp()), logit_bias=float(bias.detach()) if bias is not None else 0.0,
                     describe=f"open_clip {arch}.{tag} text tower ({Path(path).name})")


# --------------------------------------------------------------------------- the catalog
def _input_size(model_cfg: dict) -> int:
    size = model_cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _published_if_cached(refs: dict[str, WeightsRef]) -> str:
    ref = refs.get(INIT)
    return INIT if ref is not None and ref.locate() is not None else "random"


def get_spec(name: str) -> BackboneSpec | None:
    arch, _, tag = name.partition(".")
    if ":" in arch or "/" in arch:  # hf-hub: / local-dir: names would make open_clip fetch or read elsewhere
        return None
    if arch not in _bundled_configs() and "open_clip" not in sys.modules:  # configs added at run time
        return None                                                      # live only in the imported package
    cfg = _model_cfg(arch)
    if cfg is None:
        return None
    if _tower_kind(cfg) is None:
        return None
    if tag and tag not in _tags(arch):
        return None
    tag = tag or _default_tag(arch)
    tag_cfg = _tag_cfg(arch, tag)
    refs = {INIT: weights_ref(arch, tag)} if tag else {}
    return BackboneSpec(
        name=name, build=functools.partial(build, arch, tag), source=SOURCE,
        description=f"open_clip {arch} image tower" + (f", weights '{tag}'" if tag else ""),
        input_size=_input_size(cfg),
        mean=tuple(tag_cfg.get("mean", OPENAI_MEAN)), std=tuple(tag_cfg.get("std", OPENAI_STD)),
        published_weights=refs, default_init=functools.partial(_published_if_cached, refs),
    )


def _names() -> list[str]:
    import open_clip

    return [m for m in open_clip.list_models() if _tower_kind(_model_cfg(m)) is not None]


CATALOG = BackboneCatalog(
    source=SOURCE,
    description="open_clip CLIP image towers (RN50 ... RN50x64, ViT-B-32 ... ViT-L-14, name or name.tag); "
                "CLIP weights from the Hugging Face cache or ~/.cache/clip",
    names=_names,
    get=get_spec,
    pretrained_names=lambda: (),  # `gaia-bench models --pretrained` lists ImageNet weights; these are CLIP's
)


@hookimpl
def register_backbones(register):
    if importlib.util.find_spec("open_clip") is None:
        raise PluginError("open_clip is not installed: the open_clip backbones are unavailable", INSTALL_HINT)
    register(CATALOG)
