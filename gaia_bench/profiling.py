"""Measure a backbone: parameters, FLOPs counted on a real forward, latency and throughput.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on one forward of one image (so
they follow the operators that actually run, not a formula per layer); that counter counts a
multiply-add as 2 FLOPs. Latency is the median wall time of a forward of one batch after
warm-up runs, synchronized on CUDA, so a slow first call (allocation, kernel selection) is not
counted.
"""

from __future__ import annotations

import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
