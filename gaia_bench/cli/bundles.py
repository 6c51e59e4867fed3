"""Dataset bundles: one tar file that moves prepared datasets to a machine without internet.

A bundle holds each dataset's folder under its ``directory`` name (links followed, so a folder
linked in with ``--gvb-lists`` travels as files) and, as its last member, ``gaia-bench-bundle.json``:
per dataset its name, version and every file's size and sha256. Members are written in sorted
order with fixed owners, modes and times, so the same folder gives the same bundle bytes.

Unbundling reads every member as a plain file (anything else is refused), writes it into a
sibling folder while hashing it, compares the hashes and the file list with the manifest, and only
then renames the folder into place: a cut or altered bundle leaves nothing behind."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from gaia_bench.errors import DataError, UsageError
from gaia_bench.jobs import UNBUNDLED

MANIFEST = "gaia-bench-bundle.json"
FORMAT = 1
CHUNK = 1 << 20
COMPRESSION = {".tar": "", ".tar.gz": "gz", ".tgz": "gz", ".tar.xz": "xz", ".tar.bz2": "bz2"}


@dataclass(frozen=True)
class BundledDataset:
    """A dataset to bundle: its registered name and version, and the prepared folder."""

    name: str
    version: str
    directory: str  # the folder's name under the data root (the dataset spec's ``directory``)
    path: Path


def compression_of(path: Path) -> str:
    for suffix, mode in sorted(COMPRESSION.items(), key=lambda kv: -len(kv[0])):
        if path.name.endswith(suffix):
            return mode
    raise UsageError(f"{path.name}: a bundle is a .tar, .tar.gz, .tgz, .tar.xz or .tar.bz2 file",
                     f"name it e.g. {path.name}.tar")


def _files(root: Path) -> list[tuple[str, Path, int]]:
    """Every regular file under ``root`` (links followed), as (posix relative path, path, size), sorted."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path, path.stat().st_size))
    return sorted(found)


