"""Training step time of configs, each measured in a fresh process, in alternating rounds.

    python benchmarks/fresh_processes.py cpu configs/default.yaml --release-memory --rounds 3

For what ``train_variants.py`` cannot compare: settings that act on the whole process (the allocator,
``mriganx.memory``) and whole configs. Every (config, allocator) pair runs ``--rounds`` times, each time in a new
Python process that times it with ``bench.py``'s own ``training_cost`` (three warm-up steps, the median of nine); the
rounds alternate the pairs so that drift in the machine's speed falls on all of them alike. Prints one line per pair with the median over rounds of
seconds per iteration, FLOPs per iteration (``torch.utils.flop_counter``) and GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_ONE_PROCESS = """
import json, sys, torch
sys.path.insert(0, sys.argv[2])
from bench import training_cost
print(json.dumps(training_cost(sys.argv[1], (220, 184), 3, torch.device("cpu"))))
"""


def measure(config: str, release: bool) -> dict[str, float]:
    env = dict(os.environ, MRIGANX_RELEASE_MEMORY="1" if release else "0")
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _ONE_PROCESS, config, here], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="shipped config names or YAML paths")
    parser.add_argument("--release-memory", action="store_true", help="also run each config with glibc's default allocator")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pairs = [(config, release) for config in args.configs for release in ((False, True) if args.release_memory else (False,))]
    results: dict[tuple[str, bool], list[dict[str, float]]] = {pair: [] for pair in pairs}
    for _ in range(args.rounds):
        for pair in pairs:
            results[pair].append(measure(*pair))
    for (config, release), runs in results.items():
        seconds = statistics.median(run["s_per_iter"] for run in runs)
        flops = runs[0]["gflop_per_iter"] * 1e9
        label = f"{config}{' (glibc default allocator)' if release else ''}"
        each = ", ".join(f"{run['s_per_iter']:.3f}" for run in runs)
        print(f"{label:45s} {seconds:.3f} s/it (runs {each})  "
              f"{flops / 1e9:6.1f} GFLOP/it  {flops / seconds / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
