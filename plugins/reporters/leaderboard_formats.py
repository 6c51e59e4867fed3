"""Leaderboard output formats: markdown, CSV, JSON, LaTeX (booktabs), the HTML page, the plots,
and results.json (the records the tables were built from), all written into one directory."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import ReporterSpec
from gaia_bench.plugins.reporters.lib.leaderboard import Cell, Leaderboard, MainTable, Section
from gaia_bench.plugins.reporters.lib.tables import (
    ERR_CI_NOTE,
    ERR_FORMULA,
    FLOP_NOTE,
    MARK_NOTE,
    NA,
    STD_NOTE,
    Grid,
    leaderboard_grids,
    summary_lines,
    task_label,
)
from gaia_bench.predictions import predictions_dir
from gaia_bench.tasks.types.lib.calibration import RULE as CALIBRATION_RULE
from gaia_bench.cli.exports import export_records

PLUGIN_ORDER = 610

PLOTS = ("data_efficiency.png", "speed_accuracy.png")
OUTPUTS = ("leaderboard.md", "leaderboard.html", "leaderboard.tex", "leaderboard.json", "results.json", "main.csv",
           "error_rate_reduction.csv", "data_efficiency.csv", "data_efficiency_analysis.csv", "rank_agreement.csv",
           "long_tail.csv", "speed_accuracy.csv", "references.csv", *PLOTS)


# --------------------------------------------------------------------------- markdown
def _md_grid(grid: Grid) -> str:
    from tabulate import tabulate

    headers = [f"{c.group} {c.label}" if c.group and c.group != "mean" else c.label for c in grid.columns]
    body = [[f"**{cell.text}**" if cell.strong else cell.text for cell in row] for row in grid.rows]
    align = ["right" if c.numeric else "left" for c in grid.columns]
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True, colalign=align) if body else "(none)"
    notes = "".join(f"- {n}\n" for n in grid.notes)
    return f"## {grid.title}\n\n{table}\n\n{notes}"


def render_markdown(board: Leaderboard, plots: dict[str, bytes]) -> str:
    parts = [f"# {board.title}\n", "".join(f"- {line}\n" for line in summary_lines(board))]
    for grid in leaderboard_grids(board):
        parts.append(_md_grid(grid))
        if grid.id == "efficiency" and "data_efficiency.png" in plots:
            parts.append("![data efficiency](data_efficiency.png)\n")
        if grid.id == "speed" and "speed_accuracy.png" in plots:
            parts.append("![speed / accuracy](speed_accuracy.png)\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- LaTeX
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "↓": r"$\downarrow$",
                  "↑": r"$\uparrow$", "★": r"$\star$", "−": r"$-$", "²": r"$^2$", "×": r"$\times$", "·": r"$\cdot$",
                  "<": r"\textless{}", ">": r"\textgreater{}", "≈": r"$\approx$", "ᵗ": r"$^{t}$", "†": r"$\dagger$",
                  "≥": r"$\geq$", "≤": r"$\leq$", "τ": r"$\tau$", "–": "--", "→": r"$\rightarrow$", "…": r"\ldots{}"}


_LATEX_MAX_COLUMNS = 10  # wider tables are scaled down to the text width (GV-B's 26 datasets)


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; `code` spans (as in the notes) become \\texttt."""
    pieces = text.split("`")
    escaped = ["".join(_LATEX_SPECIAL.get(ch, ch) for ch in piece) for piece in pieces]
    return "".join(rf"\texttt{{{p}}}" if i % 2 else p for i, p in enumerate(escaped))


def _latex_grid(grid: Grid) -> str:
    cols = grid.columns
    spec = "".join("r" if c.numeric else "l" for c in cols)
    wide = len(cols) > _LATEX_MAX_COLUMNS
    lines = [rf"\subsection*{{{latex_escape(grid.title)}}}", r"\begin{center}",
             *([r"\resizebox{\textwidth}{!}{%"] if wide else []), rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    groups: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based
    for i, c in enumerate(cols, start=1):
        if groups and groups[-1][0] == c.group and c.group:
            groups[-1] = (c.group, groups[-1][1], i)
        else:
            groups.append((c.group, i, i))
    if any(g for g, _, _ in groups):
        cells = [rf"\multicolumn{{{b - a + 1}}}{{c}}{{{latex_escape(g)}}}" if g else " & ".join([""] * (b - a + 1))
                 for g, a, b in groups]
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rf"\cmidrule(lr){{{a}-{b}}}" for g, a, b in groups if g))
    lines.append(" & ".join(latex_escape(c.label) for c in cols) + r" \\")
    lines.append(r"\midrule")
    for row in grid.rows:
        lines.append(" & ".join(rf"\textbf{{{latex_escape(cell.text)}}}" if cell.strong else latex_escape(cell.text)
                                for cell in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}" + ("}" if wide else ""), r"\end{center}"]
    notes = [r"\begin{itemize}"] + [rf"\item {latex_escape(n)}" for n in grid.notes] + [r"\end{itemize}"]
    if not grid.rows:
        lines = [rf"\subsection*{{{latex_escape(grid.title)}}}", "(none)"]
    return "\n".join(lines + notes)


