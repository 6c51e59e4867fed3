"""``mini-upstream``: the embedded upstream pool that the pretraining methods train on.

Like GAIA's pool (Open Images + Objects365 + COCO), it has several SOURCES whose label
vocabularies differ and overlap under different names, each in its own annotation format, plus
CAPTIONS for image-text pretraining and UNLABELLED images for self-supervised methods:

* ``wardrobe`` (COCO-style ``annotations.json``): Fashion-MNIST *training* photos of 6 classes;
* ``catalogue`` (GV-B meta list): other Fashion-MNIST training photos of 7 classes, 4 of which are
  ``wardrobe`` classes under other names ("tee shirt" = "t-shirt", "sweater" = "pullover",
  "jacket" = "coat", "gown" = "dress");
* ``surfaces`` (image folder): patches of real scikit-image photos (coins, page, camera, astronaut,
  hubble) — a domain the downstream sets do not have;
* ``captions.jsonl``: one caption per labelled image, from templates over its class and its
  measured brightness;
* ``unlabeled/``: Fashion-MNIST training photos and photo patches with no label at all.

Downstream and upstream relate as in GV-B — related, not identical: ``fashion-mnist-lt`` draws
only from the official *test* images (no shared image), its 10 classes overlap the pool's under
the pool's own names, and digits, faces and textures have no upstream counterpart.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.generated_sets import rank, to_uint8
from gaia_bench.tasks.datasets.lib.image_folder import read_image_folder
from gaia_bench.tasks.datasets.lib.manifest import verify_manifest, write_manifest
from gaia_bench.tasks.datasets.lib.meta_list import read_meta_list, write_meta_list

PLUGIN_ORDER = 820

NAME = "mini-upstream"
# Fashion-MNIST label -> name, per source (absent = not in that source)
WARDROBE = {0: "t-shirt", 1: "trousers", 2: "pullover", 3: "dress", 4: "coat", 5: "sandal"}
CATALOGUE = {0: "tee shirt", 2: "sweater", 4: "jacket", 3: "gown", 6: "shirt", 7: "sneaker", 8: "handbag"}
SURFACES = ("coins", "page", "camera", "astronaut", "hubble_deep_field")
PER_CLASS = {"wardrobe": 120, "catalogue": 80, "surfaces": 80}
UNLABELED_FASHION, UNLABELED_PATCHES = 300, 100
CAPTION_TEMPLATES = (
    "a photo of a {name}.",
    "a {tone} photo of a {name}.",
    "a small {tone} picture showing a {name}.",
    "a cropped image of the {name}.",
)
COUNTS = {"wardrobe": 720, "catalogue": 560, "surfaces": 400, "unlabeled": 400, "captions": 1680}


@dataclass(frozen=True)
class UpstreamPool:
    """What pretraining methods read: labelled sources, captions and unlabelled images."""

    sources: dict[str, Samples]
    captions: list[tuple[Sample, str]]
    unlabeled: list[Sample]


def _tone(image: np.ndarray) -> str:
    mean = float(np.asarray(image, dtype=np.float32).mean()) / 255.0
    return "dark" if mean < 0.2 else "bright" if mean > 0.45 else "grey"


def _patches(name: str, n: int, size: int = 28) -> list[np.ndarray]:
    from PIL import Image
    from skimage import color, data

    photo = getattr(data, name)()
    if photo.ndim == 3:
        photo = to_uint8(color.rgb2gray(photo))
    rng = np.random.default_rng(zlib.crc32(f"{NAME}:{name}".encode()))
    out = []
    for _ in range(n):
        side = int(rng.integers(28, 80))
        top, left = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(crop))
    return out


def _pick(labels: np.ndarray, wanted: dict[int, str], per_class: int, salt: str, taken: set[int]) -> list[int]:
    chosen = []
    for label in sorted(wanted):
        members = sorted((i for i in np.flatnonzero(labels == label) if i not in taken), key=lambda i: rank(salt, int(i)))
        chosen += [int(i) for i in members[:per_class]]
    taken.update(chosen)
    return chosen


def prepare(root: Path) -> None:
    from PIL import Image

    from gaia_bench.tasks.datasets.fashion_mnist import load_official

    images, labels = load_official("train")
    root.mkdir(parents=True, exist_ok=True)
    taken: set[int] = set()
    captions: list[dict] = []

    def save(rel: str, pixels: np.ndarray, name: str | None) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel, optimize=False)
        if name is not None:
            template = CAPTION_TEMPLATES[int.from_bytes(rank("caption", len(captions)), "big") % len(CAPTION_TEMPLATES)]
            captions.append({"image": rel, "caption": template.format(name=name, tone=_tone(pixels))})

    # wardrobe: COCO-style image-level annotations
    names = [WARDROBE[k] for k in sorted(WARDROBE)]
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    for index in _pick(labels, WARDROBE, PER_CLASS["wardrobe"], "wardrobe", taken):
        rel = f"wardrobe/images/{index:05d}.png"
        save(rel, images[index], WARDROBE[int(labels[index])])
        image_id = len(coco["images"]) + 1
        coco["images"].append({"id": image_id, "file_name": rel.split("/", 1)[1], "width": 28, "height": 28})
        coco["annotations"].append({"id": image_id, "image_id": image_id,
                                    "category_id": names.index(WARDROBE[int(labels[index])]) + 1})
    (root / "wardrobe" / "annotations.json").write_text(json.dumps(coco, indent=1))

    # catalogue: GV-B meta list with its own class order
    cat_names = [CATALOGUE[k] for k in sorted(CATALOGUE)]
    entries = []
    for index in _pick(labels, CATALOGUE, PER_CLASS["catalogue"], "catalogue", taken):
        rel = f"images/{index:05d}.png"
        save(f"catalogue/{rel}", images[index], CATALOGUE[int(labels[index])])
        entries.append((rel, cat_names.index(CATALOGUE[int(labels[index])])))
    (root / "catalogue" / "classes.txt").write_text("".join(f"{n}\n" for n in cat_names))
    write_meta_list(root / "catalogue" / "train_meta.list", entries)

    # surfaces: image folder of real photo patches
    for name in SURFACES:
        for i, patch in enumerate(_patches(name, PER_CLASS["surfaces"])):
            save(f"surfaces/{name.replace('_', ' ')}/{i:04d}.png", patch, name.replace("_", " "))

    # unlabelled images: more fashion photos, more patches of photos not used above
    rest = sorted((i for i in range(len(labels)) if i not in taken), key=lambda i: rank("unlabeled", i))
    for index in rest[:UNLABELED_FASHION]:
        save(f"unlabeled/f{index:05d}.png", images[index], None)
    for i, patch in enumerate(_patches("text", UNLABELED_PATCHES)):
        save(f"unlabeled/p{i:04d}.png", patch, None)

    (root / "captions.jsonl").write_text("".join(json.dumps(c, sort_keys=True) + "\n" for c in captions))
    write_manifest(root)


def _read_coco(root: Path) -> Samples:
    path = root / "wardrobe" / "annotations.json"
    if not path.exists():
        raise DataError(f"missing {path}", f"run `gaia-bench datasets prepare {NAME} --force`")
    doc = json.loads(path.read_text())
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    label_of = {a["image_id"]: index_of[a["category_id"]] for a in doc["annotations"]}
    samples = [Sample(f"wardrobe/{im['file_name']}", root / "wardrobe" / im["file_name"], label_of[im["id"]])
               for im in doc["images"]]
    return Samples(samples, [c["name"] for c in categories])


def load_pool(root: Path) -> UpstreamPool:
    """Every part of the pool, each read in its own official format."""
    classes = (root / "catalogue" / "classes.txt").read_text().split("\n")[:-1] if (root / "catalogue").exists() else []
    catalogue = read_meta_list(root / "catalogue", "train_meta.list", classes)
    catalogue = Samples([Sample(f"catalogue/{s.key}", s.path, s.target) for s in catalogue.samples], classes)
    sources = {"wardrobe": _read_coco(root), "catalogue": catalogue, "surfaces": read_image_folder(root, "surfaces")}
    by_key = {s.key: s for src in sources.values() for s in src.samples}
    captions = []
    for line in (root / "captions.jsonl").read_text().splitlines():
        item = json.loads(line)
        captions.append((by_key[item["image"]], item["caption"]))
    unlabeled = [Sample(f"unlabeled/{p.name}", p, None) for p in sorted((root / "unlabeled").glob("*.png"))]
    return UpstreamPool(sources, captions, unlabeled)


def load(root: Path, split: str) -> Samples:
    """A source of the pool by name (``wardrobe``, ``catalogue``, ``surfaces``)."""
    pool = load_pool(root)
    if split not in pool.sources:
        raise DataError(f"{NAME} has no source '{split}'", "sources: " + ", ".join(pool.sources))
    return pool.sources[split]


def verify(root: Path) -> list[str]:
    fix = f"run `gaia-bench datasets prepare {NAME} --force`"
    if not root.exists():
        return [f"{root} does not exist: run `gaia-bench datasets prepare {NAME}`"]
    try:
        pool = load_pool(root)
    except (OSError, DataError, KeyError, ValueError) as exc:
        return [f"cannot read the pool: {exc}: {fix}"]
    found = {**{k: len(v) for k, v in pool.sources.items()}, "unlabeled": len(pool.unlabeled), "captions": len(pool.captions)}
    problems = [f"{part} has {found[part]} items, expected {n}: {fix}" for part, n in COUNTS.items() if found[part] != n]
    return problems + verify_manifest(root, fix)


MINI_UPSTREAM = DatasetSpec(
    name=NAME,
    task="upstream",
    description="upstream pool: 3 sources with overlapping vocabularies (COCO json, meta list, image folder), captions, unlabelled",
    load=load,
    verify=verify,
    prepare=prepare,
    prepare_hint="needs Debian's dataset-fashion-mnist: run `make sources` or `sudo apt-get install dataset-fashion-mnist`",
    splits={k: v for k, v in COUNTS.items() if k in ("wardrobe", "catalogue", "surfaces")},
    train_split="wardrobe",
    test_split="catalogue",
    provenance=embedded(*[("Fashion-MNIST training photos, Debian package dataset-fashion-mnist", None), ("patches of skimage.data photos", "scikit-image")]),
)


@hookimpl
def register_datasets(register):
    register(MINI_UPSTREAM)
