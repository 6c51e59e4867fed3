"""Downloading published weights on demand, through the library that owns them, into its standard
cache (a library the backbone plugins use; it registers nothing).

* Hugging Face hub files (timm, transformers, open_clip's ``hf_hub`` tags): ``hf_hub_download`` into
  the hub cache, after a HEAD request that gives the file's ETag; the file is then checked against
  it (an LFS file's ETag is its sha256, a plain git file's is its git blob sha1), because the hub
  client checks only the size.
* URL files (torchvision, timm's and open_clip's URL tags): ``torch.hub.download_url_to_file`` with
  the hash prefix the file's name or URL carries, into torch.hub's checkpoints or open_clip's
  ``~/.cache/clip``.

Whatever fails (connection, truncated transfer, hash mismatch) leaves no partial file in the cache
and raises one :class:`~gaia_bench.errors.DataError` naming the file and the fix. Progress goes to
the job's :class:`~gaia_bench.api.Progress` (the rich bars of the CLI) in MiB.

Nothing here runs when downloads are off: ``--offline`` (:attr:`InitContext.offline`),
``GAIA_BENCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (:func:`offline_reason`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

from gaia_bench.api import Progress, WeightsRef
from gaia_bench.errors import DataError

MIB = float(1 << 20)
TRUE = {"1", "on", "yes", "true"}  # what huggingface_hub reads as a true environment flag
URL_TIMEOUT_S = 60.0  # seconds without a byte before a URL download gives up
HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's rule: "resnet50-11ad3fa6.pth" -> "11ad3fa6"


def offline_reason(offline: bool = False) -> str | None:
    """Why downloads are off (``--offline``, or the environment variable that says so), else None."""
    if offline:
        return "--offline"
    for name in ("GAIA_BENCH_OFFLINE", "HF_HUB_OFFLINE"):  # the first is also what --offline sets for child processes
        if os.environ.get(name, "").strip().lower() in TRUE:
            return f"{'--offline / ' if name == 'GAIA_BENCH_OFFLINE' else ''}{name}={os.environ[name]}"
    return None


def hf_endpoint() -> str:
    """The hub endpoint, read when a download starts (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


# --------------------------------------------------------------------------- progress
def _bar(progress: Progress, name: str) -> type:
    """A tqdm-shaped class (what huggingface_hub and torch.hub drive) that feeds ``progress``."""

    class Bar:
        def __init__(self, total: int | None = None, initial: int = 0, **_: object) -> None:
            self.advance = progress.start(f"downloading {name} (MiB)", round(total / MIB) if total else None)
            if initial:
                self.advance(initial / MIB)

        def update(self, n: int | float = 1) -> None:
            self.advance(n / MIB)

        def close(self) -> None:
            progress.finish()

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return Bar


@contextlib.contextmanager
def _torch_hub_bar(progress: Progress, name: str) -> Iterator[None]:
    """torch.hub's downloader draws its bar with the module's own ``tqdm``: lend it ours meanwhile;
    and it opens the URL without a timeout: give its socket one, so a dead network is an error
    rather than a hang."""
    import socket

    import torch.hub

    original, timeout = torch.hub.tqdm, socket.getdefaulttimeout()
    torch.hub.tqdm = _bar(progress, name)
    socket.setdefaulttimeout(URL_TIMEOUT_S)
    try:
        yield
    finally:
        torch.hub.tqdm = original
        socket.setdefaulttimeout(timeout)


def _failed(what: str, where: str, reason: str) -> DataError:
    """The fix depends on who asked (a run, `gaia-bench weights fetch`): :func:`fetch_published` adds it."""
    return DataError(f"downloading {what} from {where} failed: {reason}; nothing was kept in the cache")


# --------------------------------------------------------------------------- URL files
def url_fetch(url: str, directory: Path, progress: Progress, hash_prefix: str | None = None) -> Path:
    """``url`` downloaded to ``directory/<its file name>`` by torch.hub, checked against
    ``hash_prefix`` (None: the one in the file name, torch.hub's convention; "": no check)."""
    from http.client import HTTPException
    from urllib.error import URLError

    import torch.hub

    name = url.rsplit("/", 1)[-1]
    if hash_prefix is None and (match := HASH_PREFIX.search(name)):
        hash_prefix = match.group(1)
    target = directory / name
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with _torch_hub_bar(progress, name):
            torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix or None, progress=True)
    except RuntimeError as exc:  # torch.hub: 'invalid hash value (expected "…", got "…")'
        raise _failed(name, url, f"its sha256 does not start with {hash_prefix} ({exc})") from None
    except (URLError, HTTPException, OSError) as exc:
        raise _failed(name, url, _reason(exc)) from None
    return target