def render_latex(board: Leaderboard) -> str:
    """A standalone document (pdflatex): every table in booktabs style (in place, not floating, so its
    notes and formulas stay right below it); a paper can take any tabular as it is."""
    head = [r"\documentclass{article}", r"\usepackage[T1]{fontenc}", r"\usepackage{booktabs}",
            r"\usepackage{graphicx}", r"\usepackage[margin=1.5cm,landscape]{geometry}", r"\begin{document}",
            rf"\section*{{{latex_escape(board.title)}}}", r"\begin{itemize}"]
    head += [rf"\item {latex_escape(line)}" for line in summary_lines(board)] + [r"\end{itemize}"]
    body = [_latex_grid(g) for g in leaderboard_grids(board)]
    return "\n".join(head + body + [r"\end{document}"]) + "\n"


# --------------------------------------------------------------------------- CSV
def _csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _interval_fields(cell: Cell | None) -> list:
    """low, high and what the interval is (empty without one)."""
    interval = cell.interval if cell is not None else None
    if interval is None:
        return ["", "", NA if cell is not None and not cell.provenance else ""]
    return [interval.low, interval.high, interval.method]


def _main_csv(table: MainTable, source: str) -> str:
    from gaia_bench.plugins.reporters.lib.provenance import row_origin

    header = ["source", "model", "init", "adaptation", "shots", "weights", "weights_source", "flag"]
    for c in table.columns:
        header += [c.key, f"{c.key}:std", f"{c.key}:n", f"{c.key}:ci_low", f"{c.key}:ci_high", f"{c.key}:interval",
                   f"{c.key}:mark"]
    header += [f"mean:{task_label(t)}" for t in table.tasks] + [f"mean:{task_label(t)}:n_datasets" for t in table.tasks]
    rows = []
    for row in table.rows:
        origin = row_origin(row)
        values: list = [source, *row.key, table.shots, origin.kind, origin.detail, origin.flag]
        for c in table.columns:
            cell = row.cells.get(c)
            values += [cell.mean, cell.std, cell.n] if cell else ["", "", ""]
            values += _interval_fields(cell) + [cell.mark if cell else ""]
        values += [row.task_means[t].value if t in row.task_means else "" for t in table.tasks]
        values += [row.task_means[t].n_datasets if t in row.task_means else "" for t in table.tasks]
        rows.append(values)
    return _csv(header, rows)


def _err_csv(sections: list[Section]) -> str:
    header = ["section", "init", "model", "adaptation", "baseline", "shots", "task", "reduction_pct", "ci_low", "ci_high",
              "ci_method", "n_datasets", "datasets", "formula"]
    rows = []
    for section in sections:
        for err in section.err:
            for task, pairs in err.pairs.items():
                interval = err.intervals.get(task)
                ci = [interval.low, interval.high, interval.method] if interval is not None else ["", "", NA]
                rows.append([section.name, err.init, err.model, err.adaptation, err.baseline, section.table.shots,
                             task_label(task), err.percent(task), *ci, len(pairs),
                             " ".join(f"{p.model}/{p.dataset}" for p in pairs), ERR_FORMULA])
    return _csv(header, rows)


def _efficiency_csv(board: Leaderboard) -> str:
    header = ["model", "init", "adaptation", "dataset", "task", "metric", "higher_is_better", "shots", "mean", "std", "n",
              "ci_low", "ci_high", "interval"]
    rows = []
    for row in board.efficiency.rows:
        for shots in board.efficiency.shots:
            if shots in row.cells:
                cell = row.cells[shots]
                rows.append([*row.key, row.column.dataset, task_label(row.column.task), row.column.metric,
                             row.column.higher_is_better, shots, cell.mean, cell.std, cell.n, *_interval_fields(cell)])
    return _csv(header, rows)


