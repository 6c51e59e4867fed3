#!/usr/bin/env bash
# Throughput on a GPU, fp32 against bf16: what a person with an accelerator runs and pastes into an issue.
#
# For MODEL at SIZE px, in each of PRECISIONS: feature extraction (decode + transforms + forward)
# against the bare forward on ready tensors, a linear-probe grid with the feature cache (and
# without, every job running the backbone), and the seconds of one fine-tune epoch; then one table.
# Weights are the backbone's random init (speed does not depend on them; nothing is downloaded).
#
#   bash benchmarks/gpu.sh                                            # resnet50, 224 px, cuda
#   MODEL=test_resnet SIZE=32 DEVICE=cpu bash benchmarks/gpu.sh       # a smoke run on a CPU
#
# Environment: MODEL (resnet50), SIZE (224), DEVICE (cuda), PRECISIONS ("fp32 bf16"; fp16 needs a
# GPU), DATASET (digits-lt, made offline), BATCH (64), GAIA_BENCH (the command; default gaia-bench),
# PYTHON (default python).
set -euo pipefail

MODEL=${MODEL:-resnet50}
SIZE=${SIZE:-224}
DEVICE=${DEVICE:-cuda}
PRECISIONS=${PRECISIONS:-fp32 bf16}
DATASET=${DATASET:-digits-lt}
BATCH=${BATCH:-64}
GAIA_BENCH=${GAIA_BENCH:-gaia-bench}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gaia-bench-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export GAIA_BENCH_HOME="$WORK/home"  # its own data, features and store: nothing cached from earlier runs

for precision in $PRECISIONS; do
  echo "== $MODEL at ${SIZE}px on $DEVICE, $precision" >&2
  "$PYTHON" "$HERE/linear_probe.py" --model "$MODEL" --image-size "$SIZE" --dataset "$DATASET" \
    --batch-size "$BATCH" --device "$DEVICE" --precision "$precision" --json "$WORK/probe-$precision.json" >&2
  "$GAIA_BENCH" run --model "$MODEL" --init random --image-size "$SIZE" --dataset "$DATASET" --adapt finetune \
    --shots 100% --hp epochs=1 --hp min_iters=1 --batch-size "$BATCH" --device "$DEVICE" \
    --precision "$precision" --resamples 0 --store "$WORK/finetune-$precision.db" >&2
  "$GAIA_BENCH" results --store "$WORK/finetune-$precision.db" --format json > "$WORK/finetune-$precision.json"
done

"$PYTHON" - "$WORK" $PRECISIONS <<'PY'
import json
import sys
from pathlib import Path

work, precisions = Path(sys.argv[1]), sys.argv[2:]
rows = []
for precision in precisions:
    probe = json.loads((work / f"probe-{precision}.json").read_text())
    results = json.loads((work / f"finetune-{precision}.json").read_text())
    (record,) = results if isinstance(results, list) else results["results"]
    train_s = record["timings"]["finetune_train"]
    epochs = record["details"]["epochs_run"]
    rows.append([precision, f"{probe['bare_ips']:.0f}", f"{probe['extract_ips']:.0f}",
                 f"{probe['extract_ips'] / probe['bare_ips']:.2f}", f"{probe['grid_cached_s']:.1f}",
                 f"{probe['grid_uncached_s']:.1f}", f"{train_s / epochs:.1f}"])
first = json.loads((work / f"probe-{precisions[0]}.json").read_text())
print(f"\n{first['model']} on {first['device']}, {first['images']} training images; "
      f"probe grid: {first['grid_jobs']} linear-probe jobs")
header = ["precision", "bare img/s", "extract img/s", "extract/bare", "grid cached s", "grid uncached s",
          "finetune s/epoch"]
widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
for line in [header, ["-" * w for w in widths], *rows]:
    print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
PY
