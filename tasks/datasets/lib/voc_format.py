"""PASCAL VOC's on-disk format, written and read the way the VOC devkit lays it out.

Layout under a VOC year directory (``VOC2007/``, ``VOC2012/``)::

    JPEGImages/<id>.jpg                 Annotations/<id>.xml
    SegmentationClass/<id>.png          8-bit palette PNG, VOC colour map, 255 = void
    ImageSets/Main/<split>.txt          one id per line
    ImageSets/Main/<class>_<split>.txt  "<id> <flag>", flag 1 present, 0 only difficult, -1 absent
    ImageSets/Segmentation/<split>.txt

Boxes: VOC XML stores 1-based, inclusive pixel indices (``xmin=1, xmax=W`` is the whole width).
In code, boxes are 0-based continuous ``(x1, y1, x2, y2)`` with pixel ``c`` covering ``[c, c+1)``
— detectron2's reading of VOC: ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``. The
writer applies the inverse, so integer boxes round-trip exactly.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget

VOID = 255
JPEG_QUALITY = 95
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class VocObject:
    name: str
    box: Box  # 0-based continuous xyxy (see module docstring)
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"


@dataclass(frozen=True)
class VocAnnotation:
    filename: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


@lru_cache(maxsize=1)
def _colormap_bytes() -> bytes:
    return voc_colormap().tobytes()


def voc_colormap(n: int = 256) -> np.ndarray:
    """The devkit's colour map (``labelcolormap.m``): the bits of the index interleaved into
    R, G, B from the most significant bit down. 0 black, 1 (128, 0, 0), 255 (224, 224, 192)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= (c & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        cmap[index] = (r, g, b)
    return cmap


def void_boundary(instance_map: np.ndarray, radius: int = 1) -> np.ndarray:
    """Pixels within ``radius`` of a change of instance id: VOC's void band along object outlines.

    VOC's band is ~5 px wide on ~500 px images; radius 1 (a 2 px band, one pixel either side)
    is the same share of a ~190 px image and still leaves small objects an interior.
    """
    padded = np.pad(instance_map, radius, mode="edge")
    rows, cols = instance_map.shape
    band = np.zeros(instance_map.shape, dtype=bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[radius + dy:radius + dy + rows, radius + dx:radius + dx + cols]
            band |= shifted != instance_map
    return band


# ----------------------------------------------------------------------------- writing
def _annotation_xml(folder: str, image_id: str, width: int, height: int, objects: Sequence[VocObject],
                    segmented: bool) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "gaia-bench mini (synthetic scenes)"
    ET.SubElement(source, "annotation").text = "PASCAL VOC format"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1" if segmented else "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = obj.pose
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        bndbox = ET.SubElement(node, "bndbox")
        x1, y1, x2, y2 = obj.box
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = f"{value:g}"
    tree = ET.ElementTree(root)
    ET.indent(tree, space="\t")
    return tree


def write_image(root: Path, folder: str, image_id: str, rgb: np.ndarray, objects: Sequence[VocObject],
                segmentation: np.ndarray | None = None) -> None:
    """One image's JPEG, XML and (when given) class-index segmentation PNG."""
    from PIL import Image

    for sub in ("JPEGImages", "Annotations", "SegmentationClass"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    height, width = rgb.shape[:2]
    Image.fromarray(rgb).save(root / "JPEGImages" / f"{image_id}.jpg", quality=JPEG_QUALITY)
    tree = _annotation_xml(folder, image_id, width, height, objects, segmentation is not None)
    tree.write(root / "Annotations" / f"{image_id}.xml", encoding="utf-8", xml_declaration=False)
    if segmentation is not None:
        png = Image.frombytes("P", (width, height), np.ascontiguousarray(segmentation, dtype=np.uint8).tobytes())
        png.putpalette(_colormap_bytes())
        png.save(root / "SegmentationClass" / f"{image_id}.png")


def write_image_sets(root: Path, classes: Sequence[str], main: Mapping[str, Sequence[str]],
                     segmentation: Mapping[str, Sequence[str]],
                     objects: Mapping[str, Sequence[VocObject]]) -> None:
    """``ImageSets/Main`` (with the per-class presence files) and ``ImageSets/Segmentation``."""
    for kind, sets in (("Main", main), ("Segmentation", segmentation)):
        (root / "ImageSets" / kind).mkdir(parents=True, exist_ok=True)
        for split, ids in sets.items():
            (root / "ImageSets" / kind / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for name in classes:
        for split, ids in main.items():
            lines = [f"{i} {_presence(objects[i], name):2d}\n" for i in ids]
            (root / "ImageSets" / "Main" / f"{name}_{split}.txt").write_text("".join(lines))


def _presence(objects: Sequence[VocObject], name: str) -> int:
    mine = [o for o in objects if o.name == name]
    if not mine:
        return -1
    return 0 if all(o.difficult for o in mine) else 1


# ----------------------------------------------------------------------------- reading
def read_image_set(root: Path, split: str, kind: str = "Main") -> list[str]:
    path = root / "ImageSets" / kind / f"{split}.txt"
    if not path.exists():
        raise DataError(f"missing {path}", "re-create the dataset with `gaia-bench datasets prepare`")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(f"{path}: <{node.tag}> has no <{tag}>", "fix or re-create the annotation")
    return child.text.strip()


def read_annotation(path: Path) -> VocAnnotation:
    """Parse one VOC XML file; boxes come back 0-based continuous (``xmin - 1, ymin - 1, xmax, ymax``)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{path}: cannot parse ({exc})", "fix or re-create the annotation") from exc
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: no <size>", "fix or re-create the annotation")
    objects = []
    for node in root.iter("object"):
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise DataError(f"{path}: <object> has no <bndbox>", "fix or re-create the annotation")
        xmin, ymin, xmax, ymax = (float(_text(bndbox, t, path)) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = node.find("difficult")
        truncated = node.find("truncated")
        pose = node.find("pose")
        objects.append(VocObject(
            name=_text(node, "name", path),
            box=(xmin - 1, ymin - 1, xmax, ymax),
            difficult=difficult is not None and (difficult.text or "0").strip() == "1",
            truncated=truncated is not None and (truncated.text or "0").strip() == "1",
            pose=(pose.text or "Unspecified").strip() if pose is not None else "Unspecified",
        ))
    return VocAnnotation(_text(root, "filename", path), int(_text(size, "width", path)),
                         int(_text(size, "height", path)), tuple(objects))


def read_detection(path: Path, classes: Sequence[str]) -> DetectionTarget:
    """One XML file as a :class:`DetectionTarget`: names become indices into ``classes``, boxes are
    0-based continuous (``xmin - 1, ymin - 1, xmax, ymax``), ``difficult`` kept for VOC's mAP."""
    ann = read_annotation(path)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({o.name for o in ann.objects} - index.keys())
    if unknown:
        raise DataError(f"{path}: unknown class {unknown[0]!r}", f"the classes are {', '.join(classes)}")
    return DetectionTarget(boxes=tuple(o.box for o in ann.objects),
                           labels=tuple(index[o.name] for o in ann.objects),
                           difficult=tuple(o.difficult for o in ann.objects),
                           width=ann.width, height=ann.height)


def read_segmentation(path: Path) -> np.ndarray:
    """Class indices of a ``SegmentationClass`` PNG (palette indices; 255 = void) or of a greyscale
    index PNG (SBD's masks as mmseg converts them into ``SegmentationClassAug``)."""
    from PIL import Image

    with Image.open(path) as png:
        if png.mode not in ("P", "L"):
            raise DataError(f"{path} is a {png.mode} PNG, expected a palette ('P') or index ('L') PNG",
                            "re-create the segmentation masks")
        return np.array(png)
