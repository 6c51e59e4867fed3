"""GV-B's two depth datasets, in the layouts monocular-depth code (BTS, AdaBins, ...) reads.

``kitti`` — KITTI raw images with the improved ground truth of ``data_depth_annotated.zip`` on the
Eigen split, under ``DATA_ROOT/kitti``::

    <date>/<date>_drive_<n>_sync/image_02/data/<frame>.png                 (raw data archives)
    data_depth_annotated/{train,val}/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png
    eigen_train_files_with_gt.txt   eigen_test_files_with_gt.txt           (BTS's lists)

A list line is ``<rgb> <gt> <focal>``, the rgb path relative to the folder, the ground truth
relative to ``data_depth_annotated/train`` or ``/val`` (or to ``data_depth_annotated`` when the two
were merged, as some guides do); ``None`` = no ground truth. Train: 23,158 pairs; test: the 697 Eigen
test images, of which the 652 with ground truth are evaluated (BTS's protocol). Depth PNGs are uint16
metres × 256; evaluation caps at 80 m with Garg's crop (:mod:`gaia_bench.tasks.types.lib.metrics_depth`).

``nyuv2`` — NYU Depth v2 as BTS lays it out, under ``DATA_ROOT/nyu_depth_v2``::

    sync/<scene>/rgb_<n>.jpg, sync_depth_<n>.png                    train: 24,231 pairs (BTS's sync set)
    nyudepthv2_train_files_with_gt.txt                              (optional; else every pair in sync/)
    official_splits/test/<scene type>/rgb_<i>.jpg, sync_depth_<i>.png   test: the official 654
    nyu_depth_v2_labeled.mat + splits.mat                           (source of official_splits/test)

The 654 official test images are extracted from the labeled ``.mat`` (HDF5, read with h5py) on first
use when ``official_splits/test`` is absent, exactly as BTS's ``extract_official_train_test_set_from_mat.py``
does: ``rawDepths`` × 1000 as uint16 millimetres, the RGB image with its 7-pixel white frame blacked out
(only rows 7:474 × cols 7:632 kept), ``<i>`` the 0-based index in the labeled set, the folder its
``sceneTypes`` entry. Evaluation caps at 10 m with Eigen's crop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import downloaded
from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget
from gaia_bench.tasks.datasets.lib.gvb_dense_common import Problems, check_count, check_images, missing_root, read_lines, unknown_split
from gaia_bench.tasks.datasets.lib.kitti_depth_format import KITTI_MAX_DEPTH_M

PLUGIN_ORDER = 870

NYU_EVAL_MAX_DEPTH_M = 10.0
BTS_LISTS = "https://github.com/cleinc/bts/tree/master/train_test_inputs"

# ----------------------------------------------------------------------------- KITTI
KITTI = "kitti"
KITTI_LISTS = {"train": "eigen_train_files_with_gt.txt", "test": "eigen_test_files_with_gt.txt"}
KITTI_LINES = {"train": 23158, "test": 697}
KITTI_SIZES = {"train": 23158, "test": 652}  # pairs with ground truth

KITTI_HINT = f"""\
KITTI needs a (free) account at https://www.cvlibs.net/datasets/kitti/ (raw data + depth completion):
  1. download the raw-data drives of the Eigen split (BTS's utils/kitti_archives_to_download.txt lists
     the zips) and unzip them into DATA_ROOT/kitti/ (they create <date>/<date>_drive_<n>_sync/)
  2. download data_depth_annotated.zip (depth completion benchmark) and unzip it into DATA_ROOT/kitti/
  3. put BTS's eigen_train_files_with_gt.txt and eigen_test_files_with_gt.txt ({BTS_LISTS})
     into DATA_ROOT/kitti/
