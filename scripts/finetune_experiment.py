"""Fine-tuning from the shipped model against training from scratch, on data the shipped model never saw.

    python scripts/finetune_experiment.py --out runs/finetune [--steps 400] [--every 50]

The data: phantoms whose acquisitions lie outside the default model's training ranges (T1w spin echo with TR
180-300 ms, T2w with TE 160-220 ms; docs/model-card.md lists the ranges it saw), 4 subjects' T1w and 4 others' T2w
for training, one more subject held out with both contrasts, at 2 mm. Both runs use the shipped config's network
and the same schedule (``--steps``); one starts from random weights, one from the shipped weights (``train.init``).
Every ``--every`` steps the held-out T1w is translated and scored against its true T2w (SSIM inside the head, both
scaled by their own robust range). Prints the two curves and writes them to OUT/curves.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mriganx.config import Direction, load_config, override
from mriganx.frame import MNI_SHAPE
from mriganx.inference import Translator
from mriganx.intensity import fit_range, head_mask, normalise
from mriganx.io import save_nifti
from mriganx.metrics import paired_metrics
from mriganx.synthetic import make_phantom
from mriganx.training import Trainer

SPACING = 2.0


def unseen_phantom(seed: int):
    rng = np.random.default_rng(seed)
    return make_phantom(seed, shape=tuple(round(n / SPACING) for n in MNI_SHAPE), spacing=SPACING,
                        t1w_sequence=(float(rng.uniform(180, 300)), float(rng.uniform(5, 10))),
                        t2w_sequence=(float(rng.uniform(6000, 9000)), float(rng.uniform(160, 220))),
                        noise=0.01)


def make_data(out: Path) -> tuple[Path, Path, object]:
    t1_dir, t2_dir = out / "data" / "T1w", out / "data" / "T2w"
    for index in range(8):
        phantom = unseen_phantom(500 + index)
        folder, image, name = (t1_dir, phantom.t1, "T1w") if index % 2 == 0 else (t2_dir, phantom.t2, "T2w")
        save_nifti(image, phantom.affine, folder / f"sub-{index:02d}_{name}.nii.gz", overwrite=True)
    return t1_dir, t2_dir, unseen_phantom(599)


def held_out_ssim(translator: Translator, held) -> float:
    from mriganx.io import Image, ImageKind

    image = Image(held.t1, held.affine, ImageKind.NIFTI, Path("held-out"))
    out = translator.translate(image, Direction.T1_TO_T2).array
    truth_range = fit_range(held.t2)
    truth, prediction = normalise(held.t2, truth_range), normalise(out, fit_range(out))
    scores = []
    for k in range(truth.shape[2]):
        mask = head_mask(truth[None, :, :, k])[0]
        if mask.mean() > 0.2:
            scores.append(paired_metrics((prediction[:, :, k] + 1) / 2, (truth[:, :, k] + 1) / 2, 1.0, mask)["ssim_mask"])
    return float(np.mean(scores))


def curve(out: Path, t1_dir: Path, t2_dir: Path, held, init: str | None, steps: int, every: int) -> list[tuple[int, float]]:
    config = override(load_config("shipped"), {"train.steps": steps, "train.init": init, "train.checkpoint_every": 10**6,
                                               "train.image_every": 10**6})
    points: list[tuple[int, float]] = []
    trainer: Trainer

    def probe(step: int, losses: dict[str, float]) -> None:
        if step % every == 0:
            points.append((step, held_out_ssim(Translator(trainer.model_file(), "cpu"), held)))
            print(f"{'init ' + init if init else 'scratch'} step {step}: held-out SSIM {points[-1][1]:.3f}", flush=True)

    trainer = Trainer(config, t1_dir, t2_dir, out / ("init" if init else "scratch"), progress=False, step_callback=probe)
    points.append((0, held_out_ssim(Translator(trainer.model_file(), "cpu"), held)))
    trainer.run()
    return sorted(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args(argv)
    t1_dir, t2_dir, held = make_data(args.out)
    curves = {name: curve(args.out, t1_dir, t2_dir, held, init, args.steps, args.every)
              for name, init in (("from the shipped model", "default"), ("from scratch", None))}
    (args.out / "curves.json").write_text(json.dumps(curves, indent=1))
    for name, points in curves.items():
        print(f"{name:24s} " + "  ".join(f"{step}:{ssim:.3f}" for step, ssim in points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
