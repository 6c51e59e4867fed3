"""Where a row's weights came from, read from its records: published weights (a file, named by
its hash), an imitation pretrained on an upstream pool (with the pool, steps and resolution the
record keeps), or no pretraining at all; and a flag on a ``scratch`` row evaluated with a frozen
backbone.

The init plugins name weights in ``config.weights_id`` (:mod:`gaia_bench.plugins.inits.inits`):
``NAME:TAG:sha256=HASH`` for a published file, ``NAME:pretrained:POOL@VERSION:KEY`` for a
checkpoint pretrained on a pool (hyper-parameters in the record's ``pretraining``, when it was run
since they are kept), ``random:...`` for the architecture's own random init; the ``checkpoint``
init, ``checkpoint:METHOD:POOL@VERSION:step=N:sha256=HASH`` for one checkpoint of a pretraining run
and ``checkpoint:file:sha256=HASH`` for any other file.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaia_bench.plugins.reporters.lib.leaderboard import Row

# Adaptations that keep the backbone frozen (cached features): what they measure of a `scratch`
# init is its random features, not training from scratch.
FROZEN_ADAPTATIONS = ("linear-probe", "knn", "ridge")
SCRATCH = "scratch"
FLAG = "†"
FLAG_NOTE = (f"{FLAG} scratch under a frozen backbone ({', '.join(FROZEN_ADAPTATIONS)}): this measures random "
             "GN+WS features, not training from scratch, which in Rethinking ImageNet Pre-training trains the whole "
             "network with a longer schedule (here: `--adapt finetune`, whose schedule is 3× for scratch)")
DATA_NOTE = ("data: where the datasets' files came from (each record's data_source): embedded = generated from "
             "installed packages; downloaded = fetched by `datasets prepare --download` (sources and sha256 in the "
             "record); local = laid out by hand or another tool; gvb-lists = GV-B's exported lists; "
             "+bundle = unpacked from a `datasets bundle`; - = not recorded (an older result)")
KIND_NOTE = ("weights: published = the published weights file (hash in the details); imitation = the init's own method "
             "pretrained on the upstream pool (pool, steps, resolution in the details); random = no pretraining")


@dataclass(frozen=True)
class Origin:
    kind: str  # "published", "imitation", "random", "reference" or "unknown"
    label: str  # short, for the main table
    detail: str  # one line: source, steps, resolution
    flag: str = ""  # FLAG for a scratch row under a frozen backbone


def _budget(hp: dict) -> str | None:
    """``200 steps of 64 images at 32 px``; None when the method trains nothing (no steps, no epochs)."""
    if float(hp.get("epochs") or 0) > 0:
        budget = f"{hp['epochs']:g} epochs"
    elif "steps" in hp:
        budget = f"{hp['steps']} steps"
    else:
        return None
    extra = f" of {hp['batch_size']} images" if "batch_size" in hp else ""
    size = f" at {hp['image_size']} px" if "image_size" in hp else ""
    return budget + extra + size


def short_id(weights_id: str) -> str:
    """A short label that still tells two weights apart: ``published 0123abcd`` (the file's hash),
    ``imitation 5673ace0`` (the checkpoint's key), else the id itself."""
    parts = weights_id.split(":")
    if len(parts) >= 4 and parts[1] == "pretrained":
        return f"imitation {parts[3][:8]}"
    if parts[0] == "checkpoint" and parts[-1].startswith("sha256="):
        step = parts[-2].replace("=", " ") if parts[-2].startswith("step=") else "file"
        return f"{step} {parts[-1][7:15]}"
    if len(parts) >= 3 and parts[-1].startswith("sha256="):
        return f"published {parts[-1][7:15]}"
    return weights_id


def origin_of(weights_id: str, init: str, pretraining: dict | None = None) -> Origin:
    """What one weights id says (see the module docstring); ``pretraining``: the record's."""
    parts = weights_id.split(":")
    if weights_id.startswith("random:") or init == "random":
        return Origin("random", "random", f"no pretraining: the architecture's random init ({weights_id})")
    if len(parts) >= 4 and parts[1] == "pretrained":
        pool, key = parts[2], parts[3][:12]
        hp = (pretraining or {}).get("hyperparams")
        budget = _budget(hp) if hp is not None else "steps and resolution not recorded (an older result)"
        if init == SCRATCH or budget is None:
            return Origin("random", "random GN+WS" if init == SCRATCH else "untrained",
                          f"no pretraining: {init}'s conversion of the random init, nothing trained (checkpoint {key})")
        return Origin("imitation", "imitation", f"{init} imitation pretrained on {pool}: {budget} (checkpoint {key})")
    if parts[0] == "checkpoint" and len(parts) == 5 and parts[3].startswith("step="):
        return Origin("imitation", parts[3].replace("=", " "), f"{parts[1]} pretraining on {parts[2]}, its checkpoint "
                      f"at {parts[3].replace('=', ' ')} (file sha256 {parts[4][7:]}…)")
    if parts[0] == "checkpoint" and parts[-1].startswith("sha256="):
        return Origin("unknown", "file", f"a local checkpoint file (sha256 {parts[-1][7:]}…)")
    if len(parts) >= 3 and parts[-1].startswith("sha256="):
        return Origin("published", "published",
                      f"published {init} weights '{':'.join(parts[1:-1])}' (file sha256 {parts[-1][7:]}…)")
    return Origin("unknown", "?", f"weights {weights_id}")


def row_data(row: Row) -> str | None:
    """The kinds of source a row's records say their data came from (``embedded``, ``downloaded``,
    ``local``, ``gvb-lists``; ``+bundle`` when unbundled), ``-`` for records that say nothing, None
    when no record of the row says anything."""
    kinds = set()
    for record in (r for cell in row.cells.values() for r in cell.records):
        source = record.get("data_source") or {}
        kinds.add(f"{source.get('kind', '?')}{'+bundle' if source.get('bundle') else ''}" if source else "-")
    return ", ".join(sorted(kinds)) if kinds - {"-"} else None


def row_origin(row: Row) -> Origin:
    """The origin of a row's weights (its records agree on them: different weights make different rows)."""
    cells = list(row.cells.values())
    if any(c.provenance for c in cells):
        sources = sorted({str(p.get("label", p.get("set"))) for c in cells for p in c.provenance})
        return Origin("reference", "published", f"published numbers ({', '.join(sources)}), not measured here")
    records = [r for c in cells for r in c.records]
    ids = sorted({str(r["config"].get("weights_id")) for r in records})
    first = records[0]
    origin = origin_of(ids[0], str(first["config"].get("init")), first.get("pretraining"))
    if len(ids) > 1:
        origin = Origin(origin.kind, origin.label, origin.detail + f" (and {len(ids) - 1} other weights ids)")
    frozen = all(r["config"].get("adaptation") in FROZEN_ADAPTATIONS for r in records)
    if first["config"].get("init") == SCRATCH and frozen:
        origin = Origin(origin.kind, origin.label, origin.detail, FLAG)
    return origin
