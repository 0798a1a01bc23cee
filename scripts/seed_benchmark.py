"""Train a config on the reference seed set and score both directions on the slice indices present in both folders.

Not a test: a measurement for docs/results.md. Scores the model every ``--eval-minutes`` of training time (the
scoring itself is not counted), so the output is a curve of SSIM against minutes.

    python scripts/seed_benchmark.py --config cpu --out runs/seed-cpu

Scoring: translations and targets as 8-bit images scaled by 1/255; PSNR, SSIM (Gaussian window 11, sigma 1.5,
data range 1) and MAE over the whole slice and inside the head mask of the target.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from mriganx.config import Direction, load_config, override
from mriganx.inference import Translator
from mriganx.intensity import IntensityRange, head_mask, normalise
from mriganx.io import load_image
from mriganx.metrics import paired_metrics
from mriganx.training import Trainer

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-t1t2"


def slice_index(path: Path) -> int:
    return int(re.search(r"#\s*(\d+)", path.name).group(1))


def paired_slices(root: Path) -> list[tuple[int, Path, Path]]:
    t1 = {slice_index(p): p for p in (root / "trainT1").glob("*.png")}
    t2 = {slice_index(p): p for p in (root / "trainT2").glob("*.png")}
    return [(n, t1[n], t2[n]) for n in sorted(set(t1) & set(t2))]


def score(translator: Translator, pairs: list[tuple[int, Path, Path]]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    images = {n: (load_image(a), load_image(b)) for n, a, b in pairs}
    for direction in Direction:
        rows = []
        for n, (t1, t2) in images.items():
            source, target = (t1, t2) if direction is Direction.T1_TO_T2 else (t2, t1)
            out = translator.translate(source, direction).array[..., 0] / 255.0
            truth = target.array[..., 0] / 255.0
            mask = head_mask(normalise(target.array[..., 0], IntensityRange(0.0, 255.0))[None])[0]
            rows.append(paired_metrics(out, truth, 1.0, mask))
        results[direction.value] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--out", default="runs/seed-benchmark")
    parser.add_argument("--data", default=str(SEED))
    parser.add_argument("--eval-minutes", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="overrides like train.lr=0.0004")
    args = parser.parse_args()
    root = Path(args.data)
    pairs = paired_slices(root)
    overrides = {"train.seed": args.seed}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    config = override(load_config(args.config), overrides)
    trainer = Trainer(config, root / "trainT1", root / "trainT2", args.out, progress=False)
    curve: list[dict] = []
    clock = {"train": 0.0, "last": time.perf_counter(), "next_eval": args.eval_minutes * 60}

    def evaluate(step: int) -> None:
        translator = Translator(trainer.model_file(), "cpu")
        result = {"minutes": round(clock["train"] / 60, 2), "step": step, **score(translator, pairs)}
        curve.append(result)
        print(json.dumps(result), flush=True)

    def on_step(step: int, losses: dict[str, float]) -> None:
        now = time.perf_counter()
        clock["train"] += now - clock["last"]
        if clock["train"] >= clock["next_eval"] or step == trainer.stop_step:
            evaluate(step)
            clock["next_eval"] += args.eval_minutes * 60
        clock["last"] = time.perf_counter()

    trainer.step_callback = on_step
    started = time.perf_counter()
    result = trainer.run()
    summary = {
        "config": config.to_dict(), "pairs": len(pairs), "steps": result.steps,
        "train_minutes": round(clock["train"] / 60, 2), "wall_minutes": round((time.perf_counter() - started) / 60, 2),
        "final": curve[-1] if curve else None, "curve": curve,
    }
    Path(args.out, "seed_scores.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({"final": summary["final"], "train_minutes": summary["train_minutes"]}))


if __name__ == "__main__":
    main()
