"""Backbone profiles for the leaderboard's speed/accuracy table: measured, then kept in the results store.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward of one image (so
they follow the operators that actually run, not a formula per layer); that counter counts a
multiply-add as 2 FLOPs. Latency is the median wall time of a forward of one batch after
warm-up runs, synchronized on CUDA, so a slow first call (allocation, kernel selection) is not
counted.

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
from typing import Any

from gaia_bench.errors import GaiaBenchError

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


def _device_name(device: str) -> str:
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


def profile_backbone(spec: Any, *, input_size: int, batch_size: int, device: str, repeats: int, warmup: int) -> dict:
    """Build ``spec``'s backbone (its own random init: speed does not depend on the weights) and measure it."""
    import torch

    from gaia_bench.provenance import environment

    model = spec.build().eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    one = torch.randn(1, 3, input_size, input_size, device=device)
    flops = count_flops(model, one)
    batch = torch.randn(batch_size, 3, input_size, input_size, device=device)
    times = time_forward(model, batch, device, repeats, warmup)
    latency = statistics.median(times)
    return {
        "kind": "profile",
        "model": spec.name,
        "source": spec.source,
        "input_size": input_size,
        "batch_size": batch_size,
        "device": device,
        "device_name": _device_name(device),
        "threads": torch.get_num_threads(),
        "params": params,
        "flops_per_image": flops,
        "gflops_per_image": flops / 1e9,
        "flop_convention": FLOP_CONVENTION,
        "latency_ms": latency,
        "latency_ms_min": min(times),
        "latency_ms_max": max(times),
        "latency_note": f"median ms per forward of a batch of {batch_size} over {repeats} runs after {warmup} warm-up runs",
        "throughput_ips": batch_size * 1000.0 / latency,
        "repeats": repeats,
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
