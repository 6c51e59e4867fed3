"""One stored record as one flat row (the columns the text reporters show), and `gaia-bench run`'s
results table, fitted to the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

# The columns every results table shows (also `gaia-bench run`'s summary).
COLUMNS = ("model", "init", "adaptation", "dataset", "shots", "seed", "status", "metric", "value", "n_train",
           "wall_s", "job_id")


def summary_row(record: dict) -> dict:
    """One record as one flat row of COLUMNS."""
    cfg = record["config"]
    metric = record.get("primary_metric", "")
    if metric and not record.get("higher_is_better", True):
        metric += " (lower is better)"
    value = record.get("primary_value")
    return {
        "model": cfg.get("model"),
        "init": cfg.get("init"),
        "adaptation": cfg.get("adaptation"),
        "dataset": cfg.get("dataset"),
        "shots": cfg.get("shots"),
        "seed": cfg.get("seed"),
        "status": record.get("status"),
        "metric": metric,
        "value": round(value, 2) if isinstance(value, float) else value,
        "n_train": record.get("n_train"),
        "wall_s": record.get("timings", {}).get("total_s"),
        "job_id": record.get("job_id"),
    }


# The axes of a grid (and the metric) that `gaia-bench run`'s table shows as columns where they vary.
_KEYS = ("model", "init", "adaptation", "dataset", "shots", "seed", "metric")


def _metric(record: dict) -> str:
    metric = record.get("primary_metric") or ""
    return f"{metric} ↓" if metric and not record.get("higher_is_better", True) else metric


def _half_interval(record: dict) -> float | None:
    """Half the width of the record's 95% interval of its primary metric (the leaderboard's ±)."""
    bounds = (record.get("interval") or {}).get("metrics", {}).get(record.get("primary_metric"))
    return None if not bounds else (bounds[1] - bounds[0]) / 2


def results_table(records: list[dict], width: int) -> Table:
    """The results of a grid as a rich Table fitted to ``width`` columns, the way the leaderboard's
    terminal table is: key columns with one value on every row move into the title, cells lose
    their padding before anything is dropped, and then, while the table is too wide, the wall
    time, the training-set size and the ± interval go (`gaia-bench results` has everything)."""
    from rich import box
    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    # the precision only where a cell ran in other than fp32 (its config has it then)
    axes = (*_KEYS, "precision") if any(r["config"].get("precision") for r in records) else _KEYS
    rows = []
    for record in records:
        row = summary_row(record)
        done = record.get("status") == "done" and isinstance(record.get("primary_value"), (int, float))
        half = _half_interval(record) if done else None
        rows.append({**{k: str(row[k]) for k in _KEYS[:-1]}, "metric": _metric(record),
                     "value": f"{record['primary_value']:.2f}" if done else "failed",
                     "±": "" if half is None else f"±{half:.2f}",
                     "n_train": "-" if row["n_train"] is None else str(row["n_train"]),
                     "wall s": "-" if row["wall_s"] is None else f"{row['wall_s']:.1f}",
                     "precision": record["config"].get("precision") or "fp32"})
    constant = [k for k in axes if len({r[k] for r in rows}) == 1]
    if len(constant) == len(axes):  # one row, or one cell's repeats: keep the dataset as the row's name
        constant.remove("dataset")
    keys = [k for k in axes if k not in constant]
    with_interval = [{**r, "value": r["value"] + r["±"]} for r in rows]

    def natural(shown: list[str], table_rows: list[dict], pad: int) -> int:
        widths = [max([cell_len(c)] + [cell_len(r[c]) for r in table_rows]) for c in shown]
        return sum(widths) + (1 + 2 * pad) * (len(shown) - 1)

    layouts = []  # (columns, rows, padding), from the fullest to the barest
    for extra, body in ((["n_train", "wall s"], with_interval), (["n_train"], with_interval), ([], with_interval),
                        ([], rows)):
        layouts += [(keys + ["value"] + extra, body, 1), (keys + ["value"] + extra, body, 0)]
    shown, table_rows, pad = next((layout for layout in layouts if natural(*layout) <= width), layouts[-1])

    fixed = " · ".join(f"{k} {rows[0][k]}" for k in constant)
    notes = []
    if table_rows is with_interval and any(r["±"] for r in rows):
        notes.append("± half the 95% interval over test items")
    if any(r["metric"].endswith("↓") for r in rows):
        notes.append("↓ lower is better")
    for record, row in zip(records, rows):
        if row["value"] == "failed":
            notes.append(f"[red]failed[/] {record.get('job_id')}: {escape(str(record.get('error', ''))[:200])}")
    table = Table(title="results" + (f" ({escape(fixed)})" if fixed else ""), caption="\n".join(notes) or None,
                  caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, pad))
    for name in shown:
        numeric = name in ("value", "n_train", "wall s", "seed")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    for row in table_rows:
        table.add_row(*[f"[red]{row[c]}[/]" if row[c] == "failed" else escape(row[c]) for c in shown])
    return table
