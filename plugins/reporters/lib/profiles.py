"""Backbone profiles for the leaderboard's speed/accuracy table: measured, then kept in the results store.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward of one image (so
they follow the operators that actually run, not a formula per layer); that counter counts a
multiply-add as 2 FLOPs. Latency is the median wall time of a forward of one batch after
warm-up runs, synchronized on CUDA, so a slow first call (allocation, kernel selection) is not
counted: a fixed number of forwards, or (``repeats=None``) as many as it takes for the median's
95% interval to be narrow (:func:`time_until_stable`), since a noisy machine needs more. Every
profile says what it was measured on: device, its name, torch's threads, the precision (autocast
of ``--precision`` bf16 / fp16) and the memory layout. Besides latency it reports what timm's
``benchmark.py`` does (samples/s, ms per step, ms per sample, batch, image size) and the peak
memory of the forwards (:class:`PeakMemory`).

Profiles live in their own ``profiles`` table of the same SQLite file as the results, so one
``--store`` carries both what a backbone scores and how fast it runs; the leaderboard joins the
two. The table is created on first write, beside ``results``. Each row keeps the whole profile as
JSON plus the columns it is looked up by; a table from before precision, layout and memory were
measured gets those columns on the next write (:func:`migrate`), its rows filled in as measured
then (float32, contiguous, memory unknown), and :func:`load_profiles` gives old records the same
defaults, so older rows keep loading and matching.
"""

from __future__ import annotations

import json
import platform
import sqlite3
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from gaia_bench.errors import GaiaBenchError

PRECISION = "float32"  # what a profile without a ``precision`` field (an older row) was measured in
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # --precision -> the stored name
# Until-stable timing: forwards in rounds of MIN_REPEATS until the median's 95% interval is within
# +-PRECISION_SHARE of it, or MAX_REPEATS forwards, or MAX_SECONDS of timed forwards.
MIN_REPEATS, MAX_REPEATS, PRECISION_SHARE, MAX_SECONDS = 20, 1000, 0.02, 15.0
FLOP_CONVENTION = "FLOPs counted by torch.utils.flop_counter.FlopCounterMode on one forward; a multiply-add counts as 2 FLOPs"


