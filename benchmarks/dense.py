"""Dense-task throughput, with a baseline measured in the same run.

1. Per task (detection, segmentation, depth) and adaptation (linear-probe, finetune): one job on the
   mini suite's dense set at ``--shots``, run through the real planner and runner. Prints training
   and evaluation images/s and the share of each phase spent OUTSIDE the model (reading and
   resizing images, building targets, scoring, bookkeeping), from the timings the heads record.
2. Baseline: the detection linear probe with its frozen pyramids cached (plain + mirrored, computed
   once) vs recomputing the frozen backbone for every batch, the way a harness without the cache
   trains a frozen-backbone detector. Same job, same iterations; prints both wall times, their ratio
   and both mAPs.

Run it on an otherwise idle machine: on 2 cores any other load changes the numbers a lot.
Usage: python benchmarks/dense.py [--model test_resnet] [--shots 10%] [--iters N] [--tasks det,seg,depth]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from gaia_bench.cli.common import parse_shots
from gaia_bench.jobs import plan
from gaia_bench.overrides import apply_overrides
from gaia_bench.manager import get_registries
from gaia_bench.plugins.adaptations.lib import detection_head
from gaia_bench.runner import Session, run_job

DATASETS = {"det": "mini-voc-det", "seg": "mini-voc-seg", "depth": "mini-kitti-depth"}


def one_job(args: argparse.Namespace, data_root: Path, dataset: str, adaptation: str) -> dict:
    (job,) = plan(get_registries(), models=[args.model], inits=["random"], adaptations=[adaptation],
                  datasets=[dataset], shots=parse_shots([args.shots]), seeds=[0])
    if args.iters is not None:
        prefix = "det_" if job.config.task == "detection" else "dense_"
        overrides = {f"{prefix}min_iters": args.iters, f"{prefix}max_iters": args.iters}
        hp = apply_overrides(job.config.hyperparams, overrides)
        job.config = type(job.config)(**{**job.config.as_dict(), "hyperparams": hp})
    session = Session(data_root=data_root, device="cpu", batch_size=args.batch_size, workers=0,
                      feature_cache=None, plugin_versions={})
    session.load_split(job.dataset, job.dataset.train_split)  # prepare the data outside the timings
    record = run_job(job, session)
    if record["status"] != "done":
        raise SystemExit(f"benchmark job {dataset} / {adaptation} failed: {record.get('error')}")
    return record


def rates(record: dict) -> tuple[float, float, float, float]:
    t = record["details"]["throughput"]
    train_rate = t["train_images"] / t["train_seconds"] if t["train_seconds"] else float("nan")
    eval_rate = t["eval_images"] / t["eval_seconds"] if t["eval_seconds"] else float("nan")
    train_outside = 1 - t["train_model_seconds"] / t["train_seconds"] if t["train_seconds"] else float("nan")
    eval_outside = 1 - t["eval_model_seconds"] / t["eval_seconds"] if t["eval_seconds"] else float("nan")
    return train_rate, train_outside, eval_rate, eval_outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--shots", default="10%")
    parser.add_argument("--iters", type=int, default=None, help="override every head's schedule (default: its rule)")
    parser.add_argument("--tasks", default="det,seg,depth")
    parser.add_argument("--adapt", default="linear-probe,finetune")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    data_root = Path(tempfile.mkdtemp(prefix="gaia-bench-dense-bench-"))
    try:
        measure(args, data_root)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)


def measure(args: argparse.Namespace, data_root: Path) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; model {args.model}; shots {args.shots}; "
          f"iterations {'by the schedule rule' if args.iters is None else args.iters}")
    print(f"\n1. throughput per task (outside = share of the phase's wall time spent outside the model)")
    print(f"   {'task':6s} {'adaptation':13s} {'iters':>6s} {'train img/s':>12s} {'outside':>8s} "
          f"{'eval img/s':>11s} {'outside':>8s} {'job s':>7s}  primary metric")
    for task in args.tasks.split(","):
        for adaptation in args.adapt.split(","):
            record = one_job(args, data_root, DATASETS[task], adaptation)
            train_rate, train_out, eval_rate, eval_out = rates(record)
            iters = record["details"]["schedule"]["iterations_run"]
            print(f"   {task:6s} {adaptation:13s} {iters:6d} {train_rate:12.1f} {train_out:8.1%} {eval_rate:11.1f} "
                  f"{eval_out:8.1%} {record['timings']['total_s']:7.1f}  "
                  f"{record['primary_metric']} = {record['primary_value']:.2f}")

    if "det" in args.tasks.split(","):
        start = time.perf_counter()
        cached = one_job(args, data_root, DATASETS["det"], "linear-probe")
        cached_s = time.perf_counter() - start
        saved = detection_head.CACHE_MB
        detection_head.CACHE_MB = -1  # never cache: recompute the frozen backbone per batch
        try:
            start = time.perf_counter()
            live = one_job(args, data_root, DATASETS["det"], "linear-probe")
            live_s = time.perf_counter() - start
        finally:
            detection_head.CACHE_MB = saved
        assert cached["details"]["backbone"]["pyramids_cached"] and not live["details"]["backbone"]["pyramids_cached"]
        print("\n2. detection linear probe: frozen pyramids cached vs recomputed per batch")
        print(f"   {'recomputed per batch':28s} {live_s:8.2f} s   mAP {live['primary_value']:.2f}")
        print(f"   {'cached once (+ mirrored)':28s} {cached_s:8.2f} s   mAP {cached['primary_value']:.2f}")
        print(f"   {'ratio recomputed / cached':28s} {live_s / cached_s:8.2f} x")


if __name__ == "__main__":
    main()
