"""`gaia-bench weights fetch` and `weights list` (added through ``register_commands``): published
weights fetched ahead of time, and what the standard caches hold.

A cluster whose compute nodes have no internet fetches on the login node (`weights fetch MODEL
--init NAME`) and runs with ``--offline``; `weights list` shows each cached weight file with its
size and sha256: those gaia-bench downloaded (model and init known, from its manifest), then the
other weight files in the Hugging Face hub cache, torch.hub's checkpoints and open_clip's URL cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from gaia_bench import hookimpl
from gaia_bench.cli.common import handle_errors
from gaia_bench.console import console, notice
from gaia_bench.errors import MissingWeightsError, UsageError

PLUGIN_ORDER = 150

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".pth.tar", ".ckpt")

weights_app = typer.Typer(help="Published weights: fetch them ahead of time, list what is cached.")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


@weights_app.command("fetch")
@handle_errors
def fetch_command(
    model: Annotated[str, typer.Argument(help="backbone, e.g. resnet50, torchvision:resnet50, RN50.openai, "
                                         "facebook/dinov2-small")],
    init: Annotated[list[str], typer.Option("--init", help="whose published weights (repeat or comma-separate; "
                                            "default: every init the backbone publishes weights for)")] = [],  # noqa: B006
) -> None:
    """Download a backbone's published weights into the standard caches (for a run later, perhaps
    with --offline on a machine without internet that shares or receives the cache)."""
    from gaia_bench.cli.progress import RichProgress
    from gaia_bench.manager import get_registries
    from gaia_bench.plugins.backbones.lib.weights_download import fetch_published, offline_reason
    from gaia_bench.plugins.backbones.lib.weights_files import file_sha256

    registries = get_registries()
    spec = registries.backbones.get(model)
    names = [n.strip() for item in init for n in item.split(",") if n.strip()] or list(spec.published_weights)
    published = ", ".join(spec.published_weights) or "none"
    if not names:
        raise UsageError(f"{spec.name} publishes no weights", "its inits pretrain on the upstream pool or start at "
                         "random; see `gaia-bench inits`")
    for name in names:
        registries.inits.get(name)  # an unknown init name fails with suggestions
        if name not in spec.published_weights:
            raise UsageError(f"{spec.name} publishes no '{name}' weights", f"it publishes: {published}")
    model_name = f"{spec.source}:{spec.name}"
    for name in names:
        ref = spec.published_weights[name]
        path = ref.locate()
        if path is None:
            if ref.download is None:
                raise MissingWeightsError(f"{ref.tag} cannot be downloaded by gaia-bench (expected {ref.expected} "
                                          f"in {' or '.join(ref.search_dirs)})", f"run `{ref.fetch_command}`")
            if why := offline_reason():
                raise UsageError(f"downloads are off ({why}): cannot fetch {ref.tag}", f"unset {why.split('=')[0]} "
                                 "on a machine with internet")
            with RichProgress() as progress:
                path = fetch_published(model_name, name, spec.source, ref, progress)
        else:
            notice(f"{ref.tag} is already here")
        console.print(f"{model_name} {name}: {path} ({_mib(path.stat().st_size)}, sha256 {file_sha256(path)})",
                      highlight=False, soft_wrap=True)


def _cache_files() -> list[tuple[str, Path, str | None]]:
    """(library, file, repo id or None) of every weight file in the standard caches."""
    from gaia_bench.plugins.backbones.lib.weights_files import clip_cache_dir, hf_hub_cache, torch_hub_checkpoints

    found: list[tuple[str, Path, str | None]] = []
    hub = hf_hub_cache()
    if hub.is_dir():
        for repo in sorted(hub.glob("models--*")):
            for path in sorted(repo.glob("snapshots/*/**/*")):
                if path.name.endswith(WEIGHT_SUFFIXES) and path.is_file():
                    found.append(("hf hub", path, repo.name[len("models--"):].replace("--", "/")))
    for library, directory in (("torch.hub", torch_hub_checkpoints()), ("open_clip", clip_cache_dir())):
        if directory.is_dir():
            found += [(library, p, None) for p in sorted(directory.iterdir())
                      if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file()]
    return found


def _sha256(path: Path) -> str:
    """A hub blob is named by its sha256 (the hub's content address, checked when gaia-bench
    downloads it); any other file is hashed."""
    from gaia_bench.plugins.backbones.lib.weights_files import file_sha256

    blob = Path(os.path.realpath(path)).name
    return blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else file_sha256(path)


def cached_weights() -> list[dict]:
    """What `weights list` shows: gaia-bench's downloads first (model and init known), then the
    other weight files of the standard caches (the same file once)."""
    from gaia_bench.plugins.backbones.lib.weights_download import fetched

    rows = []
    seen: set[str] = set()
    for entry in fetched():
        seen.add(os.path.realpath(entry["file"]))
        rows.append({k: entry[k] for k in ("model", "init", "library", "file", "sha256")}
                    | {"bytes": Path(entry["file"]).stat().st_size})
    for library, path, repo in _cache_files():
        if os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            rows.append({"model": repo or "-", "init": "-", "library": library, "file": str(path),
                         "bytes": path.stat().st_size, "sha256": _sha256(path)})
    return rows


@weights_app.command("list")
@handle_errors
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="every field in full, as JSON")] = False,
) -> None:
    """Weight files in the standard caches: model, init, library, file, size, sha256."""
    from rich import box
    from rich.table import Table

    rows = cached_weights()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        notice("no weight files in the standard caches; `gaia-bench weights fetch MODEL --init NAME` fetches some")
        return
    table = Table("model", "init", "library", "file", "size", "sha256", title="cached weights",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in (table.columns[0], table.columns[3]):
        column.overflow = "fold"  # a long name wraps rather than losing its end
    for row in rows:
        table.add_row(row["model"], row["init"], row["library"], Path(row["file"]).name, _mib(row["bytes"]),
                      row["sha256"][:12])
    console.print(table)
    notice("sha256: its first 12 hex digits; --json gives every hash and path in full")


@hookimpl
def register_commands(cli):
    cli.add_typer(weights_app, name="weights")
