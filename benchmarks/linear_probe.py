"""Linear-probe performance, measured against baselines taken in the same run.

1. Feature cache: a grid of shots x 3 seeds on one dataset, run through the real planner and
   runner (a) with the on-disk feature cache — the backbone runs once per split — and (b) the way a
   harness without caching runs it: no cache and a fresh session per job, so every job runs the
   backbone again. Prints both wall times, their ratio, whether the metrics agree, and the probe
   fits' share of the cached run's wall time. ``--cifar10-images N`` writes an N-image CIFAR-10 in
   the official layout (pickled batches, class-coloured noise: learnable) and runs the 5-fraction
   grid (1%, 2%, 5%, 10%, 100%) on it.
2. Extraction overhead: images/s of ``extract_features`` (PNG decoding, transforms, DataLoader,
   backbone) over the training split vs the backbone's bare forward on ready-made tensors of the
   same shape and batch size. Best of 5, the two alternating, after a warm-up.

``--precision bf16`` (or fp16 on a GPU) runs both under autocast, as `gaia-bench run --precision`
does; ``--device cuda`` measures on a GPU (synchronized); ``--json FILE`` also writes the numbers
(what ``benchmarks/gpu.sh`` tabulates).

Run it on an otherwise idle machine: on 2 cores any other load changes the numbers a lot.
Usage: python benchmarks/linear_probe.py [--model test_resnet] [--dataset digits-lt]
       [--shots 1%,10%,100%] [--batch-size 64] [--image-size N] [--cifar10-images 1200]
       [--parts grid,extraction] [--precision fp32|bf16|fp16] [--device cpu|cuda] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gaia_bench.api import InitContext
from gaia_bench.cli.common import check_precision, parse_shots
from gaia_bench.devices import autocast
from gaia_bench.features import FeatureCache, extract_features
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.runner import Session, run_job

SHOTS = "1%,10%,100%"
CIFAR_SHOTS = "1%,2%,5%,10%,100%"
SEEDS = (0, 1, 2)
ROUNDS = 5


def write_cifar10(root: Path, n_train: int, n_test: int) -> None:
    """An ``n_train``-image CIFAR-10 in torchvision's layout: five pickled training batches, a test
    batch and ``batches.meta``; every class is its own noisy colour, long-tailed like the suite."""
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 216, (10, 3))
    weights = 0.8 ** np.arange(10)

    def batch(n: int) -> dict:
        labels = rng.choice(10, size=n, p=weights / weights.sum())
        images = np.clip(colours[labels][:, :, None, None] + rng.normal(0, 40, (n, 3, 32, 32)), 0, 255)
        return {"data": images.astype(np.uint8).reshape(n, -1), "labels": [int(c) for c in labels]}

    root.mkdir(parents=True)
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}, protocol=2))
    for i in range(5):
        (root / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch(n_train // 5), protocol=2))
    (root / "test_batch").write_bytes(pickle.dumps(batch(n_test), protocol=2))


RESULTS: dict[str, float] = {}  # what --json writes


def session(data_root: Path, cache: FeatureCache | None, batch_size: int, device: str = "cpu") -> Session:
    return Session(data_root=data_root, device=device, batch_size=batch_size, workers=0, feature_cache=cache,
                   plugin_versions={})


def grid(args: argparse.Namespace) -> list:
    return plan(get_registries(), models=[args.model], inits=["random"], adaptations=["linear-probe"],
                datasets=[args.dataset], shots=parse_shots([args.shots]), seeds=SEEDS, image_size=args.image_size,
                precision=args.precision)


def time_grid(args: argparse.Namespace, data_root: Path, cached: bool) -> tuple[float, list[dict]]:
    jobs = grid(args)
    start = time.perf_counter()
    if cached:
        shared = session(data_root, FeatureCache(data_root / "feature-cache"), args.batch_size, args.device)
        records = [run_job(job, shared) for job in jobs]
    else:
        records = [run_job(job, session(data_root, None, args.batch_size, args.device)) for job in jobs]
    elapsed = time.perf_counter() - start
    failed = [r for r in records if r["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} benchmark job(s) failed, e.g.: {failed[0].get('error')}")
    return elapsed, records


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--dataset", default="digits-lt")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--shots", default=None, help=f"default {SHOTS}; {CIFAR_SHOTS} with --cifar10-images".replace("%", "%%"))
    parser.add_argument("--cifar10-images", type=int, default=0, help="write a CIFAR-10 of N training images (official "
                        "layout, N/5 test images) and run on it")
    parser.add_argument("--parts", default="grid,extraction", help="which measurements to run (comma-separated)")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (autocast, as `gaia-bench run`)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args()
    check_precision(args.precision, args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    data_root = Path(tempfile.mkdtemp(prefix="gaia-bench-bench-"))
    if args.cifar10_images:
        write_cifar10(data_root / "cifar-10-batches-py", args.cifar10_images, max(10, args.cifar10_images // 5))
        args.dataset = "cifar10"
    args.shots = args.shots or (CIFAR_SHOTS if args.cifar10_images else SHOTS)
    try:
        measure(args, data_root)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "precision": args.precision,
                                               "device": args.device, **RESULTS}, indent=1))


def measure(args: argparse.Namespace, data_root: Path) -> None:
    regs = get_registries()
    spec = regs.backbones.get(args.model)
    size = args.image_size or spec.input_size
    dataset = regs.datasets.get(args.dataset)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}; model {args.model} at "
          f"{size}px, {args.precision}; dataset {args.dataset}; batch {args.batch_size}")

    warm = session(data_root, None, args.batch_size, args.device)
    train = warm.load_split(dataset, dataset.train_split)  # prepares the data outside the timings

    if "grid" in args.parts.split(","):
        measure_grid(args, data_root)
    if "extraction" in args.parts.split(","):
        measure_extraction(args, regs, spec, size, train)


def measure_grid(args: argparse.Namespace, data_root: Path) -> None:
    cached_s, cached = time_grid(args, data_root, cached=True)
    uncached_s, uncached = time_grid(args, data_root, cached=False)
    agree = all(a["metrics"] == b["metrics"] for a, b in zip(cached, uncached))
    print(f"\n1. linear probe, {len(cached)} jobs ({args.shots} x seeds {SEEDS})")
    print(f"   {'backbone every job (no cache)':34s} {uncached_s:8.2f} s")
    print(f"   {'feature cache':34s} {cached_s:8.2f} s")
    print(f"   {'ratio uncached / cached':34s} {uncached_s / cached_s:8.1f} x   (metrics identical: {agree})")
    for name, records in (("no cache", uncached), ("cache", cached)):
        parts = {k: sum(r["timings"].get(k, 0.0) for r in records) for k in ("features", "probe_fit")}
        print(f"   {name:>10s}: backbone {parts['features']:6.2f} s, probe fits {parts['probe_fit']:6.2f} s, "
              f"rest {sum(r['timings']['total_s'] for r in records) - sum(parts.values()):6.2f} s")
    probe_s = sum(r["timings"].get("probe_fit", 0.0) for r in cached)
    print(f"   {'probe fits / cached wall time':34s} {100 * probe_s / cached_s:8.1f} %")
    RESULTS.update(grid_jobs=len(cached), grid_cached_s=cached_s, grid_uncached_s=uncached_s)


def measure_extraction(args: argparse.Namespace, regs, spec, size: int, train) -> None:
    device = args.device
    backbone = regs.inits.get("random").initialize(spec, InitContext()).eval().to(device)
    n = len(train)
    batches = [torch.randn(min(args.batch_size, n - i), 3, size, size, device=device)
               for i in range(0, n, args.batch_size)]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def bare() -> None:
        with torch.inference_mode(), autocast(device, args.precision):
            for batch in batches:
                backbone(batch).float().cpu()  # the features leave the device, as extraction's do
        sync()

    def extract() -> None:
        extract_features(backbone, train.samples, image_size=size, mean=spec.mean, std=spec.std, device=device,
                         batch_size=args.batch_size, workers=0, precision=args.precision)
        sync()

    extract(), bare()  # warm-up; then alternate, so a change of the machine's load hits both alike
    extract_s, bare_s = (min(t) for t in zip(*[(_timed(extract), _timed(bare)) for _ in range(ROUNDS)]))
    print(f"\n2. feature extraction over {n} training images")
    print(f"   {'bare forward on ready tensors':34s} {n / bare_s:8.1f} images/s")
    print(f"   {'extract_features (decode+transform)':34s} {n / extract_s:8.1f} images/s")
    print(f"   {'ratio extraction / bare':34s} {bare_s / extract_s:8.2f}")
    RESULTS.update(images=n, bare_ips=n / bare_s, extract_ips=n / extract_s)


if __name__ == "__main__":
    main()
