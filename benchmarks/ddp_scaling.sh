#!/usr/bin/env bash
# Training throughput with 1 and 2 torchrun processes (Gloo on CPU, or NCCL with --device cuda on a GPU machine).
# Usage: benchmarks/ddp_scaling.sh T1_DIR T2_DIR [STEPS] [DEVICE]
# Prints slices per second for each process count (from the run's own step timing, startup excluded).
set -euo pipefail
t1=$1; t2=$2; steps=${3:-40}; device=${4:-cpu}
cores=$(nproc)
for procs in 1 2; do
  out=$(mktemp -d)
  threads=$(( cores / procs )); [ "$threads" -ge 1 ] || threads=1
  OMP_NUM_THREADS=$threads torchrun --standalone --nproc_per_node "$procs" -m mriganx train \
    --t1-dir "$t1" --t2-dir "$t2" --out "$out/run" --config cpu --max-steps "$steps" --device "$device" >/dev/null 2>"$out/log"
  python - "$out/run" "$procs" "$steps" <<'PY'
import sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run, procs, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
events = EventAccumulator(str(run / "tensorboard")); events.Reload()
walls = [e.wall_time for e in events.Scalars("lr")]
per_step = (walls[-1] - walls[0]) / max(1, len(walls) - 1) / 10  # lr is logged every 10 steps in the cpu config
import yaml
batch = yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"]
print(f"{procs} process(es): {per_step:.3f} s/step, {2 * batch * procs / per_step:.2f} slices/s (T1w + T2w, all ranks)")
PY
  rm -rf "$out"
done
