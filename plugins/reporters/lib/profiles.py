"""Backbone profiles for the leaderboard's speed/accuracy table: measured, then kept in the results store.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward of one image (so
they follow the operators that actually run, not a formula per layer); that counter counts a
multiply-add as 2 FLOPs. Latency is the median wall time of a forward of one batch after
warm-up runs, synchronized on CUDA, so a slow first call (allocation, kernel selection) is not
counted: a fixed number of forwards, or (``repeats=None``) as many as it takes for the median's
95% interval to be narrow (:func:`time_until_stable`), since a noisy machine needs more. Every
profile says what it was measured on: device, its name, torch's threads and the precision.

Profiles live in their own ``profiles`` table of the same SQLite file as the results, so one
``--store`` carries both what a backbone scores and how fast it runs; the leaderboard joins the
two. The table is created on first write, beside ``results``.
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

PRECISION = "float32"  # what every profile here runs in (weights and inputs)
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


def time_forward(model: Any, x: Any, device: str, repeats: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``repeats`` forwards, after ``warmup`` untimed ones."""
    import torch

    times = []
    with torch.inference_mode():
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


def profile_backbone(spec: Any, *, input_size: int, batch_size: int, device: str, repeats: int | None,
                     warmup: int) -> dict:
    """Build ``spec``'s backbone (its own random init: speed does not depend on the weights) and
    measure it; ``repeats`` None: time forwards until the median is stable (:func:`time_until_stable`)."""
    import torch

    from gaia_bench.plugins.reporters.lib.statistics import median_interval
    from gaia_bench.provenance import environment

    model = spec.build().eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    one = torch.randn(1, 3, input_size, input_size, device=device)
    flops = count_flops(model, one)
    batch = torch.randn(batch_size, 3, input_size, input_size, device=device)
    stable = None
    if repeats is None:
        time_forward(model, batch, device, 0, warmup)
        times, stable = time_until_stable(lambda: time_forward(model, batch, device, 1, 0)[0])
    else:
        times = time_forward(model, batch, device, repeats, warmup)
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
        "precision": PRECISION,
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
        "throughput_ips": batch_size * 1000.0 / latency,
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
        conn.execute(
            "INSERT INTO profiles (model, input_size, batch_size, device, measured_at, record) VALUES (?,?,?,?,?,?)",
            (profile["model"], profile.get("input_size"), profile.get("batch_size"), profile.get("device"),
             profile["measured_at"], json.dumps(profile, sort_keys=True)),
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
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM profiles ORDER BY measured_at, id")]
    finally:
        conn.close()


def find_profile(profiles: list[dict], *, model: str, input_size: int, batch_size: int, device: str,
                 device_name: str, threads: int, precision: str = PRECISION) -> dict | None:
    """The latest stored profile measured under exactly these conditions (a profile without a
    precision was measured in float32, as every profile here is), or None."""
    same = [p for p in profiles if (p.get("model"), p.get("input_size"), p.get("batch_size"), p.get("device"),
                                    p.get("device_name"), p.get("threads"), p.get("precision", PRECISION))
            == (model, input_size, batch_size, device, device_name, threads, precision)]
    return same[-1] if same else None
