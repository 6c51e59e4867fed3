"""The numeric settings a trained head's weights are made under, so one job id gives one number.

A convolution's weight gradient is a sum over the batch and the positions, and oneDNN and ATen
split that sum by the number of threads: the same job trained with 1, 2 or 3 threads ends in
different last bits, and over a few hundred SGD steps in a different mAP or RMSE (README
"Reproducibility" has the measured differences). The backbone's forward pass does not depend on
it (its pyramids are computed at the machine's thread count); the head's test predictions do, in
their last digits. So training and testing run with :data:`HEAD_THREADS` CPU threads on every
machine and with torch's deterministic algorithms (on CUDA these replace atomic-add kernels:
torchvision's RoIAlign backward, scatter/index_add; an op without a deterministic kernel, e.g.
CUDA bilinear upsampling's backward, runs as before and is named in the record). What cannot be
pinned from inside a process is the instruction set the kernels were chosen for (AVX2 or
AVX-512): the record's ``environment.numerics`` says which one ran.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

HEAD_THREADS = 2  # the project's machines' count: the published cells keep their numbers


@contextmanager
def reproducible(device: str) -> Iterator[dict[str, Any]]:
    """Fixed CPU threads and deterministic algorithms inside the block, restored after it. Yields
    the record's ``numerics`` entry; its ``nondeterministic_ops`` fill in when the block ends."""
    import torch

    threads = torch.get_num_threads()
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    entry: dict[str, Any] = {"threads": HEAD_THREADS if device == "cpu" else threads,
                             "deterministic_algorithms": True, "nondeterministic_ops": []}
    if device == "cpu":
        torch.set_num_threads(HEAD_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield entry
        shown: set[tuple] = set()
        for w in caught:
            text = str(w.message)
            if "does not have a deterministic implementation" in text:
                if (op := text.split(" does not", 1)[0]) not in entry["nondeterministic_ops"]:
                    entry["nondeterministic_ops"].append(op)
            elif (key := (w.category, text, w.filename, w.lineno)) not in shown:  # the others, once each
                shown.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.set_num_threads(threads)