Expected tree:
  DATA_ROOT/kitti/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/*.png  (and the other drives)
  DATA_ROOT/kitti/data_depth_annotated/{{train,val}}/<drive>_sync/proj_depth/groundtruth/image_02/*.png
  DATA_ROOT/kitti/eigen_train_files_with_gt.txt, eigen_test_files_with_gt.txt"""


def _kitti_fix(what: str) -> str:
    steps = {"raw": "unzip the raw-data drive's zip again", "gt": "unzip data_depth_annotated.zip again",
             "list": f"copy the list from {BTS_LISTS}"}
    return f"{steps[what]} (`gaia-bench datasets prepare {KITTI}` prints the steps)"


def _kitti_gt(root: Path, rel: str) -> Path:
    base = root / "data_depth_annotated"
    for candidate in (base / "train" / rel, base / "val" / rel, base / rel):
        if candidate.exists():
            return candidate
    return base / "train" / rel


def _kitti_entries(root: Path, split: str) -> list[tuple[str, str | None]]:
    path = root / KITTI_LISTS[split]
    entries = []
    for lineno, line in enumerate(read_lines(path, _kitti_fix("list")), 1):
        fields = line.split()
        if len(fields) < 2:
            raise DataError(f"{path}:{lineno}: expected '<rgb> <gt> <focal>', got {line!r}", _kitti_fix("list"))
        entries.append((fields[0], None if fields[1] == "None" else fields[1]))
    return entries


def load_kitti(root: Path, split: str) -> Samples:
    if split not in KITTI_LISTS:
        raise unknown_split(KITTI, split, list(KITTI_LISTS))
    samples = []
    for rgb, gt in _kitti_entries(root, split):
        if gt is None:
            continue
        parts = Path(rgb).parts
        key = f"{parts[-4]}/{Path(rgb).stem}" if len(parts) >= 4 else rgb
        samples.append(Sample(key=key, path=root / rgb,
                              target=DepthTarget(_kitti_gt(root, gt), KITTI_MAX_DEPTH_M, "kitti")))
    return Samples(samples, [])


def verify_kitti(root: Path, lines: dict[str, int] = KITTI_LINES, sizes: dict[str, int] = KITTI_SIZES) -> list[str]:
    if not root.is_dir():
        return missing_root(root, KITTI, KITTI_HINT)
    problems = Problems()
    for split in KITTI_LISTS:
        try:
            entries = _kitti_entries(root, split)
        except DataError as exc:
            problems.add("missing files", exc.message, exc.hint or _kitti_fix("list"))
            continue
        check_count(problems, f"{KITTI_LISTS[split]} lines", len(entries), lines[split], _kitti_fix("list"))
        with_gt = [(rgb, gt) for rgb, gt in entries if gt is not None]
        check_count(problems, f"{KITTI_LISTS[split]} pairs with ground truth", len(with_gt), sizes[split],
                    _kitti_fix("list"))
        check_images(problems, (root / rgb for rgb, _ in with_gt), _kitti_fix("raw"), _kitti_fix("raw"))
        check_images(problems, (_kitti_gt(root, gt) for _, gt in with_gt), _kitti_fix("gt"), _kitti_fix("gt"))
    return problems.done()


# ----------------------------------------------------------------------------- NYU Depth v2
NYU = "nyuv2"
NYU_TRAIN_LIST, NYU_TEST_LIST = "nyudepthv2_train_files_with_gt.txt", "nyudepthv2_test_files_with_gt.txt"
NYU_SIZES = {"train": 24231, "test": 654}
LABELED_MAT, SPLITS_MAT = "nyu_depth_v2_labeled.mat", "splits.mat"
NYU_URLS = {LABELED_MAT: "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
            SPLITS_MAT: "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"}
FRAME = (7, 474, 7, 632)  # rows / cols BTS keeps of the labeled RGB images (the rest is a white frame)

NYU_HINT = f"""\
NYU Depth v2 (public) in BTS's layout:
  1. test: download {NYU_URLS[LABELED_MAT]}
     and {NYU_URLS[SPLITS_MAT]} into DATA_ROOT/nyu_depth_v2/
     (the 654 official test images are extracted from them on first use, as BTS does)
  2. train: BTS's sync set (24,231 pairs, made from the raw dataset by BTS's
     utils/sync_project_frames_multi_threads.m, or the sync.zip its README links) unzipped into
     DATA_ROOT/nyu_depth_v2/sync/, plus {NYU_TRAIN_LIST} from {BTS_LISTS}
Expected tree:
  DATA_ROOT/nyu_depth_v2/sync/<scene>/rgb_00000.jpg, sync_depth_00000.png, ...
  DATA_ROOT/nyu_depth_v2/{LABELED_MAT}, {SPLITS_MAT}  (or official_splits/test/<scene type>/rgb_*.jpg, sync_depth_*.png)"""


def _nyu_fix(what: str) -> str:
    steps = {"sync": "unzip BTS's sync set again", "mat": f"download {LABELED_MAT} and {SPLITS_MAT} again",
             "test": f"delete official_splits/test to re-extract it from {LABELED_MAT}"}
    return f"{steps[what]} (`gaia-bench datasets prepare {NYU}` prints the steps)"


def _pairs_in(folder: Path) -> list[tuple[str, str]]:
    """``(rgb, depth)`` relative to ``folder`` for every ``<scene>/rgb_<n>.jpg`` with its depth PNG."""
    return [(rgb.relative_to(folder).as_posix(), rgb.with_name(f"sync_depth_{rgb.stem[4:]}.png").relative_to(folder).as_posix())
            for rgb in sorted(folder.glob("*/rgb_*.jpg"))]


