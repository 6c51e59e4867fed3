"""WIDER FACE (GV-B's face detection column) in its official layout under ``DATA_ROOT/widerface``
(torchvision's ``WIDERFace`` reads the same tree)::

    WIDER_train/images/<event>/<name>.jpg            12,880 images
    WIDER_val/images/<event>/<name>.jpg               3,226 images
    wider_face_split/wider_face_{train,val}_bbx_gt.txt
    eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat     (from eval_tools.zip)

``*_bbx_gt.txt``: an image's path relative to ``images/``, its face count, then one line per face,
``x y w h blur expression illumination invalid occlusion pose``; an image without faces still has one
all-zero line. The evaluation ``.mat`` files (MATLAB v5 cells indexed by event, then image) hold the
boxes the official evaluation uses (``face_bbx_list``) and, per setting, the 1-based indices of the
faces it keeps (``gt_list``). Val targets take both from there, so the evaluation is the official
one (the txt adds only the ``invalid`` flags, where its face count agrees). Train targets keep every
valid face in all three settings (there are no official train lists; only held-out early stopping
reads them). Invalid and zero-sized faces are ``difficult``: never trained on. GV-B evaluates on
val (``ap_easy`` / ``ap_medium`` / ``ap_hard``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import downloaded
from gaia_bench.tasks.datasets.lib.dense_targets import FaceTarget
from gaia_bench.tasks.datasets.lib.gvb_dense_common import Problems, check_count, check_images, extra_files, missing_root, unknown_split

PLUGIN_ORDER = 860

NAME = "widerface"
SIZES = {"train": 12880, "val": 3226}
SETTINGS = ("easy", "medium", "hard")
GT_DIRS = ("eval_tools/ground_truth", "ground_truth", "wider_face_split")
SPLIT_URL = "http://shuoyang1213.me/WIDERFACE/support/bbx_annotation/wider_face_split.zip"
EVAL_URL = "http://shuoyang1213.me/WIDERFACE/support/eval_script/eval_tools.zip"

HINT = f"""\
WIDER FACE needs a manual download (images on Google Drive / the WIDER FACE site, CC BY-NC-ND 4.0):
  1. from http://shuoyang1213.me/WIDERFACE/ download WIDER_train.zip and WIDER_val.zip and unzip both
     into DATA_ROOT/widerface/
  2. download {SPLIT_URL} and unzip it into DATA_ROOT/widerface/
  3. download {EVAL_URL} and unzip it into DATA_ROOT/widerface/ (the official easy/medium/hard lists)