def _curves_csv(board: Leaderboard) -> str:
    from gaia_bench.plugins.reporters.lib.efficiency import AUC_RULE, REACH_RULE

    analysis = board.efficiency_analysis
    header = ["model", "init", "adaptation", "dataset", "metric", "higher_is_better", "fractions", "auc_log",
              "baseline", "reaches_baseline_100", "auc_rule", "reach_rule"]
    rows = [[*c.key, c.column.dataset, c.column.metric, c.column.higher_is_better, " ".join(c.fractions),
             "" if c.auc is None else c.auc, analysis.baseline, c.reach or "", AUC_RULE, REACH_RULE]
            for c in analysis.curves]
    return _csv(header, rows)


def _agreement_csv(board: Leaderboard) -> str:
    from gaia_bench.plugins.reporters.lib.efficiency import TAU_RULE

    header = ["task", "dataset", "shots_a", "shots_b", "rows", "tau", "ci_low", "ci_high", "resamples", "method"]
    rows = []
    for a in board.efficiency_analysis.agreements:
        t = a.tau
        rows.append([task_label(a.task), a.dataset, *a.shots, " ".join("/".join(k) for k in a.rows),
                     *("" if math.isnan(v) else v for v in (t.tau, t.low, t.high)), t.resamples, TAU_RULE])
    return _csv(header, rows)


def _long_tail_csv(board: Leaderboard) -> str:
    from gaia_bench.plugins.reporters.lib.long_tail import BUCKETS, RULE

    lt = board.long_tail
    by_dataset = {b.dataset: b for b in lt.datasets}
    header = ["model", "init", "adaptation", "dataset", "n_seeds"]
    for name in (*BUCKETS, "worst_class"):
        header += [f"{name}:mean", f"{name}:std"]
    header += ["head_from", "tail_below", *(f"{b}:classes" for b in BUCKETS), "rule"]
    rows = []
    for r in lt.rows:
        b = by_dataset[r.column.dataset]
        values: list = [*r.key, r.column.dataset, r.worst.n]
        for cell in [*(r.buckets[name] for name in BUCKETS), r.worst]:
            values += [cell.mean, "" if cell.std is None else cell.std] if cell.n else ["", ""]
        values += [b.head_from, b.tail_below, *(" ".join(map(str, b.members[name])) for name in BUCKETS), RULE]
        rows.append(values)
    return _csv(header, rows)


def _speed_csv(board: Leaderboard) -> str:
    speed = board.speed
    fields = ["input_size", "batch_size", "device", "device_name", "params", "gflops_per_image", "latency_ms",
              "throughput_ips"]
    header = ["model", "init", "adaptation", *fields]
    header += [f"{kind}:{task_label(t)}" for t in speed.tasks for kind in ("mean", "pareto")]
    rows = []
    for row in speed.rows:
        values: list = [*row.key] + [(row.profile or {}).get(f, "") for f in fields]
        for task in speed.tasks:
            mean = row.task_means.get(task)
            values += [mean.value if mean else "", row.on_front.get(task, "") if row.profile else ""]
        rows.append(values)
    return _csv(header, rows)


def render_csvs(board: Leaderboard) -> dict[str, str]:
    files = {}
    sections = [s for s in (board.measured, board.references) if s]
    if board.measured:
        files["main.csv"] = _main_csv(board.measured.table, "measured")
    if board.references:
        files["references.csv"] = _main_csv(board.references.table, f"reference: {board.references.name}")
    files["error_rate_reduction.csv"] = _err_csv(sections)
    if board.efficiency.rows:
        files["data_efficiency.csv"] = _efficiency_csv(board)
    if board.efficiency_analysis is not None and board.efficiency_analysis.curves:
        files["data_efficiency_analysis.csv"] = _curves_csv(board)
    if board.efficiency_analysis is not None and board.efficiency_analysis.agreements:
        files["rank_agreement.csv"] = _agreement_csv(board)
    if board.long_tail is not None and board.long_tail.rows:
        files["long_tail.csv"] = _long_tail_csv(board)
    if board.speed:
        files["speed_accuracy.csv"] = _speed_csv(board)
    return files


