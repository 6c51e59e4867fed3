"""UCF101 and Kinetics-700 as frame-image classification (GV-B puts both under CLS: one image
per clip, read by the same 224 pipeline as every other classification set).

No video decoder is needed at run time: the clips' frames are extracted once (with ffmpeg, as
mmaction2's ``rawframes`` layout: ``rawframes/<class>/<clip>/img_00001.jpg``) and each clip's
sample is its **middle frame**. GV-B did not publish which frame it used, so this is GV-B-like.

Split lists are the official ones: UCF101's ``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt``
and Kinetics' ``annotations/{train,validate}.csv`` (label, youtube_id, time_start, time_end).
"""

from __future__ import annotations

import csv
from pathlib import Path

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def middle_frame(clip_dir: Path) -> Path | None:
    """The clip's middle frame (sorted by name), or None when the clip has no frames."""
    if not clip_dir.is_dir():
        return None
    frames = sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    return frames[len(frames) // 2] if frames else None


def _clips_to_samples(root: Path, clips: list[tuple[str, Path, int]], classes: list[str], fix: str,
                      allow_missing: bool) -> Samples:
    samples, missing = [], []
    for key, clip_dir, target in clips:
        frame = middle_frame(clip_dir)
        if frame is None:
            missing.append(clip_dir)
            continue
        samples.append(Sample(key, frame, target))
    if missing and not allow_missing:
        raise DataError(f"{len(missing)} clip(s) have no extracted frames, e.g. {missing[0]}", fix)
    return Samples(samples, classes)


# --------------------------------------------------------------------------- UCF101
def ucf101_classes(root: Path, fix: str) -> list[str]:
    path = root / "ucfTrainTestlist" / "classInd.txt"
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    pairs = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [name for _, name in sorted(pairs, key=lambda p: int(p[0]))]


def read_ucf101(root: Path, split: str, fix: str, fold: int = 1) -> Samples:
    """Split ``fold`` (GV-B's TSN config uses split 1): ``trainlist01.txt`` lines are
    ``Class/v_Class_gXX_cXX.avi label``, ``testlist01.txt`` lines have no label."""
    classes = ucf101_classes(root, fix)
    index = {c: i for i, c in enumerate(classes)}
    path = root / "ucfTrainTestlist" / f"{'trainlist' if split == 'train' else 'testlist'}{fold:02d}.txt"
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    clips = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0]
        cls, _, video = rel.partition("/")
        if cls not in index:
            raise DataError(f"{path}:{lineno}: class {cls!r} is not in classInd.txt", fix)
        stem = video.rsplit(".", 1)[0]
        clips.append((f"{cls}/{stem}", root / "rawframes" / cls / stem, index[cls]))
    return _clips_to_samples(root, clips, classes, fix, allow_missing=False)


# --------------------------------------------------------------------------- Kinetics-700
KINETICS_CSV = {"train": "train.csv", "val": "validate.csv"}


def _kinetics_rows(root: Path, split: str, fix: str) -> list[dict]:
    path = root / "annotations" / KINETICS_CSV[split]
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def clip_name(row: dict) -> str:
    """torchvision's / the kinetics-dataset downloader's file stem: ``<id>_<start:06>_<end:06>``."""
    return f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"


def read_kinetics(root: Path, split: str, fix: str) -> Samples:
    """Clips of ``annotations/<split>.csv`` whose frames are under ``rawframes/<split>/<label>/<clip>/``.
    Clips gone from YouTube are left out (the set anyone can download shrinks over time);
    `verify` counts them."""
    classes = sorted({row["label"] for row in _kinetics_rows(root, "train", fix)})
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for row in _kinetics_rows(root, split, fix):
        if row["label"] not in index:
            raise DataError(f"{root / 'annotations' / KINETICS_CSV[split]}: label {row['label']!r} is not in train.csv", fix)
        name = clip_name(row)
        clips.append((f"{split}/{row['label']}/{name}", root / "rawframes" / split / row["label"] / name, index[row["label"]]))
    return _clips_to_samples(root, clips, classes, fix, allow_missing=True)


def kinetics_missing(root: Path, split: str, fix: str) -> int:
    """How many clips of the split's annotation list have no frames here."""
    rows = _kinetics_rows(root, split, fix)
    return sum(middle_frame(root / "rawframes" / split / r["label"] / clip_name(r)) is None for r in rows)
