"""A `cpu` training step when the cores are shared: alone, and beside a second busy process, per OpenMP wait policy.

    python benchmarks/contention.py [--rounds 2]

Each measurement is a fresh Python process that times `cpu` training steps with ``bench.py``'s ``training_cost``
(warm-up, then the median of nine). "Beside a busy neighbour" starts a second process first that runs the same
steps in a loop for the whole measurement (the situation of two trainings, or a training beside a test suite, on
two cores). ``OMP_WAIT_POLICY`` is set for both processes before torch loads OpenMP: ``ACTIVE`` (threads spin while
they wait for work), unset (libgomp's default: spin a while, then sleep), ``PASSIVE`` (sleep at once: what the
``mriganx`` command sets unless the variable is already set). Prints seconds per step and the slowdown factor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_TIME = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from bench import training_cost
print(json.dumps(training_cost("cpu", (220, 184), 3, torch.device("cpu"))))
"""
_BUSY = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from bench import training_cost
while True:
    training_cost("cpu", (220, 184), 1, torch.device("cpu"))
"""


def environment(policy: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


def step_seconds(policy: str | None, busy: bool) -> float:
    env = environment(policy)
    neighbour = None
    if busy:
        neighbour = subprocess.Popen([sys.executable, "-c", _BUSY, str(HERE)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(15)  # the neighbour is past its imports and warm-up, and busy
    try:
        out = subprocess.run([sys.executable, "-c", _TIME, str(HERE)], env=env, capture_output=True, text=True, check=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["s_per_iter"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["ACTIVE", "default", "PASSIVE"])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; torch threads: torch's default in every process")
    for policy in args.policies:
        setting = None if policy == "default" else policy
        alone = [step_seconds(setting, busy=False) for _ in range(args.rounds)]
        shared = [step_seconds(setting, busy=True) for _ in range(args.rounds)]
        a, b = statistics.median(alone), statistics.median(shared)
        print(f"OMP_WAIT_POLICY={policy:8s} alone {a:.3f} s/step, beside a busy neighbour {b:.3f} s/step: {b / a:.2f}x "
              f"(runs {', '.join(f'{x:.2f}' for x in alone)} | {', '.join(f'{x:.2f}' for x in shared)})", flush=True)
    print(json.dumps({"note": "see docs/performance.md, 'Sharing the cores'"}))


if __name__ == "__main__":
    main()