def _listed_pairs(path: Path, fix: str) -> list[tuple[str, str]]:
    pairs = []
    for lineno, line in enumerate(read_lines(path, fix), 1):
        fields = line.split()
        if len(fields) < 2:
            raise DataError(f"{path}:{lineno}: expected '<rgb> <depth> <focal>', got {line!r}", fix)
        pairs.append((fields[0].lstrip("/"), fields[1].lstrip("/")))
    return pairs


def _nyu_pairs(root: Path, split: str) -> tuple[Path, list[tuple[str, str]]]:
    if split == "train":
        folder, listing = root / "sync", root / NYU_TRAIN_LIST
        if listing.exists():
            return folder, _listed_pairs(listing, _nyu_fix("sync"))
        if not folder.is_dir():
            raise DataError(f"missing {folder}", _nyu_fix("sync"))
        return folder, _pairs_in(folder)
    folder, listing = root / "official_splits" / "test", root / NYU_TEST_LIST
    if not folder.is_dir():
        extract_official_test(root)
    if listing.exists():
        return folder, _listed_pairs(listing, _nyu_fix("test"))
    return folder, _pairs_in(folder)


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading NYU's {LABELED_MAT} needs the '{module}' package", f"pip install {module}") from None


def extract_official_test(root: Path) -> Path:
    """Write ``official_splits/test`` from the labeled ``.mat`` and ``splits.mat`` (BTS's conversion,
    see the module docstring). Written to a temporary folder first, so an interrupted run leaves no
    half-written split."""
    labeled, splits = root / LABELED_MAT, root / SPLITS_MAT
    for path in (labeled, splits):
        if not path.exists():
            raise DataError(f"missing {root / 'official_splits' / 'test'} and {path} to extract it from", _nyu_fix("mat"))
    h5py, scipy_io = _require("h5py"), _require("scipy.io")
    try:
        test = sorted(int(i) for i in np.asarray(scipy_io.loadmat(str(splits))["testNdxs"]).reshape(-1))
        handle = h5py.File(labeled, "r")
    except Exception as exc:  # scipy / h5py raise several types for a damaged file
        raise DataError(f"cannot read {splits} / {labeled} ({exc})", _nyu_fix("mat")) from None
    target = root / "official_splits" / "test"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="test.partial-", dir=target.parent))  # private: parallel jobs may race
    try:
        with handle:
            _write_test(handle, test, tmp)
    except (KeyError, IndexError, ValueError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{labeled} does not hold NYU's labeled set ({exc.__class__.__name__}: {exc})",
                        _nyu_fix("mat")) from None
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_test(handle, test: list[int], out: Path) -> None:
    from PIL import Image

    images, depths, scenes = handle["images"], handle["rawDepths"], handle["sceneTypes"]
    top, bottom, left, right = FRAME
    for one_based in test:
        i = one_based - 1
        scene = "".join(chr(int(c)) for c in np.asarray(handle[scenes[0][i]]).reshape(-1))
        folder = out / scene
        folder.mkdir(parents=True, exist_ok=True)
        rgb = np.ascontiguousarray(np.asarray(images[i]).T)  # MATLAB's (3, W, H) -> (H, W, 3)
        framed = np.zeros_like(rgb)
        framed[top:bottom, left:right] = rgb[top:bottom, left:right]
        Image.fromarray(framed).save(folder / f"rgb_{i:05d}.jpg", quality=95)
        millimetres = (np.asarray(depths[i]).T * 1000.0).astype(np.uint16)
        Image.frombytes("I;16", millimetres.shape[::-1], millimetres.astype("<u2").tobytes()).save(
            folder / f"sync_depth_{i:05d}.png")