Expected tree:
  DATA_ROOT/widerface/WIDER_train/images/<event>/*.jpg
  DATA_ROOT/widerface/WIDER_val/images/<event>/*.jpg
  DATA_ROOT/widerface/wider_face_split/wider_face_train_bbx_gt.txt, wider_face_val_bbx_gt.txt
  DATA_ROOT/widerface/eval_tools/ground_truth/wider_face_val.mat, wider_easy_val.mat, wider_medium_val.mat, wider_hard_val.mat"""


def _fix(step: str = "images") -> str:
    steps = {"images": "unzip WIDER_train.zip / WIDER_val.zip again", "split": f"unzip {SPLIT_URL.rsplit('/', 1)[-1]} again",
             "eval": f"unzip {EVAL_URL.rsplit('/', 1)[-1]} again"}
    return f"{steps[step]} (`gaia-bench datasets prepare {NAME}` prints the steps)"


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x, y, x + w, y + h
    invalid: bool

    @property
    def trainable(self) -> bool:
        return not self.invalid and self.box[2] > self.box[0] and self.box[3] > self.box[1]


def read_bbx_gt(path: Path) -> list[tuple[str, list[Face]]]:
    """``(relative image path, faces)`` per image of a ``wider_face_*_bbx_gt.txt``."""
    if not path.exists():
        raise DataError(f"missing {path}", _fix("split"))
    lines = path.read_text().splitlines()
    out, i = [], 0
    try:
        while i < len(lines):
            name = lines[i].strip()
            if not name:
                i += 1
                continue
            count = int(lines[i + 1])
            rows = lines[i + 2:i + 2 + max(count, 1)]
            faces = []
            for row in rows[:count]:
                x, y, w, h, _blur, _expr, _illum, invalid, _occl, _pose = (int(v) for v in row.split()[:10])
                faces.append(Face((float(x), float(y), float(x + w), float(y + h)), bool(invalid)))
            out.append((name, faces))
            i += 2 + max(count, 1)
    except (IndexError, ValueError) as exc:
        raise DataError(f"{path}:{i + 1}: not WIDER FACE's 'name / count / x y w h + 6 attributes' format ({exc})",
                        _fix("split")) from None
    return out


def _ground_truth_dir(root: Path) -> Path | None:
    for sub in GT_DIRS:
        if (root / sub / "wider_face_val.mat").exists():
            return root / sub
    return None


def _cells(value) -> list:
    return list(np.asarray(value, dtype=object).reshape(-1))


def _text(value) -> str:
    return str(np.asarray(value).reshape(-1)[0])


@lru_cache(maxsize=2)
def read_eval_lists(gt_dir: Path) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``"<event>/<name>.jpg" -> (boxes xyxy (M, 4), {setting: keep mask (M,)})`` from the official files."""
    import scipy.io

    def load(name: str) -> dict:
        path = gt_dir / name
        if not path.exists():
            raise DataError(f"missing {path}", _fix("eval"))
        try:
            return scipy.io.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for a damaged file
            raise DataError(f"{path} is unreadable ({exc})", _fix("eval")) from None

    face = load("wider_face_val.mat")
    settings = {s: _cells(load(f"wider_{s}_val.mat")["gt_list"]) for s in SETTINGS}
    out = {}
    for e, (event, files, boxes) in enumerate(zip(_cells(face["event_list"]), _cells(face["file_list"]),
                                                  _cells(face["face_bbx_list"]))):
        for j, (name, xywh) in enumerate(zip(_cells(files), _cells(boxes))):
            xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            keep = {}
            for s in SETTINGS:
                indices = np.asarray(_cells(settings[s][e])[j], dtype=np.int64).reshape(-1)
                mask = np.zeros(len(xyxy), dtype=bool)
                mask[indices - 1] = True
                keep[s] = mask
            out[f"{_text(event)}/{_text(name)}.jpg"] = (xyxy, keep)
    return out


def load(root: Path, split: str) -> Samples:
    if split not in SIZES:
        raise unknown_split(NAME, split, list(SIZES))
    entries = read_bbx_gt(root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt")
    images = root / f"WIDER_{split}" / "images"
    official = None
    if split == "val":
        gt_dir = _ground_truth_dir(root)
        if gt_dir is None:
            raise DataError(f"missing {root / GT_DIRS[0] / 'wider_face_val.mat'} (the official evaluation lists)",
                            _fix("eval"))
        official = read_eval_lists(gt_dir)
    samples = []
    for name, faces in entries:
        path = images / name
        width, height = _image_size(path)
        difficult = tuple(not f.trainable for f in faces)
        if official is None:
            keep = tuple(not d for d in difficult)
            masks = {s: keep for s in SETTINGS}
            boxes = tuple(f.box for f in faces)
        else:
            if name not in official:
                raise DataError(f"{name} is in wider_face_val_bbx_gt.txt but not in wider_face_val.mat",
                                "use the wider_face_split.zip and eval_tools.zip of the same release")
            xyxy, keep_masks = official[name]
            boxes = tuple(tuple(float(v) for v in box) for box in xyxy)
            if len(xyxy) != len(faces):  # the .mat is what the evaluation uses; sizes alone say what is trainable
                difficult = tuple(not (x2 > x1 and y2 > y1) for x1, y1, x2, y2 in boxes)
            masks = {s: tuple(bool(v) for v in keep_masks[s]) for s in SETTINGS}
        samples.append(Sample(key=name, path=path, target=FaceTarget(
            boxes=boxes, labels=(0,) * len(faces), difficult=difficult, width=width, height=height, **masks)))
    return Samples(samples, ["face"])


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc})", _fix()) from None


def verify(root: Path, sizes: dict[str, int] = SIZES) -> list[str]:
    if not root.is_dir():
        return missing_root(root, NAME, HINT)
    problems = Problems()
    for split, expected in sizes.items():
        try:
            entries = read_bbx_gt(root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt")
        except DataError as exc:
            problems.add("missing files", exc.message, exc.hint or _fix("split"))
            continue
        check_count(problems, f"wider_face_{split}_bbx_gt.txt images", len(entries), expected, _fix("split"))
        images = root / f"WIDER_{split}" / "images"
        paths = [images / name for name, _ in entries]
        check_images(problems, paths, _fix(), f"replace it from WIDER_{split}.zip")
        extra_files(problems, images, "*/*.jpg", set(paths), f"remove it or restore WIDER_{split}.zip's contents")
        if split == "val":
            gt_dir = _ground_truth_dir(root)
            if gt_dir is None:
                problems.add("missing files", f"missing {root / GT_DIRS[0] / 'wider_face_val.mat'}", _fix("eval"))
                continue
            try:
                official = read_eval_lists(gt_dir)
            except DataError as exc:
                problems.add("missing files", exc.message, exc.hint or _fix("eval"))
                continue
            for name, faces in entries:
                if name not in official:
                    problems.add("inconsistent annotations", f"{name} is not in {gt_dir / 'wider_face_val.mat'}",
                                 "use the wider_face_split.zip and eval_tools.zip of the same release")
    read_eval_lists.cache_clear()
    return problems.done()


WIDERFACE = DatasetSpec(
    name=NAME,
    task="detection",
    description="WIDER FACE: train 12,880, evaluate on val 3,226 with the official easy/medium/hard lists; 1 class",
    load=load,
    verify=verify,
    prepare_hint=HINT,
    splits=dict(SIZES),
    num_classes=1,
    train_split="train",
    test_split="val",
    primary_metric="ap_easy",
    subdir="widerface",
    provenance=downloaded([(SPLIT_URL, None), (EVAL_URL, None)]),
)


@hookimpl
def register_datasets(register):
    register(WIDERFACE)