# --------------------------------------------------------------------------- JSON
def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _interval_json(interval) -> dict | None:
    if interval is None:
        return None
    return {"low": _finite(interval.low), "high": _finite(interval.high), "kind": interval.kind, "method": interval.method}


def _cell_json(cell: Cell) -> dict:
    from gaia_bench.plugins.reporters.lib.calibration_table import cell_calibration

    out = {"mean": cell.mean, "std": cell.std, "n": cell.n, "values": cell.values, "record_ids": cell.record_ids,
           "configs": cell.configs}
    if calibration := cell_calibration(cell):
        out["calibration"] = calibration
    if cell.provenance:
        out["provenance"] = cell.provenance
    else:
        out["interval"] = _interval_json(cell.interval)
    if cell.mark:
        out["mark"] = cell.mark
    if cell.versus_best is not None:
        out["versus_best"] = cell.versus_best
    if cell.conflicts:
        out["conflicts"] = cell.conflicts  # seeds' job ids with another value in another source
    return out


def _section_json(section: Section, source: str) -> dict:
    from gaia_bench.plugins.reporters.lib.provenance import row_origin

    table = section.table
    return {
        "source": source,
        "shots": table.shots,
        "columns": [{"key": c.key, "dataset": c.dataset, "task": c.task, "metric": c.metric,
                     "higher_is_better": c.higher_is_better} for c in table.columns],
        "rows": [{"model": r.key[0], "init": r.key[1], "adaptation": r.key[2], "source": source,
                  "weights": vars(row_origin(r)),
                  "cells": {c.key: _cell_json(cell) for c, cell in r.cells.items()},
                  "task_means": {t: vars(m) for t, m in r.task_means.items()}} for r in table.rows],
        "error_rate_reduction": {
            "baseline": section.baseline, "formula": ERR_FORMULA, "interval": ERR_CI_NOTE,
            "rows": [{"init": e.init, "model": e.model, "adaptation": e.adaptation, "baseline": e.baseline,
                      "tasks": {t: {"reduction_pct": e.percent(t), "interval": _interval_json(e.intervals.get(t)),
                                    "pairs": [vars(p) | {"reduction": p.reduction} for p in ps]}
                                for t, ps in e.pairs.items()}} for e in section.err],
        },
    }


def _analysis_json(board: Leaderboard) -> dict | None:
    from gaia_bench.plugins.reporters.lib.efficiency import AUC_RULE, REACH_RULE, TAU_RULE

    analysis = board.efficiency_analysis
    if analysis is None:
        return None
    return {
        "baseline": analysis.baseline, "auc_rule": AUC_RULE, "reach_rule": REACH_RULE, "tau_rule": TAU_RULE,
        "curves": [{"model": c.key[0], "init": c.key[1], "adaptation": c.key[2], "dataset": c.column.dataset,
                    "metric": c.column.metric, "fractions": c.fractions, "auc_log": c.auc, "reaches_baseline_100": c.reach}
                   for c in analysis.curves],
        "rank_agreement": [{"task": a.task, "dataset": a.dataset, "shots": list(a.shots), "rows": [list(k) for k in a.rows],
                            "tau": _finite(a.tau.tau), "ci_low": _finite(a.tau.low), "ci_high": _finite(a.tau.high),
                            "resamples": a.tau.resamples} for a in analysis.agreements],
    }


def _long_tail_json(board: Leaderboard) -> dict | None:
    from gaia_bench.plugins.reporters.lib.long_tail import RULE

    lt = board.long_tail
    if lt is None:
        return None
    return {
        "rule": RULE,
        "datasets": [{"dataset": b.dataset, "train_count": list(b.train_count), "head_from": b.head_from,
                      "tail_below": b.tail_below, "classes": {k: list(v) for k, v in b.members.items()}} for b in lt.datasets],
        "rows": [{"model": r.key[0], "init": r.key[1], "adaptation": r.key[2], "dataset": r.column.dataset,
                  "buckets": {k: {"mean": c.mean if c.n else None, "std": c.std, "values": c.values} for k, c in r.buckets.items()},
                  "worst_class": {"mean": r.worst.mean, "std": r.worst.std, "values": r.worst.values}} for r in lt.rows],
        "without_per_class_values": lt.without_values,
    }


