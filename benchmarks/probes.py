"""Evaluations on cached features against the extraction that made them, in one run.

For each dataset the first job extracts the train and test features (the cold cache: its
``features`` stage is the baseline); then every adaptation's cells run on the cached features.
Prints, per dataset, the extraction seconds and each adaptation's mean seconds per cell with its
share of that extraction (the target is under 10%), then each cell's primary metric (mean and
sample std over seeds) and, where the records carry them, the calibration metrics.

Usage: python benchmarks/probes.py [--model test_resnet] [--init random] [--image-size 32]
       [--dataset digits-lt,fashion-mnist-lt,lfw-faces,textures-lt] [--shots 10%] [--seeds 0,1,2]
       [--adapt knn,ridge,linear-probe]
e.g. the issue's figures: --model tf_efficientnet_lite0 --init imagenet --image-size 96
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from gaia_bench.cli.common import parse_shots
from gaia_bench.features import FeatureCache
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.runner import Session, run_job

CALIBRATION = ("ece", "nll", "brier", "ece_ts", "nll_ts", "brier_ts")


def split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--init", default="random")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--dataset", default="digits-lt,fashion-mnist-lt,lfw-faces,textures-lt")
    parser.add_argument("--shots", default="10%")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--adapt", default="knn,ridge,linear-probe")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gaia-bench-probes-"))
    try:
        measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, root: Path) -> None:
    registries = get_registries()
    adaptations = split(args.adapt)
    session = Session(data_root=Path(os.environ.get("GAIA_BENCH_DATA", root / "data")), device="cpu",
                      batch_size=args.batch_size, workers=0, feature_cache=FeatureCache(root / "features"),
                      plugin_versions={})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model} / {args.init} at "
          f"{args.image_size} px; shots {args.shots}, seeds {args.seeds}; load {os.getloadavg()[0]:.1f}")
    extraction: dict[str, float] = {}
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    values: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for dataset in split(args.dataset):
        jobs = plan(registries, models=[args.model], inits=[args.init], adaptations=adaptations, datasets=[dataset],
                    shots=parse_shots([args.shots]), seeds=[int(s) for s in split(args.seeds)],
                    image_size=args.image_size)
        for job in jobs:
            start = time.perf_counter()
            record = run_job(job, session)
            wall = time.perf_counter() - start
            if record["status"] != "done":
                raise SystemExit(f"{job.config.adaptation} on {dataset} failed: {record.get('error')}")
            features = record["timings"].get("features", 0.0)
            if features:
                extraction[dataset] = extraction.get(dataset, 0.0) + features
            seconds[(dataset, job.config.adaptation)].append(wall - features)
            values[(dataset, job.config.adaptation)].append(record)

    print("\nseconds per cell on cached features (share of that dataset's extraction)")
    print(f"{'dataset':18s} {'extract':>8s} " + " ".join(f"{a:>20s}" for a in adaptations))
    for dataset in split(args.dataset):
        cells = []
        for a in adaptations:
            mean = statistics.fmean(seconds[(dataset, a)])
            cells.append(f"{mean:8.2f} s ({100 * mean / extraction[dataset]:5.1f}%)")
        print(f"{dataset:18s} {extraction[dataset]:7.2f}s " + " ".join(f"{c:>20s}" for c in cells))

    print("\nprimary metric, mean ± sample std over seeds")
    print(f"{'dataset':18s} " + " ".join(f"{a:>16s}" for a in adaptations))
    for dataset in split(args.dataset):
        cells = []
        for a in adaptations:
            v = [r["primary_value"] for r in values[(dataset, a)]]
            std = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.fmean(v):7.2f} ± {std:5.2f}")
        print(f"{dataset:18s} " + " ".join(f"{c:>16s}" for c in cells))

    calibrated = [(k, rs) for k, rs in values.items() if any(m in rs[0]["metrics"] for m in CALIBRATION)]
    if calibrated:
        print("\ncalibration (mean over seeds; *_ts: after temperature scaling on the held-out part)")
        names = [m for m in CALIBRATION if any(m in rs[0]["metrics"] for _, rs in calibrated)]
        print(f"{'dataset':18s} {'adaptation':14s} " + " ".join(f"{m:>9s}" for m in names))
        for (dataset, a), rs in sorted(calibrated):
            row = [statistics.fmean(r["metrics"].get(m, float("nan")) for r in rs) for m in names]
            print(f"{dataset:18s} {a:14s} " + " ".join(f"{x:9.3f}" for x in row))


if __name__ == "__main__":
    main()
