"""``--device`` values: what ``auto`` means here, and a clear error for a device this machine lacks."""

from __future__ import annotations

import contextlib

from gaia_bench.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")  # --precision: what autocast knows


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; any other value checked against this machine."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise UsageError(f"unknown --device '{device}'", "use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} but no CUDA device is available here", "use --device cpu (or auto)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UsageError(f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) exist",
                         f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps but MPS is not available here", "use --device cpu (or auto)")
    return device


def autocast(device: str, precision: str | None):
    """Mixed precision (``--precision`` bf16 or fp16) for a forward pass on ``device``; None and fp32: none."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision or "fp32")
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()