def count_flops(model: Any, x: Any) -> int:
    """FLOPs of ``model(x)`` as FlopCounterMode counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def time_forward(model: Any, x: Any, device: str, repeats: int, warmup: int, precision: str | None = None) -> list[float]:
    """Milliseconds of each of ``repeats`` forwards (under ``precision``'s autocast), after ``warmup`` untimed ones."""
    import torch

    from gaia_bench.devices import autocast

    times = []
    with torch.inference_mode(), autocast(device, precision):
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return times


def time_until_stable(forward_ms: Callable[[], float], *, min_repeats: int = MIN_REPEATS,
                      max_repeats: int = MAX_REPEATS, precision: float = PRECISION_SHARE,
                      max_seconds: float = MAX_SECONDS) -> tuple[list[float], bool]:
    """Milliseconds of forwards (``forward_ms()`` runs one and returns its time), taken in rounds of
    ``min_repeats`` until the median's 95% interval lies within ``±precision`` of the median
    (True), or ``max_repeats`` forwards or ``max_seconds`` of them were timed first (False)."""
    from gaia_bench.plugins.reporters.lib.statistics import median_interval

    times: list[float] = []
    while True:
        times += [forward_ms() for _ in range(min_repeats)]
        median = statistics.median(times)
        low, high = median_interval(times)
        if max(median - low, high - median) <= precision * median:
            return times, True
        if len(times) >= max_repeats or sum(times) >= max_seconds * 1000.0:
            return times, False


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:  # Linux names the CPU model here; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _resident_mb(field: str) -> float | None:
    """This process's resident set (``VmRSS``) or its peak (``VmHWM``) in MiB, from Linux's /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class PeakMemory:
    """The peak memory of what runs inside, in MiB (``.mb``; None where it cannot be measured), and how
    it was measured (``.how``). CUDA: ``torch.cuda.max_memory_allocated`` (tensors: weights, inputs,
    activations). CPU: growth of the process's peak resident set over its size at ``baseline_mb`` (taken
    before the backbone was built, so weights count as on CUDA): Linux's ``VmHWM``, reset on entry by
    writing 5 to /proc/self/clear_refs. (tracemalloc sees no torch tensor; the resident set includes
    the allocator's cached blocks.)"""

    def __init__(self, device: str, baseline_mb: float | None) -> None:
        self.device, self.baseline_mb, self.mb, self.how = device, baseline_mb, None, "not measured on this system"

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.baseline_mb = None
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.startswith("cuda"):
            self.mb, self.how = torch.cuda.max_memory_allocated(self.device) / 2**20, "torch.cuda.max_memory_allocated"
        elif self.baseline_mb is not None and (peak := _resident_mb("VmHWM")) is not None:
            self.mb, self.how = max(peak - self.baseline_mb, 0.0), "resident-set growth (Linux VmHWM)"


def profile_backbone(spec: Any, *, input_size: int, batch_size: int, device: str, repeats: int | None,
                     warmup: int, precision: str = "fp32", channels_last: bool = False) -> dict:
    """Build ``spec``'s backbone (its own random init: speed does not depend on the weights) and
    measure it, its forwards under ``precision``'s autocast, weights and inputs channels-last when
    asked; ``repeats`` None: time forwards until the median is stable (:func:`time_until_stable`)."""
    import torch

    from gaia_bench.plugins.reporters.lib.statistics import median_interval
    from gaia_bench.provenance import environment

    baseline = None if device.startswith("cuda") else _resident_mb("VmRSS")
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = spec.build().eval().to(device, memory_format=memory)
    params = sum(p.numel() for p in model.parameters())
    one = torch.randn(1, 3, input_size, input_size, device=device)
    flops = count_flops(model, one)
    with PeakMemory(device, baseline) as peak:
        batch = torch.randn(batch_size, 3, input_size, input_size, device=device).contiguous(memory_format=memory)
        stable = None
        if repeats is None:
            time_forward(model, batch, device, 0, warmup, precision)
            times, stable = time_until_stable(lambda: time_forward(model, batch, device, 1, 0, precision)[0])
        else:
            times = time_forward(model, batch, device, repeats, warmup, precision)
    latency = statistics.median(times)
    how = (f"{len(times)} runs (until its 95% interval was within ±{PRECISION_SHARE:.0%}"
           f"{'' if stable else ': not reached'})" if stable is not None else f"{len(times)} runs")
    return {
        "kind": "profile",
        "model": spec.name,
        "source": spec.source,
        "input_size": input_size,
        "batch_size": batch_size,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "precision": DTYPES[precision],
        "channels_last": channels_last,
        "params": params,
        "flops_per_image": flops,
        "gflops_per_image": flops / 1e9,
        "flop_convention": FLOP_CONVENTION,
        "latency_ms": latency,
        "latency_ms_min": min(times),
        "latency_ms_max": max(times),
        "latency_ms_interval": list(median_interval(times)),
        "latency_stable": stable,
        "latency_note": f"median ms per forward of a batch of {batch_size} over {how} after {warmup} warm-up runs",
        "throughput_ips": batch_size * 1000.0 / latency,  # samples/s
        "ms_per_sample": latency / batch_size,
        "peak_memory_mb": None if peak.mb is None else round(peak.mb, 1),
        "peak_memory_note": peak.how,
        "repeats": len(times),
        "warmup": warmup,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment({}, device),
    }


# --------------------------------------------------------------------------- storage
_DDL = """
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL, input_size INTEGER, batch_size INTEGER, device TEXT,
    measured_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_by_model ON profiles (model, input_size, device);
"""
# Columns added after the first release of the table: name -> (SQL type, value of the rows before them).
_ADDED = {"precision": ("TEXT", PRECISION), "channels_last": ("INTEGER", 0), "peak_memory_mb": ("REAL", None)}
_DEFAULTS = {"precision": PRECISION, "channels_last": False, "peak_memory_mb": None}  # of an older record


def migrate(conn: sqlite3.Connection) -> None:
    """Give an older ``profiles`` table the columns added since (its rows get the values they were
    measured with), in one transaction: two writers never both add a column."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(profiles)")}
        for name, (kind, old) in _ADDED.items():
            if name not in have:
                conn.execute(f"ALTER TABLE profiles ADD COLUMN {name} {kind}")
                conn.execute(f"UPDATE profiles SET {name} = ?", (old,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _with_defaults(record: dict) -> dict:
    """A stored profile with the fields an older one lacks (its ms per sample follows from its latency)."""
    record = {**_DEFAULTS, **record}
    if "ms_per_sample" not in record and record.get("latency_ms") and record.get("batch_size"):
        record["ms_per_sample"] = record["latency_ms"] / record["batch_size"]
    return record


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    except (sqlite3.DatabaseError, OSError) as exc:
        raise GaiaBenchError(f"cannot open results store {path}: {exc}", "pass --store with another path") from None


def save_profile(path: str | Path, profile: dict) -> None:
    """Append one profile (a dict with model, input_size, batch_size, device, measured_at, ...)."""
    conn = _connect(Path(path).expanduser())
    try:
        conn.executescript(_DDL)
        migrate(conn)
        conn.execute(
            "INSERT INTO profiles (model, input_size, batch_size, device, measured_at, record, precision, channels_last, "
            "peak_memory_mb) VALUES (?,?,?,?,?,?,?,?,?)",
            (profile["model"], profile.get("input_size"), profile.get("batch_size"), profile.get("device"),
             profile["measured_at"], json.dumps(profile, sort_keys=True), profile.get("precision", PRECISION),
             int(bool(profile.get("channels_last"))), profile.get("peak_memory_mb")),
        )
    finally:
        conn.close()


def load_profiles(path: str | Path) -> list[dict]:
    """Every profile in the store, oldest first (none when the file or its table does not exist)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return []
    conn = _connect(path)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='profiles'").fetchone()
        if not exists:
            return []
        return [_with_defaults(json.loads(r[0])) for r in conn.execute("SELECT record FROM profiles ORDER BY measured_at, id")]
    finally:
        conn.close()


def find_profile(profiles: list[dict], *, model: str, input_size: int, batch_size: int, device: str,
                 device_name: str, threads: int, precision: str = PRECISION, channels_last: bool = False) -> dict | None:
    """The latest stored profile measured under exactly these conditions (a profile without a
    precision was measured in float32 and contiguous, as every profile was then), or None."""
    same = [p for p in profiles if (p.get("model"), p.get("input_size"), p.get("batch_size"), p.get("device"),
                                    p.get("device_name"), p.get("threads"), p.get("precision", PRECISION),
                                    bool(p.get("channels_last")))
            == (model, input_size, batch_size, device, device_name, threads, precision, channels_last)]
    return same[-1] if same else None
