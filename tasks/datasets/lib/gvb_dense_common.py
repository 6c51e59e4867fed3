"""What the GV-B dense dataset plugins (:mod:`gvb_voc`, :mod:`gvb_widerface`, :mod:`gvb_citypersons`,
:mod:`gvb_depth`) share: collecting ``verify`` problems (one line each, each naming its fix, capped so a
missing folder of 10,000 images is a few lines, not 10,000) and cheap image integrity checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from gaia_bench.errors import DataError

MAX_LINES_PER_KIND = 10  # per kind of problem; the rest is summarised in one line


@dataclass
class Problems:
    """``verify``'s lines, grouped by kind so that each kind can be capped."""

    lines: list[str] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _fixes: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, line: str, fix: str) -> None:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        self._fixes[kind] = fix
        if count <= MAX_LINES_PER_KIND:
            self.lines.append(f"{line}: {fix}")

    def done(self) -> list[str]:
        extra = [f"... and {n - MAX_LINES_PER_KIND} more {kind}: {self._fixes[kind]}"
                 for kind, n in self._counts.items() if n > MAX_LINES_PER_KIND]
        return self.lines + extra


def image_problem(path: Path) -> str | None:
    """Why an image cannot be used (missing, empty, undecodable header or structure, JPEG without its
    end marker = truncated), or None. Cheap: no full decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError:
        return "is missing"
    if size == 0:
        return "is empty"
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"is unreadable ({exc.__class__.__name__}: {exc})"
    if fmt == "JPEG":
        with path.open("rb") as handle:
            handle.seek(max(0, size - 64))
            if b"\xff\xd9" not in handle.read():
                return "is truncated (no JPEG end marker)"
    return None


def check_images(problems: Problems, paths: Iterable[Path], fix_missing: str, fix_bad: str) -> None:
    for path in paths:
        reason = image_problem(path)
        if reason == "is missing":
            problems.add("missing files", f"missing {path}", fix_missing)
        elif reason is not None:
            problems.add("unreadable images", f"{path} {reason}", fix_bad)


def check_count(problems: Problems, what: str, found: int, expected: int, fix: str) -> None:
    if found != expected:
        problems.add("wrong counts", f"{what}: {found} found, expected {expected}", fix)


def extra_files(problems: Problems, folder: Path, pattern: str, expected: set[Path], fix: str) -> None:
    """Files matching ``pattern`` under ``folder`` that no split lists."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(pattern)):
        if path not in expected:
            problems.add("extra files", f"unexpected file {path} (in no split)", fix)


def read_lines(path: Path, fix: str) -> list[str]:
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def unknown_split(name: str, split: str, splits: Sequence[str]) -> DataError:
    return DataError(f"{name} has no split {split!r}", f"use one of: {', '.join(splits)}")


def missing_root(root: Path, name: str, hint: str) -> list[str]:
    return [] if root.is_dir() else [f"{root} does not exist: {hint.strip().splitlines()[0]} "
                                     f"(`gaia-bench datasets prepare {name}` prints the steps)"]


@dataclass(frozen=True)
class Archive:
    """A public archive: where it comes from, its official md5, and the folder whose contents its
    member paths are relative to (``extract_to`` relative to the dataset directory; ``..`` for archives
    whose members start with the dataset directory's own name, like VOC's ``VOCdevkit/``)."""

    url: str
    md5: str
    extract_to: str = "."
    mirrors: tuple[str, ...] = ()  # public copies of the same file, tried after ``url`` (md5 checked)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def download_archives(root: Path, archives: Sequence[Archive]) -> None:
    """Fetch each archive into ``root/archives/`` (kept: a rerun checks and skips it), check its md5
    and extract it safely (:mod:`gaia_bench.tasks.datasets.lib.downloads`)."""
    from gaia_bench.tasks.datasets.lib.downloads import fetch_from_sources, record_source, safe_extract

    root.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        path, source = fetch_from_sources(archive.url, root / "archives" / archive.filename, archive.md5, archive.mirrors)
        record_source(root, path, source, archive.md5)
        safe_extract(path, (root / archive.extract_to).resolve())
