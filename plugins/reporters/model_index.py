"""A leaderboard as Hugging Face model-card metadata: ``model-index/<model>--<init>.yaml``, one
file per (backbone, init) measured here, in the ``model-index`` format that the Hub reads from a
model card's YAML header (task, dataset, metrics). Each metric is a cell of the leaderboard: the
mean over its seeds, its 95% interval and how that was computed, the shots and the adaptation.
Nothing is ``verified``: the Hub reserves that for its own evaluations."""

from __future__ import annotations

import re
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import ReporterSpec

PLUGIN_ORDER = 660

FOLDER = "model-index"
# The Hub's task ids for the four task types; other task types keep their own name.
HUB_TASKS = {"classification": ("image-classification", "Image Classification"),
             "detection": ("object-detection", "Object Detection"),
             "segmentation": ("image-segmentation", "Image Segmentation"),
             "depth": ("depth-estimation", "Depth Estimation")}
# Metric ids the Hub's metric pages use, where one fits; others keep the project's name.
HUB_METRICS = {"top1": "accuracy", "mIoU": "mean_iou", "mAP": "map", "rmse": "rmse"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def model_indexes(board) -> dict[str, dict]:
    """File name -> the ``model-index`` document of each (model, init) in the measured table."""
    if board.measured is None:
        return {}
    table = board.measured.table
    documents: dict[tuple[str, str], list[dict]] = {}
    for row in table.rows:
        model, init, adaptation = row.key
        for column in table.columns:
            cell = row.cells.get(column)
            if cell is None or not cell.values:
                continue
            task_type, task_name = HUB_TASKS.get(column.task, (column.task, column.task))
            args = {"shots": table.shots, "adaptation": adaptation, "seeds": cell.n,
                    "higher_is_better": column.higher_is_better, "job_ids": list(cell.record_ids)}
            if cell.interval is not None:
                args.update(interval_95=[round(cell.interval.low, 4), round(cell.interval.high, 4)],
                            interval_method=cell.interval.method)
            documents.setdefault((model, init), []).append({
                "task": {"type": task_type, "name": task_name},
                "dataset": {"name": column.dataset, "type": column.dataset, "split": "test"},
                "metrics": [{"type": HUB_METRICS.get(column.metric, column.metric), "value": round(cell.mean, 4),
                             "name": f"{column.metric} ({table.shots} shots, {adaptation}, {cell.n} seed"
                                     f"{'s' if cell.n != 1 else ''})",
                             "args": args, "verified": False}],
                "source": {"name": board.title},
            })
    return {f"{_slug(model)}--{_slug(init)}.yaml": {"model-index": [{"name": f"{model} ({init} init)", "results": results}]}
            for (model, init), results in documents.items()}


def write_model_index(board, out: Path) -> list[Path]:
    """Write one YAML per (model, init); files of an earlier build that this one lacks are removed."""
    import yaml

    folder = out / FOLDER
    documents = model_indexes(board)
    written = []
    if documents:
        folder.mkdir(parents=True, exist_ok=True)
        for name, document in documents.items():
            (folder / name).write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
            written.append(folder / name)
    for stale in folder.glob("*.yaml") if folder.is_dir() else ():
        if stale not in written:
            stale.unlink()
    return written


@hookimpl
def register_reporters(register):
    register(ReporterSpec(FOLDER, "Hugging Face model-card metadata (model-index YAML), one file per model and init",
                          write_leaderboard=write_model_index))
