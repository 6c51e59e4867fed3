"""What produced a result: library versions, plugin distributions, git revision, machine, and the
numeric environment that decides a float result's last bits (README "Reproducibility")."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

TRACKED_DISTRIBUTIONS = ("gaia-bench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pillow", "pluggy")
# Variables that change which kernels run, or how they split their sums (README "Reproducibility").
NUMERIC_VARIABLES = re.compile(r"ATEN_CPU_CAPABILITY|ONEDNN_|DNNL_|MKL_|OMP_NUM_THREADS|CUBLAS_WORKSPACE")


@functools.lru_cache(maxsize=None)
def distribution_version(dist: str) -> str | None:
    """An installed distribution's version (None when absent), looked up once per process."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the gaia-bench source tree, when it runs from a git checkout (dirty marked)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:  # the full sha, tags ignored, "-dirty" when a tracked file differs from it
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _machine() -> tuple[dict, list[str]]:
    """The CPU and BLAS builds, read once per process (a visible share of a cached probe job)."""
    import torch

    cpu = dict(re.findall(r"^(model name|flags)\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
               if Path("/proc/cpuinfo").is_file() else ())
    blas = re.findall(r"Math Kernel Library Version \S+|MKL-DNN v\S+|OpenBLAS\S*|BLAS_INFO=\w+", torch.__config__.show())
    return cpu, blas


def environment(plugin_versions: dict[str, str], device: str) -> dict:
    """The provenance block stored with every result; ``numerics``: the CPU and the flags oneDNN, MKL and
    ATen choose kernels by, ATen's level in use, threads, BLAS and oneDNN builds, deterministic mode."""
    import torch

    cpu, blas = _machine()
    numerics = {"cpu": cpu.get("model name") or platform.processor(), "cores": os.cpu_count(),
                "cpu_flags": sorted({f for f in cpu.get("flags", "").split() if f.startswith(("avx", "amx", "fma"))}),
                "aten_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                "blas": blas, "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
                "variables": {k: v for k, v in sorted(os.environ.items()) if NUMERIC_VARIABLES.match(k)}}
    return {"python": sys.version.split()[0], "platform": platform.platform(), "device": device,
            "versions": {d: v for d in TRACKED_DISTRIBUTIONS if (v := distribution_version(d)) is not None},
            "plugins": plugin_versions, "git_sha": git_sha(), "numerics": numerics}