def load_nyu(root: Path, split: str) -> Samples:
    if split not in NYU_SIZES:
        raise unknown_split(NYU, split, list(NYU_SIZES))
    folder, pairs = _nyu_pairs(root, split)
    return Samples([Sample(key=rgb[:-len(".jpg")], path=folder / rgb,
                           target=DepthTarget(folder / depth, NYU_EVAL_MAX_DEPTH_M, "nyu"))
                    for rgb, depth in pairs], [])


def verify_nyu(root: Path, sizes: dict[str, int] = NYU_SIZES) -> list[str]:
    if not root.is_dir():
        return missing_root(root, NYU, NYU_HINT)
    problems = Problems()
    for split, expected in sizes.items():
        fix = _nyu_fix("sync" if split == "train" else "test")
        if split == "test" and not (root / "official_splits" / "test").is_dir():
            _verify_labeled(root, expected, problems)
            continue
        try:
            folder, pairs = _nyu_pairs(root, split)
        except DataError as exc:
            problems.add("missing files", exc.message, exc.hint or fix)
            continue
        count_fix = f"put {NYU_TRAIN_LIST} from {BTS_LISTS} into {root}" if split == "train" else fix
        check_count(problems, f"nyuv2 {split} pairs", len(pairs), expected, count_fix)
        check_images(problems, (folder / rgb for rgb, _ in pairs), fix, fix)
        check_images(problems, (folder / depth for _, depth in pairs), fix, fix)
    return problems.done()


def _verify_labeled(root: Path, expected: int, problems: Problems) -> None:
    """The test split is still inside the ``.mat`` files: check they open and hold ``expected`` test images."""
    labeled, splits = root / LABELED_MAT, root / SPLITS_MAT
    missing = [p for p in (labeled, splits) if not p.exists()]
    for path in missing:
        problems.add("missing files", f"missing {path} (the official test images)", _nyu_fix("mat"))
    if missing:
        return
    try:
        h5py, scipy_io = _require("h5py"), _require("scipy.io")
    except DataError as exc:
        problems.add("missing packages", exc.message, exc.hint or "")
        return
    try:
        test = np.asarray(scipy_io.loadmat(str(splits))["testNdxs"]).reshape(-1)
        with h5py.File(labeled, "r") as handle:
            n_images = int(handle["images"].shape[0])
            n_depths = int(handle["rawDepths"].shape[0])
    except Exception as exc:  # scipy / h5py raise several types for a damaged file
        problems.add("unreadable files", f"cannot read {splits} / {labeled} ({exc})", _nyu_fix("mat"))
        return
    check_count(problems, f"{SPLITS_MAT} testNdxs", len(test), expected, _nyu_fix("mat"))
    if n_images != n_depths or (len(test) and int(test.max()) > n_images):
        problems.add("unreadable files", f"{labeled}: {n_images} images, {n_depths} depth maps, test indices up to "
                     f"{int(test.max()) if len(test) else 0}", _nyu_fix("mat"))


# ----------------------------------------------------------------------------- registration
KITTI_SPEC = DatasetSpec(
    name=KITTI,
    task="depth",
    description="KITTI depth, Eigen split (BTS lists): train 23,158, test 652 with ground truth; cap 80 m, Garg crop",
    load=load_kitti,
    verify=verify_kitti,
    prepare_hint=KITTI_HINT,
    splits=dict(KITTI_SIZES),
    train_split="train",
    test_split="test",
    primary_metric="rmse",
    subdir="kitti",
    provenance=downloaded(),
)

NYU_SPEC = DatasetSpec(
    name=NYU,
    task="depth",
    description="NYU Depth v2: train BTS's sync set (24,231), test the official 654; cap 10 m, Eigen crop",
    load=load_nyu,
    verify=verify_nyu,
    prepare_hint=NYU_HINT,
    splits=dict(NYU_SIZES),
    train_split="train",
    test_split="test",
    primary_metric="rmse",
    subdir="nyu_depth_v2",
    provenance=downloaded([(url, None) for url in NYU_URLS.values()]),
)


@hookimpl
def register_datasets(register):
    register(KITTI_SPEC)
    register(NYU_SPEC)