def _reason(exc: BaseException) -> str:
    """The cause in a few words: a transfer cut short says how short (huggingface_hub's size check)."""
    text = str(getattr(exc, "reason", "") or exc)
    if cut := re.search(r"should be of size (\d+) but has size (\d+)", text):
        return f"the transfer was cut short: {cut.group(2)} of {cut.group(1)} bytes arrived"
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# --------------------------------------------------------------------------- Hugging Face hub files
def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content_mismatch(path: Path, etag: str) -> str | None:
    """What is wrong with the downloaded file given the hub's ETag (None: it matches)."""
    from gaia_bench.plugins.backbones.lib.weights_files import file_sha256

    if re.fullmatch(r"[0-9a-f]{64}", etag):
        got = file_sha256(path)
        return None if got == etag else f"sha256 {got[:16]}… differs from the hub's {etag[:16]}…"
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        got = _git_blob_sha1(path)
        return None if got == etag else f"git sha1 {got[:12]}… differs from the hub's {etag[:12]}…"
    return None  # an ETag of another kind says nothing checkable about the content


def _discard(repo: str, filename: str, etag: str | None) -> None:
    """Remove what a failed download of ``repo``'s ``filename`` left in the hub cache: the partial
    blob, and a blob that arrived but failed the check with the snapshot link to it."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    if not etag:
        return
    blob = folder / "blobs" / etag
    Path(f"{blob}.incomplete").unlink(missing_ok=True)
    for link in (folder / "snapshots").glob(f"*/{filename}"):
        if os.path.realpath(link) == os.path.realpath(blob):
            link.unlink()
    blob.unlink(missing_ok=True)


def hf_fetch(repo: str, filenames: Sequence[str], progress: Progress, required: bool = True) -> Path | None:
    """The first of ``filenames`` that ``repo`` has, downloaded into the hub cache (revision main)
    and checked against its ETag; None when it has none of them and ``required`` is False."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    endpoint = hf_endpoint()
    for filename in filenames:
        url = hf_hub_url(repo, filename, endpoint=endpoint)
        try:
            etag = get_hf_file_metadata(url, endpoint=endpoint).etag
        except EntryNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - httpx, hub and OS errors: all mean "not downloaded"
            raise _failed(f"{filename} of {repo}", endpoint, _reason(exc)) from None
        try:
            path = Path(hf_hub_download(repo, filename, endpoint=endpoint, tqdm_class=_bar(progress, filename)))
        except Exception as exc:  # noqa: BLE001 - as above; a truncated transfer is an OSError
            _discard(repo, filename, etag)
            raise _failed(f"{filename} of {repo}", endpoint, _reason(exc)) from None
        if etag and (problem := _content_mismatch(path, etag)):
            path.unlink()  # the snapshot entry (a link to the blob, or a copy where links are not allowed)
            _discard(repo, filename, etag)
            raise _failed(f"{filename} of {repo}", endpoint, problem)
        return path
    if not required:
        return None
    raise DataError(f"{repo} on {endpoint} has none of {', '.join(filenames)}")



# --------------------------------------------------------------------------- fetching and the record of it
def manifest_path() -> Path:
    """What gaia-bench downloaded, one JSON line per file (read by `gaia-bench weights list`)."""
    from gaia_bench.paths import cache_home

    return cache_home() / "weights" / "fetched.jsonl"


def fetch_published(model: str, init: str, library: str, ref: WeightsRef, progress: Progress) -> Path:
    """``ref``'s file downloaded by its library (``ref.download``), noted in the manifest with its
    size and sha256; a failure names the file and the two ways to get it."""
    import json

    from gaia_bench.plugins.backbones.lib.weights_files import file_sha256

    assert ref.download is not None
    try:
        path = ref.download(progress)
    except DataError as exc:
        raise DataError(exc.message, f"check the connection and run again, or run `gaia-bench weights fetch {model} "
                        f"--init {init}` on a machine with internet and copy {' and '.join(ref.search_dirs)} here, "
                        "or use --init random") from None
    entry = {"model": model, "init": init, "library": library, "tag": ref.tag, "file": str(path),
             "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = manifest_path()
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest, "a", encoding="utf-8") as f:  # one short line per write: appends do not interleave
        f.write(json.dumps(entry) + "\n")
    return path


def fetched() -> list[dict]:
    """The manifest's entries whose file is still there, the latest per file."""
    import json

    entries: dict[str, dict] = {}
    with contextlib.suppress(OSError):
        for line in manifest_path().read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, TypeError):
                entry = json.loads(line)
                entries[entry["file"]] = entry
    return [e for e in entries.values() if Path(e["file"]).is_file()]