class _Hashing(io.RawIOBase):
    """A file read through once, hashed on the way (tarfile copies from it)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source, self.sha256 = source, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@contextlib.contextmanager
def _compressed(path: Path, mode: str) -> Iterator[BinaryIO]:
    """``path`` opened for writing through the compression ``mode``; gzip without the time and
    file name it would otherwise put in its header (same input, same bytes)."""
    with open(path, "wb") as raw:
        if mode == "gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as sink:
                yield sink
        elif mode == "xz":
            with lzma.open(raw, "wb") as sink:
                yield sink
        elif mode == "bz2":
            with bz2.open(raw, "wb") as sink:
                yield sink
        else:
            yield raw


def write_bundle(datasets: Sequence[BundledDataset], out: Path, gaia_version: str,
                 start: Callable[[int], Callable[[int], None]] = lambda total: (lambda n: None)) -> dict:
    """Write ``datasets`` into the bundle ``out`` (written beside it, renamed when complete) and
    return its manifest. ``start(total bytes)`` (a :class:`gaia_bench.api.Progress` step) returns
    what is told the bytes written."""
    mode = compression_of(out)
    listed = [(dataset, _files(dataset.path)) for dataset in datasets]  # one walk: the total and the files
    advance = start(sum(size for _, files in listed for _, _, size in files))
    partial = out.with_name(out.name + ".partial")
    manifest: dict[str, Any] = {"format": FORMAT, "gaia_bench": gaia_version, "datasets": []}
    try:
        with _compressed(partial, mode) as sink, tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dataset, listing in listed:
                files = {}
                for rel, path, size in listing:
                    with open(path, "rb") as source:
                        reader = _Hashing(source)
                        tar.addfile(_info(f"{dataset.directory}/{rel}", size), io.BufferedReader(reader, CHUNK))
                    files[rel] = {"size": size, "sha256": reader.sha256.hexdigest()}
                    advance(size)
                manifest["datasets"].append({"name": dataset.name, "version": dataset.version,
                                             "directory": dataset.directory, "files": files})
            blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
            tar.addfile(_info(MANIFEST, len(blob)), io.BytesIO(blob))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def _member_parts(member: tarfile.TarInfo) -> tuple[str, str]:
    """(dataset directory, path inside it) of a bundle member; anything but a plain file with a
    plain relative path is refused."""
    path = PurePosixPath(member.name)
    if not member.isfile():
        raise DataError(f"bundle member {member.name!r} is not a plain file", "a gaia-bench bundle holds only files")
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise DataError(f"bundle member {member.name!r} has an unsafe path", "a gaia-bench bundle holds only files")
    return path.parts[0], PurePosixPath(*path.parts[1:]).as_posix()


def read_bundle(bundle: Path, staging: Callable[[str], Path], advance: Callable[[int], None] = lambda n: None) -> dict:
    """Extract every file of ``bundle`` under ``staging(directory)``, hashing as it goes, then check
    the files against the manifest; return the manifest. Raises DataError naming the first file that
    differs, is missing or is not listed (the caller deletes the staging folders)."""
    seen: dict[tuple[str, str], dict] = {}
    manifest = None
    try:
        with tarfile.open(bundle, "r:*") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile():
                    manifest = json.loads(tar.extractfile(member).read())
                    continue
                directory, rel = _member_parts(member)
                target = staging(directory) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                with tar.extractfile(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(CHUNK):
                        sha.update(chunk)
                        sink.write(chunk)
                seen[(directory, rel)] = {"size": member.size, "sha256": sha.hexdigest()}
                advance(member.size)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, ValueError) as exc:
        raise DataError(f"{bundle} is damaged or not a tar file ({type(exc).__name__}: {exc or 'cut short'})",
                        "make the bundle again with `gaia-bench datasets bundle` and copy it whole") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{bundle} has no {MANIFEST} of format {FORMAT} (cut short, or not a gaia-bench bundle)",
                        "make the bundle again with `gaia-bench datasets bundle` and copy it whole")
    expected = {(d["directory"], rel): meta for d in manifest["datasets"] for rel, meta in d["files"].items()}
    for key, meta in expected.items():
        if key not in seen:
            raise DataError(f"{bundle}: {'/'.join(key)} is listed in the manifest but missing",
                            "make the bundle again and copy it whole")
        if seen[key] != meta:
            raise DataError(f"{bundle}: {'/'.join(key)} differs from the manifest (sha256 {seen[key]['sha256'][:12]}…, "
                            f"expected {meta['sha256'][:12]}…)", "the bundle was altered or damaged: copy it again")
    if extra := sorted(set(seen) - set(expected)):
        raise DataError(f"{bundle}: {'/'.join(extra[0])} is not in the manifest", "make the bundle again")
    return manifest


def note_bundle(staged: Path, bundle: Path, manifest: dict) -> None:
    """Write into a checked, staged folder which bundle it came from (a result's ``data_source``
    reads it): the bundle's file name, the sha256 of its manifest (every file's sha256, so it names
    the contents whatever the compression) and the gaia-bench that made it."""
    import datetime

    blob = json.dumps(manifest, indent=1, sort_keys=True).encode()  # as write_bundle wrote it
    note = {"file": bundle.name, "manifest_sha256": hashlib.sha256(blob).hexdigest(),
            "made_by": f"gaia-bench {manifest.get('gaia_bench')}",
            "unbundled_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    staged.mkdir(parents=True, exist_ok=True)
    (staged / UNBUNDLED).write_text(json.dumps(note, indent=1, sort_keys=True) + "\n")


def move_into_place(staged: Path, target: Path, force: bool) -> None:
    """Rename the checked folder ``staged`` to ``target``; an existing target only with ``force``."""
    if target.exists() or target.is_symlink():
        if not force:
            raise UsageError(f"{target} already exists", "add --force to replace it with the bundle's copy")
        target.unlink() if target.is_symlink() else shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, target)
