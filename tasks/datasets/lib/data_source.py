"""Where a dataset's files came from, for every result record (``DatasetSpec.provenance``, stored by
the runner as the record's ``data_source``; never part of a job id).

* Fetched by `gaia-bench datasets prepare NAME --download`: each archive's source (the official
  URL, a listed public copy or the user's mirror) with its md5 and sha256, as the download wrote
  them to the folder's ``.gaia-bench-source.json`` (``kind: downloaded``).
* Laid out some other way (torchvision's own download, a manual copy): the official archives whose
  layout the folder has, as far as the plugin knows them (``kind: local``), or GV-B's exported lists
  linked in with ``--gvb-lists`` (``kind: gvb-lists``).
* Generated from data inside installed packages (the embedded ``mini`` suite): the package that made
  it and the packages the images come from, with the sha256 of the folder's ``MANIFEST.sha256``
  (the list of every file's sha256; ``kind: embedded``).

Each adds ``bundle`` when the folder was unpacked by `gaia-bench datasets unbundle`. Only small
files are read (no archive or image is hashed per job), and what is read is remembered while the
files are unchanged, so a grid of many jobs reads each once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

from gaia_bench.jobs import UNBUNDLED
from gaia_bench.provenance import distribution_version
from gaia_bench.tasks.datasets.lib.downloads import SOURCE_FILE
from gaia_bench.tasks.datasets.lib.manifest import MANIFEST

Provenance = Callable[[Path], dict]


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of a file, None when absent: what the memo below is keyed by."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=256)
def _read(path: str, stamp: tuple[int, int], how: str) -> object:
    """A small file's JSON (``how="json"``) or sha256 (``how="sha256"``), once per state of the file."""
    data = Path(path).read_bytes()
    return json.loads(data) if how == "json" else hashlib.sha256(data).hexdigest()


def _small(path: Path, how: str) -> object | None:
    stamp = _stamp(path)
    if stamp is None:
        return None
    try:
        return _read(str(path), stamp, how)
    except (OSError, ValueError):  # unreadable or not JSON: say nothing rather than fail the job
        return None


def unbundled_from(root: Path) -> dict | None:
    """The bundle the folder was unpacked from (written by `gaia-bench datasets unbundle`), if any."""
    note = _small(root / UNBUNDLED, "json")
    return note if isinstance(note, dict) else None


def _with_bundle(root: Path, source: dict) -> dict:
    if bundle := unbundled_from(root):
        source["bundle"] = bundle
    return source


def downloaded(official: Sequence[tuple[str, str | None]] = (), lists: Sequence[str] = ()) -> Provenance:
    """The provenance of a dataset with public archives ``official`` ((URL, md5) each): what its
    download recorded, else the archives its layout comes from. ``lists``: files whose presence
    means GV-B's exported lists were linked in (`datasets prepare --gvb-lists`)."""

    def provenance(root: Path) -> dict:
        if lists and all((root / name).is_file() for name in lists):
            return _with_bundle(root, {"kind": "gvb-lists", "lists": {n: _small(root / n, "sha256") for n in lists}})
        fetched = _small(root / SOURCE_FILE, "json")
        if isinstance(fetched, dict) and fetched:  # archive name -> url, md5, sha256, fetched_at
            return _with_bundle(root, {"kind": "downloaded", "files": fetched})
        source: dict = {"kind": "local", "note": f"laid out by hand or by another tool (no {SOURCE_FILE})"}
        if official:  # the layout the folder has is theirs (`datasets verify` checks what it can)
            source["official_archives"] = [{"url": url, "md5": md5} for url, md5 in official]
        return _with_bundle(root, source)

    return provenance


def embedded(*origins: tuple[str, str | None]) -> Provenance:
    """The provenance of a dataset that gaia-bench generates from data inside installed packages:
    ``origins`` are (what the images come from, the Python distribution holding it, or None)."""

    def provenance(root: Path) -> dict:
        return _with_bundle(root, {
            "kind": "embedded", "package": "gaia-bench", "version": distribution_version("gaia-bench"),
            "from": [f"{what} ({dist} {distribution_version(dist)})" if dist else what for what, dist in origins],
            "manifest_sha256": _small(root / MANIFEST, "sha256")})  # of the list of every file's sha256

    return provenance
