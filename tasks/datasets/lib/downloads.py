"""Fetching public archives, checking their checksums and extracting them safely.

A library of the dataset plugins (tasks/gvb_*): they pass URLs, checksums and a target directory.
Used only by `gaia-bench datasets prepare NAME --download`; a run never downloads. ``file://``
URLs work the same as ``http(s)://`` ones (mirrors on a shared disk, tests).

Every archive has its sources tried in order until one gives the file with the official checksum:
the user's mirrors first (``$GAIA_BENCH_MIRRORS``: comma-separated folders or base URLs holding the
files under their official names, e.g. a shared disk on a cluster), then the official URL, then the
public mirrors the plugin lists. Which source gave each file, with its sha256, is written to the
dataset folder's ``.gaia-bench-source.json`` (and travels with `gaia-bench datasets bundle`; each
result record carries it, see :mod:`.data_source`). With ``--offline`` (``GAIA_BENCH_OFFLINE=1``)
only ``file://`` sources are read.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import lzma
import os
import shutil
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from gaia_bench.errors import DataError
from gaia_bench.paths import atomic_write

CHUNK = 1 << 20
MIRRORS_ENV = "GAIA_BENCH_MIRRORS"
OFFLINE_ENV = "GAIA_BENCH_OFFLINE"  # what --offline sets (gaia_bench/cli/common.py)
SOURCE_FILE = ".gaia-bench-source.json"


def offline() -> bool:
    """Whether downloads are off: then only ``file://`` sources (the user's mirror folders) are read."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksum_problem(path: Path, md5: str | None) -> str | None:
    """A one-line description of a checksum mismatch against the official md5, or None."""
    if md5 is None or not path.exists():
        return None
    digest = file_digest(path, "md5")
    if digest != md5:
        return f"{path} has md5 {digest}, the official file has {md5}"
    return None


def fetch(url: str, dest: Path, md5: str | None = None, on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` (atomically: a partial download never takes its name) and check
    its md5. A file already at ``dest`` with the right checksum is kept."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (md5 is None or file_digest(dest) == md5):
        return dest
    if offline() and not url.startswith("file:"):
        raise DataError(f"cannot fetch {url}: downloads are off (--offline / {OFFLINE_ENV}=1)",
                        f"drop --offline, or put {dest.name} in a folder and set {MIRRORS_ENV}=that folder")
    digest = hashlib.md5()
    with atomic_write(dest) as out:  # an error (network, checksum) leaves no file behind
        try:
            response = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - URLs come from plugins
        except OSError as exc:
            raise DataError(f"cannot fetch {url}: {exc}",
                            f"check the network, or download it by hand to {dest} and rerun") from None
        with response:
            total = response.headers.get("Content-Length")
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, int(total) if total else None)
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(f"{url} downloaded with md5 {digest.hexdigest()}, expected {md5}",
                            "the download is damaged or the file changed upstream: retry, or fetch it by hand and "
                            "check it against the official checksum")
    return dest


def sources(url: str, mirrors: Sequence[str] = ()) -> list[str]:
    """Where to look for the file at ``url``, in order: ``$GAIA_BENCH_MIRRORS``, the URL, ``mirrors``."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    user = [m.strip() for m in os.environ.get(MIRRORS_ENV, "").split(",") if m.strip()]
    bases = [m if "://" in m else Path(m).expanduser().resolve().as_uri() for m in user]
    return [f"{b.rstrip('/')}/{name}" for b in bases] + [url, *mirrors]


def fetch_from_sources(url: str, dest: Path, md5: str | None, mirrors: Sequence[str] = (),
                       on_progress: Callable[[int, int | None], None] | None = None) -> tuple[Path, str]:
    """:func:`fetch` from the first of :func:`sources` that works; (path, the URL it came from).
    A source that cannot be reached or gives another checksum is passed over; when none works, one
    DataError lists what each said."""
    if dest.exists() and (md5 is None or file_digest(dest) == md5):
        return dest, f"{dest} (fetched earlier)"
    failures = []
    for source in sources(url, mirrors):
        try:
            return fetch(source, dest, md5, on_progress), source
        except DataError as exc:
            failures.append(exc.message)
    raise DataError(f"no source of {dest.name} worked: " + "; ".join(failures),
                    f"put {dest.name} in a folder and set {MIRRORS_ENV}=that folder (or a URL of a mirror), "
                    f"or download it by hand to {dest}")


def record_source(root: Path, path: Path, url: str, md5: str | None) -> None:
    """Add where ``path`` came from (and its sha256) to ``root``'s source file."""
    file = root / SOURCE_FILE
    entries = json.loads(file.read_text()) if file.is_file() else {}
    entries[path.name] = {"url": url, "md5": md5, "sha256": file_digest(path, "sha256"),
                          "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    root.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")


def _safe_member_path(name: str, target: Path) -> Path:
    """Where archive member ``name`` lands under ``target``; a DataError if it would land outside."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"archive member {name!r} has an absolute path", "refusing to extract an unsafe archive")
    resolved = (target / posix).resolve()
    if resolved != target and target not in resolved.parents:
        raise DataError(f"archive member {name!r} would be written outside {target}",
                        "refusing to extract an unsafe archive")
    return resolved


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract a tar (any compression) or zip archive into ``target``. Every member is checked
    before anything is written: absolute paths, ``..`` escapes, links pointing outside ``target``
    and device or fifo members make it refuse the whole archive. Returns the top-level entries.

    A damaged archive (cut short, corrupt) is moved aside to ``NAME.broken`` so that the next
    attempt downloads it anew instead of failing on the same file, and the error says so."""
    try:
        return _extract(archive, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        broken = archive.with_name(archive.name + ".broken")
        os.replace(archive, broken)
        raise DataError(f"{archive.name} is damaged ({type(exc).__name__}: {exc or 'cut short'}); moved to {broken}",
                        "run the same command again to download it anew") from None


def _extract(archive: Path, target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                dest = _safe_member_path(member.name, target)
                if member.issym() or member.islnk():
                    base = dest.parent if member.issym() else target
                    link = PurePosixPath(member.linkname)
                    if link.is_absolute():
                        raise DataError(f"archive member {member.name!r} links to an absolute path {member.linkname!r}",
                                        "refusing to extract an unsafe archive")
                    _safe_member_path(os.path.relpath(base / link, target), target)
                elif not (member.isfile() or member.isdir()):
                    raise DataError(f"archive member {member.name!r} is a device or fifo",
                                    "refusing to extract an unsafe archive")
            tar.extractall(target, members=members, filter="data")
            names = [m.name for m in members]
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _safe_member_path(info.filename, target)
            for info in infos:
                dest = _safe_member_path(info.filename, target)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            names = [i.filename for i in infos]
    else:
        raise DataError(f"{archive} is neither a tar nor a zip archive", "delete it and download it again")
    tops = sorted({PurePosixPath(n.replace("\\", "/")).parts[0] for n in names if n.strip("/")})
    return [target / t for t in tops]
