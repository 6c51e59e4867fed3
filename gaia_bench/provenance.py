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
# Settings that change which kernels run, or how they split their sums, when set.
NUMERIC_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                     "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def _version(dist: str) -> str | None:
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
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def _machine() -> dict:
    """The CPU, the instruction-set flags that oneDNN, MKL and ATen choose kernels by, the BLAS/oneDNN builds."""
    import torch

    cpuinfo, build = Path("/proc/cpuinfo"), torch.__config__.show()
    info = dict(re.findall(r"^(model name|flags)\s*:\s*(.*)$", cpuinfo.read_text(), re.M)) if cpuinfo.is_file() else {}
    return {"cpu": info.get("model name") or platform.processor(), "cores": os.cpu_count(),
            "cpu_flags": sorted({f for f in info.get("flags", "").split() if f.startswith(("avx", "amx", "fma"))}),
            "blas": [line.strip(" -") for line in build.splitlines() if re.search("Math Kernel|MKL-DNN|OpenBLAS", line)]
            or re.findall(r"BLAS_INFO=\w+", build)}


def environment(plugin_versions: dict[str, str], device: str) -> dict:
    """The provenance block stored with every result; ``numerics``: what decides its last bits besides
    its config (README "Reproducibility"): the machine, ATen's kernel level in use, thread counts,
    oneDNN on or off, deterministic mode, and the variables that override them."""
    import torch

    numerics = {**_machine(), "aten_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
                "variables": {k: os.environ[k] for k in NUMERIC_VARIABLES if k in os.environ}}
    return {"python": sys.version.split()[0], "platform": platform.platform(), "device": device,
            "versions": {d: v for d in TRACKED_DISTRIBUTIONS if (v := _version(d)) is not None},
            "plugins": plugin_versions, "git_sha": git_sha(), "numerics": numerics}