def render_json(board: Leaderboard) -> str:
    from gaia_bench.plugins.reporters.lib.tables import interval_notes

    eff = board.efficiency
    cells = [c for row in board.measured.table.rows for c in row.cells.values()] if board.measured else []
    doc = {
        "kind": "gaia-bench-leaderboard",
        "schema_version": 1,
        "title": board.title,
        "suite": board.suite,
        "shots": board.shots,
        "rebuild": board.rebuild,
        "interval": board.interval,
        "notes": {"cells": interval_notes(cells, board.interval), "marks": MARK_NOTE, "error_rate_reduction": ERR_FORMULA,
                  "error_rate_reduction_interval": ERR_CI_NOTE, "std": STD_NOTE, "flops": FLOP_NOTE,
                  "calibration": CALIBRATION_RULE},
        "main": _section_json(board.measured, "measured") if board.measured else None,
        "references": ({"label": board.references.name,
                        "sets": [{k: s.get(k) for k in ("name", "label", "description", "source")} for s in board.reference_sets],
                        **_section_json(board.references, "reference")} if board.references else None),
        "data_efficiency": {"shots": eff.shots, "rows": [
            {"model": r.key[0], "init": r.key[1], "adaptation": r.key[2], "dataset": r.column.dataset,
             "task": r.column.task, "metric": r.column.metric, "higher_is_better": r.column.higher_is_better,
             "cells": {s: _cell_json(c) for s, c in r.cells.items()}} for r in eff.rows],
            "analysis": _analysis_json(board)},
        "long_tail": _long_tail_json(board),
        "speed_accuracy": None if board.speed is None else {"rows": [
            {"model": r.key[0], "init": r.key[1], "adaptation": r.key[2], "profile": r.profile,
             "task_means": {t: vars(m) for t, m in r.task_means.items()}, "pareto": r.on_front} for r in board.speed.rows]},
        "conflicts": [vars(c) for c in board.conflicts],
        "identical_duplicates": board.identical_duplicates,
        "unreadable_predictions": board.prediction_problems,
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def render_results_json(board: Leaderboard) -> str:
    """The measured records, the profiles and the reference sets used: `--import` of this file rebuilds the tables."""
    doc = export_records(board.records)
    doc["profiles"] = board.profiles
    doc["reference_sets"] = board.reference_sets
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- the directory
def copy_predictions(board: Leaderboard, out: Path) -> Path | None:
    """Copy the prediction files the intervals were drawn from beside ``out/results.json``, where
    `--import out/results.json` looks for them, so a rebuild draws the same intervals and marks;
    files of an earlier build that this one does not use are removed."""
    target = predictions_dir(out / "results.json")
    wanted = {path.name: path for path in board.prediction_files.values()}
    if not wanted and not target.exists():
        return None
    target.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        if not (target / name).exists() or not (target / name).samefile(source):
            shutil.copyfile(source, target / name)
    for stale in target.glob("*.npz"):
        if stale.name not in wanted:
            stale.unlink()
    return target



def render_plots(board: Leaderboard) -> dict[str, bytes]:
    from gaia_bench.plugins.reporters.lib.leaderboard_plots import plot_data_efficiency, plot_speed_accuracy

    plots = {"data_efficiency.png": plot_data_efficiency(board.efficiency, board.title, board.interval)}
    if board.speed and board.measured:
        directions = {t: board.measured.table.task_direction(t) for t in board.speed.tasks}
        plots["speed_accuracy.png"] = plot_speed_accuracy(board.speed, directions, board.title)
    return {name: png for name, png in plots.items() if png}


def write_leaderboard(board: Leaderboard, out: Path) -> list[Path]:
    """Write every format into ``out``; outputs of an earlier build that this one lacks are removed."""
    from gaia_bench.plugins.reporters.lib.leaderboard_html import render_html

    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(board)
    texts = {"leaderboard.md": render_markdown(board, plots), "leaderboard.tex": render_latex(board),
             "leaderboard.json": render_json(board), "results.json": render_results_json(board),
             "leaderboard.html": render_html(board, plots), **render_csvs(board)}
    written = []
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for name, png in plots.items():
        (out / name).write_bytes(png)
        written.append(out / name)
    for name in OUTPUTS:
        if out / name not in written and (out / name).exists():
            (out / name).unlink()
    if (copied := copy_predictions(board, out)) is not None:
        written.append(copied)
    return written


@hookimpl
def register_reporters(register):
    register(ReporterSpec("leaderboard", "leaderboard directory: markdown, CSV, JSON, LaTeX, one HTML page, plots",
                          write_leaderboard=write_leaderboard))
